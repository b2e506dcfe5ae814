"""Exact closest points on a triangle mesh's surface (no rtree needed).

:class:`MeshSurface` builds a k-d tree (:class:`scipy.spatial.cKDTree`) on the face centroids
once; each query then computes the exact closest point on the ``k`` faces with the nearest
centroids and certifies it: with ``R`` the largest distance from a face's centroid to its
corners, a face whose centroid is farther than ``d_k`` (the ``k``-th centroid distance) is at
least ``d_k - R`` away, so the answer is exact as soon as ``d_k - R >= d_best``. Queries that
are not yet certified are repeated with ``2k`` faces (up to all faces). The result is exact
for any mesh; it is fast when triangle sizes are similar (scans, depth-map meshes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate as v
from .normals import face_normals as _face_normals

__all__ = ["MeshSurface", "closest_points", "closest_points_on_triangles"]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _closest_on_segments(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    denom = _dot(ab, ab)
    t = np.where(denom > 0, _dot(p - a, ab) / np.where(denom > 0, denom, 1.0), 0.0)
    return a + np.clip(t, 0.0, 1.0)[:, None] * ab


def closest_points_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest point to ``points[i]`` on triangle ``(a[i], b[i], c[i])``, all ``(N, 3)`` float64.

    Voronoi-region classification (vertex, edge or interior) of each point, vectorised: the
    answer is written ``a + s (b - a) + t (c - a)`` with ``(s, t)`` chosen per region.
    Degenerate (zero-area) triangles fall back to the closest point on their three edges.
    """
    ab, ac = b - a, c - a
    ap = points - a
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    ab_ab, ab_ac, ac_ac = _dot(ab, ab), _dot(ab, ac), _dot(ac, ac)
    # d3, d4 = ab.(p - b), ac.(p - b); d5, d6 = ab.(p - c), ac.(p - c), from d1, d2.
    d3, d4 = d1 - ab_ab, d2 - ab_ac
    d5, d6 = d1 - ab_ac, d2 - ac_ac
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        s = vb / denom
        t = vc / denom
        # Later assignments take precedence, so the regions go from the last test to the first.
        sel = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)  # edge BC
        w = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        s = np.where(sel, 1.0 - w, s)
        t = np.where(sel, w, t)
        sel = (vb <= 0) & (d2 >= 0) & (d6 <= 0)  # edge AC
        s = np.where(sel, 0.0, s)
        t = np.where(sel, d2 / (d2 - d6), t)
        sel = (d6 >= 0) & (d5 <= d6)  # vertex C
        s = np.where(sel, 0.0, s)
        t = np.where(sel, 1.0, t)
        sel = (vc <= 0) & (d1 >= 0) & (d3 <= 0)  # edge AB
        s = np.where(sel, d1 / (d1 - d3), s)
        t = np.where(sel, 0.0, t)
        sel = (d3 >= 0) & (d4 <= d3)  # vertex B
        s = np.where(sel, 1.0, s)
        t = np.where(sel, 0.0, t)
        sel = (d1 <= 0) & (d2 <= 0)  # vertex A
        s = np.where(sel, 0.0, s)
        t = np.where(sel, 0.0, t)
    out = a + s[:, None] * ab + t[:, None] * ac
    bad = ~(np.isfinite(s) & np.isfinite(t)) | (ab_ab * ac_ac - ab_ac * ab_ac <= 1e-24 * (ab_ab * ac_ac))
    if bad.any():
        pb, ab_, bb, cb = points[bad], a[bad], b[bad], c[bad]
        cands = np.stack(
            [_closest_on_segments(pb, ab_, bb), _closest_on_segments(pb, bb, cb), _closest_on_segments(pb, cb, ab_)]
        )
        dist = ((cands - pb[None]) ** 2).sum(-1)
        out[bad] = cands[np.argmin(dist, axis=0), np.arange(pb.shape[0])]
    return out


class MeshSurface:
    """A triangle mesh prepared for repeated closest-point queries (ICP, mesh errors).

    Args:
        mesh: :class:`trimesh.Trimesh` or ``(vertices, faces)`` pair with at least one face;
            any length unit.

    Attributes:
        vertices: ``(V, 3)`` float64. faces: ``(F, 3)`` int64.
        face_normals: ``(F, 3)`` unit normals (right-hand rule; 0 for degenerate faces).
    """

    def __init__(self, mesh: Any, name: str = "mesh") -> None:
        from scipy.spatial import cKDTree  # noqa: PLC0415

        self.vertices, self.faces = v.check_mesh(mesh, name)
        self._tri = self.vertices[self.faces]  # (F, 3, 3)
        centroids = self._tri.mean(axis=1)
        self._radius = float(np.sqrt(((self._tri - centroids[:, None]) ** 2).sum(-1)).max())
        self._tree = cKDTree(centroids)
        self.face_normals = _face_normals(self.vertices, self.faces)

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def closest(self, points: Any, k: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact closest points on the surface.

        Args:
            points: ``(N, 3)`` finite query points, same unit as the mesh.
            k: faces examined first per point (doubled until the answer is certified).

        Returns:
            ``(closest, distance, face)``: ``(N, 3)`` float64 points on the surface, ``(N,)``
            float64 Euclidean distances and ``(N,)`` int64 index of the face holding each
            closest point (one of them on ties).
        """
        pts = v.check_vertices(points, "points", min_count=0)
        k = int(v.check_positive_int(k, "k", allow_none=False))
        n = pts.shape[0]
        closest = np.empty((n, 3))
        dist = np.full(n, np.inf)
        face = np.zeros(n, dtype=np.int64)
        todo = np.arange(n)
        nf = self.num_faces
        k, done_k = min(k, nf), 0
        while todo.size:
            dk, ik = self._tree.query(pts[todo], k=k)
            dk = dk.reshape(todo.size, k)
            ik = ik[:, done_k:].reshape(todo.size, k - done_k)  # faces not examined yet
            kk = k - done_k
            tri = self._tri[ik.ravel()]
            q = np.repeat(pts[todo], kk, axis=0)
            cp = closest_points_on_triangles(q, tri[:, 0], tri[:, 1], tri[:, 2])
            d = np.sqrt(((cp - q) ** 2).sum(-1)).reshape(todo.size, kk)
            j = np.argmin(d, axis=1)
            rows = np.arange(todo.size)
            better = d[rows, j] < dist[todo]
            upd = todo[better]
            dist[upd] = d[rows, j][better]
            face[upd] = ik[rows, j][better]
            closest[upd] = cp.reshape(todo.size, kk, 3)[rows[better], j[better]]
            if k == nf:
                break
            certified = dk[:, -1] - self._radius >= dist[todo]
            todo = todo[~certified]
            k, done_k = min(2 * k, nf), k
        return closest, dist, face


def closest_points(points: Any, mesh: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact closest points on a mesh's surface: one-shot :meth:`MeshSurface.closest`.

    Args:
        points: ``(N, 3)`` finite query points (any unit, the mesh's).
        mesh: :class:`trimesh.Trimesh`, ``(vertices, faces)`` pair or a :class:`MeshSurface`.

    Returns:
        ``(closest (N, 3), distance (N,), face (N,))``.
    """
    surface = mesh if isinstance(mesh, MeshSurface) else MeshSurface(mesh)
    return surface.closest(points)
