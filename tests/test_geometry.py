"""Tests of monohead.geometry: eq. 2, gradients, W, depth <-> mesh, PNG normal maps, proximity.

Known answers come from hand computations, analytic surfaces and literal (loop-based)
re-statements of the formulas, never from the code under test.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib

import numpy as np
import pytest
import trimesh

import monohead
from monohead import _io
from monohead import geometry as g
from monohead.integration import baselines

# --------------------------------------------------------------------------------------------
# Analytic surfaces (pixel units; x = column - cx, y = cy - row).


def _xy(shape=(64, 64)):
    """Pixel coordinates about a centre slightly off the grid (no accidental symmetry)."""
    r, c = np.mgrid[: shape[0], : shape[1]].astype(float)
    return c - ((shape[1] - 1) / 2 + 0.3), ((shape[0] - 1) / 2 + 0.1) - r


def _paraboloid(shape=(64, 64)):
    """h = quadratic in x, y with a cross term; exact p, q."""
    x, y = _xy(shape)
    h = -(x**2 + 0.5 * y**2 + 0.3 * x * y) / 80.0 + 0.2 * x - 0.1 * y + 3.0
    p = -(2 * x + 0.3 * y) / 80.0 + 0.2
    q = -(y + 0.3 * x) / 80.0 - 0.1
    mask = (x / (0.44 * shape[1])) ** 2 + (y / (0.4 * shape[0])) ** 2 < 1.0
    return h, p, q, mask


def _sphere_cap(shape=(64, 64), radius=40.0, rim=30.0):
    x, y = _xy(shape)
    rho2 = x**2 + y**2
    mask = rho2 < rim**2
    h = np.sqrt(np.maximum(radius**2 - rho2, 1.0))  # (the clamp only matters far outside the rim)
    p = -x / h
    q = -y / h
    return h, p, q, mask


def _unit(p, q):
    n = np.stack([-p, -q, np.ones_like(p)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Eq. 2, literally: per vertex, arccos of the angle and the normalised cross product.


def _eq2_reference(vertices, faces):
    out = np.zeros((len(vertices), 3))
    for i in range(len(vertices)):
        acc = np.zeros(3)
        for f in faces:
            f = list(f)
            if i not in f:
                continue
            k = f.index(i)
            p, qa, qb = vertices[f[k]], vertices[f[(k + 1) % 3]], vertices[f[(k + 2) % 3]]
            a, b = qa - p, qb - p
            cr = np.cross(a, b)
            if np.linalg.norm(cr) == 0:
                continue
            w = math.acos(max(-1.0, min(1.0, float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))))
            acc += w * cr / np.linalg.norm(cr)
        if np.linalg.norm(acc) > 0:
            out[i] = acc / np.linalg.norm(acc)
    return out


def _cube():
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    # Quads as (a, b, c, d) counter-clockwise seen from outside; each split along a-c.
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = []
    for a, b, c, d in quads:
        f += [(a, b, c), (a, c, d)]
    return v, np.array(f)


def test_vertex_normals_cube_is_exactly_diagonal():
    # Each cube corner sees three square faces, each with a total angle of 90° at the corner
    # whatever the triangulation, so eq. 2 gives the diagonal (±1, ±1, ±1)/sqrt(3). An
    # area-weighted normal would not (a corner sees one or two triangles of a face).
    v, f = _cube()
    n = g.vertex_normals(v, f)
    expected = np.sign(v - 0.5) / np.sqrt(3.0)
    np.testing.assert_allclose(n, expected, atol=1e-14)
    # The faces are outward: face normals point away from the centre.
    fn = g.face_normals(v, f)
    centres = v[f].mean(axis=1) - 0.5
    assert np.all(np.einsum("ij,ij->i", fn, centres) > 0)


def test_vertex_normals_nonuniform_fan_by_hand():
    # Vertex 0 at the origin; three faces with angles 45°, 90°, 90° at it.
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 2]], float)
    f = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1]])
    # Face (0,1,2): angle pi/4, normal +z. Face (0,2,3): (1,1,0) x (0,0,2) = (2,-2,0): angle
    # pi/2, normal (1,-1,0)/sqrt2. Face (0,3,1): (0,0,2) x (1,0,0) = (0,2,0): angle pi/2, +y.
    s = math.sqrt(2.0)
    n0 = np.array([math.pi / 2 / s, math.pi / 2 - math.pi / 2 / s, math.pi / 4])
    n0 /= np.linalg.norm(n0)
    n = g.vertex_normals(v, f)
    np.testing.assert_allclose(n[0], n0, atol=1e-14)
    np.testing.assert_allclose(n, _eq2_reference(v, f), atol=1e-13)


def test_vertex_normals_sphere_radial_and_matches_literal_eq2():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=3.0)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    n = g.vertex_normals(v, f)
    radial = v / np.linalg.norm(v, axis=1, keepdims=True)
    # Outward and close to radial (the discrete sphere is not a sphere).
    assert np.all(np.einsum("ij,ij->i", n, radial) > 0.999)
    np.testing.assert_allclose(n, _eq2_reference(v, f), atol=1e-13)


def test_vertex_normals_irregular_mesh_matches_literal_eq2():
    rng = np.random.default_rng(7)
    h, _, _, mask = _paraboloid((12, 12))
    mesh = g.depth_to_mesh(h + rng.normal(0, 0.3, h.shape), mask)
    v = np.asarray(mesh.vertices) + rng.normal(0, 0.2, mesh.vertices.shape)
    np.testing.assert_allclose(g.vertex_normals(v, mesh.faces), _eq2_reference(v, np.asarray(mesh.faces)), atol=1e-12)


def test_vertex_normals_edge_cases():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5], [2, 0, 0]], float)
    f = np.array([[0, 1, 2], [0, 1, 4]])  # second face degenerate (collinear)
    n = g.vertex_normals(v, f)
    np.testing.assert_allclose(n[:3], [[0, 0, 1]] * 3, atol=1e-15)
    np.testing.assert_array_equal(n[3], 0.0)  # unreferenced vertex
    np.testing.assert_array_equal(n[4], 0.0)  # only in a degenerate face
    flipped = g.vertex_normals(v, f[:, ::-1])
    np.testing.assert_allclose(flipped[:3], -n[:3], atol=1e-15)
    # float32 and Fortran-ordered input are accepted; float64 out.
    out = g.vertex_normals(np.asfortranarray(v.astype(np.float32)), f.astype(np.int32))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, n, atol=1e-7)
    assert g.vertex_normals(v, np.zeros((0, 3), int)).shape == (5, 3)


@pytest.mark.parametrize(
    ("vertices", "faces", "exc", "match"),
    [
        (np.zeros((4, 2)), [[0, 1, 2]], ValueError, r"vertices must have shape \(V, 3\); got \(4, 2\)"),
        (np.full((3, 3), np.nan), [[0, 1, 2]], ValueError, "vertices must be finite; got 3 row"),
        (np.zeros((3, 3)), [[0, 1, 3]], ValueError, r"faces must index vertices in \[0, 3\); got indices from 0 to 3"),
        (np.zeros((3, 3)), [[0.0, 1.0, 2.0]], TypeError, "faces must have an integer dtype; got dtype float64"),
        (np.zeros((3, 3)), [0, 1, 2], ValueError, r"faces must have shape \(F, 3\); got \(3,\)"),
        (np.zeros((3, 3), bool), [[0, 1, 2]], TypeError, "vertices must have a real floating dtype"),
        ("abc", [[0, 1, 2]], TypeError, "vertices must be a numeric array; got str"),
    ],
)
def test_mesh_normal_validation(vertices, faces, exc, match):
    with pytest.raises(exc, match=match):
        g.vertex_normals(vertices, faces)
    with pytest.raises(exc, match=match):
        g.face_normals(vertices, faces)


# --------------------------------------------------------------------------------------------
# Normals <-> gradients.


def test_gradients_normals_conventions_and_round_trip():
    # A tilt rising to the right (h = 0.75 x): N ∝ (-0.75, 0, 1) = (-0.6, 0, 0.8).
    n = np.zeros((2, 3, 3))
    n[..., :] = [-0.6, 0.0, 0.8]
    p, q = g.normals_to_gradients(n)
    np.testing.assert_allclose(p, 0.75)
    np.testing.assert_allclose(q, 0.0)
    # Rising upward (toward row 0, +y): Ny < 0.
    n2 = g.gradients_to_normals(np.zeros((2, 2)), np.full((2, 2), 1.0))
    np.testing.assert_allclose(n2[0, 0], [0.0, -1 / math.sqrt(2), 1 / math.sqrt(2)])
    _, pa, qa, mask = _paraboloid((16, 16))
    nn = g.gradients_to_normals(pa, qa, mask)
    np.testing.assert_array_equal(nn[~mask], 0.0)
    np.testing.assert_allclose(np.linalg.norm(nn[mask], axis=-1), 1.0)
    p2, q2 = g.normals_to_gradients(nn)
    # One implementation: the baselines' former name is the same function.
    assert baselines.gradients_from_normals is g.normals_to_gradients
    np.testing.assert_allclose(p2[mask], pa[mask], atol=1e-14)
    np.testing.assert_allclose(q2[mask], qa[mask], atol=1e-14)
    np.testing.assert_array_equal(p2[~mask], 0.0)


def test_gradients_normals_validation():
    n = np.zeros((2, 2, 3))
    n[..., 2] = 1.0
    n[0, 0, 2] = -1.0
    with pytest.raises(
        ValueError, match=r"normals must point toward the viewer \(Nz > 0\) inside the mask; got 1 pixel"
    ):
        g.normals_to_gradients(n)
    with pytest.raises(ValueError, match=r"normals must have shape \(H, W, 3\); got \(2, 2\)"):
        g.normals_to_gradients(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"q must have shape \(2, 2\); got \(2, 3\)"):
        g.gradients_to_normals(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="p must be finite inside the mask; got 1 NaN"):
        g.gradients_to_normals(np.array([[np.nan, 0.0]]), np.zeros((1, 2)))


# --------------------------------------------------------------------------------------------
# Finite differences, W and normals from depth.


def test_finite_difference_rule_by_hand_along_x():
    # One row; mask runs of length 1, 2 and 4 (columns 0 | 2-3 | 5-8).
    h = np.array([[7.0, 0.0, 1.0, 4.0, 0.0, 1.0, 4.0, 9.0, 16.0]])
    m = np.array([[1, 0, 1, 1, 0, 1, 1, 1, 1]], bool)
    p, q = g.depth_gradients(h, m)
    expected = [
        0.0,  # isolated: no neighbour
        0.0,  # outside the mask
        3.0,  # run of 2: forward first order 4 - 1
        3.0,  # backward first order 4 - 1
        0.0,
        (-3 * 1 + 4 * 4 - 9) / 2,  # forward second order = 2 (h = x^2 around x = 1 -> 2)
        (9 - 1) / 2,  # central
        (16 - 4) / 2,  # central
        (3 * 16 - 4 * 9 + 4) / 2,  # backward second order = 8
    ]
    np.testing.assert_allclose(p[0], expected)
    np.testing.assert_array_equal(q, 0.0)


def test_finite_difference_y_is_up():
    # h grows toward the top of the image (row 0): dh/dy > 0.
    h = np.array([[3.0], [2.0], [1.0], [0.0]]).repeat(3, axis=1)  # h = -row + 3 = y + const
    p, q = g.depth_gradients(h, np.ones_like(h, bool))
    np.testing.assert_allclose(q, 1.0)
    np.testing.assert_allclose(p, 0.0)
    # First-order forward along +y at the bottom of a 2-row run uses row r-1 minus row r.
    h2 = np.array([[5.0], [1.0]])
    _, q2 = g.depth_gradients(h2, np.ones((2, 1), bool))
    np.testing.assert_allclose(q2[:, 0], [4.0, 4.0])
    n = g.normals_from_depth(h, np.ones_like(h, bool))
    assert np.all(n[..., 1] < 0)
    assert np.all(n[..., 2] > 0)


def test_gradient_magnitude_of_a_plane_is_constant_everywhere():
    x, y = _xy((20, 30))
    h = 0.3 * x - 0.4 * y + 2.0
    mask = np.zeros(h.shape, bool)
    mask[3:15, 5:25] = True
    mask[8, 10] = False  # a hole: one-sided differences around it
    mask[17, 2:5] = True  # a thin strip: first-order differences along x, none along y
    W = g.gradient_magnitude(h, mask)
    np.testing.assert_allclose(W[3:15, 5:25][mask[3:15, 5:25]], 0.5, atol=1e-13)
    np.testing.assert_allclose(W[17, 2:5], 0.3, atol=1e-13)
    np.testing.assert_array_equal(W[~mask], 0.0)


def test_gradient_magnitude_and_normals_exact_for_a_paraboloid():
    h, p, q, mask = _paraboloid()
    W = g.gradient_magnitude(h, mask)
    np.testing.assert_allclose(W[mask], np.hypot(p, q)[mask], atol=1e-12)
    n = g.normals_from_depth(np.where(mask, h, np.nan))  # default mask: finite pixels
    np.testing.assert_allclose(n[mask], _unit(p, q)[mask], atol=1e-12)
    np.testing.assert_array_equal(n[~mask], 0.0)


def test_gradient_magnitude_of_a_sphere_cap():
    h, p, q, mask = _sphere_cap()
    W = g.gradient_magnitude(h, mask)
    exact = np.hypot(p, q)
    # Truncation error of the differences: h'''/6 (central), h'''/3 (second-order one-sided).
    # On this cap (R = 40, rim at rho = 30), |h'''| = 3 R^2 rho / h^5 <= 0.0112, so the error
    # is below 0.0019 inside and 0.0037 at the rim.
    err = np.abs(W - exact)[mask]
    assert err.max() < 0.004
    interior = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    assert np.abs(W - exact)[interior].max() < 0.002
    np.testing.assert_allclose(g.normals_from_depth(h, mask)[mask], _unit(p, q)[mask], atol=0.002)


@pytest.mark.parametrize("method", ["direct", "mg"])
def test_integrate_recovers_depth_from_its_normals(method):
    h, _, _, mask = _paraboloid()
    d = monohead.integrate(g.normals_from_depth(h, mask), mask=mask, lam=0.0, method=method, tol=1e-12)
    e = (d - h)[mask]
    assert np.abs(e - e.mean()).max() < 1e-8  # exact for quadratics, up to the solver
    hs, _, _, ms = _sphere_cap()
    ds = monohead.integrate(g.normals_from_depth(hs, ms), mask=ms, lam=0.0, method=method, tol=1e-12)
    es = (ds - hs)[ms]
    assert np.abs(es - es.mean()).max() < 0.015  # O(h''') slope errors summed over a 30-pixel radius


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: g.gradient_magnitude(np.zeros((2, 2, 2))),
            ValueError,
            r"depth must have shape \(H, W\); got \(2, 2, 2\)",
        ),
        (
            lambda: g.gradient_magnitude(np.zeros((2, 2)), np.ones((2, 3), bool)),
            ValueError,
            r"mask must have shape \(2, 2\); got \(2, 3\)",
        ),
        (
            lambda: g.gradient_magnitude(np.array([[np.nan, 1.0]]), np.ones((1, 2), bool)),
            ValueError,
            "depth must be finite inside the mask; got 1 NaN",
        ),
        (lambda: g.normals_from_depth(np.full((2, 2), np.nan)), ValueError, "default mask"),
        (lambda: g.depth_gradients(np.zeros((2, 2)), np.zeros((2, 2), bool)), ValueError, "mask is empty"),
        (lambda: g.depth_to_mesh(np.zeros((2, 2)).astype(complex)), TypeError, "depth must have a real floating dtype"),
    ],
)
def test_depth_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --------------------------------------------------------------------------------------------
# Depth <-> mesh.


def test_depth_to_mesh_by_hand():
    depth = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    mask = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1]], bool)
    mesh = g.depth_to_mesh(depth, mask)
    # Vertices: mask pixels in row-major order at (column, -row, depth).
    expected_v = [[0, 0, 1], [1, 0, 2], [2, 0, 3], [0, -1, 4], [1, -1, 5], [1, -2, 8], [2, -2, 9]]
    np.testing.assert_array_equal(mesh.vertices, expected_v)
    # Only the top-left 2x2 block is full: TL=0, TR=1, BL=3, BR=4.
    np.testing.assert_array_equal(mesh.faces, [[3, 4, 1], [3, 1, 0]])
    assert isinstance(mesh, trimesh.Trimesh)


def test_depth_to_mesh_faces_face_the_viewer_and_round_trip():
    h, _, _, mask = _sphere_cap((40, 50), radius=30.0, rim=18.0)
    mesh = g.depth_to_mesh(h, mask)
    blocks = mask[:-1, :-1] & mask[:-1, 1:] & mask[1:, :-1] & mask[1:, 1:]
    assert len(mesh.vertices) == mask.sum()
    assert len(mesh.faces) == 2 * blocks.sum()
    # Counter-clockwise seen from +z: every face normal has nz > 0 on a surface facing the viewer.
    assert np.all(g.face_normals(mesh.vertices, mesh.faces)[:, 2] > 0)
    d, m = g.mesh_to_depth(mesh, mask.shape)
    np.testing.assert_array_equal(m, mask)
    np.testing.assert_array_equal(d[mask], h[mask])
    assert np.all(np.isnan(d[~mask]))
    # The unknown order is the one of monohead.wls_system: depth[mask] = vertices z.
    np.testing.assert_array_equal(mesh.vertices[:, 2], h[mask])


def test_mesh_to_depth_validation():
    v = np.array([[0.5, 0.0, 1.0]])
    with pytest.raises(ValueError, match="off it"):
        g.mesh_to_depth(v, (2, 2))
    with pytest.raises(ValueError, match="outside it"):
        g.mesh_to_depth(np.array([[3.0, 0.0, 1.0]]), (2, 2))
    with pytest.raises(ValueError, match="duplicate"):
        g.mesh_to_depth(np.array([[1.0, -1.0, 1.0], [1.0, -1.0, 2.0]]), (2, 2))
    with pytest.raises(ValueError, match="shape must be a pair"):
        g.mesh_to_depth(np.array([[1.0, -1.0, 1.0]]), (2,))


@pytest.mark.parametrize("ext", ["ply", "obj"])
def test_save_and_load_mesh_keep_vertex_order(tmp_path, ext):
    h, _, _, mask = _paraboloid((12, 14))
    mask[0, 0] = True  # an isolated vertex, referenced by no face, must survive
    mask[1, 0] = mask[0, 1] = False
    mesh = g.depth_to_mesh(h, mask)
    path = tmp_path / f"m.{ext}"
    g.save_mesh(mesh, path)
    back = g.load_mesh(path)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6 if ext == "obj" else 0)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    assert [p.name for p in tmp_path.iterdir()] == [f"m.{ext}"]


def test_save_mesh_validation(tmp_path):
    mesh = g.depth_to_mesh(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"path must end in .ply, .obj or .glb"):
        g.save_mesh(mesh, tmp_path / "m.stl")
    with pytest.raises(ValueError, match="file_type must be 'ply', 'obj' or 'glb'"):
        g.save_mesh(mesh, tmp_path / "m.ply", file_type="stl")
    with pytest.raises(ValueError, match="must be in an existing folder"):
        g.save_mesh(mesh, tmp_path / "nope" / "m.ply")
    with pytest.raises(TypeError, match="mesh must be a trimesh.Trimesh or a"):
        g.save_mesh(42, tmp_path / "m.ply")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike; got int"):
        g.save_mesh(mesh, 3)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="path must name an existing file"):
        g.load_mesh(tmp_path / "missing.ply")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike; got bytes"):
        g.load_mesh(b"m.ply")


# --------------------------------------------------------------------------------------------
# Atomic writes.


def test_atomic_write_replaces_or_leaves_untouched(tmp_path):
    path = tmp_path / "f.bin"
    _io.atomic_write_bytes(path, b"first")
    assert path.read_bytes() == b"first"
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)

    def write_then_fail():
        with _io.atomic_open(path) as f:
            f.write(b"partial")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary left behind
    _io.atomic_write_text(path, "second")
    assert path.read_text() == "second"
    with pytest.raises(TypeError, match="data must be bytes; got str"):
        _io.atomic_write_bytes(path, "text")
    with pytest.raises(ValueError, match="must name a file; got the folder"):
        _io.atomic_write_bytes(tmp_path, b"x")


# --------------------------------------------------------------------------------------------
# Normal maps as PNG.


def _sphere_normals(shape=(24, 32)):
    h, p, q, mask = _sphere_cap(shape, radius=14.0, rim=11.0)
    n = _unit(p, q)
    n[~mask] = 0.0
    return n, mask


def test_normal_map_encoding_by_hand():
    n = np.zeros((1, 3, 3))
    n[0, 0] = [0.0, 0.0, 1.0]
    n[0, 1] = [-0.6, 0.0, 0.8]
    img8 = g.normals_to_image(n)
    # round((N + 1) / 2 * 255): 0 -> 127.5 -> 128, 1 -> 255, -0.6 -> 51, 0.8 -> 229.5 -> 230.
    np.testing.assert_array_equal(img8[0], [[128, 128, 255], [51, 128, 230], [0, 0, 0]])
    img16 = g.normals_to_image(n, bits=16)
    assert img16.dtype == np.uint16
    np.testing.assert_array_equal(img16[0, 0], [32768, 32768, 65535])
    np.testing.assert_array_equal(img16[0, 1], [round(0.2 * 65535), 32768, round(0.9 * 65535)])
    back, mask = g.image_to_normals(img8)
    np.testing.assert_array_equal(mask[0], [True, True, False])
    np.testing.assert_array_equal(back[0, 2], 0.0)


@pytest.mark.parametrize(("bits", "max_deg"), [(8, 0.5), (16, 0.002)])
def test_normal_map_png_round_trip(tmp_path, bits, max_deg):
    n, mask = _sphere_normals()
    path = tmp_path / "n.png"
    g.save_normal_map(path, n, bits=bits)
    back, m = g.load_normal_map(path)
    np.testing.assert_array_equal(m, mask)
    cos = np.clip((back[mask] * n[mask]).sum(-1), -1, 1)
    assert np.degrees(np.arccos(cos)).max() < max_deg
    np.testing.assert_allclose(np.linalg.norm(back[mask], axis=-1), 1.0)


def test_png_encoder_read_by_pillow():
    from PIL import Image

    rng = np.random.default_rng(3)
    rgb8 = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(g.encode_png(rgb8)))), rgb8)
    gray16 = rng.integers(0, 65536, (5, 7)).astype(np.uint16)
    im = Image.open(io.BytesIO(g.encode_png(gray16)))
    assert im.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(im), gray16)
    rgb16 = rng.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    # Pillow reads 16-bit RGB as 8-bit: the high bytes.
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(g.encode_png(rgb16)))), rgb16 >> 8)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _png_with_filters(img16):
    """A 16-bit RGB PNG whose rows use filter types 0, 1, 2, 3, 4 in turn (PNG spec, forward)."""
    H, W, _ = img16.shape
    rows = img16.astype(">u2").view(np.uint8).reshape(H, -1).astype(int)
    bpp = 6
    raw = bytearray()
    for r in range(H):
        ftype = r % 5
        cur, prev = rows[r], rows[r - 1] if r else np.zeros_like(rows[0])
        out = []
        for i in range(len(cur)):
            left = cur[i - bpp] if i >= bpp else 0
            ul = prev[i - bpp] if i >= bpp else 0
            pred = [0, left, prev[i], (left + prev[i]) // 2, _paeth(left, prev[i], ul)][ftype]
            out.append((cur[i] - pred) % 256)
        raw += bytes([ftype] + out)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", W, H, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


def test_png_decoder_undoes_all_filters(tmp_path):
    n, mask = _sphere_normals((10, 9))
    img = g.normals_to_image(n, bits=16)
    data = _png_with_filters(img)
    np.testing.assert_array_equal(g.decode_png(data), img)
    path = tmp_path / "filtered.png"
    path.write_bytes(data)
    back, m = g.load_normal_map(path)
    np.testing.assert_array_equal(m, mask)


def test_png_errors(tmp_path):
    good = g.encode_png(np.zeros((2, 2, 3), np.uint16))
    bad_crc = bytearray(good)
    bad_crc[-20] ^= 0xFF  # inside the IDAT chunk
    with pytest.raises(ValueError, match="CRC mismatch"):
        g.decode_png(bytes(bad_crc))
    with pytest.raises(ValueError, match="not a PNG file"):
        g.decode_png(b"GIF89a....")
    with pytest.raises(ValueError, match="truncated"):
        g.decode_png(good[:20])
    with pytest.raises(TypeError, match="image must have dtype uint8 or uint16; got dtype float64"):
        g.encode_png(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"bits must be 8 or 16; got 12"):
        g.normals_to_image(np.zeros((2, 2, 3)), bits=12)
    n = np.zeros((2, 2, 3))
    n[0, 0] = [0, 0, 2.0]
    with pytest.raises(ValueError, match=r"components in \[-1, 1\] inside the mask; got 1 pixel"):
        g.normals_to_image(n)
    with pytest.raises(ValueError, match=r"image must have shape \(H, W, 3\); got \(2, 2\)"):
        g.image_to_normals(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="path must name an existing file"):
        g.load_normal_map(tmp_path / "missing.png")


# --------------------------------------------------------------------------------------------
# Closest points on a mesh.


def _closest_on_triangle_reference(p, a, b, c):
    """Projection onto the plane if inside (barycentric), else the best of the three edges."""
    n = np.cross(b - a, c - a)
    proj = p - ((p - a) @ n) / (n @ n) * n
    m = np.column_stack([b - a, c - a])
    s, t = np.linalg.lstsq(m, proj - a, rcond=None)[0]
    if s >= 0 and t >= 0 and s + t <= 1:
        return proj
    best = None
    for u, w in ((a, b), (b, c), (c, a)):
        tt = np.clip((p - u) @ (w - u) / ((w - u) @ (w - u)), 0, 1)
        q = u + tt * (w - u)
        if best is None or np.linalg.norm(p - q) < np.linalg.norm(p - best):
            best = q
    return best


def test_closest_points_match_brute_force():
    rng = np.random.default_rng(11)
    h, _, _, mask = _sphere_cap((14, 14), radius=9.0, rim=6.5)
    mesh = g.depth_to_mesh(h + rng.normal(0, 0.3, h.shape), mask)
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    pts = rng.uniform(v.min(0) - 3, v.max(0) + 3, (60, 3))
    cp, dist, face = g.closest_points(pts, mesh)
    for i, p in enumerate(pts):
        ref = [_closest_on_triangle_reference(p, *v[tri]) for tri in f]
        d = [np.linalg.norm(p - r) for r in ref]
        assert dist[i] == pytest.approx(min(d), abs=1e-10)
        np.testing.assert_allclose(cp[i], ref[int(np.argmin(d))], atol=1e-9)
        assert np.linalg.norm(p - _closest_on_triangle_reference(p, *v[f[face[i]]])) == pytest.approx(
            dist[i], abs=1e-10
        )
    # Same answer as trimesh's (rtree-based) query.
    tm_cp, tm_d, _ = trimesh.proximity.closest_point(mesh, pts)
    np.testing.assert_allclose(dist, tm_d, atol=1e-9)


def test_closest_points_with_long_faces_at_a_depth_step():
    # A depth-map mesh with a cliff: the faces bridging it are much longer than the rest and go
    # into their own radius classes; the answers stay exact (vs. a brute-force scan) and fast.
    rng = np.random.default_rng(5)
    h = np.zeros((20, 20))
    h[:, 10:] = 15.0  # a 15-pixel step
    h += rng.normal(0, 0.05, h.shape)
    mesh = g.depth_to_mesh(h, np.ones(h.shape, bool))
    surface = g.MeshSurface(mesh)
    assert len(surface._classes) >= 2  # the step faces are kept apart
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    pts = np.concatenate(
        [rng.uniform(v.min(0) - 2, v.max(0) + 2, (30, 3)), v[rng.choice(len(v), 30)] + rng.normal(0, 0.5, (30, 3))]
    )
    cp, dist, face = surface.closest(pts)
    tri = v[f]
    for i in range(0, len(pts), 6):  # the slow reference on every 6th point
        p = pts[i]
        d = [np.linalg.norm(p - _closest_on_triangle_reference(p, *t)) for t in tri]
        assert dist[i] == pytest.approx(min(d), abs=1e-9)
        assert np.linalg.norm(cp[i] - p) == pytest.approx(dist[i], abs=1e-9)
    tm_cp, tm_d, _ = trimesh.proximity.closest_point(mesh, pts)
    np.testing.assert_allclose(dist, tm_d, atol=1e-9)


def test_closest_points_far_queries_and_degenerate_faces():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [3, 0, 0], [10, 10, 0], [11, 10, 0], [10, 11, 0]], float)
    f = np.array([[0, 1, 2], [1, 3, 4], [5, 6, 7]])  # face 1 is a degenerate segment from x=1 to 3
    pts = np.array([[0.2, 0.2, 5.0], [2.5, -1.0, 0.0], [50.0, 50.0, 0.0], [-1.0, -1.0, 0.0]])
    cp, dist, face = g.closest_points(pts, (v, f))
    # (50, 50) is nearest to the hypotenuse of the far triangle, at its midpoint.
    np.testing.assert_allclose(cp, [[0.2, 0.2, 0], [2.5, 0, 0], [10.5, 10.5, 0], [0, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(dist, [5.0, 1.0, 39.5 * math.sqrt(2), math.sqrt(2)], atol=1e-12)
    assert face[0] == 0
    assert face[1] == 1
    assert face[2] == 2
    with pytest.raises(ValueError, match=r"points must have shape \(V, 3\); got \(2,\)"):
        g.closest_points(np.zeros(2), (v, f))
    with pytest.raises(ValueError, match="mesh must have at least 1 face"):
        g.MeshSurface((v, np.zeros((0, 3), int)))
