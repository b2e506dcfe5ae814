"""DCT Poisson and Frankot-Chellappa baselines."""

from __future__ import annotations

import numpy as np
import pytest

import monohead
from monohead.integration import dct_poisson, frankot_chellappa, surfaces
from tests._helpers import unit_normals_from_gradients


def test_dct_solves_the_same_system_as_the_core():
    s = surfaces.rectangle(64)
    d_dct = dct_poisson(s.normals)
    d_mg = monohead.integrate(s.normals, tol=1e-12)
    np.testing.assert_allclose(d_dct, d_mg, atol=1e-9 * np.abs(d_mg).max())


def test_frankot_chellappa_recovers_a_periodic_surface():
    H, W = 48, 64
    rows, cols = np.mgrid[:H, :W].astype(float)
    kx, kr = 2 * np.pi * 2 / W, 2 * np.pi * 1 / H
    h = 3.0 * np.sin(kx * cols) * np.cos(kr * rows)
    hx = 3.0 * kx * np.cos(kx * cols) * np.cos(kr * rows)  # d/dx, x = column
    hrow = -3.0 * kr * np.sin(kx * cols) * np.sin(kr * rows)
    d = frankot_chellappa(unit_normals_from_gradients(hx, -hrow))  # y up: dh/dy = -dh/drow
    np.testing.assert_allclose(d, h - h.mean(), atol=1e-9)


@pytest.mark.parametrize("fn", [dct_poisson, frankot_chellappa])
def test_baselines_validate(fn):
    n = np.zeros((4, 5, 3))
    n[..., 2] = 1
    n[0, 0] = (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"Nz > 0\) inside the mask; got 1 pixel"):
        fn(n)
    with pytest.raises(ValueError, match=r"normals must have shape \(H, W, 3\)"):
        fn(n[..., 0])
