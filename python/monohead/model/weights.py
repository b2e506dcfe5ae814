"""Loading generators, evaluating checkpoints, and exporting the weights shipped with monohead.

The shipped weights live in ``monohead/model/weights/``: ``unet.pt`` (the generator's state
dict, float16 unless that cost accuracy) and ``model_card.json`` (architecture, W encoding,
training data and run, validation metrics). They are written only by :func:`export_weights`
from a real training run; a package built without them makes :func:`load_pretrained` raise
``FileNotFoundError``.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from .._env import WEIGHTS_CARD, WEIGHTS_DIR, __version__
from .._io import atomic_write_bytes, atomic_write_text
from .data import data_summary
from .files import WEIGHTS_FILE, WEIGHTS_FORMAT, GeneratorSource, build_generator, load_generator, read_generator
from .predict import MASK_THRESHOLD, evaluate_model
from .train import jsonable
from .unet import UNet

__all__ = ["WEIGHTS_DIR", "evaluate_checkpoint", "export_weights", "load_generator", "load_pretrained"]

#: The model card's file name in a weights folder (the shipped folder is :data:`WEIGHTS_DIR`,
#: defined torch-free in :mod:`monohead._env`).
CARD_FILE = WEIGHTS_CARD.name


def load_pretrained(device: Any = "cpu") -> UNet:
    """The generator shipped with monohead (no download), float32, in eval mode, on ``device``.

    Use it with :func:`monohead.model.predict`. ``model.card`` holds the model card (data,
    training, metrics). Raises ``FileNotFoundError`` if this copy of monohead was built without
    network weights.
    """
    f = WEIGHTS_DIR / WEIGHTS_FILE
    if not f.is_file():
        raise FileNotFoundError(
            f"monohead was built without network weights ({f} is missing). Train a model with "
            "`monohead train --data DIR --out RUN` and export it with `monohead train --out RUN "
            "--export-weights DIR`, or load a run with monohead.model.load_generator(RUN)."
        )
    G = load_generator(f, device)
    card = WEIGHTS_DIR / CARD_FILE
    G.card = json.loads(card.read_text()) if card.is_file() else {}
    return G


def evaluate_checkpoint(
    path: GeneratorSource,
    dataset: Any,
    *,
    max_items: int | None = None,
    batch_size: int = 32,
    device: Any = "cpu",
    channels_last: bool = True,
    bf16: bool = False,
    flip: bool = False,
    ema: bool = True,
) -> dict[str, Any]:
    """Table 1 metrics of a generator (run folder, checkpoint, best.pt or weights) on a data set.

    Args:
        path: what :func:`load_generator` accepts (a list of generators: their average).
        dataset: held-out items (e.g. ``SyntheticHeads`` of new seeds), see :mod:`monohead.model.data`.
        max_items: evaluate the first ``max_items`` items (default: all).
        channels_last, bf16, flip: as in :func:`monohead.model.predict` (float32, no flip by default).
        ema: the EMA of a run's generator where it keeps one (else its raw generator), as in
            :func:`monohead.model.read_generator`.

    Returns:
        The :func:`monohead.model.evaluate_model` metrics, plus ``source``, ``kind``, ``step``,
        ``images_seen`` and ``ema`` (``{"decay", "since_step"}`` or ``None``) of the generator
        and ``data`` (the data set's class, count and metadata).
    """
    from .data import dataset_info

    G = load_generator(path, device, ema=ema)
    n = len(dataset) if max_items is None else min(max_items, len(dataset))
    metrics, _ = evaluate_model(
        G, dataset, indices=range(n), batch_size=batch_size, channels_last=channels_last, bf16=bf16, flip=flip
    )
    info = {k: G.info.get(k) for k in ("source", "kind", "step", "images_seen", "ema")}
    return {**info, **metrics, "flip": flip, "data": dataset_info(dataset)}


def _within(a: float, b: float, tol: float) -> bool:
    """``|a - b| <= tol``, with NaN equal to NaN (no predicted mask in either)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def _half_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}


