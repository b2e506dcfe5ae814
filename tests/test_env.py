"""monohead._env: the shared data folder is found through $MONOHEAD_SHARED, else beside the
repository, and nowhere else."""

from __future__ import annotations

from pathlib import Path

from monohead import _env


def test_shared_data_honours_the_environment_variable_first(tmp_path, monkeypatch):
    (tmp_path / "data" / "real-photos").mkdir(parents=True)
    monkeypatch.setenv("MONOHEAD_SHARED", str(tmp_path))
    assert _env.shared_roots()[0] == tmp_path
    assert _env.shared_data("real-photos") == tmp_path / "data" / "real-photos"


def test_shared_data_is_none_when_absent_everywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("MONOHEAD_SHARED", str(tmp_path))
    assert _env.shared_data("no-such-folder-anywhere") is None


def test_shared_roots_are_the_variable_and_the_checkout_sibling_only(monkeypatch):
    monkeypatch.delenv("MONOHEAD_SHARED", raising=False)
    repo = Path(_env.__file__).resolve().parents[2]
    assert _env.shared_roots() == [repo.parent / "shared"]
