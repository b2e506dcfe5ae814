"""Independent checks of the rendered ground truth.

- :func:`raycast_ground_truth` computes a sample's normal, depth and mask maps a second way,
  sharing nothing with the renderer but the posed head mesh: trimesh's angle-weighted vertex
  normals (its own implementation of eq. 2) and Embree ray casting through trimesh and
  ``embreex`` (one ray per pixel centre, the occluders absent: straight down −z for an
  orthographic camera, from the pinhole for a perspective one, :mod:`.camera`).
- :func:`raycast_sample` does it for a generator's sample: its head mesh, its camera, and the
  generator's rule past a simulated photo's border (no head seen there).
- :func:`compare_ground_truth` measures how far the two agree.
- :func:`finite_difference_agreement` compares N with the normals of the finite differences
  of the depth on interior pixels (orthographic: :func:`monohead.geometry.normals_from_depth`;
  perspective: the cross product of the differences of the back-projected points).

Needs ``trimesh`` and ``embreex`` (``pip install 'monohead[synth-check]'``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .. import geometry
from . import camera as camera_mod
from .render import FACING_MIN_NZ

__all__ = [
    "compare_ground_truth",
    "finite_difference_agreement",
    "raycast_ground_truth",
    "raycast_sample",
    "silhouette_band",
]


def raycast_ground_truth(
    vertices: Any, faces: Any, size: tuple[int, int], camera: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Normal, depth and mask maps of a mesh by Embree ray casting at pixel centres.

    Args:
        vertices: ``(V, 3)`` posed head and eye vertices in the world (pixel) frame: pixel
            ``(r, c)`` is centred at ``x = c, y = -r``, z toward the viewer.
        faces: ``(F, 3)`` triangles (head and eyes only).
        size: ``(H, W)``.
        camera: the sample's ``params["camera"]``; ``None`` or orthographic: rays straight
            down −z; perspective: rays from the pinhole through the pixel centres.

    Returns:
        ``normals (H, W, 3)``, ``depth (H, W)`` (NaN outside the mask) and ``mask (H, W)``,
        with the renderer's rule: a pixel is in the mask if its ray hits the mesh and the
        interpolated normal has ``Nz > FACING_MIN_NZ`` (perspective: and ``N . (-ray) > FACING_MIN_NZ``).
    """
    import trimesh

    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector
    except ImportError as exc:  # pragma: no cover - embreex is a test dependency
        raise ImportError("raycast_ground_truth needs embreex: pip install embreex") from exc
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    mesh = trimesh.Trimesh(v, f, process=False, validate=False)
    vn = np.asarray(mesh.vertex_normals)  # trimesh: face normals weighted by the corner angles
    h, w = size
    origins, dirs = camera_mod.pixel_rays(camera, size, z_start=v[:, 2].max() + 10.0)
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
    facing = normals[..., 2] > FACING_MIN_NZ
    if camera is not None and camera.get("projection") == "perspective":  # the renderer's rule, restated
        facing &= -(normals.reshape(-1, 3) * dirs).sum(axis=1).reshape(h, w) > FACING_MIN_NZ
    mask = np.isfinite(depth.reshape(h, w)) & facing
    normals[~mask] = 0.0
    return {"normals": normals, "depth": np.where(mask, depth.reshape(h, w), np.nan), "mask": mask}


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles in degrees between rows of unit vectors, robust near 0 (atan2 of |a x b|, a.b)."""
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(axis=-1)))


def silhouette_band(m1: Any, m2: Any) -> np.ndarray:
    """Pixels within one pixel (8-neighbourhood) of the boundaries of **both** ``(H, W)`` masks.

    A pixel that is in one mask only is a silhouette difference when it lies in this band: both
    masks end next to it. A hole in one mask (or a blob in one mask only) away from the other
    mask's boundary is outside the band, however small it is. A boundary pixel is a mask pixel
    with a 4-neighbour outside the mask or on the image border.
    """
    m1, m2 = np.asarray(m1, bool), np.asarray(m2, bool)
    near = []
    for m in (m1, m2):
        boundary = m & ~ndimage.binary_erosion(m, border_value=0)
        near.append(ndimage.binary_dilation(boundary, structure=np.ones((3, 3), bool)))
    return near[0] & near[1]


def raycast_sample(generator: Any, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """:func:`raycast_ground_truth` of a sample of ``generator`` (a :class:`monohead.synth.Generator`).

    Uses the sample's posed head and eyes, its camera, and the generator's rule for crops that
    run past the simulated photo's border (version 2): no head is seen outside the photo, so
    the reference mask is cut there as the rendered one is.
    """
    from .artefacts import border_inside

    v, f = generator.head_mesh(params)
    ref = raycast_ground_truth(v, f, generator.size, params.get("camera"))
    border = (params.get("artefacts") or {}).get("border")
    if border is not None:
        inside = border_inside(border, generator.size) & ref["mask"]
        ref = {
            "mask": inside,
            "normals": np.where(inside[..., None], ref["normals"], 0.0),
            "depth": np.where(inside, ref["depth"], np.nan),
        }
    return ref


def compare_ground_truth(rendered: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Agreement of two sets of ground-truth maps (``normals``, ``depth``, ``mask``).

    Returns:
        ``mean_angle`` and ``max_angle`` (degrees, over pixels in both masks),
        ``mask_pixels`` (in the rendered mask), ``mask_diff`` (pixels in one mask only),
        ``mask_diff_interior`` (of those, pixels outside :func:`silhouette_band`: 0 when the
        differences are all on silhouettes), ``depth_max`` (largest depth difference
        in pixels over both masks).
    """
    m1, m2 = np.asarray(rendered["mask"], bool), np.asarray(reference["mask"], bool)
    both = m1 & m2
    ang = _angles(np.asarray(rendered["normals"], np.float64)[both], np.asarray(reference["normals"], np.float64)[both])
    diff = m1 ^ m2
    edge = silhouette_band(m1, m2)
    d = np.abs(np.asarray(rendered["depth"], np.float64)[both] - np.asarray(reference["depth"], np.float64)[both])
    return {
        "mean_angle": float(ang.mean()) if ang.size else 0.0,
        "max_angle": float(ang.max()) if ang.size else 0.0,
        "mask_pixels": int(m1.sum()),
        "mask_diff": int(diff.sum()),
        "mask_diff_interior": int((diff & ~edge).sum()),
        "depth_max": float(d.max()) if d.size else 0.0,
    }


