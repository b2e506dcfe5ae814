"""Differentiable WLS normal integration for PyTorch: :func:`integrate`.

Tensors in, tensor out, on the CPU or a CUDA device: CPU tensors are solved by the
array-module-generic solver with NumPy (zero-copy views), CUDA tensors by the same solver with
CuPy through DLPack (zero-copy, nothing goes to the host). Gradients flow to the normals and to
the gradient-magnitude weights:

* the edge weights ``w_e = (w_i + w_j) / 2`` with ``w = 1 / (1 + lam W)``, the gradients
  ``p = -Nx/Nz``, ``q = -Ny/Nz`` and the right-hand side ``b = sum_e w_e g_e (e_j - e_i)`` are
  computed with torch operations (autograd differentiates them);
* only the linear solve ``(w_e, b) -> h = L^+ b`` is a custom :class:`torch.autograd.Function`.
  Its backward pass runs one extra solve with the same matrix (the adjoint; ``L`` is
  symmetric): for the upstream gradient ``g``, ``a = L^+ P g`` (``P`` removes the mean per
  component), ``dloss/db = a`` and ``dloss/dw_e = -(a_j - a_i)(h_j - h_i)``.

This module imports torch (it is the torch front end); ``import monohead`` does not.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import _validate as v
from .integration import generic as _g
from .integration import perspective as _persp
from .integration.common import GENERIC_METHODS, ConvergenceWarning, check_method, default_maxiter, import_cupy

__all__ = ["integrate"]


def _xp_for(device: torch.device) -> Any:
    if device.type == "cpu":
        return np
    if device.type == "cuda":
        return import_cupy("integrating CUDA tensors")
    raise TypeError(f"normals must be on a CPU or CUDA device; got device {device}")


def _to_xp(t: torch.Tensor, xp: Any) -> Any:
    """A zero-copy NumPy/CuPy view of a (detached, contiguous) tensor (bool goes as uint8)."""
    t = t.detach().contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if xp is np:
        return t.numpy()
    return xp.from_dlpack(t)


def _to_torch(a: Any, device: torch.device) -> torch.Tensor:
    """A tensor on ``device`` sharing the memory of a NumPy/CuPy array (bool via uint8)."""
    is_bool = a.dtype == np.bool_
    if is_bool:
        a = a.astype(np.uint8)
    t = torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else torch.from_dlpack(a)
    t = t.to(device)
    return t.bool() if is_bool else t


def _on_device(device: torch.device, xp: Any) -> contextlib.AbstractContextManager[Any]:
    """For CUDA: make CuPy use the tensor's device and torch's current stream (so that work
    is ordered with torch's, with no extra synchronisation); a no-op on the CPU."""
    stack = contextlib.ExitStack()
    if xp is not np:
        index = device.index if device.index is not None else torch.cuda.current_device()
        stack.enter_context(xp.cuda.Device(index))
        stack.enter_context(xp.cuda.ExternalStream(torch.cuda.current_stream(index).cuda_stream))
    return stack


def _check_tensor(t: Any, name: str, like: torch.Tensor | None, is_mask: bool = False) -> torch.Tensor:
    """``t`` must be a tensor on the device of ``like``, of a real dtype (bool/integer for masks)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor; got {type(t).__module__}.{type(t).__name__} "
            "(use monohead.integrate for NumPy or CuPy arrays)"
        )
    if like is not None and t.device != like.device:
        raise TypeError(
            f"{name} is on device {t.device} but normals are on {like.device}; pass every tensor on the same device"
        )
    if is_mask:
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"{name} must be a boolean (or 0/1 integer) tensor; got dtype {t.dtype}")
    elif t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must have a real floating dtype; got dtype {t.dtype}")
    return t


class _LaplacianSolve(torch.autograd.Function):
    """``(eE, eN, b) -> h = L(eE, eN)^+ P b`` on padded grids; backward: one adjoint solve."""

    @staticmethod
    def forward(ctx: Any, eE: torch.Tensor, eN: torch.Tensor, b: torch.Tensor, opts: dict[str, Any]) -> torch.Tensor:  # type: ignore[override]
        xp = opts["xp"]
        with _on_device(b.device, xp):
            system = _g.StencilSystem(
                _to_xp(eE, xp), _to_xp(eN, xp), opts["mask"], xp, opts["method"], mg_dtype=opts["mg_dtype"]
            )
            x, st = system.solve(_to_xp(b, xp), tol=opts["tol"], maxiter=opts["maxiter"])
            _check_finite(x, xp, "forward")
            h = _to_torch(x, b.device)
        _warn_unconverged(st, opts["tol"], "forward")
        ctx.system = system
        ctx.opts = opts
        ctx.mask_t = _to_torch(opts["mask"], b.device)
        ctx.save_for_backward(eE, eN, h)
        return h

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        eE, eN, h = ctx.saved_tensors
        opts = ctx.opts
        with _on_device(g.device, opts["xp"]):
            g64 = g.to(torch.float64)
            # Only mask cells matter (h is NaN elsewhere); a NaN upstream gradient outside the
            # mask must not leak into the adjoint solve.
            g64 = torch.where(ctx.mask_t, g64, torch.zeros((), dtype=torch.float64, device=g.device))
            a_xp, st = ctx.system.solve(_to_xp(g64, opts["xp"]), tol=opts["tol"], maxiter=opts["maxiter"])
            a = _to_torch(a_xp, g.device)
        _warn_unconverged(st, opts["tol"], "adjoint")
        grad_eE = torch.zeros_like(eE)
        grad_eN = torch.zeros_like(eN)
        # d/dw_e of h = L^+ b with L = sum_e w_e d_e d_e^T:  -(d_e . a)(d_e . h).
        grad_eE[:, :, :-1] = -(a[:, :, 1:] - a[:, :, :-1]) * (h[:, :, 1:] - h[:, :, :-1])
        grad_eN[:, 1:, :] = -(a[:, :-1, :] - a[:, 1:, :]) * (h[:, :-1, :] - h[:, 1:, :])
        grad_eE = grad_eE * (eE > 0)
        grad_eN = grad_eN * (eN > 0)
        return grad_eE, grad_eN, a, None


def _check_finite(x: Any, xp: Any, which: str) -> None:
    """Raise ``FloatingPointError`` if a solve returned a non-finite value (never silently)."""
    if not bool(xp.isfinite(x).all()):
        bad = int(xp.count_nonzero(~xp.isfinite(x)))
        raise FloatingPointError(f"{which} solve produced {bad} non-finite value(s); please report this input")


def _warn_unconverged(st: Any, tol: float, which: str) -> None:
    message = st.not_converged(which, tol)
    if message:
        warnings.warn(message, ConvergenceWarning, stacklevel=4)


def integrate(
    normals: torch.Tensor,
    weights: torch.Tensor | None = None,
    lam: float = 0.1,
    mask: torch.Tensor | None = None,
    *,
    method: str = "mg",
    tol: float = 1e-8,
    maxiter: int | None = None,
    dtype: torch.dtype = torch.float64,
    K: Any = None,
) -> torch.Tensor:
    """Integrate normal maps into depth, differentiably (PyTorch).

    The system is the WLS of the conventions (paper eq. 7-8), the same as
    :func:`monohead.integrate`; the depth is differentiable with respect to ``normals`` and
    ``weights`` (backward: one adjoint solve with the same matrix).

    Args:
        normals: ``(H, W, 3)`` or ``(B, H, W, 3)`` tensor of normals in the camera frame (x to the
            right, y up, z toward the viewer; ``Nz > 0`` inside the mask; they need not be unit
            length: only ``p = -Nx/Nz`` and ``q = -Ny/Nz`` matter). Any real dtype (computed in
            float64), CPU or CUDA. The rules of :func:`monohead.integrate` apply inside the mask
            (``1e-100 <= Nz <= 1e100``, slopes at most 1e8); they keep the gradients finite.
            Values outside the mask are ignored and get a zero gradient.
        weights: gradient magnitudes ``W = |grad h| >= 0``, ``(H, W)`` or ``(B, H, W)`` (or
            ``(H, W)`` shared by a batch) on the device of ``normals``; ``None`` for ``w = 1``.
            Inside the mask finite with ``lam * W <= 1e12``; ignored outside (zero gradient).
        lam: finite ``lam >= 0`` in ``w = 1 / (1 + lam W)`` (default 0.1). Not differentiated.
        mask: bool (or 0/1 integer) tensor shaped like ``weights``, on the same device; default:
            the pixels whose normal is non-zero. Not differentiated.
        method: ``"mg"`` (multigrid-preconditioned CG, default) or ``"jacobi"``.
        tol: relative residual ``||b - L h|| <= tol ||b||`` of the forward and adjoint solves,
            in ``(0, 1)`` (default 1e-8).
        maxiter: CG iteration cap per map in ``[1, 2**31 - 1]`` (default ``20 (H + W) + 1000``).
        dtype: floating dtype of the result (default float64, as everywhere in monohead).
        K: optional ``(3, 3)`` pinhole intrinsics in OpenCV form (array or tensor, shared by a
            batch; not differentiated): the perspective system of :func:`monohead.integrate`,
            whose unknown is the log-depth; the normals must face the camera
            (``Nz - Nx (c - cx)/fx + Ny (r - cy)/fy > 0``) instead of ``Nz > 0``.

    Returns:
        ``(H, W)`` or ``(B, H, W)`` tensor on the device of ``normals``, NaN outside the mask
        (select ``depth[mask]`` before a loss): orthographic, depth toward the viewer in pixel
        units, mean 0 over each 4-connected component of each mask, 0 on isolated pixels; with
        ``K``, depth along the optical axis, geometric mean 1 per component (differentiable:
        ``exp`` of the solved log-depth).

    Raises:
        TypeError: a non-tensor input, a wrong dtype, or tensors on different devices.
        ValueError: bad shapes (mixed batch sizes included) or values, with the argument named.
        ImportError: CUDA tensors without CuPy installed.

    Warns:
        ConvergenceWarning: a forward or adjoint solve hit ``maxiter`` before ``tol``.
    """
    normals = _check_tensor(normals, "normals", None)
    if weights is not None:
        weights = _check_tensor(weights, "weights", normals)
    if mask is not None:
        mask = _check_tensor(mask, "mask", normals, is_mask=True)
    check_method(method, GENERIC_METHODS)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    tol = v.check_tol(tol)
    maxiter = v.check_maxiter(maxiter)
    cam = None if K is None else _persp.check_K(K)
    xp = _xp_for(normals.device)
    device = normals.device

    # Values and shapes are checked once, by the shared validators, on zero-copy views.
    n64 = normals.to(torch.float64)
    w64 = None if weights is None else weights.to(torch.float64)
    with _on_device(device, xp):
        n_x, m_x, _, lam, batched = v.check_batch_inputs(
            _to_xp(n64, xp),
            None if w64 is None else _to_xp(w64, xp),
            lam,
            None if mask is None else _to_xp(mask, xp),
            xp,
            check_values=cam is None,
        )
        if cam is not None:
            _persp.check_normals_facing_camera(n_x, m_x, cam, xp=xp)
        # Tiny slopes (< 2**-40, orthographic): integrate s p, s q (s a power of two per map,
        # exact) and divide the depth by s, as the other paths do.
        smax = v.check_slopes(n_x, m_x, "normals", xp, K=cam)
        scale = v.power_of_two_scale(smax) if cam is None else np.ones(int(m_x.shape[0]))
        grid = _g.Grid(m_x, xp)
        mask_p = _to_torch(grid.mask, device)
    B, H, W = (int(s) for s in m_x.shape)
    if maxiter is None:
        maxiter = default_maxiter(H, W)

    # Crop to the bounding box and pad (torch ops, so autograd sees them).
    r0, c0, h, w = grid.r0, grid.c0, grid.h, grid.w
    bottom, right = grid.Hs - h + 1, grid.Ws - w + 1
    nb = n64 if batched else n64[None]
    n_p = F.pad(nb[:, r0 : r0 + h, c0 : c0 + w, :], (0, 0, 1, right, 1, bottom))
    # Values outside the mask are ignored, gradients included: replace them (torch.where
    # passes no gradient to the branch it does not select, so NaN there stays harmless).
    inside = mask_p[..., None]
    n_p = torch.where(inside, n_p, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=device))
    rescaled = bool((scale != 1.0).any())
    if rescaled:
        sxy = torch.ones(B, 1, 1, 3, dtype=torch.float64, device=device)
        sxy[:, 0, 0, :2] = torch.as_tensor(scale, dtype=torch.float64, device=device)[:, None]
        n_p = n_p * sxy
    W_p = None
    if w64 is not None:
        wb = w64.expand(B, H, W) if batched else w64[None]
        W_p = F.pad(wb[:, r0 : r0 + h, c0 : c0 + w], (1, right, 1, bottom))
        W_p = torch.where(mask_p, W_p, torch.zeros((), dtype=torch.float64, device=device))
    eE, eN, b = _g.assemble(n_p, mask_p, W_p, lam, torch, K=cam, origin=(r0 - 1, c0 - 1))
    opts = {"xp": xp, "mask": grid.mask, "method": method, "tol": tol, "maxiter": maxiter, "mg_dtype": np.float32}
    x = _LaplacianSolve.apply(eE, eN, b, opts)
    if rescaled:
        x = x / torch.as_tensor(scale, dtype=torch.float64, device=device)[:, None, None]

    # Back to the image: NaN outside the mask.
    box = x[:, 1 : 1 + h, 1 : 1 + w]
    if cam is not None:
        box = torch.exp(box)  # log-depth with mean 0 per component -> geometric mean 1
        inner = mask_p[:, 1 : 1 + h, 1 : 1 + w]
        with _on_device(device, xp):
            _g.check_finite_depth(_to_xp(box, xp), _to_xp(inner, xp).astype(bool), int(inner.sum()), method, True)
    box = torch.where(mask_p[:, 1 : 1 + h, 1 : 1 + w], box, torch.full_like(box, math.nan))
    depth = F.pad(box, (c0, W - c0 - w, r0, H - r0 - h), value=math.nan)
    if not batched:
        depth = depth[0]
    return depth.to(dtype)
