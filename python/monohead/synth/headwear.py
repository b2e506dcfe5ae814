"""Headwear for generator version 2: caps, beanies, brimmed hats, headbands and bandanas.

Every kind is one mesh of fixed topology (:func:`headwear_slot`): a dome (rows from the top
down to a rim, columns round the head) and a brim (rows out from the rim). The dome follows
the head it sits on: around a centre in the skull, the head's farthest skin in each direction
(binned by polar angle and azimuth, smoothed) plus an offset for the hair and the fabric; the
rim runs above the brows at the front, above the ears at the sides and down to the nape at
the back, at heights that vary by kind. A cap has a visor, a hat a brim all round, a beanie a
folded cuff, a headband or a bandana is a band (the dome's rows between two heights).
Kinds without a brim fold it onto the rim (zero area).

Scalp hair under the dome is pressed inside it (:func:`press_hair`), strands hidden entirely
are dropped. The ground truth is the head under all of it.

Units: centimetres, head model frame (x to the subject's left, y up, z out of the face).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .body import fabric, normal_map, sample_fabric
from .head_model import HeadModel
from .render import ExtraSlot

__all__ = ["KINDS", "build_headwear", "headwear_slot", "headwear_textures", "press_hair", "sample_headwear_params"]

KINDS = ("cap", "beanie", "hat", "headband", "bandana")
_KIND_P = (0.3, 0.25, 0.15, 0.15, 0.15)

# The shape of each kind: each value uniform in its range, drawn in this order (cm; degrees for
# visor_angle). Keys left out keep the defaults of sample_headwear_params.
_RANGES = {
    "cap": {
        "front": (2.4, 3.6),
        "side": (1.6, 2.6),
        "back": (-0.5, 1.0),
        "offset": (0.4, 0.8),
        "crown": (0.3, 1.2),
        "brim": (5.5, 8.0),
        "visor_angle": (55.0, 75.0),
        "droop": (0.3, 1.5),
    },
    "beanie": {
        "front": (1.8, 3.5),
        "side": (-0.5, 1.5),
        "back": (-4.0, -2.0),
        "offset": (0.5, 1.0),
        "crown": (0.0, 3.0),
    },
    "hat": {
        "front": (2.6, 3.8),
        "side": (2.0, 3.0),
        "back": (0.0, 1.5),
        "offset": (0.5, 0.9),
        "crown": (2.0, 5.0),
        "brim": (3.5, 9.0),
        "droop": (-0.5, 2.0),
    },
    "headband": {
        "front": (3.2, 5.0),
        "side": (2.5, 4.0),
        "back": (1.0, 3.0),
        "offset": (0.25, 0.6),
        "band": (1.0, 5.0),
    },
    "bandana": {"front": (2.5, 4.0), "side": (1.0, 2.5), "back": (-3.5, -1.5), "offset": (0.2, 0.5)},
}

_ROWS, _COLS, _BRIM_ROWS = 14, 49, 5
_TEX = (64, 128)
_BINS_T, _BINS_P = 24, 48
_T_MAX = np.radians(125.0)


def sample_headwear_params(rng: np.random.Generator, probability: float = 0.25) -> dict[str, Any] | None:
    """Random headwear (JSON-able) or ``None`` (with probability ``1 - probability``).

    Keys: ``kind`` (:data:`KINDS`), ``front``/``side``/``back`` (rim heights above the eyes'
    centres, cm), ``band`` (a band's height, cm), ``offset`` (cm off the head), ``crown``
    (extra height at the top, cm), ``brim`` (cm), ``visor_angle`` (degrees either side of the
    front), ``droop`` (cm), ``yaw`` (the visor's turn, degrees), ``fabric``.
    """
    if rng.random() >= probability:
        return None
    kind = str(rng.choice(KINDS, p=np.array(_KIND_P) / sum(_KIND_P)))
    fab = sample_fabric(rng, plain=0.6)
    out: dict[str, Any] = {
        "kind": kind,
        "front": 3.2,
        "side": 1.5,
        "back": -2.5,
        "band": 0.0,
        "offset": 0.5,
        "crown": 0.0,
        "brim": 0.0,
        "visor_angle": 0.0,
        "droop": 0.0,
        "yaw": 0.0,
        "fabric": fab,
    }
    if kind == "beanie":
        fab["knit"] = float(rng.uniform(0.5, 1.0))
    elif kind == "bandana":
        fab["pattern"] = "print" if rng.random() < 0.6 else fab["pattern"]
    out.update({key: float(rng.uniform(lo, hi)) for key, (lo, hi) in _RANGES[kind].items()})
    if kind == "cap":
        out["yaw"] = float(0.0 if rng.random() < 0.8 else rng.choice([180.0, rng.uniform(-40, 40)]))
    elif kind == "hat":
        out["visor_angle"] = 180.0  # a brim all round
    return out


def headwear_slot() -> ExtraSlot:
    """The renderer's mesh slot for headwear: dome rows then brim rows, ``_COLS`` columns."""
    rows = _ROWS + _BRIM_ROWS
    u = np.linspace(0.0, 1.0, _COLS)
    v = np.concatenate([np.linspace(0.0, 0.78, _ROWS), np.linspace(0.82, 1.0, _BRIM_ROWS)])
    uv = np.stack(np.meshgrid(u, v), axis=-1).reshape(-1, 2).astype(np.float32)
    r, c = np.mgrid[0 : rows - 1, 0 : _COLS - 1]
    r, c = r[r != _ROWS - 1].reshape(-1), c[r != _ROWS - 1].reshape(-1)  # no cell between dome and brim
    a = r * _COLS + c
    faces = np.concatenate([np.stack([a, a + _COLS, a + 1], 1), np.stack([a + 1, a + _COLS, a + _COLS + 1], 1)])
    return ExtraSlot("headwear", faces.astype(np.int64), uv, _TEX)


def _skull(model: HeadModel, v: np.ndarray) -> tuple[np.ndarray, float]:
    """A centre inside the skull (cm) and the eyes' height."""
    eye_y = float(model.eye_centres(v)[:, 1].mean())
    idx = model.region_vertices(("face", "head_and_neck"))
    p = v[idx]
    top = p[p[:, 1] > eye_y]
    lo, hi = top.min(axis=0), top.max(axis=0)
    return np.array([(lo[0] + hi[0]) / 2, eye_y + 0.5, (lo[2] + hi[2]) / 2 - 0.8]), eye_y


def _extent(model: HeadModel, v: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Farthest skin from ``centre`` per (polar, azimuth) bin, ``(_BINS_T, _BINS_P)`` cm."""
    idx = model.region_vertices(("face", "head_and_neck"))
    d = v[idx] - centre
    r = np.linalg.norm(d, axis=1)
    theta = np.arccos(np.clip(d[:, 1] / np.maximum(r, 1e-9), -1, 1))
    psi = np.arctan2(d[:, 0], d[:, 2])
    keep = theta < _T_MAX
    bt = np.minimum((theta[keep] / _T_MAX * _BINS_T).astype(int), _BINS_T - 1)
    bp = ((psi[keep] + np.pi) / (2 * np.pi) * _BINS_P).astype(int) % _BINS_P
    ext = np.zeros((_BINS_T, _BINS_P))
    np.maximum.at(ext, (bt, bp), r[keep])
    ext = ndimage.grey_dilation(ext, size=(3, 3), mode="wrap")
    empty = ext == 0
    if empty.any():
        ext[empty] = np.median(ext[~empty]) if (~empty).any() else 9.0
    return ndimage.gaussian_filter(ext, (1.0, 1.0), mode="wrap")


def _lookup(ext: np.ndarray, theta: np.ndarray, psi: np.ndarray) -> np.ndarray:
    t = np.clip(theta / _T_MAX * _BINS_T - 0.5, 0, _BINS_T - 1)
    p = ((psi + np.pi) / (2 * np.pi) * _BINS_P - 0.5) % _BINS_P
    return ndimage.map_coordinates(np.pad(ext, ((0, 0), (0, 1)), mode="wrap"), [t, p], order=1, mode="nearest")


def _rim_height(params: dict[str, Any], psi: np.ndarray, eye_y: float) -> np.ndarray:
    """Rim height (cm) by azimuth (0 = front): front, sides and back blended smoothly."""
    c = np.cos(psi)
    front, side, back = params["front"], params["side"], params["back"]
    return eye_y + np.where(c > 0, side + (front - side) * c**2, side + (back - side) * c**2)


def build_headwear(params: dict[str, Any], model: HeadModel, v_model: np.ndarray) -> dict[str, Any]:
    """The headwear of a sample in the model frame.

    Returns ``vertices`` ``((_ROWS + _BRIM_ROWS) * _COLS, 3)`` cm, ``centre`` (3,), the
    ``extent`` grid and ``rim`` (its azimuths' rim heights), for :func:`press_hair`.
    """
    centre, eye_y = _skull(model, v_model)
    ext = _extent(model, v_model, centre)
    psi = np.linspace(-np.pi, np.pi, _COLS)
    rim_y = _rim_height(params, psi, eye_y)
    mean_r = _lookup(ext, np.full_like(psi, np.radians(80.0)), psi)
    theta_rim = np.arccos(np.clip((rim_y - centre[1]) / mean_r, -0.95, 0.97))
    if params["kind"] == "headband":
        theta_top = np.arccos(np.clip((rim_y + params["band"] - centre[1]) / mean_r, -0.95, 0.99))
    else:
        theta_top = np.zeros_like(psi)
    s = np.linspace(0.0, 1.0, _ROWS)[:, None]
    theta = theta_top[None] + (theta_rim - theta_top)[None] * (s**0.8 if params["kind"] != "headband" else s)
    pp = np.broadcast_to(psi[None], theta.shape)
    r = _lookup(ext, theta.ravel(), pp.ravel()).reshape(theta.shape)
    # Extra height at the top, rounded (no cone at the pole).
    off = (
        params["offset"] + params["crown"] * (1.0 - np.clip(theta / np.maximum(theta_rim[None], 1e-3), 0, 1) ** 2) ** 2
    )
    if params["kind"] == "beanie":  # the folded cuff stands off a little
        off = off + 0.35 * (s > 0.8)
    r = r + off
    dirs = np.stack([np.sin(theta) * np.sin(pp), np.cos(theta), np.sin(theta) * np.cos(pp)], axis=-1)
    dome = centre + r[..., None] * dirs
    if params["kind"] == "hat":  # a flatter top
        top_y = centre[1] + np.percentile(r[0], 50) + params["crown"] * 0.3
        dome[..., 1] = np.minimum(dome[..., 1], top_y)
    rim = dome[-1]
    outward = np.stack([np.sin(psi), np.zeros_like(psi), np.cos(psi)], axis=-1)
    yaw = np.radians(params.get("yaw", 0.0))
    rel = np.angle(np.exp(1j * (psi - yaw)))
    half = np.radians(max(params["visor_angle"], 1e-3))
    width = params["brim"] * np.sqrt(np.clip(1.0 - (rel / half) ** 2, 0.0, 1.0))
    if params["kind"] == "hat":
        width = np.full_like(psi, params["brim"])
    w = np.linspace(0.0, 1.0, _BRIM_ROWS)[:, None] * width[None]
    brim = (
        rim[None]
        + w[..., None] * outward[None]
        - (params["droop"] * (w / np.maximum(width.max(), 1e-3)) ** 2)[..., None] * [0, 1, 0]
    )
    verts = np.concatenate([dome, brim]).reshape(-1, 3)
    return {
        "vertices": verts,
        "centre": centre,
        "extent": ext,
        "theta_rim": theta_rim,
        "theta_top": theta_top,
        "offset": float(params["offset"]),
    }


def press_hair(strands: np.ndarray, hat: dict[str, Any]) -> np.ndarray:
    """Scalp hair under a hat: control points under the dome (polar angle above the rim) are
    pulled inside it; strands hidden from root to tip are dropped. ``strands`` ``(N, K, 4)``
    cm, model frame."""
    if not len(strands):
        return strands
    p = strands[..., :3]
    d = p - hat["centre"]
    r = np.linalg.norm(d, axis=-1)
    theta = np.arccos(np.clip(d[..., 1] / np.maximum(r, 1e-9), -1, 1))
    psi = np.arctan2(d[..., 0], d[..., 2])
    cols = len(hat["theta_rim"])
    grid = np.linspace(-np.pi, np.pi, cols)
    rim = np.interp(psi, grid, hat["theta_rim"])
    top = np.interp(psi, grid, hat["theta_top"])
    under = (theta < rim) & (theta >= top)
    limit = _lookup(hat["extent"], theta.ravel(), psi.ravel()).reshape(theta.shape) + hat["offset"] - 0.15
    scale = np.where(under & (r > limit), limit / np.maximum(r, 1e-9), 1.0)
    out = strands.copy()
    out[..., :3] = hat["centre"] + d * scale[..., None]
    hidden = under[:, 1:].all(axis=1)
    return out[~hidden]


def headwear_textures(params: dict[str, Any]) -> dict[str, Any]:
    """Albedo, normal map and roughness of the headwear (``(64, 128)`` texels; rows 0-0.8 of
    the texture are the dome from top to rim, the rest the brim)."""
    th, tw = _TEX
    v = (np.arange(th) + 0.5) / th
    u = (np.arange(tw) + 0.5) / tw
    vv, uu = np.meshgrid(v, u, indexing="ij")
    x, y = uu * 60.0, vv * 24.0
    alb, hgt = fabric(params["fabric"], x, y)
    kind = params["kind"]
    dome = vv < 0.8
    if kind == "cap":
        seams = dome & (np.abs(((uu * 6) % 1.0) - 0.5) > 0.47)
        hgt = hgt + seams * 0.08
        button = vv < 0.04
        alb = np.where(button[..., None], alb * 0.7, alb)
        brim_col = np.asarray(params["fabric"]["colour2"]) if params["fabric"]["pattern"] == "solid" else alb
        alb = np.where(~dome[..., None], brim_col * np.ones_like(alb), alb)
    elif kind == "beanie":
        cuff = dome & (vv > 0.62)
        hgt = hgt + 0.05 * np.sin(2 * np.pi * x / 0.4) + cuff * 0.1
        alb = np.where(cuff[..., None], alb * 0.9, alb)
    elif kind == "hat":
        band = dome & (vv > 0.66)
        alb = np.where(band[..., None], np.asarray(params["fabric"]["colour3"]) * np.ones_like(alb), alb)
    return {
        "albedo": alb.astype(np.float32),
        "normalmap": normal_map(hgt, (24.0 / th, 60.0 / tw)),
        "roughness": float(params["fabric"]["roughness"]),
    }
