"""Upper body for generator version 2: a parametric torso joined to the ICT neck, dressed.

The ICT head ends in a stub of shoulders. Version 2 cuts it at the base of the neck
(:func:`neck_cut`: the skin triangles below a line from the nape to the throat are left out of
the scene), and a lofted torso starts exactly on the cut's boundary loop: its first ring *is*
the loop (the head's posed vertices), the next rings widen into shoulders and an upper chest
(superellipse cross-sections whose half-width and half-depth grow with the distance below the
loop). The rings below the join follow a body pose that turns only part of the way with the
head (:func:`body_matrix`), so a turned or tilted head twists the neck as a person's does.

The torso is dressed at random (:data:`GARMENTS`): t-shirt, shirt with collar, suit jacket
with shirt and tie, sweater (crew, V or turtle neck), hoodie, strap top, or bare shoulders.
Fabric colours and patterns (solid, stripes, checks, prints) are painted into the torso's
texture in centimetres (:func:`fabric`); folds and knit are a normal map. Collars,
turtlenecks and hoods are a second mesh, a band around the neck that follows the neck's
shape (:func:`build_body`).

Ground truth: the torso and its clothes are never in the mask. The mask ends at the cut; the
head behind a collar stays in it (N, depth, W and mask describe the head and eyes along each
pixel's ray, whatever lies in front).

Units: centimetres, head model frame (x to the subject's left, y up, z out of the face).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .head_model import EYE_REGIONS, SKIN_REGIONS, HeadModel
from .render import ExtraSlot

__all__ = [
    "BAND_TEXTURE",
    "GARMENTS",
    "TORSO_DEPTHS",
    "band_slot",
    "body_matrix",
    "body_slots",
    "build_body",
    "fabric",
    "neck_band",
    "neck_cut",
    "normal_map",
    "sample_body_params",
    "sample_fabric",
    "true_head_mesh",
]

GARMENTS = ("tshirt", "shirt", "suit", "sweater", "hoodie", "strap", "bare")
_GARMENT_P = (0.24, 0.16, 0.14, 0.16, 0.12, 0.1, 0.08)

TORSO_DEPTHS = np.array([0.0, 0.5, 1.3, 2.4, 3.8, 5.5, 7.8, 10.8, 15.0, 21.0, 29.0, 40.0, 54.0])
"""Distance (cm) of each torso ring below the neck loop (ring 0 is the loop itself)."""

_TEX = (128, 256)  # torso texture (rows along the depth, columns around)
BAND_TEXTURE = (32, 128)
"""Texels ``(rows, columns)`` of a :func:`neck_band`'s texture (collars, scarves)."""
_COLLAR_TEX = BAND_TEXTURE
_COLLAR_ROWS = 7
_COLLAR_COLS = 49
_NECK_BINS = 48


# --------------------------------------------------------------------------------------------
# The cut and the join
# --------------------------------------------------------------------------------------------


def neck_cut(model: HeadModel) -> dict[str, Any]:
    """Where version 2 cuts the ICT neck (cached on ``model``).

    Returns a dict with ``drop`` ``(F,)`` bool (skin triangles below the neck base, the cap
    included: left out of the scene), ``gt_faces`` ``(G, 3)`` (the head and eyes that remain:
    the ground-truth mesh), ``loop`` ``(L,)`` (vertex indices of the cut's boundary, ordered
    by increasing angle around the neck, 0 = front, toward the subject's left) and
    ``loop_uv`` ``(L, 2)`` (their texture coordinates, in the model's UV layout).
    """
    if "body_cut" in model.cache:
        return model.cache["body_cut"]
    v = model.neutral.astype(np.float64)
    c = v[model.faces].mean(axis=1)
    outer = model.region_faces(["face", "head_and_neck", "cap"])
    # The neck's base: higher at the nape than at the throat.
    line = np.interp(c[:, 2], [-10.0, -4.0, 2.0, 6.0], [-11.0, -11.6, -12.8, -13.8])
    drop = outer & (c[:, 1] < line)
    skin = model.region_faces(list(SKIN_REGIONS)) & ~drop
    keep = skin | model.region_faces(list(EYE_REGIONS))
    loop = _boundary_loop(model.faces[skin])
    centre = v[loop].mean(axis=0)
    ang = np.arctan2(v[loop, 0] - centre[0], v[loop, 2] - centre[2])
    # Order by angle (the loop is star-shaped around the neck's axis), starting at the front.
    loop = loop[np.argsort(ang)]
    corner = {}
    for f, cu in zip(model.faces[skin], model.corner_uv[skin], strict=True):
        for a, b in zip(f, cu, strict=True):
            corner.setdefault(int(a), int(b))
    loop_uv = model.uv[[corner[int(i)] for i in loop]]
    out = {"drop": drop, "gt_faces": model.faces[keep], "loop": loop, "loop_uv": loop_uv}
    model.cache["body_cut"] = out
    return out


