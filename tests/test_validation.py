"""Every validator: bad input raises TypeError/ValueError naming the argument and what came."""

from __future__ import annotations

import numpy as np
import pytest

import monohead
from monohead import _validate as v


def _good(H=8, W=9):
    n = np.zeros((H, W, 3))
    n[..., 2] = 1.0
    return n, np.ones((H, W), bool), np.zeros((H, W))


@pytest.mark.parametrize(
    ("normals", "exc", "match"),
    [
        (np.zeros((8, 9)), ValueError, r"normals must have shape \(H, W, 3\); got \(8, 9\)"),
        (np.zeros((8, 9, 4)), ValueError, r"normals must have shape \(H, W, 3\); got \(8, 9, 4\)"),
        (np.zeros((0, 9, 3)), ValueError, r"normals must have at least one pixel"),
        (
            np.ones((8, 9, 3), dtype=complex),
            TypeError,
            r"normals must have a real floating dtype; got dtype complex128",
        ),
        (np.ones((8, 9, 3), dtype=bool), TypeError, r"normals must have a real floating dtype; got dtype bool"),
        ("normals.png", TypeError, r"normals must be a numeric array; got str"),
        (None, TypeError, r"normals must be a numeric array; got NoneType"),
    ],
)
def test_normals_shape_and_dtype(normals, exc, match):
    with pytest.raises(exc, match=match):
        monohead.integrate(normals)


def test_normals_nan_inf_and_facing_away():
    n, m, _ = _good()
    n[2, 3] = np.nan
    n[4, 4, 0] = np.inf
    with pytest.raises(ValueError, match=r"normals must be finite inside the mask; got 2 pixel\(s\) with NaN or inf"):
        monohead.integrate(n, mask=m)
    # outside the mask, anything goes
    m2 = m.copy()
    m2[2, 3] = m2[4, 4] = False
    monohead.integrate(n, mask=m2)
    n, m, _ = _good()
    n[1, 1] = (0.0, 0.6, -0.8)
    n[1, 2] = (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"Nz > 0\) inside the mask; got 2 pixel\(s\) with Nz <= 0"):
        monohead.integrate(n, mask=m)


def test_mask_checks():
    n, m, _ = _good()
    with pytest.raises(ValueError, match=r"mask must have shape \(8, 9\); got \(8, 8\)"):
        monohead.integrate(n, mask=m[:, :8])
    with pytest.raises(ValueError, match=r"mask is empty"):
        monohead.integrate(n, mask=np.zeros_like(m))
    with pytest.raises(TypeError, match=r"mask must be a boolean \(or 0/1 integer\) array; got dtype float64"):
        monohead.integrate(n, mask=m.astype(float))
    bad = m.astype(np.int32)
    bad[0, 0] = 2
    with pytest.raises(ValueError, match=r"mask must hold only 0 and 1; got 1 other value"):
        monohead.integrate(n, mask=bad)
    with pytest.raises(ValueError, match=r"default mask \(non-zero normals\) is empty"):
        monohead.integrate(np.zeros((4, 4, 3)))


def test_weights_checks():
    n, m, W = _good()
    with pytest.raises(ValueError, match=r"weights must have shape \(8, 9\); got \(9, 8\)"):
        monohead.integrate(n, W.T, mask=m)
    W[3, 3] = -0.5
    with pytest.raises(ValueError, match=r"must be >= 0; got 1 negative value"):
        monohead.integrate(n, W, mask=m)
    W[3, 3] = np.nan
    with pytest.raises(ValueError, match=r"weights must be finite inside the mask; got 1 NaN or inf"):
        monohead.integrate(n, W, mask=m)
    m[3, 3] = False  # NaN outside the mask is ignored
    assert np.isfinite(monohead.integrate(n, W, mask=m)[m]).all()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"lam": -0.1}, ValueError, r"lam must be a finite number >= 0; got -0.1"),
        ({"lam": float("nan")}, ValueError, r"lam must be a finite number >= 0; got nan"),
        ({"lam": "0.1"}, TypeError, r"lam must be a real number; got str"),
        ({"tol": 0.0}, ValueError, r"tol must be in \(0, 1\); got 0.0"),
        ({"tol": -1e-6}, ValueError, r"tol must be in \(0, 1\); got -1e-06"),
        ({"maxiter": 0}, ValueError, r"maxiter must be >= 1; got 0"),
        ({"maxiter": 2.5}, TypeError, r"maxiter must be a positive integer or None; got float"),
        ({"method": "amg"}, ValueError, r"method must be one of 'mg', 'jacobi', 'direct'; got 'amg'"),
        ({"x0": np.zeros((3, 3))}, ValueError, r"x0 must have shape \(8, 9\); got \(3, 3\)"),
        ({"x0": np.full((8, 9), np.inf)}, ValueError, r"x0 must be finite inside the mask; got 72 NaN or inf"),
    ],
)
def test_scalar_and_option_checks(kwargs, exc, match):
    n, m, _ = _good()
    with pytest.raises(exc, match=match):
        monohead.integrate(n, mask=m, **kwargs)


def test_integrator_checks():
    n, m, _ = _good()
    with pytest.raises(ValueError, match=r"mask must have shape \(H, W\); got \(8, 9, 3\)"):
        monohead.Integrator(n)
    with pytest.raises(TypeError, match=r"mask must be a boolean \(H, W\) array; got None"):
        monohead.Integrator(None)
    solver = monohead.Integrator(m)
    with pytest.raises(ValueError, match=r"normals must have shape \(8, 9, 3\) to match the mask; got \(9, 8, 3\)"):
        solver.solve(np.transpose(n, (1, 0, 2)))
    with pytest.raises(ValueError, match=r"lam must be a finite number >= 0"):
        monohead.Integrator(m, lam=-1)


def test_wls_system_validates_too():
    n, m, _ = _good()
    with pytest.raises(ValueError, match=r"mask must have shape \(8, 9\)"):
        monohead.wls_system(n, None, 0.1, m[:4])


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: v.check_positive_real(0, "theta"), ValueError, r"theta must be a finite number > 0; got 0.0"),
        (
            lambda: v.check_positive_real(float("inf"), "theta"),
            ValueError,
            r"theta must be a finite number > 0; got inf",
        ),
        (lambda: v.check_positive_real(10**400, "theta"), ValueError, r"theta must be a finite number > 0; got 1000"),
        (lambda: v.check_positive_real(True, "theta"), TypeError, r"theta must be a real number; got bool"),
        (lambda: v.check_positive_real(None, "theta"), TypeError, r"theta must be a real number; got NoneType"),
        (lambda: v.check_positive_real("1", "tol", allow_none=True), TypeError, r"tol must be a real number or None"),
        (lambda: v.check_fraction(1.0, "trim"), ValueError, r"trim must be in \[0, 1\); got 1.0"),
        (lambda: v.check_fraction(-0.0001, "trim"), ValueError, r"trim must be in \[0, 1\); got -0.0001"),
        (lambda: v.check_fraction(float("nan"), "trim"), ValueError, r"trim must be in \[0, 1\); got nan"),
        (
            lambda: v.check_fraction(None, "trim", allow_none=False),
            TypeError,
            r"trim must be a real number; got NoneType",
        ),
    ],
)
def test_positive_real_and_fraction_checks(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_positive_real_and_fraction_pass_good_values():
    assert v.check_positive_real(np.float32(0.5), "theta") == 0.5
    assert type(v.check_positive_real(3, "theta")) is float
    assert v.check_positive_real(None, "max_distance", allow_none=True) is None
    assert v.check_fraction(0, "trim") == 0.0
    assert v.check_fraction(None, "trim") is None
