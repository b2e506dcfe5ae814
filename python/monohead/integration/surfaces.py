"""Analytic surfaces with exact normals: test problems for integrators.

Each function returns a :class:`Surface`: the true depth (height toward the viewer, pixel
units, NaN outside the mask), its analytic unit normals in the conventions' frame (x to the
right = increasing column, y up = decreasing row, z toward the viewer; ``(0, 0, 0)`` outside
the mask), the gradient-magnitude map ``W = |grad h|`` and the mask. They are the problems of
monohead's tests and benchmarks, and useful to check any integrator.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Surface", "head", "paraboloid", "plane", "rectangle", "sphere_cap"]


class Surface(NamedTuple):
    """A test surface: ``normals (H, W, 3)``, ``W (H, W)``, ``mask (H, W)`` bool, ``depth (H, W)``."""

    normals: np.ndarray
    W: np.ndarray
    mask: np.ndarray
    depth: np.ndarray


def _coords(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame pixel coordinates: x = column - cx, y = cy - row (y up)."""
    H, W = shape
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    return cols - (W - 1) / 2.0, (H - 1) / 2.0 - rows


def _surface(h: np.ndarray, hx: np.ndarray, hy: np.ndarray, mask: np.ndarray, W: np.ndarray | None = None) -> Surface:
    n = np.stack([-hx, -hy, np.ones_like(hx)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~mask] = 0.0
    depth = np.where(mask, h, np.nan)
    grad = np.hypot(hx, hy) if W is None else W
    return Surface(n, np.where(mask, grad, 0.0), mask, depth)


def plane(
    shape: tuple[int, int], slope_x: float = 0.3, slope_y: float = -0.2, mask: np.ndarray | None = None
) -> Surface:
    """``h = slope_x x + slope_y y`` (pixel units), on ``mask`` (default: the full rectangle)."""
    x, y = _coords(shape)
    m = np.ones(shape, bool) if mask is None else np.asarray(mask, bool)
    h = slope_x * x + slope_y * y
    return _surface(h, np.full(shape, float(slope_x)), np.full(shape, float(slope_y)), m)


def sphere_cap(shape: tuple[int, int], radius: float, rim: float = 0.8) -> Surface:
    """Cap of a sphere of ``radius`` pixels centred on the image, masked to the disc of radius
    ``rim * radius`` (so that ``Nz >= sqrt(1 - rim^2)``): ``h = sqrt(R^2 - x^2 - y^2)``."""
    x, y = _coords(shape)
    r2 = x**2 + y**2
    mask = r2 <= (rim * radius) ** 2
    z = np.sqrt(np.maximum(radius**2 - r2, 1e-12))
    return _surface(z, -x / z, -y / z, mask)


def paraboloid(shape: tuple[int, int], curvature: float = 0.01, mask: np.ndarray | None = None) -> Surface:
    """``h = -curvature (x^2 + y^2) / 2``; its averaged-gradient discretisation is exact."""
    x, y = _coords(shape)
    m = np.ones(shape, bool) if mask is None else np.asarray(mask, bool)
    return _surface(-0.5 * curvature * (x**2 + y**2), -curvature * x, -curvature * y, m)


def _bump(x: np.ndarray, y: np.ndarray, x0: float, y0: float, sx: float, sy: float, amp: float):
    g = amp * np.exp(-0.5 * (((x - x0) / sx) ** 2 + ((y - y0) / sy) ** 2))
    return g, -g * (x - x0) / sx**2, -g * (y - y0) / sy**2


def head(size: int, neck: bool = True) -> Surface:
    """A head-like surface on a ``size x size`` image: the benchmark problem.

    The face is an elliptical dome (semi-axes 0.36 and 0.44 of the size) with a nose ridge,
    brows, eye sockets and cheeks (Gaussian bumps), and ``W`` is the analytic ``|grad h|``.

    With ``neck=True`` a neck (a cylinder-like strip, lower than the chin) continues the mask
    to the bottom of the image, so the mask stays connected while the depth jumps under the
    chin: the normals there describe two surfaces at different heights, and ``W`` carries the
    jump (the depth difference across the step, in pixels per pixel) on the pixels that touch
    it, as finite differences of the true depth would. This is the case the weights
    ``1 / (1 + lam W)`` are for.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8; got {size}")
    x, y = _coords((size, size))
    a, b = 0.36 * size, 0.44 * size
    u2 = (x / a) ** 2 + (y / b) ** 2
    face = u2 < 1.0
    depth_scale = 0.3 * size
    h = depth_scale * (1.0 - u2)
    hx = depth_scale * (-2.0 * x / a**2)
    hy = depth_scale * (-2.0 * y / b**2)
    s = size
    for x0, y0, sx, sy, amp in (
        (0.0, -0.02 * s, 0.035 * s, 0.12 * s, 0.06 * s),  # nose ridge
        (0.0, -0.10 * s, 0.05 * s, 0.04 * s, 0.03 * s),  # nose tip
        (-0.12 * s, 0.08 * s, 0.06 * s, 0.035 * s, -0.035 * s),  # eye sockets
        (0.12 * s, 0.08 * s, 0.06 * s, 0.035 * s, -0.035 * s),
        (-0.12 * s, 0.14 * s, 0.08 * s, 0.02 * s, 0.012 * s),  # brows
        (0.12 * s, 0.14 * s, 0.08 * s, 0.02 * s, 0.012 * s),
        (-0.17 * s, -0.10 * s, 0.07 * s, 0.07 * s, 0.015 * s),  # cheeks
        (0.17 * s, -0.10 * s, 0.07 * s, 0.07 * s, 0.015 * s),
        (0.0, -0.25 * s, 0.08 * s, 0.03 * s, -0.01 * s),  # mouth
    ):
        g, gx, gy = _bump(x, y, x0, y0, sx, sy, amp)
        h, hx, hy = h + g, hx + gx, hy + gy
    if not neck:
        return _surface(h, hx, hy, face)
    # Neck: a horizontal half-cylinder strip from the centre down, lower than the face.
    half = 0.17 * size
    neck_mask = (np.abs(x) < half) & (y < 0) & ~face
    hn = 0.05 * size * (1.0 - (x / half) ** 2) - 0.1 * size
    hnx = 0.05 * size * (-2.0 * x / half**2)
    mask = face | neck_mask
    H = np.where(face, h, hn)
    HX = np.where(face, hx, hnx)
    HY = np.where(face, hy, 0.0)
    grad = np.hypot(HX, HY)
    # The step between chin and neck: pixels with a 4-neighbour on the other surface carry
    # the depth difference as their gradient magnitude.
    Wmap = grad.copy()
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nb_face = np.roll(face, (dr, dc), axis=(0, 1))
        nb_mask = np.roll(mask, (dr, dc), axis=(0, 1))
        nb_h = np.roll(H, (dr, dc), axis=(0, 1))
        across = mask & nb_mask & (nb_face != face)
        Wmap = np.where(across, np.maximum(Wmap, np.abs(nb_h - H)), Wmap)
    return _surface(H, HX, HY, mask, W=Wmap)


def rectangle(size: int) -> Surface:
    """A smooth surface on the full ``size x size`` rectangle (for the unweighted benchmark
    against the DCT solve): a dome with two Fourier modes, ``W`` its analytic ``|grad h|``."""
    x, y = _coords((size, size))
    s = float(size)
    k = 2.0 * np.pi / s
    h = 0.15 * s * np.cos(0.5 * k * x) * np.cos(0.5 * k * y) + 0.02 * s * np.sin(2 * k * x + 1.0) * np.cos(3 * k * y)
    hx = -0.15 * s * 0.5 * k * np.sin(0.5 * k * x) * np.cos(0.5 * k * y) + 0.02 * s * 2 * k * np.cos(
        2 * k * x + 1.0
    ) * np.cos(3 * k * y)
    hy = -0.15 * s * 0.5 * k * np.cos(0.5 * k * x) * np.sin(0.5 * k * y) - 0.02 * s * 3 * k * np.sin(
        2 * k * x + 1.0
    ) * np.sin(3 * k * y)
    return _surface(h, hx, hy, np.ones((size, size), bool))
