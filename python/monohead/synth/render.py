"""Rendering with Mitsuba 3: the image, and the ground-truth maps in the same scene.

One :class:`Renderer` keeps one Mitsuba scene of fixed structure (skin, eyes, hair, glasses
frame and lenses, an environment map and four slots for each kind of light) and updates it in
place for every sample (:meth:`Renderer.update`): vertex positions and normals, hair curves,
textures, materials and lights. Changing values, never the structure,
keeps Dr.Jit's compiled kernels valid from one sample to the next.

- The **image** (:meth:`Renderer.render_image`) is path traced (``path`` integrator,
  ``spp`` jittered samples per pixel, box filter) with the camera's direct view of emitters
  hidden, so that the film's alpha is the head's coverage; the background is composited
  behind it.
- The **ground truth** (:meth:`Renderer.ground_truth`) casts one ray through each pixel
  centre with the same camera and scene, steps through occluders (every shape that is not
  the head or the eyes: hair, facial hair, glasses and, in version 2, the torso, clothes,
  headwear, hands and held objects of the :class:`ExtraSlot` meshes) along that same ray
  and records the first hit on the head or the eyes: its position (x, y and the depth, in
  pixels) and its shading normal, the barycentric interpolation of the angle-weighted vertex
  normals (paper eq. 2) that :meth:`Renderer.update` gave the meshes. Pixels whose normal
  faces away from the camera (``Nz <= FACING_MIN_NZ``, at silhouettes where interpolated normals
  tilt past 90°) are left out of the mask, as the integrator requires ``Nz > 0`` in it.

Variants: ``llvm_ad_rgb`` (vectorised, fast) needs an LLVM shared library of version 16 or
newer; :func:`select_variant` finds one at Debian's paths (``libllvm19``) and points
``DRJIT_LIBLLVM_PATH`` at it, or falls back to ``scalar_rgb`` (same images, slower; its ground
truth is traced ray by ray).

World frame = camera frame of ``conventions.md`` in pixel units: pixel ``(r, c)`` is centred at
``(x, y) = (c, -r)``, z toward the viewer (for a perspective camera: on the reference plane
``z = 0``, :mod:`monohead.synth.camera`).
"""

from __future__ import annotations

import glob
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import geometry
from .camera import pixel_rays, project
from .head_model import EYE_REGIONS, SKIN_REGIONS, HeadModel
from .textures import TextureSpace

__all__ = [
    "FACING_MIN_NZ",
    "RENDER_LOCK",
    "ExtraSlot",
    "GroundTruth",
    "Renderer",
    "SceneArrays",
    "cuda_available",
    "facing_mask",
    "find_llvm",
    "pad_hair",
    "select_variant",
]

FACING_MIN_NZ = 1e-3
"""Pixels whose ground-truth normal has ``Nz <= FACING_MIN_NZ`` are outside the mask; under a
perspective camera also those whose normal has ``N . (-ray) <= FACING_MIN_NZ`` (:func:`facing_mask`)."""


def facing_mask(normals: np.ndarray, camera: dict[str, Any] | None) -> np.ndarray:
    """``(H, W)`` bool: unit normals ``(H, W, 3)`` that face the camera: ``Nz > FACING_MIN_NZ`` and,
    for a perspective camera, ``N . (-d) > FACING_MIN_NZ`` with ``d`` the pixel's unit ray (what the
    orthographic and the perspective integrators both need in their mask)."""
    h, w = normals.shape[:2]
    ok = normals[..., 2] > FACING_MIN_NZ
    if camera is not None and camera.get("projection") == "perspective":
        _, d = pixel_rays(camera, (h, w), 0.0)
        ok &= -(normals.reshape(-1, 3) * d).sum(axis=1).reshape(h, w) > FACING_MIN_NZ
    return ok


LIGHT_SLOTS = 4
"""Lights of each kind (point, spot, directional) the scene can hold at once."""

HAIR_BUCKETS = (4, 16384, 32768, 65536)
"""Control-point counts the hair curve is padded to (with hidden strands). Dr.Jit compiles the
number of curve control points and segments into its kernels, so these counts, with the
styles' points per strand (:data:`monohead.synth.hair.STYLE_POINTS`), make four kernels in
all instead of one per hairstyle (the last bucket is only reached by version-2 scenes whose
facial hair adds strands to the scalp's). A scene holds at most ``HAIR_BUCKETS[-1]`` control
points of hair; the buffer always ends with at least one hidden strand (:func:`pad_hair`), so
strands that fill a bucket exactly go into the next one (:data:`HAIR_SPILL` after the last)."""

HAIR_SPILL = HAIR_BUCKETS[-1] + 1024
"""The curve buffer of a scene whose strands fill ``HAIR_BUCKETS[-1]`` exactly (one more kernel)."""

_REDO_BLOCK = 64  # rays traced again from inside the skin are padded to a multiple of this
_STEP = 1e-3  # pixels: how far past an occluder's surface the ground-truth ray goes on
#: Mitsuba's variant is process-wide: one renderer at a time. Re-entrant; hold it around a
#: renderer's update, render and trace to keep one scene's steps together.
RENDER_LOCK = threading.RLock()
_LLVM_MIN = 16


def find_llvm() -> str | None:
    """Path of an LLVM shared library usable by Dr.Jit (version >= 16), or ``None``.

    ``DRJIT_LIBLLVM_PATH`` wins if set. Otherwise the usual Linux locations are searched
    (``/usr/lib/llvm-*/lib``, ``/usr/lib/<arch>-linux-gnu``: Debian's ``libllvm19`` installs
    ``/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1``) and the newest version is returned.
    Older versions are ignored: Dr.Jit aborts the process with LLVM 15.
    """
    env = os.environ.get("DRJIT_LIBLLVM_PATH")
    if env:
        return env if os.path.exists(env) else None
    pats = [
        "/usr/lib/llvm-*/lib/libLLVM*.so*",
        "/usr/lib/*-linux-gnu/libLLVM*.so*",
        "/usr/lib64/libLLVM*.so*",
        "/usr/local/lib/libLLVM*.so*",
        "/opt/homebrew/opt/llvm/lib/libLLVM.dylib",
        "/usr/local/opt/llvm/lib/libLLVM.dylib",
    ]
    best: tuple[int, str] | None = None
    for pat in pats:
        for path in glob.glob(pat):
            m = re.search(r"libLLVM(?:-|\.so\.)(\d+)", os.path.basename(path)) or re.search(r"llvm-(\d+)", path)
            if not m:
                continue
            ver = int(m.group(1))
            if ver >= _LLVM_MIN and os.path.isfile(path) and (best is None or ver > best[0]):
                best = (ver, path)
    return best[1] if best else None


