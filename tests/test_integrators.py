"""One reference suite for every integrator backend, in the manner of cholespy's tests.

Every backend that solves the paper's WLS system (the C++ core through :func:`monohead.integrate`
with each method, the array-generic solver with NumPy, the same with CuPy, and the
differentiable :func:`monohead.torch.integrate` on the CPU and on CUDA) is run on the same
problems, with float32 and float64 inputs, and checked the same way:

- against a direct sparse solve of the independent reference system of ``tests/_reference.py``
  (written from the conventions' text, edge by edge), built from the very values the backend
  was given (float32 inputs rounded first: the arithmetic is float64 whatever the input dtype);
- against the exact depth where the problem has one (planes and quadrics are integrated exactly
  by the averaged-gradient scheme; the sphere cap and the perspective sphere up to the
  discretisation error);
- the gauge (mean 0, or geometric mean 1 with ``K``, per 4-connected component; isolated
  pixels 0, or 1), NaN exactly outside the mask, the output type and dtype, and the info.

A backend runs only the problems it supports (``K`` everywhere; ``prior`` and ``sharpness`` on
the C++ multigrid only); GPU backends skip cleanly, with the reason, without CuPy or CUDA.
What one backend alone does (the multigrid's internals, gradients, validation messages,
threads) is tested in the backend's own file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from scipy import ndimage

import monohead
from monohead.integration import ConvergenceWarning, SolveInfo, generic, surfaces
from tests._helpers import (
    perspective_sphere,
    require_cupy,
    require_torch_cuda,
    tricky_mask,
    unit_normals_from_gradients,
)
from tests._reference import (
    reference_perspective_slopes,
    reference_solve,
    reference_solve_perspective,
    reference_solve_prior,
    reference_system,
)

TIGHT = 1e-12  # the tolerance given to the iterative solvers
DTYPES = [np.float32, np.float64]


# ============================================================================ backends
def _cupy():
    return require_cupy()


def _torch(device: str):
    if device == "cuda":
        return require_torch_cuda()
    return pytest.importorskip("torch", reason="torch is not installed (pip install monohead[torch])")


@dataclass(frozen=True)
class Backend:
    """One way of solving the system: ``kind`` (core, numpy, cupy, torch, torch-cuda) and ``method``."""

    kind: str
    method: str
    features: frozenset = field(default_factory=frozenset)  # K, prior, sharpness, batch, x0, info

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.method}"

    def supports(self, *features: str) -> bool:
        return set(features) <= self.features

    @property
    def info_backend(self) -> str:
        return {"core": "cpu", "numpy": "numpy", "cupy": "cupy"}[self.kind]

    def _module(self):
        """The array library of the inputs: skips, with the reason, when it is missing."""
        if self.kind == "cupy":
            return _cupy()
        if self.kind.startswith("torch"):
            return _torch("cuda" if self.kind == "torch-cuda" else "cpu")
        return np

    def device(self, a):
        """``a`` (NumPy, or None) as this backend's input array, keeping its dtype and layout."""
        if a is None:
            return None
        xp = self._module()
        if self.kind == "cupy":
            return xp.asarray(a, order="F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C")
        if self.kind.startswith("torch"):
            device = "cuda" if self.kind == "torch-cuda" else "cpu"
            if a.flags.c_contiguous:
                return xp.tensor(a, device=device)  # a copy: the problems' arrays are read-only
            # keep the caller's layout: a permuted view of a copy of the transposed values
            return xp.tensor(np.ascontiguousarray(a.T), device=device).permute(*reversed(range(a.ndim)))
        return a

    def host(self, out, shape) -> np.ndarray:
        """The backend's depth as NumPy, after checking its type, dtype, device and shape."""
        xp = self._module()
        if self.kind == "cupy":
            assert isinstance(out, xp.ndarray)
            out = xp.asnumpy(out)
        elif self.kind.startswith("torch"):
            assert isinstance(out, xp.Tensor)
            assert out.dtype == xp.float64
            assert out.device.type == ("cuda" if self.kind == "torch-cuda" else "cpu")
            out = out.detach().cpu().numpy()
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.float64
        assert out.shape == tuple(shape)
        return out

    def solve(self, normals, weights=None, lam=0.1, mask=None, *, return_info=False, **kw):
        """``depth`` (NumPy) or ``(depth, info)``: the backend's solve of the given NumPy inputs.

        ``kw``: ``K``, ``x0``, ``tol``, ``maxiter``, ``prior``, ``prior_weight``, ``sharpness``
        (``None`` values are left out, so that each backend's defaults apply)."""
        kw = {k: val for k, val in kw.items() if val is not None}
        if self.method != "direct":
            kw.setdefault("tol", TIGHT)
        if "x0" in kw:
            kw["x0"] = self.device(kw["x0"])
        args = (self.device(normals), self.device(weights), lam, self.device(mask))
        if self.kind == "core":
            out = monohead.integrate(*args, method=self.method, backend="cpu", return_info=return_info, **kw)
        elif self.kind == "numpy":
            out = generic.integrate_xp(*args, method=self.method, return_info=return_info, **kw)
        elif self.kind == "cupy":
            out = monohead.integrate(*args, method=self.method, backend="cupy", return_info=return_info, **kw)
        else:
            import monohead.torch as mt

            assert not return_info, "monohead.torch.integrate returns no info"
            out = mt.integrate(*args, method=self.method, **kw)
        shape = np.shape(normals)[:-1]
        if return_info:
            return self.host(out[0], shape), out[1]
        return self.host(out, shape)


