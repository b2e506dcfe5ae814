"""pytest-benchmark: the network's inference latency, training-step throughput and data loading.

Run: ``python -m pytest benchmarks/bench_model.py --benchmark-enable -p no:cacheprovider``
(``--benchmark-json out.json`` keeps the figures). Method:

- Inference: one 128x128 image through the default generator (width 32, depth 8: 16 layers),
  in eval mode without autograd; float32 eager (NCHW), channels-last, channels-last under
  bfloat16 autocast, and ONNX Runtime (float32, CPU provider; skipped unless ``onnxruntime``
  and ``onnx`` are installed: they are not monohead dependencies). Weights are the shipped
  ones when the package has them, else a seeded random initialisation (same cost).
- Training step: a batch of 16 at 128x128, width 32, channels-last: generator forward,
  critic update on the real and generated pairs, generator update through the critic and the
  L2 term, with and without bfloat16 autocast. One timed call is one step; images/s = 16 /
  time.
- Loading: building one training batch of 16 (stacking, targets, W encoding, blur and noise
  augmentation) from items already in memory; reading the items from disk is the data set's
  cost and comes on top (set ``MONOHEAD_BENCH_DATA=DIR`` to time a SyntheticHeads folder too).

Threads: PyTorch's default unless ``OMP_NUM_THREADS`` is set. On the project's 2-vCPU machines
shared with other busy processes, ``OMP_NUM_THREADS=1`` is often faster (see the README).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from monohead.model import Critic, UNet, critic_loss, generator_loss
from monohead.model._toy import ToyHeads
from monohead.model.data import Augment, collate

B, S, WIDTH = 16, 128, 32


def _generator() -> UNet:
    from monohead.model import load_pretrained

    try:
        return load_pretrained()
    except FileNotFoundError:
        torch.manual_seed(0)
        return UNet(WIDTH, 8).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    ds = ToyHeads(1, S, seed=0)
    return torch.from_numpy(ds[0]["image"]).permute(2, 0, 1)[None].float() / 127.5 - 1.0


@pytest.mark.parametrize("mode", ["eager", "channels_last", "channels_last_bf16"])
def test_inference_latency(benchmark, image, mode):
    benchmark.group = "inference, 1 image 128x128"
    G = _generator()
    x = image
    if mode != "eager":
        G.to(memory_format=torch.channels_last)
        x = image.contiguous(memory_format=torch.channels_last)

    def run():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode.endswith("bf16")):
            return G(x)

    out = benchmark(run)
    assert out.shape == (1, 4, S, S)


def test_inference_latency_onnxruntime(benchmark, image, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    benchmark.group = "inference, 1 image 128x128"
    G = _generator()
    path = tmp_path / "unet.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(G, (image,), str(path), input_names=["image"], output_names=["maps"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = image.numpy()
    out = benchmark(sess.run, None, {"image": x})[0]
    with torch.no_grad():
        ref = G(image).numpy()
    assert np.abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_train_step(benchmark, amp):
    benchmark.group = f"training step, batch {B}, width {WIDTH}, {S}x{S}"
    torch.manual_seed(0)
    G = UNet(WIDTH, 8).to(memory_format=torch.channels_last)
    D = Critic(WIDTH).to(memory_format=torch.channels_last)
    opt_g = torch.optim.RMSprop(G.parameters(), lr=1e-4)
    opt_d = torch.optim.RMSprop(D.parameters(), lr=1e-4)
    x = (torch.rand(B, 3, S, S) * 2 - 1).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(B, 4, S, S) * 2 - 1).contiguous(memory_format=torch.channels_last)
    xx = torch.cat([x, x])

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            fake = G(x)
            s = D(xx, torch.cat([y, fake.detach().float()]))
        opt_d.zero_grad()
        critic_loss(s[:B], s[B:]).backward()
        opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            s2 = D(xx, torch.cat([y, fake.float()]))
        opt_g.zero_grad()
        generator_loss(s2[B:], fake, y)[0].backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)

    step()  # warm-up (oneDNN primitive creation)
    benchmark.pedantic(step, rounds=5, iterations=1)
    benchmark.extra_info["images_per_second"] = B / benchmark.stats.stats.median


def test_collate_batch(benchmark):
    benchmark.group = f"loading, batch {B}"
    ds = ToyHeads(B, S, seed=0)
    items = [(3, j, ds[j]) for j in range(B)]
    batch = benchmark(collate, items, Augment(), 0)
    assert batch["image"].shape == (B, 3, S, S)


def test_read_synthetic_batch(benchmark):
    root = os.environ.get("MONOHEAD_BENCH_DATA")
    if not root:
        pytest.skip("set MONOHEAD_BENCH_DATA=DIR (a SyntheticHeads folder) to time reading it")
    from monohead.synth import SyntheticHeads

    benchmark.group = f"loading, batch {B}"
    ds = SyntheticHeads(root)
    rng = np.random.default_rng(0)

    def read():
        idx = rng.integers(0, len(ds), size=B)
        return collate([(0, j, ds[int(i)]) for j, i in enumerate(idx)], Augment(), 0)

    benchmark(read)
