"""Photo -> mesh at 128², split into detection, network, integration and meshing.

Run: ``python -m pytest benchmarks/bench_reconstruct.py --benchmark-enable -p no:cacheprovider``
(pytest-benchmark, whole pipeline), or ``python benchmarks/bench_reconstruct.py [--runs 20]``
for the table of the split (mean and best over the runs, after warm-up). Photo: the astronaut
bundled with scikit-image (512 x 512). Needs the shipped weights.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pytest

STAGES = ("detection", "network", "integration", "meshing")


def _setup():
    from skimage import data

    from monohead import reconstruct
    from monohead.model import load_pretrained

    try:
        model = load_pretrained()
    except FileNotFoundError as exc:  # a checkout without weights
        pytest.skip(str(exc))
    photo = data.astronaut()
    for _ in range(3):  # warm-up: cascade load, torch kernels, allocations
        reconstruct.reconstruct(photo, model=model)
    return reconstruct, model, photo


def test_photo_to_mesh(benchmark):
    reconstruct, model, photo = _setup()
    rec = benchmark(reconstruct.reconstruct, photo, model=model)
    benchmark.extra_info.update({k: rec.seconds[k] for k in STAGES})
    assert len(rec.mesh.faces) > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    reconstruct, model, photo = _setup()
    split, total = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        rec = reconstruct.reconstruct(photo, model=model)
        total.append(time.perf_counter() - t0)
        split.append([rec.seconds[k] for k in STAGES])
    s = np.array(split) * 1e3
    print(f"photo -> mesh, astronaut 512x512 -> 128² crop, {args.runs} runs after warm-up (ms)")
    print("| stage | mean | best |\n|---|---|---|")
    for k, name in enumerate(STAGES):
        print(f"| {name} | {s[:, k].mean():.1f} | {s[:, k].min():.1f} |")
    t = np.array(total) * 1e3
    print(f"| **total (wall, incl. loading and cropping)** | **{t.mean():.1f}** | **{t.min():.1f}** |")


if __name__ == "__main__":
    main()
