"""Training of the complete head's correspondence network (:mod:`monohead.model.canonical`).

``monohead train-canonical`` runs :func:`train_canonical`; :func:`export_canonical` writes a
run's best weights as shipped ones. Kept apart from the network so that the photo pipeline,
which only predicts, does not import the synthetic data's reader.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .._io import atomic_write_bytes, atomic_write_text
from .canonical import (
    CANONICAL_CARD,
    CANONICAL_FILE,
    COORD_SCALE,
    DEFAULT_WIDTHS,
    IN_CHANNELS,
    CanonicalNet,
    canonical_targets,
    load_weights,
    network_input,
    save_weights,
)

__all__ = ["export_canonical", "train_canonical"]


def _cache(folder: Path, dest: Path, normal_net: Any, partial: bool, progress: Callable[[str], None] | None) -> Path:
    """Inputs and targets of every sample of ``folder``, made once into ``dest`` (atomic)."""
    from ..synth.dataset import SyntheticHeads
    from .predict import predict

    if dest.is_file():
        return dest
    ds = SyntheticHeads(folder, partial=partial)
    version = int((ds.manifest.get("settings") or {}).get("generator_version", 1))
    n = len(ds)
    if n == 0:
        raise ValueError(f"{folder} holds no complete sample")
    H, Wd = ds[0]["image"].shape[:2]
    arrays = {
        "image": np.zeros((n, H, Wd, 3), np.uint8),
        "normals": np.zeros((n, H, Wd, 3), np.float16),
        "W": np.zeros((n, H, Wd), np.float16),
        "mask": np.zeros((n, H, Wd), bool),
        "C": np.zeros((n, H, Wd, 3), np.float16),
        "skin": np.zeros((n, H, Wd), bool),
    }
    t0 = time.perf_counter()
    for s in range(0, n, 32):
        items = [ds[j] for j in range(s, min(n, s + 32))]
        imgs = np.stack([it["image"] for it in items])
        N, Wm, M = predict(normal_net, imgs, flip=True, dtype=np.float32)
        sl = slice(s, s + len(items))
        arrays["image"][sl], arrays["normals"][sl], arrays["W"][sl], arrays["mask"][sl] = imgs, N, Wm, M
        for j, it in enumerate(items):
            arrays["C"][s + j], arrays["skin"][s + j] = canonical_targets(it["params"], (H, Wd), version)
        if progress is not None:
            progress(f"cache {folder.name}: {s + len(items)}/{n} samples, {time.perf_counter() - t0:.0f} s")
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, buf.getvalue())
    return dest


def _tensors(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    X, C, V = [], [], []
    for f in files:
        with np.load(f) as z:
            X.append(network_input(z["image"], z["normals"], z["W"], z["mask"]).half())
            C.append(torch.from_numpy(z["C"]).permute(0, 3, 1, 2).contiguous())
            V.append(torch.from_numpy(z["skin"]))
    return torch.cat(X), torch.cat(C), torch.cat(V)


def _augment(x: torch.Tensor, c: torch.Tensor, v: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Mirror (normals' and coordinates' x negated), shift by up to 8 px, and jitter the image's
    gain, offset and noise."""
    B = x.shape[0]
    x, c, v = x.float(), c.float() / COORD_SCALE, v.clone()
    flip = torch.rand(B, generator=g) < 0.5
    x[flip], c[flip], v[flip] = x[flip].flip(-1), c[flip].flip(-1), v[flip].flip(-1)
    x[flip, 3] *= -1
    c[flip, 0] *= -1
    for b in range(B):
        dy, dx = torch.randint(-8, 9, (2,), generator=g).tolist()
        x[b] = torch.roll(x[b], (dy, dx), (-2, -1))
        c[b] = torch.roll(c[b], (dy, dx), (-2, -1))
        v[b] = torch.roll(v[b], (dy, dx), (-2, -1))
    gain = 1 + 0.3 * (torch.rand(B, 1, 1, 1, generator=g) * 2 - 1)
    offset = 0.2 * (torch.rand(B, 1, 1, 1, generator=g) * 2 - 1)
    noise = 0.03 * torch.rand(B, 1, 1, 1, generator=g) * torch.randn(x[:, :3].shape, generator=g)
    x[:, :3] = (x[:, :3] * gain + offset + noise).clamp(-1, 1)
    return x, c, v


