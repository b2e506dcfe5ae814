"""The EMA of the generator in monohead.model training: closed form, exact resume, adding it on a
resume, selection of best.pt, export and the CLI."""

from __future__ import annotations

import importlib
import json
import shutil

import pytest
import torch
from torch import nn

from monohead import cli, model
from monohead.model._toy import ToyHeads
from monohead.model.ema import GeneratorEMA, ema_weight
from monohead.model.files import BEST, CHECKPOINT, average_generators, load_checkpoint
from monohead.model.train import read_log
from tests.test_model_train import _states_equal, tiny

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _closed_form(states: list[dict], decay: float) -> dict:
    """The EMA of ``states[0], states[1], ...`` (the module before the first update, then after each
    update), in float64: ``e_0 = s_0``, ``e_{n+1} = d_n e_n + (1 - d_n) s_{n+1}``."""
    ema = {k: v.double() if v.is_floating_point() else v.clone() for k, v in states[0].items()}
    for n, s in enumerate(states[1:]):
        d = min(decay, (1 + n) / (10 + n))
        ema = {k: d * e + (1 - d) * s[k].double() if e.is_floating_point() else s[k].clone() for k, e in ema.items()}
    return ema


def _close(ema: dict, ref: dict) -> None:
    assert ema.keys() == ref.keys()
    for k in ema:
        if ema[k].is_floating_point():
            assert ema[k].dtype == torch.float32, k
            torch.testing.assert_close(ema[k].double(), ref[k], rtol=1e-6, atol=1e-7, msg=k)
        else:
            assert torch.equal(ema[k], ref[k]), k


def test_ema_weight_warms_up_then_holds_the_decay():
    assert ema_weight(0.999, 0) == pytest.approx(0.1)
    assert ema_weight(0.999, 10) == pytest.approx(11 / 20)
    assert ema_weight(0.999, 10**6) == 0.999
    assert ema_weight(0.5, 100) == 0.5


def test_ema_of_a_module_is_the_closed_form():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = GeneratorEMA(net, 0.3, since_step=7)
    states = [{k: v.clone() for k, v in net.state_dict().items()}]
    for step in range(7, 12):  # weights and BatchNorm statistics move as in training
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net.train()(torch.randn(5, 3))
        ema.update(step)
        states.append({k: v.clone() for k, v in net.state_dict().items()})
    _close(ema.module.state_dict(), _closed_form(states, 0.3))
    assert ema.module.state_dict()["1.num_batches_tracked"] == 5
    assert ema.info() == {"decay": 0.3, "since_step": 7}
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="before the EMA started"):
        ema.update(6)
    with pytest.raises(ValueError, match=r"ema_decay must be a number in \(0, 1\), e.g. 0.999; got 1.0"):
        GeneratorEMA(net, 1.0)


@pytest.mark.parametrize("bad", [1.0, -0.5, float("nan"), True])
def test_train_config_refuses_a_bad_ema_decay(bad):
    with pytest.raises(ValueError, match=r"ema_decay must be None, 0 \(no EMA\) or a number in \(0, 1\)"):
        tiny(ema_decay=bad)
    assert tiny(ema_decay=0).ema_decay == 0


def test_training_keeps_the_closed_form_ema_and_adds_it_on_a_resume(tmp_path):
    """A run without an EMA (an old checkpoint: no "ema" entry or option) gets one on a resume at
    step 2, started from the generator of step 2; its value after each step is the closed form
    of the raw generators (the warm-up and then the decay 0.15: d = 0.1, 0.15, 0.15)."""
    ds = ToyHeads(20, 32, seed=1)
    run = tmp_path / "run"
    raw = []
    model.train(ds, run, tiny(steps=2, val_every=100))
    ck = load_checkpoint(run / CHECKPOINT)
    del ck["ema"], ck["config"]["ema_decay"]  # as written before the EMA existed
    torch.save(ck, run / CHECKPOINT)
    raw.append(ck["generator"])
    events = []
    for steps in (3, 4, 5):  # one step a session: the checkpoint has each step's raw generator
        model.train(ds, run, tiny(steps=steps, val_every=100, ema_decay=0.15 if steps == 3 else None),
                    callback=events.append)  # fmt: skip
        ck = load_checkpoint(run / CHECKPOINT)
        raw.append(ck["generator"])
        assert ck["config"]["ema_decay"] == 0.15  # kept on a resume that does not give it
        assert (ck["ema"]["decay"], ck["ema"]["since_step"]) == (0.15, 2)
        _close(ck["ema"]["state_dict"], _closed_form(raw, 0.15))
    started = [e for e in events if e["event"] == "ema"]
    assert started == [{"event": "ema", "step": 2, "before": None, "ema": {"decay": 0.15, "since_step": 2}}]
    records = [r for r in read_log(run) if r["kind"] == "ema"]
    assert records == [{"kind": "ema", "step": 2, "images_seen": 8, "decay": 0.15, "since_step": 2}]
    assert json.loads((run / "config.json").read_text())["ema"] == {"decay": 0.15, "since_step": 2}
    # a new decay goes on from the same average; 0 drops it (each recorded)
    model.train(ds, run, tiny(steps=6, val_every=100, ema_decay=0.5))
    ck = load_checkpoint(run / CHECKPOINT)
    assert (ck["ema"]["decay"], ck["ema"]["since_step"]) == (0.5, 2)
    model.train(ds, run, tiny(steps=7, val_every=100, ema_decay=0))
    assert load_checkpoint(run / CHECKPOINT)["ema"] is None
    assert [(r["step"], r["decay"]) for r in read_log(run) if r["kind"] == "ema"] == [(2, 0.15), (5, 0.5), (6, None)]
    assert json.loads((run / "config.json").read_text())["ema"] is None


