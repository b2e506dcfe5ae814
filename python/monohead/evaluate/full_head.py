"""Evaluation of complete heads (:mod:`monohead.fullhead`) on synthetic heads.

On a synthetic sample the whole true head is known: its parameters (identity, expression,
gaze, pose) give the posed ICT-FaceKit mesh that was rendered. For one sample,
:func:`evaluate_full_head` compares, after one rigid alignment:

- the **2.5D mesh** (the integrated depth over the predicted mask; the pipeline's output);
- the **complete head** (:func:`monohead.fullhead.merge_head`);
- the **fitted model** alone (no detail from the photo);
- the **mean head**: the model with ``y = 0``, in the pose and expression of the same fit;

on two sets of points of the true surface:

- **visible side**: one point per pixel of the true mask that the predicted mask also covers:
  the true depth at that pixel (the surface the camera saw);
- **hidden side**: points spread uniformly over the area of the true skin (seeded), keeping
  those the camera did not see (back-facing, occluded or outside the image: not within
  ``VISIBLE_TOL`` pixels of the true depth map at their pixel).

Each error is the distance from a true point to the reconstruction's surface (exact closest
point), in pixels of the image. Alignment: the 2.5D mesh is aligned to the true visible
surface by point-to-plane ICP (as in the Table 2 analogue of :mod:`monohead.experiments`:
fitted on every 4th vertex), and the same rigid transform is applied to every
reconstruction (they all live in the 2.5D mesh's frame; the depth's offset is the unknown).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["HIDDEN_POINTS", "VISIBLE_TOL", "evaluate_full_head", "summarise", "true_head_mesh"]

#: Points sampled on the true skin for the hidden side (before keeping the hidden ones).
HIDDEN_POINTS = 20000
#: A true surface point is visible when within this many pixels of the true depth map.
VISIBLE_TOL = 1.0
ICP_STRIDE = 4
METHODS = ("mesh25d", "full", "model", "mean")


def true_head_mesh(params: dict[str, Any], size: tuple[int, int], model: Any = None) -> Any:
    """The posed true head of a synthetic sample (skin and eyes, pixels, camera frame), as
    rendered by :mod:`monohead.synth` (hair and glasses left out)."""
    import trimesh  # noqa: PLC0415

    from ..synth import scene  # noqa: PLC0415
    from ..synth.head_model import EYE_REGIONS, SKIN_REGIONS, HeadModel  # noqa: PLC0415

    hm = model if isinstance(model, HeadModel) else HeadModel.load(model)
    vm = hm.shape(params["identity"], params["expression"], tuple(params["gaze"]))
    M = scene.pose_matrix(params["pose"], tuple(size))
    vw = vm @ M[:3, :3].T + M[:3, 3]
    faces = hm.faces[hm.region_faces(list(SKIN_REGIONS) + list(EYE_REGIONS))]
    skin = hm.faces[hm.region_faces(list(SKIN_REGIONS))]
    mesh = trimesh.Trimesh(vw, faces, process=False)
    mesh.metadata["skin_faces"] = skin
    return mesh


def _hidden_points(true_mesh: Any, true_depth: np.ndarray, true_mask: np.ndarray, count: int, seed: int) -> np.ndarray:
    import trimesh  # noqa: PLC0415

    skin = trimesh.Trimesh(np.asarray(true_mesh.vertices), true_mesh.metadata.get("skin_faces", true_mesh.faces), process=False)
    pts, fidx = trimesh.sample.sample_surface(skin, count, seed=seed)
    H, W = true_mask.shape
    c = np.rint(pts[:, 0]).astype(np.int64)
    r = np.rint(-pts[:, 1]).astype(np.int64)
    inb = (c >= 0) & (c < W) & (r >= 0) & (r < H)
    rr, cc = np.where(inb, r, 0), np.where(inb, c, 0)
    seen = inb & true_mask[rr, cc] & (skin.face_normals[fidx][:, 2] > 0)
    seen &= np.abs(pts[:, 2] - np.where(seen, true_depth[rr, cc], np.inf)) < VISIBLE_TOL
    return pts[~seen]


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
) -> dict[str, Any]:
    """Per-point errors (pixels) of the four reconstructions of one sample (module docstring).

    Args:
        true_mesh: :func:`true_head_mesh` of the sample.
        true_depth, true_mask: the sample's true depth (pixels) and mask.
        depth, mask: the reconstruction's integrated depth and mask (the 2.5D mesh).
        full_mesh: :func:`monohead.fullhead.merge_head`'s mesh.
        fit: the :class:`monohead.fullhead.HeadFit`.
        seed: seed of the hidden-side sample.

    Returns:
        ``{"visible": {method: (n,) distances}, "hidden": {method: (m,) distances},
        "icp_rms": float}``; the 2.5D mesh has no hidden side.
    """
    from ..geometry import MeshSurface, depth_to_mesh  # noqa: PLC0415
    from .mesh_error import apply_transform, icp  # noqa: PLC0415

    td = np.asarray(true_depth, np.float64)
    tm = np.asarray(true_mask, bool)
    d = np.asarray(depth, np.float64)
    m = np.asarray(mask, bool) & np.isfinite(d)
    dom = m & tm
    if dom.sum() < 16:
        raise ValueError(f"the predicted and true masks share {int(dom.sum())} pixels; need at least 16")
    true_vis = MeshSurface(depth_to_mesh(td, tm), "true visible surface")
    mesh25 = depth_to_mesh(np.where(m, d, np.nan), m)
    P = np.asarray(depth_to_mesh(np.where(dom, d, np.nan), dom).vertices)
    stride = max(1, min(ICP_STRIDE, P.shape[0] // 64))
    res = icp(P[::stride], true_vis)
    T = res.transform
    Tinv = np.linalg.inv(T)  # move the true points instead of the meshes (same distances)
    rows, cols = np.nonzero(dom)
    vis_pts = np.column_stack([cols, -rows, td[rows, cols]]).astype(np.float64)
    hid_pts = _hidden_points(true_mesh, td, tm, hidden_points, seed)
    vis_local = apply_transform(Tinv, vis_pts)
    hid_local = apply_transform(Tinv, hid_pts) if len(hid_pts) else hid_pts
    recon = {
        "mesh25d": mesh25,
        "full": full_mesh,
        "model": fit.model_mesh(),
        "mean": fit.model_mesh(identity=np.zeros_like(fit.identity)),
    }
    out: dict[str, Any] = {"visible": {}, "hidden": {}, "icp_rms": float(res.rms)}
    for name, mesh in recon.items():
        surf = MeshSurface(mesh, name)
        out["visible"][name] = surf.closest(vis_local)[1]
        if name != "mesh25d" and len(hid_local):
            out["hidden"][name] = surf.closest(hid_local)[1]
    return out


def summarise(per_sample: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the per-point errors of :func:`evaluate_full_head` over samples: for each side and
    method, ``mean``, ``median``, ``p90``, ``count``, and ``mean_of_heads`` (mean of the
    per-head means)."""
    out: dict[str, Any] = {}
    for side in ("visible", "hidden"):
        out[side] = {}
        for name in METHODS:
            arrs = [s[side][name] for s in per_sample if name in s[side]]
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
