"""The WLS normal integrator written once for any NumPy-like array module: NumPy or CuPy.

This is the solver of the ``backend="cupy"`` path of :func:`monohead.integrate` and of
:func:`monohead.torch.integrate`. The very same code runs with ``xp = numpy`` on the CPU (see
:func:`integrate_xp`), which is how the CPU test suite exercises the GPU algorithm.

System (conventions.md, paper eq. 7-8): for every pair of 4-neighbour pixels both in the mask,
the residual of the depth difference against the averaged gradient (``p = -Nx/Nz`` to the
right, ``q = -Ny/Nz`` one row up), weighted by the averaged ``w = 1 / (1 + lam W)``. Its normal
equations ``L h = b`` have ``L`` the weighted 5-point graph Laplacian of the mask.

Layout. A batch of ``B`` maps of shape ``(H, W)`` is cropped to the bounding box of the union of
its masks and stored in *padded* arrays ``(B, Hs + 2, Ws + 2)``: the box lies at
``[1 : 1 + h, 1 : 1 + w]``, ``Hs``/``Ws`` are ``h``/``w`` rounded up to even (so the first
coarsening is an exact 2 x 2 reshape) and the border is zero, so stencils need no bounds
checks. Edge weights are stored per cell as in the C++ core: ``eE[b, i, j]`` is the weight of
the edge to the right neighbour ``(i, j + 1)``, ``eN[b, i, j]`` the weight of the edge to the
upper neighbour ``(i - 1, j)``; both are zero unless the two pixels are in the mask.

Preconditioner (method ``"mg"``), designed for the GPU: every step is a few whole-array
operations, the same on every level, with no per-pixel branching.

* Hierarchy: 2 x 2 aggregation. The Galerkin operator ``P^T L P`` of a weighted 5-point graph
  Laplacian with piecewise-constant ``P`` is again one: each coarse edge weight is the sum of
  the two fine edges crossing between the blocks, divided by ``coarse_scale = 2.0``
  (over-correction of piecewise-constant aggregation; 2.0 gave the fewest iterations on the
  head benchmark, 1.6-2.2 tried). As in the C++ core, each crossing fine edge is instead taken in
  series with the half internal edges of its row (column) in the two blocks (harmonic
  averaging, ``_path``: exactly c / 2 for equal weights, so the same operator there), so that a
  weak edge inside a block weakens the coarse edges across it (a reshape, a shift and a sum):
  head+neck 1024^2 10 iterations instead of 11 with this V-cycle (NumPy, float32).
* Smoother: red-black Gauss-Seidel written as whole-array half-sweeps (``x <- keep * x +
  dinv_colour * (b + sum of weighted neighbours)``), one sweep red->black before and one
  black->red after the coarse correction, so the V-cycle is symmetric (as CG needs).
* Coarsest level (at most ``coarsest_max`` cells per map): a dense solve with an explicit
  inverse of ``L_c + sum_C beta_C 1_C 1_C^T`` (one rank-one term per connected component of
  the coarse graph), which is SPD, so the V-cycle is SPD on the singular system. The inverse is
  built once on the host (a few hundred cells) and applied as a batched matrix product.
* The hierarchy runs in float32 by default; CG stays in float64.

Solver: batched preconditioned CG, one independent CG per map (own step sizes, own stopping),
with the stopping rule of the C++ core: ``||b - L h|| <= tol ||b||`` checked on the true
residual (restarting when the recursive residual met the tolerance but the true one did not).
Gauge: ``b`` is projected to zero sum over every 4-connected component, the result is shifted
to mean 0 per component, isolated pixels get 0 and pixels outside the mask NaN.

On CuPy, the elementwise steps are fused with :func:`cupy.fuse` (one kernel each); on NumPy the
same Python functions run unfused.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import _validate as v
from . import perspective as persp
from .common import GENERIC_METHODS, ConvergenceWarning, SolveInfo, check_method, default_maxiter, not_converged_message

__all__ = [
    "GENERIC_METHODS",
    "Grid",
    "StencilSystem",
    "assemble",
    "check_finite_depth",
    "integrate_xp",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Elementwise kernels.  Pure arithmetic on their arguments, so that the same function runs on
# NumPy arrays and, fused by cupy.fuse, as a single CUDA kernel on CuPy arrays.
# Arguments: xc, xr, xl, xu, xd = x at the cell and at its right, left, upper, lower neighbour;
# eE, eW, eN, eS = weight of the edge to that neighbour; d = sum of the four (the diagonal).


def _k_apply(xc, xr, xl, xu, xd, d, eE, eW, eN, eS):
    return d * xc - (eE * xr + eW * xl + eN * xu + eS * xd)


def _k_resid(b, xc, xr, xl, xu, xd, d, eE, eW, eN, eS):
    return b - d * xc + (eE * xr + eW * xl + eN * xu + eS * xd)


def _k_gs(keep, dinv, b, xc, xr, xl, xu, xd, eE, eW, eN, eS):
    # One colour of red-black Gauss-Seidel: cells of the colour get (b + sum e x_nb) / d
    # (dinv = colour / d), the others keep their value (keep = 1 - colour).
    return keep * xc + dinv * (b + eE * xr + eW * xl + eN * xu + eS * xd)


def _k_prolong(x, d, up):
    # Add the coarse correction on the active cells (d > 0) only.
    return x + (d > 0) * up


def _k_axpy(y, a, x):
    return y + a * x


def _k_first_red(dinv_r, b):
    # Red half-sweep from x = 0: neighbours are all zero.
    return dinv_r * b


_KERNELS = {
    "apply": _k_apply,
    "resid": _k_resid,
    "gs": _k_gs,
    "prolong": _k_prolong,
    "axpy": _k_axpy,
    "first_red": _k_first_red,
}
_FUSED: dict[str, Callable[..., Any]] = {}


def _kernels(xp: Any, fuse: bool) -> dict[str, Callable[..., Any]]:
    """The elementwise kernels for ``xp``: plain functions on NumPy, cupy.fuse'd on CuPy."""
    if xp is np or not fuse:
        return _KERNELS
    if not _FUSED:
        for name, fn in _KERNELS.items():
            _FUSED[name] = xp.fuse(kernel_name=f"monohead_{name}")(fn)
    return _FUSED


