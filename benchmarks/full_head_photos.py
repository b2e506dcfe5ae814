"""The sheet of complete heads for the real photos: ``docs/full_head_photos.png``.

Run: ``python benchmarks/full_head_photos.py [--photos DIR] [--out docs/full_head_photos.png]``.
The photos are read at run time from ``$MONOHEAD_SHARED/data/real-photos`` (else
``<repo>/../shared``; ``monohead._env.shared_data``); they are not part of the project, and the sheet
shows no pixel of them: each row is the photo's name, the 2.5D mesh from the front (grey
shading) and the complete head (``reconstruct(..., full_head=True)``) from the front, the side
and the back.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
from pathlib import Path

import numpy as np


def _photos_dir() -> Path | None:
    from monohead._env import shared_data

    return shared_data("real-photos")


def seam_slope(model_vertices: np.ndarray, mesh) -> float:
    """How steeply the merge's displacement changes across the seam: the 99th percentile,
    over the mesh's edges with no vertex of full visible weight, of the change of the
    displacement along z per pixel of the edge's image-plane length (lengths under 0.3 px
    count as 0.3). A step at the seam shows as values well over 1."""
    out = np.asarray(mesh.vertices)
    delta = out[:, 2] - model_vertices[:, 2]
    a = mesh.metadata["visible_weight"]
    e = mesh.edges_unique
    length = np.linalg.norm(model_vertices[e[:, 0], :2] - model_vertices[e[:, 1], :2], axis=1)
    slope = np.abs(delta[e[:, 0]] - delta[e[:, 1]]) / np.maximum(length, 0.3)
    seam = np.maximum(a[e[:, 0]], a[e[:, 1]]) < 0.95
    return float(np.percentile(slope[seam], 99))


def main() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from monohead import _io, photo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "full_head_photos.png")
    args = ap.parse_args()
    folder = args.photos or _photos_dir()
    if folder is None or not folder.is_dir():
        print("no real-photos folder (set MONOHEAD_SHARED); nothing to do", file=sys.stderr)
        return
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    rows = []
    for p in files:
        try:
            # model=None: the shipped network (loaded once), with its identity calibration, as
            # `monohead reconstruct --full-head` (a network passed in gets no calibration)
            rec = photo.reconstruct(p, full_head=True)
        except ValueError as exc:
            rows.append((p.stem, None, str(exc)))
            print(f"{p.name}: {exc}", file=sys.stderr)
            continue
        v, n = photo.surface_points(rec.mesh)
        fv, fn = photo.surface_points(rec.full_mesh, order=5, size=160)
        fit = rec.head_fit
        slope = seam_slope(fit.vertices(), rec.full_mesh)
        info = (
            f"{'converged' if fit.converged else 'NOT converged'}, residual {fit.rms:.2f} px, "
            f"yaw {fit.params()['yaw_pitch_roll'][0]:.0f}°"
        )
        panels = [photo.shaded_view(v, n, "front")] + [
            photo.shaded_view(fv, fn, w, size=160) for w in ("front", "side", "back")
        ]
        rows.append((p.stem, panels, info))
        print(
            f"{p.name}: {info}, watertight {rec.full_mesh.is_watertight}, seam slope 99 % {slope:.2f}, "
            f"{rec.seconds['full_head'] * 1e3:.0f} ms",
            file=sys.stderr,
        )
    fig = Figure(figsize=(8, 2.1 * len(rows)), dpi=80)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(len(rows), 4)).reshape(len(rows), 4)
    titles = ["2.5D mesh, front", "complete head, front", "side", "back"]
    for r, (name, panels, info) in enumerate(rows):
        for c in range(4):
            ax = axes[r, c]
            ax.set_axis_off()
            if panels is not None:
                ax.imshow(panels[c], cmap="gray", vmin=0, vmax=1)
            if r == 0:
                ax.set_title(titles[c], fontsize=9, pad=16)  # above the name written at -14
        axes[r, 0].text(0, -4 if r else -14, name[:40], fontsize=7)
        axes[r, 1].text(0, 170, info if panels is not None else f"failed: {info}", fontsize=7)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _io.atomic_write_bytes(args.out, buf.getvalue())
    print(f"-> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
