"""monohead.head_calibration: the learned correction of the complete head's identity and scale."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from monohead import head_calibration as hc
from monohead.model.weights import CARD_FILE, WEIGHTS_DIR

K, E = 12, 4
F = K + E + len(hc.FEATURE_POSE)


def _fits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic fits of known identity: the fitted identity is the truth, scaled by 0.6 plus
    noise twice as large as its signal in the last modes; the fitted log scale is 2 % low plus
    noise."""
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, K))
    noise = np.linspace(0.3, 2.0, K)
    X = np.zeros((n, F))
    X[:, :K] = 0.6 * Y + noise * rng.standard_normal((n, K))
    X[:, K : K + E] = rng.uniform(0, 1, (n, E))
    log_true = np.log(3.0) + 0.05 * rng.standard_normal(n)
    X[:, K + E] = log_true - 0.02 + 0.01 * rng.standard_normal(n)  # log scale
    X[:, K + E + 1 :] = rng.standard_normal((n, F - K - E - 1))
    return X, Y, log_true - X[:, K + E]


def _fit_record(x: np.ndarray, camera=None) -> SimpleNamespace:
    """An object with a HeadFit's fields whose features() are ``x`` (pose features ignored)."""
    return SimpleNamespace(
        identity=x[:K], expression=x[K : K + E], scale=float(np.exp(x[K + E])), rotation=np.eye(3), rms=0.5,
        inliers=0.9, mask_pixels=4000, depth_scale=1.0, converged=True, camera=camera,
        params=lambda: {"yaw_pitch_roll": [0.0, 0.0, 0.0]},
    )  # fmt: skip


def test_learned_map_lowers_the_identity_and_scale_errors() -> None:
    X, Y, r = _fits(400, 0)
    cal, report = hc.learn_mode(X, Y, r, alphas=(0.01, 0.1, 1.0))
    Xt, Yt, rt = _fits(400, 1)  # new samples
    pred = np.array([cal.apply(x)[0] for x in Xt])
    factor = np.array([cal.apply(x)[1] for x in Xt])
    err = np.mean(np.sum((pred - Yt) ** 2, axis=1))
    err_fitted = np.mean(np.sum((Xt[:, :K] - Yt) ** 2, axis=1))
    err_zero = np.mean(np.sum(Yt**2, axis=1))
    assert err < 0.75 * err_zero
    assert err < 0.5 * err_fitted
    # the noisier modes are shrunk more
    assert cal.A.shape == (len(cal.columns), K)
    assert report["chosen"]["identity_error"] < report["identity"]["zero alpha=0"]
    # the scale's 2 % bias is learned: the calibrated log scale is closer to the truth
    assert np.mean((np.log(factor) - rt) ** 2) < 0.5 * np.mean(rt**2)
    assert abs(cal.scale_bias - 0.02) < 0.005


def test_metric_weights_the_modes() -> None:
    X, Y, r = _fits(200, 2)
    G = np.diag(np.r_[np.full(K - 1, 1e-6), 1.0])  # only the last (noisiest) mode counts
    _, report = hc.learn_mode(X, Y, r, metric=G, alphas=(0.1,))
    assert report["fitted_identity"] == pytest.approx(np.mean((X[:, K - 1] - Y[:, K - 1]) ** 2), rel=0.01)


def test_learn_mode_checks_its_input() -> None:
    X, Y, r = _fits(40, 3)
    with pytest.raises(ValueError, match="X must be"):
        hc.learn_mode(X[:, : K - 1], Y, r)
    with pytest.raises(ValueError, match="finite"):
        hc.learn_mode(np.where(X == X[0, 0], np.nan, X), Y, r)
    with pytest.raises(ValueError, match="at least 10 samples"):
        hc.learn_mode(X[:6], Y[:6], r[:6])


