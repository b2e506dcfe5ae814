"""monohead.model training: overfitting, exact resume, DDP under torchrun, the `monohead train` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from monohead import cli, model
from monohead.model._toy import ToyHeads
from monohead.model.train import CHECKPOINT, load_checkpoint, read_log
from tests._helpers import fake_set

# One thread: on a small machine shared with other busy processes, two threads per process
# wait on each other at every parallel region.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "error"}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny(**kw) -> model.TrainConfig:
    base = dict(
        width=4, depth=4, batch_size=4, steps=6, val_count=4, val_every=2, ckpt_every=100, log_every=1, figure_count=2
    )
    return model.TrainConfig(**{**base, **kw})


def test_tiny_model_overfits_a_handful_of_samples(tmp_path):
    ds = ToyHeads(4, 32, seed=0)
    cfg = model.TrainConfig(
        width=8, depth=5, batch_size=4, lr=2e-3, dropout=0.0, blur_p=0.0, noise_p=0.0,
        steps=100, val_count=0, log_every=5, ckpt_every=1000,
    )  # fmt: skip
    model.train(ds, tmp_path, cfg)
    l2 = [r["loss_l2"] for r in read_log(tmp_path) if r["kind"] == "train"]
    assert len(l2) == 20
    assert l2[-1] < l2[0] / 10, l2


def _states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def test_resume_continues_the_same_run(tmp_path):
    ds = ToyHeads(20, 32, seed=1)
    full = model.train(ds, tmp_path / "full", tiny())
    # interrupted twice: once by reaching a smaller step count, once by should_stop after a step
    model.train(ds, tmp_path / "cut", tiny(steps=3))
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 1

    s = model.train(ds, tmp_path / "cut", tiny(), should_stop=stop)
    assert s["stopped"]
    assert s["step"] == 4
    resumed = model.train(ds, tmp_path / "cut", tiny())
    assert resumed["step"] == full["step"] == 6
    assert resumed["images_seen"] == full["images_seen"] == 24
    a, b = load_checkpoint(tmp_path / "full" / CHECKPOINT), load_checkpoint(tmp_path / "cut" / CHECKPOINT)
    assert a["step"] == b["step"] == 6
    for key in ("generator", "critic"):
        _states_equal(a[key], b[key])
    for key in ("opt_g", "opt_d"):
        assert a[key]["param_groups"] == b[key]["param_groups"]
        for i, st in a[key]["state"].items():
            for name, t in st.items():
                assert torch.equal(t, b[key]["state"][i][name]), (key, i, name)
    assert a["best"] == b["best"]
    # the log has each training step once, with the uninterrupted run's losses (a session also
    # validates at its last step: step 3 here)
    la, lb = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    ta, tb = ([r for r in log if r["kind"] == "train"] for log in (la, lb))
    assert [r["step"] for r in ta] == [r["step"] for r in tb] == [1, 2, 3, 4, 5, 6]
    assert [r["loss_l2"] for r in ta] == [r["loss_l2"] for r in tb]
    assert [r["step"] for r in lb if r["kind"] == "val"] == [2, 3, 4, 6]
    for name in ("curves.png", "val_predictions.png", "config.json"):
        assert (tmp_path / "cut" / name).stat().st_size > 0
    # nothing to do once the run is complete
    again = model.train(ds, tmp_path / "cut", tiny())
    assert again["step"] == 6
    assert again["images_seen"] == 24
    assert not again["stopped"]


def test_resume_refuses_a_different_run_definition(tmp_path):
    ds = ToyHeads(12, 32)
    model.train(ds, tmp_path, tiny(steps=1))
    with pytest.raises(ValueError, match="cannot resume with a different run definition \\(width: run has 4, asked 8"):
        model.train(ds, tmp_path, tiny(width=8))


def test_train_config_validation(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        model.TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="amp must be"):
        model.TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="unknown training option"):
        model.TrainConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="blur_p must be in"):
        model.TrainConfig(blur_p=2.0)
    with pytest.raises(ValueError, match="do not fit depth=6"):
        model.train(ToyHeads(12, 16), tmp_path / "run", tiny(depth=6))
    assert not (tmp_path / "run").exists()  # a refused call leaves no folder behind


def _run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monohead", *args], env=ENV, capture_output=True, text=True, timeout=timeout
    )


def test_torchrun_two_cpu_processes_gloo(tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "monohead", "train", "--toy", "24", "--out", str(run), "--width", "4", "--depth", "5",
        "--batch-size", "4", "--steps", "3", "--val-count", "4", "--val-every", "3", "--ema-decay", "0.9", "--json",
    ]  # fmt: skip
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=150)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 alone reports
    r = lines[0]
    assert r["world"] == 2
    assert r["step"] == 3
    assert r["images_seen"] == 12
    ck = load_checkpoint(run / CHECKPOINT)
    assert ck["step"] == 3
    assert ck["config"]["batch_size"] == 4
    assert r["last_val"]["count"] == 4
    # rank 0 keeps the EMA of the unwrapped generator (no "module." prefix of the DDP wrapper)
    assert ck["ema"]["since_step"] == 0
    assert ck["ema"]["state_dict"].keys() == ck["generator"].keys()
    assert r["last_val"]["generator"] == "ema"


def test_cli_train_eval_export(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["train", "--toy", "16", "--out", str(run)]
    assert cli.main([*common, "--width", "4", "--depth", "5", "--batch-size", "4", "--steps", "2", "--val-count", "4",
                     "--val-every", "2", "--threads", "1", "--json"]) == 0  # fmt: skip
    r = json.loads(capsys.readouterr().out)
    assert r["step"] == 2
    assert r["last_val"]["count"] == 4
    assert r["images_per_second"] > 0
    # resume with only the new length: the run's definition comes from the checkpoint
    assert cli.main([*common, "--steps", "3"]) == 0
    err = capsys.readouterr().err
    assert "from step 2 to 3" in err
    assert "at step 3/3" in err
    assert cli.main([*common, "--width", "8", "--steps", "4"]) == 2
    assert "cannot resume with a different run definition" in capsys.readouterr().err
    # held-out evaluation and export
    metrics = tmp_path / "m.json"
    assert cli.main(["train", "--toy", "6", "--out", str(run), "--eval-only", "--metrics", str(metrics), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    saved = json.loads(metrics.read_text())
    assert saved["count"] == 6
    assert saved["step"] == 3
    assert set(saved["angular"]) >= {"mean", "std", "under_10", "under_20", "under_30"}
    assert r["metrics_file"] == str(metrics)
    dest = tmp_path / "weights"
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"data_generator": "toy heads"}))
    assert (
        cli.main(["train", "--toy", "4", "--out", str(run), "--export-weights", str(dest), "--card", f"@{card}"]) == 0
    )
    assert "weights (float" in capsys.readouterr().err
    written = json.loads((dest / "model_card.json").read_text())
    assert written["data_generator"] == "toy heads"
    assert written["metrics_items"] == 4
    assert model.load_generator(dest).info["kind"] == "weights"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--out", "RUN"], "give the training data: --data DIR"),
        (["train", "--out", "RUN", "--data", "nowhere"], "data folder does not exist: nowhere"),
        (["train", "--out", "RUN", "--eval-only", "--toy", "4"], "no run or checkpoint at RUN"),
        (["train", "--out", "RUN", "--toy", "8", "--batch-size", "0"], "batch_size must be an integer >= 1"),
        (
            ["train", "--out", "RUN", "--toy", "4", "--export-weights", "W", "--checkpoint", "x.pt"],
            "no run or checkpoint at x.pt",
        ),
    ],
)
def test_cli_train_errors_exit_2(argv, message, cli_error):
    assert message in cli_error(argv)


def test_cli_data_reader_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "synth" and level == 1 or name == "monohead.synth":
            raise ImportError("no module named monohead.synth")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert cli.main(["train", "--out", str(tmp_path / "r"), "--data", str(tmp_path)]) == 2
    assert "needs monohead.synth.SyntheticHeads, which could not be imported" in capsys.readouterr().err


@pytest.mark.parametrize(("workers", "val_every", "data"), [(0, 100000, "toy"), (1, 100000, "toy"), (1, 2, "shards")])
def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path, workers, val_every, data):
    """SIGTERM to the whole process group (as Ctrl-C or ``kill -- -PGID`` do), loader workers
    included, stops the run cleanly with a checkpoint, and the process exits (after a validation
    too: the workers ignore SIGTERM, so one left to the interpreter's exit hung it for ever)."""
    run = tmp_path / "run"
    source = ["--toy", "16"] if data == "toy" else ["--data", str(fake_set(tmp_path / "data", count=16))]
    cmd = [sys.executable, "-m", "monohead", "train", *source, "--out", str(run), "--width", "4", "--depth", "5"]
    cmd += ["--batch-size", "4", "--steps", "100000", "--val-count", "4", "--val-every", str(val_every)]
    cmd += ["--ckpt-every", "100000", "--workers", str(workers)]
    p = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        kind = "val" if val_every < 100000 else "train"
        while time.monotonic() < deadline and not any(r["kind"] == kind for r in read_log(run)):
            time.sleep(0.2)
        os.killpg(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err[-2000:]
    assert "stopped at step" in err
    assert "run the same command again to resume" in err
    step = load_checkpoint(run / CHECKPOINT)["step"]
    assert step >= 1
    if data == "toy":
        resumed_on = ToyHeads(16, 64)
    else:
        from monohead.synth import SyntheticHeads

        resumed_on = SyntheticHeads(tmp_path / "data")
    r = model.train(
        resumed_on,
        run,
        model.TrainConfig.from_dict({**load_checkpoint(run / CHECKPOINT)["config"], "steps": step + 1}),
    )
    assert r["step"] == step + 1
    assert not r["stopped"]


def test_concat_data_reads_parts_as_one():
    from monohead.model.data import ConcatData

    a, b = ToyHeads(3, 32, seed=1), ToyHeads(2, 32, seed=2)
    c = ConcatData([a, b])
    assert len(c) == 5
    np.testing.assert_array_equal(c[2]["image"], a[2]["image"])
    np.testing.assert_array_equal(c[3]["image"], b[0]["image"])
    np.testing.assert_array_equal(c[-1]["image"], b[1]["image"])
    assert [p["count"] for p in c.meta["parts"]] == [3, 2]
    with pytest.raises(IndexError, match="index 5 is out of range for 5 items"):
        c[5]
    with pytest.raises(ValueError, match="parts must hold at least one data set"):
        ConcatData([])
    with pytest.raises(TypeError, match=r"parts\[1\] must be an indexable data set"):
        ConcatData([a, 3])


def test_cli_train_on_several_data_folders(tmp_path, capsys):
    from monohead.synth import generate

    folders = []
    for seed in (21, 22):
        folders.append(str(tmp_path / f"d{seed}"))
        generate(folders[-1], 6, seed=seed, size=32, spp=1, shard_size=3, preview=False)
    run = tmp_path / "run"
    argv = ["train", "--data", *folders, "--out", str(run), "--width", "4", "--depth", "4", "--batch-size", "4",
            "--steps", "2", "--val-count", "4", "--val-every", "2", "--json"]  # fmt: skip
    assert cli.main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["step"] == 2
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["count"] == 12
    assert [p["meta"]["seed"] for p in data["meta"]["parts"]] == [21, 22]


def test_learning_rate_decays_linearly_to_zero(tmp_path):
    from monohead.model.train import learning_rate

    cfg = tiny(steps=10, lr=1e-3, lr_decay_from=6)
    assert [learning_rate(cfg, k) for k in (0, 5, 6)] == [1e-3, 1e-3, 1e-3]
    assert learning_rate(cfg, 8) == pytest.approx(0.5e-3)
    assert learning_rate(cfg, 9) == pytest.approx(0.25e-3)
    assert learning_rate(tiny(steps=10, lr=1e-3), 9) == 1e-3  # no decay by default
    model.train(ToyHeads(8, 32, seed=3), tmp_path, cfg)
    logged = {r["step"]: r["lr"] for r in read_log(tmp_path) if r["kind"] == "train"}
    assert set(logged) == set(range(1, 11))
    for step, lr in logged.items():  # the update that made step k ran at learning_rate(k - 1)
        assert lr == pytest.approx(learning_rate(cfg, step - 1))
    with pytest.raises(ValueError, match="lr_decay_from must be None or an integer >= 0; got -1"):
        tiny(lr_decay_from=-1)


def test_run_config_resumes_fine_tunes_or_starts_afresh(tmp_path):
    run_config = model.run_config
    # a new run: the options over the defaults (None means not given)
    assert run_config(tmp_path / "new", {"width": 8, "steps": None}) == model.TrainConfig(width=8)
    # a resume: the options over the run's saved configuration
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"config": model.TrainConfig(width=4, depth=4, lr=3e-4).to_dict()}, run / CHECKPOINT)
    cfg = run_config(run, {"steps": 7}, init=tmp_path / "ignored on a resume")
    assert (cfg.width, cfg.depth, cfg.lr, cfg.steps) == (4, 4, 3e-4, 7)
    # fine-tuning: the architecture of the init weights, unless given
    src = model.load_generator(model.WEIGHTS_DIR)
    cfg = run_config(tmp_path / "ft", {"dropout": 0.25}, init=model.WEIGHTS_DIR)
    assert (cfg.width, cfg.depth, cfg.dropout) == (src.config["width"], src.config["depth"], 0.25)
    assert cfg.w_scale == pytest.approx(src.w_scale)
    with pytest.raises(FileNotFoundError, match="init: no weights, checkpoint or run at"):
        run_config(tmp_path / "ft", {}, init=tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown training option"):
        run_config(run, {"widht": 3})


def test_average_generators_is_the_mean_of_the_members(tmp_path, capsys):
    from monohead.model.files import average_generators, read_generator

    run = tmp_path / "run"
    common = ["train", "--toy", "16", "--out", str(run), "--threads", "1"]
    assert cli.main([*common, "--width", "4", "--depth", "5", "--batch-size", "4", "--steps", "2", "--val-count", "4",
                     "--val-every", "2"]) == 0  # fmt: skip
    first = tmp_path / "step2.pt"
    first.write_bytes((run / CHECKPOINT).read_bytes())
    assert cli.main([*common, "--steps", "4"]) == 0
    capsys.readouterr()
    cfg, avg, info = average_generators([first, run / CHECKPOINT])
    _, a, _ = read_generator(first)
    _, b, info_b = read_generator(run / CHECKPOINT)
    moved = 0
    for k, v in avg.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (a[k].float() + b[k].float()) / 2)
            moved += int(not torch.equal(a[k], b[k]))
        else:
            assert torch.equal(v, b[k])  # integer buffers: the last member's
    assert moved > 0  # the two members differ, so the test can tell an average from a copy
    assert info["kind"] == "average"
    assert info["step"] == info_b["step"] == 4
    assert [m["step"] for m in info["members"]] == [2, 4]
    assert all(len(m["sha256"]) == 64 for m in info["members"])
    # the same through read_generator / load_generator with a list
    assert read_generator([first, run / CHECKPOINT])[2]["members"] == info["members"]
    loaded = model.load_generator([first, run / CHECKPOINT]).state_dict()
    for k, v in avg.items():
        torch.testing.assert_close(loaded[k], v)

    # the CLI: several --checkpoint values are averaged, and the card lists them
    dest = tmp_path / "soup"
    assert cli.main(["train", "--toy", "4", "--out", str(run), "--export-weights", str(dest),
                     "--checkpoint", str(first), str(run / CHECKPOINT), "--json"]) == 0  # fmt: skip
    card = json.loads((dest / "model_card.json").read_text())
    assert [m["source"] for m in card["training"]["members"]] == [str(first), str(run / CHECKPOINT)]
    exported = model.load_generator(dest).state_dict()
    for k, v in avg.items():
        if v.is_floating_point():
            torch.testing.assert_close(exported[k], v.half().float())
    metrics = tmp_path / "m.json"
    assert cli.main(["train", "--toy", "4", "--out", str(run), "--eval-only", "--metrics", str(metrics),
                     "--checkpoint", str(first), str(run / CHECKPOINT)]) == 0  # fmt: skip
    assert json.loads(metrics.read_text())["kind"] == "average"


def test_average_generators_refuses_mismatched_members(tmp_path, capsys):
    from monohead.model.files import average_generators

    runs = []
    for width in (4, 8):
        run = tmp_path / f"w{width}"
        assert cli.main(["train", "--toy", "8", "--out", str(run), "--width", str(width), "--depth", "5",
                         "--batch-size", "4", "--steps", "1", "--val-count", "4", "--threads", "1"]) == 0  # fmt: skip
        runs.append(run)
    with pytest.raises(ValueError, match="at least two generators to average, got 1"):
        average_generators([runs[0]])
    with pytest.raises(ValueError, match=r"cannot average .*w8.*architecture"):
        average_generators(runs)
    capsys.readouterr()
    assert cli.main(["train", "--toy", "4", "--out", str(runs[0]), "--export-weights", str(tmp_path / "x"),
                     "--checkpoint", str(runs[0]), str(runs[1])]) == 2  # fmt: skip
    assert "architecture" in capsys.readouterr().err
    assert not (tmp_path / "x" / "unet.pt").exists()