def test_a_session_that_saved_nothing_leaves_no_ema_record(tmp_path):
    ds = ToyHeads(20, 32, seed=1)
    run = tmp_path / "run"
    model.train(ds, run, tiny(steps=2, val_every=100))
    saved = (run / CHECKPOINT).read_bytes()
    model.train(ds, run, tiny(steps=3, val_every=100, ema_decay=0.9))
    (run / CHECKPOINT).write_bytes(saved)  # as if killed before its first checkpoint
    model.train(ds, run, tiny(steps=3, val_every=100, ema_decay=0.8))
    assert [(r["step"], r["decay"]) for r in read_log(run) if r["kind"] == "ema"] == [(2, 0.8)]
    # a checkpoint of the step the EMA started at (a data error in the first batch) keeps its record
    ck = load_checkpoint(run / CHECKPOINT)
    ck["step"] = ck["ema"]["since_step"] = 2
    torch.save(ck, run / CHECKPOINT)
    model.train(ds, run, tiny(steps=2, val_every=100))
    assert [(r["step"], r["decay"]) for r in read_log(run) if r["kind"] == "ema"] == [(2, 0.8)]


def test_resume_restores_the_ema_exactly(tmp_path):
    ds = ToyHeads(20, 32, seed=1)
    model.train(ds, tmp_path / "full", tiny(ema_decay=0.9))
    model.train(ds, tmp_path / "cut", tiny(steps=3, ema_decay=0.9))
    model.train(ds, tmp_path / "cut", tiny(), should_stop=lambda: True)  # one step, then a checkpoint
    model.train(ds, tmp_path / "cut", tiny())
    a, b = load_checkpoint(tmp_path / "full" / CHECKPOINT), load_checkpoint(tmp_path / "cut" / CHECKPOINT)
    assert a["step"] == b["step"] == 6
    assert a["ema"].keys() == b["ema"].keys() == {"decay", "since_step", "state_dict"}
    _states_equal(a["ema"]["state_dict"], b["ema"]["state_dict"])
    _states_equal(a["generator"], b["generator"])
    va, vb = ([r for r in read_log(tmp_path / d) if r["kind"] == "val"] for d in ("full", "cut"))
    assert [r["angular"]["mean"] for r in va if r["step"] == 6] == [r["angular"]["mean"] for r in vb if r["step"] == 6]


def _fake_validation_errors(monkeypatch, error) -> None:
    """Validation during training reports ``error(n, is_ema)`` as the mean angular error of its
    ``n``-th evaluation (a toy generator of a few steps predicts no mask: NaN, never selected)."""
    train_mod = importlib.import_module("monohead.model.train")  # the module, not model.train the function
    real = train_mod.evaluate_model
    calls = {"n": 0}

    def fake(G, data, *, indices, keep=0, channels_last=False):
        metrics, kept = real(G, data, indices=indices, keep=keep, channels_last=channels_last)
        is_ema = not any(p.requires_grad for p in G.parameters())  # the raw generator is training
        metrics["angular"]["mean"] = error(calls["n"], is_ema)
        calls["n"] += 1
        return metrics, kept

    monkeypatch.setattr(train_mod, "evaluate_model", fake)


def test_validation_selects_best_by_the_ema(tmp_path, monkeypatch):
    """The val record has the EMA's metrics at the top and the raw generator's under "raw";
    best.pt follows the EMA's error (rising here) even where the raw one falls."""
    _fake_validation_errors(monkeypatch, lambda n, is_ema: float(n) if is_ema else 100.0 - n)
    run = tmp_path / "run"
    s = model.train(ToyHeads(20, 32, seed=2), run, tiny(ema_decay=0.9, val_every=2))
    vals = [r for r in read_log(run) if r["kind"] == "val"]
    assert [(r["step"], r["generator"]) for r in vals] == [(2, "ema"), (4, "ema"), (6, "ema")]
    assert [r["angular"]["mean"] for r in vals] == [0.0, 2.0, 4.0]
    assert [r["raw"]["angular"]["mean"] for r in vals] == [99.0, 97.0, 95.0]
    assert vals[0]["ema"] == {"decay": 0.9, "since_step": 0}
    assert [r for r in read_log(run) if r["kind"] == "ema"] == [
        {"kind": "ema", "step": 0, "images_seen": 0, "decay": 0.9, "since_step": 0}
    ]
    assert s["best"] == {"step": 2, "images_seen": 8, "mean": 0.0, "generator": "ema"}
    best = load_checkpoint(run / BEST)
    assert (best["step"], best["ema"], best["metrics"]["angular"]["mean"]) == (2, {"decay": 0.9, "since_step": 0}, 0.0)
    assert (run / "curves.png").stat().st_size > 0


