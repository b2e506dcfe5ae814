"""Perspective integration (K): the slope rule of docs/conventions.md, the Integrator with K,
gradients, BiNI's K.txt layout, and bad input.

Every backend's perspective solves (a hand-written plane, an analytic sphere, random masks and
cameras against the independent SciPy build, components and isolated pixels, wls_system) are
checked in test_integrators.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import monohead
from monohead.integration import generic, perspective

TIGHT = 1e-12


def _K(f=60.0, fy=None, cx=11.3, cy=9.6):
    return np.array([[f, 0.0, cx], [0.0, f if fy is None else fy, cy], [0.0, 0.0, 1.0]])


def _random_case(rng, H=20, W=24, holes=True):
    mask = ndimage.gaussian_filter(rng.standard_normal((H, W)), 2.0) > -0.3 if holes else np.ones((H, W), bool)
    n = np.concatenate([rng.uniform(-0.4, 0.4, (H, W, 2)), np.ones((H, W, 1))], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~mask] = 0.0
    Wmap = rng.uniform(0.0, 3.0, (H, W))
    return n, Wmap, mask


def _geo_normalised(z, mask):
    return z / np.exp(np.mean(np.log(z[mask])))


# ---------------------------------------------------------------- the rule, pinned by hand
def test_slopes_formula_and_facing_denominator():
    K = _K(50.0, 40.0, 3.0, 2.0)
    n = np.array([0.3, -0.2, 0.9])
    normals = np.tile(n, (4, 5, 1))
    cam = perspective.check_K(K)
    d = perspective.facing_denominator(normals, cam)
    r, c = 3, 4
    assert d[r, c] == pytest.approx(0.9 - 0.3 * (c - 3.0) / 50.0 + (-0.2) * (r - 2.0) / 40.0)
    p, q = perspective.perspective_slopes(normals, cam, np.ones((4, 5), bool))
    assert p[r, c] == pytest.approx(0.3 / (50.0 * d[r, c]))
    assert q[r, c] == pytest.approx(-0.2 / (40.0 * d[r, c]))


# ---------------------------------------------------------------- every entry point agrees
# Every backend's perspective solve (batches included) is checked against the independent
# reference in test_integrators.py; the gradients under K in test_torch_gradcheck_perspective.
def test_integrator_with_K_and_x0_at_another_scale(rng):
    n, Wmap, mask = _random_case(rng, 22, 26)
    K = _K(45.0, 47.0, 12.5, 10.1)
    z = monohead.integrate(n, Wmap, 0.1, mask, K=K, tol=TIGHT)
    solver = monohead.Integrator(mask, Wmap, 0.1, K=K)
    np.testing.assert_allclose(solver.solve(n, tol=TIGHT)[mask], z[mask], rtol=1e-9)
    np.testing.assert_allclose(solver.K, K)
    # warm start from a depth at another scale converges to the same result
    np.testing.assert_allclose(solver.solve(n, tol=TIGHT, x0=np.where(mask, 7.0 * z, np.nan))[mask], z[mask], rtol=1e-9)


def test_torch_gradcheck_perspective(rng):
    import torch

    import monohead.torch as mt

    n, _, mask = _random_case(rng, 6, 7, holes=False)
    K = _K(20.0, 22.0, 3.0, 2.5)
    nt = torch.tensor(n, requires_grad=True)
    sel = torch.tensor(mask)
    wsum = torch.tensor(rng.standard_normal(mask.shape))
    assert torch.autograd.gradcheck(
        lambda x: (mt.integrate(x, mask=sel, K=K, tol=1e-13)[sel] * wsum[sel]).sum(), (nt,), eps=1e-6, atol=1e-6
    )


def test_K_from_bini_matches_the_opencv_form_of_diligent():
    # BiNI's DiLiGenT K.txt (first axis: rows counted from the bottom) and the OpenCV form of the same camera.
    k_bini = np.array([[3759.005431071330, 0.0, 255.875], [0.0, 3772.077471010730, 305.875], [0.0, 0.0, 1.0]])
    K = perspective.K_from_bini(k_bini, 512)
    np.testing.assert_allclose(K, [[3772.077471010730, 0, 305.875], [0, 3759.005431071330, 255.125], [0, 0, 1]])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("K", "exc", "match"),
    [
        (np.eye(2), ValueError, r"K must have shape \(3, 3\).*got \(2, 2\)"),
        ([[1.0, 0, 0], [0, np.nan, 0], [0, 0, 1]], ValueError, "K must be finite; got 1 NaN"),
        ([[0.0, 0, 0], [0, 5, 0], [0, 0, 1]], ValueError, r"fx = K\[0, 0\] > 0.*got fx=0"),
        ([[5.0, 0, 0], [0, -5, 0], [0, 0, 1]], ValueError, "fy=-5"),
        ([[5.0, 0.1, 0], [0, 5, 0], [0, 0, 1]], ValueError, "skew"),
        ([[5.0, 0, 0], [0, 5, 0], [0, 0, 2]], ValueError, "last row"),
        ("K", TypeError, "K must be a 3x3 array"),
    ],
)
def test_bad_K(K, exc, match, flat_normals):
    with pytest.raises(exc, match=match):
        monohead.integrate(flat_normals, K=K)
    with pytest.raises(exc, match=match):
        monohead.Integrator(np.ones((4, 5), bool), K=K)


def test_normals_facing_away_from_the_camera():
    # Nz > 0 everywhere, but at the image border the ray is so oblique that the surface faces away.
    H, W = 5, 40
    n = np.zeros((H, W, 3))
    n[..., 0], n[..., 2] = 0.6, 0.8  # d = 0.8 - 0.6 c / 10 <= 0 from column 14 on
    K = _K(10.0, None, 0.0, 2.0)
    with pytest.raises(ValueError, match=r"normals must face the camera K inside the mask.*got \d+ pixel\(s\)"):
        monohead.integrate(n, K=K)
    with pytest.raises(ValueError, match="face the camera"):
        monohead.wls_system(n, K=K)
    with pytest.raises(ValueError, match="face the camera"):
        generic.integrate_xp(n, K=K)
    # ... while a normal with Nz < 0 that faces an oblique ray is accepted under K.
    n2 = np.zeros((1, 3, 3))
    n2[..., 0], n2[..., 2] = -0.8, -0.05
    assert np.isfinite(monohead.integrate(n2, K=_K(1.0, None, -5.0, 0.0))).all()


def test_x0_must_be_positive_under_K(flat_normals):
    with pytest.raises(ValueError, match="x0 must be a positive depth"):
        monohead.integrate(flat_normals, K=_K(), x0=np.zeros((4, 5)))


def test_depth_mesh_back_projects_with_K_and_keeps_pixels_without():
    """The mesh the CLI writes for `monohead integrate --mesh`: a plane at depth 5 seen through K
    lies at Z = -5 with X = 5 (c - cx) / fx and Y = -5 (r - cy) / fy; without K the vertices are
    (c, -r, h) in pixels; NaN pixels are left out of both."""
    K = np.array([[40.0, 0.0, 3.5], [0.0, 50.0, 2.0], [0.0, 0.0, 1.0]])
    depth = np.full((5, 8), 5.0)
    depth[0, 0] = np.nan
    rows, cols = np.nonzero(np.isfinite(depth))
    mesh = perspective.depth_mesh(depth, K)
    assert len(mesh.vertices) == depth.size - 1
    np.testing.assert_allclose(mesh.vertices[:, 2], -5.0)
    np.testing.assert_allclose(mesh.vertices[:, 0], 5.0 * (cols - 3.5) / 40.0)
    np.testing.assert_allclose(mesh.vertices[:, 1], -5.0 * (rows - 2.0) / 50.0)
    flat = perspective.depth_mesh(depth)
    np.testing.assert_allclose(flat.vertices, np.column_stack([cols, -rows, np.full(rows.size, 5.0)]))
    np.testing.assert_array_equal(flat.faces, mesh.faces)
    # counter-clockwise seen from the camera: face normals point back toward it (+z in both frames)
    assert (mesh.face_normals[:, 2] > 0).all()
