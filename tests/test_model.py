"""monohead.model: networks, W encoding, losses, data pipeline, prediction, weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monohead import model
from monohead.model import data as mdata
from monohead.model._toy import ToyHeads
from monohead.model.unet import UNet, decode_w, encode_w

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_import_monohead_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, monohead, monohead.cli; monohead.cli.build_parser(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- generator ---------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "depth", "size"), [(4, 3, 32), (8, 5, 32), (6, 6, 64)])
def test_unet_shapes_and_range(width, depth, size):
    torch.manual_seed(0)
    G = UNet(width=width, depth=depth)
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        y = G(x)
    assert y.shape == (2, 4, size, size)
    assert y.dtype == torch.float32
    assert float(y.abs().max()) <= 1.0
    assert len(G.encoders) == depth
    assert len(G.decoders) + 1 == depth
    assert G.multiple == 2 ** (depth - 1)


def test_unet_default_is_16_layers_down_to_1x1_on_128():
    G = UNet(width=4)  # default depth 8
    sizes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
        for m in [*G.encoders, *G.decoders, G.head]
    ]
    G.eval()
    with torch.no_grad():
        y = G(torch.zeros(1, 3, 128, 128))
    for h in hooks:
        h.remove()
    assert y.shape == (1, 4, 128, 128)
    assert len(sizes) == 16
    assert [s[1] for s in sizes[:8]] == [128, 64, 32, 16, 8, 4, 2, 1]
    assert [s[1] for s in sizes[8:]] == [2, 4, 8, 16, 32, 64, 128, 128]
    assert [s[0] for s in sizes[:8]] == [4, 8, 16, 32, 32, 32, 32, 32]
    assert sizes[-1][0] == 4
    # decoder blocks: ReLU, transposed conv, BN, (dropout on the 3 innermost)
    kinds = [[type(m).__name__ for m in d] for d in G.decoders]
    assert kinds[0] == ["ReLU", "ConvTranspose2d", "BatchNorm2d", "Dropout"]
    assert kinds[3] == ["ReLU", "ConvTranspose2d", "BatchNorm2d"]
    assert [type(m).__name__ for m in G.encoders[3]] == ["Conv2d", "BatchNorm2d", "LeakyReLU"]


def test_unet_rejects_bad_input():
    G = UNet(width=4, depth=4)
    with pytest.raises(ValueError, match=r"UNet input must have shape \(B, 3, H, W\); got \(1, 4, 32, 32\)"):
        G(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="divisible by 8; got \\(36, 32\\)"):
        G(torch.zeros(1, 3, 36, 32))
    with pytest.raises(ValueError, match="depth must be an integer >= 2"):
        UNet(depth=1)
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        UNet(width=0)


def test_dense_grad_matches_plain_gradients():
    torch.manual_seed(1)
    G = UNet(width=4, depth=4, dropout=0.0)
    x = torch.randn(2, 3, 32, 32)
    G(x).square().sum().backward()
    g1 = [p.grad.clone() for p in G.parameters()]
    G.zero_grad()
    G.to(memory_format=torch.channels_last)
    G(x.contiguous(memory_format=torch.channels_last)).square().sum().backward()
    for a, p in zip(g1, G.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-3, atol=1e-4)


# --- critic ------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "size"), [(4, 32), (8, 64), (4, 128)])
def test_critic_shapes(width, size):
    D = model.Critic(width=width)
    s = D(torch.randn(3, 3, size, size), torch.randn(3, 4, size, size))
    assert s.shape == (3,)
    assert torch.isfinite(s).all()
    assert D.body[0][0].in_channels == 7  # image + N + W
    assert sum(isinstance(m, torch.nn.Conv2d) for m in D.modules()) == 4


def test_critic_convolutions_are_spectrally_normalised():
    torch.manual_seed(0)
    D = model.Critic(width=8)
    x, y = torch.randn(4, 3, 32, 32), torch.randn(4, 4, 32, 32)
    for _ in range(30):  # power iterations converge in training mode
        D(x, y)
    for m in D.modules():
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach().reshape(m.weight.shape[0], -1)
            assert torch.linalg.matrix_norm(w, ord=2) <= 1.02


def test_critic_rejects_bad_input():
    D = model.Critic(width=4)
    with pytest.raises(ValueError, match="maps must have shape \\(2, 4, 32, 32\\)"):
        D(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="image must have shape"):
        D(torch.zeros(2, 1, 32, 32), torch.zeros(2, 4, 32, 32))


# --- W encoding, losses --------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 0.25, 4.0])
def test_w_encoding_round_trips(scale):
    W = np.array([0.0, 1e-4, 0.1, 0.5, 1.0, 3.0, 30.0, 1e3])
    c = encode_w(W, scale)
    assert c[0] == 0
    assert np.all(np.diff(c) > 0)
    assert np.all((c >= 0) & (c < 1))
    assert encode_w(np.array([scale]), scale)[0] == pytest.approx(0.5)
    np.testing.assert_allclose(decode_w(c, scale), W, rtol=1e-9, atol=1e-12)
    t = torch.tensor(W, dtype=torch.float64)
    torch.testing.assert_close(decode_w(encode_w(t, scale), scale), t)
    # network outputs outside [0, 1) decode to finite W >= 0
    out = decode_w(np.array([-0.3, 1.0, 1.5]), scale)
    assert out[0] == 0
    assert np.all(np.isfinite(out))
    assert out[1] > 1e5 * scale
    assert encode_w(np.array([-2.0]), scale)[0] == 0
    with pytest.raises(ValueError, match="scale must be > 0"):
        encode_w(W, 0.0)


def test_losses_follow_the_paper_objective():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.5, -0.5])
    assert model.critic_loss(real, fake) == pytest.approx(0.0 - 2.0)
    pred, target = torch.zeros(2, 4, 3, 3), torch.ones(2, 4, 3, 3)
    assert model.l2_loss(pred, target) == pytest.approx(4.0)  # channel sum, pixel mean
    total, adv, l2 = model.generator_loss(fake, pred, target, lambda_l2=500)
    assert adv == pytest.approx(0.0)
    assert total == pytest.approx(2000.0)
    with pytest.raises(ValueError, match="same shape"):
        model.l2_loss(pred, target[:, :3])


# --- data pipeline -------------------------------------------------------------------------


def test_collate_converts_and_augments_deterministically():
    ds = ToyHeads(6, 32, seed=3)
    items = [(7, j, ds[j]) for j in range(4)]
    aug = mdata.Augment(blur_p=1.0, noise_p=1.0)
    a = mdata.collate(items, aug, seed=1)
    b = mdata.collate(items, aug, seed=1)
    c = mdata.collate([(8, j, it) for _, j, it in items], aug, seed=1)
    plain = mdata.collate([it for *_, it in items])
    assert a["image"].shape == (4, 3, 32, 32)
    assert a["target"].shape == (4, 4, 32, 32)
    assert a["mask"].dtype == torch.bool
    assert a["image"].min() >= -1
    assert a["image"].max() <= 1
    assert a["step"] == 7
    torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
    assert not torch.equal(a["image"], c["image"])
    torch.testing.assert_close(a["target"], plain["target"], rtol=0, atol=0)  # maps are not augmented
    assert not torch.equal(a["image"], plain["image"])
    it = ds[0]
    np.testing.assert_allclose(plain["target"][0, :3].permute(1, 2, 0).numpy(), it["normals"])
    np.testing.assert_allclose(plain["target"][0, 3].numpy(), encode_w(it["W"]), rtol=1e-6)
    np.testing.assert_allclose((plain["image"][0].permute(1, 2, 0).numpy() + 1) * 127.5, it["image"], atol=1e-4)


def test_gaussian_blur():
    x = torch.rand(2, 3, 16, 16)
    same = mdata.gaussian_blur(x, torch.tensor([0.0, 0.0]), 3)
    torch.testing.assert_close(same, x)
    const = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(mdata.gaussian_blur(const, torch.tensor([1.2]), 4), const)
    y = mdata.gaussian_blur(x, torch.tensor([1.0, 2.0]), 6)
    assert y.std() < x.std()


def test_step_batches_are_a_function_of_the_step():
    s = mdata.StepBatches(10, 4, seed=5, start=0, stop=7)
    full = list(s)
    assert len(full) == 7
    assert s.per_epoch == 2
    epoch0 = sorted(i for b in full[:2] for _, _, i in b)
    assert len(set(epoch0)) == 8  # no repeats within an epoch
    tail = list(mdata.StepBatches(10, 4, seed=5, start=4, stop=7))
    assert tail == full[4:]
    r0 = list(mdata.StepBatches(10, 4, seed=5, start=0, stop=7, rank=0, world=2))
    r1 = list(mdata.StepBatches(10, 4, seed=5, start=0, stop=7, rank=1, world=2))
    for g, a, b in zip(full, r0, r1, strict=True):
        assert sorted(a + b) == sorted(g)
    with pytest.raises(ValueError, match="smaller than one batch"):
        mdata.StepBatches(3, 4, 0, 0, 1)


def test_item_targets_validates_items():
    it = ToyHeads(1, 32)[0]
    with pytest.raises(KeyError, match="no 'W'"):
        mdata.item_targets({k: v for k, v in it.items() if k != "W"})
    with pytest.raises(ValueError, match="data-set item must have"):
        mdata.item_targets({**it, "W": it["W"][:5]})


# --- prediction ----------------------------------------------------------------------------


def test_postprocess_mask_normals_and_w():
    out = torch.zeros(1, 4, 2, 2)
    out[0, :3, 0, 0] = torch.tensor([0.0, 0.6, 0.6])  # |N| = 0.85: foreground
    out[0, :3, 0, 1] = torch.tensor([0.3, 0.0, 0.2])  # |N| = 0.36: background
    out[0, :3, 1, 0] = torch.tensor([0.9, 0.0, -0.2])  # facing away: Nz clamped to > 0
    out[0, 3] = 0.5
    n, W, m = model.postprocess(out)
    assert m.tolist() == [[[True, False], [True, False]]]
    torch.testing.assert_close(n[0, :, 0, 0], torch.tensor([0.0, 2**-0.5, 2**-0.5]))
    assert n[0, 2, 1, 0] > 0
    assert n[0, :, 1, 0].norm() == pytest.approx(1.0)
    assert torch.all(n[0, :, :, 1] == 0)
    assert W[0, 0, 0] == pytest.approx(1.0)
    assert W[0, 0, 1] == 0


def test_predict_contract():
    torch.manual_seed(0)
    G = UNet(width=4, depth=4).eval()
    with torch.no_grad():  # make the untrained net predict a foreground everywhere
        G.head[1].bias.copy_(torch.tensor([0.0, 0.0, 3.0, 0.0]))
    imgs = np.stack([ToyHeads(3, 32)[i]["image"] for i in range(3)])
    n, W, m = model.predict(G, imgs, batch_size=2)
    assert n.shape == (3, 32, 32, 3)
    assert n.dtype == np.float64
    assert W.shape == (3, 32, 32)
    assert m.dtype == bool
    assert m.any()
    np.testing.assert_allclose(np.linalg.norm(n[m], axis=-1), 1.0, atol=1e-6)
    assert np.all(n[m][:, 2] > 0)
    assert np.all(n[~m] == 0)
    assert np.all(W >= 0)
    assert np.all(W[~m] == 0)
    n1, W1, m1 = model.predict(G, imgs[1], dtype=np.float32, channels_last=True)
    assert n1.shape == (32, 32, 3)
    assert n1.dtype == np.float32
    np.testing.assert_allclose(n1, n[1], atol=1e-4)
    with pytest.raises(ValueError, match=r"images must have shape \(B, H, W, 3\)"):
        model.predict(G, imgs[..., :2])


# --- weights -------------------------------------------------------------------------------


def test_load_pretrained_without_weights_raises(tmp_path, monkeypatch):
    from monohead.model import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="built without network weights"):
        model.load_pretrained()


def test_shipped_weights_state():
    """The package either ships no weights (load_pretrained raises) or real ones that reach the
    error stated in their model card on the fixed sample set tests/data/model_fixture.npz."""
    from pathlib import Path

    from monohead.model import weights

    f = weights.WEIGHTS_DIR / weights.WEIGHTS_FILE
    if not f.exists():
        with pytest.raises(FileNotFoundError, match="built without network weights"):
            model.load_pretrained()
        return
    G = model.load_pretrained()
    card = G.card
    assert card["dtype"] in ("float16", "float32")
    assert card["metrics"], "shipped weights need a model card with metrics"
    fixture = Path(__file__).parent / "data" / "model_fixture.npz"
    from monohead.evaluate import angular_error_stats, mask_precision_recall

    fx = card["fixture"]
    with np.load(fixture) as z:
        for sfx, flip in (("", False), ("_flip", True)):  # one pass, and mirror-averaged (reconstruct's default)
            if f"max_mean_deg{sfx}" not in fx:
                assert flip, "the card's fixture entry needs max_mean_deg"
                continue
            n, _, m = model.predict(G, z["images"], flip=flip)
            stats = angular_error_stats(n, z["normals"], m & z["mask"])
            precision, recall = mask_precision_recall(m, z["mask"])
            assert stats["mean"] <= fx[f"max_mean_deg{sfx}"], (flip, stats["mean"])
            assert precision >= fx[f"min_precision{sfx}"], (flip, precision)
            assert recall >= fx[f"min_recall{sfx}"], (flip, recall)


def test_export_compares_fp16_with_fp32_and_loads(tmp_path, monkeypatch):
    from monohead.model import weights

    ds = ToyHeads(14, 32, seed=2)
    cfg = model.TrainConfig(width=4, depth=4, batch_size=4, steps=3, val_count=4, val_every=3, log_every=1)
    model.train(ds, tmp_path / "run", cfg)
    held_out = ToyHeads(4, 32, seed=9)
    card = model.export_weights(tmp_path / "run", tmp_path / "strict", eval_dataset=held_out)
    a, b = card["metrics"]["float32"], card["metrics"]["float16"]
    close = weights._within(a["angular"]["mean"], b["angular"]["mean"], 0.05) and all(
        abs(a[k] - b[k]) <= 0.05 for k in ("mask_precision", "mask_recall")
    )
    assert card["dtype"] == ("float16" if close else "float32")
    dest = tmp_path / "w"
    card = model.export_weights(
        tmp_path / "run",
        dest,
        eval_dataset=held_out,
        tolerance_deg=90,
        tolerance_mask=100,
        card={"data_generator": "toy"},
    )
    assert card["dtype"] == "float16"
    assert card["data_generator"] == "toy"
    assert card["metrics_items"] == 4
    assert (dest / "unet.pt").stat().st_size == card["bytes"]
    assert json.loads((dest / "model_card.json").read_text())["sha256"] == card["sha256"]
    monkeypatch.setattr(weights, "WEIGHTS_DIR", dest)
    G = model.load_pretrained()
    assert G.card["training"]["step"] == 3
    assert not G.training
    from monohead.model.predict import evaluate_model

    flip, _ = evaluate_model(G, held_out, flip=True)
    assert card["metrics"]["flip"]["dtype"] == "float16"
    assert card["metrics"]["flip"]["angular"]["mean"] == pytest.approx(flip["angular"]["mean"], nan_ok=True)
    assert all(p.dtype == torch.float32 for p in G.parameters())
    ref = model.load_generator(tmp_path / "run" / "checkpoint.pt")
    x = np.stack([ds[i]["image"] for i in range(2)])
    a, b = model.predict(G, x)[0], model.predict(ref, x)[0]
    assert np.abs(a - b).max() < 0.05  # float16 rounding of the weights only


def test_unflip_output_is_the_mirror_image_in_the_conventions_frame():
    """The normals of the mirrored surface h(W-1-x, y) are the mirrored normals with Nx negated."""
    from monohead.geometry import normals_from_depth
    from monohead.model.predict import unflip_output

    yy, xx = np.mgrid[0:16, 0:20].astype(np.float64)
    depth = 0.3 * xx + 0.02 * (xx - 7.0) ** 2 - 0.1 * yy + 0.05 * xx * yy

    def as_out(n):
        return torch.from_numpy(np.concatenate([n, depth[..., None]], axis=-1)).permute(2, 0, 1)[None]

    n = normals_from_depth(depth)
    n_mirror = normals_from_depth(depth[:, ::-1].copy())
    assert np.abs(n[..., 0]).max() > 0.1  # the test has a real x slope
    got = unflip_output(as_out(n)).permute(0, 2, 3, 1)[0].numpy()
    np.testing.assert_allclose(got[..., :3], n_mirror, atol=1e-12)
    np.testing.assert_array_equal(got[..., 3], depth[:, ::-1])


def test_flip_averaging_is_mirror_equivariant():
    from monohead.model.predict import predict_tensor, unflip_output

    torch.manual_seed(1)
    G = UNet(width=4, depth=4).eval()
    with torch.no_grad():  # make the untrained net predict a foreground everywhere
        G.head[1].bias.copy_(torch.tensor([0.0, 0.0, 3.0, 0.0]))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    plain = predict_tensor(G, x)
    both = predict_tensor(G, x, flip=True)
    np.testing.assert_allclose(both, 0.5 * (plain + unflip_output(predict_tensor(G, x.flip(-1)))), atol=1e-6)
    assert not torch.allclose(both, plain, atol=1e-3)  # an untrained net is not mirror-symmetric
    np.testing.assert_allclose(predict_tensor(G, x.flip(-1), flip=True), unflip_output(both), atol=1e-6)
    imgs = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    n0, _, m0 = model.predict(G, imgs)
    n1, _, _ = model.predict(G, imgs, flip=True)
    assert n0.shape == n1.shape
    assert m0.any()
    assert not np.allclose(n0, n1)


def _net_with_bn_stats():
    torch.manual_seed(3)
    G = UNet(width=4, depth=4)
    G.train()
    with torch.no_grad():  # give the batch norms non-trivial running statistics
        for _ in range(3):
            G(torch.rand(4, 3, 32, 32) * 2 - 1)
        G.head[1].bias.copy_(torch.tensor([0.0, 0.0, 3.0, 0.0]))
    return G.eval()


def test_inference_model_folds_batch_norms_and_follows_weight_updates():
    G = _net_with_bn_stats()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    fast = model.inference_model(G)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules())  # the model itself is untouched
    assert model.inference_model(G) is fast  # cached
    with torch.no_grad():
        ref = G(x)
        np.testing.assert_allclose(fast(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-5)
        G.head[1].bias.add_(0.5)  # an in-place update, as an optimiser step makes
        changed = G(x)
    assert not torch.allclose(changed, ref, atol=1e-3)
    again = model.inference_model(G)
    assert again is not fast
    with torch.no_grad():
        np.testing.assert_allclose(again(x), changed, atol=1e-5)


def test_predict_fused_matches_the_plain_network_and_flips_per_image():
    from monohead.model.predict import predict_tensor

    G = _net_with_bn_stats()
    imgs = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    plain = model.predict(G, imgs, fused=False, channels_last=False, flip=True)
    fast = model.predict(G, imgs, flip=True)
    np.testing.assert_allclose(fast[0], plain[0], atol=1e-5)
    np.testing.assert_allclose(fast[1], plain[1], atol=1e-4)
    np.testing.assert_array_equal(fast[2], plain[2])
    # one bool per image: the same as flipping those images alone
    mixed = model.predict(G, imgs, flip=[True, False, True])
    one = model.predict(G, imgs[1:2], flip=False)
    np.testing.assert_allclose(mixed[0][[0, 2]], fast[0][[0, 2]], atol=1e-5)
    np.testing.assert_allclose(mixed[0][1:2], one[0], atol=1e-5)
    assert not np.allclose(mixed[0][1], fast[0][1], atol=1e-3)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with pytest.raises(ValueError, match="one bool per image"):
        predict_tensor(G, x, flip=[True])
    with pytest.raises(ValueError, match="one bool per image"):
        model.predict(G, imgs, flip=[True, False])