def finite_difference_agreement(
    normals: Any, depth: Any, mask: Any, margin: int = 2, max_step: float = 2.0, camera: dict[str, Any] | None = None
) -> dict[str, float]:
    """Angles between N and the normals of the depth's finite differences, on interior pixels.

    Interior pixels are ``margin`` pixels inside the mask and away from depth steps (a
    neighbour whose depth differs by more than ``max_step`` pixels plus what N predicts),
    where finite differences cannot stand for the surface. With a perspective ``camera`` (a
    sample's ``params["camera"]``) the depth (height toward the viewer) is first
    back-projected along the pixel rays (:func:`monohead.synth.camera.back_project`) and the
    finite-difference normal is the cross product of the central differences of those points.

    Returns:
        ``mean``, ``median`` and ``p95`` angle (degrees) and ``pixels`` (interior pixels).
    """
    n = np.asarray(normals, np.float64)
    h = np.asarray(depth, np.float64)
    m = np.asarray(mask, bool)
    K = camera_mod.intrinsics(camera)
    if K is None:
        fd = geometry.normals_from_depth(h, m)
    else:
        fd = _perspective_fd_normals(camera_mod.back_project(np.where(m, h, np.nan), camera), m)
    inner = ndimage.binary_erosion(m, iterations=margin, border_value=0)
    p, q = geometry.normals_to_gradients(n, m)
    if K is not None:  # slopes per pixel: the footprint of a pixel at height h is (D - h) / fx
        foot = np.where(m, (float(camera["distance"]) - np.where(m, h, 0.0)) / K[0, 0], 1.0)
        p, q = p * foot, q * foot
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
    return {
        "mean": float(ang.mean()),
        "median": float(np.median(ang)),
        "p95": float(np.percentile(ang, 95)),
        "pixels": int(sel.sum()),
    }


def _perspective_fd_normals(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit normals ``(H, W, 3)`` of back-projected points by central differences (one-sided
    where a neighbour is outside the mask), oriented toward the viewer; 0 where undefined."""
    m = mask
    pts = np.where(m[..., None], points, 0.0)

    def diff(axis: int) -> np.ndarray:
        fwd = np.zeros_like(pts)
        bwd = np.zeros_like(pts)
        okf = np.zeros_like(m)
        okb = np.zeros_like(m)
        sl = [slice(None)] * 2
        lo, hi = list(sl), list(sl)
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        both = m[tuple(lo)] & m[tuple(hi)]
        d = pts[tuple(hi)] - pts[tuple(lo)]
        fwd[tuple(lo)] = np.where(both[..., None], d, 0.0)
        okf[tuple(lo)] = both
        bwd[tuple(hi)] = np.where(both[..., None], d, 0.0)
        okb[tuple(hi)] = both
        cnt = okf.astype(np.float64) + okb
        return np.where(cnt[..., None] > 0, (fwd + bwd) / np.maximum(cnt, 1)[..., None], np.nan)

    dc, dr = diff(1), diff(0)  # along columns (x right) and rows (y down)
    n = np.cross(dc, -dr)  # (d/dx) x (d/dy) with y up points toward the viewer
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    out = np.where(np.isfinite(norm) & (norm > 0), n / np.where(norm > 0, norm, 1.0), 0.0)
    return np.where(m[..., None], out, 0.0)