_GENERIC = frozenset({"K", "batch", "x0", "info"})
BACKENDS = [
    Backend("core", "mg", frozenset({"K", "prior", "sharpness", "batch", "x0", "info"})),
    Backend("core", "jacobi", frozenset({"K", "batch", "x0", "info"})),
    Backend("core", "direct", frozenset({"K", "batch", "info"})),
    Backend("numpy", "mg", _GENERIC),
    Backend("numpy", "jacobi", _GENERIC),
    Backend("cupy", "mg", _GENERIC),
    Backend("cupy", "jacobi", _GENERIC),
    Backend("torch", "mg", frozenset({"K", "batch"})),
    Backend("torch", "jacobi", frozenset({"K", "batch"})),
    Backend("torch-cuda", "mg", frozenset({"K", "batch"})),
]
GPU = ("cupy", "torch-cuda")


def _backend_param(b: Backend, *rest, extra_id: str = ""):
    marks = [pytest.mark.gpu] if b.kind in GPU else []
    return pytest.param(b, *rest, id=b.name + extra_id, marks=marks)


def backends(*features: str) -> list:
    """The backends that support ``features``, as parameters (GPU ones marked ``gpu``)."""
    return [_backend_param(b) for b in BACKENDS if b.supports(*features)]


# ============================================================================ problems
@dataclass(frozen=True)
class Problem:
    """One map: its inputs and, where known, its exact depth (any gauge) and that depth's tolerance."""

    normals: np.ndarray  # (H, W, 3) float64, 0 outside the mask
    mask: np.ndarray  # (H, W) bool
    weights: np.ndarray | None = None
    lam: float = 0.1
    K: np.ndarray | None = None
    prior: np.ndarray | None = None  # NaN where unknown
    prior_weight: float | np.ndarray | None = None
    exact: np.ndarray | None = None  # exact depth up to the gauge (orthographic) or the scale (K)
    exact_tol: float = 0.0  # relative to the relief (orthographic) or to the depth (K)

    def inputs(self, dtype) -> tuple[np.ndarray, np.ndarray | None]:
        """The normals and weights in ``dtype`` (C order), as given to the backends."""
        w = None if self.weights is None else self.weights.astype(dtype)
        return self.normals.astype(dtype), w


def _masked(n: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None], n, 0.0)


def _random_normals(rng, mask, scale=0.5):
    H, W = mask.shape
    return _masked(unit_normals_from_gradients(rng.normal(0, scale, (H, W)), rng.normal(0, scale, (H, W))), mask)


