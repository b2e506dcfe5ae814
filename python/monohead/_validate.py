"""Input validation shared by every entry point: one helper per concept.

Every helper raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong
shape or values) with a message that names the argument, what was expected and what came.
The helpers work on NumPy arrays and on any array module with the same API (CuPy): they
never move data between devices.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "LAM_W_LIMIT",
    "MAXITER_LIMIT",
    "NZ_RANGE",
    "SLOPE_LIMIT",
    "THREADS_LIMIT",
    "X0_LIMIT",
    "check_K",
    "array_module",
    "as_bool_array",
    "as_float_array",
    "check_batch_inputs",
    "check_gradient_magnitude",
    "check_weights",
    "check_depth",
    "check_depth_in_mask",
    "check_faces",
    "check_fraction",
    "check_lam",
    "check_mask",
    "check_maxiter",
    "check_mesh",
    "check_normals",
    "check_normals_in_mask",
    "check_slopes",
    "check_weight_range",
    "check_x0_in_mask",
    "default_mask",
    "check_positive_int",
    "check_positive_real",
    "check_real",
    "check_tol",
    "check_vertices",
    "power_of_two_scale",
    "shape_str",
]

#: Largest slope ``|Nx/Nz|`` or ``|Ny/Nz|`` accepted inside the mask (a normal 1e-8 rad from
#: grazing). Beyond it the right-hand side and the depth lose meaning (and overflow long before
#: ``1e154``, where squared norms do).
SLOPE_LIMIT = 1e8
#: Accepted range of ``Nz`` inside the mask: normals need not be unit length, but ``Nz`` must be
#: far from underflow and overflow so that ``1/Nz`` and the derivatives of ``-Nx/Nz`` (torch)
#: stay finite.
NZ_RANGE = (1e-100, 1e100)
#: Largest ``lam * W`` accepted inside the mask: the per-pixel weight ``w = 1 / (1 + lam W)``
#: stays above about ``1e-12``, which the float32 multigrid hierarchy represents and CG in
#: float64 resolves against weights of 1.
LAM_W_LIMIT = 1e12
#: Largest iteration cap (the C++ core counts iterations in a signed 32-bit int).
MAXITER_LIMIT = 2**31 - 1
#: Largest thread count accepted (far above any machine's cores; the core uses at most its own).
THREADS_LIMIT = 4096
#: Largest ``|x0|`` accepted inside the mask (an initial depth in pixel units): ``L x0`` and its
#: squared norm stay finite.
X0_LIMIT = 1e100


def shape_str(shape: tuple[int, ...]) -> str:
    """``(128, 128)`` style text for a shape (``(5,)`` for one axis)."""
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def array_module(a: Any) -> Any:
    """The array module of ``a``: :mod:`numpy` or :mod:`cupy` (imported only if ``a`` is one)."""
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    return np


def as_float_array(a: Any, name: str, xp: Any = np, dtype: Any = np.float64) -> Any:
    """``a`` as a C-contiguous float array of ``dtype`` (one conversion, none if already so).

    Accepts any real floating or integer dtype and any memory layout. Booleans, complex
    numbers and objects are refused with ``TypeError``.
    """
    if isinstance(a, (str, bytes)) or a is None:
        raise TypeError(f"{name} must be a numeric array; got {type(a).__name__}")
    if xp is np and not isinstance(a, np.ndarray):
        if type(a).__module__.split(".")[0] == "cupy":
            raise TypeError(
                f"{name} is a CuPy array but the other inputs are on the host; pass every array on the same device"
            )
        try:
            a = np.asarray(a)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise TypeError(f"{name} must be a numeric array; got {type(a).__name__}") from exc
    elif xp is not np and isinstance(a, np.ndarray):
        raise TypeError(
            f"{name} is a NumPy array but the other inputs are CuPy arrays; pass every array on the same device"
        )
    kind = a.dtype.kind
    if kind not in "fiu":
        raise TypeError(f"{name} must have a real floating dtype; got dtype {a.dtype}")
    return xp.ascontiguousarray(a, dtype=dtype)


def _kept_dtype(a: Any, keep_float32: bool) -> Any:
    """float32 when ``keep_float32`` and ``a`` is a float32 array (read in place), else float64."""
    return np.float32 if keep_float32 and getattr(a, "dtype", None) == np.float32 else np.float64


def check_normals(
    normals: Any, name: str = "normals", xp: Any = np, batch: bool = False, keep_float32: bool = False
) -> Any:
    """Validate the shape of a normal map and return it as C-contiguous float64.

    Expected shape ``(H, W, 3)``, or ``(B, H, W, 3)`` when ``batch`` is true. Values are
    checked against the mask by :func:`check_normals_in_mask`. With ``keep_float32``, a
    float32 map stays float32 (no copy when it is already C-contiguous).
    """
    arr = as_float_array(normals, name, xp, dtype=_kept_dtype(normals, keep_float32))
    want = "(B, H, W, 3)" if batch else "(H, W, 3)"
    ndim = 4 if batch else 3
    if arr.ndim != ndim or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape {want}; got {shape_str(arr.shape)}")
    if arr.shape[-3] < 1 or arr.shape[-2] < 1:
        raise ValueError(f"{name} must have at least one pixel; got shape {shape_str(arr.shape)}")
    return arr


def default_mask(normals: Any, xp: Any = np) -> Any:
    """The pixels whose normal is not ``(0, 0, 0)`` (NaN counts as non-zero)."""
    return xp.any(normals != 0, axis=-1)


def check_mask(mask: Any, shape: tuple[int, ...], name: str = "mask", xp: Any = np) -> Any:
    """Validate a mask of the given ``shape``; return it as a C-contiguous ``bool`` array.

    Accepts ``bool`` or integer arrays of 0 and 1. Every image of it must contain a pixel.
    """
    if isinstance(mask, (str, bytes)) or mask is None:
        raise TypeError(f"{name} must be a boolean array; got {type(mask).__name__}")
    if xp is np:
        if type(mask).__module__.split(".")[0] == "cupy":
            raise TypeError(
                f"{name} is a CuPy array but the normals are on the host; pass every array on the same device"
            )
        mask = np.asarray(mask)
    elif isinstance(mask, np.ndarray):
        raise TypeError(
            f"{name} is a NumPy array but the normals are a CuPy array; pass every array on the same device"
        )
    if mask.dtype.kind not in "biu":
        raise TypeError(f"{name} must be a boolean (or 0/1 integer) array; got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {shape_str(tuple(shape))}; got {shape_str(tuple(mask.shape))}")
    if mask.dtype.kind != "b":
        bad = int(xp.count_nonzero((mask != 0) & (mask != 1)))
        if bad:
            raise ValueError(f"{name} must hold only 0 and 1; got {bad} other value(s)")
    m = xp.ascontiguousarray(mask, dtype=bool)
    if m.ndim == 2:
        if not bool(m.any()):
            raise ValueError(f"{name} is empty: no pixel to integrate")
    else:
        empty = ~m.reshape(m.shape[0], -1).any(axis=1)
        if bool(empty.any()):
            idx = [int(i) for i in xp.nonzero(empty)[0][:5]]
            raise ValueError(f"{name} is empty for batch item(s) {idx}: no pixel to integrate")
    return m


def check_normals_in_mask(normals: Any, mask: Any, name: str = "normals", xp: Any = np) -> None:
    """Raise if a normal inside ``mask`` is NaN/inf or has ``Nz <= 0`` (facing away)."""
    if not bool(xp.isfinite(normals).all()):
        bad = int(xp.count_nonzero(mask & ~xp.isfinite(normals).all(axis=-1)))
        if bad:
            raise ValueError(f"{name} must be finite inside the mask; got {bad} pixel(s) with NaN or inf")
    facing_away = (normals[..., 2] <= 0) & mask
    if bool(facing_away.any()):
        bad = int(xp.count_nonzero(facing_away))
        raise ValueError(
            f"{name} must point toward the viewer (Nz > 0) inside the mask; got {bad} pixel(s) with Nz <= 0"
        )


def check_slopes(normals: Any, mask: Any, name: str = "normals", xp: Any = np, K: Any = None) -> Any:
    """Check that the slopes the solver computes from ``normals`` are finite and representable.

    Computes, in float64 and as the C++ core does, the slopes inside ``mask`` and raises
    ``ValueError`` with the count of offending pixels when their denominator is outside
    :data:`NZ_RANGE` (``[1e-100, 1e100]``) or ``|p|`` or ``|q|`` exceeds :data:`SLOPE_LIMIT`
    (1e8, "too grazing"). Orthographic (``K`` None): ``p = Nx * (-1/Nz)``, ``q = Ny * (-1/Nz)``,
    denominator ``Nz``. Perspective (``K = (fx, fy, cx, cy)`` from
    :func:`monohead.integration.perspective.check_K`): ``d = Nz - Nx (c - cx)/fx + Ny (r - cy)/fy``,
    ``p = Nx / (fx d)``, ``q = Ny / (fy d)`` (log-depth slopes, the rule of
    :mod:`monohead.integration.perspective`). Call after the finiteness and facing checks
    (:func:`check_normals_in_mask` or ``check_normals_facing_camera``).

    Args:
        normals: ``(H, W, 3)`` or ``(B, H, W, 3)`` float64 on the device of ``xp``.
        mask: ``(H, W)`` or ``(B, H, W)`` bool.

    Returns:
        The largest ``|p|`` or ``|q|`` inside the mask (0.0 for a flat map): a float for one
        map, a ``(B,)`` NumPy array for a batch; see :func:`power_of_two_scale`.
    """
    lo, hi = NZ_RANGE
    if K is None:
        denom, what = normals[..., 2], "Nz"
    else:
        fx, fy, cx, cy = (float(k) for k in K)
        rows = xp.arange(normals.shape[-3], dtype=np.float64)[:, None]
        cols = xp.arange(normals.shape[-2], dtype=np.float64)[None, :]
        denom = normals[..., 2] - normals[..., 0] * ((cols - cx) / fx) + normals[..., 1] * ((rows - cy) / fy)
        what = "Nz - Nx (c - cx)/fx + Ny (r - cy)/fy"
    with np.errstate(all="ignore"):
        d_in = xp.where(mask, denom, 1.0).astype(np.float64, copy=False)  # float64, as the core
        del denom
        if not (float(d_in.min()) >= lo and float(d_in.max()) <= hi):
            bad = int(xp.count_nonzero(~((d_in >= lo) & (d_in <= hi)) & mask))
            raise ValueError(
                f"{name} must have {_num(lo)} <= {what} <= {_num(hi)} inside the mask (rescale them, e.g. to unit "
                f"length); got {bad} pixel(s) outside"
            )
        # Written for a small peak memory (two float64 maps at a time): the checks run on every
        # call, float32 maps included, which the core reads in place.
        if K is None:
            inv = xp.divide(-1.0, d_in, out=d_in)
        else:
            inv = xp.multiply(d_in, fx, out=d_in)  # fx d; the slopes are N / (f d)
        del d_in

        def slope(c: int, f: float = 1.0) -> Any:
            """|p| (c = 0) or |q| (c = 1) inside the mask, 0 elsewhere (one new map)."""
            out = normals[..., c] * inv if K is None else normals[..., c] / (inv if f == fx else inv * (f / fx))
            xp.abs(out, out=out)
            out[~mask] = 0.0  # values outside the mask (NaN included) are ignored
            return out

        pa = slope(0, 1.0 if K is None else fx)
        pmax = _per_map_max(pa, xp)
        if not bool((pmax <= SLOPE_LIMIT).all()):
            bad_p = ~(pa <= SLOPE_LIMIT)
        else:
            bad_p = None
        del pa
        qa = slope(1, 1.0 if K is None else fy)
        qmax = _per_map_max(qa, xp)
        per_map = np.maximum(pmax, qmax)
        if not bool((per_map <= SLOPE_LIMIT).all()):  # also catches NaN
            bad_q = ~(qa <= SLOPE_LIMIT)
            bad = int(xp.count_nonzero(bad_q if bad_p is None else (bad_p | bad_q)))
            kind = "|Nx/Nz| or |Ny/Nz|" if K is None else "log-depth slope |Nx/(fx d)| or |Ny/(fy d)|"
            raise ValueError(f"{name} too grazing: {kind} > {_num(SLOPE_LIMIT)} at {bad} pixel(s) inside the mask")
        del qa
        need = np.minimum(pmax, qmax) < 2.0**-40
        if bool(need.any()):
            # One direction's slopes are tiny: what the right-hand side holds is the largest edge
            # gradient (p_i + p_j) / 2 over horizontal pairs and (q_i + q_j) / 2 over vertical
            # pairs of mask pixels, which may be far below the largest slope (cancellation, 1 x 2).
            if K is None:
                ps, qs = normals[..., 0] * inv, normals[..., 1] * inv
            else:
                ps, qs = normals[..., 0] / inv, normals[..., 1] / (inv * (fy / fx))
            ps, qs = xp.where(mask, ps, 0.0), xp.where(mask, qs, 0.0)
            eh = xp.where(mask[..., :, :-1] & mask[..., :, 1:], xp.abs(ps[..., :, :-1] + ps[..., :, 1:]), 0.0)
            ev = xp.where(mask[..., :-1, :] & mask[..., 1:, :], xp.abs(qs[..., :-1, :] + qs[..., 1:, :]), 0.0)
            edge = np.maximum(_per_map_max(eh, xp), _per_map_max(ev, xp))  # 2x the gradient: no underflow
            per_map = np.where(need, edge, per_map)
    return float(per_map) if per_map.ndim == 0 else per_map


def _per_map_max(a: Any, xp: Any) -> np.ndarray:
    """Largest value of each map of ``(H, W)`` (0-d result) or ``(B, H, W)`` (``(B,)``), on the host;
    0 for a map with no element."""
    if a.shape[-1] == 0 or a.shape[-2] == 0:
        return np.zeros(a.shape[:-2]) if a.ndim == 3 else np.asarray(0.0)
    m = a.reshape(a.shape[0], -1).max(axis=1) if a.ndim == 3 else a.max()
    return np.asarray(m.get() if hasattr(m, "get") else m, dtype=np.float64)


#: Exponent bound of :func:`power_of_two_scale`: scales stay within ``2**-1000 .. 2**1000``.
_MAX_SCALE_EXP = 1000


def power_of_two_scale(max_abs: Any, low: float = 2.0**-40, high: float = np.inf) -> Any:
    """Powers of two ``s`` that bring ``max_abs * s`` into ``[1, 2)`` where ``max_abs`` is
    positive and outside ``[low, high]``; 1.0 elsewhere (in particular for 0).

    Scaling a linear system's right-hand side by a power of two is exact in floating point
    (away from underflow and overflow), so solving for ``s b`` and dividing the solution by
    ``s`` gives the bits an unscaled solve would give in exact range, while keeping tiny
    right-hand sides (slopes of 1e-300) clear of underflow in squared norms and in the float32
    multigrid hierarchy. ``|log2 s|`` is at most 1000.

    Args:
        max_abs: a float or a NumPy array of non-negative magnitudes.

    Returns:
        A float for a float, a float64 array of the same shape for an array.
    """
    a = np.asarray(max_abs, dtype=np.float64)
    _, e = np.frexp(a)  # a = m 2**e, m in [0.5, 1)
    exp = np.clip(1 - e.astype(np.int64), -_MAX_SCALE_EXP, _MAX_SCALE_EXP)
    outside = (a > 0) & np.isfinite(a) & ((a < low) | (a > high))
    s = np.where(outside, np.ldexp(1.0, exp), 1.0)
    return float(s) if s.ndim == 0 else s


def check_weight_range(weights: Any, lam: float, name: str = "weights") -> None:
    """Raise unless ``lam * W <= LAM_W_LIMIT`` (1e12) everywhere in ``weights``.

    ``weights`` is the output of :func:`check_gradient_magnitude` (finite and >= 0 inside the
    mask, 0 outside), so the bound applies to mask pixels only. It keeps the per-pixel weight
    ``w = 1 / (1 + lam W)`` at or above about 1e-12: smaller weights underflow in the float32
    multigrid hierarchy and in squared norms, which turned the solution into 0.
    """
    if lam == 0.0:
        return
    wmax = float(weights.max())
    if lam * wmax <= LAM_W_LIMIT:
        return
    with np.errstate(over="ignore"):
        bad = int((lam * weights > LAM_W_LIMIT).sum())
    raise ValueError(
        f"lam * {name} must be <= {_num(LAM_W_LIMIT)} inside the mask (weight w = 1/(1 + lam W) >= 1e-12); "
        f"got {bad} pixel(s) above (largest {lam * wmax:.3g} with lam={lam:g})"
    )


def check_x0_in_mask(x0: Any, mask: Any, name: str = "x0", xp: Any = np) -> Any:
    """Raise unless ``x0`` is finite with ``|x0| <= X0_LIMIT`` (1e100) inside ``mask``; return
    ``x0`` with 0 outside the mask (a new array)."""
    inside = xp.where(mask, x0, 0.0)
    if not float(xp.abs(inside).max()) <= X0_LIMIT:
        bad = int(xp.count_nonzero(~xp.isfinite(inside)))
        if bad:
            raise ValueError(f"{name} must be finite inside the mask; got {bad} NaN or inf value(s)")
        bad = int(xp.count_nonzero(xp.abs(inside) > X0_LIMIT))
        raise ValueError(f"{name} must satisfy |{name}| <= {_num(X0_LIMIT)} inside the mask; got {bad} value(s) above")
    return inside


def check_gradient_magnitude(
    weights: Any, shape: tuple[int, ...], mask: Any, name: str = "weights", xp: Any = np, keep_float32: bool = False
) -> Any:
    """Validate a gradient-magnitude map W = |grad h| (>= 0, finite inside ``mask``).

    Values outside the mask are ignored (and replaced by 0 in the returned array if they
    are not finite). Returned as C-contiguous float64, or float32 for a float32 map with
    ``keep_float32`` (no copy when it is already C-contiguous and valid everywhere).
    """
    arr = as_float_array(weights, name, xp, dtype=_kept_dtype(weights, keep_float32))
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {shape_str(tuple(shape))}; got {shape_str(tuple(arr.shape))}")
    if bool(xp.isfinite(arr).all()) and float(arr.min()) >= 0:
        return arr  # fast path: one pass for the common case
    nonfinite = ~xp.isfinite(arr) & mask
    bad = int(xp.count_nonzero(nonfinite))
    if bad:
        raise ValueError(f"{name} must be finite inside the mask; got {bad} NaN or inf value(s)")
    bad = int(xp.count_nonzero((arr < 0) & mask))
    if bad:
        raise ValueError(f"{name} (the gradient magnitude W) must be >= 0; got {bad} negative value(s)")
    return xp.where(mask, arr, arr.dtype.type(0))


def check_weights(
    weights: Any,
    shape: tuple[int, ...],
    mask: Any,
    lam: float,
    name: str = "weights",
    keep_float32: bool = False,
    scan: Any = None,
) -> Any:
    """:func:`check_gradient_magnitude` then :func:`check_weight_range` (NumPy arrays).

    ``scan``: optional ``scan(arr) -> (finite_and_nonnegative, max)`` over the whole array, one
    pass (the C++ core's ``scan_nonnegative``): when it finds every value finite and ``>= 0``
    and ``lam * max`` in range, the array is returned without the NumPy passes; otherwise the
    NumPy checks run and word the error (or clean values outside the mask) as without it.
    """
    arr = as_float_array(weights, name, dtype=_kept_dtype(weights, keep_float32))
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {shape_str(tuple(shape))}; got {shape_str(tuple(arr.shape))}")
    if scan is not None and arr.size:
        ok, wmax = scan(arr)
        if ok and (lam == 0.0 or lam * float(wmax) <= LAM_W_LIMIT):
            return arr
    arr = check_gradient_magnitude(arr, shape, mask, name, keep_float32=keep_float32)
    check_weight_range(arr, lam, name)
    return arr


def check_real(value: Any, name: str, want: str) -> float:
    """``value`` as a Python float, refusing non-reals (``TypeError``) and values a float cannot
    hold (``ValueError``, e.g. ``10**400``) before any conversion can overflow."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    try:
        out = float(value)
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"{name} must be {want}; got {_short(value)} (too large for a float)") from exc
    return out


