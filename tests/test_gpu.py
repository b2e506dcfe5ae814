"""The CuPy backend and CUDA tensors. Every test is collected everywhere and skips cleanly
without CuPy or without a CUDA device (see the ``cp`` fixture).

The CuPy backend's results on every problem (against the independent SciPy reference, dtypes,
batches, the info) are checked with every other backend in test_integrators.py. Here: the
same iterations as the NumPy run of the same generic solver, fused and unfused kernels, its
errors, and the CUDA autograd path (against the CPU gradients and finite differences).
"""

from __future__ import annotations

import numpy as np
import pytest

import monohead
from monohead.integration import ConvergenceWarning, generic, surfaces
from tests._helpers import require_cupy, require_torch_cuda

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    return require_cupy()


@pytest.fixture(scope="module")
def torch_cuda():
    return require_torch_cuda()


def head_problem(size=64, B=None):
    s = surfaces.head(size, neck=True)
    if B is None:
        return s.normals, s.W, s.mask
    return np.stack([s.normals] * B), np.stack([s.W] * B), np.stack([s.mask] * B)


def test_same_iterations_as_numpy_run(cp):
    n, W, mask = head_problem(128)
    _, a = generic.integrate_xp(n, W, 0.1, mask, return_info=True)
    _, b = monohead.integrate(cp.asarray(n), cp.asarray(W), 0.1, cp.asarray(mask), return_info=True)
    assert abs(a.iterations - b.iterations) <= 1


def test_fused_and_unfused_agree(cp):
    n, W, mask = head_problem(80)
    args = (cp.asarray(n), cp.asarray(W), 0.1, cp.asarray(mask))
    a = generic.integrate_xp(*args, tol=1e-11, fuse=True)
    b = generic.integrate_xp(*args, tol=1e-11, fuse=False)
    cp.testing.assert_allclose(a, b, atol=1e-9)


def test_gpu_errors(cp):
    n, W, mask = head_problem(32)
    with pytest.raises(TypeError, match="mask is a NumPy array but the other inputs are CuPy"):
        monohead.integrate(cp.asarray(n), cp.asarray(W), 0.1, mask)
    with pytest.raises(TypeError, match="weights is a NumPy array"):
        monohead.integrate(cp.asarray(n), W, 0.1, cp.asarray(mask))
    with pytest.raises(TypeError, match="backend='cpu'"):
        monohead.integrate(cp.asarray(n), backend="cpu")
    with pytest.raises(TypeError, match="backend='cupy' needs CuPy arrays"):
        monohead.integrate(n, backend="cupy")
    with pytest.raises(ValueError, match="'direct' is not available on the cupy backend"):
        monohead.integrate(cp.asarray(n), method="direct")
    with pytest.raises(ValueError, match=r"mask must have shape \(B, H, W\).*batch size"):
        monohead.integrate(cp.asarray(np.stack([n, n])), None, 0.1, cp.asarray(np.stack([mask] * 3)))
    with pytest.raises(TypeError, match="weights must have a real floating dtype"):
        monohead.integrate(cp.asarray(n), cp.asarray(W > 1), 0.1, cp.asarray(mask))
    with pytest.warns(ConvergenceWarning):
        monohead.integrate(cp.asarray(n), cp.asarray(W), 0.1, cp.asarray(mask), maxiter=1)


def test_torch_cuda_forward_backward(torch_cuda):
    torch = torch_cuda
    import monohead.torch as mt

    n, W, mask = head_problem(48)
    ref = monohead.integrate(n, W, 0.1, mask, tol=1e-11)
    nt = torch.tensor(n, device="cuda", requires_grad=True)
    Wt = torch.tensor(W, device="cuda", requires_grad=True)
    mt_ = torch.tensor(mask, device="cuda")
    d = mt.integrate(nt, Wt, 0.1, mt_, tol=1e-11)
    assert d.is_cuda
    np.testing.assert_allclose(d.detach().cpu().numpy(), ref, atol=1e-7 * np.nanmax(np.abs(ref)), equal_nan=True)
    (d[mt_] ** 2).sum().backward()
    # The same gradient as on the CPU.
    nc = torch.tensor(n, requires_grad=True)
    Wc = torch.tensor(W, requires_grad=True)
    dc = mt.integrate(nc, Wc, 0.1, torch.tensor(mask), tol=1e-11)
    (dc[torch.tensor(mask)] ** 2).sum().backward()
    torch.testing.assert_close(nt.grad.cpu(), nc.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(Wt.grad.cpu(), Wc.grad, atol=1e-6, rtol=1e-5)
    with pytest.raises(TypeError, match="mask is on device cpu but normals are on cuda"):
        mt.integrate(nt, Wt, 0.1, torch.tensor(mask))


def test_torch_cuda_gradcheck(torch_cuda, rng):
    torch = torch_cuda
    import monohead.torch as mt

    mask = np.ones((5, 6), bool)
    mask[:, 2] = False
    n = np.concatenate([rng.normal(scale=0.3, size=(5, 6, 2)), np.ones((5, 6, 1))], axis=-1)
    W = rng.uniform(0.5, 2.0, size=(5, 6))
    m = torch.tensor(mask, device="cuda")

    def f(normals, weights):
        return mt.integrate(normals, weights, 0.5, m, tol=1e-13)[m]

    args = (
        torch.tensor(n, device="cuda", requires_grad=True),
        torch.tensor(W, device="cuda", requires_grad=True),
    )
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4)
