"""Tests of monohead.evaluate: Table 1 metrics, the robust σ of §4.2 and the λ sweep, ICP and
the mesh errors of Table 2 / eq. 9.

Known answers come from hand-built cases and literal re-statements of the paper's formulas.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import monohead
from monohead import evaluate as ev
from monohead import geometry as g

# --------------------------------------------------------------------------------------------
# Mask precision and recall.


def test_mask_precision_recall_by_hand():
    true = np.zeros((4, 4), bool)
    true[1:3, 1:3] = True
    true[0, 0] = True  # 5 true pixels
    pred = np.zeros((4, 4), bool)
    pred[1, 1:3] = True
    pred[2, 1] = True
    pred[3, 3] = True  # 4 predicted, 3 of them right
    precision, recall = ev.mask_precision_recall(pred, true)
    assert precision == pytest.approx(75.0)
    assert recall == pytest.approx(60.0)
    # 0/1 integers are accepted; a batch pools its pixels (3+5 hits / 4+5 predicted / 5+5 true).
    p2, r2 = ev.mask_precision_recall(np.stack([pred, true]).astype(np.uint8), np.stack([true, true]))
    assert p2 == pytest.approx(100 * 8 / 9)
    assert r2 == pytest.approx(100 * 8 / 10)
    assert ev.mask_precision_recall(np.zeros((4, 4), bool), true) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("pred", "true", "exc", "match"),
    [
        (np.ones((2, 2), bool), np.zeros((2, 2), bool), ValueError, "true_mask is empty"),
        (np.ones((2, 2), bool), np.ones((2, 3), bool), ValueError, r"true_mask must have shape \(2, 2\); got \(2, 3\)"),
        (np.ones((2, 2)), np.ones((2, 2), bool), TypeError, "pred_mask must be a boolean .* got dtype float64"),
        (np.full((2, 2), 2), np.ones((2, 2), bool), ValueError, "pred_mask must hold only 0 and 1; got 4 other"),
        (
            np.ones(4, bool),
            np.ones(4, bool),
            ValueError,
            r"pred_mask must have shape \(H, W\) or \(B, H, W\); got \(4,\)",
        ),
        (None, np.ones((2, 2), bool), TypeError, "pred_mask must be a boolean array; got NoneType"),
    ],
)
def test_mask_precision_recall_validation(pred, true, exc, match):
    with pytest.raises(exc, match=match):
        ev.mask_precision_recall(pred, true)


# --------------------------------------------------------------------------------------------
# Angular error.


def _rotated_about_x(n, degrees):
    t = math.radians(degrees)
    R = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
    return R @ n


# No angle sits exactly on a threshold: a rotation by 30° may come back as 29.999999999999996°.
ANGLES = [0.0, 5.0, 9.99, 10.01, 15.0, 19.5, 25.0, 29.0, 30.01, 45.0]


def _angle_maps():
    base = np.array([0.3, 0.2, 0.9])
    base /= np.linalg.norm(base)
    true = np.zeros((3, 4, 3))
    pred = np.zeros((3, 4, 3))
    mask = np.zeros((3, 4), bool)
    cells = [(r, c) for r in range(3) for c in range(4)][: len(ANGLES)]
    for (r, c), a in zip(cells, ANGLES, strict=True):
        true[r, c] = base
        pred[r, c] = 2.5 * _rotated_about_x(base, a)  # not unit: the length must not matter
        mask[r, c] = True
    # Two more pixels, outside the mask, with a huge error.
    true[2, 2:] = base
    pred[2, 2:] = -base
    return pred, true, mask


def test_angular_error_stats_by_hand():
    pred, true, mask = _angle_maps()
    # base is rotated about x, and the angle between two vectors is what a rotation of either
    # changes it by only when the axis is perpendicular; compute the true angles directly.
    expected = []
    for r, c in zip(*np.nonzero(mask), strict=True):
        a, b = pred[r, c] / np.linalg.norm(pred[r, c]), true[r, c]
        expected.append(math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b))))))
    e = np.array(expected)
    stats = ev.angular_error_stats(pred, true, mask)
    # (acos loses ~1e-6 degrees near 0°, hence the tolerance.)
    assert stats["mean"] == pytest.approx(e.mean(), abs=1e-6)
    assert stats["std"] == pytest.approx(math.sqrt(((e - e.mean()) ** 2).mean()), abs=1e-6)
    assert stats["median"] == pytest.approx(sorted(e)[4] / 2 + sorted(e)[5] / 2, abs=1e-6)
    for key, limit in (("under_10", 10), ("under_20", 20), ("under_30", 30)):
        assert stats[key] == pytest.approx(100.0 * sum(x < limit for x in e) / len(e))
    assert stats["count"] == 10


def test_angular_error_known_angles_about_a_perpendicular_axis():
    # Rotating (0, 0, 1) about x by a changes it by exactly a: 3 of the 10 are below 10°.
    true = np.zeros((1, 10, 3))
    true[..., 2] = 1.0
    pred = np.stack([_rotated_about_x(np.array([0.0, 0.0, 1.0]), a) for a in ANGLES])[None]
    err = ev.angular_error(pred, true)
    np.testing.assert_allclose(err[0], ANGLES, atol=1e-10)
    s = ev.angular_error_stats(pred, true, np.ones((1, 10), bool))
    assert s["under_10"] == pytest.approx(30.0)  # 0, 5, 9.99
    assert s["under_20"] == pytest.approx(60.0)  # + 10.01, 15, 19.5
    assert s["under_30"] == pytest.approx(80.0)  # + 25, 29
    assert s["median"] == pytest.approx((15.0 + 19.5) / 2)
    # A batch pools its pixels.
    sb = ev.angular_error_stats(np.stack([pred, pred]), np.stack([true, true]))
    assert sb["mean"] == pytest.approx(np.mean(ANGLES))
    assert sb["count"] == 20


def test_angular_error_validation():
    pred, true, mask = _angle_maps()
    with pytest.raises(ValueError, match=r"true_normals must have shape \(3, 4, 3\) like pred_normals; got \(3, 4\)"):
        ev.angular_error_stats(pred, true[..., 0], mask)
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 4\); got \(4, 3\)"):
        ev.angular_error_stats(pred, true, mask.T)
    bad = pred.copy()
    bad[0, 0] = 0.0
    with pytest.raises(ValueError, match=r"pred_normals must be non-zero inside the mask; got 1 pixel"):
        ev.angular_error_stats(bad, true, mask)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="pred_normals must be finite inside the mask; got 1 pixel"):
        ev.angular_error_stats(bad, true, mask)
    with pytest.raises(ValueError, match="mask is empty"):
        ev.angular_error_stats(pred, true, np.zeros((3, 4), bool))


# --------------------------------------------------------------------------------------------
# Robust depth error (§4.2).


def _paper_steps(err, theta=7.0):
    """Steps 2-3 of §4.2, written out with explicit sums (population statistics)."""
    err = sorted(err)
    n = len(err)
    med = err[n // 2] if n % 2 else (err[n // 2 - 1] + err[n // 2]) / 2
    near = [e for e in err if med - theta <= e <= med + theta]
    mu = sum(near) / len(near)
    sigma_m = math.sqrt(sum((e - mu) ** 2 for e in near) / len(near))
    inl = [e for e in err if med - 3 * sigma_m <= e <= med + 3 * sigma_m]
    mu2 = sum(inl) / len(inl)
    return med, sigma_m, sum((e - mu2) ** 2 for e in inl) / len(inl)


def test_robust_depth_stats_by_hand():
    # Errors 0, 1, 2, 3, 100: M = 2, window [-5, 9] keeps 0..3 (sigma_M = sqrt(1.25)); the
    # 3 sigma_M window [-1.35, 5.35] keeps the same four, so V = 1.25.
    true = np.array([[10.0, 11.0, 12.0, 13.0, 110.0, np.nan]])
    pred = np.array([[10.0, 10.0, 10.0, 10.0, 10.0, 3.0]])
    s = ev.robust_depth_stats(pred, true)
    assert s["median"] == 2.0
    assert s["sigma_m"] == pytest.approx(math.sqrt(1.25))
    assert s["variance"] == pytest.approx(1.25)
    assert s["count"] == 5
    assert s["inliers"] == 4
    np.testing.assert_array_equal(ev.depth_error_map(pred, true)[0, :5], [0, 1, 2, 3, 100])
    # A constant offset of the reconstruction (its gauge) changes M only.
    s2 = ev.robust_depth_stats(pred + 37.5, true)
    assert s2["median"] == pytest.approx(2.0 - 37.5)
    assert s2["variance"] == pytest.approx(1.25)


def test_robust_sigma_on_synthetic_errors_with_outliers():
    rng = np.random.default_rng(1)
    shape = (64, 64)
    samples, variances = [], []
    for i, noise in enumerate((1.0, 1.5, 2.0)):
        err = 4.0 * i + rng.normal(0.0, noise, shape)  # a bias per sample plus noise
        out = rng.random(shape) < 0.1
        err[out] = rng.choice([-1, 1], out.sum()) * rng.uniform(40, 200, out.sum())  # 10% gross outliers
        true = rng.normal(0, 5, shape)
        pred = true - err
        mask = np.ones(shape, bool)
        mask[:5] = False
        pred[:2] = np.nan  # outside its domain (and the mask)
        samples.append((pred, true, mask))
        variances.append(_paper_steps(list(err[mask]))[2])
    sigma = ev.robust_depth_sigma([s[0] for s in samples], [s[1] for s in samples], [s[2] for s in samples])
    assert sigma == pytest.approx(math.sqrt(sum(variances) / 3), rel=1e-12)
    # Robust: close to the noise level (sqrt of the mean noise variance ~ 1.56, slightly
    # reduced by the 3 sigma_M clipping), far from the plain std of the errors (> 30).
    assert 1.3 < sigma < 1.6
    # Arrays (N, H, W) work as well as lists; masks=None uses the finite pixels.
    preds = np.stack([s[0] for s in samples])
    trues = np.stack([s[1] for s in samples])
    sigma_nomask = ev.robust_depth_sigma(preds, trues)
    expected = math.sqrt(sum(_paper_steps(list((s[1] - s[0])[np.isfinite(s[0])]))[2] for s in samples) / 3)
    assert sigma_nomask == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: ev.robust_depth_stats(np.zeros((2, 2)), np.zeros((2, 3))),
            ValueError,
            r"true_depth must have shape \(2, 2\); got \(2, 3\)",
        ),
        (
            lambda: ev.robust_depth_stats(np.full((2, 2), np.nan), np.zeros((2, 2))),
            ValueError,
            "no finite pixel in common",
        ),
        (
            lambda: ev.robust_depth_stats(np.zeros((2, 2)), np.zeros((2, 2)), theta=0),
            ValueError,
            "theta must be a finite number > 0; got 0.0",
        ),
        (
            lambda: ev.robust_depth_stats(np.zeros((2, 2)), np.zeros((2, 2)), theta="7"),
            TypeError,
            "theta must be a real number; got str",
        ),
        (
            lambda: ev.robust_depth_sigma([np.zeros((2, 2))], [np.zeros((2, 2))] * 2),
            ValueError,
            "true_depths must hold 1 maps like pred_depths; got 2",
        ),
        (lambda: ev.robust_depth_sigma([], []), ValueError, "pred_depths is empty"),
        (
            lambda: ev.robust_depth_sigma([np.zeros((2, 2)), np.zeros(3)], [np.zeros((2, 2))] * 2),
            ValueError,
            r"sample 1: pred_depth must have shape \(H, W\); got \(3,\)",
        ),
        (
            lambda: ev.robust_depth_sigma(np.zeros((2, 2)), np.zeros((2, 2))),
            ValueError,
            r"pred_depths must be a sequence of \(H, W\) maps or an \(N, H, W\) array; got shape \(2, 2\)",
        ),
    ],
)
def test_robust_depth_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --------------------------------------------------------------------------------------------
# λ sweep and figures.


def _cliff_sample(shape=(40, 40), seed=0):
    """A bump with a partial cliff inside the mask (an ear-like flap), its true normals and W."""
    r, c = np.mgrid[: shape[0], : shape[1]].astype(float)
    x, y = c - 19.6, 20.3 - r
    mask = (x / 18.0) ** 2 + (y / 18.5) ** 2 < 1.0
    h = 10.0 * np.exp(-(x**2 + y**2) / 250.0) + 0.05 * x
    h[(x > 3) & (y > -6) & (y < 6)] += 6.0  # a step along part of the mask only
    normals = g.normals_from_depth(h, mask)
    W = g.gradient_magnitude(h, mask)
    return ev.DepthSample(normals, W, mask, np.where(mask, h, np.nan))


def _is_png(path, size=None):
    with Image.open(path) as im:
        im.load()
        return im.format == "PNG" and (size is None or im.size == size)


def test_lambda_sweep_table_matches_direct_computation_and_plots(tmp_path):
    samples = [_cliff_sample(), _cliff_sample((36, 40))]
    lams = [0.0, 0.1, 0.3]
    calls = []
    table = ev.lambda_sweep(
        samples, lams, method="direct", plot_path=tmp_path / "fig8.png", callback=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (6, 6)
    assert len(calls) == 6
    np.testing.assert_array_equal(table["lam"], lams)
    for k, lam in enumerate(lams):
        depths = [monohead.integrate(s.normals, s.weights, lam=lam, mask=s.mask, method="direct") for s in samples]
        direct = ev.robust_depth_sigma(depths, [s.true_depth for s in samples], [s.mask for s in samples])
        assert table["sigma"][k] == pytest.approx(direct, rel=1e-9)
    assert table["variance"].shape == (3, 2)
    assert table["best_sigma"] == pytest.approx(table["sigma"].min())
    assert table["best_lam"] == lams[int(np.argmin(table["sigma"]))]
    assert _is_png(tmp_path / "fig8.png", (500, 350))
    # Tuples and mappings are accepted as samples.
    s = samples[0]
    t2 = ev.lambda_sweep([tuple(s), dict(s._asdict())], [0.1], method="direct")
    assert t2["variance"][0, 0] == pytest.approx(t2["variance"][0, 1])


def test_lambda_sweep_validation(tmp_path):
    s = _cliff_sample()
    with pytest.raises(TypeError, match="samples\\[0\\] must be a DepthSample"):
        ev.lambda_sweep([42], [0.1])
    with pytest.raises(ValueError, match="samples is empty"):
        ev.lambda_sweep([], [0.1])
    with pytest.raises(ValueError, match=r"lams\[\] must be a finite number >= 0; got -0.1"):
        ev.lambda_sweep([s], [-0.1])
    with pytest.raises(ValueError, match="method must be one of"):
        ev.lambda_sweep([s], [0.1], method="cg")
    with pytest.raises(ValueError, match="lacks key"):
        ev.lambda_sweep([{"normals": s.normals}], [0.1])
    with pytest.raises(TypeError, match="table must be a mapping"):
        ev.plot_lambda_sweep([1, 2], tmp_path / "x.png")


def test_plot_depth_comparison(tmp_path):
    s = _cliff_sample()
    depth = monohead.integrate(s.normals, s.weights, lam=0.1, mask=s.mask, method="direct")
    stats = ev.plot_depth_comparison(s.true_depth, depth, tmp_path / "fig6.png")
    assert stats == ev.robust_depth_stats(depth, s.true_depth)
    assert _is_png(tmp_path / "fig6.png", (1200, 340))
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        ev.plot_depth_comparison(s.true_depth, depth, tmp_path / "f.png", bins=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig6.png"]


def test_imports_stay_light_and_plots_never_touch_pyplot(tmp_path):
    # In a fresh interpreter: importing the toolkit imports neither matplotlib nor trimesh, and
    # drawing a figure uses the Agg canvas without pyplot (no global figure state).
    code = (
        "import sys, monohead.geometry, monohead.evaluate as ev\n"
        "assert 'matplotlib' not in sys.modules and 'trimesh' not in sys.modules\n"
        f"ev.plot_lambda_sweep({{'lam': [0, 0.1], 'sigma': [2.0, 1.5]}}, {str(tmp_path / 'f.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    assert _is_png(tmp_path / "f.png")


# --------------------------------------------------------------------------------------------
# ICP.


def _rotation(axis, degrees):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = math.radians(degrees)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def _scan(shape=(48, 48)):
    """A scanned-like surface: a depth-map mesh of an asymmetric head-like bump with a nose."""
    r, c = np.mgrid[: shape[0], : shape[1]].astype(float)
    x, y = c - 23.4, 24.1 - r
    mask = (x / 21.0) ** 2 + (y / 23.0) ** 2 < 1.0
    h = (
        10 * np.exp(-((x + 4) ** 2 / 220 + (y - 2) ** 2 / 380))
        + 5 * np.exp(-((x - 3) ** 2 / 15 + (y + 2) ** 2 / 30))
        + 0.1 * x
    )
    return g.depth_to_mesh(h, mask)


def _inverse(R, t):
    T = np.eye(4)
    T[:3, :3] = R.T
    T[:3, 3] = -R.T @ t
    return T


def test_icp_recovers_a_known_rigid_motion():
    target = _scan()
    V = np.asarray(target.vertices)
    R0, t0 = _rotation([0.3, 1.0, 0.2], 10.0), np.array([3.0, -2.0, 5.0])
    source = V @ R0.T + t0
    res = ev.icp(source, target)
    assert res.converged
    np.testing.assert_allclose(res.transform, _inverse(R0, t0), atol=1e-6)
    np.testing.assert_allclose(ev.apply_transform(res.transform, source), V, atol=1e-6)
    assert res.rms < 1e-6
    R = res.transform[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_icp_on_noisy_points_stops_at_the_noise_floor():
    # With noise the correspondences keep switching faces and the update never vanishes: the
    # RMS rule stops ICP, at a fit at least as good as the true motion's.
    target = _scan()
    V = np.asarray(target.vertices)
    R0, t0 = _rotation([0.3, 1.0, 0.2], 10.0), np.array([3.0, -2.0, 5.0])
    source = (V + np.random.default_rng(1).normal(0, 0.3, V.shape)) @ R0.T + t0
    res = ev.icp(source, target)
    assert res.converged
    assert res.iterations <= 10
    truth = _inverse(R0, t0)
    rms_truth = math.sqrt(np.mean(g.closest_points(ev.apply_transform(truth, source), target)[1] ** 2))
    assert res.rms <= rms_truth
    angle = math.degrees(math.acos(min(1.0, (np.trace(res.transform[:3, :3] @ R0) - 1) / 2)))
    assert angle < 1.0


def test_icp_with_landmarks_and_trimming():
    target = _scan()
    V = np.asarray(target.vertices)
    R0, t0 = _rotation([1.0, -0.5, 0.3], 75.0), np.array([-20.0, 4.0, 9.0])
    source = V @ R0.T + t0
    idx = np.array([10, 400, 800, 1200, 1500])
    res = ev.icp(source, target, landmarks=np.column_stack([idx, idx]))
    np.testing.assert_allclose(res.transform, _inverse(R0, t0), atol=1e-6)
    # 10% far outliers added to the source: trimmed ICP ignores them.
    rng = np.random.default_rng(5)
    outliers = rng.uniform(-30, 30, (len(V) // 10, 3)) + np.array([0, 0, 60.0])
    noisy = np.vstack([V @ _rotation([0, 1, 0], 5.0).T + 1.0, outliers])
    res2 = ev.icp(noisy, target, init="identity", trim=0.15)
    expected = _inverse(_rotation([0, 1, 0], 5.0), np.ones(3))
    np.testing.assert_allclose(res2.transform, expected, atol=1e-6)
    res3 = ev.icp(noisy, target, init=np.eye(4), max_distance=10.0)
    np.testing.assert_allclose(res3.transform, expected, atol=1e-6)


def test_kabsch_exact_and_proper():
    rng = np.random.default_rng(2)
    P = rng.normal(size=(20, 3))
    R0, t0 = _rotation([1, 2, 3], 123.0), np.array([1.0, -2.0, 0.5])
    T = ev.kabsch(P, P @ R0.T + t0)
    np.testing.assert_allclose(T[:3, :3], R0, atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], t0, atol=1e-12)
    # A mirrored target: the best *proper* rotation, never a reflection.
    T2 = ev.kabsch(P, P * np.array([1, 1, -1]))
    assert np.linalg.det(T2[:3, :3]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"init": "magic"}, ValueError, "init must be 'centroid', 'landmarks', 'identity' or a"),
        ({"init": "landmarks"}, ValueError, "landmarks must be given exactly when init is 'landmarks'"),
        ({"landmarks": [[0, 0], [1, 1]]}, ValueError, r"landmarks must be a \(K, 2\) integer array"),
        ({"landmarks": [[0, 0], [1, 1], [2, 99999]]}, ValueError, r"landmarks\[:, 1\] must index target_mesh.vertices"),
        ({"init": np.diag([2.0, 1, 1, 1])}, ValueError, "init must hold a rotation"),
        ({"trim": 1.0}, ValueError, r"trim must be in \[0, 1\); got 1.0"),
        ({"max_distance": -1}, ValueError, "max_distance must be a finite number > 0"),
        ({"max_iterations": 0}, ValueError, "max_iterations must be >= 1; got 0"),
        ({"rms_tol": 2.0}, ValueError, r"rms_tol must be in \[0, 1\); got 2.0"),
        ({"tol": 0}, ValueError, "tol must be a finite number > 0; got 0.0"),
        ({"max_distance": 1e-9, "init": "identity"}, ValueError, "icp kept only"),
    ],
)
def test_icp_validation(kwargs, exc, match):
    target = _scan((16, 16))
    source = np.asarray(target.vertices) + np.array([5.0, 0, 0])
    with pytest.raises(exc, match=match):
        ev.icp(source, target, **kwargs)


def test_icp_rejects_bad_points():
    target = _scan((16, 16))
    with pytest.raises(ValueError, match=r"source_vertices must have shape \(V, 3\); got \(5, 2\)"):
        ev.icp(np.zeros((5, 2)), target)
    with pytest.raises(ValueError, match="source_vertices must hold at least 3 point"):
        ev.icp(np.zeros((2, 3)), target)
    with pytest.raises(TypeError, match="target_mesh must be a trimesh.Trimesh or a"):
        ev.icp(np.zeros((5, 3)), "mesh.ply")


# --------------------------------------------------------------------------------------------
# Mesh errors (Table 2) and eq. 9.


def _plane(n=21):
    r, c = np.mgrid[:n, :n].astype(float)
    return g.depth_to_mesh(np.zeros((n, n)))


def test_mesh_errors_distances_by_hand():
    gt = _plane()  # z = 0 over x in [0, 20], y in [-20, 0]; normals +z
    heights = np.arange(11.0) - 3.0  # -3..7 above points inside the square
    pred = np.column_stack([np.linspace(2.2, 17.7, 11), -np.linspace(3.1, 16.4, 11), heights])
    out = ev.mesh_errors(pred, gt, align=False)
    d = np.abs(heights)  # 3 2 1 0 1 2 3 4 5 6 7
    assert out["mean"] == pytest.approx(d.sum() / 11)
    assert out["std"] == pytest.approx(math.sqrt(((d - d.sum() / 11) ** 2).sum() / 11))
    assert out["median"] == pytest.approx(3.0)  # sorted: 0 1 1 2 2 3 3 4 5 6 7
    assert out["p90"] == pytest.approx(6.0)  # 90th percentile: rank 0.9 * 10 = 9 -> 6
    # Signed normal-projected errors are the heights.
    assert out["e_bar"] == pytest.approx(heights.mean())
    assert out["sigma"] == pytest.approx(math.sqrt(((heights - heights.mean()) ** 2).sum() / 10))
    surf = ev.mesh_errors(pred, gt, align=False, correspondence="surface")
    assert surf["e_bar"] == pytest.approx(heights.mean())


def _eq9_direct(pred_vertices, gt_vertices, gt_faces):
    """Eq. 9 literally: nearest GT vertex by brute force, its eq.-2 normal, signed projection."""
    # Angle-weighted vertex normals, one vertex at a time.
    normals = np.zeros_like(gt_vertices)
    for f in gt_faces:
        for k in range(3):
            p, qa, qb = gt_vertices[f[k]], gt_vertices[f[(k + 1) % 3]], gt_vertices[f[(k + 2) % 3]]
            a, b = qa - p, qb - p
            cr = np.cross(a, b)
            w = math.acos(float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))
            normals[f[k]] += w * cr / np.linalg.norm(cr)
    used = np.linalg.norm(normals, axis=1) > 0  # vertices in no face have no normal
    normals[used] /= np.linalg.norm(normals[used], axis=1, keepdims=True)
    e = []
    for a in pred_vertices:
        d2 = np.where(used, ((gt_vertices - a) ** 2).sum(axis=1), np.inf)
        j = int(np.argmin(d2))
        e.append(float((a - gt_vertices[j]) @ normals[j]))
    M = len(e)
    e_bar = sum(e) / M
    V = sum((x - e_bar) ** 2 for x in e) / (M - 1)
    return e_bar, V


def test_eq9_equals_direct_computation():
    gt = _scan((20, 20))
    rng = np.random.default_rng(4)
    gv, gf = np.asarray(gt.vertices), np.asarray(gt.faces)
    pairs, e_bars, variances = [], [], []
    for k in range(2):
        pred = gv[rng.choice(len(gv), 150, replace=False)] + rng.normal(0, 0.4 + 0.3 * k, (150, 3))
        out = ev.mesh_errors(pred, gt, align=False)
        e_bar, V = _eq9_direct(pred, gv, gf)
        assert out["e_bar"] == pytest.approx(e_bar, abs=1e-12)
        assert out["variance"] == pytest.approx(V, rel=1e-12)
        assert out["sigma"] == pytest.approx(math.sqrt(V), rel=1e-12)
        pairs.append((pred, gt))
        e_bars.append(e_bar)
        variances.append(V)
    s = ev.mesh_errors_set(pairs, align=False)
    assert s["e_bar"] == pytest.approx(np.mean(e_bars), abs=1e-12)
    assert s["sigma"] == pytest.approx(math.sqrt(sum(variances) / 2), rel=1e-12)
    assert s["pairs"] == 2
    assert s["count"] == 300
    # Pooled distance statistics over the set.
    d = np.concatenate([g.closest_points(p, gt)[1] for p, _ in pairs])
    assert s["mean"] == pytest.approx(d.mean())
    assert s["p90"] == pytest.approx(np.percentile(d, 90))


def test_mesh_errors_after_alignment_are_zero_for_a_moved_copy():
    gt = _scan((24, 24))
    V = np.asarray(gt.vertices)
    moved = (V @ _rotation([0, 0.4, 1], 8.0).T + [1.0, 2.0, -3.0], np.asarray(gt.faces))
    out = ev.mesh_errors(moved, gt)
    for key in ("mean", "median", "p90", "e_bar", "sigma", "icp_rms"):
        assert abs(out[key]) < 1e-6, key
    unaligned = ev.mesh_errors(moved, gt, align=False)
    assert unaligned["mean"] > 0.5


def test_mesh_errors_validation():
    gt = _plane(5)
    with pytest.raises(ValueError, match="correspondence must be 'vertex' or 'surface'; got 'nearest'"):
        ev.mesh_errors(np.zeros((3, 3)), gt, correspondence="nearest")
    with pytest.raises(ValueError, match="at least 2 vertices"):
        ev.mesh_errors(np.zeros((1, 3)), gt, align=False)
    with pytest.raises(TypeError, match="align must be a bool; got str"):
        ev.mesh_errors(np.zeros((3, 3)), gt, align="yes")
    with pytest.raises(TypeError, match=r"pairs\[0\] must be a \(pred_mesh, true_mesh\) pair"):
        ev.mesh_errors_set([gt])
    with pytest.raises(ValueError, match="pairs is empty"):
        ev.mesh_errors_set([])
    with pytest.raises(ValueError, match=r"pairs\[1\]: pred_mesh.vertices must be finite"):
        ev.mesh_errors_set([(np.ones((3, 3)), gt), ((np.full((3, 3), np.nan), [[0, 1, 2]]), gt)], align=False)
