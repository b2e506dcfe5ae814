"""Synthetic data sets on disk: shards, manifest, resume, Dask, and the reader.

Layout of a data set folder::

    manifest.json            seed, counts, shard size, settings, package versions
    shards/shard-00000/      samples [0, shard_size): image.npy (n, H, W, 3) uint8,
                             normals.npy (n, H, W, 3) float32, depth.npy (n, H, W) float32,
                             W.npy (n, H, W) float32, mask.npy (n, H, W) bool,
                             params.json (list of n dicts), info.json
    shards/shard-00001/      ...
    preview.png              a sheet like the paper's Fig. 2 (images, N, W)

Sample ``i`` is a pure function of ``(seed, i)`` and the settings in the manifest (see
:mod:`monohead.synth.generator`), so shards can be made in any order, on any machine, and any
sample can be regenerated bit for bit (:func:`regenerate`). A shard is written into a
temporary folder (every file atomically) and renamed into place when complete: a shard folder
under its final name is always whole. While a shard is being made, each finished sample is
also saved on its own, atomically, in ``shards/.shard-NNNNN.partial/sample-IIIIIIII.npz``, so a
killed run redoes at most the sample each worker was rendering (resume): the next run reads the
saved samples back (they are exactly what generating them again would give), makes the rest,
writes the shard and removes the partial folder. ``shard=(i, n)`` makes only the
shards ``k`` with ``k % n == i`` (one machine of n); ``scheduler=`` runs shards as tasks on a
Dask distributed cluster whose workers see the same folder.

Integrity: every shard's ``info.json`` records the data set's seed and generator version, and
:class:`SyntheticHeads` checks each shard against the manifest when it opens a data set (all
files present, ``.npy`` headers of the manifest's dtypes and shapes, file sizes that hold the
whole arrays, ``params.json`` and ``info.json`` readable and matching, the seed and version of
the manifest): a damaged shard, or one that came from another data set (say a ``--shard i/n``
part made with another seed or generator version and copied in), is refused by name, or skipped
and named with ``partial=True``. Each item is checked when it is read (unit normals, finite
``W >= 0`` and depth inside the mask); a bad item raises a ``ValueError`` naming its shard.
:meth:`SyntheticHeads.verify` reads every item once, to find such shards before a long run.

:class:`SyntheticHeads` reads a data set: ``len(ds)``, ``ds[i]`` gives a dict of arrays
(memory-mapped shards, copied per item) and the sample's ``params``; it is a map-style
``torch.utils.data.Dataset`` (use :meth:`SyntheticHeads.collate` as a DataLoader's
``collate_fn`` to batch the arrays as tensors and keep ``params`` as a list).
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io
from .._env import package_versions

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "SyntheticHeads", "check_shard", "generate", "regenerate", "write_preview"]

FORMAT = "monohead-synth"
FORMAT_VERSION = 1
ARRAYS = ("image", "normals", "depth", "W", "mask")
_DTYPES = {"image": np.uint8, "normals": np.float32, "depth": np.float32, "W": np.float32, "mask": np.bool_}


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {int(value)}")
    return int(value)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer; got {type(seed).__name__}")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer; got {int(seed)}")
    return int(seed)


def parse_shard(spec: Any) -> tuple[int, int]:
    """``"i/n"`` (or ``(i, n)``) as ``(i, n)`` with ``0 <= i < n``."""
    if isinstance(spec, str):
        parts = spec.split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"shard must look like 'i/n' (e.g. '0/4'); got {spec!r}")
        spec = (int(parts[0]), int(parts[1]))
    try:
        i, n = (int(x) for x in spec)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shard must be 'i/n' or a pair (i, n); got {spec!r}") from exc
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard i/n needs 0 <= i < n; got {i}/{n}")
    return i, n


def _prepare_root(out: Any) -> Path:
    if isinstance(out, bytes) or not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a str or os.PathLike; got {type(out).__name__}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ValueError(f"output {str(root)!r} exists and is not a folder")
    try:
        (root / "shards").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot write to output folder {str(root)!r}: {exc.strerror or exc}") from exc
    if not os.access(root / "shards", os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to output folder {str(root)!r}: permission denied")
    return root


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}"


# --------------------------------------------------------------------------------------------
# Making shards
# --------------------------------------------------------------------------------------------

#: The cached generators, at most two, made, used and evicted on the render thread only.
_GENERATORS: collections.OrderedDict[str, Any] = collections.OrderedDict()
#: Every sample is rendered on one thread per process, :func:`_render`'s, whichever thread asks
#: for it. Dr.Jit's LLVM backend is not safe for use from several Python threads: a two-thread
#: in-process Dask run spun forever in ``jit_var_dec_ref``, and with the threads rendering one
#: at a time behind a lock such runs still failed now and then (a segmentation fault,
#: ``Endpoint::pdf_direction(): not implemented``, a hang). Parallel rendering comes from
#: processes (``--shard i/n`` in each, or Dask's process workers).
_RENDER_THREAD_NAME = "monohead-render"
_RENDER_POOL: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _render(settings: dict[str, Any], seed: int, index: int) -> dict[str, Any]:
    """Sample ``index`` of the data set ``(settings, seed)``, made by the cached generator on
    the process's render thread (the caller waits for it; its errors are raised here)."""
    global _RENDER_POOL
    with _POOL_LOCK:
        if _RENDER_POOL is None or _RENDER_POOL[0] != os.getpid():  # none yet, or a forked child
            pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=_RENDER_THREAD_NAME)
            _RENDER_POOL = (os.getpid(), pool)
        pool = _RENDER_POOL[1]
    return pool.submit(lambda: _generator(settings).sample(seed, index)).result()


