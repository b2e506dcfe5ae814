"""Shared fixtures: a seeded generator and the independent reference of the WLS energy."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20200227)


def unit_normals_from_gradients(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Normals (H, W, 3) with p = -Nx/Nz and q = -Ny/Nz."""
    n = np.stack([-p, -q, np.ones_like(p)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def perspective_sphere(H=48, W=56, f=70.0, center=(0.15, -0.1, 4.0), radius=1.0, margin=0.3):
    """Exact z-depth, normals (monohead frame), mask and K (OpenCV form) of a sphere seen by a pinhole camera."""
    K = np.array([[f, 0.0, W / 2 - 0.7], [0.0, f * 1.05, H / 2 + 0.4], [0.0, 0.0, 1.0]])
    v, u = np.mgrid[0:H, 0:W].astype(float)
    ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    C = np.asarray(center)
    rc = ray @ C
    rr = (ray * ray).sum(-1)
    disc = rc**2 - rr * (C @ C - radius**2)
    mask = disc > margin * rr
    t = (rc - np.sqrt(np.maximum(disc, 0))) / rr
    P = t[..., None] * ray
    n_cv = (P - C) / radius
    normals = np.where(mask[..., None], n_cv * np.array([1.0, -1.0, -1.0]), 0.0)
    z = np.where(mask, t, np.nan)  # ray has z = 1, so t is the depth along the optical axis
    return normals, z, mask, K


def shared_data(*parts: str):
    """A path under the shared data folder ($MONOHEAD_SHARED, else <repo>/../shared or /work/shared), or None."""
    import os
    from pathlib import Path

    roots = [os.environ.get("MONOHEAD_SHARED"), Path(__file__).resolve().parents[1].parent / "shared", "/work/shared"]
    for root in roots:
        if root and Path(root, "data", *parts).exists():
            return Path(root, "data", *parts)
    return None
