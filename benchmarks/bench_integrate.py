"""pytest-benchmark: the C++ integrator (mg, jacobi, direct) and the DCT baseline.

Run: ``python -m pytest benchmarks/bench_integrate.py --benchmark-enable -p no:cacheprovider``
(add ``--benchmark-json out.json`` to keep the figures). Inputs are built outside the timed
function; the timed call is the public ``monohead.integrate`` (validation, assembly, setup,
solve), or ``Integrator.solve`` for repeated solves on one mask.
"""

from __future__ import annotations

import pytest

import monohead
from monohead.integration import dct_poisson
from problems import LAM, make

SIZES = (128, 256, 512, 1024, 2048)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("problem", ["head", "head+neck"])
def test_mg(benchmark, problem, size):
    n, W, mask, _ = make(problem, size)
    benchmark.extra_info["unknowns"] = int(mask.sum())
    depth, info = benchmark(monohead.integrate, n, W, LAM, mask, method="mg", return_info=True)
    assert info.converged


@pytest.mark.parametrize("size", [128, 256, 512])
def test_jacobi(benchmark, size):
    n, W, mask, _ = make("head+neck", size)
    depth, info = benchmark(monohead.integrate, n, W, LAM, mask, method="jacobi", return_info=True)
    assert info.converged


@pytest.mark.parametrize("size", [128, 256, 512])
def test_direct(benchmark, size):
    n, W, mask, _ = make("head+neck", size)
    benchmark(monohead.integrate, n, W, LAM, mask, method="direct")


@pytest.mark.parametrize("size", [256, 1024])
def test_mg_rect_vs_dct(benchmark, size):
    n, _, mask, _ = make("rect", size)
    benchmark.group = f"rect {size}"
    benchmark(monohead.integrate, n, None, LAM, mask)


@pytest.mark.parametrize("size", [256, 1024])
def test_dct_rect(benchmark, size):
    n, _, _, _ = make("rect", size)
    benchmark.group = f"rect {size}"
    benchmark(dct_poisson, n)


@pytest.mark.parametrize("size", [128, 1024])
def test_integrator_resolve(benchmark, size):
    """Repeated solves on one mask: the hierarchy is built once."""
    n, W, mask, _ = make("head+neck", size)
    solver = monohead.Integrator(mask, W, LAM)
    benchmark(solver.solve, n)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("size", [1024, 2048])
def test_mg_threads(benchmark, size, threads):
    """The threaded core: the same call on 1 and 2 threads (bitwise identical results)."""
    n, W, mask, _ = make("head+neck", size)
    benchmark.group = f"mg threads head+neck {size}"
    benchmark.extra_info["threads"] = threads
    depth, info = benchmark(monohead.integrate, n, W, LAM, mask, return_info=True, threads=threads)
    assert info.converged
