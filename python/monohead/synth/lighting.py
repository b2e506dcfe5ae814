"""Light from real places (generator version 2): HDR environment maps mixed with lamps.

A sample's lighting (:func:`sample_lighting`) is one of a few *setups*, each a plausible way a
photo of a person is lit:

- ``hdri``: a real place, an HDR environment map rotated about the vertical axis at random,
  slightly tilted, scaled and tinted, sometimes with one or two of version 1's lamps added;
- ``sun``: harsh sun, a strong directional light (hard shadows) under a dim sky;
- ``overcast``: a bright, soft, nearly uniform sky and no direct light;
- ``indoor``: dim warm lamps in a dark room (the camera then adds more sensor noise);
- ``coloured``: saturated coloured lamps (stage, neon, party light);
- ``studio``: version 1's lights and environment (one to four point, spot and directional
  lights).

Environment maps. :func:`bundled_maps` lists the six CC0 Poly Haven maps shipped (reduced) in
``assets/hdri`` (see its README); :func:`scan_hdri` validates a folder of more maps (``.npy``
arrays ``(h, 2h, 3)`` of linear RGB radiance, or Radiance ``.hdr`` files), skipping and counting
unreadable files. Maps are latitude-longitude, row 0 the +y pole, the image centre facing +z:
Mitsuba's ``envmap`` layout, in the renderer's world frame (x right, y up, z toward the viewer).
Every map is normalised to a mean luminance of 1 before its random scale.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import scene as scene_mod
from .folders import scan_folder

__all__ = [
    "ENV_SIZE",
    "SETUPS",
    "bundled_maps",
    "environment",
    "extract_sun",
    "load_map",
    "read_hdr",
    "sample_lighting",
    "scan_hdri",
]

log = logging.getLogger(__name__)

SUN_THRESHOLD = 30.0
"""Texels brighter than this many times the map's mean luminance are the sun (or a lamp): their
excess becomes a directional light (:func:`extract_sun`)."""

ENV_SIZE = 64
"""Height of the environment map given to the renderer (``(64, 128)``: 2.8° per texel, small
enough for a sun to cast hard shadows)."""

SETUPS = ("hdri", "sun", "overcast", "indoor", "coloured", "studio")
"""Lighting setups of :func:`sample_lighting`."""

_SETUP_P = (0.45, 0.13, 0.12, 0.1, 0.08, 0.12)
_HDRI_DIR = Path(__file__).with_name("assets") / "hdri"
_LUMA = np.array([0.2126, 0.7152, 0.0722])


def bundled_maps() -> list[Path]:
    """The environment maps shipped with monohead (sorted by name)."""
    return sorted(_HDRI_DIR.glob("*.npy"))


def read_hdr(path: Any) -> np.ndarray:
    """Read a Radiance ``.hdr`` (RGBE) file as ``(H, W, 3)`` float32 linear RGB.

    Supports the ``-Y H +X W`` orientation with flat or new-style run-length encoded scanlines
    (what HDR tools write). Raises ``ValueError`` on anything else.
    """
    data = Path(path).read_bytes()
    if not (data.startswith(b"#?RADIANCE") or data.startswith(b"#?RGBE")):
        raise ValueError(f"{str(path)!r} is not a Radiance HDR file")
    pos = 0
    header_end = data.find(b"\n\n")
    if header_end < 0:
        raise ValueError(f"{str(path)!r}: no end of header")
    for line in data[:header_end].split(b"\n"):
        if line.startswith(b"FORMAT=") and line.strip() != b"FORMAT=32-bit_rle_rgbe":
            raise ValueError(f"{str(path)!r}: unsupported format {line.decode(errors='replace')}")
    pos = header_end + 2
    eol = data.find(b"\n", pos)
    res = data[pos:eol].split()
    if len(res) != 4 or res[0] != b"-Y" or res[2] != b"+X":
        raise ValueError(f"{str(path)!r}: unsupported resolution line {data[pos:eol]!r}")
    h, w = int(res[1]), int(res[3])
    pos = eol + 1
    buf = np.frombuffer(data, np.uint8)
    out = np.zeros((h, w, 4), np.uint8)
    for r in range(h):
        if 8 <= w < 32768 and buf[pos] == 2 and buf[pos + 1] == 2 and (int(buf[pos + 2]) << 8 | int(buf[pos + 3])) == w:
            pos += 4
            for ch in range(4):
                c = 0
                while c < w:
                    n = int(buf[pos])
                    pos += 1
                    if n > 128:
                        n -= 128
                        out[r, c : c + n, ch] = buf[pos]
                        pos += 1
                    else:
                        if n == 0:
                            raise ValueError(f"{str(path)!r}: bad run length in row {r}")
                        out[r, c : c + n, ch] = buf[pos : pos + n]
                        pos += n
                    c += n
                if c != w:
                    raise ValueError(f"{str(path)!r}: scanline overrun in row {r}")
        else:
            out[r] = buf[pos : pos + 4 * w].reshape(w, 4)
            pos += 4 * w
    e = out[..., 3].astype(np.int32)
    scale = np.where(e > 0, np.ldexp(1.0, e - 136), 0.0)
    return (out[..., :3].astype(np.float64) * scale[..., None]).astype(np.float32)


def _read_any(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".hdr":
        img = read_hdr(path)
    else:
        img = np.load(path, allow_pickle=False)
    img = np.asarray(img, np.float32)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[1] != 2 * img.shape[0] or img.shape[0] < 8:
        raise ValueError(f"{str(path)!r}: an environment map must be (h, 2h, 3) with h >= 8; got {img.shape}")
    if not np.isfinite(img).all() or (img < 0).any() or not (img @ _LUMA.astype(np.float32)).mean() > 0:
        raise ValueError(f"{str(path)!r}: radiance must be finite, non-negative and not all zero")
    return img


def scan_hdri(folder: Any) -> tuple[list[Path], int]:
    """The usable environment maps of a folder (``.npy`` and ``.hdr``, sorted by name) and the
    number of files skipped because they could not be read as maps.

    Raises:
        ValueError: the folder does not exist, is not a folder, or holds no usable map.
    """
    return scan_folder(
        folder,
        _read_any,
        suffixes=(".npy", ".hdr"),
        label="hdri",
        item="environment map",
        wanted="usable environment map (.npy (h, 2h, 3) or .hdr)",
        log=log,
    )


@functools.lru_cache(maxsize=64)
def load_map(path: str, height: int = ENV_SIZE) -> np.ndarray:
    """A map ``(height, 2 height, 3)`` float32, box-averaged down (never up) to ``height`` and
    normalised to a mean luminance of 1 (weighted by solid angle)."""
    img = _read_any(Path(path)).astype(np.float64)
    h = img.shape[0]
    if h > height and h % height == 0:
        f = h // height
        img = img.reshape(height, f, 2 * height, f, 3).mean(axis=(1, 3))
    elif h != height:
        from scipy import ndimage

        img = np.clip(
            ndimage.zoom(img, (height / h, height / h, 1), order=1, grid_mode=True, mode="grid-wrap"), 0, None
        )
    theta = (np.arange(height) + 0.5) / height * np.pi
    lum = (img @ _LUMA).mean(axis=1)
    mean = float((lum * np.sin(theta)).sum() / np.sin(theta).sum())
    return (img / max(mean, 1e-12)).astype(np.float32)


def _rotate(img: np.ndarray, azimuth: float, tilt: float) -> np.ndarray:
    """Turn a map about +y by ``azimuth`` degrees (fractional columns, linear) and tilt it
    about +x by ``tilt`` degrees (nearest texel)."""
    h, w = img.shape[:2]
    shift = azimuth / 360.0 * w
    k = int(np.floor(shift))
    t = shift - k
    out = (1 - t) * np.roll(img, k, axis=1) + t * np.roll(img, k + 1, axis=1)
    if abs(tilt) > 1e-6:
        theta = (np.arange(h) + 0.5) / h * np.pi
        phi = (np.arange(w) + 0.5) / w * 2 * np.pi
        th, ph = np.meshgrid(theta, phi, indexing="ij")
        d = np.stack([np.sin(ph) * np.sin(th), np.cos(th), -np.cos(ph) * np.sin(th)], axis=-1)
        a = np.radians(tilt)
        rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        s = d @ rx  # the direction each output texel looks up (inverse rotation)
        th2 = np.arccos(np.clip(s[..., 1], -1, 1))
        ph2 = np.mod(np.arctan2(s[..., 0], -s[..., 2]), 2 * np.pi)
        r = np.clip((th2 / np.pi * h).astype(int), 0, h - 1)
        c = np.clip((ph2 / (2 * np.pi) * w).astype(int), 0, w - 1)
        out = out[r, c]
    return out


def _lamp(
    rng: np.random.Generator, kind: str, irradiance: float, colour: list[float], front: bool = True
) -> dict[str, Any]:
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    if front:
        d[2] = abs(d[2]) + 0.2
    if rng.random() < 0.8:  # lamps are mostly above the head
        d[1] = abs(d[1])
    d /= np.linalg.norm(d)
    light = {
        "kind": kind,
        "direction": [float(c) for c in d],
        "distance": float(rng.uniform(2.0, 6.0)),
        "irradiance": float(irradiance),
        "colour": colour,
    }
    if kind == "spot":
        cutoff = float(rng.uniform(18.0, 45.0))
        light.update(cutoff=cutoff, beam=float(cutoff * rng.uniform(0.5, 0.9)))
    return light


def _saturated(rng: np.random.Generator) -> list[float]:
    hue = rng.uniform(0, 1)
    rgb = np.clip(np.abs(((hue * 6 + np.array([0.0, 4.0, 2.0])) % 6) - 3) - 1, 0, 1)
    rgb = 0.15 + 0.85 * rgb
    return [float(c) for c in rgb / rgb.max()]


def _floats(a: np.ndarray) -> list[float]:
    return [float(c) for c in a]


def _sky(
    rng: np.random.Generator,
    top: list[float],
    bottom: list[float],
    intensity: tuple[float, float],
    max_patches: int = 0,
) -> dict[str, Any]:
    """The parameters of a gradient sky (:func:`monohead.synth.scene.environment_image`) from
    ``top`` to ``bottom`` (linear RGB): ``rng`` draws the intensity (uniform in ``intensity``),
    then the number of bright patches (0 to ``max_patches``; none drawn when 0), then the seed."""
    out: dict[str, Any] = {"kind": "sky", "top": top, "bottom": bottom, "intensity": float(rng.uniform(*intensity))}
    out["patches"] = int(rng.integers(0, max_patches + 1)) if max_patches else 0
    out["seed"] = int(rng.integers(2**31 - 1))
    return out


def sample_lighting(rng: np.random.Generator, maps: list[str]) -> dict[str, Any]:
    """Random lighting of a sample (JSON-able): ``setup`` (one of :data:`SETUPS`), ``lights``
    (version 1's light dicts, :func:`monohead.synth.scene.sample_lights`), ``environment`` (a
    dict for :func:`environment`) and ``noise_gain`` (how much more sensor noise the camera
    adds: dim light means high ISO).

    Args:
        rng: the sample's lighting stream.
        maps: names of the environment maps to choose from (the generator's pool).
    """
    setup = str(rng.choice(SETUPS, p=_SETUP_P))
    if setup == "hdri" and not maps:
        setup = "studio"
    out: dict[str, Any] = {"setup": setup, "noise_gain": 1.0}
    if setup == "hdri":
        out["environment"] = {
            "kind": "map",
            "map": str(maps[int(rng.integers(len(maps)))]),
            "azimuth": float(rng.uniform(0.0, 360.0)),
            "tilt": float(rng.normal(0.0, 6.0)),
            "mirror": bool(rng.random() < 0.5),
            "scale": float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))),
            "tint": [float(c) for c in np.exp(rng.normal(0.0, 0.06, 3))],
        }
        lamps = int(rng.choice([0, 1, 2], p=[0.55, 0.3, 0.15]))
        out["lights"] = [
            _lamp(
                rng,
                str(rng.choice(["point", "spot", "directional"])),
                rng.uniform(0.2, 1.2),
                scene_mod.light_colour(rng),
            )
            for _ in range(lamps)
        ]
    elif setup == "sun":
        sun = _lamp(
            rng,
            "directional",
            rng.uniform(4.0, 9.0),
            [1.0, float(rng.uniform(0.85, 0.97)), float(rng.uniform(0.65, 0.9))],
            front=rng.random() < 0.8,
        )
        d = np.asarray(sun["direction"])
        d[1] = abs(d[1]) * rng.uniform(0.5, 1.5)  # the sun is above the horizon
        sun["direction"] = [float(c) for c in d / np.linalg.norm(d)]
        out["lights"] = [sun]
        out["environment"] = _sky(rng, [0.55, 0.7, 1.0], _floats(rng.uniform(0.25, 0.5, 3)), (0.25, 0.6))
    elif setup == "overcast":
        grey = float(rng.uniform(0.9, 1.0))
        out["lights"] = []
        top = [grey, grey, float(min(1.0, grey * rng.uniform(1.0, 1.08)))]
        out["environment"] = _sky(rng, top, _floats(rng.uniform(0.25, 0.45, 3)), (1.0, 1.6))
    elif setup == "indoor":
        n = int(rng.integers(1, 3))
        warm = [1.0, float(rng.uniform(0.6, 0.8)), float(rng.uniform(0.3, 0.5))]
        out["lights"] = [
            _lamp(rng, "point", rng.uniform(0.4, 1.2) if i == 0 else rng.uniform(0.1, 0.4), warm) for i in range(n)
        ]
        out["environment"] = _sky(rng, warm, _floats(rng.uniform(0.1, 0.3, 3)), (0.05, 0.2), max_patches=2)
        out["noise_gain"] = float(rng.uniform(2.0, 4.0))
    elif setup == "coloured":
        n = int(rng.integers(2, 4))
        out["lights"] = [
            _lamp(rng, str(rng.choice(["point", "spot"])), rng.uniform(0.8, 2.0), _saturated(rng), front=False)
            for _ in range(n)
        ]
        out["environment"] = _sky(rng, _saturated(rng), _saturated(rng), (0.05, 0.3))
        out["noise_gain"] = float(rng.uniform(1.0, 2.5))
    else:
        out["lights"] = scene_mod.sample_lights(rng)
        env = scene_mod.sample_environment(rng)
        out["environment"] = {"kind": "sky", **env}
    return out


def environment(params: dict[str, Any], pool: dict[str, str], height: int = ENV_SIZE) -> np.ndarray:
    """``(height, 2 height, 3)`` float32 radiance of a sample's environment.

    Args:
        params: ``lighting["environment"]`` of :func:`sample_lighting`.
        pool: map name -> file path of the generator's maps.
        height: map height (the renderer's ``environment_size``).
    """
    if params["kind"] == "sky":
        sky = {k: v for k, v in params.items() if k != "kind"}
        img = scene_mod.environment_image(sky, height)
        return img
    if params["map"] not in pool:
        raise ValueError(f"environment map {params['map']!r} is not among the generator's maps ({sorted(pool)})")
    img = load_map(pool[params["map"]], height)
    if params["mirror"]:
        img = img[:, ::-1]
    img = _rotate(img, params["azimuth"], params["tilt"])
    return (img * params["scale"] * np.asarray(params["tint"])).astype(np.float32)


def extract_sun(env: np.ndarray, threshold: float = SUN_THRESHOLD) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Move the excess of the brightest texels of a map into a directional light.

    A sun a few texels wide in an environment map is found by the path tracer's BSDF samples
    only rarely, which makes fireflies; as a directional light it is sampled exactly (and casts
    the same hard shadow). Texels whose luminance exceeds ``threshold`` times the map's mean
    (by solid angle) are clipped to it; their excess radiance times their solid angle is the
    light's irradiance, its direction their excess-weighted mean direction.

    Returns:
        ``(env, light)``: the clipped map and the light (``kind``, ``direction`` from the head
        toward the sun, ``rgb`` irradiance), or ``None`` when no texel exceeds the threshold.
    """
    h, w = env.shape[:2]
    theta = (np.arange(h) + 0.5) / h * np.pi
    phi = (np.arange(w) + 0.5) / w * 2 * np.pi
    d_omega = (np.sin(theta) * (np.pi / h) * (2 * np.pi / w))[:, None]
    lum = env.astype(np.float64) @ _LUMA
    mean = float((lum * d_omega).sum() / (4 * np.pi))
    limit = threshold * max(mean, 1e-12)
    hot = lum > limit
    if not hot.any():
        return env, None
    scale = np.where(hot, limit / np.maximum(lum, 1e-30), 1.0)
    clipped = env * scale[..., None]
    excess = (env - clipped) * d_omega[..., None]
    rgb = excess.reshape(-1, 3).sum(axis=0)
    wgt = excess @ _LUMA
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    dirs = np.stack([np.sin(ph) * np.sin(th), np.cos(th), -np.cos(ph) * np.sin(th)], axis=-1)
    d = (dirs * wgt[..., None]).reshape(-1, 3).sum(axis=0)
    d /= max(np.linalg.norm(d), 1e-30)
    return clipped.astype(np.float32), {"kind": "directional", "direction": d, "rgb": rgb}
