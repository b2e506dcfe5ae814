"""pytest-benchmark: the GPU algorithm run with NumPy (``monohead.integration.generic``).

Tracks the CPU speed of the code that CI exercises in place of the GPU. Run:
``python -m pytest benchmarks/bench_generic.py --benchmark-enable -p no:cacheprovider``.
Problem: ``head+neck`` of benchmarks/problems.py (lam = 0.1), stopping rule 1e-6; inputs are
built outside the timed call; the C++ core on the same inputs is in the same group.
"""

from __future__ import annotations

import numpy as np
import pytest

import monohead
from monohead.integration import generic
from problems import LAM, make

SIZES = (128, 256, 512, 1024)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", ["mg", "jacobi"])
def test_numpy_generic(benchmark, method, size):
    if method == "jacobi" and size > 256:
        pytest.skip("Jacobi-PCG above 256^2 in NumPy: seconds per call")
    n, W, mask, _ = make("head+neck", size)
    benchmark.group = f"generic {size}"
    benchmark.extra_info["unknowns"] = int(mask.sum())
    _, info = benchmark(generic.integrate_xp, n, W, LAM, mask, method=method, return_info=True)
    benchmark.extra_info["iterations"] = info.iterations
    assert info.converged


@pytest.mark.parametrize("size", [128, 256])
def test_numpy_generic_batch8(benchmark, size):
    n, W, mask, _ = make("head+neck", size)
    N, Wb, M = (np.stack([a] * 8) for a in (n, W, mask))
    benchmark.group = f"generic {size}"
    benchmark(generic.integrate_xp, N, Wb, LAM, M)


@pytest.mark.parametrize("size", SIZES)
def test_cpp_core(benchmark, size):
    n, W, mask, _ = make("head+neck", size)
    benchmark.group = f"generic {size}"
    benchmark(monohead.integrate, n, W, LAM, mask)
