"""Procedural textures: skin albedo in the head model's UV space, and eyeballs with irises.

Both textures are painted in texture space from the *neutral* 3D position of each texel, so
that features land where they belong on every head (lips around the mouth, stubble on the
jaw, brows above the eyes): :class:`TextureSpace` rasterises the model's UV layout once and
keeps, per texel, the region and the neutral position; :func:`skin_albedo` and
:func:`eye_albedo` then paint a new texture per sample in a few milliseconds.

Skin atlas layout: ICT-FaceKit puts the face in UV tile ``u in [0, 1)`` and the rest of the
head (scalp, neck, ears, mouth and eye sockets) in tile ``[1, 2)``; the atlas is both tiles
side by side, ``(h, 2h)`` texels, ``u_atlas = u / 2``. Image row 0 is ``v = 1`` (top).
Colours are linear RGB albedos in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .head_model import HeadModel

__all__ = [
    "SKIN_TONES",
    "TextureSpace",
    "eye_albedo",
    "sample_eye_params",
    "sample_skin_params",
    "skin_albedo",
    "warm_skin_tone",
]

# sRGB skin tones from very light to very dark (a ten-step scale), for the base albedo.
SKIN_TONES = np.array(
    [
        [246, 237, 228],
        [243, 231, 219],
        [247, 234, 208],
        [234, 218, 186],
        [215, 189, 150],
        [160, 126, 86],
        [130, 92, 67],
        [96, 65, 52],
        [58, 49, 42],
        [41, 36, 32],
    ],
    dtype=np.float64,
)

# Iris base colours (sRGB): brown, dark brown, hazel, amber, green, blue, grey, light blue.
IRIS_COLOURS = np.array(
    [
        [99, 57, 30],
        [56, 33, 20],
        [125, 95, 50],
        [150, 105, 40],
        [88, 120, 70],
        [70, 110, 160],
        [120, 130, 135],
        [120, 160, 200],
    ],
    dtype=np.float64,
)


def srgb_to_linear(c: Any) -> np.ndarray:
    """sRGB values in [0, 1] to linear RGB (IEC 61966-2-1)."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: Any) -> np.ndarray:
    """Linear RGB in [0, 1] to sRGB values in [0, 1] (IEC 61966-2-1)."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def rasterize_triangles(tri_xy: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Which triangle covers each texel centre, and where.

    Args:
        tri_xy: ``(T, 3, 2)`` corner positions in texel units (x to the right, y down; texel
            ``(r, c)`` has its centre at ``(c + 0.5, r + 0.5)``).
        height, width: the grid.

    Returns:
        ``(index (H, W) int64, bary (H, W, 3) float64)``: the covering triangle (-1 if none;
        the later triangle wins where several cover) and the barycentric coordinates.
    """
    lo = np.floor(tri_xy.min(axis=1) - 0.5).astype(np.int64) + 1
    hi = np.floor(tri_xy.max(axis=1) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi[:, 0] = np.minimum(hi[:, 0], width - 1)
    hi[:, 1] = np.minimum(hi[:, 1], height - 1)
    nx = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    ny = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    count = nx * ny
    tri = np.repeat(np.arange(len(tri_xy)), count)
    start = np.repeat(np.cumsum(count) - count, count)
    k = np.arange(count.sum()) - start
    cx = lo[tri, 0] + k % nx[tri]
    cy = lo[tri, 1] + k // nx[tri]
    px, py = cx + 0.5, cy + 0.5
    a, b, c = tri_xy[tri, 0], tri_xy[tri, 1], tri_xy[tri, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    w0 = (b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)
    w1 = (c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)
    w2 = (a[:, 0] - px) * (b[:, 1] - py) - (a[:, 1] - py) * (b[:, 0] - px)
    ok = area != 0
    safe = np.where(ok, area, 1.0)
    w0, w1, w2 = w0 / safe, w1 / safe, w2 / safe
    eps = -1e-9
    inside = ok & (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    index = np.full((height, width), -1, np.int64)
    bary = np.zeros((height, width, 3))
    index[cy[inside], cx[inside]] = tri[inside]
    bary[cy[inside], cx[inside]] = np.column_stack([w0, w1, w2])[inside]
    return index, bary


def _texel_positions(
    tri_xy: np.ndarray, face_ids: np.ndarray, faces: np.ndarray, vertices: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each texel of a ``(height, width)`` atlas lies on the mesh.

    The triangles ``tri_xy`` ``(F, 3, 2)`` (texel units) are rasterised
    (:func:`rasterize_triangles`); texels outside every triangle (the gutter between UV islands)
    take the nearest covered texel's triangle and barycentrics, so textures have no dark seams.

    Returns:
        ``(index (H, W) int, position (H, W, 3) float64, covered (H, W) bool)``: the triangle
        (an index into ``tri_xy`` and ``face_ids``), the point of the mesh (``vertices`` of
        ``faces[face_ids[index]]``) and whether a triangle covered the texel itself.
    """
    index, bary = rasterize_triangles(tri_xy, height, width)
    covered = index >= 0
    _, (ir, ic) = ndimage.distance_transform_edt(~covered, return_indices=True)
    index, bary = index[ir, ic], bary[ir, ic]
    position = np.einsum("hwk,hwkc->hwc", bary, vertices[faces[face_ids[index]]])
    return index, position, covered


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class TextureSpace:
    """The model's texture layout, rasterised once: per texel, region and neutral position.

    Args:
        model: the :class:`~monohead.synth.head_model.HeadModel`.
        height: skin atlas height in texels (the atlas is ``(height, 2 * height)``).
        eye_size: eyeball texture size in texels (square).

    Attributes:
        skin_uv, eye_uv: per-corner atlas coordinates ``(F, 3, 2)`` of the skin and eye
            triangles, Mitsuba's convention (``u`` right, ``v`` down from the top row).
        masks: soft ``(height, 2 * height)`` float32 maps in [0, 1] named ``lips``, ``brows``,
            ``beard``, ``cheeks``, ``freckles``, ``scalp``, ``lashes``, ``mouth``, ``socket``,
            ``valid``.
    """

    def __init__(self, model: HeadModel, height: int = 256, eye_size: int = 128) -> None:
        self.height = int(height)
        self.width = 2 * self.height
        self.eye_size = int(eye_size)
        self._bank: dict[tuple[str, int, int], np.ndarray] = {}
        v = model.neutral.astype(np.float64)
        uv = model.uv
        skin = model.region_faces(
            ["face", "head_and_neck", "mouth_socket", "eye_socket_left", "eye_socket_right", "cap"]
        )
        eyes = model.region_faces(["eyeball_left", "eyeball_right"])
        self.skin_faces = np.nonzero(skin)[0]
        self.eye_faces = np.nonzero(eyes)[0]
        suv = uv[model.corner_uv[self.skin_faces]].copy()  # (Fs, 3, 2), upstream tiles
        suv[..., 0] = np.clip(suv[..., 0], 0.0, 2.0) / 2.0
        suv[..., 1] = 1.0 - suv[..., 1]
        self.skin_uv = suv
        euv = uv[model.corner_uv[self.eye_faces]].copy()
        euv[..., 0] = euv[..., 0] - np.floor(euv[..., 0].mean())
        euv[..., 1] = 1.0 - euv[..., 1]
        self.eye_uv = euv

        # Skin: texel -> triangle -> neutral position and region.
        tri_xy = suv * np.array([self.width, self.height])
        index, pos, valid = _texel_positions(tri_xy, self.skin_faces, model.faces, v, self.height, self.width)
        region = np.array(model.region_names)[model.face_region[self.skin_faces[index]]]
        self.position = pos.astype(np.float32)
        self.masks = self._skin_masks(model, v, pos, region, valid)
        self.support: dict[str, tuple[slice, slice]] = {}
        for name, mask in self.masks.items():
            rr, cc = np.nonzero(mask > 0)
            self.support[name] = (
                (slice(rr.min(), rr.max() + 1), slice(cc.min(), cc.max() + 1))
                if rr.size
                else (slice(0, 0), slice(0, 0))
            )

        # Eyes: the angle from each eyeball's optical axis (+z through its centre).
        _, epos, _ = _texel_positions(euv * self.eye_size, self.eye_faces, model.faces, v, self.eye_size, self.eye_size)
        centres = model.eye_centres(v)
        side = (epos[..., 0] < 0).astype(np.int64)  # 0: left eye (x > 0), 1: right eye
        rel = epos - centres[side]
        r = np.linalg.norm(rel, axis=-1)
        self.eye_angle = np.arccos(np.clip(rel[..., 2] / np.maximum(r, 1e-9), -1.0, 1.0)).astype(np.float32)
        self.eye_azimuth = np.arctan2(rel[..., 1], rel[..., 0]).astype(np.float32)

    def noise(self, rng: np.random.Generator, kind: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """A random view of a periodic noise texture from a bank made once per space.

        Kinds: ``"low"`` (blotches), ``"mid"``, ``"fine"`` (zero-mean smooth noise in about
        [-1, 1] at three scales), ``"dots"`` (hair roots, in [0, 1]), ``"spots"`` (freckles, in
        [0, 1]). Views are random periodic shifts and flips of one of four bank textures, so
        the noise is seamless and costs a copy.
        """
        h, w = shape or (self.height, self.width)
        key = (kind, h, w)
        bank = self._bank.get(key)
        if bank is None:
            bank_rng = np.random.default_rng(12345 + len(kind) + h)
            scale = h / 256.0
            out = []
            for _ in range(4):
                if kind == "dots":
                    t = ndimage.gaussian_filter(bank_rng.random((h, w)), 0.45 * scale, mode="wrap")
                    t = np.clip((t - 0.5) * 6.0 + 0.5, 0, 1)
                elif kind == "spots":
                    t = np.zeros((h, w))
                    n = int(6000 * scale * scale)
                    t[bank_rng.integers(0, h, n), bank_rng.integers(0, w, n)] = bank_rng.uniform(0.5, 1.0, n)
                    t = np.clip(ndimage.gaussian_filter(t, 0.6 * scale, mode="wrap") * 5.0 * max(scale, 1.0), 0, 1)
                else:
                    sigma = {"low": 24.0, "mid": 8.0, "fine": 2.5}[kind] * scale
                    t = ndimage.gaussian_filter(bank_rng.standard_normal((h, w)), sigma, mode="wrap")
                    t /= 2.5 * t.std() + 1e-12
                out.append(t.astype(np.float32))
            bank = self._bank[key] = np.stack(out)
        t = bank[rng.integers(len(bank))]
        t = np.roll(t, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
        if rng.random() < 0.5:
            t = t[::-1]
        return t

    def _skin_masks(
        self, model: HeadModel, v: np.ndarray, pos: np.ndarray, region: np.ndarray, valid: np.ndarray
    ) -> dict[str, np.ndarray]:
        x, y, z = pos[..., 0], pos[..., 1], pos[..., 2]
        face_v = np.unique(model.faces[model.region_faces(["face"])])
        mouth_v = np.unique(model.faces[model.region_faces(["mouth_socket"])])
        lip_line = v[np.intersect1d(face_v, mouth_v)]
        mouth_c = lip_line.mean(axis=0)
        half_w = np.abs(lip_line[:, 0]).max()
        eyes = model.eye_centres(v)
        eye_y, eye_x = eyes[0, 1], abs(eyes[0, 0])
        nose_tip = v[face_v[np.argmax(v[face_v, 2])]]
        front = _smoothstep(mouth_c[2] - 3.5, mouth_c[2] - 1.5, z)
        is_face = np.isin(region, ["face", "head_and_neck", "cap"])

        # Lips: an ellipse around the mouth, taller below the line than above.
        dy = np.where(y > mouth_c[1], (y - mouth_c[1]) / 1.0, (mouth_c[1] - y) / 1.25)
        e = np.sqrt(((x - mouth_c[0]) / (half_w + 0.35)) ** 2 + dy**2)
        lips = (1.0 - _smoothstep(0.75, 1.0, e)) * front * is_face
        # Brows: an arched band above each eye, on the front of the face.
        ax = np.abs(x)
        arch = eye_y + 1.45 + 0.3 * (1.0 - np.clip((ax - eye_x) / 2.2, -1.0, 1.0) ** 2)
        brows = (
            (1.0 - _smoothstep(0.3, 0.6, np.abs(y - arch)))
            * (1.0 - _smoothstep(eye_x + 1.7, eye_x + 2.4, ax))
            * _smoothstep(0.6, 1.1, ax)
            * _smoothstep(3.0, 5.0, z)
            * is_face
        )
        # Beard: below the nose, on the cheeks' lower half, the jaw and chin and under it,
        # in front of the ears, not the lips; sideburns up to eye level.
        chin_y = mouth_c[1] - 4.7
        beard = (
            (1.0 - _smoothstep(nose_tip[1] - 1.6, nose_tip[1] - 0.9, y))
            * _smoothstep(chin_y - 2.5, chin_y - 1.0, y)
            * _smoothstep(-1.0, 1.0, z)
            * (1.0 - _smoothstep(eye_y - 3.6, eye_y - 2.6, y) * _smoothstep(1.5, 3.0, ax))
        )
        sideburns = (
            _smoothstep(5.8, 6.6, ax)
            * (1.0 - _smoothstep(eye_y - 0.5, eye_y + 0.5, y))
            * _smoothstep(-1.0, 0.0, z)
            * (1.0 - _smoothstep(2.5, 4.0, z))
        )
        beard = np.maximum(beard, sideburns) * (1.0 - lips) * is_face
        # Cheeks and nose: where skin flushes and freckles gather.
        cheeks = np.zeros_like(x)
        for sx in (-1.0, 1.0):
            d2 = ((x - sx * (eye_x + 0.3)) / 2.2) ** 2 + ((y - (eye_y - 3.0)) / 1.8) ** 2
            cheeks += np.exp(-d2) * front
        nose = np.exp(-((x / 1.6) ** 2) - ((y - nose_tip[1] - 1.0) / 2.5) ** 2) * _smoothstep(
            nose_tip[2] - 4, nose_tip[2] - 1.5, z
        )
        freckles = np.clip(cheeks + nose + 0.5 * _smoothstep(eye_y + 2, eye_y + 5, y) * front, 0, 1) * is_face
        # Scalp: above the hairline (front), the temples and the back of the head.
        hairline = np.where(z > 4.0, eye_y + 5.2, np.where(z > 0.0, eye_y + 2.0 - 0.0 * z, eye_y - 6.0))
        scalp = _smoothstep(hairline - 0.3, hairline + 0.6, y) * np.isin(region, ["face", "head_and_neck"])
        ears = (np.abs(x) > 7.3) & (y > -1.0) & (y < eye_y + 2.0) & (z < 2.5)
        scalp = np.where(ears, 0.0, scalp)
        # Lash line: the skin along the eyelid margins (where the face meets the eye sockets),
        # darker on the upper lid.
        from scipy.spatial import cKDTree

        sock_v = np.unique(model.faces[model.region_faces(["eye_socket_left", "eye_socket_right"])])
        margin = v[np.intersect1d(face_v, sock_v)]
        dist, near = cKDTree(margin).query(pos.reshape(-1, 3))
        dist = dist.reshape(x.shape)
        upper = y > margin[near.reshape(x.shape), 1] - 0.05
        lash = (1.0 - _smoothstep(0.05, 0.16 + 0.08 * upper, dist)) * np.where(upper, 1.0, 0.45) * (region == "face")
        return {
            "lashes": lash.astype(np.float32),
            "lips": lips.astype(np.float32),
            "brows": brows.astype(np.float32),
            "beard": np.clip(beard, 0, 1).astype(np.float32),
            "cheeks": np.clip(cheeks, 0, 1).astype(np.float32),
            "freckles": freckles.astype(np.float32),
            "scalp": scalp.astype(np.float32),
            "mouth": (region == "mouth_socket").astype(np.float32),
            "socket": np.isin(region, ["eye_socket_left", "eye_socket_right"]).astype(np.float32),
            "valid": valid.astype(np.float32),
        }


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def sample_skin_params(rng: np.random.Generator, sex: str | None = None) -> dict[str, Any]:
    """Random skin: tone (0 light to 1 dark), sex, features and material (JSON-able)."""
    if sex is None:
        sex = "female" if rng.random() < 0.5 else "male"
    tone = float(rng.beta(1.3, 1.6))
    male = sex == "male"
    return {
        "sex": sex,
        "tone": tone,
        "tint": [float(t) for t in rng.normal(0.0, 0.025, 3)],
        "redness": float(rng.uniform(0.0, 0.6)),
        "lip_redness": float(rng.uniform(0.2, 0.9) * (1.0 if male else 1.3)),
        "stubble": float(rng.uniform(0.2, 1.0)) if male and rng.random() < 0.6 else 0.0,
        "freckles": float(rng.uniform(0.3, 1.0)) if rng.random() < 0.25 * (1.5 - tone) else 0.0,
        "blotches": float(rng.uniform(0.0, 1.0)),
        "brow_darkness": float(rng.uniform(0.3, 0.9) * (1.15 if male else 1.0)),
        "roughness": float(rng.uniform(0.45, 0.8)),
        "specular": float(rng.uniform(0.2, 0.5)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def sample_eye_params(rng: np.random.Generator) -> dict[str, Any]:
    """Random eyes: iris colour (sRGB in [0, 1]), pupil and iris size, material."""
    base = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] / 255.0
    colour = np.clip(base * rng.uniform(0.8, 1.2) + rng.normal(0, 0.03, 3), 0, 1)
    return {
        "iris_rgb": [float(c) for c in colour],
        "iris_radius": float(rng.uniform(0.52, 0.6)),
        "pupil_radius": float(rng.uniform(0.16, 0.26)),
        "sclera_rgb": [float(c) for c in np.clip(np.array([0.93, 0.9, 0.87]) + rng.normal(0, 0.02, 3), 0, 1)],
        "roughness": float(rng.uniform(0.03, 0.12)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


# --------------------------------------------------------------------------------------------
# Painting
# --------------------------------------------------------------------------------------------


WARM_HUE = 18.0
"""Hue (degrees) that :func:`warm_skin_tone` draws skin toward: the median hue of skin-coloured
pixels in the centres of the real photos of ``shared/data/real-photos`` is 17°."""


def warm_skin_tone(srgb: Any) -> np.ndarray:
    """Generator version 3's skin base colour from a :data:`SKIN_TONES` colour (sRGB in [0, 1]):
    hue 60 % of the way to :data:`WARM_HUE`, saturation ``s + 0.12 (1 - s)``, value kept.

    The tones are a scale of skin as it appears in photos, and the lightest are nearly white
    (``(246, 237, 228)``: saturation 7 %, hue 30°); used as an albedo under the renderer's
    exposure they gave grey-white or yellow, clay-like faces (median hue 32° and saturation
    0.32 of skin-coloured pixels in the preview's centres, against 17° and 0.38 in the photos).
    """
    c = np.asarray(srgb, np.float64)
    mx, mn = c.max(axis=-1), c.min(axis=-1)
    v = mx
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-12), 0.0)
    d = np.maximum(mx - mn, 1e-12)
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    h = np.where(mx == r, (g - b) / d % 6.0, np.where(mx == g, (b - r) / d + 2.0, (r - g) / d + 4.0)) * 60.0
    h = np.where(mx - mn > 1e-12, h, WARM_HUE)
    h = np.where(h > 180.0, h - 360.0, h)
    h = WARM_HUE + 0.4 * (h - WARM_HUE)
    sat = sat + 0.12 * (1.0 - sat)
    # HSV back to RGB.
    hp = (h % 360.0) / 60.0
    chroma = v * sat
    x = chroma * (1.0 - np.abs(hp % 2.0 - 1.0))
    zero = np.zeros_like(chroma)
    sector = np.floor(hp).astype(int) % 6
    table = [
        (chroma, x, zero),
        (x, chroma, zero),
        (zero, chroma, x),
        (zero, x, chroma),
        (x, zero, chroma),
        (chroma, zero, x),
    ]
    out = np.zeros(c.shape, np.float64)
    for k, (rr, gg, bb) in enumerate(table):
        sel = sector == k
        out[..., 0] = np.where(sel, rr, out[..., 0])
        out[..., 1] = np.where(sel, gg, out[..., 1])
        out[..., 2] = np.where(sel, bb, out[..., 2])
    return out + (v - chroma)[..., None]


def skin_albedo(
    space: TextureSpace, params: dict[str, Any], hair_rgb: Any = None, scalp_hair: float = 0.0, warm: bool = False
) -> np.ndarray:
    """Paint a skin albedo in the atlas.

    Args:
        space: the :class:`TextureSpace`.
        params: from :func:`sample_skin_params`.
        hair_rgb: linear RGB of the hair (tints brows, lashes, stubble and the scalp), default
            dark brown.
        scalp_hair: 0..1, how much the scalp shows hair roots (a buzz cut is about 0.8).
        warm: the base colour through :func:`warm_skin_tone` (generator version 3).

    Returns:
        ``(h, 2h, 3)`` float32 linear albedo in [0, 1].
    """
    rng = np.random.default_rng(params["seed"])
    m = space.masks
    tone = float(params["tone"])
    pos = np.clip(tone * (len(SKIN_TONES) - 1), 0, len(SKIN_TONES) - 1)
    i0 = int(np.floor(pos))
    i1 = min(i0 + 1, len(SKIN_TONES) - 1)
    srgb = (SKIN_TONES[i0] * (1 - (pos - i0)) + SKIN_TONES[i1] * (pos - i0)) / 255.0
    if warm:
        srgb = warm_skin_tone(srgb)
    base = srgb_to_linear(np.clip(srgb + np.asarray(params["tint"]), 0, 1)).astype(np.float32)
    hair = np.array([0.03, 0.02, 0.012] if hair_rgb is None else hair_rgb, np.float32)

    def mix(img: np.ndarray, colour: Any, name: str, weight: Any = 1.0) -> None:
        """Blend ``colour`` into ``img`` in place with ``masks[name] * weight``, over the
        mask's support only (most masks cover a small part of the atlas)."""
        rows, cols = space.support[name]
        wgt = m[name][rows, cols]
        if not np.isscalar(weight):
            weight = weight[rows, cols]
        wgt = (wgt * weight)[..., None]
        col = np.asarray(colour, np.float32)
        if col.ndim == 3:
            col = col[rows, cols]
        img[rows, cols] = img[rows, cols] * (1.0 - wgt) + col * wgt

    # Blotches: low-frequency variation of brightness and redness.
    b = float(params["blotches"])
    lum = 1.0 + 0.1 * b * space.noise(rng, "low") + 0.06 * b * space.noise(rng, "mid")
    red = np.clip(params["redness"] * (0.6 * m["cheeks"] + 0.25 + 0.2 * space.noise(rng, "low")), 0.0, None)
    tint = np.array([0.12, -0.10, -0.08], np.float32)
    albedo = base * (lum[..., None] * (1.0 + red[..., None] * tint))
    # Lips.
    lr = float(params["lip_redness"])
    lip_rgb = (
        base * np.array([1.0, 0.6, 0.62], np.float32) * (1.0 - 0.2 * lr) + np.array([0.05, 0.0, 0.01], np.float32) * lr
    )
    mix(albedo, lip_rgb, "lips", 0.85 + 0.15 * space.noise(rng, "fine"))
    # Freckles: small dark-brown spots where the sun reaches.
    if params["freckles"] > 0:
        spots = space.noise(rng, "spots") * (params["freckles"] * m["freckles"])
        albedo *= 1.0 - spots[..., None] * np.array([0.35, 0.45, 0.55], np.float32)
    # Brows and the lash line: hair-coloured streaks.
    streak = np.clip(0.75 + 0.6 * space.noise(rng, "fine"), 0, 1)
    mix(albedo, hair, "brows", float(params["brow_darkness"]) * streak)
    mix(albedo, hair * 0.6, "lashes", 0.85)
    # Stubble: fine dark dots on the beard area, toward the hair colour.
    if params["stubble"] > 0:
        dots = space.noise(rng, "dots")
        mix(albedo, hair, "beard", 0.8 * float(params["stubble"]) * (0.4 + 0.6 * dots))
    # Scalp under hair: roots darken it.
    if scalp_hair > 0:
        dots = space.noise(rng, "dots")
        mix(albedo, hair, "scalp", 0.9 * scalp_hair * (0.45 + 0.55 * dots))
    # Inside the mouth and the eye sockets.
    mix(albedo, np.array([0.25, 0.045, 0.04]) * (0.6 + 0.4 * (1 - tone)), "mouth")
    mix(albedo, base * np.array([1.0, 0.6, 0.6], np.float32), "socket")
    return np.clip(albedo, 0.0, 1.0).astype(np.float32)


def eye_albedo(space: TextureSpace, params: dict[str, Any]) -> np.ndarray:
    """Paint the eyeballs: sclera with faint veins, an iris of random colour with radial
    fibres and a dark limbal ring, and the pupil.

    Angles are measured from each eyeball's optical axis; the iris and pupil radii in
    ``params`` are in radians of that angle.

    Returns:
        ``(s, s, 3)`` float32 linear albedo in [0, 1].
    """
    rng = np.random.default_rng(params["seed"])
    a = space.eye_angle.astype(np.float64)
    phi = space.eye_azimuth.astype(np.float64)
    s = space.eye_size
    sclera = srgb_to_linear(np.asarray(params["sclera_rgb"]))
    out = np.broadcast_to(sclera, (s, s, 3)).copy()
    veins = np.clip(space.noise(rng, "mid", (s, s)) * 1.5, 0, 1) ** 3 * _smoothstep(0.7, 1.6, a)
    out *= 1.0 - veins[..., None] * np.array([0.0, 0.35, 0.35])
    r_iris, r_pupil = params["iris_radius"], params["pupil_radius"]
    iris = srgb_to_linear(np.asarray(params["iris_rgb"]))
    fib = 1.0 + 0.2 * np.sin(phi * rng.integers(20, 40) + 2.0 * space.noise(rng, "low", (s, s))) * rng.uniform(0.3, 1.0)
    radial = (a - r_pupil) / max(r_iris - r_pupil, 1e-3)
    shade = (0.65 + 0.5 * np.clip(radial, 0, 1)) * fib
    collar = np.exp(-(((radial - 0.3) / 0.12) ** 2)) * rng.uniform(0.0, 0.6)
    iris_col = iris * shade[..., None] * (1 - collar[..., None]) + collar[..., None] * srgb_to_linear(
        np.array([0.6, 0.45, 0.2])
    )
    limbal = _smoothstep(r_iris - 0.08, r_iris, a) * 0.7
    iris_col *= (1.0 - limbal)[..., None]
    in_iris = 1.0 - _smoothstep(r_iris - 0.01, r_iris + 0.02, a)
    out = out * (1 - in_iris[..., None]) + iris_col * in_iris[..., None]
    pupil = 1.0 - _smoothstep(r_pupil - 0.015, r_pupil + 0.015, a)
    out = out * (1 - pupil[..., None]) + 0.01 * pupil[..., None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)
