"""One synthetic sample: random parameters, the scene they describe, its image and ground truth.

:class:`Generator` ties the pieces together. Sample ``i`` of a data set with seed ``s`` is a
pure function of ``(s, i)`` (and of the generator's settings: size, spp, variant, head model,
version, camera, asset folders, yaw range):
every random choice comes from :class:`numpy.random.SeedSequence` ``(s, spawn_key=(i,))``,
split into independent streams per component, and the renderer's noise is seeded from it too.

A sample (:meth:`Generator.sample`) is a dict:

- ``image``: ``(H, W, 3)`` uint8 sRGB;
- ``normals``: ``(H, W, 3)`` float32 unit normals of the head and eyes, in
  the camera frame of ``conventions.md`` (x right, y up, z toward the viewer), ``(0, 0, 0)``
  outside the mask;
- ``depth``: ``(H, W)`` float32 height toward the viewer in pixels, NaN outside the mask;
- ``W``: ``(H, W)`` float32 ``|grad depth|`` by :func:`monohead.geometry.gradient_magnitude`,
  0 outside the mask;
- ``mask``: ``(H, W)`` bool, head and eyes;
- ``params``: every random parameter (JSON-able);
- ``timings``: seconds spent in sampling, normals, scene update, image and ground truth
  (version 2 also gives parts of them: ``body``, ``lighting`` and ``background`` of sampling,
  ``artefacts`` of image, and version 3 ``denoise`` of image; ``body`` is the body, clothes,
  headwear and occluder meshes and their textures).

The ground-truth rule: N, depth, W and mask describe the head and eyes along each pixel's
ray, whatever lies in front. Scalp and facial hair, glasses, the torso and its clothes,
collars and scarves, headwear, hands and held objects are occluders: the ground-truth ray
steps through them to the head behind, so they are never in the mask and never change N,
depth or W. Version 2 cuts the ICT neck at its base (:func:`.body.neck_cut`): the mask ends
there, and the torso below is never in it.
From version 3 on, ICT's teeth, gums and tongue are part of the head: rays through an open
mouth stop on them, as on the skin (:meth:`Generator.head_mesh` includes them). Version 3's
image is also denoised before the photo artefacts (:func:`.denoise.denoise`: the 9-sample noise
of strands, glints and bright environment maps) and its background muted toward real photos'
saturation and contrast (``params["look"]``, :func:`.backgrounds.mute`; never a user's photo);
the ground truth is untouched by either.

Version 2's look (besides the body, clothes, headwear and occluders of :mod:`.body`): a
perspective camera with a random focal length (:mod:`.camera`; ``projection="orthographic"``
keeps the old camera), light from real places (:mod:`.lighting`), backgrounds with user photos
and people-like clutter (:mod:`.backgrounds`) and photo artefacts (:mod:`.artefacts`). These
extra random choices come from streams of their own (``SeedSequence(seed, spawn_key=(index,
1000 + k))``). Under a perspective camera ``params["camera"]`` holds the sample's intrinsics
``K`` (OpenCV form) and ``distance`` ``D``: the depth along the optical axis is
``Z = D - depth`` and N is the surface normal in the camera frame (``docs/conventions.md``).
Where a sample's crop is framed past its simulated photo's border
(:func:`.artefacts.border_inside`), the ground truth is outside the mask.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import geometry
from . import artefacts as art_mod
from . import backgrounds as bg_mod
from . import body as body_mod
from . import camera as camera_mod
from . import denoise as denoise_mod
from . import faces as faces_mod
from . import facial_hair as facial_mod
from . import glasses as glasses_mod
from . import hair as hair_mod
from . import headwear as headwear_mod
from . import lighting as light_mod
from . import occluders as occluders_mod
from . import scene as scene_mod
from . import textures as tex_mod
from .head_model import EYE_REGIONS, SKIN_REGIONS, HeadModel, sample_expression, sample_identity
from .render import HAIR_BUCKETS, RENDER_LOCK, Renderer, SceneArrays

__all__ = ["GENERATOR_VERSION", "VERSIONS", "Generator", "check_yaw_options", "sample_params"]

GENERATOR_VERSION = 3
"""Bumped whenever the same (seed, index) would give a different sample. The default version
of :class:`Generator`; older versions stay available (:data:`VERSIONS`) and give the samples
they always gave."""

VERSIONS = (1, 2, 3)
"""Generator versions that can be made: 1 (a head and neck alone), 2 (with an upper body,
clothes, headwear, facial hair and occluders in front of the face) and 3 (version 2 with ICT's
teeth, gums and tongue in the mouth, :meth:`.HeadModel.mouth_shape`)."""

# New streams are only ever appended: SeedSequence children do not depend on how many are
# spawned, so the streams of version 1 stay the same.
_STREAMS = (
    "identity",
    "expression",
    "skin",
    "eyes",
    "hair",
    "glasses",
    "pose",
    "lights",
    "environment",
    "background",
    "camera",
    "render",
    "body",
    "headwear",
    "beard",
    "occluder",
)


HAIR_ROUGHNESS_V3 = 0.3
"""Added by version 3 to the hair BSDF's sampled longitudinal and azimuthal roughness."""

