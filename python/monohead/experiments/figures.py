"""The experiments' figures and photos: Fig. 5 (predictions), Fig. 6 (the median head), Fig. 8 (σ
against λ) and the real photos of §4.3 (Fig. 7), reconstructed by
:func:`monohead.photo.reconstruct_photos`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import _figures, _io
from .settings import PAPER_LAMBDA, PHOTOS, THETA
from .testset import TestSet

__all__ = ["draw_figures", "photo_image", "plot_sweeps", "prediction_png", "reconstruct_photos"]


def plot_sweeps(sweep: dict[str, Any], oracle: dict[str, Any], path: Path) -> None:
    """Fig. 8: σ(λ) with the predicted maps (left) and with the true maps (right), as a PNG file."""
    fig = _figures.new_figure(10.0, 3.6)
    for k, (tab, title, colour) in enumerate(((sweep, "predicted N, W (the pipeline)", "tab:blue"),
                                              (oracle, "true N, W (oracle)", "tab:green"))):  # fmt: skip
        ax = fig.add_subplot(1, 2, k + 1)
        lam, sigma = np.asarray(tab["lam"]), np.asarray(tab["sigma"])
        ax.plot(lam, sigma, "o-", color=colour)
        if np.isfinite(sigma).any():
            b = int(np.nanargmin(sigma))
            ax.plot([lam[b]], [sigma[b]], "o", color="tab:red", label=f"best λ = {lam[b]:g}")
        ax.axvline(PAPER_LAMBDA, color="0.5", linestyle=":", label=f"paper's λ = {PAPER_LAMBDA:g}")
        ax.set_xlabel("λ")
        ax.set_ylabel("σ (pixels)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper right")
    fig.suptitle(f"Effect of λ on the reconstruction error ({len(sweep['samples'])} test heads)", fontsize=11)
    fig.tight_layout()
    _figures.save_png(fig, path)


def prediction_png(ts: TestSet, pred: dict[str, np.ndarray], rows: int) -> bytes | None:
    """Fig. 5 (photo, N true | predicted, W true | predicted) for the first ``rows`` samples, as
    PNG bytes; ``None`` without PyTorch."""
    try:
        from ..model.predict import prediction_figure
        from ..model.unet import W_SCALE
    except ImportError:  # no torch: no figure
        return None
    kept = [{"image": ts.images[i], "normals": ts.normals[i], "W": ts.W[i], "mask": ts.mask[i],
             "pred_normals": pred["normals"][i], "pred_W": pred["W"][i], "pred_mask": pred["mask"][i]}
            for i in range(min(rows, len(ts)))]  # fmt: skip
    return prediction_figure(kept, W_SCALE)


def draw_figures(
    ts: TestSet, pred: dict[str, np.ndarray], sweep: dict[str, Any], oracle: dict[str, Any], best: float, folder: Path
) -> tuple[dict[str, str], dict[str, Any] | None]:
    """Fig. 8, Fig. 6 (the sample of median error at the best λ) and Fig. 5 into ``folder``.

    Returns:
        ``(files, fig6)``: the figures' paths relative to the report (``fig5``, ``fig6``,
        ``fig8``) and Fig. 6's sample and robust statistics (``None`` when no head was integrated).
    """
    from ..evaluate import plot_depth_comparison
    from ..integration import integrate

    files: dict[str, str] = {}
    plot_sweeps(sweep, oracle, folder / "fig8_lambda_sweep.png")
    files["fig8"] = f"{folder.name}/fig8_lambda_sweep.png"
    fig6: dict[str, Any] | None = None
    if sweep["samples"]:
        kbest = int(np.argmin(np.abs(np.asarray(sweep["lam"]) - best)))
        order = np.argsort(np.asarray(sweep["variance"][kbest]), kind="stable")
        i6 = int(sweep["samples"][int(order[(len(order) - 1) // 2])])
        depth6 = integrate(pred["normals"][i6], pred["W"][i6], best, pred["mask"][i6])
        stats6 = plot_depth_comparison(
            ts.depth[i6], depth6, folder / "fig6_sample.png", mask=pred["mask"][i6], theta=THETA
        )
        files["fig6"] = f"{folder.name}/fig6_sample.png"
        fig6 = {"sample": i6, "id": ts.ids[i6], "sex": ts.sex[i6], "lam": best, **stats6}
    png5 = prediction_png(ts, pred, 4)
    if png5 is not None:
        _io.atomic_write_bytes(folder / "fig5_predictions.png", png5)
        files["fig5"] = f"{folder.name}/fig5_predictions.png"
    return files, fig6


def photo_image(name: str) -> Any:
    """The real photo ``name`` of :data:`PHOTOS`: scikit-image's astronaut or matplotlib's Grace Hopper."""
    if name == "astronaut":
        from skimage import data

        return data.astronaut()
    if name == "grace_hopper":
        import matplotlib.cbook

        return matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    raise ValueError(f"photo must be one of {', '.join(PHOTOS)}; got {name!r}")


def reconstruct_photos(
    net: Any, lam: float, figures: Path, meshes: Path, callback: Callable[[int, int], None], flip: bool = False
) -> list[dict[str, Any]]:
    """The real photos of :data:`PHOTOS` reconstructed at ``lam`` (Fig. 7): the previews into
    ``figures``, the meshes (PLY) into ``meshes``; one entry per photo, with its ``error`` when it
    failed (no face found)."""
    from ..photo import reconstruct_photos as reconstruct_all

    done = reconstruct_all(((name, photo_image(name)) for name in PHOTOS), lam=lam, model=net, flip=flip,
                           title="{photo} (λ = {lam:g})", callback=lambda k, n, _name: callback(k, n))  # fmt: skip
    out = []
    for o in done:
        if o.result is None:
            out.append({"photo": o.photo, "error": o.error})
            continue
        fig, mesh = figures / f"photo_{o.photo}.png", meshes / f"{o.photo}.ply"
        _io.atomic_write_bytes(fig, o.preview)
        _io.atomic_write_bytes(mesh, o.mesh)
        rec = o.result
        face_box = None if rec.face_box is None else list(rec.face_box)
        out.append({"photo": o.photo, "figure": f"{figures.name}/{fig.name}", "mesh": f"{meshes.name}/{mesh.name}",
                    "vertices": int(len(rec.mesh.vertices)), "face_box": face_box,
                    "seconds": {s: float(v) for s, v in rec.seconds.items()}})  # fmt: skip
    return out
