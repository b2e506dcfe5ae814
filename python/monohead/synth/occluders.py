"""Occluders in front of the face for generator version 2: hands, microphones, phones, cups,
raised collars and scarves.

- A **hand** (:func:`hand_mesh`) is a simple articulated mesh: a forearm and palm (one tube
  of elliptic rings) and five fingers of three phalanges each (tubes with rounded tips),
  every joint bent by its own angle (curl) and the fingers spread; it has the skin's colour.
- An **object** (:func:`object_mesh`) is a generalised cylinder: rings of superellipse
  cross-section along an axis, closed at both ends: a microphone (handle and ball grille), a
  phone (a flat rounded box) or a cup (a cylinder, open at the top, with its inner wall).
- The **poses** (:data:`POSES`) put them where they are in photos: a hand over the mouth,
  under the chin, on the cheek, raised beside the face; a microphone held before the mouth;
  a phone at the ear or held up below the face; a cup at the lips. A held object is gripped
  by the hand.
- A **raised collar** or a **scarf** is a band round the neck up to the jaw, the chin or the
  mouth (:func:`monohead.synth.body.neck_band`).

Hand and object are one mesh of fixed topology (:func:`prop_slot`), the band another
(``scarf``); absent ones are hidden by the renderer. All are posed with the head. Ground
truth: they are occluders; N, depth, W and mask describe the head and eyes along each
pixel's ray, whatever lies in front.

Units: centimetres, head model frame (x to the subject's left, y up, z out of the face).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .body import BAND_TEXTURE, band_slot, fabric, neck_band, normal_map, sample_fabric
from .head_model import HeadModel
from .render import ExtraSlot

__all__ = [
    "KINDS",
    "POSES",
    "band_slot_scarf",
    "build_occluder",
    "hand_mesh",
    "object_mesh",
    "occluder_textures",
    "prop_slot",
    "sample_occluder_params",
]

KINDS = ("hand", "microphone", "phone", "cup", "raised_collar", "scarf")
_KIND_P = (0.32, 0.14, 0.16, 0.12, 0.1, 0.16)
POSES = {
    "hand": ("mouth", "chin", "cheek", "wave"),
    "microphone": ("mic",),
    "phone": ("ear", "below"),
    "cup": ("lips",),
}

_SIDES_ARM, _SIDES_FINGER = 10, 8
_ARM_RINGS = 6  # elbow, forearm, wrist, palm base, mid palm, knuckles
_FINGER_RINGS = 4  # knuckle, two joints, tip ring (then the tip point)
_OBJ_RINGS, _OBJ_SIDES = 12, 16
_TEX = (64, 64)

# Phalanx lengths (cm) of thumb, index, middle, ring, little; knuckle positions on the palm.
_PHALANGES = np.array([[4.0, 3.2, 2.6], [4.6, 2.6, 2.0], [5.0, 3.0, 2.2], [4.7, 2.8, 2.1], [3.8, 2.1, 1.8]])
_RADII = np.array([1.05, 0.9, 0.92, 0.88, 0.78])
_KNUCKLES = np.array([[2.6, 2.2, 0.6], [2.9, 9.2, 0.0], [0.95, 9.5, 0.0], [-0.95, 9.2, 0.0], [-2.8, 8.5, 0.0]])


def sample_occluder_params(rng: np.random.Generator, probability: float = 0.3) -> dict[str, Any] | None:
    """A random occluder (JSON-able) or ``None`` (with probability ``1 - probability``).

    Keys: ``kind`` (:data:`KINDS`); for hands and held objects ``pose`` (:data:`POSES`),
    ``side`` (+1 the subject's left, -1 right), ``curl`` (0 open, 1 fist), ``spread``
    (degrees), ``size`` (hand scale), ``jitter`` ([3] cm), ``tilt`` (degrees), ``object``
    (dimensions and colours); for bands ``collar`` (height, cm), ``collar_open``,
    ``collar_flare``, ``thickness``, ``bulge`` and a ``fabric``.
    """
    if rng.random() >= probability:
        return None
    kind = str(rng.choice(KINDS, p=np.array(_KIND_P) / sum(_KIND_P)))
    if kind in ("raised_collar", "scarf"):
        scarf = kind == "scarf"
        return {
            "kind": kind,
            "collar": float(rng.uniform(5.0, 11.0) if scarf else rng.uniform(5.0, 9.0)),
            "collar_open": float(0.0 if scarf else rng.uniform(8.0, 30.0)),
            "collar_flare": float(rng.uniform(0.3, 1.5) if scarf else rng.uniform(1.0, 3.0)),
            "thickness": float(rng.uniform(0.8, 2.0) if scarf else rng.uniform(0.4, 0.9)),
            "bulge": float(rng.uniform(0.8, 2.5) if scarf else 0.0),
            "fabric": {
                **sample_fabric(rng, plain=0.4 if scarf else 0.8),
                "knit": float(rng.uniform(0.3, 1.0) if scarf else 0.0),
            },
        }
    pose = str(rng.choice(POSES[kind]))
    out: dict[str, Any] = {
        "kind": kind,
        "pose": pose,
        "side": float(rng.choice([-1.0, 1.0])),
        "curl": float(rng.uniform(0.0, 0.35) if pose in ("mouth", "wave", "cheek") else rng.uniform(0.55, 0.95)),
        "spread": float(rng.uniform(0.0, 12.0) if pose != "wave" else rng.uniform(8.0, 20.0)),
        "size": float(rng.uniform(0.9, 1.1)),
        "jitter": [float(c) for c in rng.normal(0.0, 0.8, 3)],
        "tilt": float(rng.normal(0.0, 12.0)),
        "skin": [float(c) for c in rng.uniform(0.85, 1.1, 3)],
        "roughness": float(rng.uniform(0.35, 0.6)),
    }
    if kind == "microphone":
        out["object"] = {
            "length": float(rng.uniform(16.0, 22.0)),
            "radius": float(rng.uniform(1.6, 2.6)),
            "colour": [0.02, 0.02, 0.02] if rng.random() < 0.6 else [0.5, 0.5, 0.52],
            "head": [float(rng.uniform(0.25, 0.7))] * 3,
        }
    elif kind == "phone":
        out["object"] = {
            "length": float(rng.uniform(13.5, 16.5)),
            "width": float(rng.uniform(6.5, 7.8)),
            "depth": float(rng.uniform(0.75, 1.1)),
            "colour": sample_fabric(rng)["colour"],
            "head": [0.01, 0.01, 0.015],
        }
    elif kind == "cup":
        out["object"] = {
            "length": float(rng.uniform(8.0, 11.0)),
            "radius": float(rng.uniform(3.6, 4.5)),
            "colour": sample_fabric(rng)["colour"],
            "head": [0.25, 0.15, 0.08],
        }
    return out


def prop_slot() -> ExtraSlot:
    """The renderer's mesh slot for a hand and an object (fixed topology; texture ``(64, 64)``:
    the hand in its left half, the object in its right half)."""
    hv, hf, huv = _hand_topology()
    _, of, ouv = _object_topology()
    faces = np.concatenate([hf, of + hv])
    uv = np.concatenate([huv, ouv]).astype(np.float32)
    return ExtraSlot("prop", faces, uv, _TEX)


def band_slot_scarf() -> ExtraSlot:
    """The renderer's mesh slot for a raised collar or a scarf."""
    return band_slot("scarf")


