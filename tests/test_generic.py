"""The array-module-generic solver (the GPU algorithm) run with NumPy.

References: the C++ core (an independent implementation of the same system), the SciPy
reference of tests/_reference.py (built from the conventions' text), analytic surfaces, and
dense linear algebra for the multigrid's properties (Galerkin coarse operators, a symmetric
positive definite V-cycle).
"""

from __future__ import annotations

import numpy as np
import pytest

import monohead
from _reference import reference_solve
from conftest import unit_normals_from_gradients
from monohead import _validate as v
from monohead.integration import ConvergenceWarning, SolveInfo, generic, surfaces

TIGHT = 1e-12


def tricky_mask(rng: np.random.Generator, H: int = 40, W: int = 52) -> np.ndarray:
    """Several components, holes, one-pixel bridges, isolated pixels and thin strips.

    Drawn on a 40 x 52 canvas and cropped to ``(H, W)``.
    """
    m = np.zeros((40, 52), bool)
    m[2:18, 2:20] = True
    m[8:11, 8:12] = False  # hole
    m[2:18, 24:40] = True
    m[9, 20:24] = True  # one-pixel-wide bridge joining the first two blocks
    m[22:38, 4:30] = rng.random((16, 26)) > 0.25  # ragged blob (splits into pieces)
    m[24:36, 34:50] = True
    m[30, 34:50] = False  # a full cut: two components
    m[20, 45] = m[0, 0] = m[39, 51] = m[19, 22] = True  # isolated pixels
    m[1, 44:51] = True  # one-pixel-thick strip
    return m[:H, :W].copy()


def random_problem(rng: np.random.Generator, mask: np.ndarray, scale: float = 0.5):
    H, W = mask.shape
    p = rng.normal(scale=scale, size=(H, W))
    q = rng.normal(scale=scale, size=(H, W))
    n = unit_normals_from_gradients(p, q)
    n[~mask] = 0.0
    Wmap = rng.uniform(0.0, 5.0, size=(H, W))
    return n, Wmap


def rel_err(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(a[mask] - b[mask]).max() / max(np.abs(b[mask]).max(), 1e-300))


# ------------------------------------------------------------------ agreement with references
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", generic.GENERIC_METHODS)
def test_matches_cpp_core_on_tricky_masks(seed, method):
    rng = np.random.default_rng(seed)
    mask = tricky_mask(rng)
    n, Wmap = random_problem(rng, mask)
    ref, ref_info = monohead.integrate(n, Wmap, 0.1, mask, tol=TIGHT, return_info=True)
    d, info = generic.integrate_xp(n, Wmap, 0.1, mask, method=method, tol=TIGHT, return_info=True)
    assert isinstance(d, np.ndarray)
    assert d.shape == mask.shape
    assert d.dtype == np.float64
    assert rel_err(d, ref, mask) < 1e-7
    np.testing.assert_array_equal(np.isnan(d), ~mask)
    assert info.num_components == ref_info.num_components
    assert info.num_unknowns == int(mask.sum())
    assert info.converged
    assert info.residual <= TIGHT
    assert info.backend == "numpy"


def test_matches_independent_scipy_reference(rng):
    mask = tricky_mask(rng, 24, 30)
    mask[20:, :] = False
    n, Wmap = random_problem(rng, mask)
    ref, _, _ = reference_solve(n, Wmap, 0.3, mask)
    d = generic.integrate_xp(n, Wmap, 0.3, mask, tol=TIGHT)
    assert rel_err(d, ref, mask) < 1e-8


@pytest.mark.parametrize(
    "surface",
    [
        lambda: surfaces.plane((17, 23), 0.4, -0.7),
        lambda: surfaces.paraboloid((33, 31), 0.03),
    ],
    ids=["plane", "paraboloid"],
)
def test_analytic_surfaces_are_exact(surface):
    # The averaged-gradient discretisation is exact for planes and paraboloids.
    s = surface()
    d = generic.integrate_xp(s.normals, None, 0.1, s.mask, tol=TIGHT)
    truth = s.depth - np.nanmean(s.depth)
    np.testing.assert_allclose(d[s.mask], truth[s.mask], atol=1e-8)


