"""Canonical coordinates: the correspondence network, its targets, and the fit's landmarks.

The exact canonical map of a posed head is rendered here independently of the package: the
head is ray-cast (trimesh, one orthographic ray per pixel centre) and the neutral mean head's
vertex positions are interpolated with the barycentric coordinates of each hit.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from monohead import fullhead
from monohead.fullhead import FitSettings, canonical_landmarks, fit_head
from monohead.geometry import MeshSurface
from monohead.synth.head_model import EYE_REGIONS, SKIN_REGIONS, HeadModel

SIZE = 96
EXACT = FitSettings(silhouette_weight=1.0, identity_calibration=False)


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return HeadModel.load()


def _cast(vertices: np.ndarray, faces: np.ndarray, canon: np.ndarray, size: int = SIZE) -> dict:
    """Depth, normals, mask and the canonical map of a mesh, orthographic rays at pixel centres."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    r, c = np.mgrid[0:size, 0:size]
    origins = np.column_stack([c.ravel(), -r.ravel(), np.full(r.size, vertices[:, 2].max() + 10.0)]).astype(float)
    dirs = np.tile([0.0, 0.0, -1.0], (r.size, 1))
    tri, ray, loc = mesh.ray.intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri], loc)
    C = np.full((r.size, 3), np.nan)
    C[ray] = np.einsum("kv,kvc->kc", bary, canon[faces[tri]])
    depth = np.full(r.size, np.nan)
    normals = np.zeros((r.size, 3))
    fn = mesh.face_normals[tri]
    ok = fn[:, 2] > 0.05
    depth[ray[ok]] = loc[ok, 2]
    normals[ray[ok]] = fn[ok]
    mask = np.isfinite(depth)
    C[~mask] = np.nan
    sh = (size, size)
    return {"depth": depth.reshape(sh), "normals": normals.reshape(*sh, 3), "mask": mask.reshape(sh),
            "canonical": C.reshape(*sh, 3)}  # fmt: skip


def _scene(model: HeadModel, yaw: float = 20.0, flatten: float = 1.0) -> dict:
    rng = np.random.default_rng(11)
    y = rng.standard_normal(model.num_identities) * 0.8
    w = np.zeros(model.num_expressions)
    R = Rotation.from_euler("yxz", [yaw, -5.0, 3.0], degrees=True).as_matrix()
    s = 0.6 * SIZE / 18.5
    t = np.array([SIZE / 2, -SIZE / 2, 0.0])
    verts = (model.shape(y, w) - fullhead.PIVOT) @ (s * R).T + t
    faces = model.faces[model.region_faces(list(SKIN_REGIONS) + list(EYE_REGIONS))]
    out = _cast(verts, faces, model.shape())
    out["depth"] = out["depth"] * flatten  # a biased depth, as the network's is (flatter)
    return {**out, "y": y, "verts": verts, "faces": faces, "skin": model.faces[model.region_faces(list(SKIN_REGIONS))]}


@pytest.fixture(scope="module")
def scene(model: HeadModel) -> dict:
    return _scene(model)


def _hidden_error(scene: dict, fit: fullhead.HeadFit) -> float:
    """Mean distance (px) from the back half of the true skin to the fitted model, each
    aligned rigidly on its own (the depth's gauge and scale bias removed)."""
    from monohead.evaluate.mesh_error import apply_transform, kabsch

    v = scene["verts"]
    skin = np.unique(scene["skin"])
    back = skin[v[skin, 2] < np.median(v[skin, 2])]
    fv = fit.vertices()
    prep = fullhead._prepared(fit.model)
    fv_model = np.full_like(v, np.nan)
    fv_model[prep.order] = fv
    used = np.intersect1d(skin, prep.order)
    T = kabsch(fv_model[used], v[used])
    moved = trimesh.Trimesh(apply_transform(T, fv), prep.faces, process=False)
    return float(MeshSurface(moved).closest(v[back])[1].mean())


def test_canonical_landmarks_are_the_projections_of_the_vertices(scene: dict, model: HeadModel) -> None:
    prep = fullhead._prepared(model)
    sub = prep.subset(1.0, 0)
    rows, xy = canonical_landmarks(scene["canonical"], prep.x0[sub], 0.8)
    assert rows.size > 300
    true_xy = scene["verts"][prep.order[sub[rows]], :2]
    err = np.linalg.norm(xy - true_xy, axis=1)
    assert np.median(err) < 0.35, np.median(err)
    assert np.percentile(err, 90) < 0.8, np.percentile(err, 90)
    # the vertices facing away get none (but a few at the outline, within the tolerance)
    vn = trimesh.Trimesh(scene["verts"], scene["faces"], process=False).vertex_normals
    assert np.mean(vn[prep.order[sub[rows]], 2] > 0) > 0.93
    # nothing in an empty map
    r0, x0 = canonical_landmarks(np.full_like(scene["canonical"], np.nan), prep.x0[sub], 0.8)
    assert r0.size == 0
    assert x0.shape == (0, 2)


