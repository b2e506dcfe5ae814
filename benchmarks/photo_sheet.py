"""The network on the real photos: ``docs/real_photos_sheet.png`` and a per-photo table.

Run: ``python benchmarks/photo_sheet.py [--photos DIR] [--model PATH] [--out docs/real_photos_sheet.png]
[--overlay /tmp/overlay.png] [--json]``.

The photos are read at run time from ``$MONOHEAD_SHARED/data/real-photos`` (else
``<repo>/../shared``; :func:`monohead._env.shared_data`); they are third-party and not part of the
project, so the committed sheet shows **no pixel of them**. Each row is one photo through
``monohead.reconstruct``'s defaults (combined detector, mirror-averaged network, clean-up, WLS
λ = 0.1):

1. the network's raw mask in the 128² crop, by piece: the piece kept (grey), pieces the clean-up
   drops (red), holes it fills (yellow);
2. the predicted normals in the kept mask (RGB = (n + 1) / 2, camera frame x right, y up, z to
   the viewer);
3. the 2.5D mesh from the front and 4. from the side (grey shading).

Per photo the table gives the raw mask's pieces, the pixels dropped and filled, and the face box's
coverage (``Reconstruction.cleanup``). ``--overlay PATH`` writes a second sheet with each crop and
its mask outline, for looking at whether the mask stays off clothes, hands and background; it
contains the photos, so keep it out of the repository (the script refuses a path inside it).
``--detector`` picks the face detector, ``--no-reframe`` keeps the first crop of turned heads,
``--model`` compares other weights (a run folder, checkpoint or weights folder;
:func:`monohead.model.load_generator`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _pieces_image(raw: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) float: kept piece grey, dropped pieces red, filled holes yellow, background dark."""
    img = np.full(raw.shape + (3,), 0.08)
    img[raw & mask] = (0.75, 0.75, 0.75)
    img[raw & ~mask] = (0.9, 0.15, 0.1)
    img[mask & ~raw] = (0.95, 0.85, 0.1)
    return img


def _normals_image(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    img = np.clip((np.asarray(normals, dtype=np.float64) + 1.0) / 2.0, 0.0, 1.0)
    img[~mask] = 1.0
    return img


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def measure(files: list[Path], model, detector: str = "combined", reframe: bool = True) -> list[dict]:
    """Reconstruct each photo; return one row per photo (panels and statistics)."""
    from scipy import ndimage

    from monohead import photo

    rows = []
    for p in files:
        try:
            rec = photo.reconstruct(p, model=model, detector=detector, reframe=reframe)
        except ValueError as exc:  # no face found, or a photo the pipeline refuses
            rows.append({"photo": p.name, "error": str(exc)})
            print(f"{p.name}: {exc}", file=sys.stderr)
            continue
        raw = np.asarray(rec.raw_mask, dtype=bool)
        mask = np.asarray(rec.mask, dtype=bool)
        _, pieces = ndimage.label(raw, structure=ndimage.generate_binary_structure(2, 1))
        v, n = photo.surface_points(rec.mesh)
        c = rec.cleanup
        row = {
            "photo": p.name,
            "raw_pieces": int(pieces),
            "dropped_pixels": int(c.get("dropped_pixels", 0)),
            "filled_pixels": int(c.get("filled_pixels", 0)),
            "face_coverage": float(c.get("face_coverage", 0.0)),
            "mask_pixels": int(mask.sum()),
            "yaw_estimate": None if rec.yaw_estimate is None else round(float(rec.yaw_estimate), 1),
            "reframed": rec.first_box is not None,
            "panels": [
                _pieces_image(raw, mask),
                _normals_image(rec.normals, mask),
                photo.shaded_view(v, n, "front"),
                photo.shaded_view(v, n, "side"),
            ],
            "crop": np.asarray(rec.crop),
            "mask": mask,
        }
        rows.append(row)
        print(
            f"{p.name}: {pieces} raw piece(s), dropped {row['dropped_pixels']} px, filled {row['filled_pixels']} px, "
            f"face coverage {row['face_coverage']:.2f}; estimated yaw {row['yaw_estimate']}"
            f"{', re-framed' if row['reframed'] else ''}",
            file=sys.stderr,
        )
    return rows


def sheet(rows: list[dict], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.05 * len(rows) + 0.4), dpi=80)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(len(rows), 4)).reshape(len(rows), 4)
    titles = ["raw mask: kept / dropped / filled", "normals (kept mask)", "2.5D mesh, front", "side"]
    for r, row in enumerate(rows):
        for c in range(4):
            ax = axes[r, c]
            ax.set_axis_off()
            if "panels" in row:
                ax.imshow(row["panels"][c], cmap="gray", vmin=0, vmax=1)
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        if "panels" in row:
            info = (
                f"{row['raw_pieces']} piece(s), dropped {row['dropped_pixels']}, filled {row['filled_pixels']}, "
                f"face {100 * row['face_coverage']:.0f} %{', re-framed' if row['reframed'] else ''}"
            )
        else:
            info = f"failed: {row['error']}"
        axes[r, 0].text(0, -4, row["photo"][:44], fontsize=6.5)
        axes[r, 1].text(0, 140, info, fontsize=6.5)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    return _png(fig)


