"""The integrator against the conventions, an independent SciPy reference and analytic surfaces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import monohead
from _reference import reference_solve, reference_system
from conftest import unit_normals_from_gradients
from monohead.integration import METHODS, ConvergenceWarning, surfaces

TIGHT = 1e-12


def _solve(normals, W=None, lam=0.1, mask=None, method="mg", **kw):
    kw.setdefault("tol", TIGHT)
    return monohead.integrate(normals, W, lam, mask, method=method, **kw)


# ---------------------------------------------------------------- conventions, pinned by hand
@pytest.mark.parametrize("method", METHODS)
def test_plane_axes_and_signs(method):
    # h = 0.3 x - 0.2 y with x = column (right) and y = up (decreasing row).
    s = surfaces.plane((9, 11), slope_x=0.3, slope_y=-0.2)
    d = _solve(s.normals, mask=s.mask, method=method)
    np.testing.assert_allclose(d[:, 1:] - d[:, :-1], 0.3, atol=1e-9)  # one column right: +p
    np.testing.assert_allclose(d[:-1, :] - d[1:, :], -0.2, atol=1e-9)  # one row up: +q
    # A normal tilted to the right (Nx > 0) means depth decreasing to the right.
    n = np.zeros((1, 2, 3))
    n[..., 0], n[..., 2] = 0.6, 0.8
    d = _solve(n, method=method)
    assert d[0, 1] < d[0, 0]


@pytest.mark.parametrize("method", METHODS)
def test_single_pairs_use_averaged_gradients(method):
    H, W = 4, 5
    mask = np.zeros((H, W), bool)
    mask[1, 1:3] = True  # horizontal pair (1,1)-(1,2)
    mask[3, 4] = mask[2, 4] = True  # vertical pair (3,4)-(2,4)
    p = np.zeros((H, W))
    q = np.zeros((H, W))
    p[1, 1], p[1, 2] = 0.1, 0.5
    q[3, 4], q[2, 4] = -0.4, 0.2
    n = unit_normals_from_gradients(p, q)
    d = _solve(n, mask=mask, method=method)
    assert d[1, 2] - d[1, 1] == pytest.approx((0.1 + 0.5) / 2, abs=1e-12)
    assert d[2, 4] - d[3, 4] == pytest.approx((-0.4 + 0.2) / 2, abs=1e-12)
    # gauge: each pair is a component with mean 0
    assert d[1, 1] + d[1, 2] == pytest.approx(0.0, abs=1e-12)
    assert d[2, 4] + d[3, 4] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_gauge_components_isolated_pixels_and_nan(method, rng):
    H, W = 12, 14
    mask = np.zeros((H, W), bool)
    mask[1:5, 1:6] = True  # component A
    mask[7:11, 3:12] = True  # component B
    mask[1, 10] = True  # isolated pixel
    mask[5, 12] = True  # another
    p = rng.normal(0, 0.3, (H, W))
    q = rng.normal(0, 0.3, (H, W))
    d = _solve(unit_normals_from_gradients(p, q), mask=mask, method=method)
    assert np.isnan(d[~mask]).all()
    assert np.isfinite(d[mask]).all()
    assert d[1:5, 1:6].mean() == pytest.approx(0.0, abs=1e-10)
    assert d[7:11, 3:12].mean() == pytest.approx(0.0, abs=1e-10)
    assert d[1, 10] == 0.0
    assert d[5, 12] == 0.0


def test_edge_weight_is_mean_of_pixel_weights():
    H, W = 3, 3
    mask = np.ones((H, W), bool)
    Wmap = np.array([[0.0, 10.0, 3.0], [1.0, 0.0, 7.0], [2.0, 5.0, 0.0]])
    lam = 0.25
    n = np.zeros((H, W, 3))
    n[..., 2] = 1
    L, b = monohead.wls_system(n, Wmap, lam, mask)
    w = 1.0 / (1.0 + lam * Wmap)
    k = lambda r, c: r * W + c
    assert L[k(0, 0), k(0, 1)] == pytest.approx(-(w[0, 0] + w[0, 1]) / 2)
    assert L[k(1, 2), k(0, 2)] == pytest.approx(-(w[1, 2] + w[0, 2]) / 2)
    assert L[k(2, 1), k(1, 1)] == pytest.approx(-(w[2, 1] + w[1, 1]) / 2)
    assert L[k(0, 0), k(1, 1)] == 0.0  # no diagonal neighbours
    np.testing.assert_allclose(np.asarray(L.sum(axis=1)).ravel(), 0.0, atol=1e-15)  # Laplacian rows
    np.testing.assert_allclose(b, 0.0)


def _random_masks(rng):
    """Masks with several components, holes, one-pixel bridges and isolated pixels."""
    out = []
    blobs = ndimage.gaussian_filter(rng.standard_normal((40, 48)), 3) > 0.1
    out.append(blobs)
    m = np.zeros((30, 36), bool)
    m[2:14, 2:16] = True
    m[6:9, 6:10] = False  # hole
    m[2:14, 20:34] = True
    m[8, 16:20] = True  # one-pixel bridge between the two blocks
    m[18:28, 4:30] = True
    m[22, 10:20] = False  # slit
    m[0, 35] = m[29, 0] = m[16, 18] = True  # isolated pixels
    out.append(m)
    out.append(rng.random((25, 27)) < 0.6)  # salt: many small components
    return out


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_agrees_with_independent_scipy_solve(method, case, weighted, rng):
    mask = _random_masks(rng)[case]
    H, W = mask.shape
    p = rng.normal(0, 0.5, (H, W))
    q = rng.normal(0, 0.5, (H, W))
    n = unit_normals_from_gradients(p, q)
    Wmap = rng.exponential(2.0, (H, W)) if weighted else None
    ref, _, _ = reference_solve(n, Wmap, 0.1, mask)
    d = _solve(n, Wmap, 0.1, mask, method=method)
    np.testing.assert_array_equal(np.isnan(d), ~mask)
    np.testing.assert_allclose(d[mask], ref[mask], atol=1e-8 * max(1.0, np.abs(ref[mask]).max()))


def test_wls_system_matches_reference(rng):
    mask = _random_masks(rng)[1]
    H, W = mask.shape
    n = unit_normals_from_gradients(rng.normal(0, 0.5, (H, W)), rng.normal(0, 0.5, (H, W)))
    Wmap = rng.exponential(2.0, (H, W))
    L, b = monohead.wls_system(n, Wmap, 0.3, mask)
    _, A, bref = reference_solve(n, Wmap, 0.3, mask)
    assert L.shape == A.shape == (mask.sum(), mask.sum())
    np.testing.assert_allclose(L.toarray(), A.toarray(), atol=1e-14)
    np.testing.assert_allclose(b, bref, atol=1e-14)
    # a solution of the system is a minimiser of the energy: its gradient vanishes
    D, we, g, _ = reference_system(n, Wmap, 0.3, mask)
    x = np.linalg.lstsq(L.toarray(), b, rcond=None)[0]
    np.testing.assert_allclose(D.T @ (we * (D @ x - g)), 0.0, atol=1e-9)


# ---------------------------------------------------------------- analytic surfaces
@pytest.mark.parametrize("method", METHODS)
def test_paraboloid_is_exact(method):
    # the averaged-gradient scheme is exact for quadratics
    yy, xx = np.mgrid[:48, :40]
    mask = ((yy - 24) / 20.0) ** 2 + ((xx - 20) / 17.0) ** 2 < 1
    s = surfaces.paraboloid((48, 40), 0.02, mask=mask)
    d = _solve(s.normals, mask=s.mask, method=method)
    truth = s.depth - np.nanmean(s.depth)
    np.testing.assert_allclose(d[mask], truth[mask], atol=1e-9)


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


def test_methods_agree_on_weighted_head():
    s = surfaces.head(96, neck=True)
    ds = {m: _solve(s.normals, s.W, 0.1, s.mask, method=m) for m in METHODS}
    scale = np.nanmax(np.abs(ds["direct"]))
    for m in ("mg", "jacobi"):
        np.testing.assert_allclose(ds[m][s.mask], ds["direct"][s.mask], atol=1e-8 * scale)


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
    assert all(a > b for a, b in zip(err, err[1:])), err  # more weight on W, less error
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


def test_maxiter_warns():
    s = surfaces.head(64)
    with pytest.warns(ConvergenceWarning, match="stopped after 1 iterations"):
        _, info = monohead.integrate(s.normals, s.W, mask=s.mask, method="jacobi", maxiter=1, return_info=True)
    assert not info.converged
    assert info.iterations == 1


def test_float32_and_noncontiguous_inputs():
    s = surfaces.head(64)
    ref = monohead.integrate(s.normals, s.W, 0.1, s.mask)
    n32 = np.asfortranarray(s.normals.astype(np.float32))
    W_strided = np.repeat(s.W, 2, axis=1)[:, ::2]
    d = monohead.integrate(n32, W_strided, 0.1, s.mask.astype(np.uint8))
    assert d.dtype == np.float64
    assert d.flags.c_contiguous
    np.testing.assert_allclose(d[s.mask], ref[s.mask], atol=1e-4)


def test_default_mask_is_nonzero_normals():
    s = surfaces.head(48)
    d_default = monohead.integrate(s.normals)
    d_mask = monohead.integrate(s.normals, mask=s.mask)
    np.testing.assert_array_equal(np.isnan(d_default), ~s.mask)
    np.testing.assert_allclose(d_default[s.mask], d_mask[s.mask])


def test_zero_gradients_give_zero_depth():
    n = np.zeros((16, 16, 3))
    n[..., 2] = 1.0
    d, info = monohead.integrate(n, return_info=True)
    np.testing.assert_array_equal(d, 0.0)
    assert info.converged
    assert info.iterations == 0
