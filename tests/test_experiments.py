"""monohead.experiments and `monohead experiments`: the paper's experiments end to end, at tiny scale."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from monohead import cli, experiments
from monohead.model._toy import ToyHeads

PNG = b"\x89PNG\r\n\x1a\n"
LAMS = (0.0, 0.1)  # two λ: the tests run fast; the best is one of them


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def _table(report: str, header_start: str) -> list[list[str]]:
    """The rows (cells) of the Markdown table whose header starts with ``header_start``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


# --------------------------------------------------------------------------------------------
# The test set


def test_select_balanced():
    sexes = ["male", "male", "female", "male", "female", "female"]
    assert experiments.select_balanced(sexes, 4) == [0, 1, 2, 4]
    assert experiments.select_balanced(sexes, 3) == [0, 2, 4]  # odd: one more female
    assert experiments.select_balanced(["male", None, "female"], 2) == [0, 1]  # unknown: the first
    assert experiments.select_balanced(["male"] * 5 + ["female"], 4) == [0, 1, 2, 3]  # too few females
    with pytest.raises(ValueError, match="count must be a positive integer"):
        experiments.select_balanced(sexes, 0)


def test_balanced_indices_follow_the_generators_parameters():
    from monohead.synth.generator import sample_params
    from monohead.synth.head_model import HeadModel

    idx, sexes = experiments.balanced_indices(experiments.DEFAULT_SEED, 6, 64)
    assert sexes.count("female") == 3
    assert sexes.count("male") == 3
    assert idx == sorted(idx)
    model = HeadModel.load(None)
    every = [sample_params(experiments.DEFAULT_SEED, i, model, (64, 64))["skin"]["sex"] for i in range(idx[-1] + 1)]
    assert [every[i] for i in idx] == sexes
    assert idx == experiments.select_balanced(every, 6)  # the earliest of each sex
    assert experiments.balanced_indices(experiments.DEFAULT_SEED, 6, 64) == (idx, sexes)  # a pure function


# --------------------------------------------------------------------------------------------
# End to end with the real generator and the oracle predictor, then the rerun from the cache


