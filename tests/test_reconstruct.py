"""The photo -> mesh pipeline: loading, detection, framing, cropping, meshing, preview, CLI.

The network is replaced by an oracle that returns an analytic head's maps, so these tests pin
everything around it; tests of the shipped network live in tests/test_model*.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import monohead
from monohead import cli
from monohead import photo as R
from monohead.integration import surfaces


def oracle(crops):
    s = surfaces.head(128, neck=True)
    B = len(crops)
    return (
        np.repeat(s.normals[None].astype(np.float32), B, 0),
        np.repeat(s.W[None].astype(np.float32), B, 0),
        np.repeat(s.mask[None], B, 0),
    )


@pytest.fixture
def astronaut():
    from skimage import data

    return data.astronaut()


def test_detects_the_astronaut_and_frames_the_head(astronaut):
    faces = R.detect_faces(astronaut, detector="cascades")
    assert len(faces) >= 1
    x, y, w, h = faces[0]
    # her face is around columns 175-270, rows 70-165 of the 512 x 512 photo
    assert 150 < x + w / 2 < 260
    assert 90 < y + h / 2 < 150
    assert 70 < w < 140
    box = R.head_box(faces[0])
    assert box.side == pytest.approx(R.FRAMING["scale"] * w)
    assert box.x < x
    assert box.x + box.side > x + w
    assert box.y < y


def test_grace_hopper_is_detected():
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photo = np.asarray(Image.open(f).convert("RGB"))
    faces = R.detect_faces(photo, detector="cascades")
    assert faces
    assert 150 < faces[0][0] + faces[0][2] / 2 < 350


def test_pipeline_with_an_oracle(astronaut):
    rec = R.reconstruct(astronaut, model=oracle)
    s = surfaces.head(128, neck=True)
    assert rec.crop.shape == (128, 128, 3)
    assert rec.mask.sum() == s.mask.sum()
    ref = monohead.integrate(s.normals.astype(np.float32), s.W.astype(np.float32), 0.1, s.mask)
    np.testing.assert_allclose(rec.depth[s.mask], ref[s.mask], atol=1e-9)
    assert len(rec.mesh.vertices) == s.mask.sum()
    assert len(rec.mesh.faces) > 0
    np.testing.assert_array_equal(np.asarray(rec.mesh.visual.vertex_colors)[:, :3], rec.crop[s.mask])
    assert set(rec.seconds) == {"detection", "network", "integration", "meshing"}
    no_detect = R.reconstruct(astronaut, detect=False, model=oracle)
    assert no_detect.face_box is None
    assert no_detect.box.side == 512


def test_no_face_error_suggests_no_detect():
    blank = np.full((200, 200, 3), 128, np.uint8)
    with pytest.raises(R.NoFaceError, match="detect=False"):
        R.reconstruct(blank, model=oracle, detector="cascades")

    def empty(crops):
        return tuple(np.zeros_like(a) for a in oracle(crops))

    with pytest.raises(R.NoFaceError, match="detect=False"):
        R.reconstruct(blank, model=empty)  # the network's coarse pass finds no head either


def test_preview_png(astronaut):
    rec = R.reconstruct(astronaut, model=oracle)
    png = R.preview_png(rec, "astronaut")
    img = np.asarray(Image.open(__import__("io").BytesIO(png)))
    assert img.shape[0] > 200
    assert img.shape[1] > 1000


def test_shaded_view_faces_the_right_way():
    s = surfaces.sphere_cap((64, 64), 30.0)
    d = monohead.integrate(s.normals, mask=s.mask)
    from monohead import geometry

    mesh = geometry.depth_to_mesh(d, s.mask)
    vn = geometry.vertex_normals(mesh.vertices, mesh.faces)
    front = R.shaded_view(np.asarray(mesh.vertices), vn, "front", 64)
    side = R.shaded_view(np.asarray(mesh.vertices), vn, "side", 64)
    assert (front < 1).mean() > 0.3  # a disc
    # lit from the upper left: the upper-left quadrant of the cap is brighter than the lower right
    assert front[16, 16] > front[48, 48]
    # from the side the cap bulges to the left (toward -z on the right of the picture)
    cols = np.nonzero((side < 1).any(axis=0))[0]
    assert cols.size > 5


def test_surface_points_size_fills_large_triangles():
    """A square of two large triangles facing the viewer, in front of a finely meshed square
    facing away (dark from the front): the splat of the default grid leaves gaps through which
    the back shows; ``size`` refines the large triangles to half a pixel and none shows."""
    import trimesh

    from monohead import geometry

    back = geometry.depth_to_mesh(np.full((41, 41), -10.0), np.ones((41, 41), bool))
    bv, bf = np.asarray(back.vertices), np.asarray(back.faces)
    if trimesh.Trimesh(bv, bf, process=False).face_normals[:, 2].mean() > 0:
        bf = bf[:, ::-1]  # facing away from the viewer
    fv = np.array([[0, 0, 0], [40, 0, 0], [40, -40, 0], [0, -40, 0]], np.float64)
    ff = np.array([[0, 2, 1], [0, 3, 2]])
    if trimesh.Trimesh(fv, ff, process=False).face_normals[:, 2].mean() < 0:
        ff = ff[:, ::-1]
    mesh = trimesh.Trimesh(np.vstack([fv, bv]), np.vstack([ff, bf + 4]), process=False)
    inside = (slice(10, 54), slice(10, 54))

    def dark_share(size_arg):
        v, n = R.surface_points(mesh, order=2, size=size_arg)
        img = R.shaded_view(v, n, "front", 64)
        return float((img[inside] < 0.3).mean())

    assert dark_share(None) > 0.2  # the gaps show the back square
    assert dark_share(64) == 0.0
    with pytest.raises(ValueError, match="size"):
        R.surface_points(mesh, size=1)


def test_cli_reconstruct_with_oracle(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(R, "_MODEL", oracle)
    photo = tmp_path / "in"
    photo.mkdir()
    from skimage import data

    Image.fromarray(data.astronaut()).save(photo / "a.png")
    Image.fromarray(data.astronaut()[:, ::-1]).save(photo / "b.jpg")
    (photo / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    assert cli.main(["reconstruct", str(photo), "-o", str(out), "--format", "obj", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [x["photo"] for x in r["reconstructions"]] == ["a", "b"]
    assert not r["failures"]
    assert (out / "a.obj").stat().st_size > 0
    assert (out / "b_preview.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reconstruct", "nope.jpg"], "photo does not exist"),
        (["reconstruct"], "give one or more photos"),
        (["reconstruct", "--example", "-o", "/proc/nope"], "cannot create output folder"),
        (["reconstruct", "--example", "-o", "/no/such/parent/out"], "parent does not exist"),
    ],
)
def test_cli_reconstruct_errors(argv, message, monkeypatch, cli_error):
    monkeypatch.setattr(R, "_MODEL", oracle)
    assert message in cli_error(argv)


def test_cli_bad_photo_leaves_no_output(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(R, "_MODEL", oracle)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    assert cli.main(["reconstruct", str(bad), "-o", str(out)]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert not out.exists()  # no output, not even an empty folder


def test_limit_slope_tilts_grazing_normals_only():
    n = np.zeros((2, 2, 3))
    n[0, 0] = (0.6, 0.0, 0.8)
    n[0, 1] = (0.0, -1.0, 0.0005)
    n[1, 0] = (0.999, 0.0, 0.01)
    m = np.array([[True, True], [True, False]])
    out = R.limit_slope(n / np.linalg.norm(n + 1e-30, axis=-1, keepdims=True), m, 0.1)
    np.testing.assert_allclose(out[0, 0], (0.6, 0.0, 0.8))
    np.testing.assert_allclose(out[0, 1], (0.0, -np.sqrt(0.99), 0.1))
    np.testing.assert_allclose(out[1, 0], (np.sqrt(0.99), 0.0, 0.1))
    np.testing.assert_allclose(np.linalg.norm(out[m], axis=1), 1.0)
    # the perspective form (photo.face_rays): at a very long focal length the rays are the z axis
    K = np.array([[1e9, 0.0, 0.5], [0.0, 1e9, 0.5], [0.0, 0.0, 1.0]])
    unit = n / np.linalg.norm(n + 1e-30, axis=-1, keepdims=True)
    np.testing.assert_allclose(R.limit_slope(unit, m, 0.1, K=K)[m], out[m], atol=1e-7)
    np.testing.assert_array_equal(R.face_rays(unit, m, K, 0.1), R.limit_slope(unit, m, 0.1, K=K))
    # a normal along the axis, too short to be unit, still comes out unit at the limit
    flat = np.zeros((1, 1, 3))
    flat[0, 0] = (0.0, 0.0, 0.05)
    tilted = R.limit_slope(flat, np.ones((1, 1), bool), 0.1)[0, 0]
    np.testing.assert_allclose(np.linalg.norm(tilted), 1.0)
    assert tilted[2] == pytest.approx(0.1)


@pytest.mark.parametrize(("argv", "flip"), [([], True), (["--no-flip"], False)])
def test_network_predicts_mirror_averaged_unless_no_flip(argv, flip, tmp_path, monkeypatch, capsys):
    """A network (torch module) goes through monohead.model.predict with flip=True by default;
    --no-flip (reconstruct(flip=False)) asks for one pass."""
    import torch

    from monohead import model as M
    from monohead.model import UNet

    seen = []

    def fake_predict(net, crops, flip=False):
        seen.append(flip)
        return oracle(crops)

    monkeypatch.setattr(M, "predict", fake_predict)
    net = UNet(width=4, depth=4)
    assert isinstance(net, torch.nn.Module)
    monkeypatch.setattr(R, "_MODEL", net)
    # --no-reframe: one pass (the oracle's dome, no head, is sized as turned 70° by its face box
    # and the head model's pose search then reads it as turned; the re-framed pass's flip is
    # test_reframed_second_pass_keeps_the_flip_setting's)
    args = ["reconstruct", "--example", "-o", str(tmp_path), "--json", "--detector", "frontal", "--no-reframe"]
    assert cli.main([*args, *argv]) == 0
    assert json.loads(capsys.readouterr().out)["reconstructions"]
    assert seen == [flip]


def test_reconstruct_photos_gives_each_face_its_files_and_each_failure_its_error(astronaut, tmp_path):
    import trimesh

    calls = []
    (tmp_path / "notes.txt").write_text("not a photo")
    outs = R.reconstruct_photos(
        [("a", astronaut), ("notes", tmp_path / "notes.txt")],
        model=oracle,
        detect=False,
        mesh_format="ply",
        units="photo",
        title="{photo} at {lam:g}",
        callback=lambda *c: calls.append(c),
    )
    assert calls == [(0, 2, "a"), (1, 2, "notes"), (2, 2, "done")]
    assert [(o.photo, o.stem) for o in outs] == [("a", "a"), ("notes", "notes")]
    a, bad = outs
    assert bad.result is None
    assert "notes.txt" in bad.error
    assert not bad.mesh
    assert a.error is None
    assert a.preview.startswith(b"\x89PNG")
    mesh = trimesh.load(trimesh.util.wrap_as_stream(a.mesh), file_type="ply", process=False)
    np.testing.assert_allclose(mesh.vertices, a.result.mesh_in_photo_units().vertices, rtol=1e-6)
    info = a.summary("photo")
    assert info["vertices"] == len(a.result.mesh.vertices)
    assert info["units"] == "photo"
    assert info["full_head"] is None
    with pytest.raises(ValueError, match="has no reconstruction"):
        bad.summary()
    with pytest.raises(ValueError, match="mesh_format must be one of ply, obj, glb; got 'stl'"):
        R.reconstruct_photos([], mesh_format="stl")
    with pytest.raises(ValueError, match="units must be one of crop, photo; got 'mm'"):
        R.reconstruct_photos([], units="mm")


def _turned_model(side: float):
    """A callable predictor that paints a head turned toward ``side`` (+1: the image's right)
    in every crop: its mask reaches back behind the crop's centre (where the face box is) and
    its normals lean away from the face, as a first pass on a turned head does."""
    calls = []

    def model(crops):
        calls.append(len(crops))
        rows, cols = np.mgrid[0:128, 0:128]
        c0 = 64 - side * 14
        mask = ((cols - c0) / 36.0) ** 2 + ((rows - 64) / 44.0) ** 2 < 1
        n = np.zeros((128, 128, 3), np.float32)
        n[..., 0] = np.where(mask, -side * 0.2 + (cols - c0) / 80.0, 0)
        n[..., 2] = np.where(mask, 1.0, 0)
        n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
        B = len(crops)
        return np.repeat(n[None], B, 0), np.zeros((B, 128, 128), np.float32), np.repeat(mask[None], B, 0)

    return model, calls


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_turned_heads_are_framed_again_toward_the_face(astronaut, side):
    model, calls = _turned_model(side)
    rec = R.reconstruct(astronaut, model=model, detector="frontal")
    assert calls == [1, 1]  # a second pass on the new crop
    assert np.sign(rec.yaw_estimate) == side
    assert abs(rec.yaw_estimate) >= R.REFRAME_MIN_YAW
    first = rec.first_box
    assert first is not None
    moved = (rec.box.x + rec.box.side / 2) - (first.x + first.side / 2)
    assert side * moved > 0.03 * first.side  # toward the side the face turns to
    np.testing.assert_array_equal(rec.crop, R.crop_square(astronaut, rec.box, 128))
    off, calls_off = _turned_model(side)
    plain = R.reconstruct(astronaut, model=off, detector="frontal", reframe=False)
    assert calls_off == [1]
    assert plain.box == first
    assert plain.yaw_estimate is None
    assert plain.first_box is None


def _filling_model(half_width: float = 58.0):
    """A callable predictor that paints a frontal head (a dome) on a mask ``2 * half_width``
    pixels wide in every crop; by default 0.9 of the crop wide and cut by its top and bottom, as
    a first pass on a crop too tight gives."""
    calls = []

    def model(crops):
        calls.append(len(crops))
        rows, cols = np.mgrid[0:128, 0:128]
        mask = ((cols - 63.5) / half_width) ** 2 + ((rows - 70.0) / 70.0) ** 2 < 1
        n = np.zeros((128, 128, 3), np.float32)
        n[..., 0] = np.where(mask, (cols - 63.5) / 120.0, 0)
        n[..., 1] = np.where(mask, -(rows - 70.0) / 140.0, 0)
        n[..., 2] = np.where(mask, 1.0, 0)
        n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
        B = len(crops)
        return np.repeat(n[None], B, 0), np.zeros((B, 128, 128), np.float32), np.repeat(mask[None], B, 0)

    return model, calls


def test_a_head_filling_its_first_crop_is_framed_again_centred(astronaut, monkeypatch):
    """Not turned, but its mask fills the first crop (wider than framing.REFRAME_MAX_FILL of it):
    cropped again around the mask at the training framing, and the network runs once more."""
    from monohead import framing

    monkeypatch.setattr(R, "TURN_SEARCH_MIN_SIZE", np.inf)  # the cheap reading alone (a dome, no head)
    model, calls = _filling_model()
    rec = R.reconstruct(astronaut, model=model, detector="frontal")
    assert calls == [1, 1]
    assert abs(rec.yaw_estimate) < R.REFRAME_MIN_YAW
    assert rec.turn["reframe"] == "tight"
    assert rec.turn["fill"] > R.REFRAME_MAX_FILL
    first = rec.first_box
    assert first == R.head_box(rec.face_box)
    fill = 116 / 128
    assert rec.turn["fill"] == pytest.approx(fill, abs=1e-3)
    assert rec.box.side == pytest.approx(framing.REFRAME_FIT["side"][0] * fill * first.side, rel=1e-3)
    assert fill * first.side / rec.box.side == pytest.approx(0.40, abs=0.01)  # the training width
    # centred on the mask (centred in the first crop)
    assert rec.box.x + rec.box.side / 2 == pytest.approx(first.x + first.side / 2, abs=first.side / 128)
    np.testing.assert_array_equal(rec.crop, R.crop_square(astronaut, rec.box, 128))
    # a head at about the training framing (0.45 of the crop) keeps its first crop: one pass
    model2, calls2 = _filling_model(28.5)
    normal = R.reconstruct(astronaut, model=model2, detector="frontal")
    assert calls2 == [1]
    assert normal.first_box is None
    assert normal.turn["reframe"] is None
    assert normal.turn["fill"] <= R.REFRAME_MAX_FILL
    # reframe=False keeps the first crop
    plain = R.reconstruct(astronaut, model=_filling_model()[0], detector="frontal", reframe=False)
    assert plain.first_box is None
    assert plain.box == first


def test_a_tight_head_read_on_the_detection_pass_costs_one_pass(astronaut, monkeypatch):
    """A head read on the detector's coarse pass whose mask there is wider than
    framing.REFRAME_MAX_FILL of its first crop: framed again from that mask before any pass on
    the first crop (the coarse pass, then the new crop only)."""
    from monohead import framing

    monkeypatch.setattr(R, "TURN_SEARCH_MIN_SIZE", np.inf)
    monkeypatch.setattr(R, "REFRAME_MIN_YAW", np.inf)  # no turned re-frame: the tight rule alone
    monkeypatch.setattr(R, "REFRAME_MAX_FILL", 0.3)
    model, calls = _turned_model(1.0)
    rec = R.reconstruct(astronaut, model=model, detector="network")
    assert calls == [1, 1]
    assert rec.turn["pass"] == "detection"
    assert rec.turn["reframe"] == "tight"
    assert rec.turn["fill"] > 0.3
    assert rec.first_box == R.head_box(rec.face_box)
    assert rec.box.side == pytest.approx(
        framing.REFRAME_FIT["side"][0] * rec.turn["fill"] * rec.first_box.side, rel=2e-3
    )
    monkeypatch.setattr(R, "REFRAME_MAX_FILL", np.inf)
    model2, calls2 = _turned_model(1.0)
    off = R.reconstruct(astronaut, model=model2, detector="network")
    assert calls2 == [1, 1]  # the coarse pass, then the first crop
    assert off.first_box is None
    assert off.box == rec.first_box


def _rendered_turned_model(yaw: float):
    """A callable predictor that paints the head model's mean head turned ``yaw`` degrees in
    every crop, its pivot at the crop's centre column (where the detector's face box is): like
    photo 01's first pass, the face box sits on the temple, behind the face."""
    from monohead.synth.head_model import HeadModel
    from tests.test_fullhead import _mean_head_turned

    _, n, mask = _mean_head_turned(HeadModel.load(), yaw)
    calls = []

    def model(crops):
        calls.append(len(crops))
        B = len(crops)
        return np.repeat(n[None], B, 0), np.zeros((B, 128, 128), np.float32), np.repeat(mask[None], B, 0)

    return model, calls, n, mask


