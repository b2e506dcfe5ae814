"""The cost of a complete head (``reconstruct(..., full_head=True)``) on top of photo -> mesh.

Run: ``python benchmarks/bench_full_head.py [--runs 10]``. Photo: the astronaut bundled with
scikit-image. Each run reconstructs it without and with ``full_head`` (interleaved, so that
both see the same machine load) and reports the photo -> mesh total, the ``full_head`` stage
(correspondence network + fit + merge) and its split. Needs the shipped weights. OpenBLAS is
kept to one thread (``OPENBLAS_NUM_THREADS=1``, set before NumPy loads): the fit's small dense
products lose badly to thread contention on a shared 2-vCPU machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time

import numpy as np


def main() -> None:
    from skimage import data

    from monohead import fullhead, photo
    from monohead.model.canonical import load_canonical, predict_canonical

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    # No model= : the shipped network, loaded once by monohead.photo, with the complete head's
    # identity calibration (which a network passed in does not get): what the CLI runs.
    img = data.astronaut()
    for _ in range(2):  # warm-up: cascade, torch kernels, the head model's caches
        photo.reconstruct(img, full_head=True)
    canon_net = load_canonical()
    base, with_full, stage, canon_t, fit_t, merge_t = [], [], [], [], [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        photo.reconstruct(img)
        base.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rec = photo.reconstruct(img, full_head=True)
        with_full.append(time.perf_counter() - t0)
        stage.append(rec.seconds["full_head"])
        # the split, on the same maps
        n = photo.limit_slope(rec.normals, rec.mask)
        t0 = time.perf_counter()
        canonical = predict_canonical(canon_net, rec.crop, rec.normals, rec.W, rec.mask)
        canon_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fit = fullhead.fit_head(rec.depth, n, rec.mask, rec.W, canonical=canonical)
        t1 = time.perf_counter()
        fullhead.merge_head(fit, rec.depth, rec.mask, n, rec.crop)
        fit_t.append(t1 - t0)
        merge_t.append(time.perf_counter() - t1)

    def ms(a):
        return float(np.mean(a)) * 1e3, float(np.median(a)) * 1e3, float(np.min(a)) * 1e3

    print(f"astronaut 512x512, {args.runs} runs each after warm-up (ms): mean / median / best")
    for name, a in (
        ("photo -> mesh", base),
        ("photo -> mesh + complete head", with_full),
        ("complete head stage (landmarks + fit + merge)", stage),
        ("  correspondence network (mirror-averaged)", canon_t),
        ("  fit_head (with landmarks)", fit_t),
        ("  merge_head", merge_t),
    ):
        print(f"| {name} | {ms(a)[0]:.1f} | {ms(a)[1]:.1f} | {ms(a)[2]:.1f} |")
    print(f"fit: {fit.iterations} iterations, converged {fit.converged}, {fit.landmarks} landmarks")


if __name__ == "__main__":
    main()
