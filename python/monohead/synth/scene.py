"""Scene parameters: pose and framing, lights, environment light and backgrounds.

Everything random about a sample is drawn here (or in the modules for the head, skin, hair
and glasses) into plain JSON-able dicts, so that a sample's ``params`` say exactly what was
rendered.

Frames and units. The renderer's world frame *is* the camera frame of ``conventions.md`` in
pixel units: pixel ``(r, c)`` has its centre at ``x = c``, ``y = -r``; z points toward the
viewer, and a point's z is its depth (height toward the viewer). A head vertex ``v`` (cm,
model frame) lands at ``s R (v - pivot) + t`` (:func:`pose_matrix`), with ``s`` in pixels per
cm, ``R = Rz(roll) Rx(pitch) Ry(yaw)`` and ``t`` putting the face centre at the image centre
plus an offset; the pivot is at depth 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "BACKGROUND_PHOTOS",
    "DEFAULT_MAX_YAW",
    "FACE_CENTRE",
    "MAX_YAW_LIMIT",
    "PIVOT",
    "background_image",
    "check_max_yaw",
    "check_min_yaw",
    "environment_image",
    "light_colour",
    "pose_matrix",
    "random_photo_crop",
    "sample_background",
    "sample_environment",
    "sample_lights",
    "sample_pose",
]

PIVOT = np.array([0.0, 1.0, 0.5])
"""Centre of rotation of the head (cm, model frame): about the middle of the skull."""

FACE_CENTRE = np.array([0.0, 1.5, 9.0])
"""The point that framing centres (cm, model frame): a little above the nose tip, so that the
whole head with its hair fits, as in :data:`monohead.framing.FRAMING` (a square of 2.8
face-box widths centred 0.12 widths above the face box's centre)."""

BACKGROUND_PHOTOS = (
    "brick",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "colorwheel",
    "page",
    "text",
    "moon",
    "clock",
    "cell",
    "retina",
    "motorcycle",
    "chessboard",
)
"""Photos bundled with scikit-image used as backgrounds (those showing faces are left out)."""


# --------------------------------------------------------------------------------------------
# Pose
# --------------------------------------------------------------------------------------------


DEFAULT_MAX_YAW = 75.0
"""The yaw range (±degrees) of :func:`sample_pose` unless asked otherwise: every data set made
before the range became an option (``max_yaw``) has it."""

MAX_YAW_LIMIT = 100.0
"""The widest yaw range that may be asked (±degrees): a little past the profile (90°), where
the face is turned away and little more than an ear and a cheek's edge are seen."""


def _yaw_degrees(value: Any, name: str, ok: Callable[[float], bool], span: str) -> float:
    """``value`` as a float number of degrees for which ``ok`` holds (``span`` says which, for
    the message).

    Raises:
        TypeError: not a real number (``bool`` included).
        ValueError: not finite or not ``ok``; the message names ``name`` and ``span``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number of degrees; got {type(value).__name__}")
    out = float(value)
    if not (np.isfinite(out) and ok(out)):
        raise ValueError(f"{name} must be in {span} degrees; got {value!r}")
    return out


def check_max_yaw(value: Any, name: str = "max_yaw") -> float:
    """``value`` as a yaw range in degrees, ``0 < value <= MAX_YAW_LIMIT``.

    Raises:
        TypeError: not a real number (``bool`` included).
        ValueError: not finite or out of range; the message names ``name``.
    """
    return _yaw_degrees(value, name, lambda v: 0.0 < v <= MAX_YAW_LIMIT, f"(0, {MAX_YAW_LIMIT:g}]")


def check_min_yaw(value: Any, max_yaw: float, name: str = "min_yaw") -> float:
    """``value`` as the smallest ``|yaw|`` in degrees, ``0 <= value < max_yaw``.

    Raises:
        TypeError: not a real number (``bool`` included).
        ValueError: not finite or out of range; the message names ``name``.
    """
    return _yaw_degrees(value, name, lambda v: 0.0 <= v < max_yaw, f"[0, max_yaw) = [0, {max_yaw:g})")


def sample_pose(
    rng: np.random.Generator, size: int, max_yaw: float = DEFAULT_MAX_YAW, min_yaw: float = 0.0
) -> dict[str, Any]:
    """Random head pose and framing for a ``size``-pixel square image.

    Yaw uniform in ``[-max_yaw, max_yaw]`` degrees (default ±75°, the range of every data set
    made before it was an option: the default draws exactly what it always drew); with
    ``min_yaw > 0``, ``|yaw|`` uniform in ``[min_yaw, max_yaw]``, either side alike (one draw
    from ``rng`` all the same, so the pitch, roll and framing are those of ``min_yaw = 0``).
    Pitch in [-30°, 30°], roll in [-20°, 20°] (uniform); the head's width (ear to ear, about 18.5 cm)
    covers 48 % to 72 % of the image (the framing of :mod:`monohead.photo` puts it near 60 %);
    the face centre is offset by up to 6 % of the image from its centre. (Version 2 redraws the
    scale and offset, :func:`monohead.synth.camera.sample_framing`.)

    A wider range (up to :data:`MAX_YAW_LIMIT`, e.g. 90° for profiles) stays uniform rather than
    putting extra mass near the profile: a data set made with it is meant to be mixed with ±75°
    sets, so how many profiles training sees is set by the mix, and one uniform law keeps the
    share of any yaw band easy to state (±90°: a sixth of the samples past 75°). A set of
    profiles only is ``min_yaw`` (e.g. 70 to 90: every sample near the profile).

    Raises:
        ValueError, TypeError: ``max_yaw`` not in ``(0, MAX_YAW_LIMIT]`` (:func:`check_max_yaw`),
            ``min_yaw`` not in ``[0, max_yaw)`` (:func:`check_min_yaw`).
    """
    max_yaw = check_max_yaw(max_yaw)
    min_yaw = check_min_yaw(min_yaw, max_yaw)
    if min_yaw == 0.0:
        yaw = float(rng.uniform(-max_yaw, max_yaw))  # as before the options: the same draws
    else:
        u = float(rng.uniform(-1.0, 1.0))
        yaw = math.copysign(min_yaw + abs(u) * (max_yaw - min_yaw), u)
    return {
        "yaw": yaw,
        "pitch": float(rng.uniform(-30.0, 30.0)),
        "roll": float(rng.uniform(-20.0, 20.0)),
        "scale": float(rng.uniform(0.48, 0.72) * size / 18.5),
        "offset": [float(o) for o in rng.uniform(-0.06, 0.06, 2) * size],
    }


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``R = Rz(roll) Rx(pitch) Ry(yaw)`` from degrees: yaw > 0 turns the face toward +x (the
    viewer's right), pitch > 0 tilts it up, roll > 0 turns it counter-clockwise on screen."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def pose_matrix(pose: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
    """The ``(4, 4)`` affine map from the head model frame (cm) to the world (pixel) frame.

    Args:
        pose: from :func:`sample_pose`.
        size: ``(H, W)`` of the image.
    """
    h, w = size
    rot = rotation(pose["yaw"], pose["pitch"], pose["roll"]) * float(pose["scale"])
    centre = np.array([(w - 1) / 2 + pose["offset"][0], -(h - 1) / 2 + pose["offset"][1], 0.0])
    t = centre - rot @ (FACE_CENTRE - PIVOT)
    t[2] = 0.0
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = t - rot @ PIVOT  # v_world = rot (v - PIVOT) + t
    return m


# --------------------------------------------------------------------------------------------
# Lights
# --------------------------------------------------------------------------------------------

LIGHT_KINDS = ("point", "spot", "directional")


def light_colour(rng: np.random.Generator) -> list[float]:
    """A light colour (linear RGB, max 1): mostly white at 2700-7500 K, sometimes tinted."""
    t = rng.uniform(2700.0, 7500.0)
    # A smooth fit of the blackbody's normalised RGB over 2700-7500 K.
    u = (t - 2700.0) / 4800.0
    rgb = np.array([1.0, 0.62 + 0.36 * u**0.6, 0.3 + 0.72 * u**0.8])
    if rng.random() < 0.12:
        rgb = rgb * rng.uniform(0.3, 1.0, 3)
    return [float(c) for c in rgb / rgb.max()]


def _direction(rng: np.random.Generator, front: float = 0.85) -> np.ndarray:
    """A unit direction from the head toward a light: mostly in front and above."""
    while True:
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        if d[2] > (-0.2 if rng.random() < front else -1.0):
            d[1] = abs(d[1]) * 0.8 if rng.random() < 0.75 else d[1]
            return d / np.linalg.norm(d)


def sample_lights(rng: np.random.Generator, max_lights: int = 4) -> list[dict[str, Any]]:
    """One to ``max_lights`` lights of random kind, colour and direction (JSON-able).

    Each light has ``kind`` (point, spot or directional), ``direction`` (unit vector from the
    head toward the light, world frame), ``distance`` (in head widths, for point and spot),
    ``irradiance`` (at the head; the first light is the key, the others are weaker),
    ``colour`` and, for spots, ``cutoff`` and ``beam`` (degrees).
    """
    n = int(rng.integers(1, max_lights + 1))
    lights = []
    for i in range(n):
        kind = str(rng.choice(LIGHT_KINDS, p=[0.35, 0.3, 0.35]))
        light = {
            "kind": kind,
            "direction": [float(c) for c in _direction(rng)],
            "distance": float(rng.uniform(2.0, 6.0)),
            "irradiance": float(rng.uniform(1.2, 3.0) if i == 0 else rng.uniform(0.1, 1.0)),
            "colour": light_colour(rng),
        }
        if kind == "spot":
            cutoff = float(rng.uniform(18.0, 45.0))
            light["cutoff"] = cutoff
            light["beam"] = float(cutoff * rng.uniform(0.5, 0.9))
        lights.append(light)
    return lights


def sample_environment(rng: np.random.Generator) -> dict[str, Any]:
    """Environment light: a sky-to-ground gradient with a few soft bright patches."""
    return {
        "top": light_colour(rng),
        "bottom": [float(c) for c in rng.uniform(0.2, 0.7, 3)],
        "intensity": float(rng.uniform(0.1, 0.6)),
        "patches": int(rng.integers(0, 4)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def environment_image(params: dict[str, Any], height: int = 16) -> np.ndarray:
    """``(height, 2 height, 3)`` float32 equirectangular radiance map (row 0 = up)."""
    rng = np.random.default_rng(params["seed"])
    w = 2 * height
    theta = (np.arange(height) + 0.5) / height * np.pi  # 0 = up
    up = np.cos(theta)[:, None, None]
    top, bottom = np.asarray(params["top"]), np.asarray(params["bottom"])
    t = np.clip(0.5 + 0.5 * up, 0, 1)
    img = np.broadcast_to(bottom * (1 - t) + top * t, (height, w, 3)).copy()
    for _ in range(params["patches"]):
        r, c = rng.uniform(0, height * 0.6), rng.uniform(0, w)
        s = rng.uniform(1.0, 3.0)
        rr, cc = np.mgrid[0:height, 0:w]
        dc = np.minimum(np.abs(cc - c), w - np.abs(cc - c))
        img += (rng.uniform(1.0, 4.0) * np.exp(-((rr - r) ** 2 + dc**2) / (2 * s * s)))[..., None] * np.asarray(
            light_colour(rng)
        )
    return (img * params["intensity"]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------

PATTERNS = ("solid", "gradient", "noise", "stripes", "checker", "blobs")


def sample_background(rng: np.random.Generator) -> dict[str, Any]:
    """A background: a scikit-image photo (about half the time) or a procedural pattern."""
    photo = rng.random() < 0.5
    out: dict[str, Any] = {
        "kind": "photo" if photo else str(rng.choice(PATTERNS)),
        "brightness": float(rng.uniform(0.25, 1.0)),
        "blur": float(rng.uniform(0.0, 2.0) if rng.random() < 0.5 else 0.0),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }
    if photo:
        out["photo"] = str(rng.choice(BACKGROUND_PHOTOS))
    return out


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo as ``(H, W, 3)`` float32 sRGB in [0, 1]."""
    import skimage.data

    if name == "motorcycle":
        img = skimage.data.stereo_motorcycle()[0]
    elif name == "chessboard":
        img = skimage.data.checkerboard()
    else:
        img = getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32)
    return img / 255.0 if img.max() > 1.0 else img


