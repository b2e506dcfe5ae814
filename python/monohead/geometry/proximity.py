"""Exact closest points on a triangle mesh's surface (no rtree needed).

:class:`MeshSurface` builds a k-d tree (:class:`scipy.spatial.cKDTree`) on the face centroids
once; each query then computes the exact closest point on the ``k`` faces with the nearest
centroids and certifies it: with ``R`` the largest distance from a face's centroid to its
corners, a face whose centroid is farther than ``d_k`` (the ``k``-th centroid distance) is at
least ``d_k - R`` away, so the answer is exact as soon as ``d_k - R >= d_best``. Queries that
are not yet certified go on with the next ``k`` faces (``2k`` in all), up to all faces.

A few long faces would make ``R`` large and the certificate useless (a depth-map mesh has
them where it bridges a depth discontinuity: the chin over the neck, the ears). So the faces are
split into classes by radius (class ``c`` holds radii up to ``1.5 * 2^c`` times the median),
each with its own tree and its own ``R``; a query searches class after class, smallest radii
first, and skips a class outright when its nearest centroid is farther than ``R_c`` plus the
best distance found so far. The result is exact for any mesh; it is fast when most triangles
have similar sizes (scans, depth-map meshes).

The point-triangle kernel classifies each point into the Voronoi regions of the triangle
(3 corners, 3 edges, interior; Ericson, *Real-Time Collision Detection*, §5.1.5) and is
vectorised over (point, face) pairs in structure-of-arrays form with per-face constants
precomputed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate as v
from .normals import face_normals as _face_normals

__all__ = ["MeshSurface", "closest_points", "closest_points_on_triangles"]

# Rows of the per-face table: corner a, edges u = b - a and w = c - a, and the Gram entries.
_AX, _AY, _AZ, _UX, _UY, _UZ, _WX, _WY, _WZ, _UU, _UW, _WW, _DET = range(13)


def _face_table(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``(13, F)`` table of the faces ``(a, b, c)`` (each ``(F, 3)``) for :func:`_closest_kernel`."""
    u, w = b - a, c - a
    t = np.empty((13, a.shape[0]))
    t[_AX : _AZ + 1] = a.T
    t[_UX : _UZ + 1] = u.T
    t[_WX : _WZ + 1] = w.T
    t[_UU] = np.einsum("ij,ij->i", u, u)
    t[_UW] = np.einsum("ij,ij->i", u, w)
    t[_WW] = np.einsum("ij,ij->i", w, w)
    t[_DET] = t[_UU] * t[_WW] - t[_UW] * t[_UW]  # (twice the area)^2
    return t


def _segment_params(qx: np.ndarray, qy: np.ndarray, qz: np.ndarray, dx: Any, dy: Any, dz: Any) -> np.ndarray:
    """Clamped parameter of the closest point to ``q`` on the segment ``[0, d]`` (relative coords)."""
    dd = dx * dx + dy * dy + dz * dz
    num = qx * dx + qy * dy + qz * dz
    return np.clip(np.divide(num, dd, out=np.zeros_like(num), where=dd > 0), 0.0, 1.0)


