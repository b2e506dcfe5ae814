"""The robust depth error of the paper's §4.2, the λ sweep (Fig. 8) and the per-sample figure (Fig. 6).

For one sample (depth in pixel units, height toward the viewer):

1. ``Err = d_GT - d_R`` on the intersection of the two domains (pixels where both depths are
   finite and, if given, inside the mask). The reconstruction is known only up to a constant,
   so ``Err`` has a bias, which the median absorbs.
2. ``M = median(Err)``; ``σ_M`` = standard deviation of the errors in ``[M - θ, M + θ]``
   (``θ = 7`` pixels).
3. ``V`` = variance of the errors in ``[M - 3 σ_M, M + 3 σ_M]``.

Over a set of ``N`` samples, ``σ = sqrt(sum_i V_i / N)``. Standard deviations and variances
are population ones (``ddof = 0``); both windows are closed intervals.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import _figures, _io
from .. import _validate as v

__all__ = [
    "DepthSample",
    "depth_error_map",
    "lambda_sweep",
    "plot_depth_comparison",
    "plot_lambda_sweep",
    "robust_depth_sigma",
    "robust_depth_stats",
]

logger = logging.getLogger(__name__)

#: The λ values of the sweep by default: 0 to 0.3 in steps of 0.025, 13 values (includes the
#: paper's 0.1); also the default of :func:`monohead.experiments.run_experiments` (Fig. 8).
DEFAULT_LAMS = tuple(round(0.025 * i, 10) for i in range(13))


def depth_error_map(pred_depth: Any, true_depth: Any, mask: Any = None) -> np.ndarray:
    """``Err = true_depth - pred_depth`` on the intersection of the domains (§4.2, step 1).

    Args:
        pred_depth: ``(H, W)`` reconstructed depth (pixel units, height toward the viewer),
            NaN outside its domain (as :func:`monohead.integrate` returns it). Any real dtype.
        true_depth: ``(H, W)`` ground-truth depth, same unit, NaN outside its domain.
        mask: optional ``(H, W)`` bool restricting the comparison further.

    Returns:
        ``(H, W)`` float64 error in pixel units, NaN outside the intersection.

    Raises:
        ValueError: bad shapes, or an empty intersection.
    """
    pred = v.check_depth(pred_depth, "pred_depth")
    true = v.check_depth(true_depth, "true_depth", shape=pred.shape)
    dom = np.isfinite(pred) & np.isfinite(true)
    if mask is not None:
        dom &= v.as_bool_array(mask, "mask", shape=pred.shape)
    if not dom.any():
        raise ValueError(
            "pred_depth and true_depth have no finite pixel in common (inside the mask): nothing to compare"
        )
    out = np.full(pred.shape, np.nan)
    out[dom] = true[dom] - pred[dom]
    return out


def _robust(err: np.ndarray, theta: float) -> dict[str, float]:
    """Steps 2-3 on the finite errors ``err`` (1-D, not empty)."""
    med = float(np.median(err))
    near = err[np.abs(err - med) <= theta]
    sigma_m = float(near.std()) if near.size else float("nan")
    if near.size:
        inl = err[np.abs(err - med) <= 3.0 * sigma_m]
        var = float(inl.var()) if inl.size else float("nan")
    else:
        inl, var = near, float("nan")
    return {"median": med, "sigma_m": sigma_m, "variance": var, "count": int(err.size), "inliers": int(inl.size)}


def robust_depth_stats(pred_depth: Any, true_depth: Any, mask: Any = None, theta: float = 7.0) -> dict[str, float]:
    """The robust depth error of one sample (§4.2, steps 1-3).

    Args:
        pred_depth, true_depth, mask: as in :func:`depth_error_map` (pixel units).
        theta: half-width ``θ > 0`` of the first window, in pixel units (the paper's 7).

    Returns:
        dict with ``median`` (``M``), ``sigma_m`` (``σ_M``, std of the errors in
        ``[M - θ, M + θ]``), ``variance`` (``V``, variance of the errors in
        ``[M - 3 σ_M, M + 3 σ_M]``), ``count`` (pixels compared) and ``inliers`` (pixels in
        the second window). Population statistics (``ddof = 0``). If no error lies within
        ``θ`` of the median (possible only for an even count with a gap), ``sigma_m`` and
        ``variance`` are NaN.
    """
    theta = v.check_positive_real(theta, "theta")
    err = depth_error_map(pred_depth, true_depth, mask)
    return _robust(err[np.isfinite(err)], theta)


def _with_context(exc: Exception, context: str) -> Exception:
    """A ``TypeError`` or ``ValueError`` like ``exc`` whose message starts with ``context``."""
    return (TypeError if isinstance(exc, TypeError) else ValueError)(f"{context}: {exc}")


def _as_list(items: Any, name: str) -> list[Any]:
    if isinstance(items, np.ndarray):
        if items.ndim != 3:
            raise ValueError(
                f"{name} must be a sequence of (H, W) maps or an (N, H, W) array; got shape {v.shape_str(items.shape)}"
            )
        return list(items)
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"{name} must be a sequence of (H, W) maps or an (N, H, W) array; got {type(items).__name__}")
    return list(items)


def robust_depth_sigma(pred_depths: Any, true_depths: Any, masks: Any = None, theta: float = 7.0) -> float:
    """``σ = sqrt(sum_i V_i / N)`` over a set of samples (§4.2), in pixel units.

    Args:
        pred_depths: ``N`` reconstructed ``(H, W)`` depth maps (a sequence, or an
            ``(N, H, W)`` array); maps may differ in size from sample to sample.
        true_depths: the ``N`` ground-truth depth maps, matching.
        masks: ``None``, or ``N`` bool masks (or ``None`` entries) restricting each comparison.
        theta: the first window's half-width ``θ`` (pixel units, default 7).

    Returns:
        σ as a float (NaN if a sample's variance is NaN, see :func:`robust_depth_stats`).
    """
    theta = v.check_positive_real(theta, "theta")
    preds = _as_list(pred_depths, "pred_depths")
    trues = _as_list(true_depths, "true_depths")
    if not preds:
        raise ValueError("pred_depths is empty: need at least one sample")
    if len(trues) != len(preds):
        raise ValueError(f"true_depths must hold {len(preds)} maps like pred_depths; got {len(trues)}")
    mlist = [None] * len(preds) if masks is None else _as_list(masks, "masks")
    if len(mlist) != len(preds):
        raise ValueError(f"masks must hold {len(preds)} maps like pred_depths; got {len(mlist)}")
    variances = []
    for i, (p, t, m) in enumerate(zip(preds, trues, mlist, strict=True)):
        try:
            variances.append(robust_depth_stats(p, t, m, theta)["variance"])
        except (TypeError, ValueError) as exc:
            raise _with_context(exc, f"sample {i}") from exc
    return float(np.sqrt(np.mean(variances)))


class DepthSample(NamedTuple):
    """One test sample for :func:`lambda_sweep`.

    Attributes:
        normals: ``(H, W, 3)`` normals to integrate (predicted or ground truth), camera frame.
        weights: ``(H, W)`` gradient magnitude ``W`` (predicted or ground truth), or ``None``.
        mask: ``(H, W)`` bool integration domain.
        true_depth: ``(H, W)`` ground-truth depth, pixel units, NaN outside its domain.
    """

    normals: Any
    weights: Any
    mask: Any
    true_depth: Any


def _as_sample(s: Any, i: int) -> DepthSample:
    if isinstance(s, Mapping):
        missing = [k for k in ("normals", "mask", "true_depth") if k not in s]
        if missing:
            raise ValueError(f"samples[{i}] lacks key(s) {missing}; need normals, weights, mask, true_depth")
        return DepthSample(s["normals"], s.get("weights"), s["mask"], s["true_depth"])
    if isinstance(s, Sequence) and not isinstance(s, (str, bytes)) and len(s) == 4:
        return DepthSample(*s)
    raise TypeError(
        f"samples[{i}] must be a DepthSample, a (normals, weights, mask, true_depth) tuple or a mapping; "
        f"got {type(s).__name__}"
    )


def lambda_sweep(
    samples: Iterable[Any],
    lams: Sequence[float] | None = None,
    *,
    theta: float = 7.0,
    method: str = "mg",
    plot_path: Any = None,
    callback: Callable[[int, int], None] | None = None,
    **integrate_kwargs: Any,
) -> dict[str, Any]:
    """Integrate every sample for every λ and report the robust σ (the procedure of §4.2, Fig. 8).

    For each λ, each sample's ``normals`` and ``weights`` are integrated on its ``mask`` with
    :func:`monohead.integrate` (``w = 1 / (1 + λ W)``) and compared with its ``true_depth`` by
    :func:`robust_depth_stats`; ``σ(λ) = sqrt(mean_i V_i)``.

    Args:
        samples: :class:`DepthSample` items (or 4-tuples, or mappings with those keys).
        lams: λ values ``>= 0``; default :data:`DEFAULT_LAMS` (0 to 0.3 by 0.025).
        theta: the first window's half-width (pixel units, default 7).
        method: integrator method passed to :func:`monohead.integrate` (``"mg"``,
            ``"jacobi"``, ``"direct"``).
        plot_path: if given, Fig. 8 (σ against λ) is written there as PNG
            (:func:`plot_lambda_sweep`).
        callback: called as ``callback(done, total)`` after each integration (progress).
        **integrate_kwargs: passed to :func:`monohead.integrate` (e.g. ``tol``).

    Returns:
        dict with ``lam`` (``(K,)`` float64), ``sigma`` (``(K,)`` float64, pixel units),
        ``variance`` (``(K, N)``: each sample's ``V``), ``best_lam`` and ``best_sigma`` (the
        λ with the smallest σ, and that σ).
    """
    from ..integration import integrate

    theta = v.check_positive_real(theta, "theta")
    if isinstance(samples, (str, bytes)) or not isinstance(samples, Iterable):
        raise TypeError(f"samples must be an iterable of DepthSample; got {type(samples).__name__}")
    items = [_as_sample(s, i) for i, s in enumerate(samples)]
    if not items:
        raise ValueError("samples is empty: need at least one sample")
    lam_values = list(DEFAULT_LAMS if lams is None else lams)
    if not lam_values:
        raise ValueError("lams is empty: need at least one λ")
    lam_arr = np.array([v.check_lam(x, "lams[]") for x in lam_values])
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    variance = np.empty((lam_arr.size, len(items)))
    total, done = lam_arr.size * len(items), 0
    for k, lam in enumerate(lam_arr):
        for i, s in enumerate(items):
            try:
                depth = integrate(s.normals, s.weights, lam=float(lam), mask=s.mask, method=method, **integrate_kwargs)
                variance[k, i] = robust_depth_stats(depth, s.true_depth, s.mask, theta)["variance"]
            except (TypeError, ValueError) as exc:
                raise _with_context(exc, f"samples[{i}]") from exc
            done += 1
            if callback is not None:
                callback(done, total)
        logger.info("lambda_sweep: lam=%g sigma=%.4g", lam, float(np.sqrt(variance[k].mean())))
    sigma = np.sqrt(variance.mean(axis=1))
    best = int(np.nanargmin(sigma)) if np.isfinite(sigma).any() else 0
    table = {
        "lam": lam_arr,
        "sigma": sigma,
        "variance": variance,
        "best_lam": float(lam_arr[best]),
        "best_sigma": float(sigma[best]),
    }
    if plot_path is not None:
        plot_lambda_sweep(table, plot_path)
    return table


def plot_lambda_sweep(table: Mapping[str, Any], path: Any) -> None:
    """Draw σ against λ (the paper's Fig. 8) and write it as PNG, atomically.

    Args:
        table: the result of :func:`lambda_sweep` (needs ``lam`` and ``sigma``).
        path: destination ``.png`` file.
    """
    p = _io.check_path(path)
    if not isinstance(table, Mapping) or "lam" not in table or "sigma" not in table:
        raise TypeError("table must be a mapping with 'lam' and 'sigma' (the result of lambda_sweep)")
    lam = v.as_float_array(table["lam"], "table['lam']")
    sigma = v.as_float_array(table["sigma"], "table['sigma']")
    if lam.ndim != 1 or sigma.shape != lam.shape or lam.size == 0:
        raise ValueError(
            "table['lam'] and table['sigma'] must be 1-D of one length; "
            f"got {v.shape_str(lam.shape)} and {v.shape_str(sigma.shape)}"
        )
    fig = _figures.new_figure(5.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(lam, sigma, "o-", color="tab:blue")
    if np.isfinite(sigma).any():
        b = int(np.nanargmin(sigma))
        ax.plot([lam[b]], [sigma[b]], "o", color="tab:red", label=f"best λ = {lam[b]:g}")
        ax.legend(loc="upper right")
    ax.set_xlabel("λ")
    ax.set_ylabel("σ (pixels)")
    ax.set_title("Effect of λ on the reconstruction error")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    _figures.save_png(fig, p)


def _hillshade(depth: np.ndarray) -> np.ndarray:
    """Gray shading ``max(0, N . l)`` of a depth map under a light from the upper left; NaN outside."""
    from ..geometry import normals_from_depth

    dom = np.isfinite(depth)
    n = normals_from_depth(depth, dom)
    light = np.array([-1.0, 1.0, 2.0]) / np.sqrt(6.0)
    shade = np.clip(n @ light, 0.0, 1.0)
    shade[~dom] = np.nan
    return shade


def plot_depth_comparison(
    true_depth: Any,
    pred_depth: Any,
    path: Any,
    mask: Any = None,
    theta: float = 7.0,
    bins: int = 100,
) -> dict[str, float]:
    """Draw the paper's Fig. 6 for one sample and write it as PNG, atomically.

    Panels: (a) the ground-truth surface and (b) the reconstruction, both shaded (light from
    the upper left) on their own domains; (c) the histogram of the residuals ``Err`` with
    ``M`` (red), ``M ± θ`` (green) and ``M ± 3 σ_M`` (blue); (d) the heat map of ``Err - M``
    (the error after removing the bias), in pixel units.

    Args:
        true_depth, pred_depth: ``(H, W)`` depths in pixel units, NaN outside their domains.
        path: destination ``.png`` file.
        mask: optional ``(H, W)`` bool restricting the comparison.
        theta: the first window's half-width (pixel units, default 7).
        bins: histogram bins.

    Returns:
        The :func:`robust_depth_stats` of the sample (what the figure shows).
    """
    p = _io.check_path(path)
    theta = v.check_positive_real(theta, "theta")
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    err = depth_error_map(pred_depth, true_depth, mask)
    true = v.check_depth(true_depth, "true_depth")
    pred = v.check_depth(pred_depth, "pred_depth")
    e = err[np.isfinite(err)]
    stats = _robust(e, theta)
    med, sm = stats["median"], stats["sigma_m"]

    # Show the bounding box of the two domains only.
    rows, cols = np.nonzero(np.isfinite(true) | np.isfinite(pred))
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    fig = _figures.new_figure(12.0, 3.4)
    axes = [fig.add_subplot(1, 4, i + 1) for i in range(4)]
    for ax, d, title in ((axes[0], true, "(a) ground truth"), (axes[1], pred, "(b) reconstruction")):
        ax.imshow(_hillshade(d)[box], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    ax = axes[2]
    ax.hist(e, bins=int(bins), color="0.6")
    ax.axvline(med, color="red", label="M")
    for s in (-1, 1):
        ax.axvline(med + s * theta, color="green", linestyle="--", label="M ± θ" if s < 0 else None)
        if np.isfinite(sm):
            ax.axvline(med + s * 3 * sm, color="blue", linestyle=":", label="M ± 3σ_M" if s < 0 else None)
    ax.set_title("(c) residuals")
    ax.set_xlabel("error (pixels)")
    ax.legend(fontsize="small", loc="upper right")
    ax = axes[3]
    heat = err - med
    lim = 3 * sm if np.isfinite(sm) and sm > 0 else float(np.nanmax(np.abs(heat))) or 1.0
    im = ax.imshow(heat[box], cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_title("(d) error - M (pixels)")
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    _figures.save_png(fig, p)
    return stats
