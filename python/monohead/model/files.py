"""The files of a training run and of exported weights: names, formats, and reading a
generator back from any of them.

A run folder holds ``checkpoint.pt`` (:data:`CHECKPOINT`, format :data:`CHECKPOINT_FORMAT`:
generator, critic, optimisers, config) and ``best.pt`` (:data:`BEST`, format
:data:`GENERATOR_FORMAT`: the best generator so far); :func:`monohead.model.export_weights`
writes ``unet.pt`` (:data:`WEIGHTS_FILE`, format :data:`WEIGHTS_FORMAT`). Written by
:mod:`monohead.model.train` and :mod:`monohead.model.weights`, read here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .unet import UNet

__all__ = [
    "BEST",
    "CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "GENERATOR_FORMAT",
    "WEIGHTS_FILE",
    "WEIGHTS_FORMAT",
    "build_generator",
    "load_checkpoint",
    "load_generator",
    "read_generator",
    "resolve_generator_file",
]

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
CHECKPOINT_FORMAT = "monohead-train-checkpoint/1"
GENERATOR_FORMAT = "monohead-generator/1"
WEIGHTS_FILE = "unet.pt"
WEIGHTS_FORMAT = "monohead-weights/1"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint or generator file written by :func:`~monohead.model.train` or
    :func:`~monohead.model.export_weights` (``weights_only`` unpickling)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}")
    return torch.load(p, map_location="cpu", weights_only=True)


def resolve_generator_file(path: str | os.PathLike) -> Path:
    """A run folder (best.pt, else checkpoint.pt), a weights folder (unet.pt), or a file."""
    p = Path(path)
    if p.is_dir():
        for name in (WEIGHTS_FILE, BEST, CHECKPOINT):
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{p} holds no {WEIGHTS_FILE}, {BEST} or {CHECKPOINT}")
    if not p.is_file():
        raise FileNotFoundError(f"no generator weights at {p}")
    return p


def read_generator(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(model config, state dict, info)`` of any generator file (see
    :func:`resolve_generator_file`): a training checkpoint, a ``best.pt`` or exported weights."""
    p = resolve_generator_file(path)
    ck = load_checkpoint(p)
    fmt = ck.get("format") if isinstance(ck, dict) else None
    if fmt == CHECKPOINT_FORMAT:
        cfg = ck["config"]
        model = {"width": cfg["width"], "depth": cfg["depth"], "dropout": cfg["dropout"]}
        info = {"source": str(p), "kind": "checkpoint", "step": ck["step"], "images_seen": ck["images_seen"],
                "wall_seconds": ck["wall_seconds"], "w_scale": cfg["w_scale"], "train_config": cfg,
                "data": ck.get("data"), "data_history": ck.get("data_history"), "init": ck.get("init")}  # fmt: skip
        return model, ck["generator"], info
    if fmt == GENERATOR_FORMAT:
        info = {"source": str(p), "kind": "best", "step": ck["step"], "images_seen": ck["images_seen"],
                "wall_seconds": ck.get("wall_seconds"), "w_scale": ck["w_scale"],
                "train_config": ck.get("train_config"), "data": ck.get("data"), "metrics": ck.get("metrics"),
                "data_history": ck.get("data_history"), "init": ck.get("init")}  # fmt: skip
        return ck["model"], ck["state_dict"], info
    if fmt == WEIGHTS_FORMAT:
        info = {"source": str(p), "kind": "weights", "w_scale": ck["w_scale"], "dtype": ck["dtype"]}
        return ck["model"], ck["state_dict"], info
    raise ValueError(f"{p} is not a monohead generator file (format {fmt!r})")


def build_generator(model_cfg: dict[str, Any], state: dict[str, torch.Tensor], w_scale: float, device: Any) -> UNet:
    """A :class:`UNet` of ``model_cfg`` holding ``state`` (float16 tensors are converted), with
    ``w_scale`` set, in eval mode on ``device``."""
    G = UNet(**model_cfg)
    G.load_state_dict(state)  # copy_ converts float16 tensors to the module's float32
    G.w_scale = float(w_scale)
    return G.to(device).eval()


def load_generator(path: str | os.PathLike, device: Any = "cpu") -> UNet:
    """A float32 :class:`UNet` in eval mode from a run folder, ``checkpoint.pt``, ``best.pt`` or a
    weights folder/file written by :func:`export_weights`. ``model.w_scale`` and ``model.info``
    (step, images seen, source ...) are set."""
    model_cfg, state, info = read_generator(path)
    G = build_generator(model_cfg, state, info["w_scale"], device)
    G.info = info
    return G
