"""Generator version 3: ICT's teeth, gums and tongue in the mouth, facial hair with soft edges.

Version 3 is version 2 plus the mouth (rendered, and part of the head for the ground truth)
and version 3's facial hair; versions 1 and 2 give the samples they always gave.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from monohead.synth import backgrounds, check, denoise, faces, facial_hair
from monohead.synth.generator import Generator
from monohead.synth.head_model import MOUTH_REGIONS


@pytest.fixture(scope="module")
def gen3() -> Generator:
    return Generator(64, spp=2, version=3)


@pytest.fixture(scope="module")
def gen2(gen3) -> Generator:
    return Generator(64, spp=2, version=2, head_model=gen3.model)


def _open_mouth(gen: Generator, seed: int) -> dict:
    """The first sample of ``seed`` with a wide-open mouth, no occluder and a frontal pose."""
    for i in range(200):
        p = gen.params(seed, i)
        if p["face"]["expression"] == "open_mouth" and p["occluder"] is None and abs(p["pose"]["yaw"]) < 30:
            return p
    raise AssertionError("no open mouth in 200 samples")


def test_the_asset_holds_the_mouth_and_it_follows_the_jaw(gen3):
    m = gen3.model
    assert m.has_mouth
    assert m.mouth_region_names == list(MOUTH_REGIONS)
    assert set(np.unique(m.mouth_face_region)) == {0, 1}
    assert m.mouth_faces.max() == len(m.mouth_neutral) - 1
    closed = m.mouth_shape(None, None)
    open_ = m.mouth_shape(None, {"jawOpen": 1.0})
    assert open_[:, 1].min() < closed[:, 1].min() - 2.0  # the lower teeth and tongue drop (cm)
    ident = np.random.default_rng(3).normal(size=m.num_identities)
    moved = m.mouth_shape(ident, None) - closed
    assert 0.05 < np.abs(moved).max() < 2.0
    with pytest.raises(ValueError, match="at most 100 coefficients"):
        m.mouth_shape(np.zeros(101))


def test_mouth_matches_ict_facekit(gen3, shared_data):
    pack = np.load(shared_data("ict-facekit", "ict_facekit.npz"))
    import monohead.synth.head_model as hm

    with np.load(hm.ASSET_PATH) as z:
        src = z["mouth_source_vertex"]
    m = gen3.model
    y = np.random.default_rng(0).normal(size=m.num_identities)
    w = m.expression_weights({"jawOpen": 0.8, "mouthSmile_L": 0.5})
    ref = (
        pack["neutral"][src]
        + np.einsum("k,kvc->vc", y, pack["identity_deltas"][:, src])
        + np.einsum("k,kvc->vc", w, pack["expression_deltas"][:, src])
    )
    err = np.linalg.norm(m.mouth_shape(y, w) - ref, axis=1)
    assert err.max() < 0.06, err.max()  # cm: float16 and the modes left out
    assert err.mean() < 0.03, err.mean()


def test_open_mouth_shows_teeth_in_image_and_ground_truth(gen2, gen3):
    p3 = _open_mouth(gen3, 5)
    p2 = copy.deepcopy(p3)
    del p2["mouth"]
    s3, s2 = gen3.render(p3), gen2.render(p2)
    m = s3["mask"] & s2["mask"]
    nearer = m & (s3["depth"] > s2["depth"] + 0.3)  # teeth and tongue in front of the mouth socket
    assert nearer.sum() >= 3, nearer.sum()
    assert not (m & (s3["depth"] < s2["depth"] - 1e-3)).any()  # nothing behind the old surface
    assert (s3["image"] != s2["image"]).any()
    # The ray-cast oracle on the head mesh with the mouth agrees with the rendered maps.
    c = check.compare_ground_truth(s3, check.raycast_sample(gen3, p3))
    assert c["mean_angle"] < 0.05, c
    assert c["mask_diff_interior"] == 0, c
    assert c["depth_max"] < 1.0, c
    # ... and the version-2 mesh (no mouth) does not.
    assert check.compare_ground_truth(s3, check.raycast_sample(gen2, p2))["depth_max"] > 0.3
    v, f = gen3.head_mesh(p3)
    v2, f2 = gen2.head_mesh(p2)
    assert len(v) == len(v2) + len(gen3.model.mouth_neutral)
    assert len(f) == len(f2) + len(gen3.model.mouth_faces)


def test_version_3_params_add_the_mouth_and_no_beard_on_children(gen2, gen3):
    boys = 0
    for i in range(300):
        p3, p2 = gen3.params(9, i), gen2.params(9, i)
        assert "mouth" in p3
        assert "look" in p3
        assert "mouth" not in p2
        assert "look" not in p2
        assert {k: v for k, v in p3.items() if k not in ("mouth", "beard", "look")} == {
            k: v for k, v in p2.items() if k != "beard"
        }
        if p3["face"]["age"] < 16:
            assert p3["beard"] is None
            boys += p2["beard"] is not None
        else:
            assert p3["beard"] == p2["beard"]
    assert boys >= 1  # version 2 gave some boys a beard
    rgb = faces.sample_mouth(np.random.default_rng(1), 70.0)
    assert all(0.0 < c < 1.0 for c in rgb["teeth_rgb"] + rgb["tongue_rgb"])


@pytest.mark.parametrize("style", ["moustache", "goatee", "full_beard"])
def test_soft_facial_hair_thins_out_at_the_edges_and_tapers(gen3, style):
    m = gen3.model
    v = m.neutral.astype(np.float64)
    from monohead.geometry import vertex_normals

    n = vertex_normals(v, m.faces)
    rng = np.random.default_rng(4)
    while True:
        fp = facial_hair.sample_facial_hair_params(rng, "male")
        if fp is not None and fp["style"] == style:
            break
    hard = facial_hair.grow_facial_hair(fp, m, v, n, k=8, max_strands=20000)
    soft = facial_hair.grow_facial_hair(fp, m, v, n, k=8, max_strands=20000, soft=True)
    assert len(soft) == len(hard)
    # Roots near the zone's edge: fewer with soft edges.
    zone = {"moustache": "moustache", "goatee": "chin", "full_beard": "beard"}[style]
    zones = facial_hair._zones(m)
    centres = v[zones["faces"]].mean(axis=1)
    from scipy.spatial import cKDTree

    outside = cKDTree(centres[~zones[zone]])
    near = facial_hair.EDGE_FADE[style] / 3

    def share_near_edge(strands):
        d, _ = outside.query(strands[:, 1, :3])
        return float((d < near).mean())

    assert share_near_edge(soft) < 0.6 * share_near_edge(hard)
    # Tapered strands: the tip is thinner than the root; version 2's keep their radius.
    assert (soft[:, -1, 3] < 0.5 * soft[:, 0, 3]).all()
    assert (hard[:, -2, 3] == hard[:, 0, 3]).all()


def test_denoise_removes_strand_noise_and_keeps_edges():
    """Salt-and-pepper coverage noise (a dark strand in 30 % of a bright area's pixels) on a
    head layer with a colour step and a silhouette: most of it goes, the edges stay."""
    h = w = 128
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = ((yy - 64) ** 2 + (xx - 64) ** 2 < 50**2).astype(np.float32)
    clean = np.where((xx < 64)[..., None], 0.15, 0.8) * np.ones(3, np.float32) * alpha[..., None]
    rng = np.random.default_rng(0)
    strand = rng.random((h, w)) < 0.3
    noisy = np.where(strand[..., None], 0.3 * clean, clean).astype(np.float32)
    truth = 0.79 * clean  # the coverage-weighted mean of 30 % strands at 0.3 and 70 % skin
    out, a = denoise.denoise(noisy, alpha)
    inner = alpha > 0
    inner &= np.abs(xx - 64) > 3
    err_before = np.sqrt(np.mean((noisy - truth)[inner] ** 2))
    err_after = np.sqrt(np.mean((out - truth)[inner] ** 2))
    assert err_after < 0.5 * err_before  # what is left is mostly the square-root domain's darkening bias
    # The colour step stays a step, and the silhouette stays where it was.
    left, right = out[40:90, 58:62].mean(), out[40:90, 66:70].mean()
    assert right - left > 0.7 * (truth[40:90, 66:70].mean() - truth[40:90, 58:62].mean())
    assert np.abs(a - alpha).max() < 0.5
    assert a.min() >= 0.0
    assert a.max() <= 1.0
    assert (out[~inner & (alpha == 0)] < 0.2).all()
    # Exposure does not change what it does.
    out2, _ = denoise.denoise(noisy * 7.0, alpha)
    np.testing.assert_allclose(out2, 7.0 * out, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="rgb must be"):
        denoise.denoise(noisy[..., :2], alpha)
    with pytest.raises(ValueError, match="sigmas must be positive"):
        denoise.denoise(noisy, alpha, range_sigma=0.0)


def test_mute_lowers_saturation_and_contrast_whatever_the_exposure():
    rng = np.random.default_rng(3)
    img = rng.random((32, 32, 3)).astype(np.float32) ** 2
    look = {"saturation": 0.4, "contrast": 0.7}
    out = backgrounds.mute(img, look)

    def sat(x):
        return float(np.mean(x.max(axis=-1) - x.min(axis=-1)) / np.mean(x))

    lum = np.array([0.2126, 0.7152, 0.0722])
    assert sat(out) < 0.6 * sat(img)
    assert np.std(np.log(out @ lum)) < 0.8 * np.std(np.log(img @ lum))
    np.testing.assert_allclose(backgrounds.mute(5.0 * img, look), 5.0 * out, rtol=1e-5)
    same = backgrounds.mute(img, {"saturation": 1.0, "contrast": 1.0})
    np.testing.assert_allclose(same, img, rtol=1e-5, atol=1e-7)
    draws = [backgrounds.sample_look(np.random.default_rng(i)) for i in range(50)]
    assert all(0.15 <= d["saturation"] <= 0.6 and 0.6 <= d["contrast"] <= 1.0 for d in draws)


def test_version_3_denoises_and_mutes_and_version_2_does_not(gen2, gen3, monkeypatch):
    calls = {"denoise": 0, "mute": 0}
    real_denoise, real_mute = denoise.denoise, backgrounds.mute

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(denoise, "denoise", counting("denoise", real_denoise))
    monkeypatch.setattr(backgrounds, "mute", counting("mute", real_mute))
    s2 = gen2.sample(5, 0)
    assert calls == {"denoise": 0, "mute": 0}
    assert "denoise" not in s2["timings"]
    for i in range(3):
        gen3.sample(5, i)
    assert calls["denoise"] == 3
    users = sum(gen3.params(5, i)["background"]["kind"] == "user" for i in range(3))
    assert calls["mute"] == 3 - users


def test_version_3_hair_is_rougher_and_version_2_hair_is_not(gen2, gen3):
    from monohead.synth.generator import HAIR_ROUGHNESS_V3

    p3, p2 = gen3.params(6, 2), gen2.params(6, 2)
    h3 = gen3.scene_arrays(p3).materials["hair"]
    h2 = gen2.scene_arrays(p2).materials["hair"]
    for key in ("longitudinal_roughness", "azimuthal_roughness"):
        assert h2[key] == p2["hair"][key]
        assert h3[key] == pytest.approx(min(p3["hair"][key] + HAIR_ROUGHNESS_V3, 0.9))


def test_warm_skin_tone_moves_hue_toward_photos_and_keeps_value():
    import colorsys

    from monohead.synth import textures

    tones = textures.SKIN_TONES / 255.0
    warm = textures.warm_skin_tone(tones)
    for a, b in zip(tones, warm, strict=True):
        ha, sa, va = colorsys.rgb_to_hsv(*a)
        hb, sb, vb = colorsys.rgb_to_hsv(*b)
        assert vb == pytest.approx(va, abs=1e-9)
        assert sb == pytest.approx(sa + 0.12 * (1 - sa), abs=1e-9)
        assert abs(hb * 360 - textures.WARM_HUE) == pytest.approx(0.4 * abs(ha * 360 - textures.WARM_HUE), abs=1e-6)
    assert not np.allclose(warm, tones)


def test_version_3_skin_is_warmer_than_version_2(gen2, gen3):
    p3, p2 = gen3.params(8, 0), gen2.params(8, 0)
    assert p3["skin"] == p2["skin"]
    a3 = gen3.scene_arrays(p3).skin_albedo
    a2 = gen2.scene_arrays(p2).skin_albedo
    face = gen3.renderer.space.masks["cheeks"] > 0.5
    r3, g3 = a3[face, 0].mean(), a3[face, 1].mean()
    r2, g2 = a2[face, 0].mean(), a2[face, 1].mean()
    assert r3 / g3 > r2 / g2 * 1.05


def test_version_2_params_stay_pinned(gen2):
    """Version 2's random parameters (what a version-2 data set regenerated from its seeds
    draws) stay those of the version-2 data sets already made, whatever version 3 adds: pinned
    by hash (JSON, sorted keys) for samples 0-3 of seed 22 at 64²."""
    import hashlib
    import json

    got = [hashlib.sha256(json.dumps(gen2.params(22, i), sort_keys=True).encode()).hexdigest()[:16] for i in range(4)]
    assert got == ["22a394afe9245fc7", "ccd58e45a744cbf9", "f9edf1140d5135d3", "2807dc5054f8ac0d"]
