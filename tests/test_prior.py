"""Depth priors fused into the least squares (prior=, prior_weight=): the gauge they fix and bad
input. Exactness against the independent SciPy build (dense and sparse priors, perspective) is
checked in test_integrators.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import monohead


def _case(rng, H=22, W=26):
    mask = ndimage.gaussian_filter(rng.standard_normal((H, W)), 2.0) > -0.3
    n = np.concatenate([rng.uniform(-0.4, 0.4, (H, W, 2)), np.ones((H, W, 1))], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~mask] = 0.0
    return n, rng.uniform(0.0, 2.0, (H, W)), mask


def test_prior_fixes_offset_and_scale(sphere_k):
    normals, z, mask, K = sphere_k
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
def test_bad_prior(kwargs, exc, match, flat_normals):
    with pytest.raises(exc, match=match):
        monohead.integrate(flat_normals, **kwargs)