def overlay_sheet(rows: list[dict]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy import ndimage

    ok = [r for r in rows if "panels" in r]
    cols = 4
    nr = max(1, -(-len(ok) // cols))
    fig = Figure(figsize=(2.2 * cols, 2.3 * nr), dpi=80)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(nr, cols)).reshape(nr, cols)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, row in zip(axes.ravel()[: len(ok)], ok, strict=True):
        img = np.asarray(row["crop"], dtype=np.float64)
        img = img / 255.0 if img.max() > 1.5 else img
        edge = row["mask"] & ~ndimage.binary_erosion(row["mask"])
        img = img.copy()
        img[edge] = (0.1, 1.0, 0.2)
        ax.imshow(img)
        ax.set_title(row["photo"][:28], fontsize=6.5)
    fig.tight_layout()
    return _png(fig)


def main(argv: list[str] | None = None) -> int:
    from monohead import _io
    from monohead._env import shared_data
    from monohead.model import load_generator, load_pretrained

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=None, help="folder of photos (default: the shared real-photos)")
    ap.add_argument("--model", default=None, help="weights to use instead of the shipped ones")
    ap.add_argument("--detector", default="combined", help="face detector (monohead.photo.DETECTORS)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "real_photos_sheet.png")
    ap.add_argument("--overlay", type=Path, default=None, help="also write crops with mask outlines (never commit)")
    ap.add_argument("--json", action="store_true", help="print the per-photo table as JSON on stdout")
    ap.add_argument("--no-reframe", action="store_true", help="reconstruct(reframe=False): keep the first crop")
    args = ap.parse_args(argv)
    folder = args.photos or shared_data("real-photos")
    if folder is None or not Path(folder).is_dir():
        print("photo_sheet: no real-photos folder (set MONOHEAD_SHARED or --photos); nothing to do", file=sys.stderr)
        return 0
    if args.overlay is not None and REPO in args.overlay.resolve().parents:
        print(
            f"photo_sheet: --overlay must be outside the repository (it shows the photos); got {args.overlay}",
            file=sys.stderr,
        )
        return 2
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    model = load_generator(args.model) if args.model else load_pretrained()
    card = getattr(model, "card", None) or {}
    rows = measure(files, model, args.detector, reframe=not args.no_reframe)
    training = card.get("training", {})
    title = f"monohead.reconstruct on {len(files)} real photos; weights sha256 {str(card.get('sha256', '?'))[:12]}"
    if training.get("members"):  # weights averaged over checkpoints (monohead train --checkpoint A B ...)
        title += f" (average of {len(training['members'])} checkpoints)"
    elif training.get("step") is not None:
        title += f" (step {training['step']})"
    _io.atomic_write_bytes(args.out, sheet(rows, title))
    print(f"-> {args.out}", file=sys.stderr)
    if args.overlay is not None:
        _io.atomic_write_bytes(args.overlay, overlay_sheet(rows))
        print(f"-> {args.overlay} (shows the photos: do not commit)", file=sys.stderr)
    table = [{k: v for k, v in r.items() if k not in ("panels", "crop", "mask")} for r in rows]
    if args.json:
        print(json.dumps(table, indent=1))
    ok = [r for r in table if "error" not in r]
    print(
        f"{len(ok)}/{len(table)} reconstructed; one raw piece: {sum(r['raw_pieces'] == 1 for r in ok)}; "
        f"dropped pixels {sum(r['dropped_pixels'] for r in ok)}; filled pixels {sum(r['filled_pixels'] for r in ok)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
