"""Discontinuity-preserving integration (sharpness=): the energy, its decrease at every
reweighting, depth steps, the combination with W and K, and bad input.

``sharpness=0`` against the independent reference, and the energy of several problems (with W,
with K, float32 inputs) against its independent build, are in test_integrators.py."""

from __future__ import annotations

import numpy as np
import pytest

import monohead
from monohead.integration import ConvergenceWarning, surfaces
from tests._helpers import unit_normals_from_gradients
from tests._reference import reference_perspective_slopes, reference_system


def _cauchy_energy(depth, normals, W, lam, mask, sigma):
    """E = sum_e w_e sigma^2 log(1 + r_e^2 / sigma^2), built edge by edge by the independent reference."""
    D, we, g, _ = reference_system(normals, W, lam, mask)
    r = D @ depth[mask] - g
    return float(np.sum(we * sigma**2 * np.log1p(r**2 / sigma**2)))


def _step_surface(H=40, W=48, wall=2.0):
    """Two tilted half-planes (slope 0.2 to the right, -0.1 upwards) whose normals claim a steep
    wall (slope ``wall``) between columns W/2 - 1 and W/2 in the lower half only: a depth step
    that starts inside the surface, so no depth map agrees with all the normals (the situation
    of folds and occlusions)."""
    p = np.full((H, W), 0.2)
    p[H // 2 :, W // 2 - 1 : W // 2 + 1] = wall
    q = np.full((H, W), -0.1)
    return unit_normals_from_gradients(p, q), p


def test_energy_decreases_at_every_reweighting_and_matches_an_independent_build(rng):
    n, h = _step_surface()
    n = n + 0.02 * rng.standard_normal(n.shape)  # noisy normals: a non-trivial robust problem
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    Wmap = rng.uniform(0.0, 2.0, h.shape)
    mask = np.ones(h.shape, bool)
    mask[:5, :7] = False
    depth, info = monohead.Integrator(mask, Wmap, 0.1).solve(
        n, sharpness=2.0, return_info=True, energy_tol=1e-3, max_reweightings=300
    )
    E = np.array(info.energies)
    assert info.reweightings >= 5
    assert E.size == info.reweightings + 1
    assert np.all(np.diff(E) < 0), "the energy must decrease at every reweighting"
    assert E[-1] < 0.9 * E[0]
    assert info.scale > 0
    # the reported energy is the energy of the returned depth, computed independently
    assert _cauchy_energy(depth, n, Wmap, 0.1, mask, info.scale) == pytest.approx(E[-1], rel=1e-9)


@pytest.mark.parametrize("inner", [1, 3, 10])
def test_energy_decreases_whatever_the_inner_accuracy(rng, inner):
    n, h = _step_surface(24, 30)
    n = n + 0.03 * rng.standard_normal(n.shape)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    _, info = monohead.Integrator(np.ones(h.shape, bool)).solve(
        n, sharpness=3.0, return_info=True, inner_iterations=inner, energy_tol=1e-3, max_reweightings=400
    )
    assert np.all(np.diff(info.energies) < 0)


def test_a_depth_step_is_kept_instead_of_smoothed():
    n, p = _step_surface()
    smooth = monohead.integrate(n, tol=1e-10)
    sharp, info = monohead.Integrator(np.ones(p.shape, bool)).solve(n, sharpness=2.0, energy_tol=1e-3, return_info=True)

    def disagreeing(d):
        """Fraction of 4-neighbour pairs whose depth difference misses the normals' by > 0.01."""
        dx = np.diff(d, axis=1) - 0.5 * (p[:, 1:] + p[:, :-1])
        dy = np.diff(d, axis=0) - 0.1  # one row up: q = -0.1
        return np.mean(np.abs(np.concatenate([dx.ravel(), dy.ravel()])) > 0.01)

    # The smooth solve bends both planes to absorb the wall's inconsistency; the robust one puts
    # it on a few edges (a tear) and keeps the rest of the surface exact.
    assert disagreeing(smooth) > 0.3
    assert disagreeing(sharp) < 0.02
    assert info.reweightings >= 1


def test_with_K_and_weights(rng, sphere_k):
    normals, z, mask, K = sphere_k
    Wmap = rng.uniform(0.0, 1.0, mask.shape)
    depth, info = monohead.integrate(normals, Wmap, 0.1, mask, K=K, sharpness=2.0, return_info=True)
    assert np.all(np.diff(info.energies) < 0)
    # the energy is that of the log-depth with the perspective slopes and the paper's weights
    p, q = reference_perspective_slopes(normals, K, mask)
    fake = np.stack([-p, -q, np.ones_like(p)], axis=-1)
    assert _cauchy_energy(np.log(depth), fake, Wmap, 0.1, mask, info.scale) == pytest.approx(
        info.energies[-1], rel=1e-9
    )
    rel = np.abs(depth[mask] / (z[mask] / np.exp(np.mean(np.log(z[mask])))) - 1)
    assert rel.max() < 5e-3  # a smooth sphere stays a sphere


def test_convergence_warning_when_reweightings_run_out(rng):
    n, _ = _step_surface(16, 20)
    n = n + 0.05 * rng.standard_normal(n.shape)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    solver = monohead.Integrator(np.ones((16, 20), bool))
    with pytest.warns(ConvergenceWarning, match="stopped after 1 reweightings"):
        solver.solve(n, sharpness=2.0, max_reweightings=1, energy_tol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"sharpness": -1.0}, ValueError, "sharpness must be None or a finite number >= 0; got -1.0"),
        ({"sharpness": float("nan")}, ValueError, "sharpness must be None or a finite number >= 0; got nan"),
        ({"sharpness": "2"}, TypeError, "sharpness must be None or a real number >= 0; got str"),
        ({"sharpness": True}, TypeError, "got bool"),
        ({"sharpness": 2.0, "method": "jacobi"}, ValueError, "sharpness needs method='mg'"),
    ],
)
def test_bad_sharpness(kwargs, exc, match, flat_normals):
    with pytest.raises(exc, match=match):
        monohead.integrate(flat_normals, **kwargs)