def _num(x: float) -> str:
    """``1e8`` style text for a limit (``:g`` would write ``1e+08``)."""
    m, e = f"{x:.6e}".split("e")
    m = m.rstrip("0").rstrip(".")
    return f"{m}e{int(e)}" if abs(int(e)) >= 4 else f"{x:g}"


def _short(value: Any) -> str:
    """A short text for a scalar in an error message (huge integers are abbreviated)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"


def check_lam(lam: Any, name: str = "lam") -> float:
    """A finite, non-negative real number (any ``numbers.Real``; ``bool`` refused).

    The product with the weights is bounded separately (:func:`check_weight_range`).
    """
    want = "a finite number >= 0"
    lam = check_real(lam, name, want)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"{name} must be {want}; got {lam}")
    return lam


def check_tol(tol: Any, name: str = "tol") -> float:
    """A finite tolerance in the open interval (0, 1).

    Tolerances below about 1e-14 may be out of reach of float64 CG on large or
    ill-conditioned problems: the solver then stops at its iteration cap and says so.
    """
    tol = check_real(tol, name, "in (0, 1)")
    if not (np.isfinite(tol) and 0 < tol < 1):
        raise ValueError(f"{name} must be in (0, 1); got {tol}")
    return tol


def _real_or_none(value: Any, name: str, want: str, allow_none: bool) -> float | None:
    """``None`` (when allowed) or ``value`` as a float (see :func:`check_real`)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number{' or None' if allow_none else ''}; got {type(value).__name__}")
    return check_real(value, name, want)


