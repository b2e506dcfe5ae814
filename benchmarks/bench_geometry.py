"""Benchmarks of monohead.geometry and the ICP of monohead.evaluate (pytest-benchmark).

Run: ``python -m pytest benchmarks/bench_geometry.py --benchmark-enable -p no:cacheprovider``.
Inputs are built once per test outside the timed function and seeded; the timed call is the
public function with its input validation, single-threaded NumPy/SciPy.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from monohead import evaluate as ev
from monohead import geometry as g


def _head_like_depth(n: int) -> tuple[np.ndarray, np.ndarray]:
    r, c = np.mgrid[:n, :n].astype(float)
    s = n / 64.0
    x, y = (c - n / 2 + 0.3) / s, (n / 2 + 0.1 - r) / s
    mask = (x / 27.0) ** 2 + (y / 30.0) ** 2 < 1.0
    h = s * (
        12 * np.exp(-((x + 5) ** 2 / 300 + (y - 3) ** 2 / 500)) + 6 * np.exp(-((x - 4) ** 2 / 20 + (y + 2) ** 2 / 40))
    )
    return h, mask


@pytest.mark.parametrize("count", [(122, 124), (173, 175)], ids=["30k", "60k"])
def test_vertex_normals(benchmark, count):
    """Eq. 2 on a UV sphere of 29,762 (and 60,546) vertices."""
    sphere = trimesh.creation.uv_sphere(count=list(count))
    v = np.asarray(sphere.vertices)
    f = np.asarray(sphere.faces)
    n = benchmark(g.vertex_normals, v, f)
    assert n.shape == v.shape


def test_vertex_normals_icosphere(benchmark):
    """Eq. 2 on an icosphere of 40,962 vertices (subdivision 6)."""
    sphere = trimesh.creation.icosphere(subdivisions=6)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    benchmark(g.vertex_normals, v, f)


@pytest.mark.parametrize("n", [128, 256])
def test_depth_to_mesh(benchmark, n):
    h, mask = _head_like_depth(n)
    mesh = benchmark(g.depth_to_mesh, h, mask)
    assert len(mesh.vertices) == mask.sum()


@pytest.mark.parametrize("n", [128, 256])
def test_gradient_magnitude(benchmark, n):
    h, mask = _head_like_depth(n)
    benchmark(g.gradient_magnitude, h, mask)


def test_closest_points_10k(benchmark):
    h, mask = _head_like_depth(128)
    surface = g.MeshSurface(g.depth_to_mesh(h, mask))
    rng = np.random.default_rng(0)
    pts = surface.vertices[rng.choice(len(surface.vertices), 10_000, replace=False)] + rng.normal(0, 0.5, (10_000, 3))
    benchmark(surface.closest, pts)


def test_icp_10k(benchmark):
    """Point-to-plane ICP of 10k points (a 10° rotation + translation of the target's vertices)."""
    h, mask = _head_like_depth(128)
    target = g.depth_to_mesh(h, mask)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(target.vertices), 10_000, replace=False)
    t = np.radians(10.0)
    R = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    src = np.asarray(target.vertices)[idx] @ R.T + np.array([3.0, -2.0, 5.0])
    surface = g.MeshSurface(target)
    res = benchmark.pedantic(ev.icp, args=(src, surface), rounds=3, iterations=1)
    assert res.converged
    assert res.rms < 1e-6
