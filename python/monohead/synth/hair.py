"""Hair as strands: curves grown on the scalp of a head in one of several styles.

A hairstyle is a set of strands, each a cubic B-spline given by control points with a radius
(Mitsuba's ``bsplinecurve``). Strands are rooted at random points of the scalp (the skin above
a hairline, found on the neutral head and carried onto every head), leave the scalp along a
combing direction, bend under gravity, and are pushed out of two ellipsoids that stand in for
the skull and the shoulders, so that hair lies on the head rather than through it.

Styles (:data:`STYLES`): ``bald`` (no strands), ``buzz`` (a few millimetres), ``short`` (a few
centimetres, combed), ``medium`` (down to the ears and nape) and ``long`` (to the shoulders),
with optional curl, a side or centre parting and, for medium and long hair, sometimes a
fringe. Colours are natural, set by the eumelanin and pheomelanin concentrations of
Mitsuba's ``hair`` BSDF (:func:`hair_colour_params`).

Units: centimetres, in the head model's frame (x to the subject's left, y up, z out of the
face); the strands are posed with the head by the renderer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .head_model import HeadModel

__all__ = [
    "STYLES",
    "STYLE_POINTS",
    "Scalp",
    "bend_and_advance",
    "curl_side",
    "grow_hair",
    "hair_colour_params",
    "hair_rgb",
    "root_directions",
    "sample_hair_params",
    "sample_roots",
]

STYLES = ("bald", "buzz", "short", "medium", "long")
STYLE_POINTS = {"bald": 4, "buzz": 4, "short": 8, "medium": 16, "long": 16}
"""Control points per strand of each style: the renderer pads every style to a fixed number of
control points (Dr.Jit compiles array sizes into its kernels), so ``4096 * 4``, ``4096 * 8`` and
``2048 * 16`` all fill one of its buckets."""
_STYLE_STRANDS = {"buzz": 3600, "short": 3600, "medium": 2000, "long": 2000}
_STYLE_P = (0.12, 0.13, 0.3, 0.25, 0.2)

# (eumelanin, pheomelanin) ranges of natural hair colours (Mitsuba's hair BSDF units).
_COLOURS = {
    "black": ((6.0, 9.0), (0.0, 0.3)),
    "dark_brown": ((2.5, 5.0), (0.0, 0.4)),
    "brown": ((1.2, 2.5), (0.1, 0.5)),
    "light_brown": ((0.6, 1.2), (0.1, 0.5)),
    "blonde": ((0.15, 0.45), (0.05, 0.3)),
    "red": ((0.2, 0.8), (1.2, 3.0)),
    "grey": ((0.05, 0.25), (0.0, 0.1)),
}
_COLOUR_P = (0.25, 0.22, 0.17, 0.1, 0.1, 0.06, 0.1)


def sample_hair_params(rng: np.random.Generator, sex: str) -> dict[str, Any]:
    """Random hairstyle (JSON-able): style, colour, length, density, curl, parting, fringe."""
    p = np.array(_STYLE_P)
    if sex == "male":
        p = p * np.array([1.6, 1.6, 1.5, 0.6, 0.25])
    else:
        p = p * np.array([0.15, 0.3, 0.6, 1.3, 1.8])
    style = str(rng.choice(STYLES, p=p / p.sum()))
    colour = str(rng.choice(list(_COLOURS), p=np.array(_COLOUR_P) / sum(_COLOUR_P)))
    (e0, e1), (p0, p1) = _COLOURS[colour]
    length = {
        "bald": 0.0,
        "buzz": rng.uniform(0.3, 0.9),
        "short": rng.uniform(2.0, 6.0),
        "medium": rng.uniform(9.0, 16.0),
        "long": rng.uniform(20.0, 30.0),
    }[style]
    return {
        "style": style,
        "colour": colour,
        "eumelanin": float(rng.uniform(e0, e1)),
        "pheomelanin": float(rng.uniform(p0, p1)),
        "longitudinal_roughness": float(rng.uniform(0.2, 0.35)),
        "azimuthal_roughness": float(rng.uniform(0.25, 0.45)),
        "length": float(length),
        "density": float(rng.uniform(0.7, 1.0)),
        "curl": float(rng.uniform(0.0, 1.0) ** 2 if rng.random() < 0.35 else 0.0),
        "parting": str(rng.choice(["back", "side", "centre"], p=[0.45, 0.4, 0.15])),
        "part_side": float(rng.choice([-1.0, 1.0])),
        "fringe": bool(style in ("medium", "long") and rng.random() < 0.25),
        "hairline": float(
            rng.uniform(-0.5, 0.8) + (rng.uniform(0.0, 2.0) if sex == "male" and rng.random() < 0.3 else 0.0)
        ),
        "radius": float(rng.uniform(0.022, 0.032)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def hair_colour_params(params: dict[str, Any]) -> dict[str, float]:
    """The Mitsuba ``hair`` BSDF parameters of a hairstyle."""
    return {
        "eumelanin": float(params["eumelanin"]),
        "pheomelanin": float(params["pheomelanin"]),
        "longitudinal_roughness": float(params["longitudinal_roughness"]),
        "azimuthal_roughness": float(params["azimuthal_roughness"]),
    }


def hair_rgb(params: dict[str, Any]) -> np.ndarray:
    """An approximate diffuse linear RGB of the hair colour (for brows, stubble, lashes)."""
    eu, ph = float(params["eumelanin"]), float(params["pheomelanin"])
    sigma = eu * np.array([0.419, 0.697, 1.37]) + ph * np.array([0.187, 0.4, 1.05])
    return 0.75 * np.exp(-1.6 * sigma) + 0.01


@dataclass
class Scalp:
    """Where hair grows on a :class:`HeadModel`: scalp triangles and their sampling weights.

    Found once on the neutral head: skin triangles above the hairline (a little above the
    brows at the front, at the temples on the sides, down to the nape at the back), ears
    excluded. ``hairline`` (cm) moves the front hairline up (receding) or down.
    """

    faces: np.ndarray  # (S, 3) vertex indices
    weights: np.ndarray  # (S,) neutral areas, normalised
    front: np.ndarray  # (S,) 1 at the front hairline region, 0 elsewhere

    @classmethod
    def of(cls, model: HeadModel, hairline: float = 0.0) -> Scalp:
        if "scalp" not in model.cache:
            v = model.neutral.astype(np.float64)
            faces = model.faces[model.region_faces(["face", "head_and_neck"])]
            a = v[faces]
            area = 0.5 * np.linalg.norm(np.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]), axis=1)
            model.cache["scalp"] = (faces, a.mean(axis=1), area, float(model.eye_centres(v)[0, 1]))
        faces, c, area, eye_y = model.cache["scalp"]
        x, y, z = c[:, 0], c[:, 1], c[:, 2]
        # Hairline height as a function of depth: forehead, temples, behind the ears, nape.
        line = np.interp(
            -z,
            [-9.0, -6.0, -3.5, 0.0, 2.0, 5.0, 9.0],
            [
                eye_y + 5.6 + hairline,
                eye_y + 5.0 + hairline,
                eye_y + 2.5 + 0.5 * hairline,
                eye_y + 1.0,
                eye_y - 2.0,
                eye_y - 6.5,
                eye_y - 7.5,
            ],
        )
        ears = (np.abs(x) > 7.0) & (y < eye_y + 2.2) & (z > -3.0) & (z < 2.5)
        keep = (y > line) & ~ears
        front = (z[keep] > 3.0).astype(np.float64)
        return cls(faces=faces[keep], weights=area[keep] / area[keep].sum(), front=front)


def sample_roots(
    rng: np.random.Generator,
    faces: np.ndarray,
    p: np.ndarray,
    n: int,
    vertices: np.ndarray,
    normals: np.ndarray,
    eps: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` strand roots uniform on triangles drawn with probabilities ``p``.

    Args:
        rng: the random generator (draws: the triangles, then two uniforms per root).
        faces: ``(F, 3)`` vertex indices of the triangles roots may grow on.
        p: ``(F,)`` probabilities of the triangles (their share of the area).
        n: number of roots.
        vertices, normals: ``(V, 3)`` the head's vertices and unit normals (cm, model frame).
        eps: added to the length of the interpolated normal before it is normalised.

    Returns:
        ``(tri (n,), roots (n, 3), unit normals (n, 3))``: the triangle of each root (an index
        into ``faces``), its position and the interpolated normal there.
    """
    tri = rng.choice(len(faces), size=n, p=p)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.column_stack([1 - s, s * (1 - r2), s * r2])
    f = faces[tri]
    root = np.einsum("nk,nkc->nc", bary, vertices[f])
    nrm = np.einsum("nk,nkc->nc", bary, normals[f])
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + eps
    return tri, root, nrm


