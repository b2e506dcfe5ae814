"""The correspondence network: where on the head model each pixel of a crop lies (issue 17).

The complete head's fit (:func:`monohead.fullhead.fit_head`) matches the model's vertices to the
integrated surface point to plane, so a vertex may slide along that surface: the identity it
reads from the network's surface is then mostly the sliding's noise. :class:`CanonicalNet` gives
the fit correspondences instead. From a ``128 x 128`` crop and the normal network's maps of it,
it predicts per pixel

- the **canonical coordinates** of the skin seen there: the position (cm, model frame) on the
  neutral mean head of the ICT-FaceKit model (``HeadModel.shape()``, ``y = 0``, ``w = 0``,
  gaze ahead) of the point of the true head's skin or eyes first met along the pixel's ray,
  hair, glasses, headwear and hands ignored (the ray goes through them);
- a **skin logit**: whether the true head's skin or eyes cover the pixel at all.

``fit_head(..., canonical=C)`` turns the map into image landmarks of its vertices
(:func:`monohead.fullhead.canonical_landmarks`). The targets of the training data come from
the samples' parameters (:func:`canonical_targets`, ray casting the posed true head); the
inputs are the crop and the shipped normal network's mirror-averaged maps, as the photo
pipeline has them. :func:`train_canonical` trains it (resumable, atomic checkpoints; ``monohead
train-canonical``); :func:`load_canonical` loads the shipped weights
(``monohead/model/weights/canonical.pt``, with ``canonical_card.json``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._env import WEIGHTS_DIR
from .._io import atomic_write_bytes, atomic_write_text

__all__ = [
    "CANONICAL_CARD",
    "CANONICAL_FILE",
    "COORD_SCALE",
    "CanonicalNet",
    "canonical_targets",
    "load_canonical",
    "network_input",
    "predict_canonical",
    "train_canonical",
]

#: The shipped weights' file and card in :data:`~monohead.model.WEIGHTS_DIR`.
CANONICAL_FILE = "canonical.pt"
CANONICAL_CARD = "canonical_card.json"
#: The network's coordinate outputs are canonical positions in units of this many centimetres.
COORD_SCALE = 10.0
#: Input channels: the image (3, in [-1, 1]), the normals (3), W / (W + 1), the mask.
IN_CHANNELS = 8
_WIDTHS = (32, 48, 64, 96, 128, 160)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CanonicalNet(nn.Module):
    """A U-Net at half resolution: ``(B, 8, H, W)`` -> ``(B, 4, H/2, W/2)``.

    The input is :func:`network_input`'s; the output's channels 0-2 are the canonical
    coordinates divided by :data:`COORD_SCALE`, channel 3 the skin logit (:func:`predict_canonical`
    brings them to full resolution). A strided stem halves the resolution, then a U-Net of
    ``len(widths) - 1`` levels (two 3 x 3 convolutions with batch norm per level, max pooling
    down, bilinear up, skips concatenated). ``H`` and ``W`` must be multiples of
    ``2 ** len(widths)``.
    """

    def __init__(self, widths: tuple[int, ...] = _WIDTHS) -> None:
        super().__init__()
        if len(widths) < 2 or any(int(w) < 8 or int(w) % 8 for w in widths):
            raise ValueError(f"widths must be at least two multiples of 8 (>= 8); got {widths!r}")
        self.widths = tuple(int(w) for w in widths)
        w = self.widths
        self.stem = nn.Sequential(
            nn.Conv2d(IN_CHANNELS, w[0], 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w[0]),
            nn.ReLU(inplace=True),
        )
        self.inc = _block(w[0], w[0])
        self.downs = nn.ModuleList(_block(w[i], w[i + 1]) for i in range(len(w) - 1))
        self.ups = nn.ModuleList(_block(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1)))
        self.out = nn.Conv2d(w[0], 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(self.stem(x))]
        for d in self.downs:
            skips.append(d(F.max_pool2d(skips[-1], 2)))
        h = skips.pop()
        for u in self.ups:
            s = skips.pop()
            h = u(torch.cat([F.interpolate(h, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
        return self.out(h)


def network_input(images: Any, normals: Any, W: Any, mask: Any) -> torch.Tensor:
    """The network's input ``(B, 8, H, W)`` float32 from ``(B, H, W, 3)`` uint8 crops and the
    normal network's ``(B, H, W, 3)`` normals, ``(B, H, W)`` W and mask (one unbatched sample
    is batched)."""
    img = np.asarray(images)
    if img.ndim == 3:
        img, normals, W, mask = img[None], np.asarray(normals)[None], np.asarray(W)[None], np.asarray(mask)[None]
    n, w, m = np.asarray(normals), np.asarray(W, np.float32), np.asarray(mask)
    B, H, Wd = img.shape[:3]
    if img.shape != (B, H, Wd, 3) or img.dtype != np.uint8:
        raise ValueError(f"images must be (B, H, W, 3) uint8; got {img.shape} {img.dtype}")
    if n.shape != (B, H, Wd, 3) or w.shape != (B, H, Wd) or m.shape != (B, H, Wd):
        raise ValueError(
            f"normals, W and mask must be ({B}, {H}, {Wd}, 3), ({B}, {H}, {Wd}) and ({B}, {H}, {Wd}); "
            f"got {n.shape}, {w.shape} and {m.shape}"
        )
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    x = np.concatenate(
        [
            img.astype(np.float32) / 127.5 - 1.0,
            np.nan_to_num(n.astype(np.float32)),
            (w / (w + 1.0))[..., None],
            m[..., None].astype(np.float32),
        ],
        axis=-1,
    )
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def predict_canonical(net: CanonicalNet, images: Any, normals: Any, W: Any, mask: Any, flip: bool = True) -> np.ndarray:
    """Canonical coordinates ``(B, H, W, 3)`` float64 (cm, the mean head's model frame), NaN
    where the network sees no skin or ``mask`` is False.

    Args:
        net: a :class:`CanonicalNet` (e.g. :func:`load_canonical`); put in eval mode here.
        images: ``(B, H, W, 3)`` uint8 crops (or one ``(H, W, 3)``: unbatched output).
        normals, W, mask: the normal network's outputs for them (:func:`monohead.model.predict`).
        flip: also run the mirrored crops (the normals' x and the coordinates' x negated) and
            average, as the normal network's inference does.
    """
    single = np.asarray(images).ndim == 3
    x = network_input(images, normals, W, mask)
    net.eval()
    outs = []
    with torch.no_grad():
        for part in torch.split(x, 32):  # batches of 32: the memory stays small for any count
            if flip:  # the mirrored crops in the same batch
                xf = part.flip(-1)
                xf[:, 3] = -xf[:, 3]
                both = net(torch.cat([part, xf]))
                of = both[len(part) :].flip(-1)
                of[:, 0] = -of[:, 0]
                out = 0.5 * (both[: len(part)] + of)
            else:
                out = net(part)
            outs.append(F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False))
    out = torch.cat(outs)
    C = out[:, :3].permute(0, 2, 3, 1).double().numpy() * COORD_SCALE
    seen = (out[:, 3].numpy() > 0) & np.asarray(mask, bool).reshape(out.shape[0], *x.shape[-2:])
    C[~seen] = np.nan
    return C[0] if single else C


def load_canonical(device: Any = "cpu") -> CanonicalNet:
    """The correspondence network shipped with monohead, float32, eval mode (``.card``: its card).

    Raises ``FileNotFoundError`` when this copy of monohead was built without it."""
    f = WEIGHTS_DIR / CANONICAL_FILE
    if not f.is_file():
        raise FileNotFoundError(
            f"monohead was built without the correspondence network ({f} is missing); train one with "
            "`monohead train-canonical` and export it with --export-weights"
        )
    net = _load(f, device)
    card = WEIGHTS_DIR / CANONICAL_CARD
    net.card = json.loads(card.read_text()) if card.is_file() else {}  # type: ignore[assignment]
    return net


def _load(path: Path, device: Any = "cpu") -> CanonicalNet:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state" not in blob or "widths" not in blob:
        raise ValueError(f"{path} is not a CanonicalNet file (a dict with 'widths' and 'state')")
    net = CanonicalNet(tuple(int(w) for w in blob["widths"]))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state"].items()})
    return net.to(device).eval()


def canonical_targets(params: dict[str, Any], size: tuple[int, int], version: int = 2, model: Any = None) -> tuple[
    np.ndarray, np.ndarray
]:  # fmt: skip
    """The training targets of one synthetic sample: ``(C (H, W, 3) float32 cm, skin (H, W) bool)``.

    Each pixel's ray (orthographic, or the sample's perspective camera) is cast against the
    posed true head (:func:`monohead.evaluate.full_head.true_head_mesh`: skin and eyes, no
    hair, glasses, headwear or hands); ``C`` is the neutral mean head's position (cm, model
    frame) of the first point met, interpolated in its triangle; ``skin`` says where a ray
    met the head. Uses Embree (``embreex``) when installed, else trimesh's own ray tests.
    """
    import trimesh

    from ..evaluate.full_head import true_head_mesh
    from ..fullhead import PinholeWarp
    from ..synth.head_model import HeadModel

    hm = model if isinstance(model, HeadModel) else HeadModel.load(model)
    H, Wd = (int(s) for s in size)
    mesh = true_head_mesh(params, (H, Wd), hm, version)
    v = np.asarray(mesh.vertices, np.float64)
    cam = params.get("camera") or {}
    if cam.get("projection") == "perspective":
        v = PinholeWarp(cam["K"]).warp(v)  # rays along z in the warped space
    canon = hm.shape(np.zeros(hm.num_identities))  # (V, 3): true_head_mesh keeps every model vertex
    m = trimesh.Trimesh(v, mesh.faces, process=False)
    rr, cc = np.mgrid[0:H, 0:Wd]
    top = float(v[:, 2].max()) + 10.0
    origins = np.column_stack([cc.ravel(), -rr.ravel(), np.full(H * Wd, top)]).astype(np.float64)
    dirs = np.tile([0.0, 0.0, -1.0], (H * Wd, 1))
    tri, ray, loc = m.ray.intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
    bary = trimesh.triangles.points_to_barycentric(m.triangles[tri], loc)
    C = np.zeros((H * Wd, 3), np.float32)
    C[ray] = np.einsum("kv,kvc->kc", bary, canon[m.faces[tri]])
    skin = np.zeros(H * Wd, bool)
    skin[ray] = True
    return C.reshape(H, Wd, 3), skin.reshape(H, Wd)


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
              "batch_size": batch_size, "lr": lr, "seed": seed, "widths": list(_WIDTHS)}  # fmt: skip
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
    net = CanonicalNet(_WIDTHS)
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
                _save_weights(net, run / "best.pt")
            save()
            if callback is not None:
                callback(f"validation at step {step}: {last_val['error_cm']:.3f} cm (best {best['error_cm']:.3f} "
                         f"at {best['step']})")  # fmt: skip
    if stopped:
        save()
    return {"run": str(run), "step": step, "steps": steps, "stopped": stopped, "best": best, "last_val": last_val}


def _save_weights(net: CanonicalNet, dest: Path) -> None:
    import io

    buf = io.BytesIO()
    torch.save({"widths": list(net.widths), "state": {k: v.half() if v.is_floating_point() else v
                                                      for k, v in net.state_dict().items()}}, buf)  # fmt: skip
    atomic_write_bytes(dest, buf.getvalue())


def export_canonical(run: Any, dest: Any, card: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy a run's ``best.pt`` (float16) to ``dest/canonical.pt`` with ``canonical_card.json``
    (the run's config and validation curve, plus ``card``)."""
    run, dest = Path(run), Path(dest)
    best = run / "best.pt"
    if not best.is_file():
        raise FileNotFoundError(f"{run} has no best.pt: train it first")
    net = _load(best)
    dest.mkdir(parents=True, exist_ok=True)
    _save_weights(net, dest / CANONICAL_FILE)
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
