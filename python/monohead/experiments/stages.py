"""The measuring stages of the experiments: Table 1 (masks, normals), the λ sweep of §4.2 and
the Table 2 analogue (mesh errors after ICP), on stacked predictions and a :class:`TestSet`.

Units: depths and mesh errors in pixels of the test images, angles in degrees, precision and
recall in percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .settings import ICP_STRIDE, MIN_PIXELS, PAPER_LAMBDA, THETA
from .testset import TestSet

__all__ = ["domains", "integrate_method", "sweep", "table1", "table2", "table2_methods", "table2_task"]


def table1(ts: TestSet, pred: dict[str, np.ndarray], select: np.ndarray) -> dict[str, Any]:
    from ..evaluate import angular_error_stats, mask_precision_recall

    pm, tm = pred["mask"][select], ts.mask[select]
    precision, recall = mask_precision_recall(pm, tm)
    both = pm & tm
    out: dict[str, Any] = {"images": int(select.sum()), "mask_precision": precision, "mask_recall": recall,
                           "pixels_compared": int(both.sum())}  # fmt: skip
    if both.any():
        out.update(angular_error_stats(pred["normals"][select], ts.normals[select], both))
        out["w_mae"] = float(np.abs(pred["W"][select][both] - ts.W[select][both]).mean())
    else:
        out.update({k: math.nan for k in ("mean", "std", "median", "under_10", "under_20", "under_30", "w_mae")})
        out["count"] = 0
    return out


def domains(mask: np.ndarray, true_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the compared domain (mask ∩ true mask) and whether it is large enough."""
    dom = mask & true_mask
    return dom, dom.reshape(dom.shape[0], -1).sum(axis=1) >= MIN_PIXELS


def sweep(normals: np.ndarray, W: np.ndarray, mask: np.ndarray, ts: TestSet, valid: np.ndarray, lams: Sequence[float],
           callback: Callable[[int, int], None]) -> dict[str, Any]:  # fmt: skip
    from ..evaluate import DepthSample, lambda_sweep

    idx = np.nonzero(valid)[0]
    if not idx.size:  # nothing to integrate (e.g. an untrained network predicts no mask)
        callback(0, 0)
        nan = [math.nan] * len(lams)
        return {"lam": [float(x) for x in lams], "sigma": nan, "variance": [[] for _ in lams], "samples": [],
                "best_lam": PAPER_LAMBDA, "best_sigma": math.nan}  # fmt: skip
    samples = [DepthSample(normals[i], W[i], mask[i], ts.depth[i]) for i in idx]
    table = lambda_sweep(samples, list(lams), theta=THETA, callback=callback)
    return {
        "lam": [float(x) for x in table["lam"]],
        "sigma": [float(x) for x in table["sigma"]],
        "variance": np.asarray(table["variance"]).tolist(),
        "samples": [int(i) for i in idx],
        "best_lam": float(table["best_lam"]),
        "best_sigma": float(table["best_sigma"]),
    }


def integrate_method(method: str, lam: float, normals: np.ndarray, W: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Depth (pixels, NaN outside ``mask``) of one sample by one integrator."""
    from ..integration import dct_poisson, frankot_chellappa, integrate

    if method == "wls":
        return integrate(normals, W, lam, mask)
    filled = np.array(normals, np.float64)
    filled[~mask] = (0.0, 0.0, 1.0)
    depth = (dct_poisson if method == "dct" else frankot_chellappa)(filled)
    depth[~mask] = np.nan
    return depth


def table2_task(
    depths: list[np.ndarray],
    domains: list[np.ndarray],
    true_depths: list[np.ndarray],
    true_masks: list[np.ndarray],
    progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Mesh errors of reconstructions (meshed on their domains) against the true surfaces.

    Each reconstruction is aligned by :func:`monohead.evaluate.icp` (point-to-plane, from the
    centroids) fitted on every :data:`ICP_STRIDE`-th vertex, then all its vertices are compared
    by :func:`monohead.evaluate.mesh_errors_set` (``align=False``). Pairs whose ICP fails are
    left out and counted in ``icp_failed``.
    """
    from ..evaluate import apply_transform, icp, mesh_errors_set
    from ..geometry import MeshSurface, depth_to_mesh

    failed = 0

    def pairs() -> Iterable[tuple[Any, Any]]:
        nonlocal failed
        for d, dom, t, tm in zip(depths, domains, true_depths, true_masks, strict=True):
            surface = MeshSurface(depth_to_mesh(t, tm), "true mesh")
            P = np.asarray(depth_to_mesh(np.where(dom, d, np.nan), dom).vertices)
            stride = max(1, min(ICP_STRIDE, P.shape[0] // 64))
            try:
                T = icp(P[::stride], surface).transform
            except ValueError:  # too few correspondences: the alignment failed
                failed += 1
            else:
                yield apply_transform(T, P), surface
            if progress is not None:
                progress()

    out = mesh_errors_set(pairs(), align=False)
    out["icp_failed"] = failed
    return out


def table2_methods(best_lam: float) -> list[tuple[str, str, float]]:
    """``(label, method, λ)`` rows of Table 2."""
    rows = [(f"WLS, λ = {best_lam:g} (best of the sweep)", "wls", best_lam)]
    if not math.isclose(best_lam, PAPER_LAMBDA):
        rows.append((f"WLS, λ = {PAPER_LAMBDA:g} (paper)", "wls", PAPER_LAMBDA))
    if best_lam != 0.0:
        rows.append(("least squares (λ = 0)", "wls", 0.0))
    rows += [("DCT Poisson (full rectangle)", "dct", 0.0), ("Frankot-Chellappa (full rectangle)", "fc", 0.0)]
    return rows


def table2(ts: TestSet, pred: dict[str, np.ndarray], best_pred: float, best_true: float, workers: int,
            callback: Callable[[int, int], None]) -> dict[str, Any]:  # fmt: skip
    blocks = [("predicted", pred["normals"], pred["W"], pred["mask"], best_pred),
              ("true", ts.normals, ts.W, ts.mask, best_true)]  # fmt: skip
    rows: list[dict[str, Any]] = []  # in table order; "task" points into tasks
    tasks = []
    for block, normals, W, mask, best in blocks:
        dom, valid = domains(mask, ts.mask)
        idx = np.nonzero(valid)[0]
        for label, method, lam in table2_methods(best):
            rows.append(
                {"block": block, "label": label, "method": method, "lam": lam, "samples": int(idx.size), "pairs": 0}
            )
            if not idx.size:  # nothing to compare (e.g. an untrained network predicts no mask)
                continue
            depths = [integrate_method(method, lam, normals[i], W[i], mask[i]) for i in idx]
            rows[-1]["task"] = len(tasks)
            tasks.append((depths, [dom[i] for i in idx], [ts.depth[i] for i in idx], [ts.mask[i] for i in idx]))
    total = sum(len(t[0]) for t in tasks)
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    done = 0
    callback(0, total)

    def tick() -> None:
        nonlocal done
        done += 1
        callback(done, total)

    if workers <= 1 or len(tasks) <= 1:
        for k, args in enumerate(tasks):
            results[k] = table2_task(*args, progress=tick)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(
            max_workers=min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn")
        ) as ex:
            futures = {ex.submit(table2_task, *args): k for k, args in enumerate(tasks)}
            for fut in as_completed(futures):
                k = futures[fut]
                results[k] = fut.result()
                done += len(tasks[k][0])
                callback(done, total)
    for row in rows:
        k = row.pop("task", None)
        if k is not None:
            row.update(results[k] or {})
    return {"rows": rows}