def _boundary_loop(faces: np.ndarray) -> np.ndarray:
    """Vertices of the longest boundary loop of a triangle set (edges used by one triangle)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, axis=1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    edges = e[cnt[inv.ravel()] == 1]
    nxt = {int(a): int(b) for a, b in edges}
    best: list[int] = []
    seen: set[int] = set()
    for start in nxt:
        if start in seen:
            continue
        cur, loop = start, []
        while cur not in seen and cur in nxt:
            seen.add(cur)
            loop.append(cur)
            cur = nxt[cur]
        if len(loop) > len(best):
            best = loop
    if len(best) < 8:
        raise ValueError("the head model's skin has no boundary loop at the neck to join a torso to")
    return np.array(best, np.int64)


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

_DARK = ([0.02, 0.02, 0.025], [0.05, 0.06, 0.12], [0.12, 0.12, 0.13], [0.18, 0.12, 0.08], [0.08, 0.1, 0.07])
_LIGHT = ([0.85, 0.85, 0.83], [0.7, 0.78, 0.88], [0.9, 0.88, 0.8], [0.75, 0.75, 0.78], [0.88, 0.78, 0.8])


def _colour(rng: np.random.Generator) -> list[float]:
    """A fabric colour (linear RGB): neutrals, darks, lights and saturated dyes."""
    u = rng.random()
    if u < 0.25:
        rgb = np.array(_DARK[rng.integers(len(_DARK))]) * rng.uniform(0.7, 1.4)
    elif u < 0.45:
        rgb = np.array(_LIGHT[rng.integers(len(_LIGHT))]) * rng.uniform(0.8, 1.05)
    elif u < 0.6:
        rgb = np.full(3, rng.uniform(0.03, 0.6) ** 1.5)
    else:
        hue = rng.uniform(0.0, 1.0)
        sat = rng.uniform(0.3, 0.95)
        val = rng.uniform(0.15, 0.85)
        k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
        rgb = val * (1.0 - sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))
        rgb = rgb**2.2
    return [float(c) for c in np.clip(rgb, 0.005, 0.95)]


def sample_fabric(rng: np.random.Generator, base: list[float] | None = None, plain: float = 0.45) -> dict[str, Any]:
    """A random fabric (JSON-able): colours, pattern (solid, stripes, checks, print), scale (cm),
    angle, fold amplitude and wavelength, knit, roughness."""
    pattern = "solid" if rng.random() < plain else str(rng.choice(["stripes", "checks", "print"], p=[0.4, 0.35, 0.25]))
    return {
        "colour": base if base is not None else _colour(rng),
        "colour2": _colour(rng),
        "colour3": _colour(rng),
        "pattern": pattern,
        "period": float(rng.uniform(0.4, 6.0) if pattern != "print" else rng.uniform(2.0, 8.0)),
        "duty": float(rng.uniform(0.15, 0.6)),
        "vertical": bool(rng.random() < 0.35),
        "angle": float(rng.normal(0.0, 4.0)),
        "folds": float(rng.uniform(0.05, 0.7)),
        "fold_length": float(rng.uniform(3.0, 12.0)),
        "knit": 0.0,
        "roughness": float(rng.uniform(0.55, 0.95)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def sample_body_params(rng: np.random.Generator, head_pose: dict[str, Any]) -> dict[str, Any]:
    """Random torso, body pose and clothes (JSON-able).

    Keys: ``width``/``depth`` (scales of the shoulders' half-width and the chest's
    half-depth), ``slope`` (how fast the shoulders drop), ``yaw``/``pitch``/``roll`` (the
    body's pose, degrees: a part of the head's plus a little of its own), ``garment``
    (:data:`GARMENTS`), ``neckline`` (``crew``, ``v``, ``scoop``, ``turtle``), ``thickness``
    (cm), ``fabric`` and, by garment, ``shirt`` and ``tie`` fabrics, ``collar`` (height, cm;
    0 = none), ``collar_open`` (degrees either side of the front), ``collar_flare`` (cm),
    ``buttons_open``.
    """
    garment = str(rng.choice(GARMENTS, p=np.array(_GARMENT_P) / sum(_GARMENT_P)))
    out: dict[str, Any] = {
        "width": float(rng.uniform(0.86, 1.14)),
        "depth": float(rng.uniform(0.88, 1.15)),
        "slope": float(rng.uniform(0.75, 1.3)),
        "yaw": float(head_pose["yaw"] * rng.uniform(0.1, 0.7) + rng.normal(0.0, 8.0)),
        "pitch": float(head_pose["pitch"] * rng.uniform(0.0, 0.4) + rng.normal(0.0, 4.0)),
        "roll": float(head_pose["roll"] * rng.uniform(0.1, 0.6) + rng.normal(0.0, 3.0)),
        "garment": garment,
        "neckline": "crew",
        "thickness": 0.0,
        "collar": 0.0,
        "collar_open": 0.0,
        "collar_flare": 0.0,
        "buttons_open": 0,
    }
    fab = sample_fabric(rng)
    if garment == "tshirt":
        out.update(
            neckline=str(rng.choice(["crew", "v", "scoop"], p=[0.6, 0.25, 0.15])),
            thickness=float(rng.uniform(0.15, 0.4)),
        )
    elif garment == "shirt":
        fab = sample_fabric(rng, plain=0.4)
        fab["folds"] = float(rng.uniform(0.2, 0.8))
        out.update(
            thickness=float(rng.uniform(0.2, 0.4)),
            collar=float(rng.uniform(2.8, 4.2)),
            collar_open=float(rng.uniform(14.0, 35.0)),
            collar_flare=float(rng.uniform(0.6, 1.6)),
            buttons_open=int(rng.integers(0, 3)),
        )
    elif garment == "suit":
        jacket = sample_fabric(
            rng, base=list(_DARK[rng.integers(len(_DARK))]) if rng.random() < 0.7 else None, plain=0.75
        )
        if jacket["pattern"] == "print":
            jacket["pattern"] = "stripes"
        jacket["period"] = float(rng.uniform(0.5, 2.0))
        fab = jacket
        shirt = sample_fabric(rng, base=list(_LIGHT[rng.integers(len(_LIGHT))]), plain=0.8)
        tie = sample_fabric(rng, plain=0.5)
        tie["vertical"] = False
        tie["angle"] = float(rng.choice([-40.0, 40.0]) + rng.normal(0, 5))
        out.update(
            thickness=float(rng.uniform(0.8, 1.4)),
            collar=float(rng.uniform(2.8, 3.8)),
            collar_open=float(rng.uniform(12.0, 22.0)),
            collar_flare=float(rng.uniform(0.5, 1.2)),
            shirt=shirt,
            tie=tie if rng.random() < 0.8 else None,
            lapel=float(rng.uniform(16.0, 30.0)),
        )
    elif garment == "sweater":
        fab["knit"] = float(rng.uniform(0.3, 1.0))
        fab["pattern"] = "solid" if rng.random() < 0.7 else fab["pattern"]
        neck = str(rng.choice(["crew", "v", "turtle"], p=[0.5, 0.25, 0.25]))
        out.update(neckline=neck, thickness=float(rng.uniform(0.5, 1.0)))
        if neck == "turtle":
            out.update(collar=float(rng.uniform(4.0, 7.0)), collar_open=0.0, collar_flare=float(rng.uniform(0.3, 0.9)))
    elif garment == "hoodie":
        fab["pattern"] = "solid" if rng.random() < 0.75 else fab["pattern"]
        out.update(
            thickness=float(rng.uniform(0.6, 1.2)),
            collar=float(rng.uniform(3.5, 7.0)),
            collar_open=float(rng.uniform(30.0, 55.0)),
            collar_flare=float(rng.uniform(2.5, 5.0)),
        )
    elif garment == "strap":
        out.update(
            neckline=str(rng.choice(["scoop", "straight"])),
            thickness=0.1,
            strap_width=float(rng.uniform(0.6, 3.5)),
            strap_x=float(rng.uniform(6.5, 10.0)),
            top=float(rng.uniform(7.0, 15.0)),
        )
    else:  # bare shoulders (an off-shoulder top or a towel far below)
        out.update(thickness=0.0, top=float(rng.uniform(20.0, 34.0)))
    out["fabric"] = fab
    return out


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def body_slots(model: HeadModel) -> tuple[ExtraSlot, ExtraSlot]:
    """The renderer's mesh slots of the torso and of the collar band (fixed topology)."""
    cut = neck_cut(model)
    n = len(cut["loop"]) + 1  # a seam column at the back
    rows = len(TORSO_DEPTHS)
    u = np.append(_loop_angles(model.neutral[cut["loop"]].astype(np.float64)), np.nan)
    u[-1] = u[0] + 2 * np.pi
    u = (u + np.pi) / (2 * np.pi)
    vv = TORSO_DEPTHS / TORSO_DEPTHS[-1]
    uv = np.stack(np.meshgrid(u, vv), axis=-1).reshape(-1, 2)
    torso = ExtraSlot("torso", _grid_faces(rows, n), uv.astype(np.float32), _TEX)
    return torso, band_slot("collar")


