"""The command line: `monohead integrate`, in-process and as `python -m monohead`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from monohead import cli
from monohead.integration import surfaces


def test_integrate_example_json(tmp_path, capsys):
    out = tmp_path / "d.npy"
    mesh = tmp_path / "m.ply"
    assert cli.main(["integrate", "--example", "-o", str(out), "--mesh", str(mesh), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    depth = np.load(out)
    s = surfaces.head(256, neck=True)
    np.testing.assert_array_equal(np.isnan(depth), ~s.mask)
    assert r["unknowns"] == s.mask.sum() and r["residual"] <= 1e-6
    assert r["mesh_vertices"] == s.mask.sum() and mesh.stat().st_size > 0


def test_integrate_npz_roundtrip(tmp_path, capsys):
    s = surfaces.head(64)
    src = tmp_path / "in.npz"
    np.savez(src, normals=s.normals.astype(np.float32), W=s.W, mask=s.mask)
    out = tmp_path / "d.npy"
    assert cli.main(["integrate", str(src), "-o", str(out), "--method", "direct"]) == 0
    assert "direct" in capsys.readouterr().err
    import monohead

    ref = monohead.integrate(s.normals, s.W, 0.1, s.mask)
    np.testing.assert_allclose(np.load(out)[s.mask], ref[s.mask], atol=1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["integrate", "missing.npy"], "input file does not exist"),
        (["integrate"], "give a normal map"),
        (["integrate", "--example", "-o", "/nonexistent/folder/d.npy"], "output folder does not exist"),
        (["integrate", "--example", "--lam", "-1"], "lam must be a finite number >= 0"),
    ],
)
def test_errors_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_bad_npz_and_python_m(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    proc = subprocess.run([sys.executable, "-m", "monohead", "integrate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "cannot read" in proc.stderr
