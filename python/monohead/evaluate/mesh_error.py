"""Rigid alignment (ICP) and the mesh errors of the paper's Table 2, with the criterion of eq. 9.

Units follow the inputs: the errors are in the unit of the meshes' coordinates (millimetres
for BU-3DFE scans, pixels for depth-map meshes). Both meshes must be in one unit and scale;
the alignment is rigid (rotation + translation, no scaling).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _validate as v
from ..geometry import MeshSurface, vertex_normals

__all__ = [
    "ICPResult",
    "apply_transform",
    "icp",
    "kabsch",
    "mesh_errors",
    "mesh_errors_set",
    "normal_projected_errors",
]

CORRESPONDENCES = ("vertex", "surface")


def apply_transform(transform: Any, points: Any) -> np.ndarray:
    """``R p + t`` for each row ``p`` of ``points``; ``transform`` is a ``(4, 4)`` rigid matrix.

    Returns ``(N, 3)`` float64.
    """
    T = _check_transform(transform)
    pts = v.check_vertices(points, "points", min_count=0)
    return pts @ T[:3, :3].T + T[:3, 3]


def _check_transform(transform: Any, name: str = "transform") -> np.ndarray:
    T = v.as_float_array(transform, name)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must have shape (4, 4); got {v.shape_str(T.shape)}")
    if not np.isfinite(T).all():
        raise ValueError(f"{name} must be finite; got {int(np.count_nonzero(~np.isfinite(T)))} NaN or inf value(s)")
    if not np.allclose(T[3], [0, 0, 0, 1]):
        raise ValueError(f"{name} must have last row (0, 0, 0, 1); got {T[3].tolist()}")
    R = T[:3, :3]
    if not (np.allclose(R.T @ R, np.eye(3), atol=1e-6) and np.linalg.det(R) > 0):
        raise ValueError(f"{name} must hold a rotation (orthonormal, det +1) in its upper-left 3x3 block")
    return T


def _rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def kabsch(source_points: Any, target_points: Any) -> np.ndarray:
    """The rigid transform that best maps ``source_points`` onto ``target_points`` (least squares).

    Kabsch/Umeyama without scale: the rotation from the SVD of the cross-covariance of the
    centred point sets, with the sign correction that makes it proper (det +1).

    Args:
        source_points: ``(K, 3)``, ``K >= 3`` points, not all on one line.
        target_points: ``(K, 3)`` corresponding points.

    Returns:
        ``(4, 4)`` float64 matrix ``T`` minimising ``sum |R s_i + t - d_i|^2``.
    """
    src = v.check_vertices(source_points, "source_points", min_count=3)
    dst = v.check_vertices(target_points, "target_points", min_count=3)
    if dst.shape != src.shape:
        raise ValueError(
            f"target_points must have shape {v.shape_str(src.shape)} like source_points; got {v.shape_str(dst.shape)}"
        )
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    H = (src - ms).T @ (dst - md)
    U, S, Vt = np.linalg.svd(H)
    if S[1] <= 1e-12 * max(S[0], 1e-300):
        raise ValueError("source_points must not all lie on one line (the rotation is undetermined)")
    d = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
    R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
    return _rigid(R, md - R @ ms)


def point_to_plane_step(
    points: np.ndarray, targets: np.ndarray, normals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One linearised point-to-plane ICP step (Chen and Medioni).

    Args:
        points: ``(K, 3)`` float64 moving points, already in the current pose; ``K >= 6``.
        targets: ``(K, 3)`` their matched points on the target surface.
        normals: ``(K, 3)`` unit normals of the target at ``targets``.

    Returns:
        ``(T, w, t)``: the ``(4, 4)`` rigid update to apply on the left of the current pose
        (a rotation by the small-angle vector ``w`` about the points' centroid, then the
        translation ``t``) that minimises ``sum ((R p + t' - q) . n)^2`` to first order.
    """
    m = points.mean(axis=0)
    A = np.hstack([np.cross(points - m, normals), normals])
    r = np.einsum("ij,ij->i", points - targets, normals)
    x = np.linalg.lstsq(A, -r, rcond=None)[0]
    w, t = x[:3], x[3:]
    R = _rotation_from_vector(w)
    return _rigid(R, m + t - R @ m), w, t


