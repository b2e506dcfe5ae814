"""Generator version 2: perspective camera, light from real places, backgrounds, photo artefacts."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import monohead
from monohead import framing
from monohead.synth import artefacts, backgrounds, camera, check, lighting
from monohead.synth.dataset import generate
from monohead.synth.generator import GENERATOR_VERSION, Generator


@pytest.fixture(scope="module")
def gen() -> Generator:
    return Generator(64, spp=2)


@pytest.fixture(scope="module")
def samples(gen) -> list[dict]:
    return [gen.sample(31, i) for i in range(3)]


def test_version_3_is_the_default_and_keeps_the_version_1_head(gen, samples):
    assert GENERATOR_VERSION == 3
    assert gen.version == 3
    assert gen.settings()["generator_version"] == 3
    p1 = Generator(64, spp=2, version=1, head_model=gen.model).params(31, 1)
    p2 = samples[1]["params"]
    for key in ("identity", "skin", "hair", "glasses"):
        assert p1[key] == p2[key], key
    for key in ("yaw", "pitch", "roll"):  # scale and offset: the photo pipeline's framing
        assert p1["pose"][key] == p2["pose"][key], key
    ratio = p2["pose"]["scale"] * 18.5 / 64
    assert 0.25 <= ratio <= 0.6
    for key in ("lighting", "artefacts", "camera", "background"):
        assert key in p2
    json.dumps(p2)
    assert p2["camera"]["projection"] == "perspective"
    assert "K" in p2["camera"]


def test_perspective_ground_truth_agrees_with_embree(gen, samples):
    for s in samples:
        v, f = gen.head_mesh(s["params"])
        ref = check.raycast_ground_truth(v, f, gen.size, s["params"]["camera"])
        c = check.compare_ground_truth(s, ref)
        assert c["mean_angle"] < 0.05, c
        assert c["mask_diff_interior"] == 0, c
        assert c["depth_max"] < 1.0, c
        assert c["mask_diff"] <= max(3, 0.002 * c["mask_pixels"]), c
        ortho = check.raycast_ground_truth(v, f, gen.size)  # the wrong camera does not agree
        assert check.compare_ground_truth(s, ortho)["mask_diff"] > max(8, 3 * c["mask_diff"])


def test_perspective_normals_agree_with_finite_differences(gen):
    g = Generator(128, spp=1, head_model=gen.model)
    for i in range(2):
        s = g.sample(77, i)
        cam = s["params"]["camera"]
        fd = check.finite_difference_agreement(s["normals"], s["depth"], s["mask"], camera=cam)
        assert fd["pixels"] > 1000, fd
        assert fd["mean"] < 2.0, fd
        flat = check.finite_difference_agreement(s["normals"], s["depth"], s["mask"])
        if cam["distance_cm"] < 60:  # strong perspective: the orthographic reading is off
            assert flat["mean"] > fd["mean"], (flat, fd)
        # The perspective integrator with the sample's K gets back Z = D - depth, up to its scale.
        m = s["mask"]
        z = monohead.integrate(s["normals"], s["W"], lam=0.1, K=np.asarray(cam["K"]))
        Z = cam["distance"] - s["depth"][m].astype(np.float64)
        scale = np.exp(np.mean(np.log(Z)))  # one component (the head) dominates the gauge
        assert np.median(np.abs(z[m] * scale - Z) / Z) < 0.05


def test_depth_is_the_height_toward_the_viewer_and_K_is_opencv(gen):
    p = gen.params(31, 0)
    gen.renderer.update(gen.scene_arrays(p))
    gt = gen.renderer.ground_truth()
    assert gt.xy_error < 1e-3  # every hit projects to its pixel centre
    cam = p["camera"]
    K = np.asarray(cam["K"])
    m = gt.mask
    pts = camera.back_project(gt.depth, cam)[m]  # world points (x, y, z = depth)
    cv = np.column_stack([pts[:, 0] - K[0, 2], -pts[:, 1] - K[1, 2], cam["distance"] - pts[:, 2]])  # OpenCV frame
    uv = (cv @ K.T)[:, :2] / cv[:, 2:]
    rows, cols = np.nonzero(m)
    np.testing.assert_allclose(uv[:, 0], cols, atol=1e-3)
    np.testing.assert_allclose(uv[:, 1], rows, atol=1e-3)
    assert (cv[:, 2] > 0).all()  # Z = D - depth: in front of the camera


def test_sample_camera_ranges():
    rng = np.random.default_rng(0)
    cams = [camera.sample_camera(rng, (128, 128), 4.0) for _ in range(300)]
    f35 = np.array([c["focal_35mm"] for c in cams])
    assert 24 <= f35.min()
    assert f35.max() <= 135
    assert f35.min() < 30
    assert f35.max() > 110
    for c in cams:
        K = np.asarray(c["K"])
        assert K[0, 0] == K[1, 1] == c["distance"]
        assert K[0, 2] == K[1, 2] == 63.5
    assert camera.sample_camera(rng, (64, 64), 4.0, "orthographic") == {"projection": "orthographic"}
    with pytest.raises(ValueError, match="projection"):
        camera.sample_camera(rng, (64, 64), 4.0, "fisheye")


def test_orthographic_option_and_version_1_stay(gen):
    g = Generator(64, spp=2, projection="orthographic", head_model=gen.model)
    s = g.sample(31, 0)
    v, f = g.head_mesh(s["params"])
    c = check.compare_ground_truth(s, check.raycast_ground_truth(v, f, g.size))
    assert c["mean_angle"] < 0.05, c
    assert c["mask_diff_interior"] == 0, c
    with pytest.raises(ValueError, match="version 1"):
        Generator(64, version=1, projection="perspective", head_model=gen.model)
    with pytest.raises(ValueError, match="version"):
        Generator(64, version=4, head_model=gen.model)


def test_sun_extraction_keeps_the_power():
    env = np.full((16, 32, 3), 0.5, np.float32)
    env[3, 8] = 5000.0
    clipped, sun = lighting.extract_sun(env)
    assert sun is not None
    assert clipped.max() < 5000
    theta = (np.arange(16) + 0.5) / 16 * np.pi
    d_omega = np.sin(theta) * (np.pi / 16) * (2 * np.pi / 32)

    def power(e):
        return (e * d_omega[:, None, None]).sum(axis=(0, 1))

    np.testing.assert_allclose(power(clipped) + sun["rgb"], power(env), rtol=1e-5)
    th, ph = theta[3], (8 + 0.5) / 32 * 2 * np.pi
    np.testing.assert_allclose(
        sun["direction"], [np.sin(ph) * np.sin(th), np.cos(th), -np.cos(ph) * np.sin(th)], atol=1e-6
    )
    assert lighting.extract_sun(np.ones((16, 32, 3), np.float32))[1] is None


def _write_hdr(path, img):
    """A flat (not run-length encoded) Radiance file."""
    m = img.max(axis=-1)
    e = np.ceil(np.log2(np.maximum(m, 1e-30))).astype(int)
    mant = np.where(m[..., None] > 1e-30, img / np.ldexp(1.0, e)[..., None] * 256, 0)
    rgbe = np.concatenate(
        [np.clip(mant, 0, 255).astype(np.uint8), np.where(m > 1e-30, e + 128, 0)[..., None].astype(np.uint8)], -1
    )
    h, w = img.shape[:2]
    path.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {h} +X {w}\n".encode() + rgbe.tobytes())


def test_hdri_folders(tmp_path):
    maps = lighting.bundled_maps()
    assert len(maps) == 6
    assert all((tmp_path / "x").parent.exists() for _ in maps)
    assert (maps[0].parent / "README.md").read_text().count("CC0") >= 2
    with pytest.raises(ValueError, match="does not exist"):
        lighting.scan_hdri(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no usable"):
        lighting.scan_hdri(tmp_path / "empty")
    d = tmp_path / "maps"
    d.mkdir()
    rng = np.random.default_rng(0)
    img = rng.uniform(0.1, 3.0, (16, 32, 3)).astype(np.float32)
    np.save(d / "a.npy", img)
    _write_hdr(d / "b.hdr", img)
    (d / "broken.hdr").write_bytes(b"#?RADIANCE\nnot really")
    np.save(d / "wrong_shape.npy", np.ones((16, 16, 3)))
    found, bad = lighting.scan_hdri(d)
    assert [p.name for p in found] == ["a.npy", "b.hdr"]
    assert bad == 2
    step = np.ldexp(1.0, np.ceil(np.log2(img.max(axis=-1))).astype(int))[..., None] / 256  # one mantissa unit
    err = np.abs(lighting.read_hdr(d / "b.hdr") - img)
    assert (err <= step + 1e-6).all()
    m = lighting.load_map(str(d / "a.npy"), 8)
    assert m.shape == (8, 16, 3)


def test_background_folders_and_kinds(tmp_path, gen):
    from PIL import Image

    with pytest.raises(ValueError, match="does not exist"):
        backgrounds.scan_backgrounds(tmp_path / "missing")
    d = tmp_path / "bg"
    d.mkdir()
    (d / "notes.txt").write_text("not a photo")
    (d / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    with pytest.raises(ValueError, match="no readable photo"):
        backgrounds.scan_backgrounds(d)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(d / "ok.png")
    found, bad = backgrounds.scan_backgrounds(d)
    assert [p.name for p in found] == ["ok.png"]
    assert bad == 1
    rng = np.random.default_rng(3)
    kinds = {backgrounds.sample_background(rng, 1, True)["kind"] for _ in range(200)}
    assert kinds == {"procedural", "photo", "user", "environment"}
    p = {
        "kind": "user",
        "photo": 0,
        "brightness": 1.0,
        "blur": 0.0,
        "seed": 1,
        "people": [
            {
                "x": 0.5,
                "y": 0.4,
                "size": 0.5,
                "skin": [0.8, 0.6, 0.5],
                "hair": [0.1, 0.1, 0.1],
                "cloth": [0.1, 0.2, 0.9],
                "bald": False,
            }
        ],
        "people_blur": 2.0,
    }
    img, referred = backgrounds.background(p, (64, 64), [str(found[0])], None, None)
    assert img.shape == (64, 64, 3)
    assert not referred
    assert img[50:, 28:36, 2].mean() > img[50:, 28:36, 0].mean()


def test_bad_folders_fail_before_any_work(tmp_path):
    out = tmp_path / "set"
    with pytest.raises(ValueError, match="backgrounds folder"):
        generate(out, 2, size=32, spp=1, backgrounds=tmp_path / "nope")
    with pytest.raises(ValueError, match="hdri folder"):
        generate(out, 2, size=32, spp=1, hdri=tmp_path)
    assert not out.exists()
    with pytest.raises(ValueError, match="version 1"):
        generate(out, 2, size=32, generator_version=1, hdri=tmp_path)


def test_cli_bad_backgrounds_folder(tmp_path, capsys):
    from monohead.cli import main

    assert main(["synth", "--count", "2", "--out", str(tmp_path / "o"), "--backgrounds", str(tmp_path / "nope")]) == 2
    assert "backgrounds folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_artefacts_chain():
    rng = np.random.default_rng(5)
    lin = np.clip(rng.uniform(0, 1, (64, 64, 3)), 0, 1).astype(np.float32)
    base = artefacts.sample_artefacts(np.random.default_rng(0))
    plain = {
        **base,
        "defocus": 0.0,
        "motion": 0.0,
        "vignetting": 0.0,
        "shot_noise": 0.0,
        "read_noise": 0.0,
        "gamma": 1.0,
        "contrast": 0.0,
        "colour": "colour",
        "downscale": 1.0,
        "jpeg": 0,
        "border": None,
    }
    a, inside = artefacts.apply(lin, plain)
    assert inside.all()
    from monohead.synth.textures import linear_to_srgb

    np.testing.assert_array_equal(a, np.round(np.clip(linear_to_srgb(lin), 0, 1) * 255).astype(np.uint8))
    g, _ = artefacts.apply(lin, {**plain, "colour": "grayscale"})
    assert (g[..., 0] == g[..., 1]).all()
    assert (g[..., 1] == g[..., 2]).all()
    j, _ = artefacts.apply(lin, {**plain, "jpeg": 30})
    assert 2 < np.abs(j.astype(int) - a).mean() < 60
    b, _ = artefacts.apply(lin, {**plain, "defocus": 1.0})
    assert b.std() < a.std()
    # Past the photo's border: exactly monohead.framing's fill of the same crop.
    border = {**plain, "border": [0.2, -1.0, 2.0, 0.9]}
    f, inside = artefacts.apply(lin, border)
    assert 0 < inside.sum() < inside.size
    assert not inside[:, :10].any()
    assert not inside[-5:].any()
    assert inside[20:50, 20:50].all()
    np.testing.assert_array_equal(f, framing.fill_outside(a, inside))
    again, _ = artefacts.apply(lin, {**plain, "shot_noise": 1e-3, "read_noise": 1e-2})
    np.testing.assert_array_equal(again, artefacts.apply(lin, {**plain, "shot_noise": 1e-3, "read_noise": 1e-2})[0])


def test_ground_truth_past_the_photo_border_is_outside_the_mask(gen):
    p = copy.deepcopy(gen.params(31, 0))
    p["artefacts"]["border"] = [0.3, -1.0, 2.0, 2.0]
    s = gen.render(p)
    assert not s["mask"][:, :19].any()
    assert s["mask"].any()
    assert (s["normals"][~s["mask"]] == 0).all()
    assert np.isnan(s["depth"][~s["mask"]]).all()


def test_lighting_setups_are_all_drawn():
    rng = np.random.default_rng(2)
    seen = {lighting.sample_lighting(rng, ["quarry_01"])["setup"] for _ in range(300)}
    assert seen == set(lighting.SETUPS)
    pool = {p.stem: str(p) for p in lighting.bundled_maps()}
    env = lighting.environment(
        {
            "kind": "map",
            "map": "quarry_01",
            "azimuth": 90.0,
            "tilt": 0.0,
            "mirror": False,
            "scale": 1.0,
            "tint": [1.0, 1.0, 1.0],
        },
        pool,
    )
    base = lighting.load_map(pool["quarry_01"])
    np.testing.assert_allclose(env, np.roll(base, 32, axis=1), rtol=1e-5)  # 90 degrees = a quarter turn


def test_faces_age_expressions_makeup(gen):
    from monohead.synth import faces

    names = gen.model.expression_names
    rng = np.random.default_rng(4)
    drawn = [faces.sample_face(rng, "female") for _ in range(300)]
    assert {f["expression"] for f in drawn} == set(faces.EXPRESSIONS)
    ages = np.array([f["age"] for f in drawn])
    assert ages.min() < 12
    assert ages.max() > 60
    assert any(f["makeup"] for f in drawn)
    face = {**drawn[0], "expression": "wink", "side": "L", "strength": 1.0}
    assert faces.expression_weights(face, names)["eyeBlink_L"] == 1.0
    assert faces.expression_weights({**face, "expression": "open_mouth"}, names)["jawOpen"] >= 0.75
    assert faces.expression_weights({**face, "expression": "ordinary"}, names) is None
    # A child's face is shorter under the same cranium; an adult's is untouched.
    lm = faces.landmarks(gen.model)
    v = gen.model.neutral.astype(np.float64)
    child = faces.age_warp(v, {**face, "child": 1.0}, lm["eye_y"], lm["chin_y"])
    np.testing.assert_array_equal(faces.age_warp(v, {**face, "child": 0.0}, lm["eye_y"], lm["chin_y"]), v)
    top = v[:, 1] > lm["eye_y"]
    np.testing.assert_array_equal(child[top], v[top])
    chin = np.argmin(np.abs(v[:, 1] - lm["chin_y"]) + 100.0 * (v[:, 2] < 5))
    assert lm["eye_y"] - child[chin, 1] < 0.8 * (lm["eye_y"] - v[chin, 1])
    # Wrinkles tilt the normal map (elderly) and leave it flat (young); oil lowers roughness.
    space = gen.renderer.space
    young, r_young = faces.skin_detail(space, lm, {**face, "wrinkles": 0.0, "oily": 0.0}, 0.5)
    old, r_oily = faces.skin_detail(space, lm, {**face, "wrinkles": 1.0, "oily": 1.0}, 0.5)
    np.testing.assert_allclose(young, np.broadcast_to([0.5, 0.5, 1.0], young.shape), atol=1e-6)
    assert (np.abs(old[..., :2] - 0.5) > 0.05).sum() > 200
    assert r_young.min() == 0.5
    assert r_oily.min() < 0.35
    painted = faces.apply_makeup(
        np.full((space.height, space.width, 3), 0.5, np.float32),
        space,
        lm,
        {
            **face,
            "makeup": {
                "lipstick": [0.8, 0.0, 0.1],
                "lipstick_strength": 1.0,
                "blush": 0.0,
                "eyeshadow": [0.2, 0.2, 0.2],
                "eyeshadow_strength": 0.0,
            },
        },
    )
    lips = space.masks["lips"] > 0.9
    assert painted[lips][:, 0].mean() > 0.55
    assert painted[lips][:, 1].mean() < 0.1


def test_extreme_expression_changes_the_ground_truth_consistently(gen):
    p = copy.deepcopy(gen.params(31, 2))
    p["face"].update(expression="open_mouth", strength=1.0, child=0.8)
    from monohead.synth import faces

    p["expression"] = faces.expression_weights(p["face"], gen.model.expression_names)
    p["artefacts"]["border"] = None
    s = gen.render(p)
    v, f = gen.head_mesh(p)
    c = check.compare_ground_truth(s, check.raycast_ground_truth(v, f, gen.size, p["camera"]))
    assert c["mean_angle"] < 0.05, c
    assert c["mask_diff_interior"] == 0, c


def test_synth_look_command(tmp_path, capsys):
    from PIL import Image

    from monohead.cli import main
    from monohead.synth.preview import image_grid

    grid = image_grid([np.zeros((4, 4, 3), np.uint8)] * 3, cols=2, gap=1)
    assert grid.shape == (11, 11, 3)
    assert grid[1:5, 1:5].max() == 0
    assert grid[6:10, 6:10].min() == 255
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((60, 40, 3), 200, np.uint8)).save(photos / "a.png")
    (photos / "broken.jpg").write_bytes(b"nope")
    out, side = tmp_path / "sheet.png", tmp_path / "side.png"
    assert (
        main(
            [
                "synth-look",
                "--out",
                str(out),
                "--count",
                "2",
                "--size",
                "32",
                "--spp",
                "1",
                "--cols",
                "2",
                "--generator-version",
                "2",
                "--photos",
                str(photos),
                "--side-by-side",
                str(side),
                "--json",
            ]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["renders"] == 2
    assert r["generator_version"] == 2
    assert r["photos"] == 1
    sheet, both = np.asarray(Image.open(out)), np.asarray(Image.open(side))
    assert sheet.shape == (32 + 4, 2 * 32 + 6, 3)
    assert both.shape[1] > sheet.shape[1]
    assert (
        main(
            [
                "synth-look",
                "--out",
                str(tmp_path / "x.png"),
                "--photos",
                str(tmp_path / "none"),
                "--side-by-side",
                str(side),
            ]
        )
        == 2
    )


def test_beside_tiles_the_photos_to_the_right_of_the_renders():
    from monohead.synth.preview import beside

    sheet = np.zeros((36, 70, 3), np.uint8)
    crops = [np.full((32, 32, 3), 100, np.uint8)] * 3
    both = beside(sheet, crops)  # one row of 32 + 2 fits the sheet's height: 3 columns
    assert both.shape == (36, 70 + 12 + 3 * 32 + 4 * 2, 3)
    assert both[:, :70].max() == 0
    assert both[:, 70:82].min() == 255  # the gap, 3/8 of a tile
    assert both[2:34, 84:116].min() == 100
    low = beside(np.zeros((20, 10, 3), np.uint8), crops[:1])  # the photos are taller: the sheet is padded
    assert low.shape == (36, 10 + 12 + 36, 3)
    assert low[20:, :10].min() == 255
    np.testing.assert_array_equal(beside(sheet, []), sheet)