def cuda_available() -> bool:
    """Whether Dr.Jit sees a CUDA device (an NVIDIA GPU and driver) for the ``cuda_ad_rgb`` variant."""
    try:
        import drjit as dr
    except ImportError:  # pragma: no cover - drjit comes with mitsuba
        return False
    return bool(dr.has_backend(dr.JitBackend.CUDA))


def select_variant(variant: str = "auto") -> str:
    """The Mitsuba variant to use: ``llvm_ad_rgb`` when LLVM is found, else ``scalar_rgb``.

    ``"cuda_ad_rgb"`` renders on an NVIDIA GPU (OptiX); it is used only when asked for, never
    by ``"auto"``. Images of one variant are not bit-identical to another's: a data set's
    manifest records its variant, and a set is continued with it.

    Args:
        variant: ``"auto"``, ``"llvm_ad_rgb"``, ``"scalar_rgb"`` or ``"cuda_ad_rgb"``.

    Raises:
        ValueError: an unknown variant, ``llvm_ad_rgb`` asked for without LLVM >= 16, or
            ``cuda_ad_rgb`` without a CUDA device.
        ImportError: Mitsuba is not installed.
    """
    if variant not in ("auto", "llvm_ad_rgb", "scalar_rgb", "cuda_ad_rgb"):
        raise ValueError(f"variant must be 'auto', 'llvm_ad_rgb', 'scalar_rgb' or 'cuda_ad_rgb'; got {variant!r}")
    if variant == "scalar_rgb":
        return variant
    if variant == "cuda_ad_rgb":
        if not cuda_available():
            raise ValueError("variant 'cuda_ad_rgb' needs an NVIDIA GPU and driver that Dr.Jit can use; none found")
        return variant
    path = find_llvm()
    if path is None:
        if variant == "llvm_ad_rgb":
            raise ValueError(
                "variant 'llvm_ad_rgb' needs LLVM >= 16 (Debian: apt-get install libllvm19, or set "
                "DRJIT_LIBLLVM_PATH); none found"
            )
        return "scalar_rgb"
    os.environ.setdefault("DRJIT_LIBLLVM_PATH", path)
    return "llvm_ad_rgb"


def _mitsuba(variant: str) -> Any:
    try:
        import mitsuba as mi
    except ImportError as exc:  # pragma: no cover - mitsuba is a dependency
        raise ImportError("monohead.synth needs Mitsuba 3: pip install mitsuba") from exc
    if mi.variant() != variant:
        mi.set_variant(variant)
    return mi


@dataclass
class SceneArrays:
    """Everything the renderer needs for one sample, in the world (pixel) frame.

    Attributes:
        vertices: ``(V, 3)`` head model vertices (pixels).
        normals: ``(V, 3)`` angle-weighted unit normals of the head and eyes (eq. 2).
        hair: ``(N, K, 4)`` B-spline control points and radii (pixels); N may be 0.
        frame_vertices, frame_faces, lens_vertices, lens_faces: glasses meshes (pixels).
        skin_albedo: ``(h, 2h, 3)`` linear RGB; eye_albedo: ``(s, s, 3)``.
        materials: ``skin_roughness``, ``skin_specular``, ``eye_roughness``,
            ``hair`` (dict of hair BSDF parameters), ``frame_rgb``, ``frame_metallic``,
            ``frame_roughness``, ``lens_tint``.
        lights: list of dicts ``kind``, ``position`` (point, spot), ``direction`` (from the
            head toward the light), ``rgb`` (intensity or irradiance), ``cutoff``, ``beam``,
            ``target``.
        environment: ``(h, 2 h, 3)`` equirectangular radiance, ``h`` the renderer's
            ``environment_size`` (16 for generator version 1).
        background: ``(H, W, 3)`` linear radiance behind the head.
        camera: the sample's ``params["camera"]`` (:mod:`monohead.synth.camera`); ``None``
            leaves the camera as it is (a perspective renderer needs it).
        background_scene_referred: the background is scene radiance, exposed like the head
            (an environment map seen through the camera), not display-referred.
        skin_normalmap, skin_roughness: ``(h, 2h, 3)`` tangent-space normals encoded as
            ``(n + 1) / 2`` and ``(h, 2h, 1)`` roughness of the skin atlas, for a renderer with
            ``skin_detail`` (``None``: flat, and the material's roughness).
        extras: ``{slot name: {"vertices": (V, 3), "albedo": (h, w, 3) linear RGB,
            "normalmap": (h, w, 3) tangent-space normals encoded as ``(n + 1) / 2``,
            "roughness": float}}`` for the renderer's :class:`ExtraSlot` meshes (generator
            version 2: body, clothes, headwear, hands and props); slots left out are hidden.
        mouth_vertices, mouth_normals: ``(M, 3)`` teeth, gums and tongue vertices (pixels) and
            their angle-weighted unit normals, for a renderer with ``mouth`` (generator version
            3; :meth:`~monohead.synth.head_model.HeadModel.mouth_shape`). Their colours are
            ``materials["teeth_rgb"]`` and ``materials["tongue_rgb"]`` (linear RGB).
    """

    vertices: np.ndarray
    normals: np.ndarray
    hair: np.ndarray
    frame_vertices: np.ndarray
    frame_faces: np.ndarray
    lens_vertices: np.ndarray
    lens_faces: np.ndarray
    skin_albedo: np.ndarray
    eye_albedo: np.ndarray
    materials: dict[str, Any]
    lights: list[dict[str, Any]]
    environment: np.ndarray
    background: np.ndarray
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    camera: dict[str, Any] | None = None
    background_scene_referred: bool = False
    skin_normalmap: np.ndarray | None = None
    skin_roughness: np.ndarray | None = None
    mouth_vertices: np.ndarray | None = None
    mouth_normals: np.ndarray | None = None


@dataclass
class ExtraSlot:
    """A textured mesh of fixed topology that the scene holds besides the head (generator
    version 2: torso and clothes, collars, headwear, hands and props).

    Everything that is not the head or the eyes is an occluder for the ground truth: rays
    step through it (see :meth:`Renderer.ground_truth`), so an extra mesh is never in the
    mask, and the head behind it is.

    Attributes:
        name: the Mitsuba shape id.
        faces: ``(F, 3)`` triangles (fixed for the renderer's life).
        uv: ``(V, 2)`` texture coordinates (fixed), V vertices.
        texture: ``(h, w)`` of the albedo and normal maps.
    """

    name: str
    faces: np.ndarray
    uv: np.ndarray
    texture: tuple[int, int]


