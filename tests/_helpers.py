"""Plain helpers that test modules import (``from tests._helpers import ...``): input builders
written from the conventions' text, independent of monohead's code. Fixtures live in conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def unit_normals_from_gradients(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Unit normals ``(..., 3)`` with ``p = -Nx/Nz`` and ``q = -Ny/Nz`` (x right, y up, z toward the viewer)."""
    n = np.stack([-p, -q, np.ones_like(p)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def tricky_mask(rng: np.random.Generator, H: int = 40, W: int = 52) -> np.ndarray:
    """Several components, holes, one-pixel bridges, isolated pixels and thin strips.

    Drawn on a 40 x 52 canvas and cropped to ``(H, W)``.
    """
    m = np.zeros((40, 52), bool)
    m[2:18, 2:20] = True
    m[8:11, 8:12] = False  # hole
    m[2:18, 24:40] = True
    m[9, 20:24] = True  # one-pixel-wide bridge joining the first two blocks
    m[22:38, 4:30] = rng.random((16, 26)) > 0.25  # ragged blob (splits into pieces)
    m[24:36, 34:50] = True
    m[30, 34:50] = False  # a full cut: two components
    m[20, 45] = m[0, 0] = m[39, 51] = m[19, 22] = True  # isolated pixels
    m[1, 44:51] = True  # one-pixel-thick strip
    return m[:H, :W].copy()


def perspective_sphere(H=48, W=56, f=70.0, center=(0.15, -0.1, 4.0), radius=1.0, margin=0.3):
    """Exact z-depth ``(H, W)`` (NaN outside), normals ``(H, W, 3)`` (monohead frame), mask and K
    (OpenCV form) of a sphere seen by a pinhole camera."""
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


def find_shared_data(*parts: str) -> Path | None:
    """``<shared>/data/<parts...>`` (``$MONOHEAD_SHARED``, else ``<repo>/../shared``), or ``None``:
    the package's own lookup, so that the tests read what the CLI and the benchmarks read."""
    from monohead._env import shared_data

    return shared_data(*parts)


def fake_set(root, count=12, seed=5, version=2, shard_size=4, size=32):
    """A data set folder in monohead.synth's layout (``size`` x ``size`` items of ``ToyHeads``), written
    without rendering; item ``i`` is male-looking when ``i % 3 == 0``."""
    from monohead.model import ToyHeads
    from monohead.synth import dataset

    toy = ToyHeads(count, size, seed=seed)
    settings = {"size": [size, size], "spp": 1, "variant": "none", "max_depth": 1, "sampler": "independent",
                "generator_version": version}  # fmt: skip
    manifest = dataset._manifest(seed, count, shard_size, settings)
    (root / "shards").mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    for k in range(manifest["num_shards"]):
        start = k * shard_size
        samples = []
        for i in range(start, min(start + shard_size, count)):
            it = toy[i]
            it["params"] = {"seed": seed, "index": i, "skin": {"sex": "female" if i % 3 else "male"}}
            samples.append(it)
        dataset._write_shard(root, k, samples, start, 0.0, dataset._stamp(manifest))
    return root


def cuda_devices(cupy) -> tuple[int, str]:
    """``(count, why)``: the CUDA devices CuPy sees, and why none when the count is 0 (CuPy raises
    its own runtime error types when there is no driver)."""
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # no driver, no device
        return 0, str(exc)
    return count, "no device"


def require_cupy():
    """CuPy with a CUDA device, or the test is skipped with the reason (GPU tests run where there is one)."""
    import pytest

    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install monohead[cuda])")
    count, why = cuda_devices(cupy)
    if count < 1:
        pytest.skip(f"CuPy sees no CUDA device: {why}")
    return cupy


def require_torch_cuda():
    """torch with a CUDA device and CuPy (the CUDA path of monohead.torch runs the CuPy solver),
    or the test is skipped with the reason."""
    import pytest

    torch = pytest.importorskip("torch", reason="torch is not installed (pip install monohead[torch])")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    require_cupy()
    return torch