@pytest.mark.parametrize("yaw", [70.0, -70.0])
def test_turn_side_is_read_by_the_pose_search(astronaut, yaw, monkeypatch):
    """A near-profile whose face box sits behind the face: the cheap reading
    (framing.estimate_turn) puts the turn on the wrong side; the head model's pose search on the
    first pass's surface reads it on the right one, and the head is framed again toward the face."""
    from monohead import framing

    model, calls, n, mask = _rendered_turned_model(yaw)
    rec = R.reconstruct(astronaut, model=model, detector="frontal")
    first = rec.first_box
    assert calls == [1, 1]
    assert first is not None
    px = 128 / first.side
    fx, _, fw, _ = rec.face_box
    cheap, size = framing.estimate_turn(n, mask, ((fx + fw / 2 - first.x) * px, fw * px))
    assert np.sign(cheap) == -np.sign(yaw)  # the cheap reading alone: the wrong side
    assert size >= R.TURN_SEARCH_MIN_SIZE
    assert np.sign(rec.yaw_estimate) == np.sign(yaw)
    assert abs(rec.yaw_estimate) >= R.REFRAME_MIN_YAW
    # a head: the turned mean head fits it clearly better than a frontal one (the reading is plausible)
    assert rec.turn["plausible"]
    assert rec.turn["used"] == "search"
    assert rec.turn["cost_ratio"] <= R.TURN_SEARCH_MAX_COST_RATIO
    assert rec.yaw_estimate == pytest.approx(rec.turn["search"], abs=0.01)
    moved = (rec.box.x + rec.box.side / 2) - (first.x + first.side / 2)
    assert np.sign(yaw) * moved > 0.03 * first.side  # toward the face
    # without the search, the cheap reading's wrong side is what decides
    monkeypatch.setattr(R, "TURN_SEARCH_MIN_SIZE", np.inf)
    model2, _, _, _ = _rendered_turned_model(yaw)
    off = R.reconstruct(astronaut, model=model2, detector="frontal")
    assert off.yaw_estimate == pytest.approx(cheap, abs=1e-6)


