"""Photo -> mesh at 128², split into detection, network, integration and meshing.

Run: ``python -m pytest benchmarks/bench_reconstruct.py --benchmark-enable -p no:cacheprovider``
(pytest-benchmark, whole pipeline), or ``python benchmarks/bench_reconstruct.py [--runs 20]``
for the table of the split (mean and best over the runs, after warm-up), with the default mirror
averaging (two network passes) and with ``--no-flip`` (one pass). Photo: the astronaut bundled
with scikit-image (512 x 512). Needs the shipped weights.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pytest

STAGES = ("detection", "network", "integration", "meshing")


def _setup():
    from skimage import data

    from monohead import photo as reconstruct
    from monohead.model import load_pretrained

    try:
        model = load_pretrained()
    except FileNotFoundError as exc:  # a checkout without weights
        pytest.skip(str(exc))
    photo = data.astronaut()
    for _ in range(3):  # warm-up: cascade load, torch kernels, allocations
        reconstruct.reconstruct(photo, model=model)
    return reconstruct, model, photo


@pytest.mark.parametrize("flip", [True, False], ids=["flip", "no_flip"])
def test_photo_to_mesh(benchmark, flip):
    reconstruct, model, photo = _setup()
    rec = benchmark(reconstruct.reconstruct, photo, model=model, flip=flip)
    benchmark.extra_info.update({k: rec.seconds[k] for k in STAGES})
    assert len(rec.mesh.faces) > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    reconstruct, model, photo = _setup()
    split: dict[bool, list[list[float]]] = {True: [], False: []}
    total: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.runs):  # interleaved, so that both see the same machine load
        for flip in (True, False):
            t0 = time.perf_counter()
            rec = reconstruct.reconstruct(photo, model=model, flip=flip)
            total[flip].append(time.perf_counter() - t0)
            split[flip].append([rec.seconds[k] for k in STAGES])
    print(f"photo -> mesh, astronaut 512x512 -> 128² crop, {args.runs} runs each after warm-up (ms)")
    print("| stage | mean (flip, default) | best (flip) | mean (--no-flip) | best (--no-flip) |\n|---|---|---|---|---|")
    s = {f: np.array(split[f]) * 1e3 for f in (True, False)}
    for k, name in enumerate(STAGES):
        print(f"| {name} | {s[True][:, k].mean():.1f} | {s[True][:, k].min():.1f} | {s[False][:, k].mean():.1f} | {s[False][:, k].min():.1f} |")
    t = {f: np.array(total[f]) * 1e3 for f in (True, False)}
    print(f"| **total (wall, incl. loading and cropping)** | **{t[True].mean():.1f}** | **{t[True].min():.1f}** | "
          f"**{t[False].mean():.1f}** | **{t[False].min():.1f}** |")


if __name__ == "__main__":
    main()
