"""Atomic file writes: a file is either written completely or not at all.

Every writer of monohead (meshes, normal maps, figures, data sets, weights) goes through
:func:`atomic_write_bytes` or :func:`atomic_open`. The data are written to a temporary file in
the destination's folder (so that the final rename stays on one file system), flushed and
``fsync``-ed, then moved over the destination with :func:`os.replace`, which is atomic on
POSIX and Windows. On any error the temporary file is removed and the destination is left as
it was: readers never see a partial file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_files", "atomic_write_text", "check_path", "file_sha256"]


def check_path(path: Any, name: str = "path") -> str:
    """``path`` (``str`` or :class:`os.PathLike`) as a ``str``, checked to name a file in an existing folder."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike; got {type(path).__name__}")
    p = os.fspath(path)
    if not p:
        raise ValueError(f"{name} must not be empty")
    if os.path.isdir(p):
        raise ValueError(f"{name} must name a file; got the folder {p!r}")
    folder = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(folder):
        raise ValueError(f"{name} must be in an existing folder; got {p!r} (no folder {folder!r})")
    return p


def _create_temp(folder: str, base: str, dest: str | None = None) -> tuple[int, str]:
    """Create a new, empty temporary file in ``folder``; the kernel applies the umask to 0o666.

    An ``OSError`` (read-only file system, no permission, disk full) names the destination
    ``dest``, not the temporary file the user never asked for.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write: {exc.strerror}", dest or os.path.join(folder, base)) from exc
    raise FileExistsError(f"could not create a temporary file in {folder!r}")  # pragma: no cover


@contextlib.contextmanager
def atomic_open(path: Any, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit, rename it to ``path``.

    Args:
        path: destination file (``str`` or path-like) in an existing folder.
        mode: ``"wb"`` (default) or ``"w"`` (text; ``kwargs`` such as ``encoding`` go to
            :func:`open`).

    Yields:
        The open temporary file. If the ``with`` block raises, the temporary file is deleted
        and ``path`` is untouched.

    The new file gets the permissions of a file created by :func:`open` (``0o666 & ~umask``),
    not the ``0o600`` of :func:`tempfile.mkstemp`.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    p = check_path(path)
    folder = os.path.dirname(os.path.abspath(p))
    fd, tmp = _create_temp(folder, os.path.basename(p), p)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:  # e.g. disk full: name the destination, not the temporary file
                raise OSError(exc.errno, f"cannot write: {exc.strerror}", p) from exc
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable where the platform allows it (POSIX).
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def atomic_write_bytes(path: Any, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes; got {type(data).__name__}")
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: Any, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding`` (default UTF-8)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_files(files: dict[Any, bytes]) -> None:
    """Write several files all or nothing: every one is written, or none is changed.

    Each payload goes to a temporary file next to its destination (flushed and ``fsync``-ed);
    only when all of them are written are they renamed over their destinations, one
    :func:`os.replace` each. If writing any of them fails (no space, read-only folder), every
    temporary file is removed and no destination is touched. (The renames themselves, metadata
    operations in folders already shown to be writable, are not expected to fail; if one did,
    the files renamed before it would stay.)

    Args:
        files: destination path (``str`` or path-like, in an existing folder) -> bytes.
    """
    staged: list[tuple[str, str]] = []
    try:
        for path, data in files.items():
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"data for {path!s} must be bytes; got {type(data).__name__}")
            p = check_path(path)
            folder = os.path.dirname(os.path.abspath(p))
            fd, tmp = _create_temp(folder, os.path.basename(p), p)
            staged.append((tmp, p))
            with os.fdopen(fd, "wb") as f:
                try:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                except OSError as exc:
                    raise OSError(exc.errno, f"cannot write: {exc.strerror}", p) from exc
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, p in staged:
        os.replace(tmp, p)


def file_sha256(path: Any) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