def test_frontal_photo_is_unchanged_by_reframe(astronaut, monkeypatch):
    """The shipped network on a frontal photo: no second framing, and the result is the one of
    reframe=False bit for bit. (The cheap reading of this photo's turn is near the size at which
    the pose search runs: with the shipped weights it may run, and must then read it frontal.)"""
    from monohead import fullhead

    searched = []
    real = fullhead.estimate_pose
    monkeypatch.setattr(fullhead, "estimate_pose", lambda *a, **k: searched.append(1) or real(*a, **k))
    net = R.load_default_model()
    on = R.reconstruct(astronaut, model=net)
    assert on.turn.get("used") == ("search" if searched else None)  # "used" only when it searched
    off = R.reconstruct(astronaut, model=net, reframe=False)
    assert on.first_box is None
    assert abs(on.yaw_estimate) < R.REFRAME_MIN_YAW
    assert on.box == off.box
    for name in ("crop", "normals", "W", "mask", "raw_mask"):
        np.testing.assert_array_equal(getattr(on, name), getattr(off, name))
    np.testing.assert_array_equal(on.depth, off.depth)
    np.testing.assert_array_equal(on.mesh.vertices, off.mesh.vertices)


def test_reframe_needs_a_bool(astronaut):
    with pytest.raises(TypeError, match="reframe must be True or False"):
        R.reconstruct(astronaut, model=oracle, reframe="yes")


