"""The test set: balanced by sex, rendered by :mod:`monohead.synth` or read from a data set.

:func:`make_test_set` renders (or resumes) the balanced synthetic test set; :func:`load_test_set`
reads one from an existing data set; both stack the ground truth into a :class:`TestSet`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .settings import DEFAULT_COUNT, DEFAULT_SEED, DEFAULT_SIZE, check_count

__all__ = [
    "Subset",
    "TestSet",
    "balanced_indices",
    "balanced_subset",
    "load_test_set",
    "make_test_set",
    "select_balanced",
]


@dataclass
class TestSet:
    """Ground truth of a test set, stacked.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 photos.
        normals: ``(N, H, W, 3)`` float32 unit normals (camera frame of the conventions), 0
            outside the mask.
        W: ``(N, H, W)`` float32 ``|grad h|``, 0 outside the mask.
        depth: ``(N, H, W)`` float32 height toward the viewer in pixels, NaN outside the mask.
        mask: ``(N, H, W)`` bool head masks.
        sex: per sample ``"female"``, ``"male"`` or ``None`` (no such notion in the data).
        ids: per sample its index in its data set.
        source: how the set was made or where it was read (JSON-able).
        key: SHA-256 of the arrays and ids (the cache key of everything computed from it).
    """

    __test__ = False  # not a pytest class

    images: np.ndarray
    normals: np.ndarray
    W: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    sex: list[str | None]
    ids: list[int]
    source: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _hash_arrays(*arrays: np.ndarray, extra: Any = None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _sex_of(params: Any) -> str | None:
    try:
        sex = params["skin"]["sex"]
    except (KeyError, TypeError, IndexError):
        return None
    return sex if sex in ("female", "male") else None


def select_balanced(sexes: Sequence[str | None], count: int) -> list[int]:
    """Positions of ``count`` samples, half female and half male, earliest first.

    The first ``ceil(count / 2)`` positions with ``"female"`` and the first ``floor(count / 2)``
    with ``"male"``, in increasing order. If the sexes are unknown (any ``None``) or one sex
    has too few samples, the first ``count`` positions are returned instead.
    """
    count = check_count(count)
    n_f, n_m = (count + 1) // 2, count // 2
    fem = [i for i, s in enumerate(sexes) if s == "female"][:n_f]
    mal = [i for i, s in enumerate(sexes) if s == "male"][:n_m]
    if any(s is None for s in sexes) or len(fem) < n_f or len(mal) < n_m:
        return list(range(min(count, len(sexes))))
    return sorted(fem + mal)


def balanced_indices(seed: int, count: int, size: int = DEFAULT_SIZE) -> tuple[list[int], list[str]]:
    """Indices of a balanced test set of the generator, from the random parameters only.

    The sex of sample ``i`` (``params["skin"]["sex"]``) is drawn before anything is rendered;
    the indices ``0, 1, 2, ...`` are scanned until ``ceil(count / 2)`` female and
    ``floor(count / 2)`` male ones are found.

    Returns:
        ``(indices, sexes)``, increasing indices.
    """
    from ..synth.generator import sample_params
    from ..synth.head_model import HeadModel

    count = check_count(count)
    model = HeadModel.load(None)
    n_f, n_m = (count + 1) // 2, count // 2
    indices: list[int] = []
    sexes: list[str] = []
    i = 0
    while n_f or n_m:
        sex = _sex_of(sample_params(seed, i, model, (size, size)))
        if sex is None:
            raise ValueError("the generator's parameters have no params['skin']['sex']: cannot balance the sexes")
        if (sex == "female" and n_f) or (sex == "male" and n_m):
            indices.append(i)
            sexes.append(sex)
            if sex == "female":
                n_f -= 1
            else:
                n_m -= 1
        i += 1
        if i > 100 * count + 1000:  # pragma: no cover - a broken generator
            raise RuntimeError("could not find a balanced set of samples")
    return indices, sexes


def _stack_items(items: Iterable[dict[str, Any]], ids: list[int], source: dict[str, Any]) -> TestSet:
    imgs, normals, Ws, depths, masks, sexes = [], [], [], [], [], []
    shape = None
    for j, it in enumerate(items):
        for k in ("image", "normals", "W", "depth", "mask"):
            if k not in it:
                raise ValueError(f"test item {j} has no {k!r}; got keys {sorted(it)}")
        img = np.asarray(it["image"])
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(f"test item {j}: image must be (H, W, 3) uint8; got {img.shape} {img.dtype}")
        if shape is None:
            shape = img.shape[:2]
        H, W_ = shape
        arrs = {
            "normals": (np.asarray(it["normals"], np.float32), (H, W_, 3)),
            "W": (np.asarray(it["W"], np.float32), (H, W_)),
            "depth": (np.asarray(it["depth"], np.float32), (H, W_)),
            "mask": (np.asarray(it["mask"], bool), (H, W_)),
        }
        for k, (a, want) in arrs.items():
            if a.shape != want or img.shape[:2] != shape:
                raise ValueError(f"test item {j}: {k} must have shape {want} like the first image; got {a.shape}")
        m = arrs["mask"][0]
        imgs.append(img)
        normals.append(np.where(m[..., None], arrs["normals"][0], 0.0).astype(np.float32))
        Ws.append(np.where(m, arrs["W"][0], 0.0).astype(np.float32))
        depths.append(np.where(m, arrs["depth"][0], np.nan).astype(np.float32))
        masks.append(m)
        sexes.append(_sex_of(it.get("params")))
    if not imgs:
        raise ValueError("the test set is empty")
    ts = TestSet(np.stack(imgs), np.stack(normals), np.stack(Ws), np.stack(depths), np.stack(masks), sexes, ids, source)
    ts.key = _hash_arrays(ts.images, ts.normals, ts.W, ts.depth, ts.mask, extra=[ids, sexes])
    return ts


def load_test_set(data: Any, count: int | None = None, balance: bool = True) -> TestSet:
    """A test set from an existing data set.

    Args:
        data: a synthetic data set folder (:class:`monohead.synth.dataset.SyntheticHeads`) or
            any indexable object of item dicts (``image``, ``normals``, ``W``, ``depth``,
            ``mask``, optional ``params``), e.g. a ``SyntheticHeads`` or a list.
        count: how many samples (default: all).
        balance: choose half female, half male (:func:`select_balanced`) when the items'
            ``params`` say; else the first ``count``.
    """
    if isinstance(data, (str, os.PathLike)):
        root = Path(data)
        if not root.is_dir():
            raise ValueError(f"data must be a data set folder; {str(root)!r} is not a folder")
        from ..synth.dataset import SyntheticHeads

        ds: Any = SyntheticHeads(root)
        source: dict[str, Any] = {"kind": "folder", "root": str(root.resolve()), "manifest": ds.manifest}
    elif hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        ds = data
        source = {"kind": type(data).__name__, "meta": getattr(data, "meta", None) or getattr(data, "manifest", None)}
    else:
        raise TypeError(f"data must be a data set folder or an indexable data set; got {type(data).__name__}")
    n = len(ds)
    if n == 0:
        raise ValueError("the data set is empty")
    want = n if count is None else min(check_count(count), n)
    if balance and want < n:
        pos = select_balanced([_sex_of(ds[i].get("params")) for i in range(n)], want)
    else:
        pos = list(range(want))
    items = [ds[i] for i in pos]
    ids = [int(it.get("index", p)) for it, p in zip(items, pos, strict=True)]
    source["count"] = len(pos)
    return _stack_items(items, ids, source)


def make_test_set(
    folder: Any,
    *,
    count: int = DEFAULT_COUNT,
    seed: int = DEFAULT_SEED,
    size: int = DEFAULT_SIZE,
    spp: int = 16,
    callback: Callable[[int, int], None] | None = None,
) -> TestSet:
    """Render (or resume) the balanced synthetic test set in ``folder`` and load it.

    The indices are chosen by :func:`balanced_indices`; the data set ``0 .. max index`` (a
    few more samples than ``count``, as the sexes are drawn at random) is generated by
    :func:`monohead.synth.dataset.generate` in ``folder`` (resumable, shards), and the chosen
    samples are returned.

    Args:
        folder: data set folder (created); a folder holding another data set is an error.
        count, seed, size, spp: the test set (``size x size`` images, ``spp`` samples per pixel).
        callback: ``callback(done, total)`` after each rendered sample.
    """
    from ..synth import dataset

    indices, sexes = balanced_indices(seed, count, size)
    total = indices[-1] + 1
    info = dataset.generate(folder, total, seed=seed, size=size, spp=spp, preview=False, progress=callback)
    ds = dataset.SyntheticHeads(folder)
    items = [ds[i] for i in indices]
    got = [_sex_of(it.get("params")) for it in items]
    if got != sexes:  # pragma: no cover - the generator changed under our feet
        raise RuntimeError("the rendered samples' sexes differ from their parameters'")
    source = {"kind": "generated", "root": str(Path(folder).resolve()), "seed": seed, "size": size, "spp": spp,
              "data_set_count": total, "rendered_now": int(info.get("generated", 0)),
              "seconds_per_sample": info.get("seconds_per_sample"),
              "settings": ds.manifest.get("settings")}  # fmt: skip
    return _stack_items(items, indices, source)


class Subset:
    """Items ``indices`` of a data set, in that order (``meta`` says which and how they were chosen)."""

    def __init__(self, data: Any, indices: Sequence[int], how: str) -> None:
        from ..model.data import dataset_info

        self.data, self.indices = data, [int(i) for i in indices]
        self.meta = {"of": dataset_info(data), "indices": self.indices, "selection": how}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.data[self.indices[i]]


def balanced_subset(data: Any, count: int) -> Subset:
    """The first ``count`` items of ``data`` half female, half male (:func:`select_balanced`), as
    :func:`run_experiments` chooses its test set; for the held-out evaluation of a network.

    Raises:
        ValueError: an item does not say its sex (``params["skin"]["sex"]``), or ``data`` holds
            too few heads of one sex.
    """
    count = check_count(count)
    sexes = [_sex_of(data[i].get("params")) for i in range(len(data))]
    if None in sexes:
        raise ValueError("the items must say their sex (params['skin']['sex']), as monohead synth's do, to be balanced")
    n_f, n_m = (count + 1) // 2, count // 2
    picked = select_balanced(sexes, count)
    if len(picked) < count or sum(sexes[i] == "female" for i in picked) != n_f:
        raise ValueError(
            f"the data holds {sexes.count('female')} female and {sexes.count('male')} male heads; "
            f"{count} balanced heads need {n_f} and {n_m}: generate more samples"
        )
    return Subset(data, picked, f"balanced: first {n_f} female and {n_m} male")
