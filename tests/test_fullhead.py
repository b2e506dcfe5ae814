"""monohead.fullhead: fitting the head model behind a 2.5D surface, and the watertight merge.

The observations are rendered here independently of the module: the posed ICT-FaceKit head
is ray-cast (trimesh's ray caster, one orthographic ray per pixel centre), which gives the
depth, the face normals and the mask of a head whose parameters are known.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from monohead import fullhead
from monohead.fullhead import (
    FitSettings,
    HeadFit,
    HeadFitError,
    fit_head,
    merge_head,
    self_intersections,
)
from monohead.geometry import MeshSurface
from monohead.synth.head_model import EYE_REGIONS, SKIN_REGIONS, HeadModel

SIZE = 96
#: The scenes here are exact renderings: the depth is the truth to a fraction of a pixel and
#: the mask's outline, quantised to pixels, is the noisier term. The default silhouette weight
#: is tuned for the network's predictions (whose integrated depth is off by about a pixel);
#: for exact depth, the weight of one silhouette residual is set back to that of a depth one.
#: The identity calibration is learned for the shipped network's maps, not exact ones: off.
EXACT = FitSettings(silhouette_weight=1.0, identity_calibration=False)
#: The defaults, but for the identity calibration (made for the network's maps).
DEFAULTS_EXACT = FitSettings(identity_calibration=False)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``R = Rz(roll) Rx(pitch) Ry(yaw)`` in degrees (the generator's order), built by SciPy
    independently of the module: the generator's ``Rx(pitch)`` is SciPy's ``Rx(-pitch)``."""
    return Rotation.from_euler("yxz", [yaw, -pitch, roll], degrees=True).as_matrix()


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return HeadModel.load()


def _render(vertices: np.ndarray, faces: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthographic ray casting at pixel centres: depth (NaN off the head), normals, mask."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    r, c = np.mgrid[0:size, 0:size]
    origins = np.column_stack([c.ravel(), -r.ravel(), np.full(r.size, vertices[:, 2].max() + 10.0)]).astype(np.float64)
    dirs = np.tile([0.0, 0.0, -1.0], (r.size, 1))
    loc, ray, tri = mesh.ray.intersects_location(origins, dirs, multiple_hits=False)
    depth = np.full(r.size, np.nan)
    normals = np.zeros((r.size, 3))
    depth[ray] = loc[:, 2]
    fn = mesh.face_normals[tri]
    ok = fn[:, 2] > 0.05
    normals[ray[ok]] = fn[ok]
    depth[ray[~ok]] = np.nan
    mask = np.isfinite(depth)
    return depth.reshape(size, size), normals.reshape(size, size, 3), mask.reshape(size, size)


@pytest.fixture(scope="module")
def scene(model: HeadModel) -> dict:
    """A head with a known identity, expression and pose, and its rendered maps."""
    rng = np.random.default_rng(7)
    y = rng.standard_normal(model.num_identities) * 0.8
    w = np.zeros(model.num_expressions)
    w[model.expression_names.index("jawOpen")] = 0.3
    R = _rotation(25.0, 8.0, -6.0)
    s = 0.6 * SIZE / 18.5
    t = np.array([SIZE / 2 - 1.0, -SIZE / 2 + 2.0, 0.0])
    verts = (model.shape(y, w) - fullhead.PIVOT) @ (s * R).T + t
    faces = model.faces[model.region_faces(list(SKIN_REGIONS) + list(EYE_REGIONS))]
    depth, normals, mask = _render(verts, faces)
    offset = 37.25  # the integrator's gauge: depth is known up to a constant
    return {"y": y, "w": w, "R": R, "s": s, "t": t, "verts": verts, "faces": faces,
            "skin": model.faces[model.region_faces(list(SKIN_REGIONS))],
            "depth": depth - offset, "normals": normals, "mask": mask, "offset": offset}  # fmt: skip


@pytest.fixture(scope="module")
def fitted(scene: dict, model: HeadModel) -> HeadFit:
    return fit_head(scene["depth"], scene["normals"], scene["mask"], model=model, settings=EXACT)


def _hidden_error(scene: dict, mesh: trimesh.Trimesh) -> float:
    """Mean distance (px) from the back half of the true skin to ``mesh`` (after undoing the
    known depth offset)."""
    v = scene["verts"].copy()
    skin = np.unique(scene["skin"])
    back = skin[v[skin, 2] < np.median(v[skin, 2])]
    pts = v[back] - [0.0, 0.0, scene["offset"]]
    return float(MeshSurface(mesh).closest(pts)[1].mean())


def test_fit_recovers_pose_scale_and_converges(fitted: HeadFit, scene: dict) -> None:
    ypr = np.array(fullhead.yaw_pitch_roll(fitted.rotation))
    assert np.abs(ypr - [25.0, 8.0, -6.0]).max() < 3.0, ypr
    assert abs(fitted.scale / scene["s"] - 1.0) < 0.06
    assert fitted.converged
    assert fitted.rms < 1.0
    # Translation: x, y in pixels; z carries the depth map's offset.
    assert np.abs(fitted.translation[:2] - scene["t"][:2]).max() < 2.0
    assert abs(fitted.translation[2] - (scene["t"][2] - scene["offset"])) < 3.0
    p = fitted.params()
    assert set(p) >= {"identity", "expression", "scale", "rotation", "translation", "converged", "iterations"}


def test_fit_recovers_identity_beyond_the_mean_head(fitted: HeadFit, scene: dict) -> None:
    fit_err = _hidden_error(scene, fitted.model_mesh())
    mean_err = _hidden_error(scene, fitted.model_mesh(identity=np.zeros_like(fitted.identity)))
    assert fit_err < 0.75 * mean_err, (fit_err, mean_err)
    k = fitted.identity.size
    assert np.corrcoef(fitted.identity, scene["y"][:k])[0, 1] > 0.3


def test_identity_beats_the_mean_heads_own_fit(fitted: HeadFit, scene: dict, model: HeadModel) -> None:
    """The stricter baseline of the evaluation: the mean head fitted on its own (identity held
    at 0, its pose and expression free) is better placed than the mean head in the identity
    fit's pose, and on exact maps the fitted identity still beats it."""
    from monohead.evaluate import full_head as fh

    fit0 = fh.mean_head_fit(scene["depth"], scene["normals"], scene["mask"], model=model, settings=EXACT)
    assert fit0.identity.size == 0
    own = _hidden_error(scene, fit0.model_mesh())
    same_pose = _hidden_error(scene, fitted.model_mesh(identity=np.zeros_like(fitted.identity)))
    fit_err = _hidden_error(scene, fitted.model_mesh())
    assert own < same_pose, (own, same_pose)  # 0.380 against 0.401 px
    assert fit_err < 0.85 * own, (fit_err, own)  # 0.295 px: 0.78
    summary = {"hidden": {"full": {"mean": 1.0}, "mean": {"mean": 2.0}, "mean_fit": {"mean": 1.6}}}
    assert fh.hidden_ratios(summary) == {"hidden/mean": 0.5, "hidden/mean_fit": 0.625}


def test_default_settings_on_exact_data(scene: dict, model: HeadModel) -> None:
    """The defaults (a stronger silhouette) still find the pose and beat the mean head."""
    fit = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model, settings=DEFAULTS_EXACT)
    ypr = np.array(fullhead.yaw_pitch_roll(fit.rotation))
    assert np.abs(ypr - [25.0, 8.0, -6.0]).max() < 3.0, ypr
    assert abs(fit.scale / scene["s"] - 1.0) < 0.06
    assert fit.converged
    fit_err = _hidden_error(scene, fit.model_mesh())
    assert fit_err < 0.9 * _hidden_error(scene, fit.model_mesh(identity=np.zeros_like(fit.identity)))


def test_silhouette_offset_moves_the_contour_out(scene: dict, model: HeadModel, fitted: HeadFit) -> None:
    """``FitSettings(silhouette_offset=0.5)``: the mask of an exact rendering, sampled at pixel
    centres, ends about half a pixel inside the true outline; matching the model's contour half
    a pixel beyond the border pixels fits a larger head, nearer the true size (exact maps)."""
    from dataclasses import replace

    out = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model,
                   settings=replace(EXACT, silhouette_offset=0.5))  # fmt: skip
    assert out.scale > fitted.scale
    assert abs(out.scale / scene["s"] - 1.0) < abs(fitted.scale / scene["s"] - 1.0), (
        out.scale,
        fitted.scale,
        scene["s"],
    )


