"""benchmarks/eval_full_head.py: options that contradict each other are refused before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_full_head.py"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "none"), "--out", str(tmp_path / "out"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--predictions", "pred.npz", "--model", "runs/v2"), "--predictions and --model exclude each other"),
        (("--true-maps", "--model", "runs/v2"), "--true-maps uses the rendered maps"),
        (("--true-maps", "--save-predictions", "p.npz"), "--true-maps uses the rendered maps"),
    ],
)
def test_contradicting_options_are_refused(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    r = _run(tmp_path, *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