def band_slot(name: str) -> ExtraSlot:
    """A renderer mesh slot for a :func:`neck_band` (``(32, 128)`` texels)."""
    cu = np.linspace(0.0, 1.0, _COLLAR_COLS)
    cv = np.linspace(0.0, 1.0, _COLLAR_ROWS)
    cuv = np.stack(np.meshgrid(cu, cv), axis=-1).reshape(-1, 2)
    return ExtraSlot(name, _grid_faces(_COLLAR_ROWS, _COLLAR_COLS), cuv.astype(np.float32), _COLLAR_TEX)


def _grid_faces(rows: int, cols: int) -> np.ndarray:
    """Triangles of a ``rows x cols`` vertex grid (row-major), two per cell."""
    r, c = np.mgrid[0 : rows - 1, 0 : cols - 1]
    a = (r * cols + c).ravel()
    b, d, e = a + 1, a + cols, a + cols + 1
    return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)]).astype(np.int64)


def body_matrix(head: np.ndarray, body: dict[str, Any], anchor: np.ndarray) -> np.ndarray:
    """The ``(4, 4)`` map from the model frame to the world for the body below the neck.

    Args:
        head: the head's pose matrix (:func:`monohead.synth.scene.pose_matrix`).
        body: from :func:`sample_body_params` (``yaw``, ``pitch``, ``roll``).
        anchor: ``(3,)`` model-frame point (the neck loop's centre) that lands where the head
            puts it.
    """
    from .scene import rotation

    scale = float(np.cbrt(abs(np.linalg.det(head[:3, :3]))))
    rot = rotation(body["yaw"], body["pitch"], body["roll"]) * scale
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = head[:3, :3] @ anchor + head[:3, 3] - rot @ anchor
    return m