@pytest.mark.parametrize(("argv", "reframe"), [([], True), (["--no-reframe"], False)])
def test_cli_reframe_flag(argv, reframe, tmp_path, monkeypatch, capsys):
    """`monohead reconstruct` frames turned heads again unless --no-reframe; --json reports it."""
    model, calls = _turned_model(1.0)
    monkeypatch.setattr(R, "_MODEL", model)
    args = ["reconstruct", "--example", "-o", str(tmp_path), "--json", "--detector", "frontal", *argv]
    assert cli.main(args) == 0
    (rec,) = json.loads(capsys.readouterr().out)["reconstructions"]
    assert calls == ([1, 1] if reframe else [1])
    assert (rec["first_box"] is not None) == reframe
    assert (rec["yaw_estimate"] is not None) == reframe


@pytest.mark.parametrize("flip", [True, False])
def test_reframed_second_pass_keeps_the_flip_setting(flip, astronaut, monkeypatch):
    """A network (torch module) is asked for the same mirror averaging on the re-framed crop."""
    from monohead import model as M
    from monohead.model import UNet

    turned, _ = _turned_model(-1.0)
    seen = []

    def fake_predict(net, crops, flip=False):
        seen.append(flip)
        return turned(crops)

    monkeypatch.setattr(M, "predict", fake_predict)
    rec = R.reconstruct(astronaut, model=UNet(width=4, depth=4), detector="frontal", flip=flip)
    assert rec.first_box is not None
    assert seen == [flip, flip]


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_turn_read_on_the_detection_pass_saves_the_first_crops_pass(astronaut, side, monkeypatch):
    """When the detector ran the network's coarse pass over the photo, a head's turn is read
    there: a turned head is framed again from that pass's mask and goes through the network
    once more, on the new crop only (no pass on its first crop)."""
    monkeypatch.setattr(R, "TURN_SEARCH_MIN_SIZE", np.inf)  # the cheap reading alone (a dome, no head)
    model, calls = _turned_model(side)
    rec = R.reconstruct(astronaut, model=model, detector="network")
    assert calls == [1, 1]  # the coarse pass, then the re-framed crop
    assert rec.turn["pass"] == "detection"
    assert np.sign(rec.yaw_estimate) == side
    assert abs(rec.yaw_estimate) >= R.REFRAME_MIN_YAW
    assert rec.first_box == R.head_box(rec.face_box)
    moved = (rec.box.x + rec.box.side / 2) - (rec.first_box.x + rec.first_box.side / 2)
    assert side * moved > 0.03 * rec.first_box.side  # toward the face
    np.testing.assert_array_equal(rec.crop, R.crop_square(astronaut, rec.box, 128))
    # a head too small in the coarse pass: read on its first crop's pass, as without it
    monkeypatch.setattr(R, "COARSE_TURN_MIN_WIDTH", 129)
    model2, calls2 = _turned_model(side)
    again = R.reconstruct(astronaut, model=model2, detector="network")
    assert calls2 == [1, 1, 1]  # the coarse pass, the first crop, the re-framed crop
    assert again.turn["pass"] == "first"
    assert again.first_box == rec.first_box