def test_sphere_cap_close_to_truth():
    s = surfaces.sphere_cap((48, 48), radius=30)
    d = generic.integrate_xp(s.normals, None, 0.1, s.mask)
    truth = s.depth - np.nanmean(s.depth)
    assert np.abs(d - truth)[s.mask].max() < 0.05 * (np.nanmax(truth) - np.nanmin(truth))


# ------------------------------------------------------------------ gauge and special shapes
def test_gauge_mean_zero_per_component_isolated_zero(rng):
    from scipy import ndimage

    mask = tricky_mask(rng)
    n, Wmap = random_problem(rng, mask)
    d = generic.integrate_xp(n, Wmap, 0.1, mask, tol=1e-10)
    labels, k = ndimage.label(mask)
    assert k >= 5
    for c in range(1, k + 1):
        sel = labels == c
        assert abs(d[sel].mean()) < 1e-9
        if sel.sum() == 1:
            assert d[sel][0] == 0.0
    assert np.isnan(d[~mask]).all()


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (3, 64)])
def test_tiny_and_thin_domains(shape, rng):
    mask = np.ones(shape, bool)
    n, Wmap = random_problem(rng, mask, 0.3)
    ref = monohead.integrate(n, Wmap, 0.1, mask, tol=TIGHT)
    d = generic.integrate_xp(n, Wmap, 0.1, mask, tol=TIGHT)
    np.testing.assert_allclose(d, ref, atol=1e-10)


def test_zero_rhs_and_exact_x0_take_no_iteration(rng):
    s = surfaces.plane((20, 20), 0.0, 0.0)
    d, info = generic.integrate_xp(s.normals, None, 0.1, s.mask, return_info=True)
    assert info.iterations == 0
    assert info.residual == 0.0
    assert info.converged
    np.testing.assert_array_equal(d, 0.0)
    s = surfaces.paraboloid((20, 24), 0.02)
    exact = generic.integrate_xp(s.normals, None, 0.1, s.mask, tol=1e-13)
    _, info = generic.integrate_xp(s.normals, None, 0.1, s.mask, tol=1e-6, x0=exact, return_info=True)
    assert info.iterations == 0


def test_convergence_warning():
    s = surfaces.head(64)
    with pytest.warns(ConvergenceWarning, match="relative residual"):
        _, info = generic.integrate_xp(s.normals, s.W, 0.1, s.mask, maxiter=2, return_info=True)
    assert info.iterations == 2
    assert not info.converged


# ------------------------------------------------------------------ multigrid quality
@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_iterations_stay_small(size):
    s = surfaces.head(size, neck=True)
    _, info = generic.integrate_xp(s.normals, s.W, 0.1, s.mask, tol=1e-6, return_info=True)
    assert info.converged
    assert info.iterations <= 14, info  # measured 8-10; Jacobi-PCG needs hundreds
    _, info = generic.integrate_xp(s.normals, s.W, 0.1, s.mask, tol=1e-10, return_info=True)
    assert info.converged and info.iterations <= 25, info


def test_jacobi_agrees_but_needs_many_more_iterations():
    s = surfaces.head(64, neck=True)
    d_mg, i_mg = generic.integrate_xp(s.normals, s.W, 0.1, s.mask, tol=1e-11, return_info=True)
    d_j, i_j = generic.integrate_xp(s.normals, s.W, 0.1, s.mask, method="jacobi", tol=1e-11, return_info=True)
    assert rel_err(d_j, d_mg, s.mask) < 1e-8
    assert i_j.iterations > 4 * i_mg.iterations


