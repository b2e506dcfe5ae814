"""monohead.synth.dataset and ``monohead synth``: shards, manifest, resume, Dask, the reader."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from monohead import cli
from monohead.geometry import decode_png
from monohead.synth import SyntheticHeads, dataset, generate, regenerate

SETTINGS = {"size": 32, "spp": 2, "shard_size": 2, "seed": 11}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A complete, uninterrupted data set of 5 samples in 3 shards."""
    root = tmp_path_factory.mktemp("ref")
    seen = []
    r = generate(root, 5, progress=lambda d, t: seen.append((d, t)), **SETTINGS)
    assert seen[0] == (0, 5)
    assert seen[-1] == (5, 5)
    assert len(seen) == 6
    assert r["generated"] == 5
    assert r["skipped"] == 0
    assert r["shards"] == 3
    return root


def _assert_same(a, b) -> None:
    da, db = SyntheticHeads(a), SyntheticHeads(b)
    assert len(da) == len(db)
    for i in range(len(da)):
        x, y = da[i], db[i]
        for key in dataset.ARRAYS:
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{key} of sample {i}")
        assert x["params"] == y["params"]


def test_layout_manifest_and_preview(reference):
    m = json.loads((reference / "manifest.json").read_text())
    assert m["format"] == "monohead-synth"
    assert m["seed"] == 11
    assert m["count"] == 5
    assert m["num_shards"] == 3
    assert set(m["versions"]) >= {"monohead", "mitsuba", "numpy"}
    assert m["settings"]["size"] == [32, 32]
    assert sorted(p.name for p in (reference / "shards").iterdir()) == ["shard-00000", "shard-00001", "shard-00002"]
    assert np.load(reference / "shards" / "shard-00002" / "image.npy").shape == (1, 32, 32, 3)
    sheet = decode_png((reference / "preview.png").read_bytes())
    assert sheet.shape[0] == 3 * 32 + 8
    assert sheet.shape[2] == 3


def test_reader_items(reference):
    ds = SyntheticHeads(reference)
    assert len(ds) == 5
    it = ds[-1]
    assert it["index"] == 4
    assert it["params"]["index"] == 4
    assert it["params"]["seed"] == 11
    assert it["image"].dtype == np.uint8
    assert it["image"].shape == (32, 32, 3)
    assert it["normals"].dtype == np.float32
    assert it["normals"].shape == (32, 32, 3)
    assert it["W"].dtype == np.float32
    assert it["depth"].dtype == np.float32
    assert it["mask"].dtype == bool
    m = it["mask"]
    assert np.isnan(it["depth"][~m]).all()
    assert (it["normals"][m][:, 2] > 0).all()
    with pytest.raises(IndexError, match="out of range"):
        ds[5]
    with pytest.raises(TypeError, match="index must be an integer"):
        ds["a"]
    # A map-style torch Dataset.
    import torch.utils.data

    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=SyntheticHeads.collate)))
    assert tuple(batch["image"].shape) == (2, 32, 32, 3)
    assert tuple(batch["W"].shape) == (2, 32, 32)
    assert len(batch["params"]) == 2


def test_regenerate_bit_for_bit(reference):
    ds = SyntheticHeads(reference)
    again = regenerate(reference, 3)
    for key in dataset.ARRAYS:
        np.testing.assert_array_equal(np.asarray(again[key], dataset._DTYPES[key]), ds[3][key], err_msg=key)


def test_resume_after_interruption(tmp_path, reference):
    root = tmp_path / "run"

    class Killed(Exception):
        pass

    def kill_after_three(done, total):
        if done >= 3:
            raise Killed

    with pytest.raises(Killed):
        generate(root, 5, progress=kill_after_three, **SETTINGS)
    shards = sorted(p.name for p in (root / "shards").iterdir())
    # Shard 1 was half made: no shard folder of it, but its finished sample (2) is kept.
    assert shards == [".shard-00001.partial", "shard-00000"]
    assert [p.name for p in (root / "shards" / ".shard-00001.partial").iterdir()] == ["sample-00000002.npz"]
    # A killed process cannot clean up: leave a stale temporary shard folder behind.
    (root / "shards" / ".shard-00001.tmp-999-1").mkdir()
    (root / "shards" / ".shard-00001.tmp-999-1" / "image.npy").write_bytes(b"partial")
    r = generate(root, 5, **SETTINGS)
    assert r["skipped"] == 3
    assert r["generated"] == 2
    assert not list((root / "shards").glob(".*"))
    _assert_same(root, reference)