def _closest_kernel(px: np.ndarray, py: np.ndarray, pz: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric-like ``(s, u)`` of the closest point ``a + s (b - a) + u (c - a)``.

    ``px, py, pz`` are ``(M,)``; ``t`` is the ``(13, M)`` face table, one column per pair.
    """
    qx, qy, qz = px - t[_AX], py - t[_AY], pz - t[_AZ]
    d1 = t[_UX] * qx + t[_UY] * qy + t[_UZ] * qz  # u . (p - a)
    d2 = t[_WX] * qx + t[_WY] * qy + t[_WZ] * qz  # w . (p - a)
    d3, d4 = d1 - t[_UU], d2 - t[_UW]  # u . (p - b), w . (p - b)
    d5, d6 = d1 - t[_UW], d2 - t[_WW]  # u . (p - c), w . (p - c)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    det = t[_DET]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = vb / det
        u = vc / det
        # Later assignments take precedence, so the regions go from Ericson's last test to his first.
        e43, e56 = d4 - d3, d5 - d6
        sel = (va <= 0) & (e43 >= 0) & (e56 >= 0)  # edge BC: b + r (c - b)
        r = e43 / (e43 + e56)
        np.copyto(s, 1.0 - r, where=sel)
        np.copyto(u, r, where=sel)
        sel = (vb <= 0) & (d2 >= 0) & (d6 <= 0)  # edge AC
        np.copyto(s, 0.0, where=sel)
        np.copyto(u, d2 / (d2 - d6), where=sel)
        sel = (d6 >= 0) & (d5 <= d6)  # corner C
        np.copyto(s, 0.0, where=sel)
        np.copyto(u, 1.0, where=sel)
        sel = (vc <= 0) & (d1 >= 0) & (d3 <= 0)  # edge AB
        np.copyto(s, d1 / (d1 - d3), where=sel)
        np.copyto(u, 0.0, where=sel)
        sel = (d3 >= 0) & (d4 <= d3)  # corner B
        np.copyto(s, 1.0, where=sel)
        np.copyto(u, 0.0, where=sel)
        sel = (d1 <= 0) & (d2 <= 0)  # corner A
        np.copyto(s, 0.0, where=sel)
        np.copyto(u, 0.0, where=sel)
    bad = ~(det > 1e-24 * t[_UU] * t[_WW]) | ~np.isfinite(s) | ~np.isfinite(u)
    if bad.any():  # degenerate faces: the best point of the three edges
        tb = t[:, bad]
        qb = (qx[bad], qy[bad], qz[bad])
        ux, uy, uz, wx, wy, wz = tb[_UX], tb[_UY], tb[_UZ], tb[_WX], tb[_WY], tb[_WZ]
        r_ab = _segment_params(*qb, ux, uy, uz)
        r_ac = _segment_params(*qb, wx, wy, wz)
        r_bc = _segment_params(qb[0] - ux, qb[1] - uy, qb[2] - uz, wx - ux, wy - uy, wz - uz)
        cands = np.stack([[r_ab, np.zeros_like(r_ab)], [np.zeros_like(r_ac), r_ac], [1.0 - r_bc, r_bc]])  # (3, 2, m)
        cx = cands[:, 0] * ux + cands[:, 1] * wx - qb[0]
        cy = cands[:, 0] * uy + cands[:, 1] * wy - qb[1]
        cz = cands[:, 0] * uz + cands[:, 1] * wz - qb[2]
        best = np.argmin(cx * cx + cy * cy + cz * cz, axis=0)
        cols = np.arange(best.size)
        s[bad] = cands[best, 0, cols]
        u[bad] = cands[best, 1, cols]
    return s, u


def closest_points_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest point to ``points[i]`` on triangle ``(a[i], b[i], c[i])``; all ``(N, 3)`` float64.

    Degenerate (zero-area) triangles give the closest point of their three edges.
    """
    t = _face_table(a, b, c)
    s, u = _closest_kernel(points[:, 0], points[:, 1], points[:, 2], t)
    return a + s[:, None] * (b - a) + u[:, None] * (c - a)


class MeshSurface:
    """A triangle mesh prepared for repeated closest-point queries (ICP, mesh errors).

    Args:
        mesh: :class:`trimesh.Trimesh` or ``(vertices, faces)`` pair with at least one face;
            any length unit.

    Attributes:
        vertices: ``(V, 3)`` float64. faces: ``(F, 3)`` int64.
        face_normals: ``(F, 3)`` unit normals (right-hand rule; 0 for degenerate faces).
    """

    #: Class 0 holds the faces whose radius (centroid to farthest corner) is at most this many
    #: times the median radius; class ``c`` up to ``2^c`` times that.
    CLASS_BASE = 1.5

    def __init__(self, mesh: Any, name: str = "mesh") -> None:
        from scipy.spatial import cKDTree

        self.vertices, self.faces = v.check_mesh(mesh, name)
        tri = self.vertices[self.faces]  # (F, 3, 3)
        centroids = tri.mean(axis=1)
        radii = np.sqrt(((tri - centroids[:, None]) ** 2).sum(-1)).max(axis=1)
        base = self.CLASS_BASE * float(np.median(radii))
        if base > 0:
            with np.errstate(divide="ignore"):
                cls = np.ceil(np.log2(np.maximum(radii, 1e-300) / base)).clip(0, 60).astype(np.int64)
        else:  # most faces degenerate to a point: one class
            cls = np.zeros(radii.size, np.int64)
        # (face indices, k-d tree of their centroids, largest radius), smallest radii first
        self._classes: list[tuple[np.ndarray, Any, float]] = []
        for c in np.unique(cls):
            idx = np.nonzero(cls == c)[0]
            self._classes.append((idx, cKDTree(centroids[idx]), float(radii[idx].max())))
        self._table = _face_table(tri[:, 0], tri[:, 1], tri[:, 2])
        self.face_normals = _face_normals(self.vertices, self.faces)

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def closest(self, points: Any, k: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact closest points on the surface.

        Args:
            points: ``(N, 3)`` finite query points, same unit as the mesh.
            k: faces examined first per point (more are examined until the answer is certified).

        Returns:
            ``(closest, distance, face)``: ``(N, 3)`` float64 points on the surface, ``(N,)``
            float64 Euclidean distances and ``(N,)`` int64 index of the face holding each
            closest point (one of them on ties).
        """
        pts = v.check_vertices(points, "points", min_count=0)
        k = int(v.check_positive_int(k, "k", allow_none=False))
        n = pts.shape[0]
        pt = np.ascontiguousarray(pts.T)
        best_s = np.zeros(n)
        best_u = np.zeros(n)
        dist2 = np.full(n, np.inf)
        face = np.zeros(n, dtype=np.int64)

        def pair_distances(idx: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """``(s, u, d2)`` of point ``idx[j]`` against the face of table column ``j``."""
            px, py, pz = pt[0, idx], pt[1, idx], pt[2, idx]
            s, u = _closest_kernel(px, py, pz, t)
            dx = t[_AX] + s * t[_UX] + u * t[_WX] - px
            dy = t[_AY] + s * t[_UY] + u * t[_WY] - py
            dz = t[_AZ] + s * t[_UZ] + u * t[_WZ] - pz
            return s, u, dx * dx + dy * dy + dz * dz

        # Per class: the k nearest centroids, certified with the class's largest radius R: a
        # face whose centroid is farther than d_k is at least d_k - R away.
        k0 = k
        for faces_c, tree, radius in self._classes:
            nf = faces_c.size
            todo = np.arange(n)
            if np.isfinite(dist2).any():  # skip the points this class cannot improve
                d1, _ = tree.query(pts, k=1)
                todo = np.nonzero(d1 - radius < np.sqrt(dist2))[0]
            k, done_k = min(k0, nf), 0
            while todo.size:
                dk, ik = tree.query(pts[todo], k=k)
                dk = dk.reshape(todo.size, k)
                kk = k - done_k
                ik = faces_c[ik.reshape(todo.size, k)[:, done_k:]]  # faces not examined yet
                s, u, d2 = pair_distances(np.repeat(todo, kk), np.take(self._table, ik.ravel(), axis=1))
                d2 = d2.reshape(todo.size, kk)
                j = np.argmin(d2, axis=1)
                rows = np.arange(todo.size)
                flat = rows * kk + j
                better = d2[rows, j] < dist2[todo]
                upd = todo[better]
                dist2[upd] = d2[rows, j][better]
                face[upd] = ik[rows, j][better]
                best_s[upd] = s[flat[better]]
                best_u[upd] = u[flat[better]]
                if k == nf:
                    break
                certified = dk[:, -1] - radius >= np.sqrt(dist2[todo])
                todo = todo[~certified]
                k, done_k = min(2 * k, nf), k
        t = self._table[:, face]
        closest = np.empty((n, 3))
        for axis, (a_row, u_row, w_row) in enumerate(((_AX, _UX, _WX), (_AY, _UY, _WY), (_AZ, _UZ, _WZ))):
            closest[:, axis] = t[a_row] + best_s * t[u_row] + best_u * t[w_row]
        return closest, np.sqrt(dist2), face


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
