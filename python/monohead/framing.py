"""Head framing shared by the photo pipeline and the training-data generator.

One place defines how a head is framed for the network and how the part of a crop that lies
outside the photo is filled, so that the crops the network sees at run time
(:func:`monohead.reconstruct`) and the ones it was trained on (:mod:`monohead.synth`) are made
by the same code:

- :data:`FRAMING` and :func:`head_box`: the square head crop around a face box.
- :func:`crop_square`: cut a square box out of a photo and resize it, filling whatever lies
  outside the photo with :func:`fill_outside`.
- :func:`fill_outside`: the fill rule. Pixels outside the photo take the **mean colour of the
  photo's pixels along the cut edges** (a band :data:`EDGE_BAND` output pixels deep inside the
  crop), reached by a **soft fade**: a filled pixel at distance ``d`` (output pixels) from the
  nearest photo pixel is ``mean + (edge - mean) * exp(-d / (FADE * size))``, with ``edge`` the
  colour of that nearest photo pixel. No streaks (unlike repeating edge pixels), no hard
  straight contour (unlike a constant fill), and no information the photo does not hold.
  A crop entirely outside the photo is filled with :data:`NEUTRAL` gray.

Boxes are in photo pixels: ``x`` to the right (columns), ``y`` down (rows), the photo covering
``[0, W] x [0, H]`` (pixel ``(r, c)`` is the unit square at ``[c, c+1] x [r, r+1]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EDGE_BAND", "FADE", "FRAMING", "NEUTRAL", "Box", "crop_square", "fill_outside", "head_box", "inside_mask"]

#: Head framing from a face box ``(x, y, w, h)``: the crop is a square of side ``scale * w``
#: centred at the face box's centre moved by ``dy * w`` (positive = down).
FRAMING = {"scale": 2.8, "dy": -0.12}
#: Fade length of :func:`fill_outside`, as a fraction of the crop's side (0.04: 5 px at 128).
FADE = 0.04
#: Depth (output pixels) of the band of photo pixels along a cut edge whose mean colour fills
#: the outside.
EDGE_BAND = 3
#: Fill (RGB) of a crop that holds no photo pixel at all.
NEUTRAL = (128, 128, 128)


@dataclass(frozen=True)
class Box:
    """A square crop in photo pixels: top-left corner ``(x, y)`` (column, row) and ``side``.

    It may extend past the photo's borders (filled by :func:`fill_outside` when cropping).
    """

    x: float
    y: float
    side: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.side)

    def scaled(self, s: float) -> Box:
        """The same box in a photo resized by the factor ``s``."""
        return Box(self.x * s, self.y * s, self.side * s)


def head_box(face_box: tuple[float, float, float, float], framing: dict[str, float] | None = None) -> Box:
    """The square head crop (:data:`FRAMING`) around a face box ``(x, y, w, h)`` in photo pixels."""
    f = FRAMING if framing is None else framing
    x, y, w, h = (float(t) for t in face_box)
    if not w > 0 or not h > 0:
        raise ValueError(f"face_box must have a positive width and height; got {tuple(face_box)}")
    side = f["scale"] * w
    cx, cy = x + w / 2.0, y + h / 2.0 + f["dy"] * w
    return Box(cx - side / 2.0, cy - side / 2.0, side)


def inside_mask(shape: tuple[int, int], box: Box, size: int) -> np.ndarray:
    """``(size, size)`` bool: the output pixels of a ``size``-pixel crop of ``box`` that come
    from the photo of ``shape = (H, W)``.

    Conservative: an output pixel counts as inside only when its whole footprint (one output
    pixel around its centre) lies inside the photo, so no resampling filter reaches past the
    border (a crop edge pixel that straddles the border is filled).
    """
    H, W = shape
    step = box.side / size
    centres = (np.arange(size) + 0.5) * step
    half = 0.5 * max(step, 1.0)
    cols = (box.x + centres - half >= 0) & (box.x + centres + half <= W)
    rows = (box.y + centres - half >= 0) & (box.y + centres + half <= H)
    return rows[:, None] & cols[None, :]


def fill_outside(crop: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Fill the pixels of a square crop that lie outside the photo (the rule in the module doc).

    Args:
        crop: ``(S, S, 3)`` uint8 crop; pixels where ``inside`` is False are ignored.
        inside: ``(S, S)`` bool, True for pixels that come from the photo.

    Returns:
        A ``(S, S, 3)`` uint8 copy, photo pixels unchanged, the others filled.
    """
    crop = np.asarray(crop)
    inside = np.asarray(inside, dtype=bool)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1] or crop.dtype != np.uint8:
        raise ValueError(f"crop must be a square (S, S, 3) uint8 image; got shape {crop.shape} dtype {crop.dtype}")
    if inside.shape != crop.shape[:2]:
        raise ValueError(f"inside must have shape {crop.shape[:2]}; got {inside.shape}")
    if inside.all():
        return crop.copy()
    out = crop.copy()
    if not inside.any():
        out[:] = NEUTRAL
        return out
    from scipy import ndimage

    size = crop.shape[0]
    dist_out, (ri, ci) = ndimage.distance_transform_edt(~inside, return_indices=True)
    band = inside & (ndimage.distance_transform_edt(inside) <= EDGE_BAND)
    mean = crop[band].reshape(-1, 3).mean(axis=0)
    edge = crop[ri, ci].astype(np.float64)
    fade = np.exp(-dist_out / (FADE * size))[..., None]
    filled = mean + (edge - mean) * fade
    out[~inside] = np.clip(np.round(filled[~inside]), 0, 255).astype(np.uint8)
    return out


def crop_square(image: np.ndarray, box: Box | tuple[float, float, float], size: int) -> np.ndarray:
    """Cut the square ``box`` out of a photo, resize it to ``size x size`` and fill the part
    outside the photo with :func:`fill_outside`.

    Args:
        image: ``(H, W, 3)`` uint8 photo.
        box: :class:`Box` or ``(x, y, side)`` in photo pixels; may extend past the borders.
        size: side of the output, pixels.

    Returns:
        ``(size, size, 3)`` uint8 crop (bilinear, antialiased when shrinking).
    """
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 photo; got shape {image.shape} dtype {image.dtype}")
    box = box if isinstance(box, Box) else Box(*(float(t) for t in box))
    if not box.side > 0 or not np.isfinite(box.as_tuple()).all():
        raise ValueError(f"box must have a finite position and a positive side; got {box.as_tuple()}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer; got {size!r}")
    size = int(size)
    H, W = image.shape[:2]
    x0, y0 = int(np.floor(box.x)), int(np.floor(box.y))
    x1, y1 = int(np.ceil(box.x + box.side)), int(np.ceil(box.y + box.side))
    # the region of the photo under the box (PIL's crop fills the rest with black, which
    # fill_outside then replaces)
    region = Image.fromarray(image).crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))
    sub = (box.x - x0, box.y - y0, box.x - x0 + box.side, box.y - y0 + box.side)
    crop = np.array(region.resize((size, size), Image.BILINEAR, box=sub, reducing_gap=2.0))
    inside = inside_mask((H, W), box, size)
    return crop if inside.all() else fill_outside(crop, inside)