def _holes_mask() -> np.ndarray:
    """Two blocks joined by a one-pixel bridge, a hole, a slit and isolated pixels."""
    m = np.zeros((30, 36), bool)
    m[2:14, 2:16] = True
    m[6:9, 6:10] = False  # hole
    m[2:14, 20:34] = True
    m[8, 16:20] = True  # one-pixel bridge between the two blocks
    m[18:28, 4:30] = True
    m[22, 10:20] = False  # slit
    m[0, 35] = m[29, 0] = m[16, 18] = True  # isolated pixels
    return m


def _plane() -> Problem:
    # h = 0.3 x - 0.2 y with x = column (right) and y = up (decreasing row): written by hand.
    H, W = 9, 11
    row, col = np.mgrid[:H, :W].astype(float)
    n = np.zeros((H, W, 3))
    n[...] = np.array([-0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0])  # p = -Nx/Nz, q = -Ny/Nz
    return Problem(n, np.ones((H, W), bool), exact=0.3 * col + 0.2 * row, exact_tol=1e-9)


def _pairs() -> Problem:
    # Two single pairs: each edge takes the mean of its two pixels' slopes, each pair has mean 0.
    H, W = 4, 5
    mask = np.zeros((H, W), bool)
    mask[1, 1:3] = True  # horizontal pair (1,1)-(1,2)
    mask[3, 4] = mask[2, 4] = True  # vertical pair (3,4)-(2,4)
    p, q = np.zeros((H, W)), np.zeros((H, W))
    p[1, 1], p[1, 2] = 0.1, 0.5
    q[3, 4], q[2, 4] = -0.4, 0.2
    exact = np.full((H, W), np.nan)
    exact[1, 1], exact[1, 2] = -0.15, 0.15  # one column right: +(0.1 + 0.5) / 2
    exact[3, 4], exact[2, 4] = 0.05, -0.05  # one row up: +(-0.4 + 0.2) / 2
    return Problem(_masked(unit_normals_from_gradients(p, q), mask), mask, exact=exact, exact_tol=1e-12)


def _quadric() -> Problem:
    # A general quadric on an ellipse with a hole, under random weights: exact for the scheme.
    H, W = 48, 40
    row, col = np.mgrid[:H, :W].astype(float)
    x, y = col - 20.0, 24.0 - row
    mask = ((y / 20.0) ** 2 + (x / 17.0) ** 2 < 1) & ~((x - 4) ** 2 + y**2 < 16)
    h = 0.02 * x**2 - 0.01 * y**2 + 0.015 * x * y + 0.3 * x
    p, q = 0.04 * x + 0.015 * y + 0.3, -0.02 * y + 0.015 * x  # dh/dx, dh/dy (y up)
    rng = np.random.default_rng(11)
    n = _masked(unit_normals_from_gradients(p, q), mask)
    return Problem(n, mask, rng.exponential(2.0, (H, W)), 0.5, exact=h, exact_tol=1e-9)


def _sphere_cap() -> Problem:
    s = surfaces.sphere_cap((40, 40), radius=25.0)
    return Problem(s.normals, s.mask, exact=s.depth, exact_tol=0.05)  # discretisation error: 5% of the relief


def _head() -> Problem:
    s = surfaces.head(48, neck=True)
    return Problem(s.normals, s.mask, s.W, 0.1)


def _rectangle() -> Problem:
    rng = np.random.default_rng(12)
    mask = np.ones((20, 24), bool)
    return Problem(_random_normals(rng, mask), mask, rng.uniform(0, 4, mask.shape), 0.3)


def _blobs() -> Problem:
    rng = np.random.default_rng(13)
    mask = ndimage.gaussian_filter(rng.standard_normal((40, 48)), 3) > 0.1
    return Problem(_random_normals(rng, mask), mask, rng.exponential(2.0, mask.shape), 1.0)


def _holes() -> Problem:
    rng = np.random.default_rng(14)
    mask = _holes_mask()
    return Problem(_random_normals(rng, mask), mask, rng.exponential(2.0, mask.shape), 0.1)


def _salt() -> Problem:
    rng = np.random.default_rng(15)
    mask = rng.random((25, 27)) < 0.6  # many small components
    return Problem(_random_normals(rng, mask), mask, rng.exponential(2.0, mask.shape), 0.0)  # lam 0: w = 1