def check_positive_real(value: Any, name: str, allow_none: bool = False) -> float | None:
    """A finite real number ``> 0`` as a float; ``None`` passes through when ``allow_none``."""
    want = "a finite number > 0"
    x = _real_or_none(value, name, want, allow_none)
    if x is not None and not (np.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be {want}; got {x}")
    return x


def check_fraction(value: Any, name: str, allow_none: bool = True) -> float | None:
    """A real number in ``[0, 1)`` as a float; ``None`` passes through when ``allow_none``."""
    x = _real_or_none(value, name, "in [0, 1)", allow_none)
    if x is not None and not 0.0 <= x < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {x}")
    return x


def check_positive_int(value: Any, name: str, allow_none: bool = True, maximum: int | None = None) -> int | None:
    """``None`` (when allowed) or an integer in ``[1, maximum]`` (no upper bound by default)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be a positive integer{' or None' if allow_none else ''}; got {type(value).__name__}"
        )
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {_short(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {_short(value)}")
    return int(value)


def check_maxiter(maxiter: Any, name: str = "maxiter") -> int | None:
    """An iteration cap: ``None`` (the solver's default) or an integer in ``[1, 2**31 - 1]``."""
    return check_positive_int(maxiter, name, allow_none=True, maximum=MAXITER_LIMIT)


def check_depth(
    depth: Any, name: str = "depth", shape: tuple[int, ...] | None = None, batch: bool = False
) -> np.ndarray:
    """Validate a depth map and return it as C-contiguous float64.

    Expected shape ``(H, W)`` (or ``(B, H, W)`` when ``batch``), equal to ``shape`` when given.
    NaN is allowed (it marks pixels outside the domain); see :func:`check_depth_in_mask`.
    """
    arr = as_float_array(depth, name)
    ndim = 3 if batch else 2
    want = "(B, H, W)" if batch else "(H, W)"
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have shape {want}; got {shape_str(arr.shape)}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {shape_str(tuple(shape))}; got {shape_str(arr.shape)}")
    if arr.shape[-1] < 1 or arr.shape[-2] < 1:
        raise ValueError(f"{name} must have at least one pixel; got shape {shape_str(arr.shape)}")
    return arr


def check_depth_in_mask(depth: np.ndarray, mask: np.ndarray, name: str = "depth") -> None:
    """Raise if ``depth`` is NaN or infinite at a pixel of ``mask``."""
    bad = int(np.count_nonzero(mask & ~np.isfinite(depth)))
    if bad:
        raise ValueError(f"{name} must be finite inside the mask; got {bad} NaN or inf value(s)")


def check_vertices(vertices: Any, name: str = "vertices", min_count: int = 1) -> np.ndarray:
    """Validate ``(V, 3)`` finite vertex coordinates; return them as C-contiguous float64."""
    arr = as_float_array(vertices, name)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (V, 3); got {shape_str(arr.shape)}")
    if arr.shape[0] < min_count:
        raise ValueError(f"{name} must hold at least {min_count} point(s); got {arr.shape[0]}")
    bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
    if bad:
        raise ValueError(f"{name} must be finite; got {bad} row(s) with NaN or inf")
    return arr


def check_faces(faces: Any, num_vertices: int, name: str = "faces") -> np.ndarray:
    """Validate ``(F, 3)`` integer vertex indices in ``[0, num_vertices)``; return int64."""
    if isinstance(faces, (str, bytes)) or faces is None:
        raise TypeError(f"{name} must be an integer array; got {type(faces).__name__}")
    arr = np.asarray(faces)
    if arr.dtype.kind not in "iu":
        if arr.size == 0 and arr.dtype.kind == "f":
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must have an integer dtype; got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (F, 3); got {shape_str(arr.shape)}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_vertices:
            raise ValueError(f"{name} must index vertices in [0, {num_vertices}); got indices from {lo} to {hi}")
    return arr


def check_mesh(mesh: Any, name: str = "mesh", min_faces: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices, faces)`` of a triangle mesh, validated.

    Accepts a :class:`trimesh.Trimesh` (or any object with ``vertices`` and ``faces``) or a
    ``(vertices, faces)`` pair. Returns ``(V, 3)`` float64 and ``(F, 3)`` int64 arrays.
    """
    if hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        verts, faces = mesh.vertices, mesh.faces
    elif isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        verts, faces = mesh
    else:
        raise TypeError(f"{name} must be a trimesh.Trimesh or a (vertices, faces) pair; got {type(mesh).__name__}")
    verts = check_vertices(verts, f"{name}.vertices")
    faces = check_faces(faces, verts.shape[0], f"{name}.faces")
    if faces.shape[0] < min_faces:
        raise ValueError(f"{name} must have at least {min_faces} face(s); got {faces.shape[0]}")
    return verts, faces


def as_bool_array(a: Any, name: str, shape: tuple[int, ...] | None = None, ndims: tuple[int, ...] = (2,)) -> np.ndarray:
    """A boolean map (``bool`` or 0/1 integers) as a C-contiguous ``bool`` array; may be empty.

    Unlike :func:`check_mask` it accepts masks without any pixel (a predicted mask may be
    empty). ``ndims`` lists the accepted numbers of axes; ``shape``, when given, must match.
    """
    if isinstance(a, (str, bytes)) or a is None:
        raise TypeError(f"{name} must be a boolean array; got {type(a).__name__}")
    arr = np.asarray(a)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must be a boolean (or 0/1 integer) array; got dtype {arr.dtype}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {shape_str(tuple(shape))}; got {shape_str(arr.shape)}")
    if arr.ndim not in ndims:
        want = " or ".join({2: "(H, W)", 3: "(B, H, W)"}.get(n, f"{n} axes") for n in ndims)
        raise ValueError(f"{name} must have shape {want}; got {shape_str(arr.shape)}")
    if arr.dtype.kind != "b":
        bad = int(np.count_nonzero((arr != 0) & (arr != 1)))
        if bad:
            raise ValueError(f"{name} must hold only 0 and 1; got {bad} other value(s)")
    return np.ascontiguousarray(arr, dtype=bool)


def _batch_map(a: Any, name: str, B: int, H: int, W: int, xp: Any) -> tuple[Any, tuple[int, ...]]:
    """Shape to check for a per-pixel map of a batch: ``(B, H, W)``, or ``(H, W)`` shared.

    Returns ``a`` (as an array of ``xp`` when it was a list or another sequence) and the
    shape it must have; raises ``ValueError`` for any other shape.
    """
    if not hasattr(a, "shape") or not hasattr(a, "ndim"):
        try:
            a = xp.asarray(a)
        except Exception as exc:  # ragged lists and other non-arrays
            raise TypeError(f"{name} must be a numeric array; got {type(a).__name__}") from exc
    ndim = a.ndim
    if ndim == 2:
        if tuple(a.shape) != (H, W):
            raise ValueError(
                f"{name} must have shape (B, H, W) = {shape_str((B, H, W))} or (H, W) = {shape_str((H, W))} "
                f"shared by the batch; got {shape_str(tuple(a.shape))}"
            )
        return a, (H, W)
    if ndim != 3:
        shape = tuple(a.shape)
        raise ValueError(
            f"{name} must have shape (B, H, W) = {shape_str((B, H, W))} or (H, W) = {shape_str((H, W))} "
            f"shared by the batch; got {shape_str(tuple(shape))}"
        )
    if tuple(a.shape) != (B, H, W):
        what = "batch size" if tuple(a.shape[1:]) == (H, W) else "shape"
        raise ValueError(
            f"{name} must have shape (B, H, W) = {shape_str((B, H, W))} to match normals; got "
            f"{shape_str(tuple(a.shape))} (mismatched {what})"
        )
    return a, (B, H, W)


def check_batch_inputs(
    normals: Any, weights: Any = None, lam: Any = 0.1, mask: Any = None, xp: Any = np, check_values: bool = True
) -> tuple[Any, Any, Any, float, bool]:
    """Validate the inputs of one map or of a batch of maps; return them batched.

    ``normals`` is ``(H, W, 3)`` or ``(B, H, W, 3)``; ``weights`` and ``mask`` are ``(H, W)``
    for one map and ``(B, H, W)`` (or ``(H, W)`` shared by every item) for a batch. Every
    array must live on the device of ``xp``. The values the solver derives are checked too:
    slopes (:func:`check_slopes`) and ``lam * W`` (:func:`check_weight_range`) inside the mask.

    With ``check_values`` false the normals are not checked against the mask (finite,
    ``Nz > 0``, slopes): the perspective callers check them against the camera instead
    (``check_normals_facing_camera``, then :func:`check_slopes` with ``K``).

    Returns:
        ``(normals (B, H, W, 3) float64, mask (B, H, W) bool, weights (B, H, W) float64 or
        None, lam, batched)`` with ``B = 1`` and ``batched = False`` for a single map.
    """
    arr = as_float_array(normals, "normals", xp)
    if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise ValueError(f"normals must have shape (H, W, 3) or (B, H, W, 3); got {shape_str(tuple(arr.shape))}")
    batched = arr.ndim == 4
    n = check_normals(arr, "normals", xp, batch=batched)
    if not batched:
        n = n[None]
    B, H, W = (int(s) for s in n.shape[:3])
    if B < 1:
        raise ValueError(f"normals must hold at least one map; got shape {shape_str(tuple(n.shape))}")
    lam = check_lam(lam)
    if mask is None:
        m = default_mask(n, xp)
        empty = ~m.reshape(B, -1).any(axis=1)
        if bool(empty.any()):
            idx = [int(i) for i in xp.nonzero(empty)[0][:5]]
            where = f" for batch item(s) {idx}" if batched else ""
            raise ValueError(
                f"normals are all zero{where}, so the default mask (non-zero normals) is empty; pass a mask"
            )
    elif batched:
        if isinstance(mask, (str, bytes)):
            raise TypeError(f"mask must be a boolean array; got {type(mask).__name__}")
        mask, shape = _batch_map(mask, "mask", B, H, W, xp)
        m = check_mask(mask, shape, "mask", xp)
        m = xp.ascontiguousarray(xp.broadcast_to(m, (B, H, W)))
    else:
        m = check_mask(mask, (H, W), "mask", xp)[None]
    if check_values:
        check_normals_in_mask(n, m, "normals", xp)
        check_slopes(n, m, "normals", xp)
    w = None
    if weights is not None:
        if batched and not isinstance(weights, (str, bytes)):
            weights, shape = _batch_map(weights, "weights", B, H, W, xp)
            w = as_float_array(weights, "weights", xp)
            w = check_gradient_magnitude(xp.broadcast_to(w, (B, H, W)), (B, H, W), m, "weights", xp)
            w = xp.ascontiguousarray(w)
        else:
            w = check_gradient_magnitude(weights, (H, W), m[0], "weights", xp)[None]
        check_weight_range(w, lam, "weights")
    return n, m, w, lam, batched


def check_K(K: Any, name: str = "K") -> tuple[float, float, float, float]:
    """Validate intrinsics in OpenCV form and return ``(fx, fy, cx, cy)``.

    ``K`` is a 3 x 3 array-like (NumPy, nested lists, a CPU torch tensor, a CuPy array) of
    finite reals ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` with ``fx > 0`` and ``fy > 0``
    (pixels). Skew is not supported (``K[0, 1]`` must be 0).

    Raises:
        TypeError: not numeric. ValueError: not 3 x 3, not finite, ``fx`` or ``fy`` <= 0, a
        non-zero skew or a last row other than ``(0, 0, 1)``.
    """
    if isinstance(K, (str, bytes)) or K is None:
        raise TypeError(f"{name} must be a 3x3 array of intrinsics; got {type(K).__name__}")
    if hasattr(K, "detach"):  # torch tensor
        K = K.detach().cpu().numpy()
    elif hasattr(K, "get") and type(K).__module__.split(".")[0] == "cupy":
        K = K.get()
    try:
        arr = np.asarray(K)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"{name} must be a 3x3 array of intrinsics; got {type(K).__name__}") from exc
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real 3x3 array; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.shape != (3, 3):
        raise ValueError(f"{name} must have shape (3, 3) (OpenCV intrinsics); got {shape_str(arr.shape)}")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ValueError(f"{name} must be finite; got {bad} NaN or inf value(s)")
    fx, fy, cx, cy = float(arr[0, 0]), float(arr[1, 1]), float(arr[0, 2]), float(arr[1, 2])
    if fx <= 0 or fy <= 0:
        raise ValueError(
            f"{name} must have focal lengths fx = K[0, 0] > 0 and fy = K[1, 1] > 0; got fx={fx:g}, fy={fy:g}"
        )
    if arr[0, 1] != 0:
        raise ValueError(f"{name} must have zero skew K[0, 1] (not supported); got {float(arr[0, 1]):g}")
    if arr[1, 0] != 0 or not np.allclose(arr[2], (0.0, 0.0, 1.0), rtol=0, atol=1e-12):
        raise ValueError(
            f"{name} must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]; got K[1, 0]={float(arr[1, 0]):g} and last row "
            f"{arr[2].tolist()}"
        )
    return fx, fy, cx, cy
