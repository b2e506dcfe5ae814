"""Faces of generator version 2: age, extreme expressions, make-up and oily skin.

- **Age** (:func:`sample_face`): children (4-12), adults and the elderly (60-90). A child's face
  is smaller under the same cranium (:func:`age_warp`: the face below the eyes is compressed
  toward the eye line and narrowed, the neck follows); this is geometry, so the ground truth
  follows it. Wrinkles (forehead lines, crow's feet, nasolabial folds, under-eye lines) grow
  with age as a **normal map** on the skin (:func:`skin_detail`): they change the shading
  only; the ground-truth normals stay those of the mesh (the surface a network can recover
  at 128²).
- **Extreme expressions**: a wink, a grimace, a wide-open mouth (shout or surprise) and a broad
  smile, as ICT-FaceKit blendshape weights that replace the sample's ordinary expression.
- **Make-up**: lipstick, blush and eyeshadow painted into the skin albedo.
- **Oily skin**: a glossier T-zone (forehead, nose, chin) through a roughness map.

All of it is drawn from the generator's ``face`` stream and recorded in ``params["face"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .textures import TextureSpace, srgb_to_linear

__all__ = [
    "EXPRESSIONS",
    "age_warp",
    "apply_makeup",
    "expression_weights",
    "landmarks",
    "sample_face",
    "sample_mouth",
    "skin_detail",
]

EXPRESSIONS = ("ordinary", "wink", "grimace", "open_mouth", "broad_smile")
"""Expression presets of :func:`sample_face` (``ordinary``: the version 1 sampler's)."""

_EXPR_P = (0.62, 0.09, 0.09, 0.11, 0.09)


def sample_face(rng: np.random.Generator, sex: str) -> dict[str, Any]:
    """Random face parameters (JSON-able): ``age`` (years), ``child`` (0-1 how child-like the
    proportions are), ``wrinkles`` (0-1), ``expression`` (a preset of :data:`EXPRESSIONS`) with
    its ``side`` and ``strength``, ``makeup`` (or ``None``), ``oily`` (0-1) and ``seed``."""
    group = rng.choice(["child", "adult", "elderly"], p=[0.14, 0.62, 0.24])
    age = float(
        rng.uniform(4, 12) if group == "child" else rng.uniform(18, 59) if group == "adult" else rng.uniform(60, 90)
    )
    female = sex == "female"
    makeup = None
    if age >= 14 and rng.random() < (0.45 if female else 0.05):
        lip = np.array([[0.55, 0.05, 0.1], [0.7, 0.25, 0.35], [0.45, 0.15, 0.12], [0.8, 0.1, 0.2], [0.6, 0.35, 0.3]])
        shadow = np.array([[0.35, 0.25, 0.2], [0.3, 0.3, 0.4], [0.5, 0.4, 0.35], [0.2, 0.25, 0.2], [0.4, 0.2, 0.35]])
        makeup = {
            "lipstick": [float(c) for c in lip[int(rng.integers(len(lip)))]],
            "lipstick_strength": float(rng.uniform(0.3, 0.85)) if rng.random() < 0.8 else 0.0,
            "blush": float(rng.uniform(0.0, 0.35)),
            "eyeshadow": [float(c) for c in shadow[int(rng.integers(len(shadow)))]],
            "eyeshadow_strength": float(rng.uniform(0.0, 0.6)),
        }
    return {
        "age": age,
        "child": float(np.clip((13.0 - age) / 9.0, 0.0, 1.0)),
        "wrinkles": float(np.clip((age - 35.0) / 45.0, 0.0, 1.0) * rng.uniform(0.6, 1.0)),
        "expression": str(rng.choice(EXPRESSIONS, p=_EXPR_P)),
        "side": str(rng.choice(["L", "R"])),
        "strength": float(rng.uniform(0.75, 1.0)),
        "makeup": makeup,
        "oily": float(rng.uniform(0.0, 1.0) ** 2),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def sample_mouth(rng: np.random.Generator, age: float) -> dict[str, Any]:
    """Colours of the teeth and of the gums and tongue (generator version 3), linear RGB
    albedo: ``teeth_rgb`` from bluish white to yellowed ivory (more yellow with ``age`` in
    years), ``tongue_rgb`` pink to deep red."""
    yellow = float(np.clip(age / 80.0, 0.0, 1.0) * rng.uniform(0.2, 1.0))
    white, ivory = np.array([0.78, 0.77, 0.74]), np.array([0.66, 0.55, 0.36])
    teeth = ((1.0 - yellow) * white + yellow * ivory) * rng.uniform(0.6, 1.0)
    tongue = np.array([0.56, 0.15, 0.16]) * rng.uniform(0.7, 1.15) * rng.uniform(0.9, 1.1, 3)
    return {"teeth_rgb": [float(c) for c in teeth], "tongue_rgb": [float(c) for c in np.clip(tongue, 0.0, 1.0)]}


def expression_weights(face: dict[str, Any], names: list[str]) -> dict[str, float] | None:
    """ICT blendshape weights ``{name: weight}`` of an extreme expression preset, or ``None``
    for ``ordinary`` (keep the sample's own expression)."""
    kind, s, side = face["expression"], float(face["strength"]), face["side"]
    other = "R" if side == "L" else "L"
    if kind == "ordinary":
        return None
    if kind == "wink":
        w = {
            f"eyeBlink_{side}": 1.0,
            f"cheekSquint_{side}": 0.6 * s,
            f"mouthSmile_{side}": 0.55 * s,
            f"eyeSquint_{side}": 0.4 * s,
            f"browDown_{side}": 0.3 * s,
            f"mouthSmile_{other}": 0.2 * s,
        }
    elif kind == "grimace":
        w = {
            "mouthStretch_L": s,
            "mouthStretch_R": s,
            "noseSneer_L": 0.7 * s,
            "noseSneer_R": 0.7 * s,
            "browDown_L": 0.8 * s,
            "browDown_R": 0.8 * s,
            "eyeSquint_L": 0.7 * s,
            "eyeSquint_R": 0.7 * s,
            "mouthUpperUp_L": 0.6 * s,
            "mouthUpperUp_R": 0.6 * s,
            "mouthLowerDown_L": 0.5 * s,
            "mouthLowerDown_R": 0.5 * s,
            "jawOpen": 0.15 * s,
            "cheekSquint_L": 0.5 * s,
            "cheekSquint_R": 0.5 * s,
        }
    elif kind == "open_mouth":
        w = {
            "jawOpen": 0.75 + 0.25 * s,
            "mouthFunnel": 0.2 * s,
            "browInnerUp_L": 0.6 * s,
            "browInnerUp_R": 0.6 * s,
            "browOuterUp_L": 0.5 * s,
            "browOuterUp_R": 0.5 * s,
            "eyeWide_L": 0.5 * s,
            "eyeWide_R": 0.5 * s,
            "mouthLowerDown_L": 0.4 * s,
            "mouthLowerDown_R": 0.4 * s,
        }
    else:  # broad_smile
        w = {
            "mouthSmile_L": s,
            "mouthSmile_R": s,
            "cheekSquint_L": 0.6 * s,
            "cheekSquint_R": 0.6 * s,
            "jawOpen": 0.3 * s,
            "mouthUpperUp_L": 0.4 * s,
            "mouthUpperUp_R": 0.4 * s,
            "eyeSquint_L": 0.4 * s,
            "eyeSquint_R": 0.4 * s,
            "mouthDimple_L": 0.3 * s,
            "mouthDimple_R": 0.3 * s,
        }
    return {n: float(np.clip(v, 0.0, 1.0)) for n, v in w.items() if n in names}


def landmarks(model: Any) -> dict[str, float]:
    """Neutral-face landmarks (model cm): eye line ``eye_y``, eye half-distance ``eye_x``,
    mouth line ``mouth_y``, mouth half-width ``mouth_w``, chin ``chin_y``."""
    v = model.neutral.astype(np.float64)
    eyes = model.eye_centres(v)
    face_v = np.unique(model.faces[model.region_faces(["face"])])
    mouth_v = np.unique(model.faces[model.region_faces(["mouth_socket"])])
    lip = v[np.intersect1d(face_v, mouth_v)]
    front = face_v[v[face_v, 2] > 5.0]
    return {
        "eye_y": float(eyes[0, 1]),
        "eye_x": float(abs(eyes[0, 0])),
        "mouth_y": float(lip[:, 1].mean()),
        "mouth_w": float(np.abs(lip[:, 0]).max()),
        "chin_y": float(v[front, 1].min()),
    }


def age_warp(
    vertices: np.ndarray, face: dict[str, Any], eye_y: float, chin_y: float, pivot_z: float = 0.5
) -> np.ndarray:
    """A child's proportions: the face below the eye line ``eye_y`` (model cm) is compressed
    toward it by up to 22 % and narrowed by up to 11 % (front to back too); below the chin
    ``chin_y`` the neck moves up with it. Identity for ``face["child"] == 0``."""
    k = 0.22 * float(face["child"])
    if k <= 0:
        return vertices
    v = np.array(vertices, np.float64, copy=True)
    y = v[:, 1]
    span = max(eye_y - chin_y, 1e-6)
    t = np.clip((eye_y - y) / span, 0.0, 1.0)
    below = np.minimum(y, eye_y)
    v[:, 1] = np.where(y < eye_y, below + k * (eye_y - np.maximum(below, chin_y)), y)
    f = 1.0 - 0.5 * k * t
    v[:, 0] *= f
    v[:, 2] = pivot_z + (v[:, 2] - pivot_z) * f
    return v


def _height(space: TextureSpace, face: dict[str, Any], lm: dict[str, float]) -> np.ndarray:
    """Wrinkle height field (cm) per texel: grooves are negative."""
    p = space.position.astype(np.float64)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    ax = np.abs(x)
    rng = np.random.default_rng(face["seed"])
    front = np.clip((z - 5.0) / 3.0, 0.0, 1.0)
    a = float(face["wrinkles"])
    h = np.zeros_like(x)
    if a <= 0:
        return h
    ey, ex, my, mw = lm["eye_y"], lm["eye_x"], lm["mouth_y"], lm["mouth_w"]
    # Forehead: wavy horizontal lines between brows and hairline.
    period = rng.uniform(0.55, 0.8)
    phase = rng.uniform(0, 2 * np.pi)
    band = (
        np.clip((y - (ey + 2.3)) / 0.8, 0, 1) * np.clip(((ey + 6.5) - y) / 1.2, 0, 1) * np.clip((5.5 - ax) / 1.5, 0, 1)
    )
    h += -0.1 * a * band * front * np.maximum(np.sin(2 * np.pi * (y + 0.25 * np.sin(x / 1.7)) / period + phase), 0) ** 3
    # Crow's feet: radial grooves at the outer eye corners.
    cx = ex + 1.7
    r = np.hypot(ax - cx, y - ey)
    ang = np.arctan2(y - ey, ax - cx)
    fan = np.exp(-(((r - 1.0) / 0.6) ** 2)) * (ax > cx - 0.3) * front
    h += -0.07 * a * fan * np.maximum(np.cos(7.0 * ang + rng.uniform(0, np.pi)), 0) ** 4
    # Under-eye lines.
    under = np.exp(-(((y - (ey - 0.9)) / 0.18) ** 2)) * np.exp(-(((ax - ex) / 1.3) ** 2)) * front
    h += -0.03 * a * under
    # Nasolabial folds: from beside the nose wing to past the mouth corner.
    x0, y0, x1, y1 = 1.6, ey - 3.6, mw + 0.7, my - 0.8
    t = np.clip(((ax - x0) * (x1 - x0) + (y - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2), 0, 1)
    d = np.hypot(ax - (x0 + t * (x1 - x0)), y - (y0 + t * (y1 - y0)))
    h += -0.2 * a * np.exp(-((d / 0.3) ** 2)) * front
    return h


def skin_detail(
    space: TextureSpace, lm: dict[str, float], face: dict[str, Any], base_roughness: float
) -> tuple[np.ndarray, np.ndarray]:
    """The skin's normal map and roughness map of a face (``lm``: :func:`landmarks`).

    Returns:
        ``normalmap (h, 2h, 3)`` float32 tangent-space normals encoded as ``(n + 1) / 2``
        (Mitsuba's ``normalmap``), flat ``(0.5, 0.5, 1)`` without wrinkles; ``roughness (h, 2h,
        1)`` float32: ``base_roughness`` lowered by up to 45 % on an oily T-zone.
    """
    hgt = _height(space, face, lm)
    p = space.position.astype(np.float64)
    # Slopes per texel: height change over the surface distance between neighbouring texels.
    du = np.linalg.norm(np.gradient(p, axis=1), axis=-1)
    dv = np.linalg.norm(np.gradient(p, axis=0), axis=-1)
    gu = np.gradient(hgt, axis=1) / np.maximum(du, 1e-3)
    gv = np.gradient(hgt, axis=0) / np.maximum(dv, 1e-3)
    n = np.stack([-gu, gv, np.ones_like(gu)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    normalmap = ((n + 1.0) / 2.0).astype(np.float32)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    ax = np.abs(x)
    front = np.clip((z - 6.0) / 3.0, 0.0, 1.0)
    ey = lm["eye_y"]
    tzone = np.clip(((2.2 - ax) / 1.0), 0, 1) * (y > ey - 5.0) + np.clip((4.5 - ax) / 1.5, 0, 1) * (y > ey + 1.8)
    tzone = ndimage.gaussian_filter(np.clip(tzone, 0, 1) * front, 2.0)
    rough = base_roughness * (1.0 - 0.45 * float(face["oily"]) * tzone)
    return normalmap, np.clip(rough, 0.05, 1.0)[..., None].astype(np.float32)


def apply_makeup(albedo: np.ndarray, space: TextureSpace, lm: dict[str, float], face: dict[str, Any]) -> np.ndarray:
    """Paint a face's make-up (lipstick, blush, eyeshadow) into a linear skin albedo
    (``lm``: :func:`landmarks`)."""
    mk = face.get("makeup")
    if not mk:
        return albedo
    out = np.array(albedo, np.float32, copy=True)

    def mix(mask: np.ndarray, rgb: Any, strength: float) -> None:
        w = (np.clip(mask, 0, 1) * strength)[..., None].astype(np.float32)
        out[:] = out * (1 - w) + srgb_to_linear(np.asarray(rgb)).astype(np.float32) * w

    mix(space.masks["lips"], mk["lipstick"], mk["lipstick_strength"])
    mix(space.masks["cheeks"], [0.85, 0.45, 0.45], mk["blush"])
    p = space.position
    ax, y, z = np.abs(p[..., 0]), p[..., 1], p[..., 2]
    lid = (
        np.exp(-(((y - (lm["eye_y"] + 0.6)) / 0.45) ** 2))
        * np.exp(-(((ax - lm["eye_x"]) / 1.4) ** 2))
        * np.clip((z - 5.0) / 2.0, 0, 1)
    )
    mix(lid, mk["eyeshadow"], mk["eyeshadow_strength"])
    return out