def _rotation_from_vector(w: np.ndarray) -> np.ndarray:
    """Rodrigues: the rotation by angle ``|w|`` about ``w / |w|`` (exactly orthonormal)."""
    theta = float(np.linalg.norm(w))
    if theta < 1e-300:
        return np.eye(3)
    k = w / theta
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * K + (1.0 - np.cos(theta)) * (K @ K)


@dataclass(frozen=True)
class ICPResult:
    """Outcome of :func:`icp`.

    Attributes:
        transform: ``(4, 4)`` float64 rigid matrix mapping the source onto the target
            (``apply_transform(transform, source_vertices)``).
        rms: root mean square of the point-to-surface distances of the kept correspondences
            under ``transform`` (unit of the inputs).
        iterations: ICP iterations done.
        converged: whether a stopping rule (``tol`` or ``rms_tol``) was met before
            ``max_iterations``.
        inliers: correspondences kept (after trimming) under ``transform``.
    """

    transform: np.ndarray
    rms: float
    iterations: int
    converged: bool
    inliers: int


def _select(dist: np.ndarray, trim: float | None, max_distance: float | None) -> np.ndarray:
    keep = np.ones(dist.shape, bool)
    if max_distance is not None:
        keep &= dist <= max_distance
    if trim:
        n_keep = int(np.ceil((1.0 - trim) * dist.size))
        if n_keep < dist.size:
            cut = np.partition(dist, n_keep - 1)[n_keep - 1]
            keep &= dist <= cut
    return keep