def test_save_load_round_trip_and_camera_modes(tmp_path) -> None:
    X, Y, r = _fits(200, 4)
    ortho, _ = hc.learn_mode(X, Y, r, alphas=(0.1,))
    persp, _ = hc.learn_mode(X, Y * 0.5, r, alphas=(0.1,))
    cal = hc.IdentityCalibration({"orthographic": ortho, "perspective": persp}, "ab" * 32, {"sources": []})
    cal.save(tmp_path / "c.npz")
    back = hc.IdentityCalibration.load(tmp_path / "c.npz")
    assert back.weights_sha256 == "ab" * 32
    for camera, mode in ((None, ortho), (np.eye(3), persp)):
        y, f = back.apply(_fit_record(X[0], camera))
        y0, f0 = mode.apply(hc.features(_fit_record(X[0]), K))
        np.testing.assert_allclose(y, y0, rtol=1e-5, atol=1e-5)
        assert f == pytest.approx(f0, rel=1e-5)
    assert not np.allclose(back.apply(_fit_record(X[0]))[0], back.apply(_fit_record(X[0], np.eye(3)))[0])
    with pytest.raises(ValueError, match="fits of 12 identity modes; this one has 11"):
        back.apply(SimpleNamespace(**{**vars(_fit_record(X[0])), "identity": X[0, : K - 1]}))
    assert back.expression_prior is None  # not recorded: applies to fits of any prior
    hc.IdentityCalibration({"orthographic": ortho}, "ab" * 32, expression_prior=64.0).save(tmp_path / "p.npz")
    assert hc.IdentityCalibration.load(tmp_path / "p.npz").expression_prior == 64.0
    # a file of before the record (no key in its header) was learned at the default then, 0.5
    with np.load(tmp_path / "p.npz") as z:
        arrays = {k: z[k] for k in z.files}
    head = json.loads(str(arrays["header"]))
    del head["expression_prior"]
    arrays["header"] = np.array(json.dumps(head))
    np.savez(tmp_path / "legacy.npz", **arrays)
    assert hc.IdentityCalibration.load(tmp_path / "legacy.npz").expression_prior == hc.LEGACY_EXPRESSION_PRIOR == 0.5
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an identity calibration"):
        hc.IdentityCalibration.load(tmp_path / "other.npz")


def test_expression_scale_shrinks_noisy_weights_and_keeps_read_ones() -> None:
    """``learn_expression_scale``: a weight fitted as twice its truth gets a factor of about
    one half, one fitted as pure noise about zero, one fitted exactly one; the scaled weights
    beat both the fitted ones and the neutral face in cross-validation."""
    rng = np.random.default_rng(8)
    n = 600
    T = rng.uniform(0, 0.5, (n, 3)) * (rng.random((n, 3)) < 0.4)
    T[:, 1] = 0.05 * (rng.random(n) < 0.1)  # a weight rarely used, which the fit reads as noise
    Fw = np.column_stack([2.0 * T[:, 0], rng.uniform(0, 0.3, n), T[:, 2]])
    a, report = hc.learn_expression_scale(Fw, T)
    assert a[0] == pytest.approx(0.5, abs=1e-9)
    assert a[1] < 0.1
    assert a[2] == pytest.approx(1.0)
    assert report["samples"] == n
    assert report["mse_scaled"] < report["mse_fitted"]
    assert report["mse_scaled"] < report["mse_neutral"]
    # factors stay in [0, 1] (a weight fitted at a third of its truth, or negated); 0 for a
    # weight never fitted
    b, _ = hc.learn_expression_scale(np.column_stack([T[:, 0] / 3, -T[:, 1], np.zeros(n)]), T)
    np.testing.assert_array_equal(b, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"fitted and true must both be \(n, E\)"):
        hc.learn_expression_scale(Fw, T[:, :2])
    with pytest.raises(ValueError, match="finite"):
        hc.learn_expression_scale(np.full((20, 3), np.nan), np.zeros((20, 3)))
    with pytest.raises(ValueError, match="at least 10 samples"):
        hc.learn_expression_scale(Fw[:9], T[:9])


def test_expression_scale_round_trip_and_application(tmp_path) -> None:
    """A map with expression factors saves and loads them and applies them to a fit's weights
    (clipped to [0, 1]); a map without them (files of before) leaves the expression alone."""
    from dataclasses import replace

    X, Y, r = _fits(200, 6)
    mode, _ = hc.learn_mode(X, Y, r, alphas=(0.1,))
    scaled = replace(mode, expression_scale=np.array([0.5, 0.0, 1.0, 1.0]))
    hc.IdentityCalibration({"orthographic": scaled, "perspective": mode}, "ab" * 32).save(tmp_path / "c.npz")
    back = hc.IdentityCalibration.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.modes["orthographic"].expression_scale, [0.5, 0.0, 1.0, 1.0])
    assert back.modes["perspective"].expression_scale is None
    rec = _fit_record(X[0])
    rec.expression = np.array([0.8, 0.6, 0.3, 1.0])
    np.testing.assert_allclose(back.expression(rec), [0.4, 0.0, 0.3, 1.0])
    assert back.expression(_fit_record(X[0], np.eye(3))) is None  # perspective: no factors
    rec.expression = np.array([0.8, 0.6, 0.3])  # another expression basis: not applied
    assert back.expression(rec) is None


