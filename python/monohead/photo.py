"""From a photo to a head mesh: detection, framing, network, integration, meshing.

``monohead.reconstruct(image)`` (this module's :func:`reconstruct`) runs the whole pipeline of
the paper on one photo:

1. **Detection** (:func:`detect_faces`, :data:`DETECTORS`): by default scikit-image's LBP
   frontal-face cascade on a copy whose long side is :data:`DETECT_SIZE` pixels (twice that
   when nothing is found); when its largest face is strong (:data:`STRONG_NEIGHBOURS`), that is
   the face. Otherwise a coarse pass of the network over the whole photo decides, with OpenCV's
   LBP profile-face cascade when no frontal face lies on the network's head mask. Both cascades
   run in monohead's compiled evaluator (``csrc/lbp_cascade.hpp``: scikit-image's detections,
   faster).
2. **Framing**: the face box is expanded to the framing the network was trained on (the whole
   head with a margin, :data:`monohead.framing.FRAMING`), cropped and resized to 128 x 128 by
   :func:`monohead.framing.crop_square`, which fills the part of the square outside the photo
   the way the training data is filled.
   **Turned heads** (``reframe=True``, the default): the head's turn is read from a network
   pass over it (the detector's coarse pass over the whole photo when it ran one and the head is
   large enough there, :data:`COARSE_TURN_MIN_WIDTH`; else the first pass on its crop):
   :func:`monohead.framing.estimate_turn`, and again by the head
   model's pose search (:func:`monohead.fullhead.estimate_pose`) when it may be turned
   (:data:`monohead.framing.TURN_SEARCH_MIN_SIZE`; its turned reading taken when plausible,
   :data:`monohead.framing.TURN_SEARCH_MAX_COST_RATIO`); a head turned
   :data:`monohead.framing.REFRAME_MIN_YAW` degrees or more is framed again from its mask as
   the training data frames a turned head (:func:`monohead.framing.reframe_box`), and the
   network runs on that crop (again, when the turn was read on the first crop's pass).
   **Crops too tight**: a head not turned whose mask in that pass is wider than
   :data:`monohead.framing.REFRAME_MAX_FILL` of its first crop (:func:`monohead.framing.head_fill`)
   is framed again the same way, centred (:func:`monohead.framing.reframe_box` at yaw 0). Other
   heads keep the first crop and its pass, unchanged.
3. **Network**: the shipped U-Net predicts the normal map N, the depth-gradient magnitude W and
   the mask (:func:`monohead.model.predict`).
4. **Integration**: weighted least squares with ``w = 1 / (1 + lam W)`` (:func:`monohead.integrate`).
5. **Meshing**: one vertex per mask pixel (:func:`monohead.geometry.depth_to_mesh`), coloured
   from the crop.

Before the network's mask is integrated, :func:`clean_mask` keeps the 4-connected component that
holds the face and fills its holes. Units: the mesh is in pixels of the 128 x 128 crop, in the
conventions' frame (x right, y up, z toward the viewer);
:meth:`Reconstruction.mesh_in_photo_units` maps it to pixels of the photo.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _validate as v
from ._env import is_torch_module
from .framing import (
    FRAMING,
    NEUTRAL,
    REFRAME_MAX_FILL,
    REFRAME_MIN_YAW,
    TURN_SEARCH_MAX_COST_RATIO,
    TURN_SEARCH_MIN_SIZE,
    TURN_SEARCH_YAWS,
    Box,
    crop_square,
    estimate_turn,
    head_box,
    head_fill,
    reframe_box,
)
from .geometry import limit_slope

__all__ = [
    "DETECT_SIZE",
    "FRAMING",
    "INPUT_SIZE",
    "Box",
    "NoFaceError",
    "Reconstruction",
    "crop_square",
    "check_image_file",
    "DETECTORS",
    "FOCAL_MM_RANGE",
    "FRAME_35MM_DIAGONAL",
    "MAX_PIXELS",
    "MESH_FORMATS",
    "MIN_FACE_COVERAGE",
    "UNITS",
    "PhotoOutput",
    "WORK_SIDE",
    "check_focal_mm",
    "clean_mask",
    "crop_intrinsics",
    "detect_faces",
    "face_rays",
    "fill_holes",
    "head_box",
    "limit_slope",
    "load_default_model",
    "load_image",
    "preview_png",
    "reconstruct",
    "reconstruct_photos",
    "shaded_view",
    "surface_points",
]

#: Side of the network's input, pixels.
INPUT_SIZE = 128
#: With ``reframe``, a head's turn is read from the detection's coarse network pass over the
#: whole photo (when the detector ran one) if the head's mask there touches its face box (else
#: the mask's largest piece, another head, would be read) and is at least this many pixels wide,
#: so that a turned head is framed again before any pass on its first crop (one network pass
#: fewer); else from that first pass. A head fills about 50 of the crop's 128 pixels.
COARSE_TURN_MIN_WIDTH = 32
#: The pose search's starting yaws (degrees) on the detection's coarse pass
#: (:data:`monohead.framing.TURN_SEARCH_YAWS` on a first crop's pass).
COARSE_TURN_SEARCH_YAWS: tuple[float, ...] = (-60.0, 0.0, 60.0)
#: Long side (pixels) of the copy of the photo that the face detector scans.
DETECT_SIZE = 160
#: Smallest Nz integrated: predicted normals closer to grazing (> 84 degrees from the viewing
#: direction, slopes |grad h| > 10) are tilted up to it before integration, as a few such
#: pixels at the silhouette otherwise throw the whole depth map off.
MIN_NZ = 0.1
#: Smallest photo accepted (pixels on each side).
MIN_SIDE = 32
#: Largest photo accepted, pixels (width x height): the decompression-bomb limit. A file
#: claiming more is refused before its pixels are decoded.
MAX_PIXELS = 120_000_000
#: Photos whose long side exceeds this many pixels are downscaled first (antialiased; JPEGs are
#: decoded at a reduced size directly): detection and cropping work on that copy, and the
#: boxes are reported in pixels of the photo as given.
WORK_SIDE = 2048
#: RGB background that images with transparency are composited on.
BACKGROUND = NEUTRAL


class NoFaceError(ValueError):
    """No face was found in the photo."""


@dataclass
class Reconstruction:
    """The result of :func:`reconstruct` for one face.

    Attributes:
        box: the square crop in photo pixels (:class:`Box`; pixels of the photo as given, even
            when it was downscaled first).
        face_box: the detected face ``(x, y, w, h)`` in photo pixels, or ``None`` without detection.
        crop: ``(128, 128, 3)`` uint8 network input.
        normals: ``(128, 128, 3)`` float32 predicted unit normals, 0 outside :attr:`mask` (in the
            holes that the clean-up filled, interpolated from the network's normals around them).
            The integration uses them with slopes limited by :func:`limit_slope`.
        W: ``(128, 128)`` float32 predicted depth-gradient magnitude, 0 outside :attr:`mask`.
        mask: ``(128, 128)`` bool, the head: the 4-connected component of :attr:`raw_mask` that
            holds the face, with its holes filled (:func:`clean_mask`).
        raw_mask: ``(128, 128)`` bool, the network's mask as predicted.
        depth: ``(128, 128)`` float64 integrated depth, crop pixels, NaN outside :attr:`mask`.
        mesh: :class:`trimesh.Trimesh`, one vertex per :attr:`mask` pixel at (column, -row,
            depth) in crop pixels (conventions), vertex colours from the crop;
            :meth:`mesh_in_photo_units` gives it in photo pixels.
        cleanup: what :func:`clean_mask` did: ``dropped_pieces`` (components of the raw mask
            left out), ``dropped_pixels``, ``filled_pixels`` (holes filled), ``face_coverage``
            (fraction of the face region inside :attr:`mask`) and ``face_covered`` (bool:
            coverage >= :data:`MIN_FACE_COVERAGE`; False means the network's mask does not
            cover the detected face, and the mesh is likely not the face).
        seconds: time per stage (``detection``, ``network``, ``integration``, ``meshing``, and
            ``full_head`` with ``full_head=True``).
        full_mesh: with ``full_head=True``, the complete head (:func:`monohead.fullhead.merge_head`:
            the fitted head model with its visible region on :attr:`depth`; watertight; crop
            pixels, same frame as :attr:`mesh`), else ``None``. With ``focal_mm`` it is in the
            perspective fit's frame instead (``docs/conventions.md``: crop pixels on the plane
            through the head's pivot, which is at ``z = 0``; the pinhole at ``(cx, -cy, fx)`` of
            ``head_fit.camera``).
        head_fit: with ``full_head=True``, the :class:`monohead.fullhead.HeadFit` (identity,
            expression, pose; ``head_fit.params()`` as JSON), else ``None``.
        yaw_estimate: the head's turn read from a network pass (degrees, positive when
            the face turns toward the image's right; :func:`monohead.framing.estimate_turn`'s, or
            the pose search's when it ran, see ``reframe`` in :func:`reconstruct`), or
            ``None`` (``reframe=False`` or ``detect=False``).
        first_box: when the head was framed again (``reframe``: turned, or its first crop too
            tight; ``turn["reframe"]`` says which), the first crop (:class:`Box`, photo pixels;
            :attr:`box` is then the second), else ``None``.
        turn: with ``reframe``, the readings behind :attr:`yaw_estimate` (degrees, rounded):
            ``cheap`` and ``size`` (:func:`monohead.framing.estimate_turn`) and, when the pose
            search ran, ``search`` (its yaw), ``normals_angle`` and ``cost``
            (:class:`monohead.fullhead.PoseEstimate`), ``cost_ratio`` (its cost over the frontal
            start's) and ``plausible`` (``cost_ratio`` at most
            :data:`monohead.framing.TURN_SEARCH_MAX_COST_RATIO`; an implausible turned reading,
            ``|search|`` of :data:`monohead.framing.REFRAME_MIN_YAW` or more, is not taken), and
            ``used``: ``"search"`` or ``"cheap"``, the reading :attr:`yaw_estimate` is, and
            ``pass``: the network pass they were read on, ``"detection"`` (the detector's coarse
            pass over the photo; :attr:`first_box` then went through the network only if it is
            :attr:`box`) or ``"first"`` (the first crop's), with ``detection``: the readings on
            the coarse pass when they were in doubt (an implausible turned search) and read
            again on the first; ``fill``: the head mask's width in that pass over the first
            crop's side (:func:`monohead.framing.head_fill`), and ``reframe``: why the head was
            framed again, ``"turn"`` (:attr:`yaw_estimate` of
            :data:`monohead.framing.REFRAME_MIN_YAW` or more), ``"tight"`` (``fill`` above
            :data:`monohead.framing.REFRAME_MAX_FILL`) or ``None`` (not framed again); else
            ``None``.
    """

    box: Box
    face_box: tuple[int, int, int, int] | None
    crop: np.ndarray
    normals: np.ndarray
    W: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    mesh: Any
    raw_mask: np.ndarray | None = None
    cleanup: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    full_mesh: Any = None
    head_fit: Any = None
    yaw_estimate: float | None = None
    first_box: Box | None = None
    turn: dict[str, Any] | None = None

    @property
    def face_covered(self) -> bool:
        """Whether the network's mask covers the detected face (see :attr:`cleanup`)."""
        return bool(self.cleanup.get("face_covered", True))

    def mesh_in_photo_units(self, mesh: Any = None) -> Any:
        """A copy of :attr:`mesh` (or of ``mesh``, e.g. :attr:`full_mesh`) in pixels of the
        photo: ``x`` = photo column, ``y`` = minus the photo row (y up, as in the conventions),
        ``z`` = depth in photo pixels (scaled by ``box.side / 128``), so that the mesh overlays
        the photo seen from the front."""
        m = (self.mesh if mesh is None else mesh).copy()
        s = self.box.side / self.crop.shape[0]
        v = np.asarray(m.vertices, dtype=np.float64) * s
        # crop pixel centre (c, r) -> photo (box.x + (c + 0.5) s, box.y + (r + 0.5) s)
        v[:, 0] += self.box.x + 0.5 * s
        v[:, 1] -= self.box.y + 0.5 * s
        m.vertices = v
        return m


# ------------------------------------------------------------------------------------ images
log = logging.getLogger(__name__)
_CANONICAL: dict[str, Any] = {}


def _canonical_map(crop: np.ndarray, normals: np.ndarray, W: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The shipped correspondence network's canonical map of one crop (mirror-averaged), or
    ``None`` (logged once) when this copy of monohead was built without it."""
    from .model.canonical import load_canonical, predict_canonical

    if "net" not in _CANONICAL:
        try:
            _CANONICAL["net"] = load_canonical()
        except FileNotFoundError as exc:
            log.warning("%s: the complete head is fitted without landmarks", exc)
            _CANONICAL["net"] = None
    net = _CANONICAL["net"]
    return None if net is None else predict_canonical(net, crop, normals, W, mask)


def load_image(image: Any, name: str = "image") -> np.ndarray:
    """A photo as a ``(H, W, 3)`` uint8 RGB array, whatever a phone or a browser made.

    Accepted:

    - a path (``str`` or :class:`os.PathLike`) to any image Pillow reads (JPEG, PNG, WebP, TIFF,
      BMP, GIF...), or a PIL image. EXIF orientation is applied (a phone's portrait JPEG comes
      out upright). Modes: RGB; grayscale (``L``, ``1``) copied to the three channels; 16-bit
      (``I;16``, ``I``: divided by 257) and 16-bit RGB; palette (``P``); ``CMYK``, ``YCbCr``,
      ``LAB``, ``HSV`` converted to RGB; images with alpha (``RGBA``, ``LA``, ``PA``, ``P``
      with transparency) composited on a neutral gray background (:data:`BACKGROUND`).
    - an array: ``(H, W)`` or ``(H, W, 1)`` grayscale, ``(H, W, 3)`` RGB, ``(H, W, 2)`` or
      ``(H, W, 4)`` with alpha (composited as above); dtype uint8, uint16 (divided by 257) or
      float in [0, 1].

    Args:
        image: the photo.
        name: the argument's name in error messages.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: not an image, an empty (0-byte) or truncated file, an image larger than
            :data:`MAX_PIXELS` pixels (decompression-bomb limit), or smaller than
            :data:`MIN_SIDE` pixels on a side.
        TypeError: an object of another kind, or an array of another dtype.
    """
    arr, _ = _read(image, name, None)
    return arr


def _read(image: Any, name: str, max_side: int | None) -> tuple[np.ndarray, float]:
    """:func:`load_image`, shrunk so that its long side is at most ``max_side`` pixels (JPEGs are
    decoded directly at a reduced size when possible); returns the array and its scale
    (array pixels per photo pixel, <= 1)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        check_image_file(path, name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    full = im.size
                    if max_side is not None and im.format == "JPEG" and max(im.size) > max_side:
                        # DCT-domain downscale (by 2, 4 or 8; fast: a 12 MP photo decodes about 4x
                        # faster at half size): the largest reduction that keeps the long side >=
                        # max_side / 2; the result is then at most max_side, so no resampling follows
                        r = max_side / (2.0 * max(im.size))
                        im.draft("RGB", (int(np.ceil(im.size[0] * r)), int(np.ceil(im.size[1] * r))))
                    im.load()
                    return _from_pil(im, f"{name}: {path}", max_side, full)
        except Image.DecompressionBombError as exc:
            raise ValueError(
                f"{name}: {path} has too many pixels ({exc}); the limit is {MAX_PIXELS} (MAX_PIXELS)"
            ) from exc
        except UnidentifiedImageError as exc:
            raise ValueError(f"{name}: {path} is not a readable image (not an image format Pillow knows)") from exc
        except OSError as exc:
            raise ValueError(f"{name}: {path} is not a readable image ({exc})") from exc
    if hasattr(image, "mode") and hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        _check_pixels(image.size, name)
        return _from_pil(image, name, max_side, image.size)
    if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        arr = _from_array(np.asarray(image), name)
        _check_pixels((arr.shape[1], arr.shape[0]), name)
        _check_side(arr, name)
        return _shrink(arr, max_side)
    raise TypeError(f"{name} must be a path, a PIL image or an image array; got {type(image).__name__}")


def check_image_file(path: Any, name: str = "image") -> tuple[int, int]:
    """Check that ``path`` is an image file within :data:`MAX_PIXELS`, reading its header only.

    Returns its ``(width, height)`` in pixels. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` (naming ``name`` and the file) for a folder, an empty file, a file that is not
    an image Pillow can read, or one that declares more than :data:`MAX_PIXELS` pixels (a
    decompression bomb: refused before anything is decoded).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{name} must be an image file; got the folder {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{name}: {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size = im.size
    except Image.DecompressionBombError as exc:
        raise ValueError(
            f"{name}: {path} has too many pixels; the limit is {MAX_PIXELS} (MAX_PIXELS): a decompression bomb?"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ValueError(f"{name}: {path} is not a readable image (not an image format Pillow knows)") from exc
    except OSError as exc:
        raise ValueError(f"{name}: {path} is not a readable image ({' '.join(str(exc).split())})") from exc
    _check_pixels(size, f"{name}: {path}")
    return size


def _check_pixels(size: tuple[int, int], what: str) -> None:
    w, h = size
    if w * h > MAX_PIXELS:
        raise ValueError(
            f"{what} has {w}x{h} = {w * h / 1e6:.0f} MP; the limit is {MAX_PIXELS / 1e6:.0f} MP "
            "(MAX_PIXELS): too many pixels to decode safely (a decompression bomb?)"
        )


def _check_side(arr: np.ndarray, what: str) -> None:
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"{what} is too small: {arr.shape[1]}x{arr.shape[0]} pixels; need at least {MIN_SIDE} on each side"
        )


def _from_pil(im: Any, what: str, max_side: int | None, full: tuple[int, int]) -> tuple[np.ndarray, float]:
    from PIL import ImageOps

    if min(im.size) == 0:
        raise ValueError(f"{what} is empty: {im.size[0]}x{im.size[1]} pixels")
    if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation (exif_transpose copies even when upright)
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        arr = _from_array(np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8), what)
    elif mode == "F":
        raise ValueError(f"{what} is a floating-point image (mode 'F'); pass it as a float array in [0, 1]")
    elif "A" in mode or "a" in mode or (mode == "P" and "transparency" in im.info):
        arr = _from_array(np.asarray(im.convert("RGBA")), what)
    else:
        arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    _check_side(arr, what)
    arr, _ = _shrink(arr, max_side)
    # ``full``: the size before any draft decoding; the long side does not change with rotation
    return np.ascontiguousarray(arr), min(1.0, max(arr.shape[:2]) / max(full))


def _from_array(arr: np.ndarray, what: str) -> np.ndarray:
    """An image array of any accepted layout and dtype as ``(H, W, 3)`` uint8 (alpha composited)."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(
            f"{what} must have shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4); got {v.shape_str(arr.shape)}"
        )
    if min(arr.shape[:2]) == 0:
        raise ValueError(f"{what} is empty: shape {v.shape_str(arr.shape)}")
    if arr.dtype == np.uint8:
        f = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        f = arr.astype(np.float32) / 65535.0
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"{what}: a float image must hold finite values in [0, 1]")
        f = arr.astype(np.float32)
    else:
        raise TypeError(f"{what} must be uint8, uint16 or float in [0, 1]; got dtype {arr.dtype}")
    c = arr.shape[-1]
    if c in (2, 4):  # alpha: composite on the neutral background
        alpha = f[..., -1:]
        f = f[..., :-1] * alpha + (1.0 - alpha) * (np.asarray(BACKGROUND, np.float32) / 255.0)[: c - 1]
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    if arr.dtype == np.uint8 and c == 3:
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray(np.clip(np.round(f * 255.0), 0, 255).astype(np.uint8))


def _shrink(arr: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Downscale (antialiased) so that the long side is at most ``max_side``; returns the scale."""
    if max_side is None or max(arr.shape[:2]) <= max_side:
        return arr, 1.0
    from PIL import Image

    s = max_side / max(arr.shape[:2])
    size = (max(1, round(arr.shape[1] * s)), max(1, round(arr.shape[0] * s)))
    out = np.asarray(Image.fromarray(arr).resize(size, Image.BILINEAR, reducing_gap=2.0))
    return out, out.shape[1] / arr.shape[1]


# ------------------------------------------------------------------------------------ detection
#: Detectors of :func:`detect_faces`: ``"frontal"`` (scikit-image's LBP frontal-face cascade,
#: the only one before), ``"cascades"`` (that one plus OpenCV's LBP profile-face cascade, shipped
#: in ``monohead/data``, on the photo and its mirror image), ``"network"`` (a coarse pass of the
#: shipped network over the whole photo, letterboxed to 128 x 128: the head mask's largest
#: components) and ``"combined"`` (the default, chosen by measurement: README, "Detection by
#: head pose"): the frontal cascade; its largest face first when it is strong
#: (:data:`STRONG_NEIGHBOURS`), and then (or else) the network's pass decides: frontal faces on
#: the network's head mask first (weak ones dropped when a strong one is there), the profile
#: cascade only when no frontal face lies on the mask, then heads only the network sees, then
#: the other cascade faces; a face on the head of an earlier one is dropped when it is off the
#: mask or much smaller, :func:`_drop_duplicates`).
DETECTORS = ("frontal", "cascades", "network", "combined")
#: Profile face boxes (the cascade's 20 x 34 window) as equivalent frontal face boxes: the side
#: is ``PROFILE_SIDE * h`` and the centre moves ``PROFILE_SHIFT * h`` toward the back of the
#: head (measured on synthetic renders with known pose).
PROFILE_SIDE = 0.83
PROFILE_SHIFT = 0.29
_CASCADES: dict[str, tuple[Any, tuple[int, int]]] = {}
#: Scale step of the cascades' windows (each window 1.15 times the previous one).
SCALE_STEP = 1.15


def _cascade_file(kind: str) -> str:
    from importlib.resources import files

    if kind == "frontal":
        from skimage import data

        return str(data.lbp_frontal_face_cascade_filename())
    return str(files("monohead") / "data" / "lbpcascade_profileface.xml")


def _cascade(kind: str) -> Any:
    """The compiled cascade (``monohead._core.LbpCascade``) of ``kind`` (``"frontal"``:
    scikit-image's LBP frontal-face cascade; ``"profile"``: OpenCV's LBP profile-face cascade,
    shipped in ``monohead/data``), read from its OpenCV XML file once, and its window
    ``(height, width)``."""
    if kind not in _CASCADES:
        import xml.etree.ElementTree as ET

        from . import integration  # noqa: F401  # sets the OpenMP spin policy before _core loads
        from ._core import LbpCascade

        tree = ET.parse(_cascade_file(kind))
        # each feature: <rect>x y w h</rect> of its top-left block -> (r, c, w, h)
        rects = [[int(t) for t in f[0].text.split()] for f in tree.find(".//features")]  # type: ignore[union-attr]
        features = np.array([[y, x, w, h] for x, y, w, h in rects], np.int32)
        stump_feature, luts, leaves, stages, thresholds = [], [], [], [], []
        for stage in tree.find(".//stages"):  # type: ignore[union-attr]
            weak = list(stage.find("weakClassifiers"))  # type: ignore[arg-type]
            stages.append([len(stump_feature), len(weak)])
            thresholds.append(float(stage.find("stageThreshold").text))  # type: ignore[union-attr, arg-type]
            for w in weak:
                nodes = [int(t) for t in w.find("internalNodes").text.split()[2:]]  # type: ignore[union-attr]
                stump_feature.append(nodes[0])
                luts.append(nodes[1:9])
                leaves.append([float(t) for t in w.find("leafValues").text.split()])  # type: ignore[union-attr]
        window = (int(tree.find(".//height").text), int(tree.find(".//width").text))  # type: ignore[union-attr, arg-type]
        core = LbpCascade(
            *window,
            1e-5,
            features,
            np.array(stump_feature, np.int32),
            np.array(luts, np.int64).astype(np.uint32),  # the tables are written as signed 32-bit
            np.array(leaves, np.float32),
            np.array(stages, np.int32),
            np.array(thresholds, np.float32),
        )
        _CASCADES[kind] = (core, window)
    return _CASCADES[kind]


def _window_scales(window: tuple[int, int], min_size: float, max_size: tuple[float, float]) -> np.ndarray:
    """The window scales (float32, :data:`SCALE_STEP` apart) of a cascade whose window is
    ``window`` ``(height, width)``: from the first whose window is at least ``min_size`` pixels
    (and scale 1) to the last under ``max_size`` ``(rows, columns)``, as scikit-image's
    ``Cascade.detect_multi_scale`` chooses them."""
    import math

    win = window
    step = float(np.float32(SCALE_STEP))
    lo = max(
        math.log(float(np.float32(min_size)) / win[0], step), math.log(float(np.float32(min_size)) / win[1], step), 0
    )
    hi = min(
        math.log(float(np.float32(max_size[0])) / win[0], step), math.log(float(np.float32(max_size[1])) / win[1], step)
    )
    return np.power(step, np.arange(lo, hi), dtype=np.float32)


def _detect_windows(
    kind: str, img: np.ndarray, min_size: float, max_size: tuple[float, float], min_neighbours: int
) -> np.ndarray:
    """Grouped cascade detections on a grayscale uint8 image: ``(N, 5)`` int32 rows
    ``r, c, width, height, members``."""
    from .integration import default_threads

    core, window = _cascade(kind)
    scales = _window_scales(window, min_size, max_size)
    return core.detect(
        np.ascontiguousarray(img, dtype=np.uint8),
        scales,
        1.0,
        min_neighbours,
        0.5,
        min(default_threads(), len(scales) or 1),
    )


Face = tuple[int, int, int, int]


def _nms(
    boxes: list[tuple[float, float, float, float]], iou_max: float = 0.3
) -> list[tuple[float, float, float, float]]:
    """Largest first; drop boxes overlapping a kept one by more than ``iou_max``."""
    kept: list[tuple[float, float, float, float]] = []
    for b in sorted(boxes, key=lambda b: -b[2] * b[3]):
        ok = True
        for k in kept:
            ix = max(0.0, min(b[0] + b[2], k[0] + k[2]) - max(b[0], k[0]))
            iy = max(0.0, min(b[1] + b[3], k[1] + k[3]) - max(b[1], k[1]))
            inter = ix * iy
            if inter / (b[2] * b[3] + k[2] * k[3] - inter) > iou_max or inter >= 0.8 * b[2] * b[3]:
                ok = False
                break
        if ok:
            kept.append(b)
    return kept


def _run_cascade(kind: str, small: np.ndarray, mirror: bool = False) -> list[tuple[float, float, float, float]]:
    """Faces found by cascade ``kind`` on the grayscale ``small`` (``mirror``: on its mirror
    image, mapped back), ``(x, y, w, h)`` in its pixels; profile windows as frontal boxes."""
    img = small[:, ::-1] if mirror else small
    found = _detect_windows(kind, img, 20, img.shape[:2], 2)
    W = img.shape[1]
    out = []
    for r, c, width, height, _ in found.tolist():
        x, y, w, h = float(c), float(r), float(width), float(height)
        if kind == "profile":  # the window covers the face seen from the side: as a frontal box
            side = PROFILE_SIDE * h
            cx = x + w / 2 + PROFILE_SHIFT * h  # the cascade finds faces looking left: the head is to the right
            x, y, w, h = cx - side / 2, y + h / 2 - side / 2, side, side
        if mirror:
            x = W - x - w
        out.append((x, y, w, h))
    return out


def _cascade_faces(
    photo: np.ndarray, detect_size: int, profile: bool, cache: dict | None = None
) -> list[tuple[float, float, float, float]]:
    """Cascade faces on a grayscale copy of the ``(H, W, 3)`` photo whose long side is
    ``detect_size`` (then twice that when nothing was found), in photo pixels. ``cache``: a dict
    that keeps each cascade's faces per copy, so that a second call on the same photo (adding
    the profile cascade) does not scan with the frontal one again."""
    from PIL import Image

    H, W = photo.shape[:2]
    cache = {} if cache is None else cache
    for size in (detect_size, 2 * detect_size):
        s = min(1.0, size / max(H, W))
        dims = (max(24, round(W * s)), max(24, round(H * s)))
        sx, sy = dims[0] / W, dims[1] / H
        kinds = [("frontal", False)] + ([("profile", False), ("profile", True)] if profile else [])
        boxes = []
        for kind in kinds:
            if (size, kind) not in cache:
                if size not in cache:
                    im = Image.fromarray(photo)
                    cache[size] = np.asarray(im.resize(dims, Image.BILINEAR, reducing_gap=2.0).convert("L"))
                cache[size, kind] = _run_cascade(kind[0], cache[size], mirror=kind[1])
            boxes += cache[size, kind]
        if boxes:
            return [(x / sx, y / sy, w / sx, h / sy) for x, y, w, h in _nms(boxes)]
        if s == 1.0:
            break
    return []


#: A frontal cascade face counts as strong when a rescan of its surroundings (the face box
#: widened by half its side each way, windows of 0.7-1.5 times it, at least 28 pixels wide)
#: finds it with at least this many overlapping windows. Measured: the frontal faces of the 9
#: real photos that have one gather 9-36 windows, the false faces (hair, snow, a temple) 0-3;
#: on the 250 synthetic renders every largest frontal face with 5 or more lies on the head
#: (README, "Detection by head pose").
STRONG_NEIGHBOURS = 8


def _is_strong(
    photo: np.ndarray, face: tuple[float, float, float, float], detect_size: int, neighbours: int = STRONG_NEIGHBOURS
) -> bool:
    """Whether the frontal cascade finds ``face`` (photo pixels) again with ``neighbours``
    overlapping windows, on the copy whose long side is ``detect_size``
    (the face at least the cascade's 24-pixel window there, else on a larger copy)."""
    from PIL import Image

    H, W = photo.shape[:2]
    x, y, w, h = face
    s = min(1.0, detect_size / max(H, W))
    s = min(1.0, max(s, 28.0 / w))  # the face at least 28 px (the window's 24 and a margin)
    x0, y0 = max(0, int(x - 0.5 * w)), max(0, int(y - 0.5 * h))
    x1, y1 = min(W, int(np.ceil(x + 1.5 * w))), min(H, int(np.ceil(y + 1.5 * h)))
    dims = (max(24, round((x1 - x0) * s)), max(24, round((y1 - y0) * s)))
    small = np.asarray(Image.fromarray(photo[y0:y1, x0:x1]).resize(dims, Image.BILINEAR, reducing_gap=2.0).convert("L"))
    ws = w * s
    big = max(24, int(np.ceil(1.5 * ws)))
    found = _detect_windows("frontal", small, max(20, int(0.7 * ws)), (big, big), neighbours)
    cx, cy = (x + w / 2 - x0) * s, (y + h / 2 - y0) * s
    return any(c <= cx <= c + width and r <= cy <= r + height for r, c, width, height, _ in found.tolist())


#: Width of the head mask's bounding box in frontal face boxes, and the offset of its centre
#: from the face box's centre (in face boxes, x right, y down): medians over the frontal
#: cascade's detections on synthetic renders (``benchmarks/detection_by_yaw.py``).
HEAD_PER_FACE = 1.64
FACE_OFFSET = (-0.045, 0.245)
#: Fraction of the network's coarse 128 x 128 pass that a head component must cover to count.
NET_MIN_AREA = 0.01


@dataclass(frozen=True)
class _Pass:
    """One network pass (no mirror averaging) over the square ``box`` (photo pixels):
    :func:`_predict`'s ``normals``, ``W`` and ``raw`` mask of its 128 x 128 crop."""

    box: Box
    normals: np.ndarray
    W: np.ndarray
    raw: np.ndarray


def _network_heads(photo: np.ndarray, model: Any) -> tuple[list[tuple[float, float, float, float, int]], Any, _Pass]:
    """Heads found by a coarse pass of the network over the whole photo (letterboxed to a square
    with :func:`monohead.framing.crop_square`'s fill): ``(heads, head_at, coarse)``. ``heads``:
    one ``(x, y, w, h, label)`` per mask component (largest first; those under 30 % of the
    largest or :data:`NET_MIN_AREA` left out): a face box related to the component's bounding box
    as the frontal cascade's boxes are to the heads of synthetic renders, and the component's
    label; ``head_at(x, y)``: the label under photo pixel ``(x, y)``, 0 off the mask; ``coarse``:
    the pass itself (:class:`_Pass`), from which :func:`reconstruct` reads a head's turn."""
    from scipy import ndimage

    H, W = photo.shape[:2]
    side = float(max(H, W))
    box = Box((W - side) / 2.0, (H - side) / 2.0, side)
    crop = crop_square(photo, box, INPUT_SIZE)
    normals, Wmap, mask = _predict(model, crop[None], flip=False)
    coarse = _Pass(box, normals[0], Wmap[0], mask[0])
    labels, n = ndimage.label(mask[0])
    px = side / INPUT_SIZE

    def head_at(x: float, y: float) -> int:
        """The label of the head component under photo pixel (x, y) (0: none)."""
        r, c = int((y - box.y) / px), int((x - box.x) / px)
        return int(labels[r, c]) if 0 <= r < INPUT_SIZE and 0 <= c < INPUT_SIZE else 0

    if n == 0:
        return [], head_at, coarse
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    slices = ndimage.find_objects(labels)
    heads = []
    for k in np.argsort(-sizes):
        if sizes[k] < max(NET_MIN_AREA * INPUT_SIZE**2, 0.3 * sizes.max()):
            break
        rs, cs = slices[k]
        # the component's bounding box related to the face box as for the frontal cascade's
        # faces on synthetic renders (head mask width = HEAD_PER_FACE face boxes, its centre
        # FACE_OFFSET face boxes from the face's)
        bx, by = box.x + cs.start * px, box.y + rs.start * px
        bw, bh = (cs.stop - cs.start) * px, (rs.stop - rs.start) * px
        fw = bw / HEAD_PER_FACE
        cx = bx + bw / 2 - FACE_OFFSET[0] * fw
        cy = by + bh / 2 - FACE_OFFSET[1] * fw
        heads.append((cx - fw / 2, cy - fw / 2, fw, fw, k + 1))
    return heads, head_at, coarse


def detect_faces(
    image: Any, detect_size: int = DETECT_SIZE, detector: str = "combined", model: Any = None
) -> list[Face]:
    """Faces in a photo, largest first, as ``(x, y, w, h)`` boxes in photo pixels.

    Args:
        image: anything :func:`load_image` takes.
        detect_size: long side (pixels) of the grayscale copy the cascades scan (faces smaller
            than about ``20 / detect_size`` of the long side are missed there); they scan twice
            that size when nothing was found. ``"combined"`` also scans finer copies for strong
            small faces when it finds no strong face (:func:`_small_faces`).
        detector: one of :data:`DETECTORS`.
        model: the network of the ``"network"`` and ``"combined"`` detectors (default: the
            shipped one), or a callable predictor as in :func:`reconstruct`.

    Profile faces are reported as the frontal box of the same head (:data:`PROFILE_SIDE`), so
    that :func:`monohead.framing.head_box` frames every face the same way. Photos larger than
    :data:`WORK_SIDE` are scanned on the downscaled copy that :func:`reconstruct` uses (boxes in
    pixels of the photo as given), so the first face is the one :func:`reconstruct` takes.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}; got {detector!r}")
    arr, scale = _read(image, "image", WORK_SIDE)
    faces = _detect(arr, detect_size, detector, model)
    if scale == 1.0:
        return faces
    return _rounded([[t / scale for t in f] for f in faces])


def _rounded(boxes: list) -> list[Face]:
    return [tuple(int(round(t)) for t in b) for b in boxes]  # type: ignore[misc]


#: Widest window (pixels) of the finer scans for small faces (:func:`_small_faces`): larger
#: faces fill at least the cascade's window on the copy half that size, scanned before.
SMALL_FACE_WINDOW = 44
#: Most candidates of a finer scan checked by :func:`_is_strong` (largest first).
SMALL_FACE_CANDIDATES = 5
#: :data:`STRONG_NEIGHBOURS` for the small faces of the finer scans, which see many more
#: windows: measured on 20 photos of 1600 x 1200 with one 40- or 48-pixel face (real photos
#: pasted on scikit-image's scenes) and on 25 synthetic renders enlarged to 1280 x 1280, the
#: true faces gather 10-38 windows, the false ones (textures, fur, the renders' backgrounds) 0-8.
SMALL_FACE_NEIGHBOURS = 10
#: A small face comes first unless a cascade face of the coarser copies lies on a network head
#: and is at least this fraction of the face box that the head implies (:data:`HEAD_PER_FACE`),
#: or is strong. Measured: true faces on the heads of enlarged renders 0.78-0.80, false faces
#: on heads the network painted into scenes (coffee, fur) 0.21-0.52.
SMALL_FACE_HEAD_FIT = 0.6
#: When no strong face is found, a weak cascade face on a network head narrower than this
#: fraction of the face box that the head implies gives way to the head's own box (a false face
#: on the hair or the body). Measured on the 250 renders of ``benchmarks/detection_by_yaw.py``
#: with the version-2 network: ``combined`` finds 228 heads with the rule (0.45: 226), 214
#: without; on the real photos it changes photo 03 only (a face on the curls -> the whole head).
WEAK_FACE_HEAD_FIT = 0.6


def _small_faces(arr: np.ndarray, detect_size: int) -> list[tuple[float, float, float, float]]:
    """Strong frontal faces too small for the copies of long side ``detect_size`` and twice
    that (under 20 / (2 ``detect_size``) of the photo's long side, e.g. 40-pixel faces in a
    1000-pixel photo), largest first, in photo pixels: the frontal cascade on copies of 4, 8...
    times ``detect_size`` (up to the photo's own size) with windows of 20 to
    :data:`SMALL_FACE_WINDOW` pixels, until one holds a strong face (:func:`_is_strong`). Empty
    for photos whose long side is at most ``2 * detect_size``."""
    from PIL import Image

    H, W = arr.shape[:2]
    im = None
    size = 4 * detect_size
    while size // 2 < max(H, W):
        s = min(1.0, size / max(H, W))
        dims = (max(24, round(W * s)), max(24, round(H * s)))
        im = Image.fromarray(arr) if im is None else im
        gray = np.asarray(im.resize(dims, Image.BILINEAR, reducing_gap=2.0).convert("L"))
        found = _detect_windows("frontal", gray, 20, (SMALL_FACE_WINDOW, SMALL_FACE_WINDOW), 2)
        boxes = sorted(((c / s, r / s, w / s, h / s) for r, c, w, h, _ in found.tolist()), key=lambda b: -b[2] * b[3])
        strong = [b for b in boxes[:SMALL_FACE_CANDIDATES] if _is_strong(arr, b, detect_size, SMALL_FACE_NEIGHBOURS)]
        if strong:
            return strong
        size *= 2
    return []


def _detect(arr: np.ndarray, detect_size: int, detector: str, model: Any, *, everywhere: bool = True) -> list[Face]:
    """Faces, in the order of :data:`DETECTORS` (:func:`_detect_faces`'s faces)."""
    return _detect_faces(arr, detect_size, detector, model, everywhere=everywhere)[0]


def _detect_faces(
    arr: np.ndarray, detect_size: int, detector: str, model: Any, *, everywhere: bool = True
) -> tuple[list[Face], _Pass | None]:
    """Faces, in the order of :data:`DETECTORS`, and the network's coarse pass over the photo
    (:func:`_network_heads`) when it ran, else ``None``.

    ``"combined"``: the frontal cascade first; when its largest face is strong
    (:func:`_is_strong`), that face comes first without the network, and without
    ``everywhere`` (only the first face wanted) the search ends there. Otherwise the finer scans
    look for small faces (:func:`_small_faces`, big photos only; without ``everywhere`` only
    when they could come first), and the network's coarse pass decides (see the comments
    inside); with ``everywhere`` it also orders the other faces.
    """
    if detector in ("frontal", "cascades"):
        boxes = sorted(_cascade_faces(arr, detect_size, profile=detector == "cascades"), key=lambda b: -b[2] * b[3])
        return _rounded(boxes), None
    net = load_default_model() if model is None else model
    if detector == "network":
        heads, _, coarse = _network_heads(arr, net)
        return _rounded([h[:4] for h in heads]), coarse
    cache: dict = {}
    frontal = sorted(_cascade_faces(arr, detect_size, False, cache), key=lambda b: -b[2] * b[3])
    first = frontal[:1] if frontal and _is_strong(arr, frontal[0], detect_size) else []
    if first and not everywhere:
        return _rounded(first), None
    # the frontal cascade's faces on the network's head mask (the face's centre on a head
    # component) first; when there are several and some are strong, the weak ones are dropped
    # (a false face on the background that the network painted as a head, as in real photo
    # 07); the profile cascade runs only when no frontal face is on the mask; then the heads the
    # network sees without any cascade face on them, then the faces only the cascades see
    heads, head_at, coarse = _network_heads(arr, net)

    def on_mask(faces: list) -> tuple[list, list]:
        by_size = sorted(faces, key=lambda b: -b[2] * b[3])
        labels = [head_at(b[0] + b[2] / 2, b[1] + b[3] / 2) for b in by_size]
        return by_size, labels

    faces, labels = on_mask(frontal)
    if not any(labels):
        faces, labels = on_mask(_cascade_faces(arr, detect_size, True, cache))
    # a weak cascade face on a network head but narrower than WEAK_FACE_HEAD_FIT of the face
    # that head implies is a false face on a part of it (the curls of real photo 03, the chest
    # or the hair of renders): the head's own face box takes its place
    if not first:
        implied = {h[4]: h[:4] for h in heads}
        faces = [
            implied[k]
            if k in implied and b[2] < WEAK_FACE_HEAD_FIT * implied[k][2] and not _is_strong(arr, b, detect_size)
            else b
            for b, k in zip(faces, labels, strict=True)
        ]
    confirmed = [b for b, k in zip(faces, labels, strict=True) if k]
    head_width = {h[4]: h[2] for h in heads}

    @functools.cache
    def any_fits() -> bool:
        """Whether a cascade face on a network head fits that head or is strong (computed once,
        when first asked: the strength test scans the face)."""
        return any(
            b[2] >= SMALL_FACE_HEAD_FIT * head_width.get(k, np.inf) or _is_strong(arr, b, detect_size)
            for b, k in zip(faces, labels, strict=True)
            if k
        )

    # faces too small for those copies (big photos only): finer copies, strong faces only; when
    # only the first face is wanted, only if one could come first (no cascade face fits a head)
    big = max(arr.shape[:2]) > 2 * detect_size  # else _small_faces finds none
    small = _small_faces(arr, detect_size) if big and not first and (everywhere or not any_fits()) else []
    # a small face inside a coarser cascade face is a part of it (an eye, the mouth)
    small = [b for b in small if not any(_contains(f, b) for f in frontal + faces)]
    if small and not any_fits():  # a small face, unless a cascade face fits a network head (or is strong)
        first = small[:1]
    looked = set(labels)  # heads with a cascade face on them, weak ones included
    strong = [b in first or _is_strong(arr, b, detect_size) for b in confirmed] if len(confirmed) > 1 else []
    if any(strong):
        weak = {b for b, ok in zip(confirmed, strong, strict=True) if not ok}
        labels = [k for b, k in zip(faces, labels, strict=True) if b not in weak]
        faces = [b for b in faces if b not in weak]
        confirmed = [b for b in confirmed if b not in weak]
    alone = [h[:4] for h in heads if h[4] not in looked]
    others = [b for b, k in zip(faces, labels, strict=True) if not k and b not in first]
    others += [b for b in small if b not in first]
    on = [True] * (len(first) + len(confirmed) + len(alone)) + [False] * len(others)
    boxes = first + [b for b in confirmed if b not in first] + alone + others
    return _rounded(_drop_duplicates(boxes, on[: len(boxes)])), coarse


def _contains(outer: tuple, inner: tuple) -> bool:
    """Whether the centre of box ``inner`` lies inside box ``outer`` (``(x, y, w, h)``)."""
    cx, cy = inner[0] + inner[2] / 2, inner[1] + inner[3] / 2
    return outer[0] <= cx <= outer[0] + outer[2] and outer[1] <= cy <= outer[1] + outer[3]


#: A face on the head of an earlier face (its centre inside that face's :func:`head_box`) and
#: narrower than this fraction of it is a second detection of the same head.
DUPLICATE_WIDTH = 0.6


def _drop_duplicates(boxes: list, on_mask: list[bool]) -> list:
    """``boxes`` (in order) without the later ones that sit on the head of an earlier kept one:
    the centre inside its :func:`head_box`, and either off the network's head mask or narrower
    than :data:`DUPLICATE_WIDTH` times it (a false face on the hair, the chin or the ear of a
    head already found). The first box is always kept."""
    kept: list = []
    for b, on in zip(boxes, on_mask, strict=True):
        cx, cy = b[0] + b[2] / 2, b[1] + b[3] / 2
        duplicate = False
        for k in kept:
            hb = head_box(k)
            inside = hb.x <= cx <= hb.x + hb.side and hb.y <= cy <= hb.y + hb.side
            if inside and (not on or b[2] < DUPLICATE_WIDTH * k[2]):
                duplicate = True
                break
        if not duplicate:
            kept.append(b)
    return kept


# ------------------------------------------------------------------------------------ pipeline
def reconstruct(
    image: Any,
    *,
    lam: float = 0.1,
    detect: bool = True,
    all_faces: bool = False,
    model: Any = None,
    method: str = "mg",
    flip: bool = True,
    detector: str = "combined",
    full_head: bool = False,
    focal_mm: float | None = None,
    reframe: bool = True,
) -> Any:
    """Reconstruct the head in a photo as a mesh (the paper's pipeline).

    Args:
        image: a path, PIL image or array in any layout :func:`load_image` takes (RGB, RGBA,
            grayscale, palette, 16-bit, CMYK, EXIF-rotated JPEG, WebP...). Photos whose long side
            exceeds :data:`WORK_SIDE` are downscaled first.
        lam: ``lam`` of the integration weights ``w = 1 / (1 + lam W)`` (paper's optimum 0.1).
        detect: find the face and frame the head; ``False`` for photos already cropped to the
            head (the photo's centred square, filled past its borders, is resized to 128 x 128).
        all_faces: return a list with one :class:`Reconstruction` per detected face (largest
            first) instead of the largest face's.
        model: a network from :func:`monohead.model.load_pretrained` (default: the shipped one,
            loaded once and cached), or any callable taking ``(B, 128, 128, 3)`` uint8 crops and
            returning ``(normals (B, 128, 128, 3), W (B, 128, 128), mask (B, 128, 128))`` in the
            conventions' frame (your own predictor).
        method: integrator method (``"mg"``, ``"jacobi"``, ``"direct"``).
        flip: average the network's outputs for the crop and its left-right mirror image
            (:func:`monohead.model.predict` ``flip``): lower error at twice the network time.
            Applies to networks (torch modules); a callable predictor is called as it is.
        detector: one of :data:`DETECTORS` (see :func:`detect_faces`).
        full_head: also fit the ICT-FaceKit head model behind the surface and merge them into
            a complete, watertight head (:mod:`monohead.fullhead`): :attr:`Reconstruction.full_mesh`
            and :attr:`Reconstruction.head_fit` (with the shipped network, ``model=None``, its
            identity and scale calibrated: ``FitSettings.identity_calibration``).
        focal_mm: with ``full_head``, the photo's focal length as a 35 mm equivalent (the
            diagonal of the photo against the 43.3 mm of a 36 x 24 mm frame; a phone's EXIF
            ``FocalLengthIn35mmFilm``): the complete head is then integrated and fitted with that
            perspective camera (:func:`crop_intrinsics`; ``fit_head(..., K=K)``) instead of
            orthographically. The 2.5D mesh is unchanged. ``None``: orthographic.
        reframe: frame turned heads again (with ``detect``): a network pass over the head
            gives its turn (:func:`monohead.framing.estimate_turn`; when its size is at least
            :data:`monohead.framing.TURN_SEARCH_MIN_SIZE`, the yaw of the head model's pose
            search on that pass's surface, :func:`monohead.fullhead.estimate_pose`, when a
            turned head fits that surface clearly better than a frontal one,
            :data:`monohead.framing.TURN_SEARCH_MAX_COST_RATIO`; in
            :attr:`Reconstruction.yaw_estimate`, the readings in :attr:`Reconstruction.turn`).
            That pass is the detector's coarse pass over the whole photo when it ran one
            (``"network"``, and ``"combined"`` without a strong frontal face) and the head's
            mask there is at least :data:`COARSE_TURN_MIN_WIDTH` pixels wide (and a turned
            reading there is plausible); else the first pass on the head's crop. When the turn
            is at least :data:`monohead.framing.REFRAME_MIN_YAW` degrees, the head is cropped
            again from that pass's mask as the training data frames turned heads
            (:func:`monohead.framing.reframe_box`) and the network runs (same ``flip``) on the
            new crop, whose outputs are the result (the first crop in
            :attr:`Reconstruction.first_box`). So is, centred (``reframe_box`` at yaw 0), a head
            whose first crop is too tight: its mask in that pass wider than
            :data:`monohead.framing.REFRAME_MAX_FILL` of the first crop's side
            (``turn["reframe"] == "tight"``). Other heads are exactly as with ``False``.
            Costs the pose search for heads that may be turned; a turned head read on the
            coarse pass costs no more network passes than one that is not, one read on its
            first crop one more.

    Returns:
        A :class:`Reconstruction`, or a list of them with ``all_faces``.

    Raises:
        NoFaceError: no face found (pass ``detect=False`` for pre-cropped input), or the
            network's mask is empty.
        monohead.fullhead.HeadFitError: with ``full_head``, a mask under 200 pixels.
        FileNotFoundError, ValueError, TypeError: unreadable or unsuitable image (see :func:`load_image`).
    """
    from . import geometry
    from .integration import integrate

    lam = v.check_lam(lam)
    focal_mm = check_focal_mm(focal_mm, full_head)
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}; got {detector!r}")
    if not isinstance(reframe, (bool, np.bool_)):
        raise TypeError(f"reframe must be True or False; got {reframe!r}")
    photo, scale = _read(image, "image", WORK_SIDE)
    net = load_default_model() if model is None else model
    t0 = time.perf_counter()
    coarse = None
    if detect:
        faces, coarse = _detect_faces(photo, DETECT_SIZE, detector, net, everywhere=all_faces)
        if not faces:
            raise NoFaceError(
                "no face found in the photo; if it is already cropped to the head, use detect=False (CLI: --no-detect)"
            )
        targets: list[tuple[Box, Any]] = [(head_box(f), f) for f in (faces if all_faces else faces[:1])]
    else:
        H, W = photo.shape[:2]
        side = float(max(H, W))
        targets = [(Box((W - side) / 2.0, (H - side) / 2.0, side), None)]
    t_detect = (time.perf_counter() - t0) / len(targets)

    t0 = time.perf_counter()
    yaws: list[float | None] = [None] * len(targets)
    first_boxes: list[Box | None] = [None] * len(targets)
    turns: list[dict[str, Any] | None] = [None] * len(targets)
    first_clean: list[tuple[np.ndarray, dict[str, Any]] | None] = [None] * len(targets)
    # heads whose turn is read on their first crop's pass (the others: on the detection's pass)
    pending = list(range(len(targets))) if reframe and detect else []
    doubts: dict[int, dict[str, Any]] = {}
    if coarse is not None and pending:
        # turned heads: the detection's coarse pass reads the turn when the head is large enough
        # there, and a turned head is framed again from its mask before any pass on its crop;
        # a turn the pose search read there but could not make plausible is read again on the
        # first pass
        pending = []
        for k, (box, face) in enumerate(targets):
            yaw, turn, (mask, info) = _read_turn(coarse, face, lam, method, COARSE_TURN_SEARCH_YAWS)
            if not (info["face_coverage"] > 0 and _wide_enough(mask, COARSE_TURN_MIN_WIDTH)):
                pending.append(k)
                continue
            if turn.get("plausible") is False and abs(turn["search"]) >= REFRAME_MIN_YAW:
                pending.append(k)
                doubts[k] = turn
                continue
            yaws[k], turns[k] = yaw, {**turn, "pass": "detection"}
            why = _reframe_reason(turns[k], yaw, box, coarse.box, mask)
            if why:
                first_boxes[k] = box
                targets[k] = (reframe_box(coarse.box, mask, yaw if why == "turn" else 0.0), face)
    crops = np.stack([crop_square(photo, b, INPUT_SIZE) for b, _ in targets])
    normals, Wmap, raw = _predict(net, crops, flip=flip)
    again = []
    for k in pending:  # turned heads: framed again from the first pass (framing.reframe_box)
        box, face = targets[k]
        yaws[k], turn, first_clean[k] = _read_turn(_Pass(box, normals[k], Wmap[k], raw[k]), face, lam, method)
        turns[k] = {**turn, "pass": "first", **({"detection": doubts[k]} if k in doubts else {})}
        why = _reframe_reason(turns[k], yaws[k], box, box, first_clean[k][0])
        if why:
            again.append(k)
            first_boxes[k] = box
            targets[k] = (reframe_box(box, first_clean[k][0], yaws[k] if why == "turn" else 0.0), face)
            crops[k] = crop_square(photo, targets[k][0], INPUT_SIZE)
    if again:  # copies: a callable predictor's arrays are not ours to change
        normals, Wmap, raw = normals.copy(), Wmap.copy(), raw.copy()
        normals[again], Wmap[again], raw[again] = _predict(net, crops[again], flip=flip)
    t_net = (time.perf_counter() - t0) / len(targets)

    results = []
    for k, (box, face) in enumerate(targets):
        t0 = time.perf_counter()
        region = _face_region(box, face)
        # a head not framed again keeps its first pass's crop and outputs, so its clean mask too
        mask, info = (
            first_clean[k] if first_clean[k] is not None and first_boxes[k] is None else clean_mask(raw[k], region)
        )
        if not mask.any():
            raise NoFaceError("the network found no head in the crop; check the framing or use detect=False")
        n_k, w_k, depth = _surface(normals[k], Wmap[k], raw[k], mask, lam, method)
        t_int = time.perf_counter() - t0
        t0 = time.perf_counter()
        mesh = geometry.depth_to_mesh(depth, mask)
        rgb = crops[k][mask]
        mesh.visual.vertex_colors = np.column_stack([rgb, np.full(len(rgb), 255, np.uint8)])
        t_mesh = time.perf_counter() - t0
        full_mesh = head_fit = None
        seconds = {"detection": t_detect, "network": t_net, "integration": t_int, "meshing": t_mesh}
        if full_head:
            from . import fullhead

            t0 = time.perf_counter()
            # the identity calibration and the correspondence network are made for the shipped
            # network's maps
            cfg = fullhead.FitSettings(identity_calibration=model is None)
            canon = _canonical_map(crops[k], normals[k], Wmap[k], mask) if model is None else None
            n_fit = limit_slope(n_k, mask, MIN_NZ)
            if focal_mm is None:
                full_mesh, head_fit = fullhead.full_head(
                    depth, n_fit, mask, w_k, colors=crops[k], settings=cfg, canonical=canon
                )
            else:
                K = crop_intrinsics(focal_mm, photo.shape[:2], box, INPUT_SIZE)
                n_fit = face_rays(n_k, mask, K, MIN_NZ)
                z = integrate(n_fit, w_k, lam, mask, method=method, K=K)
                full_mesh, head_fit = fullhead.full_head(
                    z, n_fit, mask, w_k, colors=crops[k], K=K, settings=cfg, canonical=canon
                )
            seconds["full_head"] = time.perf_counter() - t0
        results.append(
            Reconstruction(
                box=box.scaled(1.0 / scale),
                face_box=None if face is None else tuple(int(round(t / scale)) for t in face),
                crop=crops[k],
                normals=n_k.astype(np.float32),
                W=w_k.astype(np.float32),
                mask=mask,
                raw_mask=raw[k],
                depth=depth,
                mesh=mesh,
                cleanup=info,
                seconds=seconds,
                full_mesh=full_mesh,
                head_fit=head_fit,
                yaw_estimate=yaws[k],
                turn=turns[k],
                first_box=None if first_boxes[k] is None else first_boxes[k].scaled(1.0 / scale),
            )
        )
    return results if all_faces else results[0]


def _read_turn(
    p: _Pass, face: Any, lam: float, method: str, yaws: tuple[float, ...] = TURN_SEARCH_YAWS
) -> tuple[float, dict[str, Any], tuple[np.ndarray, dict[str, Any]]]:
    """A head's turn read from a network pass ``p`` over a square holding it: its mask cleaned
    around ``face`` (:func:`clean_mask`), the cheap reading (:func:`monohead.framing.estimate_turn`)
    and, when that sizes the turn :data:`monohead.framing.TURN_SEARCH_MIN_SIZE` or more, the pose
    search (:func:`_turn_search`, starting yaws ``yaws``), taken when plausible. Returns ``(yaw, turn, (mask, info))``:
    the yaw, the readings of :attr:`Reconstruction.turn` and :func:`clean_mask`'s result."""
    clean = clean_mask(p.raw, _face_region(p.box, face, p.raw.shape[0]))
    mask = clean[0]
    px = p.raw.shape[0] / p.box.side
    yaw, size = estimate_turn(p.normals, mask, ((face[0] + face[2] / 2 - p.box.x) * px, face[2] * px))
    turn: dict[str, Any] = {"cheap": round(float(yaw), 2), "size": round(float(size), 2)}
    if size >= TURN_SEARCH_MIN_SIZE:  # maybe turned: the head model's pose search reads it
        search, taken = _turn_search(p.normals, p.W, p.raw, mask, lam, method, yaws), False
        if search is not None:  # a turned reading only when a turned head fits clearly better than a frontal one
            pose, ratio = search
            plausible = bool(ratio <= TURN_SEARCH_MAX_COST_RATIO)
            taken = plausible or abs(pose.yaw) < REFRAME_MIN_YAW
            turn.update(search=round(pose.yaw, 2), normals_angle=round(pose.normals_angle, 2))
            turn.update(cost=round(pose.cost, 4), cost_ratio=round(ratio, 4), plausible=plausible)
            if taken:
                yaw = pose.yaw
        turn["used"] = "search" if taken else "cheap"
    return float(yaw), turn, clean


def _reframe_reason(turn: dict[str, Any], yaw: float, first: Box, box: Box, mask: np.ndarray) -> str | None:
    """Why a head is framed again from the mask of a pass over ``box``: ``"turn"`` (turned
    :data:`monohead.framing.REFRAME_MIN_YAW` or more), ``"tight"`` (its mask wider than
    :data:`monohead.framing.REFRAME_MAX_FILL` of its first crop ``first``), or ``None``.
    Records ``fill`` (:func:`monohead.framing.head_fill`) and ``reframe`` (the reason) in ``turn``."""
    fill = head_fill(first, box, mask) if mask.any() else 0.0
    why = "turn" if abs(yaw) >= REFRAME_MIN_YAW else "tight" if fill > REFRAME_MAX_FILL else None
    turn.update(fill=round(fill, 3), reframe=why)
    return why


def _wide_enough(mask: np.ndarray, width: int) -> bool:
    """Whether ``mask`` spans at least ``width`` columns."""
    cols = np.flatnonzero(mask.any(axis=0))
    return bool(len(cols) and cols[-1] - cols[0] + 1 >= width)


def _turn_search(
    normals: np.ndarray,
    Wmap: np.ndarray,
    raw: np.ndarray,
    mask: np.ndarray,
    lam: float,
    method: str,
    yaws: tuple[float, ...] = TURN_SEARCH_YAWS,
) -> tuple[Any, float] | None:
    """The head model's pose search (:func:`monohead.fullhead.estimate_pose`, starting yaws
    ``yaws``, by default :data:`monohead.framing.TURN_SEARCH_YAWS`; 0 among them) on a network
    pass's surface: its normals (holes filled, slopes limited) integrated over ``mask``. Returns its
    :class:`monohead.fullhead.PoseEstimate` and the ratio of its robust cost per residual to
    that of the frontal start alone (yaw 0, :data:`monohead.framing.TURN_SEARCH_MAX_COST_RATIO`),
    or ``None`` when the mask is too small to fit."""
    from . import fullhead

    if int(mask.sum()) < fullhead.MIN_MASK_PIXELS:
        return None
    n, w, depth = _surface(normals, Wmap, raw, mask, lam, method)
    try:
        pose = fullhead.estimate_pose(
            depth, limit_slope(n, mask, MIN_NZ), mask, w, settings=_turn_search_settings(yaws)
        )
    except fullhead.HeadFitError:  # the mask's largest piece is too small
        return None
    frontal = next(c for y, p, c, _ in pose.starts if y == 0.0 and p == 0.0)
    return pose, pose.cost / max(frontal, 1e-12)


def _surface(
    normals: np.ndarray, Wmap: np.ndarray, raw: np.ndarray, mask: np.ndarray, lam: float, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A network pass's surface over a clean ``mask``: ``(normals, W, depth)``, the normals and
    W with the mask's holes filled (:func:`fill_holes`) and the depth integrated from those
    normals with their slopes limited (:func:`monohead.geometry.limit_slope`, ``MIN_NZ``)."""
    from .integration import integrate

    n, w = fill_holes(normals, Wmap, raw, mask)
    return n, w, integrate(limit_slope(n, mask, MIN_NZ), w, lam, mask, method=method)


def _turn_search_settings(yaws: tuple[float, ...] = TURN_SEARCH_YAWS) -> Any:
    from .fullhead import FitSettings

    return FitSettings(yaw_candidates=yaws, pitch_candidates=())


def _predict(net: Any, crops: np.ndarray, flip: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(normals, W, mask)`` of a network (through :func:`monohead.model.predict`) or of a
    callable predictor, as float32, float32, bool arrays."""
    if callable(net) and not is_torch_module(net):
        normals, Wmap, mask = net(crops)
    else:
        from . import model as _m

        normals, Wmap, mask = _m.predict(net, crops, flip=flip)
    return (
        np.asarray(normals, dtype=np.float32),
        np.asarray(Wmap, dtype=np.float32),
        np.asarray(mask, dtype=bool),
    )


#: Smallest fraction of the face region that the cleaned mask must cover (else the result says
#: ``face_covered = False``).
MIN_FACE_COVERAGE = 0.5


def _face_region(box: Box, face: Any, size: int = INPUT_SIZE) -> np.ndarray:
    """``(size, size)`` bool: the face in crop pixels: the detected face box (its central 60 %),
    or without detection the crop's central square of side 0.25."""
    region = np.zeros((size, size), bool)
    if face is None:
        a, b = int(size * 0.375), int(round(size * 0.625))
        region[a:b, a:b] = True
        return region
    x, y, w, h = face
    s = size / box.side
    cx, cy = (x + w / 2 - box.x) * s, (y + h / 2 - box.y) * s
    hw, hh = 0.3 * w * s, 0.3 * h * s
    r0, r1 = int(np.clip(np.floor(cy - hh), 0, size)), int(np.clip(np.ceil(cy + hh), 0, size))
    c0, c1 = int(np.clip(np.floor(cx - hw), 0, size)), int(np.clip(np.ceil(cx + hw), 0, size))
    region[r0:r1, c0:c1] = True
    if not region.any():
        region[size // 2, size // 2] = True
    return region


def clean_mask(raw_mask: np.ndarray, face_region: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The head in the network's mask: the 4-connected component that holds the face, its holes filled.

    Args:
        raw_mask: ``(H, W)`` bool, the network's mask.
        face_region: ``(H, W)`` bool, where the face is (e.g. the central part of the detected
            face box in crop pixels).

    Returns:
        ``(mask, info)``: the component of ``raw_mask`` with the most pixels inside
        ``face_region`` (the largest component when none reaches it), with every hole (a
        background region it encloses, 4-connected) filled; ``info`` holds ``dropped_pieces`` and
        ``dropped_pixels`` (the other components), ``filled_pixels``, ``face_coverage`` (fraction
        of ``face_region`` inside ``mask``) and ``face_covered`` (coverage >= :data:`MIN_FACE_COVERAGE`).
    """
    from scipy import ndimage

    raw_mask = np.asarray(raw_mask, dtype=bool)
    face_region = np.asarray(face_region, dtype=bool)
    if raw_mask.ndim != 2 or face_region.shape != raw_mask.shape:
        raise ValueError(
            f"raw_mask and face_region must be (H, W) of one shape; got {raw_mask.shape} and {face_region.shape}"
        )
    four = ndimage.generate_binary_structure(2, 1)
    labels, n = ndimage.label(raw_mask, structure=four)
    info: dict[str, Any] = {
        "dropped_pieces": 0,
        "dropped_pixels": 0,
        "filled_pixels": 0,
        "face_coverage": 0.0,
        "face_covered": False,
    }
    if n == 0:
        return np.zeros_like(raw_mask), info
    idx = np.arange(1, n + 1)
    on_face = ndimage.sum_labels(face_region, labels, index=idx)
    sizes = ndimage.sum_labels(np.ones_like(raw_mask), labels, index=idx)
    keep = int(idx[np.argmax(on_face)]) if on_face.max() > 0 else int(idx[np.argmax(sizes)])
    component = labels == keep
    mask = ndimage.binary_fill_holes(component, structure=four)
    coverage = float((mask & face_region).sum() / max(face_region.sum(), 1))
    info.update(
        dropped_pieces=int(n - 1),
        dropped_pixels=int(raw_mask.sum() - component.sum()),
        filled_pixels=int(mask.sum() - component.sum()),
        face_coverage=round(coverage, 4),
        face_covered=bool(coverage >= MIN_FACE_COVERAGE),
    )
    return mask, info


def fill_holes(
    normals: np.ndarray, W: np.ndarray, raw_mask: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Normals and W on ``mask`` where the network gave them only on ``raw_mask``: the pixels of
    ``mask`` outside ``raw_mask`` (filled holes) take the mean of their already-known
    4-neighbours, peeled inward one ring at a time (the network's normals around each hole,
    spread inward; normals renormalised). Outside ``mask`` both are 0.

    Returns float64 ``(H, W, 3)`` normals and ``(H, W)`` W.
    """
    n = np.where(mask[..., None], np.asarray(normals, dtype=np.float64), 0.0)
    w = np.where(mask, np.asarray(W, dtype=np.float64), 0.0)
    known = mask & np.asarray(raw_mask, dtype=bool)
    todo = mask & ~known
    while todo.any():
        acc_n = np.zeros_like(n)
        acc_w = np.zeros_like(w)
        cnt = np.zeros(w.shape)
        for axis in (0, 1):
            for step in (1, -1):
                kn = np.roll(known, step, axis)
                if axis == 0:
                    kn[0 if step == 1 else -1, :] = False
                else:
                    kn[:, 0 if step == 1 else -1] = False
                acc_n += np.where(kn[..., None], np.roll(n, step, axis), 0.0)
                acc_w += np.where(kn, np.roll(w, step, axis), 0.0)
                cnt += kn
        ring = todo & (cnt > 0)
        if not ring.any():  # a hole with no known pixel around (cannot happen for filled holes)
            n[todo] = (0.0, 0.0, 1.0)
            break
        n[ring] = acc_n[ring] / cnt[ring, None]
        w[ring] = acc_w[ring] / cnt[ring]
        length = np.linalg.norm(n[ring], axis=1, keepdims=True)
        n[ring] = np.where(length > 1e-9, n[ring] / np.maximum(length, 1e-12), (0.0, 0.0, 1.0))
        known |= ring
        todo &= ~ring
    return n, w


_MODEL: Any = None


def load_default_model() -> Any:
    """The shipped network (:func:`monohead.model.load_pretrained`), loaded once and cached."""
    global _MODEL
    if _MODEL is None:
        from .model import load_pretrained

        _MODEL = load_pretrained()
    return _MODEL


# ------------------------------------------------------------------------------------ preview
def shaded_view(vertices: np.ndarray, normals: np.ndarray, view: str = "front", size: int = INPUT_SIZE) -> np.ndarray:
    """A grey Lambert-shaded picture of a point-dense surface, ``(size, size)`` float in [0, 1].

    An orthographic z-buffered splat of the vertices (one per pixel of a depth-map mesh, so
    the surface is dense), seen from the front (looking down -z), from the subject's left
    side (looking down -x, so the face points left) or from the back (looking down +z). The
    light comes from the viewer's upper left. Background is 1 (white).

    Args:
        vertices: ``(V, 3)`` in the conventions' frame (x right, y up, z toward the viewer).
        normals: ``(V, 3)`` unit vertex normals.
        view: ``"front"``, ``"side"`` or ``"back"``.
    """
    if view == "front":
        u, w_, depth = vertices[:, 0], vertices[:, 1], vertices[:, 2]
        light = np.array([-0.4, 0.5, 0.77])
    elif view == "side":
        u, w_, depth = -vertices[:, 2], vertices[:, 1], vertices[:, 0]
        light = np.array([0.6, 0.5, 0.62])
    elif view == "back":
        u, w_, depth = -vertices[:, 0], vertices[:, 1], -vertices[:, 2]
        light = np.array([0.4, 0.5, -0.77])
    else:
        raise ValueError(f"view must be 'front', 'side' or 'back'; got {view!r}")
    light = light / np.linalg.norm(light)
    shade = np.clip(normals @ light, 0.0, 1.0) * 0.8 + 0.15
    umin, umax, wmin, wmax = u.min(), u.max(), w_.min(), w_.max()
    span = max(umax - umin, wmax - wmin, 1e-9) * 1.08
    cu, cw = (umin + umax) / 2, (wmin + wmax) / 2
    col = np.clip(((u - cu) / span + 0.5) * (size - 1), 0, size - 1).round().astype(np.int64)
    row = np.clip((0.5 - (w_ - cw) / span) * (size - 1), 0, size - 1).round().astype(np.int64)
    flat = row * size + col
    order = np.argsort(depth)  # nearest last: later writes win
    img = np.ones(size * size)
    img[flat[order]] = shade[order]
    img = img.reshape(size, size)
    # close one-pixel holes left by the splat
    hole = img == 1.0
    nb = np.stack([np.roll(img, s, a) for a in (0, 1) for s in (1, -1)])
    filled = np.where(nb < 1.0, nb, np.nan)
    count = np.sum(~np.isnan(filled), axis=0)
    img = np.where(hole & (count >= 3), np.nanmean(np.where(count >= 3, filled, 0.0), axis=0), img)
    return img


def surface_points(mesh: Any, order: int = 2, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Points on a mesh with their normals, dense enough for a splat without holes: the
    vertices and, on each triangle, the barycentric grid of ``order`` (2: the centroid and
    the edge midpoints).

    With ``size`` (the picture's side in pixels, as given to :func:`shaded_view`), a triangle
    whose longest edge is more than half a pixel of the finest of the three views at that
    size gets a finer grid (up to order 64): without it, the large triangles of a complete
    head's neck and torso cap left gaps through which the surfaces behind showed as dark
    streaks.
    """
    from . import geometry

    verts = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces)
    if not len(faces):
        return verts, np.tile([0.0, 0.0, 1.0], (len(verts), 1))
    if size is not None and (not isinstance(size, (int, np.integer)) or size < 2):
        raise ValueError(f"size must be an integer number of pixels >= 2; got {size!r}")
    vn = geometry.vertex_normals(verts, faces)
    orders = np.full(len(faces), int(order))
    if size is not None:
        ext = verts.max(axis=0) - verts.min(axis=0)
        # shaded_view's pixel: its span (the larger extent across the view, 1.08 times) over
        # size - 1; the front and back views span x and y, the side z and y.
        pixel = 1.08 * min(max(ext[0], ext[1]), max(ext[2], ext[1])) / (size - 1)
        tri = verts[faces]
        longest = np.sqrt(np.max([((tri[:, i] - tri[:, (i + 1) % 3]) ** 2).sum(axis=1) for i in range(3)], axis=0))
        orders = np.maximum(orders, np.minimum(np.ceil(longest / (0.5 * max(pixel, 1e-12))), 64).astype(np.int64))
    pts = [verts, verts[faces].mean(axis=1)]
    nrm = [vn, vn[faces].mean(axis=1)]
    for o in np.unique(orders):
        sel = orders == o
        fv, fn = verts[faces[sel]], vn[faces[sel]]
        for i in range(o + 1):
            for j in range(o + 1 - i):
                k = o - i - j
                if max(i, j, k) == o:  # the corners are the vertices
                    continue
                w = np.array([i, j, k], np.float64) / o
                pts.append(np.einsum("c,fcd->fd", w, fv))
                nrm.append(np.einsum("c,fcd->fd", w, fn))
    vn = np.concatenate(nrm)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    return np.concatenate(pts), vn


def preview_png(result: Reconstruction, title: str = "") -> bytes:
    """The paper's Fig. 7 for one reconstruction, as PNG bytes: the crop, N, W and the mesh
    shaded from the front and from the side; with a complete head (``result.full_mesh``), a
    second row shows it from the front, the side and the back."""
    from . import _figures, geometry

    m = result.mask
    n_img = geometry.normals_to_image(result.normals, m)
    verts, vn = surface_points(result.mesh)
    full = getattr(result, "full_mesh", None)
    rows = 1 if full is None else 2
    fig = _figures.new_figure(12.5, 2.9 * rows)
    axes = np.asarray(fig.subplots(rows, 5)).reshape(rows, 5)
    panels = [
        (result.crop, "photo crop", None),
        (n_img, "normals N", None),
        (np.where(m, result.W, np.nan), "W = |grad h|", "magma"),
        (shaded_view(verts, vn, "front"), "mesh, front", "gray"),
        (shaded_view(verts, vn, "side"), "mesh, side", "gray"),
    ]
    if full is not None:
        px = 160  # the complete head's panels, pixels a side (the points dense enough for them)
        fv, fn = surface_points(full, order=5, size=px)
        panels += [
            (shaded_view(fv, fn, view, size=px), f"complete head, {view}", "gray") for view in ("front", "side", "back")
        ]
        for ax in axes[1, 3:]:
            ax.set_axis_off()
    for ax, (img, name, cmap) in zip(axes.ravel(), panels, strict=False):
        im = ax.imshow(img, cmap=cmap, vmin=0 if cmap == "gray" else None, vmax=1 if cmap == "gray" else None)
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
        if name.startswith("W"):
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _figures.png_bytes(fig)


# ------------------------------------------------------------------------------------ files
@dataclass
class PhotoOutput:
    """One face of :func:`reconstruct_photos` with its files' contents, or a photo that failed.

    Attributes:
        photo: the photo's name, as given.
        stem: the file stem: ``photo``, or ``photo_face<j>`` when a photo has several faces.
        result: the :class:`Reconstruction`, or ``None`` when the photo failed.
        mesh: the mesh file's bytes (the format and units asked for).
        preview: the preview PNG's bytes (:func:`preview_png`).
        full_mesh: the complete head's file bytes (``full_head=True``), else ``None``.
        error: why the photo failed (no face, unreadable file...), else ``None``.
    """

    photo: str
    stem: str
    result: Reconstruction | None = None
    mesh: bytes = b""
    preview: bytes = b""
    full_mesh: bytes | None = None
    error: str | None = None

    def summary(self, units: str = "crop") -> dict[str, Any]:
        """The reconstruction's facts as JSON-able values (no file names): ``units``, ``box``,
        ``face_box``, ``vertices``, ``faces``, ``face_covered``, ``cleanup``, ``seconds``,
        ``yaw_estimate``, ``first_box`` and ``turn`` (:class:`Reconstruction`) and,
        with a complete head, ``full_head`` (``vertices``, ``faces``, ``watertight``, ``fit``)."""
        rec = self.result
        if rec is None:
            raise ValueError(f"{self.photo} has no reconstruction: {self.error}")
        full = None
        if rec.full_mesh is not None:
            full = {"vertices": int(len(rec.full_mesh.vertices)), "faces": int(len(rec.full_mesh.faces)),
                    "watertight": bool(rec.full_mesh.is_watertight), "fit": rec.head_fit.params()}  # fmt: skip
        return {
            "full_head": full,
            "units": units,
            "box": [round(t, 1) for t in rec.box.as_tuple()],
            "face_box": None if rec.face_box is None else list(rec.face_box),
            "vertices": int(len(rec.mesh.vertices)),
            "faces": int(len(rec.mesh.faces)),
            "face_covered": rec.face_covered,
            "cleanup": rec.cleanup,
            "seconds": {k: round(s, 5) for k, s in rec.seconds.items()},
            "yaw_estimate": None if rec.yaw_estimate is None else round(rec.yaw_estimate, 1),
            "first_box": None if rec.first_box is None else [round(t, 1) for t in rec.first_box.as_tuple()],
            "turn": rec.turn,
        }


#: The diagonal of a 36 x 24 mm frame: a "35 mm equivalent" focal length is relative to it.
FRAME_35MM_DIAGONAL = math.hypot(36.0, 24.0)
#: The focal lengths (35 mm equivalent, mm) that ``focal_mm`` accepts: a fisheye to a long telephoto.
FOCAL_MM_RANGE = (8.0, 1200.0)


def check_focal_mm(focal_mm: Any, full_head: bool = True) -> float | None:
    """``focal_mm`` as a float (or ``None``): a finite number in :data:`FOCAL_MM_RANGE`, given
    only with ``full_head`` (only the complete head uses it)."""
    if focal_mm is None:
        return None
    if isinstance(focal_mm, bool) or not isinstance(focal_mm, numbers.Real):
        raise TypeError(f"focal_mm must be a number (mm, 35 mm equivalent) or None; got {type(focal_mm).__name__}")
    f = float(focal_mm)
    lo, hi = FOCAL_MM_RANGE
    if not (math.isfinite(f) and lo <= f <= hi):
        raise ValueError(f"focal_mm must be between {lo:g} and {hi:g} mm (35 mm equivalent); got {focal_mm!r}")
    if not full_head:
        raise ValueError("focal_mm is used by the complete head only; pass full_head=True (CLI: --full-head)")
    return f


def face_rays(normals: Any, mask: np.ndarray, K: Any, min_cos: float = 0.1) -> np.ndarray:
    """:func:`limit_slope` for a perspective camera (``limit_slope(normals, mask, min_cos, K=K)``):
    unit normals inside ``mask`` whose cosine with their pixel's ray toward the camera ``K`` is
    at least ``min_cos`` (the network's grazing normals at a short focal length can face away
    from the ray, which the perspective integrator refuses); the ones closer to grazing keep
    their direction across the ray and are tilted up to ``min_cos``. ``(H, W, 3)`` float64 copy,
    monohead's frame (``docs/conventions.md``)."""
    return limit_slope(normals, mask, min_cos, K=K)


def crop_intrinsics(focal_mm: float, photo_shape: tuple[int, int], box: Any, size: int = 128) -> np.ndarray:
    """The ``(3, 3)`` intrinsics (OpenCV form, ``docs/conventions.md``) of the ``size x size``
    crop of ``box`` (:class:`~monohead.framing.Box`, photo pixels) out of a photo of
    ``photo_shape = (H, W)`` taken at ``focal_mm`` (35 mm equivalent: the photo's diagonal is
    the 43.3 mm one of a 36 x 24 mm frame), its principal point at the photo's centre.

    Crop pixel ``(c, r)`` covers the photo around ``box.x + (c + 0.5) s``, ``box.y + (r + 0.5) s``
    with ``s = box.side / size`` (:meth:`Reconstruction.mesh_in_photo_units`).
    """
    H, W = (int(t) for t in photo_shape)
    f_photo = float(focal_mm) * math.hypot(W, H) / FRAME_35MM_DIAGONAL
    s = float(box.side) / int(size)
    cx = (0.5 * W - float(box.x)) / s - 0.5
    cy = (0.5 * H - float(box.y)) / s - 0.5
    return np.array([[f_photo / s, 0.0, cx], [0.0, f_photo / s, cy], [0.0, 0.0, 1.0]])


MESH_FORMATS = ("ply", "obj", "glb")
UNITS = ("crop", "photo")


def _mesh_bytes(mesh: Any, mesh_format: str) -> bytes:
    data = mesh.export(file_type=mesh_format)
    return data.encode("utf-8") if isinstance(data, str) else data


def reconstruct_photos(
    photos: Any,
    *,
    lam: float = 0.1,
    detect: bool = True,
    all_faces: bool = False,
    model: Any = None,
    flip: bool = True,
    detector: str = "combined",
    full_head: bool = False,
    focal_mm: float | None = None,
    reframe: bool = True,
    mesh_format: str = "ply",
    units: str = "crop",
    title: str = "{stem}",
    callback: Any = None,
) -> list[PhotoOutput]:
    """Photos to meshes and previews: :func:`reconstruct` on each photo, with the files' bytes.

    Nothing is written: the caller decides where the files go (the command line writes them all
    at once, after the last photo). A photo that fails (no face, unreadable) does not stop the
    others: its entry carries the ``error``.

    Args:
        photos: ``(name, image)`` pairs; ``image`` is anything :func:`reconstruct` takes.
        lam, detect, all_faces, model, flip, detector, full_head, focal_mm, reframe: as in
            :func:`reconstruct`.
        mesh_format: one of :data:`MESH_FORMATS` (``"ply"``, ``"obj"``, ``"glb"``).
        units: ``"crop"`` (pixels of the 128 x 128 crop) or ``"photo"``
            (:meth:`Reconstruction.mesh_in_photo_units`), for the mesh files.
        title: the previews' title, a format string with the fields ``stem``, ``photo`` and
            ``lam``.
        callback: ``callback(done, total, name)`` before each photo and ``(total, total,
            "done")`` after the last.

    Returns:
        One :class:`PhotoOutput` per face (per photo without ``all_faces``), or per failed
        photo, in the order of ``photos``.
    """
    if mesh_format not in MESH_FORMATS:
        raise ValueError(f"mesh_format must be one of {', '.join(MESH_FORMATS)}; got {mesh_format!r}")
    if units not in UNITS:
        raise ValueError(f"units must be one of {', '.join(UNITS)}; got {units!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    focal_mm = check_focal_mm(focal_mm, full_head)
    photos = list(photos)
    out: list[PhotoOutput] = []
    for k, (name, image) in enumerate(photos):
        if callback is not None:
            callback(k, len(photos), name)
        try:
            recs = reconstruct(image, lam=lam, detect=detect, all_faces=all_faces, model=model, flip=flip,
                               detector=detector, full_head=full_head, focal_mm=focal_mm,
                               reframe=reframe)  # fmt: skip
        except (ValueError, TypeError, OSError) as exc:  # no face found, unreadable photo
            out.append(PhotoOutput(name, name, error=str(exc)))
            continue
        recs = recs if isinstance(recs, list) else [recs]
        for j, rec in enumerate(recs):
            stem = name if len(recs) == 1 else f"{name}_face{j}"
            in_units = rec.mesh_in_photo_units if units == "photo" else (lambda m: m)
            full = None if rec.full_mesh is None else _mesh_bytes(in_units(rec.full_mesh), mesh_format)
            out.append(PhotoOutput(name, stem, rec, mesh=_mesh_bytes(in_units(rec.mesh), mesh_format),
                                   preview=preview_png(rec, title=title.format(stem=stem, photo=name, lam=lam)),
                                   full_mesh=full))  # fmt: skip
    if callback is not None:
        callback(len(photos), len(photos), "done")
    return out
