"""monohead.torch.integrate: gradients against finite differences (torch.autograd.gradcheck,
float64), an optimisation through the integrator, the result dtype and bad input. The forward
solve (every problem, batches, default masks, K) is checked in test_integrators.py.

CUDA variants live in test_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from monohead.integration import ConvergenceWarning, surfaces

torch = pytest.importorskip("torch")
mt = pytest.importorskip("monohead.torch")


def small_problem(rng, B=None, H=6, W=7):
    """Normals with Nz = 1 (not unit: only p and q matter), W >= 0.5, a mask with two
    components and an isolated pixel."""
    shape = (H, W) if B is None else (B, H, W)
    mask = np.ones(shape, bool)
    mask[..., :, 3] = False  # split into two components
    mask[..., 2, W - 2] = mask[..., 1, W - 1] = mask[..., 3, W - 1] = False  # (2, W - 1) isolated
    n = np.concatenate([rng.normal(scale=0.3, size=shape + (2,)), np.ones(shape + (1,))], axis=-1)
    Wm = rng.uniform(0.5, 2.0, size=shape)
    return n, Wm, mask


# The forward solve of every backend, batches and default masks included, is checked against the
# independent reference in test_integrators.py; here: what is torch's own.
def test_dtype_argument_sets_the_result_dtype(rng):
    n, _, mask = small_problem(rng, B=3)
    n[~mask] = 0.0
    d64 = mt.integrate(torch.tensor(n), method="jacobi", tol=1e-10)
    d32 = mt.integrate(torch.tensor(n, dtype=torch.float32), dtype=torch.float32, method="jacobi", tol=1e-10)
    assert d32.dtype == torch.float32
    assert d32.shape == (3, 6, 7)
    torch.testing.assert_close(d32, d64.float(), equal_nan=True)


def test_gradcheck_normals_and_weights(rng):
    n, Wm, mask = small_problem(rng)
    m = torch.tensor(mask)

    def f(normals, weights):
        return mt.integrate(normals, weights, 0.5, m, tol=1e-13)[m]

    args = (torch.tensor(n, requires_grad=True), torch.tensor(Wm, requires_grad=True))
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradcheck_batch_shared_mask(rng):
    n, Wm, mask = small_problem(rng, B=2, H=5, W=6)
    m = torch.tensor(mask[0])

    def f(normals, weights):
        return mt.integrate(normals, weights, 0.3, m, tol=1e-13)[:, m]

    args = (torch.tensor(n, requires_grad=True), torch.tensor(Wm, requires_grad=True))
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradient_against_finite_difference_on_a_larger_map(rng):
    # A directional derivative on a head map, where the multigrid has several levels.
    s = surfaces.head(48, neck=True)
    m = torch.tensor(s.mask)
    n = torch.tensor(s.normals, requires_grad=True)
    W = torch.tensor(s.W, requires_grad=True)
    target = torch.tensor(rng.normal(size=s.mask.shape))

    def loss(n_, W_):
        return (mt.integrate(n_, W_, 0.1, m, tol=1e-13)[m] * target[m]).sum()

    loss(n, W).backward()
    dn = torch.tensor(rng.normal(size=n.shape)) * m[..., None] * torch.tensor([1.0, 1.0, 0.0])
    dW = torch.tensor(rng.uniform(size=W.shape))
    eps = 1e-5
    with torch.no_grad():
        fd = (loss(n + eps * dn, W + eps * dW) - loss(n - eps * dn, W - eps * dW)) / (2 * eps)
    an = (n.grad * dn).sum() + (W.grad * dW).sum()
    assert float(abs(fd - an)) <= 1e-6 * float(abs(fd)) + 1e-8


def test_no_gradient_outside_the_mask_or_on_isolated_pixels(rng):
    n, Wm, mask = small_problem(rng)
    n[~mask] = 0.0
    nt = torch.tensor(n, requires_grad=True)
    Wt = torch.tensor(Wm, requires_grad=True)
    m = torch.tensor(mask)
    d = mt.integrate(nt, Wt, 0.1, m)
    (d[m] ** 3).sum().backward()
    assert torch.all(nt.grad[~m] == 0)
    assert torch.all(Wt.grad[~m] == 0)
    assert torch.all(nt.grad[2, 6] == 0)
    assert Wt.grad[2, 6] == 0
    assert torch.isfinite(nt.grad).all()
    assert nt.grad[m].abs().sum() > 0


def test_gradient_descent_matches_a_target_depth():
    # Optimise free normals (Nz kept positive) so that the integrated depth fits a sphere cap.
    s = surfaces.sphere_cap((24, 24), radius=14)
    m = torch.tensor(s.mask)
    target = torch.tensor(s.depth - np.nanmean(s.depth))
    pq = torch.zeros(24, 24, 2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([pq], lr=0.05)
    losses = []
    for _ in range(40):
        raw = torch.cat([pq, torch.ones(24, 24, 1, dtype=torch.float64)], dim=-1)
        normals = raw / raw.norm(dim=-1, keepdim=True)
        depth = mt.integrate(normals, mask=m, tol=1e-8)
        loss = ((depth - target)[m] ** 2).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0] / 10, losses[::5]


def test_convergence_warning_forward():
    s = surfaces.head(32)
    with pytest.warns(ConvergenceWarning, match="forward solve"):
        mt.integrate(torch.tensor(s.normals), torch.tensor(s.W), mask=torch.tensor(s.mask), maxiter=1)


# ------------------------------------------------------------------ bad input
def _args(rng):
    n, Wm, mask = small_problem(rng, B=2)
    return {"normals": torch.tensor(n), "weights": torch.tensor(Wm), "mask": torch.tensor(mask)}


@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (
            lambda a: a | {"normals": a["normals"].numpy()},
            TypeError,
            "normals must be a torch.Tensor; got numpy.ndarray",
        ),
        (lambda a: a | {"weights": a["weights"].numpy()}, TypeError, "weights must be a torch.Tensor"),
        (lambda a: a | {"mask": a["mask"].to("meta")}, TypeError, "mask is on device meta but normals are on cpu"),
        (lambda a: a | {"weights": a["weights"].to("meta")}, TypeError, "weights is on device meta"),
        (lambda a: a | {"mask": a["mask"].double()}, TypeError, "mask must be a boolean"),
        (lambda a: a | {"weights": a["weights"] > 1}, TypeError, "weights must have a real floating dtype"),
        (lambda a: a | {"normals": a["normals"].to(torch.complex128)}, TypeError, "normals must have a real floating"),
        (lambda a: a | {"mask": a["mask"][:1]}, ValueError, r"mask must have shape \(B, H, W\).*batch size"),
        (lambda a: a | {"weights": a["weights"][:, :3]}, ValueError, "weights must have shape"),
        (lambda a: a | {"normals": a["normals"][..., :2]}, ValueError, "normals must have shape"),
        (lambda a: a | {"weights": -a["weights"]}, ValueError, "must be >= 0"),
        (lambda a: a | {"method": "direct"}, ValueError, "method must be one of 'mg', 'jacobi'"),
        (lambda a: a | {"tol": 2.0}, ValueError, "tol must be in"),
        (lambda a: a | {"dtype": torch.int32}, TypeError, "dtype must be a floating"),
    ],
)
def test_validation(rng, mutate, exc, match):
    a = mutate(_args(rng))
    with pytest.raises(exc, match=match):
        mt.integrate(**a)


def test_nz_nonpositive_inside_mask(rng):
    a = _args(rng)
    a["normals"][1, 0, 0, 2] = 0.0
    with pytest.raises(ValueError, match="Nz > 0"):
        mt.integrate(**a)