_V2_STREAMS = {
    "lighting": 1,
    "camera": 2,
    "background": 3,
    "artefacts": 4,
    "face": 5,
    "framing": 6,
    "mouth": 7,
    "look": 8,
}
"""Streams of version 2's look: ``SeedSequence(seed, spawn_key=(index, 1000 + k))``, apart
from the streams of :data:`_STREAMS` (``(index, k)``, k < 1000)."""


def _v2_stream(seed: int, index: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), 1000 + _V2_STREAMS[name])))


def _streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(index),))
    return {name: np.random.default_rng(child) for name, child in zip(_STREAMS, ss.spawn(len(_STREAMS)), strict=True)}


def sample_params(
    seed: int,
    index: int,
    model: HeadModel,
    size: tuple[int, int],
    version: int = GENERATOR_VERSION,
    max_yaw: float = scene_mod.DEFAULT_MAX_YAW,
    min_yaw: float = 0.0,
) -> dict[str, Any]:
    """All random parameters of sample ``index`` of the data set with ``seed`` (JSON-able).

    Keys: ``seed``, ``index``, ``identity`` (K coefficients), ``expression`` ({name: weight}
    of the non-zero weights), ``gaze`` ([yaw, pitch] radians), ``pose``, ``skin``, ``eyes``,
    ``hair``, ``glasses`` (or ``None``), ``lights``, ``environment``, ``background``,
    ``camera`` (exposure, noise) and ``render_seed``; version 2 adds ``body``
    (:func:`monohead.synth.body.sample_body_params`), ``headwear``
    (:func:`monohead.synth.headwear.sample_headwear_params`, or ``None``) and ``beard``
    (:func:`monohead.synth.facial_hair.sample_facial_hair_params`, or ``None``) and
    ``occluder`` (:func:`monohead.synth.occluders.sample_occluder_params`, or ``None``).

    ``max_yaw`` and ``min_yaw`` (degrees, from version 2 on) set the head's yaw range,
    ``min_yaw <= |yaw| <= max_yaw`` (:func:`.scene.sample_pose`); the defaults, 75° and 0, draw
    every sample as before the options.
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}; got {version!r}")
    max_yaw, min_yaw = check_yaw_options(max_yaw, min_yaw, version)
    rng = _streams(seed, index)
    identity = sample_identity(rng["identity"], model.num_identities)
    weights, gaze = sample_expression(rng["expression"], model.expression_names)
    skin = tex_mod.sample_skin_params(rng["skin"])
    out = {
        "seed": int(seed),
        "index": int(index),
        "identity": [float(y) for y in identity],
        "expression": {n: float(w) for n, w in zip(model.expression_names, weights, strict=True) if w != 0},
        "gaze": [float(gaze[0]), float(gaze[1])],
        "pose": scene_mod.sample_pose(rng["pose"], min(size), max_yaw, min_yaw),
        "skin": skin,
        "eyes": tex_mod.sample_eye_params(rng["eyes"]),
        "hair": hair_mod.sample_hair_params(rng["hair"], skin["sex"]),
        "glasses": glasses_mod.sample_glasses_params(rng["glasses"]),
        "lights": scene_mod.sample_lights(rng["lights"]),
        "environment": scene_mod.sample_environment(rng["environment"]),
        "background": scene_mod.sample_background(rng["background"]),
        "camera": {
            "exposure": float(rng["camera"].uniform(0.55, 0.95)),
            "noise": float(rng["camera"].uniform(0.0, 0.012)),
        },
        "render_seed": int(rng["render"].integers(0, 2**31 - 1)),
    }
    if version >= 2:
        out["body"] = body_mod.sample_body_params(rng["body"], out["pose"])
        out["headwear"] = headwear_mod.sample_headwear_params(rng["headwear"])
        out["beard"] = facial_mod.sample_facial_hair_params(rng["beard"], skin["sex"])
        out["occluder"] = occluders_mod.sample_occluder_params(rng["occluder"])
    return out


def check_yaw_options(max_yaw: Any, min_yaw: Any, version: int) -> tuple[float, float]:
    """``(max_yaw, min_yaw)`` checked (:func:`.scene.check_max_yaw`,
    :func:`.scene.check_min_yaw`); version 1 has only the defaults."""
    top = scene_mod.check_max_yaw(max_yaw)
    bottom = scene_mod.check_min_yaw(min_yaw, top)
    if version < 2 and top != scene_mod.DEFAULT_MAX_YAW:
        raise ValueError(
            f"max_yaw is an option of generator versions 2 and 3; version 1 has {scene_mod.DEFAULT_MAX_YAW:g} only; "
            f"got {max_yaw!r}"
        )
    if version < 2 and bottom != 0.0:
        raise ValueError(f"min_yaw is an option of generator versions 2 and 3; version 1 has 0 only; got {min_yaw!r}")
    return top, bottom


def _transform(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    return v @ m[:3, :3].T + m[:3, 3]


class Generator:
    """Makes samples of one size with one renderer (see the module docstring).

    Args:
        size: image size ``S`` (square) or ``(H, W)``.
        spp: samples per pixel of the image.
        variant: Mitsuba variant, ``"auto"`` (:func:`~monohead.synth.render.select_variant`).
        head_model: a :class:`HeadModel`, a path to an asset or FaceXModel folder, or
            ``None`` for the asset shipped with monohead.
        max_depth: path length of the path tracer.
        sampler: Mitsuba sampler of the image (see :class:`~monohead.synth.render.Renderer`).
        version: generator version (:data:`VERSIONS`); version 1 gives exactly the samples it
            always gave.
        projection: ``"perspective"`` or ``"orthographic"``; ``None``: perspective from
            version 2 on, orthographic for version 1 (which has only that).
        hdri: a folder of more environment maps (version 2; :func:`.lighting.scan_hdri`), used
            with the bundled ones.
        backgrounds: a folder of background photos (version 2; :func:`.backgrounds.scan_backgrounds`).
        max_yaw: the head's yaw range, uniform in ``±max_yaw`` degrees, ``0 < max_yaw <= 100``
            (versions 2 and 3; :func:`.scene.sample_pose`). The default, 75, gives every sample
            exactly as before the option existed; 90 adds profiles.
        min_yaw: the smallest ``|yaw|``, ``0 <= min_yaw < max_yaw`` (versions 2 and 3): ``|yaw|``
            uniform in ``[min_yaw, max_yaw]``; 0, the default, is the range above.

    Raises:
        ValueError: an unknown version or projection, a perspective camera for version 1, an
            ``hdri`` or ``backgrounds`` folder that does not exist or holds no usable file, a
            ``max_yaw`` or ``min_yaw`` out of range or, for version 1, other than 75 and 0.
        TypeError: ``max_yaw`` or ``min_yaw`` not a number.
    """

    def __init__(
        self,
        size: int | tuple[int, int] = 128,
        spp: int = 9,
        variant: str = "auto",
        head_model: Any = None,
        max_depth: int = 3,
        sampler: str = "multijitter",
        version: int = GENERATOR_VERSION,
        projection: str | None = None,
        hdri: Any = None,
        backgrounds: Any = None,
        max_yaw: float = scene_mod.DEFAULT_MAX_YAW,
        min_yaw: float = 0.0,
    ) -> None:
        if isinstance(version, bool) or version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}; got {version!r}")
        self.version = int(version)
        self.max_yaw, self.min_yaw = check_yaw_options(max_yaw, min_yaw, self.version)
        projection = projection or ("perspective" if self.version >= 2 else "orthographic")
        if projection not in camera_mod.PROJECTIONS:
            raise ValueError(f"projection must be one of {camera_mod.PROJECTIONS}; got {projection!r}")
        if self.version == 1 and (projection != "orthographic" or hdri is not None or backgrounds is not None):
            raise ValueError("generator version 1 has an orthographic camera and no hdri or backgrounds folders")
        self.projection = projection
        self.hdri_dir = None if hdri is None else str(Path(hdri).resolve())
        self.backgrounds_dir = None if backgrounds is None else str(Path(backgrounds).resolve())
        self.skipped_files = {"hdri": 0, "backgrounds": 0}
        self.hdri_pool: dict[str, str] = {}
        self.background_photos: list[str] = []
        if self.version >= 2:
            self.hdri_pool = {p.stem: str(p) for p in light_mod.bundled_maps()}
            if hdri is not None:
                maps, self.skipped_files["hdri"] = light_mod.scan_hdri(hdri)
                self.hdri_pool.update({f"user/{p.name}": str(p) for p in maps})
            if backgrounds is not None:
                photos, self.skipped_files["backgrounds"] = bg_mod.scan_backgrounds(backgrounds)
                self.background_photos = [str(p) for p in photos]
        self.model = head_model if isinstance(head_model, HeadModel) else HeadModel.load(head_model)
        if self.version >= 2:
            cut = body_mod.neck_cut(self.model)
            self._gt_faces = cut["gt_faces"]
            self.renderer = Renderer(
                self.model,
                size,
                spp=spp,
                variant=variant,
                max_depth=max_depth,
                sampler=sampler,
                drop_faces=cut["drop"],
                extras=self._extra_slots(),
                projection=projection,
                environment_size=light_mod.ENV_SIZE,
                skin_detail=True,
                mouth=self.version >= 3,
            )
            self._landmarks = faces_mod.landmarks(self.model)
        else:
            self._gt_faces = self.model.faces[self.model.region_faces(list(SKIN_REGIONS) + list(EYE_REGIONS))]
            self.renderer = Renderer(self.model, size, spp=spp, variant=variant, max_depth=max_depth, sampler=sampler)
        self.size = self.renderer.size
        self.spp = self.renderer.spp
        self.variant = self.renderer.variant
        self._scalps: dict[float, hair_mod.Scalp] = {}

    def settings(self) -> dict[str, Any]:
        """What besides (seed, index) decides a sample."""
        out = {
            "size": list(self.size),
            "spp": self.spp,
            "variant": self.variant,
            "max_depth": self.renderer.max_depth,
            "sampler": self.renderer.sampler,
            "generator_version": self.version,
            "head_model": self.model.source.rsplit("/", 1)[-1],
            "identities": self.model.num_identities,
            "expressions": self.model.num_expressions,
            "texture_size": self.renderer.space.height,
        }
        if self.version >= 2:
            out["max_yaw"] = self.max_yaw
            out["min_yaw"] = self.min_yaw
            out.update(self.source_settings())
        return out

    def source_settings(self) -> dict[str, Any]:
        """Version 2's camera and the folders it reads: projection, map names, photo names."""
        return {
            "projection": self.projection,
            "hdri_dir": self.hdri_dir,
            "hdri_maps": sorted(self.hdri_pool),
            "backgrounds_dir": self.backgrounds_dir,
            "background_photos": [Path(p).name for p in self.background_photos],
        }

    def params(self, seed: int, index: int) -> dict[str, Any]:
        """The random parameters of sample ``index`` (see :func:`sample_params`; version 2
        also draws ``lighting`` and ``artefacts`` and redraws ``lights``, ``environment``,
        ``background`` and ``camera``; version 3 adds ``mouth`` and ``look``, the background's
        grading of :func:`.backgrounds.sample_look`)."""
        p = sample_params(seed, index, self.model, self.size, self.version, self.max_yaw, self.min_yaw)
        if self.version >= 2:
            light = light_mod.sample_lighting(_v2_stream(seed, index, "lighting"), sorted(self.hdri_pool))
            p["lighting"] = {"setup": light["setup"], "noise_gain": light["noise_gain"]}
            p["lights"], p["environment"] = light["lights"], light["environment"]
            p["pose"].update(camera_mod.sample_framing(_v2_stream(seed, index, "framing"), self.size))
            p["camera"] = camera_mod.sample_camera(
                _v2_stream(seed, index, "camera"), self.size, p["pose"]["scale"], self.projection
            )
            p["background"] = bg_mod.sample_background(
                _v2_stream(seed, index, "background"), len(self.background_photos), p["environment"]["kind"] == "map"
            )
            p["artefacts"] = art_mod.sample_artefacts(_v2_stream(seed, index, "artefacts"), light["noise_gain"])
            p["face"] = faces_mod.sample_face(_v2_stream(seed, index, "face"), p["skin"]["sex"])
            preset = faces_mod.expression_weights(p["face"], self.model.expression_names)
            if preset is not None:  # an extreme expression replaces all but the gaze's lid shapes
                p["expression"] = {**{n: w for n, w in p["expression"].items() if n.startswith("eyeLook")}, **preset}
        if self.version >= 3:
            p["mouth"] = faces_mod.sample_mouth(_v2_stream(seed, index, "mouth"), p["face"]["age"])
            if p["face"]["age"] < 16:  # version 2 gave some boys a beard
                p["beard"] = None
            p["look"] = bg_mod.sample_look(_v2_stream(seed, index, "look"))
        return p

    def _extra_slots(self) -> tuple:
        """The meshes a version-2 scene holds besides the head (fixed topology)."""
        return (
            *body_mod.body_slots(self.model),
            headwear_mod.headwear_slot(),
            occluders_mod.prop_slot(),
            occluders_mod.band_slot_scarf(),
        )

    def _v2_hair(
        self,
        params: dict[str, Any],
        strands: np.ndarray,
        v_model: np.ndarray,
        n_model: np.ndarray,
        hat: dict[str, Any] | None,
    ) -> np.ndarray:
        """Version 2: scalp hair pressed under the headwear, and the facial hair added (same
        control points per strand, model frame, cm)."""
        k = strands.shape[1] if strands.ndim == 3 else hair_mod.STYLE_POINTS[params["hair"]["style"]]
        if hat is not None:
            strands = headwear_mod.press_hair(strands, hat)
        room = (HAIR_BUCKETS[-1] - len(strands) * k) // k
        beard = facial_mod.grow_facial_hair(
            params.get("beard"), self.model, v_model, n_model, k, room, soft=self.version >= 3
        )
        if len(beard):
            strands = np.concatenate([strands.reshape(-1, beard.shape[1], 4), beard]) if len(strands) else beard
        return strands

    def _extras(
        self,
        params: dict[str, Any],
        v_model: np.ndarray,
        m: np.ndarray,
        skin_albedo: np.ndarray,
        timings: dict[str, float] | None,
        hat: dict[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Version 2: the posed meshes, textures and roughness of the body, clothes, headwear
        and occluders (world frame, pixels), for :attr:`SceneArrays.extras`."""
        t0 = time.perf_counter()
        out: dict[str, dict[str, Any]] = {}
        bp = params.get("body")
        if bp is not None:  # None: a head alone, as in version 1
            body = body_mod.build_body(bp, self.model, v_model)
            mb = body_mod.body_matrix(m, bp, body["anchor"])
            skin_rgb = self._loop_skin_colour(skin_albedo)

            def pose(points: np.ndarray, weight: np.ndarray) -> np.ndarray:
                w = np.asarray(weight, np.float64)[:, None]
                return (1.0 - w) * _transform(m, points) + w * _transform(mb, points)

            out["torso"] = {
                "vertices": pose(body["torso"], body["torso_weight"]),
                **body_mod.torso_textures(bp, skin_rgb),
            }
            if body["collar"] is not None:
                out["collar"] = {
                    "vertices": pose(body["collar"], body["collar_weight"]),
                    **body_mod.collar_textures(bp),
                }
        if hat is not None:
            out["headwear"] = {
                "vertices": _transform(m, hat["vertices"]),
                **headwear_mod.headwear_textures(params["headwear"]),
            }
        op = params.get("occluder")
        if op is not None:
            skin_rgb = self._loop_skin_colour(skin_albedo)
            tex = occluders_mod.occluder_textures(op, skin_rgb)
            for name, verts in occluders_mod.build_occluder(op, self.model, v_model).items():
                out[name] = {"vertices": _transform(m, verts), **tex}
        if timings is not None:
            timings["body"] = timings.get("body", 0.0) + time.perf_counter() - t0
        return out

    def _loop_skin_colour(self, skin_albedo: np.ndarray) -> np.ndarray:
        """Mean linear albedo of the skin texture along the neck cut (the torso's skin colour)."""
        uv = body_mod.neck_cut(self.model)["loop_uv"]
        h, w = skin_albedo.shape[:2]
        rows = np.clip(((1.0 - uv[:, 1]) * h).astype(int), 0, h - 1)
        cols = np.clip((np.clip(uv[:, 0], 0.0, 2.0) / 2.0 * w).astype(int), 0, w - 1)
        return np.median(skin_albedo[rows, cols], axis=0)

    def head_mesh(self, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The posed head and eyes of a sample: ``(vertices (V, 3) world pixels, faces (F, 3))``,
        the mesh whose ground truth is rendered (the hair and glasses left out; from version 3
        on, the teeth, gums and tongue follow the head's vertices and faces)."""
        v_model = self._shape(params)
        m = scene_mod.pose_matrix(params["pose"], self.size)
        v = _transform(m, v_model)
        if self.version < 3:
            return v, self._gt_faces
        mv = _transform(m, self._mouth_shape(params))
        return np.concatenate([v, mv]), np.concatenate([self._gt_faces, self.model.mouth_faces + len(v)])

    def _mouth_shape(self, params: dict[str, Any]) -> np.ndarray:
        """Teeth, gums and tongue of a sample (model frame, cm): the head's identity and
        expression, and a child's proportions as :meth:`_shape` gives the head."""
        v = self.model.mouth_shape(params["identity"], params["expression"])
        face = params.get("face")
        if face is not None:
            v = faces_mod.age_warp(v, face, self._landmarks["eye_y"], self._landmarks["chin_y"])
        return v

    def _shape(self, params: dict[str, Any]) -> np.ndarray:
        """The head model's vertices (model frame, cm) of a sample: identity, expression,
        gaze, and in version 2 a child's proportions (:func:`.faces.age_warp`)."""
        v = self.model.shape(params["identity"], params["expression"], tuple(params["gaze"]))
        face = params.get("face")
        if face is not None:
            v = faces_mod.age_warp(v, face, self._landmarks["eye_y"], self._landmarks["chin_y"])
        return v

    def scene_arrays(self, params: dict[str, Any], timings: dict[str, float] | None = None) -> SceneArrays:
        """Build the sample's scene (world frame, pixels) from its parameters."""
        t0 = time.perf_counter()
        h, w = self.size
        model = self.model
        v_model = self._shape(params)
        m = scene_mod.pose_matrix(params["pose"], self.size)
        scale = float(params["pose"]["scale"])
        v = _transform(m, v_model)
        t1 = time.perf_counter()
        normals = geometry.vertex_normals(v, self._gt_faces)
        t2 = time.perf_counter()
        hp = params["hair"]
        key = round(float(hp.get("hairline", 0.0)), 3)
        if key not in self._scalps:
            self._scalps.clear() if len(self._scalps) > 64 else None
            self._scalps[key] = hair_mod.Scalp.of(model, key)
        n_model = normals @ m[:3, :3]  # back to the model frame (rotation part, scaled)
        n_model /= np.maximum(np.linalg.norm(n_model, axis=1, keepdims=True), 1e-30)
        strands = hair_mod.grow_hair(hp, model, v_model, n_model, self._scalps[key])
        hat = None
        if self.version >= 2:
            if params.get("headwear") is not None:
                hat = headwear_mod.build_headwear(params["headwear"], model, v_model)
            strands = self._v2_hair(params, strands, v_model, n_model, hat)
        if len(strands):
            strands = np.concatenate([_transform(m, strands[..., :3]), strands[..., 3:] * scale], axis=-1)
        gp = params["glasses"]
        fv, ff, lv, lf = glasses_mod.build_glasses(gp, model, v_model)
        fv, lv = _transform(m, fv), _transform(m, lv)
        hrgb = hair_mod.hair_rgb(hp)
        scalp_hair = {"bald": 0.0, "buzz": 0.85, "short": 0.85, "medium": 0.9, "long": 0.9}[hp["style"]]
        space = self.renderer.space
        skin_albedo = tex_mod.skin_albedo(
            space, params["skin"], hair_rgb=hrgb, scalp_hair=scalp_hair, warm=self.version >= 3
        )
        face = params.get("face")
        skin_nmap = skin_rough = None
        if face is not None:  # version 2: make-up, wrinkles, oily zones
            skin_albedo = faces_mod.apply_makeup(skin_albedo, space, self._landmarks, face)
            skin_nmap, skin_rough = faces_mod.skin_detail(space, self._landmarks, face, params["skin"]["roughness"])
        eye_albedo = tex_mod.eye_albedo(space, params["eyes"])
        centre = _transform(m, scene_mod.PIVOT[None])[0]
        head_px = 18.5 * scale
        lights = []
        for light in params["lights"]:
            d = np.asarray(light["direction"], np.float64)
            rgb = np.asarray(light["colour"]) * light["irradiance"]
            entry: dict[str, Any] = {"kind": light["kind"], "direction": d}
            if light["kind"] == "directional":
                entry["rgb"] = rgb
            else:
                dist = light["distance"] * head_px
                entry.update(position=centre + dist * d, target=centre, rgb=rgb * dist * dist)
                if light["kind"] == "spot":
                    entry.update(cutoff=light["cutoff"], beam=light["beam"])
            lights.append(entry)
        materials = {
            "skin_roughness": params["skin"]["roughness"],
            "skin_specular": params["skin"]["specular"] + (0.3 * face["oily"] if face is not None else 0.0),
            "eye_roughness": params["eyes"]["roughness"],
            "hair": hair_mod.hair_colour_params(hp),
            "frame_rgb": gp["frame_rgb"] if gp else [0.05, 0.05, 0.05],
            "frame_metallic": 1.0 if gp and gp["metal"] else 0.0,
            "frame_roughness": gp["roughness"] if gp else 0.3,
            "lens_tint": gp["lens_tint"] if gp else [1.0, 1.0, 1.0],
        }
        if self.version >= 2:
            tl = time.perf_counter()
            env = light_mod.environment(params["environment"], self.hdri_pool, self.renderer.environment_size)
            env, sun = light_mod.extract_sun(env)
            if sun is not None:
                lights.append(sun)
            tb = time.perf_counter()
            env_bg = (
                light_mod.environment(params["environment"], self.hdri_pool, 2 * self.renderer.environment_size)
                if params["background"]["kind"] == "environment"
                else None
            )
            background, referred = bg_mod.background(
                params["background"], self.size, self.background_photos, env_bg, params["camera"]
            )
            if params.get("look") is not None and params["background"]["kind"] != "user":
                background = bg_mod.mute(background, params["look"])  # version 3: as in real photos
            if timings is not None:  # parts of "sampling"
                timings["lighting"] = timings.get("lighting", 0.0) + tb - tl
                timings["background"] = timings.get("background", 0.0) + time.perf_counter() - tb
        else:
            env = scene_mod.environment_image(params["environment"])
            background, referred = scene_mod.background_image(params["background"], self.size), False
        arrays = SceneArrays(
            vertices=v,
            normals=normals,
            hair=strands,
            frame_vertices=fv,
            frame_faces=ff,
            lens_vertices=lv,
            lens_faces=lf,
            skin_albedo=skin_albedo,
            eye_albedo=eye_albedo,
            materials=materials,
            lights=lights,
            environment=env,
            background=background,
            camera=params["camera"] if self.version >= 2 else None,
            background_scene_referred=referred,
            skin_normalmap=skin_nmap,
            skin_roughness=skin_rough,
        )
        if self.version >= 2:
            arrays.extras = self._extras(params, v_model, m, skin_albedo, timings, hat)
        if self.version >= 3:
            # Rougher strands: each strand stands for a lock of hairs, whose highlight is a soft
            # sheen, not the glints of one fibre that sprinkled version 2's hair with sparkles.
            hair = materials["hair"]
            for key in ("longitudinal_roughness", "azimuthal_roughness"):
                hair[key] = min(hair[key] + HAIR_ROUGHNESS_V3, 0.9)
            mv = _transform(m, self._mouth_shape(params))
            arrays.mouth_vertices = mv
            arrays.mouth_normals = geometry.vertex_normals(mv, self.model.mouth_faces)
            materials["teeth_rgb"] = params["mouth"]["teeth_rgb"]
            materials["tongue_rgb"] = params["mouth"]["tongue_rgb"]
        if timings is not None:
            t3 = time.perf_counter()
            timings["sampling"] = timings.get("sampling", 0.0) + (t1 - t0) + (t3 - t2)
            timings["normals"] = timings.get("normals", 0.0) + (t2 - t1)
        return arrays

    def sample(self, seed: int, index: int) -> dict[str, Any]:
        """Sample ``index`` of the data set with ``seed`` (see the module docstring)."""
        t0 = time.perf_counter()
        params = self.params(seed, index)
        return self.render(params, {"sampling": time.perf_counter() - t0})

    def render(self, params: dict[str, Any], timings: dict[str, float] | None = None) -> dict[str, Any]:
        """The sample described by ``params`` (from :meth:`params`, possibly edited): image,
        ground-truth maps, ``params`` and ``timings`` (see the module docstring).

        Also returns ``alpha`` ``(H, W)`` float32, the coverage of the head and its occluders
        (hair, glasses) in the image."""
        timings = dict(timings or {})
        arrays = self.scene_arrays(params, timings)
        with RENDER_LOCK:  # one scene: update, render and trace together
            t1 = time.perf_counter()
            self.renderer.update(arrays)
            t2 = time.perf_counter()
            rgb, alpha = self.renderer.render_image(params["render_seed"])
            t3 = time.perf_counter()
            gt = self.renderer.ground_truth()
        t4 = time.perf_counter()
        if self.version >= 3:  # the 9-sample noise of strands, glints and bright maps
            rgb, alpha = denoise_mod.denoise(rgb, alpha)
            timings["denoise"] = time.perf_counter() - t4  # part of "image"

        normals, depth, mask = gt.normals, gt.depth, gt.mask
        if self.version >= 2:
            image, inside = art_mod.develop(
                rgb, alpha, arrays.background, arrays.background_scene_referred, gt.mask, params["artefacts"]
            )
            if not inside.all():  # framed past the photo's border: the head is not seen there
                mask = mask & inside
                normals = np.where(mask[..., None], normals, 0.0).astype(np.float32)
                depth = np.where(mask, depth, np.nan).astype(np.float32)
        else:
            image = self._develop(rgb, alpha, arrays.background, gt.mask, params)
        t5 = time.perf_counter()
        W = (
            geometry.gradient_magnitude(depth, mask).astype(np.float32)
            if mask.any()
            else np.zeros(self.size, np.float32)
        )
        t6 = time.perf_counter()
        timings.update(update=t2 - t1, image=(t3 - t2) + (t5 - t4), ground_truth=(t4 - t3) + (t6 - t5))
        if self.version >= 2:
            timings["artefacts"] = t5 - t4 - timings.get("denoise", 0.0)  # part of "image"
        return {
            "image": image,
            "normals": normals,
            "depth": depth,
            "W": W,
            "mask": mask,
            "params": params,
            "timings": timings,
            "alpha": alpha,
        }

    @staticmethod
    def _develop(
        rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray, mask: np.ndarray, params: dict[str, Any]
    ) -> np.ndarray:
        """Expose, composite over the background, add sensor noise, encode as 8-bit sRGB."""
        lum = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
        sel = mask if mask.sum() >= 16 else alpha > 0.5
        ref = float(np.percentile(lum[sel], 95)) if sel.any() else 1.0
        exposure = params["camera"]["exposure"] / max(ref, 1e-4)
        lin = rgb * exposure + (1.0 - alpha)[..., None] * background
        srgb = tex_mod.linear_to_srgb(lin)
        rng = np.random.default_rng(params["render_seed"])
        srgb = srgb + rng.normal(0.0, params["camera"]["noise"], srgb.shape)
        return np.round(np.clip(srgb, 0.0, 1.0) * 255.0).astype(np.uint8)
