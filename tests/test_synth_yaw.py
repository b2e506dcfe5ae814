"""The yaw range options (``max_yaw``, ``min_yaw``; ``monohead synth --max-yaw --min-yaw``) of
generator versions 2 and 3.

The default (75°) must leave every sample of every version exactly as it was before the option
existed; a wider range is recorded in the data set's manifest and kept on resume.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil

import numpy as np
import pytest

from monohead import cli
from monohead.synth import SyntheticHeads, check, generate, regenerate, scene
from monohead.synth.generator import Generator, sample_params

# Known-good reference: computed with the code *before* the option existed (main at 9b56fea,
# 2026-11-30), by a script that made Generator(32, spp=2, version=v), took params(5, i) and
# render(params), and hashed them as _params_hash and _sample_hash below (first 16 hex digits of
# SHA-256). Run twice there, in two processes, with the same result. The rendered hashes hold for
# the packages of the manifest's RENDER_PACKAGES at that time (numpy, scipy, Mitsuba, Dr.Jit) on
# the CPU (LLVM) variant: if one of those is upgraded, recompute them on the commit before the
# change being tested, never from the code under test.
REFERENCE = {
    (1, 0): (21.63930518618676, "84192e545b7b8507", "a5cbd29e4882db5b"),
    (1, 7): (1.2664639814033478, "431ef4b362730de0", "20edca1d118e6328"),
    (1, 23): (-33.121192472796025, "8455f1308766bb10", "5b2122a8eabb2e85"),
    (2, 0): (21.63930518618676, "3c78924191536148", "7b698655919e6b82"),
    (2, 7): (1.2664639814033478, "91e3ec8657e4e08a", "b0f67ccf5da31d5e"),
    (2, 23): (-33.121192472796025, "eb09acb64c2cbeed", "70c018e2a6486f89"),
    (3, 0): (21.63930518618676, "8e5f2c62ce50b164", "5ccdc12bc791f24d"),
    (3, 7): (1.2664639814033478, "a99c3d4a145334ce", "f0bc784cf4adfff6"),
    (3, 23): (-33.121192472796025, "a600d1d6acbe0790", "c2090469526b8043"),
}

SETTINGS = {"size": 32, "spp": 2, "shard_size": 1, "seed": 3}


def _params_hash(p: dict) -> str:
    return hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()[:16]


def _sample_hash(s: dict) -> str:
    h = hashlib.sha256()
    for k in ("image", "normals", "depth", "W", "mask"):
        h.update(np.ascontiguousarray(s[k]).tobytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def gens() -> dict[int, Generator]:
    g1 = Generator(32, spp=2, version=1)
    return {
        1: g1,
        2: Generator(32, spp=2, version=2, head_model=g1.model),
        3: Generator(32, spp=2, version=3, head_model=g1.model),
    }


@pytest.mark.parametrize("version", [1, 2, 3])
def test_the_default_range_gives_every_sample_as_before(gens, version):
    gen = gens[version]
    assert gen.max_yaw == 75.0
    assert gen.min_yaw == 0.0
    for (v, i), (yaw, ph, sh) in REFERENCE.items():
        if v != version:
            continue
        p = gen.params(5, i)
        assert p["pose"]["yaw"] == yaw, (v, i)
        assert _params_hash(p) == ph, (v, i)
        assert _sample_hash(gen.render(p)) == sh, (v, i)
        # the default given explicitly, as an int or a float, is the same draw
        assert sample_params(5, i, gen.model, gen.size, version, 75, 0) == sample_params(
            5, i, gen.model, gen.size, version
        )


def test_a_wider_range_changes_only_the_yaw(gens):
    gen = gens[2]
    wide = Generator(32, spp=2, version=2, head_model=gen.model, max_yaw=90)
    assert wide.max_yaw == 90.0
    assert wide.settings()["max_yaw"] == 90.0
    assert gen.settings()["max_yaw"] == 75.0
    assert gen.settings()["min_yaw"] == 0.0
    assert "max_yaw" not in gens[1].settings()
    assert "min_yaw" not in gens[1].settings()
    for i in (0, 7, 23):
        a, b = gen.params(5, i), wide.params(5, i)
        # uniform(-m, m) = -m + 2 m u with the same u: the yaw scales by 90 / 75
        assert b["pose"]["yaw"] == pytest.approx(a["pose"]["yaw"] * 1.2, abs=1e-9)
        assert b["pose"]["yaw"] != a["pose"]["yaw"]
        # the body turns with the head (a share of its yaw plus its own noise); nothing else moves
        # the body turns by a share (0.1 to 0.7) of the head's yaw plus noise of its own
        share = (b["body"]["yaw"] - a["body"]["yaw"]) / (b["pose"]["yaw"] - a["pose"]["yaw"])
        assert 0.1 <= share <= 0.7
        rest_a = {k: v for k, v in a.items() if k not in ("pose", "body")}
        rest_b = {k: v for k, v in b.items() if k not in ("pose", "body")}
        assert rest_a == rest_b
        assert {k: v for k, v in a["pose"].items() if k != "yaw"} == {k: v for k, v in b["pose"].items() if k != "yaw"}
        assert {k: v for k, v in a["body"].items() if k != "yaw"} == {k: v for k, v in b["body"].items() if k != "yaw"}


def test_a_smallest_yaw_gives_profiles_only(gens):
    gen = gens[3]
    prof = Generator(32, spp=2, version=3, head_model=gen.model, max_yaw=90, min_yaw=70)
    assert prof.settings()["min_yaw"] == 70.0
    for i in (0, 7, 23):
        a, b = gen.params(5, i), prof.params(5, i)
        assert 70.0 <= abs(b["pose"]["yaw"]) <= 90.0
        # one draw from the pose stream all the same: u = yaw / 75 for the default range
        u = a["pose"]["yaw"] / 75.0
        assert b["pose"]["yaw"] == pytest.approx(np.copysign(70.0 + 20.0 * abs(u), u), abs=1e-9)
        assert {k: v for k, v in a.items() if k not in ("pose", "body")} == {
            k: v for k, v in b.items() if k not in ("pose", "body")
        }
        assert {k: v for k, v in a["pose"].items() if k != "yaw"} == {k: v for k, v in b["pose"].items() if k != "yaw"}
    rng = np.random.default_rng(1)
    yaws = np.array([scene.sample_pose(rng, 64, 90.0, 70.0)["yaw"] for _ in range(2000)])
    assert np.abs(yaws).min() >= 70.0
    assert np.abs(yaws).max() <= 90.0
    assert abs(np.mean(yaws > 0) - 0.5) < 0.05  # either side alike
    assert abs(np.mean(np.abs(yaws) > 80.0) - 0.5) < 0.05  # uniform in |yaw|


def test_sample_pose_is_uniform_in_the_range():
    rng = np.random.default_rng(0)
    yaws = np.array([scene.sample_pose(rng, 64, 90.0)["yaw"] for _ in range(3000)])
    assert np.abs(yaws).max() <= 90.0
    assert np.abs(yaws).max() > 89.0
    past = np.mean(np.abs(yaws) > 75.0)
    assert abs(past - 1 / 6) < 0.03  # a sixth of the samples past the old range
    rng = np.random.default_rng(0)
    narrow = np.array([scene.sample_pose(rng, 64, 10)["yaw"] for _ in range(200)])
    assert np.abs(narrow).max() <= 10.0


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, ValueError, r"max_yaw must be in \(0, 100\] degrees; got 0"),
        (-30.0, ValueError, r"max_yaw must be in \(0, 100\]"),
        (100.5, ValueError, r"max_yaw must be in \(0, 100\] degrees; got 100.5"),
        (float("nan"), ValueError, r"max_yaw must be in \(0, 100\]"),
        (float("inf"), ValueError, r"max_yaw must be in \(0, 100\]"),
        ("90", TypeError, r"max_yaw must be a number of degrees; got str"),
        (True, TypeError, r"max_yaw must be a number of degrees; got bool"),
        (None, TypeError, r"max_yaw must be a number of degrees; got NoneType"),
    ],
)
def test_bad_ranges_are_refused(gens, value, error, match):
    with pytest.raises(error, match=match):
        Generator(32, version=2, head_model=gens[1].model, max_yaw=value)
    with pytest.raises(error, match=match):
        scene.sample_pose(np.random.default_rng(0), 32, value)
    if value is not None:
        with pytest.raises(error, match=match):
            generate("/nonexistent/never-made", 1, max_yaw=value)


@pytest.mark.parametrize(
    ("value", "top", "error", "match"),
    [
        (-1.0, 75.0, ValueError, r"min_yaw must be in \[0, max_yaw\) = \[0, 75\) degrees; got -1.0"),
        (75, 75.0, ValueError, r"min_yaw must be in \[0, max_yaw\) = \[0, 75\) degrees; got 75"),
        (90.0, 90.0, ValueError, r"= \[0, 90\) degrees; got 90.0"),
        (float("nan"), 90.0, ValueError, r"min_yaw must be in \[0, max_yaw\)"),
        ("70", 90.0, TypeError, r"min_yaw must be a number of degrees; got str"),
        (False, 90.0, TypeError, r"min_yaw must be a number of degrees; got bool"),
    ],
)
def test_bad_smallest_yaws_are_refused(gens, value, top, error, match):
    with pytest.raises(error, match=match):
        Generator(32, version=3, head_model=gens[1].model, max_yaw=top, min_yaw=value)
    with pytest.raises(error, match=match):
        scene.sample_pose(np.random.default_rng(0), 32, top, value)
    with pytest.raises(error, match=match):
        generate("/nonexistent/never-made", 1, max_yaw=top, min_yaw=value)


def test_version_1_has_only_the_default(gens):
    with pytest.raises(ValueError, match="max_yaw is an option of generator versions 2 and 3; version 1 has 75 only"):
        Generator(32, version=1, head_model=gens[1].model, max_yaw=90)
    with pytest.raises(ValueError, match="version 1 has 75 only; got 60"):
        sample_params(0, 0, gens[1].model, (32, 32), version=1, max_yaw=60)
    with pytest.raises(ValueError, match="version 1 has 75 only"):
        generate("/nonexistent/never-made", 1, generator_version=1, max_yaw=90)
    with pytest.raises(ValueError, match="min_yaw is an option of generator versions 2 and 3; version 1 has 0 only"):
        Generator(32, version=1, head_model=gens[1].model, min_yaw=10)
    assert Generator(32, version=1, head_model=gens[1].model, max_yaw=75).max_yaw == 75.0


def test_ground_truth_at_and_past_the_profile(gens):
    """N, depth and mask of heads turned 80-100° agree with the ray-cast oracle, and N with
    the depth's finite differences (a larger version-3 head, so that the profile has pixels)."""
    gen = Generator(64, spp=2, version=3, head_model=gens[1].model, max_yaw=100)
    for i, yaw in enumerate((80.0, -90.0, 100.0)):
        p = copy.deepcopy(gen.params(12, i))
        p["pose"]["yaw"] = yaw
        s = gen.render(p)
        assert s["mask"].sum() > 300, yaw
        c = check.compare_ground_truth(s, check.raycast_sample(gen, p))
        assert c["mean_angle"] < 0.05, (yaw, c)
        assert c["mask_diff_interior"] == 0, (yaw, c)
        assert c["depth_max"] < 1.0, (yaw, c)
        fd = check.finite_difference_agreement(s["normals"], s["depth"], s["mask"], camera=p["camera"])
        assert fd["pixels"] > 50, (yaw, fd)
        assert fd["mean"] < 6.0, (yaw, fd)
        assert np.all(np.isfinite(s["W"]))
        assert np.all(s["W"] >= 0)
        assert np.all(s["W"][~s["mask"]] == 0)


