"""A complete head: the ICT-FaceKit model fitted behind the integrated surface.

The photo pipeline gives a 2.5D surface: the pixels the camera sees, integrated from the
predicted normals. This module completes it into a whole, closed head:

1. :func:`fit_head` fits the linear head model shipped with monohead (ICT-FaceKit,
   ``X = X0 + B_id y + B_ex w``: identity ``y ~ N(0, 1)``, expression weights ``w`` in
   [0, 1]) under a similarity pose ``X_world = s R (X - pivot) + t`` to a reconstruction's
   depth, normals and mask, by robust Gauss-Newton on the linear model (no autograd):

   - **visible surface**: each visible model vertex (front-facing, not occluded: a z-buffer of
     the model's vertices) inside the mask is pulled onto the integrated surface along the
     viewing direction, with the observed normal as the local tangent plane: residual
     ``nz_obs (z_v - D(x_v, y_v))``, linearised as ``n_obs . dX_v`` (point-to-plane);
   - **silhouette**: the model's contour vertices (on the border of its own footprint) are
     pulled, along their projected normals, onto the nearest border pixel of the mask
     (borders on the image frame are ignored: the head may be cut by the crop);
   - **prior**: ``|y|^2`` (identity in standard deviations) and ``mu |w|^2`` (expressions);
   - **robust loss**: Cauchy weights (iteratively reweighted), and only the largest connected
     component of the mask is used, so that a stray blob of the mask does not drag the head.

   The pose starts from a search over yaw and pitch (the mask gives the scale and position;
   the robust cost and the agreement of the model's and the observed normals choose), then the rigid
   pose, then everything. Every step is accepted only if it does not raise the robust cost
   (Levenberg-Marquardt: a rejected step is solved again with more damping), and a fit that
   ends worse than its start is taken back to it. The result (:class:`HeadFit`) says whether
   it converged. Last, the identity and the scale are replaced by the learned map of
   :mod:`monohead.head_calibration` (``FitSettings.identity_calibration``: learned on the
   shipped network's maps of training heads, where the fitted identity alone is mostly noise
   and the fitted head too small), and the expression weights shrunk by its factors (the
   fitted ones are mostly noise too, and the jaw opened about twice too wide); the pose is
   kept (a scale about the model's pivot).
2. :func:`merge_head` builds the watertight mesh: the fitted model everywhere, its visible
   region moved onto the integrated surface. The displacement toward the integrated surface
   (along z) is kept where the surface is reliable (inside the mask, away from its border,
   not grazing) and fades smoothly to the model across a seam. It is applied as one field of
   the image plane to every vertex (skin and eyes) near the model's front surface, fading
   with the depth behind it: layers at one image position (lids, eyeballs, sockets, lips)
   move together, so the merge creates no self-intersection, and the mesh keeps the model's
   topology: one closed skin and the closed eyeballs.

Frame and units are those of the reconstruction (``conventions.md``): orthographic camera
looking down -z, pixel ``(row, col)`` at ``x = col``, ``y = -row``, z toward the viewer, all
in pixels of the reconstruction's grid (the 128 x 128 crop of :func:`monohead.reconstruct`);
the depth's unknown offset (the integrator's gauge) is absorbed by the translation. With a
perspective camera (``K``), the fit and the merge run in the warped space of
:class:`PinholeWarp`, where the rays are parallel, and the depth map's unknown scale is fitted.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _validate as v
from .geometry import limit_slope

__all__ = [
    "MIN_MASK_PIXELS",
    "FitSettings",
    "HeadFit",
    "HeadFitError",
    "PinholeWarp",
    "PoseEstimate",
    "estimate_pose",
    "fit_head",
    "full_head",
    "merge_head",
    "model_faces",
    "self_intersections",
    "yaw_pitch_roll",
]

log = logging.getLogger(__name__)

#: Fewer mask pixels than this (in the largest connected component) is refused: not enough
#: surface to fit a head to.
MIN_MASK_PIXELS = 200

_FIT_REGIONS = ("face", "head_and_neck")
#: Where the identity calibration's change of scale is centred (``FitSettings.calibration_anchor``).
CALIBRATION_ANCHORS = ("visible", "pivot")
_SKIN = ("face", "head_and_neck", "mouth_socket", "eye_socket_left", "eye_socket_right", "cap")
_EYES = ("eyeball_left", "eyeball_right")
_SOCKETS = ("eye_socket_left", "eye_socket_right")
#: Centre of the model's pose (cm, model frame): the middle of the skull (as the generator's pivot).
PIVOT = np.array([0.0, 1.0, 0.5])
#: Width of the model's head (ear to ear, cm) used by the initial scale.
_MIN_NZ = 0.1


class HeadFitError(ValueError):
    """The reconstruction cannot be fitted (empty or too small a mask)."""


@dataclass(frozen=True)
class FitSettings:
    """Settings of :func:`fit_head` (defaults tuned on synthetic heads, see the README).

    Attributes:
        n_identity: identity modes fitted (of the model's 100).
        prior: weight of the identity prior ``|y|^2`` against the data terms (larger = closer
            to the mean head) while the pose is found (first two phases).
        final_prior: the identity prior's weight in the last phase (the pose is then close:
            the identity may move further from the mean); ``None``: ``prior`` throughout.
        expression_prior: weight of ``|w|^2`` on the expression weights. 64 (it was 0.5 until
            the tenth session): from the network's maps the fit reads the expression mostly
            as noise (on 60 validation heads of seed 26, orthographic, the fitted weights sum
            to 13.9 at 0.5 against 4.1 for the true ones, mean absolute error 0.29 against
            0.097 at 64, ``jawOpen`` 0.57 against a true 0.17), which opened and twisted the
            mouths of the real photos; the complete head's surface errors change by 1 % or
            less (README, "A complete head").
        silhouette_weight: weight of a silhouette residual relative to a depth residual.
        iterations: most Gauss-Newton iterations after the initial pose search.
        rigid_iterations: most iterations of the first phase (pose and scale only).
        free_iterations: most iterations of the second phase (everything, the visible and
            contour vertices chosen anew each step); the third phase keeps them (no new
            z-buffer), so that the last steps minimise one smooth function and converge.
        phase_tol: a phase ends when a step moves the vertices by less than this (RMS, px).
        max_rejections: steps rejected (raising the robust cost) and solved again with ten
            times the damping, per iteration, before the phase is taken as converged.
        max_step: largest RMS change of the residuals in one step (pixels; longer steps are
            shortened: a trust region).
        sigma: residual scale (pixels) of the Cauchy weights of the depth residuals.
        silhouette_sigma: residual scale (pixels) of the silhouette residuals.
        silhouette_offset: where a contour vertex's target lies beyond its border pixel's
            centre, along the outline's outward normal (pixels). A mask sampled at pixel
            centres ends on average half a pixel inside the true outline.
        voxel: spacing (cm) of the model vertices used by the fit (one per voxel).
        yaw_candidates: initial yaws (degrees) tried by the pose search (at pitch 0).
        pitch_candidates: initial pitches (degrees) then tried at each of the ``pitch_yaws``
            best yaws (a head looking up or down steeply: the rigid step from pitch 0 stops
            short of it); such a tilted start is taken only if it beats the level start of its
            yaw on both the robust cost and the normals' angle; ``()``: none.
        pitch_yaws: how many of the best yaws get the ``pitch_candidates``.
        tol: convergence: the RMS motion of the fitted vertices in a step below this (pixels).
        cost_tol: convergence also when a step of the last phase changes its robust cost by
            less than this fraction (the minimum is flat: what the step moves no longer
            changes the fit).
        identity_calibration: replace the fitted identity and scale by the learned map of
            :mod:`monohead.head_calibration` (``True``: the shipped one,
            :func:`~monohead.head_calibration.default_calibration`, learned on the shipped
            network's maps of training heads and used only with those weights; a path: that
            file; ``False``: off, e.g. for maps of another network or exact rendered maps). A
            calibration is used only for fits of the ``n_identity`` and the
            ``expression_prior`` it was learned with (its features hold them). A file with
            expression factors also shrinks the fitted expression weights.
            The fit's own values stay in :attr:`HeadFit.fitted_identity`, ``fitted_scale``
            and ``fitted_expression``.
        landmark_weight: weight of a landmark residual (one per image axis) relative to a
            depth residual (``fit_head(..., canonical=...)``; 0: landmarks off).
        landmark_sigma: residual scale (pixels) of the landmark residuals' Cauchy weights.
        landmark_tol: a fitted vertex gets a landmark only where the canonical map comes
            within this many centimetres of its canonical position
            (:func:`canonical_landmarks`).
        calibration_anchor: the point about which the identity calibration changes the head's
            size: ``"visible"`` (the default since the fourteenth session), the centroid of the
            fit's visible vertices, which stays where the fit put it, so the face the camera saw
            stays on the surface; ``"pivot"``, the model's pivot (the skull's centre) as before,
            which moves the face along with the back of the head (on 120 test heads with
            landmarks, orthographic: visible error 1.215 px against 1.028 with ``"visible"``).
        landmark_voxel: landmarks for one fitted vertex per cell of this many centimetres of
            the mean head (the fitted vertices are one per ``voxel``; coarser cells cost less
            time: each landmark adds two rows to the Gauss-Newton system).
    """

    n_identity: int = 100
    prior: float = 16.0
    final_prior: float | None = None
    expression_prior: float = 64.0
    silhouette_weight: float = 2.0
    iterations: int = 20
    rigid_iterations: int = 3
    free_iterations: int = 8
    phase_tol: float = 0.3
    max_rejections: int = 4
    max_step: float = 1.5
    sigma: float = 2.0
    silhouette_sigma: float = 3.0
    silhouette_offset: float = 0.0
    voxel: float = 1.0
    yaw_candidates: tuple[float, ...] = (-60.0, -30.0, 0.0, 30.0, 60.0)
    pitch_candidates: tuple[float, ...] = (-20.0, 20.0)
    pitch_yaws: int = 2
    tol: float = 0.05
    cost_tol: float = 1e-4
    identity_calibration: bool | str = True
    landmark_weight: float = 4.0
    landmark_sigma: float = 2.0
    landmark_tol: float = 0.8
    landmark_voxel: float = 2.0
    calibration_anchor: str = "visible"


@dataclass
class HeadFit:
    """The result of :func:`fit_head`.

    Attributes:
        identity: ``(K,)`` identity coefficients (standard deviations; the model's first K modes).
        expression: ``(E,)`` expression weights in [0, 1] (``expression_names`` name them).
        expression_names: the model's blendshape names.
        scale: pixels per centimetre.
        rotation: ``(3, 3)`` rotation from the model frame to the camera frame.
        translation: ``(3,)`` position of the model's pivot (:data:`PIVOT`) in the camera frame
            (pixels; its z includes the depth map's offset; 0 for a perspective fit).
        converged: whether the last phase ended with a step below ``FitSettings.tol`` (vertices)
            or ``FitSettings.cost_tol`` (relative change of the cost).
        iterations: Gauss-Newton iterations done (after the pose search).
        cost: robust cost per iteration (data + prior) at the start of the iteration, with the
            visible and contour vertices chosen there.
        steps: every step tried, ``(cost before, cost after, accepted)``, both costs with
            the visible and contour vertices of the point the step starts from: a step is
            accepted only if it does not raise that cost (damped and tried again otherwise).
        restarted: the fit ended with a higher robust cost per depth residual than the pose
            search's start point and was taken back to it (``converged`` is then False).
        rms: RMS of the inlier depth residuals at the end (pixels along z).
        inliers: share of the visible fitted vertices with a depth residual under 3 sigma.
        mask_pixels: pixels of the mask used (its largest connected component).
        ignored_pixels: mask pixels left out (other components).
        shape: ``(H, W)`` of the reconstruction.
        seconds: time of the fit.
        model: the :class:`~monohead.synth.head_model.HeadModel` fitted.
        camera: ``None`` (orthographic) or the ``(3, 3)`` intrinsics of a perspective fit
            (``fit_head(..., K=K)``; its frame: the pinhole at ``(cx, -cy, fx)``).
        depth_scale: perspective: the factor from the depth map given to the fit to the
            depth along the optical axis in this frame (``fx - z`` of the surface); 1 otherwise.
        calibrated: ``identity`` and ``scale`` are the identity calibration's
            (``FitSettings.identity_calibration``; and ``expression`` when the file has
            expression factors), ``rms`` and ``inliers`` measured with them.
        fitted_identity, fitted_scale: the fit's own identity and scale before the
            calibration (``None`` when not calibrated).
        fitted_expression: the fit's own expression weights when the calibration replaced
            them too (its expression factors, ``head_calibration.ModeCalibration``); else
            ``None``.
        landmarks: how many of the fitted vertices had an image landmark
            (``fit_head(..., canonical=...)``); 0 without a canonical map.
    """

    identity: np.ndarray
    expression: np.ndarray
    expression_names: list[str]
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    converged: bool
    iterations: int
    cost: list[float]
    steps: list[tuple[float, float, bool]]
    restarted: bool
    rms: float
    inliers: float
    mask_pixels: int
    ignored_pixels: int
    shape: tuple[int, int]
    seconds: float
    model: Any = field(repr=False, default=None)
    camera: np.ndarray | None = None
    depth_scale: float = 1.0
    calibrated: bool = False
    fitted_identity: np.ndarray | None = None
    fitted_scale: float | None = None
    fitted_expression: np.ndarray | None = None
    landmarks: int = 0

    def params(self) -> dict[str, Any]:
        """The fitted parameters as a JSON-able dict."""
        return {
            "identity": [float(x) for x in self.identity],
            "expression": {n: float(w) for n, w in zip(self.expression_names, self.expression, strict=True) if w > 0},
            "scale": float(self.scale),
            "rotation": np.asarray(self.rotation).tolist(),
            "translation": [float(x) for x in self.translation],
            "yaw_pitch_roll": [float(a) for a in yaw_pitch_roll(self.rotation)],
            "converged": bool(self.converged),
            "iterations": int(self.iterations),
            "restarted": bool(self.restarted),
            "rms": float(self.rms),
            "inliers": float(self.inliers),
            "mask_pixels": int(self.mask_pixels),
            "ignored_pixels": int(self.ignored_pixels),
            "seconds": float(self.seconds),
            "camera": None if self.camera is None else np.asarray(self.camera).tolist(),
            "depth_scale": float(self.depth_scale),
            "calibrated": bool(self.calibrated),
            "landmarks": int(self.landmarks),
            "fitted_identity": None if self.fitted_identity is None else [float(x) for x in self.fitted_identity],
            "fitted_scale": None if self.fitted_scale is None else float(self.fitted_scale),
            "fitted_expression": None
            if self.fitted_expression is None
            else {n: float(w) for n, w in zip(self.expression_names, self.fitted_expression, strict=True) if w > 0},
        }

    def vertices(self, identity: Any = None) -> np.ndarray:
        """``(V, 3)`` posed vertices of the fitted head (skin then eyes, :func:`model_faces`
        order), camera frame, pixels; ``identity`` overrides the fitted coefficients (e.g.
        zeros: the mean head in the same pose and expression)."""
        prep = _prepared(self.model)
        y = self.identity if identity is None else np.asarray(identity, np.float64)
        xm = prep.shape(y, self.expression)
        return _pose(xm, self.scale, self.rotation, self.translation)

    def model_mesh(self, identity: Any = None) -> Any:
        """The fitted model as a watertight :class:`trimesh.Trimesh` (skin and eyes), no detail
        from the photo (see :meth:`vertices`)."""
        import trimesh

        return trimesh.Trimesh(self.vertices(identity), _prepared(self.model).faces, process=False)


@dataclass(frozen=True)
class PoseEstimate:
    """The result of :func:`estimate_pose`: the head's pose from the fit's pose search alone.

    Attributes:
        yaw, pitch, roll: degrees (:func:`yaw_pitch_roll` of the rotation; yaw positive when
            the face turns toward the image's right, the sign of the generator's ``pose["yaw"]``).
        rotation: ``(3, 3)`` rotation from the model frame to the camera frame.
        scale: pixels per centimetre.
        cost: the chosen start's robust cost per depth residual (mean head, one rigid step).
        normals_angle: its mean angle (degrees) between the model's and the observed normals.
        seconds: time of the search.
        starts: every start tried, in order: ``(start yaw, start pitch, cost, normals_angle)``
            after its rigid step (the chosen one's as ``cost`` and ``normals_angle``).
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray = field(repr=False)
    scale: float
    cost: float
    normals_angle: float
    seconds: float
    starts: tuple[tuple[float, float, float, float], ...] = ()


def yaw_pitch_roll(rotation: np.ndarray) -> tuple[float, float, float]:
    """Degrees ``(yaw, pitch, roll)`` of ``R = Rz(roll) Rx(pitch) Ry(yaw)`` (the generator's order)."""
    R = np.asarray(rotation, np.float64)
    # Row 2 of Rz Rx Ry is (-cos p sin y, -sin p, cos p cos y); Rz leaves it alone.
    pitch = math.asin(max(-1.0, min(1.0, -R[2, 1])))
    yaw = math.atan2(-R[2, 0], R[2, 2])
    roll = math.atan2(-R[0, 1], R[1, 1])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _rodrigues(w: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w))
    if theta < 1e-15:
        return np.eye(3)
    k = w / theta
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(theta) * K + (1.0 - math.cos(theta)) * (K @ K)


def _pose(xm: np.ndarray, s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (xm - PIVOT) @ (s * R).T + t


# --------------------------------------------------------------------------------------------
# The model, prepared once
# --------------------------------------------------------------------------------------------


class _Prepared:
    """The head model reduced to the skin (cap rim merged: one closed surface) and the eyes."""

    def __init__(self, model: Any) -> None:
        skin_f = model.faces[model.region_faces(list(_SKIN))]
        # The cap's rim vertices are copies of the torso's (same position and deltas): merge.
        used = np.unique(skin_f)
        key = np.round(model.neutral[used].astype(np.float64), 5)
        _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        canon = np.arange(model.num_vertices)
        canon[used] = used[first[inv.reshape(-1)]]
        skin_f = canon[skin_f]
        eye_f = [model.faces[model.region_faces([r])] for r in _EYES]
        skin_v = np.unique(skin_f)
        eye_v = [np.unique(f) for f in eye_f]
        order = np.concatenate([skin_v, *eye_v])
        remap = np.full(model.num_vertices, -1, np.int64)
        remap[order] = np.arange(order.size)
        self.n_skin = int(skin_v.size)
        self.order = order
        self.faces = np.concatenate([remap[skin_f], *[remap[f] for f in eye_f]])
        self.skin_faces = remap[skin_f]
        self.eye_vertices = [remap[e] for e in eye_v]
        self.socket_vertices = [remap[np.intersect1d(model.region_vertices([s]), skin_v)] for s in _SOCKETS]
        self.x0 = model.neutral[order].astype(np.float64)
        self.B = model.identity_basis[:, order].reshape(model.num_identities, -1)  # (K, 3V) float32
        self.E = model.expression_basis[:, order].reshape(model.num_expressions, -1)  # (E, 3V)
        self.num_identities = model.num_identities
        self.expression_names = list(model.expression_names)
        fit_v = remap[np.intersect1d(model.region_vertices(list(_FIT_REGIONS)), skin_v)]
        self.fit_all = fit_v
        self._subsets: dict[Any, np.ndarray] = {}
        self._laplacian: Any = None
        self._incidence: Any = None

    def subset(self, voxel: float, seed: int) -> np.ndarray:
        """Fitting vertices: one (chosen with ``seed``) per ``voxel``-cm cell of the mean head."""
        k = (round(float(voxel), 4), int(seed))
        if k not in self._subsets:
            rng = np.random.default_rng(seed)
            idx = rng.permutation(self.fit_all)
            cells = np.floor(self.x0[idx] / voxel).astype(np.int64)
            _, first = np.unique(cells, axis=0, return_index=True)
            self._subsets[k] = np.sort(idx[first])
        return self._subsets[k]

    def ring(self, voxel: float, seed: int, k: int) -> dict[str, Any]:
        """Everything the fit needs about its vertices, computed once per (voxel, seed, k):
        the subset (:meth:`subset`), its one-ring (the vertices of the skin triangles touching
        it), the bases restricted to the ring, and the sparse map from those triangles' normals
        to the subset's vertex normals."""
        key = ("ring", round(float(voxel), 4), int(seed), int(k))
        if key not in self._subsets:
            import scipy.sparse as sp

            sub = self.subset(voxel, seed)
            inc = np.isin(self.skin_faces, sub).any(axis=1)
            faces = self.skin_faces[inc]
            ring = np.unique(np.concatenate([sub, faces.ravel()]))
            local = np.searchsorted(ring, faces)
            pos = np.searchsorted(ring, sub)  # the subset's rows within the ring
            cols = (3 * ring[:, None] + np.arange(3)).reshape(-1)
            rows_f = np.repeat(np.arange(faces.shape[0]), 3)
            S = sp.csr_matrix((np.ones(rows_f.size), (local.ravel(), rows_f)), shape=(ring.size, faces.shape[0]))
            b, e = self.bases(sub, k)
            self._subsets[key] = {  # type: ignore[assignment]
                "subset": sub, "ring": ring, "pos": pos, "faces": local, "S": S[pos],
                "x0": self.x0[ring], "B": np.ascontiguousarray(self.B[:k, cols]),
                "E": np.ascontiguousarray(self.E[:, cols]),
                "Bsub": b, "Esub": e,
            }  # fmt: skip
        return self._subsets[key]  # type: ignore[return-value]

    def shape(self, y: np.ndarray, w: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Model-frame vertices (cm) of all vertices, or of ``rows`` only."""
        k = y.size
        if rows is None:
            x = self.x0.reshape(-1) + (y.astype(np.float32) @ self.B[:k]).astype(np.float64)
            x += (w.astype(np.float32) @ self.E).astype(np.float64)
            return x.reshape(-1, 3)
        cols = (3 * rows[:, None] + np.arange(3)).reshape(-1)
        x = self.x0[rows].reshape(-1) + (y.astype(np.float32) @ self.B[:k, cols]).astype(np.float64)
        x += (w.astype(np.float32) @ self.E[:, cols]).astype(np.float64)
        return x.reshape(-1, 3)

    def bases(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(n, 3, k)`` identity and ``(n, 3, E)`` expression bases of ``rows`` (float64)."""
        cols = (3 * rows[:, None] + np.arange(3)).reshape(-1)
        b = self.B[:k, cols].T.astype(np.float64).reshape(rows.size, 3, k)
        e = self.E[:, cols].T.astype(np.float64).reshape(rows.size, 3, -1)
        return b, e

    def adjacency(self) -> tuple[Any, np.ndarray]:
        """Edge adjacency of all vertices (CSR ``(V, V)``, ones) and the degrees."""
        if self._laplacian is None:
            import scipy.sparse as sp

            f = self.faces
            e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
            e = np.unique(np.sort(e, axis=1), axis=0)
            n = self.x0.shape[0]
            A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
            A = (A + A.T).tocsr()
            self._laplacian = (A, np.asarray(A.sum(axis=1)).ravel())
        return self._laplacian

    def normals(self, x: np.ndarray) -> np.ndarray:
        """Unit vertex normals (area-weighted face normals) of all vertices ``x`` (skin, eyes)."""
        if self._incidence is None:
            import scipy.sparse as sp

            f = self.faces
            cols = np.repeat(np.arange(f.shape[0]), 3)
            self._incidence = sp.csr_matrix((np.ones(cols.size), (f.ravel(), cols)), shape=(x.shape[0], f.shape[0]))
        f = self.faces
        a = x[f[:, 0]]
        n = self._incidence @ np.cross(x[f[:, 1]] - a, x[f[:, 2]] - a)
        return n / np.maximum(_row_norm(n)[:, None], 1e-30)


def _prepared(model: Any) -> _Prepared:
    if model is None:
        raise ValueError("this HeadFit has no model attached")
    p = model.cache.get("fullhead")
    if p is None:
        p = model.cache["fullhead"] = _Prepared(model)
    return p


_DEFAULT_MODEL: Any = None


def _model(model: Any) -> Any:
    global _DEFAULT_MODEL
    from .synth.head_model import HeadModel

    if model is None:
        if _DEFAULT_MODEL is None:
            _DEFAULT_MODEL = HeadModel.load()
        return _DEFAULT_MODEL
    if isinstance(model, HeadModel):
        return model
    return HeadModel.load(model)


def model_faces(model: Any = None) -> np.ndarray:
    """``(F, 3)`` triangles of the full head (skin, then the two eyeballs) in the order of
    :meth:`HeadFit.vertices`."""
    return _prepared(_model(model)).faces


def model_skin(model: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The skin of the full head: ``(F_s, 3)`` triangles in the order of :meth:`HeadFit.vertices`
    (the first block of :func:`model_faces`), and ``(V,)`` per vertex of that mesh its vertex
    index in the head model (``model``: a :class:`monohead.synth.head_model.HeadModel`, a path,
    or None for the shipped model)."""
    p = _prepared(_model(model))
    return p.skin_faces, p.order


# --------------------------------------------------------------------------------------------
# Observations
# --------------------------------------------------------------------------------------------


class PinholeWarp:
    """A perspective camera as a warp of space (``K`` given to :func:`fit_head`).

    The frame (``conventions``, "Synthetic data under a perspective camera"): pixel units of
    the reference plane ``z = 0`` through the head's pivot, the pinhole at ``(cx, -cy, fx)``
    looking down -z; a point ``(x, y, z)`` projects to column ``c = cx + fx (x - cx) / Z`` and
    row ``r = cy - fy (y + cy) / Z``, ``Z = fx - z`` its depth along the optical axis (so a
    point of the reference plane lies on pixel ``(-y, x)`` when ``fx = fy``). The warp
    ``(x, y, z) -> (c, -r, z)`` maps each pixel's ray to a line along z, keeping the order along
    it: in the warped space the camera is orthographic, and the fit and the merge run there
    unchanged."""

    def __init__(self, K: Any) -> None:
        from .integration.perspective import check_K

        self.fx, self.fy, self.cx, self.cy = check_K(K, "K")
        self.K = np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def warp(self, x: np.ndarray) -> np.ndarray:
        Z = np.maximum(self.fx - x[:, 2], 1e-6 * self.fx)
        return np.column_stack(
            [self.cx + self.fx * (x[:, 0] - self.cx) / Z, -self.cy + self.fy * (x[:, 1] + self.cy) / Z, x[:, 2]]
        )

    def unwarp(self, w: np.ndarray) -> np.ndarray:
        Z = self.fx - w[:, 2]
        return np.column_stack(
            [self.cx + (w[:, 0] - self.cx) * Z / self.fx, -self.cy + (w[:, 1] + self.cy) * Z / self.fy, w[:, 2]]
        )

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """``(n, 3, 3)``: the warp's derivative at points ``x``."""
        Z = np.maximum(self.fx - x[:, 2], 1e-6 * self.fx)
        J = np.zeros((x.shape[0], 3, 3))
        J[:, 0, 0] = self.fx / Z
        J[:, 0, 2] = self.fx * (x[:, 0] - self.cx) / Z**2
        J[:, 1, 1] = self.fy / Z
        J[:, 1, 2] = self.fy * (x[:, 1] + self.cy) / Z**2
        J[:, 2, 2] = 1.0
        return J

    def warp_normals(self, x: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Unit normals in the warped space of the surface with normals ``n`` at ``x``
        (the inverse transpose of :meth:`jacobian`); ``z > 0`` exactly when it faces the pinhole."""
        Z = np.maximum(self.fx - x[:, 2], 1e-6 * self.fx)
        out = np.column_stack([
            n[:, 0] * Z / self.fx,
            n[:, 1] * Z / self.fy,
            n[:, 2] - n[:, 0] * (x[:, 0] - self.cx) / Z - n[:, 1] * (x[:, 1] + self.cy) / Z,
        ])  # fmt: skip
        return out / np.maximum(_row_norm(out)[:, None], 1e-30)

    def warp_maps(self, zhat: np.ndarray, n: np.ndarray, mask: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
        """The warped height ``fx - k zhat`` and its unit normals (from the log-depth slopes
        ``Nx / (fx d)``, ``-Ny / (fy d)`` per column and row, ``d`` the facing denominator,
        at least 0.05) of a depth map ``zhat`` along the optical axis, inside ``mask``."""
        H, W = mask.shape
        rows, cols = np.mgrid[0:H, 0:W]
        d = n[..., 2] - n[..., 0] * (cols - self.cx) / self.fx + n[..., 1] * (rows - self.cy) / self.fy
        d = np.maximum(np.where(mask, d, 1.0), 0.05)
        z = np.where(mask, k * zhat, 0.0)
        # Height h = fx - z: dh/dc = -z dl/dc, dh/drow = -z dl/drow; normal (-dh/dc, dh/drow, 1).
        nw = np.stack([z * n[..., 0] / (self.fx * d), z * n[..., 1] / (self.fy * d), np.ones((H, W))], axis=-1)
        nw /= np.linalg.norm(nw, axis=-1, keepdims=True)
        return np.where(mask, self.fx - z, np.nan), np.where(mask[..., None], nw, 0.0)


def _clamp_normals(n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Unit normals inside ``m`` (zero outside) with ``nz`` at least ``_MIN_NZ`` (the grazing
    ones tilted up, their direction in the image plane kept)."""
    nn = np.where(m[..., None], n, 0.0)
    length = np.linalg.norm(nn, axis=-1, keepdims=True)
    nn = np.divide(nn, length, out=np.zeros_like(nn), where=length > 1e-12)
    return limit_slope(nn, m, _MIN_NZ).astype(nn.dtype, copy=False)


@dataclass
class _Obs:
    depth: np.ndarray  # (H, W) float64, NaN outside
    mask: np.ndarray  # (H, W) bool (largest component)
    n: np.ndarray  # (H, W, 3) unit normals with nz >= _MIN_NZ inside the mask
    w: np.ndarray  # (H, W) per-pixel weight 1 / (1 + 0.1 W)
    border_idx: np.ndarray  # (2, H, W) nearest mask-border pixel
    border_ok: np.ndarray  # (H, W) that border pixel is not on the image frame
    inside: np.ndarray  # (H, W) distance to the mask border, pixels (0 outside)
    border_n: np.ndarray | None = None  # (H, W, 2) outward unit normal (x, y) of the mask's outline
    _table: np.ndarray | None = None  # per padded pixel: what _sample_depth gathers (made once)
    # Perspective (K given): the depth along the optical axis (any scale) and the normals as
    # given; ``depth`` and ``n`` then hold the warped height and normals for the scale ``k``.
    cam: PinholeWarp | None = None
    zhat: np.ndarray | None = None
    n_cam: np.ndarray | None = None
    k: float = 1.0

    def rescale(self, k: float) -> None:
        """Perspective: the warped height and normals for the depth scale ``k`` (the table is
        made again when ``k`` changed)."""
        if self.cam is None or self.zhat is None or self.n_cam is None:
            raise RuntimeError("rescale needs the perspective observations (an orthographic fit has none)")
        if self._table is not None and k == self.k:
            return
        self.k = float(k)
        d, n = self.cam.warp_maps(self.zhat, self.n_cam, self.mask, self.k)
        self.depth, self.n = np.where(self.mask, d, np.nan), _clamp_normals(n, self.mask)
        self._table = None

    def table(self) -> np.ndarray:
        """``((H + 2) * (W + 2), 8)``: per pixel of the image padded by one pixel (pad and
        background rows zero), ``m * (1, C, P, Q, nx, ny, nz, w)`` where ``m`` is the mask, ``w``
        the pixel's weight and
        the pixel's tangent plane is ``h(col, row) = C + P col + Q row`` (``P = -nx / nz``,
        ``Q = ny / nz``, ``nz`` at least ``_MIN_NZ``)."""
        if self._table is None:
            H, Wd = self.mask.shape
            m = self.mask
            nz = np.maximum(self.n[..., 2], _MIN_NZ)
            P = -self.n[..., 0] / nz
            Q = self.n[..., 1] / nz
            rows, cols = np.mgrid[0:H, 0:Wd]
            C = np.where(m, self.depth, 0.0) - P * cols - Q * rows
            t = np.zeros((H + 2, Wd + 2, 8))
            planes = np.stack([np.ones((H, Wd)), C, P, Q, *np.moveaxis(self.n, -1, 0), self.w], axis=-1)
            t[1:-1, 1:-1] = np.where(m[..., None], planes, 0.0)
            self._table = t.reshape(-1, 8)
        return self._table


def _check_inputs(depth: Any, normals: Any, mask: Any, W: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = v.as_float_array(depth, "depth")
    if d.ndim != 2:
        raise ValueError(f"depth must have shape (H, W); got {v.shape_str(d.shape)}")
    H, Wd = d.shape
    m = v.as_bool_array(mask, "mask", shape=(H, Wd))
    n = v.as_float_array(normals, "normals")
    if n.shape != (H, Wd, 3):
        raise ValueError(f"normals must have shape {v.shape_str((H, Wd, 3))} like depth; got {v.shape_str(n.shape)}")
    if W is None:
        w = np.zeros((H, Wd))
    else:
        w = v.as_float_array(W, "W")
        if w.shape != (H, Wd):
            raise ValueError(f"W must have shape {v.shape_str((H, Wd))} like depth; got {v.shape_str(w.shape)}")
    count = int(m.sum())
    if count == 0:
        raise HeadFitError("mask is empty: there is no surface to fit a head to")
    if count < MIN_MASK_PIXELS:
        raise HeadFitError(f"mask has {count} pixels; fitting a head needs at least {MIN_MASK_PIXELS}")
    bad = m & ~np.isfinite(d)
    if bad.any():
        raise ValueError(f"depth must be finite inside the mask; got {int(bad.sum())} NaN or inf pixel(s)")
    badn = m & ~np.isfinite(n).all(axis=-1)
    if badn.any():
        raise ValueError(f"normals must be finite inside the mask; got {int(badn.sum())} NaN or inf pixel(s)")
    return d, n, m, w


def _observations(
    d: np.ndarray, n: np.ndarray, m: np.ndarray, w: np.ndarray, cam: PinholeWarp | None = None
) -> tuple[_Obs, int]:
    from scipy import ndimage

    lab, k = ndimage.label(m)
    ignored = 0
    if k > 1:
        sizes = np.bincount(lab.ravel())[1:]
        main = int(np.argmax(sizes)) + 1
        ignored = int(m.sum() - sizes[main - 1])
        m = lab == main
    if int(m.sum()) < MIN_MASK_PIXELS:
        raise HeadFitError(
            f"the mask's largest connected component has {int(m.sum())} pixels; "
            f"fitting a head needs at least {MIN_MASK_PIXELS}"
        )
    nn = _clamp_normals(n, m)
    border = m & ~ndimage.binary_erosion(m, border_value=1)
    frame = np.zeros_like(m)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    _, idx = ndimage.distance_transform_edt(~border, return_indices=True)
    border_ok = ~frame[idx[0], idx[1]]
    inside = ndimage.distance_transform_edt(m)
    # The outline's outward normal: the gradient of the (smoothed) signed distance to it.
    sdf = ndimage.gaussian_filter(ndimage.distance_transform_edt(~m) - inside, 1.5)
    g_row, g_col = np.gradient(sdf)
    bn = np.stack([g_col, -g_row], axis=-1)
    bn /= np.maximum(np.linalg.norm(bn, axis=-1, keepdims=True), 1e-12)
    dd = np.where(m, d, np.nan)
    obs = _Obs(depth=dd, mask=m, n=nn, w=np.where(m, 1.0 / (1.0 + 0.1 * np.maximum(w, 0.0)), 0.0),
               border_idx=idx, border_ok=border_ok, inside=inside, border_n=bn)  # fmt: skip
    if cam is not None:
        if bool((d[m] <= 0).any()):
            bad = int((d[m] <= 0).sum())
            raise ValueError(
                f"depth must be positive inside the mask with K (depth along the optical axis); got {bad} pixel(s) <= 0"
            )
        obs.cam, obs.zhat = cam, np.where(m, d, 0.0)
        nu = np.where(m[..., None], n, 0.0)
        obs.n_cam = nu / np.maximum(np.linalg.norm(nu, axis=-1, keepdims=True), 1e-12)
        # A first depth scale: the median surface at the pivot's distance (refined by the fit).
        obs.rescale(cam.fx / float(np.median(d[m])))
    return obs, ignored


def _sample_depth(
    obs: _Obs, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observed surface under points ``(x, y)``: (found, depth, unit normal, nearest pixel's
    flat index, coverage weight, pixel weight).

    Bilinear over the four surrounding pixels that are in the mask, each pixel's depth carried
    to the point along its own normal's plane (``h + p dx + q dy``): continuous in ``(x, y)``
    (so the fit's last steps converge), exact on planes. A point is found when the in-mask
    pixels hold at least a quarter of the bilinear weight; its coverage weight rises from 0
    there to 1 at three quarters (so that points do not enter or leave the fit abruptly). The
    pixel weight (``obs.w``) is interpolated the same way (continuous too).

    In NumPy terms, with ``T = obs.table()`` padded by one pixel, ``(col, row) = (x, -y)``,
    ``(c0, r0)`` their floors and ``(fc, fr)`` the remainders: the four pixels' rows of ``T``
    weighted by ``(1 - fr)(1 - fc), (1 - fr) fc, fr (1 - fc), fr fc`` (zero for a point whose
    pixels lie beyond the pad) and summed give ``acc``; then ``found = acc[0] >= 1/4``, depth
    ``(acc[1] + acc[2] col + acc[3] row) / acc[0]``, normal ``acc[4:7]`` normalised, pixel
    weight ``acc[7] / acc[0]``, coverage ``clip((acc[0] - 1/4) 2, 0, 1)`` and the nearest
    pixel ``clip(rint(row)) W + clip(rint(col))``. The compiled core computes exactly that
    (``sample_planes``, ``csrc/plane_sampling.hpp``; the fit samples a few thousand points
    about seventy times, and the gather was its largest single cost in NumPy)."""
    from . import integration  # noqa: F401  # sets the OpenMP spin policy before _core loads
    from ._core import sample_planes

    H, Wd = obs.mask.shape
    xs = np.ascontiguousarray(x, dtype=np.float64)
    ys = np.ascontiguousarray(y, dtype=np.float64)
    ok, D, n, flat, cover, wpix = sample_planes(obs.table(), H, Wd, xs, ys)
    return ok.view(bool), D, n, flat, cover, wpix


def canonical_landmarks(canonical: np.ndarray, points: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Where model points lie in the image, from a canonical-coordinate map.

    ``canonical``: ``(H, W, 3)`` the neutral mean head's position (cm, model frame) of the
    skin seen at each pixel, NaN where none; ``points``: ``(n, 3)`` canonical positions.
    Returns the rows of ``points`` within ``tol`` cm of the map's surface and their image
    positions ``(x = col, y = -row)``: the mean of the nearest pixels, weighted by their
    canonical distance."""
    from scipy.spatial import cKDTree

    ok = np.isfinite(canonical).all(axis=2)
    if ok.sum() < 8:
        return np.zeros(0, np.int64), np.zeros((0, 2))
    rr, cc = np.nonzero(ok)
    C = canonical[rr, cc]
    d, i = cKDTree(C).query(points, k=8)
    near = d[:, 0] < tol
    h = max(tol / 2, 1e-6)
    w = np.exp(-0.5 * ((d[near] ** 2 - d[near, :1] ** 2) / h**2))
    w /= w.sum(axis=1, keepdims=True)
    xy = np.column_stack([(w * cc[i[near]]).sum(1), -(w * rr[i[near]]).sum(1)])
    return np.nonzero(near)[0], xy


def _row_norm(a: np.ndarray) -> np.ndarray:
    """``np.linalg.norm(a, axis=-1)`` for 2 or 3 columns, bitwise the same (the squares summed
    in the same order) but about five times faster: NumPy's reduction over a short last axis
    is slow, and the fit takes such norms a few hundred times."""
    sq = a[..., 0] * a[..., 0] + a[..., 1] * a[..., 1]
    if a.shape[-1] == 3:
        sq = sq + a[..., 2] * a[..., 2]
    elif a.shape[-1] != 2:
        return np.linalg.norm(a, axis=-1)
    return np.sqrt(sq)


def _cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross(a, b)`` of two ``(n, 3)`` float64 arrays, bitwise the same (each component
    one product minus another, as NumPy computes it) without its broadcasting and axis
    handling, which cost about six times the arithmetic on the fit's few thousand rows."""
    out = np.empty((a.shape[0], 3))
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out


def _max3x3(a: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.maximum_filter(a, size=3, mode="nearest")`` of a 2-D float array,
    exactly (a maximum does not round), as two 3-tap passes over an edge-padded copy. For a
    3-pixel window scipy's default mode ``"reflect"`` pads with the edge too, so it is that
    filter as well."""
    p = np.pad(a, 1, mode="edge")
    rows = np.maximum(np.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])
    return np.maximum(np.maximum(rows[:-2], rows[1:-1]), rows[2:])


# Binary morphology with the 4-neighbour cross, as scipy.ndimage's defaults give it (outside
# the array counts as background), exactly, but without its per-call cost: the fit's contour
# test runs these on a small footprint some thirty times a fit.


def _dilate4(m: np.ndarray) -> np.ndarray:
    """``ndimage.binary_dilation(m)`` (2-D bool, the default cross)."""
    out = m.copy()
    out[1:] |= m[:-1]
    out[:-1] |= m[1:]
    out[:, 1:] |= m[:, :-1]
    out[:, :-1] |= m[:, 1:]
    return out


def _erode4(m: np.ndarray) -> np.ndarray:
    """``ndimage.binary_erosion(m)`` (2-D bool, the default cross, border value 0)."""
    out = m.copy()
    out[1:] &= m[:-1]
    out[:-1] &= m[1:]
    out[:, 1:] &= m[:, :-1]
    out[:, :-1] &= m[:, 1:]
    out[[0, -1]] = False
    out[:, [0, -1]] = False
    return out


def _fill_holes4(m: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(m)`` (2-D bool): the background components (4-connected)
    that do not touch the array's border become foreground."""
    from scipy import ndimage

    bg, _ = ndimage.label(~m)
    edge = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
    return ~np.isin(bg, edge[edge > 0])


def _bilinear(img: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of an ``(H, W)`` image at ``(row, col)``; 0 outside."""
    H, Wd = img.shape
    c0 = np.floor(col).astype(np.int64)
    r0 = np.floor(row).astype(np.int64)
    fc, fr = col - c0, row - r0
    out = np.zeros(col.shape)
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
        r, c = r0 + dr, c0 + dc
        ok = (c >= 0) & (c < Wd) & (r >= 0) & (r < H)
        w = (fr if dr else 1.0 - fr) * (fc if dc else 1.0 - fc)
        out += np.where(ok, w * img[np.where(ok, r, 0), np.where(ok, c, 0)], 0.0)
    return out


def _front_visible(x: np.ndarray, nw: np.ndarray, faces: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Vertices of a mesh that the camera sees: front-facing and within a slope-dependent
    tolerance of the front-most surface at their pixel (a z-buffer of the vertices, the
    triangles' centroids and edge midpoints, dense enough to leave no hole)."""
    H, Wd = shape
    t = x[faces]
    pts = np.concatenate(
        [x, t.mean(axis=1), 0.5 * (t[:, 0] + t[:, 1]), 0.5 * (t[:, 1] + t[:, 2]), 0.5 * (t[:, 2] + t[:, 0])]
    )
    c = np.rint(pts[:, 0]).astype(np.int64)
    r = np.rint(-pts[:, 1]).astype(np.int64)
    ok = (c >= 0) & (c < Wd) & (r >= 0) & (r < H)
    zb = np.full(H * Wd, -np.inf)
    np.maximum.at(zb, r[ok] * Wd + c[ok], pts[ok, 2])
    n = x.shape[0]
    inb = ok[:n]
    zv = zb[np.where(inb, r[:n] * Wd + c[:n], 0)]
    slope = np.minimum(_row_norm(nw[:, :2]) / np.maximum(nw[:, 2], 1e-3), 4.0)
    return inb & (nw[:, 2] > 0.0) & (x[:, 2] >= zv - (0.5 + 0.75 * slope))


def _zbuffer_visible(xw: np.ndarray, nw: np.ndarray, shape: tuple[int, int], zb_points: np.ndarray) -> np.ndarray:
    """Front-facing points of ``xw`` not hidden behind ``zb_points`` (a vertex z-buffer)."""
    H, Wd = shape
    c = np.rint(zb_points[:, 0]).astype(np.int64)
    r = np.rint(-zb_points[:, 1]).astype(np.int64)
    ok = (c >= 0) & (c < Wd) & (r >= 0) & (r < H)
    zb = np.full(H * Wd, -np.inf)
    np.maximum.at(zb, r[ok] * Wd + c[ok], zb_points[ok, 2])
    zb = _max3x3(zb.reshape(H, Wd))  # ndimage.maximum_filter(size=3, mode="nearest")
    cx = np.rint(xw[:, 0]).astype(np.int64)
    rx = np.rint(-xw[:, 1]).astype(np.int64)
    inb = (cx >= 0) & (cx < Wd) & (rx >= 0) & (rx < H)
    nz = np.maximum(nw[:, 2], 1e-3)
    slope = np.minimum(_row_norm(nw[:, :2]) / nz, 4.0)
    tol = 1.5 + 1.5 * slope
    zref = zb[np.where(inb, rx, 0), np.where(inb, cx, 0)]
    return (nw[:, 2] > 0.0) & (~inb | (xw[:, 2] >= zref - tol))


# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------


def _check_settings(settings: Any) -> FitSettings:
    if settings is None:
        return FitSettings()
    if not isinstance(settings, FitSettings):
        raise TypeError(f"settings must be a FitSettings or None; got {type(settings).__name__}")
    if settings.calibration_anchor not in CALIBRATION_ANCHORS:
        raise ValueError(
            f"settings.calibration_anchor must be one of {CALIBRATION_ANCHORS}; got {settings.calibration_anchor!r}"
        )
    for name, low in (("landmark_weight", 0.0), ("landmark_sigma", None), ("landmark_tol", None),
                      ("landmark_voxel", None)):  # fmt: skip
        v = getattr(settings, name)
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (v < 0 if low == 0.0 else v <= 0):
            raise ValueError(f"settings.{name} must be a finite number {'>= 0' if low == 0.0 else '> 0'}; got {v!r}")
    cal = settings.identity_calibration
    if not isinstance(cal, (bool, str)) and not hasattr(cal, "__fspath__"):
        raise TypeError(f"settings.identity_calibration must be a bool or a path; got {type(cal).__name__}")
    return settings


class _Fitter:
    def __init__(self, prep: _Prepared, obs: _Obs, cfg: FitSettings, seed: int) -> None:
        self.prep, self.obs, self.cfg = prep, obs, cfg
        self.k = int(min(cfg.n_identity, prep.num_identities))
        self.ring = prep.ring(cfg.voxel, seed, self.k)
        self.Bk, self.Ek = self.ring["Bsub"], self.ring["Esub"]
        self.ne = self.Ek.shape[2]
        self.shape_hw = obs.mask.shape
        self._cache_key: Any = None
        self._cache: Any = None
        self.frozen: Any = None
        self.sets: Any = None
        self.last: Any = None
        self.last_normals: Any = None  # (found, observed normals, model normals) of the last residuals
        self.cam = obs.cam
        self.world_sub: Any = None  # perspective: the subset's posed (unwarped) vertices
        self.jphi: Any = None  # perspective: the warp's derivative there
        self.lm_rows = np.zeros(0, np.int64)  # subset rows with an image landmark
        self.lm_xy = np.zeros((0, 2))  # their targets (x = col, y = -row)

    def set_landmarks(self, canonical: np.ndarray) -> None:
        """Image targets of the subset's vertices from a canonical-coordinate map."""
        x0 = self.prep.x0[self.ring["subset"]]
        # one landmark per landmark_voxel cell of the mean head (the subset's first there)
        _, first = np.unique(np.floor(x0 / self.cfg.landmark_voxel).astype(np.int64), axis=0, return_index=True)
        cand = np.sort(first)
        rows, xy = canonical_landmarks(canonical, x0[cand], self.cfg.landmark_tol)
        self.lm_rows, self.lm_xy = cand[rows], xy

    def world_t(self, t: np.ndarray) -> np.ndarray:
        """The translation of the pose: ``t`` itself, or with a camera ``(t[0], t[1], 0)``
        (``t[2]`` holds the log of the depth scale there: the pivot stays on the reference plane)."""
        return t if self.cam is None else np.array([t[0], t[1], 0.0])

    def points(
        self, y: np.ndarray, w: np.ndarray, s: float, R: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posed ring vertices, and the subset's posed vertices and unit normals.

        The model-frame shape and normals are kept while ``(y, w)`` do not change (the pose
        search and the rigid steps): the normals of a similarity transform are rotated ones. The
        mean head's (``y`` and ``w`` all +0.0, where every pose search starts) are kept with the
        ring, for every fit and pose search that uses it."""
        g = self.ring
        key = (y.tobytes(), w.tobytes())
        if self._cache_key != key:
            mean = (np.zeros(y.shape, y.dtype).tobytes(), np.zeros(w.shape, w.dtype).tobytes())
            if key == mean and g.get("mean_shape", (None,))[0] == key:
                self._cache_key, self._cache = key, g["mean_shape"][1]
            else:
                x = g["x0"].reshape(-1) + (y.astype(np.float32) @ g["B"]).astype(np.float64)
                x += (w.astype(np.float32) @ g["E"]).astype(np.float64)
                x = x.reshape(-1, 3)
                f = g["faces"]
                a = x[f[:, 0]]
                n = g["S"] @ _cross3(x[f[:, 1]] - a, x[f[:, 2]] - a)
                n /= np.maximum(_row_norm(n)[:, None], 1e-30)
                self._cache_key, self._cache = key, (x, n)
                if key == mean:
                    x.setflags(write=False)
                    n.setflags(write=False)
                    g["mean_shape"] = (key, (x, n))
        x, n = self._cache
        xw = _pose(x, s, R, self.world_t(t))
        if self.cam is None:
            return xw, xw[g["pos"]], n @ R.T
        # Perspective: the fit runs in the warped space (orthographic there), the depth map's
        # scale exp(t[2]) sets the observed surface.
        self.obs.rescale(math.exp(float(t[2])))
        sub = xw[g["pos"]]
        self.world_sub, self.jphi = sub, self.cam.jacobian(sub)
        return self.cam.warp(xw), self.cam.warp(sub), self.cam.warp_normals(sub, n @ R.T)

    def residuals(self, y, w, s, R, t, freeze: bool = False, pose_only: bool = False, sets=None, jacobian=True):
        """Residuals, Jacobian rows, robust weights at the current parameters.

        With ``pose_only``, the Jacobian has the 7 pose columns only (rotation, translation,
        log-scale), for the steps that keep the shape.

        With ``freeze``, the visible and contour vertices and the contour targets are kept
        from this call on (the last iterations then minimise one smooth function).

        ``sets``: the visible and contour vertices and the contour targets to use (those of
        another call, :attr:`sets` after it), so that two parameter sets are compared on the
        same robust cost (the step acceptance). With ``jacobian=False`` only the cost is
        computed (``J`` is ``None``)."""
        obs, cfg = self.obs, self.cfg
        xw_ring, xw, nw = self.points(y, w, s, R, t)
        self.last = xw
        H, Wd = self.shape_hw
        c = np.rint(xw[:, 0]).astype(np.int64)
        r = np.rint(-xw[:, 1]).astype(np.int64)
        inb_s = (c >= 1) & (c < Wd - 1) & (r >= 1) & (r < H - 1)
        cc, rr = np.where(inb_s, c, 0), np.where(inb_s, r, 0)
        n2 = nw[:, :2]
        l2 = _row_norm(n2)
        m2 = n2 / np.maximum(l2, 1e-12)[:, None]
        if sets is not None or self.frozen is not None:
            vis, sil, bx, by = sets if sets is not None else self.frozen
            sil = sil & inb_s
        else:
            vis = _zbuffer_visible(xw, nw, self.shape_hw, xw_ring)
            sil = inb_s & vis & self._contour(xw_ring, rr, cc) & (nw[:, 2] < 0.5) & (l2 > 0.5) & obs.border_ok[rr, cc]
            br, bc = obs.border_idx[0][rr, cc], obs.border_idx[1][rr, cc]
            bx, by = bc.astype(np.float64), -br.astype(np.float64)
            if cfg.silhouette_offset:
                bx = bx + cfg.silhouette_offset * obs.border_n[br, bc, 0]
                by = by + cfg.silhouette_offset * obs.border_n[br, bc, 1]
            # A contour vertex and its border pixel must face the same way (within 60 degrees):
            # the nearest border pixel of the wrong side (the face's profile against the back
            # of the head, a gap between chin and neck) is no correspondence.
            sil &= np.einsum("ij,ij->i", m2, obs.border_n[br, bc]) > 0.5
            if freeze:
                self.frozen = (vis, sil, bx, by)
        self.sets = (vis, sil, bx, by)
        ok, D, nobs, flat, cover, wpix = _sample_depth(obs, xw[:, 0], xw[:, 1])
        self.last_normals = (ok, nobs, nw)
        use = vis & ok
        nz_o = np.maximum(nobs[:, 2], _MIN_NZ)
        r_d = nz_o * (xw[:, 2] - D)
        r_s = m2[:, 0] * (xw[:, 0] - bx) + m2[:, 1] * (xw[:, 1] - by)
        lr = self.lm_rows
        r_l = (xw[lr, :2] - self.lm_xy).T.reshape(-1)  # x residuals, then y
        nd, ns, nl = int(use.sum()), int(sil.sum()), int(r_l.size)
        sig = np.concatenate(
            [np.full(nd, cfg.sigma), np.full(ns, cfg.silhouette_sigma), np.full(nl, cfg.landmark_sigma)]
        )
        base = np.concatenate(
            [wpix[use] * cover[use], np.full(ns, cfg.silhouette_weight), np.full(nl, cfg.landmark_weight)]
        )
        if not jacobian:
            res = np.concatenate([r_d[use], r_s[sil], r_l])
            cost = float(np.sum(base * sig**2 * np.log1p((res / sig) ** 2)))
            return res, None, None, cost, nd, r_d[use]

        # Jacobians. Direction of each residual in 3D: depth -> n_obs; silhouette -> (m2, 0);
        # landmarks -> x, y.
        exy = np.repeat(np.eye(3)[:2], lr.size, axis=0)  # the x rows' direction, then the y rows'
        dirs = np.concatenate([nobs[use], np.column_stack([m2[sil], np.zeros(ns)]), exy])
        sel = np.concatenate([np.nonzero(use)[0], np.nonzero(sil)[0], lr, lr])
        res = np.concatenate([r_d[use], r_s[sil], r_l])
        if self.cam is None:
            q = xw[sel] - t
        else:
            # Perspective: the residuals' directions pulled back through the warp.
            dirs = np.einsum("nij,ni->nj", self.jphi[sel], dirs)
            q = self.world_sub[sel] - self.world_t(t)
        J_rot = _cross3(q, dirs)
        J_t = dirs
        J_s = np.einsum("ij,ij->i", q, dirs)[:, None]
        if pose_only:
            J = np.hstack([J_rot, J_t, J_s])
        else:
            u = dirs @ (s * R)  # (n, 3): (s R)^T d
            J_y = np.einsum("ic,ick->ik", u, self.Bk[sel])
            J_w = np.einsum("ic,ick->ik", u, self.Ek[sel])
            J = np.hstack([J_rot, J_t, J_s, J_y, J_w])
        if self.cam is not None:
            # t[2] is the log of the depth scale k: the observed height is fx - k zhat.
            J[:, 5] = 0.0
            J[:nd, 5] = nz_o[use] * (self.cam.fx - D[use])
        wr = base / (1.0 + (res / sig) ** 2)
        cost = float(np.sum(base * sig**2 * np.log1p((res / sig) ** 2)))
        return res, J, wr, cost, nd, r_d[use]

    def _contour(self, xw_ring: np.ndarray, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
        """Whether pixels ``(rr, cc)`` lie on the border of the model's footprint (computed at
        half resolution: the ring's vertices are a few pixels apart)."""
        H, Wd = self.shape_hw
        h2, w2 = (H + 1) // 2, (Wd + 1) // 2
        cx = np.floor(xw_ring[:, 0] / 2 + 0.25).astype(np.int64)
        rx = np.floor(-xw_ring[:, 1] / 2 + 0.25).astype(np.int64)
        inb = (cx >= 0) & (cx < w2) & (rx >= 0) & (rx < h2)
        foot = np.zeros((h2 + 2, w2 + 2), bool)
        foot[rx[inb] + 1, cx[inb] + 1] = True
        foot = _fill_holes4(_erode4(_dilate4(foot)))  # ndimage.binary_fill_holes(binary_closing(foot))
        edge = (foot & ~_erode4(foot))[1:-1, 1:-1]
        return edge[np.minimum(rr // 2, h2 - 1), np.minimum(cc // 2, w2 - 1)]


def fit_head(
    depth: Any,
    normals: Any,
    mask: Any,
    W: Any = None,
    *,
    K: Any = None,
    model: Any = None,
    settings: FitSettings | None = None,
    seed: int = 0,
    canonical: Any = None,
) -> HeadFit:
    """Fit the head model (identity, expression, similarity pose) to a reconstruction.

    See the module docstring for the energy. Deterministic: the same inputs and ``seed`` give
    the same result (``seed`` chooses the model vertices that the fit uses, one per cell of
    ``settings.voxel`` centimetres).

    Args:
        depth: ``(H, W)`` integrated depth, NaN outside the mask: orthographic, the height
            toward the viewer in pixels (any offset); with ``K``, the depth along the optical
            axis (positive, any scale: e.g. ``monohead.integrate(normals, W, K=K)``).
        normals: ``(H, W, 3)`` unit normals of the reconstruction (camera frame, facing the
            camera: Nz > 0 orthographic).
        mask: ``(H, W)`` bool; only its largest 4-connected component is used.
        W: optional ``(H, W)`` depth-gradient magnitude; pixels with large W (depth steps)
            count less (``1 / (1 + 0.1 W)``).
        K: ``None`` (orthographic camera) or the ``(3, 3)`` intrinsics in OpenCV form
            (``docs/conventions.md``) of a perspective camera. The fit then runs in the frame
            of the synthetic data's perspective camera: pixel units of the reference plane
            through the head's pivot (``translation[2] = 0``), the pinhole at
            ``(cx, -cy, fx)``; the depth map's unknown scale is fitted
            (:attr:`HeadFit.depth_scale`: the depth along the axis is ``depth_scale * depth``).
        model: a :class:`~monohead.synth.head_model.HeadModel` or a path to one (default the
            shipped ICT-FaceKit asset).
        settings: :class:`FitSettings` (default tuned values).
        seed: integer seed of the fitting vertices.
        canonical: optional ``(H, W, 3)`` canonical-coordinate map of the same crop
            (:func:`monohead.model.canonical.predict_canonical`: the mean head's position, cm,
            of the skin seen at each pixel; NaN where none). Each fitted vertex whose canonical
            position the map comes close to (``settings.landmark_tol``) gets that image position
            as a landmark: two residuals (x, y) pulling its projection there, weighted by
            ``settings.landmark_weight`` (Cauchy scale ``landmark_sigma``). Unlike the depth
            residuals, they fix where along the surface each vertex lies.

    Returns:
        :class:`HeadFit` (``converged`` says whether the steps became small).

    Raises:
        HeadFitError: (a ``ValueError``) the mask is empty or its largest component has fewer
            than :data:`MIN_MASK_PIXELS` pixels.
        ValueError, TypeError: malformed inputs (shapes, NaN inside the mask...).
    """
    t_start = time.perf_counter()
    cfg = _check_settings(settings)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    d, n, m, w = _check_inputs(depth, normals, mask, W)
    cam = None if K is None else PinholeWarp(K)
    obs, ignored = _observations(d, n, m, w, cam)
    hm = _model(model)
    prep = _prepared(hm)
    fitter = _Fitter(prep, obs, cfg, int(seed))
    if canonical is not None and cfg.landmark_weight > 0:
        c = np.asarray(canonical, np.float64)
        if c.shape != (*m.shape, 3):
            raise ValueError(f"canonical must have shape {(*m.shape, 3)} (the mask's, 3); got {c.shape}")
        fitter.set_landmarks(c)
    k, ne = fitter.k, fitter.ne
    y = np.zeros(k)
    ew = np.zeros(ne)

    # --- initial pose: scale and position from the mask, yaw by search.
    s, R, t, start_score, _ = _initial_pose(fitter, obs, cfg)
    costs: list[float] = []
    steps: list[tuple[float, float, bool]] = []
    converged = False
    it = 0
    P = 7 + k + ne

    def priors(y_: np.ndarray, ew_: np.ndarray, frozen: bool) -> float:
        prior_ = cfg.prior if not frozen or cfg.final_prior is None else cfg.final_prior
        return prior_ * float(y_ @ y_) + cfg.expression_prior * float(ew_ @ ew_)

    def score(params: tuple) -> float:
        """The robust cost per depth residual with the visible and contour vertices chosen
        at ``params`` (the pose search's score, the prior included): comparable between
        parameter sets whose visible vertices differ."""
        _, _, _, c_, nd_, _ = fitter.residuals(*params, pose_only=True, sets=None, jacobian=False)
        return (c_ + priors(params[0], params[1], fitter.frozen is not None)) / max(nd_, 1)

    start = (y, ew, s, R, t)
    # Phases: "rigid" (pose and scale) until its steps are small, then "free" (everything)
    # until they are small again, then "frozen" (visible and contour vertices kept) until
    # converged; at most cfg.iterations Gauss-Newton steps in all. Every step is accepted
    # only if it lowers the robust cost (data + prior) computed with the visible and
    # contour vertices of the point it starts from (Levenberg-Marquardt: a rejected step is
    # solved again with more damping, an accepted one lowers the damping).
    phase = "rigid"
    phase_steps = 0
    lm = 0.0
    pending: Any = None  # frozen phase: the accepted candidate's residuals and Jacobian
    pending_last: Any = None
    for it in range(1, cfg.iterations + 1):
        rigid = phase == "rigid"
        frozen = phase == "frozen"
        if frozen and pending is not None:
            res, J, wr, cost, nd, _ = pending  # the accepted step's point, evaluated with the same sets
            fitter.last, fitter.sets = pending_last, fitter.frozen
        else:
            res, J, wr, cost, nd, _ = fitter.residuals(y, ew, s, R, t, freeze=frozen, pose_only=rigid)
        pending = None
        if res.size < 10:
            break
        sets = fitter.sets
        before = fitter.last  # the fitted vertices (posed; warped with a camera) at this point
        prior = cfg.prior if not frozen or cfg.final_prior is None else cfg.final_prior
        total = cost + priors(y, ew, frozen)
        costs.append(total)
        if rigid:
            # Pose and scale only (the shape is kept): a 7 x 7 system.
            A = J.T @ (J * wr[:, None])
            g = J.T @ (wr * res)
            A[np.diag_indices(7)] += 1e-6 + 1e-3 * np.maximum(np.diag(A), 1e-9)
        else:
            # The Gauss-Newton matrix in float32 (half the time of the largest product; its
            # relative error, about 1e-6, changes the steps, not the point they converge to:
            # the gradient g stays float64).
            Js = (J * np.sqrt(wr)[:, None]).astype(np.float32)
            A = (Js.T @ Js).astype(np.float64)
            g = J.T @ (wr * res)
            reg = np.zeros(P)
            reg[7 : 7 + k] = prior
            reg[7 + k :] = cfg.expression_prior
            A[np.diag_indices(P)] += reg + 1e-6
            g[7 : 7 + k] += prior * y
            g[7 + k :] += cfg.expression_prior * ew
            # Light damping of the pose keeps the first steps sane.
            A[np.diag_indices(7)] += 1e-3 * np.maximum(np.diag(A)[:7], 1e-9)
        accepted = False
        cand: Any = None
        new_total = total
        for _ in range(cfg.max_rejections + 1):
            try:
                Ad = A + np.diag(lm * np.diag(A)) if lm > 0 else A
                if rigid:
                    delta = np.zeros(P)
                    delta[:7] = -np.linalg.solve(Ad, g)
                else:
                    delta = _bounded_step(Ad, g, P, 7 + k, ew)
            except np.linalg.LinAlgError:
                break
            # Trust region: the step may move the residuals by at most max_step pixels (RMS).
            pred = float(np.sqrt(np.mean((J @ delta[: J.shape[1]]) ** 2)))
            if pred > cfg.max_step:
                delta *= cfg.max_step / pred
            cand = (
                y + delta[7 : 7 + k],
                np.clip(ew + delta[7 + k :], 0.0, 1.0),  # (already within bounds, up to rounding)
                s * math.exp(float(np.clip(delta[6], -0.5, 0.5))),
                _rodrigues(delta[:3]) @ R,
                t + delta[3:6],
            )
            if frozen:
                # The frozen phase keeps its sets: this evaluation, Jacobian included, is the
                # next iteration's if the step is accepted.
                out = fitter.residuals(*cand, sets=fitter.frozen, jacobian=True)
            else:
                out = fitter.residuals(*cand, sets=sets, jacobian=False)
            new_total = out[3] + priors(cand[0], cand[1], frozen)
            after = fitter.last
            accepted = new_total <= total
            steps.append((total, new_total, accepted))
            if accepted:
                lm = 0.0 if lm < 1e-4 else lm * 0.1
                if frozen:
                    pending, pending_last = out, after
                break
            lm = max(1e-3, 10.0 * lm)
        if not accepted:
            # No step lowers the cost of this point's correspondences: a minimum of them.
            log.debug("fit_head iteration %d (%s): cost %.6g, no descent step (damping %.3g)", it, phase, total, lm)
            if frozen:
                converged = True
                break
            phase, phase_steps, lm = ("free" if rigid else "frozen"), 0, 0.0
            continue
        y, ew, s, R, t = cand
        move = float(np.sqrt(np.mean(np.sum((after - before) ** 2, axis=1))))
        log.debug("fit_head iteration %d (%s): cost %.6g -> %.6g, RMS move %.4g px, |y| %.3g, %d depth residuals, "
                  "damping %.3g", it, phase, total, new_total, move, float(np.linalg.norm(y)), nd, lm)  # fmt: skip
        phase_steps += 1
        if frozen and (move < cfg.tol or total - new_total <= cfg.cost_tol * total):
            # Small steps, or a flat valley (the identity and the pose trade off without
            # changing the fit).
            converged = True
            break
        if phase == "rigid" and (move < cfg.phase_tol or phase_steps >= cfg.rigid_iterations):
            phase, phase_steps = "free", 0
        elif phase == "free" and (move < cfg.phase_tol or phase_steps >= cfg.free_iterations):
            phase, phase_steps = "frozen", 0
    # No fit ends worse than it started: the end point is compared with the start (the pose
    # search's) on the robust cost per depth residual with the correspondences of each.
    fitter.frozen = None
    end_score = score((y, ew, s, R, t))
    restarted = end_score > start_score
    if restarted:
        log.debug("fit_head: end score %.6g above the start's %.6g: back to the start", end_score, start_score)
        y, ew, s, R, t = start
        converged = False

    def result(y_: np.ndarray, s_: float, R_: np.ndarray, t_: np.ndarray, ew_: np.ndarray) -> HeadFit:
        rd = fitter.residuals(y_, ew_, s_, R_, t_, pose_only=True, jacobian=False)[5]
        inl = np.abs(rd) < 3 * cfg.sigma
        return HeadFit(
            identity=y_, expression=ew_, expression_names=list(prep.expression_names), scale=float(s_), rotation=R_,
            translation=fitter.world_t(t_), converged=converged, iterations=it, cost=costs, steps=steps,
            restarted=restarted, rms=float(np.sqrt(np.mean(rd[inl] ** 2))) if inl.any() else float("nan"),
            inliers=float(inl.mean()) if rd.size else 0.0, mask_pixels=int(obs.mask.sum()), ignored_pixels=ignored,
            shape=obs.mask.shape, seconds=time.perf_counter() - t_start, model=hm,
            camera=None if cam is None else cam.K.copy(), depth_scale=1.0 if cam is None else math.exp(float(t_[2])),
            landmarks=int(fitter.lm_rows.size),
        )  # fmt: skip

    fit = result(y, s, R, t, ew)
    calibration = _calibration(cfg.identity_calibration) if k > 0 and not restarted else None
    if calibration is not None and calibration.n_identity != k:
        log.debug("fit_head: the identity calibration is for %d modes, not %d: not used", calibration.n_identity, k)
        calibration = None
    learned = None if calibration is None else calibration.expression_prior
    if learned is not None and not math.isclose(learned, cfg.expression_prior):
        log.debug("fit_head: the identity calibration was learned with expression_prior %g, not %g: not used",
                  learned, cfg.expression_prior)  # fmt: skip
        calibration = None
    if calibration is not None and not calibration.covers(fit):
        log.debug("fit_head: the identity calibration has no map for this fit's mode: not used")
        calibration = None
    if calibration is not None:
        y_cal, factor = calibration.apply(fit)
        w_cal = calibration.expression(fit)  # None: a calibration without expression factors
        w_new = ew if w_cal is None else w_cal
        t_new = t
        if cfg.calibration_anchor == "visible":
            # keep the centroid of the fit's visible vertices where it was: the calibrated head
            # grows or shrinks about the face the camera saw, not about the skull's centre
            vis = fitter.sets[0] if fitter.sets is not None else None
            if vis is not None and vis.any():
                rows = fitter.ring["subset"][vis]
                a_old = prep.shape(y, ew, rows).mean(axis=0)
                a_new = prep.shape(y_cal, w_new, rows).mean(axis=0)
                world = fitter.world_t(t)
                shift = s * (R @ (a_old - PIVOT)) - s * factor * (R @ (a_new - PIVOT))
                t_new = t.copy()
                t_new[: 3 if cam is None else 2] = (world + shift)[: 3 if cam is None else 2]
        fit = result(y_cal, s * factor, R, t_new, w_new)
        fit.fitted_identity, fit.fitted_scale, fit.calibrated = y, float(s), True
        fit.fitted_expression = None if w_cal is None else ew
    fit.seconds = time.perf_counter() - t_start
    return fit


def _calibration(setting: bool | str) -> Any:
    """The :class:`~monohead.head_calibration.IdentityCalibration` that ``FitSettings.identity_calibration``
    asks for, or None."""
    from . import head_calibration

    if setting is False:
        return None
    if setting is True:
        return head_calibration.default_calibration()
    return head_calibration.load_cached(setting)


def estimate_pose(
    depth: Any,
    normals: Any,
    mask: Any,
    W: Any = None,
    *,
    model: Any = None,
    settings: FitSettings | None = None,
    seed: int = 0,
) -> PoseEstimate:
    """The head's pose from :func:`fit_head`'s pose search alone (no shape fit): a quick,
    orthographic reading of the head's turn from a reconstruction.

    The mean head is placed by the mask (scale and position) at each of
    ``settings.yaw_candidates`` (pitch 0; then ``settings.pitch_candidates`` at the
    ``settings.pitch_yaws`` best yaws), moved by one rigid Gauss-Newton step, and the start with
    the lowest sum of its robust depth cost and its mean angle between the model's and the
    observed normals (each relative to the best) is taken: the normals tell a profile from its
    mirror image, whose outline is alike. The same start as :func:`fit_head`'s for the same
    inputs, ``settings`` and ``seed``.

    Args:
        depth, normals, mask, W, model, settings, seed: as in :func:`fit_head` (orthographic).

    Returns:
        :class:`PoseEstimate`.

    Raises:
        HeadFitError: the mask's largest component has fewer than :data:`MIN_MASK_PIXELS` pixels.
        ValueError, TypeError: malformed inputs.
    """
    t_start = time.perf_counter()
    cfg = _check_settings(settings)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    d, n, m, w = _check_inputs(depth, normals, mask, W)
    obs, _ = _observations(d, n, m, w)
    fitter = _Fitter(_prepared(_model(model)), obs, cfg, int(seed))
    starts: list[tuple[float, float, float, float]] = []
    s, R, _, cost, angle = _initial_pose(fitter, obs, cfg, starts)
    yaw, pitch, roll = yaw_pitch_roll(R)
    return PoseEstimate(yaw=yaw, pitch=pitch, roll=roll, rotation=R, scale=float(s), cost=float(cost),
                        normals_angle=float(angle), seconds=time.perf_counter() - t_start,
                        starts=tuple(starts))  # fmt: skip


def _bounded_step(A: np.ndarray, g: np.ndarray, active: int, first_w: int, w: np.ndarray) -> np.ndarray:
    """Gauss-Newton step ``A delta = -g`` on the first ``active`` parameters, keeping the
    expression weights (parameters ``first_w ...``) in [0, 1]: weights whose step would leave
    the box are fixed at the bound and the rest is solved again (active set, a few passes)."""
    P = A.shape[0]
    delta = np.zeros(P)
    free = np.zeros(P, bool)
    free[:active] = True
    fixed = np.zeros(P)
    if active > first_w:
        # Weights at a bound whose gradient pushes them out stay there (projected Newton).
        gw = g[first_w:]
        free[first_w:] &= ~(((w <= 0.0) & (gw > 0)) | ((w >= 1.0) & (gw < 0)))
    for _ in range(4):
        idx = np.flatnonzero(free)
        rhs = -g[idx] - A[np.ix_(idx, np.flatnonzero(~free))] @ fixed[~free]
        delta[:] = fixed
        delta[idx] = np.linalg.solve(A[np.ix_(idx, idx)], rhs)
        if active <= first_w:
            break
        new = w + delta[first_w:]
        out = free[first_w:] & ((new < -1e-9) | (new > 1 + 1e-9))
        if not out.any():
            break
        j = first_w + np.flatnonzero(out)
        fixed[j] = np.clip(new[out], 0.0, 1.0) - w[out]
        free[j] = False
    return delta


def _initial_pose(
    fitter: _Fitter, obs: _Obs, cfg: FitSettings, starts: list | None = None
) -> tuple[float, np.ndarray, np.ndarray, float, float]:
    """Scale and position from the mask's width and top; per candidate yaw (pitch 0), then
    per candidate pitch at the two best of those yaws, one rigid step; then the candidate with
    the lowest sum of its robust cost per depth residual and its mean angle between the
    model's and the observed normals, each relative to the best of the candidates (a tilted
    candidate only if it beats its yaw's level one on both). Returns
    the scale, rotation, translation, that candidate's robust cost per depth residual (the
    mean head's: the start of the fit's "no worse than its start") and its normals' angle.
    ``starts``, when given, gets ``(yaw, pitch, cost per residual, normals' angle)`` of every
    candidate."""
    rows_m, cols_m = np.nonzero(obs.mask)
    top = rows_m.min()
    height = rows_m.max() - top + 1
    upper = rows_m < top + 0.55 * height
    x_mid = 0.5 * (cols_m[upper].min() + cols_m[upper].max())
    width_px = float(cols_m[upper].max() - cols_m[upper].min() + 1)
    xm = fitter.ring["x0"][fitter.ring["pos"]]
    candidates: list[tuple[float, float, float, np.ndarray, np.ndarray]] = []
    zero_y, zero_w = np.zeros(fitter.k), np.zeros(fitter.ne)

    tried: list[tuple[float, float]] = []

    def candidate(yaw: float, pitch: float) -> None:
        tried.append((yaw, pitch))
        R = _rotation(float(yaw), float(pitch), 0.0)
        q = (xm - PIVOT) @ R.T
        crown = q[:, 1].max()
        upper_m = q[:, 1] > crown - 0.55 * (crown - q[:, 1].min()) * 0.6
        wmod = float(np.ptp(q[upper_m, 0]))
        s = width_px / max(wmod, 1e-6)
        t = np.array([x_mid - s * 0.5 * (q[upper_m, 0].max() + q[upper_m, 0].min()), -top - 0.5 - s * crown, 0.0])
        # depth offset: match the medians of the visible model and the observed depth
        xw = _pose(xm, s, R, t)
        if fitter.cam is None:
            ok, D, _, _, _, _ = _sample_depth(obs, xw[:, 0], xw[:, 1])
            front = ok & (((xm - PIVOT) @ R.T)[:, 2] > 0)
            if front.any():
                t[2] = float(np.median(D[front] - xw[front, 2]))
        else:
            # Perspective: the depth scale k that puts the observed surface (depth k zhat
            # along the axis) at the model's median depth (t[2] = log k).
            k0 = obs.k
            wv = fitter.cam.warp(xw)
            ok, D, _, _, _, _ = _sample_depth(obs, wv[:, 0], wv[:, 1])
            front = ok & (((xm - PIVOT) @ R.T)[:, 2] > 0)
            zhat = (fitter.cam.fx - D) / k0
            t[2] = math.log(k0)
            if front.any():
                ratio = (fitter.cam.fx - xw[front, 2]) / np.maximum(zhat[front], 1e-12)
                t[2] = math.log(max(float(np.median(ratio)), 1e-12))
        for _ in range(1):
            res, J, wr, cost, nd, _ = fitter.residuals(zero_y, zero_w, s, R, t, pose_only=True)
            A = J[:, :7].T @ (J[:, :7] * wr[:, None])
            A[np.diag_indices(7)] += 1e-3 * np.maximum(np.diag(A), 1e-9) + 1e-6
            delta = -np.linalg.solve(A, J[:, :7].T @ (wr * res))
            R = _rodrigues(delta[:3]) @ R
            t = t + delta[3:6]
            s = s * math.exp(float(np.clip(delta[6], -0.5, 0.5)))
        _, _, _, cost, nd, _ = fitter.residuals(zero_y, zero_w, s, R, t, pose_only=True, jacobian=False)
        # How well the visible model's normals agree with the observed ones (mean angle): a
        # head turned the wrong way (a profile's mirror image, whose outline is alike) does
        # not agree.
        ok, nobs, nws = fitter.last_normals  # those of the evaluation just made
        u = fitter.sets[0] & ok
        ang = float(np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", nws[u], nobs[u]), -1.0, 1.0))).mean())
        candidates.append((cost / max(nd, 1), ang if u.any() else 180.0, s, R, t))
        log.debug("fit_head pose candidate yaw %g pitch %g: cost per residual %.4g, normals %.2f deg", yaw, pitch,
                  candidates[-1][0], candidates[-1][1])  # fmt: skip

    for yaw in cfg.yaw_candidates:
        candidate(float(yaw), 0.0)
    tilted: list[int] = []  # per tilted candidate, the level candidate of its yaw
    if cfg.pitch_candidates:
        # Then the pitches at the two best yaws so far (a head looking up or down steeply:
        # the rigid step from pitch 0 stops short of it).
        c = np.array([[a, b] for a, b, *_ in candidates])
        order = np.argsort((c / np.maximum(c.min(axis=0), 1e-12)).sum(axis=1), kind="stable")
        for i in order[: cfg.pitch_yaws]:
            for pitch in cfg.pitch_candidates:
                candidate(float(cfg.yaw_candidates[int(i)]), float(pitch))
                tilted.append(int(i))
    # The robust cost per depth residual and the normals' angle, each relative to its best. A
    # tilted start may win only if it agrees better than the level one (pitch 0) of its yaw on
    # both (a tilt that lowers the cost and not the normals' angle, or the reverse, is an
    # outlier's pull: a microphone or a hand in the mask).
    c = np.array([[a, b] for a, b, *_ in candidates])
    score = (c / np.maximum(c.min(axis=0), 1e-12)).sum(axis=1)
    n0 = len(cfg.yaw_candidates)
    eligible = np.ones(len(candidates), bool)
    for k, lv in enumerate(tilted):
        eligible[n0 + k] = bool((c[n0 + k] < c[lv]).all())
    pick = int(np.argmin(np.where(eligible, score, np.inf)))
    best = candidates[pick]
    if starts is not None:
        starts.extend(
            (float(y), float(p), float(a), float(b)) for (y, p), (a, b, *_) in zip(tried, candidates, strict=True)
        )
    log.debug("fit_head pose search: candidate %d of %d (scores %s, eligible %s)", pick, len(candidates),
              np.round(score, 3).tolist(), eligible.astype(int).tolist())  # fmt: skip
    return best[2], best[3], best[4], best[0], best[1]


# --------------------------------------------------------------------------------------------
# The merge
# --------------------------------------------------------------------------------------------


def merge_head(
    fit: HeadFit,
    depth: Any,
    mask: Any,
    normals: Any = None,
    colors: Any = None,
    *,
    seam: float = 4.0,
    smooth: float = 1.5,
    depth_falloff: float = 12.0,
    max_slope: float = 0.5,
) -> Any:
    """The complete head: the fitted model with its visible region on the integrated surface.

    Each visible vertex of the fitted model (front-facing, not occluded: a dense z-buffer,
    inside the mask) gets the displacement ``d`` along z that puts it on the integrated
    surface. A weight ``a`` in [0, 1] keeps ``d`` fully where the surface is reliable and fades
    it out over the ``seam`` (pixels) next to the mask's border, where the surface turns
    grazing (Nz < 0.4) and where ``|d|`` is large (> 6 px: a blob or a bad fit); a vertex
    counts at most as much as its neighbours (no isolated vertex). Per pixel, the mean
    ``a d`` of the visible vertices there makes an image-plane field (pixels without one: a
    normalised Gaussian splat of standard deviation ``smooth``, which also makes it fade past
    the visible region). The field's size is capped at ``max_slope`` times the image distance
    to the pixels where it must vanish (outside the mask, and pixels whose visible vertices
    all have ``a = 0``), so that a large displacement fades over a proportionally wider band
    instead of making a step at the seam. Every vertex moves along z by this field (bilinear
    at its position) times a weight falling from 1 at the model's front surface to 0 at
    ``depth_falloff`` pixels behind it. Layers at one image position move together and the
    map along z is monotone, so the merge adds no self-intersection between them; the model's
    front surface that the weight is measured from is interpolated between pixels, so that the
    weight, and the motion, are continuous across them. Layers a fraction of a pixel apart at
    neighbouring positions (a lid's fold) can still cross where the model itself nearly
    touches (README, "Thirteenth session": 10 new crossing pairs on 2 of the 12 real photos).
    The topology is the model's, so the result is watertight (``metadata["visible_weight"]``
    holds ``a``).

    With a perspective fit (``fit.camera``), the displacement is along each pixel's ray
    (the merge runs in the camera's warped space, :class:`PinholeWarp`) and ``normals`` are needed.

    Args:
        fit: from :func:`fit_head` on the same reconstruction.
        depth: ``(H, W)`` integrated depth (pixels, NaN outside the mask); for a perspective
            fit the depth along the optical axis given to :func:`fit_head`.
        mask: ``(H, W)`` bool.
        normals: optional ``(H, W, 3)`` normals (default: the model's own for the grazing test).
        colors: optional ``(H, W, 3)`` uint8 image (the crop): vertex colours for the visible
            region, the median visible skin colour elsewhere.
        seam: width of the seam, pixels.
        smooth: standard deviation (pixels) of the Gaussian that spreads the displacement
            over the image plane for the hidden vertices.
        depth_falloff: depth behind the model's front surface (pixels) at which a hidden
            vertex no longer moves.
        max_slope: the most the displacement may grow per pixel of image distance from
            where it vanishes (pixels per pixel).

    Returns:
        :class:`trimesh.Trimesh`: skin (one closed surface) and the eyeballs (closed parts),
        camera frame, pixels; vertex colours with ``colors``.
    """
    import trimesh
    from scipy import ndimage

    if not isinstance(fit, HeadFit):
        raise TypeError(f"fit must be a HeadFit (from fit_head); got {type(fit).__name__}")
    d = v.as_float_array(depth, "depth")
    if d.shape != tuple(fit.shape):
        raise ValueError(
            f"depth must have shape {v.shape_str(tuple(fit.shape))} like the fit; got {v.shape_str(d.shape)}"
        )
    m = v.as_bool_array(mask, "mask", shape=d.shape)
    n = None if normals is None else v.as_float_array(normals, "normals")
    if n is not None and n.shape != (*d.shape, 3):
        raise ValueError(f"normals must have shape {v.shape_str((*d.shape, 3))}; got {v.shape_str(n.shape)}")
    for name, val in (("seam", seam), ("smooth", smooth), ("depth_falloff", depth_falloff), ("max_slope", max_slope)):
        if isinstance(val, bool) or not isinstance(val, numbers.Real) or not (val > 0 and math.isfinite(val)):
            raise ValueError(f"{name} must be a finite number > 0; got {val!r}")
    prep = _prepared(fit.model)
    x = fit.vertices()
    H, Wd = d.shape
    mm = m & np.isfinite(d)
    cam = None if fit.camera is None else PinholeWarp(fit.camera)
    if cam is not None:
        # Perspective: the merge runs in the warped space (the camera orthographic there).
        if n is None:
            raise ValueError("normals must be given to merge a perspective fit (fit.camera is set); got None")
        mm &= d > 0
        d, n = cam.warp_maps(np.where(mm, d, 0.0), n, mm, fit.depth_scale)
        x = cam.warp(x)
    nw = prep.normals(x)
    nobs = np.zeros((H, Wd, 3))
    if n is not None:
        nobs = np.where(mm[..., None], n, 0.0)
    else:
        nobs[..., 2] = 1.0
    obs = _Obs(depth=np.where(mm, d, np.nan), mask=mm, n=nobs, w=np.ones((H, Wd)),
               border_idx=np.zeros((2, H, Wd), np.int64), border_ok=np.ones((H, Wd), bool),
               inside=ndimage.distance_transform_edt(mm))  # fmt: skip
    # 1. Visible vertices and their displacement onto the integrated surface, with a weight
    #    that fades it out toward the mask's border, grazing views and far-off surfaces.
    vis = _front_visible(x, nw, prep.faces, (H, Wd))
    ok, D, nob, flat, _, _ = _sample_depth(obs, x[:, 0], x[:, 1])
    use = vis & ok
    dz = np.where(use, D - x[:, 2], 0.0)
    inside = obs.inside.ravel()[flat]
    a_border = np.clip((inside - 1.0) / seam, 0.0, 1.0)
    nz = nob[:, 2] if n is not None else nw[:, 2]
    a_grazing = np.clip((np.minimum(nz, nw[:, 2]) - 0.15) / 0.25, 0.0, 1.0)
    a_far = np.clip(2.0 - np.abs(dz) / 6.0, 0.0, 1.0)
    a = np.where(use, a_border * a_grazing * a_far, 0.0)
    # A vertex counts only as much as its neighbours do (twice): no isolated visible vertex.
    adj, deg = prep.adjacency()
    for _ in range(2):
        a = np.minimum(a, (adj @ a) / np.maximum(deg, 1))
    a = a * a * (3.0 - 2.0 * a)  # smoothstep
    # 2. The displacement as a field of the image plane: per pixel, the mean a * dz of the
    #    visible vertices there; pixels without one get a normalised Gaussian splat
    #    (standard deviation `smooth`), which also makes it decay past the visible region.
    #    Every vertex (visible or not) moves by this field, interpolated bilinearly at its
    #    position, times a weight that falls from 1 just behind the model's front surface to
    #    0 at `depth_falloff` pixels behind it. Layers at the same image position (lids over
    #    eyeballs and sockets, lips over the mouth) thus move together, the back of the head
    #    stays the model's, and the map along z is monotone (slope of the weight times the
    #    field under 1), so the merge adds no self-intersection between layers at one image
    #    position; the front surface is interpolated so that the weight is continuous too.
    c = np.rint(x[:, 0]).astype(np.int64)
    r = np.rint(-x[:, 1]).astype(np.int64)
    inb = (c >= 0) & (c < Wd) & (r >= 0) & (r < H)
    pix = np.where(inb, r * Wd + c, 0)
    num = np.bincount(pix[use], a[use] * dz[use], H * Wd).reshape(H, Wd)
    cnt = np.bincount(pix[use], None, H * Wd).reshape(H, Wd).astype(np.float64)
    spread = ndimage.gaussian_filter(num, smooth, mode="constant") / np.maximum(
        ndimage.gaussian_filter(cnt, smooth, mode="constant"), 0.05
    )
    field = np.where(cnt > 0, num / np.maximum(cnt, 1.0), spread)
    # 3. Slope cap: away from where the displacement must vanish (outside the mask; pixels
    #    whose visible vertices all have a = 0: the model's outline seen grazing, its jaw over
    #    the neck, far-off surfaces), it may grow by at most `max_slope` pixels per pixel of
    #    image distance. The fade weights alone ramp a displacement of any size over `seam`
    #    pixels: an integrated neck 10 px in front of the model's (the integration has no jump
    #    under the jaw) made a 10 px step over 4 px. (A single such pixel at a nostril or an
    #    eye's corner counts too; leaving out groups under 9 pixels also dropped the jaw's,
    #    and the step came back on photo 05.)
    amax = np.zeros(H * Wd)
    np.maximum.at(amax, pix[use], a[use])
    zero = ~mm | ((cnt > 0) & (amax.reshape(H, Wd) < 0.02))
    if zero.any():
        cap = max_slope * ndimage.distance_transform_edt(~zero)
        field = np.clip(field, -cap, cap)
    front = np.full(H * Wd, -np.inf)
    np.maximum.at(front, pix[inb], x[inb, 2])
    front = _max3x3(front.reshape(H, Wd))  # ndimage.maximum_filter(size=3)
    # The front surface as a continuous function of the image position (bilinear; pixels
    # without a vertex take their nearest pixel's value): with a per-pixel value the weight
    # below jumped between pixels, and two skin layers a fraction of a pixel apart on either
    # side of a pixel border (a lid's fold) moved apart by that jump times the field, enough
    # to cross (README, "Self-intersections").
    empty = ~np.isfinite(front)
    if empty.all():
        front = np.zeros_like(front)
    elif empty.any():
        idx = ndimage.distance_transform_edt(empty, return_distances=False, return_indices=True)
        front = front[idx[0], idx[1]]
    behind = np.where(inb, _bilinear(front, x[:, 0], -x[:, 1]) - x[:, 2], np.inf)
    g = np.clip(1.0 - behind / depth_falloff, 0.0, 1.0)
    g = g * g * (3.0 - 2.0 * g)
    delta = _bilinear(field, x[:, 0], -x[:, 1]) * g
    out = x.copy()
    out[:, 2] += delta
    if cam is not None:
        out = cam.unwarp(out)
    mesh = trimesh.Trimesh(out, prep.faces, process=False)
    if colors is not None:
        img = np.asarray(colors)
        if img.shape[:2] != d.shape or img.ndim != 3 or img.shape[2] < 3:
            raise ValueError(f"colors must have shape {v.shape_str((*d.shape, 3))}; got {v.shape_str(img.shape)}")
        rgb = img[..., :3].reshape(-1, 3).astype(np.float64)
        if img.dtype.kind == "f":
            rgb = rgb * 255.0
        seen = rgb[flat[use]]
        base = np.median(seen, axis=0) if len(seen) else np.array([180.0, 150.0, 130.0])
        col = np.tile(base, (len(out), 1))
        col = np.where(use[:, None], a[:, None] * rgb[flat] + (1 - a[:, None]) * base, base)
        mesh.visual.vertex_colors = np.column_stack(
            [np.clip(np.rint(col), 0, 255).astype(np.uint8), np.full(len(out), 255, np.uint8)]
        )
    mesh.metadata["visible_weight"] = a
    return mesh


def full_head(
    depth: Any,
    normals: Any,
    mask: Any,
    W: Any = None,
    colors: Any = None,
    *,
    K: Any = None,
    model: Any = None,
    settings: FitSettings | None = None,
    seed: int = 0,
    canonical: Any = None,
) -> tuple[Any, HeadFit]:
    """:func:`fit_head` then :func:`merge_head`: ``(mesh, fit)`` (``K``: a perspective camera;
    ``canonical``: a canonical map for the fit's landmarks)."""
    fit = fit_head(depth, normals, mask, W, K=K, model=model, settings=settings, seed=seed, canonical=canonical)
    return merge_head(fit, depth, mask, normals, colors), fit


# --------------------------------------------------------------------------------------------
# Self-intersections
# --------------------------------------------------------------------------------------------


def self_intersections(vertices: Any, faces: Any, candidates: Any = None) -> np.ndarray:
    """Pairs of triangles of a mesh that intersect (sharing no vertex).

    Candidate pairs are the triangles whose centroids are close enough for them to touch (a
    k-d tree), then whose bounding boxes overlap; each pair is tested exactly for
    non-coplanar triangles: an edge of one crossing the other (segment-triangle test, both
    ways).

    Args:
        vertices: ``(V, 3)``.
        faces: ``(F, 3)`` int.
        candidates: optional indices (or boolean mask) of the faces to test against all others
            (e.g. the seam); default all.

    Returns:
        ``(P, 2)`` int64 face index pairs ``(i, j)``, ``i < j``.
    """
    x = v.check_vertices(vertices, "vertices")
    f = v.check_faces(faces, x.shape[0], "faces")
    F = f.shape[0]
    if candidates is None:
        cand = np.ones(F, bool)
    else:
        c = np.asarray(candidates)
        cand = c.astype(bool) if c.dtype == bool else np.isin(np.arange(F), c)
        if cand.shape != (F,):
            raise ValueError(f"candidates must be a (F,) bool mask or face indices; got shape {v.shape_str(c.shape)}")
    from scipy.spatial import cKDTree

    tri = x[f]
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    centre = tri.mean(axis=1)
    radius = np.linalg.norm(tri - centre[:, None], axis=2).max(axis=1)
    # Faces in classes by radius (class c up to 2^c times the median), one k-d tree per class
    # on the centroids: a candidate meets the faces of class c within its radius plus the
    # class's largest radius.
    cls = np.maximum(0, np.ceil(np.log2(np.maximum(radius, 1e-300) / max(float(np.median(radius)), 1e-300)))).astype(
        np.int64
    )
    ci = np.flatnonzero(cand)
    pairs = [np.zeros((0, 2), np.int64)]
    for c in np.unique(cls):
        members = np.flatnonzero(cls == c)
        if not (members.size and ci.size):
            continue
        tree = cKDTree(centre[members])
        near = tree.query_ball_point(centre[ci], radius[ci] + float(radius[members].max()))
        counts = np.fromiter((len(n) for n in near), np.int64, count=len(near))
        if counts.sum():
            other = members[np.concatenate([np.asarray(n, np.int64) for n in near if len(n)])]
            pairs.append(np.column_stack([np.repeat(ci, counts), other]))
    pr = np.concatenate(pairs)
    pr = pr[pr[:, 0] != pr[:, 1]]
    if not pr.size:
        return np.zeros((0, 2), np.int64)
    key = np.unique(np.minimum(pr[:, 0], pr[:, 1]) * F + np.maximum(pr[:, 0], pr[:, 1]))
    pr = np.column_stack([key // F, key % F])
    # Drop pairs sharing a vertex, and pairs whose boxes do not overlap.
    share = (f[pr[:, 0]][:, :, None] == f[pr[:, 1]][:, None, :]).any(axis=(1, 2))
    pr = pr[~share]
    overlap = np.all((lo[pr[:, 0]] <= hi[pr[:, 1]]) & (lo[pr[:, 1]] <= hi[pr[:, 0]]), axis=1)
    pr = pr[overlap]
    if not pr.size:
        return np.zeros((0, 2), np.int64)
    hit = _edges_cross(tri[pr[:, 0]], tri[pr[:, 1]]) | _edges_cross(tri[pr[:, 1]], tri[pr[:, 0]])
    return pr[hit]


def _edges_cross(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Whether an edge of triangle ``A[i]`` crosses triangle ``B[i]`` (strictly)."""
    hit = np.zeros(A.shape[0], bool)
    b0, b1, b2 = B[:, 0], B[:, 1], B[:, 2]
    e1, e2 = b1 - b0, b2 - b0
    for a, b in ((0, 1), (1, 2), (2, 0)):
        p, q = A[:, a], A[:, b]
        d = q - p
        h = np.cross(d, e2)
        det = np.einsum("ij,ij->i", e1, h)
        good = np.abs(det) > 1e-14
        inv = np.where(good, 1.0 / np.where(good, det, 1.0), 0.0)
        sv = p - b0
        u = np.einsum("ij,ij->i", sv, h) * inv
        qv = np.cross(sv, e1)
        w = np.einsum("ij,ij->i", d, qv) * inv
        tt = np.einsum("ij,ij->i", e2, qv) * inv
        eps = 1e-9
        hit |= good & (u > eps) & (w > eps) & (u + w < 1 - eps) & (tt > eps) & (tt < 1 - eps)
    return hit
