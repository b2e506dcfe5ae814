"""Threads of the C++ core (results independent of their number, GIL released) and float32 input read in place."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest

import monohead
from monohead import _core
from monohead import _validate as v
from monohead.integration import THREADS_ENV, ConvergenceWarning, default_threads, surfaces


@pytest.fixture(scope="module")
def head_neck():
    # 384^2 head + neck (a padded box of 1e5 cells): the finest level and the CG vectors run on
    # several threads (csrc/parallel.hpp: grids of >= 32768 cells), the coarsest ones on one.
    return surfaces.head(384, neck=True)


def _blobs(size=320):
    """A mask of two 4-connected components (multi-component gauge path) with a smooth surface."""
    r, c = np.mgrid[:size, :size]
    mask = ((r - 90) ** 2 + (c - 100) ** 2 < 85**2) | ((r - 235) ** 2 + (c - 225) ** 2 < 75**2)
    x, y = c / size, r / size
    p, q = np.cos(3 * x) * 0.5, np.sin(2 * y) * 0.3
    n = np.dstack([-p, -q, np.ones_like(p)])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    W = np.abs(np.sin(7 * x) * np.cos(5 * y))
    return n * mask[..., None], W, mask


@pytest.mark.parametrize("method", ["mg", "jacobi"])
def test_results_bitwise_identical_for_any_thread_count(head_neck, method):
    s = head_neck
    # Jacobi-PCG: 20 iterations (far from converged) are enough to compare, and keep it fast.
    kw = {"tol": 1e-6} if method == "mg" else {"tol": 1e-6, "maxiter": 20}
    solver = monohead.Integrator(s.mask, s.W, 0.1, method, threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref, info1 = solver.solve(s.normals, return_info=True, **kw)
        for t in (2, 3):
            solver.threads = t
            assert solver.threads == t
            depth, info = solver.solve(s.normals, return_info=True, **kw)
            assert info.iterations == info1.iterations
            assert info.residual == info1.residual
            np.testing.assert_array_equal(depth, ref)  # bitwise, NaN outside the mask included
        # A fresh integrator built on 3 threads (parallel setup: edge weights, hierarchy).
        depth = monohead.integrate(s.normals, s.W, 0.1, s.mask, method=method, threads=3, **kw)
    np.testing.assert_array_equal(depth, ref)


def test_weak_edge_sweeps_bitwise_identical(head_neck):
    # A chin step 5x steeper: the edges under the chin fall below 0.3x their cells' strongest,
    # so level 0 gets the serial weak-edge sweeps (csrc/multigrid.hpp, MgOptions::weak_sweeps).
    s = head_neck
    W = np.where(s.W > np.quantile(s.W[s.mask], 0.995), 5.0 * s.W, s.W)
    ref, info1 = monohead.integrate(s.normals, W, 0.1, s.mask, threads=1, return_info=True)
    assert info1.converged
    assert info1.iterations <= 6
    for t in (2, 3):
        depth, info = monohead.integrate(s.normals, W, 0.1, s.mask, threads=t, return_info=True)
        assert info.iterations == info1.iterations
        np.testing.assert_array_equal(depth, ref)


def test_multi_component_mask_bitwise_identical():
    n, W, mask = _blobs()
    ref = monohead.integrate(n, W, 0.1, mask, threads=1)
    assert np.isfinite(ref[mask]).all()
    assert monohead.Integrator(mask, threads=1).num_components == 2
    np.testing.assert_array_equal(monohead.integrate(n, W, 0.1, mask, threads=3), ref)


def test_threads_argument_and_environment(monkeypatch, head_neck):
    s = head_neck
    monkeypatch.setenv(THREADS_ENV, "3")
    assert default_threads() == 3
    assert monohead.Integrator(s.mask, s.W).threads == 3
    monkeypatch.delenv(THREADS_ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "2,1")
    assert default_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() >= 1
    assert monohead.Integrator(s.mask, s.W, threads=5).threads == 5
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ValueError, match="MONOHEAD_NUM_THREADS must be a positive integer; got 'many'"):
        monohead.Integrator(s.mask, s.W)
    monkeypatch.delenv(THREADS_ENV)
    with pytest.raises(ValueError, match="threads must be >= 1; got 0"):
        monohead.integrate(s.normals, s.W, 0.1, s.mask, threads=0)
    with pytest.raises(TypeError, match="threads must be a positive integer; got str"):
        monohead.Integrator(s.mask, threads="2")
    solver = monohead.Integrator(s.mask, threads=1)
    with pytest.raises(ValueError, match="threads must be >= 1; got -1"):
        solver.threads = -1
    with pytest.raises(ValueError, match="threads must be >= 1; got 0"):
        _core.Integrator(s.mask.view(np.uint8), None, 0.1, "mg", threads=0)


def test_solve_releases_the_gil(head_neck):
    # While one thread solves, another one keeps running Python code.
    s = head_neck
    solver = monohead.Integrator(s.mask, s.W, threads=1)
    normals = s.normals
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0)

    t = threading.Thread(target=count)
    t.start()
    try:
        t0 = time.perf_counter()
        for _ in range(3):
            solver.solve(normals, tol=1e-10)
        t1 = time.perf_counter()
    finally:
        done.set()
        t.join()
    during = [x for x in ticks if t0 < x < t1]
    assert len(during) > 10, f"only {len(during)} Python steps ran during {t1 - t0:.3f} s of solving"


def test_float32_normals_and_weights_read_in_place(head_neck):
    s = head_neck
    n32 = np.ascontiguousarray(s.normals, dtype=np.float32)
    w32 = np.ascontiguousarray(s.W, dtype=np.float32)
    # Validation hands the float32 arrays through untouched (no conversion, no copy).
    assert v.check_normals(n32, keep_float32=True) is n32
    assert v.check_gradient_magnitude(w32, s.mask.shape, s.mask, keep_float32=True) is w32
    # The core converts each value to double as it reads it: the result is exactly that of
    # the float64 copy of the same float32 values.
    depth = monohead.integrate(n32, w32, 0.1, s.mask, threads=1)
    assert depth.dtype == np.float64
    ref = monohead.integrate(n32.astype(np.float64), w32.astype(np.float64), 0.1, s.mask, threads=1)
    np.testing.assert_array_equal(depth, ref)
    # And no float64 copy of the input is made on the way: the peak of NumPy allocations during
    # the call stays below the size of a float64 copy of the normals (24 bytes per pixel; the
    # output depth is 8 and the validation masks a few).
    monohead.integrate(n32, w32, 0.1, s.mask, threads=1)  # warm-up (imports, caches)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        monohead.integrate(n32, w32, 0.1, s.mask, threads=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    copy64 = n32.size * 8
    assert peak < copy64, f"peak {peak} B >= a float64 copy of the normals ({copy64} B)"


def test_core_accepts_float32_and_float64_only():
    mask = np.ones((6, 7), np.uint8)
    n = np.zeros((6, 7, 3), np.float32)
    n[..., 2] = 1
    core = _core.Integrator(mask, np.zeros((6, 7), np.float32))
    depth, _ = core.solve(n)
    assert depth.dtype == np.float64
    with pytest.raises(TypeError, match="normals must be float32 or float64; got dtype float16"):
        core.solve(n.astype(np.float16))
    with pytest.raises(TypeError, match="weights must be float32 or float64; got dtype int64"):
        _core.Integrator(mask, np.zeros((6, 7), np.int64))
    with pytest.raises(TypeError, match="normals must be C-contiguous"):
        core.solve(np.asfortranarray(np.zeros((6, 7, 3), np.float32)))


def test_libgomp_spin_count_default_respects_the_user():
    code = "import os, monohead; print(os.environ.get('GOMP_SPINCOUNT'))"
    base = {k: val for k, val in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}

    def run(env):
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert run(base) == "10000"
    assert run({**base, "GOMP_SPINCOUNT": "500"}) == "500"
    assert run({**base, "OMP_WAIT_POLICY": "active"}) == "None"