def test_end_to_end_rendered_oracle_and_rerun(tmp_path):
    out = tmp_path / "exp"
    calls: list[tuple[str, int, int]] = []
    r = experiments.run_experiments(out, count=2, size=64, spp=1, model="oracle", lams=LAMS, workers=1,
                                    command="test", callback=lambda *a: calls.append(a))  # fmt: skip
    # The test set: rendered, one female- and one male-looking head, seeds far from training's.
    ts = r["test_set"]
    assert ts["count"] == 2
    assert ts["female"] == 1
    assert ts["male"] == 1
    assert ts["source"]["kind"] == "generated"
    assert ts["source"]["seed"] == experiments.DEFAULT_SEED
    assert ts["size"] == [64, 64]
    # The oracle reproduces the truth: Table 1 must be perfect (this fails if the evaluation
    # compares the wrong maps, frames or masks).
    t1 = r["table1"]["all"]
    assert t1["mask_precision"] == 100.0
    assert t1["mask_recall"] == 100.0
    assert t1["mean"] < 1e-3
    assert t1["under_10"] == 100.0
    assert t1["w_mae"] == 0.0
    assert set(r["table1"]) == {"all", "female", "male"}
    # With the true maps, both sweeps are the same curve; σ is small next to θ.
    assert r["sweep"]["sigma"] == r["oracle_sweep"]["sigma"]
    assert r["sweep"]["lam"] == list(LAMS)
    assert 0 < r["sweep"]["best_sigma"] < 2.0
    # Files.
    report = (out / "report.md").read_text()
    for key in ("fig5", "fig6", "fig8"):
        assert _is_png(out / r["figures"][key])
        assert f"]({r['figures'][key]})" in report
    assert json.loads((out / "results.json").read_text())["table1"]["all"]["mask_precision"] == 100.0
    # Table 1: the paper's numbers beside ours, in the rows of the paper.
    rows = _table(report, "| | paper |")
    paper_rows = ["Mask precision", "Mask recall", "Angular error, mean", "Angular error, std"]
    paper_rows += ["< 10°", "< 20°", "< 30°"]
    assert [row[0] for row in rows][:7] == paper_rows
    assert rows[0][1] == "93.72 %"
    assert rows[0][2] == "100.00 %"
    assert rows[6][1] == "97.13 %"
    assert len(rows[0]) == 5  # label, paper, all, female, male
    # The sweep table: one row per λ. Table 2: every integrator for both blocks, and the paper's row.
    assert len(_table(report, "| λ |")) == len(LAMS)
    t2 = _table(report, "| N, W |")
    labels = [(row[0], row[1]) for row in t2]
    best = r["sweep"]["best_lam"]
    for block in ("predicted", "true"):
        got = [lab for b, lab in labels if b == block]
        assert got[0].startswith(f"WLS, λ = {best:g}")
        assert "DCT Poisson (full rectangle)" in got
        assert "Frankot-Chellappa (full rectangle)" in got
        assert any("λ = 0" in g for g in got)
        assert any(f"λ = {experiments.PAPER_LAMBDA:g}" in g for g in got)
    assert labels[-1][0] == "paper (BU-3DFE, mm)"
    for row in r["table2"]["rows"]:
        assert row["samples"] == 2
        assert 0 <= row["median"] <= row["p90"]
        assert row["pairs"] == 2
    assert "Command: `test`" in report
    assert "not run: the oracle" in report
    # Complete heads: both heads fitted and compared on both sides, in the report.
    fh = r["full_head"]
    assert fh["heads"] + len(fh["failed"]) == 2
    assert fh["generator_version"] >= 1
    if fh["heads"]:
        assert {"mesh25d", "full", "model", "mean"} <= set(fh["summary"]["visible"])
        assert "## Complete heads" in report
        assert "| hidden | complete head" in report
        if fh["summary"]["hidden_head"]:
            assert "| hidden, head only (above the neck's base) | complete head" in report
        # Both alignment protocols, each in its own table; the 2.5D mesh keeps its own ICP.
        own = fh["own"]["summary"]
        assert {"mesh25d", "full", "model", "mean"} <= set(own["visible"])
        assert own["visible"]["mesh25d"] == fh["summary"]["visible"]["mesh25d"]
        assert "Protocol: aligned by the 2.5D mesh" in report
        assert "Protocol: each aligned on its own" in report
        assert report.count("| hidden | complete head") == 2
    first = {k: v["cached"] for k, v in r["stages"].items()}
    assert not any(first.values())

    # Rerun: the expensive stages come from the cache, report only (total, total), same numbers.
    calls.clear()
    r2 = experiments.run_experiments(out, count=2, size=64, spp=1, model="oracle", lams=LAMS, workers=1,
                                     callback=lambda *a: calls.append(a))  # fmt: skip
    cached = {k for k, v in r2["stages"].items() if v["cached"]}
    assert cached == {"testset", "predict", "sweep", "oracle_sweep", "table2", "full_head"}
    for stage in cached - {"testset"}:
        mine = [c for c in calls if c[0] == stage]
        assert len(mine) == 1
        assert mine[0][1] == mine[0][2]
    assert r2["table2"] == r["table2"]
    assert r2["sweep"] == r["sweep"]
    # Another λ grid redoes the sweeps but not the predictions.
    r3 = experiments.run_experiments(out, count=2, size=64, spp=1, model="oracle", lams=(0.0, 0.05), workers=1)
    assert r3["stages"]["predict"]["cached"]
    assert not r3["stages"]["sweep"]["cached"]


# --------------------------------------------------------------------------------------------
# A callable predictor that errs in a known way, and the real photos


