"""Complete heads on a synthetic test set: visible and hidden side errors (README table).

Run: ``python benchmarks/eval_full_head.py --data TEST [--predictions pred.npz | --model RUN]
[--shard i/n] [--count N] [--settings JSON] [--true-maps] [--camera] [--out DIR]`` then ``--summarise`` over the
shards' files. On perspective data (generator version 2) the errors are measured in its camera's
world frame; ``--camera`` integrates and fits with each sample's ``K`` (else orthographically). ``TEST``
is a ``monohead synth`` folder (its samples' parameters give the whole true heads); the predictions (``normals``,
``W``, ``mask`` for every sample, the shipped network mirror-averaged, or the network of
``--model``, a run folder or weights for :func:`monohead.model.load_generator`) are computed,
for the evaluated samples only, when not given; ``--save-predictions FILE`` keeps them for
``--predictions``. Per head: :func:`monohead.evaluate.full_head.evaluate_full_head` (the same function as
the ``monohead experiments`` stage), with both mean-head baselines (the fit's pose with ``y = 0``,
and the mean head's own fit, :func:`monohead.evaluate.full_head.mean_head_fit`), under both
alignment protocols (``by_mesh25d``: every reconstruction moved by the 2.5D mesh's ICP;
``own``: each closed reconstruction aligned to the whole true head on its own, which uses the
true hidden surface and so measures shape, not placement); the per-point errors of all heads
are pooled. With the shipped network's maps the fits (and the mean head's own fit) get the
shipped correspondence network's landmarks, as the photo pipeline's do (``--no-landmarks``: without
them, the default before the fourteenth session). With the identity calibration on
(``FitSettings.identity_calibration``, the default
for the shipped network's maps; off for ``--true-maps`` and ``--model`` unless ``--settings``
names it), each head is also evaluated with the same fit's calibration (identity, scale and,
with a file that has them, the expression factors) undone (rows
``full_uncalibrated``, ``mean_uncalibrated``: the default before it, on the same maps and fits).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> None:
    from monohead import fullhead, integrate
    from monohead.evaluate import full_head as fh
    from monohead.photo import face_rays, limit_slope
    from monohead.synth.dataset import SyntheticHeads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--predictions", type=Path, help="an .npz of normals, W and mask for every sample")
    ap.add_argument("--model", type=Path, help="a run folder or weights file (default: the shipped network)")
    ap.add_argument("--save-predictions", type=Path, help="write the computed predictions (.npz) and stop")
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--out", type=Path, default=Path("full_head_eval"))
    ap.add_argument("--summarise", action="store_true")
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--count", type=int, help="only the first COUNT samples (default all)")
    ap.add_argument("--settings", default="{}", help="FitSettings overrides as JSON, e.g. '{\"prior\": 8}'")
    ap.add_argument("--true-maps", action="store_true", help="the rendered normals, W and mask instead of predictions")
    ap.add_argument(
        "--no-landmarks",
        action="store_true",
        help="fit without the shipped correspondence network's landmarks (on by default for the shipped network's "
        "maps, as the photo pipeline fits; off for --true-maps and --model)",
    )
    ap.add_argument(
        "--camera",
        action="store_true",
        help="perspective samples (version 2): integrate and fit with their K (default: orthographically, as the "
        "photo pipeline does)",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        per, times, conv, failed, restarted, steps, rejected, maps = [], [], 0, [], [], 0, 0, set()
        calibrated = 0
        for f in sorted(args.out.glob("shard-*.npz")):
            with np.load(f, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                for k in range(meta["heads"]):
                    head = {
                        side: {m: z[f"{side}_{m}_{k}"] for m in fh.METHODS if f"{side}_{m}_{k}" in z.files}
                        for side in fh.SIDES
                    }
                    if f"own_visible_full_{k}" in z.files:
                        head["own"] = {
                            side: {m: z[f"own_{side}_{m}_{k}"] for m in fh.METHODS if f"own_{side}_{m}_{k}" in z.files}
                            for side in fh.SIDES
                        }
                    per.append(head)
                times += meta["times"]
                conv += meta["converged"]
                calibrated += meta.get("calibrated", 0)
                failed += meta["failed"]
                restarted += meta.get("restarted", [])
                steps += meta.get("steps", 0)
                rejected += meta.get("rejected_steps", 0)
                maps.add(meta.get("maps", "?"))
        s = fh.summarise(per)
        s_own = fh.summarise(per, "own")
        t = np.array(times)
        ratios = fh.hidden_ratios(s)
        out = {
            "maps": sorted({m for m in maps}),
            "summary": s,
            "hidden_ratio_to_mean_head": ratios,
            "own": {
                "heads": sum(1 for p in per if "own" in p),
                "summary": s_own,
                "hidden_ratio_to_mean_head": fh.hidden_ratios(s_own),
            },
            "heads": len(per),
            "converged": conv,
            "calibrated": calibrated,
            "failed": failed,
            "restarted": restarted,
            "steps_tried": steps,
            "steps_rejected": rejected,
            "fit_ms": {"mean": float(t[:, 0].mean() * 1e3), "median": float(np.median(t[:, 0]) * 1e3)},
            "merge_ms": {"mean": float(t[:, 1].mean() * 1e3), "median": float(np.median(t[:, 1]) * 1e3)},
        }
        print(json.dumps(out, indent=1))
        for name, summ in (("by_mesh25d", s), ("own", s_own)):
            print(f"\nProtocol {name}: {fh.PROTOCOL_LABELS[name]}")
            print(fh.markdown({"summary": summ}))
        return
    if args.predictions and args.model:
        ap.error("--predictions and --model exclude each other: predictions were made by some network already")
    if args.true_maps and (args.predictions or args.model or args.save_predictions):
        ap.error("--true-maps uses the rendered maps: no --predictions, --model or --save-predictions")
    overrides = json.loads(args.settings)
    if (args.true_maps or args.model) and "identity_calibration" not in overrides:
        # the shipped calibration is learned for the shipped network's maps
        overrides["identity_calibration"] = False
    settings = fullhead.FitSettings(**overrides)
    ds = SyntheticHeads(args.data)
    version = int((ds.manifest.get("settings") or {}).get("generator_version", 1))
    i, n = (int(x) for x in args.shard.split("/"))
    ids = list(range(i, len(ds) if args.count is None else min(args.count, len(ds)), n))
    if args.true_maps:
        N = W = M = None
    elif args.predictions:
        pr = np.load(args.predictions)
        N, W, M = pr["normals"], pr["W"], pr["mask"]
        if len(M) != len(ds):
            sys.exit(f"{args.predictions} holds {len(M)} samples, {args.data} {len(ds)}: not its predictions")
    else:
        from monohead.model import load_generator, load_pretrained, predict

        net = load_generator(args.model) if args.model else load_pretrained()
        todo = list(range(len(ds))) if args.save_predictions else ids
        N = np.zeros((len(ds), *ds[0]["image"].shape[:2], 3), np.float32)
        W = np.zeros(N.shape[:3], np.float32)
        M = np.zeros(N.shape[:3], bool)
        for s in range(0, len(todo), 32):
            part = todo[s : s + 32]
            n_, w_, m_ = predict(net, np.stack([ds[j]["image"] for j in part]), flip=True)
            N[part], W[part], M[part] = n_, w_, m_
        if args.save_predictions:
            np.savez(args.save_predictions, normals=N, W=W, mask=M)
            return
    canon_net = None
    if not (args.no_landmarks or args.true_maps or args.model):
        from monohead.model.canonical import load_canonical, predict_canonical

        canon_net = load_canonical()
    arrays: dict[str, np.ndarray] = {}
    meta = {"ids": [], "times": [], "converged": 0, "failed": [], "heads": 0, "generator_version": version,
            "restarted": [], "rejected_steps": 0, "steps": 0, "landmarks": canon_net is not None}  # fmt: skip
    meta["maps"] = "rendered" if args.true_maps else str(args.predictions or args.model or "shipped network")
    for j in ids:
        item = ds[j]
        cam = item["params"].get("camera") or {}
        K_true = cam.get("K") if cam.get("projection") == "perspective" else None
        K_fit = K_true if args.camera else None
        if args.true_maps:
            m = np.asarray(item["mask"], bool)
            nl, wj = np.asarray(item["normals"], np.float64), np.asarray(item["W"], np.float64)
        else:
            m = np.asarray(M[j], bool)
            # as the photo pipeline does: slopes limited (perspective: toward each pixel's ray)
            nl = limit_slope(N[j], m) if K_fit is None else face_rays(N[j], m, K_fit)
            wj = W[j]
        try:
            depth = integrate(nl, wj, args.lam, m, K=K_fit)
            lm = {}
            if canon_net is not None:  # the landmarks of the fit and of the mean head's own fit
                lm["canonical"] = predict_canonical(canon_net, item["image"], N[j], W[j], M[j])
            t0 = time.perf_counter()
            fit = fullhead.fit_head(depth, nl, m, wj, K=K_fit, settings=settings, **lm)
            t1 = time.perf_counter()
            full = fullhead.merge_head(fit, depth, m, nl)
            t2 = time.perf_counter()
            fit0 = fh.mean_head_fit(depth, nl, m, wj, K=K_fit, settings=settings, **lm)
            truth = fh.true_head_mesh(item["params"], m.shape, fit.model, version)
            unc = None
            if fit.calibrated:  # the same fit without its identity calibration: the default before it
                w_u = fit.expression if fit.fitted_expression is None else fit.fitted_expression
                fit_u = replace(
                    fit, identity=fit.fitted_identity, scale=fit.fitted_scale, expression=w_u, calibrated=False,
                    fitted_identity=None, fitted_scale=None, fitted_expression=None,
                )  # fmt: skip
                unc = (fit_u, fullhead.merge_head(fit_u, depth, m, nl))
            e = fh.evaluate_full_head(
                truth, item["depth"], item["mask"], depth, m, full, fit, seed=j, K=K_true, mean_fit=fit0,
                uncalibrated=unc,
            )  # fmt: skip
        except ValueError as exc:
            meta["failed"].append([j, str(exc)])
            print(f"{j}: {exc}", file=sys.stderr)
            continue
        k = meta["heads"]
        for side in fh.SIDES:
            for name, err in e[side].items():
                arrays[f"{side}_{name}_{k}"] = err.astype(np.float32)
            for name, err in e["own"][side].items():
                arrays[f"own_{side}_{name}_{k}"] = err.astype(np.float32)
        meta["heads"] += 1
        meta["ids"].append(j)
        meta["times"].append([t1 - t0, t2 - t1])
        meta["converged"] += int(fit.converged)
        meta["calibrated"] = meta.get("calibrated", 0) + int(fit.calibrated)
        meta["restarted"] += [j] if fit.restarted else []
        meta["steps"] += len(fit.steps)
        meta["rejected_steps"] += sum(1 for step in fit.steps if not step[2])
        print(
            j,
            f"fit {1e3 * (t1 - t0):.0f} ms",
            " ".join(f"{s[0]}:{k2}={v.mean():.2f}" for s in ("visible", "hidden") for k2, v in e[s].items()),
            "| own:",
            " ".join(f"{s[0]}:{k2}={v.mean():.2f}" for s in ("visible", "hidden") for k2, v in e["own"][s].items()),
            flush=True,
        )
        # after every head, so that a stopped run keeps what it did
        np.savez(args.out / f"shard-{i:03d}-of-{n:03d}.npz", meta=np.array(json.dumps(meta)), **arrays)


if __name__ == "__main__":
    main()
