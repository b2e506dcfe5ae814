"""The head model: ICT-FaceKit's linear full-head model, read, converted and sampled.

ICT-FaceKit (USC Institute for Creative Technologies, MIT licence) ships its model as a folder
``FaceXModel/`` of OBJ files with one topology: ``generic_neutral_mesh.obj`` (the mean head),
``identity000.obj`` ... ``identity099.obj`` (the mean plus one identity mode at one standard
deviation) and one OBJ per expression blendshape (names in ``vertex_indices.json``). A head is

    X = X0 + sum_i y_i (identity_i - X0) + sum_j w_j (expression_j - X0),

with ``y ~ N(0, 1)`` (the paper's ``X = X0 + W y``) and expression weights ``w_j`` in [0, 1].

This module:

- :func:`read_facexmodel` reads a user's download (the ``FaceXModel/`` folder);
- :func:`build_asset` turns it into the compact asset that ships inside the package
  (``assets/ict_head.npz``: float16 deltas, only the regions the generator uses, the torso's
  open bottom closed by a cap) and :func:`write_asset` writes it with the licence beside it;
- :class:`HeadModel` loads the asset and makes heads (:meth:`HeadModel.shape`), and
  :func:`sample_identity`, :func:`sample_expression` draw random coefficients.

Units and frame of the model: centimetres; x to the subject's left (the viewer's right in a
frontal view), y up, z out of the face (toward a frontal viewer); the nose tip is near
``z = 13``. This is the camera frame of ``conventions.md`` for a frontal head.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io

__all__ = [
    "ASSET_PATH",
    "ASSET_REGIONS",
    "FaceXModel",
    "MOUTH_REGIONS",
    "HeadModel",
    "build_asset",
    "read_facexmodel",
    "sample_expression",
    "sample_identity",
    "write_asset",
]

ASSET_PATH = Path(__file__).with_name("assets") / "ict_head.npz"
"""The asset shipped with monohead (made by :func:`write_asset` from ICT-FaceKit)."""

ASSET_FORMAT = 1
ICT_VERTEX_COUNT = 26719
ICT_POLYGON_COUNT = 26384
ICT_NEUTRAL = "generic_neutral_mesh.obj"

# The topology table of ICT-FaceKit's README: region name, vertex range, polygon range (stop
# exclusive, polygons in OBJ order). Valid for every OBJ of FaceXModel/.
ICT_REGIONS: tuple[tuple[str, int, int, int, int], ...] = (
    ("face", 0, 9409, 0, 9230),
    ("head_and_neck", 9409, 11248, 9230, 11144),
    ("mouth_socket", 11248, 13294, 11144, 13226),
    ("eye_socket_left", 13294, 13678, 13226, 13630),
    ("eye_socket_right", 13678, 14062, 13630, 14034),
    ("gums_and_tongue", 14062, 17039, 14034, 17006),
    ("teeth", 17039, 21451, 17006, 21496),
    ("eyeball_left", 21451, 23021, 21496, 23094),
    ("eyeball_right", 23021, 24591, 23094, 24692),
    ("lacrimal_fluid_left", 24591, 24795, 24692, 24855),
    ("lacrimal_fluid_right", 24795, 24999, 24855, 25018),
    ("eye_blend_left", 24999, 25023, 25018, 25033),
    ("eye_blend_right", 25023, 25047, 25033, 25048),
    ("eye_occlusion_left", 25047, 25199, 25048, 25176),
    ("eye_occlusion_right", 25199, 25351, 25176, 25304),
    ("eyelashes_left", 25351, 26035, 25304, 25844),
    ("eyelashes_right", 26035, 26719, 25844, 26384),
)

ASSET_REGIONS = (
    "face",
    "head_and_neck",
    "mouth_socket",
    "eye_socket_left",
    "eye_socket_right",
    "eyeball_left",
    "eyeball_right",
)
"""Regions kept in the asset. The first five form the skin surface (closed but for the torso's
bottom, which :func:`build_asset` caps); the eyeballs are separate. ICT's eyelashes are cards
that need an opacity texture, its teeth and tongue are rarely seen; they are left out (the
skin texture paints a lash line, and the mouth socket fills the lip gap)."""

MOUTH_REGIONS = ("gums_and_tongue", "teeth")
"""ICT's teeth, gums and tongue: kept in the asset apart from the head (``mouth_*`` arrays, their
own vertices), so that the head's arrays, and the samples of generator versions 1 and 2, stay
as they were. Generator version 3 renders them (:meth:`HeadModel.mouth_shape`)."""

MOUTH_MODE_MIN = 0.01
"""Centimetres: an identity mode or blendshape is kept for the mouth when it moves some mouth
vertex by more than this (52 of the 100 identity modes and 26 of the 53 blendshapes are kept).
With the float16 storage, the teeth of a random identity lie within 0.5 mm of ICT's (0.2 mm
on average): 0.15 pixels of a 128² sample at most."""

SKIN_REGIONS = ("face", "head_and_neck", "mouth_socket", "eye_socket_left", "eye_socket_right", "cap")
EYE_REGIONS = ("eyeball_left", "eyeball_right")

ATTRIBUTION = (
    "Head model: ICT-FaceKit, (c) 2020 USC Institute for Creative Technologies, MIT licence "
    "(https://github.com/ICT-VGL/ICT-FaceKit). Converted for monohead by "
    "monohead.synth.head_model.write_asset: float16 deltas, regions {regions}, {n_id} identity "
    "modes, {n_ex} expression blendshapes, the torso's open bottom closed by a cap."
)


# --------------------------------------------------------------------------------------------
# Reading the upstream OBJ files
# --------------------------------------------------------------------------------------------


def _obj_lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().split(b"\n")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _obj_vertices(lines: list[bytes], path: Path) -> np.ndarray:
    rows = [ln[2:] for ln in lines if ln.startswith(b"v ")]
    try:
        flat = np.array(b" ".join(rows).split()).astype(np.float64)
        return flat.reshape(len(rows), 3)
    except ValueError as exc:
        raise ValueError(f"{path} has malformed 'v' lines (expected 3 numbers each): {exc}") from exc


def _obj_topology(lines: list[bytes], path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(polygon_sizes, polygon vertex indices, polygon uv indices, uv) of an OBJ, 0-based."""
    uv_rows = [ln[3:] for ln in lines if ln.startswith(b"vt ")]
    uv = np.array(b" ".join(uv_rows).split()).astype(np.float64).reshape(len(uv_rows), -1)[:, :2]
    f_rows = [ln[2:].strip() for ln in lines if ln.startswith(b"f ")]
    sizes = np.array([r.count(b" ") + 1 for r in f_rows], dtype=np.int64)
    corners = b" ".join(f_rows).split()
    if corners and corners[0].count(b"/") == 0:
        vi = np.array(corners).astype(np.int64)
        ti = np.zeros_like(vi)
    else:
        parts = [c.split(b"/") for c in corners]
        vi = np.array([p[0] for p in parts]).astype(np.int64)
        ti = np.array([p[1] if len(p) > 1 and p[1] else b"0" for p in parts]).astype(np.int64)
    if vi.size != sizes.sum():
        raise ValueError(f"{path} has malformed 'f' lines")
    return sizes, vi - 1, ti - 1, uv


