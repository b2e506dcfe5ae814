"""Normals of triangle meshes (paper eq. 2) and the normals <-> gradients maps.

Frame (conventions.md): x to the right (increasing column), y up (decreasing row), z toward
the viewer. A depth map ``h`` (height toward the viewer, pixel units) has the normal
``N = (-p, -q, 1) / sqrt(1 + p^2 + q^2)`` with ``p = dh/dx = -Nx/Nz`` and
``q = dh/dy = -Ny/Nz``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate as v

__all__ = ["face_normals", "gradients_to_normals", "normals_to_gradients", "vertex_normals"]


def _mesh_arrays(vertices: Any, faces: Any) -> tuple[np.ndarray, np.ndarray]:
    verts = v.check_vertices(vertices, "vertices")
    return verts, v.check_faces(faces, verts.shape[0], "faces")


def _edges_and_normals(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face, as ``(3, F)`` arrays (one row per axis): ``e01 = v1 - v0``, ``e02 = v2 - v0``
    and the unnormalised normal ``e01 x e02`` (its length is twice the face's area)."""
    corners = np.take(np.ascontiguousarray(verts.T), np.ascontiguousarray(faces.T), axis=1)  # (axis, corner, F)
    e01 = corners[:, 1] - corners[:, 0]
    e02 = corners[:, 2] - corners[:, 0]
    normal = np.empty_like(e01)
    np.multiply(e01[1], e02[2], out=normal[0])
    normal[0] -= e01[2] * e02[1]
    np.multiply(e01[2], e02[0], out=normal[1])
    normal[1] -= e01[0] * e02[2]
    np.multiply(e01[0], e02[1], out=normal[2])
    normal[2] -= e01[1] * e02[0]
    return e01, e02, normal


def face_normals(vertices: Any, faces: Any) -> np.ndarray:
    """Unit normals of the faces of a triangle mesh.

    Args:
        vertices: ``(V, 3)`` finite coordinates, any real dtype and layout (any length unit).
        faces: ``(F, 3)`` integer vertex indices; a face ``(a, b, c)`` is counter-clockwise
            seen from the side its normal points to (right-hand rule).

    Returns:
        ``(F, 3)`` float64 unit vectors ``(b - a) x (c - a) / |(b - a) x (c - a)|``; ``(0, 0, 0)``
        for a degenerate (zero-area) face.
    """
    verts, fcs = _mesh_arrays(vertices, faces)
    normal = _edges_and_normals(verts, fcs)[2]
    length = np.sqrt(np.einsum("ij,ij->j", normal, normal))
    length[length == 0] = 1.0
    normal /= length
    return np.ascontiguousarray(normal.T)


def vertex_normals(vertices: Any, faces: Any) -> np.ndarray:
    """Angle-weighted vertex normals of a triangle mesh (paper eq. 2, Klasing et al. 2009).

    For vertex ``p`` with incident faces ``j`` (each spanned by ``p`` and two neighbours
    ``q_j``, ``q_{j+1}`` in counter-clockwise order), eq. 2 reads

        n = (1/k) sum_j  w_j  (q_j - p) x (q_{j+1} - p) / |(q_j - p) x (q_{j+1} - p)|,
        w_j = arccos(<q_j - p, q_{j+1} - p> / (|q_j - p| |q_{j+1} - p|)),

    i.e. each incident face's unit normal weighted by the face's interior angle at ``p``.
    The result is returned normalised to unit length (so the ``1/k`` has no effect). The
    angle is computed as ``atan2(|a x b|, a . b)``, which equals the ``arccos`` of eq. 2 and
    is accurate for small and near-straight angles. Fully vectorised: one pass over the
    faces, then one scatter-add (:func:`numpy.bincount`) per axis; about 7 ms for 30k
    vertices (60k faces) on a busy 2-core cloud VM (``benchmarks/bench_geometry.py``).

    Args:
        vertices: ``(V, 3)`` finite coordinates, any real dtype and layout.
        faces: ``(F, 3)`` integer indices, counter-clockwise seen from outside (the normals
            point to the side from which the faces are counter-clockwise).

    Returns:
        ``(V, 3)`` float64 unit normals. A vertex used by no face, or whose weighted sum
        vanishes (e.g. only degenerate faces), gets ``(0, 0, 0)``.
    """
    verts, fcs = _mesh_arrays(vertices, faces)
    n = verts.shape[0]
    if fcs.shape[0] == 0:
        return np.zeros((n, 3))
    e01, e02, normal = _edges_and_normals(verts, fcs)
    e12 = e02 - e01  # v2 - v1
    twice_area = np.sqrt(np.einsum("ij,ij->j", normal, normal))
    # Interior angles: at v0 between e01 and e02; at v1 between -e01 and e12; at v2 between
    # -e02 and -e12. |a x b| is twice the face area at all three corners.
    w = np.empty((3, fcs.shape[0]))
    np.arctan2(twice_area, np.einsum("ij,ij->j", e01, e02), out=w[0])
    np.arctan2(twice_area, -np.einsum("ij,ij->j", e01, e12), out=w[1])
    np.arctan2(twice_area, np.einsum("ij,ij->j", e02, e12), out=w[2])
    # Angle times the unit face normal = (angle / |n|) * n; degenerate faces weigh 0.
    np.divide(w, twice_area, out=w, where=twice_area > 0)
    w[:, twice_area == 0] = 0.0
    idx = np.ascontiguousarray(fcs.T).ravel()  # corner-major, like w
    out = np.empty((3, n))
    tmp = np.empty_like(w)
    for axis in range(3):
        np.multiply(w, normal[axis], out=tmp)
        out[axis] = np.bincount(idx, weights=tmp.ravel(), minlength=n)
    length = np.sqrt(np.einsum("ij,ij->j", out, out))
    length[length == 0] = 1.0
    out /= length
    return np.ascontiguousarray(out.T)


