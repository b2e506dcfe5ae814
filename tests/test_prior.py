"""Depth priors fused into the least squares (prior=, prior_weight=): exactness against an
independent SciPy build, the gauge they fix, perspective, the CLI's folder input and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import monohead
from _reference import reference_perspective_slopes, reference_solve_prior
from conftest import perspective_sphere


def _case(rng, H=22, W=26):
    mask = ndimage.gaussian_filter(rng.standard_normal((H, W)), 2.0) > -0.3
    n = np.concatenate([rng.uniform(-0.4, 0.4, (H, W, 2)), np.ones((H, W, 1))], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~mask] = 0.0
    return n, rng.uniform(0.0, 2.0, (H, W)), mask


def test_matches_independent_reference_orthographic(rng):
    for density in (1.0, 0.05):
        n, Wmap, mask = _case(rng)
        prior = np.where(rng.random(mask.shape) < density, rng.normal(3.0, 1.0, mask.shape), np.nan)
        weight = rng.uniform(0.05, 2.0, mask.shape)
        ref = reference_solve_prior(n, Wmap, 0.1, mask, np.where(np.isfinite(prior), weight, 0.0), np.nan_to_num(prior))
        out = monohead.integrate(n, Wmap, 0.1, mask, prior=prior, prior_weight=weight, tol=1e-12)
        np.testing.assert_allclose(out[mask], ref[mask], rtol=1e-8, atol=1e-9)
        assert np.array_equal(np.isnan(out), ~mask)


def test_matches_independent_reference_perspective(rng):
    n, Wmap, mask = _case(rng)
    K = np.array([[60.0, 0.0, 12.0], [0.0, 58.0, 10.5], [0.0, 0.0, 1.0]])
    prior = np.where(rng.random(mask.shape) < 0.3, rng.uniform(800.0, 900.0, mask.shape), np.nan)
    p, q = reference_perspective_slopes(n, K, mask)
    fake = np.stack([-p, -q, np.ones_like(p)], axis=-1)
    known = np.isfinite(prior)
    ref = reference_solve_prior(fake, Wmap, 0.1, mask, np.where(known, 0.5, 0.0), np.log(np.where(known, prior, 1.0)))
    out = monohead.integrate(n, Wmap, 0.1, mask, K=K, prior=prior, prior_weight=0.5, tol=1e-12)
    np.testing.assert_allclose(out[mask], np.exp(ref[mask]), rtol=1e-8)


def test_prior_fixes_offset_and_scale():
    normals, z, mask, K = perspective_sphere()
    # perspective: an exact prior at another unit (mm) on 2% of the pixels gives the scale back
    sparse = np.where(np.random.default_rng(1).random(mask.shape) < 0.02, 1000.0 * z, np.nan)
    out = monohead.integrate(normals, mask=mask, K=K, prior=sparse, prior_weight=1.0, tol=1e-12)
    assert np.max(np.abs(out[mask] / (1000.0 * z[mask]) - 1)) < 2e-3
    # orthographic: the offset comes from the prior
    from monohead.integration import surfaces

    s = surfaces.sphere_cap((40, 40), radius=30.0)
    free = monohead.integrate(s.normals, mask=s.mask, tol=1e-12)
    out = monohead.integrate(s.normals, mask=s.mask, prior=free + 7.0, prior_weight=1.0, tol=1e-12)
    np.testing.assert_allclose(out[s.mask], free[s.mask] + 7.0, atol=1e-8)


def test_components_without_prior_keep_mean_zero():
    n = np.zeros((6, 12, 3))
    n[..., 0], n[..., 2] = 0.3, 1.0
    mask = np.zeros((6, 12), bool)
    mask[1:5, 1:5] = True
    mask[1:5, 7:11] = True
    prior = np.full((6, 12), np.nan)
    prior[2, 2] = 10.0
    out = monohead.integrate(n, mask=mask, prior=prior, prior_weight=1.0, tol=1e-12)
    assert out[2, 2] == pytest.approx(10.0, abs=1e-9)  # integrable normals: the prior is met exactly
    assert np.mean(out[1:5, 7:11]) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"prior": np.zeros((3, 3))}, ValueError, r"prior must have shape \(4, 5\).*got \(3, 3\)"),
        ({"prior": np.full((4, 5), np.nan)}, ValueError, "prior must have at least one finite value inside the mask"),
        ({"prior": np.zeros((4, 5)), "K": np.diag([5.0, 5.0, 1.0])}, ValueError, "positive depth where known"),
        (
            {"prior": np.ones((4, 5)), "prior_weight": -1.0},
            ValueError,
            "prior_weight must be a finite number >= 0; got -1.0",
        ),
        (
            {"prior": np.ones((4, 5)), "prior_weight": np.ones((2, 2))},
            ValueError,
            r"prior_weight must be a number or have shape \(4, 5\)",
        ),
        ({"prior": np.ones((4, 5)), "prior_weight": 0.0}, ValueError, "prior_weight must be > 0 at one pixel"),
        ({"prior": np.ones((4, 5)), "prior_weight": "1"}, TypeError, "prior_weight must be a number"),
        ({"prior": np.ones((4, 5)), "sharpness": 2.0}, ValueError, "prior and sharpness cannot be combined"),
        ({"prior": np.ones((4, 5)), "method": "jacobi"}, ValueError, "prior needs method='mg'"),
    ],
)
def test_bad_prior(kwargs, exc, match):
    n = np.zeros((4, 5, 3))
    n[..., 2] = 1.0
    with pytest.raises(exc, match=match):
        monohead.integrate(n, **kwargs)