def export_weights(
    run: GeneratorSource,
    dest: str | os.PathLike | None = None,
    *,
    eval_dataset: Any = None,
    max_items: int = 200,
    tolerance_deg: float = 0.05,
    tolerance_mask: float = 0.05,
    card: dict[str, Any] | None = None,
    ema: bool = True,
) -> dict[str, Any]:
    """Write a run's generator as shipped weights: ``dest/unet.pt`` and ``dest/model_card.json``.

    Args:
        run: a run folder (its ``best.pt``, else ``checkpoint.pt``) or a generator file; or a
            list of them, whose weight average is exported
            (:func:`~monohead.model.files.average_generators`; the card's ``training`` then
            describes the last member and ``training.members`` lists them all).
        dest: the weights folder (default: the package's ``monohead/model/weights``); created
            if missing. Both files are written atomically.
        eval_dataset: held-out items; when given, the float32 and float16 weights are both
            evaluated on the first ``max_items`` and float16 is kept only if its mean angular
            error is within ``tolerance_deg`` degrees and its mask precision and recall within
            ``tolerance_mask`` percentage points of float32's (else float32 is written).
        card: extra model-card fields (e.g. notes on the data).
        ema: a run that keeps an EMA of its generator exports the EMA (``training.ema`` in the
            card: ``{"decay", "since_step"}``); ``False``: the raw generator of its checkpoint.

    The card's ``training_data`` lists each training data folder's root, seed, generator
    version, count and skipped shards (:func:`monohead.model.data.data_summary`);
    ``training.data_history`` says which data each span of steps saw, ``training.init`` the
    weights a fine-tuned run started from.

    Returns:
        The model card (also written), with ``dtype``, ``bytes`` and ``sha256`` of ``unet.pt``
        and ``metrics`` ``{"float32": ..., "float16": ..., "flip": ...}`` when evaluated
        (``flip``: the written weights with mirror test-time averaging, ``predict(flip=True)``).
    """
    model_cfg, state, info = read_generator(run, ema=ema)
    w_scale = info["w_scale"]
    state32 = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    state16 = _half_state(state32)
    metrics: dict[str, Any] = {}
    dtype = "float16"
    if eval_dataset is not None:
        n = min(max_items, len(eval_dataset))
        built = {}
        for name, st in (("float32", state32), ("float16", state16)):
            built[name] = build_generator(model_cfg, st, w_scale, "cpu")
            metrics[name], _ = evaluate_model(built[name], eval_dataset, indices=range(n))
        a, b = metrics["float32"], metrics["float16"]
        close = (
            _within(a["angular"]["mean"], b["angular"]["mean"], tolerance_deg)
            and _within(a["mask_precision"], b["mask_precision"], tolerance_mask)
            and _within(a["mask_recall"], b["mask_recall"], tolerance_mask)
        )
        dtype = "float16" if close else "float32"
        metrics["flip"], _ = evaluate_model(built[dtype], eval_dataset, indices=range(n), flip=True)
        metrics["flip"]["dtype"] = dtype
    weights = {
        "format": WEIGHTS_FORMAT,
        "model": model_cfg,
        "w_scale": w_scale,
        "dtype": dtype,
        "state_dict": state16 if dtype == "float16" else state32,
        "ema": info.get("ema"),
    }
    buf = io.BytesIO()
    torch.save(weights, buf)
    data = buf.getvalue()
    out = WEIGHTS_DIR if dest is None else Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    model_card: dict[str, Any] = {
        "format": WEIGHTS_FORMAT,
        "file": WEIGHTS_FILE,
        "dtype": dtype,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "parameters": int(sum(v.numel() for k, v in state32.items() if v.is_floating_point() and "running" not in k)),
        "architecture": {"generator": "UNet", **model_cfg},
        "input": "(B, 128, 128, 3) uint8 RGB photo, the head framed as in the synthetic data",
        "outputs": "normals (unit in the mask, camera frame x right / y up / z to the viewer), W = |grad h|, mask",
        "w_encoding": f"channel 3 = W / (W + {w_scale})",
        "w_scale": w_scale,
        "mask_threshold": MASK_THRESHOLD,
        "training": {
            k: info.get(k)
            for k in (
                "source",
                "step",
                "images_seen",
                "wall_seconds",
                "train_config",
                "data",
                "data_history",
                "init",
                "ema",
            )  # fmt: skip
        }
        | ({"members": info["members"]} if "members" in info else {}),
        "training_data": data_summary(info.get("data")),
        "metrics": metrics,
        "metrics_items": min(max_items, len(eval_dataset)) if eval_dataset is not None else 0,
        "eval_data": None,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "monohead_version": __version__,
    }
    if eval_dataset is not None:
        from .data import dataset_info

        model_card["eval_data"] = dataset_info(eval_dataset)
    if card:
        model_card.update(card)
    atomic_write_bytes(out / WEIGHTS_FILE, data)
    atomic_write_text(out / CARD_FILE, json.dumps(jsonable(model_card), indent=2) + "\n")
    return model_card