def normals_to_gradients(normals: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Depth gradients of a normal map: ``p = -Nx/Nz = dh/dx``, ``q = -Ny/Nz = dh/dy`` (y up).

    Args:
        normals: ``(H, W, 3)`` normals in the camera frame (x right, y up, z toward the
            viewer), any float dtype and layout; need not be unit length. Inside the mask
            they must be finite with ``Nz > 0``.
        mask: ``(H, W)`` bool domain; default: the pixels whose normal is not ``(0, 0, 0)``.

    Returns:
        ``(p, q)``, two ``(H, W)`` float64 maps (dimensionless slopes), 0 outside the mask.

    This is the one implementation of ``p = -Nx/Nz``; ``monohead.integration.baselines.gradients_from_normals``
    is the same function under its former name, kept for compatibility.
    """
    n = v.check_normals(normals)
    m = v.default_mask(n) if mask is None else v.check_mask(mask, n.shape[:2])
    v.check_normals_in_mask(n, m)
    nz = np.where(m, n[..., 2], 1.0)
    p = np.where(m, -n[..., 0] / nz, 0.0)
    q = np.where(m, -n[..., 1] / nz, 0.0)
    return p, q


def gradients_to_normals(p: Any, q: Any, mask: Any = None) -> np.ndarray:
    """Unit normals ``N = (-p, -q, 1) / sqrt(1 + p^2 + q^2)`` of depth gradients.

    Args:
        p: ``(H, W)`` slope ``dh/dx`` (x = column, to the right), any real dtype.
        q: ``(H, W)`` slope ``dh/dy`` (y up, i.e. toward row ``r - 1``).
        mask: ``(H, W)`` bool domain; default: every pixel.

    Returns:
        ``(H, W, 3)`` float64 unit normals (``Nz > 0``) inside the mask, ``(0, 0, 0)`` outside.
    """
    pa = v.check_depth(p, "p")
    qa = v.check_depth(q, "q", shape=pa.shape)
    m = np.ones(pa.shape, bool) if mask is None else v.check_mask(mask, pa.shape)
    v.check_depth_in_mask(pa, m, "p")
    v.check_depth_in_mask(qa, m, "q")
    pa = np.where(m, pa, 0.0)
    qa = np.where(m, qa, 0.0)
    out = np.stack([-pa, -qa, np.ones_like(pa)], axis=-1)
    out /= np.sqrt(1.0 + pa * pa + qa * qa)[..., None]
    out[~m] = 0.0
    return out


def limit_slope(normals: Any, mask: np.ndarray, min_nz: float = 0.1, K: Any = None) -> np.ndarray:
    """Unit normals with ``Nz >= min_nz`` inside ``mask``: the ones closer to grazing keep their
    direction in the image plane and are tilted up to ``Nz = min_nz`` (a float64 copy; shape
    ``(H, W, 3)`` as given, ``mask (H, W)`` bool). The integrators' slopes ``-Nx/Nz``, ``-Ny/Nz``
    are then at most ``sqrt(1 - min_nz^2) / min_nz`` (9.95 for 0.1).

    With ``K`` (``(3, 3)`` intrinsics of a perspective camera, ``docs/conventions.md``) the
    limit is on each pixel's ray toward the camera instead of the z axis: the normals are first
    made unit, and those whose cosine with their ray is under ``min_nz`` (the network's grazing
    normals at a short focal length can face away from the ray, which the perspective
    integrator refuses) keep their direction across the ray and are tilted up to that cosine
    (:func:`monohead.photo.face_rays`)."""
    n = np.array(normals, dtype=np.float64)
    if K is None:
        low = mask & (n[..., 2] < min_nz)
        if low.any():
            n[low] = _tilt_up(n[low], np.array([0.0, 0.0, 1.0]), n[low][:, 2], min_nz)
        return n
    fx, fy, cx, cy = v.check_K(K)
    H, W = mask.shape
    rows, cols = np.mgrid[0:H, 0:W]
    ray = np.stack([-(cols - cx) / fx, (rows - cy) / fy, np.ones((H, W))], axis=-1)
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.divide(n, length, out=np.zeros_like(n), where=length > 1e-12)
    cos = np.einsum("hwc,hwc->hw", n, ray)
    low = mask & (cos < min_nz)
    if low.any():
        n[low] = _tilt_up(n[low], ray[low], cos[low], min_nz)
    return n


def _tilt_up(n: np.ndarray, axis: np.ndarray, cos: np.ndarray, min_cos: float) -> np.ndarray:
    """Unit vectors at cosine ``min_cos`` to the unit ``axis`` (``(3,)`` or ``(N, 3)``, z > 0),
    in the plane of ``axis`` and each of ``n`` (``(N, 3)``, ``cos`` their cosines with it): their
    direction across the axis kept. A vector along the axis has none: any will do."""
    across = n - cos[:, None] * axis
    length = np.linalg.norm(across, axis=1, keepdims=True)
    fallback = np.cross(axis, [0.0, 1.0, 0.0]) * np.ones_like(across)
    fallback /= np.linalg.norm(fallback, axis=1, keepdims=True)
    across = np.where(length > 1e-12, across / np.maximum(length, 1e-12), fallback)
    return min_cos * axis + np.sqrt(1.0 - min_cos**2) * across