def _tricky() -> Problem:
    rng = np.random.default_rng(16)
    mask = tricky_mask(rng)
    return Problem(_random_normals(rng, mask), mask, rng.uniform(0.0, 5.0, mask.shape), 0.1)


def _thin(shape) -> Callable[[], Problem]:
    def make() -> Problem:
        rng = np.random.default_rng(17)
        mask = np.ones(shape, bool)
        return Problem(_random_normals(rng, mask, 0.3), mask, rng.uniform(0.0, 5.0, shape), 0.1)

    return make


def _random_K(rng, H, W) -> np.ndarray:
    f = rng.uniform(30, 90)
    return np.array([[f, 0.0, rng.uniform(0, W)], [0.0, f * rng.uniform(0.9, 1.1), rng.uniform(0, H)], [0, 0, 1.0]])


def _k_plane() -> Problem:
    # OpenCV plane z = z0 + a X + b Y (Y down): normal (a, b, -1), monohead's (a, -b, 1); written by hand.
    H, W = 15, 17
    K = np.array([[40.0, 0.0, 8.2], [0.0, 44.0, 7.1], [0.0, 0.0, 1.0]])
    a, b = 0.5, -0.4  # recedes (z grows) to the right and upwards
    n = np.zeros((H, W, 3))
    n[...] = np.array([a, -b, 1.0]) / np.linalg.norm([a, b, 1.0])
    v, u = np.mgrid[0:H, 0:W].astype(float)
    exact = 1.0 / (1.0 - a * (u - K[0, 2]) / K[0, 0] - b * (v - K[1, 2]) / K[1, 1])  # z0 = 1
    return Problem(n, np.ones((H, W), bool), K=K, exact=exact, exact_tol=3e-4)


def _k_sphere() -> Problem:
    normals, z, mask, K = perspective_sphere()
    return Problem(normals, mask, K=K, exact=z, exact_tol=2e-3)  # discretisation error only


def _k_blobs() -> Problem:
    rng = np.random.default_rng(18)
    H, W = 20, 24
    mask = ndimage.gaussian_filter(rng.standard_normal((H, W)), 2.0) > -0.3
    n = np.concatenate([rng.uniform(-0.4, 0.4, (H, W, 2)), np.ones((H, W, 1))], axis=-1)
    n = _masked(n / np.linalg.norm(n, axis=-1, keepdims=True), mask)
    return Problem(n, mask, rng.uniform(0.0, 3.0, (H, W)), 0.1, K=_random_K(rng, H, W))


def _k_components() -> Problem:
    n = np.zeros((6, 9, 3))
    n[..., 0], n[..., 2] = 0.2, 1.0
    mask = np.zeros((6, 9), bool)
    mask[1:4, 1:4] = True
    mask[2:5, 6:8] = True
    mask[5, 0] = True  # isolated
    K = np.array([[30.0, 0.0, 4.0], [0.0, 30.0, 3.0], [0.0, 0.0, 1.0]])
    return Problem(_masked(n, mask), mask, K=K)


def _prior(density: float, seed: int) -> Callable[[], Problem]:
    def make() -> Problem:
        rng = np.random.default_rng(seed)
        H, W = 22, 26
        mask = ndimage.gaussian_filter(rng.standard_normal((H, W)), 2.0) > -0.3
        n = np.concatenate([rng.uniform(-0.4, 0.4, (H, W, 2)), np.ones((H, W, 1))], axis=-1)
        n = _masked(n / np.linalg.norm(n, axis=-1, keepdims=True), mask)
        prior = np.where(rng.random(mask.shape) < density, rng.normal(3.0, 1.0, mask.shape), np.nan)
        weight = rng.uniform(0.05, 2.0, mask.shape)
        return Problem(n, mask, rng.uniform(0.0, 2.0, (H, W)), 0.1, prior=prior, prior_weight=weight)

    return make


def _k_prior() -> Problem:
    p = _k_blobs()
    rng = np.random.default_rng(19)
    prior = np.where(rng.random(p.mask.shape) < 0.3, rng.uniform(800.0, 900.0, p.mask.shape), np.nan)
    return Problem(p.normals, p.mask, p.weights, p.lam, K=p.K, prior=prior, prior_weight=0.5)


