"""The ceiling of issue 17's hidden-side target: what a network's surface allows at best.

Run: ``python benchmarks/full_head_ceiling.py --data TEST --predictions PRED [--camera]
[--count 180] [--stride 3] [--sigma 8] [--out ceiling.json]``. ``TEST`` is a ``monohead synth``
folder (generator version 2), ``PRED`` the network's maps of every sample
(``benchmarks/eval_full_head.py --save-predictions``).

Per head: the network's maps are integrated (and fitted, for the perspective depth's scale) as
``eval_full_head.py`` does; the 2.5D mesh is aligned to the true visible surface by the same
point-to-plane ICP (the ``by_mesh25d`` transform); then
:func:`monohead.evaluate.full_head.identity_ceiling` reads the identity from that aligned
surface with the true pose, expression and gaze given (matching as a fit would, point to
plane from the mean head, with the true translation and with the translation solved with the
identity; and, as an upper bound only, with each vertex matched to the surface point nearest
its true position). The hidden side's mean error of that head and of the mean head in the
same pose is pooled over all heads' points (as ``eval_full_head.py --summarise`` pools), as
placed and after each head's rigid fit to the true vertices (shape only), and their ratio is
the issue's figure of merit for a fit that knew everything but the identity.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def aligned_surface(item: dict, normals: np.ndarray, W: np.ndarray, mask: np.ndarray, K_fit, lam: float):
    """The network's 2.5D mesh in the true camera frame, moved by its ICP onto the true
    visible surface (the evaluation's ``by_mesh25d`` transform), and that ICP's RMS."""
    from monohead import fullhead, integrate
    from monohead.evaluate.full_head import fit_heights, heights_mesh
    from monohead.evaluate.mesh_error import apply_transform, icp
    from monohead.geometry import MeshSurface
    from monohead.photo import face_rays, limit_slope

    cam = item["params"].get("camera") or {}
    K_true = cam.get("K") if cam.get("projection") == "perspective" else None
    m = np.asarray(mask, bool)
    nl = limit_slope(normals, m) if K_fit is None else face_rays(normals, m, K_fit)
    d = integrate(nl, W, lam, m, K=K_fit)
    fit = fullhead.fit_head(d, nl, m, W, K=K_fit)  # its depth scale (perspective)
    mesh = heights_mesh(fit_heights(d, fit), m & np.isfinite(d), fit.camera)
    tm = np.asarray(item["mask"], bool)
    tv = heights_mesh(item["depth"], tm, K_true)
    P = np.asarray(mesh.vertices)
    res = icp(P[:: max(1, min(4, len(P) // 64))], MeshSurface(tv, "true visible surface"))
    mesh.vertices = apply_transform(res.transform, P)
    return mesh, float(res.rms)


#: (match, translation) of :func:`monohead.evaluate.full_head.identity_ceiling` evaluated: a
#: fit's matching with the true and the solved translation, and the leaked correspondence.
COMBOS = (("model", "true"), ("model", "joint"), ("truth", "true"))


def main() -> None:
    from monohead.evaluate import full_head as fh
    from monohead.synth.dataset import SyntheticHeads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--predictions", type=Path, required=True)
    ap.add_argument("--camera", action="store_true", help="integrate and fit with each sample's K")
    ap.add_argument("--count", type=int, default=180)
    ap.add_argument("--stride", type=int, default=6)
    ap.add_argument("--sigma", type=float, default=8.0)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.count < 1 or args.stride < 1:
        ap.error(f"--count and --stride must be >= 1; got {args.count} and {args.stride}")
    ds = SyntheticHeads(args.data)
    version = int((ds.manifest.get("settings") or {}).get("generator_version", 1))
    with np.load(args.predictions) as z:
        N, W, M = z["normals"], z["W"], z["mask"]
    if len(M) != len(ds):
        sys.exit(f"{args.predictions} holds {len(M)} samples, {args.data} {len(ds)}: not its predictions")
    ids = list(range(0, min(args.count, len(ds)), args.stride))
    pooled: dict[str, list[np.ndarray]] = {}
    per_head = []
    t0 = time.perf_counter()
    for n, j in enumerate(ids):
        item = ds[j]
        cam = item["params"].get("camera") or {}
        K_true = cam.get("K") if cam.get("projection") == "perspective" else None
        try:
            surface, rms = aligned_surface(item, N[j], W[j], M[j], K_true if args.camera else None, args.lam)
            row = {"sample": j, "icp_rms": rms}
            for match, tr in COMBOS:
                r = fh.identity_ceiling(
                    item["params"], item["depth"], item["mask"], surface, K=K_true, version=version,
                    sigma=args.sigma, translation=tr, match=match, seed=j,
                )  # fmt: skip
                for kind in ("placed", "shape"):
                    for name, e in r[kind].items():
                        pooled.setdefault(f"{match}-{tr}/{kind}/{name}", []).append(e)
                        row[f"{match}-{tr}/{kind}/{name}"] = float(e.mean())
        except ValueError as exc:
            print(f"{j}: {exc}", file=sys.stderr)
            continue
        per_head.append(row)
        print(f"[{n + 1}/{len(ids)}] {j}: " + " ".join(f"{k}={v:.2f}" for k, v in row.items() if "/" in k),
              file=sys.stderr, flush=True)  # fmt: skip
    means = {k: float(np.concatenate(v).mean()) for k, v in pooled.items()}
    ratios = {
        f"{match}-{tr}/{kind}": means[f"{match}-{tr}/{kind}/identity"] / means[f"{match}-{tr}/{kind}/mean"]
        for match, tr in COMBOS
        for kind in ("placed", "shape")
        if f"{match}-{tr}/{kind}/mean" in means
    }
    out = {
        "data": str(args.data), "camera": bool(args.camera), "sigma": args.sigma, "heads": len(per_head),
        "seconds": time.perf_counter() - t0, "mean_hidden_px": means, "ratio": ratios, "per_head": per_head,
    }  # fmt: skip
    print("| matches | translation | errors measured | identity read (px) | mean head (px) | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for match, tr in COMBOS:
        for kind in ("placed", "shape"):
            k = f"{match}-{tr}/{kind}"
            if k in ratios:
                print(f"| {match} | {tr} | {kind} | {means[k + '/identity']:.3f} | {means[k + '/mean']:.3f} | "
                      f"{ratios[k]:.3f} |")  # fmt: skip
    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
