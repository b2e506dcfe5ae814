"""Classic Fourier-domain integrators, kept as baselines (NumPy + scipy.fft).

Both work on the full rectangle with unit weights; they are what a user would otherwise call
and what the benchmarks and experiments compare against. The slopes ``p = -Nx/Nz``,
``q = -Ny/Nz`` come from :func:`monohead.geometry.normals_to_gradients`, their one home;
``gradients_from_normals`` here is that same function under its former name, kept for
compatibility.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate as v
from ..geometry.normals import normals_to_gradients

__all__ = ["dct_poisson", "frankot_chellappa", "gradients_from_normals"]

#: The former name of :func:`monohead.geometry.normals_to_gradients` (the same function object).
gradients_from_normals = normals_to_gradients


def _full_rectangle_slopes(normals: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(p, q)`` of ``(H, W, 3)`` normals validated on the full rectangle (``Nz > 0`` everywhere)."""
    n = v.check_normals(normals)
    return normals_to_gradients(n, np.ones(n.shape[:2], dtype=bool))


def dct_poisson(normals: Any) -> np.ndarray:
    """Least-squares integration on the full rectangle by the DCT (Simchony et al. 1990).

    Solves exactly the staggered-grid system of :func:`monohead.integrate` with a full mask and
    unit weights (``lam = 0`` or ``weights=None``): its matrix is the 5-point Neumann
    Laplacian, which the type-II DCT diagonalises, with eigenvalues
    ``(2 - 2 cos(pi k / H)) + (2 - 2 cos(pi l / W))``.

    Args:
        normals: ``(H, W, 3)`` unit normals (conventions' frame), ``Nz > 0`` at every pixel
            (the domain is the whole rectangle, with free (Neumann) borders).

    Returns:
        ``(H, W)`` float64 depth in pixel units, mean 0: the least-squares solution, equal to
        ``monohead.integrate(normals, lam=0)`` up to the solver's tolerance.
    """
    from scipy.fft import dctn, idctn

    p, q = _full_rectangle_slopes(normals)
    H, W = p.shape
    b = np.zeros((H, W))
    # Horizontal pair (r, c)-(r, c+1): flux w * (p_c + p_{c+1}) / 2 into c+1, out of c.
    fE = 0.5 * (p[:, :-1] + p[:, 1:])
    b[:, 1:] += fE
    b[:, :-1] -= fE
    # Vertical pair (r, c)-(r-1, c), +y is one row up: flux into r-1, out of r.
    fN = 0.5 * (q[1:, :] + q[:-1, :])
    b[:-1, :] += fN
    b[1:, :] -= fN
    bh = dctn(b, type=2, norm="ortho")
    ky = 2.0 - 2.0 * np.cos(np.pi * np.arange(H) / H)
    kx = 2.0 - 2.0 * np.cos(np.pi * np.arange(W) / W)
    denom = ky[:, None] + kx[None, :]
    denom[0, 0] = 1.0
    bh /= denom
    bh[0, 0] = 0.0  # gauge: mean 0
    return idctn(bh, type=2, norm="ortho")


def frankot_chellappa(normals: Any) -> np.ndarray:
    """Frankot-Chellappa integration (1988): projection onto integrable Fourier bases.

    Assumes a periodic surface on the full rectangle and unit weights; the classic fast
    baseline. Derivatives are taken along the conventions' axes (x = column, y up).

    Args:
        normals: ``(H, W, 3)`` unit normals (conventions' frame), ``Nz > 0`` at every pixel;
            the surface is taken as periodic (its opposite borders meet).

    Returns:
        ``(H, W)`` float64 depth in pixel units, mean 0: exact for a periodic surface, with
        errors along the borders otherwise.
    """
    p, q = _full_rectangle_slopes(normals)
    H, W = p.shape
    # d/d(row) = -d/dy.
    gx = p
    grow = -q
    wx = 2.0 * np.pi * np.fft.fftfreq(W)[None, :]
    wr = 2.0 * np.pi * np.fft.fftfreq(H)[:, None]
    Gx = np.fft.fft2(gx)
    Gr = np.fft.fft2(grow)
    denom = wx**2 + wr**2
    denom[0, 0] = 1.0
    Z = (-1j * wx * Gx - 1j * wr * Gr) / denom
    Z[0, 0] = 0.0
    return np.real(np.fft.ifft2(Z))