def test_fit_is_deterministic(scene: dict, model: HeadModel, fitted: HeadFit) -> None:
    again = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model, settings=EXACT)
    np.testing.assert_array_equal(again.identity, fitted.identity)
    np.testing.assert_array_equal(again.rotation, fitted.rotation)
    other = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model, seed=1, settings=EXACT)
    assert not np.array_equal(other.identity, fitted.identity)  # other fitting vertices
    assert abs(other.scale / fitted.scale - 1.0) < 0.03


def test_stray_blob_does_not_drag_the_fit(scene: dict, model: HeadModel, fitted: HeadFit) -> None:
    depth, normals, mask = scene["depth"].copy(), scene["normals"].copy(), scene["mask"].copy()
    rows, cols = np.nonzero(mask)
    # A blob attached to the head's side, far in front of it (a shoulder, a hand), and a
    # detached one in a corner.
    r0 = int(np.median(rows))
    c0 = int(cols.max()) - 3
    blob = np.zeros_like(mask)
    blob[r0 - 6 : r0 + 6, c0 : min(c0 + 14, SIZE)] = True
    blob[2:10, 2:10] = True
    new = blob & ~mask
    depth[new] = np.nanmax(depth) + 15.0
    normals[new] = (0.0, 0.0, 1.0)
    mask |= blob
    fit = fit_head(depth, normals, mask, model=model, settings=DEFAULTS_EXACT)  # the defaults
    assert fit.ignored_pixels == 64  # the detached blob
    ypr = np.array(fullhead.yaw_pitch_roll(fit.rotation))
    assert np.abs(ypr - [25.0, 8.0, -6.0]).max() < 4.0, ypr
    assert abs(fit.scale / scene["s"] - 1.0) < 0.08
    assert _hidden_error(scene, fit.model_mesh()) < 1.3 * _hidden_error(scene, fitted.model_mesh())


def test_identity_calibration_replaces_identity_and_scale(
    scene: dict, model: HeadModel, fitted: HeadFit, tmp_path
) -> None:
    """``FitSettings(identity_calibration=PATH)``: the map of that file (here: half the fitted
    identity, a scale 3 % larger; then also half the expression weights) replaces the fit's
    identity and scale (and expression); the fit's own values are kept; off, nothing is
    replaced."""
    from dataclasses import replace

    from monohead import head_calibration as hc

    f = 100 + 53 + len(hc.FEATURE_POSE)
    A = np.zeros((f, 100))
    A[np.arange(100), np.arange(100)] = 0.5
    half = hc.ModeCalibration(np.arange(f), np.zeros(f), np.ones(f), np.zeros(100), A, math.log(1.03))
    path = tmp_path / "cal.npz"
    hc.IdentityCalibration({"orthographic": half, "perspective": half}, "0" * 64).save(path)
    cal = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model,
                   settings=replace(EXACT, identity_calibration=str(path)))  # fmt: skip
    assert cal.calibrated
    assert not fitted.calibrated
    assert fitted.fitted_identity is None
    np.testing.assert_allclose(cal.fitted_identity, fitted.identity)
    np.testing.assert_allclose(cal.identity, 0.5 * fitted.identity, atol=1e-6)
    assert cal.scale == pytest.approx(1.03 * fitted.scale, rel=1e-6)
    assert cal.params()["fitted_scale"] == pytest.approx(fitted.scale)
    # no expression factors in the file: the expression is the fit's
    np.testing.assert_array_equal(cal.expression, fitted.expression)
    assert cal.fitted_expression is None
    # with factors (a half each), the expression weights are shrunk; the fit's own are kept
    scale = np.full(len(fitted.expression), 0.5)
    hc.IdentityCalibration({"orthographic": replace(half, expression_scale=scale)}, "0" * 64).save(path)
    hc._DEFAULT.clear()
    cal_w = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model,
                     settings=replace(EXACT, identity_calibration=str(path)))  # fmt: skip
    assert fitted.expression.max() > 0.05
    np.testing.assert_allclose(cal_w.expression, 0.5 * fitted.expression)
    np.testing.assert_array_equal(cal_w.fitted_expression, fitted.expression)
    np.testing.assert_allclose(cal_w.identity, cal.identity)
    names = fitted.expression_names
    assert cal_w.params()["fitted_expression"] == {
        n: float(w) for n, w in zip(names, fitted.expression, strict=True) if w > 0
    }
    assert cal_w.params()["expression"]["jawOpen"] == pytest.approx(0.5 * fitted.expression[names.index("jawOpen")])
    with pytest.raises(TypeError, match="identity_calibration must be a bool or a path"):
        fit_head(scene["depth"], scene["normals"], scene["mask"], model=model,
                 settings=replace(EXACT, identity_calibration=1))  # fmt: skip


def test_identity_calibration_only_for_its_expression_prior(
    scene: dict, model: HeadModel, fitted: HeadFit, tmp_path
) -> None:
    """A calibration's features hold the fit's expression weights, which depend on
    ``FitSettings.expression_prior``: a file learned with one prior is applied to fits of
    that prior only (a file of before the record: 0.5, the default then)."""
    from dataclasses import replace

    from monohead import head_calibration as hc

    f = 100 + 53 + len(hc.FEATURE_POSE)
    A = np.zeros((f, 100))
    A[np.arange(100), np.arange(100)] = 0.5
    half = hc.ModeCalibration(np.arange(f), np.zeros(f), np.ones(f), np.zeros(100), A, 0.0)
    path = tmp_path / "cal.npz"
    hc.IdentityCalibration({"orthographic": half}, "0" * 64, expression_prior=EXACT.expression_prior + 1).save(path)
    other = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model,
                     settings=replace(EXACT, identity_calibration=str(path)))  # fmt: skip
    assert not other.calibrated
    np.testing.assert_allclose(other.identity, fitted.identity)
    same = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model,
                    settings=replace(EXACT, identity_calibration=str(path),
                                     expression_prior=EXACT.expression_prior + 1))  # fmt: skip
    assert same.calibrated


def test_not_converged_is_reported(scene: dict, model: HeadModel) -> None:
    fit = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model, settings=FitSettings(iterations=2))
    assert not fit.converged
    assert fit.iterations == 2


@pytest.mark.parametrize("pixels", [0, 150])
def test_small_mask_is_refused(scene: dict, model: HeadModel, pixels: int) -> None:
    mask = np.zeros_like(scene["mask"])
    mask.ravel()[np.flatnonzero(scene["mask"])[:pixels]] = True
    with pytest.raises(HeadFitError, match="empty" if pixels == 0 else "150 pixels"):
        fit_head(scene["depth"], scene["normals"], mask, model=model)
    assert issubclass(HeadFitError, ValueError)


def test_bad_inputs(scene: dict, model: HeadModel) -> None:
    d, n, m = scene["depth"], scene["normals"], scene["mask"]
    with pytest.raises(ValueError, match=r"depth must have shape \(H, W\)"):
        fit_head(d[None], n, m, model=model)
    with pytest.raises(ValueError, match="normals must have shape"):
        fit_head(d, n[..., :2], m, model=model)
    with pytest.raises(ValueError, match="W must have shape"):
        fit_head(d, n, m, np.zeros((3, 3)), model=model)
    bad = d.copy()
    bad[np.nonzero(m)[0][0], np.nonzero(m)[1][0]] = np.nan
    with pytest.raises(ValueError, match="depth must be finite inside the mask; got 1"):
        fit_head(bad, n, m, model=model)
    with pytest.raises(ValueError, match="seed"):
        fit_head(d, n, m, model=model, seed=-1)
    with pytest.raises(TypeError, match="settings"):
        fit_head(d, n, m, model=model, settings={"prior": 1})
    with pytest.raises(TypeError, match="fit must be a HeadFit"):
        merge_head("fit", d, m)


