"""From a photo to a head mesh: detection, framing, network, integration, meshing.

``monohead.reconstruct(image)`` (this module's :func:`reconstruct`) runs the whole pipeline of
the paper on one photo:

1. **Detection**: scikit-image's LBP frontal-face cascade, run on a copy of the photo whose long
   side is :data:`DETECT_SIZE` pixels (fast), retried at twice that size when nothing is found.
2. **Framing**: the face box is expanded to the framing the network was trained on (the whole
   head with a margin, :data:`monohead.framing.FRAMING`), cropped and resized to 128 x 128 by
   :func:`monohead.framing.crop_square`, which fills the part of the square outside the photo
   the way the training data is filled.
3. **Network**: the shipped U-Net predicts the normal map N, the depth-gradient magnitude W and
   the mask (:func:`monohead.model.predict`).
4. **Integration**: weighted least squares with ``w = 1 / (1 + lam W)`` (:func:`monohead.integrate`).
5. **Meshing**: one vertex per mask pixel (:func:`monohead.geometry.depth_to_mesh`), coloured
   from the crop.

Units: the mesh is in pixels of the 128 x 128 crop, in the conventions' frame (x right, y up,
z toward the viewer); multiply by ``box.side / 128`` for pixels of the photo.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _validate as v
from .framing import FRAMING, Box, crop_square, head_box

__all__ = [
    "DETECT_SIZE",
    "FRAMING",
    "INPUT_SIZE",
    "Box",
    "NoFaceError",
    "Reconstruction",
    "crop_square",
    "detect_faces",
    "head_box",
    "limit_slope",
    "load_default_model",
    "load_image",
    "preview_png",
    "reconstruct",
    "shaded_view",
]

#: Side of the network's input, pixels.
INPUT_SIZE = 128
#: Long side (pixels) of the copy of the photo that the face detector scans.
DETECT_SIZE = 160
#: Smallest Nz integrated: predicted normals closer to grazing (> 84 degrees from the viewing
#: direction, slopes |grad h| > 10) are tilted up to it before integration, as a few such
#: pixels at the silhouette otherwise throw the whole depth map off.
MIN_NZ = 0.1
#: Smallest photo accepted (pixels on each side).
MIN_SIDE = 32


class NoFaceError(ValueError):
    """No face was found in the photo."""


@dataclass
class Reconstruction:
    """The result of :func:`reconstruct` for one face.

    Attributes:
        box: the square crop in photo pixels (:class:`Box`).
        face_box: the detected face ``(x, y, w, h)`` in photo pixels, or ``None`` without detection.
        crop: ``(128, 128, 3)`` uint8 network input.
        normals: ``(128, 128, 3)`` float32 predicted unit normals (0 outside the mask).
        W: ``(128, 128)`` float32 predicted depth-gradient magnitude (0 outside the mask).
            (``normals`` are as predicted; the integration uses them with slopes limited by
            :func:`limit_slope`.)
        mask: ``(128, 128)`` bool predicted head mask.
        depth: ``(128, 128)`` float64 integrated depth, crop pixels, NaN outside the mask.
        mesh: :class:`trimesh.Trimesh`, one vertex per mask pixel, vertex colours from the crop.
        seconds: time per stage (``detection``, ``network``, ``integration``, ``meshing``).
    """

    box: Box
    face_box: tuple[int, int, int, int] | None
    crop: np.ndarray
    normals: np.ndarray
    W: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    mesh: Any
    seconds: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ images
def load_image(image: Any, name: str = "image") -> np.ndarray:
    """An RGB photo as a ``(H, W, 3)`` uint8 array.

    Args:
        image: a path (``str`` or :class:`os.PathLike`), a PIL image, or an ``(H, W, 3)`` array
            (uint8, or float in [0, 1]).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: not an image, grayscale or RGBA (convert to RGB first), or smaller than
            :data:`MIN_SIDE` pixels on a side.
        TypeError: an object of another kind.
    """
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise FileNotFoundError(f"{name}: no such file: {path}")
        if path.is_dir():
            raise ValueError(f"{name} must be an image file; got the folder {path}")
        try:
            with Image.open(path) as im:
                im.load()
                mode = im.mode
                arr = np.asarray(im.convert("RGB")) if mode in ("RGB", "P", "YCbCr", "CMYK") else None
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{name}: {path} is not a readable image ({exc})") from exc
        if arr is None:
            raise ValueError(
                f"{name} must be an RGB photo; {path.name} is {_mode_text(mode)}: convert it to RGB first "
                "(e.g. PIL.Image.open(path).convert('RGB'))"
            )
    elif hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        if image.mode != "RGB":
            raise ValueError(
                f"{name} must be an RGB image; got a PIL image in mode {image.mode!r} ({_mode_text(image.mode)}): "
                "convert it with .convert('RGB')"
            )
        arr = np.asarray(image)
    elif isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        arr = np.asarray(image)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 4)):
            what = "grayscale" if arr.ndim == 2 or arr.shape[-1] == 1 else "RGBA"
            raise ValueError(f"{name} must have shape (H, W, 3) RGB; got {v.shape_str(arr.shape)} ({what})")
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"{name} must have shape (H, W, 3); got {v.shape_str(arr.shape)}")
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
                raise ValueError(f"{name}: a float image must hold finite values in [0, 1]")
            arr = np.round(arr * 255).astype(np.uint8)
        elif arr.dtype != np.uint8:
            raise TypeError(f"{name} must be uint8 or float in [0, 1]; got dtype {arr.dtype}")
    else:
        raise TypeError(f"{name} must be a path, a PIL image or an (H, W, 3) array; got {type(image).__name__}")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ValueError(f"{name} is too small: {arr.shape[1]}x{arr.shape[0]} pixels; need at least {MIN_SIDE} on each side")
    return np.ascontiguousarray(arr)


def _mode_text(mode: str) -> str:
    return {"L": "grayscale", "LA": "grayscale with alpha", "1": "black and white", "RGBA": "RGBA", "I;16": "16-bit grayscale", "I": "32-bit grayscale", "F": "float grayscale"}.get(mode, f"mode {mode!r}")


# ------------------------------------------------------------------------------------ detection
_CASCADE: Any = None


def _cascade() -> Any:
    global _CASCADE
    if _CASCADE is None:
        from skimage import data, feature  # noqa: PLC0415

        _CASCADE = feature.Cascade(data.lbp_frontal_face_cascade_filename())
    return _CASCADE


def _nms(boxes: list[tuple[float, float, float, float]], iou_max: float = 0.3) -> list[tuple[float, float, float, float]]:
    """Largest first; drop boxes overlapping a kept one by more than ``iou_max``."""
    kept: list[tuple[float, float, float, float]] = []
    for b in sorted(boxes, key=lambda b: -b[2] * b[3]):
        ok = True
        for k in kept:
            ix = max(0.0, min(b[0] + b[2], k[0] + k[2]) - max(b[0], k[0]))
            iy = max(0.0, min(b[1] + b[3], k[1] + k[3]) - max(b[1], k[1]))
            inter = ix * iy
            if inter / (b[2] * b[3] + k[2] * k[3] - inter) > iou_max or inter >= 0.8 * b[2] * b[3]:
                ok = False
                break
        if ok:
            kept.append(b)
    return kept


def detect_faces(image: Any, detect_size: int = DETECT_SIZE) -> list[tuple[int, int, int, int]]:
    """Frontal faces in a photo, largest first, as ``(x, y, w, h)`` boxes in photo pixels.

    Runs scikit-image's LBP cascade on a grayscale copy whose long side is ``detect_size``
    pixels (faces smaller than about ``24 / detect_size`` of the long side are missed), then at
    twice that size if nothing was found. Overlapping detections are merged.
    """
    from PIL import Image  # noqa: PLC0415

    arr = load_image(image)
    H, W = arr.shape[:2]
    gray = Image.fromarray(arr).convert("L")
    for size in (detect_size, 2 * detect_size):
        s = min(1.0, size / max(H, W))
        small = np.asarray(gray.resize((max(24, round(W * s)), max(24, round(H * s))), Image.BILINEAR))
        found = _cascade().detect_multi_scale(
            img=small, scale_factor=1.15, step_ratio=1, min_size=(24, 24), max_size=small.shape[:2], min_neighbor_number=2
        )
        boxes = [(d["c"] / s, d["r"] / s, d["width"] / s, d["height"] / s) for d in found]
        if boxes:
            return [tuple(int(round(t)) for t in b) for b in _nms(boxes)]  # type: ignore[misc]
        if s == 1.0:
            break
    return []


# ------------------------------------------------------------------------------------ pipeline
def reconstruct(
    image: Any,
    *,
    lam: float = 0.1,
    detect: bool = True,
    all_faces: bool = False,
    model: Any = None,
    method: str = "mg",
    flip: bool = True,
) -> Any:
    """Reconstruct the head in a photo as a mesh (the paper's pipeline).

    Args:
        image: path, PIL image or ``(H, W, 3)`` RGB array (uint8, or float in [0, 1]).
        lam: ``lam`` of the integration weights ``w = 1 / (1 + lam W)`` (paper's optimum 0.1).
        detect: find the face and frame the head; ``False`` for photos already cropped to the
            head (the whole photo is resized to 128 x 128).
        all_faces: return a list with one :class:`Reconstruction` per detected face (largest
            first) instead of the largest face's.
        model: a network from :func:`monohead.model.load_pretrained` (default: the shipped one,
            loaded once and cached), or any callable taking ``(B, 128, 128, 3)`` uint8 crops and
            returning ``(normals (B, 128, 128, 3), W (B, 128, 128), mask (B, 128, 128))`` in the
            conventions' frame (your own predictor).
        method: integrator method (``"mg"``, ``"jacobi"``, ``"direct"``).
        flip: average the network's outputs for the crop and its left-right mirror image
            (:func:`monohead.model.predict` ``flip``): lower error at twice the network time.
            Applies to networks (torch modules); a callable predictor is called as it is.

    Returns:
        A :class:`Reconstruction`, or a list of them with ``all_faces``.

    Raises:
        NoFaceError: no face found (pass ``detect=False`` for pre-cropped input).
        FileNotFoundError, ValueError, TypeError: unreadable or unsuitable image (see :func:`load_image`).
    """
    from . import geometry  # noqa: PLC0415
    from .integration import integrate  # noqa: PLC0415

    lam = v.check_lam(lam)
    photo = load_image(image)
    t0 = time.perf_counter()
    if detect:
        faces = detect_faces(photo)
        if not faces:
            raise NoFaceError(
                "no face found in the photo; if it is already cropped to the head, use detect=False (CLI: --no-detect)"
            )
        targets: list[tuple[Box, Any]] = [(head_box(f), f) for f in (faces if all_faces else faces[:1])]
    else:
        H, W = photo.shape[:2]
        side = float(max(H, W))
        targets = [(Box((W - side) / 2.0, (H - side) / 2.0, side), None)]
    t_detect = (time.perf_counter() - t0) / len(targets)
    crops = np.stack([crop_square(photo, b, INPUT_SIZE) for b, _ in targets])

    t0 = time.perf_counter()
    net = load_default_model() if model is None else model
    if callable(net) and not _is_torch_module(net):
        normals, Wmap, mask = net(crops)
    else:
        from .model import predict  # noqa: PLC0415

        normals, Wmap, mask = predict(net, crops, flip=flip)
    normals, Wmap, mask = np.asarray(normals), np.asarray(Wmap), np.asarray(mask, dtype=bool)
    t_net = (time.perf_counter() - t0) / len(targets)

    results = []
    for k, (box, face) in enumerate(targets):
        t0 = time.perf_counter()
        m = mask[k]
        if not m.any():
            raise NoFaceError("the network found no head in the crop; check the framing or use detect=False")
        depth = integrate(limit_slope(normals[k], m), Wmap[k], lam, m, method=method)
        t_int = time.perf_counter() - t0
        t0 = time.perf_counter()
        mesh = geometry.depth_to_mesh(depth, m)
        rgb = crops[k][m]
        mesh.visual.vertex_colors = np.column_stack([rgb, np.full(len(rgb), 255, np.uint8)])
        t_mesh = time.perf_counter() - t0
        results.append(
            Reconstruction(
                box=box,
                face_box=None if face is None else tuple(int(t) for t in face),
                crop=crops[k],
                normals=normals[k],
                W=Wmap[k],
                mask=m,
                depth=depth,
                mesh=mesh,
                seconds={"detection": t_detect, "network": t_net, "integration": t_int, "meshing": t_mesh},
            )
        )
    return results if all_faces else results[0]


def limit_slope(normals: np.ndarray, mask: np.ndarray, min_nz: float = MIN_NZ) -> np.ndarray:
    """Unit normals with ``Nz >= min_nz`` inside ``mask``: the ones closer to grazing keep their
    direction in the image plane and are tilted up to ``Nz = min_nz`` (float64 copy)."""
    n = np.array(normals, dtype=np.float64)
    low = mask & (n[..., 2] < min_nz)
    if low.any():
        xy = n[low][:, :2]
        length = np.maximum(np.linalg.norm(xy, axis=1, keepdims=True), 1e-12)
        n[low] = np.column_stack([xy / length * np.sqrt(1.0 - min_nz**2), np.full(len(xy), min_nz)])
    return n


_MODEL: Any = None


def _is_torch_module(obj: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(obj).__mro__)


def load_default_model() -> Any:
    """The shipped network (:func:`monohead.model.load_pretrained`), loaded once and cached."""
    global _MODEL
    if _MODEL is None:
        from .model import load_pretrained  # noqa: PLC0415

        _MODEL = load_pretrained()
    return _MODEL


# ------------------------------------------------------------------------------------ preview
def shaded_view(vertices: np.ndarray, normals: np.ndarray, view: str = "front", size: int = INPUT_SIZE) -> np.ndarray:
    """A grey Lambert-shaded picture of a point-dense surface, ``(size, size)`` float in [0, 1].

    An orthographic z-buffered splat of the vertices (one per pixel of a depth-map mesh, so
    the surface is dense), seen from the front (looking down -z) or from the subject's left
    side (looking down -x, so the face points left). The light comes from the viewer's
    upper left. Background is 1 (white).

    Args:
        vertices: ``(V, 3)`` in the conventions' frame (x right, y up, z toward the viewer).
        normals: ``(V, 3)`` unit vertex normals.
        view: ``"front"`` or ``"side"``.
    """
    if view == "front":
        u, w_, depth = vertices[:, 0], vertices[:, 1], vertices[:, 2]
        light = np.array([-0.4, 0.5, 0.77])
    elif view == "side":
        u, w_, depth = -vertices[:, 2], vertices[:, 1], vertices[:, 0]
        light = np.array([0.6, 0.5, 0.62])
    else:
        raise ValueError(f"view must be 'front' or 'side'; got {view!r}")
    light = light / np.linalg.norm(light)
    shade = np.clip(normals @ light, 0.0, 1.0) * 0.8 + 0.15
    umin, umax, wmin, wmax = u.min(), u.max(), w_.min(), w_.max()
    span = max(umax - umin, wmax - wmin, 1e-9) * 1.08
    cu, cw = (umin + umax) / 2, (wmin + wmax) / 2
    col = np.clip(((u - cu) / span + 0.5) * (size - 1), 0, size - 1).round().astype(np.int64)
    row = np.clip((0.5 - (w_ - cw) / span) * (size - 1), 0, size - 1).round().astype(np.int64)
    flat = row * size + col
    order = np.argsort(depth)  # nearest last: later writes win
    img = np.ones(size * size)
    img[flat[order]] = shade[order]
    img = img.reshape(size, size)
    # close one-pixel holes left by the splat
    hole = img == 1.0
    nb = np.stack([np.roll(img, s, a) for a in (0, 1) for s in (1, -1)])
    filled = np.where(nb < 1.0, nb, np.nan)
    count = np.sum(~np.isnan(filled), axis=0)
    img = np.where(hole & (count >= 3), np.nanmean(np.where(count >= 3, filled, 0.0), axis=0), img)
    return img


def preview_png(result: Reconstruction, title: str = "") -> bytes:
    """The paper's Fig. 7 for one reconstruction, as PNG bytes: the crop, N, W and the mesh
    shaded from the front and from the side."""
    import io  # noqa: PLC0415

    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    from . import geometry  # noqa: PLC0415

    m = result.mask
    n_img = geometry.normals_to_image(result.normals, m)
    verts = np.asarray(result.mesh.vertices)
    faces = np.asarray(result.mesh.faces)
    if len(faces):
        vn = geometry.vertex_normals(verts, faces)
        # densify the splat with the triangles' centroids and edge midpoints (no holes at
        # grazing angles in the side view)
        pts = [verts, verts[faces].mean(axis=1)]
        nrm = [vn, vn[faces].mean(axis=1)]
        for a, b in ((0, 1), (1, 2), (2, 0)):
            pts.append(0.5 * (verts[faces[:, a]] + verts[faces[:, b]]))
            nrm.append(0.5 * (vn[faces[:, a]] + vn[faces[:, b]]))
        verts = np.concatenate(pts)
        vn = np.concatenate(nrm)
        vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    else:
        vn = np.tile([0.0, 0.0, 1.0], (len(verts), 1))
    fig = Figure(figsize=(12.5, 2.9), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 5)
    panels = [
        (result.crop, "photo crop", None),
        (n_img, "normals N", None),
        (np.where(m, result.W, np.nan), "W = |grad h|", "magma"),
        (shaded_view(verts, vn, "front"), "mesh, front", "gray"),
        (shaded_view(verts, vn, "side"), "mesh, side", "gray"),
    ]
    for ax, (img, name, cmap) in zip(axes, panels):
        im = ax.imshow(img, cmap=cmap, vmin=0 if cmap == "gray" else None, vmax=1 if cmap == "gray" else None)
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
        if name.startswith("W"):
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
