"""tools/device_train.py (issue 13's prepared GPU run): its CPU dry run, so that it cannot rot."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _driver():
    spec = importlib.util.spec_from_file_location("device_train", ROOT / "tools" / "device_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dry_run_makes_every_output(tmp_path):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "out"
        argv = ["--dry-run", "--out", str(out), "--work", str(tmp_path / "work"), "--init", "none"]
        argv += ["--width", "4", "--depth", "4", "--size", "32"]
        argv += ["--test-count", "2", "--train-count", "6", "--val-count", "2"]
        assert _driver().main(argv) == 0
    finally:
        torch.set_num_threads(n)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["curves.png", "log.jsonl", "model_card.json", "summary.json", "table1.md", "unet.pt.part-00"]
    assert len(files) <= 8
    assert all((out / f).stat().st_size < 16 * 2**20 for f in files)
    s = json.loads((out / "summary.json").read_text())
    assert s["dry_run"]
    assert s["test"]["count"] == 2
    assert s["train_data"]["samples"] == 6
    assert s["fine_tune"]["steps"] == 3
    assert s["test"]["generator_version"] == s["train_data"]["generator_version"]
    assert set(s["table1"]) == {"fine-tuned here, one pass", "fine-tuned here, mirror-averaged"}
    table = (out / "table1.md").read_text()
    assert "| paper (their synthetic test set) | 93.72 |" in table
    assert "dry run" in table
    # the cut weights join into a loadable generator
    from monohead.model import load_generator

    joined = tmp_path / "w"
    joined.mkdir()
    (joined / "unet.pt").write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob("unet.pt.part-*"))))
    (joined / "model_card.json").write_bytes((out / "model_card.json").read_bytes())
    assert load_generator(joined).config["width"] == 4


def test_split_file_parts(tmp_path):
    f = tmp_path / "big.bin"
    f.write_bytes(bytes(range(256)) * 10)
    parts = _driver().split_file(f, tmp_path, part_bytes=1000)
    assert [p.name for p in parts] == ["big.bin.part-00", "big.bin.part-01", "big.bin.part-02"]
    assert b"".join(p.read_bytes() for p in parts) == f.read_bytes()


def test_shell_script_syntax():
    for name in ("device_train.sh", "device_wheels.sh"):
        r = subprocess.run(["bash", "-n", str(ROOT / "tools" / name)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_cuda_variant_only_where_dr_jit_sees_a_gpu():
    from monohead.synth.render import cuda_available, select_variant

    if cuda_available():  # pragma: no cover - GPU machines only
        assert select_variant("cuda_ad_rgb") == "cuda_ad_rgb"
    else:
        with pytest.raises(ValueError, match="variant 'cuda_ad_rgb' needs an NVIDIA GPU and driver"):
            select_variant("cuda_ad_rgb")
    assert select_variant("auto") != "cuda_ad_rgb"  # never chosen unless asked for
