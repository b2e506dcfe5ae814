"""pytest-benchmark: the GPU integrator (CuPy) against a plain Jacobi-PCG in CuPy and the C++ core.

Run on a CUDA machine: ``python -m pytest benchmarks/bench_gpu.py --benchmark-enable -p no:cacheprovider``
(skips cleanly without CuPy or a CUDA device; ``python benchmarks/compare_gpu.py`` prints the
side-by-side table). Problem: ``surfaces.head(size, neck=True)`` weighted with ``lam = 0.1``,
sizes 512^2 to 4096^2, stopping rule ``||b - L h|| <= 1e-6 ||b||``. Inputs are on the device
before timing; every timed function synchronises the GPU before it returns; one untimed
warm-up call compiles the kernels and fills the memory pool.
"""

from __future__ import annotations

import pytest

import monohead
from compare_gpu import LAM, TOL, csr_jacobi_pcg, gpu_status, pinned_system
from monohead.integration import surfaces

SIZES = (512, 1024, 2048, 4096)
pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    cupy, status = gpu_status()
    if cupy is None:
        pytest.skip(status)
    return cupy


def _problem(size):
    s = surfaces.head(size, neck=True)
    return s.normals, s.W, s.mask


def _sync(cp):
    cp.cuda.get_current_stream().synchronize()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", ["mg", "jacobi"])
def test_cupy(benchmark, cp, method, size):
    if method == "jacobi" and size > 2048:
        pytest.skip("Jacobi-PCG at 4096^2: thousands of iterations")
    n, W, mask = (cp.asarray(a) for a in _problem(size))
    benchmark.group = f"gpu {size}"
    benchmark.extra_info["unknowns"] = int(mask.sum())

    def run():
        out = monohead.integrate(n, W, LAM, mask, method=method, tol=TOL, return_info=True)
        _sync(cp)
        return out

    run()  # warm-up: kernel compilation, memory pool
    _, info = benchmark(run)
    benchmark.extra_info["iterations"] = info.iterations
    benchmark.extra_info["residual"] = info.residual
    assert info.converged


@pytest.mark.parametrize("size", SIZES)
def test_cupy_batch8(benchmark, cp, size):
    if size > 1024:
        pytest.skip("batch of 8 maps above 1024^2: memory")
    n, W, mask = (cp.asarray(a) for a in _problem(size))
    N, Wb, M = (cp.stack([a] * 8) for a in (n, W, mask))
    benchmark.group = f"gpu {size}"

    def run():
        out = monohead.integrate(N, Wb, LAM, M, tol=TOL)
        _sync(cp)
        return out

    run()
    benchmark(run)


@pytest.mark.parametrize("size", SIZES)
def test_cupy_csr_jacobi_pcg(benchmark, cp, size):
    """The usual public recipe: Jacobi-PCG on the CSR matrix, in CuPy (solve only)."""
    import cupyx.scipy.sparse as cps

    A, b, _, _ = pinned_system(*_problem(size))
    A, b = cps.csr_matrix(A), cp.asarray(b)
    benchmark.group = f"gpu {size}"

    def run():
        out = csr_jacobi_pcg(cp, A, b)
        _sync(cp)
        return out

    run()
    _, it, res = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["iterations"] = it
    assert res <= TOL


@pytest.mark.parametrize("size", SIZES)
def test_cpu_mg(benchmark, cp, size):
    """The C++ core on the host, for the same problem (in the GPU groups)."""
    n, W, mask = _problem(size)
    benchmark.group = f"gpu {size}"
    benchmark(monohead.integrate, n, W, LAM, mask, tol=TOL)
