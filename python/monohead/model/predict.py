"""Inference and evaluation: network output -> (N, W, mask) in the conventions' frame.

The generator's 4 output channels are N (tanh) and the encoded W. A pixel belongs to the
predicted mask when the raw normal is long: ``|N_raw| > MASK_THRESHOLD`` (the targets are unit
vectors on the head and 0 on the background). Inside the mask the normal is made to face the
viewer (``Nz >= 1e-3``) and renormalised to unit length; outside it N = 0 and W = 0.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data import images_to_tensor, item_targets
from .unet import W_SCALE, UNet, decode_w

__all__ = [
    "MASK_THRESHOLD",
    "evaluate_model",
    "inference_model",
    "postprocess",
    "predict",
    "predict_tensor",
    "prediction_figure",
    "unflip_output",
]

#: Raw normals longer than this are foreground.
MASK_THRESHOLD = 0.5
_MIN_NZ = 1e-3


def postprocess(out: torch.Tensor, w_scale: float = W_SCALE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, 4, H, W)`` network output -> ``normals (B, 3, H, W)`` unit or 0, ``W (B, H, W)`` >= 0,
    ``mask (B, H, W)`` bool."""
    out = out.float()
    n = out[:, :3]
    length = n.norm(dim=1)
    mask = length > MASK_THRESHOLD
    n = torch.cat([n[:, :2], n[:, 2:].clamp_min(_MIN_NZ)], dim=1)
    n = n / n.norm(dim=1, keepdim=True)
    n = torch.where(mask[:, None], n, torch.zeros_like(n))
    W = torch.where(mask, decode_w(out[:, 3], w_scale), torch.zeros_like(out[:, 3]))
    return n, W, mask


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _fingerprint(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``model`` is replaced or updated in place."""
    return tuple((t.data_ptr(), t._version, t.device.type) for t in (*model.parameters(), *model.buffers()))


def _fold_batch_norms(model: torch.nn.Module) -> None:
    """Fold each eval-mode batch norm into the (transposed) convolution before it, in place."""
    from torch import nn

    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(1, len(seq)):
            bn, conv = seq[i], seq[i - 1]
            if not isinstance(bn, nn.BatchNorm2d) or not isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            if bn.running_var is None or hasattr(conv, "parametrizations"):
                continue
            s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias.detach() - bn.running_mean * s
            w = conv.weight.detach()
            # Conv2d weight: (out, in, kh, kw); ConvTranspose2d: (in, out, kh, kw)
            w = w * (s[None, :, None, None] if isinstance(conv, nn.ConvTranspose2d) else s[:, None, None, None])
            bias = shift if conv.bias is None else conv.bias.detach() * s + shift
            conv.weight = nn.Parameter(w, requires_grad=False)
            conv.bias = nn.Parameter(bias, requires_grad=False)
            seq[i] = nn.Identity()


_FAST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_model(model: torch.nn.Module, channels_last: bool = True) -> torch.nn.Module:
    """An eval-mode copy of ``model`` made for inference: batch norms folded into the
    convolutions before them (the same function up to float32 rounding, about 1e-6), the
    decoders' ReLUs in place, in channels-last memory format (faster on CPUs with oneDNN).
    :func:`predict` uses it.

    The copy is cached (one per model) and remade when a parameter or buffer of ``model`` changes
    (training updates them in place), so call this freely; ``model`` itself is left as it is.
    The copy does not track gradients.
    """
    fp = (_fingerprint(model), channels_last)
    hit = _FAST.get(model)
    if hit is not None and hit[0] == fp:
        return hit[1]
    import copy

    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    _fold_batch_norms(fast)
    if isinstance(fast, UNet):
        # a decoder's ReLU reads a fresh concatenation (or the bottleneck) that nothing else
        # reads: in place in inference (training keeps it out of place for autograd)
        for mod in fast.modules():
            if isinstance(mod, torch.nn.ReLU):
                mod.inplace = True
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    _FAST[model] = (fp, fast)
    return fast


def unflip_output(out: torch.Tensor) -> torch.Tensor:
    """Map the raw output ``(B, 4, H, W)`` of a left-right mirrored image back to the original
    image: mirror the columns and negate ``Nx`` (x points right in the conventions' frame)."""
    out = out.flip(-1)
    return torch.cat([-out[:, :1], out[:, 1:]], dim=1)


@torch.no_grad()
def predict_tensor(
    model: UNet,
    image: torch.Tensor,
    channels_last: bool = False,
    bf16: bool = False,
    flip: bool | Sequence[bool] = False,
    fused: bool = False,
) -> torch.Tensor:
    """Raw network output ``(B, 4, H, W)`` float32 for ``(B, 3, H, W)`` images in ``[-1, 1]`` (eval mode).

    ``channels_last`` runs in that memory format; ``bf16`` under bfloat16 autocast (about 2x
    faster on CPUs with AVX-512 BF16 / AMX; check its accuracy for your weights). ``flip``
    averages the output with that of the mirrored image mapped back (:func:`unflip_output`):
    test-time augmentation, the mirrored images in the same batch; one bool per image flips only
    those. ``fused`` runs :func:`inference_model`'s copy (batch norms folded; a :class:`UNet`
    only) instead of ``model``.
    """
    b = image.shape[0]
    sel = [bool(flip)] * b if isinstance(flip, bool) else [bool(f) for f in flip]
    if len(sel) != b:
        raise ValueError(f"flip must be a bool or one bool per image ({b}); got {len(sel)}")
    if fused and isinstance(model, UNet):
        model = inference_model(model, channels_last=channels_last)
    was_training = model.training
    model.eval()
    device = _model_device(model)
    try:
        x = image.to(device)
        idx = [i for i in range(b) if sel[i]]
        if idx:
            mirrored = (x if len(idx) == b else x[idx]).flip(-1)
            x = torch.cat([x, mirrored])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x).float()
        if idx:
            back = unflip_output(out[b:])
            out = out[:b]
            if len(idx) == b:
                out = 0.5 * (out + back)
            else:
                out = out.clone()
                out[idx] = 0.5 * (out[idx] + back)
        return out
    finally:
        model.train(was_training)


def predict(
    model: UNet,
    images: Any,
    *,
    batch_size: int = 32,
    w_scale: float | None = None,
    dtype: Any = np.float64,
    channels_last: bool = True,
    bf16: bool = False,
    flip: bool | Sequence[bool] = False,
    fused: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict the normal map, W and the mask of face photos.

    Args:
        model: a :class:`UNet` (e.g. from :func:`monohead.model.load_pretrained`), on any device.
        images: ``(B, H, W, 3)`` uint8 RGB photos (or float in ``[0, 1]``), ``H`` and ``W``
            multiples of ``model.multiple`` (128x128 for the shipped model); a single
            ``(H, W, 3)`` image gives unbatched outputs.
        batch_size: images per forward pass.
        w_scale: scale of the W encoding; default: ``model.w_scale`` if set, else 1.
        dtype: float dtype of the returned normals and W (default float64, the conventions').
        channels_last: run the network in channels-last memory format (default; faster on CPUs).
        bf16: run under bfloat16 autocast (about 2x faster on this project's CPUs, together
            with ``channels_last``; float32 is the reference).
        flip: also run the left-right mirrored image and average the two raw outputs
            (test-time augmentation; one forward pass of twice the batch); or one bool per
            image, to mirror only some.
        fused: run :func:`inference_model`'s copy of the network (batch norms folded into the
            convolutions: the same outputs up to float32 rounding, about 1e-6; faster).

    Returns:
        ``normals (B, H, W, 3)``: unit vectors in the camera frame (x right, y up, z toward the
        viewer, ``Nz > 0``) inside the mask, ``(0, 0, 0)`` outside; ``W (B, H, W)``: the
        depth-gradient magnitude ``|grad h| >= 0``, 0 outside; ``mask (B, H, W)`` bool.
    """
    arr = np.asarray(images)
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must have shape (B, H, W, 3) or (H, W, 3); got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("images is empty: got 0 images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if w_scale is None:
        w_scale = float(getattr(model, "w_scale", W_SCALE))
    flips = [bool(flip)] * arr.shape[0] if isinstance(flip, bool) else [bool(f) for f in flip]
    if len(flips) != arr.shape[0]:
        raise ValueError(f"flip must be a bool or one bool per image ({arr.shape[0]}); got {len(flips)}")
    normals, Ws, masks = [], [], []
    for s in range(0, arr.shape[0], batch_size):
        x = images_to_tensor(arr[s : s + batch_size])
        out = predict_tensor(model, x, channels_last, bf16, flips[s : s + batch_size], fused)
        n, W, m = postprocess(out, w_scale)
        normals.append(n.permute(0, 2, 3, 1).cpu().numpy())
        Ws.append(W.cpu().numpy())
        masks.append(m.cpu().numpy())
    N = np.concatenate(normals).astype(dtype, copy=False)
    W = np.concatenate(Ws).astype(dtype, copy=False)
    M = np.concatenate(masks)
    if single:
        return N[0], W[0], M[0]
    return N, W, M


def evaluate_model(
    model: UNet,
    dataset: Any,
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 32,
    w_scale: float | None = None,
    keep: int = 0,
    channels_last: bool = False,
    bf16: bool = False,
    flip: bool = False,
) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    """Table 1 metrics of ``model`` on data-set items (no augmentation).

    Args:
        model: the generator.
        dataset: indexable data set of item dicts (see :mod:`monohead.model.data`).
        indices: which items (default: all).
        keep: return the inputs, targets and predictions of the first ``keep`` items (for figures).
        channels_last, bf16, flip: as in :func:`predict`.

    Returns:
        ``(metrics, kept)``. ``metrics``: ``count`` (images), ``mask_precision`` and
        ``mask_recall`` (percent, pooled over pixels), ``angular`` (the
        :func:`monohead.evaluate.angular_error_stats` dict, in degrees, over the pixels in both
        the true and the predicted mask), ``w_mae`` (mean absolute error of W on those pixels)
        and ``w_code_mae`` (the same for the encoded W). ``kept``: dicts of ``image``,
        ``normals``, ``W``, ``mask``, ``pred_normals``, ``pred_W``, ``pred_mask`` (NumPy).
    """
    from ..evaluate import angular_error_stats, mask_precision_recall

    if w_scale is None:
        w_scale = float(getattr(model, "w_scale", W_SCALE))
    idx = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    if not idx:
        raise ValueError("evaluate_model needs at least one item")
    pred_px, true_px, w_err, code_err = [], [], [], []
    pred_masks, true_masks, kept = [], [], []
    for s in range(0, len(idx), batch_size):
        items = [dataset[i] for i in idx[s : s + batch_size]]
        images = np.stack([np.asarray(it["image"]) for it in items])
        targets, masks = zip(*(item_targets(it, w_scale) for it in items), strict=True)
        target = np.stack(targets)
        true_m = np.stack(masks)
        out = predict_tensor(model, images_to_tensor(images), channels_last, bf16, flip).cpu()
        n, W, m = postprocess(out, w_scale)
        n = n.permute(0, 2, 3, 1).numpy()
        W, m = W.numpy(), m.numpy()
        both = m & true_m
        pred_px.append(n[both])
        true_px.append(target[:, :3].transpose(0, 2, 3, 1)[both])
        true_W = decode_w(target[:, 3], w_scale)
        w_err.append(np.abs(W - true_W)[both])
        code_err.append(np.abs(out[:, 3].clamp(0, 1).numpy() - target[:, 3])[both])
        pred_masks.append(m)
        true_masks.append(true_m)
        for b in range(len(items)):
            if len(kept) < keep:
                kept.append(
                    {
                        "image": images[b],
                        "normals": target[b, :3].transpose(1, 2, 0),
                        "W": true_W[b],
                        "mask": true_m[b],
                        "pred_normals": n[b],
                        "pred_W": W[b],
                        "pred_mask": m[b],
                    }
                )
    precision, recall = mask_precision_recall(np.concatenate(pred_masks), np.concatenate(true_masks))
    P = np.concatenate(pred_px)
    if len(P):
        angular = angular_error_stats(P[None], np.concatenate(true_px)[None])
    else:  # nothing predicted where the head is (an untrained model)
        angular = {k: math.nan for k in ("mean", "std", "median", "under_10", "under_20", "under_30")}
        angular["count"] = 0
    metrics = {
        "count": len(idx),
        "mask_precision": precision,
        "mask_recall": recall,
        "angular": angular,
        "w_mae": float(np.concatenate(w_err).mean()) if len(P) else math.nan,
        "w_code_mae": float(np.concatenate(code_err).mean()) if len(P) else math.nan,
    }
    return metrics, kept


def _normals_rgb(n: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rgb = np.round((np.clip(n, -1, 1) + 1.0) * 0.5 * 255.0)
    return np.where(mask[..., None], rgb, 0).astype(np.uint8)


def _w_gray(W: np.ndarray, mask: np.ndarray, w_scale: float) -> np.ndarray:
    from .unet import encode_w

    g = np.round(encode_w(np.where(mask, W, 0.0), w_scale) * 255.0).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def prediction_figure(kept: Sequence[dict[str, np.ndarray]], w_scale: float = W_SCALE, title: str = "") -> bytes:
    """PNG bytes of the paper's Fig. 5: per row the photo, N true | predicted, W true | predicted.

    N is drawn as an 8-bit normal map ``(N + 1) / 2``; W as gray ``W / (W + w_scale)``.
    """
    import io

    from PIL import Image, ImageDraw

    if not kept:
        raise ValueError("prediction_figure needs at least one sample")
    rows = []
    for k in kept:
        rows.append(
            np.concatenate(
                [
                    np.asarray(k["image"], np.uint8),
                    _normals_rgb(k["normals"], k["mask"]),
                    _normals_rgb(k["pred_normals"], k["pred_mask"]),
                    _w_gray(k["W"], k["mask"], w_scale),
                    _w_gray(k["pred_W"], k["pred_mask"], w_scale),
                ],
                axis=1,
            )
        )
    grid = np.concatenate(rows, axis=0)
    tile = grid.shape[1] // 5
    if tile < 128:  # small test images: enlarge (nearest) so that the labels fit
        f = math.ceil(128 / tile)
        grid = grid.repeat(f, axis=0).repeat(f, axis=1)
        tile *= f
    header = 16 if not title else 30
    canvas = np.full((grid.shape[0] + header, grid.shape[1], 3), 255, np.uint8)
    canvas[header:] = grid
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((4, 1), title, fill=(0, 0, 0))
    for c, name in enumerate(("photo", "N true", "N predicted", "W true", "W predicted")):
        draw.text((c * tile + 4, header - 14), name, fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
