"""The synthetic camera: perspective (generator version 2) or orthographic (version 1).

World frame. The renderer's world frame is the camera frame of ``docs/conventions.md`` in
pixel units: x right, y up, z toward the viewer, and pixel ``(r, c)`` (row, column) sees the
point ``(x, y) = (c, -r)`` **on the reference plane** ``z = 0`` (the plane through the head's
centre of rotation, :data:`monohead.synth.scene.PIVOT`).

- **Orthographic**: every pixel ray is parallel to −z, so pixel ``(r, c)`` sees ``(c, -r, z)``
  at every height ``z``.
- **Perspective**: a pinhole at ``O = (cx, -cy, D)`` looking down −z, with the principal point
  at the image centre ``(cx, cy) = ((W - 1) / 2, (H - 1) / 2)`` (column, row) and the focal
  length ``fx = fy = D`` in pixels, so that the reference plane is seen at exactly one
  world unit per pixel. The intrinsics in OpenCV form are
  ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (``cx`` a column, ``cy`` a row, pixel centres at
  integer coordinates), and a world point ``(x, y, z)`` has OpenCV camera coordinates
  ``(x - cx, -y - cy, D - z)``: its **depth along the optical axis** is ``Z = D - z``.

Focal length. A sample's focal length is drawn as a 35 mm-equivalent focal length ``f35`` of
the *whole photo* (24-135 mm, log-uniform: phones to portrait lenses) together with the
fraction ``k`` of the photo's width that the head crop covers (0.3-0.9): the crop then spans
``36 k`` mm of the 36 mm-wide full frame, so its focal length in crop pixels is
``fx = f35 / (36 k) * W``. The camera distance follows from the framing: the head's scale in
pixels per cm is fixed by the pose (:func:`monohead.synth.scene.sample_pose`), so the head's
centre lies ``D / scale`` cm from the camera (about 25 cm for a close selfie to 3 m for a
portrait lens).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "FOCAL_35MM",
    "FRAME_FRACTION",
    "PROJECTIONS",
    "back_project",
    "intrinsics",
    "pixel_rays",
    "project",
    "sample_camera",
    "sample_framing",
]

PROJECTIONS = ("perspective", "orthographic")
"""Camera models of :func:`sample_camera`."""

FOCAL_35MM = (24.0, 135.0)
"""Range of the 35 mm-equivalent focal length of the whole photo (mm), drawn log-uniformly."""

FRAME_FRACTION = (0.3, 0.9)
"""Range of the fraction of the photo's width that the head crop covers."""


FRAMING_FIT = {"ratio": (0.397, 0.15), "dx": (-0.002, 0.032), "dy": (0.039, 0.029)}
"""How :func:`monohead.reconstruct` frames a head, measured on version 2 renders
(``benchmarks/calibrate_framing.py``: 34 near-frontal heads at 256², the frontal cascade of
:func:`monohead.photo.detect_faces`, :func:`monohead.framing.head_box`; 3 false detections
left out): the head's width (18.5 cm at the reference plane) over the crop's side has median
``ratio[0]`` and log-standard deviation ``ratio[1]``; the framed point
(:data:`monohead.synth.scene.FACE_CENTRE`) sits ``dx``, ``dy`` crop sides right of and below the
crop's centre (mean, standard deviation)."""


def sample_framing(rng: np.random.Generator, size: tuple[int, int]) -> dict[str, Any]:
    """The head's scale and offset of a version 2 sample, as the photo pipeline frames a
    detected face (:data:`FRAMING_FIT`), with the detector's jitter.

    Returns:
        ``scale`` (pixels per cm on the reference plane) and ``offset`` ([x, y] pixels, y up)
        for :func:`monohead.synth.scene.pose_matrix`.
    """
    s = float(min(size))
    mu, sd = FRAMING_FIT["ratio"]
    ratio = float(np.clip(mu * np.exp(rng.normal(0.0, sd)), 0.25, 0.6))
    dx = float(np.clip(rng.normal(*FRAMING_FIT["dx"]), -0.1, 0.1))
    dy = float(np.clip(rng.normal(*FRAMING_FIT["dy"]), -0.06, 0.14))
    return {"scale": ratio * s / 18.5, "offset": [dx * s, -dy * s]}


