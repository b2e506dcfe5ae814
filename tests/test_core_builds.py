"""The two builds of the C++ core (baseline x86-64 and x86-64-v3 / AVX2): the choice at import
and bitwise-identical results."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from monohead import _core as baseline
from monohead.integration import api, surfaces


def _avx2_module():
    """The AVX2 build, or None where it was not built (not x86-64, or not GCC/Clang)."""
    if importlib.util.find_spec("monohead._core_avx2") is None:
        return None
    return importlib.import_module("monohead._core_avx2")


def _solve(core, s, method, threads):
    """Depth and report of one solve of surface ``s`` by ``core`` (a build's module)."""
    mask = s.mask.view(np.uint8)
    integ = core.Integrator(mask, s.W, 0.1, method, threads=threads)
    depth, raw = integ.solve(s.normals, None, 1e-6, 1000)
    return depth, raw


def test_both_builds_load_in_one_process():
    # photo.py takes LbpCascade from the baseline while integration may use the AVX2 build:
    # both modules bind the same C++ types, which must not clash (pybind11 module_local).
    code = "import monohead._core, monohead._core_avx2"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if _avx2_module() is None:
        assert "_core_avx2" in out.stderr
    else:
        assert out.returncode == 0, out.stderr


def test_default_choice_follows_the_cpu():
    fast = _avx2_module()
    chosen = api._load_core()
    if fast is not None and api._cpu_has_x86_64_v3():
        assert chosen is fast
    else:
        assert chosen is baseline


@pytest.mark.parametrize("method", ["mg", "jacobi", "direct"])
def test_builds_give_bitwise_the_same_depth(method):
    # Where the AVX2 build runs, it must do the same floating-point operations as the baseline
    # (no FMA contraction, Eigen unvectorised): same depth bit for bit, same iteration count.
    # Elsewhere the baseline is compared with itself through the chosen core.
    fast = _avx2_module()
    other = fast if fast is not None and api._cpu_has_x86_64_v3() else api._core()
    size = 160 if method == "direct" else 300
    s = surfaces.head(size, neck=True)
    for threads in (1, 2):
        d0, r0 = _solve(baseline, s, method, threads)
        d1, r1 = _solve(other, s, method, threads)
        assert np.array_equal(d0, d1, equal_nan=True)
        assert r0["iterations"] == r1["iterations"]
        assert r0["residual"] == r1["residual"]


def _choice_in_child(value):
    code = "from monohead.integration import api; print(api._core().__name__)"
    env = {"MONOHEAD_CORE": value, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_environment_variable_forces_a_build():
    out = _choice_in_child("baseline")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "monohead._core"
    bad = _choice_in_child("sse9")
    assert bad.returncode != 0
    assert "MONOHEAD_CORE must be 'auto', 'baseline' or 'avx2'" in bad.stderr
    forced = _choice_in_child("avx2")
    if _avx2_module() is not None and api._cpu_has_x86_64_v3():
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout.strip() == "monohead._core_avx2"
    else:
        assert forced.returncode != 0
        assert "MONOHEAD_CORE=avx2" in forced.stderr