def _with_legacy_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """A manifest's settings with the keys added since format version 1 filled in: sets made
    before the sampler became a setting were rendered with Mitsuba's independent sampler, and
    version 2 and 3 sets made before the yaw range became one with yaw in ±75°."""
    out = {"sampler": "independent", **settings}
    if int(settings.get("generator_version", 1)) >= 2:
        from .scene import DEFAULT_MAX_YAW  # the range of every set made before the option

        out = {"max_yaw": DEFAULT_MAX_YAW, "min_yaw": 0.0, **out}
    return out


def _generator(settings: dict[str, Any]) -> Any:
    """A cached :class:`~monohead.synth.generator.Generator` for the manifest's settings."""
    from .generator import Generator

    key = json.dumps(settings, sort_keys=True)
    gen = _GENERATORS.get(key)
    if gen is None:
        version = int(settings.get("generator_version", 1))
        full = _with_legacy_defaults(settings)
        extra = (
            {}
            if version < 2
            else {
                "projection": settings.get("projection"),
                "hdri": settings.get("hdri_dir"),
                "backgrounds": settings.get("backgrounds_dir"),
                "max_yaw": full["max_yaw"],
                "min_yaw": full["min_yaw"],
            }
        )
        gen = Generator(
            tuple(settings["size"]),
            spp=settings["spp"],
            variant=settings["variant"],
            head_model=settings.get("head_model_path"),
            max_depth=settings["max_depth"],
            sampler=full["sampler"],
            version=version,
            **extra,
        )
        if version >= 2:
            have = gen.source_settings()
            for source in ("hdri_maps", "background_photos"):
                if have[source] != settings.get(source):
                    raise ValueError(
                        f"the {source.split('_')[0]} folder changed since the data set was started "
                        f"({len(settings.get(source) or [])} files then, {len(have[source])} now): "
                        "samples would not match"
                    )
        _GENERATORS[key] = gen
        while len(_GENERATORS) > 2:
            _GENERATORS.popitem(last=False)
    return gen


def _write_shard(
    root: Path, k: int, samples: list[dict[str, Any]], start: int, seconds: float, stamp: dict[str, Any] | None = None
) -> None:
    """Write shard ``k`` atomically; ``stamp`` (the data set's ``seed`` and
    ``generator_version``) goes into its ``info.json`` so that the reader can tell a shard of
    another data set."""
    final = root / "shards" / _shard_name(k)
    tmp = root / "shards" / f".{_shard_name(k)}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        for key in ARRAYS:
            arr = np.stack([np.asarray(s[key], _DTYPES[key]) for s in samples])
            with _io.atomic_open(tmp / f"{key}.npy", "wb") as f:
                np.save(f, arr, allow_pickle=False)
        _io.atomic_write_text(tmp / "params.json", json.dumps([s["params"] for s in samples]))
        timings: dict[str, float] = {}
        for s in samples:
            for name, val in s.get("timings", {}).items():
                timings[name] = timings.get(name, 0.0) + float(val)
        info = {
            "shard": k,
            "start": start,
            "stop": start + len(samples),
            "seconds": seconds,
            "timings": timings,
            **(stamp or {}),
        }
        _io.atomic_write_text(tmp / "info.json", json.dumps(info))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _partial_dir(root: Path, k: int) -> Path:
    """Where the finished samples of shard ``k`` wait while the shard is being made."""
    return root / "shards" / f".{_shard_name(k)}.partial"


def _save_partial(folder: Path, i: int, sample: dict[str, Any]) -> None:
    """Save one finished sample atomically (arrays in their shard dtypes, params and timings as JSON)."""
    buf = io.BytesIO()
    arrays = {key: np.asarray(sample[key], _DTYPES[key]) for key in ARRAYS}
    np.savez(buf, **arrays, params=np.array(json.dumps(sample["params"])),
             timings=np.array(json.dumps(sample.get("timings", {}))))  # fmt: skip
    _io.atomic_write_bytes(folder / f"sample-{i:08d}.npz", buf.getvalue())


