"""Facial hair for generator version 2: stubble, moustaches, goatees and beards as strands.

Strands are rooted on the skin of the lower face (zones found once on the neutral head:
upper lip, chin, cheeks below a line from the sideburns to the mouth corners, jaw and the
neck under it; lips and the mouth left out), grow along the skin in a combing direction
(down, and outward from the midline), droop under gravity and are kept out of the face (each
control point is pushed out along the normal of its nearest head vertex). They are cubic
B-splines like scalp hair (:mod:`monohead.synth.hair`) with as many control points as the
scalp's strands, so the renderer puts them in the same curve shape, with the hair BSDF and
the hair's colour. The ground truth under them is the head surface.

Generator version 3 grows them with ``soft=True``: a zone's edge is no longer a hard line
(roots thin out over the last :data:`EDGE_FADE` centimetres and their strands get shorter
there), each strand tapers from root to tip, and a moustache is combed down over the lip
rather than sideways. Version 2 (``soft=False``) grows exactly the strands it always grew.

Units: centimetres, head model frame (x to the subject's left, y up, z out of the face).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from .hair import bend_and_advance, curl_side, root_directions, sample_roots
from .head_model import HeadModel

__all__ = ["STYLES", "grow_facial_hair", "sample_facial_hair_params"]

STYLES = ("stubble", "moustache", "goatee", "short_beard", "full_beard")
_STYLE_P = (0.3, 0.15, 0.15, 0.22, 0.18)
_LENGTH = {
    "stubble": (0.05, 0.18),
    "moustache": (0.5, 1.6),
    "goatee": (0.5, 2.5),
    "short_beard": (0.4, 1.6),
    "full_beard": (2.0, 6.0),
}
_DENSITY = {"stubble": 900.0, "moustache": 260.0, "goatee": 200.0, "short_beard": 160.0, "full_beard": 130.0}
"""Strands per cm² of skin (fewer than real, thicker: the render is 128 pixels wide)."""

EDGE_FADE = {"stubble": 0.8, "moustache": 0.6, "goatee": 1.3, "short_beard": 1.0, "full_beard": 1.1}
"""Centimetres over which a zone's roots thin out toward its edge (``soft=True``)."""


def sample_facial_hair_params(rng: np.random.Generator, sex: str) -> dict[str, Any] | None:
    """Random facial hair (JSON-able), or ``None``: about half of the men have some, women
    none. Keys: ``style`` (:data:`STYLES`), ``length`` (cm), ``density`` (0-1), ``curl``,
    ``radius`` (cm), ``seed``."""
    if sex != "male" or rng.random() >= 0.5:
        return None
    style = str(rng.choice(STYLES, p=np.array(_STYLE_P) / sum(_STYLE_P)))
    lo, hi = _LENGTH[style]
    return {
        "style": style,
        "length": float(rng.uniform(lo, hi)),
        "density": float(rng.uniform(0.6, 1.0)),
        "curl": float(rng.uniform(0.0, 0.6) if rng.random() < 0.4 else 0.0),
        "radius": float(rng.uniform(0.012, 0.02) if style == "stubble" else rng.uniform(0.018, 0.03)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def _edge_distance(model: HeadModel, zone: str) -> np.ndarray:
    """Per triangle of a zone (the zone's order in :func:`_zones`), the distance (cm, neutral
    head) from its centroid to the nearest centroid of a face or neck triangle outside the
    zone (cached)."""
    key = ("facial_hair_edge", zone)
    if key not in model.cache:
        zones = _zones(model)
        c = model.neutral.astype(np.float64)[zones["faces"]].mean(axis=1)
        sel = zones[zone]
        dist, _ = cKDTree(c[~sel]).query(c[sel])
        model.cache[key] = dist
    return model.cache[key]


def _zones(model: HeadModel) -> dict[str, Any]:
    """Skin triangles of the facial-hair zones on the neutral head (cached)."""
    if "facial_hair_zones" in model.cache:
        return model.cache["facial_hair_zones"]
    v = model.neutral.astype(np.float64)
    sel = model.region_faces(["face", "head_and_neck"])
    faces = model.faces[sel]
    c = v[faces].mean(axis=1)
    x, y, z = np.abs(c[:, 0]), c[:, 1], c[:, 2]
    a = v[faces]
    area = 0.5 * np.linalg.norm(np.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]), axis=1)
    lips = (y > -5.0) & (y < -2.55) & (x < 2.7) & (z > 8.5)
    moustache = (y > -2.7) & (y < -1.0) & (x < 3.0 - 0.5 * np.clip(-1.6 - y, 0, None)) & (z > 9.0) & ~lips
    chin = (y > -9.6) & (y < -5.0) & (x < 3.2) & (z > 4.0) & ~lips
    line = np.interp(z, [-1.0, 2.0, 6.0, 9.5], [4.0, 1.5, -1.0, -2.6])
    beard = (y < line) & (z > -1.6) & (y > -11.5) & ~lips & ~((y > -2.6) & (x < 3.0) & (z > 9.0))
    out = {"faces": faces, "area": area, "moustache": moustache, "chin": chin | moustache, "beard": beard | moustache}
    model.cache["facial_hair_zones"] = out
    return out