def _key(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


class _Perturbed:
    """Truth for known images, with the normals turned by ``angle`` about z and the top row of
    each mask dropped; a sphere cap for unknown images (the photos)."""

    def __init__(self, data, angle_deg: float) -> None:
        self.truth = {_key(it["image"]): it for it in (data[i] for i in range(len(data)))}
        a = np.radians(angle_deg)
        self.R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])

    def mask_of(self, m: np.ndarray) -> np.ndarray:
        out = m.copy()
        rows = np.nonzero(m.any(axis=1))[0]
        out[rows[0]] = False
        return out

    def __call__(self, images):
        Ns, Ws, Ms = [], [], []
        for img in images:
            it = self.truth.get(_key(img))
            if it is None:  # a photo: a sphere cap
                from monohead.integration import surfaces

                s = surfaces.sphere_cap(img.shape[:2], radius=50.0, rim=0.9)
                Ns.append(s.normals), Ws.append(s.W), Ms.append(s.mask)
                continue
            m = self.mask_of(it["mask"])
            Ns.append(np.where(m[..., None], it["normals"] @ self.R.T, 0.0))
            Ws.append(np.where(m, it["W"], 0.0))
            Ms.append(m)
        return np.stack(Ns), np.stack(Ws), np.stack(Ms)


def test_callable_predictor_errors_are_measured_and_photos_shown(tmp_path):
    data = ToyHeads(2, 64, seed=3)
    pred = _Perturbed(data, angle_deg=12.0)
    r = experiments.run_experiments(tmp_path, count=2, data=data, model=pred, lams=LAMS, workers=1)
    # Table 1 against an independent computation.
    true_m = np.stack([data[i]["mask"] for i in range(2)])
    pred_m = np.stack([pred.mask_of(m) for m in true_m])
    t1 = r["table1"]["all"]
    assert t1["mask_precision"] == pytest.approx(100.0)
    assert t1["mask_recall"] == pytest.approx(100.0 * pred_m.sum() / true_m.sum())
    assert t1["mask_recall"] < 100.0
    n = np.concatenate([data[i]["normals"][pred_m[i]] for i in range(2)]).astype(np.float64)
    cos = np.clip(np.einsum("ij,ij->i", n @ pred.R.T, n) / np.linalg.norm(n, axis=1) ** 2, -1, 1)
    ang = np.degrees(np.arccos(cos))
    assert t1["mean"] == pytest.approx(ang.mean(), abs=1e-3)
    assert t1["mean"] > 1.0
    assert t1["under_10"] == pytest.approx(100.0 * np.mean(ang < 10), abs=0.05)
    assert t1["count"] == pred_m.sum()
    assert set(r["table1"]) == {"all"}  # the toy heads have no sex
    assert r["model"]["key"].startswith("callable:")
    assert not r["model"]["flip"]
    assert r["test_set"]["source"]["kind"] == "ToyHeads"
    # The wrong normals cost accuracy: the pipeline's σ is above the oracle's.
    assert r["sweep"]["best_sigma"] > r["oracle_sweep"]["best_sigma"]
    # The photos went through reconstruct() with the predictor and are shown.
    report = (tmp_path / "report.md").read_text()
    assert [p["photo"] for p in r["photos"]] == list(experiments.PHOTOS)
    for p in r["photos"]:
        assert "error" not in p, p
        assert _is_png(tmp_path / p["figure"])
        assert (tmp_path / p["mesh"]).stat().st_size > 0
        assert f"### {p['photo']}" in report
        assert f"]({p['figure']})" in report
        assert p["vertices"] > 1000  # the sphere cap's disc
    # Table 1 has one column of ours, and the paper's.
    assert len(_table(report, "| | paper |")[0]) == 3


