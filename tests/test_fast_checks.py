"""The core's one-pass input scans (csrc/checks.hpp) agree with the NumPy validators, and its
cache of freed work blocks (csrc/pool.hpp) is bounded and controllable."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import monohead
from monohead import _core
from monohead import _validate as v
from monohead.integration import surfaces, work_cache


def _scan(n, mask, threads=1):
    lo, hi = v.NZ_RANGE
    return _core.scan_normals(n, mask.view(np.uint8), lo, hi, v.SLOPE_LIMIT, threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scan_normals_matches_numpy_slopes(dtype):
    rng = np.random.default_rng(3)
    n = rng.normal(size=(300, 301, 3))
    n[..., 2] = np.abs(n[..., 2]) + 0.05
    n = (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(dtype)
    mask = rng.random((300, 301)) < 0.7
    n[~mask] = np.nan  # ignored outside the mask
    for threads in (1, 2, 3):
        counts_and_max = _scan(n, mask, threads)
        assert counts_and_max[:4] == (0, 0, 0, 0)
        assert max(counts_and_max[4:]) == v.check_slopes(n, mask)


def test_scan_normals_counts_each_problem_once():
    n = np.tile(np.array([0.0, 0.0, 1.0]), (4, 5, 1))
    n[0, 0] = [np.nan, 0, 1]  # non-finite
    n[0, 1] = [0, 0, -1]  # facing away
    n[0, 2] = [0, 0, 1e-120]  # Nz below the range
    n[0, 3] = [1, 0, 1e-9]  # too grazing (|p| = 1e9)
    n[1, 0] = [0.6, -0.8, 2.0]  # p = -0.3, q = 0.4
    mask = np.ones((4, 5), bool)
    assert _scan(n, mask) == (1, 1, 1, 1, 0.3, 0.4)
    mask[0, :4] = False
    assert _scan(n, mask) == (0, 0, 0, 0, 0.3, 0.4)


def test_errors_are_those_of_the_numpy_checks():
    s = surfaces.head(64)
    n = s.normals.copy()
    n[s.mask.nonzero()[0][0], s.mask.nonzero()[1][0], 2] = -0.5
    with pytest.raises(ValueError, match=r"Nz > 0\) inside the mask; got 1 pixel"):
        monohead.integrate(n, s.W, 0.1, s.mask)
    W = s.W.astype(np.float32)
    W[0, 0] = np.inf  # outside the mask: cleaned, not an error
    assert not s.mask[0, 0]
    depth = monohead.integrate(s.normals, W, 0.1, s.mask)
    np.testing.assert_array_equal(depth, monohead.integrate(s.normals, s.W.astype(np.float32), 0.1, s.mask))
    W[s.mask] = -1.0
    with pytest.raises(ValueError, match="must be >= 0"):
        monohead.integrate(s.normals, W, 0.1, s.mask)


def test_scan_nonnegative():
    a = np.arange(200_000, dtype=np.float64)
    assert _core.scan_nonnegative(a, 2) == (True, 199_999.0)
    a[123_456] = np.nan
    assert _core.scan_nonnegative(a, 2)[0] is False
    assert _core.scan_nonnegative(np.array([0.5, -0.0, 2.0], np.float32), 1) == (True, 2.0)
    assert _core.scan_nonnegative(np.array([0.5, -1e-30], np.float32), 1)[0] is False


def test_work_cache_is_bounded_and_reused():
    s = surfaces.head(512, neck=True)  # work arrays of about 2 MB: above the 1 MiB pooling floor
    old, _ = work_cache()
    try:
        work_cache(0)
        assert work_cache() == (0, 0)
        ref = monohead.integrate(s.normals, s.W, 0.1, s.mask)
        assert work_cache()[1] == 0  # nothing kept with limit 0
        work_cache(1 << 30)
        monohead.integrate(s.normals, s.W, 0.1, s.mask)
        kept = work_cache()[1]
        assert 0 < kept <= 1 << 30
        # Reused blocks hold stale data: the result must not depend on it.
        np.testing.assert_array_equal(monohead.integrate(s.normals, s.W, 0.1, s.mask), ref)
        assert work_cache()[1] == kept  # the same blocks served the second call
        limit, cached = work_cache(kept // 2)
        assert limit == 1 << 30
        assert cached <= kept // 2
    finally:
        work_cache(old)


def _anon_huge_kib():
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))


def _thp_allowed():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def test_work_cache_blocks_use_huge_pages_where_the_kernel_allows():
    # Large work blocks are 2 MiB-aligned mappings advised MADV_HUGEPAGE (csrc/pool.hpp). Where
    # Linux has transparent huge pages (always or madvise), most of the cached bytes must be
    # huge pages; before, they were plain 4 KiB pages (AnonHugePages did not grow).
    s = surfaces.rectangle(1024)
    old, _ = work_cache()
    try:
        work_cache(0)
        work_cache(1 << 30)
        before = _anon_huge_kib() if sys.platform.startswith("linux") else 0
        depth = monohead.integrate(s.normals, None, 0.1, s.mask)
        kept = work_cache()[1]
        assert kept > 64 << 20  # the system, hierarchy and CG vectors of 1024^2: about 100 MB
        if sys.platform.startswith("linux") and _thp_allowed():
            grown = (_anon_huge_kib() - before) * 1024 - depth.nbytes  # numpy's own output may be huge too
            assert grown >= kept // 4, (grown, kept)
    finally:
        work_cache(old)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True, None])
def test_work_cache_rejects_bad_limits(bad):
    if bad is None:
        assert work_cache(None)[0] >= 0  # None reads without changing
        return
    with pytest.raises(TypeError if not isinstance(bad, int) or isinstance(bad, bool) else ValueError, match="limit"):
        work_cache(bad)