def _loop_angles(ring: np.ndarray) -> np.ndarray:
    """Angles (radians, 0 = front, increasing toward the subject's left) of the neck loop's
    points around its centre, made increasing along the loop."""
    rel = ring - ring.mean(axis=0)
    phi = np.unwrap(np.arctan2(rel[:, 0], rel[:, 2]))
    return phi - 2 * np.pi * np.floor((phi[0] + np.pi) / (2 * np.pi))


def _superellipse(a: np.ndarray, b: np.ndarray, phi: np.ndarray, n: float = 2.6) -> np.ndarray:
    return 1.0 / (np.abs(np.sin(phi) / a) ** n + np.abs(np.cos(phi) / b) ** n) ** (1.0 / n)


def _neck_profile(model: HeadModel, v: np.ndarray, centre: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Largest distance from the neck's axis of the head's skin, ``(len(heights), bins)``, by
    height band (cm, model frame) and angle bin around the axis (0 = front)."""
    key = "body_neck_vertices"
    if key not in model.cache:
        idx = model.region_vertices(("face", "head_and_neck"))
        nv = model.neutral[idx]
        model.cache[key] = idx[(nv[:, 1] > -16.0) & (nv[:, 1] < 0.0)]
    p = v[model.cache[key]]
    ang = np.arctan2(p[:, 0] - centre[0], p[:, 2] - centre[2])
    rad = np.hypot(p[:, 0] - centre[0], p[:, 2] - centre[2])
    b = ((ang + np.pi) / (2 * np.pi) * _NECK_BINS).astype(int) % _NECK_BINS
    out = np.zeros((len(heights), _NECK_BINS))
    for k, h in enumerate(heights):
        sel = np.abs(p[:, 1] - h) < 1.2
        if sel.any():
            np.maximum.at(out[k], b[sel], rad[sel])
    # Fill empty bins from their neighbours and smooth around.
    for k in range(len(heights)):
        row = out[k]
        if (row == 0).all():
            row[:] = out[k - 1] if k else 6.0
        empty = row == 0
        if empty.any():
            row[empty] = np.interp(np.nonzero(empty)[0], np.nonzero(~empty)[0], row[~empty], period=_NECK_BINS)
        out[k] = ndimage.maximum_filter1d(row, 3, mode="wrap")
    return out


def build_body(params: dict[str, Any], model: HeadModel, v_model: np.ndarray) -> dict[str, Any]:
    """The torso and collar of a sample, in the model frame (cm).

    Args:
        params: from :func:`sample_body_params`.
        model: the head model.
        v_model: ``(V, 3)`` the sample's head vertices (model frame).

    Returns:
        ``torso`` ``(R * (L + 1), 3)`` vertices (rows :data:`TORSO_DEPTHS`, columns the
        neck loop plus a seam), ``torso_weight`` ``(R * (L + 1),)`` (0: posed with the head,
        1: with the body), ``collar`` ``(rows * cols, 3)`` or ``None``, ``collar_weight``,
        ``anchor`` ``(3,)`` and ``frame`` (the torso's nominal cm coordinates per texel, for
        painting).
    """
    cut = neck_cut(model)
    loop = cut["loop"]
    ring0 = v_model[loop].astype(np.float64)
    centre = ring0.mean(axis=0)
    phi = _loop_angles(ring0)
    phi = np.append(phi, phi[0] + 2 * np.pi)
    ring0 = np.concatenate([ring0, ring0[:1]])
    rel = ring0 - centre
    r0 = np.hypot(rel[:, 0], rel[:, 2])
    t = TORSO_DEPTHS
    w, d, slope = params["width"], params["depth"], params["slope"]
    a = (
        np.interp(
            t * slope,
            [0.0, 1.5, 3.5, 6.0, 9.0, 14.0, 22.0, 40.0, 60.0],
            [5.5, 8.0, 12.5, 16.5, 19.0, 20.5, 20.0, 18.5, 18.0],
        )
        * w
    )
    b = np.interp(t, [0.0, 2.0, 5.0, 9.0, 20.0, 60.0], [5.0, 7.0, 9.0, 10.0, 10.8, 11.0]) * d
    zc = np.interp(t, [0.0, 6.0, 60.0], [0.0, -0.6, -1.2])
    beta = np.interp(t, [0.0, 3.0], [0.0, 1.0])[:, None]
    target = _superellipse(a[:, None], b[:, None], phi[None, :])
    thick = float(params["thickness"]) * np.interp(t, [0.0, 1.0], [0.0, 1.0])[:, None]
    r = (1 - beta) * r0[None, :] + beta * np.maximum(target, r0[None, :]) + thick
    rows = len(t)
    pts = np.empty((rows, len(phi), 3))
    pts[..., 0] = centre[0] + r * np.sin(phi)[None]
    pts[..., 2] = centre[2] + zc[:, None] + r * np.cos(phi)[None]
    pts[..., 1] = ring0[None, :, 1] - t[:, None]
    pts[0] = ring0
    weight = np.broadcast_to(np.interp(t, [0.0, 1.3, 5.5], [0.0, 0.4, 1.0])[:, None], r.shape)
    out: dict[str, Any] = {
        "torso": pts.reshape(-1, 3),
        "torso_weight": weight.reshape(-1),
        "anchor": centre,
        "collar": None,
        "collar_weight": None,
    }
    if params["collar"] > 0:
        out["collar"] = neck_band(params, model, v_model)
        out["collar_weight"] = np.zeros(len(out["collar"]))
    return out


def neck_band(params: dict[str, Any], model: HeadModel, v_model: np.ndarray) -> np.ndarray:
    """A band around the neck (collar, turtleneck, hood, raised collar, scarf), model frame.

    Rows (:data:`_COLLAR_ROWS`) go from just inside the torso up to ``params['collar']`` cm
    above the neck loop, columns (:data:`_COLLAR_COLS`) round the neck from one side of a
    front opening of ``collar_open`` degrees to the other; the band clears the head's skin
    at its height (the jaw and chin included) by ``0.3 + thickness`` cm plus a flare that
    grows upward (``collar_flare``) and a bulge in the middle rows (``bulge``, cm). It never
    narrows higher up. Returns ``(rows * cols, 3)`` vertices (cm).
    """
    cut = neck_cut(model)
    ring0 = v_model[cut["loop"]].astype(np.float64)
    centre = ring0.mean(axis=0)
    phi0 = _loop_angles(ring0)
    height, flare = float(params["collar"]), float(params["collar_flare"])
    bulge = float(params.get("bulge", 0.0))
    opening = np.radians(float(params["collar_open"]))
    s = np.linspace(-0.12, 1.0, _COLLAR_ROWS)
    # Angles from the front opening round the back to the other side (the subject's left first).
    ang = np.linspace(opening, 2 * np.pi - opening, _COLLAR_COLS)
    ang = np.where(ang > np.pi, ang - 2 * np.pi, ang)
    order = np.argsort(phi0)
    base_y = np.interp(ang, phi0[order], ring0[order, 1], period=2 * np.pi)
    base_r = np.interp(
        ang, phi0[order], np.hypot(ring0[order, 0] - centre[0], ring0[order, 2] - centre[2]), period=2 * np.pi
    )
    heights = np.linspace(base_y.min() - 0.5, base_y.max() + height + 0.5, 12)
    prof = _neck_profile(model, v_model, centre, heights)
    bins = ((ang + np.pi) / (2 * np.pi) * _NECK_BINS).astype(int) % _NECK_BINS
    ys = base_y[None, :] + s[:, None] * height
    hk = np.clip(np.searchsorted(heights, ys), 0, len(heights) - 1)
    hk2 = np.clip(hk - 1, 0, len(heights) - 1)
    neck = np.maximum(prof[hk, bins[None, :]], prof[hk2, bins[None, :]])
    thick = float(params["thickness"])
    margin = 0.3 + thick + flare * np.clip(s, 0, 1)[:, None] ** 1.5 + bulge * np.sin(np.pi * np.clip(s, 0, 1))[:, None]
    r = np.maximum(neck, base_r[None, :])
    r = ndimage.gaussian_filter1d(r, 2.0, axis=1, mode="wrap" if opening == 0 else "nearest")
    r = np.maximum.accumulate(r, axis=0) + margin  # never narrower higher up: no ruffs
    r[0] = base_r + thick * 0.5  # starts inside the torso's first rings
    pts = np.empty((_COLLAR_ROWS, _COLLAR_COLS, 3))
    pts[..., 0] = centre[0] + r * np.sin(ang)[None]
    pts[..., 2] = centre[2] + r * np.cos(ang)[None]
    pts[..., 1] = ys
    return pts.reshape(-1, 3)


# --------------------------------------------------------------------------------------------
# Fabric and clothes
# --------------------------------------------------------------------------------------------


def fabric(params: dict[str, Any], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and height of a fabric at surface coordinates ``x`` (around) and ``y`` (down), cm.

    Returns ``(albedo (..., 3) linear RGB, height (...) cm)``: the pattern's colours, and the
    folds (long soft waves) plus knit ribs as a height field for the normal map.
    """
    rng = np.random.default_rng(params["seed"])
    ang = np.radians(params["angle"])
    u = np.cos(ang) * x + np.sin(ang) * y
    v = -np.sin(ang) * x + np.cos(ang) * y
    c1, c2, c3 = (np.asarray(params[k], np.float64) for k in ("colour", "colour2", "colour3"))
    per, duty = float(params["period"]), float(params["duty"])
    pat = params["pattern"]
    if pat == "stripes":
        coord = u if params["vertical"] else v
        m = ((coord / per) % 1.0) < duty
        alb = np.where(m[..., None], c2, c1)
    elif pat == "checks":
        mu = ((u / per) % 1.0) < duty
        mv = ((v / per) % 1.0) < duty
        alb = c1 * (1 - 0.5 * mu[..., None] - 0.5 * mv[..., None]) + c2 * (0.5 * mu[..., None] + 0.5 * mv[..., None])
        thin = (((u / per) + 0.5) % 1.0 < 0.06) | (((v / per) + 0.5) % 1.0 < 0.06)
        alb = np.where(thin[..., None], c3, alb)
    elif pat == "print":
        # Dots or blobs on a lattice with jitter.
        gi, gj = np.floor(u / per), np.floor(v / per)
        h = np.sin(gi * 12.9898 + gj * 78.233 + params["seed"] % 1000) * 43758.5453
        jit = h - np.floor(h)
        fu, fv = (u / per) % 1.0 - 0.3 - 0.4 * jit, (v / per) % 1.0 - 0.5
        rad = 0.12 + 0.25 * duty
        m = fu * fu + fv * fv < rad * rad
        alb = np.where(m[..., None], np.where((jit > 0.5)[..., None], c2, c3), c1)
    else:
        alb = np.broadcast_to(c1, (*np.shape(x), 3)).copy()
    # Slow dye variation.
    alb = alb * (1.0 + 0.06 * np.sin(x * 0.7 + rng.uniform(0, 6)) * np.sin(y * 0.5 + rng.uniform(0, 6)))[..., None]
    height = np.zeros(np.shape(x))
    fl = float(params["fold_length"])
    for _ in range(4):
        a = rng.uniform(0, np.pi)
        k = 2 * np.pi / (fl * rng.uniform(0.6, 1.4))
        height += rng.uniform(0.3, 1.0) * np.sin(k * (np.cos(a) * x + np.sin(a) * y) + rng.uniform(0, 2 * np.pi))
    height *= float(params["folds"]) * 0.25
    if params["knit"] > 0:
        height += float(params["knit"]) * 0.04 * np.sin(2 * np.pi * x / 0.35)
    return np.clip(alb, 0.0, 1.0), height


def normal_map(height: np.ndarray, texel_cm: tuple[float, float]) -> np.ndarray:
    """Tangent-space normal map ``(h, w, 3)`` in [0, 1] of a height field ``(h, w)`` (cm) with
    texels of ``texel_cm`` (rows, columns) centimetres."""
    gy, gx = np.gradient(height, texel_cm[0], texel_cm[1])
    n = np.stack([-gx, gy, np.ones_like(height)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return (0.5 * n + 0.5).astype(np.float32)


def torso_textures(params: dict[str, Any], skin_rgb: Any) -> dict[str, Any]:
    """Albedo, normal map and roughness of the torso (``(128, 256)`` texels: rows from the neck
    loop down to :data:`TORSO_DEPTHS` [-1] cm, columns round from the back through the front)."""
    th, tw = _TEX
    t = (np.arange(th) + 0.5) / th * TORSO_DEPTHS[-1]
    phi = ((np.arange(tw) + 0.5) / tw) * 2 * np.pi - np.pi  # 0 = front (texture centre)
    tt, pp = np.meshgrid(t, phi, indexing="ij")
    # Nominal surface coordinates (cm): around (arc length from the front) and across.
    w = float(params["width"])
    a = (
        np.interp(
            tt * params["slope"],
            [0.0, 1.5, 3.5, 6.0, 9.0, 14.0, 22.0, 40.0, 60.0],
            [5.5, 8.0, 12.5, 16.5, 19.0, 20.5, 20.0, 18.5, 18.0],
        )
        * w
    )
    b = np.interp(tt, [0.0, 2.0, 5.0, 9.0, 20.0, 60.0], [5.0, 7.0, 9.0, 10.0, 10.8, 11.0]) * params["depth"]
    rad = _superellipse(a, b, pp)
    xx = rad * np.sin(pp)  # across the body, to the subject's left
    arc = pp * 0.5 * (a + b)
    skin = np.asarray(skin_rgb, np.float64)
    alb, hgt = fabric(params["fabric"], arc, tt)
    garment = params["garment"]
    front = np.cos(pp) > 0
    bare = np.zeros(tt.shape, bool)
    if garment in ("tshirt", "sweater"):
        neck = params["neckline"]
        if neck == "v":
            bare = front & (tt < 9.0 - np.abs(xx) * 1.6)
        elif neck == "scoop":
            bare = front & (tt < 6.0 * np.cos(np.clip(xx / 9.0, -1.5, 1.5)) ** 2)
        rib = ~bare & (tt < (np.where(bare, 0, 0) + 1.2)) if neck == "crew" else np.zeros_like(bare)
        alb = np.where(rib[..., None], alb * 0.85, alb)
        hgt = hgt + rib * 0.05 * np.sin(2 * np.pi * arc / 0.3)
    elif garment == "shirt":
        placket = front & (np.abs(xx) < 1.1)
        alb = np.where(placket[..., None], alb * 0.95, alb)
        buttons = placket & (np.abs(xx) < 0.35) & ((tt % 8.0) > 7.3) & (tt > 3.0)
        alb = np.where(buttons[..., None], np.asarray(params["fabric"]["colour"]) * 0.6 + 0.2, alb)
        opened = 3.0 + 5.0 * int(params["buttons_open"])
        bare = front & (tt < opened - np.abs(xx) * 1.2) if params["buttons_open"] else bare
    elif garment == "suit":
        shirt_alb, shirt_h = fabric(params["shirt"], arc, tt)
        lapel = float(params["lapel"])
        vopen = front & (np.abs(xx) < np.clip((lapel - tt) * 0.45, 0.0, None))
        alb = np.where(vopen[..., None], shirt_alb, alb)
        hgt = np.where(vopen, shirt_h * 0.5, hgt)
        edge = front & ~vopen & (np.abs(xx) < np.clip((lapel - tt) * 0.45, 0.0, None) + 0.4) & (tt < lapel)
        alb = np.where(edge[..., None], alb * 0.6, alb)
        hgt = hgt + edge * 0.15
        if params.get("tie") is not None:
            tie_alb, _ = fabric(params["tie"], arc, tt)
            tw_ = np.where(tt < 2.5, 2.2, 1.8 + 0.08 * tt)
            tie = vopen & (np.abs(xx) < tw_ * 0.5)
            knot = tie & (tt < 2.5)
            alb = np.where(tie[..., None], tie_alb, alb)
            alb = np.where(knot[..., None], tie_alb * 0.8, alb)
            hgt = hgt + tie * 0.1
    elif garment == "hoodie":
        strings = front & (np.abs(np.abs(xx) - 3.5) < 0.35) & (tt > 1.0) & (tt < 12.0 + 3.0 * np.sign(xx))
        alb = np.where(strings[..., None], np.asarray(params["fabric"]["colour2"]) * 0.5 + 0.3, alb)
        pocket = front & (tt > 30.0)
        hgt = hgt + pocket * 0.1
    elif garment == "strap":
        top = float(params["top"])
        edge = top + (4.0 * (np.abs(xx) / 10.0) ** 2 if params["neckline"] == "scoop" else 0.0)
        edge = np.where(front, edge, top - 3.0)
        strap = np.abs(np.abs(xx) - params["strap_x"]) < params["strap_width"] * 0.5
        bare = (tt < edge) & ~strap
    else:
        bare = tt < float(params["top"])
    alb = np.where(bare[..., None], skin, alb)
    hgt = np.where(bare, 0.0, hgt)
    # Shadow of the collar line and darkening at the armpits are left to the renderer.
    texel = (TORSO_DEPTHS[-1] / th, 2 * np.pi * 14.0 / tw)
    return {
        "albedo": alb.astype(np.float32),
        "normalmap": normal_map(hgt, texel),
        "roughness": float(params["fabric"]["roughness"]),
    }


def collar_textures(params: dict[str, Any]) -> dict[str, Any]:
    """Albedo, normal map and roughness of the collar band (the shirt's for a suit)."""
    th, tw = _COLLAR_TEX
    fab = params["shirt"] if params["garment"] == "suit" else params["fabric"]
    y = (np.arange(th) + 0.5) / th * max(float(params["collar"]), 1.0)
    x = (np.arange(tw) + 0.5) / tw * 45.0
    yy, xx = np.meshgrid(y, x, indexing="ij")
    alb, hgt = fabric(fab, xx, yy)
    if params["garment"] == "sweater":
        hgt = hgt + 0.06 * np.sin(2 * np.pi * xx / 0.5)
    edge = yy > yy.max() - 0.3
    alb = np.where(edge[..., None], alb * 0.9, alb)
    return {
        "albedo": alb.astype(np.float32),
        "normalmap": normal_map(hgt, (y[1] - y[0], x[1] - x[0])),
        "roughness": float(fab["roughness"]),
    }


def true_head_mesh(params: dict[str, Any], size: tuple[int, int], model: Any = None, version: int = 1) -> Any:
    """The posed true head of a synthetic sample (skin and eyes, pixels, camera frame), as
    rendered by :mod:`monohead.synth` (hair, glasses, headwear left out).

    Args:
        params: the sample's parameters (``identity``, ``expression``, ``gaze``, ``pose``).
        size: ``(H, W)`` of its images.
        model: the head model (default the shipped one).
        version: the generator version of the data set (its manifest's
            ``settings["generator_version"]``): 1 renders the whole ICT head with its capped
            torso, 2 cuts it at the neck's base.
    """
    import trimesh

    from . import scene

    hm = model if isinstance(model, HeadModel) else HeadModel.load(model)
    vm = hm.shape(params["identity"], params["expression"], tuple(params["gaze"]))
    M = scene.pose_matrix(params["pose"], tuple(size))
    vw = vm @ M[:3, :3].T + M[:3, 3]
    skin_sel = hm.region_faces(list(SKIN_REGIONS))
    keep = skin_sel | hm.region_faces(list(EYE_REGIONS))
    drop = neck_cut(hm)["drop"]
    if int(version) >= 2:
        keep &= ~drop
    faces = hm.faces[keep]
    skin = hm.faces[keep & skin_sel]
    mesh = trimesh.Trimesh(vw, faces, process=False)
    mesh.metadata["skin_faces"] = skin
    mesh.metadata["head_skin"] = ~drop[keep & skin_sel]  # per skin face: above the neck's base
    return mesh