def _losses(net: CanonicalNet, x: torch.Tensor, c: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out = F.interpolate(net(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
    vf = v.float()
    l1 = ((out[:, :3] - c).abs().sum(1) * vf).sum() / vf.sum().clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(out[:, 3], vf)
    return l1, bce, out


def _validate(net: CanonicalNet, X: torch.Tensor, C: torch.Tensor, V: torch.Tensor) -> dict[str, float]:
    """Mean canonical error (cm) on the pixels of skin inside the predicted mask, and the skin
    logit's cross-entropy."""
    net.eval()
    tot = count = bce_sum = 0.0
    with torch.no_grad():
        for s in range(0, len(X), 32):
            x, c, v = X[s : s + 32].float(), C[s : s + 32].float() / COORD_SCALE, V[s : s + 32]
            _, bce, out = _losses(net, x, c, v)
            m = v & (x[:, 7] > 0.5)
            err = (out[:, :3] - c).norm(dim=1) * COORD_SCALE
            tot += float(err[m].sum())
            count += float(m.sum())
            bce_sum += float(bce) * len(x)
    net.train()
    return {"error_cm": tot / max(count, 1.0), "bce": bce_sum / len(X)}


def train_canonical(
    data: list[Any],
    run: Any,
    *,
    val_data: Any,
    steps: int = 6000,
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    val_every: int = 500,
    partial: bool = False,
    callback: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train a :class:`CanonicalNet` (resumable: the same call continues a run folder).

    Args:
        data: ``monohead synth`` folders of training samples (generator version 2 or later).
        run: the run folder: ``config.json`` (fixed for the run), ``cache/`` (each folder's
            inputs, the shipped normal network's mirror-averaged maps, and targets,
            :func:`canonical_targets`; made once), ``checkpoint.pt`` (every ``val_every`` steps and
            on stop, atomic), ``best.pt`` (the lowest validation error), ``curve.tsv``.
        val_data: a held-out ``monohead synth`` folder.
        steps: steps to reach in all; the learning rate follows a cosine from ``lr`` to 0
            over them. batch_size, lr, seed: AdamW's batch, peak rate and the run's seed.
        val_every: steps between validations and checkpoints.
        partial: read data folders whose later shards are not made yet.
        callback: called with a progress line; should_stop: polled each step (a checkpoint
            is written before returning).

    Returns:
        ``{"run", "step", "steps", "stopped", "best": {"step", "error_cm"}, "last_val"}``.
    """
    from .weights import load_pretrained

    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1), ("val_every", val_every, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    folders = [Path(d) for d in data]
    if not folders:
        raise ValueError("data must name at least one training folder")
    for f in [*folders, Path(val_data)]:
        if not (f / "manifest.json").is_file():
            raise ValueError(f"{f} is not a monohead synth folder (no manifest.json)")
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    config = {"data": [str(f.resolve()) for f in folders], "val_data": str(Path(val_data).resolve()),
              "batch_size": batch_size, "lr": lr, "seed": seed, "widths": list(DEFAULT_WIDTHS)}  # fmt: skip
    cfg_file = run / "config.json"
    if cfg_file.is_file():
        old = json.loads(cfg_file.read_text())
        if old != config:
            raise ValueError(f"{run} was started with other settings ({old}); use a new run folder")
    else:
        atomic_write_text(cfg_file, json.dumps(config, indent=1) + "\n")
    normal_net = None
    files = []
    for f in [*folders, Path(val_data)]:
        dest = run / "cache" / f"{f.resolve().parent.name}-{f.name}.npz"
        if not dest.is_file() and normal_net is None:
            normal_net = load_pretrained()
        files.append(_cache(f, dest, normal_net, partial, callback))
    Xtr, Ctr, Vtr = _tensors(files[:-1])
    Xva, Cva, Vva = _tensors(files[-1:])

    torch.manual_seed(seed)
    net = CanonicalNet(DEFAULT_WIDTHS)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    step = 0
    best = {"step": 0, "error_cm": math.inf}
    ck = run / "checkpoint.pt"
    if ck.is_file():
        state = torch.load(ck, map_location="cpu", weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        g.set_state(state["rng"])
        step, best = int(state["step"]), state["best"]

    def save() -> None:
        import io

        buf = io.BytesIO()
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "rng": g.get_state(), "step": step,
                    "best": best}, buf)  # fmt: skip
        atomic_write_bytes(ck, buf.getvalue())

    last_val = None
    stopped = False
    t0 = time.perf_counter()
    while step < steps:
        if should_stop is not None and should_stop():
            stopped = True
            break
        for pg in opt.param_groups:
            pg["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps)) + lr * 1e-2
        idx = torch.randint(0, len(Xtr), (batch_size,), generator=g)
        x, c, v = _augment(Xtr[idx], Ctr[idx], Vtr[idx], g)
        l1, bce, _ = _losses(net, x, c, v)
        opt.zero_grad()
        (l1 + 0.5 * bce).backward()
        opt.step()
        step += 1
        if callback is not None and step % 50 == 0:
            callback(f"step {step}/{steps}: L1 {float(l1) * COORD_SCALE:.3f} cm, skin BCE {float(bce):.3f}, "
                     f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
        if step % val_every == 0 or step == steps:
            last_val = _validate(net, Xva, Cva, Vva)
            with open(run / "curve.tsv", "a") as fh:
                fh.write(f"{step}\t{last_val['error_cm']:.4f}\t{last_val['bce']:.4f}\n")
            if last_val["error_cm"] < best["error_cm"]:
                best = {"step": step, "error_cm": last_val["error_cm"]}
                save_weights(net, run / "best.pt")
            save()
            if callback is not None:
                callback(f"validation at step {step}: {last_val['error_cm']:.3f} cm (best {best['error_cm']:.3f} "
                         f"at {best['step']})")  # fmt: skip
    if stopped:
        save()
    return {"run": str(run), "step": step, "steps": steps, "stopped": stopped, "best": best, "last_val": last_val}


def export_canonical(run: Any, dest: Any, card: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy a run's ``best.pt`` (float16) to ``dest/canonical.pt`` with ``canonical_card.json``
    (the run's config and validation curve, plus ``card``)."""
    run, dest = Path(run), Path(dest)
    best = run / "best.pt"
    if not best.is_file():
        raise FileNotFoundError(f"{run} has no best.pt: train it first")
    net = load_weights(best)
    dest.mkdir(parents=True, exist_ok=True)
    save_weights(net, dest / CANONICAL_FILE)
    curve = []
    if (run / "curve.tsv").is_file():
        for line in (run / "curve.tsv").read_text().splitlines():
            s, e, b = line.split("\t")
            curve.append({"step": int(s), "error_cm": float(e), "bce": float(b)})
    info = {"architecture": {"widths": list(net.widths), "in_channels": IN_CHANNELS, "coord_scale_cm": COORD_SCALE},
            "config": json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {},
            "validation_curve": curve, **(card or {})}  # fmt: skip
    atomic_write_text(dest / CANONICAL_CARD, json.dumps(info, indent=1) + "\n")
    return info
