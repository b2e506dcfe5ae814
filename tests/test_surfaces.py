"""The analytic test surfaces: their normals and W are those of their depth."""

from __future__ import annotations

import numpy as np
import pytest

from monohead.integration import surfaces


@pytest.mark.parametrize(
    "surface",
    [
        surfaces.plane((40, 50), 0.4, -0.7),
        surfaces.sphere_cap((64, 64), 40.0),
        surfaces.paraboloid((48, 48), 0.03),
        surfaces.head(128, neck=False),
        surfaces.rectangle(96),
    ],
    ids=["plane", "sphere", "paraboloid", "head", "rect"],
)
def test_normals_match_central_differences_of_depth(surface):
    n, W, mask, h = surface
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    hx = np.zeros_like(h)
    hy = np.zeros_like(h)
    hx[:, 1:-1] = (h[:, 2:] - h[:, :-2]) / 2  # x = column
    hy[1:-1, :] = (h[:-2, :] - h[2:, :]) / 2  # y up = previous row
    fd = np.stack([-hx, -hy, np.ones_like(h)], -1)
    fd /= np.linalg.norm(fd, axis=-1, keepdims=True)
    cos = np.clip(np.sum(fd * n, -1)[inner], -1, 1)
    assert np.degrees(np.arccos(cos)).mean() < 0.5
    np.testing.assert_allclose(W[inner], np.hypot(hx, hy)[inner], rtol=0.05, atol=0.02)
    assert (n[mask][:, 2] > 0).all()
    assert (n[~mask] == 0).all()
    assert np.isnan(h[~mask]).all()


def test_head_neck_step_is_in_W():
    s = surfaces.head(128, neck=True)
    face = surfaces.head(128, neck=False).mask
    step = s.mask & ~face & np.roll(face, 1, axis=0)  # neck pixels right under the chin
    assert step.sum() > 30
    assert (s.W[step] > 5.0).all()
    assert s.W[step].min() > 3 * np.median(s.W[s.mask])