def _load_partial(folder: Path, i: int) -> dict[str, Any] | None:
    """A sample saved by :func:`_save_partial`, or ``None`` if absent or unreadable."""
    f = folder / f"sample-{i:08d}.npz"
    if not f.is_file():
        return None
    try:
        with np.load(f, allow_pickle=False) as z:
            sample: dict[str, Any] = {key: z[key] for key in ARRAYS}
            sample["params"] = json.loads(str(z["params"]))
            sample["timings"] = json.loads(str(z["timings"]))
    except (OSError, ValueError, KeyError):
        return None  # made again below
    return sample


def _make_shard(root: str, manifest: dict[str, Any], k: int, progress: Callable[[int], None] | None = None) -> int:
    """Generate and write shard ``k`` (run in-process or as a Dask task).

    Samples a killed run already finished are read back from the shard's partial folder
    instead of being rendered again. Returns the number of samples rendered by this call.
    """
    path = Path(root)
    settings = manifest["settings"]
    start = k * manifest["shard_size"]
    stop = min(start + manifest["shard_size"], manifest["count"])
    # Remove what a killed run may have left of this shard's assembly (its samples are kept).
    for stale in path.joinpath("shards").glob(f".{_shard_name(k)}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = _partial_dir(path, k)
    partial.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    samples = []
    made = 0
    for i in range(start, stop):
        sample = _load_partial(partial, i)
        if sample is None:
            sample = _render(settings, manifest["seed"], i)
            _save_partial(partial, i, sample)
            made += 1
        samples.append(sample)
        if progress is not None:
            progress(1)
    _write_shard(path, k, samples, start, time.perf_counter() - t0, _stamp(manifest))
    shutil.rmtree(partial, ignore_errors=True)
    return made


def _stamp(manifest: dict[str, Any]) -> dict[str, Any]:
    """What every shard's ``info.json`` repeats of its manifest (checked by the reader)."""
    return {"seed": manifest["seed"], "generator_version": int(manifest["settings"].get("generator_version", 1))}


def _manifest(seed: int, count: int, shard_size: int, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "count": count,
        "shard_size": shard_size,
        "num_shards": -(-count // shard_size),
        "arrays": {k: np.dtype(v).name for k, v in _DTYPES.items()},
        "settings": settings,
        "versions": package_versions(),
    }


#: The packages whose versions decide a sample's pixels and ground truth: resuming a data set
#: requires the same version of each (a manifest also records others, such as Python and torch,
#: which do not enter rendering and are not compared).
RENDER_PACKAGES = ("monohead", "numpy", "scipy", "mitsuba", "drjit")


def _check_manifest(existing: dict[str, Any], new: dict[str, Any], root: Path) -> None:
    if isinstance(existing.get("settings"), dict):
        existing = {**existing, "settings": _with_legacy_defaults(existing["settings"])}
    there_s, here_s = existing.get("settings"), new.get("settings")
    if isinstance(there_s, dict) and isinstance(here_s, dict) and there_s != here_s:
        differ = [k for k in sorted(set(there_s) | set(here_s)) if there_s.get(k) != here_s.get(k)]
        listed = ", ".join(f"{k} {there_s.get(k)!r} there, {here_s.get(k)!r} asked" for k in differ)
        raise ValueError(
            f"{str(root)!r} holds a different data set (settings: {listed}); "
            "resume with the same settings or use another folder"
        )
    for key in ("format", "format_version", "seed", "count", "shard_size", "settings"):
        if existing.get(key) != new.get(key):
            raise ValueError(
                f"{str(root)!r} holds a different data set ({key}: {existing.get(key)!r} there, "
                f"{new.get(key)!r} asked); resume with the same settings or use another folder"
            )
    there, here = existing.get("versions") or {}, new.get("versions") or {}
    differ = {k: (there.get(k), here.get(k)) for k in RENDER_PACKAGES if there.get(k) != here.get(k)}
    if differ:
        listed = ", ".join(f"{k} {a} there, {b} here" for k, (a, b) in differ.items())
        raise ValueError(
            f"{str(root)!r} was made with other package versions ({listed}); "
            "samples would not match: use another folder"
        )


def generate(
    out: Any,
    count: int,
    seed: int = 0,
    size: int | tuple[int, int] = 128,
    spp: int = 9,
    shard_size: int = 64,
    shard: Any = None,
    scheduler: str | None = None,
    variant: str = "auto",
    head_model: Any = None,
    max_depth: int = 3,
    sampler: str = "multijitter",
    preview: bool = True,
    progress: Callable[[int, int], None] | None = None,
    generator_version: int | None = None,
    projection: str | None = None,
    hdri: Any = None,
    backgrounds: Any = None,
    max_yaw: float | None = None,
    min_yaw: float | None = None,
) -> dict[str, Any]:
    """Generate a synthetic data set in ``out`` (resuming what is already there).

    Args:
        out: the data set folder (created if needed).
        count: number of samples (> 0).
        seed: the data set's seed (>= 0); sample ``i`` depends on ``(seed, i)`` only.
        size: image size ``S`` or ``(H, W)``.
        spp: samples per pixel of the images.
        shard_size: samples per shard.
        shard: ``"i/n"`` or ``(i, n)``: make only shards ``k`` with ``k % n == i``.
        scheduler: address of a Dask distributed scheduler: run shards as tasks there.
        variant: Mitsuba variant (``"auto"``, ``"llvm_ad_rgb"``, ``"scalar_rgb"``, ``"cuda_ad_rgb"``: see
            :func:`~monohead.synth.render.select_variant`).
        head_model: ``None`` (the shipped asset), an asset ``.npz`` or a FaceXModel folder.
        max_depth: path length of the path tracer.
        sampler: Mitsuba sampler of the images (``multijitter``, ``independent``, ``stratified``,
            ``ldsampler``).
        preview: write ``preview.png`` (when shard 0 is present).
        progress: ``callback(done, total)`` after each sample (per shard with Dask), counting
            the samples this call is responsible for, skipped ones included in ``done``.
        generator_version: ``None`` for the current one
            (:data:`~monohead.synth.generator.GENERATOR_VERSION`), or an older one to extend a
            data set made by it.
        projection: ``"perspective"`` (version 2's default) or ``"orthographic"``.
        hdri: a folder of more environment maps (version 2): ``.npy`` ``(h, 2h, 3)`` or ``.hdr``.
        backgrounds: a folder of background photos (version 2).
        max_yaw: the head's yaw range, uniform in ``±max_yaw`` degrees, ``0 < max_yaw <= 100``
            (versions 2 and 3; ``None``: 75, the range of every set made before the option).
            Recorded in the manifest's ``settings``; a set made without the key was made
            with 75, and resuming a set with another range than it was made with is refused.
        min_yaw: the smallest ``|yaw|``, ``0 <= min_yaw < max_yaw`` (versions 2 and 3; ``None``:
            0): ``|yaw|`` uniform in ``[min_yaw, max_yaw]``, e.g. 70 and 90 for a set of
            profiles to mix with others. Recorded and checked as ``max_yaw`` (0 when missing).

    Returns:
        ``dict``: ``out``, ``count``, ``generated`` (samples rendered now), ``skipped`` (already
        there), ``shards`` (this call's), ``seconds``, ``seconds_per_sample``, ``variant``,
        ``preview`` (path or ``None``), ``generator_version``, ``skipped_files``
        (``{"hdri": n, "backgrounds": n}``: unreadable files skipped in those folders).

    Raises:
        ValueError, TypeError: bad arguments (with the argument's name), an output folder
            that cannot be written, a folder holding a different data set, a head model path
            that is not an asset or an ICT-FaceKit FaceXModel folder.
    """
    count = _positive_int(count, "count")
    seed = _check_seed(seed)
    shard_size = _positive_int(shard_size, "shard_size")
    spp = _positive_int(spp, "spp")
    max_depth = _positive_int(max_depth, "max_depth")
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (_positive_int(size, "size", 16),) * 2
    else:
        try:
            hw = tuple(_positive_int(s, "size", 16) for s in size)
        except TypeError as exc:
            raise TypeError(f"size must be an integer or a pair (H, W); got {size!r}") from exc
        if len(hw) != 2:
            raise ValueError(f"size must be an integer or a pair (H, W); got {size!r}")
    part = parse_shard(shard) if shard is not None else (0, 1)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable; got {type(progress).__name__}")
    from .generator import GENERATOR_VERSION, VERSIONS

    version = GENERATOR_VERSION if generator_version is None else generator_version
    if isinstance(version, bool) or version not in VERSIONS:
        raise ValueError(f"generator_version must be one of {VERSIONS}; got {generator_version!r}")
    from .generator import check_yaw_options
    from .scene import DEFAULT_MAX_YAW

    yaw_range = check_yaw_options(
        DEFAULT_MAX_YAW if max_yaw is None else max_yaw, 0.0 if min_yaw is None else min_yaw, version
    )
    skipped_files = {"hdri": 0, "backgrounds": 0}
    sources: dict[str, Any] = {}
    if version >= 2:  # check the folders before any work starts
        from . import backgrounds as bg_mod
        from . import lighting as light_mod
        from .camera import PROJECTIONS

        projection = projection or "perspective"
        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}; got {projection!r}")
        maps = sorted(p.stem for p in light_mod.bundled_maps())
        if hdri is not None:
            found, skipped_files["hdri"] = light_mod.scan_hdri(hdri)
            maps = sorted(maps + [f"user/{p.name}" for p in found])
        photos: list[str] = []
        if backgrounds is not None:
            found, skipped_files["backgrounds"] = bg_mod.scan_backgrounds(backgrounds)
            photos = [p.name for p in found]
        sources = {
            "max_yaw": yaw_range[0],
            "min_yaw": yaw_range[1],
            "projection": projection,
            "hdri_dir": None if hdri is None else str(Path(hdri).resolve()),
            "hdri_maps": maps,
            "backgrounds_dir": None if backgrounds is None else str(Path(backgrounds).resolve()),
            "background_photos": photos,
        }
    elif projection not in (None, "orthographic") or hdri is not None or backgrounds is not None:
        raise ValueError("generator version 1 has an orthographic camera and no hdri or backgrounds folders")
    root = _prepare_root(out)
    from .head_model import HeadModel
    from .render import select_variant

    model_path = None if head_model is None else str(Path(head_model).resolve())
    model = HeadModel.load(head_model)  # validates the path early, with a clear error
    chosen = select_variant(variant)
    if sampler not in ("independent", "multijitter", "stratified", "ldsampler"):
        raise ValueError(f"sampler must be 'independent', 'multijitter', 'stratified' or 'ldsampler'; got {sampler!r}")
    settings = {
        "size": list(hw),
        "spp": spp,
        "variant": chosen,
        "max_depth": max_depth,
        "sampler": sampler,
        "head_model": Path(model.source).name,
        "head_model_path": model_path,
        "identities": model.num_identities,
        "expressions": model.num_expressions,
    }
    settings["generator_version"] = version
    settings.update(sources)
    manifest = _manifest(seed, count, shard_size, settings)
    mpath = root / "manifest.json"
    if mpath.exists():
        try:
            existing = json.loads(mpath.read_text())
        except ValueError as exc:
            raise ValueError(f"{str(mpath)!r} is not a monohead manifest: {exc}") from exc
        _check_manifest(existing, manifest, root)
    else:
        _io.atomic_write_text(mpath, json.dumps(manifest, indent=1, sort_keys=True))

    mine = [k for k in range(manifest["num_shards"]) if k % part[1] == part[0]]
    sizes = {k: min(shard_size, count - k * shard_size) for k in mine}
    total = sum(sizes.values())
    done_shards = [k for k in mine if (root / "shards" / _shard_name(k)).is_dir()]
    for k in done_shards:  # a run killed between writing a shard and removing its samples
        shutil.rmtree(_partial_dir(root, k), ignore_errors=True)
    todo = [k for k in mine if k not in done_shards]
    done = sum(sizes[k] for k in done_shards)
    skipped = done
    t0 = time.perf_counter()
    if progress is not None:
        progress(done, total)

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if scheduler is None:
        generated = sum(_make_shard(str(root), manifest, k, tick) for k in todo)
    else:
        generated = _run_dask(scheduler, str(root), manifest, todo, sizes, tick)
    seconds = time.perf_counter() - t0
    skipped = total - generated  # whole shards and samples a killed run had finished
    pv = None
    if preview and (root / "shards" / _shard_name(0)).is_dir():
        pv = str(write_preview(root))
    return {
        "out": str(root),
        "count": count,
        "generated": generated,
        "skipped": skipped,
        "shards": len(mine),
        "seconds": seconds,
        "seconds_per_sample": seconds / generated if generated else None,
        "variant": chosen,
        "preview": pv,
        "generator_version": version,
        "skipped_files": skipped_files,
    }


def _run_dask(
    scheduler: str,
    root: str,
    manifest: dict[str, Any],
    todo: list[int],
    sizes: dict[int, int],
    tick: Callable[[int], None],
) -> int:
    """Make the shards ``todo`` as tasks on a Dask cluster; returns the samples rendered."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ImportError("scheduler= needs Dask distributed: pip install 'monohead[dask]'") from exc
    try:
        client = Client(scheduler, timeout=20)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValueError(f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}") from exc
    with client:
        futures = {
            client.submit(
                _make_shard, root, manifest, k, None, pure=False, key=f"monohead-shard-{k}-{time.time_ns()}"
            ): k
            for k in todo
        }
        made = 0
        for fut in as_completed(list(futures)):
            made += int(fut.result())  # re-raises a task's error here
            tick(sizes[futures[fut]])
    return made


def regenerate(root: Any, index: int) -> dict[str, Any]:
    """Make sample ``index`` of the data set in ``root`` again from its manifest (no file is
    written); equal, array for array, to the stored one."""
    manifest = _read_manifest(Path(root))
    index = _positive_int(index, "index", 0)
    if index >= manifest["count"]:
        raise ValueError(f"index must be < {manifest['count']}; got {index}")
    return _render(manifest["settings"], manifest["seed"], index)


def _read_manifest(root: Path) -> dict[str, Any]:
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise ValueError(f"{str(root)!r} is not a monohead synthetic data set (no manifest.json)")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as exc:
        raise ValueError(f"{str(mpath)!r} is not a monohead manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{str(mpath)!r} is not a monohead manifest (format {fmt!r})")
    _check_manifest_entries(manifest, mpath)
    return manifest


def _check_manifest_entries(manifest: dict[str, Any], mpath: Path) -> None:
    """The manifest entries the reader relies on, with a message naming the bad one."""
    for key, minimum in (("seed", 0), ("count", 1), ("shard_size", 1), ("num_shards", 1)):
        v = manifest.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{str(mpath)!r}: bad manifest entry {key!r}: expected an integer >= {minimum}; got {v!r}")
    expected = -(-manifest["count"] // manifest["shard_size"])
    if manifest["num_shards"] != expected:
        raise ValueError(
            f"{str(mpath)!r}: bad manifest entry 'num_shards': {manifest['count']} samples in shards of "
            f"{manifest['shard_size']} make {expected} shards; got {manifest['num_shards']}"
        )
    settings = manifest.get("settings")
    if not isinstance(settings, dict):
        raise ValueError(
            f"{str(mpath)!r}: bad manifest entry 'settings': expected an object; got {type(settings).__name__}"
        )
    size = settings.get("size")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
    ):
        raise ValueError(
            f"{str(mpath)!r}: bad manifest entry 'settings.size': expected [H, W] of integers >= 1; got {size!r}"
        )
    version = settings.get("generator_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            f"{str(mpath)!r}: bad manifest entry 'settings.generator_version': expected an integer >= 1; "
            f"got {version!r}"
        )


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """``(shape, dtype, fortran_order, data offset)`` of a ``.npy`` file, reading its header only."""
    with open(path, "rb") as f:
        major, minor = np.lib.format.read_magic(f)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif (major, minor) == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {major}.{minor} is not one numpy.save writes for these arrays")
        return tuple(shape), np.dtype(dtype), bool(fortran), f.tell()


def check_shard(root: Any, k: int, manifest: dict[str, Any] | None = None) -> str | None:
    """Why shard ``k`` of the data set in ``root`` cannot be used, or ``None`` if it is whole.

    Checks, without reading the arrays: the five ``.npy`` files, ``params.json`` and
    ``info.json`` are there; each ``.npy`` header gives the manifest's dtype and the shape
    ``(n, H, W[, 3])`` of the shard's ``n`` samples; each file is long enough to hold its
    array (a truncated file is caught); ``params.json`` is a list of ``n`` objects;
    ``info.json`` gives this shard's number and sample range and, when it records them (shards
    written since these checks exist), the manifest's seed and generator version.

    Args:
        root: the data set folder.
        k: the shard number, ``0 <= k < num_shards``.
        manifest: the parsed ``manifest.json`` (read from ``root`` when ``None``).
    """
    root = Path(root)
    if manifest is None:
        manifest = _read_manifest(root)
    folder = root / "shards" / _shard_name(k)
    if not folder.is_dir():
        return "missing"
    start = k * manifest["shard_size"]
    n = min(manifest["shard_size"], manifest["count"] - start)
    if n < 1:
        return f"not part of the data set (the manifest has {manifest['num_shards']} shards)"
    H, W = manifest["settings"]["size"]
    shapes = {"image": (n, H, W, 3), "normals": (n, H, W, 3), "depth": (n, H, W), "W": (n, H, W), "mask": (n, H, W)}
    for key in ARRAYS:
        path = folder / f"{key}.npy"
        if not path.is_file():
            return f"{key}.npy is missing"
        try:
            shape, dtype, fortran, offset = _npy_header(path)
        except (OSError, ValueError, SyntaxError) as exc:
            return f"{key}.npy is not a readable .npy file ({exc})"
        want = np.dtype(_DTYPES[key])
        if dtype != want or shape != shapes[key] or fortran:
            return f"{key}.npy holds {dtype.name} {shape}; expected {want.name} {shapes[key]}"
        need = offset + int(np.prod(shape)) * dtype.itemsize
        have = path.stat().st_size
        if have < need:
            return f"{key}.npy is truncated ({have} bytes; its header needs {need})"
    for name in ("params.json", "info.json"):
        if not (folder / name).is_file():
            return f"{name} is missing"
    try:
        params = json.loads((folder / "params.json").read_text())
    except (OSError, ValueError) as exc:
        return f"params.json is not readable JSON ({exc})"
    if not isinstance(params, list) or len(params) != n or not all(isinstance(p, dict) for p in params):
        got = f"a list of {len(params)}" if isinstance(params, list) else type(params).__name__
        return f"params.json must be a list of {n} objects; got {got}"
    try:
        info = json.loads((folder / "info.json").read_text())
    except (OSError, ValueError) as exc:
        return f"info.json is not readable JSON ({exc})"
    if not isinstance(info, dict):
        return f"info.json must be an object; got {type(info).__name__}"
    stamp = _stamp(manifest)  # recorded by shards written since the stamp exists
    for key, want_v in (("shard", k), ("start", start), ("stop", start + n), *stamp.items()):
        if (key in info or key not in stamp) and info.get(key) != want_v:
            return (
                f"info.json says {key} {info.get(key)!r}; the manifest says {want_v!r} (a shard of another data set?)"
            )
    return None


_UNIT_TOL = 0.02  # |n|^2 of a stored ground-truth normal is 1 to float32 rounding


def _check_item(item: dict[str, Any], where: str) -> None:
    """Refuse an item whose ground truth cannot be right (corrupt data): inside the mask the
    normals must be unit vectors, W finite and >= 0, the depth finite."""
    m = item["mask"]
    n = item["normals"][m].astype(np.float64)
    sq = np.einsum("ij,ij->i", n, n)
    bad = int(np.count_nonzero(~(np.abs(sq - 1.0) <= _UNIT_TOL)))  # NaN counts as bad
    problem = None
    if bad:
        problem = f"{bad} pixel(s) of the mask hold normals that are not unit vectors"
    else:
        w = item["W"][m]
        bad = int(np.count_nonzero(~(np.isfinite(w) & (w >= 0))))
        if bad:
            problem = f"{bad} pixel(s) of the mask hold a W that is not finite and >= 0"
        else:
            bad = int(np.count_nonzero(~np.isfinite(item["depth"][m])))
            if bad:
                problem = f"{bad} pixel(s) of the mask hold a non-finite depth"
    if problem:
        raise ValueError(
            f"corrupt sample in {where}: {problem}; remove that shard folder and run monohead synth "
            "again with the same arguments to remake it"
        )


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class SyntheticHeads:
    """A synthetic data set on disk, indexable (a map-style ``torch.utils.data.Dataset``).

    Args:
        root: the data set folder (made by :func:`generate`).
        partial: accept missing and damaged shards (e.g. a machine's part of a split run, an
            unfinished generation) and index only the whole ones; the others are listed in
            :attr:`skipped` and logged as a warning. By default a missing or damaged shard is
            an error that names it (:func:`check_shard` says what is wrong with it).
        max_open: shards kept open at once (memory maps of the arrays and the parsed
            ``params.json``, about 2 MB each). Random access over more shards than this
            re-opens a shard and re-parses its parameters on most reads (a few ms an item).

    ``ds[i]`` is a dict: ``image (H, W, 3) uint8``, ``normals (H, W, 3) float32`` (camera
    frame of conventions.md, 0 outside the mask), ``W (H, W) float32``, ``depth (H, W)
    float32`` (pixels, NaN outside the mask), ``mask (H, W) bool``, ``params`` (dict) and
    ``index`` (the sample's index in the data set). Reading an item whose ground truth cannot
    be right (normals that are not unit vectors, a non-finite or negative W, a non-finite depth
    inside the mask) raises a ``ValueError`` naming its shard.

    Attributes:
        manifest: the parsed ``manifest.json``.
        seed: the data set's seed.
        generator_version: the generator version of its samples (1 for sets made before
            versions were recorded).
        skipped: ``{shard folder name: reason}`` of the shards left out (``partial=True``).
        meta: what a run's config and model card record of it: ``root``, ``seed``,
            ``generator_version``, ``count`` (samples indexed), ``skipped_shards`` and the
            manifest's ``settings`` and ``versions``.
    """

    def __init__(self, root: Any, partial: bool = False, max_open: int = 64) -> None:
        if isinstance(root, bytes) or not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str or os.PathLike; got {type(root).__name__}")
        self.root = Path(root)
        self.manifest = _read_manifest(self.root)
        self.seed = int(self.manifest["seed"])
        size = self.manifest["shard_size"]
        count = self.manifest["count"]
        self.generator_version = int(self.manifest["settings"].get("generator_version", 1))
        present = []
        missing = []
        damaged: dict[str, str] = {}
        for k in range(self.manifest["num_shards"]):
            why = check_shard(self.root, k, self.manifest)
            if why is None:
                present.append(k)
            elif why == "missing":
                missing.append(k)
            else:
                damaged[_shard_name(k)] = why
        if damaged and not partial:
            shown = "; ".join(f"{name}: {why}" for name, why in list(damaged.items())[:5])
            more = f" (and {len(damaged) - 5} more)" if len(damaged) > 5 else ""
            raise ValueError(
                f"data set {str(self.root)!r} has {len(damaged)} damaged shard(s), refused: {shown}{more}; remove them "
                "and run monohead synth again with the same arguments to remake them, or pass partial=True to skip them"
            )
        if missing and not partial:
            raise ValueError(
                f"data set {str(self.root)!r} is incomplete: {len(missing)} of {self.manifest['num_shards']} shards "
                f"missing (first {missing[:5]}); finish it with generate() or pass partial=True"
            )
        self.skipped = {**{_shard_name(k): "missing" for k in missing}, **damaged}
        if damaged:
            log.warning(
                "data set %s: %d damaged shard(s) skipped: %s",
                self.root,
                len(damaged),
                "; ".join(f"{name}: {why}" for name, why in damaged.items()),
            )
        self._index = np.concatenate(
            [np.arange(k * size, min((k + 1) * size, count)) for k in present] or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self._shard_size = size
        self._open: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self._max_open = _positive_int(max_open, "max_open")
        self.size = tuple(self.manifest["settings"]["size"])
        self.meta = {
            "root": str(self.root.resolve()),
            "seed": self.seed,
            "generator_version": self.generator_version,
            "count": len(self),
            "skipped_shards": dict(self.skipped),
            "settings": self.manifest.get("settings"),
            "versions": self.manifest.get("versions"),
        }

    def __len__(self) -> int:
        return int(self._index.size)

    def _shard(self, k: int) -> dict[str, Any]:
        data = self._open.get(k)
        if data is None:
            folder = self.root / "shards" / _shard_name(k)
            data = {key: np.load(folder / f"{key}.npy", mmap_mode="r", allow_pickle=False) for key in ARRAYS}
            data["params"] = json.loads((folder / "params.json").read_text())
            self._open[k] = data
            while len(self._open) > self._max_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(k)
        return data

    def __getitem__(self, i: Any) -> dict[str, Any]:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an integer; got {type(i).__name__}")
        n = len(self)
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"index {int(i)} out of range for a data set of {n} samples")
        index = int(self._index[j])
        k, o = divmod(index, self._shard_size)
        data = self._shard(k)
        item = {key: np.array(data[key][o]) for key in ARRAYS}
        _check_item(item, f"{self.root / 'shards' / _shard_name(k)} (sample {index})")
        item["params"] = data["params"][o]
        item["index"] = index
        return item

    def verify(self, progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
        """Read every item once and return ``{shard folder name: reason}`` of the shards
        holding an item that cannot be right (see the class docstring); empty if all are fine.

        A few seconds per thousand 128² samples (the arrays are read from disk). Use it before a
        long run: a bad item found during training stops the run (with a checkpoint).
        ``progress(done, total)`` is called after each item.
        """
        bad: dict[str, str] = {}
        n = len(self)
        for j in range(n):
            k = int(self._index[j]) // self._shard_size
            name = _shard_name(k)
            if name not in bad:
                try:
                    self[j]
                except ValueError as exc:
                    bad[name] = str(exc)
            if progress is not None:
                progress(j + 1, n)
        return bad

    def __iter__(self) -> Any:
        for i in range(len(self)):
            yield self[i]

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: reopen shards lazily
        state = self.__dict__.copy()
        state["_open"] = collections.OrderedDict()
        return state

    @staticmethod
    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch items for a ``torch.utils.data.DataLoader``: arrays become tensors stacked on
        a first batch axis (``(B, H, W, 3)`` etc., NumPy layout), ``params`` and ``index``
        become lists."""
        import torch

        out: dict[str, Any] = {key: torch.from_numpy(np.stack([it[key] for it in items])) for key in ARRAYS}
        out["params"] = [it["params"] for it in items]
        out["index"] = [it["index"] for it in items]
        return out


def write_preview(root: Any, count: int = 8, path: Any = None) -> Path:
    """Write ``preview.png`` (or ``path``) for the first ``count`` samples of a data set: the
    sheet of :func:`monohead.synth.preview.preview_sheet` (images, N and W maps, like the
    paper's Fig. 2). Returns the path written."""
    from ..geometry import encode_png
    from .preview import preview_sheet

    ds = SyntheticHeads(root, partial=True)
    n = min(int(count), len(ds))
    if n == 0:
        raise ValueError(f"data set {str(root)!r} has no sample to preview")
    target = Path(root) / "preview.png" if path is None else Path(path)
    _io.atomic_write_bytes(target, encode_png(preview_sheet([ds[i] for i in range(n)])))
    return target