def _license_header(lines: list[bytes]) -> str:
    """The licence comment at the top of an ICT-FaceKit OBJ, as plain text."""
    out = []
    for ln in lines:
        if not ln.startswith(b"#"):
            if out:
                break
            continue
        text = ln.decode("utf-8", "replace").strip().strip("#").strip()
        out.append(text)
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""


@dataclass
class FaceXModel:
    """An ICT-FaceKit model as read from its ``FaceXModel/`` folder (float64, centimetres).

    Attributes:
        neutral: ``(V, 3)`` mean head, ``V = 26719``.
        identity_deltas: ``(K, V, 3)`` identity modes minus the mean (one standard deviation).
        identity_names: the K file stems (``identity000`` ...).
        expression_deltas: ``(E, V, 3)`` blendshapes minus the mean (weight 1).
        expression_names: the E blendshape names.
        polygon_sizes: ``(P,)`` corners per polygon (3 or 4), OBJ order.
        polygons: ``(sum(polygon_sizes),)`` 0-based vertex index of each corner.
        polygon_uv: ``(sum(polygon_sizes),)`` 0-based texture-coordinate index of each corner.
        uv: ``(U, 2)`` texture coordinates (ICT's UDIM-like layout: one tile per part).
        license: the licence text from the OBJ header (may be empty).
        missing: expression files named by ``vertex_indices.json`` but absent.
    """

    neutral: np.ndarray
    identity_deltas: np.ndarray
    identity_names: list[str]
    expression_deltas: np.ndarray
    expression_names: list[str]
    polygon_sizes: np.ndarray
    polygons: np.ndarray
    polygon_uv: np.ndarray
    uv: np.ndarray
    license: str = ""
    missing: list[str] = field(default_factory=list)


def _check_folder(folder: Any) -> Path:
    if isinstance(folder, bytes) or not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a str or os.PathLike; got {type(folder).__name__}")
    p = Path(folder)
    if not p.is_dir():
        raise ValueError(f"not an ICT-FaceKit FaceXModel folder: {str(p)!r} is not a folder")
    if not (p / ICT_NEUTRAL).is_file():
        sub = p / "FaceXModel"
        if (sub / ICT_NEUTRAL).is_file():
            return sub
        raise ValueError(
            f"not an ICT-FaceKit FaceXModel folder: {str(p)!r} has no {ICT_NEUTRAL} "
            "(give the FaceXModel/ folder of https://github.com/ICT-VGL/ICT-FaceKit)"
        )
    return p


