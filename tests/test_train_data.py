"""Bad training data: damaged shards, corrupt items, generator versions mixed only when listed,
fine-tuning from weights, the balanced held-out evaluation (issue 13's "Bad input").

The data sets here are written by hand (shaded analytic heads in the synth layout), so nothing
is rendered and the tests take seconds.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from monohead import cli, model
from monohead.model._toy import ToyHeads
from monohead.model.data import ConcatData, data_summary, dataset_info
from monohead.model.train import CHECKPOINT, load_checkpoint, read_log
from monohead.synth import SyntheticHeads, dataset
from tests._helpers import fake_set

SIZE = 32
TINY = ["--width", "4", "--depth", "4", "--batch-size", "4", "--val-count", "4", "--val-every", "100",
        "--threads", "1", "--log-every", "1"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def shard(root, k):
    return root / "shards" / f"shard-{k:05d}"


def test_whole_set_reads_and_records_seed_and_version(tmp_path):
    ds = SyntheticHeads(fake_set(tmp_path / "a", seed=5, version=2))
    assert len(ds) == 12
    assert ds.skipped == {}
    assert ds.generator_version == 2
    info = json.loads((shard(ds.root, 1) / "info.json").read_text())
    assert info["seed"] == 5
    assert info["generator_version"] == 2
    assert dataset_info(ds)["generator_version"] == 2
    assert dataset_info(ds)["seed"] == 5
    assert ds.verify() == {}


def _truncate(root):
    f = shard(root, 1) / "normals.npy"
    f.write_bytes(f.read_bytes()[:-100])


def _garbage(root):
    (shard(root, 1) / "W.npy").write_bytes(b"not an array at all")


def _missing(root):
    (shard(root, 1) / "mask.npy").unlink()


def _wrong_shape(root):
    np.save(shard(root, 1) / "depth.npy", np.zeros((3, SIZE, SIZE), np.float32))


def _bad_params(root):
    (shard(root, 1) / "params.json").write_text('[{"seed": 5}')


def _other_version(root):
    info = json.loads((shard(root, 1) / "info.json").read_text())
    (shard(root, 1) / "info.json").write_text(json.dumps({**info, "generator_version": 1}))


def _other_seed(root):
    info = json.loads((shard(root, 1) / "info.json").read_text())
    (shard(root, 1) / "info.json").write_text(json.dumps({**info, "seed": 6}))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, r"normals\.npy is truncated \(\d+ bytes; its header needs \d+\)"),
        (_garbage, r"W\.npy is not a readable \.npy file"),
        (_missing, r"mask\.npy is missing"),
        (_wrong_shape, r"depth\.npy holds float32 \(3, 32, 32\); expected float32 \(4, 32, 32\)"),
        (_bad_params, r"params\.json is not readable JSON"),
        (_other_version, r"info\.json says generator_version 1; the manifest says 2 \(a shard of another data set\?\)"),
        (_other_seed, r"info\.json says seed 6; the manifest says 5"),
    ],
)
def test_damaged_shard_is_refused_by_name_or_skipped(tmp_path, damage, reason):
    root = fake_set(tmp_path / "d")
    damage(root)
    with pytest.raises(ValueError, match=r"has 1 damaged shard\(s\), refused: shard-00001: " + reason):
        SyntheticHeads(root)
    ds = SyntheticHeads(root, partial=True)
    assert len(ds) == 8
    assert list(ds.skipped) == ["shard-00001"]
    assert [ds[i]["index"] for i in range(8)] == [0, 1, 2, 3, 8, 9, 10, 11]  # nothing of shard 1
    assert ds.meta["skipped_shards"]["shard-00001"] == dataset.check_shard(root, 1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"num_shards": 2}, r"bad manifest entry 'num_shards': 12 samples in shards of 4 make 3 shards; got 2"),
        ({"count": "12"}, r"bad manifest entry 'count': expected an integer >= 1; got '12'"),
        ({"settings": {"size": [32]}}, r"bad manifest entry 'settings\.size'"),
    ],
)
def test_bad_manifest_entry_is_named(tmp_path, edit, message):
    root = fake_set(tmp_path / "m")
    m = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**m, **edit}))
    with pytest.raises(ValueError, match=message):
        SyntheticHeads(root)


def test_cli_train_refuses_a_damaged_shard_and_skips_it_with_partial_data(tmp_path, capsys):
    root = fake_set(tmp_path / "d", count=16)
    _truncate(root)
    run = tmp_path / "run"
    argv = ["train", "--data", str(root), "--out", str(run), *TINY, "--steps", "1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "shard-00001: normals.npy is truncated" in err
    assert "--partial-data" in err
    assert err.count("\n") == 1
    assert not run.exists()
    assert cli.main([*argv, "--partial-data"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err
    assert "shard-00001 skipped: normals.npy is truncated" in err
    parts = json.loads((run / "config.json").read_text())["data_parts"]
    assert parts[0]["count"] == 12
    assert "shard-00001" in parts[0]["skipped_shards"]


def test_corrupt_item_is_refused_and_the_run_keeps_its_checkpoint(tmp_path):
    root = fake_set(tmp_path / "c", count=16)
    cfg = dict(width=4, depth=4, batch_size=4, val_count=4, val_every=100, ckpt_every=100, log_every=1, figure_count=0)
    run = tmp_path / "run"
    model.train(SyntheticHeads(root), run, model.TrainConfig(steps=2, **cfg))
    f = shard(root, 2) / "normals.npy"  # same size, zeros in the middle of sample 9: bit rot
    a = np.load(f)
    a[1, 8:20] = 0.0
    np.save(f, a)
    ds = SyntheticHeads(root)  # the headers are fine: opened
    with pytest.raises(
        ValueError, match=r"corrupt sample in .*shard-00002 \(sample 9\): \d+ pixel\(s\) of the mask hold normals"
    ):
        ds[9]
    assert list(ds.verify()) == ["shard-00002"]
    with pytest.raises(ValueError, match=r"corrupt sample in .*shard-00002 \(sample 9\)"):
        model.train(ds, run, model.TrainConfig(steps=50, **cfg))
    ck = load_checkpoint(run / CHECKPOINT)
    trained = [r["step"] for r in read_log(run) if r["kind"] == "train"]
    assert ck["step"] == trained[-1] >= 2  # saved at the last finished step, before the bad batch


def test_versions_mix_only_as_listed_and_are_recorded(tmp_path, capsys):
    v1 = fake_set(tmp_path / "v1", seed=1, version=1)
    v2 = fake_set(tmp_path / "v2", seed=2, version=2)
    c = ConcatData([SyntheticHeads(v1), SyntheticHeads(v2)])
    assert c.meta["generator_versions"] == [1, 2]
    assert [(r["seed"], r["generator_version"], r["count"]) for r in data_summary(dataset_info(c))] == [
        (1, 1, 12),
        (2, 2, 12),
    ]
    run = tmp_path / "run"
    # version 2 alone first, then both: the change is recorded with its step
    assert cli.main(["train", "--data", str(v2), "--out", str(run), *TINY, "--steps", "1"]) == 0
    assert "mixing" not in capsys.readouterr().err
    assert cli.main(["train", "--data", str(v2), str(v1), "--out", str(run), "--steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "mixing generator versions, as listed with --data" in err
    assert "the data changed at step 1" in err
    assert "generator version(s) 1, 2" in err
    config = json.loads((run / "config.json").read_text())
    hist = [(h["step"], [(p["seed"], p["generator_version"]) for p in h["parts"]]) for h in config["data_history"]]
    assert hist == [(0, [(2, 2)]), (1, [(2, 2), (1, 1)])]
    assert [r for r in read_log(run) if r["kind"] == "data"][0]["step"] == 1
    dest = tmp_path / "w"
    assert (
        cli.main(["train", "--out", str(run), "--export-weights", str(dest), "--checkpoint", str(run / CHECKPOINT)])
        == 0
    )
    card = json.loads((dest / "model_card.json").read_text())
    assert [(r["seed"], r["generator_version"]) for r in card["training_data"]] == [(2, 2), (1, 1)]
    assert len(card["training"]["data_history"]) == 2
    # other image sizes never mix
    toy = ToyHeads(4, 64)
    toy.size = (64, 64)
    with pytest.raises(
        ValueError, match=r"parts must have one image size; got parts\[0\]: \(32, 32\), parts\[1\]: \(64, 64\)"
    ):
        ConcatData([SyntheticHeads(v1), toy])


def test_fine_tune_from_weights(tmp_path, capsys):
    data = fake_set(tmp_path / "d", count=16)
    src = tmp_path / "src"
    assert cli.main(["train", "--data", str(data), "--out", str(src), *TINY, "--steps", "1"]) == 0
    weights = tmp_path / "weights"
    assert cli.main(["train", "--out", str(src), "--export-weights", str(weights)]) == 0
    capsys.readouterr()
    run = tmp_path / "ft"
    # the architecture comes from the weights; a tiny learning rate keeps the generator at the init
    argv = ["train", "--data", str(data), "--out", str(run), "--init", str(weights), "--batch-size", "4"]
    argv += ["--val-count", "4", "--val-every", "100", "--threads", "1", "--lr", "1e-12", "--steps", "1", "--json"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    init = json.loads((run / "config.json").read_text())["init"]
    assert init["kind"] == "weights"
    assert len(init["sha256"]) == 64
    got = load_checkpoint(run / CHECKPOINT)["generator"]
    for k, v in model.load_generator(weights).named_parameters():  # (batch-norm statistics move in train mode)
        torch.testing.assert_close(got[k].float(), v.float(), atol=1e-6, rtol=0, msg=k)
    assert cli.main([*argv[:-3], "--steps", "2"]) == 0  # the same command resumes
    shutil.copy(src / CHECKPOINT, tmp_path / "x.pt")
    capsys.readouterr()
    assert (
        cli.main(["train", "--data", str(data), "--out", str(run), "--init", str(tmp_path / "x.pt"), "--steps", "3"])
        == 2
    )
    assert "init: the run in" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "bad"),
                "--init",
                str(weights),
                "--width",
                "8",
                "--batch-size",
                "4",
                "--val-count",
                "4",
            ]
        )
        == 2
    )
    assert "init:" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_eval_only_balanced(tmp_path, capsys):
    data = fake_set(tmp_path / "t", count=12)
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(data), "--out", str(run), *TINY, "--steps", "1"]) == 0
    capsys.readouterr()
    assert (
        cli.main(
            ["train", "--out", str(run), "--eval-only", "--data", str(data), "--balanced", "--max-items", "6", "--json"]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["count"] == 6
    assert r["data"]["meta"]["indices"] == [0, 1, 2, 3, 4, 6]
    assert (
        cli.main(["train", "--out", str(run), "--eval-only", "--data", str(data), "--balanced", "--max-items", "10"])
        == 2
    )
    assert "4 male heads; 10 balanced heads need 5 and 5" in capsys.readouterr().err
