"""Photo artefacts of generator version 2: what a camera, an app and a crop do to an image.

Applied **at render time**, by the generator, to the stored image (never to the ground truth,
which describes the head whatever the camera did), for three reasons: a sample stays a pure
function of ``(seed, index)`` that :func:`monohead.synth.dataset.regenerate` reproduces bit for
bit; the artefacts that must happen before 8-bit quantisation (sensor noise, white balance,
exposure, vignetting and blur act on linear radiance) can only happen there; and the training
loop needs no extra image code. :func:`apply` is public too, so a training loop may draw more on
the fly if it wants to (on the stored 8-bit image only the steps after quantisation are exact).

The chain, in the order a photo goes through it (:func:`develop`):

1. exposure (the head's 95th-percentile luminance to a random level, then ±EV) and white
   balance (per-channel gains along the blue-amber axis, a little green-magenta), on the head
   and a scene-referred background alike;
2. optics: defocus (Gaussian) and motion blur (a line kernel at a random angle);
3. vignetting (radial fall-off);
4. sensor noise: signal-dependent shot noise plus read noise, stronger in dim light;
5. tone: sRGB encoding, then a gamma and an S-shaped contrast curve;
6. colour: grayscale or sepia, now and then;
7. resolution and compression: down-scaling to a smaller photo, JPEG at quality 30-95 there,
   and up-scaling back (as a small photo's crop is resized for the network);
8. framing past the photo's border: the part of the crop outside the simulated photo is filled
   by :func:`monohead.framing.fill_outside`, the very rule :func:`monohead.reconstruct` uses
   (the ground truth there is then outside the mask: the network cannot see the head there).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from scipy import ndimage

from .textures import linear_to_srgb

__all__ = ["apply", "border_inside", "develop", "sample_artefacts"]

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def sample_artefacts(rng: np.random.Generator, noise_gain: float = 1.0) -> dict[str, Any]:
    """Random artefacts of a sample (JSON-able); ``noise_gain`` > 1 for dim light."""
    out: dict[str, Any] = {
        "exposure": float(rng.uniform(0.55, 0.95)),
        "ev": float(rng.normal(0.0, 0.3)),
        "white_balance": float(rng.normal(0.0, 0.08)),
        "tint": float(rng.normal(0.0, 0.025)),
        "defocus": float(rng.uniform(0.3, 1.0)) if rng.random() < 0.25 else 0.0,
        "motion": float(rng.uniform(1.0, 4.0)) if rng.random() < 0.15 else 0.0,
        "motion_angle": float(rng.uniform(0.0, 180.0)),
        "vignetting": float(rng.uniform(0.1, 0.5)) if rng.random() < 0.4 else 0.0,
        "shot_noise": float(np.exp(rng.uniform(np.log(1e-5), np.log(6e-4))) * noise_gain),
        "read_noise": float(np.exp(rng.uniform(np.log(3e-4), np.log(4e-3))) * np.sqrt(noise_gain)),
        "gamma": float(np.exp(rng.normal(0.0, 0.1))),
        "contrast": float(rng.uniform(-0.15, 0.3)),
        "colour": str(rng.choice(["colour", "grayscale", "sepia"], p=[0.92, 0.05, 0.03])),
        "downscale": float(rng.uniform(0.35, 0.8)) if rng.random() < 0.3 else 1.0,
        "jpeg": int(rng.integers(30, 96)) if rng.random() < 0.75 else 0,
        "border": None,
        "seed": int(rng.integers(0, 2**31 - 1)),
    }
    if rng.random() < 0.15:
        # The photo's edges in crop units (0 = left/top edge of the crop, 1 = right/bottom):
        # one or two sides cut inside the crop, at most 30 % deep.
        edges = [-1.0, -1.0, 2.0, 2.0]  # left, top, right, bottom
        sides = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
        for s in sides:
            depth = float(rng.uniform(0.03, 0.3))
            edges[int(s)] = depth if s < 2 else 1.0 - depth
        out["border"] = [float(e) for e in edges]
    return out


def border_inside(border: list[float] | None, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool: the crop pixels that lie inside the simulated photo
    (:func:`monohead.framing.inside_mask`: a pixel whose footprint crosses the edge is out)."""
    h, w = size
    if border is None:
        return np.ones((h, w), bool)
    from ..framing import Box, inside_mask

    if h != w:
        raise ValueError(f"framing past the photo's border needs a square image; got {(h, w)}")
    left, top, right, bottom = border
    # The photo spans [left, right] x [top, bottom] in crop units; in photo pixels of the
    # crop's own scale the crop is the box at (-left, -top) of side w.
    x0 = max(left, -1.0) * w
    y0 = max(top, -1.0) * h
    x1 = min(right, 2.0) * w
    y1 = min(bottom, 2.0) * h
    return inside_mask((int(round(y1 - y0)), int(round(x1 - x0))), Box(-x0, -y0, float(w)), w)


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    n = int(np.ceil(length)) | 1
    k = np.zeros((n, n))
    c = n // 2
    a = np.radians(angle)
    for t in np.linspace(-length / 2, length / 2, 4 * n):
        x, y = c + t * np.cos(a), c - t * np.sin(a)
        i, j = int(round(y)), int(round(x))
        if 0 <= i < n and 0 <= j < n:
            k[i, j] += 1
    return k / k.sum()


