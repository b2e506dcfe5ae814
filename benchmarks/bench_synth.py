"""Benchmarks of the synthetic data generator (monohead.synth), seconds per sample.

Run: ``python -m pytest benchmarks/bench_synth.py --benchmark-enable -p no:cacheprovider``
(pytest-benchmark), or ``python benchmarks/bench_synth.py [--sizes 128 256] [--count 20]`` for
the table of the split: sampling (random parameters, head shape, hair, glasses, textures,
background), normals (eq. 2 on the posed head), scene update (Mitsuba parameters and the
acceleration structure), image render (path tracing, compositing, 8-bit encoding) and
ground-truth render (pixel-centre rays through the occluders, W).

Method: one :class:`~monohead.synth.generator.Generator` per size; six warm-up samples first
(Dr.Jit compiles a kernel per hair bucket and ground-truth loop once per process, and caches
them on disk); then samples ``0 .. count-1`` of seed 99, each a new scene. Wall and process CPU
time are both reported: on a shared machine CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pytest

KEYS = ("sampling", "normals", "update", "image", "ground_truth")


def _generator(size: int, spp: int = 9):
    from monohead.synth.generator import Generator

    gen = Generator(size, spp=spp)
    for i in range(6):
        gen.sample(99, 10_000 + i)
    return gen


@pytest.fixture(scope="module", params=[128, 256], ids=["128", "256"])
def gen(request):
    return _generator(request.param)


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
    benchmark.extra_info.update({k: float(np.mean([t[k] for t in splits])) for k in KEYS})
    benchmark.extra_info["variant"] = gen.variant


def test_ground_truth_only(benchmark, gen):
    """Ground truth of a fixed scene (the occluder loop and the maps)."""
    gen.renderer.update(gen.scene_arrays(gen.params(99, 3)))
    gt = benchmark(gen.renderer.ground_truth)
    assert gt.mask.any()


def measure(size: int, count: int, spp: int = 9) -> dict[str, float]:
    """Mean seconds per sample (wall, CPU) and the split, over ``count`` samples."""
    gen = _generator(size, spp)
    wall, cpu, splits = [], [], []
    for i in range(count):
        c0, t0 = time.process_time(), time.perf_counter()
        s = gen.sample(99, i)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        splits.append(s["timings"])
    out = {"size": size, "variant": gen.variant, "spp": spp, "wall": float(np.mean(wall)), "cpu": float(np.mean(cpu))}
    out.update({k: float(np.mean([t[k] for t in splits])) for k in KEYS})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--spp", type=int, default=9)
    args = ap.parse_args()
    print(f"{'size':>5} {'variant':>12} {'wall s':>7} {'cpu s':>7} " + " ".join(f"{k:>12}" for k in KEYS))
    for size in args.sizes:
        r = measure(size, args.count, args.spp)
        print(f"{size:>5} {r['variant']:>12} {r['wall']:7.3f} {r['cpu']:7.3f} " + " ".join(f"{r[k]:12.3f}" for k in KEYS))


if __name__ == "__main__":
    main()
