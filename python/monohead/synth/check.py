"""Independent checks of the rendered ground truth.

- :func:`raycast_ground_truth` computes a sample's normal, depth and mask maps a second way,
  sharing nothing with the renderer but the posed head mesh: trimesh's angle-weighted vertex
  normals (its own implementation of eq. 2) and Embree ray casting through trimesh and
  ``embreex`` (one ray per pixel centre, straight down −z, the occluders absent).
- :func:`compare_ground_truth` measures how far the two agree.
- :func:`finite_difference_agreement` compares N with the normals of the finite differences
  of the depth (:func:`monohead.geometry.normals_from_depth`) on interior pixels.

Needs ``trimesh`` and ``embreex`` (``pip install 'monohead[synth-check]'``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .. import geometry
from .render import MIN_NZ

__all__ = ["compare_ground_truth", "finite_difference_agreement", "raycast_ground_truth"]


def raycast_ground_truth(vertices: Any, faces: Any, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Normal, depth and mask maps of a mesh by Embree ray casting at pixel centres.

    Args:
        vertices: ``(V, 3)`` posed head and eye vertices in the world (pixel) frame: pixel
            ``(r, c)`` is centred at ``x = c, y = -r``, z toward the viewer.
        faces: ``(F, 3)`` triangles (head and eyes only).
        size: ``(H, W)``.

    Returns:
        ``normals (H, W, 3)``, ``depth (H, W)`` (NaN outside the mask) and ``mask (H, W)``,
        with the renderer's rule: a pixel is in the mask if its ray hits the mesh and the
        interpolated normal has ``Nz > MIN_NZ``.
    """
    import trimesh  # noqa: PLC0415

    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - embreex is a test dependency
        raise ImportError("raycast_ground_truth needs embreex: pip install embreex") from exc
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    mesh = trimesh.Trimesh(v, f, process=False, validate=False)
    vn = np.asarray(mesh.vertex_normals)  # trimesh: face normals weighted by the corner angles
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w]
    top = v[:, 2].max() + 10.0
    origins = np.column_stack([cols.ravel(), -rows.ravel(), np.full(h * w, top)]).astype(np.float64)
    dirs = np.tile([0.0, 0.0, -1.0], (h * w, 1))
    tri, ray, loc = RayMeshIntersector(mesh).intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
    normals = np.zeros((h * w, 3))
    depth = np.full(h * w, np.nan)
    if len(tri):
        bary = trimesh.triangles.points_to_barycentric(v[f[tri]], loc)
        n = np.einsum("nk,nkc->nc", bary, vn[f[tri]])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        normals[ray] = n
        depth[ray] = loc[:, 2]
    normals = normals.reshape(h, w, 3)
    mask = np.isfinite(depth.reshape(h, w)) & (normals[..., 2] > MIN_NZ)
    normals[~mask] = 0.0
    return {"normals": normals, "depth": np.where(mask, depth.reshape(h, w), np.nan), "mask": mask}


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles in degrees between rows of unit vectors, robust near 0 (atan2 of |a x b|, a.b)."""
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(axis=-1)))


def compare_ground_truth(rendered: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Agreement of two sets of ground-truth maps (``normals``, ``depth``, ``mask``).

    Returns:
        ``mean_angle`` and ``max_angle`` (degrees, over pixels in both masks),
        ``mask_pixels`` (in the rendered mask), ``mask_diff`` (pixels in one mask only),
        ``mask_diff_interior`` (of those, pixels not next to the background of either mask:
        0 when the differences are all on silhouettes), ``depth_max`` (largest depth difference
        in pixels over both masks).
    """
    m1, m2 = np.asarray(rendered["mask"], bool), np.asarray(reference["mask"], bool)
    both = m1 & m2
    ang = _angles(np.asarray(rendered["normals"], np.float64)[both], np.asarray(reference["normals"], np.float64)[both])
    diff = m1 ^ m2
    edge = ~ndimage.binary_erosion(m1 | m2, iterations=1, border_value=0) | ~ndimage.binary_erosion(m1 & m2, border_value=0)
    d = np.abs(np.asarray(rendered["depth"], np.float64)[both] - np.asarray(reference["depth"], np.float64)[both])
    return {
        "mean_angle": float(ang.mean()) if ang.size else 0.0,
        "max_angle": float(ang.max()) if ang.size else 0.0,
        "mask_pixels": int(m1.sum()),
        "mask_diff": int(diff.sum()),
        "mask_diff_interior": int((diff & ~edge).sum()),
        "depth_max": float(d.max()) if d.size else 0.0,
    }


def finite_difference_agreement(normals: Any, depth: Any, mask: Any, margin: int = 2, max_step: float = 2.0) -> dict[str, float]:
    """Angles between N and the normals of the depth's finite differences, on interior pixels.

    Interior pixels are ``margin`` pixels inside the mask and away from depth steps (a
    neighbour whose depth differs by more than ``max_step`` pixels plus what N predicts),
    where finite differences cannot stand for the surface.

    Returns:
        ``mean``, ``median`` and ``p95`` angle (degrees) and ``pixels`` (interior pixels).
    """
    n = np.asarray(normals, np.float64)
    h = np.asarray(depth, np.float64)
    m = np.asarray(mask, bool)
    fd = geometry.normals_from_depth(h, m)
    inner = ndimage.binary_erosion(m, iterations=margin, border_value=0)
    p, q = geometry.normals_to_gradients(n, m)
    hz = np.where(m, h, 0.0)
    step = np.zeros_like(m)
    # Horizontal and vertical neighbours: |h(nb) - h - predicted| beyond max_step flags both.
    dx = np.abs(hz[:, 1:] - hz[:, :-1] - 0.5 * (p[:, 1:] + p[:, :-1])) > max_step
    dy = np.abs(hz[:-1, :] - hz[1:, :] - 0.5 * (q[:-1, :] + q[1:, :])) > max_step
    step[:, 1:] |= dx
    step[:, :-1] |= dx
    step[:-1, :] |= dy
    step[1:, :] |= dy
    step = ndimage.binary_dilation(step, iterations=margin)
    sel = inner & ~step
    ang = _angles(n[sel], fd[sel])
    if not ang.size:
        return {"mean": 0.0, "median": 0.0, "p95": 0.0, "pixels": 0}
    return {"mean": float(ang.mean()), "median": float(np.median(ang)), "p95": float(np.percentile(ang, 95)),
            "pixels": int(sel.sum())}