def test_landmarks_pull_the_projection(scene: dict, model: HeadModel) -> None:
    """A canonical map moved 3 px to the right moves the fitted head right: the landmark
    residuals act in the image plane, with the right sign."""
    shifted = np.full_like(scene["canonical"], np.nan)
    shifted[:, 3:] = scene["canonical"][:, :-3]
    args = (scene["depth"], scene["normals"], scene["mask"])
    strong = FitSettings(silhouette_weight=1.0, identity_calibration=False, landmark_weight=20.0)
    base = fit_head(*args, model=model, settings=strong, canonical=scene["canonical"])
    moved = fit_head(*args, model=model, settings=strong, canonical=shifted)
    assert base.landmarks > 150
    assert moved.landmarks > 150
    dx = moved.translation[0] - base.translation[0]
    assert 1.0 < dx < 3.5, dx
    off = fit_head(*args, model=model, settings=FitSettings(identity_calibration=False, landmark_weight=0.0),
                   canonical=shifted)  # fmt: skip
    assert off.landmarks == 0


def test_landmarks_read_the_identity_from_a_flattened_surface(model: HeadModel) -> None:
    """On a surface 15 % too flat (the shipped network's bias), point-to-plane matching lets
    the vertices slide and the identity it reads is off; the landmarks fix where each vertex
    lies and the hidden side comes out closer."""
    sc = _scene(model, yaw=25.0, flatten=0.85)
    args = (sc["depth"], sc["normals"], sc["mask"])
    without = fit_head(*args, model=model, settings=EXACT)
    with_lm = fit_head(*args, model=model, settings=EXACT, canonical=sc["canonical"])
    e0, e1 = _hidden_error(sc, without), _hidden_error(sc, with_lm)
    assert with_lm.landmarks > 150
    assert e1 < 0.9 * e0, (e1, e0)


def test_fit_refuses_a_canonical_map_of_another_shape(scene: dict, model: HeadModel) -> None:
    with pytest.raises(ValueError, match="canonical must have shape"):
        fit_head(scene["depth"], scene["normals"], scene["mask"], model=model, settings=EXACT,
                 canonical=scene["canonical"][:-1])  # fmt: skip


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("landmark_weight", -1.0),
        ("landmark_weight", math.nan),
        ("landmark_sigma", 0.0),
        ("landmark_tol", -0.5),
        ("landmark_sigma", True),
    ],  # fmt: skip
)
def test_fit_refuses_bad_landmark_settings(scene: dict, model: HeadModel, name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=f"settings.{name}"):
        fit_head(scene["depth"], scene["normals"], scene["mask"], model=model,
                 settings=FitSettings(**{name: bad}))  # fmt: skip


def test_calibration_maps_are_per_landmark_mode(scene: dict, model: HeadModel) -> None:
    from monohead.head_calibration import LANDMARKS_SUFFIX, IdentityCalibration, ModeCalibration

    fit = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model, settings=EXACT)
    lm = fit_head(scene["depth"], scene["normals"], scene["mask"], model=model, settings=EXACT,
                  canonical=scene["canonical"])  # fmt: skip
    k = fit.identity.size
    one = ModeCalibration(columns=np.array([0]), mean=np.zeros(1), sd=np.ones(1), y_mean=np.full(k, 0.5),
                          A=np.zeros((1, k)))  # fmt: skip
    cal = IdentityCalibration({"orthographic" + LANDMARKS_SUFFIX: one}, "x")
    assert cal.covers(lm)
    assert not cal.covers(fit)
    y, factor = cal.apply(lm)
    assert np.allclose(y, 0.5)
    assert factor == 1.0
    with pytest.raises(ValueError, match="no 'orthographic' map"):
        cal.apply(fit)


def _torch():
    return pytest.importorskip("torch")


def test_canonical_targets_are_where_the_mean_head_projects(model: HeadModel) -> None:
    """For the mean head (no identity, no expression), the posed head is the canonical one
    moved rigidly: each pixel's canonical coordinates, posed, fall on that pixel."""
    _torch()
    from monohead.model.canonical import canonical_targets
    from monohead.synth import scene as sc

    pose = {"yaw": 30.0, "pitch": -10.0, "roll": 5.0, "scale": 3.0, "offset": [1.5, -2.0]}
    params = {"identity": np.zeros(model.num_identities), "expression": {}, "gaze": (0.0, 0.0), "pose": pose}
    C, skin = canonical_targets(params, (64, 64), version=2, model=model)
    assert C.shape == (64, 64, 3)
    assert skin.shape == (64, 64)
    assert 600 < skin.sum() < 64 * 64
    M = sc.pose_matrix(pose, (64, 64))
    P = C[skin].astype(np.float64) @ M[:3, :3].T + M[:3, 3]
    r, c = np.nonzero(skin)
    err = np.hypot(P[:, 0] - c, P[:, 1] + r)
    assert np.percentile(err, 99) < 0.05, np.percentile(err, 99)
    assert np.all(C[~skin] == 0)


