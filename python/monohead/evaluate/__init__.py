"""The paper's evaluation toolkit: Table 1 metrics, the robust depth error of §4.2, Table 2.

- Table 1: :func:`mask_precision_recall`, :func:`angular_error`, :func:`angular_error_stats`.
- §4.2: :func:`depth_error_map`, :func:`robust_depth_stats`, :func:`robust_depth_sigma`, the λ
  sweep :func:`lambda_sweep` with Fig. 8 (:func:`plot_lambda_sweep`), and Fig. 6
  (:func:`plot_depth_comparison`).
- Table 2 and eq. 9: :func:`icp` (point-to-plane, :class:`ICPResult`), :func:`kabsch`,
  :func:`apply_transform`, :func:`normal_projected_errors`, :func:`mesh_errors`,
  :func:`mesh_errors_set`.

Inputs may have any real dtype and memory layout (NumPy, CPU); results are Python floats or
NumPy ``float64``, in the unit of the inputs. matplotlib is imported only by the plotting
functions (Agg canvas, no pyplot).
"""

from .depth_error import (
    DEFAULT_LAMS,
    DepthSample,
    depth_error_map,
    lambda_sweep,
    plot_depth_comparison,
    plot_lambda_sweep,
    robust_depth_sigma,
    robust_depth_stats,
)
from .mesh_error import (
    ICPResult,
    apply_transform,
    icp,
    kabsch,
    mesh_errors,
    mesh_errors_set,
    normal_projected_errors,
)
from .metrics import angular_error, angular_error_stats, mask_precision_recall

__all__ = [
    "DEFAULT_LAMS",
    "DepthSample",
    "ICPResult",
    "angular_error",
    "angular_error_stats",
    "apply_transform",
    "depth_error_map",
    "icp",
    "kabsch",
    "lambda_sweep",
    "mask_precision_recall",
    "mesh_errors",
    "mesh_errors_set",
    "normal_projected_errors",
    "plot_depth_comparison",
    "plot_lambda_sweep",
    "robust_depth_sigma",
    "robust_depth_stats",
]
