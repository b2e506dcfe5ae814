"""Make the identity calibration of the complete head (``monohead.fullhead.IdentityCalibration``).

The fit of :func:`monohead.fullhead.fit_head` to the network's maps reads the head's identity
poorly (README, "A complete head"). This script learns, on **training** samples only (their
``params.json`` stores the true identity, expression and pose), a linear map from what the fit
returns to the true identity, and a factor on the fitted scale.

Two steps:

1. ``collect``: run the network (mirror-averaged, as the evaluation does) and the fit, with the
   calibration off, on samples of the named training sets, orthographically and with each
   sample's ``K``, and store per fit its features (fitted identity, expression, log scale, yaw,
   pitch, roll, depth residual, ...) beside the truth::

       python benchmarks/make_identity_calibration.py collect --data data/v2/s21 \\
           --stride 10 --out calib/s21.npz [--shard i/n] [--model WEIGHTS] [--count N --partial]

   (``--stride 10``: samples 0, 10, 20, ... of the set; ``--shard i/n`` splits them between
   processes, each writing ``OUT`` with ``.i-of-n`` before its suffix; resumable; ``--partial``
   reads a data set whose later shards are not made yet, with ``--count`` within its first
   complete shards.)
2. ``fit``: cross-validate the ridge penalty of each camera mode on the collected samples
   (folds by sample), learn the expression factors (one per blendshape, least squares of the
   true weights on the fitted ones, in [0, 1]) and write the calibration file::

       python benchmarks/make_identity_calibration.py fit calib/*.npz \\
           --out python/monohead/data/identity_calibration.npz

   It refuses features made by other network weights than the shipped ones (``--model`` to
   name others), a data set of the test seed (2,000,000,000) and files whose fits used
   different expression priors; the file records the prior (``fit_head`` applies the
   calibration only to fits of that prior).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

TEST_SEED = 2_000_000_000
MODES = ("orthographic", "perspective")


def _weights_sha(model: Path | None) -> str:
    from monohead.model.weights import WEIGHTS_DIR, WEIGHTS_FILE

    if model is None:
        f = WEIGHTS_DIR / WEIGHTS_FILE
    else:
        f = model / WEIGHTS_FILE if model.is_dir() else model
    return hashlib.sha256(f.read_bytes()).hexdigest()


def collect(args: argparse.Namespace) -> None:
    import torch

    from monohead import fullhead, head_calibration, integrate
    from monohead.model import load_generator, load_pretrained, predict
    from monohead.photo import face_rays, limit_slope
    from monohead.synth.dataset import SyntheticHeads

    torch.set_num_threads(1)
    ds = SyntheticHeads(args.data, partial=args.partial)
    if ds.seed == TEST_SEED:
        sys.exit(f"{args.data} is the test set (seed {TEST_SEED}): never fit a calibration on it")
    i, n = (int(x) for x in args.shard.split("/"))
    ids = list(range(0, len(ds) if args.count is None else min(args.count, len(ds)), args.stride))[i::n]
    out = args.out if n == 1 else args.out.with_suffix(f".{i}-of-{n}{args.out.suffix}")
    sha = _weights_sha(args.model)
    rows: dict[str, list] = {}
    done: set[int] = set()
    if out.exists():
        with np.load(out) as z:
            rows = {k: list(z[k]) for k in z.files if k != "meta"}
            meta_old = json.loads(str(z["meta"]))
        if meta_old["weights_sha256"] != sha:
            sys.exit(f"{out} was made with other weights ({meta_old['weights_sha256'][:12]}); remove it")
        done = {int(x) for x in rows.get("index", [])}
    net = load_generator(args.model) if args.model else load_pretrained()
    canon_net = None
    modes = MODES
    if args.canonical:
        from monohead.model.canonical import load_canonical, predict_canonical

        canon_net = load_canonical()
        modes = MODES + tuple(m + head_calibration.LANDMARKS_SUFFIX for m in MODES)
    settings = fullhead.FitSettings(identity_calibration=False)
    names = list(fullhead._model(None).expression_names)
    todo = [j for j in ids if j not in done and j >= args.first]
    meta = {
        "data": str(args.data),
        "seed": ds.seed,
        "weights_sha256": sha,
        "settings": repr(settings),
        "expression_prior": settings.expression_prior,
        "first": args.first,
        "canonical_sha256": _canonical_sha() if args.canonical else None,
    }
    if out.exists() and meta_old.get("canonical_sha256") != meta["canonical_sha256"]:
        sys.exit(f"{out} was made with another correspondence network (or none); remove it")
    t0 = time.time()
    for s in range(0, len(todo), 16):
        part = todo[s : s + 16]
        items = [ds[j] for j in part]
        imgs = np.stack([it["image"] for it in items])
        N, W, M = predict(net, imgs, flip=True)
        CM = [None] * len(part) if canon_net is None else predict_canonical(canon_net, imgs, N, W, M)
        for j, it, nj, wj, mj, cj in zip(part, items, N, W, M, CM, strict=True):
            p = it["params"]
            cam = p.get("camera") or {}
            K = cam.get("K") if cam.get("projection") == "perspective" else None
            row: dict[str, object] = {
                "index": j,
                "y_true": np.asarray(p["identity"], np.float64),
                "w_true": np.array([p["expression"].get(name, 0.0) for name in names], np.float64),
                "scale_true": float(p["pose"]["scale"]),
                "ypr_true": np.array([p["pose"]["yaw"], p["pose"]["pitch"], p["pose"]["roll"]], np.float64),
            }
            for mode in modes:
                Kf = K if mode.startswith("perspective") else None
                if mode.startswith("perspective") and K is None:
                    sys.exit(f"{args.data} sample {j} has no perspective camera")
                nl = limit_slope(nj, mj) if Kf is None else face_rays(nj, mj, Kf)
                lm = {"canonical": cj} if mode.endswith(head_calibration.LANDMARKS_SUFFIX) else {}
                try:
                    depth = integrate(nl, wj, 0.1, mj, K=Kf)
                    fit = fullhead.fit_head(depth, nl, mj, wj, K=Kf, settings=settings, **lm)
                    feats = head_calibration.features(fit)
                    ok = True
                except ValueError as exc:
                    print(f"{j} {mode}: {exc}", file=sys.stderr)
                    feats, ok = np.full(100 + 53 + len(head_calibration.FEATURE_POSE), np.nan), False
                    fit = None
                row[f"{mode}_features"] = feats
                row[f"{mode}_ok"] = ok and fit is not None and not fit.restarted
                row[f"{mode}_converged"] = bool(fit is not None and fit.converged)
            for k, v in row.items():
                rows.setdefault(k, []).append(v)
        done_n = len(rows["index"])
        rate = (time.time() - t0) / max(s + len(part), 1)
        print(f"{done_n} of {len(ids)} heads, {rate:.2f} s a head", flush=True)
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)), **{k: np.asarray(v) for k, v in rows.items()})
        os.replace(tmp, out)


def _canonical_sha() -> str:
    from monohead.model.canonical import CANONICAL_FILE
    from monohead.model.weights import WEIGHTS_DIR

    return hashlib.sha256((WEIGHTS_DIR / CANONICAL_FILE).read_bytes()).hexdigest()


def identity_metric() -> np.ndarray:
    """``(K, K)`` Gram matrix of the identity basis over the fit's vertices (one per cm of the
    face and head, ``fit_head``'s): ``d^T G d`` is the mean squared vertex error (cm^2) of an
    identity error ``d``."""
    from monohead import fullhead

    prep = fullhead._prepared(fullhead._model(None))
    rows = prep.subset(1.0, 0)
    cols = (3 * rows[:, None] + np.arange(3)).reshape(-1)
    B = prep.B[:, cols].astype(np.float64)
    return B @ B.T / rows.size


def fit(args: argparse.Namespace) -> None:
    from monohead import head_calibration

    sha = _weights_sha(args.model)
    parts = []
    priors = set()
    for f in args.files:
        with np.load(f) as z:
            meta = json.loads(str(z["meta"]))
            if meta["seed"] == TEST_SEED:
                sys.exit(f"{f} comes from the test set")
            if meta["weights_sha256"] != sha:
                sys.exit(f"{f} was made with weights {meta['weights_sha256'][:12]}, not {sha[:12]}")
            # files collected before the field were fitted at the default then
            priors.add(float(meta.get("expression_prior", head_calibration.LEGACY_EXPRESSION_PRIOR)))
            parts.append(({k: z[k] for k in z.files if k != "meta"}, meta))
    if len(priors) != 1:
        sys.exit(f"the files' fits used different expression priors {sorted(priors)}: collect them again with one")
    sources = [{"data": m["data"], "seed": m["seed"], "samples": len(p["index"]), "first": m.get("first", 0),
                "canonical_sha256": m.get("canonical_sha256")} for p, m in parts]  # fmt: skip
    canon = {m.get("canonical_sha256") for _, m in parts} - {None}
    if len(canon) > 1:
        sys.exit("the files' landmark fits used different correspondence networks: collect them again with one")
    if canon and canon != {_canonical_sha()}:
        sys.exit("the files' landmark fits used another correspondence network than the shipped one")
    G = identity_metric()
    modes, reports = {}, {}
    present = sorted({k[: -len("_features")] for p, _ in parts for k in p if k.endswith("_features")})
    for mode in present:
        # each mode from the files that have it (landmark fits are collected only on samples the
        # correspondence network did not train on)
        have = [p for p, _ in parts if f"{mode}_features" in p]
        cat = {k: np.concatenate([p[k] for p in have]) for k in ("y_true", "w_true", "scale_true", f"{mode}_ok",
                                                                  f"{mode}_features")}  # fmt: skip
        ok = cat[f"{mode}_ok"]
        X, Y = cat[f"{mode}_features"][ok], cat["y_true"][ok]
        r = np.log(cat["scale_true"][ok]) - X[:, Y.shape[1] + cat["w_true"].shape[1]]
        modes[mode], reports[mode] = head_calibration.learn_mode(X, Y, r, metric=G, folds=args.folds, seed=0)
        # the expression factors, on the fitted weights (the features after the identity)
        e = cat["w_true"].shape[1]
        Wf = X[:, Y.shape[1] : Y.shape[1] + e]
        a, reports[mode]["expression"] = head_calibration.learn_expression_scale(
            Wf, cat["w_true"][ok], folds=args.folds, seed=0
        )
        modes[mode] = replace(modes[mode], expression_scale=a)
        reports[mode]["samples"] = int(ok.sum())
        print(mode, json.dumps(reports[mode], indent=1))
    meta = {
        "sources": sources,
        "test_seed_excluded": TEST_SEED,
        "cross_validation": reports,
        "command": "python benchmarks/make_identity_calibration.py " + " ".join(sys.argv[1:]),
    }
    head_calibration.IdentityCalibration(modes, sha, meta, expression_prior=priors.pop()).save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--stride", type=int, default=10)
    c.add_argument("--count", type=int)
    c.add_argument("--shard", default="0/1")
    c.add_argument("--model", type=Path)
    c.add_argument(
        "--canonical",
        action="store_true",
        help="also fit with the shipped correspondence network's landmarks (modes '+landmarks')",
    )
    c.add_argument(
        "--first",
        type=int,
        default=0,
        help="only samples from this index on (those the correspondence network did not train on)",
    )
    c.add_argument(
        "--partial", action="store_true", help="a data set still being made: its complete shards only (in order)"
    )
    f = sub.add_parser("fit")
    f.add_argument("files", type=Path, nargs="+")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--folds", type=int, default=5)
    f.add_argument("--model", type=Path)
    args = ap.parse_args()
    {"collect": collect, "fit": fit}[args.cmd](args)


if __name__ == "__main__":
    main()