def test_the_range_is_in_the_manifest_and_kept_on_resume(tmp_path, capsys):
    root = tmp_path / "wide"
    r = generate(root, 2, max_yaw=90, min_yaw=60, preview=False, **SETTINGS)
    assert r["generated"] == 2
    man = json.loads((root / "manifest.json").read_text())
    assert (man["settings"]["max_yaw"], man["settings"]["min_yaw"]) == (90.0, 60.0)
    ds = SyntheticHeads(root)
    wide = Generator(32, spp=2, version=3, max_yaw=90, min_yaw=60)
    for i in range(2):
        assert ds[i]["params"] == wide.params(3, i)
    again = regenerate(root, 1)  # from the manifest: the same range
    np.testing.assert_array_equal(again["normals"], ds[1]["normals"])
    assert again["params"] == ds[1]["params"]
    with pytest.raises(
        ValueError,
        match=r"holds a different data set \(settings: max_yaw 90.0 there, 75.0 asked, min_yaw 60.0 there, 0.0 asked\)",
    ):
        generate(root, 2, preview=False, **SETTINGS)
    with pytest.raises(ValueError, match=r"\(settings: min_yaw 60.0 there, 0.0 asked\)"):
        generate(root, 2, max_yaw=90, preview=False, **SETTINGS)
    args = ["synth", "--count", "2", "--out", str(root), "--seed", "3", "--size", "32", "--spp", "2",
            "--shard-size", "1", "--no-preview", "--json"]  # fmt: skip
    assert cli.main([*args, "--max-yaw", "80", "--min-yaw", "60"]) == 2
    assert "max_yaw 90.0 there, 80.0 asked" in capsys.readouterr().err
    assert cli.main([*args, "--max-yaw", "90", "--min-yaw", "60"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["generated"], out["skipped"]) == (0, 2)
    for bad in ("0", "120", "nan"):
        assert cli.main([*args, "--max-yaw", bad]) == 2
        err = capsys.readouterr().err
        assert "max_yaw must be in (0, 100] degrees" in err
        assert len(err.strip().splitlines()) == 1
    assert cli.main([*args, "--min-yaw", "80"]) == 2
    assert "min_yaw must be in [0, max_yaw) = [0, 75) degrees; got 80.0" in capsys.readouterr().err
    assert cli.main([*args, "--generator-version", "1", "--max-yaw", "90"]) == 2
    assert "version 1 has 75 only" in capsys.readouterr().err


def test_a_set_made_before_the_option_resumes_with_the_default(tmp_path):
    """A manifest without ``max_yaw`` and ``min_yaw`` (version 2 and 3 sets made before the
    options) was made with ±75°: it resumes with the default, sample for sample as it was, and
    refuses another range; the manifest is not rewritten."""
    ref = tmp_path / "ref"
    generate(ref, 2, preview=False, **SETTINGS)
    made = json.loads((ref / "manifest.json").read_text())["settings"]
    assert (made["max_yaw"], made["min_yaw"]) == (75.0, 0.0)
    old = tmp_path / "old"
    shutil.copytree(ref, old)
    mpath = old / "manifest.json"
    man = json.loads(mpath.read_text())
    del man["settings"]["max_yaw"]
    del man["settings"]["min_yaw"]
    text = json.dumps(man)
    mpath.write_text(text)
    shutil.rmtree(old / "shards" / "shard-00001")
    with pytest.raises(ValueError, match=r"settings: max_yaw 75.0 there, 90.0 asked"):
        generate(old, 2, max_yaw=90, preview=False, **SETTINGS)
    with pytest.raises(ValueError, match=r"settings: min_yaw 0.0 there, 30.0 asked"):
        generate(old, 2, min_yaw=30, preview=False, **SETTINGS)
    r = generate(old, 2, preview=False, **SETTINGS)
    assert (r["generated"], r["skipped"]) == (1, 1)
    assert mpath.read_text() == text
    a, b = SyntheticHeads(ref), SyntheticHeads(old)
    for key in ("image", "normals", "depth", "W", "mask"):
        np.testing.assert_array_equal(a[1][key], b[1][key], err_msg=key)
    assert a[1]["params"] == b[1]["params"]
    assert regenerate(old, 1)["params"] == a[1]["params"]