@dataclass
class GroundTruth:
    """Ground-truth maps at pixel centres (world frame = camera frame, pixel units).

    Attributes:
        normals: ``(H, W, 3)`` float32 unit normals, ``(0, 0, 0)`` outside the mask.
        depth: ``(H, W)`` float32 height toward the viewer (pixels), NaN outside the mask.
        mask: ``(H, W)`` bool, head and eyes seen through occluders, facing the camera
            (:func:`facing_mask`).
        part: ``(H, W)`` uint8: 0 background, 1 skin, 2 eyes.
        xy_error: largest distance (pixels) over the mask between a hit's projection into the
            image and its pixel centre ``(c, r)`` (orthographic: ``|hit.xy - (c, -r)|``): 0 up
            to rounding.
    """

    normals: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    part: np.ndarray
    xy_error: float


def _floats(mi: Any, data: np.ndarray) -> Any:
    """A flat float32 buffer of the variant (``mi.Float``, or Dr.Jit's dynamic scalar array)."""
    flat = np.ascontiguousarray(data, np.float32).ravel()
    if mi.variant().startswith("scalar"):
        import drjit as dr

        return dr.scalar.ArrayXf(flat)
    return mi.Float(flat)


def _uints(mi: Any, data: np.ndarray) -> Any:
    """A flat uint32 buffer of the variant."""
    flat = np.ascontiguousarray(data, np.uint32).ravel()
    if mi.variant().startswith("scalar"):
        import drjit as dr

        return dr.scalar.ArrayXu(flat)
    return mi.UInt32(flat)


def _assign(params: Any, key: str, value: Any) -> None:
    """``params[key] = value``, also when the new buffer has another size: Mitsuba's scalar
    variants refuse to compare buffers of different sizes in ``SceneParameters.__setitem__``."""
    try:
        params[key] = value
    except RuntimeError as exc:
        if "incompatible input sizes" not in str(exc):
            raise
        cur, value_type, _node, _flags = params.properties[key]
        params.set_dirty(key)
        if value_type is None:
            params.set_property(cur, value)
        else:
            params.set_property(cur, value_type, value)


