"""Evaluation of complete heads (:mod:`monohead.fullhead`) on synthetic heads.

On a synthetic sample the whole true head is known: its parameters (identity, expression,
gaze, pose) give the posed ICT-FaceKit mesh that was rendered. For one sample,
:func:`evaluate_full_head` compares, after one rigid alignment:

- the **2.5D mesh** (the integrated depth over the predicted mask; the pipeline's output);
- the **complete head** (:func:`monohead.fullhead.merge_head`);
- the **fitted model** alone (no detail from the photo);
- the **mean head**: the model with ``y = 0``, in the pose and expression of the same fit;
- the **mean head, own fit** (``mean_fit``, when given): the model with ``y = 0`` whose pose
  and expression are fitted with the identity held at 0 (:func:`mean_head_fit`): the mean
  head as well placed as the fit can place it. The same pose as the identity's fit is not the
  mean head's best pose (the scale and the pose trade off against the identity), so this is
  the stricter baseline: the identity's gain over not fitting it at all;

on two sets of points of the true surface:

- **visible side**: one point per pixel of the true mask that the predicted mask also covers:
  the true depth at that pixel (the surface the camera saw);
- **hidden side**: points spread uniformly over the area of the true skin (seeded), keeping
  those the camera did not see (back-facing, occluded or outside the image: not within
  ``VISIBLE_TOL`` pixels of the true depth map at their pixel);
- **hidden side, head only** (``hidden_head``): the hidden points above the neck's base
  (where generator version 2 cuts the ICT mesh, :func:`monohead.synth.body.neck_cut`): the
  ICT mesh of version 1 goes on into a capped torso, whose points the hidden side counts too.
  On version 2 data both are the same.

Each error is the distance from a true point to the reconstruction's surface (exact closest
point), in pixels of the image. Two alignment protocols (:data:`PROTOCOLS`), both rigid
(rotation and translation, the class of :func:`monohead.evaluate.mesh_error.icp`: the scale is
part of what is measured, since the image fixes a head's size):

- ``"by_mesh25d"``, **aligned by the 2.5D mesh**: the 2.5D mesh is aligned to the true
  visible surface by point-to-plane ICP (as in the Table 2 analogue of
  :mod:`monohead.experiments`: fitted on every 4th vertex), and the same rigid transform is
  applied to every reconstruction (they all live in the 2.5D mesh's frame; the depth's offset
  is the unknown). This measures the pipeline as a user gets it, but the hidden side then
  also measures where the network's 2.5D surface registers to the truth: the true head itself,
  moved by that transform, is off on the hidden side.
- ``"own"``, **each aligned on its own** (:func:`align_on_own`): each closed reconstruction
  (complete head, fitted model, both mean heads) is aligned by its own point-to-plane ICP of
  its whole skin above the neck's base (area-uniform points) to the true skin above the
  neck's base, started from the 2.5D mesh's transform and from the least-squares rigid
  transform of the model's corresponding vertices (the reconstructions and the truth share
  the ICT topology), the lower RMS kept. The 2.5D mesh keeps its own (visible-side) ICP. This
  alignment uses the true hidden surface, so it measures the reconstructed **shape** (the
  identity and expression), not its placement.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "HIDDEN_POINTS",
    "MATCHES",
    "METHODS",
    "PROTOCOLS",
    "SIDES",
    "TRANSLATIONS",
    "VISIBLE_TOL",
    "align_on_own",
    "evaluate_full_head",
    "fit_heights",
    "heights_mesh",
    "hidden_skin_points",
    "hidden_ratios",
    "identity_ceiling",
    "mean_head_fit",
    "summarise",
    "true_head_mesh",
]

#: Points sampled on the true skin for the hidden side (before keeping the hidden ones).
HIDDEN_POINTS = 8000
#: A true surface point is visible when within this many pixels of the true depth map.
VISIBLE_TOL = 1.0
ICP_STRIDE = 4
METHODS = ("mesh25d", "full", "model", "mean", "mean_fit", "full_uncalibrated", "mean_uncalibrated")
SIDES = ("visible", "hidden", "hidden_head")
#: The alignment protocols (module docstring): every reconstruction moved by the 2.5D mesh's
#: ICP, or each closed reconstruction aligned to the whole true head on its own.
PROTOCOLS = ("by_mesh25d", "own")
PROTOCOL_LABELS = {"by_mesh25d": "aligned by the 2.5D mesh", "own": "each aligned on its own"}
#: Points of a reconstruction's skin (above the neck's base) its own ICP moves.
OWN_POINTS = 3000
#: Points of the true skin (above the neck's base) that stand for its surface in that ICP (a
#: k-d tree of them with their faces' normals: point-to-plane, so their spacing, about 0.4 px
#: on a 128-pixel head, does not bias the transform).
OWN_TARGET_POINTS = 40000
#: A skin vertex counts as facing the camera (:func:`identity_ceiling`) above this cosine.
_MIN_FACING = 0.2


def true_head_mesh(params: dict[str, Any], size: tuple[int, int], model: Any = None, version: int = 1) -> Any:
    """The posed true head of a synthetic sample: :func:`monohead.synth.body.true_head_mesh`
    (skin and eyes, pixels, camera frame; hair, glasses, headwear left out)."""
    from ..synth.body import true_head_mesh as posed_truth

    return posed_truth(params, size, model, version)


def mean_head_fit(depth: Any, normals: Any, mask: Any, W: Any = None, *, settings: Any = None, **kw: Any) -> Any:
    """The ``mean_fit`` baseline: :func:`monohead.fullhead.fit_head` of the same maps with the
    identity held at 0 (``n_identity=0``, the other settings as given): the pose and the
    expression fitted for the mean head itself."""
    from dataclasses import replace

    from .. import fullhead

    cfg = replace(settings or fullhead.FitSettings(), n_identity=0)
    return fullhead.fit_head(depth, normals, mask, W, settings=cfg, **kw)


def hidden_ratios(summary: dict[str, Any]) -> dict[str, float]:
    """The issue's figure of merit: the complete head's mean hidden error over each mean-head
    baseline's (``"<side>/<baseline>"``, e.g. ``"hidden/mean"``, ``"hidden/mean_fit"``), and
    with the identity calibration off (``"<side>/uncalibrated"``: ``full_uncalibrated`` over
    ``mean_uncalibrated``, when evaluated)."""
    out: dict[str, float] = {}
    for side in ("hidden", "hidden_head"):
        s = summary.get(side) or {}
        for base in ("mean", "mean_fit"):
            if "full" in s and base in s:
                out[f"{side}/{base}"] = s["full"]["mean"] / s[base]["mean"]
        if "full_uncalibrated" in s and "mean_uncalibrated" in s:
            out[f"{side}/uncalibrated"] = s["full_uncalibrated"]["mean"] / s["mean_uncalibrated"]["mean"]
    return out


def hidden_skin_points(
    true_mesh: Any, true_depth: np.ndarray, true_mask: np.ndarray, count: int, seed: int, warp: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """The points of the true skin the camera did not see (module docstring: ``count``
    area-uniform points of the skin of ``true_mesh``, seeded, keeping those not within
    :data:`VISIBLE_TOL` pixels of ``true_depth`` at their pixel, facing away, or outside
    ``true_mask``), and whether each lies on the head (above the neck's base).

    Args:
        true_mesh: :func:`true_head_mesh` of the sample (pixels, the camera's world frame).
        true_depth, true_mask: its rendered ``(H, W)`` depth (pixels) and mask.
        count: points sampled on the skin before the split.
        seed: seed of that sample.
        warp: ``None`` (orthographic) or the true maps' perspective camera
            (:class:`monohead.fullhead.PinholeWarp`).

    Returns:
        ``((m, 3) points, (m,) bool above the neck's base)``.
    """
    import trimesh

    skin_faces = true_mesh.metadata.get("skin_faces", true_mesh.faces)
    skin = trimesh.Trimesh(np.asarray(true_mesh.vertices), skin_faces, process=False)
    head = np.asarray(true_mesh.metadata.get("head_skin", np.ones(len(skin_faces), bool)), bool)
    pts, fidx = trimesh.sample.sample_surface(skin, count, seed=seed)
    seen = _seen(pts, skin.face_normals[fidx], true_depth, true_mask, warp, 0.0)
    return pts[~seen], head[fidx][~seen]


def _seen(
    points: np.ndarray, normals: np.ndarray, true_depth: Any, true_mask: Any, warp: Any, min_facing: float
) -> np.ndarray:
    """Which true surface points the camera saw: facing it (the normal's z, in the warped
    space when perspective, above ``min_facing``), inside ``true_mask`` at their pixel and
    within :data:`VISIBLE_TOL` of ``true_depth`` there. Orthographic, a point is seen at
    ``(x, -y)``; perspective, at its projection (the warped space: the rays along z, the
    depth maps' heights unchanged)."""
    td, tm = np.asarray(true_depth), np.asarray(true_mask, bool)
    H, W = tm.shape
    wp = points if warp is None else warp.warp(points)
    nz = normals[:, 2] if warp is None else warp.warp_normals(points, normals)[:, 2]
    c = np.rint(wp[:, 0]).astype(np.int64)
    r = np.rint(-wp[:, 1]).astype(np.int64)
    inb = (c >= 0) & (c < W) & (r >= 0) & (r < H)
    rr, cc = np.where(inb, r, 0), np.where(inb, c, 0)
    seen = inb & tm[rr, cc] & (nz > min_facing)
    seen &= np.abs(wp[:, 2] - np.where(seen, td[rr, cc], np.inf)) < VISIBLE_TOL
    return seen


def _head_skin(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """The skin triangles of a fitted head's mesh (:meth:`monohead.fullhead.HeadFit.vertices`
    order) above the neck's base (:func:`monohead.synth.body.neck_cut`), and per vertex of
    that mesh its vertex of the head model (cached on ``model``)."""
    from .. import fullhead
    from ..synth import body
    from ..synth.head_model import SKIN_REGIONS

    key = "evaluate_head_skin"
    if key not in model.cache:
        skin_faces, order = fullhead.model_skin(model)
        skin_sel = model.region_faces(list(SKIN_REGIONS))  # the order of skin_faces
        head = ~body.neck_cut(model)["drop"][skin_sel]
        model.cache[key] = (skin_faces[head], order)
    return model.cache[key]


class _TrueSkin:
    """The true skin above the neck's base as the target of :func:`align_on_own`: area-uniform
    points with their faces' normals in a k-d tree (point-to-plane ICP)."""

    def __init__(self, true_mesh: Any, seed: int = 0, count: int = OWN_TARGET_POINTS) -> None:
        import trimesh
        from scipy.spatial import cKDTree

        faces = np.asarray(true_mesh.metadata.get("skin_faces", true_mesh.faces))
        head = np.asarray(true_mesh.metadata.get("head_skin", np.ones(len(faces), bool)), bool)
        self.vertices = np.asarray(true_mesh.vertices, np.float64)
        mesh = trimesh.Trimesh(self.vertices, faces[head], process=False)
        self.points, fidx = trimesh.sample.sample_surface(mesh, int(count), seed=seed)
        self.normals = np.asarray(mesh.face_normals)[fidx]
        self.tree = cKDTree(self.points)


def _icp_to_samples(
    src: np.ndarray, target: _TrueSkin, T: np.ndarray, iterations: int = 60
) -> tuple[np.ndarray, float]:
    """Point-to-plane ICP of ``src`` to the true skin's samples from ``T``: the transform with
    the lowest RMS point-to-plane distance seen, and that RMS."""
    from .mesh_error import point_to_plane_step

    best = (np.inf, T)
    prev = np.inf
    for it in range(iterations + 1):
        P = src @ T[:3, :3].T + T[:3, 3]
        _, idx = target.tree.query(P)
        n = target.normals[idx]
        r = np.einsum("ij,ij->i", P - target.points[idx], n)
        rms = float(np.sqrt(np.mean(r**2)))
        if rms < best[0]:
            best = (rms, T)
        if it == iterations or (it > 0 and not prev - rms > 1e-6 * prev):
            break
        prev = rms
        T = point_to_plane_step(P, target.points[idx], n)[0] @ T
    return best[1], best[0]


def align_on_own(
    mesh: Any,
    true_mesh: Any,
    *,
    init: Any = None,
    head_faces: Any = None,
    correspondence: Any = None,
    seed: int = 0,
    points: int = OWN_POINTS,
    target: Any = None,
) -> tuple[np.ndarray, float]:
    """The ``"own"`` protocol's alignment of one closed reconstruction to the true head.

    A rigid point-to-plane ICP of ``points`` area-uniform points of the reconstruction's skin
    above the neck's base (``head_faces``; default all of ``mesh``'s triangles) to the true
    skin above the neck's base (``true_mesh.metadata["skin_faces"]`` where
    ``metadata["head_skin"]``, as made by :func:`true_head_mesh`; represented by
    :data:`OWN_TARGET_POINTS` area-uniform points and their normals). It starts from ``init``
    (a ``(4, 4)`` rigid matrix, default the identity) and, when ``correspondence`` is given,
    also from the least-squares rigid transform (:func:`~monohead.evaluate.mesh_error.kabsch`)
    of the head's vertices onto their true vertices; the run with the lower RMS is kept.

    Args:
        mesh: the reconstruction (:class:`trimesh.Trimesh`, the frame of the fit).
        true_mesh: :func:`true_head_mesh` of the sample (or any mesh with ``skin_faces``).
        init: initial rigid transform (reconstruction -> truth).
        head_faces: ``(F, 3)`` triangles of ``mesh`` to align (its skin above the neck).
        correspondence: ``(V,)`` for each vertex of ``mesh`` its vertex of ``true_mesh`` (same
            topology: :meth:`~monohead.fullhead.HeadFit.vertices` against the head model's).
        seed: seed of both point samples.
        points: number of points of the reconstruction.
        target: a prepared target (internal: shared by the reconstructions of one sample).

    Returns:
        ``(transform, rms)``: the ``(4, 4)`` rigid matrix mapping the reconstruction onto the
        truth, and the RMS point-to-plane distance (pixels) it leaves.
    """
    import trimesh

    from .mesh_error import kabsch

    v = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces if head_faces is None else head_faces)
    tgt = target if target is not None else _TrueSkin(true_mesh, seed)
    src, _ = trimesh.sample.sample_surface(trimesh.Trimesh(v, faces, process=False), int(points), seed=seed)
    inits = [np.eye(4) if init is None else np.asarray(init, np.float64)]
    if correspondence is not None:
        corr = np.asarray(correspondence)
        if corr.shape != (len(v),):
            raise ValueError(f"correspondence must have one entry per vertex of mesh ({len(v)}); got {corr.shape}")
        used = np.unique(faces)
        inits.append(kabsch(v[used], tgt.vertices[corr[used]]))
    runs = [_icp_to_samples(src, tgt, T0) for T0 in inits]
    return min(runs, key=lambda r: r[1])


def fit_heights(depth: Any, fit: Any) -> np.ndarray:
    """The heights of a depth map given to :func:`monohead.fullhead.fit_head` in the fit's
    frame: the depth itself (orthographic), or the warped heights ``fx - k d`` of a
    perspective fit (``k`` its ``depth_scale``), for :func:`heights_mesh` with ``fit.camera``."""
    from ..fullhead import PinholeWarp

    d = np.asarray(depth, np.float64)
    K = getattr(fit, "camera", None)
    return d if K is None else PinholeWarp(K).fx - fit.depth_scale * d


def heights_mesh(heights: Any, where: Any, K: Any = None) -> Any:
    """The surface of a ``(H, W)`` height map over the pixels ``where``
    (:func:`monohead.geometry.depth_to_mesh`) in the camera's world frame: as it is
    (orthographic, ``K=None``), or unwarped through the pinhole ``K`` (the heights of a
    perspective map: a rendered depth, or :func:`fit_heights`)."""
    from ..fullhead import PinholeWarp
    from ..geometry import depth_to_mesh

    where = np.asarray(where, bool)
    mesh = depth_to_mesh(np.where(where, np.asarray(heights, np.float64), np.nan), where)
    if K is not None:
        mesh.vertices = PinholeWarp(K).unwarp(np.asarray(mesh.vertices))
    return mesh


def evaluate_full_head(
    true_mesh: Any,
    true_depth: Any,
    true_mask: Any,
    depth: Any,
    mask: Any,
    full_mesh: Any,
    fit: Any,
    *,
    seed: int = 0,
    hidden_points: int = HIDDEN_POINTS,
    K: Any = None,
    mean_fit: Any = None,
    uncalibrated: Any = None,
    own: bool = True,
) -> dict[str, Any]:
    """Per-point errors (pixels) of the reconstructions of one sample (module docstring).

    Perspective data (synthetic version 2, ``K`` its camera): the true maps are read through
    the camera (a pixel's true point is on its ray at the true depth map's height) and the
    errors are measured in the camera's world frame (``docs/conventions.md``: pixel units of
    the reference plane). A perspective fit (``fit.camera``) puts its 2.5D mesh there too
    (the depth along the axis times ``fit.depth_scale``); an orthographic one is compared as
    it is (its pixel frame read as that world frame, as a user who ignores the camera would).

    Args:
        true_mesh: :func:`true_head_mesh` of the sample.
        true_depth, true_mask: the sample's true depth (pixels) and mask.
        depth, mask: the reconstruction's integrated depth and mask (the 2.5D mesh).
        full_mesh: :func:`monohead.fullhead.merge_head`'s mesh.
        fit: the :class:`monohead.fullhead.HeadFit`.
        seed: seed of the hidden-side sample.
        K: ``None`` (orthographic truth) or the true maps' ``(3, 3)`` intrinsics.
        mean_fit: optional :class:`~monohead.fullhead.HeadFit` of the same maps with the
            identity held at 0 (:func:`mean_head_fit`): the ``mean_fit`` baseline.
        uncalibrated: optional ``(fit, full_mesh)`` of the same fit with its identity
            calibration off (:attr:`~monohead.fullhead.HeadFit.fitted_identity`,
            ``fitted_scale`` and ``fitted_expression``): the methods ``full_uncalibrated`` (that mesh) and
            ``mean_uncalibrated`` (the mean head in that fit's pose and expression), the
            default without calibration on the same maps.
        own: also the ``"own"`` protocol (each closed reconstruction aligned to the whole
            true head on its own, :func:`align_on_own`).

    Returns:
        ``{"visible": {method: (n,) distances}, "hidden": {method: (m,) distances},
        "hidden_head": {method: (m',) distances}, "icp_rms": float}`` (``hidden_head``: the
        hidden points above the neck's base; the protocol ``"by_mesh25d"``); the 2.5D mesh
        has no hidden side. With ``own``, also ``"own"``: the same three sides for the
        ``"own"`` protocol (the 2.5D mesh's errors the same as above: its own ICP), and
        ``"icp_rms"``, per method, the RMS its own ICP left (pixels).
    """
    from ..fullhead import PinholeWarp
    from ..geometry import MeshSurface
    from .mesh_error import apply_transform, icp

    warp = None if K is None else PinholeWarp(K)
    fit_K = getattr(fit, "camera", None)
    td = np.asarray(true_depth, np.float64)
    tm = np.asarray(true_mask, bool)
    d = np.asarray(depth, np.float64)
    m = np.asarray(mask, bool) & np.isfinite(d)
    dom = m & tm
    if dom.sum() < 16:
        raise ValueError(f"the predicted and true masks share {int(dom.sum())} pixels; need at least 16")
    true_vis = MeshSurface(heights_mesh(td, tm, K), "true visible surface")
    h = fit_heights(d, fit)
    mesh25 = heights_mesh(h, m, fit_K)
    P = np.asarray(heights_mesh(h, dom, fit_K).vertices)
    stride = max(1, min(ICP_STRIDE, P.shape[0] // 64))
    res = icp(P[::stride], true_vis)
    T = res.transform
    Tinv = np.linalg.inv(T)  # move the true points instead of the meshes (same distances)
    rows, cols = np.nonzero(dom)
    vis_pts = np.column_stack([cols, -rows, td[rows, cols]]).astype(np.float64)
    if warp is not None:
        vis_pts = warp.unwarp(vis_pts)
    hid_pts, hid_head = hidden_skin_points(true_mesh, td, tm, hidden_points, seed, warp)
    vis_local = apply_transform(Tinv, vis_pts)
    hid_local = apply_transform(Tinv, hid_pts) if len(hid_pts) else hid_pts
    recon = {
        "mesh25d": mesh25,
        "full": full_mesh,
        "model": fit.model_mesh(),
        "mean": fit.model_mesh(identity=np.zeros_like(fit.identity)),
    }
    if mean_fit is not None:
        recon["mean_fit"] = mean_fit.model_mesh()
    if uncalibrated is not None:
        fit_u, full_u = uncalibrated
        recon["full_uncalibrated"] = full_u
        recon["mean_uncalibrated"] = fit_u.model_mesh(identity=np.zeros_like(fit_u.identity))
    out: dict[str, Any] = {"visible": {}, "hidden": {}, "hidden_head": {}, "icp_rms": float(res.rms)}
    surfs = {}
    for name, mesh in recon.items():
        surf = surfs[name] = MeshSurface(mesh, name)
        out["visible"][name] = surf.closest(vis_local)[1]
        if name != "mesh25d" and len(hid_local):
            out["hidden"][name] = surf.closest(hid_local)[1]
            if hid_head.any():
                out["hidden_head"][name] = out["hidden"][name][hid_head]
    if not own:
        return out
    # Protocol "own": each closed reconstruction aligned to the true head above the neck on its
    # own (its skin above the neck, started from the 2.5D mesh's transform and from its
    # vertices' correspondence with the truth's); the 2.5D mesh keeps its ICP.
    head_faces, order = _head_skin(fit.model)
    n_true = len(np.asarray(true_mesh.vertices))
    target = _TrueSkin(true_mesh, seed)
    o: dict[str, Any] = {"visible": {}, "hidden": {}, "hidden_head": {}, "icp_rms": {"mesh25d": float(res.rms)}}
    o["visible"]["mesh25d"] = out["visible"]["mesh25d"]
    for name, mesh in recon.items():
        if name == "mesh25d":
            continue
        nv = len(np.asarray(mesh.vertices))
        if nv != len(order):
            raise ValueError(
                f"{name}: {nv} vertices, not the fitted head's {len(order)}: not the head model's topology"
            )
        corr = order if n_true == fit.model.num_vertices else None
        T_own, rms = align_on_own(mesh, true_mesh, init=T, head_faces=head_faces, correspondence=corr, seed=seed,
                                  target=target)  # fmt: skip
        inv = np.linalg.inv(T_own)
        o["icp_rms"][name] = rms
        o["visible"][name] = surfs[name].closest(apply_transform(inv, vis_pts))[1]
        if len(hid_pts):
            o["hidden"][name] = surfs[name].closest(apply_transform(inv, hid_pts))[1]
            if hid_head.any():
                o["hidden_head"][name] = o["hidden"][name][hid_head]
    out["own"] = o
    return out


TRANSLATIONS = ("true", "joint")
#: How :func:`identity_ceiling` matches the seen vertices to the surface.
MATCHES = ("model", "truth")


def identity_ceiling(
    params: dict[str, Any],
    true_depth: Any,
    true_mask: Any,
    surface: Any,
    *,
    K: Any = None,
    version: int = 2,
    model: Any = None,
    sigma: float = 8.0,
    translation: str = "true",
    match: str = "model",
    iterations: int = 100,
    max_distance: float = 3.0,
    seed: int = 0,
    hidden_points: int = HIDDEN_POINTS,
) -> dict[str, Any]:
    """What the identity of a surface is worth on the hidden side when everything else is known.

    The ceiling of any fit of the head model to that surface: the sample's true pose (scale,
    rotation, translation), expression and gaze are given, and only the identity ``y`` is read
    from the surface, as the posterior mean under the model's prior ``y ~ N(0, I)`` (the
    generator's) with independent Gaussian residuals of ``sigma`` pixels: the skin vertices the
    camera saw (facing it, inside ``true_mask``, within :data:`VISIBLE_TOL` of ``true_depth``)
    are matched to ``surface`` and the linear least-squares problem solved. With
    ``match="model"`` (a fit's view) each is matched to the surface point closest to where the
    current head puts it, point to plane (its residual along that point's face normal, so
    that the match may slide along the surface), starting from the mean head and solving again
    until a round moves the seen vertices by less than 0.001 px (RMS) or for ``iterations``
    rounds (on the exact surface of a test head about 60: the matches slide slowly); with
    ``match="truth"`` each is matched once to the surface point
    closest to its **true** position, point to point: a correspondence no fit has, which
    leaks the true positions along the surface (an upper bound only). Matches farther than
    ``max_distance`` pixels are left out. With ``translation="joint"`` the head's translation
    is solved with the identity (no prior on it): the pose minus its position.
    On the exact surface the identity is recovered (``tests/test_fullhead.py``); on a
    network's, the hidden error left is what the surface's own errors cost.

    Args:
        params: the sample's parameters (``identity``, ``expression``, ``gaze``, ``pose``).
        true_depth, true_mask: its rendered ``(H, W)`` depth (pixels) and mask.
        surface: the observed surface in the camera's world frame (pixels): a
            :class:`trimesh.Trimesh` or :class:`~monohead.geometry.MeshSurface`, e.g. the
            network's 2.5D mesh aligned to the true visible surface.
        K: ``None`` (orthographic truth) or the true maps' ``(3, 3)`` intrinsics.
        version: the data set's generator version (:func:`true_head_mesh`).
        model: the head model (default the shipped one).
        sigma: residual scale (pixels) against the prior's unit variance (> 0).
        translation: ``"true"`` or ``"joint"`` (:data:`TRANSLATIONS`).
        match: ``"model"`` or ``"truth"`` (:data:`MATCHES`).
        iterations: rounds of matching and solving with ``match="model"`` (>= 1).
        max_distance: matches farther than this (pixels) are left out (> 0).
        seed: seed of the hidden-side sample (:func:`hidden_skin_points`).
        hidden_points: points sampled on the true skin before the split.

    Returns:
        ``{"placed": {"identity": (m,), "mean": (m,)}, "shape": {...}, "identity": (K,),
        "observed": int, "translation": (3,)}``: the distances (pixels) from the hidden
        points to the head with the read identity and to the mean head (``y = 0``), both in
        the true pose and expression, as placed (``"placed"``) and each moved by its
        least-squares rigid fit onto the true head's vertices (``"shape"``: size and shape
        only, as the ``"own"`` protocol); the identity read, the number of vertices matched,
        and the translation solved (zeros for ``"true"``).

    Raises:
        ValueError: ``sigma`` or ``max_distance`` not positive, ``iterations`` < 1,
            ``translation`` or ``match`` unknown, or no seen vertex matched.
    """
    import trimesh

    from ..fullhead import PinholeWarp
    from ..geometry import MeshSurface
    from ..synth import scene
    from ..synth.head_model import SKIN_REGIONS, HeadModel
    from .mesh_error import apply_transform, kabsch

    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number of pixels; got {sigma!r}")
    if not (isinstance(max_distance, (int, float)) and math.isfinite(max_distance) and max_distance > 0):
        raise ValueError(f"max_distance must be a positive number of pixels; got {max_distance!r}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1; got {iterations!r}")
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}; got {match!r}")
    if translation not in TRANSLATIONS:
        raise ValueError(f"translation must be one of {TRANSLATIONS}; got {translation!r}")
    hm = model if isinstance(model, HeadModel) else HeadModel.load(model)
    surf = surface if isinstance(surface, MeshSurface) else MeshSurface(surface, "surface")
    td = np.asarray(true_depth, np.float64)
    tm = np.asarray(true_mask, bool)
    warp = None if K is None else PinholeWarp(K)
    truth = true_head_mesh(params, tm.shape, hm, version)
    M = scene.pose_matrix(params["pose"], tm.shape)
    expr, gaze = params["expression"], tuple(params["gaze"])
    k = hm.num_identities

    def posed(y: np.ndarray) -> np.ndarray:
        return hm.shape(y, expr, gaze) @ M[:3, :3].T + M[:3, 3]

    base = posed(np.zeros(k))
    skin = hm.region_vertices(list(SKIN_REGIONS))  # linear in y (the eyeballs turn about fitted centres)
    J = np.stack([posed(np.eye(k)[i])[skin] - base[skin] for i in range(k)], axis=-1)  # (S, 3, k)
    vt = np.asarray(truth.vertices, np.float64)
    vn = trimesh.Trimesh(vt, truth.faces, process=False).vertex_normals[skin]
    ps = vt[skin]
    seen = _seen(ps, vn, td, tm, warp, _MIN_FACING)
    if not seen.any():
        raise ValueError("no skin vertex of the true head is seen in true_mask at true_depth")
    Js, bs = J[seen], base[skin][seen]
    reg = np.zeros(k + (3 if translation == "joint" else 0))
    reg[:k] = sigma**2  # the prior |y|^2 against residuals of sigma pixels
    y, dt, observed = np.zeros(k), np.zeros(3), 0
    for _ in range(iterations if match == "model" else 1):
        pts, dist, face = surf.closest(ps[seen] if match == "truth" else bs + dt + Js @ y)
        ok = dist < max_distance
        observed = int(ok.sum())
        if observed == 0:
            raise ValueError(f"no seen skin vertex lies within max_distance={max_distance} px of the surface")
        if match == "truth":  # point to point
            A = Js[ok].reshape(-1, k)
            b = (pts[ok] - bs[ok]).reshape(-1)
            E = np.tile(np.eye(3), (observed, 1))
        else:  # point to plane
            n = surf.face_normals[face[ok]]
            A = np.einsum("vi,vik->vk", n, Js[ok])
            b = np.einsum("vi,vi->v", n, pts[ok] - bs[ok])
            E = n
        if translation == "joint":
            A = np.hstack([A, E])
        sol = np.linalg.solve(A.T @ A + np.diag(reg), A.T @ b)
        y_new, dt_new = sol[:k], (sol[k:] if translation == "joint" else np.zeros(3))
        moved = float(np.sqrt(np.mean(np.sum((Js @ (y_new - y) + (dt_new - dt)) ** 2, axis=1))))
        y, dt = y_new, dt_new
        if moved < 1e-3:
            break
    hid, _ = hidden_skin_points(truth, td, tm, hidden_points, seed, warp)
    used = np.unique(truth.faces)
    out: dict[str, Any] = {"placed": {}, "shape": {}, "identity": y, "observed": observed, "translation": dt}
    for name, yy, shift in (("identity", y, dt), ("mean", np.zeros(k), np.zeros(3))):
        v = posed(yy) + shift
        out["placed"][name] = MeshSurface(trimesh.Trimesh(v, truth.faces, process=False), name).closest(hid)[1]
        T = kabsch(v[used], vt[used])
        moved = trimesh.Trimesh(apply_transform(T, v), truth.faces, process=False)
        out["shape"][name] = MeshSurface(moved, name).closest(hid)[1]
    return out


def summarise(per_sample: list[dict[str, Any]], protocol: str = "by_mesh25d") -> dict[str, Any]:
    """Pool the per-point errors of :func:`evaluate_full_head` over samples: for each side and
    method, ``mean``, ``median``, ``p90``, ``count``, and ``mean_of_heads`` (mean of the
    per-head means); ``protocol`` one of :data:`PROTOCOLS` (``"own"``: the samples' ``"own"``
    errors, those that have them)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")
    if protocol == "own":
        per_sample = [s["own"] for s in per_sample if "own" in s]
    out: dict[str, Any] = {}
    for side in SIDES:
        out[side] = {}
        for name in METHODS:
            arrs = [s[side][name] for s in per_sample if name in s.get(side, {})]
            if not arrs:
                continue
            e = np.concatenate(arrs)
            out[side][name] = {
                "mean": float(e.mean()),
                "median": float(np.median(e)),
                "p90": float(np.percentile(e, 90.0)),
                "count": int(e.size),
                "heads": len(arrs),
                "mean_of_heads": float(np.mean([a.mean() for a in arrs])),
            }
    return out


def evaluate_test_set(
    root: Any,
    ids: Any,
    normals: Any,
    W: Any,
    mask: Any,
    *,
    lam: float = 0.1,
    seed: int = 0,
    callback: Any = None,
    settings: Any = None,
    canonical: Any = None,
) -> dict[str, Any]:
    """The complete-head evaluation over synthetic samples (the module docstring, per head).

    Each sample's predicted maps are integrated as the photo pipeline does (slopes limited,
    WLS with ``lam``), the head is fitted (:func:`monohead.fullhead.fit_head`) and merged
    (:func:`monohead.fullhead.merge_head`), and the five reconstructions are compared with
    the true head.

    Args:
        root: the synthetic data set folder (its samples' parameters give the true heads).
        ids: ``(N,)`` sample indices in that data set.
        normals, W, mask: ``(N, H, W, 3)``, ``(N, H, W)``, ``(N, H, W)`` predicted maps of
            those samples.
        lam: integration weight.
        seed: seed of the fits and of the hidden-side samples.
        callback: ``callback(done, total)`` after each head.
        settings: :class:`~monohead.fullhead.FitSettings` of the fits (default: the defaults,
            which calibrate the identity for the shipped network's maps; pass
            ``identity_calibration=False`` for another network's).
        canonical: optional ``(N, H, W, 3)`` canonical maps of those samples
            (:func:`monohead.model.canonical.predict_canonical`): the fits' landmarks, and the
            mean head's own fit's.

    Returns:
        JSON-able dict: ``summary`` (:func:`summarise`), ``hidden_ratios``
        (:func:`hidden_ratios`) (both for the protocol ``"by_mesh25d"``), ``own``
        (``{"summary", "hidden_ratios"}`` of the protocol ``"own"``), ``heads`` (evaluated), ``failed``
        (``[(id, message)]``: fits refused, e.g. a mask under 200 pixels), ``converged``
        (fits that converged), ``seconds`` (per head: ``fit``, ``merge``; mean and median),
        ``generator_version``.
    """
    import time

    from .. import fullhead
    from ..integration import integrate
    from ..photo import limit_slope
    from ..synth.dataset import SyntheticHeads

    ds = SyntheticHeads(root)
    version = int((ds.manifest.get("settings") or {}).get("generator_version", 1))
    size = tuple(np.asarray(mask).shape[1:3])
    per: list[dict[str, Any]] = []
    failed: list[tuple[int, str]] = []
    t_fit: list[float] = []
    t_merge: list[float] = []
    converged = 0
    ids = [int(i) for i in ids]
    for k, idx in enumerate(ids):
        item = ds[idx]
        m = np.asarray(mask[k], bool)
        try:
            n = limit_slope(np.asarray(normals[k], np.float64), m)
            depth = integrate(n, np.asarray(W[k], np.float64), lam, m) if m.any() else np.full(m.shape, np.nan)
            t0 = time.perf_counter()
            lm = {} if canonical is None else {"canonical": canonical[k]}
            fit = fullhead.fit_head(depth, n, m, W[k], seed=seed, settings=settings, **lm)
            t1 = time.perf_counter()
            full = fullhead.merge_head(fit, depth, m, n)
            t2 = time.perf_counter()
            fit0 = mean_head_fit(depth, n, m, W[k], seed=seed, **lm)
            truth = true_head_mesh(item["params"], size, fit.model, version)
            per.append(
                evaluate_full_head(
                    truth, item["depth"], item["mask"], depth, m, full, fit, seed=seed + idx, mean_fit=fit0
                )
            )
        except ValueError as exc:
            failed.append((idx, str(exc)))
        else:
            t_fit.append(t1 - t0)
            t_merge.append(t2 - t1)
            converged += int(fit.converged)
        if callback is not None:
            callback(k + 1, len(ids))
    summary = summarise(per) if per else {}
    own = summarise(per, "own") if per else {}
    out: dict[str, Any] = {
        "summary": summary,
        "hidden_ratios": hidden_ratios(summary),
        "own": {"summary": own, "hidden_ratios": hidden_ratios(own)},
        "heads": len(per),
        "failed": failed,
        "converged": converged,
        "generator_version": version,
        "seconds": {
            "fit_mean": float(np.mean(t_fit)) if t_fit else float("nan"),
            "fit_median": float(np.median(t_fit)) if t_fit else float("nan"),
            "merge_mean": float(np.mean(t_merge)) if t_merge else float("nan"),
            "merge_median": float(np.median(t_merge)) if t_merge else float("nan"),
        },
    }
    return out


_SIDE_LABELS = {"visible": "visible", "hidden": "hidden", "hidden_head": "hidden, head only (above the neck's base)"}
_LABELS = {
    "mesh25d": "2.5D mesh (integrated depth)",
    "full": "complete head (`fullhead`)",
    "model": "fitted model alone",
    "mean": "mean head (y = 0), same pose and expression",
    "mean_fit": "mean head (y = 0), its own fit (identity held at 0)",
    "full_uncalibrated": "complete head, calibration (identity, scale, expression) off",
    "mean_uncalibrated": "mean head (y = 0), pose and expression of the fit without calibration",
}


def markdown(result: dict[str, Any]) -> str:
    """The evaluation of :func:`evaluate_test_set` as a Markdown table (pixels)."""
    s = result.get("summary") or {}
    lines = ["| side | reconstruction | heads | mean | median | 90 % |", "|---|---|---:|---:|---:|---:|"]
    for side in SIDES:
        for name in METHODS:
            r = (s.get(side) or {}).get(name)
            if r is None:
                continue
            lines.append(
                f"| {_SIDE_LABELS[side]} | {_LABELS[name]} | {r['heads']} | {r['mean']:.3f} | {r['median']:.3f} "
                f"| {r['p90']:.3f} |"
            )
    return "\n".join(lines)