def test_readers_and_export_use_the_ema(tmp_path, monkeypatch):
    _fake_validation_errors(monkeypatch, lambda n, is_ema: 10.0)
    ds = ToyHeads(20, 32, seed=3)
    run = tmp_path / "run"
    model.train(ds, run, tiny(steps=3, val_every=3, ema_decay=0.9))
    ck = load_checkpoint(run / CHECKPOINT)
    ema_state, raw_state = ck["ema"]["state_dict"], ck["generator"]
    assert not torch.equal(ema_state["encoders.0.0.weight"], raw_state["encoders.0.0.weight"])
    info = {"decay": 0.9, "since_step": 0}
    for src in (run, run / CHECKPOINT, run / BEST):  # best.pt is step 3's EMA: the last validation
        G = model.load_generator(src)
        assert G.info["ema"] == info, src
        _states_equal(G.state_dict(), ema_state)
    G = model.load_generator(run / CHECKPOINT, ema=False)
    assert G.info["ema"] is None
    assert torch.equal(G.state_dict()["encoders.0.0.weight"], raw_state["encoders.0.0.weight"])
    with pytest.raises(ValueError, match="holds only the EMA of the generator; its raw weights are in"):
        model.load_generator(run / BEST, ema=False)
    card = model.export_weights(run, tmp_path / "w")
    assert card["training"]["ema"] == info
    W = model.load_generator(tmp_path / "w")
    assert W.info["ema"] == info
    assert torch.equal(W.state_dict()["encoders.0.0.weight"], ema_state["encoders.0.0.weight"].half().float())
    card = model.export_weights(run / CHECKPOINT, tmp_path / "raw", ema=False)
    assert card["training"]["ema"] is None
    assert torch.equal(
        model.load_generator(tmp_path / "raw").state_dict()["encoders.0.0.weight"],
        raw_state["encoders.0.0.weight"].half().float(),
    )
    # an average of generators averages their EMAs (raw ones with ema=False), each member's recorded
    _, soup, soup_info = average_generators([run / CHECKPOINT, run / BEST])
    assert [m["ema"] for m in soup_info["members"]] == [info, info]
    torch.testing.assert_close(soup["encoders.0.0.weight"], ema_state["encoders.0.0.weight"])
    _, soup, soup_info = average_generators([run / CHECKPOINT, run / CHECKPOINT], ema=False)
    assert [m["ema"] for m in soup_info["members"]] == [None, None]
    torch.testing.assert_close(soup["encoders.0.0.weight"], raw_state["encoders.0.0.weight"])
    # fine-tuning from the run starts from its EMA, and says so
    model.train(ds, tmp_path / "ft", tiny(steps=0), init=run / CHECKPOINT)
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init"]["ema"] == info
    # a run without an EMA reads as before
    shutil.rmtree(run)
    model.train(ds, run, tiny(steps=1, val_every=100))
    assert model.load_generator(run).info["ema"] is None


def test_cli_adds_the_ema_on_a_resume_and_evaluates_it(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["train", "--toy", "16", "--out", str(run)]
    assert cli.main([*common, "--width", "4", "--depth", "5", "--batch-size", "4", "--steps", "2", "--val-count", "4",
                     "--val-every", "3", "--threads", "1"]) == 0  # fmt: skip
    capsys.readouterr()
    assert cli.main([*common, "--steps", "3", "--ema-decay", "0.99"]) == 0
    err = capsys.readouterr().err
    assert "keeping an EMA of the generator from step 2, decay 0.99" in err
    assert "validation of the generator's EMA: angular error mean" in err
    assert "(raw generator " in err
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["config"]["ema_decay"], cfg["ema"]) == (0.99, {"decay": 0.99, "since_step": 2})
    assert cli.main([*common, "--steps", "4", "--json"]) == 0  # the EMA goes on without the option
    r = json.loads(capsys.readouterr().out)
    assert r["last_val"]["generator"] == "ema"
    assert r["last_val"]["raw"]["count"] == 4
    assert load_checkpoint(run / CHECKPOINT)["ema"]["decay"] == 0.99
    assert cli.main(["train", "--toy", "4", "--out", str(run), "--eval-only"]) == 0
    assert "(step 4, EMA decay 0.99 since step 2) on 4 images" in capsys.readouterr().err
    assert json.loads((run / "eval_metrics.json").read_text())["ema"] == {"decay": 0.99, "since_step": 2}
    ckpt = str(run / CHECKPOINT)
    assert (
        cli.main(["train", "--toy", "4", "--out", str(run), "--checkpoint", ckpt, "--eval-only", "--raw", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["ema"] is None
    assert cli.main(["train", "--toy", "4", "--out", str(run), "--ema-decay", "1.5"]) == 2
    assert "ema_decay must be None, 0 (no EMA) or a number in (0, 1)" in capsys.readouterr().err
