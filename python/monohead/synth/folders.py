"""User folders of assets (version 2's environment maps and background photos): which files of
a folder can be used."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["scan_folder"]


def scan_folder(
    folder: Any,
    read: Callable[[Path], object],
    *,
    suffixes: tuple[str, ...],
    label: str,
    item: str,
    wanted: str,
    errors: tuple[type[BaseException], ...] = (OSError, ValueError),
    log: logging.Logger,
) -> tuple[list[Path], int]:
    """The usable files of ``folder`` and the number of unusable ones skipped.

    A file is a candidate when it is not hidden and its suffix, in any case, is one of
    ``suffixes``; it is usable when ``read(path)`` returns, skipped (with a warning on ``log``)
    when ``read`` raises one of ``errors``.

    Args:
        folder: the folder (``str`` or :class:`os.PathLike`).
        read: checks one file; raises one of ``errors`` when the file cannot be used.
        suffixes: lower-case suffixes with their dot (``".hdr"``).
        label: the folder's name in messages (``"hdri"`` gives ``hdri folder '...'``).
        item: what one file is, in messages (``"environment map"``).
        wanted: what the folder should hold, for the error when nothing is usable.
        errors: the exceptions of ``read`` that mean "skip this file".
        log: the logger of the caller's module.

    Returns:
        ``(paths, skipped)``: the usable files, resolved and sorted by name, and the count of
        candidates that ``read`` refused.

    Raises:
        ValueError: the folder does not exist, is not a folder, or holds no usable file.
    """
    root = Path(os.fspath(folder))
    if not root.is_dir():
        raise ValueError(f"{label} folder {str(root)!r} does not exist or is not a folder")
    usable, bad = [], 0
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() not in suffixes:
            continue
        try:
            read(path)
        except errors as exc:
            log.warning("skipping %s %s: %s", item, path, exc)
            bad += 1
            continue
        usable.append(path.resolve())
    if not usable:
        raise ValueError(f"{label} folder {str(root)!r} holds no {wanted}; {bad} unreadable file(s)")
    if bad:
        log.warning("%d unreadable %s file(s) in %s skipped", bad, item, root)
    return usable, bad