def sample_camera(
    rng: np.random.Generator, size: tuple[int, int], scale: float, projection: str = "perspective"
) -> dict[str, Any]:
    """Random camera of a sample (JSON-able).

    Args:
        rng: the sample's camera stream.
        size: ``(H, W)`` of the image.
        scale: the head's scale on the reference plane, pixels per cm (``pose["scale"]``).
        projection: ``"perspective"`` or ``"orthographic"``.

    Returns:
        ``projection``; for a perspective camera also ``focal_35mm`` (mm), ``frame_fraction``,
        ``K`` (3x3 OpenCV intrinsics, pixels), ``distance`` (``D``, pixels: camera to reference
        plane) and ``distance_cm``.
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}; got {projection!r}")
    if projection == "orthographic":
        return {"projection": "orthographic"}
    h, w = size
    f35 = float(np.exp(rng.uniform(np.log(FOCAL_35MM[0]), np.log(FOCAL_35MM[1]))))
    frac = float(rng.uniform(*FRAME_FRACTION))
    fx = f35 / (36.0 * frac) * w
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return {
        "projection": "perspective",
        "focal_35mm": f35,
        "frame_fraction": frac,
        "K": [[fx, 0.0, cx], [0.0, fx, cy], [0.0, 0.0, 1.0]],
        "distance": fx,
        "distance_cm": fx / float(scale),
    }


def _check(camera: dict[str, Any] | None) -> dict[str, Any]:
    """The camera dict, ``None`` or version 1's (no ``projection``: exposure and noise only)
    standing for the orthographic camera."""
    if camera is None or (isinstance(camera, dict) and "projection" not in camera):
        return {"projection": "orthographic"}
    if not isinstance(camera, dict) or camera.get("projection") not in PROJECTIONS:
        raise ValueError(f"camera must be a dict with 'projection' in {PROJECTIONS}; got {camera!r}")
    return camera


def intrinsics(camera: dict[str, Any] | None) -> np.ndarray | None:
    """``(3, 3)`` float64 OpenCV intrinsics ``K`` of a perspective camera, ``None`` for an
    orthographic one (or ``camera=None``)."""
    cam = _check(camera)
    return None if cam["projection"] == "orthographic" else np.asarray(cam["K"], np.float64)


def pixel_rays(camera: dict[str, Any] | None, size: tuple[int, int], z_start: float) -> tuple[np.ndarray, np.ndarray]:
    """Rays through the pixel centres, row-major, in the world frame.

    Args:
        camera: a sample's ``params["camera"]`` (or ``None``: orthographic).
        size: ``(H, W)``.
        z_start: for an orthographic camera, the height the rays start from (above the scene).

    Returns:
        ``origins (H W, 3)`` and unit ``directions (H W, 3)`` float64.
    """
    cam = _check(camera)
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w]
    if cam["projection"] == "orthographic":
        o = np.column_stack([cols.ravel(), -rows.ravel(), np.full(h * w, float(z_start))]).astype(np.float64)
        return o, np.tile([0.0, 0.0, -1.0], (h * w, 1))
    K = intrinsics(cam)
    fx, cx, cy, D = K[0, 0], K[0, 2], K[1, 2], float(cam["distance"])
    d = np.column_stack([(cols.ravel() - cx) / fx * D, (cy - rows.ravel()) / fx * D, np.full(h * w, -D)])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.tile([cx, -cy, D], (h * w, 1)), d


def project(points: Any, camera: dict[str, Any] | None) -> np.ndarray:
    """Image coordinates ``(n, 2)`` = (column, row) of world points ``(n, 3)``."""
    cam = _check(camera)
    p = np.asarray(points, np.float64).reshape(-1, 3)
    if cam["projection"] == "orthographic":
        return np.column_stack([p[:, 0], -p[:, 1]])
    K = intrinsics(cam)
    fx, cx, cy, D = K[0, 0], K[0, 2], K[1, 2], float(cam["distance"])
    z = D - p[:, 2]
    return np.column_stack([cx + fx * (p[:, 0] - cx) / z, cy + fx * (-p[:, 1] - cy) / z])


def back_project(depth: Any, camera: dict[str, Any] | None) -> np.ndarray:
    """World points ``(H, W, 3)`` of a depth map (height toward the viewer ``z``, pixels): the
    point at height ``depth[r, c]`` on pixel ``(r, c)``'s ray (NaN where the depth is NaN)."""
    cam = _check(camera)
    z = np.asarray(depth, np.float64)
    h, w = z.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    if cam["projection"] == "orthographic":
        return np.stack([cols, -rows, z], axis=-1)
    K = intrinsics(cam)
    fx, cx, cy, D = K[0, 0], K[0, 2], K[1, 2], float(cam["distance"])
    t = (D - z) / fx
    return np.stack([cx + (cols - cx) * t, -cy + (cy - rows) * t, z], axis=-1)