def grow_facial_hair(
    params: dict[str, Any] | None,
    model: HeadModel,
    vertices: np.ndarray,
    normals: np.ndarray,
    k: int,
    max_strands: int,
    soft: bool = False,
) -> np.ndarray:
    """Grow the strands of a facial-hair style on a head.

    Args:
        params: from :func:`sample_facial_hair_params` (``None``: no strands).
        model: the head model.
        vertices, normals: ``(V, 3)`` the head's vertices and unit normals (cm, model frame).
        k: control points per strand (the scalp hair's, at least 4).
        max_strands: cap on the number of strands.
        soft: version 3's strands (soft zone edges, tapered strands, a moustache combed
            down; see the module docstring); ``False``: version 2's.

    Returns:
        ``(N, k, 4)`` float64 control points ``(x, y, z, radius)`` (cm); N may be 0.
    """
    if params is None or max_strands <= 0:
        return np.zeros((0, max(k, 4), 4))
    k = max(int(k), 4)
    rng = np.random.default_rng(params["seed"])
    zones = _zones(model)
    style = params["style"]
    zone = {
        "stubble": "beard",
        "moustache": "moustache",
        "goatee": "chin",
        "short_beard": "beard",
        "full_beard": "beard",
    }[style]
    sel = zones[zone]
    faces, area = zones["faces"][sel], zones["area"][sel]
    n = int(min(max_strands, area.sum() * _DENSITY[style] * params["density"]))
    if n <= 0:
        return np.zeros((0, k, 4))
    weight = area
    if soft:  # fewer roots toward the zone's edge: smoothstep of the distance to it
        t = np.clip(_edge_distance(model, zone) / EDGE_FADE[style], 0.0, 1.0)
        weight = area * t * t * (3.0 - 2.0 * t) + 1e-9 * area
    tri, root, nrm = sample_roots(rng, faces, weight / weight.sum(), n, vertices, normals, eps=1e-12)
    # Combing: down, out from the midline; a moustache sideways and down (version 3: down
    # over the lip, a little outward).
    side = np.sign(root[:, 0] + 1e-6)
    flow = np.column_stack([0.35 * side, -1.0 + 0 * side, 0.15 + 0 * side])
    if zone == "moustache":
        flow = (
            np.column_stack([0.35 * side, -1.0 + 0 * side, 0.3 + 0 * side])
            if soft
            else np.column_stack([0.9 * side, -0.7 + 0 * side, 0.1 + 0 * side])
        )
    flow += rng.normal(0.0, 0.25, flow.shape)
    d = root_directions(flow, nrm, 0.5 if style == "stubble" else 0.3)
    length = float(params["length"]) * rng.uniform(0.6, 1.15, n)
    if soft:  # shorter toward the edge
        edge = np.clip(_edge_distance(model, zone)[tri] / EDGE_FADE[style], 0.0, 1.0)
        length = length * (0.35 + 0.65 * edge)
    step = length / (k - 2)
    tree = cKDTree(vertices[np.unique(faces)])
    ids = np.unique(faces)
    pts = np.empty((n, k, 3))
    pts[:, 0] = root - 0.08 * nrm
    pts[:, 1] = root + 0.02 * nrm
    p = pts[:, 1].copy()
    gravity = 0.0 if style == "stubble" else (0.6 if style == "full_beard" else 0.3)
    curl = float(params["curl"])
    phase = rng.uniform(0, 2 * np.pi, n)
    for j in range(2, k):
        p, d = bend_and_advance(p, d, step, gravity, 2.0)
        if curl > 0:
            p = p + curl * 0.25 * np.cos(phase + 1.9 * j)[:, None] * curl_side(d, nrm)
        # Out of the face: at least a margin above the nearest vertex's tangent plane.
        _, near = tree.query(p)
        q = vertices[ids[near]]
        nq = normals[ids[near]]
        h = ((p - q) * nq).sum(axis=1)
        margin = 0.03 + 0.05 * j / k
        p = p + np.clip(margin - h, 0.0, None)[:, None] * nq
        pts[:, j] = p
    radius = np.full((n, k, 1), float(params["radius"]))
    if soft:  # tapered from the root to a fine tip
        radius[:, :, 0] *= np.linspace(1.0, 0.3, k)[None, :]
    else:
        radius[:, -1, 0] *= 0.5
    return np.concatenate([pts, radius], axis=-1)
