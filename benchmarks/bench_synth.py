"""Benchmarks of the synthetic data generator (monohead.synth), seconds per sample.

Run: ``python -m pytest benchmarks/bench_synth.py --benchmark-enable -p no:cacheprovider``
(pytest-benchmark), or ``python benchmarks/bench_synth.py [--sizes 128 256] [--count 20]
[--versions 1 2 3] [--threads 1]`` for the table of the split per stage: sampling (random
parameters, head shape, hair, glasses, textures, background; version 2 also the body, clothes,
headwear and occluders, the environment map and the background, shown apart as ``body``,
``lighting`` and ``background``), normals (eq. 2 on the posed head), scene update (Mitsuba
parameters and the acceleration structure), image (path tracing, compositing, 8-bit encoding;
version 2's photo artefacts shown apart as ``artefacts``) and ground truth (pixel-centre rays
through the occluders, W).

Method: one :class:`~monohead.synth.generator.Generator` per size and version; six warm-up
samples first (Dr.Jit compiles a kernel per hair bucket and ground-truth loop once per process,
and caches them on disk); then samples ``0 .. count-1`` of seed 99, each a new scene. Wall and
process CPU time are both reported: on a shared machine CPU time is the steadier figure.
``--threads 1`` limits Dr.Jit's LLVM backend to one thread (the "one core" figure).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pytest

KEYS = ("sampling", "normals", "update", "image", "ground_truth")
PARTS = ("body", "lighting", "background", "artefacts")


def _generator(size: int, spp: int = 9, version: int | None = None):
    from monohead.synth.generator import GENERATOR_VERSION, Generator

    gen = Generator(size, spp=spp, version=GENERATOR_VERSION if version is None else version)
    for i in range(6):
        gen.sample(99, 10_000 + i)
    return gen


@pytest.fixture(scope="module", params=[(128, 1), (128, 2), (256, 2)], ids=["128-v1", "128-v2", "256-v2"])
def gen(request):
    return _generator(request.param[0], version=request.param[1])


def test_sample(benchmark, gen):
    """One whole sample (a new scene every call)."""
    counter = itertools.count()
    splits = []

    def one():
        s = gen.sample(99, next(counter))
        splits.append(s["timings"])
        return s

    s = benchmark.pedantic(one, rounds=12, iterations=1)
    assert s["mask"].any()
    benchmark.extra_info.update({k: float(np.mean([t.get(k, 0.0) for t in splits])) for k in KEYS + PARTS})
    benchmark.extra_info["variant"] = gen.variant


def test_ground_truth_only(benchmark, gen):
    """Ground truth of a fixed scene (the occluder loop and the maps)."""
    gen.renderer.update(gen.scene_arrays(gen.params(99, 3)))
    gt = benchmark(gen.renderer.ground_truth)
    assert gt.mask.any()


def measure(size: int, count: int, spp: int = 9, version: int | None = None) -> dict[str, float]:
    """Mean seconds per sample (wall, CPU) and the split, over ``count`` samples."""
    gen = _generator(size, spp, version)
    wall, cpu, splits = [], [], []
    for i in range(count):
        c0, t0 = time.process_time(), time.perf_counter()
        s = gen.sample(99, i)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        splits.append(s["timings"])
    out = {
        "size": size,
        "version": gen.version,
        "variant": gen.variant,
        "spp": spp,
        "wall": float(np.mean(wall)),
        "cpu": float(np.mean(cpu)),
    }
    out.update({k: float(np.mean([t.get(k, 0.0) for t in splits])) for k in KEYS + PARTS})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--versions", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--spp", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="Dr.Jit threads (default: all cores)")
    args = ap.parse_args()
    if args.threads is not None:
        import drjit as dr

        dr.set_thread_count(args.threads)
    cols = KEYS + PARTS
    print("| size | version | variant | wall s | cpu s | " + " | ".join(cols) + " |")
    print("|---" * (5 + len(cols)) + "|")
    for size in args.sizes:
        for version in args.versions:
            r = measure(size, args.count, args.spp, version)
            print(
                f"| {size} | {version} | {r['variant']} | {r['wall']:.3f} | {r['cpu']:.3f} | "
                + " | ".join(f"{r[k]:.3f}" for k in cols)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