def test_split_across_machines(tmp_path, reference):
    root = tmp_path / "split"
    a = generate(root, 5, shard="0/2", preview=False, **SETTINGS)
    assert a["shards"] == 2
    assert a["generated"] == 3
    with pytest.raises(ValueError, match="incomplete: 1 of 3 shards missing"):
        SyntheticHeads(root)
    assert len(SyntheticHeads(root, partial=True)) == 3
    b = generate(root, 5, shard="1/2", **SETTINGS)
    assert b["generated"] == 2
    _assert_same(root, reference)


def test_dask_local_cluster(tmp_path, reference, caplog):
    import logging

    import distributed

    caplog.set_level(logging.WARNING, logger="distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        seen = []
        r = generate(
            tmp_path / "dask", 5, scheduler=cluster.scheduler_address, progress=lambda d, t: seen.append(d), **SETTINGS
        )
    assert r["generated"] == 5
    assert seen[-1] == 5
    _assert_same(tmp_path / "dask", reference)


def test_threads_of_one_process_render_one_at_a_time(tmp_path, reference, monkeypatch, caplog):
    """Two in-process Dask worker threads share the cached generator: its ``sample`` (Mitsuba
    scenes built, rendered and freed) must never run in both at once, and runs on one thread
    of the process whichever thread asks (dataset._render)."""
    import logging
    import threading

    import distributed

    from monohead.synth.generator import Generator

    original = Generator.sample
    state = {"active": 0, "most": 0, "calls": 0, "threads": set()}
    guard = threading.Lock()

    def watched(self, *args, **kwargs):
        with guard:
            state["active"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["active"])
            state["threads"].add((threading.get_ident(), threading.current_thread().name))
        try:
            time.sleep(0.05)  # widen the window in which a second thread could enter
            return original(self, *args, **kwargs)
        finally:
            with guard:
                state["active"] -= 1

    monkeypatch.setattr(Generator, "sample", watched)
    caplog.set_level(logging.WARNING, logger="distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        r = generate(tmp_path / "dask", 5, scheduler=cluster.scheduler_address, preview=False, **SETTINGS)
    assert r["generated"] == 5
    assert state["calls"] == 5
    assert state["most"] == 1
    # ... and all on the process's one render thread, not on Dask's worker threads (Dr.Jit
    # from several threads crashed or hung now and then even one at a time).
    (ident, name), *others = state["threads"]
    assert not others, state["threads"]
    assert name.startswith("monohead-render"), name
    # A plain run and regenerate() render there too.
    generate(tmp_path / "plain", 3, preview=False, **SETTINGS)
    regenerate(tmp_path / "plain", 2)
    assert state["calls"] == 9
    assert state["threads"] == {(ident, name)}
    _assert_same(tmp_path / "dask", reference)


def test_bad_arguments(tmp_path, reference):
    with pytest.raises(ValueError, match="count must be at least 1; got 0"):
        generate(tmp_path / "a", 0)
    with pytest.raises(ValueError, match="count must be at least 1; got -3"):
        generate(tmp_path / "a", -3)
    with pytest.raises(TypeError, match="count must be an integer; got str"):
        generate(tmp_path / "a", "3")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        generate(tmp_path / "a", 3, seed=-1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        generate(blocker, 3)
    with pytest.raises(ValueError, match="cannot write to output folder"):
        generate(blocker / "sub", 3)
    with pytest.raises(ValueError, match="shard must look like 'i/n'"):
        generate(tmp_path / "a", 3, shard="2")
    with pytest.raises(ValueError, match="needs 0 <= i < n; got 2/2"):
        generate(tmp_path / "a", 3, shard="2/2")
    with pytest.raises(ValueError, match="not an ICT-FaceKit FaceXModel folder"):
        generate(tmp_path / "a", 3, head_model=tmp_path)
    with pytest.raises(ValueError, match=r"holds a different data set \(seed: 11 there, 12 asked\)"):
        generate(reference, 5, **{**SETTINGS, "seed": 12})
    with pytest.raises(ValueError, match="size must be at least 16"):
        generate(tmp_path / "a", 3, size=8)
    with pytest.raises(ValueError, match="not a monohead synthetic data set"):
        SyntheticHeads(tmp_path)
    with pytest.raises(ValueError, match="cannot connect to the Dask scheduler"):
        generate(tmp_path / "b", 1, size=16, spp=1, scheduler="nosuchprotocol://127.0.0.1:9")


def test_cli(tmp_path, capsys, reference):
    out = tmp_path / "c"
    args = [
        "synth",
        "--count",
        "2",
        "--out",
        str(out),
        "--seed",
        "11",
        "--size",
        "32",
        "--spp",
        "2",
        "--shard-size",
        "2",
    ]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "synth [" in err
    assert "2 samples made" in err
    assert "preview ->" in err
    assert cli.main([*args, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["skipped"] == 2
    assert r["generated"] == 0
    d = SyntheticHeads(out)
    np.testing.assert_array_equal(d[1]["image"], SyntheticHeads(reference)[1]["image"])
    for bad, msg in (
        (["--count", "0"], "count must be at least 1"),
        (["--count", "-1"], "count must be at least 1"),
        (["--count", "2", "--size", "32", "--shard", "x"], "shard must look like"),
    ):
        assert cli.main(["synth", "--out", str(tmp_path / "d"), *bad]) == 2
        assert msg in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert cli.main(["synth", "--count", "1", "--out", str(tmp_path / "f")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert cli.main(["synth", "--count", "1", "--out", str(tmp_path / "e"), "--head-model", str(tmp_path)]) == 2
    assert "not an ICT-FaceKit FaceXModel folder" in capsys.readouterr().err


def test_resume_a_set_made_before_the_sampler_setting(tmp_path, reference, capsys):
    """A manifest without ``sampler`` was rendered with Mitsuba's independent sampler: it resumes
    with ``sampler="independent"`` (CLI ``--sampler independent``) and refuses any other."""
    import shutil

    root = tmp_path / "old"
    shutil.copytree(reference, root)
    mpath = root / "manifest.json"
    man = json.loads(mpath.read_text())
    man["settings"]["sampler"] = "independent"
    man["settings"] = {k: v for k, v in man["settings"].items() if k != "sampler"}
    mpath.write_text(json.dumps(man))
    shutil.rmtree(root / "shards" / sorted(p.name for p in (root / "shards").iterdir())[-1])
    with pytest.raises(ValueError, match=r"holds a different data set \(settings:"):
        generate(root, 5, **SETTINGS)  # multijitter asked, independent there
    args = ["synth", "--count", "5", "--out", str(root), "--seed", "11", "--size", "32", "--spp", "2",
            "--shard-size", "2", "--json"]  # fmt: skip
    assert cli.main([*args, "--sampler", "multijitter"]) == 2
    assert "holds a different data set" in capsys.readouterr().err
    assert cli.main([*args, "--sampler", "independent"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["generated"] == 1
    assert r["skipped"] == 4
    assert len(SyntheticHeads(root)) == 5


def test_resume_compares_only_the_packages_that_render(tmp_path, reference):
    """A data set whose manifest records fewer or other non-rendering packages (one made before
    Python and torch were recorded) resumes; a different version of a rendering package refuses."""
    import shutil

    from monohead.synth.dataset import RENDER_PACKAGES

    assert {"monohead", "mitsuba", "drjit", "numpy"} <= set(RENDER_PACKAGES)
    root = tmp_path / "older"
    shutil.copytree(reference, root)
    mpath = root / "manifest.json"
    man = json.loads(mpath.read_text())
    man["versions"] = {k: v for k, v in man["versions"].items() if k in RENDER_PACKAGES}
    man["versions"]["an-unrelated-package"] = "0.0.1"
    mpath.write_text(json.dumps(man))
    last = sorted(p.name for p in (root / "shards").iterdir())[-1]
    shutil.rmtree(root / "shards" / last)
    r = generate(root, 5, **SETTINGS)
    assert r["generated"] == 1
    assert r["skipped"] == 4
    _assert_same(root, reference)

    man["versions"]["mitsuba"] = "0.0.0"
    mpath.write_text(json.dumps(man))
    with pytest.raises(ValueError, match=r"other package versions \(mitsuba 0\.0\.0 there"):
        generate(root, 5, **SETTINGS)
