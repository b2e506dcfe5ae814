"""The predictor of the experiments: the shipped network, a weights file, a module, a callable
or the oracle, with the cache key of its predictions."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io
from .._env import is_torch_module
from .testset import TestSet

__all__ = ["predict", "resolve_model"]


def _state_sha256(module: Any) -> str:
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def resolve_model(model: Any, model_key: str | None) -> tuple[Any, str, dict[str, Any]]:
    """``(predictor, cache key, info)`` of :func:`run_experiments`' ``model`` and ``model_key``;
    the predictor is ``"oracle"``, a torch module or a callable."""
    if model is None:
        from ..model import load_pretrained
        from ..model.weights import WEIGHTS_DIR, WEIGHTS_FILE

        net = load_pretrained()
        card = dict(getattr(net, "card", {}) or {})
        key = "shipped:" + (card.get("sha256") or _io.file_sha256(WEIGHTS_DIR / WEIGHTS_FILE))
        info = {"name": "shipped weights (monohead/model/weights/unet.pt)", "card": card}
    elif isinstance(model, str) and model == "oracle":
        net, key, info = "oracle", "oracle", {"name": "oracle: the true N, W and mask (no network)"}
    elif isinstance(model, (str, os.PathLike)):
        from ..model import load_generator

        if not Path(model).exists():
            raise FileNotFoundError(f"model: no such file or folder: {model}")
        net = load_generator(model)
        src = Path(net.info["source"])
        key = "file:" + _io.file_sha256(src)
        card_path = src.parent / "model_card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        facts = ("source", "kind", "step", "images_seen", "w_scale")
        info = {"name": str(model), "source": {k: net.info.get(k) for k in facts}, "card": card}
    elif is_torch_module(model):
        net = model
        key = "module:" + _state_sha256(model)
        card = dict(getattr(model, "card", {}) or {})
        info = {"name": f"{type(model).__module__}.{type(model).__qualname__} (module passed in)", "card": card,
                "source": getattr(model, "info", None)}  # fmt: skip
    elif callable(model):
        net = model
        key = f"callable:{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', type(model).__qualname__)}"
        info = {"name": key.split(":", 1)[1] + " (callable passed in)"}
    else:
        raise TypeError(
            f"model must be None, 'oracle', a weights path, a torch module or a callable; got {type(model).__name__}"
        )
    if model_key is not None:
        if not isinstance(model_key, str):
            raise TypeError(f"model_key must be a str; got {type(model_key).__name__}")
        key = model_key
    info["key"] = key
    return net, key, info


def predict(
    net: Any, ts: TestSet, callback: Callable[[int, int], None], batch: int = 32, flip: bool = False
) -> dict[str, np.ndarray]:
    """The stacked predictions of the test set's images, ``batch`` at a time: ``normals``
    ``(N, H, W, 3)`` float32, ``W`` ``(N, H, W)`` float32 (both 0 outside the mask), ``mask``
    ``(N, H, W)`` bool. ``callback(done, total)`` after each batch."""
    n = len(ts)
    if isinstance(net, str) and net == "oracle":
        callback(n, n)
        return {"normals": ts.normals.copy(), "W": ts.W.copy(), "mask": ts.mask.copy()}
    out: dict[str, list[np.ndarray]] = {"normals": [], "W": [], "mask": []}
    for s in range(0, n, batch):
        imgs = ts.images[s : s + batch]
        if is_torch_module(net):
            from ..model import predict as predict_net

            N, W, M = predict_net(net, imgs, batch_size=batch, flip=flip)
        else:
            N, W, M = net(imgs)
        N, W, M = np.asarray(N, np.float32), np.asarray(W, np.float32), np.asarray(M, bool)
        b = imgs.shape[0]
        if N.shape != (b, *ts.normals.shape[1:]) or W.shape != (b, *ts.W.shape[1:]) or M.shape != W.shape:
            raise ValueError(
                f"the predictor must return normals (B, H, W, 3), W (B, H, W) and mask (B, H, W) for {b} images; "
                f"got {N.shape}, {W.shape}, {M.shape}"
            )
        out["normals"].append(np.where(M[..., None], N, 0.0).astype(np.float32))
        out["W"].append(np.where(M, W, 0.0).astype(np.float32))
        out["mask"].append(M)
        callback(min(n, s + batch), n)
    return {k: np.concatenate(v) for k, v in out.items()}
