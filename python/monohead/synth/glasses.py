"""Procedural glasses: six frame designs, with or without lenses, fitted to a head.

A pair of glasses is two rims (closed outlines swept with a small cross-section), a bridge
over the nose, two temples that run back above the ears and bend down behind them, and, if
it has lenses, two slightly curved lens discs filling the rims. The rims sit in a plane in
front of the eyes, resting on the nose bridge; the temples reach the ears of the head they
are fitted to (:func:`build_glasses`).

Every design has the same number of vertices and triangles (:data:`FRAME_TOPOLOGY`), so the
renderer can update one mesh in place; absent glasses or lenses collapse to a point inside the
head.

Units: centimetres, head model frame (x to the subject's left, y up, z out of the face).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .head_model import HeadModel

__all__ = ["DESIGNS", "build_glasses", "sample_glasses_params"]

DESIGNS = ("round", "rectangular", "aviator", "cat_eye", "browline", "oval")

_RIM_POINTS = 48  # samples along each rim outline
_SIDES = 6  # sides of the swept cross-sections
_BRIDGE_POINTS = 10
_TEMPLE_POINTS = 14


def sample_glasses_params(rng: np.random.Generator, probability: float = 0.3) -> dict[str, Any] | None:
    """Random glasses (JSON-able), or ``None`` (no glasses) with probability ``1 - probability``."""
    if rng.random() >= probability:
        return None
    design = str(rng.choice(DESIGNS))
    metal = bool(rng.random() < (0.7 if design in ("aviator", "round") else 0.3))
    if metal:
        colour = [[0.9, 0.75, 0.45], [0.8, 0.8, 0.8], [0.3, 0.3, 0.32], [0.75, 0.55, 0.45]][rng.integers(4)]
    else:
        colour = [
            [0.02, 0.02, 0.02],
            [0.25, 0.12, 0.05],
            [0.5, 0.3, 0.15],
            [0.1, 0.12, 0.3],
            [0.5, 0.05, 0.05],
            list(rng.uniform(0.05, 0.8, 3)),
        ][rng.integers(6)]
    lenses = bool(rng.random() < 0.6)
    sun = bool(lenses and rng.random() < 0.3)
    tint = list(rng.uniform(0.1, 0.4, 3) * np.array([1.0, 0.95, 0.9])) if sun else list(rng.uniform(0.9, 1.0, 3))
    return {
        "design": design,
        "lens_width": float(rng.uniform(4.6, 5.6)),
        "lens_height": float(rng.uniform(3.0, 4.2) if design not in ("round",) else rng.uniform(4.2, 5.0)),
        "thickness": float(rng.uniform(0.08, 0.14) if metal else rng.uniform(0.2, 0.35)),
        "depth": float(rng.uniform(0.1, 0.2) if metal else rng.uniform(0.3, 0.5)),
        "bridge": float(rng.uniform(1.6, 2.2)),
        "metal": metal,
        "frame_rgb": [float(c) for c in colour],
        "roughness": float(rng.uniform(0.1, 0.35) if metal else rng.uniform(0.05, 0.4)),
        "lenses": lenses,
        "lens_tint": [float(c) for c in tint],
        "offset": float(rng.uniform(0.0, 0.5)),
    }


def _outline(design: str, n: int, w: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """A closed rim outline ``(n, 2)`` (x outward from the nose, y up), centred at 0, and the
    relative rim thickness along it ``(n,)``."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    thick = np.ones(n)
    if design == "round":
        xy = np.column_stack([c * w / 2 * 0.92, s * h / 2])
    elif design == "oval":
        xy = np.column_stack([c * w / 2, s * h / 2 * 0.85])
    elif design == "rectangular":
        e = 0.22  # superellipse exponent ~ rounded rectangle
        xy = np.column_stack([np.sign(c) * np.abs(c) ** e * w / 2, np.sign(s) * np.abs(s) ** e * h / 2])
    elif design == "aviator":
        x = c * w / 2
        y = np.where(s > 0, s * h / 2 * 0.8, s * h / 2 * 1.15 * (0.75 + 0.25 * c))
        xy = np.column_stack([x, y])
    elif design == "cat_eye":
        e = 0.5
        x = np.sign(c) * np.abs(c) ** e * w / 2
        y = np.sign(s) * np.abs(s) ** e * h / 2 * 0.85 + 0.35 * h * np.clip(c, 0, None) ** 3 * (s > -0.3)
        xy = np.column_stack([x, y])
    elif design == "browline":
        e = 0.35
        xy = np.column_stack([np.sign(c) * np.abs(c) ** e * w / 2, np.sign(s) * np.abs(s) ** e * h / 2])
        thick = np.where(s > 0.1, 2.2, 0.35)
    else:
        raise ValueError(f"unknown glasses design {design!r}; known: {', '.join(DESIGNS)}")
    return xy, thick


