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
    assert r["unknowns"] == s.mask.sum()
    assert r["residual"] <= 1e-6
    assert r["mesh_vertices"] == s.mask.sum()
    assert mesh.stat().st_size > 0


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
    ("argv", "message"),
    [
        (["integrate", "missing.npy"], "input file does not exist"),
        (["integrate"], "give a normal map"),
        (["integrate", "--example", "-o", "/nonexistent/folder/d.npy"], "folder /nonexistent/folder does not exist"),
        (["integrate", "--example", "--lam", "-1"], "lam must be a finite number >= 0"),
    ],
)
def test_errors_exit_2_with_one_line(argv, message, cli_error, tmp_path):
    assert message in cli_error(argv)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_bad_npz_and_python_m(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    proc = subprocess.run([sys.executable, "-m", "monohead", "integrate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr


def _bini_folder(path, bits, sphere, with_mask=True):
    """A BiNI-layout folder of the analytic perspective ``sphere`` (the ``sphere_k`` fixture);
    returns (normals, mask, K in OpenCV form)."""
    from monohead.geometry.normal_maps import encode_png, normals_to_image

    normals, _, mask, K = sphere
    path.mkdir()
    (path / "normal_map.png").write_bytes(encode_png(normals_to_image(normals, mask, bits)))
    if with_mask:
        (path / "mask.png").write_bytes(encode_png((mask[..., None] * 255).astype(np.uint8)))
    # BiNI's K.txt: first axis = rows counted from the bottom, second = columns.
    H = mask.shape[0]
    k_bini = np.array([[K[1, 1], 0.0, H - 1 - K[1, 2]], [0.0, K[0, 0], K[0, 2]], [0.0, 0.0, 1.0]])
    np.savetxt(path / "K.txt", k_bini)
    return normals, mask, K


@pytest.mark.parametrize("bits", [8, 16])
def test_integrate_bini_folder_perspective(tmp_path, capsys, bits, sphere_k):
    import monohead

    normals, mask, K = _bini_folder(tmp_path / "obj", bits, sphere_k)
    out = tmp_path / "z.npy"
    mesh = tmp_path / "m.ply"
    argv = ["integrate", str(tmp_path / "obj"), "-o", str(out), "--mesh", str(mesh), "--json", "--tol", "1e-10"]
    assert cli.main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["camera"] == "perspective"
    assert r["unknowns"] == mask.sum()
    z = np.load(out)
    # BiNI's decoding of the quantised PNG, then the perspective solve with K in OpenCV form
    top = 255.0 if bits == 8 else 65535.0
    from monohead.geometry.normal_maps import normals_to_image

    decoded = normals_to_image(normals, mask, bits) * (2.0 / top) - 1.0
    ref = monohead.integrate(np.where(mask[..., None], decoded, 0.0), mask=mask, K=K, tol=1e-10)
    np.testing.assert_allclose(z[mask], ref[mask], rtol=1e-7)
    m = __import__("trimesh").load(mesh, process=False)
    assert len(m.vertices) == mask.sum()
    assert np.all(m.vertices[:, 2] < 0)


def test_integrate_npz_with_K_and_orthographic_override(tmp_path, capsys, sphere_k):
    import monohead

    normals, _, mask, K = sphere_k
    src = tmp_path / "in.npz"
    np.savez(src, normal=normals, mask=mask, K=K)
    out = tmp_path / "z.npy"
    assert cli.main(["integrate", str(src), "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["camera"] == "perspective"
    np.testing.assert_allclose(np.load(out)[mask], monohead.integrate(normals, mask=mask, K=K)[mask], rtol=1e-5)
    assert cli.main(["integrate", str(src), "-o", str(out), "--orthographic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["camera"] == "orthographic"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no_png", "has no normal_map.png"),
        ("bad_K", "K.txt (BiNI's intrinsics): K_bini must be finite"),
        ("bad_png", "cannot read"),
    ],
)
def test_integrate_bini_folder_errors(tmp_path, capsys, setup, message, sphere_k):
    folder = tmp_path / "obj"
    _bini_folder(folder, 8, sphere_k)
    if setup == "no_png":
        (folder / "normal_map.png").unlink()
    elif setup == "bad_K":
        (folder / "K.txt").write_text("1 0 nan\n0 1 0\n0 0 1\n")
    else:
        (folder / "normal_map.png").write_bytes(b"not a png")
    out = tmp_path / "z.npy"
    assert cli.main(["integrate", str(folder), "-o", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_read_bini_folder_decodes_the_layout(tmp_path, sphere_k):
    from monohead.geometry.normal_maps import normals_to_image
    from monohead.integration.perspective import read_bini_folder

    normals, mask, K = _bini_folder(tmp_path / "obj", 16, sphere_k)
    got = read_bini_folder(tmp_path / "obj")
    assert sorted(got) == ["K", "format", "mask", "normals"]
    assert got["format"] == "BiNI folder (16-bit normal_map.png)"
    np.testing.assert_array_equal(got["mask"], mask)
    np.testing.assert_allclose(got["K"], K, rtol=1e-12)
    decoded = normals_to_image(normals, mask, 16) * (2.0 / 65535.0) - 1.0
    np.testing.assert_array_equal(got["normals"][mask], decoded[mask])
    assert not got["normals"][~mask].any()
    (tmp_path / "obj" / "mask.png").unlink()  # default mask: the non-black normal pixels
    np.testing.assert_array_equal(read_bini_folder(tmp_path / "obj")["mask"], mask)
    with pytest.raises(FileNotFoundError, match="has no normal_map.png"):
        read_bini_folder(tmp_path)


def test_integrate_sharpness_flag(tmp_path, capsys, sphere_k):
    normals, mask, K = _bini_folder(tmp_path / "obj", 16, sphere_k)
    out = tmp_path / "z.npy"
    assert cli.main(["integrate", str(tmp_path / "obj"), "-o", str(out), "--sharpness", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["sharpness"] == 2.0
    assert r["reweightings"] >= 1
    assert cli.main(["integrate", str(tmp_path / "obj"), "-o", str(out), "--sharpness", "-1"]) == 2
    assert "sharpness must be None or a finite number >= 0" in capsys.readouterr().err


def test_integrate_bini_folder_with_prior(tmp_path, capsys, sphere_k):
    _, z, mask, _ = sphere_k
    folder = tmp_path / "obj"
    _bini_folder(folder, 16, sphere_k)
    np.save(folder / "prior_depth.npy", np.where(mask, 1500.0 * z, np.nan))
    out = tmp_path / "z.npy"
    assert cli.main(["integrate", str(folder), "-o", str(out), "--prior-weight", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["prior"] is True
    depth = np.load(out)
    assert np.nanmedian(depth / z) == pytest.approx(1500.0, rel=1e-2)  # the prior's scale (mm)
    assert cli.main(["integrate", str(folder), "-o", str(out), "--prior-weight", "-1"]) == 2
    assert "prior_weight must be a finite number >= 0" in capsys.readouterr().err


class _Clock:
    def __init__(self, *times):
        self.times = iter(times)

    def __call__(self):
        return next(self.times)


def test_progress_redraws_in_place_on_a_terminal_and_writes_lines_to_a_log(capsys):
    # A log (not a terminal): the first update, every 50 % step and the last one.
    p = cli._Progress(log_every=None, log_percent=50, label="synth ")
    for done in range(5):
        p(done, 4, "samples")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "synth [........................] 0/4 samples",
        "synth [############............] 2/4 samples",
        "synth [########################] 4/4 samples",
    ]
    # A terminal: redrawn in place at most every 0.5 s, a new topic and the last update always
    # shown, the last one ends the line; a note first ends a line left open.
    p = cli._Progress(tty_every=0.5)
    p.tty = True
    p.clock = _Clock(0.0, 0.1, 0.7, 0.8, 0.9, 1.0)
    p(0, 2, "sweep", topic="sweep")  # shown
    p(1, 2, "sweep", topic="sweep")  # 0.1 s later: skipped
    p(1, 2, "sweep", topic="sweep")  # 0.7 s: shown
    p(0, 3, "table2", topic="table2")  # a new topic: shown at once
    p.note("a message")
    p(3, 3, "table2", topic="table2")  # the last: shown, line ended
    p.close()  # nothing open: nothing written
    err = capsys.readouterr().err
    bar = "\r[{}] {}/{} {}\x1b[K"
    assert err == (
        bar.format("." * 24, 0, 2, "sweep")
        + bar.format("#" * 12 + "." * 12, 1, 2, "sweep")
        + bar.format("." * 24, 0, 3, "table2")
        + "\na message\n"
        + bar.format("#" * 24, 3, 3, "table2")
        + "\n"
    )


def test_train_progress_in_a_log(capsys):
    show = cli._train_progress()
    show({"event": "start", "device": "cpu", "world": 1, "amp": False, "step": 0, "steps": 3})
    step = {"event": "step", "steps": 3, "loss_l2": 0.5, "wasserstein": 0.25, "images_per_second": 10.0,
            "data_seconds": 0.001, "step_seconds": 0.002}  # fmt: skip
    show({**step, "step": 1})
    show({**step, "step": 2})  # within the minute: no line
    metrics = {"angular": {"mean": 12.5}, "mask_precision": 90.0, "mask_recall": 95.0}
    show({"event": "val", "step": 3, "metrics": metrics})
    show({**step, "step": 3})  # the last step: always
    show({"event": "done"})
    assert capsys.readouterr().err.splitlines() == [
        "training on cpu (1 process(es), bf16 autocast off), from step 0 to 3",
        "[########................] 1/3 L2 0.5000 W-dist +0.250 10.0 img/s (data 1 ms, step 2 ms)",
        "step 3 | val 12.50 deg mean, mask P 90.0% R 95.0%",
        "[########################] 3/3 L2 0.5000 W-dist +0.250 10.0 img/s (data 1 ms, step 2 ms)"
        " | val 12.50 deg mean, mask P 90.0% R 95.0%",
    ]


def test_json_into_a_closed_pipe_is_quiet(tmp_path):
    """`monohead ... --json | head -c 1`: the reader leaves early; the command still succeeds,
    writes its file and prints no BrokenPipeError traceback."""
    out = tmp_path / "d.npy"
    with subprocess.Popen(
        [sys.executable, "-m", "monohead", "integrate", "--example", "-o", str(out), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as p:
        p.stdout.close()  # nobody reads: the JSON line meets a closed pipe
        err = p.stderr.read().decode()
        rc = p.wait(timeout=120)
    assert rc == 0, err
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert out.exists()
