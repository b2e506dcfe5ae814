"""The metrics of the paper's Table 1: mask precision/recall and angular error of normal maps."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate as v

__all__ = ["angular_error", "angular_error_stats", "mask_precision_recall"]


def mask_precision_recall(pred_mask: Any, true_mask: Any) -> tuple[float, float]:
    """Pixel precision and recall of a predicted mask, in percent (Table 1, "Mask evaluation").

    ``precision = 100 |pred ∩ true| / |pred|`` and ``recall = 100 |pred ∩ true| / |true|``,
    counted over all pixels (of all images of a batch: pooled, not averaged per image).

    Args:
        pred_mask: ``(H, W)`` or ``(B, H, W)`` bool (or 0/1 integer) predicted mask.
        true_mask: same shape, the ground truth; must contain at least one pixel.

    Returns:
        ``(precision, recall)`` as floats in ``[0, 100]``. An empty ``pred_mask`` has
        precision 0 (nothing predicted is right) by convention.
    """
    pred = v.as_bool_array(pred_mask, "pred_mask", ndims=(2, 3))
    true = v.as_bool_array(true_mask, "true_mask", shape=pred.shape, ndims=(2, 3))
    n_true = int(np.count_nonzero(true))
    if n_true == 0:
        raise ValueError("true_mask is empty: recall is undefined without ground-truth pixels")
    hits = int(np.count_nonzero(pred & true))
    n_pred = int(np.count_nonzero(pred))
    precision = 100.0 * hits / n_pred if n_pred else 0.0
    return precision, 100.0 * hits / n_true


def _checked_pair(pred_normals: Any, true_normals: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = v.as_float_array(pred_normals, "pred_normals")
    if pred.ndim not in (3, 4) or pred.shape[-1] != 3:
        raise ValueError(f"pred_normals must have shape (H, W, 3) or (B, H, W, 3); got {v.shape_str(pred.shape)}")
    true = v.as_float_array(true_normals, "true_normals")
    if true.shape != pred.shape:
        raise ValueError(
            f"true_normals must have shape {v.shape_str(pred.shape)} like pred_normals; got {v.shape_str(true.shape)}"
        )
    if mask is None:
        m = v.default_mask(true)
    else:
        m = v.as_bool_array(mask, "mask", shape=pred.shape[:-1], ndims=(pred.ndim - 1,))
    if not m.any():
        raise ValueError("mask is empty: no pixel to compare")
    for name, arr in (("pred_normals", pred), ("true_normals", true)):
        sub = arr[m]
        bad = int(np.count_nonzero(~np.isfinite(sub).all(axis=1)))
        if bad:
            raise ValueError(f"{name} must be finite inside the mask; got {bad} pixel(s) with NaN or inf")
        bad = int(np.count_nonzero(~(sub != 0).any(axis=1)))
        if bad:
            raise ValueError(f"{name} must be non-zero inside the mask; got {bad} pixel(s) with (0, 0, 0)")
    return pred, true, m


def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between rows of ``a`` and ``b`` (any lengths), ``atan2(|a x b|, a.b)``."""
    cross = np.cross(a, b)
    return np.degrees(np.arctan2(np.sqrt((cross * cross).sum(-1)), (a * b).sum(-1)))


def angular_error(pred_normals: Any, true_normals: Any, mask: Any = None) -> np.ndarray:
    """Per-pixel angle between two normal maps, in degrees.

    The angle between ``a`` and ``b`` is ``atan2(|a x b|, a . b)`` (accurate near 0° and
    180°); the vectors need not be unit length (the network's output need not be), only
    non-zero inside the mask.

    Args:
        pred_normals: ``(H, W, 3)`` or ``(B, H, W, 3)``, any float dtype and layout.
        true_normals: same shape, in the same frame.
        mask: ``(H, W)`` / ``(B, H, W)`` bool pixels to compare; default: the pixels where
            ``true_normals`` is not ``(0, 0, 0)``.

    Returns:
        ``(H, W)`` / ``(B, H, W)`` float64 angles in ``[0, 180]`` degrees, NaN outside the mask.
    """
    pred, true, m = _checked_pair(pred_normals, true_normals, mask)
    out = np.full(m.shape, np.nan)
    out[m] = _angles_deg(pred[m], true[m])
    return out


def angular_error_stats(pred_normals: Any, true_normals: Any, mask: Any = None) -> dict[str, float]:
    """Angular error statistics of a normal map over a mask (Table 1, "Normals evaluation").

    Args:
        pred_normals: ``(H, W, 3)`` or ``(B, H, W, 3)`` predicted normals (need not be unit).
        true_normals: same shape, the ground truth, in the same frame.
        mask: ``(H, W)`` / ``(B, H, W)`` bool pixels to compare (pooled over a batch);
            default: the pixels where ``true_normals`` is not ``(0, 0, 0)``.

    Returns:
        dict with ``mean``, ``std`` (population, ``ddof=0``) and ``median`` of the per-pixel
        angles in degrees; ``under_10``, ``under_20``, ``under_30``: the percentage of pixels
        with an angle strictly below 10°, 20° and 30°; ``count``: the number of pixels.
    """
    err = angular_error(pred_normals, true_normals, mask)
    e = err[np.isfinite(err)]
    return {
        "mean": float(e.mean()),
        "std": float(e.std()),
        "median": float(np.median(e)),
        "under_10": 100.0 * float(np.count_nonzero(e < 10.0)) / e.size,
        "under_20": 100.0 * float(np.count_nonzero(e < 20.0)) / e.size,
        "under_30": 100.0 * float(np.count_nonzero(e < 30.0)) / e.size,
        "count": int(e.size),
    }