def test_untrained_network_degrades_to_a_report(tmp_path):
    # A torch module goes through monohead.model.predict; an untrained one predicts no head:
    # Table 1 says so, the depth stages have nothing to integrate, the photos fail with a reason.
    import torch

    from monohead.model import UNet

    torch.manual_seed(0)
    net = UNet(width=4, depth=4)
    r = experiments.run_experiments(tmp_path, count=2, data=ToyHeads(2, 64), model=net, lams=LAMS, workers=2)
    assert r["model"]["key"].startswith("module:")
    assert r["model"]["key"].endswith(":flip")
    assert r["model"]["flip"]
    assert r["table1"]["all"]["mask_recall"] == 0.0
    assert r["table1"]["all"]["count"] == 0
    assert r["sweep"]["samples"] == []
    assert r["fig6"] is None
    assert r["excluded"]["predicted"] == 2
    pred_rows = [row for row in r["table2"]["rows"] if row["block"] == "predicted"]
    true_rows = [row for row in r["table2"]["rows"] if row["block"] == "true"]
    assert pred_rows
    assert all(row["pairs"] == 0 and "mean" not in row for row in pred_rows)
    assert true_rows
    assert all(row["pairs"] == 2 and row["mean"] >= 0 for row in true_rows)
    assert all("no head" in p["error"] for p in r["photos"])
    report = (tmp_path / "report.md").read_text()
    assert "no test head could be integrated" in report
    assert "| predicted | least squares (λ = 0) | 0 | n/a |" in report


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="count must be a positive integer"):
        experiments.run_experiments(tmp_path, count=0, model="oracle")
    with pytest.raises(ValueError, match="lams must hold finite numbers >= 0"):
        experiments.run_experiments(tmp_path, lams=(0.1, -1.0), model="oracle")
    with pytest.raises(TypeError, match="model must be None, 'oracle'"):
        experiments.run_experiments(tmp_path, data=ToyHeads(1, 32), model=42)
    with pytest.raises(FileNotFoundError, match="no such file"):
        experiments.run_experiments(tmp_path, data=ToyHeads(1, 32), model=tmp_path / "missing.pt")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="out must be a folder"):
        experiments.run_experiments(f, model="oracle")


# --------------------------------------------------------------------------------------------
# The command line


def test_cli_json_and_worker_processes(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["experiments", "--out", str(out), "--toy", "2", "--size", "64", "--seed", "1", "--model", "oracle",
            "--lams", "0,0.1", "--workers", "2", "--json"]  # fmt: skip
    assert cli.main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["report"] == str(out / "report.md")
    assert (out / "report.md").is_file()
    assert r["command"].startswith("monohead experiments --out")
    assert "--toy 2" in r["command"]
    assert r["table1"]["all"]["mask_recall"] == 100.0
    # Table 2 from two worker processes equals the in-process computation.
    ref = experiments.run_experiments(tmp_path / "ref", count=2, data=ToyHeads(2, 64, seed=1), model="oracle",
                                      lams=(0.0, 0.1), workers=1)  # fmt: skip
    assert r["table2"] == ref["table2"]
    # Human output on stderr, nothing on stdout.
    assert cli.main(argv[:-1]) == 0
    cap = capsys.readouterr()
    assert cap.out == ""
    assert re.search(r"report -> .*report\.md .*from cache: .*table2", cap.err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lams", "0,x"], "--lams must be comma-separated numbers"),
        (["--model", "/no/such/model.pt"], "--model: no such file or folder"),
        (["--data", "/no/such/folder"], "--data must be a data set folder"),
    ],
)
def test_cli_errors_exit_2(tmp_path, capsys, extra, message):
    assert cli.main(["experiments", "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_report_names_a_weight_average_by_its_members():
    """A model card of averaged weights (monohead train --checkpoint A B --export-weights) is
    reported as the average of its members, not as its last member's step count."""
    from monohead.experiments.report import _model_lines

    members = [{"step": 8500, "images_seen": 136000}, {"step": 1700, "images_seen": 27200}]
    card = {"dtype": "float16", "training": {"step": 1700, "images_seen": 27200, "members": members}}
    line = next(x for x in _model_lines({"name": "shipped", "key": "k", "card": card}) if "Model card" in x)
    assert "the weight average of 2 checkpoints (steps 8500, 1700 of their runs)" in line
    assert "trained 1700 steps" not in line
    single = {"dtype": "float16", "training": {"step": 1700, "images_seen": 27200}}
    line = next(x for x in _model_lines({"name": "shipped", "key": "k", "card": single}) if "Model card" in x)
    assert "trained 1700 steps, 27200 images seen" in line
