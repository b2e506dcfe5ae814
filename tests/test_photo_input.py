"""monohead.photo's input: every image mode a phone or a browser makes, bad files, big photos;
and the mask clean-up (the head's component, holes filled, pieces dropped and counted)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, features

from monohead import cli
from monohead import photo as R
from monohead.integration import surfaces

GRAY = np.asarray(R.BACKGROUND, np.uint8)


def _rgb(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(im: Image.Image, path, **kw):
    im.save(path, **kw)
    return path


# -------------------------------------------------------------------- modes, as files and as PIL images
def test_rgb_png_jpeg_webp_round_trip(tmp_path):
    a = _rgb()
    np.testing.assert_array_equal(R.load_image(_save(Image.fromarray(a), tmp_path / "a.png")), a)
    j = R.load_image(_save(Image.fromarray(a), tmp_path / "a.jpg", quality=95))
    assert j.shape == a.shape
    assert j.dtype == np.uint8
    if not features.check("webp"):
        pytest.fail("Pillow was built without WebP support")  # the pipeline promises WebP
    np.testing.assert_array_equal(R.load_image(_save(Image.fromarray(a), tmp_path / "a.webp", lossless=True)), a)


def test_grayscale_and_black_and_white(tmp_path):
    g = _rgb()[..., 0]
    out = R.load_image(_save(Image.fromarray(g), tmp_path / "g.png"))
    np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, -1))
    bw = R.load_image(Image.fromarray(g > 128))  # mode "1"
    assert set(np.unique(bw)) <= {0, 255}
    assert (bw[..., 0] == bw[..., 2]).all()
    np.testing.assert_array_equal(R.load_image(g), out)  # (H, W) array
    np.testing.assert_array_equal(R.load_image(g[..., None]), out)  # (H, W, 1)


def test_sixteen_bit(tmp_path):
    g16 = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    path = _save(Image.fromarray(g16), tmp_path / "g16.png")
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    out = R.load_image(path)
    np.testing.assert_array_equal(out[..., 1], np.round(g16 / 257.0).astype(np.uint8))
    rgb16 = np.stack([g16, g16 // 2, 65535 - g16], -1)
    np.testing.assert_array_equal(R.load_image(rgb16)[..., 2], np.round((65535 - g16) / 257.0).astype(np.uint8))


def test_palette_and_cmyk(tmp_path):
    a = _rgb()
    pal = Image.fromarray(a).convert("P", palette=Image.ADAPTIVE, colors=16)
    out = R.load_image(_save(pal, tmp_path / "p.png"))
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))
    r, c = np.mgrid[0:48, 0:64]
    a = np.stack([r * 5, c * 4, np.full_like(r, 90)], -1).astype(np.uint8)
    cmyk = Image.fromarray(a).convert("CMYK")
    out = R.load_image(_save(cmyk, tmp_path / "c.jpg", quality=100))
    assert np.abs(out.astype(int) - a).mean() < 12  # CMYK JPEG decoded back to about the same RGB


def test_alpha_is_composited_on_neutral_gray(tmp_path):
    a = _rgb()
    alpha = np.zeros(a.shape[:2], np.uint8)
    alpha[:, 32:] = 255
    rgba = np.dstack([a, alpha])
    for img in (R.load_image(_save(Image.fromarray(rgba), tmp_path / "a.png")), R.load_image(rgba)):
        np.testing.assert_array_equal(img[:, 32:], a[:, 32:])
        assert (img[:, :32] == GRAY).all()
    la = np.dstack([a[..., 0], np.full(a.shape[:2], 128, np.uint8)])
    out = R.load_image(Image.fromarray(la, "LA"))
    expect = np.round((a[..., 0] / 255.0 * (128 / 255) + (1 - 128 / 255) * GRAY[0] / 255.0) * 255).astype(int)
    assert np.abs(out[..., 0].astype(int) - expect).max() <= 1
    pal = Image.fromarray(a).convert("P", palette=Image.ADAPTIVE, colors=8)
    pal.info["transparency"] = 0
    out = R.load_image(_save(pal, tmp_path / "pt.png", transparency=0))
    assert (out[np.asarray(pal) == 0] == GRAY).all()


def test_exif_rotation_is_applied(tmp_path):
    r, c = np.mgrid[0:40, 0:70]
    a = np.stack([r * 6, c * 3, np.full_like(r, 90)], -1).astype(np.uint8)  # smooth: JPEG keeps it
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = _save(im, tmp_path / "r.jpg", exif=exif, quality=98)
    out = R.load_image(path)
    assert out.shape == (70, 40, 3)
    ref = np.asarray(Image.fromarray(a).transpose(Image.Transpose.ROTATE_270))
    assert np.abs(out.astype(int) - ref).mean() < 6


def test_float_arrays_and_pil_images():
    a = _rgb()
    np.testing.assert_array_equal(R.load_image(a / 255.0), a)
    np.testing.assert_array_equal(R.load_image(Image.fromarray(a)), a)


# -------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("image", "exc", "match"),
    [
        (np.zeros((20, 64, 3), np.uint8), ValueError, r"too small: 64x20 pixels"),
        (np.zeros((1, 1, 3), np.uint8), ValueError, r"too small: 1x1 pixels"),
        (np.zeros((0, 64, 3), np.uint8), ValueError, r"empty"),
        (np.zeros((64, 64, 5), np.uint8), ValueError, r"must have shape .*got \(64, 64, 5\)"),
        (np.zeros((64, 64, 3), np.int16), TypeError, r"uint8, uint16 or float in \[0, 1\]; got dtype int16"),
        (np.full((64, 64, 3), 2.0), ValueError, r"finite values in \[0, 1\]"),
        ("does/not/exist.png", FileNotFoundError, r"no such file"),
        (3.5, TypeError, r"got float"),
    ],
)
def test_bad_arrays_and_objects(image, exc, match):
    with pytest.raises(exc, match=match):
        R.load_image(image)


def test_bad_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.jpg is empty \(0 bytes\)"):
        R.load_image(tmp_path / "empty.jpg")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"text.png is not a readable image \(not an image format"):
        R.load_image(tmp_path / "text.png")
    buf = io.BytesIO()
    Image.fromarray(_rgb(200, 200)).save(buf, "JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="cut.jpg is not a readable image .*truncated"):
        R.load_image(tmp_path / "cut.jpg")
    _save(Image.new("RGB", (1, 1)), tmp_path / "one.png")
    with pytest.raises(ValueError, match=r"one.png is too small: 1x1 pixels"):
        R.load_image(tmp_path / "one.png")
    with pytest.raises(ValueError, match="must be an image file; got the folder"):
        R.load_image(tmp_path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    # a tiny PNG that claims many pixels: refused from its header (the limit is explicit)
    _save(Image.new("L", (400, 300)), tmp_path / "big.png")
    monkeypatch.setattr(R, "MAX_PIXELS", 100_000)
    with pytest.raises(ValueError, match=r"400x300 .*the limit is 0 MP \(MAX_PIXELS\)"):
        R.load_image(tmp_path / "big.png")
    with pytest.raises(ValueError, match="MAX_PIXELS"):
        R.load_image(np.zeros((300, 400, 3), np.uint8))


def test_big_photos_are_downscaled_first_and_boxes_stay_in_photo_pixels(tmp_path):
    from skimage import data

    a = np.asarray(Image.fromarray(data.astronaut()).resize((2600, 2600)))  # long side > WORK_SIDE
    path = _save(Image.fromarray(a), tmp_path / "big.jpg", quality=90)
    arr, scale = R._read(path, "image", R.WORK_SIDE)
    assert max(arr.shape) <= R.WORK_SIDE
    assert scale == pytest.approx(max(arr.shape) / 2600)
    rec = R.reconstruct(path, model=_oracle, detector="frontal")
    ref = R.reconstruct(data.astronaut(), model=_oracle, detector="frontal")
    k = 2600 / 512
    assert rec.box.side == pytest.approx(ref.box.side * k, rel=0.08)
    assert rec.box.x == pytest.approx(ref.box.x * k, abs=0.05 * rec.box.side)


# -------------------------------------------------------------------- detection
def test_detectors_combine_the_cascades_and_the_network():
    from skimage import data

    photo = data.astronaut()
    with pytest.raises(ValueError, match="detector must be one of"):
        R.detect_faces(photo, detector="haar")
    frontal = R.detect_faces(photo, detector="frontal")
    assert len(frontal) == 1
    assert R.detect_faces(photo, detector="cascades")[0] == frontal[0]  # the profile cascade adds nothing here
    # the network (an oracle: a head in the middle of the letterboxed photo) sees her head,
    # where the cascade's face is: not added twice
    assert R.detect_faces(photo, detector="combined", model=_oracle) == frontal
    net = R.detect_faces(photo, detector="network", model=_oracle)
    assert len(net) == 1
    assert R.head_box(net[0]).side > 0
    # on a blank photo only the network sees a head (the oracle's): it is what combined returns
    blank = np.full((300, 300, 3), 128, np.uint8)
    assert R.detect_faces(blank, detector="cascades") == []
    assert R.detect_faces(blank, detector="combined", model=_oracle) == R.detect_faces(
        blank, detector="network", model=_oracle
    )


def test_profile_faces_are_found_by_the_profile_cascade_on_both_sides(monkeypatch):
    # a real profile is not bundled with the test dependencies; the synthetic renders of
    # benchmarks/detection_by_yaw.py measure it. Here: the mirror logic. A face found in the
    # mirrored photo is reported mirrored back.
    small = np.zeros((100, 160), np.uint8)
    monkeypatch.setattr(R, "_detect_windows", lambda kind, img, *a: np.array([[10, 20, 20, 34, 2]], np.int32))
    direct = R._run_cascade("profile", small)[0]
    mirrored = R._run_cascade("profile", small, mirror=True)[0]
    side = R.PROFILE_SIDE * 34
    assert direct[2] == pytest.approx(side)
    assert direct[3] == pytest.approx(side)
    assert direct[0] + side / 2 == pytest.approx(30 + R.PROFILE_SHIFT * 34)  # toward the back of the head
    assert mirrored[0] + side / 2 == pytest.approx(160 - (30 + R.PROFILE_SHIFT * 34))  # mirrored back


@pytest.mark.parametrize("kind", ["frontal", "profile"])
def test_the_compiled_cascade_finds_what_scikit_image_finds(kind):
    # monohead's C++ cascade evaluates the same windows with the same rounding and groups them
    # the same way: the same detections as skimage.feature.Cascade, for any thread count
    from skimage import data, feature

    ref = feature.Cascade(R._cascade_file(kind))
    photo = data.astronaut()
    noise = np.random.default_rng(1).integers(0, 256, (90, 140), dtype=np.uint8)
    images = [noise] + [
        np.asarray(Image.fromarray(photo).resize((n, n), Image.BILINEAR).convert("L")) for n in (160, 250)
    ]
    found = 0
    for img in images:
        for min_size, neighbours in ((20, 2), (30, 1), (20, 1)):
            want = ref.detect_multi_scale(
                img=img, scale_factor=1.15, step_ratio=1, min_size=(min_size, min_size),
                max_size=img.shape, min_neighbor_number=neighbours,
            )  # fmt: skip
            want = sorted((d["r"], d["c"], d["width"], d["height"]) for d in want)
            for threads in (1, 3):
                got = R._cascade(kind)[0].detect(
                    img, R._window_scales(R._cascade(kind)[1], min_size, img.shape), 1.0, neighbours, 0.5, threads
                )
                assert sorted(tuple(int(t) for t in d[:4]) for d in got) == want
                assert (got[:, 4] >= neighbours).all()
            found += len(want)
    assert found > 0  # not only empty results compared


# -------------------------------------------------------------------- mask clean-up
def _oracle(crops):
    s = surfaces.head(128, neck=True)
    B = len(crops)
    return (np.repeat(s.normals[None], B, 0), np.repeat(s.W[None], B, 0), np.repeat(s.mask[None], B, 0))


def test_a_dome_is_not_reframed_on_the_pose_search(monkeypatch):
    """The oracle's dome (a surface, not a head) on the astronaut's face box: its turn sizes at
    70 deg and the head model's pose search reads it as a near-profile, but a turned mean head
    fits it hardly better than a frontal one (cost ratio above framing.TURN_SEARCH_MAX_COST_RATIO):
    the reading is implausible, the cheap one stands and the first crop is kept."""
    from skimage import data

    photo = data.astronaut()
    rec = R.reconstruct(photo, model=_oracle)
    assert rec.turn["reframe"] == "tight"  # the dome fills 0.72 of every crop: too tight
    monkeypatch.setattr(R, "REFRAME_MAX_FILL", np.inf)  # the turn's reading alone
    rec = R.reconstruct(photo, model=_oracle)
    t = rec.turn
    assert t["reframe"] is None
    assert t["size"] >= R.TURN_SEARCH_MIN_SIZE  # searched
    assert abs(t["search"]) >= R.REFRAME_MIN_YAW  # the search alone would re-frame it
    assert t["cost_ratio"] > R.TURN_SEARCH_MAX_COST_RATIO
    assert t["plausible"] is False
    assert rec.yaw_estimate == pytest.approx(t["cheap"], abs=0.01)
    assert t["used"] == "cheap"
    assert abs(rec.yaw_estimate) < R.REFRAME_MIN_YAW
    assert rec.first_box is None
    plain = R.reconstruct(photo, model=_oracle, reframe=False)
    assert rec.box == plain.box
    np.testing.assert_array_equal(rec.depth, plain.depth)
    assert plain.turn is None


def _blobby(crops):
    """The analytic head with a blob on the shoulder, a speck of background and a hole in the cheek."""
    n, W, m = _oracle(crops)
    m = m.copy()
    n = n.copy()
    m[:, 118:126, 4:20] = True  # shoulder blob, apart from the head
    n[:, 118:126, 4:20] = (0.0, 0.0, 1.0)
    m[:, 2:4, 120:124] = True  # a speck in a corner
    n[:, 2:4, 120:124] = (0.0, 0.0, 1.0)
    m[:, 60:66, 40:46] = False  # hole in the (viewer's left) cheek
    n[:, 60:66, 40:46] = 0.0
    W = np.where(m, W, 0.0)
    return n, W, m


def test_clean_mask_keeps_the_face_component_and_fills_its_holes():
    _, _, m = _blobby(np.zeros((1, 128, 128, 3), np.uint8))
    face = np.zeros((128, 128), bool)
    face[50:80, 50:80] = True
    mask, info = R.clean_mask(m[0], face)
    head = surfaces.head(128, neck=True).mask
    assert info["dropped_pieces"] == 2
    assert info["dropped_pixels"] == 8 * 16 + 2 * 4
    assert info["filled_pixels"] == 36
    assert info["face_covered"]
    assert info["face_coverage"] == 1.0
    np.testing.assert_array_equal(mask, head)  # the head's component, the cheek hole filled
    # a face region that the mask misses: said so
    miss = np.zeros((128, 128), bool)
    miss[0:10, 0:10] = True
    _, info = R.clean_mask(m[0], miss)
    assert not info["face_covered"]
    assert info["face_coverage"] == 0.0


def test_reconstruct_builds_the_mesh_from_the_head_only_and_reports_the_cleanup(tmp_path, capsys, monkeypatch):
    from skimage import data

    rec = R.reconstruct(data.astronaut(), model=_blobby, detector="frontal")
    head = surfaces.head(128, neck=True)
    np.testing.assert_array_equal(rec.mask, head.mask)
    assert rec.raw_mask.sum() == head.mask.sum() - 36 + 8 * 16 + 8
    assert len(rec.mesh.vertices) == head.mask.sum()
    assert rec.cleanup["dropped_pieces"] == 2
    assert rec.cleanup["filled_pixels"] == 36
    assert rec.face_covered
    # the hole's normals come from the network's around it: close to the true ones there
    hole = np.zeros((128, 128), bool)
    hole[60:66, 40:46] = True
    err = np.degrees(np.arccos(np.clip(np.sum(rec.normals[hole] * head.normals[hole], -1), -1, 1)))
    assert err.max() < 10
    assert np.isfinite(rec.depth[hole]).all()
    monkeypatch.setattr(R, "_MODEL", _blobby)
    path = tmp_path / "a.png"
    Image.fromarray(data.astronaut()).save(path)
    assert cli.main(["reconstruct", str(path), "-o", str(tmp_path / "out"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["reconstructions"][0]
    assert r["cleanup"]["dropped_pieces"] == 2
    assert r["face_covered"] is True


def test_face_not_covered_is_flagged(monkeypatch):
    from skimage import data

    def off_face(crops):
        n, W, m = _oracle(crops)
        m = np.zeros_like(m)
        m[:, 100:128, 0:30] = True  # only a piece in the lower left corner
        return np.where(m[..., None], (0.0, 0.0, 1.0), 0.0), np.where(m, W, 0.0), m

    rec = R.reconstruct(data.astronaut(), model=off_face, detector="frontal")
    assert not rec.face_covered
    assert rec.cleanup["face_coverage"] == 0.0


# -------------------------------------------------------------------- outputs
def test_cli_formats_and_units(tmp_path, monkeypatch, capsys):
    import trimesh
    from skimage import data

    from monohead import geometry

    monkeypatch.setattr(R, "_MODEL", _oracle)
    path = tmp_path / "a.png"
    Image.fromarray(data.astronaut()).save(path)
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "reconstruct",
                str(path),
                "-o",
                str(out),
                "--format",
                "glb",
                "--units",
                "photo",
                "--json",
                "--detector",
                "frontal",
            ]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)["reconstructions"][0]
    assert r["mesh"].endswith("a.glb")
    assert r["units"] == "photo"
    scene = trimesh.load(out / "a.glb")
    glb = next(iter(scene.geometry.values())) if hasattr(scene, "geometry") else scene
    rec = R.reconstruct(data.astronaut(), model=_oracle, detector="frontal")
    photo_mesh = rec.mesh_in_photo_units()
    assert len(glb.vertices) == len(rec.mesh.vertices)
    # glTF is y up like the conventions: the same vertices, as float32
    np.testing.assert_allclose(np.sort(np.asarray(glb.vertices)[:, 0]), np.sort(photo_mesh.vertices[:, 0]), atol=1e-3)
    # photo units: vertex (column, -row) of the crop lands on the photo pixel it came from
    rows, cols = np.nonzero(rec.mask)
    s = rec.box.side / 128
    np.testing.assert_allclose(photo_mesh.vertices[:, 0], rec.box.x + (cols + 0.5) * s, atol=1e-6)
    np.testing.assert_allclose(-photo_mesh.vertices[:, 1], rec.box.y + (rows + 0.5) * s, atol=1e-6)
    np.testing.assert_allclose(photo_mesh.vertices[:, 2], rec.mesh.vertices[:, 2] * s, atol=1e-9)
    assert cli.main(["reconstruct", str(path), "-o", str(out), "--format", "obj"]) == 0
    assert len(geometry.load_mesh(out / "a.obj").vertices) == len(rec.mesh.vertices)


def test_cli_bad_inputs_exit_2_with_one_line_and_no_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(R, "_MODEL", _oracle)
    out = tmp_path / "out"
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (1, 1)).save(tmp_path / "one.png")
    for name, problem in (("empty.jpg", "is empty (0 bytes)"), ("one.png", "too small: 1x1 pixels")):
        assert cli.main(["reconstruct", str(tmp_path / name), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err
        assert name in err
        assert problem in err
    assert not out.exists()  # no output, not even an empty folder


def test_a_strong_frontal_face_needs_no_coarse_pass(monkeypatch):
    from skimage import data

    photo = data.astronaut()
    batches = []

    def counting(crops):
        batches.append(len(crops))
        return _oracle(crops)

    monkeypatch.setattr(R, "REFRAME_MAX_FILL", np.inf)  # the oracle's dome fills 0.72 of every crop: too tight
    her = R.detect_faces(photo, detector="frontal")[0]
    rec = R.reconstruct(photo, model=counting)
    assert batches == [1]  # her face is strong: only its head crop goes through the network
    assert rec.face_box == her == R.detect_faces(photo, model=counting)[0]
    # all faces: the coarse pass looks for the others, then their crops go in one batch
    batches.clear()
    recs = R.reconstruct(photo, model=counting, all_faces=True)
    assert batches == [1, len(recs)]
    assert recs[0].face_box == her
    # a weak largest face: the coarse pass decides. Her face lies on the oracle's head, but the
    # oracle paints its analytic head over the middle of the whole photo, a head whose implied
    # face is more than 1 / WEAK_FACE_HEAD_FIT times hers: the head's own box replaces her face
    monkeypatch.setattr(R, "_is_strong", lambda *a: False)
    batches.clear()
    rec = R.reconstruct(photo, model=counting)
    assert batches == [1, 1]
    heads, _, _ = R._network_heads(photo, _oracle)
    assert her[2] < R.WEAK_FACE_HEAD_FIT * heads[0][2]
    assert rec.face_box == tuple(round(t) for t in heads[0][:4])
    # with the rule off (a fit of 0) her face is taken, as before it
    monkeypatch.setattr(R, "WEAK_FACE_HEAD_FIT", 0.0)
    assert R.reconstruct(photo, model=counting).face_box == her


def test_small_faces_in_big_photos_are_found_by_the_finer_scans(monkeypatch):
    # the oracle paints one large head over any photo: the weak-face rule (tested above) is off
    monkeypatch.setattr(R, "WEAK_FACE_HEAD_FIT", 0.0)
    from skimage import data

    # her face (96 px in the 512 photo) at 42 px in a 1600 x 1200 photo: under the 20/320 of the
    # long side that the 160- and 320-pixel copies see
    s = 42 / 96
    small = np.asarray(Image.fromarray(data.astronaut()).resize((round(512 * s), round(512 * s)), Image.LANCZOS))
    rng = np.random.default_rng(3)
    photo = np.clip(rng.normal(120, 12, (1200, 1600, 3)), 0, 255).astype(np.uint8)
    photo[700 : 700 + small.shape[0], 1100 : 1100 + small.shape[1]] = small
    face = (1100 + 176 * s, 700 + 70 * s, 96 * s)
    assert R.detect_faces(photo, detector="frontal") == []  # the 160/320 copies alone: nothing
    found = R.detect_faces(photo, model=_oracle)[0]
    assert found[0] <= face[0] + face[2] / 2 <= found[0] + found[2]
    assert found[1] <= face[1] + face[2] / 2 <= found[1] + found[3]
    assert 0.7 * face[2] <= found[2] <= 1.4 * face[2]
    assert R._small_faces(photo[:300, :300], R.DETECT_SIZE) == []  # photos up to 320 px: no finer scan
    # a cascade face on the (oracle's) network head: it wins when it fits the head, not when
    # it is much smaller than the face the head implies (a false face on a painted head)
    heads, _, _ = R._network_heads(photo, _oracle)
    x, y, w, _, _ = heads[0]
    fitting = (x, y, w, w)
    tiny = (x + 0.4 * w, y + 0.4 * w, 0.2 * w, 0.2 * w)
    for coarse, first_is_small in ((fitting, False), (tiny, True)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(R, "_cascade_faces", lambda *a, coarse=coarse: [coarse])
            first = R.detect_faces(photo, model=_oracle)[0]
            # only the first face wanted (reconstruct): the finer scans run only when a small
            # face could come first, and the first face is the same
            scans = []
            mp.setattr(R, "_small_faces", lambda *a, f=R._small_faces, s=scans: s.append(1) or f(*a))
            assert R._detect(photo, R.DETECT_SIZE, "combined", _oracle, everywhere=False)[0] == first
            assert scans == ([1] if first_is_small else [])
        assert (abs(first[2] - face[2]) < 0.3 * face[2]) == first_is_small
    # a small face inside a coarser cascade face is a part of it (an eye): not taken
    around = (1050.0, 650.0, 300.0, 300.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(R, "_cascade_faces", lambda *a: [around])
        assert abs(R.detect_faces(photo, model=_oracle)[0][2] - face[2]) > 0.3 * face[2]


def test_strong_faces_on_the_mask_come_first_and_weak_ones_give_way(monkeypatch):
    monkeypatch.setattr(R, "WEAK_FACE_HEAD_FIT", 0.0)  # the oracle's head is large; rule tested above
    from skimage import data

    photo = data.astronaut()
    her = R.detect_faces(photo, detector="frontal")[0]
    assert R._is_strong(photo, her, R.DETECT_SIZE)  # her face, found again by many windows
    assert not R._is_strong(photo, (0.0, 0.0, 150.0, 150.0), R.DETECT_SIZE)  # the flag
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    assert not R._is_strong(noise, (100.0, 100.0, 150.0, 150.0), R.DETECT_SIZE)
    # two cascade faces on the oracle's head mask: a larger weak one and her (strong) face
    weak = (230.0, 200.0, 110.0, 110.0)
    monkeypatch.setattr(R, "_cascade_faces", lambda *a, **k: [weak, her])
    net = R.detect_faces(photo, detector="network", model=_oracle)
    assert R.detect_faces(photo, model=_oracle) == [her]  # the weak one and its head are dropped
    strength = {weak: False, her: False}
    monkeypatch.setattr(R, "_is_strong", lambda photo, face, *a: strength.get(face, False))
    assert R.detect_faces(photo, model=_oracle)[0] == weak  # none strong: the larger first, as before
    assert net  # the oracle's head, not repeated: both faces lie on it


def test_big_jpegs_are_decoded_at_a_reduced_size(tmp_path):
    path = _save(Image.new("RGB", (4000, 3000), (90, 120, 150)), tmp_path / "12mp.jpg", quality=80)
    arr, scale = R._read(path, "image", R.WORK_SIDE)
    assert arr.shape == (1500, 2000, 3)  # the JPEG's DCT scaling by 2: no resampling after it
    assert scale == 0.5
    assert np.abs(arr.astype(int) - (90, 120, 150)).max() <= 3


def test_second_detections_of_one_head_are_dropped():
    face = (100.0, 100.0, 100.0, 100.0)  # its head box: 280 px square around (150, 138)
    chin = (130.0, 190.0, 50.0, 50.0)  # on the same head, half as wide
    hair = (60.0, 40.0, 80.0, 80.0)  # a cascade face off the network's mask, on the same head
    neighbour = (230.0, 110.0, 90.0, 90.0)  # a second person beside: as wide, on the mask
    far = (600.0, 100.0, 40.0, 40.0)  # a small face elsewhere, seen by a cascade only
    boxes = [face, chin, hair, neighbour, far]
    assert R._drop_duplicates(boxes, [True, True, False, True, False]) == [face, neighbour, far]
    assert R._drop_duplicates([hair, face], [False, True]) == [hair, face]  # the first is always kept
    assert R._drop_duplicates([], []) == []