def _mean_head_turned(model: HeadModel, yaw: float, size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean head turned ``yaw`` degrees (pitch 0), its pivot at the image's centre column,
    rendered: depth (NaN off the head), normals, mask."""
    R = _rotation(yaw, 0.0, 0.0)
    s = 0.45 * size / 18.5
    x = model.shape(np.zeros(model.num_identities), np.zeros(model.num_expressions))
    v = (x - fullhead.PIVOT) @ (s * R).T + [size / 2, -0.47 * size, 0.0]
    return _render(v, model.faces[model.region_faces(list(SKIN_REGIONS) + list(EYE_REGIONS))], size)


@pytest.mark.parametrize("yaw", [-75.0, -45.0, 0.0, 45.0, 75.0])
def test_estimate_pose_reads_the_side_and_size_of_a_turn(model: HeadModel, yaw: float) -> None:
    """The pose search alone: a profile and its mirror image (alike outlines) read on their own
    sides, the size of the turn within 15 degrees."""
    depth, normals, mask = _mean_head_turned(model, yaw)
    cfg = FitSettings(yaw_candidates=(-85.0, -60.0, -30.0, 0.0, 30.0, 60.0, 85.0), pitch_candidates=())
    pose = fullhead.estimate_pose(depth, normals, mask, model=model, settings=cfg)
    assert abs(pose.yaw - yaw) < 15.0, pose
    assert yaw == 0.0 or np.sign(pose.yaw) == np.sign(yaw)
    assert abs(pose.pitch) < 10.0
    assert pose.normals_angle < 20.0
    assert pose.seconds > 0.0
    np.testing.assert_allclose(fullhead.yaw_pitch_roll(pose.rotation), (pose.yaw, pose.pitch, pose.roll))
    # the mirror image of the maps reads the opposite turn
    mirrored = fullhead.estimate_pose(
        depth[:, ::-1], normals[:, ::-1] * [-1.0, 1.0, 1.0], mask[:, ::-1], model=model, settings=cfg
    )
    assert abs(mirrored.yaw + pose.yaw) < 5.0, (mirrored.yaw, pose.yaw)


def test_estimate_pose_refuses_what_fit_head_refuses(scene: dict, model: HeadModel) -> None:
    small = np.zeros_like(scene["mask"])
    small.ravel()[np.flatnonzero(scene["mask"])[:150]] = True
    with pytest.raises(HeadFitError, match="150 pixels"):
        fullhead.estimate_pose(scene["depth"], scene["normals"], small, model=model)
    with pytest.raises(ValueError, match="normals must have shape"):
        fullhead.estimate_pose(scene["depth"], scene["normals"][..., :2], scene["mask"], model=model)
    with pytest.raises(ValueError, match="seed"):
        fullhead.estimate_pose(scene["depth"], scene["normals"], scene["mask"], model=model, seed=-1)


def test_observed_surface_is_exact_on_a_plane_and_continuous() -> None:
    """The fit samples the observed surface bilinearly, each pixel carried along its tangent
    plane: exact on a plane, and depth, normal and pixel weight continuous in the position
    (the last phase minimises one smooth function)."""
    H = W = 24
    rows, cols = np.mgrid[0:H, 0:W]
    p, q = 0.5, -0.25  # dh/dx, dh/dy (y up: row -> -y)
    depth = 2.0 + p * cols - q * rows
    n = np.array([-p, -q, 1.0]) / np.linalg.norm([-p, -q, 1.0])
    normals = np.broadcast_to(n, (H, W, 3)).copy()
    mask = np.zeros((H, W), bool)
    mask[3:20, 4:21] = True
    Wmap = rows * 0.5  # depth-gradient magnitude: the pixel weight 1 / (1 + 0.1 W) varies by row
    obs, _ = fullhead._observations(depth, normals, mask, Wmap)
    rng = np.random.default_rng(0)
    x = rng.uniform(4.0, 20.0, 200)
    y = -rng.uniform(3.0, 19.0, 200)
    ok, D, nrm, _, cover, wpix = fullhead._sample_depth(obs, x, y)
    assert ok.all()
    np.testing.assert_allclose(D, 2.0 + p * x + q * y, atol=1e-9)
    np.testing.assert_allclose(nrm, np.broadcast_to(n, (200, 3)), atol=1e-12)
    r0, fr = np.floor(-y), -y - np.floor(-y)
    np.testing.assert_allclose(
        wpix, (1 - fr) / (1 + 0.05 * r0) + fr / (1 + 0.05 * (r0 + 1)), rtol=1e-9
    )  # linear in row
    # Across a pixel boundary and the mask's border: no jump.
    for x0, y0 in ((10.5, -7.0), (20.0, -10.3), (12.2, -19.0)):
        a = fullhead._sample_depth(obs, np.array([x0 - 1e-7]), np.array([y0 - 1e-7]))
        b = fullhead._sample_depth(obs, np.array([x0 + 1e-7]), np.array([y0 + 1e-7]))
        for i in (1, 4, 5):
            np.testing.assert_allclose(a[i], b[i], atol=1e-5)
    # Far outside the image: nothing found.
    assert not fullhead._sample_depth(obs, np.array([-50.0, 300.0]), np.array([5.0, -300.0]))[0].any()


def test_merge_displacement_grows_at_most_max_slope_from_the_border(fitted: HeadFit, scene: dict) -> None:
    """A surface 5 px in front of the fitted model (an integrated neck with no jump under the
    jaw is like that): inside, the vertices move the whole 5 px; toward the mask's border the
    displacement falls at most ``max_slope`` (default 0.5) px per pixel, not over the 4-pixel
    seam alone (which made a step), and without the cap it would not."""
    from scipy import ndimage

    max_slope = 0.5

    d, n, m = scene["depth"] + 5.0, scene["normals"], scene["mask"]
    x = fitted.vertices()
    dist = ndimage.distance_transform_edt(m)
    c = np.clip(x[:, 0], 0, SIZE - 1)
    r = np.clip(-x[:, 1], 0, SIZE - 1)
    at = ndimage.map_coordinates(dist, [r, c], order=1)

    def displacement(cap: float) -> tuple[np.ndarray, np.ndarray]:
        mesh = merge_head(fitted, d, m, n) if cap == max_slope else merge_head(fitted, d, m, n, max_slope=cap)
        return np.asarray(mesh.vertices)[:, 2] - x[:, 2], mesh.metadata["visible_weight"]

    delta, a = displacement(max_slope)
    over = np.abs(delta) - max_slope * (at + 1.5)
    assert over.max() <= 0.0, (over.max(), int((over > 0).sum()))
    # without the cap the displacement rises faster than that near the border
    loose, _ = displacement(1e9)
    # far enough from the border, the visible vertices move as without the cap: the offset
    # plus the fit's own small error
    deep = (a == 1.0) & (at > 5.0 / max_slope + 4.0)
    assert deep.sum() > 200
    assert np.median(delta[deep]) > 4.0, np.median(delta[deep])
    assert np.median(np.abs(delta - loose)[deep]) < 0.01
    assert (np.abs(loose) - max_slope * (at + 1.5) > 0.5).sum() > 50


@pytest.mark.parametrize("name", ["seam", "smooth", "depth_falloff", "max_slope"])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), True, "2"])
def test_merge_refuses_bad_settings(fitted: HeadFit, scene: dict, name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a finite number > 0; got {bad!r}"):
        merge_head(fitted, scene["depth"], scene["mask"], scene["normals"], **{name: bad})


def test_merge_is_watertight_keeps_the_surface_and_has_no_seam_intersections(fitted: HeadFit, scene: dict) -> None:
    d, n, m = scene["depth"], scene["normals"], scene["mask"]
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[..., 0] = 200
    mesh = merge_head(fitted, d, m, n, colors=rgb)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    parts = mesh.split(only_watertight=False)
    assert all(p.is_watertight for p in parts)
    assert max(len(p.vertices) for p in parts) == fullhead._prepared(fitted.model).n_skin  # one closed skin
    a = mesh.metadata["visible_weight"]
    assert (a == 1.0).sum() > 500
    # Where the weight is 1 the vertex sits on the observed surface (depth map, bilinear).
    v = np.asarray(mesh.vertices)[a == 1.0]
    v = v[(v[:, 0] < SIZE - 1) & (-v[:, 1] < SIZE - 1)]
    c, r = v[:, 0], -v[:, 1]
    c0, r0 = np.floor(c).astype(int), np.floor(r).astype(int)
    fc, fr = c - c0, r - r0
    interp = (d[r0, c0] * (1 - fc) * (1 - fr) + d[r0, c0 + 1] * fc * (1 - fr) + d[r0 + 1, c0] * (1 - fc) * fr
              + d[r0 + 1, c0 + 1] * fc * fr)  # fmt: skip
    good = np.isfinite(interp)
    assert good.mean() > 0.95
    assert np.median(np.abs(v[good, 2] - interp[good])) < 0.1
    # The seam: skin faces with a vertex of partial weight. ICT-FaceKit's own skin crosses
    # itself in a few places (inside the mouth); the merge must add no crossing there.
    skin = fullhead._prepared(fitted.model).skin_faces
    partial = (a > 0) & (a < 1)
    seam = partial[skin].any(axis=1)
    assert seam.sum() > 50
    merged = {tuple(p) for p in self_intersections(mesh.vertices, skin, seam)}
    before = {tuple(p) for p in self_intersections(fitted.vertices(), skin, seam)}
    assert merged <= before, sorted(merged - before)[:5]
    # Colours: visible region from the image, elsewhere its median.
    col = np.asarray(mesh.visual.vertex_colors)
    assert (col[:, 0] == 200).all()


def test_self_intersections_finds_crossing_triangles() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=2)
    assert len(self_intersections(sphere.vertices, sphere.faces)) == 0
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.2, 0.2, -0.5], [0.3, 0.2, 0.5], [0.2, 0.3, 0.5]], float)
    f = np.array([[0, 1, 2], [3, 4, 5]])
    assert self_intersections(v, f).tolist() == [[0, 1]]
    # Two spheres overlapping: many pairs, found from either side's candidates.
    two = trimesh.util.concatenate([sphere, sphere.copy().apply_translation([0.93, 0.07, 0.05])])
    n = len(sphere.faces)
    pairs = self_intersections(two.vertices, two.faces, np.arange(n))
    assert len(pairs) > 10
    assert (pairs[:, 0] < n).all()
    assert (pairs[:, 1] >= n).all()


def _scene_truth(scene: dict, model: HeadModel) -> trimesh.Trimesh:
    """The scene's true head as the evaluation reads it (:func:`true_head_mesh`'s metadata:
    the skin, and which of its triangles lie above the neck's base)."""
    from monohead.synth import body

    skin_sel = model.region_faces(list(SKIN_REGIONS))
    truth = trimesh.Trimesh(scene["verts"], scene["faces"], process=False)
    truth.metadata["skin_faces"] = scene["skin"]
    truth.metadata["head_skin"] = ~body.neck_cut(model)["drop"][skin_sel]
    return truth


def _moved(R: np.ndarray, t: np.ndarray, v: np.ndarray) -> np.ndarray:
    return v @ R.T + t


def test_own_alignment_measures_shape_not_placement(scene: dict, fitted: HeadFit, model: HeadModel) -> None:
    """The evaluation's second protocol ("own"): each closed reconstruction is aligned to the
    whole true head by its own ICP. The true head itself moved by a known rigid motion (a
    reconstruction with the right shape in the wrong place) scores about 0 there, and far off
    under the protocol "aligned by the 2.5D mesh"; a wrong identity (the mean head) scores
    worse than the right one, and the fitted identity (exact maps) lies between."""
    from monohead.evaluate import full_head as fh

    truth = _scene_truth(scene, model)
    order = fullhead._prepared(model).order
    R = _rotation(12.0, -7.0, 5.0)
    t = np.array([3.0, -2.0, 6.0])
    # The right shape (the true identity, expression and scale), placed wrong.
    right = trimesh.Trimesh(_moved(R, t, scene["verts"][order]), fullhead.model_faces(model), process=False)
    true_depth = scene["depth"] + scene["offset"]
    e = fh.evaluate_full_head(truth, true_depth, scene["mask"], scene["depth"], scene["mask"], right, fitted,
                              hidden_points=3000)  # fmt: skip
    own = e["own"]
    assert np.mean(own["visible"]["full"]) < 0.05, np.mean(own["visible"]["full"])
    assert np.mean(own["hidden"]["full"]) < 0.05, np.mean(own["hidden"]["full"])
    assert own["icp_rms"]["full"] < 0.1
    assert np.mean(e["hidden"]["full"]) > 3.0  # aligned by the 2.5D mesh: the motion stays
    # The 2.5D mesh keeps its own ICP: the same errors under both protocols.
    assert np.array_equal(own["visible"]["mesh25d"], e["visible"]["mesh25d"])
    # A wrong identity is worse than the right one, and the fit recovers part of the way.
    right_err = np.mean(own["hidden"]["full"])
    fit_err = np.mean(own["hidden"]["model"])
    mean_err = np.mean(own["hidden"]["mean"])
    assert right_err < 0.2 * fit_err, (right_err, fit_err)
    assert fit_err < 0.8 * mean_err, (fit_err, mean_err)
    # Pooled: the protocols are summarised apart, and an unknown one is refused.
    s_own = fh.summarise([e], "own")
    assert s_own["hidden"]["full"]["mean"] == pytest.approx(right_err, rel=1e-6)
    assert fh.summarise([e])["hidden"]["full"]["mean"] == pytest.approx(np.mean(e["hidden"]["full"]), rel=1e-6)
    with pytest.raises(ValueError, match="protocol must be one of"):
        fh.summarise([e], "mesh")


def test_align_on_own_undoes_a_rigid_motion(scene: dict, model: HeadModel) -> None:
    """:func:`align_on_own` recovers a known rigid motion of the true head: from a start near
    it by ICP alone, and from a start far from it (the identity, 20 degrees and 8 px off, where
    ICP alone stops in a local minimum about 3.3 px RMS away: why the evaluation also starts
    from the vertices' correspondence); a correspondence of the wrong length is refused."""
    from monohead.evaluate import full_head as fh
    from monohead.evaluate.mesh_error import _rigid

    truth = _scene_truth(scene, model)
    head_faces, order = fh._head_skin(model)
    R = _rotation(-15.0, 10.0, 8.0)
    t = np.array([-4.0, 5.0, 3.0])
    moved = trimesh.Trimesh(_moved(R, t, scene["verts"][order]), fullhead.model_faces(model), process=False)
    exact = _rigid(R.T, -R.T @ t)  # the inverse motion
    near = _rigid(_rotation(3.0, -2.0, 2.0), np.array([1.5, -1.0, 1.0])) @ exact
    for init, corr in ((near, None), (None, order)):
        T, rms = fh.align_on_own(moved, truth, init=init, head_faces=head_faces, correspondence=corr)
        assert rms < 0.1, rms
        # T undoes the motion: T (R x + t) = x.
        assert np.abs(T[:3, :3] @ R - np.eye(3)).max() < 2e-3, T
        x = scene["verts"][order[:50]]
        assert np.abs(_moved(T[:3, :3], T[:3, 3], _moved(R, t, x)) - x).max() < 0.05
    _, stuck = fh.align_on_own(moved, truth, head_faces=head_faces)
    assert stuck > 1.0, stuck
    with pytest.raises(ValueError, match="one entry per vertex"):
        fh.align_on_own(moved, truth, head_faces=head_faces, correspondence=order[:-1])


# --------------------------------------------------------------------------------------------
# A perspective camera: fit_head(..., K=K)

#: A short focal length (the pivot 110 px from the pinhole, the head about 55 px wide: a
#: selfie): the nose is about a third nearer than the head's centre.
FOCAL = 110.0


def _render_perspective(vertices: np.ndarray, faces: np.ndarray, f: float, size: int = SIZE):
    """Pinhole ray casting (the frame of the synthetic v2 camera: the pinhole at
    ``(cx, -cy, f)``, pixel ``(r, c)`` looking at ``(c, -r, 0)``): depth along the optical axis
    (NaN off the head), normals, mask (surface facing the pinhole)."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    cx = cy = (size - 1) / 2
    r, c = np.mgrid[0:size, 0:size]
    eye = np.array([cx, -cy, f])
    dirs = np.column_stack([c.ravel() - cx, -r.ravel() + cy, np.full(r.size, -f)])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = np.tile(eye, (r.size, 1))
    loc, ray, tri = mesh.ray.intersects_location(origins, dirs, multiple_hits=False)
    Z = np.full(r.size, np.nan)
    normals = np.zeros((r.size, 3))
    fn = mesh.face_normals[tri]
    ok = np.einsum("ij,ij->i", fn, eye - loc) > 0.05 * np.linalg.norm(eye - loc, axis=1)
    Z[ray[ok]] = f - loc[ok, 2]
    normals[ray[ok]] = fn[ok]
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    return Z.reshape(size, size), normals.reshape(size, size, 3), np.isfinite(Z).reshape(size, size), K


@pytest.fixture(scope="module")
def persp_scene(model: HeadModel) -> dict:
    rng = np.random.default_rng(11)
    y = rng.standard_normal(model.num_identities) * 0.8
    w = np.zeros(model.num_expressions)
    R = _rotation(-30.0, 6.0, 4.0)
    s = 0.6 * SIZE / 18.5
    t = np.array([SIZE / 2 - 0.5, -SIZE / 2 + 3.0, 0.0])  # the pivot on the reference plane
    verts = (model.shape(y, w) - fullhead.PIVOT) @ (s * R).T + t
    faces = model.faces[model.region_faces(list(SKIN_REGIONS) + list(EYE_REGIONS))]
    Z, normals, mask, K = _render_perspective(verts, faces, FOCAL)
    return {"y": y, "R": R, "s": s, "t": t, "verts": verts, "skin": model.faces[model.region_faces(list(SKIN_REGIONS))],
            "Z": Z, "normals": normals, "mask": mask, "K": K, "offset": 0.0}  # fmt: skip


#: The depth given to the perspective fits: the integrator's gauge, the depth along the axis
#: known up to a factor.
PERSP_SCALE = 0.01


@pytest.fixture(scope="module")
def persp_fit(persp_scene: dict, model: HeadModel) -> HeadFit:
    sc = persp_scene
    return fit_head(sc["Z"] * PERSP_SCALE, sc["normals"], sc["mask"], K=sc["K"], model=model, settings=EXACT)


def test_perspective_fit_recovers_the_head_where_the_orthographic_one_is_biased(
    persp_scene: dict, persp_fit: HeadFit, model: HeadModel
) -> None:
    sc = persp_scene
    scale = PERSP_SCALE
    fit = persp_fit
    ypr = np.array(fullhead.yaw_pitch_roll(fit.rotation))
    assert np.abs(ypr - [-30.0, 6.0, 4.0]).max() < 3.0, ypr
    assert abs(fit.scale / sc["s"] - 1.0) < 0.05, fit.scale / sc["s"]
    assert np.abs(fit.translation - sc["t"]).max() < 2.0, fit.translation
    assert abs(fit.depth_scale * scale - 1.0) < 0.05, fit.depth_scale
    assert fit.params()["camera"] == sc["K"].tolist()
    persp_err = _hidden_error(sc, fit.model_mesh())
    # The same maps read orthographically (height fx - Z at each pixel, as if the rays were
    # parallel): the shape is the perspective-distorted head, the fit is biased.
    ortho = fit_head(FOCAL - sc["Z"], sc["normals"], sc["mask"], model=model, settings=EXACT)
    ortho_err = _hidden_error(sc, ortho.model_mesh())
    assert persp_err < 0.6, persp_err  # 0.31 px
    assert persp_err < 0.4 * ortho_err, (persp_err, ortho_err)  # 2.1 px
    # The merge puts the visible region on the observed surface along the rays, watertight.
    mesh = merge_head(fit, sc["Z"] * scale, sc["mask"], sc["normals"])
    assert mesh.is_watertight
    a = mesh.metadata["visible_weight"]
    v = np.asarray(mesh.vertices)[a == 1.0]
    assert len(v) > 300
    # On the observed surface: its depth along the axis is depth_scale times the map's at
    # its pixel (bilinear).
    Zv = FOCAL - v[:, 2]
    c = (FOCAL * (v[:, 0] - sc["K"][0, 2])) / Zv + sc["K"][0, 2]
    r = sc["K"][1, 2] - FOCAL * (v[:, 1] + sc["K"][1, 2]) / Zv
    c0, r0 = np.floor(c).astype(int), np.floor(r).astype(int)
    fc, fr = c - c0, r - r0
    Zm = sc["Z"] * scale * fit.depth_scale
    interp = (Zm[r0, c0] * (1 - fc) * (1 - fr) + Zm[r0, c0 + 1] * fc * (1 - fr) + Zm[r0 + 1, c0] * (1 - fc) * fr
              + Zm[r0 + 1, c0 + 1] * fc * fr)  # fmt: skip
    good = np.isfinite(interp)
    assert good.mean() > 0.95
    assert np.median(np.abs(Zv[good] - interp[good])) < 0.1
    # And near the true surface (up to the fitted depth scale's error).
    true_vis = MeshSurface(trimesh.Trimesh(sc["verts"], sc["skin"], process=False))
    assert np.median(true_vis.closest(v)[1]) < 0.6
    with pytest.raises(ValueError, match="normals must be given"):
        merge_head(fit, sc["Z"] * scale, sc["mask"])
    with pytest.raises(ValueError, match="K must have shape"):
        fit_head(sc["Z"], sc["normals"], sc["mask"], K=np.eye(2), model=model)
    with pytest.raises(ValueError, match="depth must be positive inside the mask"):
        fit_head(-sc["Z"], sc["normals"], sc["mask"], K=sc["K"], model=model)


def test_evaluation_reads_perspective_truth_through_the_camera(persp_scene: dict, persp_fit: HeadFit) -> None:
    """monohead.evaluate.full_head with K: the true maps' pixels are points on their rays, and
    a perspective fit's 2.5D mesh is put in the same world frame: on exact maps every error is
    small, and reading the same truth orthographically is not."""
    from monohead.evaluate import full_head as fh

    sc = persp_scene
    depth = sc["Z"] * PERSP_SCALE
    fit = persp_fit
    mesh = merge_head(fit, depth, sc["mask"], sc["normals"])
    truth = trimesh.Trimesh(sc["verts"], sc["skin"], process=False)
    truth.metadata["skin_faces"] = sc["skin"]
    height = FOCAL - sc["Z"]  # the true depth map: the height of each pixel's hit
    e = fh.evaluate_full_head(truth, height, sc["mask"], depth, sc["mask"], mesh, fit, K=sc["K"], hidden_points=2000)
    assert np.median(e["visible"]["mesh25d"]) < 0.1  # 0.03 px
    assert np.median(e["visible"]["full"]) < 0.1  # 0.04 px
    assert np.mean(e["hidden"]["model"]) < 0.6  # 0.38 px
    assert np.mean(e["hidden"]["model"]) < 0.7 * np.mean(e["hidden"]["mean"])  # 0.82 px
    wrong = fh.evaluate_full_head(truth, height, sc["mask"], depth, sc["mask"], mesh, fit, hidden_points=2000)
    assert np.median(wrong["visible"]["full"]) > 10 * np.median(e["visible"]["full"])  # 1.3 px


def test_camera_warp_round_trip_and_normals() -> None:
    """The perspective warp: inverse of itself, its normals the inverse transpose (a tangent
    vector stays orthogonal to the normal), facing the pinhole exactly when z > 0."""
    cam = fullhead.PinholeWarp([[90.0, 0.0, 40.0], [0.0, 95.0, 30.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(3)
    x = rng.uniform([-20, -80, -40], [100, 20, 40], (200, 3))
    np.testing.assert_allclose(cam.unwarp(cam.warp(x)), x, atol=1e-9)
    # Projection: column cx + fx X / Z and row cy + fy Y / Z of the OpenCV frame.
    X, Y, Z = x[:, 0] - 40.0, -x[:, 1] - 30.0, 90.0 - x[:, 2]
    w = cam.warp(x)
    np.testing.assert_allclose(w[:, 0], 40.0 + 90.0 * X / Z)
    np.testing.assert_allclose(-w[:, 1], 30.0 + 95.0 * Y / Z)
    n = rng.standard_normal((200, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    tangent = np.cross(n, rng.standard_normal((200, 3)))
    eps = 1e-6
    dw = (cam.warp(x + eps * tangent) - cam.warp(x - eps * tangent)) / (2 * eps)
    nw = cam.warp_normals(x, n)
    np.testing.assert_allclose(np.einsum("ij,ij->i", nw, dw), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", cam.jacobian(x), tangent), dw, atol=1e-5)
    eye = np.array([40.0, -30.0, 90.0])
    np.testing.assert_array_equal(nw[:, 2] > 0, np.einsum("ij,ij->i", n, eye - x) > 0)


def test_accepted_steps_never_raise_the_cost(scene: dict, model: HeadModel) -> None:
    """Levenberg-Marquardt acceptance: every accepted step lowers (or keeps) the robust cost
    it was computed for, rejected ones are retried with more damping. The fit is started
    from a wrong pose (yaw -60 instead of 25: the mirror side) with a long trust region
    (40 px), where undamped Gauss-Newton steps overshoot: without the acceptance the fit went
    on to a yaw of -107 degrees (hidden error 5.1 px); with it, it stays near its start
    (-80 degrees, 3.2 px). The scenario is pinned: one start (no pitch candidates), 60 identity
    modes (with the default 100 the same start ends at 4.3 px), the expression prior of when
    it was written (0.5; with today's 64 the same start ends at 4.6 px)."""
    wild = FitSettings(yaw_candidates=(-60.0,), pitch_candidates=(), n_identity=60, max_step=40.0,
                       identity_calibration=False, expression_prior=0.5)  # fmt: skip
    fit = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model, settings=wild)
    assert fit.steps
    before = np.array([b for b, _, _ in fit.steps])
    after = np.array([a for _, a, _ in fit.steps])
    ok = np.array([acc for _, _, acc in fit.steps])
    assert (after[ok] <= before[ok]).all()
    assert (after[~ok] > before[~ok]).all()
    assert (~ok).any()  # the acceptance was needed
    assert ok.sum() <= fit.iterations
    assert _hidden_error(scene, fit.model_mesh()) < 4.0
    assert abs(fullhead.yaw_pitch_roll(fit.rotation)[0]) < 95.0


# --------------------------------------------------------------------------------------------
# The pipeline: monohead.reconstruct(..., full_head=True) and `monohead reconstruct --full-head`


def _oracle(crops):
    from monohead.integration import surfaces

    s = surfaces.head(128, neck=True)
    B = len(crops)
    return (np.repeat(s.normals[None].astype(np.float32), B, 0), np.repeat(s.W[None].astype(np.float32), B, 0),
            np.repeat(s.mask[None], B, 0))  # fmt: skip


def test_reconstruct_full_head_and_preview() -> None:
    from skimage import data

    from monohead import geometry, photo

    rec = photo.reconstruct(data.astronaut(), model=_oracle, full_head=True)
    assert rec.full_mesh.is_watertight
    assert isinstance(rec.head_fit, HeadFit)
    assert "full_head" in rec.seconds
    assert rec.seconds["full_head"] > 0
    # Same frame as the 2.5D mesh: part of the complete head lies on it.
    assert (rec.full_mesh.metadata["visible_weight"] == 1.0).sum() > 100
    assert np.asarray(rec.full_mesh.visual.vertex_colors).shape == (len(rec.full_mesh.vertices), 4)
    plain = geometry.decode_png(photo.preview_png(photo.reconstruct(data.astronaut(), model=_oracle)))
    full = geometry.decode_png(photo.preview_png(rec))
    assert full.shape[0] == 2 * plain.shape[0]  # a second row: front, side, back
    photo_units = rec.mesh_in_photo_units(rec.full_mesh)
    assert photo_units.is_watertight
    assert np.ptp(np.asarray(photo_units.vertices)[:, 0]) > np.ptp(np.asarray(rec.full_mesh.vertices)[:, 0])
    assert not photo.reconstruct(data.astronaut(), model=_oracle).full_mesh


def test_cli_full_head(tmp_path, monkeypatch, capsys) -> None:
    import json

    from PIL import Image
    from skimage import data

    from monohead import cli, geometry, photo

    monkeypatch.setattr(photo, "_MODEL", _oracle)
    Image.fromarray(data.astronaut()).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert (
        cli.main(["reconstruct", str(tmp_path / "a.png"), "-o", str(out), "--full-head", "--format", "obj", "--json"])
        == 0
    )
    r = json.loads(capsys.readouterr().out)["reconstructions"][0]
    fh = r["full_head"]
    assert fh["mesh"] == str(out / "a_full.obj")
    assert fh["watertight"]
    assert {"identity", "expression", "yaw_pitch_roll", "converged"} <= set(fh["fit"])
    assert geometry.load_mesh(out / "a_full.obj").is_watertight
    assert cli.main(["reconstruct", str(tmp_path / "a.png"), "-o", str(out)]) == 0
    assert "complete head" not in capsys.readouterr().err  # the plain run makes none
    assert not (out / "a_full.ply").exists()


def test_true_head_mesh_marks_the_head_above_the_neck_base(model: HeadModel) -> None:
    """The evaluation's head-only region: version 1's true skin goes on into the capped
    torso, whose faces are not "head"; version 2's true mesh is already cut there."""
    from monohead.evaluate import full_head as fh

    params = {"identity": np.zeros(model.num_identities), "expression": {}, "gaze": [0.0, 0.0],
              "pose": {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "scale": 3.0, "offset": [0.0, 0.0]}}  # fmt: skip
    v1 = fh.true_head_mesh(params, (96, 96), model, version=1)
    head = v1.metadata["head_skin"]
    skin = v1.metadata["skin_faces"]
    assert head.shape == (len(skin),)
    # In the model frame (the pose is frontal, scale 3 px/cm): the torso below the neck is
    # not head, the cranium is.
    y_cm = np.asarray(v1.vertices)[skin].mean(axis=1)[:, 1] / 3.0
    top = y_cm.max()
    assert head[y_cm > top - 20].all()
    assert not head[y_cm < top - 40].any()
    assert 100 < int((~head).sum()) < len(head) // 2
    v2 = fh.true_head_mesh(params, (96, 96), model, version=2)
    assert v2.metadata["head_skin"].all()
    assert len(v2.metadata["skin_faces"]) == int(head.sum())


def test_crop_intrinsics_project_like_the_photo() -> None:
    """A point seen by the photo's camera (35 mm equivalent focal length: the photo's diagonal
    against the 36 x 24 mm frame's; principal point at its centre) falls, through the crop's
    intrinsics, on the crop pixel that covers its photo pixel."""
    from monohead import photo
    from monohead.framing import Box

    H, W = 480, 640
    f_px = 26.0 * np.hypot(W, H) / np.hypot(36.0, 24.0)
    box = Box(210.5, 95.25, 180.0)
    K = photo.crop_intrinsics(26.0, (H, W), box, 128)
    rng = np.random.default_rng(0)
    P = rng.uniform([-40, -40, 300], [40, 40, 500], (50, 3))  # camera frame, z forward
    u = f_px * P[:, 0] / P[:, 2] + (W - 1) / 2  # photo pixel index (centres at integers)
    v = f_px * P[:, 1] / P[:, 2] + (H - 1) / 2
    s = box.side / 128
    c_want = (u + 0.5 - box.x) / s - 0.5  # crop pixel c covers box.x + (c + 0.5) s
    r_want = (v + 0.5 - box.y) / s - 0.5
    q = P @ K.T
    np.testing.assert_allclose(q[:, 0] / q[:, 2], c_want, atol=1e-9)
    np.testing.assert_allclose(q[:, 1] / q[:, 2], r_want, atol=1e-9)
    assert K[0, 0] == K[1, 1]


def test_focal_length_checks() -> None:
    from monohead import photo

    assert photo.check_focal_mm(None, False) is None
    assert photo.check_focal_mm(26, True) == 26.0
    for bad in (0.0, -26.0, float("nan"), float("inf"), 5.0, 5000.0):
        with pytest.raises(ValueError, match="focal_mm must be between"):
            photo.check_focal_mm(bad, True)
    with pytest.raises(TypeError, match="focal_mm must be a number"):
        photo.check_focal_mm("26", True)
    with pytest.raises(TypeError, match="focal_mm must be a number"):
        photo.check_focal_mm(True, True)
    with pytest.raises(ValueError, match="complete head only"):
        photo.check_focal_mm(26.0, False)


def test_reconstruct_full_head_with_a_focal_length(tmp_path, monkeypatch, capsys) -> None:
    """``focal_mm`` fits the complete head with the crop's perspective camera: the fit carries
    the crop's intrinsics, the head is closed, and a short focal length gives another head than
    the orthographic fit; the CLI passes --focal-mm and refuses it without --full-head."""
    import json

    from PIL import Image
    from skimage import data

    from monohead import cli, photo

    # the oracle's dome fills 0.72 of every crop, which reframe=True frames again as too tight;
    # the CLI run below (--no-reframe) must see the same crop
    monkeypatch.setattr(photo, "REFRAME_MAX_FILL", np.inf)
    img = data.astronaut()
    ortho = photo.reconstruct(img, model=_oracle, full_head=True)
    rec = photo.reconstruct(img, model=_oracle, full_head=True, focal_mm=24.0)
    assert ortho.head_fit.camera is None
    K = rec.head_fit.camera
    np.testing.assert_allclose(K, photo.crop_intrinsics(24.0, img.shape[:2], rec.box, 128), rtol=1e-9)
    assert rec.full_mesh.is_watertight
    assert rec.head_fit.depth_scale > 0
    assert not np.allclose(rec.full_mesh.vertices, ortho.full_mesh.vertices, atol=0.5)
    np.testing.assert_array_equal(rec.mesh.vertices, ortho.mesh.vertices)  # the 2.5D mesh as before
    with pytest.raises(ValueError, match="complete head only"):
        photo.reconstruct(img, model=_oracle, focal_mm=24.0)
    # The shortest focal length: the grazing normals at the crop's sides would face away from
    # the rays (the perspective integrator refuses those); photo.face_rays turns them.
    wide = photo.reconstruct(img, model=_oracle, full_head=True, focal_mm=8.0)
    assert wide.full_mesh.is_watertight
    assert wide.head_fit.camera[0, 0] < 0.5 * K[0, 0]

    monkeypatch.setattr(photo, "_MODEL", _oracle)
    Image.fromarray(img).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = [
        "reconstruct",
        str(tmp_path / "a.png"),
        "-o",
        str(out),
        "--full-head",
        "--no-reframe",
        "--focal-mm",
        "24",
        "--json",
    ]
    assert cli.main(args) == 0
    fit = json.loads(capsys.readouterr().out)["reconstructions"][0]["full_head"]["fit"]
    np.testing.assert_allclose(fit["camera"], K, rtol=1e-9)
    assert cli.main(["reconstruct", str(tmp_path / "a.png"), "-o", str(out), "--focal-mm", "24"]) == 2
    assert "--focal-mm is used by the complete head only" in capsys.readouterr().err
    assert cli.main([*args[:-2], "0", "--json"]) == 2
    assert "--focal-mm: focal_mm must be between" in capsys.readouterr().err


def test_face_rays_turns_normals_toward_the_camera() -> None:
    """The perspective slope limit: inside the mask every normal's cosine with its pixel's ray
    toward the camera is at least min_cos, those already facing it are unchanged, and the ones
    tilted keep their direction across the ray; the perspective integrator accepts them."""
    from monohead import integrate, photo
    from monohead.integration.perspective import check_K, facing_denominator

    H = W = 32
    K = np.array([[20.0, 0.0, 15.5], [0.0, 20.0, 15.5], [0.0, 0.0, 1.0]])  # a very short focal length
    rng = np.random.default_rng(1)
    n = rng.standard_normal((H, W, 3))
    n[..., 2] = np.abs(n[..., 2]) * 0.3
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    mask = np.zeros((H, W), bool)
    mask[4:28, 4:28] = True
    rows, cols = np.mgrid[0:H, 0:W]
    ray = np.stack([-(cols - 15.5) / 20.0, (rows - 15.5) / 20.0, np.ones((H, W))], axis=-1)
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True)
    cos0 = np.einsum("hwc,hwc->hw", n, ray)
    assert (mask & (cos0 < 0)).sum() > 50  # many face away
    out = photo.face_rays(n, mask, K, 0.1)
    cos1 = np.einsum("hwc,hwc->hw", out, ray)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1)[mask], 1.0, atol=1e-12)
    assert (cos1[mask] >= 0.1 - 1e-12).all()
    keep = mask & (cos0 >= 0.1)
    np.testing.assert_allclose(out[keep], n[keep], atol=1e-12)
    np.testing.assert_allclose(out[~mask], n[~mask], atol=1e-12)
    low = mask & (cos0 < 0.1)
    a0 = n[low] - cos0[low][:, None] * ray[low]
    a1 = out[low] - cos1[low][:, None] * ray[low]
    np.testing.assert_allclose(np.einsum("ij,ij->i", a0, a1), np.linalg.norm(a0, axis=1) * np.linalg.norm(a1, axis=1))
    assert (facing_denominator(out, check_K(K))[mask] > 0).all()
    with pytest.raises(ValueError, match="facing away"):
        integrate(n, np.zeros((H, W)), 0.1, mask, K=K)
    assert np.isfinite(integrate(out, np.zeros((H, W)), 0.1, mask, K=K)[mask]).all()


