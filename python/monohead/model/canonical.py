"""The correspondence network: where on the head model each pixel of a crop lies (issue 17).

The complete head's fit (:func:`monohead.fullhead.fit_head`) matches the model's vertices to the
integrated surface point to plane, so a vertex may slide along that surface: the identity it
reads from the network's surface is then mostly the sliding's noise. :class:`CanonicalNet` gives
the fit correspondences instead. From a ``128 x 128`` crop and the normal network's maps of it,
it predicts per pixel

- the **canonical coordinates** of the skin seen there: the position (cm, model frame) on the
  neutral mean head of the ICT-FaceKit model (``HeadModel.shape()``, ``y = 0``, ``w = 0``,
  gaze ahead) of the point of the true head's skin or eyes first met along the pixel's ray,
  hair, glasses, headwear and hands ignored (the ray goes through them);
- a **skin logit**: whether the true head's skin or eyes cover the pixel at all.

``fit_head(..., canonical=C)`` turns the map into image landmarks of its vertices
(:func:`monohead.fullhead.canonical_landmarks`). The targets of the training data come from
the samples' parameters (:func:`canonical_targets`, ray casting the posed true head); the
inputs are the crop and the shipped normal network's mirror-averaged maps, as the photo
pipeline has them. :func:`monohead.model.canonical_train.train_canonical` trains it (resumable,
atomic checkpoints; ``monohead train-canonical``); :func:`load_canonical` loads the shipped weights
(``monohead/model/weights/canonical.pt``, with ``canonical_card.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._env import WEIGHTS_DIR
from .._io import atomic_write_bytes

__all__ = [
    "CANONICAL_CARD",
    "CANONICAL_FILE",
    "COORD_SCALE",
    "DEFAULT_WIDTHS",
    "CanonicalNet",
    "canonical_targets",
    "load_canonical",
    "load_weights",
    "network_input",
    "predict_canonical",
    "save_weights",
]

#: The shipped weights' file and card in :data:`~monohead.model.WEIGHTS_DIR`.
CANONICAL_FILE = "canonical.pt"
CANONICAL_CARD = "canonical_card.json"
#: The network's coordinate outputs are canonical positions in units of this many centimetres.
COORD_SCALE = 10.0
#: Input channels: the image (3, in [-1, 1]), the normals (3), W / (W + 1), the mask.
IN_CHANNELS = 8
DEFAULT_WIDTHS = (32, 48, 64, 96, 128, 160)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CanonicalNet(nn.Module):
    """A U-Net at half resolution: ``(B, 8, H, W)`` -> ``(B, 4, H/2, W/2)``.

    The input is :func:`network_input`'s; the output's channels 0-2 are the canonical
    coordinates divided by :data:`COORD_SCALE`, channel 3 the skin logit (:func:`predict_canonical`
    brings them to full resolution). A strided stem halves the resolution, then a U-Net of
    ``len(widths) - 1`` levels (two 3 x 3 convolutions with batch norm per level, max pooling
    down, bilinear up, skips concatenated). ``H`` and ``W`` must be multiples of
    ``2 ** len(widths)``.
    """

    def __init__(self, widths: tuple[int, ...] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        if len(widths) < 2 or any(int(w) < 8 or int(w) % 8 for w in widths):
            raise ValueError(f"widths must be at least two multiples of 8 (>= 8); got {widths!r}")
        self.widths = tuple(int(w) for w in widths)
        w = self.widths
        self.stem = nn.Sequential(
            nn.Conv2d(IN_CHANNELS, w[0], 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w[0]),
            nn.ReLU(inplace=True),
        )
        self.inc = _block(w[0], w[0])
        self.downs = nn.ModuleList(_block(w[i], w[i + 1]) for i in range(len(w) - 1))
        self.ups = nn.ModuleList(_block(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1)))
        self.out = nn.Conv2d(w[0], 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(self.stem(x))]
        for d in self.downs:
            skips.append(d(F.max_pool2d(skips[-1], 2)))
        h = skips.pop()
        for u in self.ups:
            s = skips.pop()
            h = u(torch.cat([F.interpolate(h, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
        return self.out(h)


def network_input(images: Any, normals: Any, W: Any, mask: Any) -> torch.Tensor:
    """The network's input ``(B, 8, H, W)`` float32 from ``(B, H, W, 3)`` uint8 crops and the
    normal network's ``(B, H, W, 3)`` normals, ``(B, H, W)`` W and mask (one unbatched sample
    is batched)."""
    img = np.asarray(images)
    if img.ndim == 3:
        img, normals, W, mask = img[None], np.asarray(normals)[None], np.asarray(W)[None], np.asarray(mask)[None]
    n, w, m = np.asarray(normals), np.asarray(W, np.float32), np.asarray(mask)
    B, H, Wd = img.shape[:3]
    if img.shape != (B, H, Wd, 3) or img.dtype != np.uint8:
        raise ValueError(f"images must be (B, H, W, 3) uint8; got {img.shape} {img.dtype}")
    if n.shape != (B, H, Wd, 3) or w.shape != (B, H, Wd) or m.shape != (B, H, Wd):
        raise ValueError(
            f"normals, W and mask must be ({B}, {H}, {Wd}, 3), ({B}, {H}, {Wd}) and ({B}, {H}, {Wd}); "
            f"got {n.shape}, {w.shape} and {m.shape}"
        )
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    x = np.concatenate(
        [
            img.astype(np.float32) / 127.5 - 1.0,
            np.nan_to_num(n.astype(np.float32)),
            (w / (w + 1.0))[..., None],
            m[..., None].astype(np.float32),
        ],
        axis=-1,
    )
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def predict_canonical(net: CanonicalNet, images: Any, normals: Any, W: Any, mask: Any, flip: bool = True) -> np.ndarray:
    """Canonical coordinates ``(B, H, W, 3)`` float64 (cm, the mean head's model frame), NaN
    where the network sees no skin or ``mask`` is False.

    Args:
        net: a :class:`CanonicalNet` (e.g. :func:`load_canonical`); put in eval mode here.
        images: ``(B, H, W, 3)`` uint8 crops (or one ``(H, W, 3)``: unbatched output).
        normals, W, mask: the normal network's outputs for them (:func:`monohead.model.predict`).
        flip: also run the mirrored crops (the normals' x and the coordinates' x negated) and
            average, as the normal network's inference does.
    """
    single = np.asarray(images).ndim == 3
    x = network_input(images, normals, W, mask)
    net.eval()
    outs = []
    with torch.no_grad():
        for part in torch.split(x, 32):  # batches of 32: the memory stays small for any count
            if flip:  # the mirrored crops in the same batch
                xf = part.flip(-1)
                xf[:, 3] = -xf[:, 3]
                both = net(torch.cat([part, xf]))
                of = both[len(part) :].flip(-1)
                of[:, 0] = -of[:, 0]
                out = 0.5 * (both[: len(part)] + of)
            else:
                out = net(part)
            outs.append(F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False))
    out = torch.cat(outs)
    C = out[:, :3].permute(0, 2, 3, 1).double().numpy() * COORD_SCALE
    seen = (out[:, 3].numpy() > 0) & np.asarray(mask, bool).reshape(out.shape[0], *x.shape[-2:])
    C[~seen] = np.nan
    return C[0] if single else C


def load_canonical(device: Any = "cpu") -> CanonicalNet:
    """The correspondence network shipped with monohead, float32, eval mode (``.card``: its card).

    Raises ``FileNotFoundError`` when this copy of monohead was built without it."""
    f = WEIGHTS_DIR / CANONICAL_FILE
    if not f.is_file():
        raise FileNotFoundError(
            f"monohead was built without the correspondence network ({f} is missing); train one with "
            "`monohead train-canonical` and export it with --export-weights"
        )
    net = load_weights(f, device)
    card = WEIGHTS_DIR / CANONICAL_CARD
    net.card = json.loads(card.read_text()) if card.is_file() else {}  # type: ignore[assignment]
    return net


def load_weights(path: Path, device: Any = "cpu") -> CanonicalNet:
    """A :class:`CanonicalNet` from a weights file (:func:`save_weights`), float32, eval mode."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state" not in blob or "widths" not in blob:
        raise ValueError(f"{path} is not a CanonicalNet file (a dict with 'widths' and 'state')")
    net = CanonicalNet(tuple(int(w) for w in blob["widths"]))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state"].items()})
    return net.to(device).eval()


def canonical_targets(params: dict[str, Any], size: tuple[int, int], version: int = 2, model: Any = None) -> tuple[
    np.ndarray, np.ndarray
]:  # fmt: skip
    """The training targets of one synthetic sample: ``(C (H, W, 3) float32 cm, skin (H, W) bool)``.

    Each pixel's ray (orthographic, or the sample's perspective camera) is cast against the
    posed true head (:func:`monohead.synth.body.true_head_mesh`: skin and eyes, no
    hair, glasses, headwear or hands); ``C`` is the neutral mean head's position (cm, model
    frame) of the first point met, interpolated in its triangle; ``skin`` says where a ray
    met the head. Uses Embree (``embreex``) when installed, else trimesh's own ray tests.
    """
    import trimesh

    from ..fullhead import PinholeWarp
    from ..synth.body import true_head_mesh
    from ..synth.head_model import HeadModel

    hm = model if isinstance(model, HeadModel) else HeadModel.load(model)
    H, Wd = (int(s) for s in size)
    mesh = true_head_mesh(params, (H, Wd), hm, version)
    v = np.asarray(mesh.vertices, np.float64)
    cam = params.get("camera") or {}
    if cam.get("projection") == "perspective":
        v = PinholeWarp(cam["K"]).warp(v)  # rays along z in the warped space
    canon = hm.shape(np.zeros(hm.num_identities))  # (V, 3): true_head_mesh keeps every model vertex
    m = trimesh.Trimesh(v, mesh.faces, process=False)
    rr, cc = np.mgrid[0:H, 0:Wd]
    top = float(v[:, 2].max()) + 10.0
    origins = np.column_stack([cc.ravel(), -rr.ravel(), np.full(H * Wd, top)]).astype(np.float64)
    dirs = np.tile([0.0, 0.0, -1.0], (H * Wd, 1))
    tri, ray, loc = m.ray.intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
    bary = trimesh.triangles.points_to_barycentric(m.triangles[tri], loc)
    C = np.zeros((H * Wd, 3), np.float32)
    C[ray] = np.einsum("kv,kvc->kc", bary, canon[m.faces[tri]])
    skin = np.zeros(H * Wd, bool)
    skin[ray] = True
    return C.reshape(H, Wd, 3), skin.reshape(H, Wd)


def save_weights(net: CanonicalNet, dest: Path) -> None:
    """Write ``{"widths", "state"}`` (float16 tensors) to ``dest``, atomically."""
    import io

    buf = io.BytesIO()
    torch.save({"widths": list(net.widths), "state": {k: v.half() if v.is_floating_point() else v
                                                      for k, v in net.state_dict().items()}}, buf)  # fmt: skip
    atomic_write_bytes(dest, buf.getvalue())