@pytest.mark.parametrize("yaw", [70.0, -70.0])
def test_the_pose_search_reads_the_detection_pass(astronaut, yaw):
    """The mean head turned 70° in the coarse pass: the search reads the side there, and the
    network runs once more, on the re-framed crop."""
    model, calls, _, _ = _rendered_turned_model(yaw)
    rec = R.reconstruct(astronaut, model=model, detector="network")
    assert calls == [1, 1]
    assert rec.turn["pass"] == "detection"
    assert rec.turn["used"] == "search"
    assert np.sign(rec.yaw_estimate) == np.sign(yaw)
    assert abs(rec.yaw_estimate) >= R.REFRAME_MIN_YAW


def test_an_implausible_turn_on_the_detection_pass_is_read_again_on_the_first(astronaut):
    """The pose search reads the oracle's dome (no head) as turned but cannot make it plausible
    (a turned head fits it no better than a frontal one): the first crop's pass reads again."""
    model, calls = _turned_model(-1.0)
    rec = R.reconstruct(astronaut, model=model, detector="network")
    doubt = rec.turn["detection"]
    assert doubt["plausible"] is False
    assert abs(doubt["search"]) >= R.REFRAME_MIN_YAW
    assert rec.turn["pass"] == "first"
    assert calls[:2] == [1, 1]  # the coarse pass, then the first crop (and its re-framed crop if turned)
    assert len(calls) == (3 if rec.first_box is not None else 2)


def test_a_face_off_the_coarse_mask_is_read_on_its_own_first_pass(astronaut, monkeypatch):
    """All faces: a cascade face that the coarse pass's head mask does not cover is not read
    there (the mask's piece would be another head): its turn is read on its own crop's pass."""
    monkeypatch.setattr(R, "TURN_SEARCH_MIN_SIZE", np.inf)
    monkeypatch.setattr(R, "_is_strong", lambda *a, **k: False)
    corner = (466.0, 466.0, 40.0, 40.0)  # off the head the model paints, and off its head box
    monkeypatch.setattr(R, "_cascade_faces", lambda *a, **k: [corner])
    model, calls = _turned_model(1.0)
    recs = R.reconstruct(astronaut, model=model, detector="combined", all_faces=True)
    passes = {tuple(r.face_box): r.turn["pass"] for r in recs}
    assert passes[corner] == "first"
    assert "detection" in passes.values()  # the network's own head is read on the coarse pass
