"""Perspective cameras for normal integration: intrinsics, slopes of the log-depth, checks.

With a pinhole camera ``K`` (OpenCV form) the integrators solve for the **log-depth**
``l = log z``, ``z`` the depth along the optical axis (positive, away from the camera), on the
same staggered grid and with the same weights as the orthographic system; only the slopes
change. The rule, pinned by ``tests/test_perspective.py``, ``tests/test_integrators.py`` and
``docs/conventions.md`` (section "Perspective"):

* ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``; pixel ``(r, c)`` (row, column) has image
  coordinates ``u = c``, ``v = r`` and the ray ``((u - cx) / fx, (v - cy) / fy, 1)`` in the
  OpenCV camera frame (x right, y down, z forward, away from the viewer).
* monohead's normals (x right, y up, z toward the viewer) are the OpenCV normal
  ``(Nx, -Ny, -Nz)``. The surface faces the camera where
  ``d = Nz - Nx (c - cx) / fx + Ny (r - cy) / fy > 0`` (``-d`` is the OpenCV normal dotted
  with the ray).
* Slopes of ``l``: ``p = dl/dc = Nx / (fx d)`` (rightwards) and ``q = -dl/dr = Ny / (fy d)``
  (one row up), the perspective counterparts of ``p = -Nx/Nz`` and ``q = -Ny/Nz``.
* Gauge: ``l`` has mean 0 over each 4-connected component of the mask, i.e. the geometric mean
  depth of each component is 1 (isolated pixels get depth 1), unless a depth prior fixes it.

BiNI's ``K.txt`` files use BiNI's own pixel frame (first axis: rows counted upwards from the
bottom, second axis: columns); :func:`K_from_bini` converts them, and :func:`read_bini_folder`
reads a whole folder in BiNI's layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate as v
from .._validate import check_K  # the one home of the intrinsics check (geometry uses it too)

__all__ = [
    "K_from_bini",
    "backproject",
    "check_K",
    "depth_mesh",
    "made",
    "check_normals_facing_camera",
    "facing_denominator",
    "perspective_slopes",
    "read_bini_folder",
]


def K_from_bini(K_bini: Any, height: int) -> np.ndarray:
    """OpenCV-form intrinsics from a BiNI ``K.txt`` matrix.

    BiNI (Cao et al., ECCV 2022, ``bilateral_normal_integration``) pairs ``K[0, 0]`` and
    ``K[0, 2]`` with the vertical pixel axis counted upwards from the bottom row
    (``H - 1 - row``) and ``K[1, 1]``, ``K[1, 2]`` with the column. In OpenCV form that is
    ``fx = K[1, 1]``, ``cx = K[1, 2]``, ``fy = K[0, 0]``, ``cy = H - 1 - K[0, 2]``.

    Args:
        K_bini: 3 x 3 matrix as read from BiNI's ``K.txt``.
        height: image height ``H`` in pixels.

    Returns:
        ``(3, 3)`` float64 ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
    """
    kb = np.asarray(K_bini, dtype=np.float64)
    if kb.shape != (3, 3):
        raise ValueError(f"K_bini must have shape (3, 3); got {v.shape_str(kb.shape)}")
    K = np.array([[kb[1, 1], 0.0, kb[1, 2]], [0.0, kb[0, 0], height - 1 - kb[0, 2]], [0.0, 0.0, 1.0]])
    check_K(K, "K_bini")
    return K


def read_bini_folder(folder: Any) -> dict[str, Any]:
    """The inputs of a folder in BiNI's layout: ``normal_map.png``, optional ``mask.png``,
    ``K.txt`` and ``prior_depth.npy``.

    ``normal_map.png`` (8 or 16 bit) stores ``N = RGB / M * 2 - 1`` (``M`` = 255 or 65535) with
    R = x right, G = y up, B = z toward the viewer (BiNI reads it with OpenCV and converts BGR to
    RGB: monohead's frame). ``mask.png``: its non-zero pixels (default: the non-black normal
    pixels). ``K.txt``: BiNI's 3 x 3 matrix in BiNI's pixel frame, converted by :func:`K_from_bini`.

    Returns:
        ``normals`` ``(H, W, 3)`` float64 (0 outside the mask), ``mask`` ``(H, W)`` bool,
        ``format`` (a description), and ``K`` (OpenCV form) and ``prior`` (the depth prior) when
        the folder has them.

    Raises:
        FileNotFoundError: no ``normal_map.png``. ValueError: an unreadable or unsuitable file
        (named in the message).
    """
    from pathlib import Path

    from ..geometry.normal_maps import decode_png

    folder = Path(folder)

    def read_png(path: Path) -> np.ndarray:
        try:
            return decode_png(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from exc

    src = folder / "normal_map.png"
    if not src.is_file():
        raise FileNotFoundError(f"{folder} has no normal_map.png (BiNI folder layout: normal_map.png, mask.png, K.txt)")
    img = read_png(src)
    if img.shape[2] < 3:
        raise ValueError(f"{src} must be an RGB image; got {img.shape[2]} channel(s)")
    rgb = img[..., :3]
    normals = rgb.astype(np.float64) * (2.0 / float(np.iinfo(rgb.dtype).max)) - 1.0
    out: dict[str, Any] = {"normals": normals, "format": f"BiNI folder ({8 * rgb.dtype.itemsize}-bit normal_map.png)"}
    mpath = folder / "mask.png"
    mask = read_png(mpath).any(axis=-1) if mpath.is_file() else rgb.any(axis=-1)
    if mask.shape != normals.shape[:2]:
        raise ValueError(f"{mpath} must have the size of normal_map.png {normals.shape[:2]}; got {mask.shape}")
    normals[~mask] = 0.0
    out["mask"] = mask
    kpath = folder / "K.txt"
    if kpath.is_file():
        try:
            kb = np.loadtxt(kpath)
        except ValueError as exc:
            raise ValueError(f"cannot read {kpath}: {exc}") from exc
        try:
            out["K"] = K_from_bini(kb, normals.shape[0])
        except ValueError as exc:
            raise ValueError(f"{kpath} (BiNI's intrinsics): {exc}") from exc
    ppath = folder / "prior_depth.npy"
    if ppath.is_file():
        out["prior"] = np.load(ppath, allow_pickle=False)
    return out


def _pixel_grid(shape: tuple[int, ...], origin: tuple[int, int], xp: Any, like: Any = None) -> tuple[Any, Any]:
    """Row and column coordinates ``(H, 1)`` and ``(1, W)`` of an ``(..., H, W)`` block at ``origin``."""
    H, W = int(shape[-2]), int(shape[-1])
    if xp.__name__ == "torch":
        kw = {"dtype": xp.float64, "device": like.device}
        rows = xp.arange(H, **kw)[:, None] + float(origin[0])
        cols = xp.arange(W, **kw)[None, :] + float(origin[1])
        return rows, cols
    rows = xp.arange(H, dtype=np.float64)[:, None] + float(origin[0])
    cols = xp.arange(W, dtype=np.float64)[None, :] + float(origin[1])
    return rows, cols


def facing_denominator(
    normals: Any, K: tuple[float, float, float, float], origin: tuple[int, int] = (0, 0), xp: Any = np
) -> Any:
    """``d = Nz - Nx (c - cx) / fx + Ny (r - cy) / fy`` per pixel (> 0: faces the camera).

    Args:
        normals: ``(..., H, W, 3)`` in monohead's frame; pixel ``[..., i, j, :]`` is image pixel
            ``(origin[0] + i, origin[1] + j)``.
        K: ``(fx, fy, cx, cy)`` from :func:`check_K`.
        origin: image coordinates of the block's first pixel (for crops and padded arrays).
        xp: :mod:`numpy`, :mod:`cupy` or :mod:`torch`.
    """
    fx, fy, cx, cy = K
    rows, cols = _pixel_grid(normals.shape[:-1], origin, xp, normals)
    return normals[..., 2] - normals[..., 0] * ((cols - cx) / fx) + normals[..., 1] * ((rows - cy) / fy)


def perspective_slopes(
    normals: Any, K: tuple[float, float, float, float], mask: Any, origin: tuple[int, int] = (0, 0), xp: Any = np
) -> tuple[Any, Any]:
    """Slopes ``(p, q)`` of the log-depth: ``p = Nx / (fx d)`` rightwards, ``q = Ny / (fy d)`` upwards.

    Zero outside ``mask``. Written with ``where`` only, so it runs with NumPy, CuPy and torch
    (autograd differentiates it).
    """
    fx, fy, _, _ = K
    d = facing_denominator(normals, K, origin, xp)
    d = xp.where(mask, d, xp.ones_like(d))
    zero = xp.zeros_like(d)
    p = xp.where(mask, normals[..., 0] / (fx * d), zero)
    q = xp.where(mask, normals[..., 1] / (fy * d), zero)
    return p, q


def check_normals_facing_camera(
    normals: Any, mask: Any, K: tuple[float, float, float, float], name: str = "normals", xp: Any = np
) -> None:
    """Raise ``ValueError`` if a normal inside ``mask`` is NaN/inf or faces away from the camera (``d <= 0``)."""
    finite = xp.isfinite(normals).all(axis=-1)
    bad = int(xp.count_nonzero(mask & ~finite))
    if bad:
        raise ValueError(f"{name} must be finite inside the mask; got {bad} pixel(s) with NaN or inf")
    # Non-finite normals outside the mask give a NaN denominator there, and NaN <= 0 is False:
    # no copy of the normals is needed to keep them out of the count.
    if xp is np:
        with np.errstate(invalid="ignore", over="ignore"):
            d = facing_denominator(normals, K, (0, 0), xp)
            away = (d <= 0) & mask
    else:
        d = facing_denominator(normals, K, (0, 0), xp)
        away = (d <= 0) & mask
    bad = int(xp.count_nonzero(away))
    if bad:
        raise ValueError(
            f"{name} must face the camera K inside the mask (Nz - Nx (c - cx)/fx + Ny (r - cy)/fy > 0); got {bad} "
            "pixel(s) facing away"
        )


def backproject(depth: Any, mask: Any, K: Any) -> np.ndarray:
    """3-D points of a perspective depth map in monohead's camera frame.

    Args:
        depth: ``(H, W)`` depth ``z`` along the optical axis (positive; any scale).
        mask: ``(H, W)`` bool; the points are the mask pixels in row-major order (the vertex
            order of :func:`monohead.geometry.depth_to_mesh`).
        K: ``(3, 3)`` intrinsics in OpenCV form.

    Returns:
        ``(n, 3)`` float64 points ``(X, Y, Z) = (z (c - cx) / fx, -z (r - cy) / fy, -z)``: x right,
        y up, z toward the viewer (the camera at the origin looks down -z).
    """
    fx, fy, cx, cy = check_K(K)
    z = np.asarray(depth, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    rows, cols = np.nonzero(m)
    zz = z[rows, cols]
    return np.column_stack([zz * (cols - cx) / fx, -zz * (rows - cy) / fy, -zz])


def depth_mesh(depth: Any, K: Any = None) -> Any:
    """Triangle mesh (``trimesh.Trimesh``) of an integrated depth map, over its finite pixels.

    Args:
        depth: ``(H, W)`` result of :func:`monohead.integrate`, NaN outside its domain: height
            toward the viewer in pixels (orthographic), or depth along the optical axis when
            ``K`` is given.
        K: ``None`` (orthographic) or the ``(3, 3)`` OpenCV intrinsics the depth was integrated with.

    Returns:
        The mesh of :func:`monohead.geometry.depth_to_mesh` (one vertex per finite pixel in
        row-major order, two counter-clockwise triangles per full 2x2 block); with ``K`` its
        vertices are moved to the camera-frame points of :func:`backproject`.
    """
    from ..geometry import depth_to_mesh

    z = np.asarray(depth, dtype=np.float64)
    mask = np.isfinite(z)
    mesh = depth_to_mesh(z, mask)
    if K is not None:
        mesh.vertices = backproject(z, mask, K)
    return mesh


def made(depth: Any, depth_gt: Any) -> float:
    """Mean absolute depth error of an up-to-scale depth map, as BiNI evaluates DiLiGenT.

    ``scale = median(depth_gt / depth)`` over the pixels where both are finite, then
    ``MADE = mean |scale * depth - depth_gt|`` over the same pixels, in the unit of
    ``depth_gt`` (mm for DiLiGenT).

    Args:
        depth: ``(H, W)`` estimated depth along the optical axis (any positive scale), NaN
            outside its domain.
        depth_gt: ``(H, W)`` ground-truth depth, NaN where unknown.
    """
    d = v.check_depth(depth, "depth")
    g = v.check_depth(depth_gt, "depth_gt", shape=d.shape)
    ok = np.isfinite(d) & np.isfinite(g) & (d != 0)
    if not bool(ok.any()):
        raise ValueError("depth and depth_gt have no finite pixel in common")
    scale = float(np.median(g[ok] / d[ok]))
    return float(np.mean(np.abs(scale * d[ok] - g[ok])))