@pytest.mark.parametrize("name", ["bear", "harvest"])
def test_diligent_made_below_one_mm(name, shared_data):
    from monohead.integration.perspective import made

    path = shared_data("normal-maps", f"diligent_{name}.npz")
    with np.load(path) as z:
        mask, K, gt = z["mask"], z["K"], z["depth_gt"]
        n = np.where(mask[..., None], z["normal"].astype(np.float64), 0.0)
    smooth = made(monohead.integrate(n, mask=mask, K=K), gt)
    sharp = made(monohead.integrate(n, mask=mask, K=K, sharpness=2.0), gt)
    assert sharp < 1.0
    assert sharp < smooth


def test_batch_with_sharpness_equals_map_by_map(rng):
    n, _ = _step_surface(16, 20)
    m2 = n.copy()
    m2[..., 0] *= -1.0
    batch = monohead.integrate(np.stack([n, m2]), sharpness=2.0)
    np.testing.assert_allclose(batch[0], monohead.integrate(n, sharpness=2.0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batch[1], monohead.integrate(m2, sharpness=2.0), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="prior takes one normal map"):
        monohead.integrate(np.stack([n, m2]), prior=np.zeros((16, 20)))


def test_perspective_robust_solve_of_a_large_head_stays_finite():
    # The robust solve keeps one smoothing sweep on level 0 (csrc/integrator.hpp): with the two
    # sweeps of the plain solves, this case (benchmarks/diligent.py's "sharpness=2, K") drifted
    # after about 20 reweightings until a few nearly cut-off pixels overflowed float64 (a
    # ValueError from the depth check).
    s = surfaces.head(1024, neck=True)
    K = np.array([[4096.0, 0.0, 512.0], [0.0, 4096.0, 512.0], [0.0, 0.0, 1.0]])
    depth, info = monohead.integrate(s.normals, s.W, 0.1, s.mask, K=K, sharpness=2.0, return_info=True)
    assert info.converged
    assert np.isfinite(depth[s.mask]).all()
    assert np.abs(np.log(depth[s.mask])).max() < 1.0
