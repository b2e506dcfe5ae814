"""The compiled module's contract: exact dtypes, C order and shapes, else a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from monohead import _core


def _mask(H=6, W=7):
    return np.ones((H, W), np.uint8)


def test_wrong_dtype_is_rejected_not_converted():
    with pytest.raises(TypeError):
        _core.Integrator(np.ones((6, 7), bool))  # uint8 only
    with pytest.raises(TypeError):
        _core.Integrator(_mask(), np.zeros((6, 7), np.float16))  # float32 or float64 only
    core = _core.Integrator(_mask())
    with pytest.raises(TypeError):
        core.solve(np.zeros((6, 7, 3), np.float16))
    with pytest.raises(TypeError):
        core.solve(np.asfortranarray(np.zeros((6, 7, 3))))  # C order only


def test_wrong_shapes_raise_value_error():
    with pytest.raises(ValueError, match=r"mask must be 2-D \(H, W\); got ndim 3"):
        _core.Integrator(np.ones((6, 7, 1), np.uint8))
    with pytest.raises(ValueError, match=r"weights must have shape \(6, 7\); got \(7, 6\)"):
        _core.Integrator(_mask(), np.zeros((7, 6)))
    core = _core.Integrator(_mask())
    with pytest.raises(ValueError, match=r"normals must have shape \(6, 7, 3\); got \(6, 7\)"):
        core.solve(np.zeros((6, 7)))
    n = np.zeros((6, 7, 3))
    n[..., 2] = 1
    with pytest.raises(ValueError, match=r"x0 must have shape \(6, 7\); got \(2,\)"):
        core.solve(n, np.zeros(2))


def test_empty_mask_and_bad_method():
    with pytest.raises(ValueError, match="mask is empty"):
        _core.Integrator(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="method must be one of 'mg', 'jacobi', 'direct'; got 'cg'"):
        _core.Integrator(_mask(), None, 0.1, "cg")


def test_solve_result_and_properties():
    core = _core.Integrator(_mask(), None, 0.1, "mg")
    assert core.shape == (6, 7)
    assert core.num_unknowns == 42
    assert core.num_components == 1
    assert core.nbytes > 0
    n = np.zeros((6, 7, 3))
    n[..., 2] = 1.0
    depth, info = core.solve(n, None, 1e-6, 10)
    assert depth.dtype == np.float64
    assert depth.shape == (6, 7)
    assert set(info) == {"iterations", "residual", "converged", "assembly_seconds", "solve_seconds"}
    indptr, indices, data, rhs = core.csr(n)
    assert indptr.dtype == np.int64
    assert indices.dtype == np.int32
    assert data.dtype == np.float64
    assert indptr[-1] == len(indices) == len(data)
    assert rhs.shape == (42,)