# --------------------------------------------------------------------------------------------
# Small helpers that hide the few differences between NumPy and CuPy.


def _to_host(a: Any) -> np.ndarray:
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def _sync(xp: Any) -> None:
    """Wait for the device (no-op on NumPy), so that timings measure finished work."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def _ndimage(xp: Any) -> Any:
    if xp is np:
        import scipy.ndimage as ndi

        return ndi
    import cupyx.scipy.ndimage as ndi

    return ndi


def _bdot(xp: Any, a: Any, b: Any) -> Any:
    """Per-item dot products of two ``(B, ...)`` arrays: ``(B,)`` on the device."""
    B = a.shape[0]
    return xp.einsum("bi,bi->b", a.reshape(B, -1), b.reshape(B, -1))


def _nb(X: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Views of a padded ``(B, h + 2, w + 2)`` array: centre, right, left, up, down."""
    return X[:, 1:-1, 1:-1], X[:, 1:-1, 2:], X[:, 1:-1, :-2], X[:, :-2, 1:-1], X[:, 2:, 1:-1]


def _edge_views(xp: Any, eE: Any, eN: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Contiguous interior arrays ``(eE, eW, eN, eS, d)`` of padded edge weights."""
    c = xp.ascontiguousarray
    e, w, n, s = c(eE[:, 1:-1, 1:-1]), c(eE[:, 1:-1, :-2]), c(eN[:, 1:-1, 1:-1]), c(eN[:, 2:, 1:-1])
    return e, w, n, s, e + w + n + s


def _even(n: int) -> int:
    return n + (n & 1)


# --------------------------------------------------------------------------------------------
# Grid bookkeeping and assembly.


class Grid:
    """The padded crop shared by a batch of ``(B, H, W)`` maps.

    Args:
        mask: ``(B, H, W)`` bool on the device of ``xp``; every item non-empty.
        xp: :mod:`numpy` or :mod:`cupy`.

    Attributes:
        B, H, W: batch and image size. r0, c0, h, w: the bounding box of the union of the
        masks. Hs, Ws: ``h``, ``w`` rounded up to even. mask: the padded ``(B, Hs + 2, Ws + 2)``
        bool mask.
    """

    def __init__(self, mask: Any, xp: Any) -> None:
        self.xp = xp
        self.B, self.H, self.W = (int(s) for s in mask.shape)
        rows = np.flatnonzero(_to_host(mask.any(axis=(0, 2))))
        cols = np.flatnonzero(_to_host(mask.any(axis=(0, 1))))
        self.r0, self.c0 = int(rows[0]), int(cols[0])
        self.h, self.w = int(rows[-1]) - self.r0 + 1, int(cols[-1]) - self.c0 + 1
        self.Hs, self.Ws = _even(self.h), _even(self.w)
        self.mask = self.pad(mask, dtype=bool)

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        return (self.B, self.Hs + 2, self.Ws + 2)

    def pad(self, img: Any, dtype: Any = np.float64) -> Any:
        """``(B, H, W, ...)`` image -> padded ``(B, Hs + 2, Ws + 2, ...)`` crop (zero outside)."""
        xp = self.xp
        out = xp.zeros(self.padded_shape + tuple(img.shape[3:]), dtype=dtype)
        out[:, 1 : 1 + self.h, 1 : 1 + self.w] = img[:, self.r0 : self.r0 + self.h, self.c0 : self.c0 + self.w]
        return out

    def unpad(self, arr: Any, fill: float = np.nan) -> Any:
        """Padded ``(B, Hs + 2, Ws + 2)`` -> ``(B, H, W)`` float64, ``fill`` outside the mask."""
        xp = self.xp
        out = xp.full((self.B, self.H, self.W), fill, dtype=np.float64)
        box = (slice(None), slice(1, 1 + self.h), slice(1, 1 + self.w))
        out[:, self.r0 : self.r0 + self.h, self.c0 : self.c0 + self.w] = xp.where(self.mask[box], arr[box], fill)
        return out


def assemble(
    normals_p: Any,
    mask_p: Any,
    W_p: Any | None,
    lam: float,
    xp: Any,
    K: tuple[float, float, float, float] | None = None,
    origin: tuple[int, int] = (0, 0),
) -> tuple[Any, Any, Any]:
    """Edge weights and right-hand side of the WLS system on padded arrays.

    Args:
        normals_p: ``(B, h + 2, w + 2, 3)`` float64 normals (camera frame of the conventions),
            ``Nz > 0`` on the mask; values outside the mask are ignored.
        mask_p: ``(B, h + 2, w + 2)`` bool, false on the border.
        W_p: ``(B, h + 2, w + 2)`` gradient magnitudes ``W >= 0`` or ``None`` (``w = 1``).
        lam: ``lam`` of ``w = 1 / (1 + lam W)``.
        xp: the array module (:mod:`numpy`, :mod:`cupy`, or :mod:`torch`: the PyTorch front end
            assembles with this very function so that autograd differentiates it).
        K: ``(fx, fy, cx, cy)`` of a pinhole camera (:func:`~monohead.integration.perspective.check_K`)
            or ``None`` (orthographic). With ``K`` the slopes are those of the log-depth
            (:func:`~monohead.integration.perspective.perspective_slopes`).
        origin: image ``(row, column)`` of padded cell ``[0, 0]`` (``(r0 - 1, c0 - 1)`` for a
            crop at ``(r0, c0)`` with its one-cell border); used with ``K`` only.

    Returns:
        ``(eE, eN, b)``, each ``(B, h + 2, w + 2)`` float64: rightward and upward edge weights
        (zero unless both pixels are in the mask) and ``b = sum_e w_e g_e (e_j - e_i)`` (not
        yet projected per component).
    """
    m = mask_p
    nz = xp.where(m, normals_p[..., 2], 1.0)
    mf = xp.where(m, xp.ones_like(nz), 0.0)  # written so that it also runs with xp = torch
    if K is None:
        p = xp.where(m, -normals_p[..., 0] / nz, 0.0)
        q = xp.where(m, -normals_p[..., 1] / nz, 0.0)
    else:
        p, q = persp.perspective_slopes(normals_p, K, m, origin, xp)
    w = mf if W_p is None else mf / (1.0 + lam * W_p)
    eE = xp.zeros_like(mf)
    eN = xp.zeros_like(mf)
    eE[:, :, :-1] = 0.5 * (w[:, :, :-1] + w[:, :, 1:]) * (mf[:, :, :-1] * mf[:, :, 1:])
    eN[:, 1:, :] = 0.5 * (w[:, 1:, :] + w[:, :-1, :]) * (mf[:, 1:, :] * mf[:, :-1, :])
    # Fluxes w_e g_e of the rightward edge (i, j)->(i, j+1) and the upward edge (i, j)->(i-1, j).
    fE = eE[:, :, :-1] * (0.5 * (p[:, :, :-1] + p[:, :, 1:]))
    fN = eN[:, 1:, :] * (0.5 * (q[:, 1:, :] + q[:, :-1, :]))
    b = xp.zeros_like(mf)
    b[:, :, :-1] -= fE
    b[:, :, 1:] += fE
    b[:, 1:, :] -= fN
    b[:, :-1, :] += fN
    return eE, eN, b


# --------------------------------------------------------------------------------------------
# Multigrid hierarchy.


@dataclass
class _Level:
    """One level: interior ``(h, w)`` (even except on the coarsest level)."""

    h: int
    w: int
    eE: Any  # contiguous interior (B, h, w): weight to the right neighbour
    eW: Any  # ... to the left neighbour
    eN: Any  # ... to the upper neighbour
    eS: Any  # ... to the lower neighbour
    d: Any  # diagonal
    dinv_r: Any = None  # red / d (0 where d = 0)
    dinv_b: Any = None  # black / d
    red: Any = None  # (1, h, w) 1 on red cells ((i + j) even), 0 on black
    black: Any = None
    x: Any = None  # padded (B, h + 2, w + 2)
    b: Any = None  # padded


def _path(xp: Any, c: Any, a: Any, b: Any) -> Any:
    """1 / (1/(2a) + 1/c + 1/(2b)) elementwise; a missing a or b (0) counts as c, c = 0 gives 0."""
    a = xp.where(a > 0, a, c)
    b = xp.where(b > 0, b, c)
    ab2 = 2 * a * b
    den = c * (a + b) + ab2
    return c * ab2 / xp.where(den > 0, den, 1)


class _Multigrid:
    """Aggregation multigrid V-cycle (see the module docstring) as an SPD preconditioner."""

    def __init__(
        self,
        eE: Any,
        eN: Any,
        xp: Any,
        *,
        dtype: Any = np.float32,
        coarse_scale: float = 2.0,
        coarsest_max: int = 128,
        kernels: dict[str, Callable[..., Any]],
    ) -> None:
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.k = kernels
        B = eE.shape[0]
        self.B = B
        E = eE.astype(self.dtype)
        N = eN.astype(self.dtype)
        levels: list[_Level] = []
        s2 = self.dtype.type(2.0 / coarse_scale)  # _path() is c / 2 for equal weights
        while True:
            h, w = E.shape[1] - 2, E.shape[2] - 2
            levels.append(self._make_level(h, w, E, N))
            if h * w <= coarsest_max or (h <= 1 and w <= 1):
                break
            # Coarsen: interior (h, w) -> (h/2, w/2); pad the interior to even first.
            he, we = _even(h), _even(w)
            Ei = xp.zeros((B, he, we), self.dtype)
            Ni = xp.zeros((B, he, we), self.dtype)
            Ei[:, :h, :w] = E[:, 1:-1, 1:-1]
            Ni[:, :h, :w] = N[:, 1:-1, 1:-1]
            hc, wc = he // 2, we // 2
            Er = Ei.reshape(B, hc, 2, wc, 2)
            Nr = Ni.reshape(B, hc, 2, wc, 2)
            # Harmonic coarse edges, as in the C++ core (csrc/multigrid.hpp, path()): each fine
            # edge crossing between two blocks in series with the half internal edges of its row
            # (column) in the two blocks. Rightward: the fine edges leaving the right child column
            # (both rows); upward: the fine edges leaving the top child row (both columns).
            zE = xp.zeros_like(Er[:, :, :, :1, 0])
            inE = Er[..., 0]  # (B, hc, 2, wc): internal edges of each block, per row
            cE = (_path(xp, Er[..., 1], inE, xp.concatenate([inE[..., 1:], zE], axis=3))).sum(axis=2) * s2
            zN = xp.zeros_like(Nr[:, :1, 1])
            inN = Nr[:, :, 1]  # (B, hc, wc, 2): internal edges of each block, per column
            cN = (_path(xp, Nr[:, :, 0], inN, xp.concatenate([zN, inN[:, :-1]], axis=1))).sum(axis=3) * s2
            # Storage of the coarse level: even interior unless it is the coarsest.
            last = hc * wc <= coarsest_max or (hc <= 1 and wc <= 1)
            Hs, Ws = (hc, wc) if last else (_even(hc), _even(wc))
            E = xp.zeros((B, Hs + 2, Ws + 2), self.dtype)
            N = xp.zeros((B, Hs + 2, Ws + 2), self.dtype)
            E[:, 1 : 1 + hc, 1 : 1 + wc] = cE
            N[:, 1 : 1 + hc, 1 : 1 + wc] = cN
        self.levels = levels
        self._build_coarsest(levels[-1])

    def _make_level(self, h: int, w: int, E: Any, N: Any) -> _Level:
        xp = self.xp
        e, wv, n, s, d = _edge_views(xp, E, N)
        L = _Level(h, w, e, wv, n, s, d)
        ii, jj = np.indices((h, w))
        red = ((ii + jj) % 2 == 0).astype(self.dtype)[None]
        L.red = xp.asarray(red)
        L.black = xp.asarray(1 - red)
        dinv = xp.where(d > 0, 1 / xp.where(d > 0, d, 1), 0).astype(self.dtype)
        L.dinv_r = dinv * L.red
        L.dinv_b = dinv * L.black
        L.x = xp.zeros((self.B, h + 2, w + 2), self.dtype)
        L.b = xp.zeros((self.B, h + 2, w + 2), self.dtype)
        return L

    def _build_coarsest(self, L: _Level) -> None:
        """Dense inverse of the coarsest operator plus one rank-one term per component (host)."""
        import scipy.sparse as sp
        from scipy.sparse.csgraph import connected_components

        B, h, w = self.B, L.h, L.w
        n = h * w
        eE = _to_host(L.eE).astype(np.float64).reshape(B, n)
        eN = _to_host(L.eN).astype(np.float64).reshape(B, n)
        d = _to_host(L.d).astype(np.float64).reshape(B, n)
        idx = np.arange(n).reshape(h, w)
        # Edges: (k, right neighbour) and (k, upper neighbour) with positive weight.
        iE, jE = idx[:, :-1].ravel(), idx[:, 1:].ravel()
        iN, jN = idx[1:, :].ravel(), idx[:-1, :].ravel()
        A = np.zeros((B, n, n))
        A[:, iE, jE] = A[:, jE, iE] = -eE[:, iE]
        A[:, iN, jN] = A[:, jN, iN] = -eN[:, iN]
        ar = np.arange(n)
        A[:, ar, ar] = d
        # Components of the coarse edge graph, all items at once (block-diagonal graph).
        rows, cols = [], []
        for i, j, wts in ((iE, jE, eE[:, iE]), (iN, jN, eN[:, iN])):
            bb, kk = np.nonzero(wts > 0)
            rows.append(bb * n + i[kk])
            cols.append(bb * n + j[kk])
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        graph = sp.coo_matrix((np.ones(r.size), (r, c)), shape=(B * n, B * n))
        _, lab = connected_components(graph, directed=False)
        lab = lab.reshape(B, n)
        active = d > 0
        inv = np.zeros((B, n, n))
        for bi in range(B):
            Ab = A[bi]
            act = active[bi]
            Ab[~act, ~act] = 1.0  # inactive cells: identity (their right-hand side is 0)
            for comp in np.unique(lab[bi][act]):
                mem = np.flatnonzero((lab[bi] == comp) & act)
                beta = d[bi, mem].sum() / mem.size**2
                Ab[np.ix_(mem, mem)] += beta
            try:
                Ai = np.linalg.inv(Ab)
            except np.linalg.LinAlgError:
                # Numerically singular in float32-rounded weights: the pseudo-inverse is still
                # symmetric positive semi-definite, which is all a CG preconditioner needs.
                Ai = np.linalg.pinv(Ab, hermitian=True)
            Ai = 0.5 * (Ai + Ai.T)
            Ai[~act, :] = 0.0
            Ai[:, ~act] = 0.0
            inv[bi] = Ai
        # Kept in float64: with weights spanning many decades (lam W up to 1e12) a float32
        # inverse of the coarsest operator is not a useful preconditioner (CG then stalls).
        # The level is small (at most coarsest_max cells per map), so the cost is negligible.
        self.coarse_inv = self.xp.asarray(inv)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def nbytes(self) -> int:
        n = int(self.coarse_inv.nbytes)
        for L in self.levels:
            n += sum(int(a.nbytes) for a in (L.eE, L.eW, L.eN, L.eS, L.d, L.dinv_r, L.dinv_b, L.x, L.b))
        return n

    def _gs(self, L: _Level, keep: Any, dinv: Any) -> None:
        xc, xr, xl, xu, xd = _nb(L.x)
        xc[...] = self.k["gs"](keep, dinv, L.b[:, 1:-1, 1:-1], xc, xr, xl, xu, xd, L.eE, L.eW, L.eN, L.eS)

    def apply(self, r: Any, out: Any) -> None:
        """``out = M^{-1} r``: one symmetric V-cycle with zero initial guess.

        ``r`` and ``out`` are padded float64 arrays of the finest level (borders untouched).
        """
        xp, k, levels = self.xp, self.k, self.levels
        L0 = levels[0]
        L0.b[:, 1:-1, 1:-1] = r[:, 1:-1, 1:-1]
        nl = len(levels)
        for li in range(nl - 1):
            L = levels[li]
            bi = L.b[:, 1:-1, 1:-1]
            L.x[:, 1:-1, 1:-1] = k["first_red"](L.dinv_r, bi)
            self._gs(L, L.red, L.dinv_b)
            res = k["resid"](bi, *_nb(L.x), L.d, L.eE, L.eW, L.eN, L.eS)
            C = levels[li + 1]
            hc, wc = L.h // 2, L.w // 2
            C.b[:, 1 : 1 + hc, 1 : 1 + wc] = res.reshape(self.B, hc, 2, wc, 2).sum(axis=(2, 4))
        C = levels[-1]
        bc = C.b[:, 1:-1, 1:-1].reshape(self.B, C.h * C.w, 1)
        C.x[:, 1:-1, 1:-1] = xp.matmul(self.coarse_inv, bc.astype(np.float64)).reshape(self.B, C.h, C.w)
        for li in range(nl - 2, -1, -1):
            L = levels[li]
            C = levels[li + 1]
            hc, wc = L.h // 2, L.w // 2
            xc_ = C.x[:, 1 : 1 + hc, 1 : 1 + wc]
            up = xp.broadcast_to(xc_[:, :, None, :, None], (self.B, hc, 2, wc, 2)).reshape(self.B, L.h, L.w)
            xin = L.x[:, 1:-1, 1:-1]
            xin[...] = k["prolong"](xin, L.d, up)
            self._gs(L, L.red, L.dinv_b)
            self._gs(L, L.black, L.dinv_r)
        out[:, 1:-1, 1:-1] = L0.x[:, 1:-1, 1:-1]


# --------------------------------------------------------------------------------------------
# The system and its solver.


@dataclass
class _Stats:
    iterations: np.ndarray  # (B,) int
    residual: np.ndarray  # (B,) float
    converged: np.ndarray  # (B,) bool

    def not_converged(self, which: str, tol: float) -> str | None:
        """The :class:`ConvergenceWarning` text when some item ended above ``tol``, else ``None``."""
        bad = np.flatnonzero(~self.converged)
        if not bad.size:
            return None
        return not_converged_message(which, int(self.iterations.max()), float(self.residual.max()), tol, bad)


#: CG iterations without halving the residual after which an item is considered stalled.
STALL_ITERATIONS = 1000


class StencilSystem:
    """The weighted 5-point graph Laplacian ``L`` of a batch, set up once, solved many times.

    Args:
        eE, eN: ``(B, Hs + 2, Ws + 2)`` float64 padded edge weights (see the module docstring:
            rightward and upward; zero on the border and where either end is outside the mask;
            ``Hs`` and ``Ws`` even).
        mask: ``(B, Hs + 2, Ws + 2)`` bool padded mask (defines the components of the gauge).
        xp: :mod:`numpy` or :mod:`cupy`; every array on its device.
        method: ``"mg"`` (multigrid-preconditioned CG) or ``"jacobi"`` (Jacobi-PCG).
        mg_dtype: float dtype of the multigrid hierarchy (default float32; CG is float64).
        coarse_scale: over-correction factor of the coarse operators (default 2.0).
        coarsest_max: coarsen until a level has at most this many cells per map.
        fuse: on CuPy, fuse the elementwise steps with :func:`cupy.fuse` (default true).
    """

    def __init__(
        self,
        eE: Any,
        eN: Any,
        mask: Any,
        xp: Any,
        method: str = "mg",
        *,
        mg_dtype: Any = np.float32,
        coarse_scale: float = 2.0,
        coarsest_max: int = 128,
        fuse: bool = True,
    ) -> None:
        check_method(method, GENERIC_METHODS)
        if eE.shape != mask.shape or eN.shape != mask.shape or eE.ndim != 3:
            raise ValueError(
                f"eE, eN and mask must share one (B, Hs + 2, Ws + 2) shape; got "
                f"{v.shape_str(eE.shape)}, {v.shape_str(eN.shape)}, {v.shape_str(mask.shape)}"
            )
        if (eE.shape[1] % 2, eE.shape[2] % 2) != (0, 0):
            raise ValueError(f"padded arrays must have even sides (interior even); got {v.shape_str(eE.shape)}")
        t0 = time.perf_counter()
        self.xp = xp
        self.method = method
        self.k = _kernels(xp, fuse)
        self.B = int(eE.shape[0])
        self.shape = tuple(int(s) for s in eE.shape)
        self.mask = mask
        self.eE, self.eW, self.eN, self.eS, self.d = _edge_views(xp, eE, eN)
        # Components of the mask (4-connected, none across the batch axis) for the gauge.
        struct = np.zeros((3, 3, 3), bool)  # a host array for scipy and cupyx alike
        struct[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
        labels, n = _ndimage(xp).label(mask, structure=struct)
        self.labels = labels.astype(np.int32).ravel()
        self.num_labels = int(n)
        sizes = xp.bincount(self.labels, minlength=n + 1).astype(np.float64)
        sizes[0] = 1.0  # background (its values are always 0)
        self._inv_sizes = 1.0 / sizes
        maxlab = _to_host(labels.reshape(self.B, -1).max(axis=1)).astype(np.int64)
        self.num_components = np.diff(np.concatenate([[0], np.maximum.accumulate(maxlab)]))
        self.num_unknowns = _to_host(mask.reshape(self.B, -1).sum(axis=1)).astype(np.int64)
        _sync(xp)
        self.labels_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        if method == "mg":
            self.mg: _Multigrid | None = _Multigrid(
                eE, eN, xp, dtype=mg_dtype, coarse_scale=coarse_scale, coarsest_max=coarsest_max, kernels=self.k
            )
            self.invd = None
        else:
            self.mg = None
            d = self.d
            self.invd = xp.where(d > 0, 1 / xp.where(d > 0, d, 1), 0)
        _sync(xp)
        self.setup_seconds = time.perf_counter() - t0
        log.debug(
            "StencilSystem %s on %s: padded %s, %d level(s), setup %.3g s",
            method, "numpy" if xp is np else "cupy", self.shape, self.num_levels, self.setup_seconds,
        )  # fmt: skip

    @property
    def num_levels(self) -> int:
        """Multigrid levels (0 for Jacobi)."""
        return self.mg.num_levels if self.mg is not None else 0

    def matvec(self, x: Any, out: Any) -> None:
        """``out = L x`` on padded arrays (the border of ``out`` is left as it is, zero)."""
        out[:, 1:-1, 1:-1] = self.k["apply"](*_nb(x), self.d, self.eE, self.eW, self.eN, self.eS)

    def project(self, a: Any) -> Any:
        """``a`` (padded) minus its mean over each component; zero outside the mask. In place."""
        xp = self.xp
        means = xp.bincount(self.labels, weights=a.ravel(), minlength=self.num_labels + 1) * self._inv_sizes
        means[0] = 0.0
        a -= means[self.labels].reshape(a.shape)
        a *= self.mask
        return a

    def _precond(self, r: Any, z: Any) -> None:
        if self.mg is not None:
            self.mg.apply(r, z)
        else:
            z[:, 1:-1, 1:-1] = self.invd * r[:, 1:-1, 1:-1]

    def solve(self, b: Any, x0: Any = None, tol: float = 1e-6, maxiter: int = 1000) -> tuple[Any, _Stats]:
        """Solve ``L x = P b`` by batched PCG; return ``(x, stats)``.

        Args:
            b: ``(B, Hs + 2, Ws + 2)`` float64 padded right-hand side (zero on the border). It
                is projected to zero sum per component (a copy; ``b`` is not modified). An
                item whose largest ``|b|`` is below ``2**-40`` or above ``2**100`` is solved for
                ``s b`` with ``s`` a power of two (exact) and its solution divided by ``s``, so
                that squared norms and the float32 hierarchy neither underflow nor overflow.
            x0: optional padded initial guess (zero outside the mask), or ``None``.
            tol: per-item stopping rule ``||b - L x|| <= tol ||b||`` on the true residual.
            maxiter: per-item cap on CG iterations.

        Returns:
            ``x``: padded float64, mean 0 over each component, 0 outside the mask and on
            isolated pixels. ``stats``: per-item iterations, true relative residuals, and
            whether each converged.
        """
        xp, B = self.xp, self.B
        b = self.project(b.astype(np.float64, copy=True))
        x = xp.zeros(self.shape) if x0 is None else (x0 * self.mask).astype(np.float64)
        bmax = _to_host(xp.abs(b).reshape(B, -1).max(axis=1))
        scale = v.power_of_two_scale(bmax, low=2.0**-40, high=2.0**100)
        rescaled = bool((scale != 1.0).any())
        if rescaled:
            sd = xp.asarray(scale)[:, None, None]
            b *= sd
            if x0 is not None:
                with np.errstate(over="ignore", invalid="ignore"):
                    x *= sd
                if not float(xp.abs(x).max()) <= v.X0_LIMIT:
                    x[...] = 0.0  # only a starting guess: far from the scaled solution, drop it
        bnorm = np.sqrt(_to_host(_bdot(xp, b, b)))
        target = tol * bnorm
        zero_rhs = bnorm == 0
        if zero_rhs.any():
            x *= xp.asarray(~zero_rhs)[:, None, None]
        r = xp.zeros(self.shape)
        z = xp.zeros(self.shape)
        p = xp.zeros(self.shape)
        Ap = xp.zeros(self.shape)
        k = self.k

        def true_residual() -> np.ndarray:
            self.matvec(x, Ap)
            r[...] = b - Ap
            return np.sqrt(_to_host(_bdot(xp, r, r)))

        iters = np.zeros(B, dtype=np.int64)
        rnorm = true_residual()
        restarts = 0
        while True:
            active = (rnorm > target) & (iters < maxiter)
            if not active.any():
                break
            self._precond(r, z)
            p[...] = z
            rz = _to_host(_bdot(xp, r, z))
            running = active.copy()
            # Stagnation guard: an item whose recursive residual has not halved in
            # STALL_ITERATIONS iterations stops (and restarts from its true residual, at most
            # 5 times), so that no input can keep CG busy up to a huge maxiter.
            best = rnorm.copy()
            since = np.zeros(B, dtype=np.int64)
            while True:
                self.matvec(p, Ap)
                pAp = _to_host(_bdot(xp, p, Ap))
                running &= pAp > 0  # breakdown (p in the null space): restart from the true residual
                if not running.any():
                    break
                alpha = np.where(running, rz / np.where(running, pAp, 1.0), 0.0)
                al = xp.asarray(alpha)[:, None, None]
                x[...] = k["axpy"](x, al, p)
                r[...] = k["axpy"](r, -al, Ap)
                rr = _to_host(_bdot(xp, r, r))
                iters += running
                rn = np.sqrt(rr)
                improved = rn <= 0.5 * best
                best = np.where(improved, rn, best)
                since = np.where(improved, 0, since + running)
                running &= (rn > target) & (iters < maxiter) & (since < STALL_ITERATIONS)
                if not running.any():
                    break
                self._precond(r, z)
                rz_new = _to_host(_bdot(xp, r, z))
                beta = np.where(running, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
                rz = rz_new
                p[...] = k["axpy"](z, xp.asarray(beta)[:, None, None], p)
            rnorm = true_residual()
            restarts += 1
            if restarts > 5:
                break
        self.project(x)
        if rescaled:
            x /= sd
        residual = np.where(bnorm > 0, rnorm / np.where(bnorm > 0, bnorm, 1.0), 0.0)
        converged = (rnorm <= target) | zero_rhs  # false for a NaN residual
        return x, _Stats(iters, residual, converged)


# --------------------------------------------------------------------------------------------
# One-shot integration.


def check_finite_depth(depth: Any, mask: Any, num_unknowns: Any, method: str, perspective: bool = False) -> None:
    """Raise if a depth inside the mask is not finite (or, perspective, not positive).

    Orthographic: unreachable for inputs that pass the validators (the values the solver
    derives are checked up front), so a ``FloatingPointError`` that asks for a report; it
    guarantees that no non-finite value is ever returned silently. Perspective: the depth is
    ``exp`` of the solved log-depth, which overflows (or underflows to 0) when the normals
    imply a depth ratio beyond float64 within a component; that is a property of the input,
    reported as ``ValueError`` naming the normals.

    Args:
        depth: ``(B, H, W)`` or ``(H, W)``, NaN outside ``mask``.
        mask: bool, shaped like ``depth``.
        num_unknowns: mask pixels (per map, summed here).
        method: the solver's name, for the message.
        perspective: whether ``depth`` is ``exp`` of a log-depth.
    """
    xp = v.array_module(depth)
    good = xp.isfinite(depth) & mask
    if perspective:
        good &= depth > 0
    total = int(np.sum(num_unknowns))
    bad = total - int(xp.count_nonzero(good))
    if not bad:
        return
    if perspective:
        raise ValueError(
            f"normals imply depth ratios beyond float64 under K (the depth overflows or underflows at {bad} pixel(s) "
            "inside the mask): the log-depth spans more than about 1400; check K and the normals"
        )
    raise FloatingPointError(
        f"{method} solve produced {bad} non-finite depth value(s) inside the mask; please report this input"
    )


def _device_of(a: Any, xp: Any) -> Any:
    """Context manager making the device of CuPy array ``a`` current (no-op for NumPy)."""
    return a.device if xp is not np and isinstance(a, xp.ndarray) else contextlib.nullcontext()


def integrate_xp(
    normals: Any,
    weights: Any = None,
    lam: float = 0.1,
    mask: Any = None,
    *,
    xp: Any = None,
    K: Any = None,
    method: str = "mg",
    tol: float = 1e-6,
    maxiter: int | None = None,
    x0: Any = None,
    return_info: bool = False,
    mg_dtype: Any = np.float32,
    coarse_scale: float = 2.0,
    coarsest_max: int = 128,
    fuse: bool = True,
) -> Any:
    """Integrate normal maps with the array-module-generic solver (NumPy or CuPy).

    The algorithm of ``monohead.integrate(..., backend="cupy")``, callable with NumPy arrays:
    the same system, gauge, validation and stopping rule as the C++ core, solved by batched
    multigrid-preconditioned CG (see the module docstring). Nothing leaves the device of the
    inputs except a few scalars per iteration and the small coarsest-level operator at setup.

    Args:
        normals: ``(H, W, 3)`` or a batch ``(B, H, W, 3)`` of unit normals in the camera frame
            (x right, y up, z toward the viewer; ``Nz > 0`` inside the mask). Any real dtype and
            layout. NumPy or CuPy; every array argument on the same device. Validated by the
            rules of :func:`monohead.integrate` (``1e-100 <= Nz <= 1e100`` and slopes at most
            1e8 inside the mask; values outside it ignored).
        weights: gradient magnitudes ``W = |grad h| >= 0``: ``(H, W)``, or for a batch
            ``(B, H, W)`` or ``(H, W)`` shared by the batch; ``None`` for ``w = 1``.
        lam: finite ``lam >= 0`` in ``w = 1 / (1 + lam W)`` (default 0.1); ``lam * W <= 1e12``
            inside the mask.
        mask: bool integration domain, shaped like ``weights``; default: non-zero normals.
        xp: array module; default: that of ``normals``.
        K: optional ``(3, 3)`` pinhole intrinsics in OpenCV form, shared by a batch: the
            perspective system of :func:`monohead.integrate` (unknown: log-depth).
        method: ``"mg"`` (default) or ``"jacobi"`` (Jacobi-PCG, the usual public recipe).
        tol: stop when ``||b - L h|| <= tol ||b||`` (per map, true residual), in ``(0, 1)``.
        maxiter: CG iteration cap per map in ``[1, 2**31 - 1]`` (default ``20 (H + W) + 1000``).
        x0: optional initial depth, shaped like the output (pixel units; NaN outside the mask
            is fine).
        return_info: also return a :class:`~monohead.SolveInfo` (a list of them for a batch;
            timings are those of the whole batch).
        mg_dtype: float dtype of the multigrid hierarchy (float32 default; CG is float64).
        coarse_scale: over-correction factor of the coarse operators (default 2.0).
        coarsest_max: cells per map of the coarsest multigrid level (dense solve).
        fuse: on CuPy, fuse elementwise steps with :func:`cupy.fuse`.

    Returns:
        ``(H, W)`` or ``(B, H, W)`` float64 depth on the device of the input, NaN outside the
        mask: orthographic, height toward the viewer in pixel units, mean 0 over each
        4-connected component of each mask, 0 on isolated pixels; with ``K``, the depth along
        the optical axis with geometric mean 1 per component. And the info when
        ``return_info`` is true.

    Raises:
        TypeError, ValueError: bad input, with the argument named.

    Warns:
        ConvergenceWarning: some map hit ``maxiter`` before ``tol``.
    """
    t0 = time.perf_counter()
    check_method(method, GENERIC_METHODS, " for the generic solver")
    if xp is None:
        xp = v.array_module(normals)
    cam = None if K is None else persp.check_K(K)
    # CuPy: allocate on the device of the normals, whichever device is current.
    with _device_of(normals, xp):
        n, m, w, lam, batched = v.check_batch_inputs(normals, weights, lam, mask, xp=xp, check_values=cam is None)
        if cam is not None:
            persp.check_normals_facing_camera(n, m, cam, xp=xp)
        tol = v.check_tol(tol)
        maxiter = v.check_maxiter(maxiter)
        B, H, W = m.shape
        if maxiter is None:
            maxiter = default_maxiter(H, W)
        x0_arr = None
        if x0 is not None:
            x0_arr = v.as_float_array(x0, "x0", xp)
            want = (B, H, W) if batched else (H, W)
            if tuple(x0_arr.shape) != want:
                raise ValueError(f"x0 must have shape {v.shape_str(want)}; got {v.shape_str(tuple(x0_arr.shape))}")
            x0_arr = v.check_x0_in_mask(x0_arr.reshape(B, H, W), m, "x0", xp)
            if cam is not None:
                bad = int(xp.count_nonzero((x0_arr <= 0) & m))
                if bad:
                    raise ValueError(
                        f"x0 must be a positive depth inside the mask when K is given; got {bad} value(s) <= 0"
                    )
                x0_arr = xp.where(m, xp.log(xp.where(m, x0_arr, 1.0)), 0.0)
        # Tiny slopes (< 2**-40, orthographic): integrate s p, s q (s a power of two per map,
        # exact) and divide the depth by s, as the C++ path does.
        smax = v.check_slopes(n, m, "normals", xp, K=cam)
        scale = v.power_of_two_scale(smax) if cam is None else np.ones(B)
        if bool((scale != 1.0).any()):
            sd = xp.asarray(scale)[:, None, None]
            n = n.copy()
            n[..., :2] *= sd[..., None]
            if x0_arr is not None:
                x0_arr = x0_arr * sd
                if not float(xp.abs(x0_arr).max()) <= v.X0_LIMIT:
                    x0_arr = None  # only a starting guess: far from the scaled solution, drop it

        grid = Grid(m, xp)
        eE, eN, b = assemble(
            grid.pad(n),
            grid.mask,
            None if w is None else grid.pad(w),
            lam,
            xp,
            K=cam,
            origin=(grid.r0 - 1, grid.c0 - 1),
        )
        _sync(xp)
        assembly_seconds = time.perf_counter() - t0
        system = StencilSystem(
            eE,
            eN,
            grid.mask,
            xp,
            method,
            mg_dtype=mg_dtype,
            coarse_scale=coarse_scale,
            coarsest_max=coarsest_max,
            fuse=fuse,
        )
        t0 = time.perf_counter()
        x, st = system.solve(b, None if x0_arr is None else grid.pad(x0_arr), tol=tol, maxiter=maxiter)
        if x0_arr is not None and not (bool(st.converged.all()) and bool(xp.isfinite(x).all())):
            # x0 is only a starting guess; one CG cannot recover from (|x0| ~ 1e50) is dropped.
            x, st = system.solve(b, None, tol=tol, maxiter=maxiter)
        depth = grid.unpad(x)
        if bool((scale != 1.0).any()):
            depth /= xp.asarray(scale)[:, None, None]
        if cam is not None:
            with np.errstate(over="ignore", under="ignore"):  # reported by check_finite_depth
                depth = xp.exp(depth)  # log-depth, mean 0 per component -> geometric mean 1
        check_finite_depth(depth, m, system.num_unknowns, method, perspective=cam is not None)
        _sync(xp)
        solve_seconds = time.perf_counter() - t0
        message = st.not_converged(method, tol)
        if message:
            warnings.warn(message, ConvergenceWarning, stacklevel=2)
        if not batched:
            depth = depth[0]
        if not return_info:
            return depth
        backend = "numpy" if xp is np else "cupy"
        infos = [
            SolveInfo(
                method=method,
                backend=backend,
                iterations=int(st.iterations[i]),
                residual=float(st.residual[i]),
                converged=bool(st.converged[i]),
                assembly_seconds=assembly_seconds + system.labels_seconds,
                setup_seconds=system.setup_seconds,
                solve_seconds=solve_seconds,
                num_unknowns=int(system.num_unknowns[i]),
                num_components=int(system.num_components[i]),
            )
            for i in range(B)
        ]
        return depth, (infos if batched else infos[0])