def test_default_calibration_refuses_other_weights(tmp_path, monkeypatch, caplog) -> None:
    X, Y, r = _fits(200, 5)
    mode, _ = hc.learn_mode(X, Y, r, alphas=(0.1,))
    f = tmp_path / "c.npz"
    hc.IdentityCalibration({"orthographic": mode}, "0" * 64).save(f)
    monkeypatch.setattr(hc, "DEFAULT_FILE", f)
    monkeypatch.setattr(hc, "_DEFAULT", {})
    with caplog.at_level(logging.WARNING, logger="monohead.head_calibration"):
        assert hc.default_calibration() is None
    assert "made for network weights 000000000000" in caplog.text


def test_shipped_calibration_provenance() -> None:
    """The shipped file: made for the shipped weights, from training seeds only, small."""
    assert hc.DEFAULT_FILE.is_file()
    assert hc.DEFAULT_FILE.stat().st_size < 300_000
    cal = hc.IdentityCalibration.load(hc.DEFAULT_FILE)
    card = json.loads((WEIGHTS_DIR / CARD_FILE).read_text())
    assert cal.weights_sha256 == card["sha256"]
    seeds = [s["seed"] for s in cal.meta["sources"]]
    assert seeds
    assert 2_000_000_000 not in seeds
    assert sum(s["samples"] for s in cal.meta["sources"]) >= 1000
    assert set(cal.modes) == set(hc.MODES) | {m + hc.LANDMARKS_SUFFIX for m in hc.MODES}
    # the landmark maps: learned with the shipped correspondence network, on samples it did not train on
    import hashlib

    from monohead.model.canonical import CANONICAL_CARD, CANONICAL_FILE

    canon_sha = hashlib.sha256((WEIGHTS_DIR / CANONICAL_FILE).read_bytes()).hexdigest()
    trained = json.loads((WEIGHTS_DIR / CANONICAL_CARD).read_text())["training"]["train_sets"]
    with_lm = [s for s in cal.meta["sources"] if s.get("canonical_sha256")]
    assert sum(s["samples"] for s in with_lm) >= 1000
    for s in with_lm:
        assert s["canonical_sha256"] == canon_sha
        for t in trained:
            if t["seed"] == s["seed"]:
                assert s["first"] >= t["first"] + t["count"], (s, t)
    for m in cal.modes.values():
        assert m.A.shape == (m.columns.size, 100)
        assert m.y_mean.shape == (100,)
        assert m.columns.max() < 100 + 53 + len(hc.FEATURE_POSE)
        assert np.isfinite(m.A).all()
        assert abs(m.scale_bias) < 0.1
        # expression factors, in [0, 1], with the jaw's about a half (README, "A complete head")
        assert m.expression_scale is not None
        assert m.expression_scale.shape == (53,)
        assert ((m.expression_scale >= 0) & (m.expression_scale <= 1)).all()
    assert "make_identity_calibration.py" in cal.meta["command"]
    for report in cal.meta["cross_validation"].values():
        assert report["expression"]["mse_scaled"] < report["expression"]["mse_fitted"]
        assert report["expression"]["mse_scaled"] < report["expression"]["mse_neutral"]
    assert hc.default_calibration() is not None
    # learned on fits of the default expression prior, so the default fits use it
    from monohead.fullhead import FitSettings

    assert cal.expression_prior == FitSettings().expression_prior


def test_complete_head_fit_works_without_torch() -> None:
    """torch is needed by the network only: fit_head, with the shipped calibration on (the
    default), reads the weights' model card without importing monohead.model."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError("No module named 'torch'")

        sys.meta_path.insert(0, NoTorch())
        from monohead import fullhead, integrate
        from monohead.integration import surfaces

        s = surfaces.head(96)
        fit = fullhead.fit_head(integrate(s.normals, s.W, 0.1, s.mask), s.normals, s.mask, s.W)
        assert "torch" not in sys.modules
        print("calibrated", fit.calibrated)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "calibrated True" in out.stdout
