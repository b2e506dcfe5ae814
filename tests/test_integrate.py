"""The C++ core's own behaviour: the matrix's weights pinned by hand, second-order accuracy, the
weights' effect on a discontinuity, the info, and the reusable Integrator.

Its results on every problem (against the independent SciPy reference and analytic surfaces,
with each method, dtypes, layouts, the default mask, the gauge, the convergence warning) are
checked with every other backend in test_integrators.py."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

import monohead
from monohead.integration import surfaces
from tests._helpers import unit_normals_from_gradients

TIGHT = 1e-12


def _solve(normals, W=None, lam=0.1, mask=None, method="mg", **kw):
    kw.setdefault("tol", TIGHT)
    return monohead.integrate(normals, W, lam, mask, method=method, **kw)


# ---------------------------------------------------------------- conventions, pinned by hand
def test_edge_weight_is_mean_of_pixel_weights():
    H, W = 3, 3
    mask = np.ones((H, W), bool)
    Wmap = np.array([[0.0, 10.0, 3.0], [1.0, 0.0, 7.0], [2.0, 5.0, 0.0]])
    lam = 0.25
    n = np.zeros((H, W, 3))
    n[..., 2] = 1
    L, b = monohead.wls_system(n, Wmap, lam, mask)
    w = 1.0 / (1.0 + lam * Wmap)

    def k(r, c):  # unknown index of pixel (r, c): row-major
        return r * W + c

    assert L[k(0, 0), k(0, 1)] == pytest.approx(-(w[0, 0] + w[0, 1]) / 2)
    assert L[k(1, 2), k(0, 2)] == pytest.approx(-(w[1, 2] + w[0, 2]) / 2)
    assert L[k(2, 1), k(1, 1)] == pytest.approx(-(w[2, 1] + w[1, 1]) / 2)
    assert L[k(0, 0), k(1, 1)] == 0.0  # no diagonal neighbours
    np.testing.assert_allclose(np.asarray(L.sum(axis=1)).ravel(), 0.0, atol=1e-15)  # Laplacian rows
    np.testing.assert_allclose(b, 0.0)


# ---------------------------------------------------------------- analytic surfaces
def test_sphere_cap_second_order():
    errs = []
    for size in (32, 64, 128):
        s = surfaces.sphere_cap((size, size), radius=0.45 * size)
        d = _solve(s.normals, mask=s.mask)
        truth = s.depth - np.nanmean(s.depth)
        errs.append(np.sqrt(np.mean((d - truth)[s.mask] ** 2)))
    # depth in pixels grows like N and the relative error falls like 1/N^2: error ~ 1/N.
    assert errs[0] / errs[1] > 1.7
    assert errs[1] / errs[2] > 1.7
    assert errs[2] < 0.02  # pixels, on a cap about 20 pixels deep


def _helix(size=64, k=2.0):
    """h = k * theta: smooth normals everywhere, a cliff of 2 pi k along the ray theta = pi that
    ends at the centre (a partial discontinuity, like a nose over a cheek)."""
    rows, cols = np.mgrid[:size, :size].astype(float)
    x, y = cols - (size - 1) / 2, (size - 1) / 2 - rows
    h = k * np.arctan2(y, x)
    r2 = x**2 + y**2
    hx, hy = -k * y / r2, k * x / r2
    Wmap = np.hypot(hx, hy)
    # finite-difference |grad h| of the true depth is the jump on the pixels beside the cliff
    jump_down = np.abs(h[1:, :] - h[:-1, :]) > np.pi * k
    Wmap[1:, :][jump_down] = Wmap[:-1, :][jump_down] = 2 * np.pi * k
    return unit_normals_from_gradients(hx, hy), Wmap, h


def test_weights_let_a_partial_discontinuity_through():
    n, Wmap, h = _helix()
    err = []
    for lam in (0.0, 0.1, 1.0, 10.0):
        d = _solve(n, Wmap, lam)
        e = (d - h).ravel()
        err.append(np.sqrt(np.mean((e - e.mean()) ** 2)))
    assert all(a > b for a, b in pairwise(err)), err  # more weight on W, less error
    assert err[-1] < 0.7 * err[0]


# ---------------------------------------------------------------- API behaviour
def test_return_info_and_tolerance():
    s = surfaces.head(64, neck=True)
    for tol in (1e-4, 1e-8):
        d, info = monohead.integrate(s.normals, s.W, 0.1, s.mask, tol=tol, return_info=True)
        assert info.converged
        assert info.residual <= tol
        assert info.method == "mg"
        assert info.backend == "cpu"
        assert info.num_unknowns == s.mask.sum()
        assert info.num_components == 1
        assert info.total_seconds == pytest.approx(info.assembly_seconds + info.setup_seconds + info.solve_seconds)
        # the reported residual is the true one
        L, b = monohead.wls_system(s.normals, s.W, 0.1, s.mask)
        assert np.linalg.norm(b - L @ d[s.mask]) / np.linalg.norm(b) == pytest.approx(
            info.residual, rel=1e-3, abs=1e-12
        )


def test_integrator_reuse_and_x0():
    s = surfaces.head(64, neck=False)
    solver = monohead.Integrator(s.mask, s.W, 0.1)
    assert solver.num_unknowns == s.mask.sum()
    assert solver.num_levels >= 2
    d1, i1 = solver.solve(s.normals, return_info=True)
    tilted = surfaces.sphere_cap((64, 64), 60.0, rim=1.0).normals
    d2 = solver.solve(np.where(s.mask[..., None], tilted, 0.0))
    assert not np.allclose(d1[s.mask], d2[s.mask])
    np.testing.assert_allclose(solver.solve(s.normals)[s.mask], d1[s.mask])  # no state carried over
    d3, i3 = solver.solve(s.normals, x0=d1, return_info=True)
    assert i3.iterations < i1.iterations
    np.testing.assert_allclose(d3[s.mask], d1[s.mask], atol=1e-5)


def test_multigrid_iteration_counts_stay_low():
    # Two red-black Gauss-Seidel sweeps before and after the coarse correction on the finest
    # level (csrc/multigrid.hpp): 4-6 MG-PCG iterations to tol 1e-6 on a head with its neck
    # step, a smooth rectangle and a ragged multi-piece mask, where one sweep each way took 7-8.
    import scipy.ndimage

    rng = np.random.default_rng(3)
    ragged = scipy.ndimage.gaussian_filter(rng.standard_normal((384, 384)), 10) > 0.0
    hn, rect, smooth = surfaces.head(512, neck=True), surfaces.rectangle(256), surfaces.rectangle(384)
    hn1k = surfaces.head(1024, neck=True)
    cases = {
        "head+neck 512": (hn.normals, hn.W, hn.mask, 6),
        # the chin's weak edges: 6 iterations with the summed coarse weights, 5 with the
        # harmonic ones (csrc/multigrid.hpp, path())
        "head+neck 1024": (hn1k.normals, hn1k.W, hn1k.mask, 5),
        "rectangle 256": (rect.normals, None, rect.mask, 5),
        "ragged 384": (smooth.normals, None, ragged, 6),
    }
    for name, (normals, W, mask, most) in cases.items():
        _, info = monohead.integrate(normals, W, 0.1, mask, return_info=True)
        assert info.converged, name
        assert info.iterations <= most, (name, info.iterations)
