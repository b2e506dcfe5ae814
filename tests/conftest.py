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
