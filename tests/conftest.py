"""Shared fixtures. Plain helpers that tests import are in ``tests/_helpers.py`` and the
independent reference of the WLS energy in ``tests/_reference.py``."""

from __future__ import annotations

import os
import sys

# Byte-exact pins of the synthetic data (tests/test_synth_yaw.py, test_synth_v3.py) were taken
# with OpenBLAS's Haswell (AVX2) kernels. On an AVX-512 CPU OpenBLAS picks its SkylakeX kernels,
# whose small products differ in the last bits (normals up to 9e-6, README "Reproducibility
# across CPUs"), which a hash sees. The tests run every CPU on the Haswell kernels; the variable
# must be set before NumPy loads OpenBLAS.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests._helpers import find_shared_data, perspective_sphere


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20200227)


@pytest.fixture(scope="session")
def sphere_k() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(normals, z, mask, K)`` of :func:`tests._helpers.perspective_sphere` (read-only arrays)."""
    arrays = perspective_sphere()
    for a in arrays:
        a.flags.writeable = False
    return arrays


@pytest.fixture
def flat_normals() -> np.ndarray:
    """A (4, 5, 3) map of normals facing the viewer (zero slopes): the input of the bad-argument tests."""
    n = np.zeros((4, 5, 3))
    n[..., 2] = 1.0
    return n


@pytest.fixture
def shared_data() -> Callable[..., Path]:
    """``shared_data(*parts)``: the path of ``<shared>/data/<parts...>``; skips the test, with the
    reason, when it is absent (the shared data are not part of the repository)."""

    def find(*parts: str) -> Path:
        path = find_shared_data(*parts)
        if path is None:
            pytest.skip(
                f"shared data absent: data/{'/'.join(parts)} under $MONOHEAD_SHARED or <repo>/../shared "
                "(not part of the repository)"
            )
        return path

    return find


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    """One torch thread for the test: two threads per process crawl when other busy processes
    share a small machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cli_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[..., str]:
    """``cli_error(argv)``: run the CLI in an empty working folder, check that it exits with code 2
    and one line on stderr, and return that line."""
    from monohead import cli

    monkeypatch.chdir(tmp_path)

    def run(argv: list[str]) -> str:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return err

    return run