def _safe_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Eq. 2 vertex normals, ``(0, 0, 1)`` where undefined (collapsed, hidden geometry)."""
    v = np.asarray(vertices, np.float64)
    nrm = geometry.vertex_normals(v, faces) if np.ptp(v, axis=0).max() > 0 else np.zeros_like(v)
    nrm[np.linalg.norm(nrm, axis=1) == 0] = (0.0, 0.0, 1.0)
    return nrm


@dataclass
class _RayArrays:
    """Pixel rays as NumPy arrays ``(n, 3)`` (the scalar variant's stand-in for a Ray3f)."""

    o: np.ndarray
    d: np.ndarray


def _split(faces: np.ndarray, corner_uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render vertices (one per distinct (vertex, uv) pair) of a triangle set.

    Returns ``(vertex (R,), uv_index (R,), faces (F, 3) into R)``."""
    key = faces.astype(np.int64) * (1 << 32) + corner_uv
    uniq, inv = np.unique(key.ravel(), return_inverse=True)
    return (uniq >> 32).astype(np.int64), (uniq & 0xFFFFFFFF).astype(np.int64), inv.reshape(-1, 3)


def pad_hair(strands: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The hair curve buffer of a scene: ``strands (N, K, 4)`` (x, y, z, radius per control
    point, world frame, pixels; ``K >= 4``, or ``N = 0``) followed by tiny hidden strands at
    ``inside`` (a point inside the head: never seen, never in the way), ``(n, max(K, 4), 4)``
    float32 with ``n * K`` a :data:`HAIR_BUCKETS` count (or :data:`HAIR_SPILL`).

    The buffer always ends with at least one hidden strand: a visible strand must never be the
    last of the curve. With ``llvm_ad_rgb``, Mitsuba 3.9.1 crashes (segmentation fault in the
    compiled path-tracing kernel) when a path hits the final segment of the curve buffer in
    some scenes (seed 22, sample 593 of generator version 2: a goatee that filled the last
    bucket exactly), most likely through the out-of-range segment index that Mitsuba later
    clamps in the B-spline curve's partial derivatives. So strands that fill a bucket exactly go
    into the next bucket; any other strand count keeps the bucket, and the buffer, it always had.

    Raises:
        ValueError: more than ``HAIR_BUCKETS[-1]`` control points.
    """
    hair = np.asarray(strands, np.float32)
    k = max(hair.shape[1], 4) if hair.ndim == 3 else 4
    used = hair.shape[0] * k
    if used > HAIR_BUCKETS[-1]:
        raise ValueError(f"at most {HAIR_BUCKETS[-1]} hair control points; got {used}")
    total = next(b for b in (*HAIR_BUCKETS, HAIR_SPILL) if b >= used + k and b % k == 0)
    n = total // k
    pad = np.zeros((n - hair.shape[0], k, 4), np.float32)
    pad[..., :3] = np.asarray(inside, np.float32)
    pad[..., 2] += np.linspace(0.0, 1e-2, k, dtype=np.float32)
    pad[..., 3] = 1e-3
    return np.concatenate([hair.reshape(-1, k, 4), pad]) if len(hair) else pad


def _bspline_segments(n: int, k: int) -> np.ndarray:
    return (np.arange(n)[:, None] * k + np.arange(k - 3)[None, :]).ravel().astype(np.uint32)


class Renderer:
    """A Mitsuba scene for one image size, updated in place for each sample.

    Args:
        model: the :class:`HeadModel`.
        size: image size ``(H, W)`` or ``S`` for ``(S, S)``.
        spp: samples per pixel of the image.
        variant: ``"auto"``, ``"llvm_ad_rgb"`` or ``"scalar_rgb"`` (:func:`select_variant`).
        max_depth: path length of the ``path`` integrator (3: direct light and one bounce).
        texture_size: skin atlas height in texels (default ``clip(2 max(H, W), 256, 1024)``).
        sampler: Mitsuba sampler of the image: ``multijitter`` (default: jittered strata,
            less noise than independent samples for the same ``spp``), ``independent``,
            ``stratified`` or ``ldsampler``.
        drop_faces: ``(F,)`` bool over the model's faces: skin triangles left out of the
            scene (generator version 2 cuts the ICT neck at its base, where the torso of
            :mod:`monohead.synth.body` joins it). ``None``: all of them.
        extras: :class:`ExtraSlot` meshes to hold besides the head (default none: the
            version-1 scene).
        projection: ``"orthographic"`` (generator version 1) or ``"perspective"`` (a pinhole
            whose focal length and distance every :meth:`update` sets from
            ``SceneArrays.camera``, :mod:`monohead.synth.camera`).
        environment_size: height ``h`` of the ``(h, 2 h)`` environment map (16 for version 1).
        skin_detail: give the skin a normal map (wrinkles) and a roughness map (oily zones),
            set by every update from ``SceneArrays.skin_normalmap`` and ``skin_roughness``
            (version 2). The ground truth keeps the mesh's own normals.
        mouth: hold ICT's teeth, gums and tongue (generator version 3; the model's asset must
            have them): two meshes ``teeth`` and ``tongue`` set by every update from
            ``SceneArrays.mouth_vertices``. They are part of the head for the ground truth
            (its rays stop on them, as on the skin and the eyes).
    """

    def __init__(
        self,
        model: HeadModel,
        size: int | tuple[int, int] = 128,
        spp: int = 9,
        variant: str = "auto",
        max_depth: int = 3,
        texture_size: int | None = None,
        sampler: str = "multijitter",
        drop_faces: np.ndarray | None = None,
        extras: tuple[ExtraSlot, ...] = (),
        projection: str = "orthographic",
        environment_size: int = 16,
        skin_detail: bool = False,
        mouth: bool = False,
    ) -> None:
        h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if int(h) < 8 or int(w) < 8:
            raise ValueError(f"size must be at least 8 pixels; got {(h, w)}")
        self.size = (int(h), int(w))
        self.spp = int(spp)
        if self.spp < 1:
            raise ValueError(f"spp must be a positive integer; got {spp}")
        self.max_depth = int(max_depth)
        if sampler not in ("independent", "multijitter", "stratified", "ldsampler"):
            raise ValueError(
                f"sampler must be 'independent', 'multijitter', 'stratified' or 'ldsampler'; got {sampler!r}"
            )
        self.sampler = sampler
        if projection not in ("orthographic", "perspective"):
            raise ValueError(f"projection must be 'orthographic' or 'perspective'; got {projection!r}")
        self.projection = projection
        self.skin_detail = bool(skin_detail)
        self.environment_size = int(environment_size)
        if self.environment_size < 4:
            raise ValueError(f"environment_size must be at least 4; got {environment_size}")
        self.camera: dict[str, Any] = {"projection": projection}
        self.variant = select_variant(variant)
        self.model = model
        tex = texture_size or int(np.clip(2 * max(h, w), 256, 1024))
        self.space = TextureSpace(model, tex, eye_size=128)
        skin = model.region_faces(list(SKIN_REGIONS))
        if drop_faces is not None:
            drop = np.asarray(drop_faces, bool)
            if drop.shape != skin.shape:
                raise ValueError(f"drop_faces must be a bool array of shape {skin.shape}; got {drop.shape}")
            skin = skin & ~drop
        eyes = model.region_faces(list(EYE_REGIONS))
        self.extras = tuple(extras)
        self.gt_faces = model.faces[skin | eyes]
        # Render vertices: skin and eyes split at UV seams.
        self._skin = _split(model.faces[skin], model.corner_uv[skin])
        self._eyes = _split(model.faces[eyes], model.corner_uv[eyes])
        self._skin_uv = self._atlas_uv(self._skin[1], "skin")
        self._eye_uv = self._atlas_uv(self._eyes[1], "eye")
        self._mouth: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if mouth:
            if not model.has_mouth:
                raise ValueError(f"mouth=True needs a head model with teeth and tongue; {model.source!r} has none")
            for name, region in (("teeth", "teeth"), ("tongue", "gums_and_tongue")):
                f = model.mouth_faces[model.mouth_face_region == model.mouth_region_names.index(region)]
                used, local = np.unique(f, return_inverse=True)
                self._mouth[name] = (used, local.reshape(-1, 3))
        with RENDER_LOCK:
            self._build()

    # -- scene construction ----------------------------------------------------------------

    def _atlas_uv(self, uv_index: np.ndarray, kind: str) -> np.ndarray:
        uv = self.model.uv[uv_index].copy()
        if kind == "skin":
            uv[:, 0] = np.clip(uv[:, 0], 0.0, 2.0) / 2.0
        else:
            uv[:, 0] = uv[:, 0] - np.floor(uv[:, 0].mean())
        uv[:, 1] = 1.0 - uv[:, 1]
        return uv.astype(np.float32)

    def _mesh(
        self, mi: Any, name: str, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray | None, bsdf: dict
    ) -> Any:
        """A Mitsuba mesh with placeholder ``vertices`` (replaced by every :meth:`update`)."""
        n_vertices = len(vertices)
        props = mi.Properties()
        props["bsdf"] = mi.load_dict(bsdf)
        mesh = mi.Mesh(
            name, n_vertices, len(faces), props=props, has_vertex_normals=True, has_vertex_texcoords=uv is not None
        )
        p = mi.traverse(mesh)
        p["faces"] = _uints(mi, faces)
        p["vertex_positions"] = _floats(mi, vertices)
        p["vertex_normals"] = _floats(mi, _safe_normals(vertices, faces))
        if uv is not None:
            p["vertex_texcoords"] = _floats(mi, uv)
        p.update()
        return mesh

    def _build(self) -> None:
        mi = _mitsuba(self.variant)
        h, w = self.size
        tex = self.space
        self.camera_z = 4.0 * max(h, w)
        to_world = (
            mi.ScalarTransform4f().translate([(w - 1) / 2, -(h - 1) / 2, self.camera_z])
            @ mi.ScalarTransform4f().scale([w / 2, w / 2, 1.0])
            @ mi.ScalarTransform4f().look_at(origin=[0, 0, 0], target=[0, 0, -1], up=[0, 1, 0])
        )
        skin_bsdf = {
            "type": "principled",
            "roughness": 0.5,
            "specular": 0.5,
            "base_color": {
                "type": "bitmap",
                "bitmap": mi.Bitmap(np.full((tex.height, tex.width, 3), 0.5, np.float32)),
                "wrap_mode": "clamp",
            },
        }
        if self.skin_detail:  # version 2: wrinkles as a normal map, oily zones as a roughness map
            skin_bsdf["roughness"] = {
                "type": "bitmap",
                "raw": True,
                "wrap_mode": "clamp",
                "bitmap": mi.Bitmap(np.full((tex.height, tex.width, 1), 0.5, np.float32)),
            }
            flat = np.concatenate(
                [np.full((tex.height, tex.width, 2), 0.5, np.float32), np.ones((tex.height, tex.width, 1), np.float32)],
                axis=-1,
            )
            skin_bsdf = {
                "type": "normalmap",
                "bsdf": skin_bsdf,
                "normalmap": {"type": "bitmap", "raw": True, "wrap_mode": "clamp", "bitmap": mi.Bitmap(flat)},
            }
        eye_bsdf = {
            "type": "principled",
            "roughness": 0.05,
            "specular": 0.6,
            "base_color": {
                "type": "bitmap",
                "bitmap": mi.Bitmap(np.full((tex.eye_size, tex.eye_size, 3), 0.8, np.float32)),
                "wrap_mode": "clamp",
            },
        }
        film = {
            "type": "hdrfilm",
            "width": w,
            "height": h,
            "rfilter": {"type": "box"},
            "pixel_format": "rgba",
            "component_format": "float32",
        }
        if self.projection == "perspective":  # placeholder focal length, set by every update
            to_world = self._perspective_to_world(mi, self.camera_z)
            sensor_type = {"type": "perspective", "fov": 30.0, "fov_axis": "x"}
        else:
            sensor_type = {"type": "orthographic"}
        sd: dict[str, Any] = {
            "type": "scene",
            "integrator": {"type": "path", "max_depth": self.max_depth, "hide_emitters": True},
            "sensor": {
                **sensor_type,
                "to_world": to_world,
                "near_clip": 1e-2,
                "far_clip": 1e2 * max(h, w),
                "film": film,
                "sampler": {"type": self.sampler, "sample_count": self.spp},
            },
            "skin": self._mesh(mi, "skin", self.model.neutral[self._skin[0]], self._skin[2], self._skin_uv, skin_bsdf),
            "eyes": self._mesh(mi, "eyes", self.model.neutral[self._eyes[0]], self._eyes[2], self._eye_uv, eye_bsdf),
            "env": {
                "type": "envmap",
                "bitmap": mi.Bitmap(np.full((self.environment_size, 2 * self.environment_size, 3), 0.2, np.float32)),
            },
        }
        # Placeholder hair (one tiny strand) and glasses (real topology, collapsed).
        from .glasses import build_glasses

        placeholder = {
            "design": "round",
            "lens_width": 5.0,
            "lens_height": 4.5,
            "thickness": 0.2,
            "depth": 0.3,
            "bridge": 1.8,
            "offset": 0.0,
            "lenses": True,
        }
        fv, ff, lv, lf = build_glasses(placeholder, self.model, self.model.neutral.astype(np.float64))
        self._frame_faces, self._lens_faces = ff, lf
        sd["frame"] = self._mesh(
            mi,
            "frame",
            fv,
            ff,
            None,
            {
                "type": "principled",
                "base_color": {"type": "rgb", "value": [0.05, 0.05, 0.05]},
                "metallic": 0.0,
                "roughness": 0.3,
            },
        )
        sd["lens"] = self._mesh(
            mi,
            "lens",
            lv,
            lf,
            None,
            {"type": "thindielectric", "specular_transmittance": {"type": "rgb", "value": [1.0, 1.0, 1.0]}},
        )
        for name, (used, faces) in self._mouth.items():
            sd[name] = self._mesh(
                mi,
                name,
                self.model.mouth_neutral[used],
                faces,
                None,
                {
                    "type": "principled",
                    "base_color": {"type": "rgb", "value": [0.5, 0.5, 0.5]},
                    "roughness": 0.3,
                    "specular": 0.5,
                },
            )
        self._curve_file = self._placeholder_curve()
        sd["hair"] = {"type": "bsplinecurve", "filename": self._curve_file, "bsdf": {"type": "hair"}}
        for i in range(LIGHT_SLOTS):
            sd[f"point{i}"] = {
                "type": "point",
                "position": [0.0, 0.0, 1e3],
                "intensity": {"type": "rgb", "value": [0.0, 0.0, 0.0]},
            }
            sd[f"spot{i}"] = {
                "type": "spot",
                "to_world": mi.ScalarTransform4f().look_at(origin=[0, 0, 1e3], target=[0, 0, 0], up=[0, 1, 0]),
                "intensity": {"type": "rgb", "value": [0.0, 0.0, 0.0]},
                "cutoff_angle": 30.0,
                "beam_width": 20.0,
            }
            sd[f"directional{i}"] = {
                "type": "directional",
                "direction": [0.0, 0.0, -1.0],
                "irradiance": {"type": "rgb", "value": [0.0, 0.0, 0.0]},
            }
        for slot in self.extras:
            th, tw = slot.texture
            bsdf = {
                "type": "twosided",
                "bsdf": {
                    "type": "normalmap",
                    "normalmap": {
                        "type": "bitmap",
                        "raw": True,
                        "bitmap": mi.Bitmap(np.full((th, tw, 3), 0.5, np.float32)),
                        "wrap_mode": "repeat",
                    },
                    "bsdf": {
                        "type": "principled",
                        "roughness": 0.7,
                        "specular": 0.4,
                        "base_color": {
                            "type": "bitmap",
                            "bitmap": mi.Bitmap(np.full((th, tw, 3), 0.5, np.float32)),
                            "wrap_mode": "clamp",
                        },
                    },
                },
            }
            sd[slot.name] = self._mesh(
                mi,
                slot.name,
                np.zeros((len(slot.uv), 3)),
                np.asarray(slot.faces),
                np.asarray(slot.uv, np.float32),
                bsdf,
            )
        self.scene = mi.load_dict(sd)
        self.params = mi.traverse(self.scene)
        self._extra_keys = {}
        for slot in self.extras:
            keys = [k for k in self.params.keys() if k.startswith(slot.name + ".bsdf.")]
            self._extra_keys[slot.name] = {
                "albedo": next(k for k in keys if k.endswith("base_color.data")),
                "normalmap": next(k for k in keys if k.endswith("normalmap.data")),
                "roughness": next(k for k in keys if k.endswith("roughness.value")),
            }
        for kind in ("point", "spot", "directional"):
            for i in range(LIGHT_SLOTS):
                self.params[f"{kind}{i}.sampling_weight"] = 0.0
        self.params.update()
        skin_keys = [k for k in self.params.keys() if k.startswith("skin.bsdf.")]
        self._skin_keys = {
            "albedo": next(k for k in skin_keys if k.endswith("base_color.data")),
            "roughness": next(
                k for k in skin_keys if k.endswith("roughness.data" if self.skin_detail else "roughness.value")
            ),
            "specular": next(k for k in skin_keys if k.endswith(".specular")),
        }
        if self.skin_detail:
            self._skin_keys["normalmap"] = next(k for k in skin_keys if k.endswith("normalmap.data"))
        self.sensor = self.scene.sensors()[0]
        shapes = {s.id(): s for s in self.scene.shapes()}
        self._gt_ids = {shapes["skin"].id(): 1, shapes["eyes"].id(): 2}
        if self.variant != "scalar_rgb":
            self._skin_ptr = mi.ShapePtr(shapes["skin"])
            self._eye_ptr = mi.ShapePtr(shapes["eyes"])
            self._mouth_ptrs = [mi.ShapePtr(shapes[name]) for name in self._mouth]
        self._shapes = shapes

    def _perspective_to_world(self, mi: Any, distance: float) -> Any:
        h, w = self.size
        cx, cy = (w - 1) / 2, (h - 1) / 2
        return mi.ScalarTransform4f().look_at(
            origin=[cx, -cy, float(distance)], target=[cx, -cy, float(distance) - 1.0], up=[0, 1, 0]
        )

    def _set_camera(self, mi: Any, camera: dict[str, Any] | None) -> None:
        """Point the perspective sensor as ``camera`` says (focal length = distance)."""
        if camera is None:
            return
        if camera.get("projection") != self.projection:
            raise ValueError(
                f"this renderer has a {self.projection} camera; the sample asks for {camera.get('projection')!r}"
            )
        self.camera = camera
        if self.projection == "perspective":
            w = self.size[1]
            fx = float(camera["K"][0][0])
            self.params["sensor.x_fov"] = float(np.degrees(2.0 * np.arctan(w / 2.0 / fx)))
            self.params["sensor.to_world"] = self._perspective_to_world(mi, float(camera["distance"]))

    def _placeholder_curve(self) -> str:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="monohead-curve-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write("0 0 0 0.001\n0 0 0.001 0.001\n0 0 0.002 0.001\n0 0 0.003 0.001\n")
        return path

    def __del__(self, _unlink: Any = os.unlink) -> None:
        # os.unlink bound at definition: at interpreter shutdown the module's globals may
        # already be None when the last renderer is collected.
        path = getattr(self, "_curve_file", None)
        if path:
            try:
                _unlink(path)
            except OSError:
                pass

    # -- per-sample update -----------------------------------------------------------------

    def update(self, arrays: SceneArrays) -> None:
        """Put a sample's geometry, textures, materials and lights into the scene."""
        with RENDER_LOCK:
            self._update(arrays)

    def _update(self, a: SceneArrays) -> None:
        mi = _mitsuba(self.variant)
        p = self.params
        v = np.asarray(a.vertices, np.float32)
        n = np.asarray(a.normals, np.float32)
        sv, _, _ = self._skin
        ev, _, _ = self._eyes
        p["skin.vertex_positions"] = _floats(mi, v[sv])
        p["skin.vertex_normals"] = _floats(mi, n[sv])
        p["eyes.vertex_positions"] = _floats(mi, v[ev])
        p["eyes.vertex_normals"] = _floats(mi, n[ev])
        self._set_camera(mi, a.camera)
        self._set_mesh("frame", a.frame_vertices, a.frame_faces)
        self._set_mesh("lens", a.lens_vertices, a.lens_faces)
        points, segments, count = self._hair(mi, a.hair, v[sv].mean(axis=0))
        _assign(p, "hair.control_points", points)
        _assign(p, "hair.segment_indices", segments)
        p["hair.control_point_count"] = count
        m = a.materials
        sk = self._skin_keys
        p[sk["albedo"]] = mi.TensorXf(np.ascontiguousarray(a.skin_albedo, np.float32))
        if self.skin_detail:
            tex = self.space
            rough = (
                a.skin_roughness
                if a.skin_roughness is not None
                else np.full((tex.height, tex.width, 1), m["skin_roughness"])
            )
            nmap = (
                a.skin_normalmap
                if a.skin_normalmap is not None
                else np.concatenate(
                    [np.full((tex.height, tex.width, 2), 0.5), np.ones((tex.height, tex.width, 1))], axis=-1
                )
            )
            p[sk["roughness"]] = mi.TensorXf(np.ascontiguousarray(rough, np.float32))
            p[sk["normalmap"]] = mi.TensorXf(np.ascontiguousarray(nmap, np.float32))
        else:
            p[sk["roughness"]] = float(m["skin_roughness"])
        p[sk["specular"]] = float(m["skin_specular"])
        p["eyes.bsdf.base_color.data"] = mi.TensorXf(np.ascontiguousarray(a.eye_albedo, np.float32))
        p["eyes.bsdf.roughness.value"] = float(m["eye_roughness"])
        for key, val in m["hair"].items():
            p[f"hair.bsdf.{key}"] = float(val)
        p["frame.bsdf.base_color.value"] = [float(c) for c in m["frame_rgb"]]
        p["frame.bsdf.metallic.value"] = float(m["frame_metallic"])
        p["frame.bsdf.roughness.value"] = float(m["frame_roughness"])
        p["lens.bsdf.specular_transmittance.value"] = [float(c) for c in m["lens_tint"]]
        env = np.asarray(a.environment, np.float32)
        # Mitsuba's envmap keeps a wrap-around column on each side of its data.
        p["env.data"] = mi.TensorXf(np.ascontiguousarray(np.concatenate([env[:, -1:], env, env[:, :1]], axis=1)))
        used = {"point": 0, "spot": 0, "directional": 0}
        for light in a.lights:
            kind = light["kind"]
            i = used[kind]
            if i >= LIGHT_SLOTS:
                raise ValueError(f"at most {LIGHT_SLOTS} {kind} lights")
            used[kind] += 1
            name = f"{kind}{i}"
            rgb = [float(c) for c in light["rgb"]]
            if kind == "point":
                p[f"{name}.position"] = [float(c) for c in light["position"]]
                p[f"{name}.intensity.value"] = rgb
            elif kind == "spot":
                p[f"{name}.to_world"] = mi.ScalarTransform4f().look_at(
                    origin=[float(c) for c in light["position"]],
                    target=[float(c) for c in light["target"]],
                    up=_up_for(np.subtract(light["target"], light["position"])),
                )
                p[f"{name}.intensity.value"] = rgb
                p[f"{name}.cutoff_angle"] = float(light["cutoff"])
                p[f"{name}.beam_width"] = float(light["beam"])
            else:
                emit = -np.asarray(light["direction"], np.float64)
                p[f"{name}.to_world"] = mi.ScalarTransform4f().look_at(
                    origin=[0, 0, 0], target=[float(c) for c in emit], up=_up_for(emit)
                )
                p[f"{name}.irradiance.value"] = rgb
            p[f"{name}.sampling_weight"] = 1.0
        for kind, count in used.items():
            for i in range(count, LIGHT_SLOTS):
                p[f"{kind}{i}.sampling_weight"] = 0.0
                key = "irradiance" if kind == "directional" else "intensity"
                p[f"{kind}{i}.{key}.value"] = [0.0, 0.0, 0.0]
        if self._mouth:
            if a.mouth_vertices is None or a.mouth_normals is None:
                raise ValueError(
                    "this renderer holds teeth and tongue: the scene arrays need mouth_vertices and mouth_normals"
                )
            mv = np.asarray(a.mouth_vertices, np.float32)
            mn = np.asarray(a.mouth_normals, np.float32)
            for name, (used, _) in self._mouth.items():
                p[f"{name}.vertex_positions"] = _floats(mi, mv[used])
                p[f"{name}.vertex_normals"] = _floats(mi, mn[used])
                p[f"{name}.bsdf.base_color.value"] = [float(c) for c in m[f"{name}_rgb"]]
        self._update_extras(mi, a)
        p.update()
        self._background = np.asarray(a.background, np.float32)

    def _update_extras(self, mi: Any, a: SceneArrays) -> None:
        """Geometry, textures and roughness of the :class:`ExtraSlot` meshes; a slot missing
        from ``a.extras`` collapses to a point inside the head (never seen)."""
        unknown = set(a.extras) - {s.name for s in self.extras}
        if unknown:
            raise ValueError(f"scene arrays name extra meshes the renderer does not hold: {sorted(unknown)}")
        inside = np.asarray(a.vertices, np.float64).mean(axis=0)
        for slot in self.extras:
            e = a.extras.get(slot.name)
            keys = self._extra_keys[slot.name]
            if e is None:
                v = np.repeat(inside[None], len(slot.uv), axis=0)
                self.params[f"{slot.name}.vertex_positions"] = _floats(mi, v)
                self.params[f"{slot.name}.vertex_normals"] = _floats(mi, np.tile([0.0, 0.0, 1.0], (len(slot.uv), 1)))
                continue
            v = np.asarray(e["vertices"], np.float64)
            if v.shape != (len(slot.uv), 3):
                raise ValueError(f"{slot.name} vertices must have shape {(len(slot.uv), 3)}; got {v.shape}")
            for tex in ("albedo", "normalmap"):
                shape = np.shape(e[tex])
                if shape != (*slot.texture, 3):
                    raise ValueError(f"{slot.name} {tex} must have shape {(*slot.texture, 3)}; got {shape}")
            self._set_mesh(slot.name, v, slot.faces)
            self.params[keys["albedo"]] = mi.TensorXf(np.ascontiguousarray(e["albedo"], np.float32))
            self.params[keys["normalmap"]] = mi.TensorXf(np.ascontiguousarray(e["normalmap"], np.float32))
            self.params[keys["roughness"]] = float(e["roughness"])

    @staticmethod
    def _hair(mi: Any, strands: np.ndarray, inside: np.ndarray) -> tuple[Any, Any, int]:
        """Curve buffers of ``strands (N, K, 4)`` padded by :func:`pad_hair`."""
        full = pad_hair(strands, inside)
        n, k = full.shape[:2]
        return _floats(mi, full), _uints(mi, _bspline_segments(n, k)), int(n * k)

    def _set_mesh(self, name: str, vertices: np.ndarray, faces: np.ndarray) -> None:
        mi = _mitsuba(self.variant)
        v = np.asarray(vertices, np.float64)
        nrm = _safe_normals(v, faces)
        self.params[f"{name}.vertex_positions"] = _floats(mi, v)
        self.params[f"{name}.vertex_normals"] = _floats(mi, nrm)

    # -- rendering -------------------------------------------------------------------------

    def render_image(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Path-trace the current scene.

        Returns:
            ``(rgb (H, W, 3), alpha (H, W))`` float32, linear: the head and its occluders
            (premultiplied by their coverage ``alpha``), background not included.
        """
        with RENDER_LOCK:
            mi = _mitsuba(self.variant)
            img = np.array(mi.render(self.scene, seed=int(seed) & 0x7FFFFFFF, spp=self.spp), dtype=np.float32)
        return img[..., :3], img[..., 3]

    def ground_truth(self) -> GroundTruth:
        """Ground-truth maps of the current scene (see the module docstring)."""
        h, w = self.size
        with RENDER_LOCK:
            mi = _mitsuba(self.variant)
            ray = self._pixel_rays(mi)
            pos, nrm, part, inside = self._trace(ray)
            # A hit on the inside of the closed skin means the ray stepped through it where an
            # occluder touches it (a hair's root): go back from there to the skin it crossed.
            redo = np.nonzero(inside)[0]
            if redo.size:
                d = (
                    np.broadcast_to(np.array(ray.d, np.float64).reshape(3, -1).T, (h * w, 3))[redo]
                    if not isinstance(ray, _RayArrays)
                    else ray.d[redo]
                )
                p2, n2, k2, _ = self._trace(_RayArrays(pos[redo], -d))
                pos[redo], nrm[redo], part[redo] = p2, n2, k2
        pos, nrm, part = pos.reshape(h, w, 3), nrm.reshape(h, w, 3), part.reshape(h, w)
        nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-30)
        mask = (part > 0) & facing_mask(nrm, self.camera)
        normals = np.where(mask[..., None], nrm, 0.0).astype(np.float32)
        depth = np.where(mask, pos[..., 2], np.nan).astype(np.float32)
        rows, cols = np.mgrid[0:h, 0:w]
        uv = project(pos.reshape(-1, 3), self.camera).reshape(h, w, 2)
        err = np.hypot(uv[..., 0] - cols, uv[..., 1] - rows)
        xy_error = float(err[mask].max()) if mask.any() else 0.0
        return GroundTruth(normals, depth, mask, np.where(mask, part, 0).astype(np.uint8), xy_error)

    def _pixel_rays(self, mi: Any) -> Any:
        """The camera's rays through the pixel centres, row-major (Mitsuba arrays)."""
        h, w = self.size
        idx = np.arange(h * w)
        x = ((idx % w) + 0.5).astype(np.float32) / w
        y = ((idx // w) + 0.5).astype(np.float32) / h
        if self.variant == "scalar_rgb":
            rays = [
                self.sensor.sample_ray(0.0, 0.5, mi.Point2f(float(a), float(b)), mi.Point2f(0.5, 0.5))[0]
                for a, b in zip(x, y, strict=True)
            ]
            return _RayArrays(np.array([np.array(r.o) for r in rays]), np.array([np.array(r.d) for r in rays]))
        ray, _ = self.sensor.sample_ray(0.0, 0.5, mi.Point2f(x, y), mi.Point2f(0.5, 0.5))
        return ray

    def _trace(self, ray: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """First hit on the head or the eyes along ``ray`` (a Mitsuba ray array, or
        :class:`_RayArrays`), stepping through occluders. Returns ``pos (n, 3)``, shading normal
        ``(n, 3)``, ``part (n,)`` (0 none, 1 skin, 2 eyes) and ``inside (n,)`` (the hit sees the
        surface's back)."""
        if self.variant == "scalar_rgb":
            return self._trace_scalar(ray.o, ray.d)
        return self._trace_vectorised(ray)

    def _trace_vectorised(self, ray: Any) -> tuple[np.ndarray, ...]:
        import drjit as dr

        mi = _mitsuba(self.variant)
        if isinstance(ray, _RayArrays):
            # A few rays: padded to a fixed count, so that one compiled kernel serves them all.
            k = len(ray.o)
            pad = -(-k // _REDO_BLOCK) * _REDO_BLOCK
            o_np = np.concatenate([ray.o, np.repeat(ray.o[-1:], pad - k, axis=0)]).astype(np.float32)
            d_np = np.concatenate([ray.d, np.repeat(ray.d[-1:], pad - k, axis=0)]).astype(np.float32)
            o0 = mi.Point3f(*(mi.Float(o_np[:, j]) for j in range(3)))
            d0 = mi.Vector3f(*(mi.Float(d_np[:, j]) for j in range(3)))
            n = pad
        else:
            o0, d0 = mi.Point3f(ray.o), mi.Vector3f(ray.d)
            n = dr.width(ray.o)
            k = n
        scene, skin_ptr, eye_ptr, mouth_ptrs = self.scene, self._skin_ptr, self._eye_ptr, self._mouth_ptrs

        def body(o: Any, d: Any, part: Any, pos: Any, nrm: Any, back: Any, active: Any, count: Any) -> tuple:
            si = scene.ray_intersect(mi.Ray3f(o, d), active)
            valid = active & si.is_valid()
            skin = valid & (si.shape == skin_ptr)
            eyes = valid & (si.shape == eye_ptr)
            head = skin | eyes
            if mouth_ptrs:  # teeth and tongue: head, counted as skin; never a hit from inside the skin
                mouth = valid & ((si.shape == mouth_ptrs[0]) | (si.shape == mouth_ptrs[1]))
                part = dr.select(skin | mouth, 1, dr.select(eyes, 2, part))
                back = dr.select(head | mouth, ~mouth & (dr.dot(si.n, d) > 0), back)
                head = head | mouth
            else:
                part = dr.select(skin, 1, dr.select(eyes, 2, part))
                back = dr.select(head, dr.dot(si.n, d) > 0, back)
            pos = dr.select(head, si.p, pos)
            nrm = dr.select(head, si.sh_frame.n, nrm)
            active = valid & ~head
            # Step along the ray just past the occluder (not off the surface along its normal).
            return (dr.select(active, o + d * (si.t + _STEP), o), d, part, pos, nrm, back, active, count + 1)

        state = (
            o0,
            d0,
            dr.zeros(mi.UInt32, n),
            dr.zeros(mi.Point3f, n),
            dr.zeros(mi.Vector3f, n),
            dr.zeros(mi.Bool, n),
            dr.full(mi.Bool, True, n),
            dr.zeros(mi.UInt32, n),
        )
        _, _, part, pos, nrm, back, _, _ = dr.while_loop(
            state, lambda o, d, part, pos, nrm, back, active, count: active & (count < 4096), body, label="ground_truth"
        )
        dr.eval(part, pos, nrm, back)
        return (
            np.array(pos, np.float64).reshape(3, -1).T[:k],
            np.array(nrm, np.float64).reshape(3, -1).T[:k],
            np.array(part, np.uint8).reshape(-1)[:k],
            np.array(back, bool).reshape(-1)[:k],
        )

    def _trace_scalar(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
        mi = _mitsuba(self.variant)
        n = len(o)
        pos, nrm = np.zeros((n, 3)), np.zeros((n, 3))
        part, back = np.zeros(n, np.uint8), np.zeros(n, bool)
        ids = {"skin": 1, "eyes": 2, **dict.fromkeys(self._mouth, 1)}
        for i in range(n):
            ray = mi.Ray3f(mi.Point3f(*o[i]), mi.Vector3f(*d[i]))
            for _ in range(4096):
                si = self.scene.ray_intersect(ray)
                if not si.is_valid():
                    break
                k = ids.get(si.shape.id(), 0)
                if k:
                    part[i] = k
                    pos[i] = np.array(si.p)
                    nrm[i] = np.array(si.sh_frame.n)
                    back[i] = si.shape.id() not in self._mouth and float(np.dot(np.array(si.n), d[i])) > 0
                    break
                ray = mi.Ray3f(ray.o + ray.d * (si.t + _STEP), ray.d)
        return pos, nrm, part, back

    @property
    def background(self) -> np.ndarray:
        """The background of the last :meth:`update`, ``(H, W, 3)`` linear."""
        return self._background


def _up_for(direction: Any) -> list[float]:
    d = np.asarray(direction, np.float64)
    d = d / max(np.linalg.norm(d), 1e-30)
    return [0.0, 1.0, 0.0] if abs(d[1]) < 0.95 else [1.0, 0.0, 0.0]