_BUILDERS: dict[str, Callable[[], Problem]] = {
    "plane": _plane,
    "pairs": _pairs,
    "quadric": _quadric,
    "sphere_cap": _sphere_cap,
    "head": _head,
    "rectangle": _rectangle,
    "blobs": _blobs,
    "holes": _holes,
    "salt": _salt,
    "tricky": _tricky,
    **{f"thin_{h}x{w}": _thin((h, w)) for h, w in [(1, 1), (1, 9), (9, 1), (2, 2), (3, 64)]},
    "K_plane": _k_plane,
    "K_sphere": _k_sphere,
    "K_blobs": _k_blobs,
    "K_components": _k_components,
    "prior_dense": _prior(1.0, 20),
    "prior_sparse": _prior(0.05, 21),
    "K_prior": _k_prior,
}


def _freeze(a):
    if isinstance(a, np.ndarray):
        a.flags.writeable = False
    return a


@functools.cache
def problem(name: str) -> Problem:
    """The named problem, built once (read-only arrays)."""
    p = _BUILDERS[name]()
    for value in vars(p).values():
        _freeze(value)
    return p


def _needs(p: Problem) -> set[str]:
    return {f for f, on in (("K", p.K is not None), ("prior", p.prior is not None)) if on}


@functools.cache
def reference(name: str, dtype) -> np.ndarray:
    """Depth of the independent reference (direct sparse solve) on the values the backends get."""
    p = problem(name)
    n, w = (None if a is None else a.astype(np.float64) for a in p.inputs(dtype))
    if p.prior is None:
        if p.K is None:
            return _freeze(reference_solve(n, w, p.lam, p.mask)[0])
        return _freeze(reference_solve_perspective(n, w, p.lam, p.mask, p.K)[0])
    known = np.isfinite(p.prior)
    weight = np.where(known, p.prior_weight, 0.0)
    if p.K is None:
        return _freeze(reference_solve_prior(n, w, p.lam, p.mask, weight, np.where(known, p.prior, 0.0)))
    # the perspective prior is on log z: the orthographic reference with the perspective slopes
    sp, sq = reference_perspective_slopes(n, p.K, p.mask)
    fake = np.stack([-sp, -sq, np.ones_like(sp)], axis=-1)
    logz = reference_solve_prior(fake, w, p.lam, p.mask, weight, np.log(np.where(known, p.prior, 1.0)))
    return _freeze(np.exp(logz))


def components(mask: np.ndarray) -> list[np.ndarray]:
    """Boolean masks of the 4-connected components (SciPy's default 2-D structure is the cross)."""
    labels, count = ndimage.label(mask)
    return [labels == k for k in range(1, count + 1)]


def gauged(depth: np.ndarray, mask: np.ndarray, perspective: bool) -> np.ndarray:
    """``depth`` in the gauge of the conventions: mean 0 (geometric mean 1 with K) per component."""
    out = np.full(mask.shape, np.nan)
    for c in components(mask):
        out[c] = depth[c] / np.exp(np.log(depth[c]).mean()) if perspective else depth[c] - depth[c].mean()
    return out


def _params(feature_filter: Callable[[Backend, Problem], bool] = lambda b, p: True) -> list:
    out = []
    for b in BACKENDS:
        for name in _BUILDERS:
            p = problem(name)
            if b.supports(*_needs(p)) and feature_filter(b, p):
                for dt in map(np.dtype, DTYPES):
                    out.append(_backend_param(b, dt, name, extra_id=f"-{dt.name}-{name}"))
    return out


