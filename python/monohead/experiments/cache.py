"""The experiments' cache: each stage's result stored under a key of what it depends on.

Results are JSON files ``{"key": ..., "value": ...}`` and the predictions one ``.npz`` holding
its key; a file whose key differs (another test set, model, λ grid...) is a miss. All writes are
atomic (:mod:`monohead._io`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io

__all__ = ["json_default", "make_key", "load_json", "load_predictions", "save_json", "save_predictions"]

#: Part of every key: a change of the cache's layout or meaning bumps it.
CACHE_FORMAT = "monohead-experiments-cache/1"


def make_key(*parts: Any) -> str:
    """SHA-256 of the JSON of ``parts`` (what a stage's result depends on)."""
    return hashlib.sha256(json.dumps([CACHE_FORMAT, *parts], sort_keys=True, default=str).encode()).hexdigest()


def load_json(path: Path, key: str) -> Any:
    """The value stored in ``path`` under ``key``, or ``None`` (no file, unreadable, other key)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("value") if isinstance(data, dict) and data.get("key") == key else None


def save_json(path: Path, key: str, value: Any) -> None:
    """Store ``value`` (JSON-able, NumPy values included) in ``path`` under ``key``."""
    _io.atomic_write_text(path, json.dumps({"key": key, "value": value}, default=json_default) + "\n")


def json_default(o: Any) -> Any:
    """``json.dumps``' ``default``: NumPy scalars and arrays, paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def load_predictions(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The stacked predictions (``normals``, ``W``, ``mask``) stored in ``path`` under ``key``, or ``None``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return {k: z[k] for k in ("normals", "W", "mask")}
    except (OSError, KeyError, ValueError):
        return None


def save_predictions(path: Path, key: str, pred: dict[str, np.ndarray]) -> None:
    """Store the stacked predictions in ``path`` (compressed ``.npz``) under ``key``."""
    with _io.atomic_open(path, "wb") as f:
        np.savez_compressed(f, key=np.array(key), **pred)
