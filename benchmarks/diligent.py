"""DiLiGenT (perspective, real normals) and the speed ratios of the perspective and discontinuity-
preserving solves. Prints Markdown tables (the README's); ``--json PATH`` keeps the figures.

    python benchmarks/diligent.py [--objects bear harvest] [--size 1024] [--repeats 3] [--json out.json]

Part 1, DiLiGenT: the objects found in the shared data folder (``$MONOHEAD_SHARED/data``, else
``<repo>/../shared/data``: ``normal-maps/diligent_<name>.npz``, never
part of the repository; objects that are absent are skipped with a message). Each is integrated
with its K (perspective) by the smooth solve (``sharpness=None``) and by ``sharpness=2``; MADE as
BiNI computes it (``scale = median(depth_gt / depth)``, ``MADE = mean |scale depth - depth_gt|``,
mm; :func:`monohead.integration.perspective.made`) and wall time (best of ``--repeats``,
validation and setup included).

Part 2, speed at ``--size`` on the ``head+neck`` problem of benchmarks/problems.py: the
orthographic solve, the same normals with a pinhole K (fx = fy = 4 size, centred), and
``sharpness=2``, interleaved and best of ``--repeats`` each, so that the ratios come from one run.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monohead
from monohead.integration.perspective import made
from problems import LAM, make


def shared_data() -> Path | None:
    from monohead._env import shared_data as find

    return find("normal-maps")


def best_of(repeats: int, fn):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def diligent(objects: list[str], repeats: int) -> list[dict]:
    folder = shared_data()
    rows: list[dict] = []
    if folder is None:
        print("DiLiGenT: shared data folder not found (set MONOHEAD_SHARED); part 1 skipped", file=sys.stderr)
        return rows
    for name in objects:
        path = folder / f"diligent_{name}.npz"
        if not path.is_file():
            print(f"DiLiGenT: {path} absent; {name} skipped", file=sys.stderr)
            continue
        with np.load(path) as z:
            mask, K, gt = z["mask"], z["K"], z["depth_gt"].astype(np.float64)
            normals = np.where(mask[..., None], z["normal"].astype(np.float64), 0.0)
        for sharpness in (None, 2.0):
            t, (depth, info) = best_of(
                repeats,
                functools.partial(monohead.integrate, normals, mask=mask, K=K, sharpness=sharpness, return_info=True),
            )
            rows.append(
                {
                    "object": name,
                    "pixels": int(mask.sum()),
                    "sharpness": sharpness,
                    "made_mm": made(depth, gt),
                    "seconds": t,
                    "cg_iterations": info.iterations,
                    "reweightings": info.reweightings,
                }
            )
            print(f"  {name} sharpness={sharpness}: MADE {rows[-1]['made_mm']:.3f} mm, {t:.3f} s", file=sys.stderr)
    return rows


def speed(size: int, repeats: int) -> dict:
    normals, W, mask, _ = make("head+neck", size)
    K = np.array([[4.0 * size, 0.0, size / 2], [0.0, 4.0 * size, size / 2], [0.0, 0.0, 1.0]])
    cases = {
        "orthographic": dict(),
        "perspective (K)": dict(K=K),
        "sharpness=2": dict(sharpness=2.0),
        "sharpness=2, K": dict(sharpness=2.0, K=K),
    }
    times = {k: float("inf") for k in cases}
    infos = {}
    for _ in range(repeats):  # interleaved: load changes hit every case alike
        for name, kw in cases.items():
            t0 = time.perf_counter()
            _, infos[name] = monohead.integrate(normals, W, LAM, mask, return_info=True, **kw)
            times[name] = min(times[name], time.perf_counter() - t0)
    base = times["orthographic"]
    return {
        "size": size,
        "unknowns": int(mask.sum()),
        "threads": monohead.integration.default_threads() if hasattr(monohead.integration, "default_threads") else 1,
        "rows": [
            {
                "case": name,
                "seconds": times[name],
                "ratio": times[name] / base,
                "cg_iterations": infos[name].iterations,
                "reweightings": infos[name].reweightings,
            }
            for name in cases
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--objects", nargs="+", default=["bear", "buddha", "cat", "cow", "goblet", "harvest", "pot1", "pot2", "reading"]
    )
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args()

    rows = diligent(args.objects, args.repeats)
    if rows:
        print("| object | pixels | solve | MADE mm | time s | CG iterations | reweightings |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            solve = "smooth" if r["sharpness"] is None else f"sharpness={r['sharpness']:g}"
            print(
                f"| {r['object']} | {r['pixels']} | {solve} | {r['made_mm']:.3f} | {r['seconds']:.3f} | "
                f"{r['cg_iterations']} | {r['reweightings']} |"
            )
        for s in (None, 2.0):
            sel = [r for r in rows if r["sharpness"] == s]
            print(
                f"| **average ({len(sel)} objects)** | | {'smooth' if s is None else 'sharpness=2'} | "
                f"**{np.mean([r['made_mm'] for r in sel]):.3f}** | {sum(r['seconds'] for r in sel):.3f} (sum) | | |"
            )
        print()
    sp = speed(args.size, args.repeats)
    print(
        f"| head+neck {sp['size']}² ({sp['unknowns']} unknowns) "
        "| time s | × orthographic | CG iterations | reweightings |"
    )
    print("|---|---|---|---|---|")
    for r in sp["rows"]:
        print(f"| {r['case']} | {r['seconds']:.3f} | {r['ratio']:.2f} | {r['cg_iterations']} | {r['reweightings']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"diligent": rows, "speed": sp}, indent=1))


if __name__ == "__main__":
    main()
