"""A preview sheet in the style of the paper's Fig. 2: images, normal maps N and W maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..geometry import normals_to_image

__all__ = ["beside", "image_grid", "photo_crops", "preview_sheet", "render_look", "w_to_image"]


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


def image_grid(images: list[Any], cols: int = 8, gap: int = 2, fill: int = 255) -> np.ndarray:
    """Tiles ``(H, W, 3)`` uint8 images of one size row by row, ``cols`` per row, ``gap``
    pixels of ``fill`` between them."""
    if not images:
        raise ValueError("images must hold at least one image")
    h, w = np.asarray(images[0]).shape[:2]
    rows = -(-len(images) // cols)
    sheet = np.full((rows * h + (rows + 1) * gap, cols * w + (cols + 1) * gap, 3), fill, np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        sheet[y : y + h, x : x + w] = np.asarray(img, np.uint8)[..., :3]
    return sheet


def photo_crops(folder: Any, size: int = 128) -> list[np.ndarray]:
    """The head crops the photo pipeline would give the network: for every photo in
    ``folder`` (sorted by name), the largest detected face framed by
    :func:`monohead.framing.head_box` and cut by :func:`monohead.framing.crop_square`; the
    centre square when no face is found. Unreadable files are skipped."""
    from ..framing import crop_square, head_box
    from ..photo import detect_faces, load_image

    out = []
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            img = load_image(str(path))
        except (OSError, ValueError):
            continue
        faces = detect_faces(img) if min(img.shape[:2]) >= 32 else []
        if faces:
            box = head_box(tuple(float(t) for t in faces[0][:4]))
        else:
            side = float(min(img.shape[:2]))
            box = ((img.shape[1] - side) / 2, (img.shape[0] - side) / 2, side)
        out.append(crop_square(img, box, size))
    return out


def render_look(
    count: int = 64,
    seed: int = 0,
    size: int = 128,
    spp: int = 9,
    progress: Any = None,
    version: int | None = None,
    max_yaw: float | None = None,
    min_yaw: float | None = None,
) -> list[np.ndarray]:
    """Images of samples ``0 .. count-1`` of a generator version (default the newest) with
    ``seed`` (``progress(k)`` after each); ``max_yaw``, ``min_yaw``: the yaw range (default
    75° and 0, :func:`.scene.sample_pose`)."""
    from .generator import GENERATOR_VERSION, Generator
    from .scene import DEFAULT_MAX_YAW

    gen = Generator(
        size,
        spp=spp,
        version=GENERATOR_VERSION if version is None else version,
        max_yaw=DEFAULT_MAX_YAW if max_yaw is None else max_yaw,
        min_yaw=0.0 if min_yaw is None else min_yaw,
    )
    out = []
    for i in range(count):
        out.append(gen.sample(seed, i)["image"])
        if progress is not None:
            progress(i + 1)
    return out


def beside(sheet: np.ndarray, images: list[Any], fill: int = 255) -> np.ndarray:
    """``sheet`` (e.g. an :func:`image_grid` of renders) with ``images`` tiled to its right.

    The images (``(s, s, 3)`` uint8, one size) are laid out by :func:`image_grid` in as many
    columns as it takes to fit the sheet's height, ``3 s / 8`` pixels of ``fill`` away from it; the
    shorter of the two sides is padded with ``fill`` at the bottom. No images: ``sheet`` as it is.
    """
    sheet = np.asarray(sheet, np.uint8)
    if not images:
        return sheet
    size = np.asarray(images[0]).shape[0]
    right = image_grid(images, cols=max(1, -(-len(images) // max(1, sheet.shape[0] // (size + 2)))), fill=fill)
    height = max(sheet.shape[0], right.shape[0])

    def pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.full((height - a.shape[0], a.shape[1], 3), fill, np.uint8)])

    gap = np.full((height, 3 * size // 8, 3), fill, np.uint8)
    return np.concatenate([pad(sheet), gap, pad(right)], axis=1)