# ============================================================================ the suite
@pytest.mark.parametrize(("backend", "dtype", "name"), _params())
def test_matches_reference_and_exact(backend: Backend, dtype, name: str):
    p = problem(name)
    n, w = p.inputs(dtype)
    kw = {"K": p.K, "prior": p.prior, "prior_weight": p.prior_weight}
    if backend.supports("info"):
        depth, info = backend.solve(n, w, p.lam, p.mask, return_info=True, **kw)
    else:
        depth, info = backend.solve(n, w, p.lam, p.mask, **kw), None
    mask, perspective, comps = p.mask, p.K is not None, components(p.mask)
    np.testing.assert_array_equal(np.isnan(depth), ~mask)
    assert np.isfinite(depth[mask]).all()

    # 1. the direct sparse solve of the independent reference system
    ref = reference(name, dtype)
    if perspective:
        np.testing.assert_allclose(depth[mask], ref[mask], rtol=1e-8)
    else:
        np.testing.assert_allclose(depth[mask], ref[mask], atol=1e-8 * max(1.0, np.abs(ref[mask]).max()))

    # 2. the gauge: free components have mean 0 (geometric mean 1), isolated pixels 0 (1)
    if p.prior is None:
        for c in comps:
            if c.sum() == 1:
                assert depth[c][0] == (1.0 if perspective else 0.0)
            elif perspective:
                assert np.exp(np.log(depth[c]).mean()) == pytest.approx(1.0, abs=1e-12)
            else:
                assert abs(depth[c].mean()) <= 1e-9 * max(1.0, np.abs(depth[c]).max())

    # 3. the exact depth, where known (float32 inputs: their rounding of the slopes on top)
    if p.exact is not None:
        truth = gauged(p.exact, mask, perspective)
        rounding = 0.0 if dtype == np.float64 else 1e-5
        if perspective:
            np.testing.assert_allclose(depth[mask], truth[mask], rtol=p.exact_tol + rounding)
        else:
            relief = max(1.0, float(np.nanmax(truth) - np.nanmin(truth)))
            np.testing.assert_allclose(depth[mask], truth[mask], atol=(p.exact_tol + rounding) * relief)

    # 4. the info
    if info is not None:
        assert isinstance(info, SolveInfo)
        assert info.backend == backend.info_backend
        assert info.method == backend.method
        assert info.converged
        assert info.residual <= (TIGHT if backend.method != "direct" else 1e-6)
        assert info.num_unknowns == int(mask.sum())
        assert info.num_components == len(comps)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", [k for k in _BUILDERS if problem(k).prior is None])
