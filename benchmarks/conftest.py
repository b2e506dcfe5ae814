"""Collect the ``bench_*.py`` files of this folder, so that ``python -m pytest benchmarks`` runs them.

pytest only collects ``test_*.py`` by default (``python_files``); the project's pytest options
(pyproject.toml) keep that for ``tests/``. Here every ``bench_*.py`` is collected as a test
module too. With the project's default ``--benchmark-disable`` each benchmark runs once (a
smoke test); add ``--benchmark-enable`` for timings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The bench files import the shared problem definitions (problems.py) as a top-level module.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest collects it itself
    return pytest.Module.from_parent(parent, path=file_path)