def root_directions(flow: np.ndarray, nrm: np.ndarray, lift: float) -> np.ndarray:
    """``(n, 3)`` unit directions in which strands leave their roots: the combing ``flow``
    ``(n, 3)`` projected onto the skin's tangent plane (unit normals ``nrm`` ``(n, 3)``), then
    tilted out of the skin by ``lift`` times the normal."""
    tangent = flow - (flow * nrm).sum(axis=1, keepdims=True) * nrm
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-12
    d = tangent + lift * nrm
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d


_DOWN = np.array([0.0, -1.0, 0.0])


def bend_and_advance(
    p: np.ndarray, d: np.ndarray, step: np.ndarray, gravity: float, sag: float
) -> tuple[np.ndarray, np.ndarray]:
    """One segment of strands: directions ``d`` ``(n, 3)`` bent down by ``gravity`` times
    ``step / sag`` and renormalised, then points ``p`` ``(n, 3)`` moved by ``step`` ``(n,)``
    (cm) along them. Returns the new ``(p, d)``."""
    d = d + gravity * _DOWN * (step[:, None] / sag)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return p + d * step[:, None], d


def curl_side(d: np.ndarray, nrm: np.ndarray) -> np.ndarray:
    """``(n, 3)`` unit vectors across strands going along ``d``, parallel to the skin (unit
    normals ``nrm``): the axis curls swing about."""
    u = np.cross(d, nrm)
    u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-12
    return u