def test_wls_system_matches_reference(name: str, dtype):
    """``wls_system`` is the reference's matrix and right-hand side, entry by entry."""
    p = problem(name)
    n, w = p.inputs(dtype)
    L, b = monohead.wls_system(n, w, p.lam, p.mask, K=p.K)
    n64, w64 = (None if a is None else a.astype(np.float64) for a in (n, w))
    if p.K is None:
        _, A, bref = reference_solve(n64, w64, p.lam, p.mask)
    else:
        _, A, bref = reference_solve_perspective(n64, w64, p.lam, p.mask, p.K)
    N = int(p.mask.sum())
    assert L.shape == A.shape == (N, N)
    np.testing.assert_allclose(L.toarray(), A.toarray(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b, bref, rtol=1e-10, atol=1e-14)
    if p.K is None and N > 1:
        # a solution of the system is a minimiser of the reference energy: its gradient vanishes
        D, we, g, _ = reference_system(n64, w64, p.lam, p.mask)
        x = spla.lsqr(L, b, atol=1e-15, btol=1e-15, iter_lim=20 * N)[0]
        np.testing.assert_allclose(D.T @ (we * (D @ x - g)), 0.0, atol=1e-9 * max(1.0, np.abs(b).max()))


def _batch(dtype):
    """Three maps of one shape: two components, a cut-off side, an isolated pixel; and their weights."""
    rng = np.random.default_rng(30)
    B, H, W = 3, 20, 24
    masks = np.ones((B, H, W), bool)
    masks[0, 5:9, :] = False  # two components
    masks[1, :, :6] = False
    masks[1, 10, 10] = False
    masks[2, 3, 3:] = False
    masks[2, 1, 0] = masks[2, 0, 1] = False  # (0, 0) isolated
    n = np.stack([_random_normals(rng, m, 0.4) for m in masks]).astype(dtype)
    return n, rng.uniform(0, 4, size=(B, H, W)).astype(dtype), masks


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("backend", backends("batch"))
def test_batch_matches_reference(backend: Backend, dtype):
    n, Wb, masks = _batch(dtype)
    n64, W64 = n.astype(np.float64), Wb.astype(np.float64)
    if backend.supports("info"):
        d, infos = backend.solve(n, Wb, 0.1, masks, return_info=True)
        assert isinstance(infos, list)
        assert len(infos) == 3
    else:
        d, infos = backend.solve(n, Wb, 0.1, masks), None
    for k in range(3):
        ref = reference_solve(n64[k], W64[k], 0.1, masks[k])[0]
        np.testing.assert_allclose(d[k], ref, atol=1e-8 * np.nanmax(np.abs(ref)), equal_nan=True)
        if infos is not None:
            assert infos[k].num_components == len(components(masks[k]))
            assert infos[k].num_unknowns == int(masks[k].sum())
            assert infos[k].converged
    assert d[2, 0, 0] == 0.0
    # a batch of one
    one = backend.solve(n[1:2], Wb[1:2], 0.1, masks[1:2])
    np.testing.assert_allclose(one[0], d[1], atol=1e-9 * np.nanmax(np.abs(d[1])), equal_nan=True)
    # weights and mask (H, W) shared by the batch, as good as their copies
    shared = masks[1]
    full = np.ones((3, 20, 24), bool)
    nn = _masked(np.stack([_random_normals(np.random.default_rng(k), m) for k, m in enumerate(full)]), shared)
    nn = nn.astype(dtype)
    a = backend.solve(nn, Wb[0], 0.1, shared)
    b = backend.solve(nn, np.stack([Wb[0]] * 3), 0.1, np.stack([shared] * 3))
    np.testing.assert_allclose(a, b, atol=1e-12 * np.nanmax(np.abs(b)), equal_nan=True)


@pytest.mark.parametrize("backend", backends("batch", "K"))
def test_batch_with_K_matches_each_map(backend: Backend):
    p = problem("K_blobs")
    z = reference("K_blobs", np.float64)
    zb = backend.solve(np.stack([p.normals, p.normals]), p.weights, p.lam, p.mask, K=p.K)
    for k in range(2):
        np.testing.assert_allclose(zb[k][p.mask], z[p.mask], rtol=1e-8)


@pytest.mark.parametrize("backend", backends())
def test_default_mask_is_the_nonzero_normals(backend: Backend):
    p = problem("holes")
    a = backend.solve(p.normals, p.weights, p.lam)
    b = backend.solve(p.normals, p.weights, p.lam, p.mask)
    np.testing.assert_array_equal(np.isnan(a), ~p.mask)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.nanmax(np.abs(b)), equal_nan=True)
    if backend.supports("batch"):
        n, Wb, masks = _batch(np.float64)
        np.testing.assert_array_equal(np.isnan(backend.solve(n, Wb, 0.1)), ~masks)


@pytest.mark.parametrize("backend", backends())
def test_any_layout(backend: Backend):
    """Fortran-ordered float32 normals, strided weights and a 0/1 uint8 mask: the result of the
    C-ordered float64 copies of the same values."""
    p = problem("tricky")
    n32 = np.asfortranarray(p.normals.astype(np.float32))
    w_strided = np.repeat(p.weights, 2, axis=1)[:, ::2]
    assert not n32.flags.c_contiguous
    assert not w_strided.flags.c_contiguous
    d = backend.solve(n32, w_strided, p.lam, p.mask.astype(np.uint8))
    ref = backend.solve(np.ascontiguousarray(n32, dtype=np.float64), p.weights, p.lam, p.mask)
    np.testing.assert_allclose(d, ref, atol=1e-10 * np.nanmax(np.abs(ref)), equal_nan=True)