def _frame_along(path: np.ndarray, closed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Unit tangents and a normal (perpendicular to the tangent) along a polyline."""
    if closed:
        tan = np.roll(path, -1, axis=0) - np.roll(path, 1, axis=0)
    else:
        tan = np.gradient(path, axis=0)
    tan /= np.linalg.norm(tan, axis=1, keepdims=True) + 1e-12
    ref = np.where(np.abs(tan[:, 2:3]) < 0.9, np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0]))
    nrm = ref - (ref * tan).sum(axis=1, keepdims=True) * tan
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
    return tan, nrm


def _sweep(path: np.ndarray, half_w: np.ndarray, half_d: np.ndarray, closed: bool) -> tuple[np.ndarray, np.ndarray]:
    """A tube along ``path (P, 3)`` with an elliptic cross-section of half-axes ``half_w`` (in
    the plane of ``nrm``'s partner) and ``half_d`` (along ``nrm``); returns (vertices, faces);
    open tubes are capped at both ends."""
    tan, nrm = _frame_along(path, closed)
    bin_ = np.cross(tan, nrm)
    a = np.linspace(0, 2 * np.pi, _SIDES, endpoint=False)
    ring = (
        np.cos(a)[None, :, None] * half_w[:, None, None] * bin_[:, None, :]
        + np.sin(a)[None, :, None] * half_d[:, None, None] * nrm[:, None, :]
    )
    verts = (path[:, None, :] + ring).reshape(-1, 3)
    p = len(path)
    segs = p if closed else p - 1
    i = np.arange(segs)[:, None]
    j = np.arange(_SIDES)[None, :]
    a0 = i * _SIDES + j
    a1 = i * _SIDES + (j + 1) % _SIDES
    b0 = ((i + 1) % p) * _SIDES + j
    b1 = ((i + 1) % p) * _SIDES + (j + 1) % _SIDES
    faces = np.concatenate([np.stack([a0, b0, b1], -1).reshape(-1, 3), np.stack([a0, b1, a1], -1).reshape(-1, 3)])
    if not closed:
        ends = []
        for k, flip in ((0, True), (p - 1, False)):
            c = len(verts) + len(ends)
            ends.append(path[k])
            ring_idx = k * _SIDES + np.arange(_SIDES)
            f = np.stack([ring_idx, np.roll(ring_idx, -1), np.full(_SIDES, c)], -1)
            faces = np.concatenate([faces, f[:, ::-1] if flip else f])
        verts = np.concatenate([verts, np.array(ends)])
    return verts, faces


def _surface_x(v: np.ndarray, y: float, z: float, tol: float = 0.7) -> float:
    """Half-width of the head (max |x| of the skin vertices ``v``) near height ``y``, depth ``z``."""
    near = (np.abs(v[:, 1] - y) < tol) & (np.abs(v[:, 2] - z) < tol)
    return float(np.abs(v[near, 0]).max()) if near.any() else float(np.abs(v[:, 0]).max())


def _surface_z(v: np.ndarray, x: float, y: float, tol: float = 0.5) -> float:
    """Front-most z of the skin vertices ``v`` near ``(x, y)``."""
    near = (np.abs(v[:, 0] - x) < tol) & (np.abs(v[:, 1] - y) < tol)
    return float(v[near, 2].max()) if near.any() else float(v[:, 2].max())


def build_glasses(
    params: dict[str, Any] | None, model: HeadModel, vertices: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The frame and lens meshes of a pair of glasses fitted to a head.

    Args:
        params: from :func:`sample_glasses_params`, or ``None`` (no glasses).
        model: the head model.
        vertices: ``(V, 3)`` the head's vertices (cm, model frame).

    Returns:
        ``(frame_vertices (Vf, 3), frame_faces (Ff, 3), lens_vertices (Vl, 3), lens_faces
        (Fl, 3))``; the sizes are the same for every design. Without glasses (or lenses) the
        vertices all sit at one point inside the head, so they are never seen.
    """
    skin = vertices[model.region_vertices(("face", "head_and_neck"))]
    eyes = model.eye_centres(vertices)
    inside = skin.mean(axis=0)
    design = DESIGNS[0] if params is None else params["design"]
    p = params or {
        "lens_width": 5.0,
        "lens_height": 3.6,
        "thickness": 0.2,
        "depth": 0.3,
        "bridge": 1.8,
        "offset": 0.0,
        "lenses": False,
    }
    w, h = p["lens_width"], p["lens_height"]
    ey = float(eyes[:, 1].mean())
    eye_x = float(abs(eyes[0, 0] - eyes[1, 0]) / 2)
    cornea_z = float(eyes[:, 2].mean()) + 1.7
    nose_z = _surface_z(skin, 0.0, ey + 0.2)
    plane_z = max(cornea_z + 1.3, nose_z + 0.25) + p["offset"]
    # Lens centres: the bridge sets the inner edges; the lenses are centred near the pupils.
    half_bridge = p["bridge"] / 2
    cx = max(half_bridge + w / 2, eye_x)
    cy = ey - 0.15 * h
    xy, thick = _outline(design, _RIM_POINTS, w, h)

    frame_v, frame_f, lens_v, lens_f = [], [], [], []

    def add(store_v: list, store_f: list, v: np.ndarray, f: np.ndarray) -> None:
        base = sum(len(a) for a in store_v)
        store_v.append(v)
        store_f.append(f + base)

    half_t = np.full(_RIM_POINTS, p["thickness"] / 2) * thick
    half_d = np.full(_RIM_POINTS, p["depth"] / 2)
    rims = []
    for sign in (1.0, -1.0):
        # Slight wrap: the outer side of each rim bends back.
        x = sign * (cx + xy[:, 0])
        z = plane_z - 0.06 * np.maximum(np.abs(x) - half_bridge, 0.0) ** 1.2
        path = np.column_stack([x, cy + xy[:, 1], z])
        rims.append(path)
        add(frame_v, frame_f, *_sweep(path, half_t, half_d, closed=True))
        # Lens: a fan over the outline, bulging forward a little.
        centre = np.array([sign * cx, cy, plane_z + 0.12 - 0.06 * (cx - half_bridge) ** 1.2])
        lv = np.concatenate([path, centre[None]])
        fan = np.stack(
            [np.arange(_RIM_POINTS), np.roll(np.arange(_RIM_POINTS), -1), np.full(_RIM_POINTS, _RIM_POINTS)], -1
        )
        add(lens_v, lens_f, lv, fan if sign < 0 else fan[:, ::-1])
    # Bridge: an arch between the inner rims at about the top third.
    inner = [r[np.argmin(np.abs(r[:, 0]) - 0.3 * r[:, 1])] for r in rims]
    t = np.linspace(0, 1, _BRIDGE_POINTS)
    bridge = inner[1][None] * (1 - t)[:, None] + inner[0][None] * t[:, None]
    bridge[:, 1] += 0.35 * np.sin(np.pi * t)
    bridge[:, 2] += 0.15 * np.sin(np.pi * t)
    r = np.full(_BRIDGE_POINTS, max(p["thickness"], 0.1) / 2)
    add(frame_v, frame_f, *_sweep(bridge, r, r, closed=False))
    # Temples: from the rims' outer ends, back above the ears, then down behind them.
    for k, sign in enumerate((1.0, -1.0)):
        rim = rims[k]
        hinge = rim[np.argmax(sign * rim[:, 0] + 0.2 * rim[:, 1])].copy()
        ear_y = hinge[1] + 0.2
        ear_x = _surface_x(skin, ear_y, 0.0) + 0.25
        mid_x = _surface_x(skin, ear_y, 3.5) + 0.25
        x_out = max(abs(hinge[0]), mid_x)
        pts = np.array(
            [
                [sign * abs(hinge[0]), hinge[1], hinge[2]],
                [sign * x_out, ear_y, hinge[2] - 0.8],
                [sign * max(mid_x, x_out - 0.1), ear_y, 3.5],
                [sign * ear_x, ear_y, 0.0],
                [sign * (ear_x - 0.2), ear_y - 0.4, -1.4],
                [sign * (ear_x - 0.5), ear_y - 1.8, -2.2],
            ]
        )
        s = np.linspace(0, 1, _TEMPLE_POINTS)
        knots = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        knots /= knots[-1]
        path = np.column_stack([np.interp(s, knots, pts[:, a]) for a in range(3)])
        r = np.full(_TEMPLE_POINTS, max(p["thickness"], 0.1) / 2)
        add(frame_v, frame_f, *_sweep(path, r * 0.8, np.maximum(r, p["depth"] / 2.5), closed=False))

    fv, ff = np.concatenate(frame_v), np.concatenate(frame_f)
    lv, lf = np.concatenate(lens_v), np.concatenate(lens_f)
    if params is None:
        fv = np.broadcast_to(inside, fv.shape).copy()
    if params is None or not params["lenses"]:
        lv = np.broadcast_to(inside, lv.shape).copy()
    return fv, ff, lv, lf
