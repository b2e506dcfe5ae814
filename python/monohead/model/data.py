"""From data-set items to training tensors: conversion, augmentation, the step-indexed order.

A data set is any indexable object (``len`` and ``[i]``, e.g. :class:`monohead.synth.SyntheticHeads`)
whose items are dicts with ``image (H, W, 3) uint8``, ``normals (H, W, 3) float32`` (unit in
the mask, 0 outside), ``W (H, W) float32`` (``|grad h| >= 0``, 0 outside) and ``mask (H, W)
bool``; other keys (``depth``, ``params``) are ignored.

Reproducibility: the batch of training step ``k`` is a pure function of ``(seed, k)``: epoch
``e`` visits the items in the order ``default_rng([seed, e]).permutation(n)`` and the
augmentation of the ``j``-th sample of step ``k`` draws from a generator seeded by
``(seed, k, j)``. A run that is stopped and resumed therefore sees the same batches as one
that was not, with any number of loader workers or processes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .unet import W_SCALE, encode_w

__all__ = [
    "Augment",
    "Batch",
    "ConcatData",
    "data_summary",
    "dataset_info",
    "StepBatches",
    "StepDataset",
    "collate",
    "gaussian_blur",
    "images_to_tensor",
    "item_targets",
    "sample_seed",
]


@dataclass(frozen=True)
class Augment:
    """Random photometric augmentation of the input image (the paper's blur and noise).

    With probability ``blur_p`` the image is blurred by a Gaussian of standard deviation drawn
    uniformly in ``[0, blur_sigma]`` pixels; with probability ``noise_p`` Gaussian noise of
    standard deviation drawn uniformly in ``[0, noise_std]`` (image in ``[0, 1]``) is added,
    then the image is clamped to ``[0, 1]``. The maps are not changed.
    """

    blur_p: float = 0.5
    blur_sigma: float = 1.5
    noise_p: float = 0.5
    noise_std: float = 0.05

    def __post_init__(self) -> None:
        for name in ("blur_p", "noise_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {p}")
        for name in ("blur_sigma", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")


class Batch(dict):
    """A training batch: ``image (B, 3, H, W)`` float32 in ``[-1, 1]``, ``target (B, 4, H, W)``
    float32 (N, then encoded W), ``mask (B, H, W)`` bool, and ``step`` (int or None)."""

    def pin_memory(self) -> Batch:  # pragma: no cover - only with pin_memory=True on CUDA
        out = Batch(self)
        for k, v in self.items():
            if isinstance(v, torch.Tensor):
                out[k] = v.pin_memory()
        return out


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur each image with its own Gaussian: ``(B, C, H, W)`` float, ``sigma (B,)`` pixels.

    Separable kernel of ``2 radius + 1`` taps, reflect padding; ``sigma == 0`` leaves the
    image unchanged.
    """
    B, C, H, W = images.shape
    t = torch.arange(-radius, radius + 1, dtype=images.dtype)
    s = sigma.to(images.dtype).clamp_min(1e-6)[:, None]
    k = torch.exp(-0.5 * (t[None, :] / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # (B, K); sigma ~ 0 gives a delta
    k = k.repeat_interleave(C, dim=0)  # (B*C, K)
    x = images.reshape(1, B * C, H, W)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k[:, None, None, :], groups=B * C)
    x = F.conv2d(x, k[:, None, :, None], groups=B * C)
    return x.reshape(B, C, H, W)


def images_to_tensor(images: Any) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 (or float in [0, 1]) NumPy images -> ``(B, 3, H, W)`` float32 in ``[-1, 1]``."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must have shape (B, H, W, 3); got {arr.shape}")
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    elif arr.dtype.kind == "f":
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(0, 3, 1, 2).mul(2.0).sub_(1.0)
    else:
        raise TypeError(f"images must be uint8 or float in [0, 1]; got dtype {arr.dtype}")
    return t.contiguous()


def item_targets(item: dict[str, Any], w_scale: float = W_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """``(target (4, H, W) float32, mask (H, W) bool)`` of one data-set item, checked."""
    for key in ("image", "normals", "W", "mask"):
        if key not in item:
            raise KeyError(f"data-set item has no {key!r}; got keys {sorted(item)}")
    image, normals, Wmap, mask = (np.asarray(item[k]) for k in ("image", "normals", "W", "mask"))
    H, Wd = image.shape[:2]
    if image.shape != (H, Wd, 3) or normals.shape != (H, Wd, 3) or Wmap.shape != (H, Wd) or mask.shape != (H, Wd):
        raise ValueError(
            "data-set item must have image (H, W, 3), normals (H, W, 3), W (H, W), mask (H, W); got "
            f"{image.shape}, {normals.shape}, {Wmap.shape}, {mask.shape}"
        )
    m = mask.astype(bool)
    n = np.where(m[..., None], normals, 0.0).astype(np.float32)
    w = np.where(m, np.nan_to_num(Wmap, nan=0.0, posinf=1e6), 0.0).astype(np.float32)
    target = np.concatenate([n.transpose(2, 0, 1), encode_w(w, w_scale)[None]], axis=0)
    return np.ascontiguousarray(target, dtype=np.float32), m


def sample_seed(seed: int, step: int, j: int) -> int:
    """A 63-bit seed for stream ``j`` of training step ``step`` of a run seeded ``seed``: the
    same triple always gives the same seed, different triples independent ones."""
    return int(np.random.SeedSequence([seed, step, j]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def collate(samples: Sequence[Any], augment: Augment | None = None, seed: int = 0, w_scale: float = W_SCALE) -> Batch:
    """Stack items into a :class:`Batch`, augmenting the images when ``augment`` is given.

    ``samples`` are data-set items, or ``(step, j, item)`` triples from :class:`StepDataset`;
    with triples the augmentation of sample ``j`` of step ``step`` is seeded by
    ``(seed, step, j)`` (else by ``(seed, -1, position)``).
    """
    if not samples:
        raise ValueError("collate needs at least one sample")
    step = None
    keyed = []
    for pos, s in enumerate(samples):
        if isinstance(s, tuple):
            step, j, item = s
        else:
            j, item = pos, s
        keyed.append((j, item))
    images = images_to_tensor(np.stack([np.asarray(it["image"]) for _, it in keyed]))
    targets, masks = zip(*(item_targets(it, w_scale) for _, it in keyed), strict=True)
    target = torch.from_numpy(np.stack(targets))
    mask = torch.from_numpy(np.stack(masks))
    if augment is not None:
        images = _augment(images, augment, seed, -1 if step is None else step, [j for j, _ in keyed])
    return Batch(image=images, target=target, mask=mask, step=step)


def _augment(images: torch.Tensor, aug: Augment, seed: int, step: int, js: list[int]) -> torch.Tensor:
    B, C, H, W = images.shape
    x = (images + 1.0) * 0.5  # [0, 1]
    sigma = torch.zeros(B)
    noise_std = torch.zeros(B)
    noise = torch.zeros(B, C, H, W)
    for b, j in enumerate(js):
        g = torch.Generator().manual_seed(sample_seed(seed, step, j))
        u = torch.rand(4, generator=g)
        if u[0] < aug.blur_p:
            sigma[b] = u[1] * aug.blur_sigma
        if u[2] < aug.noise_p and aug.noise_std > 0:
            noise_std[b] = u[3] * aug.noise_std
            noise[b] = torch.randn(C, H, W, generator=g)
    if bool((sigma > 0.05).any()):
        radius = max(1, math.ceil(3 * aug.blur_sigma))
        radius = min(radius, (min(H, W) - 1))
        blurred = gaussian_blur(x, sigma, radius)
        x = torch.where((sigma > 0.05)[:, None, None, None], blurred, x)
    x = (x + noise_std[:, None, None, None] * noise).clamp_(0.0, 1.0)
    return x * 2.0 - 1.0


class ConcatData:
    """Several data sets read as one: item ``i`` of the whole is item ``i - offset_k`` of part ``k``.

    For training on data sets rendered in separate runs (other seeds, other generator
    settings or versions: ``monohead train`` mixes folders only when each is listed with
    ``--data``). ``meta`` lists each part's :func:`dataset_info` (length, folder, seed,
    generator version, skipped shards) and ``generator_versions``, the sorted versions of the
    parts that say theirs, for the run's config and the model card.

    Args:
        parts: a non-empty sequence of indexable data sets (``len`` and ``[i]``). Parts that
            state their image ``size`` (``SyntheticHeads``) must all have the same.
    """

    def __init__(self, parts: Sequence[Any]) -> None:
        parts = list(parts)
        if not parts:
            raise ValueError("parts must hold at least one data set; got none")
        for k, d in enumerate(parts):
            if not (hasattr(d, "__len__") and hasattr(d, "__getitem__")):
                raise TypeError(f"parts[{k}] must be an indexable data set (len and [i]); got {type(d).__name__}")
        sizes = {k: tuple(d.size) for k, d in enumerate(parts) if isinstance(getattr(d, "size", None), (tuple, list))}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"parts must have one image size; got {', '.join(f'parts[{k}]: {v}' for k, v in sizes.items())}"
            )
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(d) for d in parts])
        infos = [dataset_info(d) for d in parts]
        versions = sorted({i["generator_version"] for i in infos if i.get("generator_version") is not None})
        self.meta: dict[str, Any] = {"parts": infos, "generator_versions": versions}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> Any:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for {n} items")
        i = int(i) % n
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.parts[k][i - int(self.offsets[k])]


def dataset_info(dataset: Any) -> dict[str, Any]:
    """What a run's config and a model card say about a data set: class, length, its metadata
    dict if it has one (``meta``, ``metadata``, ``manifest`` or ``info``), its ``root`` and,
    when the metadata says them, its ``seed``, ``generator_version`` and ``skipped_shards``
    (copied to the top level; for a :class:`ConcatData`, ``generator_versions``)."""
    info: dict[str, Any] = {"class": f"{type(dataset).__module__}.{type(dataset).__qualname__}", "count": len(dataset)}
    for attr in ("meta", "metadata", "manifest", "info"):
        m = getattr(dataset, attr, None)
        if isinstance(m, dict):
            try:
                json.dumps(m)
            except (TypeError, ValueError):
                continue
            info["meta"] = m
            break
    root = getattr(dataset, "root", None)
    if root is not None:
        info["root"] = str(root)
    meta = info.get("meta") or {}
    for key in ("seed", "generator_version", "skipped_shards", "generator_versions"):
        if key in meta:
            info[key] = meta[key]
    return info


def data_summary(info: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per data set folder of a :func:`dataset_info` (of a data set or a
    :class:`ConcatData`): ``root``, ``seed``, ``generator_version``, ``count``,
    ``skipped_shards`` (missing keys are ``None``). Empty for ``None``."""
    if not info:
        return []
    parts = (info.get("meta") or {}).get("parts")
    rows = parts if isinstance(parts, list) else [info]
    return [{k: r.get(k) for k in ("root", "seed", "generator_version", "count", "skipped_shards")} for r in rows]


class StepDataset(torch.utils.data.Dataset):
    """Wraps a data set so that it is indexed by ``(step, j, index)`` and returns ``(step, j, item)``."""

    def __init__(self, dataset: Any, indices: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[int, int, Any]:
        step, j, i = key
        return step, j, self.dataset[int(self.indices[i])]


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler of the steps ``start .. stop - 1``: yields ``[(step, j, index), ...]``.

    Step ``k`` is batch ``k % per_epoch`` of epoch ``k // per_epoch`` (``per_epoch = n //
    batch_size``, the last partial batch dropped); the epoch's order is
    ``default_rng([seed, epoch]).permutation(n)``. With ``world > 1`` process ``rank`` gets the
    samples ``j = rank, rank + world, ...`` of each global batch of ``batch_size``.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1
    ) -> None:
        if n < batch_size:
            raise ValueError(f"the training set ({n} items) is smaller than one batch ({batch_size})")
        if batch_size % world:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world})")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, np.empty(0, np.int64)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def indices(self, step: int) -> np.ndarray:
        """The data-set indices of global batch ``step`` (all processes)."""
        epoch, b = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        return self._perm[b * self.batch_size : (b + 1) * self.batch_size]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for step in range(self.start, self.stop):
            idx = self.indices(step)
            yield [(step, j, int(idx[j])) for j in range(self.rank, self.batch_size, self.world)]
