"""Benchmarks of the synthetic data generator (monohead.synth), seconds per sample.

Run: ``python -m pytest benchmarks/bench_synth.py --benchmark-enable -p no:cacheprovider``
(pytest-benchmark), or ``python benchmarks/bench_synth.py [--sizes 128 256] [--count 40]
[--versions 1 2 3] [--threads 1] [--one-core]`` for the table of the split per stage: sampling
(random parameters, head shape, hair, glasses, textures, background; version 2 also the body,
clothes, headwear and occluders, the environment map and the background, shown apart as
``body``, ``lighting`` and ``background``), normals (eq. 2 on the posed head), scene update
(Mitsuba parameters and the acceleration structure: Embree rebuilds the whole scene's BVH, at
its high build quality, whenever any mesh moves), image (path tracing, compositing, 8-bit
encoding; version 2's photo artefacts and version 3's denoising shown apart as ``artefacts``
and ``denoise``) and ground truth (pixel-centre rays through the occluders, W).

Method: one :class:`~monohead.synth.generator.Generator` per size and version; six warm-up
samples first; then samples ``0 .. count-1`` of seed 99, each a new scene. Wall and process CPU
time are both reported: on a shared machine CPU time is the steadier figure. ``--threads 1``
limits Dr.Jit's LLVM backend to one thread; ``--one-core`` also pins the whole process (the
Python thread that builds the scene, Dr.Jit's and Embree's threads) to one CPU core with
``os.sched_setaffinity`` on every thread of the process (threads started before the call do not
inherit it), so that wall time is one core's time (the "one core" figure; CPU time above wall
time would show that it was not).

**Kernel compilation.** Dr.Jit compiles a path-tracing kernel for every combination of hair
curve bucket, points per strand and a few other scene features it has not met yet in this
process (0.7 s each on one core). Its disk cache does not always help across processes (the
same sample's kernel can hash differently after another history of scenes). A long run meets
fewer and fewer new ones (150 samples: 8 compilations, 0.035 s per sample), a short benchmark
many: the table shows ``compile`` (Dr.Jit's code generation and LLVM back-end time, from its
kernel history, counted inside ``image`` and ``ground truth``) and ``wall - compile``, the
per-sample time of a long run. ``--steady`` renders the timed samples once, untimed, before
timing them: every kernel they need then exists, and the table is a long run's figure.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pytest

KEYS = ("sampling", "normals", "update", "image", "ground_truth")
PARTS = ("body", "lighting", "background", "artefacts", "denoise")


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


def _compile_seconds(history: list[dict]) -> float:
    """Dr.Jit's code generation and LLVM back-end time (s) in a kernel history."""
    return sum(float(k.get("codegen_time", 0.0)) + float(k.get("backend_time", 0.0)) for k in history) / 1000.0


def measure(size: int, count: int, spp: int = 9, version: int | None = None, steady: bool = False) -> dict[str, float]:
    """Mean seconds per sample (wall, CPU, kernel compilation) and the split, over ``count``
    samples; ``steady``: render them all once first (untimed), so that every kernel they need
    exists and the timed pass is what a long run costs per sample."""
    import drjit as dr

    gen = _generator(size, spp, version)
    if steady:
        for i in range(count):
            gen.sample(99, i)
    wall, cpu, comp, splits = [], [], [], []
    with dr.scoped_set_flag(dr.JitFlag.KernelHistory, True):
        dr.kernel_history()  # clear
        for i in range(count):
            c0, t0 = time.process_time(), time.perf_counter()
            s = gen.sample(99, i)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            comp.append(_compile_seconds(dr.kernel_history()))
            splits.append(s["timings"])
    out = {
        "size": size,
        "version": gen.version,
        "variant": gen.variant,
        "spp": spp,
        "wall": float(np.mean(wall)),
        "cpu": float(np.mean(cpu)),
        "compile": float(np.mean(comp)),
        "compilations": int(sum(c > 0.1 for c in comp)),
    }
    out.update({k: float(np.mean([t.get(k, 0.0) for t in splits])) for k in KEYS + PARTS})
    return out


def _pin_to_one_core() -> None:
    """Pin every thread of this process (Dr.Jit's and Embree's pools exist once Mitsuba is
    imported; ``sched_setaffinity(0, ...)`` would pin the calling thread only) to one core."""
    import os

    core = {min(os.sched_getaffinity(0))}
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), core)
        except (ProcessLookupError, PermissionError):  # a thread that ended meanwhile
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--versions", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--spp", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="Dr.Jit threads (default: all cores)")
    ap.add_argument("--one-core", action="store_true", help="pin the process to one CPU core (and one Dr.Jit thread)")
    ap.add_argument(
        "--steady", action="store_true", help="render the samples once untimed first (no compilation timed)"
    )
    args = ap.parse_args()
    if args.one_core:
        _pin_to_one_core()
        args.threads = 1
    if args.threads is not None:
        import drjit as dr

        dr.set_thread_count(args.threads)
    cols = KEYS + PARTS
    print("| size | version | variant | wall s | cpu s | compile s (n) | wall - compile s | " + " | ".join(cols) + " |")
    print("|---" * (7 + len(cols)) + "|")
    for size in args.sizes:
        for version in args.versions:
            r = measure(size, args.count, args.spp, version, args.steady)
            print(
                f"| {size} | {version} | {r['variant']} | {r['wall']:.3f} | {r['cpu']:.3f} | "
                f"{r['compile']:.3f} ({r['compilations']}) | {r['wall'] - r['compile']:.3f} | "
                + " | ".join(f"{r[k]:.3f}" for k in cols)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
