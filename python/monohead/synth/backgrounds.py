"""Backgrounds of generator version 2: what is behind the subject in a photo.

A background (:func:`sample_background`) is one of

- ``procedural`` or ``photo``: version 1's patterns and scikit-image's bundled photos
  (:func:`monohead.synth.scene.background_image`);
- ``user``: a photo from the folder given as ``--backgrounds DIR`` (:func:`scan_backgrounds`
  lists the readable ones and counts the others), a random crop of it, mirrored at random;
- ``environment``: the sample's own HDR environment map seen through the camera (the place the
  light comes from, out of focus), when the lighting is an environment map;

blurred a little (depth of field) and, one time in three, with out-of-focus **people-like
clutter** in front of it: one to three rough silhouettes (a head on shoulders) in skin, hair and
clothing colours, blurred as a background is.

Values are linear RGB. ``procedural``, ``photo`` and ``user`` backgrounds are display-referred
(1 = white under the photo's exposure); ``environment`` ones are scene-referred radiance, to be
multiplied by the exposure the head gets (:func:`monohead.synth.artefacts.develop` does).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from . import camera as camera_mod
from . import scene as scene_mod
from .folders import scan_folder
from .textures import srgb_to_linear

__all__ = ["background", "load_photo", "mute", "sample_background", "sample_look", "scan_backgrounds"]

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def scan_backgrounds(folder: Any) -> tuple[list[Path], int]:
    """The readable photos of a folder (sorted by name) and the number of unreadable files
    skipped (files with an image suffix that Pillow cannot decode, or smaller than 16 pixels).

    Raises:
        ValueError: the folder does not exist, is not a folder, or holds no readable photo.
    """
    from PIL import Image

    def read(path: Path) -> None:
        with Image.open(path) as im:
            im.load()
            if min(im.size) < 16:
                raise ValueError(f"too small ({im.size[0]}x{im.size[1]})")

    return scan_folder(
        folder,
        read,
        suffixes=_IMAGE_SUFFIXES,
        label="backgrounds",
        item="background",
        wanted=f"readable photo ({', '.join(_IMAGE_SUFFIXES)})",
        errors=(Exception,),  # Pillow raises many kinds of error on a broken file
        log=log,
    )


@functools.lru_cache(maxsize=32)
def load_photo(path: str) -> np.ndarray:
    """A user photo as ``(H, W, 3)`` float32 sRGB in [0, 1] (at most 512 pixels on the long
    side: backgrounds are out of focus anyway)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if max(im.size) > 512:
            s = 512 / max(im.size)
            im = im.resize(
                (max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.BILINEAR, reducing_gap=2.0
            )
        return np.asarray(im, np.float32) / 255.0


def sample_background(rng: np.random.Generator, user_photos: int, environment: bool) -> dict[str, Any]:
    """Random background of a sample (JSON-able).

    Args:
        rng: the sample's background stream.
        user_photos: number of photos in the generator's ``--backgrounds`` folder (0: none).
        environment: the sample is lit by an environment map (it may be the background).
    """
    kinds = ["procedural", "photo"]
    p = [0.35, 0.25]
    if user_photos:
        kinds.append("user")
        p.append(0.45)
    if environment:
        kinds.append("environment")
        p.append(0.35)
    p_arr = np.asarray(p) / np.sum(p)
    kind = str(rng.choice(kinds, p=p_arr))
    out: dict[str, Any] = {"kind": kind, "blur": float(rng.uniform(0.0, 2.5)), "seed": int(rng.integers(0, 2**31 - 1))}
    if kind in ("procedural", "photo"):
        v1 = scene_mod.sample_background(rng)
        if kind == "photo" and v1["kind"] != "photo":
            v1 = {**v1, "kind": "photo", "photo": str(rng.choice(scene_mod.BACKGROUND_PHOTOS))}
        elif kind == "procedural" and v1["kind"] == "photo":
            v1 = {k: v for k, v in v1.items() if k != "photo"}
            v1["kind"] = str(rng.choice(scene_mod.PATTERNS))
        out["v1"] = v1
    elif kind == "user":
        out["photo"] = int(rng.integers(user_photos))
        out["brightness"] = float(rng.uniform(0.4, 1.0))
    else:
        out["brightness"] = float(np.exp(rng.normal(0.0, 0.3)))
    if rng.random() < 1 / 3:
        out["people"] = [
            {
                "x": float(rng.uniform(-0.1, 1.1)),
                "y": float(rng.uniform(0.2, 0.7)),
                "size": float(rng.uniform(0.25, 0.6)),
                "skin": [float(c) for c in _skin(rng)],
                "hair": [float(c) for c in rng.uniform(0.02, 0.35) * np.array([1.0, 0.8, 0.6])],
                "cloth": [float(c) for c in rng.uniform(0.03, 0.9, 3)],
                "bald": bool(rng.random() < 0.2),
            }
            for _ in range(int(rng.integers(1, 4)))
        ]
        out["people_blur"] = float(rng.uniform(1.5, 4.0))
    return out


def _skin(rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(0, 1)
    light, dark = np.array([0.95, 0.76, 0.65]), np.array([0.33, 0.2, 0.13])
    return light * (1 - t) + dark * t


def _env_background(env: np.ndarray, cam: dict[str, Any] | None, size: tuple[int, int]) -> np.ndarray:
    """The environment map seen through the camera (bilinear in the map; an orthographic
    camera sees it through a 40° lens)."""
    h, w = size
    if cam is None or cam.get("projection") != "perspective":
        f = w / 2 / np.tan(np.radians(20.0))
        cam = {"projection": "perspective", "K": [[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], "distance": f}
    _, d = camera_mod.pixel_rays(cam, size, 0.0)
    eh, ew = env.shape[:2]
    theta = np.arccos(np.clip(d[:, 1], -1, 1))
    phi = np.mod(np.arctan2(d[:, 0], -d[:, 2]), 2 * np.pi)
    r = theta / np.pi * eh - 0.5
    c = phi / (2 * np.pi) * ew - 0.5
    r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
    tr, tc = (r - r0)[:, None], (c - c0)[:, None]
    rr0, rr1 = np.clip(r0, 0, eh - 1), np.clip(r0 + 1, 0, eh - 1)
    cc0, cc1 = c0 % ew, (c0 + 1) % ew
    img = (1 - tr) * ((1 - tc) * env[rr0, cc0] + tc * env[rr0, cc1]) + tr * (
        (1 - tc) * env[rr1, cc0] + tc * env[rr1, cc1]
    )
    return img.reshape(h, w, 3)


def _user(params: dict[str, Any], photos: list[str], size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(params["seed"])
    img = scene_mod.random_photo_crop(load_photo(photos[params["photo"]]), size, rng, 0.4)
    return srgb_to_linear(np.clip(img, 0, 1)) * params["brightness"]


def _people(img: np.ndarray, people: list[dict[str, Any]], blur: float, scale: float, level: float) -> np.ndarray:
    """Paint rough silhouettes (head on shoulders), their colours times ``level``, then blur
    them as a background is."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w] / float(max(h, w))
    layer = img.copy()
    for p in people:
        s = p["size"]
        cx, cy = p["x"] * w / max(h, w), p["y"] * h / max(h, w)
        head = ((xx - cx) / (0.16 * s)) ** 2 + ((yy - cy) / (0.21 * s)) ** 2 <= 1.0
        hair = (((xx - cx) / (0.17 * s)) ** 2 + ((yy - cy + 0.04 * s) / (0.2 * s)) ** 2 <= 1.0) & (yy < cy - 0.05 * s)
        neck = (np.abs(xx - cx) < 0.07 * s) & (yy > cy) & (yy < cy + 0.3 * s)
        sh_y = cy + 0.27 * s
        body = (
            (yy > sh_y)
            & (np.abs(xx - cx) < 0.32 * s + 0.4 * (yy - sh_y))
            & (
                ((np.abs(xx - cx) - 0.22 * s).clip(0) / (0.12 * s)) ** 2
                + ((sh_y + 0.1 * s - yy).clip(0) / (0.1 * s)) ** 2
                <= 1.0
            )
        )
        layer[neck] = srgb_to_linear(np.asarray(p["skin"])) * 0.8 * level
        layer[head] = srgb_to_linear(np.asarray(p["skin"])) * level
        if not p["bald"]:
            layer[hair] = srgb_to_linear(np.asarray(p["hair"])) * level
        layer[body] = srgb_to_linear(np.asarray(p["cloth"])) * level
    return ndimage.gaussian_filter(layer, (blur * scale, blur * scale, 0))


def background(
    params: dict[str, Any], size: tuple[int, int], photos: list[str], env: np.ndarray | None, cam: dict[str, Any] | None
) -> tuple[np.ndarray, bool]:
    """A sample's background.

    Args:
        params: from :func:`sample_background`.
        size: ``(H, W)``.
        photos: paths of the generator's user photos.
        env: the sample's environment map at full resolution (``environment`` backgrounds).
        cam: the sample's ``params["camera"]``.

    Returns:
        ``(image (H, W, 3) float32 linear, scene_referred)`` (see the module docstring).
    """
    h, w = size
    kind = params["kind"]
    scene_referred = False
    if kind in ("procedural", "photo"):
        img = scene_mod.background_image(params["v1"], size).astype(np.float64)
    elif kind == "user":
        if not photos:
            raise ValueError("this sample's background is a user photo, but the generator has no --backgrounds folder")
        img = _user(params, photos, size)
    else:
        if env is None:
            raise ValueError("an 'environment' background needs the sample's environment map")
        img = _env_background(env, cam, size) * params["brightness"]
        scene_referred = True
    scale = max(h, w) / 128.0
    if params["blur"] > 0:
        img = ndimage.gaussian_filter(img, (params["blur"] * scale, params["blur"] * scale, 0))
    if params.get("people"):
        level = float(np.mean(img)) * 2.0 if scene_referred else 1.0
        img = _people(img, params["people"], params["people_blur"], scale, level)
    return np.asarray(img, np.float32), scene_referred


def sample_look(rng: np.random.Generator) -> dict[str, Any]:
    """Generator version 3's grading of the background (JSON-able; :func:`mute`): ``saturation``
    and ``contrast`` factors.

    Version 2's backgrounds had a median HSV saturation of 0.41 on the 64-sample preview sheet
    (mean over the tiles of a 12-pixel ring along the top and sides of each), the real photos of
    ``shared/data/real-photos`` 0.16: rooms, walls and skies are muted, and out of focus. With
    these factors the renders' is 0.21 (90th percentile 0.42; the photos' 0.41)."""
    return {
        "saturation": float(rng.uniform(0.15, 0.6)),
        "contrast": float(rng.uniform(0.6, 1.0)),
    }


def mute(img: np.ndarray, look: dict[str, Any]) -> np.ndarray:
    """A linear background with its saturation scaled by ``look["saturation"]`` (toward each
    pixel's luminance) and its contrast by ``look["contrast"]`` (luminance ratios to the mean
    raised to that power: independent of the exposure, so scene-referred backgrounds get it
    too). Values stay non-negative; float32."""
    x = np.asarray(img, np.float64)
    lum = x @ np.array([0.2126, 0.7152, 0.0722])
    mean = max(float(lum.mean()), 1e-12)
    target = mean * (np.maximum(lum, 1e-12) / mean) ** float(look["contrast"])
    grey = lum[..., None]
    out = grey + float(look["saturation"]) * (x - grey)
    out = out * (target / np.maximum(lum, 1e-12))[..., None]
    return np.clip(out, 0.0, None).astype(np.float32)