def icp(
    source_vertices: Any,
    target_mesh: Any,
    *,
    init: Any = None,
    landmarks: Any = None,
    max_iterations: int = 100,
    tol: float = 1e-10,
    rms_tol: float = 1e-6,
    trim: float | None = None,
    max_distance: float | None = None,
) -> ICPResult:
    """Rigidly align points to a mesh by point-to-plane ICP.

    Each iteration pairs every (transformed) source point ``s`` with its exact closest point
    ``c`` on the target surface and that face's unit normal ``n``
    (:class:`monohead.geometry.MeshSurface`), optionally drops far pairs, then solves the
    linearised point-to-plane problem ``min sum ((s - c) . n + w . ((s - m) x n) + t . n)^2``
    (small rotation ``w`` about the centroid ``m`` of the kept points, translation ``t``) by
    least squares, and applies the exact rotation ``exp([w]x)`` (Rodrigues), so the
    transform stays a proper rigid motion. It stops when the update's rotation angle is below
    ``tol`` (radians) and its translation below ``tol`` times the source's RMS radius, or when
    the RMS distance of the kept pairs decreased by less than ``rms_tol`` (relative) over the
    last iteration; it returns the transform with the smallest RMS seen.

    Args:
        source_vertices: ``(N, 3)`` points to move (e.g. a reconstruction's vertices), N >= 3.
        target_mesh: :class:`trimesh.Trimesh`, ``(vertices, faces)`` pair or
            :class:`~monohead.geometry.MeshSurface` (e.g. a ground-truth scan), same unit.
        init: initial alignment: ``"centroid"`` (translate the source's centroid onto the
            target vertices' centroid; the default without landmarks), ``"landmarks"`` (the
            default when ``landmarks`` is given), ``"identity"``, or a ``(4, 4)`` rigid matrix.
        landmarks: ``(K, 2)`` integer pairs ``(source index, target vertex index)``, K >= 3:
            the initial alignment is then :func:`kabsch` on those pairs.
        max_iterations: iteration cap.
        tol: convergence threshold on the update (see above).
        rms_tol: convergence threshold on the relative decrease of the RMS distance.
        trim: optional fraction in ``[0, 1)`` of the farthest pairs dropped each iteration
            (trimmed ICP, for partial overlap).
        max_distance: optional distance beyond which pairs are dropped (unit of the inputs).

    Returns:
        :class:`ICPResult` with the ``(4, 4)`` transform mapping the source onto the target.
    """
    src = v.check_vertices(source_vertices, "source_vertices", min_count=3)
    surface = target_mesh if isinstance(target_mesh, MeshSurface) else MeshSurface(target_mesh, "target_mesh")
    max_iterations = int(v.check_positive_int(max_iterations, "max_iterations", allow_none=False))
    tol = v.check_positive_real(tol, "tol")
    rms_tol = v.check_fraction(rms_tol, "rms_tol") or 0.0
    trim = v.check_fraction(trim, "trim")
    max_distance = v.check_positive_real(max_distance, "max_distance", allow_none=True)

    if init is None:
        init = "centroid" if landmarks is None else "landmarks"
    if isinstance(init, str):
        if init not in ("centroid", "landmarks", "identity"):
            raise ValueError(f"init must be 'centroid', 'landmarks', 'identity' or a (4, 4) matrix; got {init!r}")
        if (init == "landmarks") != (landmarks is not None):
            raise ValueError("landmarks must be given exactly when init is 'landmarks'")
        if init == "centroid":
            T = _rigid(np.eye(3), surface.vertices.mean(axis=0) - src.mean(axis=0))
        elif init == "identity":
            T = np.eye(4)
        else:
            pairs = np.asarray(landmarks)
            if pairs.dtype.kind not in "iu" or pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] < 3:
                raise ValueError(
                    f"landmarks must be a (K, 2) integer array of (source, target) index pairs, K >= 3; got shape "
                    f"{v.shape_str(pairs.shape)} dtype {pairs.dtype}"
                )
            for col, n, what in (
                (0, src.shape[0], "source_vertices"),
                (1, surface.vertices.shape[0], "target_mesh.vertices"),
            ):
                if pairs[:, col].min() < 0 or pairs[:, col].max() >= n:
                    raise ValueError(
                        f"landmarks[:, {col}] must index {what} in [0, {n}); "
                        f"got {pairs[:, col].min()} to {pairs[:, col].max()}"
                    )
            T = kabsch(src[pairs[:, 0]], surface.vertices[pairs[:, 1]])
    else:
        if landmarks is not None:
            raise ValueError("landmarks must be given exactly when init is 'landmarks'")
        T = _check_transform(init, "init").copy()

    radius = float(np.sqrt(((src - src.mean(axis=0)) ** 2).sum(axis=1).mean())) or 1.0

    def evaluate(T: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        P = src @ T[:3, :3].T + T[:3, 3]
        c, d, f = surface.closest(P)
        keep = _select(d, trim, max_distance)
        rms = float(np.sqrt(np.mean(d[keep] ** 2))) if keep.any() else float("inf")
        return rms, P, c, f, keep

    converged = False
    it = 0
    rms, P, c, f, keep = evaluate(T)
    best = (rms, T, int(np.count_nonzero(keep)))
    for it in range(1, max_iterations + 1):  # noqa: B007  # the count is returned after the loop
        n = surface.face_normals[f]
        use = keep & (np.abs(n).sum(axis=1) > 0)
        if np.count_nonzero(use) < 6:
            raise ValueError(
                f"icp kept only {int(np.count_nonzero(use))} correspondence(s) (need 6); "
                "loosen trim/max_distance or improve init"
            )
        step, w, t = point_to_plane_step(P[use], c[use], n[use])
        T = step @ T
        small_step = bool(np.linalg.norm(w) < tol and np.linalg.norm(t) < tol * radius)
        prev = rms
        rms, P, c, f, keep = evaluate(T)
        if rms < best[0]:
            best = (rms, T, int(np.count_nonzero(keep)))
        # Stop on a negligible update, or once the RMS no longer decreases by a relative
        # rms_tol (with noisy data the correspondences switch between faces and the
        # transform jitters at the noise floor instead of converging).
        if small_step or not (prev - rms > rms_tol * prev):
            converged = True
            break
    rms_best, T_best, inliers = best
    return ICPResult(transform=T_best, rms=rms_best, iterations=it, converged=converged, inliers=inliers)


def _check_correspondence(correspondence: Any) -> str:
    if correspondence not in CORRESPONDENCES:
        raise ValueError(f"correspondence must be 'vertex' or 'surface'; got {correspondence!r}")
    return str(correspondence)


def normal_projected_errors(pred_vertices: Any, true_mesh: Any, correspondence: str = "vertex") -> np.ndarray:
    """Per-vertex signed errors along the ground truth's normals (the summands of eq. 9).

    ``e_k = (a_k - b_k) . n_k`` for each predicted vertex ``a_k``, where, with
    ``correspondence="vertex"`` (the paper's reading: "we find nearest neighbor for each
    vertex of the reconstruction"), ``b_k`` is the ground-truth vertex nearest to ``a_k``
    (k-d tree) and ``n_k`` its angle-weighted normal (eq. 2, :func:`vertex_normals`);
    ground-truth vertices used by no face (no normal) are not candidates. With
    ``correspondence="surface"``, ``b_k`` is the closest point on the ground-truth surface and
    ``n_k`` the normal of the face holding it (then ``|e_k|`` is the point-to-surface distance
    wherever that point is inside a face).

    The error is signed (as in eq. 9, whose mean ``ē`` is near 0 after registration):
    positive where the prediction lies on the side the ground-truth normals point to (outside).

    Args:
        pred_vertices: ``(M, 3)`` predicted vertices, already aligned (unit of the meshes).
        true_mesh: the ground truth (:class:`trimesh.Trimesh` or ``(vertices, faces)``),
            faces counter-clockwise seen from outside.
        correspondence: ``"vertex"`` (default, the paper's) or ``"surface"``.

    Returns:
        ``(M,)`` float64 signed errors.
    """
    corr = _check_correspondence(correspondence)
    a = v.check_vertices(pred_vertices, "pred_vertices")
    if corr == "surface":
        surface = true_mesh if isinstance(true_mesh, MeshSurface) else MeshSurface(true_mesh, "true_mesh")
        c, _, f = surface.closest(a)
        return np.einsum("ij,ij->i", a - c, surface.face_normals[f])
    from scipy.spatial import cKDTree

    if isinstance(true_mesh, MeshSurface):
        verts, faces = true_mesh.vertices, true_mesh.faces
    else:
        verts, faces = v.check_mesh(true_mesh, "true_mesh")
    normals = vertex_normals(verts, faces)
    ok = np.abs(normals).sum(axis=1) > 0
    if not ok.any():
        raise ValueError("true_mesh has no vertex with a normal (every face is degenerate)")
    cand = np.nonzero(ok)[0]
    _, j = cKDTree(verts[cand]).query(a)
    b = cand[j]
    return np.einsum("ij,ij->i", a - verts[b], normals[b])


def _errors_one(
    pred_mesh: Any, true_mesh: Any, align: bool, correspondence: str, icp_options: dict[str, Any] | None
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    if isinstance(pred_mesh, np.ndarray):
        pred = v.check_vertices(pred_mesh, "pred_mesh")
    else:
        pred = v.check_mesh(pred_mesh, "pred_mesh", min_faces=0)[0]
    surface = true_mesh if isinstance(true_mesh, MeshSurface) else MeshSurface(true_mesh, "true_mesh")
    if not isinstance(align, (bool, np.bool_)):
        raise TypeError(f"align must be a bool; got {type(align).__name__}")
    if icp_options is not None and not isinstance(icp_options, dict):
        raise TypeError(f"icp_options must be a dict or None; got {type(icp_options).__name__}")
    out: dict[str, float] = {}
    if align:
        res = icp(pred, surface, **(icp_options or {}))
        pred = apply_transform(res.transform, pred)
        out["icp_rms"] = res.rms
    _, dist, _ = surface.closest(pred)
    e = normal_projected_errors(pred, surface, correspondence)
    return out, dist, e


def _summary(dist: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(dist.mean()),
        "std": float(dist.std()),
        "median": float(np.median(dist)),
        "p90": float(np.percentile(dist, 90.0)),
    }


def mesh_errors(
    pred_mesh: Any,
    true_mesh: Any,
    align: bool = True,
    *,
    correspondence: str = "vertex",
    icp_options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Errors of a reconstructed mesh against a ground truth (Table 2 and eq. 9), for one pair.

    1. If ``align``, the prediction is rigidly aligned to the ground truth by :func:`icp`
       (``icp_options`` are passed on, e.g. ``landmarks``, ``trim``).
    2. Each predicted vertex's distance to the ground-truth surface (exact closest point on
       its triangles) gives ``mean``, ``std`` (population), ``median`` and ``p90``. The
       paper's "90 % largest" is read as the **90th percentile** of these distances (linear
       interpolation, :func:`numpy.percentile`): the value below which 90 % of the vertices'
       errors lie.
    3. Eq. 9 on the signed normal-projected errors ``e_k`` of :func:`normal_projected_errors`:
       ``e_bar = mean_k e_k``, ``variance = V = sum_k (e_k - e_bar)^2 / (M - 1)`` and
       ``sigma = sqrt(V)`` (eq. 9 with ``N = 1``).

    Args:
        pred_mesh: the reconstruction: :class:`trimesh.Trimesh`, ``(vertices, faces)`` pair
            or ``(M, 3)`` vertices (only its vertices are used), M >= 2.
        true_mesh: the ground truth (:class:`trimesh.Trimesh`, ``(vertices, faces)`` or a
            :class:`~monohead.geometry.MeshSurface`), same unit.
        align: run ICP first.
        correspondence: ``"vertex"`` (the paper's nearest ground-truth vertex) or
            ``"surface"`` for eq. 9 (see :func:`normal_projected_errors`).
        icp_options: keyword arguments for :func:`icp`.

    Returns:
        dict with ``mean``, ``std``, ``median``, ``p90`` (distances), ``e_bar``, ``sigma``,
        ``variance`` (eq. 9), ``count`` (vertices) and, when aligned, ``icp_rms``; all in the
        unit of the inputs.
    """
    _check_correspondence(correspondence)
    extra, dist, e = _errors_one(pred_mesh, true_mesh, align, correspondence, icp_options)
    if e.size < 2:
        raise ValueError(f"pred_mesh must have at least 2 vertices for eq. 9's variance; got {e.size}")
    var = float(e.var(ddof=1))
    out = _summary(dist)
    out.update(e_bar=float(e.mean()), sigma=float(np.sqrt(var)), variance=var, count=int(e.size))
    out.update(extra)
    return out


def mesh_errors_set(
    pairs: Iterable[tuple[Any, Any]],
    align: bool = True,
    *,
    correspondence: str = "vertex",
    icp_options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """The errors of :func:`mesh_errors` over a set of ``N`` (prediction, ground truth) pairs.

    ``mean``, ``std``, ``median`` and ``p90`` are computed on the per-vertex distances of all
    pairs pooled together (each vertex counts once). Eq. 9 over the set: ``e_bar`` is the mean
    of the per-pair ``ē_k`` and ``sigma = sqrt(sum_k V_k / N)``.

    Args:
        pairs: iterable of ``(pred_mesh, true_mesh)`` as in :func:`mesh_errors`.
        align, correspondence, icp_options: as in :func:`mesh_errors`.

    Returns:
        dict with ``mean``, ``std``, ``median``, ``p90``, ``e_bar``, ``sigma``, ``count``
        (vertices, all pairs) and ``pairs`` (N).
    """
    _check_correspondence(correspondence)
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
        raise TypeError(f"pairs must be an iterable of (pred_mesh, true_mesh); got {type(pairs).__name__}")
    dists, e_bars, variances = [], [], []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"pairs[{i}] must be a (pred_mesh, true_mesh) pair; got {type(pair).__name__}")
        try:
            _, dist, e = _errors_one(pair[0], pair[1], align, correspondence, icp_options)
            if e.size < 2:
                raise ValueError(f"pred_mesh must have at least 2 vertices for eq. 9's variance; got {e.size}")
        except (TypeError, ValueError) as exc:
            raise (TypeError if isinstance(exc, TypeError) else ValueError)(f"pairs[{i}]: {exc}") from exc
        dists.append(dist)
        e_bars.append(float(e.mean()))
        variances.append(float(e.var(ddof=1)))
    if not dists:
        raise ValueError("pairs is empty: need at least one (pred_mesh, true_mesh) pair")
    out = _summary(np.concatenate(dists))
    out.update(
        e_bar=float(np.mean(e_bars)),
        sigma=float(np.sqrt(np.mean(variances))),
        count=int(sum(d.size for d in dists)),
        pairs=len(dists),
    )
    return out