@pytest.mark.parametrize("cols", [2, 3])
def test_row_norm_is_numpys_norm_bitwise(cols: int) -> None:
    """``fullhead._row_norm``, the fit's fast row norm, gives exactly ``np.linalg.norm(a,
    axis=-1)`` (the fits stay bitwise those of before it), including zeros and large values."""
    rng = np.random.default_rng(cols)
    a = rng.standard_normal((5000, cols)) * np.exp(rng.uniform(-20, 20, (5000, 1)))
    a[:10] = 0.0
    np.testing.assert_array_equal(fullhead._row_norm(a), np.linalg.norm(a, axis=-1))
    np.testing.assert_array_equal(fullhead._row_norm(a[:, None, :]), np.linalg.norm(a[:, None, :], axis=-1))


def test_cross3_is_numpys_cross_bitwise() -> None:
    """``fullhead._cross3`` (the fit's normals and rotation Jacobian) gives exactly
    ``np.cross`` on ``(n, 3)`` rows, over a wide range of magnitudes, zeros and parallel rows."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((4000, 3)) * np.exp(rng.uniform(-15, 15, (4000, 1)))
    b = rng.standard_normal((4000, 3)) * np.exp(rng.uniform(-15, 15, (4000, 1)))
    a[:5] = 0.0
    b[5:10] = 3.0 * a[5:10]
    np.testing.assert_array_equal(fullhead._cross3(a, b), np.cross(a, b))
    np.testing.assert_array_equal(fullhead._cross3(b, a), np.cross(b, a))


@pytest.mark.parametrize("shape", [(128, 128), (66, 40), (1, 7), (7, 1), (1, 1), (2, 3)])
def test_max3x3_is_scipys_maximum_filter(shape: tuple[int, int]) -> None:
    """``fullhead._max3x3`` (the fit's vertex z-buffer, the merge's front) is scipy's
    3-pixel maximum filter exactly, in the modes ``"nearest"`` and the default ``"reflect"``,
    with the empty pixels at -inf."""
    from scipy import ndimage

    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for _ in range(50):
        a = rng.standard_normal(shape) * 30.0
        a[rng.random(shape) < 0.5] = -np.inf
        got = fullhead._max3x3(a)
        np.testing.assert_array_equal(got, ndimage.maximum_filter(a, size=3, mode="nearest"))
        np.testing.assert_array_equal(got, ndimage.maximum_filter(a, size=3))


def _sample_planes_numpy(obs, x: np.ndarray, y: np.ndarray) -> tuple:
    """The observed surface under points, written here in NumPy from ``fullhead._sample_depth``'s
    docstring (the NumPy code the fit used before the compiled ``sample_planes``)."""
    H, Wd = obs.mask.shape
    col, row = x, -y
    c0, r0 = np.floor(col), np.floor(row)
    fc, fr = col - c0, row - r0
    near = (c0 >= -1) & (c0 <= Wd - 1) & (r0 >= -1) & (r0 <= H - 1)
    base = (np.clip(r0, -1, H - 1).astype(np.int64) + 1) * (Wd + 2) + np.clip(c0, -1, Wd - 1).astype(np.int64) + 1
    idx = base[:, None] + np.array([0, 1, Wd + 2, Wd + 3])
    bil = np.stack([(1.0 - fr) * (1.0 - fc), (1.0 - fr) * fc, fr * (1.0 - fc), fr * fc], axis=1) * near[:, None]
    acc = np.einsum("nk,nkc->nc", bil, obs.table()[idx])
    ok = acc[:, 0] >= 0.25
    aw = np.maximum(acc[:, 0], 1e-12)
    D = np.where(ok, (acc[:, 1] + acc[:, 2] * col + acc[:, 3] * row) / aw, 0.0)
    n = acc[:, 4:7] / np.maximum(np.linalg.norm(acc[:, 4:7], axis=1)[:, None], 1e-12)
    n[~ok] = (0.0, 0.0, 1.0)
    flat = np.clip(np.rint(row), 0, H - 1).astype(np.int64) * Wd + np.clip(np.rint(col), 0, Wd - 1).astype(np.int64)
    cover = np.clip((acc[:, 0] - 0.25) * 2.0, 0.0, 1.0)
    return ok, D, n, flat, cover, np.where(ok, acc[:, 7] / aw, 0.0)


@pytest.mark.parametrize("camera", [False, True])
def test_sample_depth_is_the_numpy_sampling_bitwise(scene: dict, persp_scene: dict, camera: bool) -> None:
    """The fit's sampling of the observed surface (the compiled ``sample_planes`` behind
    ``fullhead._sample_depth``) gives exactly the NumPy expressions of its docstring: points
    all over the image and past its pad, on pixel centres, edges and halves; a non-finite
    point is not found."""
    sc = persp_scene if camera else scene
    depth = sc["Z"] * PERSP_SCALE if camera else sc["depth"]
    d, n, m, w = fullhead._check_inputs(depth, sc["normals"], sc["mask"], None)
    K = sc["K"] if camera else None
    obs, _ = fullhead._observations(d, n, m, w, None if K is None else fullhead.PinholeWarp(K))
    H, Wd = obs.mask.shape
    rng = np.random.default_rng(3)
    x = rng.uniform(-3.0, Wd + 2.0, 30000)
    y = -rng.uniform(-3.0, H + 2.0, 30000)
    grid = np.arange(-2.0, max(H, Wd) + 2.0, 0.5)
    x[: grid.size], y[: grid.size] = grid, -grid[::-1]
    got = fullhead._sample_depth(obs, x, y)
    want = _sample_planes_numpy(obs, x, y)
    assert got[0].dtype == bool
    assert 0 < got[0].sum() < x.size
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    # strided views (the fit passes columns of its vertex arrays) give the same
    xy = np.column_stack([x, y])
    for a, b in zip(fullhead._sample_depth(obs, xy[:, 0], xy[:, 1]), got, strict=True):
        np.testing.assert_array_equal(a, b)
    ok, D, nn, flat, cover, wpix = fullhead._sample_depth(obs, np.array([np.nan, 5.0]), np.array([-5.0, np.inf]))
    assert not ok.any()
    assert (D == 0).all()
    assert (cover == 0).all()
    assert (wpix == 0).all()
    np.testing.assert_array_equal(nn, [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])


def test_sample_planes_binding_checks() -> None:
    """The compiled sampler refuses what it cannot read, naming the argument."""
    from monohead._core import sample_planes

    t = np.zeros((6 * 7, 8))
    x = np.zeros(3)
    with pytest.raises(ValueError, match=r"table must have shape \(42, 8\); got \(41, 8\)"):
        sample_planes(t[:-1], 4, 5, x, x)
    with pytest.raises(ValueError, match=r"y must have shape \(3,\)"):
        sample_planes(t, 4, 5, x, np.zeros(2))
    with pytest.raises(ValueError, match="H and W must be >= 1"):
        sample_planes(t, 0, 5, x, x)
    with pytest.raises(TypeError):
        sample_planes(t, 4, 5, x.astype(np.float32), x)


def test_fast_binary_morphology_is_scipys() -> None:
    """The contour test's dilation, erosion and hole filling (``fullhead._dilate4`` ...) give
    exactly scipy.ndimage's with its default cross, on random blobs with holes and specks,
    touching the border or not."""
    from scipy import ndimage

    rng = np.random.default_rng(5)
    for _ in range(300):
        h, w = rng.integers(3, 50, 2)
        yy, xx = np.mgrid[0:h, 0:w]
        m = (
            (yy - rng.uniform(0, h)) ** 2 / rng.uniform(1, 500) + (xx - rng.uniform(0, w)) ** 2 / rng.uniform(1, 500)
        ) < 1
        m &= rng.random(m.shape) > rng.uniform(0, 0.6)
        m |= rng.random(m.shape) > 0.97
        np.testing.assert_array_equal(fullhead._dilate4(m), ndimage.binary_dilation(m))
        np.testing.assert_array_equal(fullhead._erode4(m), ndimage.binary_erosion(m))
        np.testing.assert_array_equal(fullhead._fill_holes4(m), ndimage.binary_fill_holes(m))


@pytest.fixture(scope="module")
def ceiling_scene(model: HeadModel) -> dict:
    """A generator-style sample (parameters with a ``pose`` dict, orthographic, version 2)
    whose true head is ray-cast here: its depth and mask."""
    from monohead.evaluate import full_head as fh

    rng = np.random.default_rng(11)
    params = {"identity": rng.standard_normal(model.num_identities), "expression": {"jawOpen": 0.2},
              "gaze": [0.0, 0.0],
              "pose": {"yaw": 20.0, "pitch": -5.0, "roll": 4.0, "scale": 3.0, "offset": [0.0, 0.0]}}  # fmt: skip
    truth = fh.true_head_mesh(params, (SIZE, SIZE), model, version=2)
    depth, _, mask = _render(np.asarray(truth.vertices), np.asarray(truth.faces))
    return {"params": params, "truth": truth, "depth": np.nan_to_num(depth, nan=0.0), "mask": mask}


def test_identity_ceiling_reads_the_identity_of_an_exact_surface(ceiling_scene: dict, model: HeadModel) -> None:
    """The ceiling's fit-like matching (point to plane from the mean head) finds the true
    identity on the true surface: the hidden side then matches the truth, far below the mean
    head's; a surface moved by a constant offset is read right only when the translation is
    solved with the identity."""
    from monohead.evaluate import full_head as fh

    sc = ceiling_scene
    args = (sc["params"], sc["depth"], sc["mask"])
    exact = fh.identity_ceiling(*args, sc["truth"], model=model, sigma=0.05)
    assert exact["observed"] > 500
    assert np.abs(exact["identity"] - sc["params"]["identity"]).max() < 0.1  # of coefficients ~ N(0, 1)
    for kind in ("placed", "shape"):
        assert exact[kind]["mean"].mean() > 0.5
        assert exact[kind]["identity"].mean() < 0.02
    assert np.all(exact["translation"] == 0.0)
    shifted = trimesh.Trimesh(np.asarray(sc["truth"].vertices) + [0.4, -0.3, 1.0], sc["truth"].faces, process=False)
    fixed = fh.identity_ceiling(*args, shifted, model=model, sigma=0.05, iterations=30)
    joint = fh.identity_ceiling(*args, shifted, model=model, sigma=0.05, translation="joint", iterations=30)
    # the translation is found (most of it: identity modes take a little of the shift)
    np.testing.assert_allclose(joint["translation"], [0.4, -0.3, 1.0], atol=0.15)
    assert joint["shape"]["identity"].mean() < 0.85 * fixed["shape"]["identity"].mean()
    # the leaked correspondence (an upper bound): one point-to-point solve, exact here too
    leak = fh.identity_ceiling(*args, sc["truth"], model=model, sigma=0.05, match="truth")
    assert leak["shape"]["identity"].mean() < 0.02


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"sigma": 0.0}, "sigma"),
        ({"max_distance": -1.0}, "max_distance"),
        ({"iterations": 0}, "iterations"),
        ({"translation": "free"}, "translation"),
        ({"match": "nearest"}, "match"),
    ],  # fmt: skip
)
def test_identity_ceiling_bad_arguments(ceiling_scene: dict, model: HeadModel, kw: dict, needle: str) -> None:
    from monohead.evaluate import full_head as fh

    sc = ceiling_scene
    with pytest.raises(ValueError, match=needle):
        fh.identity_ceiling(sc["params"], sc["depth"], sc["mask"], sc["truth"], model=model, **kw)


def test_identity_ceiling_refuses_a_surface_far_from_the_head(ceiling_scene: dict, model: HeadModel) -> None:
    from monohead.evaluate import full_head as fh

    sc = ceiling_scene
    far = trimesh.Trimesh(np.asarray(sc["truth"].vertices) + [500.0, 0.0, 0.0], sc["truth"].faces, process=False)
    with pytest.raises(ValueError, match="max_distance"):
        fh.identity_ceiling(sc["params"], sc["depth"], sc["mask"], far, model=model)
