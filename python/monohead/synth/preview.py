"""A preview sheet in the style of the paper's Fig. 2: images, normal maps N and W maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import _io
from ..geometry import encode_png, normals_to_image

__all__ = ["preview_sheet", "w_to_image", "write_preview"]


def w_to_image(W: Any, mask: Any) -> np.ndarray:
    """``(H, W, 3)`` uint8 grey picture of a W map: ``tanh(W / 4)`` (0 black, large W white),
    black outside the mask."""
    w = np.where(np.asarray(mask, bool), np.tanh(np.nan_to_num(np.asarray(W, np.float64)) / 4.0), 0.0)
    g = np.round(np.clip(w, 0, 1) * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def preview_sheet(items: list[dict[str, Any]], gap: int = 2) -> np.ndarray:
    """Three rows (images, N, W) by ``len(items)`` columns, as one ``uint8`` RGB image.

    Args:
        items: dicts with ``image``, ``normals``, ``W`` and ``mask`` (as read by
            :class:`~monohead.synth.SyntheticHeads`), all of one size.
        gap: white pixels between tiles.
    """
    if not items:
        raise ValueError("items must hold at least one sample")
    h, w = items[0]["image"].shape[:2]
    rows = [
        [np.asarray(it["image"], np.uint8) for it in items],
        [normals_to_image(it["normals"], it["mask"]) for it in items],
        [w_to_image(it["W"], it["mask"]) for it in items],
    ]
    n = len(items)
    sheet = np.full((3 * h + 4 * gap, n * w + (n + 1) * gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            y, x = gap + r * (h + gap), gap + c * (w + gap)
            sheet[y : y + h, x : x + w] = tile
    return sheet


def write_preview(root: Any, count: int = 8, path: Any = None) -> Path:
    """Write ``preview.png`` (or ``path``) for the first ``count`` samples of a data set."""
    from .dataset import SyntheticHeads  # noqa: PLC0415

    ds = SyntheticHeads(root, partial=True)
    n = min(int(count), len(ds))
    if n == 0:
        raise ValueError(f"data set {str(root)!r} has no sample to preview")
    target = Path(root) / "preview.png" if path is None else Path(path)
    _io.atomic_write_bytes(target, encode_png(preview_sheet([ds[i] for i in range(n)])))
    return target