def random_photo_crop(
    photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator, min_fraction: float
) -> np.ndarray:
    """A random crop of ``photo`` ``(H, W, 3)`` with the aspect of ``size = (h, w)``, resized to
    ``(h, w, 3)`` (bilinear), mirrored left-right half the time.

    The crop's height is a fraction, uniform in ``[min_fraction, 1)``, of the tallest crop of
    that aspect the photo holds; its place is uniform. ``rng`` draws, in order: the fraction,
    the row, the column, the mirroring.
    """
    h, w = size
    ph, pw = photo.shape[:2]
    frac = rng.uniform(min_fraction, 1.0)
    ch = max(2, int(min(ph, pw * h / w) * frac))
    cw = max(2, min(pw, int(ch * w / h)))
    r0 = int(rng.integers(0, ph - ch + 1))
    c0 = int(rng.integers(0, pw - cw + 1))
    crop = photo[r0 : r0 + ch, c0 : c0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return ndimage.zoom(crop, (h / crop.shape[0], w / crop.shape[1], 1), order=1, grid_mode=True, mode="nearest")[
        :h, :w
    ]


def background_image(params: dict[str, Any], size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` float32 linear radiance of a background (row 0 at the top)."""
    from .textures import srgb_to_linear

    rng = np.random.default_rng(params["seed"])
    h, w = size
    kind = params["kind"]
    if kind == "photo":
        photo = _photo(params["photo"])
        img = random_photo_crop(photo, size, rng, 0.35)
        if np.allclose(photo[..., 0], photo[..., 1]):  # grey photo: tint it
            img = img * rng.uniform(0.6, 1.0, 3)
    else:
        c1, c2 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        if kind == "solid":
            t = np.zeros((h, w))
        elif kind == "gradient":
            a = rng.uniform(0, 2 * np.pi)
            t = np.cos(a) * xx + np.sin(a) * yy
            t = (t - t.min()) / max(np.ptp(t), 1e-6)
        elif kind == "noise":
            grid = rng.uniform(0, 1, (int(rng.integers(3, 12)),) * 2)
            t = ndimage.zoom(grid, (h / grid.shape[0], w / grid.shape[1]), order=3, grid_mode=True, mode="nearest")[
                :h, :w
            ]
        elif kind == "stripes":
            a = rng.uniform(0, np.pi)
            f = rng.uniform(3, 15)
            t = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * f * (np.cos(a) * xx + np.sin(a) * yy)))
        elif kind == "checker":
            f = int(rng.integers(3, 12))
            t = ((np.floor(xx * f) + np.floor(yy * f)) % 2).astype(np.float64)
        else:  # blobs
            t = np.zeros((h, w))
            for _ in range(int(rng.integers(3, 10))):
                cy, cx, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
                t += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            t = np.clip(t, 0, 1)
        img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    if params["blur"] > 0:
        img = ndimage.gaussian_filter(img, (params["blur"] * h / 128, params["blur"] * w / 128, 0))
    return (srgb_to_linear(np.clip(img, 0, 1)) * params["brightness"]).astype(np.float32)