def read_facexmodel(folder: Any, max_identities: int | None = None, expressions: list[str] | None = None) -> FaceXModel:
    """Read an ICT-FaceKit ``FaceXModel/`` folder of OBJ files.

    Args:
        folder: the ``FaceXModel/`` folder of a download of ICT-FaceKit (or the repository
            root that contains it).
        max_identities: read at most this many identity modes (``identity000.obj`` on, in
            order, stopping at the first missing file); default all.
        expressions: blendshape names to read; default those listed in
            ``vertex_indices.json`` (or, without it, every other OBJ of the folder). Listed
            files that are absent are skipped and reported in ``missing``.

    Returns:
        A :class:`FaceXModel`.

    Raises:
        ValueError: ``folder`` is not such a folder (no ``generic_neutral_mesh.obj``), or a
            file does not have the ICT-FaceKit topology (26,719 vertices).
    """
    root = _check_folder(folder)
    lines = _obj_lines(root / ICT_NEUTRAL)
    neutral = _obj_vertices(lines, root / ICT_NEUTRAL)
    if neutral.shape[0] != ICT_VERTEX_COUNT:
        raise ValueError(
            f"not an ICT-FaceKit FaceXModel folder: {ICT_NEUTRAL} has {neutral.shape[0]} vertices; "
            f"expected {ICT_VERTEX_COUNT}"
        )
    sizes, polys, puv, uv = _obj_topology(lines, root / ICT_NEUTRAL)
    if sizes.size != ICT_POLYGON_COUNT:
        raise ValueError(
            f"not an ICT-FaceKit FaceXModel folder: {ICT_NEUTRAL} has {sizes.size} polygons; "
            f"expected {ICT_POLYGON_COUNT}"
        )
    license_text = _license_header(lines)

    def deltas(path: Path) -> np.ndarray:
        v = _obj_vertices(_obj_lines(path), path)
        if v.shape != neutral.shape:
            raise ValueError(f"{path} has {v.shape[0]} vertices; expected {ICT_VERTEX_COUNT} (ICT-FaceKit topology)")
        return v - neutral

    id_names: list[str] = []
    id_deltas: list[np.ndarray] = []
    limit = 10**6 if max_identities is None else int(max_identities)
    while len(id_names) < limit:
        name = f"identity{len(id_names):03d}"
        path = root / f"{name}.obj"
        if not path.is_file():
            break
        id_deltas.append(deltas(path))
        id_names.append(name)
    if expressions is None:
        meta = root / "vertex_indices.json"
        if meta.is_file():
            try:
                expressions = [str(e) for e in json.loads(meta.read_text())["expressions"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{meta} is not ICT-FaceKit's vertex_indices.json: {exc}") from exc
        else:
            expressions = sorted(
                q.stem for q in root.glob("*.obj") if q.name != ICT_NEUTRAL and not q.stem.startswith("identity")
            )
    ex_names: list[str] = []
    ex_deltas: list[np.ndarray] = []
    missing: list[str] = []
    for name in expressions:
        path = root / f"{name}.obj"
        if path.is_file():
            ex_deltas.append(deltas(path))
            ex_names.append(name)
        else:
            missing.append(name)
    shape = (0, ICT_VERTEX_COUNT, 3)
    return FaceXModel(
        neutral=neutral,
        identity_deltas=np.stack(id_deltas) if id_deltas else np.zeros(shape),
        identity_names=id_names,
        expression_deltas=np.stack(ex_deltas) if ex_deltas else np.zeros(shape),
        expression_names=ex_names,
        polygon_sizes=sizes,
        polygons=polys,
        polygon_uv=puv,
        uv=uv,
        license=license_text,
        missing=missing,
    )


# --------------------------------------------------------------------------------------------
# The compact asset
# --------------------------------------------------------------------------------------------


def _boundary_loops(tris: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops of a triangle mesh, each ordered along the faces' winding."""
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    key = e[:, 0].astype(np.int64) * (1 << 32) + e[:, 1]
    rev = e[:, 1].astype(np.int64) * (1 << 32) + e[:, 0]
    border = e[~np.isin(key, rev)]
    nxt = dict(zip(border[:, 0].tolist(), border[:, 1].tolist(), strict=True))
    loops = []
    while nxt:
        start, cur = next(iter(nxt.items()))
        loop = [start]
        del nxt[start]
        while cur != start:
            loop.append(cur)
            cur = nxt.pop(cur)
        loops.append(np.array(loop, dtype=np.int64))
    return loops


def build_asset(model: FaceXModel, n_identity: int | None = None, n_expression: int | None = None) -> dict[str, Any]:
    """The compact asset (a dict of arrays, the contents of ``ict_head.npz``) of a model.

    Keeps the regions of :data:`ASSET_REGIONS` (their vertices only, renumbered), triangulates
    the polygons (fan), closes each boundary loop of the skin surface with a fan around a new
    vertex at the loop's centroid (a linear function of the loop's vertices, so that it stays
    exact for every identity and expression; the cap has its own copies of the rim vertices,
    a crease), and stores the deltas as float16.

    Args:
        model: a :class:`FaceXModel`.
        n_identity: keep the first this many identity modes (default all read).
        n_expression: keep the first this many blendshapes (default all read).

    Returns:
        ``dict`` with ``neutral (V, 3) float32``, ``identity_deltas (K, V, 3) float16``,
        ``expression_deltas (E, V, 3) float16``, ``expression_names``, ``faces (F, 3) int32``
        (counter-clockwise seen from outside), ``face_region (F,) uint8`` (index into
        ``region_names``), ``region_names``, ``uv (U, 2) float32`` (upstream layout; the cap
        gets its own entries), ``corner_uv (F, 3) int32``, ``source_vertex (V,) int32`` (index
        in the upstream mesh: the cap's rim vertices repeat their originals' index, its centre
        has -1), ``license``, ``attribution``, ``format``.
    """
    k = model.identity_deltas.shape[0] if n_identity is None else min(int(n_identity), model.identity_deltas.shape[0])
    e = (
        model.expression_deltas.shape[0]
        if n_expression is None
        else min(int(n_expression), model.expression_deltas.shape[0])
    )
    offsets = np.concatenate([[0], np.cumsum(model.polygon_sizes)])
    region_names = list(ASSET_REGIONS) + ["cap"]
    corners, tr = _fan_corners(model, offsets, ASSET_REGIONS)  # ASSET_REGIONS lead region_names
    tv = model.polygons[corners]
    tt = model.polygon_uv[corners]
    used = np.unique(tv)
    remap = np.full(model.neutral.shape[0], -1, np.int64)
    remap[used] = np.arange(used.size)
    faces = remap[tv]
    neutral = model.neutral[used]
    ident = model.identity_deltas[:k, used]
    expr = model.expression_deltas[:e, used]
    source = used.astype(np.int64)
    uv = model.uv.astype(np.float64)

    # Cap the open loops of the skin surface (ICT: the torso's bottom). The cap has its own
    # copies of the rim vertices, so that it is a crease: its normals are the cut's, not
    # blended with the torso's (which would make them face away from a viewer who sees it).
    skin = np.isin(tr, [region_names.index(r) for r in SKIN_REGIONS if r != "cap"])
    new_faces, new_uv_idx = [], []
    extra_v, extra_id, extra_ex, extra_src, extra_uv = [], [], [], [], []
    for loop in _boundary_loops(faces[skin]):
        first = neutral.shape[0] + sum(len(x) for x in extra_v)
        rim = first + np.arange(loop.size)
        centre = first + loop.size
        extra_v.append(np.concatenate([neutral[loop], neutral[loop].mean(axis=0)[None]]))
        extra_id.append(np.concatenate([ident[:, loop], ident[:, loop].mean(axis=1)[:, None]], axis=1))
        extra_ex.append(np.concatenate([expr[:, loop], expr[:, loop].mean(axis=1)[:, None]], axis=1))
        extra_src.append(np.concatenate([source[loop], [-1]]))
        # The loop runs along the skin's winding; the cap runs the other way round.
        a, b = rim, np.roll(rim, -1)
        new_faces.append(np.stack([b, a, np.full_like(a, centre)], axis=1))
        # One texture coordinate for the whole cap: the skin at the loop's first corner.
        first_corner = np.nonzero(faces == loop[0])
        uv_index = uv.shape[0] + len(extra_uv)
        extra_uv.append(uv[tt[first_corner][0]])
        new_uv_idx.append(np.full((a.size, 3), uv_index, np.int64))
    if extra_v:
        neutral = np.concatenate([neutral, *extra_v])
        ident = np.concatenate([ident, *extra_id], axis=1)
        expr = np.concatenate([expr, *extra_ex], axis=1)
        source = np.concatenate([source, *extra_src])
        uv = np.concatenate([uv, np.array(extra_uv)])
        faces = np.concatenate([faces] + new_faces)
        tt = np.concatenate([tt] + new_uv_idx)
        tr = np.concatenate([tr, np.full(sum(len(f) for f in new_faces), region_names.index("cap"), np.uint8)])
    # Keep only the texture coordinates in use.
    used_uv, tt = np.unique(tt, return_inverse=True)
    tt = tt.reshape(-1, 3)
    uv = uv[used_uv]
    attribution = ATTRIBUTION.format(regions=", ".join(ASSET_REGIONS), n_id=k, n_ex=e)
    mouth = _mouth_arrays(model, offsets, k, e)
    return {
        **mouth,
        "format": np.int32(ASSET_FORMAT),
        "neutral": neutral.astype(np.float32),
        "identity_deltas": ident.astype(np.float16),
        "identity_names": np.array(model.identity_names[:k], dtype=str),
        "expression_deltas": expr.astype(np.float16),
        "expression_names": np.array(model.expression_names[:e], dtype=str),
        "faces": faces.astype(np.int32),
        "face_region": tr.astype(np.uint8),
        "region_names": np.array(region_names, dtype=str),
        "uv": uv.astype(np.float32),
        "corner_uv": tt.astype(np.int32),
        "source_vertex": source.astype(np.int32),
        "license": np.array(model.license),
        "attribution": np.array(attribution),
    }


def _fan_corners(model: FaceXModel, offsets: np.ndarray, keep: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The fan triangulation (0, j, j + 1) of every polygon of the ICT regions named in ``keep``:
    (T, 3) int indices into the polygon-corner arrays (``model.polygons``, ``model.polygon_uv``;
    ``offsets[p]`` is polygon p's first corner) and each triangle's region as its (T,) uint8
    position in ``keep``, in ICT's region order."""
    corners, region = [], []
    for name, _v0, _v1, p0, p1 in ICT_REGIONS:
        if name not in keep:
            continue
        sizes = model.polygon_sizes[p0:p1]
        first = offsets[p0:p1]
        for n in np.unique(sizes):
            sel = first[sizes == n]
            for j in range(1, n - 1):
                corners.append(np.stack([sel, sel + j, sel + j + 1], axis=1))
                region.append(np.full(len(sel), keep.index(name), np.uint8))
    return np.concatenate(corners), np.concatenate(region)


def _mouth_arrays(model: FaceXModel, offsets: np.ndarray, k: int, e: int) -> dict[str, np.ndarray]:
    """The ``mouth_*`` arrays of the asset: ICT's gums, tongue and teeth (:data:`MOUTH_REGIONS`)
    as a mesh of their own, with the identity modes and blendshapes that move them (by more
    than :data:`MOUTH_MODE_MIN`) as float16 deltas."""
    corners, region = _fan_corners(model, offsets, MOUTH_REGIONS)
    tv = model.polygons[corners]
    used = np.unique(tv)
    remap = np.full(model.neutral.shape[0], -1, np.int64)
    remap[used] = np.arange(used.size)
    ident = model.identity_deltas[:k, used]
    expr = model.expression_deltas[:e, used]
    id_modes = np.nonzero(np.abs(ident).max(axis=(1, 2)) > MOUTH_MODE_MIN)[0] if k else np.zeros(0, np.int64)
    ex_modes = np.nonzero(np.abs(expr).max(axis=(1, 2)) > MOUTH_MODE_MIN)[0] if e else np.zeros(0, np.int64)
    return {
        "mouth_neutral": model.neutral[used].astype(np.float32),
        "mouth_faces": remap[tv].astype(np.int32),
        "mouth_face_region": region,
        "mouth_region_names": np.array(MOUTH_REGIONS, dtype=str),
        "mouth_identity_modes": id_modes.astype(np.int32),
        "mouth_identity_deltas": ident[id_modes].astype(np.float16),
        "mouth_expression_modes": ex_modes.astype(np.int32),
        "mouth_expression_deltas": expr[ex_modes].astype(np.float16),
        "mouth_source_vertex": used.astype(np.int32),
    }


def write_asset(
    source: Any,
    out: Any = None,
    n_identity: int | None = None,
    n_expression: int | None = None,
    license_file: bool = True,
) -> dict[str, Any]:
    """Convert an ICT-FaceKit ``FaceXModel/`` folder into monohead's head-model asset.

    Args:
        source: the user's ``FaceXModel/`` folder (see :func:`read_facexmodel`), or a
            :class:`FaceXModel` already read.
        out: the ``.npz`` to write (atomically); default the package's :data:`ASSET_PATH`.
        n_identity: identity modes to keep (default all in the folder).
        n_expression: blendshapes to keep (default all in the folder).
        license_file: also write ``LICENSE-ICT-FaceKit.txt`` (the licence and the attribution)
            beside ``out``.

    Returns:
        A summary: ``path``, ``bytes``, ``vertices``, ``faces``, ``identities``,
        ``expressions``, ``missing`` (expression files absent from the folder), ``license``
        (the licence file written, or ``None``).
    """
    target = _io.check_path(ASSET_PATH if out is None else out, "out")
    model = source if isinstance(source, FaceXModel) else read_facexmodel(source, max_identities=n_identity)
    asset = build_asset(model, n_identity, n_expression)
    with _io.atomic_open(target, "wb") as f:
        np.savez_compressed(f, **asset)
    lic = None
    if license_file:
        lic = os.path.join(os.path.dirname(os.path.abspath(target)), "LICENSE-ICT-FaceKit.txt")
        text = str(asset["license"]) or "MIT License (ICT-FaceKit)\n"
        _io.atomic_write_text(lic, f"{str(asset['attribution'])}\n\n{text}")
    return {
        "path": str(target),
        "bytes": os.path.getsize(target),
        "vertices": int(asset["neutral"].shape[0]),
        "faces": int(asset["faces"].shape[0]),
        "identities": int(asset["identity_deltas"].shape[0]),
        "expressions": int(asset["expression_deltas"].shape[0]),
        "missing": list(model.missing),
        "license": lic,
    }


# --------------------------------------------------------------------------------------------
# The model in use
# --------------------------------------------------------------------------------------------


class HeadModel:
    """ICT-FaceKit's head model from monohead's asset: make heads, know their parts.

    Load with :meth:`load` (the shipped asset by default, or a user's ``.npz`` made by
    :func:`write_asset`, or a ``FaceXModel/`` folder converted in memory).

    Attributes:
        neutral: ``(V, 3)`` float32 mean head, centimetres (module frame).
        identity_basis: ``(K, V, 3)`` float32 identity modes (one standard deviation each).
        expression_basis: ``(E, V, 3)`` float32 blendshapes (weight 1).
        expression_names: list of E names (ARKit-style, ``jawOpen``, ``eyeBlink_L`` ...).
        faces: ``(F, 3)`` int64 triangles, counter-clockwise seen from outside.
        face_region: ``(F,)`` region index of each triangle; ``region_names`` names them.
        uv: ``(U, 2)`` texture coordinates; ``corner_uv (F, 3)`` indexes them per corner.
        attribution, license: text to credit ICT-FaceKit.
    """

    def __init__(self, arrays: dict[str, Any], source: str = "") -> None:
        need = (
            "neutral",
            "identity_deltas",
            "expression_deltas",
            "expression_names",
            "faces",
            "face_region",
            "region_names",
            "uv",
            "corner_uv",
        )
        missing = [k for k in need if k not in arrays]
        if missing:
            raise ValueError(f"head-model asset {source or ''} lacks {missing}; make it with write_asset()")
        self.source = source
        self.neutral = np.asarray(arrays["neutral"], np.float32)
        self.identity_basis = np.asarray(arrays["identity_deltas"], np.float32)
        self.expression_basis = np.asarray(arrays["expression_deltas"], np.float32)
        self.expression_names = [str(s) for s in arrays["expression_names"]]
        self.faces = np.asarray(arrays["faces"], np.int64)
        self.face_region = np.asarray(arrays["face_region"], np.int64)
        self.region_names = [str(s) for s in arrays["region_names"]]
        self.uv = np.asarray(arrays["uv"], np.float64)
        self.corner_uv = np.asarray(arrays["corner_uv"], np.int64)
        self.license = str(arrays.get("license", ""))
        self.attribution = str(arrays.get("attribution", ""))
        v = self.neutral.shape[0]
        self._flat_id = self.identity_basis.reshape(self.identity_basis.shape[0], v * 3)
        self._flat_ex = self.expression_basis.reshape(self.expression_basis.shape[0], v * 3)
        self._eyes = [np.unique(self.faces[self.face_region == self.region_names.index(r)]) for r in EYE_REGIONS]
        self.has_mouth = "mouth_neutral" in arrays
        if self.has_mouth:
            self.mouth_neutral = np.asarray(arrays["mouth_neutral"], np.float32)
            self.mouth_faces = np.asarray(arrays["mouth_faces"], np.int64)
            self.mouth_face_region = np.asarray(arrays["mouth_face_region"], np.int64)
            self.mouth_region_names = [str(r) for r in arrays["mouth_region_names"]]
            self._mouth_id = (
                np.asarray(arrays["mouth_identity_modes"], np.int64),
                np.asarray(arrays["mouth_identity_deltas"], np.float32).reshape(
                    len(arrays["mouth_identity_modes"]), -1
                ),
            )
            self._mouth_ex = (
                np.asarray(arrays["mouth_expression_modes"], np.int64),
                np.asarray(arrays["mouth_expression_deltas"], np.float32).reshape(
                    len(arrays["mouth_expression_modes"]), -1
                ),
            )
        self.cache: dict[Any, Any] = {}  # derived data of this model, kept by the modules that use it

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, source: Any = None) -> HeadModel:
        """Load the shipped asset (``source=None``), a ``.npz`` asset, or a FaceXModel folder."""
        if source is None:
            source = ASSET_PATH
        if isinstance(source, bytes) or not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"head model must be a path (str or os.PathLike); got {type(source).__name__}")
        p = Path(source)
        if p.is_dir():
            return cls(build_asset(read_facexmodel(p)), str(p))
        if not p.is_file():
            raise ValueError(f"head model {str(p)!r} does not exist (give an .npz asset or a FaceXModel folder)")
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"head model {str(p)!r} is not an .npz asset: {exc}") from exc
        return cls(arrays, str(p))

    # -- sizes and parts -------------------------------------------------------------------

    @property
    def num_vertices(self) -> int:
        return int(self.neutral.shape[0])

    @property
    def num_identities(self) -> int:
        return int(self.identity_basis.shape[0])

    @property
    def num_expressions(self) -> int:
        return int(self.expression_basis.shape[0])

    def region_faces(self, regions: tuple[str, ...] | list[str]) -> np.ndarray:
        """Boolean ``(F,)``: the triangles of the named regions (unknown names are ignored)."""
        ids = [self.region_names.index(r) for r in regions if r in self.region_names]
        return np.isin(self.face_region, ids)

    def region_vertices(self, regions: tuple[str, ...] | list[str]) -> np.ndarray:
        """Sorted indices of the vertices used by the named regions' triangles (cached)."""
        key = ("region_vertices", tuple(regions))
        if key not in self.cache:
            self.cache[key] = np.unique(self.faces[self.region_faces(regions)])
        return self.cache[key]

    # -- making heads ----------------------------------------------------------------------

    def shape(
        self,
        identity: Any = None,
        expression: Any = None,
        gaze: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Vertices of a head, ``X = X0 + B_id y + B_ex w``, with the eyeballs turned by ``gaze``.

        Args:
            identity: ``(k,)`` coefficients of the first ``k <= K`` identity modes (in standard
                deviations), default zeros.
            expression: ``(E,)`` blendshape weights (or a ``{name: weight}`` dict), default zeros.
            gaze: ``(yaw, pitch)`` of both eyeballs in radians (yaw > 0 turns them toward +x,
                pitch > 0 up), each about its own centre (a sphere fitted to the eyeball).

        Returns:
            ``(V, 3)`` float64 vertices in centimetres (module frame).
        """
        x = self.neutral.reshape(-1).astype(np.float64)
        if identity is not None:
            y = np.asarray(identity, np.float32).reshape(-1)
            if y.size > self.num_identities:
                raise ValueError(f"identity must have at most {self.num_identities} coefficients; got {y.size}")
            if y.size:
                x = x + y @ self._flat_id[: y.size]
        if expression is not None:
            w = self.expression_weights(expression)
            nz = np.nonzero(w)[0]
            if nz.size:
                x = x + w[nz] @ self._flat_ex[nz]
        v = x.reshape(-1, 3)
        if gaze is not None and (gaze[0] or gaze[1]):
            yaw, pitch = float(gaze[0]), float(gaze[1])
            cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
            ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            rx = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
            rot = ry @ rx
            for idx in self._eyes:
                c = _sphere_centre(v[idx])
                v[idx] = (v[idx] - c) @ rot.T + c
        return v

    def mouth_shape(self, identity: Any = None, expression: Any = None) -> np.ndarray:
        """Vertices of the teeth, gums and tongue (:data:`MOUTH_REGIONS`; triangles
        ``mouth_faces``, region of each ``mouth_face_region``) of the head that
        :meth:`shape` makes with the same ``identity`` and ``expression``.

        Returns:
            ``(M, 3)`` float64 vertices in centimetres (model frame).

        Raises:
            ValueError: the asset has no mouth (made before monohead kept it; rebuild it with
                :func:`write_asset`), or bad coefficients (as :meth:`shape`).
        """
        if not self.has_mouth:
            raise ValueError(
                f"head model {self.source!r} has no teeth and tongue (an asset made before they were kept); "
                "rebuild it with monohead synth-asset"
            )
        x = self.mouth_neutral.reshape(-1).astype(np.float64)
        if identity is not None:
            y = np.asarray(identity, np.float32).reshape(-1)
            if y.size > self.num_identities:
                raise ValueError(f"identity must have at most {self.num_identities} coefficients; got {y.size}")
            modes, deltas = self._mouth_id
            keep = modes < y.size
            if keep.any():
                x = x + y[modes[keep]] @ deltas[keep]
        if expression is not None:
            w = self.expression_weights(expression)
            modes, deltas = self._mouth_ex
            ww = w[modes]
            nz = np.nonzero(ww)[0]
            if nz.size:
                x = x + ww[nz] @ deltas[nz]
        return x.reshape(-1, 3)

    def expression_weights(self, expression: Any) -> np.ndarray:
        """``(E,)`` float32 weights from an array or a ``{name: weight}`` dict."""
        if isinstance(expression, dict):
            w = np.zeros(self.num_expressions, np.float32)
            for name, val in expression.items():
                if name not in self.expression_names:
                    raise ValueError(f"unknown expression {name!r}; known: {', '.join(self.expression_names)}")
                w[self.expression_names.index(name)] = float(val)
            return w
        w = np.asarray(expression, np.float32).reshape(-1)
        if w.size != self.num_expressions:
            raise ValueError(f"expression must have {self.num_expressions} weights; got {w.size}")
        return w

    def eye_centres(self, vertices: np.ndarray) -> np.ndarray:
        """``(2, 3)``: centres of the left and right eyeballs of ``vertices`` (sphere fits)."""
        return np.stack([_sphere_centre(vertices[idx]) for idx in self._eyes])


def _sphere_centre(points: np.ndarray) -> np.ndarray:
    """Least-squares centre of a sphere through ``points`` (``|p|^2 = 2 c.p + k``)."""
    a = np.column_stack([2.0 * points, np.ones(len(points))])
    b = (points * points).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    return sol[:3]


# --------------------------------------------------------------------------------------------
# Random coefficients
# --------------------------------------------------------------------------------------------


def sample_identity(rng: np.random.Generator, k: int, clip: float = 3.0) -> np.ndarray:
    """``(k,)`` identity coefficients ``y ~ N(0, 1)`` (the paper's), clipped to ``[-clip, clip]``."""
    return np.clip(rng.standard_normal(k), -clip, clip)


# Blendshapes that tend to be active together, by family (L/R pairs move together most often).
_EXPRESSION_GROUPS: dict[str, float] = {
    "brow": 1.0,
    "cheek": 0.6,
    "eyeBlink": 0.5,
    "eyeSquint": 0.7,
    "eyeWide": 0.6,
    "jaw": 1.0,
    "mouth": 2.5,
    "nose": 0.5,
}


def sample_expression(
    rng: np.random.Generator, names: list[str], neutral_share: float = 0.25, max_active: int = 4
) -> tuple[np.ndarray, tuple[float, float]]:
    """Random blendshape weights and eye gaze.

    With probability ``neutral_share`` the face is neutral (all weights 0, gaze straight).
    Otherwise 1 to ``max_active`` blendshapes are chosen (mouth shapes more often), each with a
    weight in [0.15, 1]; a chosen ``_L``/``_R`` shape brings its twin along with probability
    0.7 at a similar weight. ``jawOpen`` is kept at most 0.6 and the ``eyeLook*`` shapes are
    replaced by a gaze (yaw, pitch) that turns the eyeballs (up to ±25° and ±15°) and moves
    the lids with them.

    Returns:
        ``(weights (E,) float64, (yaw, pitch))``.
    """
    w = np.zeros(len(names))
    if rng.random() < neutral_share:
        return w, (0.0, 0.0)
    look = [n for n in names if n.startswith("eyeLook")]
    choices = [n for n in names if n not in look]
    prior = np.array([next((g for p, g in _EXPRESSION_GROUPS.items() if n.startswith(p)), 1.0) for n in choices])
    prior /= prior.sum()
    count = int(rng.integers(1, max_active + 1))
    for n in rng.choice(choices, size=min(count, len(choices)), replace=False, p=prior):
        val = rng.uniform(0.15, 1.0)
        w[names.index(n)] = max(w[names.index(n)], val)
        twin = n[:-1] + ("R" if n.endswith("L") else "L") if n[-2:] in ("_L", "_R") else None
        if twin in names and rng.random() < 0.7:
            w[names.index(twin)] = max(w[names.index(twin)], np.clip(val + rng.normal(0, 0.1), 0.0, 1.0))
    if "jawOpen" in names:
        w[names.index("jawOpen")] = min(w[names.index("jawOpen")], 0.6)
    yaw = pitch = 0.0
    if rng.random() < 0.5:
        yaw = float(rng.uniform(-1, 1)) * np.radians(25.0)
        pitch = float(rng.uniform(-1, 1)) * np.radians(15.0)
        # Move the lids with the eyes through the eyeLook shapes (right/left are the subject's).
        for side, sign in (("L", 1.0), ("R", -1.0)):
            horiz = yaw / np.radians(25.0)
            out_w, in_w = max(sign * horiz, 0.0), max(-sign * horiz, 0.0)
            for name, val in (
                (f"eyeLookOut_{side}", out_w),
                (f"eyeLookIn_{side}", in_w),
                (f"eyeLookUp_{side}", max(pitch, 0) / np.radians(15.0)),
                (f"eyeLookDown_{side}", max(-pitch, 0) / np.radians(15.0)),
            ):
                if name in names:
                    w[names.index(name)] = val
    return w, (yaw, pitch)