@pytest.mark.parametrize("backend", backends("info"))
def test_zero_rhs_and_exact_x0_take_no_iteration(backend: Backend):
    flat = np.zeros((16, 18, 3))
    flat[..., 2] = 1.0
    d, info = backend.solve(flat, return_info=True)
    np.testing.assert_array_equal(d, 0.0)
    assert info.iterations == 0
    assert info.residual == 0.0
    assert info.converged
    if backend.supports("x0"):
        p = problem("quadric")
        exact = backend.solve(p.normals, p.weights, p.lam, p.mask, tol=1e-13)
        _, info = backend.solve(p.normals, p.weights, p.lam, p.mask, x0=exact, tol=1e-6, return_info=True)
        assert info.iterations == 0
        n, Wb, masks = _batch(np.float64)
        exact = backend.solve(n, Wb, 0.1, masks, tol=1e-12)
        _, infos = backend.solve(n, Wb, 0.1, masks, x0=exact, tol=1e-6, return_info=True)
        assert [i.iterations for i in infos] == [0, 0, 0]


@pytest.mark.parametrize("backend", backends())
def test_maxiter_warns(backend: Backend):
    """An iteration cap (a tolerance below float64 for "direct") that stops the solve short warns."""
    p = problem("head")
    kw = {"tol": 1e-18} if backend.method == "direct" else {"maxiter": 1}
    match = "direct solve reached relative residual" if backend.method == "direct" else "stopped after 1 iterations"
    if backend.kind.startswith("torch"):
        match = "forward solve"
    with pytest.warns(ConvergenceWarning, match=match):
        out = backend.solve(p.normals, p.weights, p.lam, p.mask, return_info=backend.supports("info"), **kw)
    if backend.supports("info"):
        assert not out[1].converged
        if backend.method != "direct":
            assert out[1].iterations == 1
    if backend.supports("batch"):
        n, Wb, masks = _batch(np.float64)
        with pytest.warns(ConvergenceWarning):
            backend.solve(n, Wb, 0.1, masks, **kw)


# ---------------------------------------------------------------- sharpness (where supported)
def _cauchy_energy(depth, normals, W, lam, mask, sigma):
    """E = sum_e w_e sigma^2 log(1 + r_e^2 / sigma^2), built edge by edge by the independent reference."""
    D, we, g, _ = reference_system(normals, W, lam, mask)
    r = D @ depth[mask] - g
    return float(np.sum(we * sigma**2 * np.log1p(r**2 / sigma**2)))


SHARP_PROBLEMS = ["holes", "head", "K_sphere"]


@pytest.mark.parametrize(
    ("backend", "dtype", "name"), _params(lambda b, p: b.supports("sharpness") and p.prior is None)
)
def test_sharpness_zero_is_the_smooth_solve(backend: Backend, dtype, name: str):
    p = problem(name)
    n, w = p.inputs(dtype)
    depth, info = backend.solve(n, w, p.lam, p.mask, K=p.K, sharpness=0.0, return_info=True)
    ref = reference(name, dtype)
    np.testing.assert_allclose(depth[p.mask], ref[p.mask], rtol=1e-8, atol=1e-8 * max(1.0, np.abs(ref[p.mask]).max()))
    assert info.reweightings == 0
    assert info.energies == ()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", SHARP_PROBLEMS)
@pytest.mark.parametrize("backend", backends("sharpness"))
def test_sharpness_energy_decreases_and_is_the_independent_one(backend: Backend, dtype, name: str):
    """The robust energy falls at every reweighting, and the last one reported is the Cauchy
    energy of the returned depth (of its logarithm with K, on the perspective slopes)."""
    p = problem(name)
    n, w = p.inputs(dtype)
    depth, info = backend.solve(n, w, p.lam, p.mask, K=p.K, sharpness=2.0, return_info=True)
    E = np.array(info.energies)
    assert info.reweightings >= 1
    assert E.size == info.reweightings + 1
    assert np.all(np.diff(E) < 0), "the energy must decrease at every reweighting"
    assert info.scale > 0
    n64, w64 = (None if a is None else a.astype(np.float64) for a in (n, w))
    if p.K is not None:
        sp, sq = reference_perspective_slopes(n64, p.K, p.mask)
        n64, depth = np.stack([-sp, -sq, np.ones_like(sp)], axis=-1), np.log(depth)
    assert _cauchy_energy(depth, n64, w64, p.lam, p.mask, info.scale) == pytest.approx(E[-1], rel=1e-9)
