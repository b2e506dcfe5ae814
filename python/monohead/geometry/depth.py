"""Depth maps: finite-difference gradients, W = |grad h|, normals, and depth <-> mesh.

Frame (conventions.md): pixel ``(r, c)`` sits at ``x = c`` (to the right), ``y = -r`` (up),
and the depth ``h`` is the height toward the viewer in pixel units, so ``x``, ``y`` and ``h``
share one unit and ``N ∝ (-dh/dx, -dh/dy, 1)``.

The finite-difference rule (used by :func:`depth_gradients` and therefore by
:func:`gradient_magnitude` and :func:`normals_from_depth`) only ever reads pixels of the mask.
Along x, for a mask pixel ``(r, c)``:

- ``(h[r, c+1] - h[r, c-1]) / 2`` where both horizontal neighbours are in the mask (central);
- ``(-3 h[r, c] + 4 h[r, c+1] - h[r, c+2]) / 2`` where only the right side is, with
  ``(r, c+1)`` and ``(r, c+2)`` in the mask (one-sided, second order), mirrored
  ``(3 h[r, c] - 4 h[r, c-1] + h[r, c-2]) / 2`` where only the left side is;
- ``h[r, c+1] - h[r, c]`` or ``h[r, c] - h[r, c-1]`` where only one neighbour is in the mask
  and the next one on that side is not (one-sided, first order);
- 0 where neither horizontal neighbour is in the mask.

Along y the same rule runs with y up: the "forward" neighbour of row ``r`` is row ``r - 1``,
so the central difference is ``(h[r-1, c] - h[r+1, c]) / 2`` and the first-order forward one
is ``h[r-1, c] - h[r, c]``.

The central and the second-order one-sided differences are exact for quadratic surfaces, and
so is the integrator's staggered discretisation (conventions.md):
``h[r, c+1] - h[r, c] = (p[r, c] + p[r, c+1]) / 2`` for a quadratic ``h``. Hence, on a mask
whose runs along rows and columns are at least 3 pixels long,
``monohead.integrate(normals_from_depth(h, mask), mask=mask)`` gives back a quadratic ``h``
up to one constant per component (and the solver's tolerance); other smooth surfaces come back
with an error of the order of their third derivatives. The first-order rule is used only where
a run is 2 pixels long.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import _io
from .. import _validate as v

__all__ = [
    "depth_gradients",
    "depth_to_mesh",
    "gradient_magnitude",
    "load_mesh",
    "mesh_to_depth",
    "normals_from_depth",
    "save_mesh",
]

MESH_FORMATS = ("ply", "obj", "glb")


def _prepare(depth: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(H, W)`` float64 depth and bool mask (default: finite depth pixels)."""
    h = v.check_depth(depth)
    if mask is None:
        m = np.isfinite(h)
        if not m.any():
            raise ValueError("depth has no finite value, so the default mask (finite pixels) is empty; pass a mask")
    else:
        m = v.check_mask(mask, h.shape)
        v.check_depth_in_mask(h, m)
    return h, m


def _derivative_last_axis(h: np.ndarray, m: np.ndarray) -> np.ndarray:
    """d h / d(index along the last axis) by the module's rule; 0 outside ``m``."""
    H, W = h.shape
    hp = np.zeros((H, W + 4))
    mp = np.zeros((H, W + 4), bool)
    hp[:, 2:-2] = np.where(m, h, 0.0)
    mp[:, 2:-2] = m
    c = slice(2, W + 2)
    f1, f2 = mp[:, 3 : W + 3], mp[:, 4 : W + 4]  # next, next but one
    b1, b2 = mp[:, 1 : W + 1], mp[:, 0:W]  # previous, previous but one
    h0 = hp[:, c]
    hf1, hf2 = hp[:, 3 : W + 3], hp[:, 4 : W + 4]
    hb1, hb2 = hp[:, 1 : W + 1], hp[:, 0:W]
    out = np.zeros((H, W))
    central = m & f1 & b1
    fwd2 = m & f1 & ~b1 & f2
    fwd1 = m & f1 & ~b1 & ~f2
    bwd2 = m & b1 & ~f1 & b2
    bwd1 = m & b1 & ~f1 & ~b2
    out[central] = 0.5 * (hf1 - hb1)[central]
    out[fwd2] = (0.5 * (-3.0 * h0 + 4.0 * hf1 - hf2))[fwd2]
    out[fwd1] = (hf1 - h0)[fwd1]
    out[bwd2] = (0.5 * (3.0 * h0 - 4.0 * hb1 + hb2))[bwd2]
    out[bwd1] = (h0 - hb1)[bwd1]
    return out