def apply(lin: np.ndarray, art: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2-8 of the module's chain on an exposed, white-balanced linear image.

    Args:
        lin: ``(H, W, 3)`` linear RGB (1 = white).
        art: from :func:`sample_artefacts`.

    Returns:
        ``(image (H, W, 3) uint8 sRGB, inside (H, W) bool)``: ``inside`` is False where the
        crop lies past the simulated photo's border.
    """
    h, w = lin.shape[:2]
    rng = np.random.default_rng(art["seed"])
    img = np.asarray(lin, np.float32)
    scale = max(h, w) / 128.0
    if art["defocus"] > 0:
        img = ndimage.gaussian_filter(img, (art["defocus"] * scale, art["defocus"] * scale, 0))
    if art["motion"] > 0:
        k = _motion_kernel(art["motion"] * scale, art["motion_angle"])
        img = np.stack([ndimage.convolve(img[..., c], k, mode="nearest") for c in range(3)], axis=-1)
    if art["vignetting"] > 0:
        yy, xx = np.mgrid[0:h, 0:w]
        r2 = ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (0.5 * max(h, w)) ** 2
        img = img * (1.0 - art["vignetting"] * np.clip(r2, 0, 2) / 2)[..., None].astype(np.float32)
    var = art["shot_noise"] * np.clip(img, 0, None) + art["read_noise"] ** 2
    img = img + rng.standard_normal(img.shape).astype(np.float32) * np.sqrt(var).astype(np.float32)
    srgb = np.clip(linear_to_srgb(np.clip(img, 0, None)), 0, 1) ** art["gamma"]
    if art["contrast"]:
        s = srgb * srgb * (3 - 2 * srgb)  # smoothstep: the S curve
        srgb = srgb + art["contrast"] * (s - srgb)
    if art["colour"] != "colour":
        y = srgb @ _LUMA
        srgb = np.repeat(y[..., None], 3, axis=2)
        if art["colour"] == "sepia":
            srgb = np.clip(
                y[..., None] * np.array([1.07, 0.95, 0.74], np.float32) + np.array([0.03, 0.0, -0.02], np.float32), 0, 1
            )
    out = np.round(np.clip(srgb, 0, 1) * 255).astype(np.uint8)
    out = _resample_and_compress(out, art)
    inside = border_inside(art["border"], (h, w))
    if not inside.all():
        from ..framing import fill_outside

        out = fill_outside(out, inside)
    return out, inside


def _resample_and_compress(img: np.ndarray, art: dict[str, Any]) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    im = Image.fromarray(img)
    small = im
    if art["downscale"] < 1.0:
        sw, sh = max(8, round(w * art["downscale"])), max(8, round(h * art["downscale"]))
        small = im.resize((sw, sh), Image.BILINEAR, reducing_gap=2.0)
    if art["jpeg"]:
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=int(art["jpeg"]), subsampling=2 if art["jpeg"] < 90 else 0)
        buf.seek(0)
        with Image.open(buf) as dec:
            small = dec.convert("RGB")
    if small.size != (w, h):
        small = small.resize((w, h), Image.BILINEAR)
    return np.asarray(small, np.uint8).copy()


def develop(
    rgb: np.ndarray,
    alpha: np.ndarray,
    background: np.ndarray,
    scene_referred: bool,
    mask: np.ndarray,
    art: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """The whole chain (the module docstring) from a render to the stored image.

    Args:
        rgb, alpha: the path tracer's ``(H, W, 3)`` premultiplied linear RGB and coverage.
        background: ``(H, W, 3)`` linear background (:func:`monohead.synth.backgrounds.background`).
        scene_referred: the background is scene radiance (exposed with the head) rather than
            display-referred.
        mask: ``(H, W)`` ground-truth mask (the exposure meters on the head).
        art: from :func:`sample_artefacts`.

    Returns:
        ``(image (H, W, 3) uint8 sRGB, inside (H, W) bool)`` as :func:`apply`.
    """
    lum = rgb @ _LUMA
    sel = mask if mask.sum() >= 16 else alpha > 0.5
    ref = float(np.percentile(lum[sel], 95)) if sel.any() else 1.0
    exposure = art["exposure"] / max(ref, 1e-4) * 2.0 ** art["ev"]
    bg = background * (exposure if scene_referred else 2.0 ** art["ev"])
    lin = rgb * exposure + (1.0 - alpha)[..., None] * bg
    wb = np.exp(np.array([art["white_balance"], -art["tint"], -art["white_balance"]], np.float32))
    return apply((lin * wb).astype(np.float32), art)