def _system(n, Wmap, lam, mask, **kw):
    n4, m, w, lam, _ = v.check_batch_inputs(n, Wmap, lam, mask)
    grid = generic.Grid(m, np)
    eE, eN, b = generic.assemble(grid.pad(n4), grid.mask, None if w is None else grid.pad(w), lam, np)
    return grid, generic.StencilSystem(eE, eN, grid.mask, np, "mg", **kw), b


def _dense(level) -> np.ndarray:
    """Dense graph Laplacian of one item of a level (interior cells, row-major)."""
    h, w = level.h, level.w
    n = h * w
    A = np.zeros((n, n))
    eE = level.eE[0].astype(np.float64).ravel()
    eN = level.eN[0].astype(np.float64).ravel()
    idx = np.arange(n).reshape(h, w)
    for i, j in zip(idx[:, :-1].ravel(), idx[:, 1:].ravel()):
        A[i, j] = A[j, i] = -eE[i]
        A[i, i] += eE[i]
        A[j, j] += eE[i]
    for i, j in zip(idx[1:, :].ravel(), idx[:-1, :].ravel()):
        A[i, j] = A[j, i] = -eN[i]
        A[i, i] += eN[i]
        A[j, j] += eN[i]
    return A


def test_coarse_operators_are_galerkin(rng):
    mask = tricky_mask(rng, 22, 26)
    n, Wmap = random_problem(rng, mask)
    _, system, _ = _system(n, Wmap, 0.1, mask, mg_dtype=np.float64, coarsest_max=16, coarse_scale=2.0)
    levels = system.mg.levels
    assert len(levels) >= 3
    for f, c in zip(levels[:-1], levels[1:]):
        Af, Ac = _dense(f), _dense(c)
        # piecewise-constant prolongation from the coarse interior to the fine interior
        P = np.zeros((f.h * f.w, c.h * c.w))
        for i in range(f.h):
            for j in range(f.w):
                P[i * f.w + j, (i // 2) * c.w + j // 2] = 1.0
        np.testing.assert_allclose(Ac, P.T @ Af @ P / 2.0, atol=1e-12)


@pytest.mark.parametrize("mg_dtype", [np.float64, np.float32])
def test_vcycle_is_symmetric_positive_definite(rng, mg_dtype):
    mask = tricky_mask(rng, 30, 34)
    n, Wmap = random_problem(rng, mask)
    _, system, _ = _system(n, Wmap, 0.1, mask, mg_dtype=mg_dtype, coarsest_max=16)
    assert system.num_levels >= 3
    shape = system.shape

    def M(r):
        r = r * system.mask
        z = np.zeros(shape)
        system._precond(r, z)
        return z

    tol = 1e-12 if mg_dtype == np.float64 else 1e-5
    for _ in range(3):
        u = system.project(rng.normal(size=shape))
        w = system.project(rng.normal(size=shape))
        Mu, Mw = M(u), M(w)
        assert abs(np.vdot(w, Mu) - np.vdot(u, Mw)) <= tol * np.linalg.norm(u) * np.linalg.norm(Mw)
        assert np.vdot(u, Mu) > 0


# ------------------------------------------------------------------ batches
def test_batch_matches_per_item_solves(rng):
    masks, normals, weights = [], [], []
    for k in range(3):
        m = tricky_mask(rng, 36, 40)
        if k == 1:
            m[:, :20] = False  # a smaller bounding box than the batch's
        n, Wmap = random_problem(rng, m)
        masks.append(m)
        normals.append(n)
        weights.append(Wmap)
    N, M, Wb = np.stack(normals), np.stack(masks), np.stack(weights)
    d, infos = generic.integrate_xp(N, Wb, 0.2, M, tol=TIGHT, return_info=True)
    assert d.shape == M.shape
    assert len(infos) == 3
    assert all(isinstance(i, SolveInfo) for i in infos)
    for k in range(3):
        ref, ref_info = monohead.integrate(normals[k], weights[k], 0.2, masks[k], tol=TIGHT, return_info=True)
        assert rel_err(d[k], ref, masks[k]) < 1e-7
        assert infos[k].num_components == ref_info.num_components
        assert infos[k].num_unknowns == ref_info.num_unknowns
        assert infos[k].converged


def test_batch_items_stop_independently():
    # An easy item (zero right-hand side) and a hard one: the easy one reports 0 iterations.
    s = surfaces.head(48)
    flat = np.zeros_like(s.normals)
    flat[..., 2] = 1.0
    N = np.stack([s.normals, np.where(s.mask[..., None], flat, 0.0)])
    d, infos = generic.integrate_xp(N, None, 0.1, np.stack([s.mask, s.mask]), return_info=True)
    assert infos[0].iterations > 0
    assert infos[1].iterations == 0
    np.testing.assert_array_equal(d[1][s.mask], 0.0)
    single = generic.integrate_xp(s.normals, None, 0.1, s.mask)
    np.testing.assert_allclose(d[0], single, atol=1e-9)


def test_batch_shared_mask_and_weights():
    s = surfaces.head(40)
    N = np.stack([s.normals, s.normals])
    a = generic.integrate_xp(N, s.W, 0.1, s.mask, tol=TIGHT)
    b = generic.integrate_xp(N, np.stack([s.W, s.W]), 0.1, np.stack([s.mask, s.mask]), tol=TIGHT)
    np.testing.assert_allclose(a, b, atol=1e-12, equal_nan=True)


# ------------------------------------------------------------------ inputs
def test_any_dtype_and_layout(rng):
    mask = tricky_mask(rng, 20, 24)
    n, Wmap = random_problem(rng, mask)
    ref = generic.integrate_xp(n, Wmap, 0.1, mask, tol=TIGHT)
    nf = np.asfortranarray(n.astype(np.float32))
    d = generic.integrate_xp(nf, Wmap[:, ::1].T.copy().T, 0.1, mask.astype(np.uint8), tol=TIGHT)
    ref32 = generic.integrate_xp(n.astype(np.float32).astype(np.float64), Wmap, 0.1, mask, tol=TIGHT)
    np.testing.assert_allclose(d, ref32, atol=1e-10)
    assert np.abs(d - ref)[mask].max() < 1e-3


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "direct"}, ValueError, "method must be one of 'mg', 'jacobi'"),
        ({"tol": 0.0}, ValueError, "tol must be in"),
        ({"maxiter": 0}, ValueError, "maxiter must be >= 1"),
        ({"x0": np.zeros((3, 3))}, ValueError, r"x0 must have shape \(16, 16\)"),
        ({"x0": np.full((16, 16), np.nan)}, ValueError, "x0 must be finite inside the mask"),
        ({"weights": np.ones((16, 15))}, ValueError, r"weights must have shape \(16, 16\)"),
        ({"weights": np.ones((16, 16), bool)}, TypeError, "weights must have a real floating dtype"),
        ({"mask": np.zeros((16, 16), bool)}, ValueError, "mask is empty"),
        ({"lam": -1.0}, ValueError, "lam must be"),
    ],
)
def test_validation(kwargs, exc, match):
    s = surfaces.paraboloid((16, 16))
    args = {"normals": s.normals, "weights": None, "lam": 0.1, "mask": s.mask} | kwargs
    with pytest.raises(exc, match=match):
        generic.integrate_xp(**args)


def test_stencil_system_contract():
    z = np.zeros((1, 6, 6))
    with pytest.raises(ValueError, match="share one"):
        generic.StencilSystem(z, np.zeros((1, 6, 8)), z > 0, np, "mg")
    with pytest.raises(ValueError, match="even"):
        generic.StencilSystem(np.zeros((1, 5, 6)), np.zeros((1, 5, 6)), np.zeros((1, 5, 6), bool), np, "mg")
    with pytest.raises(ValueError, match="method"):
        generic.StencilSystem(z, z, z > 0, np, "direct")
