"""The array-module-generic solver (the GPU algorithm) run with NumPy: what is its own.

Its results on every problem (against the independent SciPy reference, analytic surfaces, the
gauge, batches, dtypes and layouts, x0, the convergence warning) are checked with every other
backend in test_integrators.py. Here: the multigrid's quality and properties against dense
linear algebra (Galerkin coarse operators, a symmetric positive definite V-cycle), batch items
that stop independently, and its validation.
"""

from __future__ import annotations

import numpy as np
import pytest

from monohead import _validate as v
from monohead.integration import generic, surfaces
from tests._helpers import tricky_mask, unit_normals_from_gradients

TIGHT = 1e-12


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


# ------------------------------------------------------------------ multigrid quality
@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_iterations_stay_small(size):
    s = surfaces.head(size, neck=True)
    _, info = generic.integrate_xp(s.normals, s.W, 0.1, s.mask, tol=1e-6, return_info=True)
    assert info.converged
    assert info.iterations <= 14, info  # measured 8-10; Jacobi-PCG needs hundreds
    _, info = generic.integrate_xp(s.normals, s.W, 0.1, s.mask, tol=1e-10, return_info=True)
    assert info.converged, info
    assert info.iterations <= 25, info


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
    for i, j in zip(idx[:, :-1].ravel(), idx[:, 1:].ravel(), strict=True):
        A[i, j] = A[j, i] = -eE[i]
        A[i, i] += eE[i]
        A[j, j] += eE[i]
    for i, j in zip(idx[1:, :].ravel(), idx[:-1, :].ravel(), strict=True):
        A[i, j] = A[j, i] = -eN[i]
        A[i, i] += eN[i]
        A[j, j] += eN[i]
    return A


def _prolongation(f, c) -> np.ndarray:
    """Piecewise-constant prolongation from the coarse interior to the fine interior."""
    P = np.zeros((f.h * f.w, c.h * c.w))
    for i in range(f.h):
        for j in range(f.w):
            P[i * f.w + j, (i // 2) * c.w + j // 2] = 1.0
    return P


def test_coarse_operators_are_galerkin_for_equal_weights(rng):
    # The harmonic coarse edges (generic._path) are exactly the Galerkin ones / 2 where the
    # fine weights are equal, also where a block lies at the mask's rim: the first coarsening of
    # unit weights (on the coarse levels, rim edges then differ from inner ones).
    mask = tricky_mask(rng, 22, 26)
    n, _ = random_problem(rng, mask)
    _, system, _ = _system(n, None, 0.1, mask, mg_dtype=np.float64, coarsest_max=16, coarse_scale=2.0)
    f, c = system.mg.levels[:2]
    P = _prolongation(f, c)
    np.testing.assert_allclose(_dense(c), P.T @ _dense(f) @ P / 2.0, atol=1e-12)
    # On the full rectangle every level has equal weights, so every level is Galerkin / 2.
    full = np.ones((24, 32), bool)
    n, _ = random_problem(rng, full)
    _, system, _ = _system(n, None, 0.1, full, mg_dtype=np.float64, coarsest_max=16, coarse_scale=2.0)
    levels = system.mg.levels
    assert len(levels) >= 3
    for f, c in zip(levels[:-1], levels[1:], strict=True):
        P = _prolongation(f, c)
        np.testing.assert_allclose(_dense(c), P.T @ _dense(f) @ P / 2.0, atol=1e-12)


def test_coarse_edges_are_harmonic_averages(rng):
    # Each coarse edge: the sum over the two crossing fine edges c of 1 / (1/(2a) + 1/c + 1/(2b)),
    # a and b the internal edges of the two blocks on c's row (column), c where missing.
    mask = tricky_mask(rng, 22, 26)
    n, Wmap = random_problem(rng, mask)
    _, system, _ = _system(n, Wmap, 0.1, mask, mg_dtype=np.float64, coarsest_max=16, coarse_scale=2.0)
    levels = system.mg.levels
    assert len(levels) >= 3

    def path(c, a, b):
        if c <= 0:
            return 0.0
        a, b = (a if a > 0 else c), (b if b > 0 else c)
        return 1.0 / (0.5 / a + 1.0 / c + 0.5 / b)

    for f, c in zip(levels[:-1], levels[1:], strict=True):
        E = np.zeros((f.h + 4, f.w + 4))  # fine edges with a margin of zeros
        N = np.zeros((f.h + 4, f.w + 4))
        E[1 : f.h + 1, 1 : f.w + 1] = f.eE[0].astype(np.float64)
        N[1 : f.h + 1, 1 : f.w + 1] = f.eN[0].astype(np.float64)
        cE, cN = c.eE[0].astype(np.float64), c.eN[0].astype(np.float64)
        for i in range(c.h):
            for j in range(c.w):
                r0, c0 = 2 * i + 1, 2 * j + 1  # the block's top-left fine cell in E, N
                want_e = sum(path(E[r, c0 + 1], E[r, c0], E[r, c0 + 2]) for r in (r0, r0 + 1))
                want_n = sum(path(N[r0, k], N[r0 + 1, k], N[r0 - 1, k]) for k in (c0, c0 + 1))
                assert cE[i, j] == pytest.approx(want_e, rel=1e-12, abs=1e-15), (i, j)
                assert cN[i, j] == pytest.approx(want_n, rel=1e-12, abs=1e-15), (i, j)
        assert (cE[:, -1] == 0).all()
        assert (cN[0] == 0).all()


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


# ------------------------------------------------------------------ inputs
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