def _tiny_net(seed: int = 0):
    torch = _torch()
    from monohead.model.canonical import CanonicalNet

    torch.manual_seed(seed)
    net = CanonicalNet((8, 16, 16))
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _inputs(rng: np.random.Generator, B: int = 2, size: int = 32) -> tuple:
    img = rng.integers(0, 256, (B, size, size, 3), dtype=np.uint8)
    n = rng.standard_normal((B, size, size, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    W = rng.random((B, size, size)) * 3
    mask = rng.random((B, size, size)) < 0.8
    return img, n, W, mask


def test_predict_canonical_mirror_average_is_mirror_symmetric() -> None:
    """With ``flip``, the prediction of a mirrored crop is the mirrored prediction with the
    canonical x negated: the averaging treats both the same way."""
    from monohead.model.canonical import predict_canonical

    net = _tiny_net()
    img, n, W, mask = _inputs(np.random.default_rng(0))
    mask[:] = True
    a = predict_canonical(net, img, n, W, mask, flip=True)
    n_m = n[:, :, ::-1].copy()
    n_m[..., 0] *= -1
    b = predict_canonical(net, img[:, :, ::-1], n_m, W[:, :, ::-1], mask[:, :, ::-1], flip=True)
    b = b[:, :, ::-1].copy()
    b[..., 0] *= -1
    both = np.isfinite(a) & np.isfinite(b)
    assert both.mean() > 0.3
    np.testing.assert_allclose(a[both], b[both], atol=1e-4)
    assert np.array_equal(np.isfinite(a[..., 0]), np.isfinite(b[..., 0]))
    # without the mirror average the network is not symmetric (the check above can fail)
    c = predict_canonical(net, img, n, W, mask, flip=False)
    assert np.nanmax(np.abs(c - a)) > 1e-3
    # NaN outside the mask; one unbatched crop gives one map
    mask[0, :5] = False
    d = predict_canonical(net, img[0], n[0], W[0], mask[0])
    assert d.shape == (32, 32, 3)
    assert np.isnan(d[:5]).all()


def test_network_input_names_what_is_wrong() -> None:
    torch = _torch()
    from monohead.model.canonical import CanonicalNet, network_input

    img, n, W, mask = _inputs(np.random.default_rng(1))
    x = network_input(img, n, W, mask)
    assert x.shape == (2, 8, 32, 32)
    assert x.dtype == torch.float32
    assert float(x[:, :3].min()) >= -1
    assert float(x[:, 6].max()) < 1
    with pytest.raises(ValueError, match="images must be"):
        network_input(img.astype(np.float32), n, W, mask)
    with pytest.raises(ValueError, match="normals, W and mask must be"):
        network_input(img, n[:, :-1], W, mask)
    with pytest.raises(ValueError, match="widths must be"):
        CanonicalNet((8, 12))


def _fake_cache(path, rng: np.random.Generator, n: int) -> None:
    """A cache file as train_canonical makes one: a bright disc whose coordinates are its
    pixel position, so that a few steps of training can lower the error."""
    size = 64
    r, c = np.mgrid[0:size, 0:size]
    disc = (r - 32) ** 2 + (c - 32) ** 2 < 20**2
    img = np.zeros((n, size, size, 3), np.uint8)
    img[:, disc] = rng.integers(150, 256, (n, 1, 3), dtype=np.uint8)
    C = np.zeros((n, size, size, 3), np.float16)
    C[:, disc, 0] = ((c[disc] - 32) / 4).astype(np.float16)
    C[:, disc, 1] = (-(r[disc] - 32) / 4).astype(np.float16)
    normals = np.zeros((n, size, size, 3), np.float16)
    normals[:, disc, 2] = 1
    np.savez(path, image=img, normals=normals, W=np.zeros((n, size, size), np.float16),
             mask=np.broadcast_to(disc, (n, size, size)), C=C, skin=np.broadcast_to(disc, (n, size, size)))  # fmt: skip


def test_train_canonical_resumes_validates_and_exports(tmp_path, monkeypatch) -> None:
    _torch()
    from monohead.model import canonical as cn
    from monohead.model import canonical_train as ct

    monkeypatch.setattr(ct, "DEFAULT_WIDTHS", (8, 16, 16))
    rng = np.random.default_rng(2)
    data, val = tmp_path / "d" / "train", tmp_path / "d" / "val"
    for f in (data, val):
        f.mkdir(parents=True)
        (f / "manifest.json").write_text("{}")
    run = tmp_path / "run"
    (run / "cache").mkdir(parents=True)
    _fake_cache(run / "cache" / "d-train.npz", rng, 8)
    _fake_cache(run / "cache" / "d-val.npz", rng, 4)
    lines: list[str] = []
    stop_after = {"n": 0}

    def stop() -> bool:
        stop_after["n"] += 1
        return stop_after["n"] > 5

    first = ct.train_canonical([data], run, val_data=val, steps=12, batch_size=4, val_every=4, callback=lines.append,
                               should_stop=stop)  # fmt: skip
    assert first["stopped"]
    assert first["step"] == 5
    assert (run / "checkpoint.pt").is_file()
    assert (run / "best.pt").is_file()
    again = ct.train_canonical([data], run, val_data=val, steps=12, batch_size=4, val_every=4)
    assert again["step"] == 12
    assert not again["stopped"]
    curve = [line.split("\t") for line in (run / "curve.tsv").read_text().splitlines()]
    assert [int(s[0]) for s in curve] == [4, 8, 12]
    assert again["best"]["error_cm"] == pytest.approx(min(float(s[1]) for s in curve), abs=1e-4)
    with pytest.raises(ValueError, match="other settings"):
        ct.train_canonical([data], run, val_data=val, steps=12, batch_size=8)
    with pytest.raises(ValueError, match="not a monohead synth folder"):
        ct.train_canonical([tmp_path], tmp_path / "run2", val_data=val)
    with pytest.raises(ValueError, match="steps must be"):
        ct.train_canonical([data], run, val_data=val, steps=0)
    info = ct.export_canonical(run, tmp_path / "w", card={"note": "test"})
    assert info["note"] == "test"
    assert [c["step"] for c in info["validation_curve"]] == [4, 8, 12]
    net = cn.load_weights(tmp_path / "w" / cn.CANONICAL_FILE)
    assert net.widths == (8, 16, 16)
    assert json.loads((tmp_path / "w" / cn.CANONICAL_CARD).read_text())["architecture"]["widths"] == [8, 16, 16]


def test_cli_train_canonical_refuses_bad_input(tmp_path, capsys) -> None:
    _torch()
    from monohead import cli

    assert cli.main(["train-canonical", "--out", str(tmp_path / "run")]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert cli.main(["train-canonical", "--out", str(tmp_path / "run"), "--export-weights", str(tmp_path / "w")]) == 2
    assert "no best.pt" in capsys.readouterr().err
    assert cli.main(["train-canonical", "--out", str(tmp_path), "--data", str(tmp_path), "--val-data",
                     str(tmp_path)]) == 2  # fmt: skip
    assert "not a monohead synth folder" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_calibration_scales_about_the_visible_face(scene: dict, model: HeadModel, tmp_path) -> None:
    """A calibration that shrinks the head by 10 % keeps the face the camera saw on the surface
    with ``calibration_anchor="visible"`` (the depth residuals stay as small as the fit's own),
    and moves it back with ``"pivot"`` (the skull's centre stays)."""
    from monohead.head_calibration import IdentityCalibration, ModeCalibration

    k = model.num_identities
    shrink = ModeCalibration(columns=np.array([0]), mean=np.zeros(1), sd=np.ones(1), y_mean=np.zeros(k),
                             A=np.zeros((1, k)), scale_bias=math.log(0.9))  # fmt: skip
    f = tmp_path / "cal.npz"
    IdentityCalibration({"orthographic": shrink}, "x", expression_prior=FitSettings().expression_prior).save(f)
    args = (scene["depth"], scene["normals"], scene["mask"])
    own = fit_head(*args, model=model, settings=EXACT)
    fits = {a: fit_head(*args, model=model, settings=FitSettings(silhouette_weight=1.0, identity_calibration=str(f),
                                                                 calibration_anchor=a))  # fmt: skip
            for a in ("visible", "pivot")}  # fmt: skip
    for fit in fits.values():
        assert fit.calibrated
        assert fit.scale == pytest.approx(0.9 * own.scale)
        assert np.allclose(fit.identity, 0.0)
    assert fits["visible"].rms < 0.8 * fits["pivot"].rms, (fits["visible"].rms, fits["pivot"].rms)  # 2.42 vs 3.73
    assert fits["visible"].inliers > fits["pivot"].inliers
    assert np.allclose(fits["pivot"].translation, own.translation)
    with pytest.raises(ValueError, match="settings.calibration_anchor"):
        fit_head(*args, model=model, settings=FitSettings(calibration_anchor="nose"))