def _gradients(h: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _derivative_last_axis(h, m)
    # y is up: walking +y is walking to row r - 1, i.e. along the last axis of h[::-1].T.
    q = _derivative_last_axis(np.ascontiguousarray(h[::-1].T), np.ascontiguousarray(m[::-1].T)).T[::-1]
    return p, np.ascontiguousarray(q)


def depth_gradients(depth: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference slopes ``p = dh/dx`` (x = column) and ``q = dh/dy`` (y up) of a depth map.

    The differences follow the rule of this module's docstring: central where both
    neighbours along the axis are in the mask, second- or first-order one-sided at the mask's
    edge, 0 for a pixel with no neighbour along that axis. Pixels outside the mask are never
    read, so the depth may be NaN there.

    Args:
        depth: ``(H, W)`` height toward the viewer in pixel units, any real dtype and layout;
            finite inside the mask.
        mask: ``(H, W)`` bool domain; default: the pixels where ``depth`` is finite.

    Returns:
        ``(p, q)``: two ``(H, W)`` float64 maps (dimensionless), 0 outside the mask.
    """
    return _gradients(*_prepare(depth, mask))


def gradient_magnitude(depth: Any, mask: Any = None) -> np.ndarray:
    """``W = |grad h| = sqrt(p^2 + q^2)`` of a depth map, the weight map of the paper.

    ``p = dh/dx`` and ``q = dh/dy`` (y up) are the finite differences of
    :func:`depth_gradients` (central inside the mask, one-sided at its edge, see the module
    docstring), so W is large at depth discontinuities inside the mask.

    Args:
        depth: ``(H, W)`` height toward the viewer in pixel units, any real dtype; finite
            inside the mask (NaN outside is fine).
        mask: ``(H, W)`` bool domain; default: the pixels where ``depth`` is finite.

    Returns:
        ``(H, W)`` float64, ``W >= 0`` (dimensionless) inside the mask, 0 outside.
    """
    p, q = depth_gradients(depth, mask)
    return np.hypot(p, q)


def normals_from_depth(depth: Any, mask: Any = None) -> np.ndarray:
    """Unit normals ``N = (-p, -q, 1) / sqrt(1 + p^2 + q^2)`` of a depth map.

    ``p``, ``q`` are the finite differences of :func:`depth_gradients` (module docstring).
    Frame: x to the right, y up, z toward the viewer, so ``Nz > 0``.

    Args:
        depth: ``(H, W)`` height toward the viewer in pixel units, any real dtype; finite
            inside the mask.
        mask: ``(H, W)`` bool domain; default: the pixels where ``depth`` is finite.

    Returns:
        ``(H, W, 3)`` float64 unit normals inside the mask, ``(0, 0, 0)`` outside.
    """
    h, m = _prepare(depth, mask)
    p, q = _gradients(h, m)
    out = np.stack([-p, -q, np.ones_like(p)], axis=-1)
    out /= np.sqrt(1.0 + p * p + q * q)[..., None]
    out[~m] = 0.0
    return out


def depth_to_mesh(depth: Any, mask: Any = None) -> Any:
    """Triangle mesh of a depth map: one vertex per mask pixel, two triangles per 2x2 block.

    Vertex ``k`` is the ``k``-th mask pixel in row-major order (the unknown order of
    :func:`monohead.wls_system`), at ``(x, y, z) = (c, -r, h[r, c])``: column, minus row and
    depth, all in pixel units (conventions' frame). Every 2x2 block of pixels that are all in
    the mask gets the two triangles ``(BL, BR, TR)`` and ``(BL, TR, TL)`` (B/T = bottom/top
    row, L/R = left/right column), counter-clockwise seen from the viewer (+z), so face normals
    point toward the viewer on a surface facing it. Mask pixels in no full block stay as
    unreferenced vertices.

    Args:
        depth: ``(H, W)`` height toward the viewer in pixel units, any real dtype; finite
            inside the mask.
        mask: ``(H, W)`` bool domain; default: the pixels where ``depth`` is finite.

    Returns:
        :class:`trimesh.Trimesh` built with ``process=False`` (vertex order kept, nothing
        merged or removed), float64 vertices and int64 faces.
    """
    import trimesh

    h, m = _prepare(depth, mask)
    rows, cols = np.nonzero(m)
    verts = np.column_stack([cols.astype(np.float64), -rows.astype(np.float64), h[rows, cols]])
    index = np.full(m.shape, -1, dtype=np.int64)
    index[rows, cols] = np.arange(rows.size)
    block = m[:-1, :-1] & m[:-1, 1:] & m[1:, :-1] & m[1:, 1:]
    br, bc = np.nonzero(block)
    tl, tr = index[br, bc], index[br, bc + 1]
    bl, brr = index[br + 1, bc], index[br + 1, bc + 1]
    faces = np.empty((2 * br.size, 3), dtype=np.int64)
    faces[0::2] = np.column_stack([bl, brr, tr])
    faces[1::2] = np.column_stack([bl, tr, tl])
    return trimesh.Trimesh(vertices=verts, faces=faces, process=False, validate=False)


def mesh_to_depth(mesh: Any, shape: tuple[int, int], atol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`depth_to_mesh`: put each vertex back on its pixel.

    Vertex ``(x, y, z)`` goes to pixel ``(r, c) = (-y, x)`` with depth ``z``. Works for any
    mesh or point set whose vertices lie on the pixel grid (not a rasteriser).

    Args:
        mesh: :class:`trimesh.Trimesh`, ``(vertices, faces)`` pair, or ``(V, 3)`` vertices.
        shape: ``(H, W)`` of the depth map.
        atol: how far (pixel units) ``x`` and ``-y`` may be from integers.

    Returns:
        ``(depth, mask)``: ``(H, W)`` float64 depth, NaN outside the mask, and the bool mask of
        the pixels that received a vertex.

    Raises:
        ValueError: a vertex off the grid or outside ``shape``, or two vertices on one pixel.
    """
    if hasattr(mesh, "vertices") or isinstance(mesh, (tuple, list)):
        verts = v.check_mesh(mesh, min_faces=0)[0]
    else:
        verts = v.check_vertices(mesh, "mesh")
    if not (
        isinstance(shape, (tuple, list))
        and len(shape) == 2
        and all(isinstance(s, (int, np.integer)) and s > 0 for s in shape)
    ):
        raise ValueError(f"shape must be a pair of positive integers (H, W); got {shape!r}")
    H, W = int(shape[0]), int(shape[1])
    c = np.rint(verts[:, 0])
    r = np.rint(-verts[:, 1])
    off = np.count_nonzero((np.abs(c - verts[:, 0]) > atol) | (np.abs(r + verts[:, 1]) > atol))
    if off:
        raise ValueError(f"mesh vertices must lie on the pixel grid (integer x and -y); got {off} vertex(es) off it")
    outside = np.count_nonzero((c < 0) | (c >= W) | (r < 0) | (r >= H))
    if outside:
        raise ValueError(f"mesh vertices must fall inside shape ({H}, {W}); got {outside} vertex(es) outside it")
    r, c = r.astype(np.int64), c.astype(np.int64)
    flat = r * W + c
    if np.unique(flat).size != flat.size:
        raise ValueError(
            f"mesh must have at most one vertex per pixel; got {flat.size - np.unique(flat).size} duplicate(s)"
        )
    depth = np.full((H, W), np.nan)
    depth[r, c] = verts[:, 2]
    return depth, np.isfinite(depth)


def _mesh_format(path: str, file_type: Any) -> str:
    if file_type is None:
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        if ext not in MESH_FORMATS:
            raise ValueError(f"path must end in .ply, .obj or .glb (or pass file_type); got {path!r}")
        return ext
    if not isinstance(file_type, str) or file_type.lower() not in MESH_FORMATS:
        raise ValueError(f"file_type must be 'ply', 'obj' or 'glb'; got {file_type!r}")
    return file_type.lower()


def save_mesh(mesh: Any, path: Any, file_type: str | None = None) -> None:
    """Write a triangle mesh as PLY (binary), OBJ or GLB (binary glTF 2.0), atomically.

    The file is written to a temporary name in the same folder and renamed (see
    :mod:`monohead._io`): on error no partial file is left and an existing file is untouched.

    Args:
        mesh: :class:`trimesh.Trimesh` or ``(vertices, faces)`` pair (validated).
        path: destination; its extension (``.ply``/``.obj``/``.glb``) picks the format unless
            ``file_type`` is given.
        file_type: ``"ply"``, ``"obj"`` or ``"glb"``.
    """
    import trimesh

    p = _io.check_path(path)
    fmt = _mesh_format(p, file_type)
    verts, faces = v.check_mesh(mesh, min_faces=0)
    tm = mesh if isinstance(mesh, trimesh.Trimesh) else trimesh.Trimesh(verts, faces, process=False, validate=False)
    data = tm.export(file_type=fmt)
    if isinstance(data, str):
        data = data.encode("utf-8")
    _io.atomic_write_bytes(p, data)


def load_mesh(path: Any) -> Any:
    """Read a PLY, OBJ or GLB mesh as a :class:`trimesh.Trimesh` without merging, reordering or
    dropping vertices (unreferenced vertices, e.g. isolated mask pixels, are kept in PLY and OBJ)."""
    import trimesh

    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ValueError(f"path must name an existing file; got {p!r}")
    kwargs = {"maintain_order": True} if p.lower().endswith(".obj") else {}
    return trimesh.load(p, process=False, force="mesh", **kwargs)
