"""A tiny in-memory data set of shaded analytic heads, for tests and smoke runs only.

Not training data: the real data come from :mod:`monohead.synth`. Each item has the same
form as a :class:`monohead.synth.SyntheticHeads` item (see :mod:`monohead.model.data`): the
analytic head of :func:`monohead.integration.surfaces.head` (with or without neck), shifted by
a few pixels, Lambertian-shaded under a random light with a random skin tint, on a random
noisy background.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..integration import surfaces

__all__ = ["ToyHeads"]


@lru_cache(maxsize=8)
def _head(size: int, neck: bool) -> surfaces.Surface:
    return surfaces.head(size, neck=neck)


def _shift(a: np.ndarray, dy: int, dx: int, fill: Any) -> np.ndarray:
    out = np.full_like(a, fill)
    H, W = a.shape[:2]
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[yd, xd] = a[ys, xs]
    return out


class ToyHeads:
    """``n`` shaded analytic heads of ``size x size`` pixels; item ``i`` depends on ``(seed, i)`` only."""

    def __init__(self, n: int, size: int = 64, seed: int = 0) -> None:
        if n < 1 or size < 16:
            raise ValueError(f"ToyHeads needs n >= 1 and size >= 16; got n={n}, size={size}")
        self.n, self.size, self.seed = n, size, seed
        self.meta = {"generator": "monohead.model._toy.ToyHeads", "count": n, "size": size, "seed": seed}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} items")
        i %= self.n
        rng = np.random.default_rng([self.seed, i])
        neck = bool(rng.random() < 0.5)
        s = _head(self.size, neck)
        r = self.size // 10
        dy, dx = (int(v) for v in rng.integers(-r, r + 1, size=2))
        mask = _shift(s.mask, dy, dx, False)
        normals = _shift(s.normals, dy, dx, 0.0).astype(np.float32)
        Wmap = _shift(s.W, dy, dx, 0.0).astype(np.float32)
        depth = _shift(s.depth, dy, dx, np.nan).astype(np.float32)
        light = rng.normal(size=3) * [0.5, 0.5, 0.2] + [0.0, 0.0, 1.0]
        light /= np.linalg.norm(light)
        tint = rng.uniform([0.6, 0.4, 0.3], [1.0, 0.8, 0.7])
        shade = np.clip(normals @ light, 0.0, 1.0)[..., None] * 0.8 + 0.2
        face = tint * shade
        bg = rng.uniform(0, 1, size=3) * 0.7 + rng.normal(0, 0.08, size=(self.size, self.size, 3))
        img = np.where(mask[..., None], face, bg) + rng.normal(0, 0.02, size=(self.size, self.size, 3))
        image = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
        return {
            "image": image,
            "normals": normals,
            "W": Wmap,
            "depth": depth,
            "mask": mask,
            "params": {"seed": self.seed, "index": i, "neck": neck, "shift": (dy, dx)},
        }