# --------------------------------------------------------------------------------------------
# Tubes
# --------------------------------------------------------------------------------------------


def _tube_faces(rings: int, sides: int, tip: bool) -> np.ndarray:
    """Triangles of ``rings`` rings of ``sides`` vertices, plus a tip vertex after them."""
    r, c = np.mgrid[0 : rings - 1, 0:sides]
    a = (r * sides + c).ravel()
    b = (r * sides + (c + 1) % sides).ravel()
    faces = [np.stack([a, b, a + sides], 1), np.stack([b, b + sides, a + sides], 1)]
    if tip:
        c = np.arange(sides)
        last = (rings - 1) * sides
        faces.append(np.stack([last + c, last + (c + 1) % sides, np.full(sides, rings * sides)], 1))
    return np.concatenate(faces)


def _tube(points: np.ndarray, radii: np.ndarray, sides: int, up: np.ndarray, flat: Any = 1.0) -> np.ndarray:
    """Rings round a polyline ``(R, 3)`` with radii ``(R,)``; ``flat`` (scalar or ``(R,)``)
    squashes each ring along ``up`` (an ellipse ``radius`` wide and ``flat * radius`` thick).
    Returns ``(R * sides, 3)``."""
    flat = np.broadcast_to(np.asarray(flat, np.float64), (len(points),))[:, None, None]
    t = np.gradient(points, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-12
    u = up - (t @ up)[:, None] * t
    u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-12
    w = np.cross(t, u)
    ang = np.linspace(0.0, 2 * np.pi, sides, endpoint=False)
    ring = (np.cos(ang)[None, :, None] * w[:, None] + flat * np.sin(ang)[None, :, None] * u[:, None]) * radii[
        :, None, None
    ]
    return (points[:, None] + ring).reshape(-1, 3)


# --------------------------------------------------------------------------------------------
# Hand
# --------------------------------------------------------------------------------------------


def _hand_topology() -> tuple[int, np.ndarray, np.ndarray]:
    arm = _tube_faces(_ARM_RINGS, _SIDES_ARM, tip=True)
    n_arm = _ARM_RINGS * _SIDES_ARM + 1
    faces, n = [arm], n_arm
    per = _FINGER_RINGS * _SIDES_FINGER + 1
    for _ in range(5):
        faces.append(_tube_faces(_FINGER_RINGS, _SIDES_FINGER, tip=True) + n)
        n += per
    uv = np.tile([0.25, 0.5], (n, 1))
    return n, np.concatenate(faces), uv


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def hand_mesh(curl: float, spread: float, size: float = 1.0) -> np.ndarray:
    """A right hand's vertices in its own frame (cm): wrist at the origin, fingers along +y,
    the palm facing +z, the thumb toward +x; the forearm runs down -y. ``curl`` (0-1) bends
    every finger joint toward the palm, ``spread`` (degrees) fans the fingers."""
    arm_pts = np.array(
        [[0.0, -26.0, -0.3], [0.0, -12.0, -0.2], [0.0, -0.5, 0.0], [0.0, 2.0, 0.0], [0.0, 5.5, 0.0], [0.0, 8.6, 0.0]]
    )
    arm_r = np.array([3.3, 2.9, 2.6, 3.6, 4.2, 4.1])
    flat = np.array([0.8, 0.7, 0.62, 0.42, 0.33, 0.3])
    tube = _tube(arm_pts, arm_r, _SIDES_ARM, np.array([0.0, 0.0, 1.0]), flat)
    arm = np.concatenate([tube, arm_pts[-1][None] + [0.0, 0.8, 0.0]])
    parts = [arm]
    curl = float(np.clip(curl, 0.0, 1.0))
    for f in range(5):
        base = _KNUCKLES[f].copy()
        if f == 0:  # thumb: out to the side and forward, bending across the palm
            d = np.array([0.75, 0.55, 0.35])
            bend_axis = np.array([0.3, -0.5, 0.8])
            angles = np.radians([15.0, 35.0, 45.0]) * curl
        else:
            fan = np.radians(spread) * (f - 2.5) / 2.0
            d = np.array([-np.sin(fan), np.cos(fan), 0.0])
            bend_axis = np.array([-1.0, 0.0, 0.0])  # +y toward +z
            angles = np.radians([80.0, 95.0, 65.0]) * curl
        pts = [base]
        rot = np.eye(3)
        for j, length in enumerate(_PHALANGES[f]):
            rot = _rot(rot @ bend_axis, angles[j]) @ rot if f else _rot(bend_axis, angles[j]) @ rot
            pts.append(pts[-1] + rot @ d * length)
        pts = np.array(pts)
        r = _RADII[f] * np.array([1.0, 0.92, 0.85, 0.75])
        tube = _tube(pts, r, _SIDES_FINGER, np.array([0.0, 0.0, 1.0]), 0.85)
        tip = pts[-1] + (pts[-1] - pts[-2]) / np.linalg.norm(pts[-1] - pts[-2]) * r[-1]
        parts.append(np.concatenate([tube, tip[None]]))
    return np.concatenate(parts) * float(size)


# --------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------


def _object_topology() -> tuple[int, np.ndarray, np.ndarray]:
    n = _OBJ_RINGS * _OBJ_SIDES
    faces = _tube_faces(_OBJ_RINGS, _OBJ_SIDES, tip=False)
    caps = []
    for ring in (0, _OBJ_RINGS - 1):  # fans closing both ends on an extra centre vertex each
        c = np.arange(_OBJ_SIDES) + ring * _OBJ_SIDES
        centre = n + (0 if ring == 0 else 1)
        caps.append(np.stack([c, np.roll(c, -1), np.full(_OBJ_SIDES, centre)], 1))
    v = (np.arange(_OBJ_RINGS) + 0.5) / _OBJ_RINGS
    uv = np.stack(np.meshgrid(np.linspace(0.55, 0.95, _OBJ_SIDES), v), -1).reshape(-1, 2)
    uv = np.concatenate([uv, [[0.75, 0.02], [0.75, 0.98]]])
    return n + 2, np.concatenate([faces, *caps]), uv


def object_mesh(kind: str, obj: dict[str, Any]) -> np.ndarray:
    """An object's vertices in its own frame (cm): its axis along +y from 0 (the end held or
    standing) to its length, its front (a phone's screen) toward +z."""
    ang = np.linspace(0.0, 2 * np.pi, _OBJ_SIDES, endpoint=False)
    length = float(obj["length"])
    if kind == "microphone":
        rad = float(obj["radius"])
        y = np.array([0.0, 0.02, 0.3, 0.55, 0.7, 0.74, 0.78, 0.82, 0.88, 0.94, 0.985, 1.0]) * length
        hr = np.sqrt(np.clip(1 - ((y - (length - rad)) / rad) ** 2, 0, 1)) * rad
        r = np.where(y < length - 1.6 * rad, np.interp(y, [0, 0.75 * length], [0.9, 1.4]), np.maximum(hr, 1.3))
        r[0] = 0.4
        a, b, n = r, r, 2.0
    elif kind == "phone":
        y = np.array([0.0, 0.005, 0.03, 0.1, 0.25, 0.4, 0.6, 0.75, 0.9, 0.97, 0.995, 1.0]) * length
        round_ = np.sqrt(
            np.clip(1 - (np.minimum(y, length - y) / 0.8 - 1) ** 2 * (np.minimum(y, length - y) < 0.8), 0, 1)
        )
        a = 0.5 * float(obj["width"]) * np.maximum(round_, 0.2)
        b = 0.5 * float(obj["depth"]) * np.ones_like(y)
        n = 8.0
    else:  # cup: outer wall up, rim, inner wall down
        rad = float(obj["radius"])
        y = np.array([0.0, 0.01, 0.08, 0.4, 0.8, 0.97, 1.0, 1.0, 0.97, 0.8, 0.3, 0.12]) * length
        r = np.array([0.0, 0.85, 0.93, 0.96, 1.0, 1.01, 1.0, 0.93, 0.92, 0.9, 0.86, 0.84]) * rad
        a, b, n = r, r, 2.0
    a = np.broadcast_to(a, y.shape)
    b = np.broadcast_to(b, y.shape)
    c, s = np.cos(ang), np.sin(ang)
    k = (np.abs(c) ** n + np.abs(s) ** n) ** (-1.0 / n)
    ring = np.stack(
        [a[:, None] * c * k, np.broadcast_to(y[:, None], (len(y), _OBJ_SIDES)), b[:, None] * s * k], axis=-1
    )
    ends = np.array([[0.0, y[0], 0.0], [0.0, y[-1], 0.0]])
    return np.concatenate([ring.reshape(-1, 3), ends])


# --------------------------------------------------------------------------------------------
# Placing them
# --------------------------------------------------------------------------------------------


def _frame(y_axis: Any, z_axis: Any) -> np.ndarray:
    """A rotation whose columns are x, y, z with y along ``y_axis`` and z as near ``z_axis``."""
    y = np.asarray(y_axis, np.float64)
    y = y / np.linalg.norm(y)
    z = np.asarray(z_axis, np.float64)
    z = z - (z @ y) * y
    z /= np.linalg.norm(z)
    return np.column_stack([np.cross(y, z), y, z])


def _landmarks(model: HeadModel, v: np.ndarray) -> dict[str, np.ndarray]:
    eyes = model.eye_centres(v)
    mid = eyes.mean(axis=0)
    idx = model.region_vertices(("face",))
    face = v[idx]
    nose = face[np.argmax(face[:, 2])]
    return {
        "mouth": np.array([mid[0], mid[1] - 7.2, nose[2] - 1.3]),
        "chin": np.array([mid[0], mid[1] - 12.0, nose[2] - 2.8]),
        "cheek": np.array([mid[0] + 6.6, mid[1] - 4.5, nose[2] - 6.0]),
        "ear": np.array([mid[0] + 8.0, mid[1] - 2.5, nose[2] - 12.5]),
        "nose": nose,
    }


def build_occluder(params: dict[str, Any], model: HeadModel, v_model: np.ndarray) -> dict[str, Any]:
    """The occluder of a sample, model frame (cm): ``{"prop": (V, 3)}`` for a hand and/or an
    object (:func:`prop_slot`'s vertices; a hand alone folds the object into the palm), or
    ``{"scarf": (V, 3)}`` for a raised collar or scarf."""
    kind = params["kind"]
    if kind in ("raised_collar", "scarf"):
        return {"scarf": neck_band(params, model, v_model)}
    lm = _landmarks(model, v_model)
    side = float(params["side"])
    jit = np.asarray(params["jitter"], np.float64)
    tilt = np.radians(params["tilt"])
    hand = hand_mesh(params["curl"], params["spread"], params["size"])
    if side < 0:  # a left hand: the right hand mirrored (triangles flip; the BSDF is two-sided)
        hand = hand * [-1.0, 1.0, 1.0]
    mirror = np.array([side, 1.0, 1.0])
    obj = None
    pose = params["pose"]
    if kind == "hand":
        if pose == "mouth":
            # Across the mouth, the fingers toward the far cheek.
            rot = _frame([0.9 * side, 0.25 + 0.3 * np.sin(tilt), 0.0], [0.0, 0.0, -1.0])
            palm = lm["mouth"] + [-side * 2.5, -2.8, 2.4]
        elif pose == "chin":
            rot = _frame([0.0, 0.55, -0.85], [0.0, 1.0, 0.35])
            palm = lm["chin"] + [0.0, -2.5, 0.5]
        elif pose == "cheek":
            rot = _frame([0.25 * side + 0.3 * np.sin(tilt), 1.0, 0.15], [-side, 0.0, 0.25])
            palm = lm["cheek"] * mirror + [side * 1.4, 0.0, 0.0]
        else:  # wave: raised beside the face, palm to the camera
            rot = _frame([0.25 * side + np.sin(tilt) * 0.5, 1.0, 0.0], [0.0, 0.0, 1.0])
            palm = lm["cheek"] * mirror + [side * 7.0, 3.0, 6.0]
        centre = np.array([0.0, 4.8, 0.0]) * params["size"]
        hand_w = (hand - centre) @ rot.T + palm + jit
    else:
        o = params["object"]
        mesh = object_mesh(kind, o)
        if kind == "microphone":
            head = lm["mouth"] + [0.0, -0.5, 5.5]
            axis = np.array([0.15 * side + 0.2 * np.sin(tilt), -0.85, 0.5])
            axis /= np.linalg.norm(axis)
            orot = _frame(-axis, [0.0, 0.0, 1.0])
            base = head + axis * o["length"]
            grip = base - axis * 0.3 * o["length"]
        elif kind == "phone":
            if pose == "ear":
                centre_o = lm["ear"] * mirror + [side * 2.2, 0.0, 2.0]
                axis = np.array([0.0, 0.55, 0.83])  # from the chin end to the top, along the cheek
                orot = _frame(axis, [side, 0.0, 0.0])
            else:
                centre_o = lm["chin"] + [side * 2.0, -4.0, 9.0]
                axis = np.array([np.sin(tilt) * 0.3, 0.95, 0.3])
                orot = _frame(axis, [0.0, -0.2, -1.0])  # the screen toward the face
            base = centre_o - orot[:, 1] * o["length"] / 2
            grip = base + orot[:, 1] * 0.35 * o["length"]
        else:  # cup at the lips, tipped toward the face
            axis = np.array([0.1 * side, 0.8, -0.6 + 0.2 * np.sin(tilt)])
            orot = _frame(axis, [0.0, 0.0, 1.0])
            rim = lm["mouth"] + [0.0, -1.0, 1.5]
            base = rim - orot[:, 1] * o["length"] + orot[:, 2] * o["radius"] * 0.9
            grip = base + orot[:, 1] * 0.45 * o["length"]
        obj = mesh @ orot.T + base + jit
        grip = grip + jit
        # A fist round the object: the hand's width along the object's axis, the object in the
        # curled fingers at the knuckles, the forearm going down and back toward the body.
        ax = orot[:, 1]
        forearm = np.array([0.6 * side, -1.0, 0.1]) if pose == "ear" else np.array([0.25 * side, -0.55, -0.8])
        forearm -= (forearm @ ax) * ax
        forearm /= np.linalg.norm(forearm)
        y_h = -forearm
        x_h = ax * side
        rot = np.column_stack([x_h, y_h, np.cross(x_h, y_h)])
        radius = float(o.get("radius", 0.5 * o.get("depth", 1.0) + 0.8))
        hold = np.array([0.0, 9.0, radius + 0.9]) * [1.0, params["size"], 1.0]
        hand_w = (hand - hold) @ rot.T + grip
    if obj is None:  # no object: fold it into the palm, never seen
        n_obj = _OBJ_RINGS * _OBJ_SIDES + 2
        obj = np.repeat(hand_w[_SIDES_ARM * 4 : _SIDES_ARM * 4 + 1], n_obj, axis=0)
    return {"prop": np.concatenate([hand_w, obj])}


def occluder_textures(params: dict[str, Any], skin_rgb: Any) -> dict[str, Any]:
    """Albedo, normal map and roughness of the occluder's mesh: the prop's atlas (hand skin in
    the left half, the object's colours in the right) or the band's fabric."""
    if params["kind"] in ("raised_collar", "scarf"):
        th, tw = BAND_TEXTURE
        y = (np.arange(th) + 0.5) / th * float(params["collar"])
        x = (np.arange(tw) + 0.5) / tw * 45.0
        yy, xx = np.meshgrid(y, x, indexing="ij")
        alb, hgt = fabric(params["fabric"], xx, yy)
        hgt = hgt + 0.05 * float(params["fabric"]["knit"]) * np.sin(2 * np.pi * xx / 0.5)
        return {
            "albedo": alb.astype(np.float32),
            "normalmap": normal_map(hgt, (y[1] - y[0], x[1] - x[0])),
            "roughness": float(params["fabric"]["roughness"]),
        }
    th, tw = _TEX
    alb = np.zeros((th, tw, 3))
    alb[:, : tw // 2] = np.clip(np.asarray(skin_rgb, np.float64) * np.asarray(params["skin"]), 0.0, 1.0)
    o = params.get("object")
    if o is not None:
        alb[:, tw // 2 :] = o["colour"]
        rows = (np.arange(th) + 0.5) / th
        if params["kind"] == "microphone":
            alb[rows > 0.72, tw // 2 :] = o["head"]  # the grille
        elif params["kind"] == "cup":
            alb[rows > 0.55, tw // 2 :] = np.asarray(o["colour"]) * 0.9  # the inside, a little darker
            alb[rows > 0.8, tw // 2 :] = o["head"]  # coffee
        else:
            alb[:2, tw // 2 :] = o["head"]
    hgt = np.zeros((th, tw))
    return {
        "albedo": alb.astype(np.float32),
        "normalmap": normal_map(hgt, (1.0, 1.0)),
        "roughness": float(params["roughness"]),
    }