def _ellipsoid_push(p: np.ndarray, centre: np.ndarray, radii: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Move points that lie inside the ellipsoid (grown by ``margin``) onto its surface."""
    q = (p - centre) / (radii + margin[..., None])
    e = np.sqrt((q * q).sum(axis=-1))
    inside = e < 1.0
    out = p.copy()
    out[inside] = centre + (p[inside] - centre) / e[inside, None]
    return out


def grow_hair(
    params: dict[str, Any],
    model: HeadModel,
    vertices: np.ndarray,
    normals: np.ndarray,
    scalp: Scalp | None = None,
    max_strands: int = 4096,
) -> np.ndarray:
    """Grow the strands of a hairstyle on a head.

    Args:
        params: from :func:`sample_hair_params`.
        model: the head model (for the scalp).
        vertices: ``(V, 3)`` the head's vertices (cm, model frame), e.g. :meth:`HeadModel.shape`.
        normals: ``(V, 3)`` their unit outward normals.
        scalp: a :class:`Scalp` (default found from ``params['hairline']``).
        max_strands: cap on the number of strands.

    Returns:
        ``(N, K, 4)`` float64 control points ``(x, y, z, radius)`` of N cubic B-spline strands
        of ``K = STYLE_POINTS[style]`` control points each (cm); ``N = 0`` for ``bald``.
    """
    style = params["style"]
    k = STYLE_POINTS[style]
    if style == "bald":
        return np.zeros((0, k, 4))
    rng = np.random.default_rng(params["seed"])
    if scalp is None:
        scalp = Scalp.of(model, params.get("hairline", 0.0))
    n = min(int(_STYLE_STRANDS[style] * params["density"]), max_strands)
    length = float(params["length"])

    tri, root, nrm = sample_roots(rng, scalp.faces, scalp.weights, n, vertices, normals)

    # Proxies: the skull (the skin above the eyes, as an ellipsoid centred at eye level) and
    # the shoulders.
    skin = vertices[model.region_vertices(("face", "head_and_neck"))]
    eye_y = float(model.eye_centres(vertices)[:, 1].mean())
    sv = skin[skin[:, 1] > eye_y]
    lo, hi = sv.min(axis=0), sv.max(axis=0)
    centre = np.array([(lo[0] + hi[0]) / 2, eye_y, (lo[2] + hi[2]) / 2 - 0.3])
    radii = np.array([(hi[0] - lo[0]) / 2, hi[1] - eye_y, (hi[2] - lo[2]) / 2 + 0.3])
    sh_centre = np.array([0.0, skin[:, 1].min() + 0.5, centre[2] - 1.0])
    sh_radii = np.array([radii[0] * 1.6, 6.5, radii[2] * 0.9])

    # Combing direction: away from the parting on top, back, then down the sides.
    x_part = {"back": 0.0, "side": 2.2 * params["part_side"], "centre": 0.0}[params["parting"]]
    side = np.sign(root[:, 0] - x_part + 1e-6)
    top = np.clip((root[:, 1] - (centre[1])) / max(radii[1], 1e-3), 0.0, 1.0)
    if params["parting"] == "back":
        flow = np.column_stack([0.25 * side, -0.4 + 0 * side, -1.0 + 0 * side])
    else:
        flow = np.column_stack([side * (0.6 + 0.8 * top), -0.6 + 0 * side, -0.5 + 0 * side])
    if params["fringe"]:
        fr = (scalp.front[tri] > 0) & (rng.random(n) < 0.6)
        flow[fr] = np.column_stack([0.3 * side[fr], -1.0 + 0 * side[fr], 0.35 + 0 * side[fr]])
    flow += rng.normal(0.0, 0.15, flow.shape)
    d = root_directions(flow, nrm, {"buzz": 0.5, "short": 0.2, "medium": 0.12, "long": 0.1}[style])

    strand_len = length * rng.uniform(0.75, 1.1, n)
    if params["fringe"]:
        strand_len[fr] = np.minimum(strand_len[fr], rng.uniform(6.0, 9.0, fr.sum()))
    step = strand_len / (k - 2)
    gravity = {"buzz": 0.0, "short": 0.15, "medium": 0.5, "long": 0.55}[style]
    curl = float(params["curl"])
    pts = np.empty((n, k, 3))
    pts[:, 0] = root - 0.15 * nrm  # below the skin, so the curve starts at the scalp
    pts[:, 1] = root + 0.05 * nrm
    p = pts[:, 1].copy()
    phase = rng.uniform(0, 2 * np.pi, n)
    for j in range(2, k):
        p, d = bend_and_advance(p, d, step, gravity, 3.0)
        if curl > 0:
            u = curl_side(d, nrm)
            w = np.cross(d, u)
            ang = phase + j * 1.7
            p = p + curl * 0.6 * (np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * w)
        margin = np.full(n, 0.15 + 0.03 * j)
        p = _ellipsoid_push(p, centre, radii, margin)
        p = _ellipsoid_push(p, sh_centre, sh_radii, np.full(n, 0.4))
        pts[:, j] = p
    radius = np.full((n, k, 1), float(params["radius"]) * (1.3 if k > 8 else 1.0))
    radius[:, -2:, 0] *= np.array([0.8, 0.5])
    return np.concatenate([pts, radius], axis=-1)
