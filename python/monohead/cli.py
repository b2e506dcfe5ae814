"""``monohead <command>``: the command-line interface (the only module that prints).

Commands:
    reconstruct photo(s) -> head mesh(es) and preview figures (the paper's pipeline)
    integrate   integrate a normal map (.npy / .npz, or a BiNI folder) into a depth map (and a mesh)
    synth       render a synthetic training data set (synth-asset: convert ICT-FaceKit; synth-look:
                a sheet of renders, beside real photos)
    train       train the network (resumable; torchrun for DDP), evaluate a checkpoint, export weights
    experiments the paper's experiments (Table 1, lambda sweep, Table 2, photos) as a Markdown report

Progress and messages go to stderr; ``--json`` prints one machine-readable JSON object on
stdout, and nothing else goes there (libraries that print, such as the renderer, are sent to
stderr at the file-descriptor level). Errors exit with status 2 and a one-line message that
names the file or option and the problem. Outputs are all or nothing: a command that fails
writes none of its files and leaves no folder it created.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


#: Folders this process created, removed again if the command fails and they are still empty.
_CREATED_FOLDERS: list[Path] = []


def _make_folder(out: Path) -> Path:
    """Create the output folder ``out`` (its parent must exist) and remember that we did."""
    if out.is_dir():
        return out
    try:
        out.mkdir()
    except OSError as exc:
        raise CliError(f"cannot create output folder {out}: {exc.strerror}") from exc
    _CREATED_FOLDERS.append(out)
    return out


def _remove_created_folders() -> None:
    """After a failure: remove the folders this command created, if nothing was written there."""
    for folder in reversed(_CREATED_FOLDERS):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty
    _CREATED_FOLDERS.clear()


def _check_output_file(path: str, option: str, suffixes: tuple[str, ...]) -> Path:
    """An output file path: a known suffix, an existing folder, not itself a folder."""
    out = Path(path)
    if out.is_dir():
        raise CliError(f"{option} {path} is a folder; give a file name")
    if out.suffix.lower() not in suffixes:
        raise CliError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}")
    if not out.parent.exists():
        raise CliError(f"{option} {path}: folder {out.parent} does not exist")
    if not out.parent.is_dir():
        raise CliError(f"{option} {path}: {out.parent} is a file, not a folder")
    return out


_NPY_MAGIC = b"\x93NUMPY"
_NPZ_MAGIC = b"PK\x03\x04"


def _check_magic(path: Path, magic: bytes, kind: str) -> None:
    """Raise a one-line CliError unless ``path`` starts with ``magic`` (a .npy or .npz header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(magic))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    if head != magic:
        what = (
            "an empty file"
            if not head
            else "text"
            if all(32 <= c < 127 or c in (9, 10, 13) for c in head)
            else "binary data"
        )
        raise CliError(
            f"cannot read {path}: not a {kind} file "
            f"(it holds {what}; write it with numpy.save{'z' if kind == '.npz' else ''})"
        )


def _load_normal_input(path: Path) -> dict[str, Any]:
    """Inputs of ``integrate`` from a .npy (normals), a .npz (normals[, W][, mask][, K]) or a BiNI folder.

    Returns a dict with ``normals`` and optional ``W``, ``mask``, ``K`` (OpenCV form).
    """
    if not path.exists():
        raise CliError(f"input file does not exist: {path}")
    if path.is_dir():
        return _load_bini_folder(path)
    try:
        if path.suffix == ".npy":
            _check_magic(path, _NPY_MAGIC, ".npy")
            return {"normals": np.load(path, allow_pickle=False)}
        if path.suffix == ".npz":
            _check_magic(path, _NPZ_MAGIC, ".npz")
            with np.load(path, allow_pickle=False) as z:
                keys = set(z.files)
                key = "normals" if "normals" in keys else "normal" if "normal" in keys else None
                if key is None:
                    raise CliError(f"{path} has no 'normals' array; found {sorted(keys)}")
                return {"normals": z[key], **{k: z[k] for k in ("W", "mask", "K") if k in keys}}
    except CliError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise CliError(
                f"{path} holds a pickled (object) array, which monohead does not load; save a numeric array"
            ) from exc
        raise CliError(f"cannot read {path}: {' '.join(str(exc).split())}") from exc
    except Exception as exc:  # unreadable or corrupt file
        raise CliError(f"cannot read {path}: {' '.join(str(exc).split())}") from exc
    raise CliError(f"input must be a .npy or .npz file or a folder; got {path.name!r}")


def _load_bini_folder(folder: Path) -> dict[str, Any]:
    """A folder in BiNI's layout (:func:`monohead.integration.perspective.read_bini_folder`)."""
    from .integration.perspective import read_bini_folder

    try:
        return read_bini_folder(folder)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def _example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from .integration import surfaces

    s = surfaces.head(256, neck=True)
    return s.normals, s.W, s.mask


def _cmd_integrate(args: argparse.Namespace) -> dict[str, Any]:
    import io

    import monohead

    from ._io import atomic_write_files

    if args.example:
        normals, W, mask = _example()
        data: dict[str, Any] = {}
        source = "example: analytic head + neck, 256x256"
    else:
        if args.input is None:
            raise CliError("give a normal map (.npy or .npz), a BiNI folder, or --example")
        data = _load_normal_input(Path(args.input))
        normals, W, mask = data["normals"], data.get("W"), data.get("mask")
        source = str(args.input)
    if args.no_weights:
        W = None
    K = data.get("K")
    if args.K is not None:
        try:
            K = np.loadtxt(args.K)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read --K {args.K}: {exc}") from exc
    if args.orthographic:
        K = None
    prior = data.get("prior")
    if args.prior is not None:
        prior_path = Path(args.prior)
        if prior_path.suffix == ".npy" and prior_path.is_file():
            _check_magic(prior_path, _NPY_MAGIC, ".npy")
        try:
            prior = np.load(args.prior, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read --prior {args.prior}: {' '.join(str(exc).split())}") from exc
    out = _check_output_file(args.output, "-o", (".npy",))
    mesh_path = None if not args.mesh else _check_output_file(args.mesh, "--mesh", (".ply", ".obj"))
    if mesh_path is not None and mesh_path.resolve() == out.resolve():
        raise CliError(f"--mesh {args.mesh} and -o {args.output} name the same file")
    depth, info = monohead.integrate(
        normals,
        W,
        args.lam,
        mask,
        method=args.method,
        tol=args.tol,
        return_info=True,
        K=K,
        sharpness=args.sharpness,
        prior=prior,
        prior_weight=args.prior_weight,
    )
    files: dict[Path, bytes] = {}
    mesh = None
    if mesh_path is not None:
        from .integration.perspective import depth_mesh

        mesh = depth_mesh(depth, K)
        data_mesh = mesh.export(file_type=mesh_path.suffix.lower()[1:])
        files[mesh_path] = data_mesh.encode("utf-8") if isinstance(data_mesh, str) else data_mesh
    buf = io.BytesIO()
    np.save(buf, depth)
    files[out] = buf.getvalue()
    atomic_write_files(files)  # the depth and the mesh, or neither
    result: dict[str, Any] = {
        "input": source,
        "output": str(out),
        "camera": "orthographic" if K is None else "perspective",
        "shape": list(depth.shape),
        "unknowns": info.num_unknowns,
        "components": info.num_components,
        "method": info.method,
        "iterations": info.iterations,
        "residual": info.residual,
        "sharpness": args.sharpness,
        "prior": prior is not None,
        "reweightings": info.reweightings,
        "seconds": {
            "assembly": info.assembly_seconds,
            "setup": info.setup_seconds,
            "solve": info.solve_seconds,
            "total": info.total_seconds,
        },
    }
    if mesh is not None:
        result["mesh"] = str(args.mesh)
        result["mesh_vertices"] = int(len(mesh.vertices))
        result["mesh_faces"] = int(len(mesh.faces))
    return result


def _print_integrate(r: dict[str, Any]) -> None:
    s = r["seconds"]
    print(
        f"{r['input']}: {r['camera']}, {r['unknowns']} pixels in {r['components']} component(s), "
        f"{r['method']} {r['iterations']} iterations, residual {r['residual']:.2e}, "
        f"{s['total'] * 1e3:.1f} ms (assembly {s['assembly'] * 1e3:.1f}, setup {s['setup'] * 1e3:.1f}, "
        f"solve {s['solve'] * 1e3:.1f})",
        file=sys.stderr,
    )
    print(f"depth -> {r['output']}", file=sys.stderr)
    if "mesh" in r:
        print(f"mesh ({r['mesh_vertices']} vertices, {r['mesh_faces']} faces) -> {r['mesh']}", file=sys.stderr)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class _Progress:
    """The commands' progress display on stderr (the one progress helper of the CLI).

    ``progress(done, total, text)`` shows ``[####....] done/total text``. On a terminal the line
    is redrawn in place, at most every ``tty_every`` seconds; elsewhere (a log file, a pipe) a new
    line is printed when ``log_every`` seconds have passed or ``done / total`` entered a new step
    of ``log_percent`` percent. The first update of a new ``topic`` and the last one
    (``done == total``, which ends the line) are always shown. ``note(text)`` prints a message on
    a line of its own.

    Args:
        tty_every: seconds between redraws on a terminal.
        log_every: seconds between lines elsewhere (``None``: not by time).
        log_percent: elsewhere, a line per step of this many percent (``None``: not by steps).
        label: text before the bar.
    """

    WIDTH = 24

    def __init__(
        self, tty_every: float = 0.0, log_every: float | None = 0.0, log_percent: int | None = None, label: str = ""
    ) -> None:
        import time

        self.clock = time.monotonic
        self.tty = sys.stderr.isatty()
        self.tty_every, self.log_every, self.log_percent, self.label = tty_every, log_every, log_percent, label
        self.topic: str | None = None
        self.last = -float("inf")
        self.last_step = -1
        self.open = False  # a line drawn in place and not ended yet

    def _due(self, now: float, step: int) -> bool:
        if self.tty:
            return now - self.last >= self.tty_every
        by_time = self.log_every is not None and now - self.last >= self.log_every
        return by_time or (self.log_percent is not None and step != self.last_step)

    def __call__(self, done: int, total: int, text: str = "", topic: str = "") -> None:
        final = done >= total
        now = self.clock()
        step = int(100 * done / total) // self.log_percent if self.log_percent and total else -1
        if not final and topic == self.topic and not self._due(now, step):
            return
        self.topic, self.last, self.last_step = topic, now, step
        fill = int(self.WIDTH * done / max(total, 1))
        line = f"{self.label}[{'#' * fill}{'.' * (self.WIDTH - fill)}] {done}/{total} {text}".rstrip()
        if self.tty:
            print("\r" + line + "\x1b[K", end="\n" if final else "", file=sys.stderr, flush=True)
            self.open = not final
        else:
            print(line, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """A message on a line of its own (after ending a line drawn in place)."""
        self.close()
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End a line drawn in place, if one is open."""
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


def _photos(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(name, image) pairs from the PHOTO arguments (files or folders) or --example."""
    if args.example:
        from skimage import data

        return [("astronaut", data.astronaut())]
    if not args.photos:
        raise CliError("give one or more photos (files or folders), or --example")
    out: list[tuple[str, Any]] = []
    for p in map(Path, args.photos):
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not files:
                raise CliError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {p}")
            out += [(f.stem, f) for f in files]
        elif p.exists():
            out.append((p.stem, p))
        else:
            raise CliError(f"photo does not exist: {p}")
    # Check every photo's header before any work: a file that is not an image, or one that
    # declares more pixels than the limit (a decompression bomb), stops the command with
    # nothing written.
    for _, path in out:
        _check_photo(path)
    return out


def _check_photo(path: Path) -> None:
    """Raise a one-line CliError unless ``path`` is an image whose size is within the limit
    (only the header is read: :func:`monohead.photo.check_image_file`)."""
    from .photo import check_image_file

    try:
        check_image_file(path, "photo")
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def _output_folder(path: str, create: bool = True) -> Path:
    """Check an output folder (a folder, or a new one in an existing folder, writable); create
    it now (``create``) or leave that to :func:`_make_folder` right before the first write."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CliError(f"output must be a folder; {out} is a file")
    if not out.exists():
        if not out.parent.is_dir():
            raise CliError(f"output folder's parent does not exist: {out.parent}")
        if not os.access(out.parent, os.W_OK | os.X_OK):
            raise CliError(f"cannot create output folder {out}: {out.parent} is not writable")
    elif not os.access(out, os.W_OK | os.X_OK):
        raise CliError(f"output folder is not writable: {out}")
    if create:
        _make_folder(out)
    return out


def _cmd_reconstruct(args: argparse.Namespace) -> dict[str, Any]:
    from . import photo
    from ._io import atomic_write_files

    out = _output_folder(args.output, create=False)
    if args.focal_mm is not None and not args.full_head:
        raise CliError("--focal-mm is used by the complete head only; add --full-head")
    try:
        focal_mm = photo.check_focal_mm(args.focal_mm, args.full_head)
    except ValueError as exc:
        raise CliError(f"--focal-mm: {exc}") from exc
    photos = _photos(args)
    try:
        model = photo.load_default_model()
    except (FileNotFoundError, ImportError) as exc:
        raise CliError(str(exc)) from exc
    progress = _Progress()
    show = None if len(photos) == 1 or args.json else (lambda done, total, name: progress(done, total, name[:40]))
    done = photo.reconstruct_photos(photos, lam=args.lam, detect=not args.no_detect, all_faces=args.all_faces,
                                    model=model, flip=not args.no_flip, detector=args.detector,
                                    full_head=args.full_head, focal_mm=focal_mm, reframe=not args.no_reframe,
                                    mesh_format=args.format,
                                    units=args.units,
                                    callback=show)  # fmt: skip
    results, failures = [], []
    files: dict[Path, bytes] = {}
    for o in done:
        if o.result is None:
            failures.append({"photo": o.photo, "error": o.error})
            continue
        mesh_path, preview_path = out / f"{o.stem}.{args.format}", out / f"{o.stem}_preview.png"
        files[mesh_path], files[preview_path] = o.mesh, o.preview
        info = o.summary(args.units)
        full = info.pop("full_head")
        if full is not None:
            full_path = out / f"{o.stem}_full.{args.format}"
            files[full_path] = o.full_mesh
            full = {"mesh": str(full_path), **full}
        results.append(
            {"full_head": full, "photo": o.photo, "mesh": str(mesh_path), "preview": str(preview_path), **info}
        )
    summary = {"reconstructions": results, "failures": failures}
    if failures and not results:
        raise CliError("; ".join(f"{f['photo']}: {f['error']}" for f in failures))
    # Every mesh and preview at once, after all the work: a failure leaves no half set.
    _make_folder(out)
    atomic_write_files(files)
    return summary


def _print_reconstruct(r: dict[str, Any]) -> None:
    for rec in r["reconstructions"]:
        s = rec["seconds"]
        total = sum(s.values()) * 1e3
        print(
            f"{rec['photo']}: {rec['vertices']} vertices -> {rec['mesh']}, preview -> {rec['preview']} "
            f"({total:.0f} ms: detection {s['detection'] * 1e3:.0f}, network {s['network'] * 1e3:.0f}, "
            f"integration {s['integration'] * 1e3:.0f}, meshing {s['meshing'] * 1e3:.0f})",
            file=sys.stderr,
        )
        if rec.get("full_head"):
            fh = rec["full_head"]
            fit = fh["fit"]
            print(
                f"{rec['photo']}: complete head -> {fh['mesh']} ({fh['vertices']} vertices, "
                f"watertight {fh['watertight']}; "
                f"fit {'converged' if fit['converged'] else 'NOT converged'} in {fit['iterations']} iterations, "
                f"depth residual {fit['rms']:.2f} px, "
                f"yaw/pitch/roll {', '.join(f'{a:.0f}' for a in fit['yaw_pitch_roll'])} deg)",
                file=sys.stderr,
            )
        if not rec.get("face_covered", True):
            print(
                f"{rec['photo']}: warning: the network's head mask covers only "
                f"{100 * rec['cleanup']['face_coverage']:.0f} % "
                "of the detected face; the mesh is likely not the face",
                file=sys.stderr,
            )
    for f in r["failures"]:
        print(f"{f['photo']}: error: {f['error']}", file=sys.stderr)


# --- monohead train -------------------------------------------------------------------------

_TRAIN_OPTIONS = (
    "width", "depth", "dropout", "critic_width", "batch_size", "lr", "lambda_l2", "n_critic", "seed",
    "val_count", "steps", "lr_decay_from", "log_every", "val_every", "ckpt_every", "val_max", "device", "amp",
    "workers", "threads", "ema_decay",
)  # fmt: skip


def _load_dataset(
    path: str | list[str] | None, toy: int | None, what: str, seed: int = 0, toy_size: int = 64, partial: bool = False
) -> Any:
    """The data set of ``--data`` (``monohead.synth.SyntheticHeads``), or the toy heads of ``--toy``.

    Several folders are read as one data set (``monohead.model.data.ConcatData``), in the order given.
    ``partial``: accept a data set whose generation is unfinished (only its complete shards).
    """
    if toy is not None:
        from .model import ToyHeads

        return ToyHeads(toy, toy_size, seed=seed)
    if isinstance(path, list):
        if len(path) > 1:
            from .model.data import ConcatData

            return ConcatData([_load_dataset(p, None, what, seed, toy_size, partial) for p in path])
        path = path[0] if path else None
    if path is None:
        raise CliError(f"give {what}")
    if not Path(path).exists():
        raise CliError(f"data folder does not exist: {path}")
    try:
        from .synth import SyntheticHeads
    except ImportError as exc:
        raise CliError(
            f"reading {path} needs monohead.synth.SyntheticHeads, which could not be imported ({exc})"
        ) from exc
    try:
        ds = SyntheticHeads(path, partial=partial)
    except ValueError as exc:
        raise CliError(f"{exc}{'' if partial else ' (use --partial-data to train on the whole shards)'}") from exc
    for name, why in ds.skipped.items():
        if why != "missing":
            print(f"warning: {path}: {name} skipped: {why}", file=sys.stderr)
    missing = sum(why == "missing" for why in ds.skipped.values())
    if missing:
        print(f"{path}: {missing} shard(s) not made yet, {len(ds)} samples used", file=sys.stderr)
    return ds


def _train_progress() -> Any:
    """``monohead train``'s event callback: messages, and the step bar (redrawn twice a second on
    a terminal, a line a minute otherwise) with the last validation's figures."""
    progress = _Progress(tty_every=0.5, log_every=60.0)
    val = ""

    def on_event(e: dict[str, Any]) -> None:
        nonlocal val
        kind = e["event"]
        if kind == "data":
            progress.note(f"the data changed at step {e['step']} (recorded in the run's config.json and log): "
                          f"{_describe_parts(e['before'])} -> {_describe_parts(e['parts'])}")  # fmt: skip
        elif kind == "start":
            progress.note(f"training on {e['device']} ({e['world']} process(es), bf16 autocast "
                          f"{'on' if e['amp'] else 'off'}), from step {e['step']} to {e['steps']}")  # fmt: skip
        elif kind == "ema":
            if e["ema"] is None:
                progress.note(f"the generator's EMA (decay {e['before']}) is dropped at step {e['step']}")
            elif e["before"] is None:
                progress.note(f"keeping an EMA of the generator from step {e['step']}, decay {e['ema']['decay']} "
                              "(validated, selected for best.pt, exported instead of the raw generator)")  # fmt: skip
            else:
                progress.note(f"the generator's EMA (since step {e['ema']['since_step']}) goes on with decay "
                              f"{e['ema']['decay']} instead of {e['before']} from step {e['step']}")  # fmt: skip
        elif kind == "val":
            m = e["metrics"]
            raw = f" (raw {e['raw']['angular']['mean']:.2f})" if e.get("raw") else ""
            val = (f" | val {m['angular']['mean']:.2f}{raw} deg mean, mask P {m['mask_precision']:.1f}% "
                   f"R {m['mask_recall']:.1f}%")  # fmt: skip
            if not progress.tty:
                progress.note(f"step {e['step']}{val}")
        elif kind == "step":
            text = (f"L2 {e['loss_l2']:.4f} W-dist {e['wasserstein']:+.3f} {e['images_per_second']:.1f} img/s "
                    f"(data {e['data_seconds'] * 1e3:.0f} ms, step {e['step_seconds'] * 1e3:.0f} ms){val}")  # fmt: skip
            progress(e["step"], e["steps"], text)
        elif kind == "done":
            progress.close()

    return on_event


def _describe_parts(parts: list[dict[str, Any]]) -> str:
    """``"2 folder(s), 12,000 samples, seeds 1, 5, generator version(s) 1, 2"`` of data_summary rows."""
    seeds = ", ".join(str(r["seed"]) for r in parts if r.get("seed") is not None) or "-"
    versions = (
        ", ".join(
            str(v) for v in sorted({r["generator_version"] for r in parts if r.get("generator_version") is not None})
        )
        or "-"
    )
    count = sum(int(r.get("count") or 0) for r in parts)
    return f"{len(parts)} folder(s), {count:,} samples, seeds {seeds}, generator version(s) {versions}"


def _parse_card(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        card = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise CliError(f"--card must be a JSON object or @FILE holding one: {exc}") from exc
    if not isinstance(card, dict):
        raise CliError(f"--card must be a JSON object; got {type(card).__name__}")
    return card


def _balanced_subset(data: Any, count: int) -> Any:
    """``--balanced``: the first half-female, half-male ``count`` items of ``data``, as ``monohead
    experiments`` chooses its test set (:func:`monohead.experiments.balanced_subset`)."""
    from .experiments import balanced_subset

    try:
        return balanced_subset(data, count)
    except ValueError as exc:
        raise CliError(f"--balanced: {exc}") from exc


def _torch_run_folder(command: str, out: str) -> Path:
    """The run folder ``--out`` of a training command, after checking that PyTorch is there."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise CliError(f"monohead {command} needs PyTorch: pip install torch")
    run = Path(out)
    if run.exists() and not run.is_dir():
        raise CliError(f"--out must be a run folder; {run} is a file")
    return run


def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    import os
    import signal

    run = _torch_run_folder("train", args.out)
    from . import model
    from ._io import atomic_write_text

    if args.eval_only or args.export_weights:
        sources = [Path(c) for c in args.checkpoint] if args.checkpoint else [run]
        for s in sources:
            if not s.exists():
                raise CliError(f"--checkpoint: no run or checkpoint at {s}")
        source = sources[0] if len(sources) == 1 else sources
        if args.eval_only:
            data = _load_dataset(args.data, args.toy, "the held-out data: --data DIR", seed=args.seed or 0)
            max_items = args.max_items
            if args.balanced:
                data, max_items = _balanced_subset(data, args.max_items), None
            metrics = model.evaluate_checkpoint(
                source, data, max_items=max_items, device=args.device or "cpu", flip=args.flip, ema=not args.raw
            )
            dest = (
                Path(args.metrics)
                if args.metrics
                else sources[0] / "eval_metrics.json"
                if len(sources) == 1 and sources[0].is_dir()
                else run / "eval_metrics.json"
            )
            from .model.train import jsonable

            atomic_write_text(dest, json.dumps(jsonable(metrics), indent=2) + "\n")
            return {"action": "eval", "metrics_file": str(dest), **metrics}
        data = None
        if args.data is not None or args.toy is not None:
            data = _load_dataset(args.data, args.toy, "--data", seed=args.seed or 0)
            if args.balanced:
                data = _balanced_subset(data, args.max_items)
        card = model.export_weights(
            source,
            args.export_weights,
            eval_dataset=data,
            max_items=args.max_items,
            card=_parse_card(args.card),
            ema=not args.raw,
        )
        return {"action": "export", "dest": str(args.export_weights), **card}

    given = {k: getattr(args, k) for k in _TRAIN_OPTIONS}
    if args.no_channels_last:
        given["channels_last"] = False
    cfg = model.run_config(run, given, init=args.init)  # a resume keeps the run's options not given
    toy_size = max(64, 2 ** (cfg.depth - 1))
    data = _load_dataset(
        args.data,
        args.toy,
        "the training data: --data DIR",
        seed=cfg.seed,
        toy_size=toy_size,
        partial=args.partial_data,
    )
    val = _load_dataset(args.val_data, None, "--val-data") if args.val_data else None
    from .model.data import data_summary, dataset_info

    parts = data_summary(dataset_info(data))
    if len({r["generator_version"] for r in parts if r.get("generator_version") is not None}) > 1:
        listed = (
            f"{r['root']}: version {r['generator_version']}, seed {r['seed']}, {r['count']} samples" for r in parts
        )
        print("mixing generator versions, as listed with --data: " + "; ".join(listed), file=sys.stderr)

    stop = {"flag": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = model.train(
            data,
            run,
            cfg,
            val_dataset=val,
            callback=_train_progress(),
            should_stop=lambda: stop["flag"],
            init=args.init,
        )
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # under torchrun only rank 0 reports
        sys.stdout = open(os.devnull, "w")
    return {"action": "train", "rank": rank, **summary}


def _print_train(r: dict[str, Any]) -> None:
    if r.get("rank", 0) != 0:
        return
    if r["action"] == "eval":
        a = r["angular"]
        ema = f", EMA decay {r['ema']['decay']} since step {r['ema']['since_step']}" if r.get("ema") else ""
        print(f"{r['source']} (step {r['step']}{ema}) on {r['count']} images: angular error mean {a['mean']:.2f} deg, "
              f"std {a['std']:.2f}, <10 {a['under_10']:.1f}%, <20 {a['under_20']:.1f}%, <30 {a['under_30']:.1f}%; "
              f"mask precision {r['mask_precision']:.2f}%, recall {r['mask_recall']:.2f}%",
              file=sys.stderr)  # fmt: skip
        print(f"metrics -> {r['metrics_file']}", file=sys.stderr)
        return
    if r["action"] == "export":
        m = r["metrics"]
        cmp = ""
        if m:
            cmp = (f"; mean angular error float32 {m['float32']['angular']['mean']:.3f} / "
                   f"float16 {m['float16']['angular']['mean']:.3f} deg")  # fmt: skip
        print(f"weights ({r['dtype']}, {r['bytes'] / 2**20:.1f} MiB) -> {r['dest']}{cmp}", file=sys.stderr)
        return
    state = "stopped at" if r["stopped"] else "at"
    print(f"{r['run']}: {state} step {r['step']}/{r['steps']} ({r['images_seen']} images seen), "
          f"{r['images_per_second']:.1f} img/s this session (waiting for data {r['data_seconds']:.1f} s, "
          f"computing {r['step_seconds']:.1f} s)", file=sys.stderr)  # fmt: skip
    if r["last_val"]:
        v = r["last_val"]
        raw = f" (raw generator {v['raw']['angular']['mean']:.2f})" if v.get("raw") else ""
        what = "validation of the generator's EMA" if v.get("generator") == "ema" else "validation"
        print(f"{what}: angular error mean {v['angular']['mean']:.2f}{raw} deg, "
              f"mask precision {v['mask_precision']:.2f}%, recall {v['mask_recall']:.2f}%",
              file=sys.stderr)  # fmt: skip
    if r["stopped"] or r["step"] < r["steps"]:
        print("run the same command again to resume", file=sys.stderr)


def _add_train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train the network (resumable), evaluate a checkpoint or export weights",
        description="Train the U-Net generator against the conditional critic on a synthetic data set "
        "(monohead.synth.SyntheticHeads). A run folder with a checkpoint resumes where it stopped "
        "(Ctrl-C or SIGTERM saves a checkpoint first). Runs under torchrun with DistributedDataParallel. "
        "Options not given on a resume keep the run's values.",
    )
    p.add_argument(
        "--data",
        nargs="+",
        metavar="DIR",
        help="data set folder(s) (training, several are read as one; or held-out data with --eval-only / "
        "--export-weights)",
    )
    p.add_argument(
        "--partial-data",
        action="store_true",
        help="train on the whole shards only: skip the shards not made yet (an unfinished generation; resume it "
        "later) and the damaged ones (truncated or unreadable files, a shard of another data set), each named "
        "on stderr and recorded in the run's config. Without it such a data set is refused",
    )
    p.add_argument("--out", required=True, help="run folder (checkpoints, log.jsonl, curves.png, val_predictions.png)")
    p.add_argument("--val-data", help="validation data folder (default: hold out the last --val-count items of --data)")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="fine-tune: start a new run's generator from these weights (a weights "
                   "folder such as monohead/model/weights, best.pt, a run folder); the critic starts afresh. The "
                   "architecture is taken from the weights unless given")  # fmt: skip
    g = p.add_argument_group("run definition (fixed for the life of a run)")
    g.add_argument("--width", type=int, help="U-Net width (default 32)")
    g.add_argument("--depth", type=int, help="encoder (= decoder) layers (default 8: 16 layers on 128x128)")
    g.add_argument("--dropout", type=float, help="decoder dropout (default 0.5)")
    g.add_argument("--critic-width", type=int, help="critic width (default: --width)")
    g.add_argument("--batch-size", type=int, help="global batch size (default 16; the paper used 64)")
    g.add_argument("--lr", type=float, help="RMSprop learning rate (default 1e-4)")
    g.add_argument("--lambda-l2", type=float, help="weight of the L2 term (default 500)")
    g.add_argument("--n-critic", type=int, help="critic updates per generator update (default 1)")
    g.add_argument("--seed", type=int, help="seed of the initialisation, order and augmentation (default 0)")
    g.add_argument("--val-count", type=int, help="items of --data held out for validation (default 200)")
    g = p.add_argument_group("schedule and machine (may change on resume)")
    g.add_argument("--steps", type=int, help="total steps to reach (default 1000)")
    g.add_argument(
        "--lr-decay-from",
        type=int,
        metavar="STEP",
        help="from this step the learning rate falls linearly to 0 at --steps (default: constant)",
    )
    g.add_argument("--log-every", type=int, help="steps between log lines (default 10)")
    g.add_argument("--val-every", type=int, help="steps between validations (default 500)")
    g.add_argument("--ckpt-every", type=int, help="steps between checkpoints (default 100)")
    g.add_argument("--val-max", type=int, help="validation images (default 200)")
    g.add_argument("--device", help="cpu (default), cuda or cuda:N")
    g.add_argument("--amp", choices=["auto", "bf16", "none"], help="bfloat16 autocast (default auto = bf16)")
    g.add_argument("--no-channels-last", action="store_true", help="keep the NCHW memory format")
    g.add_argument("--workers", type=int, help="DataLoader worker processes (default 0)")
    g.add_argument("--threads", type=int, help="PyTorch threads of each process (default 0: PyTorch's choice; "
                   "1 is faster when other busy processes share the cores)")  # fmt: skip
    g.add_argument("--ema-decay", type=float, metavar="D",
                   help="keep an exponential moving average of the generator's weights, decay D per step (e.g. "
                   "0.999, warmed up over the first steps); it is validated, selected for best.pt and exported. "
                   "Given on a resume it starts there (or changes the decay); 0 drops it (default: none)")  # fmt: skip
    g = p.add_argument_group("evaluation and export")
    g.add_argument(
        "--eval-only", action="store_true", help="evaluate the run's generator on --data and write --metrics"
    )
    g.add_argument(
        "--checkpoint",
        nargs="+",
        metavar="PATH",
        help="generator to evaluate or export: a run folder, checkpoint.pt, best.pt or weights (default: --out); "
        "several: their weight average (checkpoints of one training chain)",
    )
    g.add_argument("--metrics", help="metrics JSON to write with --eval-only (default RUN/eval_metrics.json)")
    g.add_argument("--max-items", type=int, default=200, help="items of --data to evaluate (default 200)")
    g.add_argument("--flip", action="store_true", help="--eval-only: average with the mirrored images' outputs")
    g.add_argument("--balanced", action="store_true",
                   help="--eval-only, --export-weights: the first --max-items heads half "
                   "female, half male, as monohead experiments chooses its test set")  # fmt: skip
    g.add_argument(
        "--export-weights",
        metavar="DIR",
        help="write the run's best generator as shipped weights (unet.pt, model_card.json)",
    )
    g.add_argument("--card", help="extra model-card fields: a JSON object or @FILE")
    g.add_argument("--raw", action="store_true",
                   help="--eval-only, --export-weights: a checkpoint's raw generator, not its EMA")  # fmt: skip
    p.add_argument("--toy", type=int, help=argparse.SUPPRESS)  # N shaded analytic heads (tests, smoke runs)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(run=_cmd_train, show=_print_train)


def _cmd_train_canonical(args: argparse.Namespace) -> dict[str, Any]:
    import signal

    run = _torch_run_folder("train-canonical", args.out)
    from .model import canonical_train as canonical

    if args.export_weights:
        try:
            card = canonical.export_canonical(run, args.export_weights)
        except FileNotFoundError as exc:
            raise CliError(str(exc)) from None
        return {"action": "export", "dest": str(args.export_weights), "best": card.get("validation_curve", [])[-1:]}
    if not args.data or not args.val_data:
        raise CliError("training needs --data DIR [DIR ...] and --val-data DIR")
    progress = _Progress(tty_every=0.5, log_every=60.0)
    stop = {"flag": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        out = canonical.train_canonical(
            [Path(d) for d in args.data],
            run,
            val_data=Path(args.val_data),
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            partial=args.partial_data,
            callback=progress.note,
            should_stop=lambda: stop["flag"],
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    return {"action": "train", **out}


def _print_train_canonical(r: dict[str, Any]) -> None:
    if r["action"] == "export":
        print(f"weights -> {r['dest']}", file=sys.stderr)
        return
    state = "stopped at" if r["stopped"] else "at"
    best = r["best"]
    print(f"{r['run']}: {state} step {r['step']}/{r['steps']}; best validation {best['error_cm']:.3f} cm at step "
          f"{best['step']}", file=sys.stderr)  # fmt: skip
    if r["stopped"] or r["step"] < r["steps"]:
        print("run the same command again to resume", file=sys.stderr)


def _add_train_canonical_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train-canonical",
        help="train the correspondence network of the complete head (resumable) or export its weights",
        description="Train monohead.model.canonical.CanonicalNet on monohead synth folders: from each crop and "
        "the shipped normal network's maps of it, the mean head's position of the skin seen at each pixel "
        "(the complete head's fit turns it into image landmarks). The first run of a folder caches its inputs "
        "and targets in RUN/cache/. Rerun the same command to resume (Ctrl-C or SIGTERM saves a checkpoint).",
    )
    p.add_argument("--data", nargs="+", metavar="DIR", help="training data folders (generator version 2 or later)")
    p.add_argument("--val-data", metavar="DIR", help="held-out validation folder")
    p.add_argument("--out", required=True, help="run folder (config.json, cache/, checkpoint.pt, best.pt, curve.tsv)")
    p.add_argument("--steps", type=int, default=6000, help="steps to reach (cosine learning rate over them; 6000)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (16)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (2e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, order and augmentation (0)")
    p.add_argument("--partial-data", action="store_true", help="read folders whose later shards are not made yet")
    p.add_argument("--export-weights", metavar="DIR", help="write the run's best.pt as shipped weights (canonical.pt)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(run=_cmd_train_canonical, show=_print_train_canonical)


def _synth_progress() -> Any:
    """``monohead synth``'s progress: a bar per sample on a terminal, a line per 5 % otherwise."""
    import time

    progress = _Progress(log_every=None, log_percent=5, label="synth ")
    t0 = time.perf_counter()
    return lambda done, total: progress(done, total, f"samples, {time.perf_counter() - t0:.0f} s")


def _cmd_synth(args: argparse.Namespace) -> dict[str, Any]:
    from .synth.dataset import generate

    if args.count is None or args.out is None:
        raise CliError("give --count N and --out DIR")
    return generate(
        args.out,
        args.count,
        seed=args.seed,
        size=args.size,
        spp=args.spp,
        shard_size=args.shard_size,
        shard=args.shard,
        scheduler=args.scheduler,
        variant=args.variant,
        head_model=args.head_model,
        sampler=args.sampler,
        preview=not args.no_preview,
        progress=None if args.json or args.quiet else _synth_progress(),
        generator_version=args.generator_version,
        projection=args.camera,
        hdri=args.hdri,
        backgrounds=args.backgrounds,
        max_yaw=args.max_yaw,
        min_yaw=args.min_yaw,
    )


def _print_synth(r: dict[str, Any]) -> None:
    per = f", {r['seconds_per_sample']:.2f} s per sample" if r["seconds_per_sample"] else ""
    print(f"{r['out']}: {r['generated']} samples made, {r['skipped']} already there ({r['shards']} shards, "
          f"{r['variant']}){per}", file=sys.stderr)  # fmt: skip
    for folder, n in (r.get("skipped_files") or {}).items():
        if n:
            print(f"warning: {n} unreadable file(s) in the --{folder} folder skipped", file=sys.stderr)
    if r["preview"]:
        print(f"preview -> {r['preview']}", file=sys.stderr)


def _cmd_synth_asset(args: argparse.Namespace) -> dict[str, Any]:
    from .synth.head_model import write_asset

    return write_asset(args.folder, args.output, n_identity=args.identities, n_expression=args.expressions)


def _print_synth_asset(r: dict[str, Any]) -> None:
    print(f"{r['path']}: {r['bytes'] / 2**20:.1f} MiB, {r['vertices']} vertices, {r['faces']} triangles, "
          f"{r['identities']} identity modes, {r['expressions']} expressions", file=sys.stderr)  # fmt: skip
    if r["missing"]:
        print(f"missing expression files: {', '.join(r['missing'])}", file=sys.stderr)
    if r["license"]:
        print(f"licence -> {r['license']}", file=sys.stderr)


def _cmd_synth_look(args: argparse.Namespace) -> dict[str, Any]:
    from ._io import atomic_write_bytes
    from .geometry import encode_png
    from .synth.preview import beside, image_grid, photo_crops, render_look

    if args.count < 1:
        raise CliError(f"--count must be at least 1; got {args.count}")
    from ._env import shared_data

    photos_dir = Path(args.photos) if args.photos else shared_data("real-photos")
    if args.photos and not photos_dir.is_dir():
        raise CliError(f"photos folder does not exist: {photos_dir}")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"output folder does not exist: {out.parent}")

    def tick(k: int) -> None:
        if not args.quiet and not args.json:
            print(f"synth-look: {k}/{args.count} renders", file=sys.stderr)

    renders = render_look(
        args.count,
        seed=args.seed,
        size=args.size,
        spp=args.spp,
        progress=tick,
        version=args.generator_version,
        max_yaw=args.max_yaw,
        min_yaw=args.min_yaw,
    )
    atomic_write_bytes(out, encode_png(image_grid(renders, cols=args.cols)))
    from .synth.generator import GENERATOR_VERSION
    from .synth.scene import DEFAULT_MAX_YAW

    version = GENERATOR_VERSION if args.generator_version is None else args.generator_version
    max_yaw = DEFAULT_MAX_YAW if args.max_yaw is None else args.max_yaw
    min_yaw = 0.0 if args.min_yaw is None else args.min_yaw
    result: dict[str, Any] = {
        "out": str(out),
        "renders": len(renders),
        "generator_version": version,
        "max_yaw": max_yaw,
        "min_yaw": min_yaw,
        "photos": 0,
        "side_by_side": None,
    }
    if args.side_by_side:
        crops = photo_crops(photos_dir, args.size) if photos_dir is not None and photos_dir.is_dir() else []
        atomic_write_bytes(Path(args.side_by_side), encode_png(beside(image_grid(renders, cols=args.cols), crops)))
        result.update(photos=len(crops), side_by_side=args.side_by_side)
    return result


def _print_synth_look(r: dict[str, Any]) -> None:
    print(f"{r['renders']} renders -> {r['out']}", file=sys.stderr)
    if r["side_by_side"]:
        print(f"side by side with {r['photos']} real photos -> {r['side_by_side']}", file=sys.stderr)


def _add_synth_parser(sub: Any) -> None:
    from .synth.camera import PROJECTIONS

    p = sub.add_parser(
        "synth-look",
        help="a sheet of synthetic renders (and, apart, beside real photos) to judge their look",
        description="Render samples 0..N-1 of a generator version (default the newest) into a grid PNG (--out). "
        "With --side-by-side, "
        "also write a second PNG with the head crops of real photos (--photos, default the shared real-photos "
        "folder when present) beside the renders, framed as monohead.reconstruct frames them; keep that one out "
        "of the repository when the photos are not yours to publish.",
    )
    p.add_argument("--out", required=True, help="PNG of the renders")
    p.add_argument("--count", type=int, default=64, help="number of renders (default 64)")
    p.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    p.add_argument("--size", type=int, default=128, help="image size (default 128)")
    p.add_argument("--spp", type=int, default=9, help="samples per pixel (default 9)")
    p.add_argument("--cols", type=int, default=8, help="renders per row (default 8)")
    p.add_argument(
        "--generator-version", type=int, choices=[2, 3], default=None, help="generator version (default the newest)"
    )
    p.add_argument(
        "--max-yaw",
        type=float,
        default=None,
        metavar="DEG",
        help="head yaw uniform in ±DEG degrees, 0 < DEG <= 100 (default 75)",
    )
    p.add_argument(
        "--min-yaw",
        type=float,
        default=None,
        metavar="DEG",
        help="smallest |yaw|, 0 <= DEG < --max-yaw (default 0): |yaw| uniform in [DEG, max]",
    )
    p.add_argument("--photos", metavar="DIR", help="real photos to show beside the renders")
    p.add_argument("--side-by-side", metavar="PNG", help="write renders and real photos side by side here")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(run=_cmd_synth_look, show=_print_synth_look)

    p = sub.add_parser(
        "synth",
        help="render a synthetic training data set (images, N, W, depth, masks)",
        description="Render synthetic heads (ICT-FaceKit identities and expressions, skin, eyes, hair, glasses, "
        "lights, backgrounds) with Mitsuba 3, with their exact normal, depth, W and mask maps, into shards "
        "with a manifest. Sample i depends only on (--seed, i): a stopped run resumes where it stopped, "
        "--shard i/n splits a run across machines, --scheduler runs it on a Dask cluster.",
    )
    p.add_argument("--count", type=int, help="number of samples")
    p.add_argument("--out", help="data set folder (created; an existing one is resumed)")
    p.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--spp", type=int, default=9, help="samples per pixel (default 9)")
    p.add_argument(
        "--sampler",
        default="multijitter",
        choices=["multijitter", "independent", "stratified", "ldsampler"],
        help="Mitsuba pixel sampler (default multijitter; sets made before this option used independent)",
    )
    p.add_argument("--shard-size", type=int, default=64, help="samples per shard (default 64)")
    p.add_argument("--shard", help="make only part i of n of the shards, e.g. 0/4")
    p.add_argument("--scheduler", help="Dask distributed scheduler address (e.g. tcp://host:8786)")
    p.add_argument(
        "--variant",
        default="auto",
        choices=["auto", "llvm_ad_rgb", "scalar_rgb", "cuda_ad_rgb"],
        help="Mitsuba variant (default auto: llvm_ad_rgb, else scalar_rgb; cuda_ad_rgb: an NVIDIA GPU)",
    )
    p.add_argument(
        "--head-model", help="head model: an asset .npz or an ICT-FaceKit FaceXModel folder (default: shipped)"
    )
    p.add_argument(
        "--generator-version",
        type=int,
        choices=[1, 2, 3],
        default=None,
        help="generator version (default: the newest, 3; 1 or 2 extends or remakes a set of that version)",
    )
    p.add_argument(
        "--camera",
        choices=PROJECTIONS,
        default=None,
        help="camera of version 2 (default perspective, random 24-135 mm equivalent)",
    )
    p.add_argument(
        "--hdri",
        metavar="DIR",
        help="more environment maps (.npy (h, 2h, 3) linear RGB or .hdr), besides the bundled ones",
    )
    p.add_argument("--backgrounds", metavar="DIR", help="background photos of your own (unreadable files skipped)")
    p.add_argument(
        "--max-yaw",
        type=float,
        default=None,
        metavar="DEG",
        help="versions 2 and 3: head yaw uniform in ±DEG degrees, 0 < DEG <= 100 (default 75, the range of sets "
        "made before this option; 90 adds profiles); recorded in the manifest, a resumed set must keep it",
    )
    p.add_argument(
        "--min-yaw",
        type=float,
        default=None,
        metavar="DEG",
        help="versions 2 and 3: smallest |yaw|, 0 <= DEG < --max-yaw (default 0): |yaw| uniform in [DEG, max], "
        "either side (--min-yaw 70 --max-yaw 90: profiles only, to mix with other sets); in the manifest",
    )
    p.add_argument("--no-preview", action="store_true", help="do not write preview.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(run=_cmd_synth, show=_print_synth)

    p = sub.add_parser(
        "synth-asset",
        help="convert an ICT-FaceKit download into monohead's head-model asset",
        description="Read the FaceXModel/ folder of ICT-FaceKit (OBJ files) and write the compact head-model "
        "asset (.npz, float16 deltas, the regions the generator uses) with the MIT licence beside it.",
    )
    p.add_argument("folder", help="the FaceXModel/ folder of https://github.com/ICT-VGL/ICT-FaceKit")
    p.add_argument("-o", "--output", default="ict_head.npz", help="asset to write (default ict_head.npz)")
    p.add_argument("--identities", type=int, help="identity modes to keep (default all)")
    p.add_argument("--expressions", type=int, help="expression blendshapes to keep (default all)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(run=_cmd_synth_asset, show=_print_synth_asset)


# --- monohead experiments -------------------------------------------------------------------


def _parse_lams(text: str) -> list[float]:
    try:
        lams = [float(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise CliError(f"--lams must be comma-separated numbers (e.g. 0,0.05,0.1); got {text!r}") from exc
    if not lams:
        raise CliError("--lams is empty")
    return lams


def _stage_progress() -> Any:
    """``monohead experiments``' progress: a bar per stage (redrawn twice a second on a terminal,
    a line every 30 s otherwise)."""
    progress = _Progress(tty_every=0.5, log_every=30.0)
    return lambda stage, done, total: progress(done, total, stage, topic=stage)


def _cmd_experiments(args: argparse.Namespace) -> dict[str, Any]:
    from . import experiments

    out = _output_folder(args.out)
    lams = _parse_lams(args.lams) if args.lams else list(experiments.DEFAULT_LAMS)
    data: Any = None
    if args.toy is not None:
        from .model import ToyHeads

        data = ToyHeads(args.toy, args.size, seed=args.seed)
    elif args.data is not None:
        if not Path(args.data).is_dir():
            raise CliError(f"--data must be a data set folder; {args.data} is not one")
        data = args.data
    if args.model is not None and args.model != "oracle" and not Path(args.model).exists():
        raise CliError(f"--model: no such file or folder: {args.model}")
    parts = ["monohead experiments", f"--out {args.out}", f"--count {args.count}", f"--size {args.size}"]
    if data is None:
        parts += [f"--seed {args.seed}", f"--spp {args.spp}"]
    elif args.toy is not None:
        parts += [f"--toy {args.toy}", f"--seed {args.seed}"]
    else:
        parts.append(f"--data {args.data}")
    if args.model is not None:
        parts.append(f"--model {args.model}")
    parts.append("--lams " + ",".join(f"{x:g}" for x in lams))
    if args.no_photos:
        parts.append("--no-photos")
    if args.no_flip:
        parts.append("--no-flip")
    try:
        return experiments.run_experiments(
            out, count=args.count, seed=args.seed, size=args.size, spp=args.spp, data=data, model=args.model,
            lams=lams, photos=not args.no_photos, workers=args.workers, command=" ".join(parts),
            callback=None if args.json else _stage_progress(), flip=not args.no_flip,
        )  # fmt: skip
    except (FileNotFoundError, ImportError) as exc:
        raise CliError(str(exc)) from exc


def _print_experiments(r: dict[str, Any]) -> None:
    t1 = r["table1"]["all"]
    s = r["sweep"]
    print(f"test set: {r['test_set']['count']} heads; mask precision {t1['mask_precision']:.2f}%, recall "
          f"{t1['mask_recall']:.2f}%; angular error mean {t1['mean']:.2f} deg, std {t1['std']:.2f}, "
          f"<10 {t1['under_10']:.1f}%, <20 {t1['under_20']:.1f}%, <30 {t1['under_30']:.1f}%",
          file=sys.stderr)  # fmt: skip
    print(f"best lambda {s['best_lam']:g} (sigma {s['best_sigma']:.3f} px; "
          f"true maps: {r['oracle_sweep']['best_lam']:g})", file=sys.stderr)  # fmt: skip
    for row in r["table2"]["rows"]:
        if row["block"] == "predicted":
            nan = float("nan")
            print(f"  {row['label']}: mean {row.get('mean', nan):.3f} px, median {row.get('median', nan):.3f}, "
                  f"sigma {row.get('sigma', nan):.3f}", file=sys.stderr)  # fmt: skip
    cached = [k for k, v in r["stages"].items() if v["cached"]]
    from_cache = f"; from cache: {', '.join(cached)}" if cached else ""
    print(f"report -> {r['report']} ({r['seconds']:.1f} s{from_cache})", file=sys.stderr)


def _add_experiments_parser(sub: Any) -> None:
    from .experiments import DEFAULT_COUNT, DEFAULT_SEED, DEFAULT_SIZE

    p = sub.add_parser(
        "experiments",
        help="the paper's experiments (Table 1, lambda sweep, Table 2, photos) as a Markdown report",
        description="Run the paper's experiments on a synthetic test set (half female-looking, half "
        "male-looking heads from a seed disjoint from the training data) and write DIR/report.md with "
        "its figures: Table 1 (masks, normals), the lambda sweep of section 4.2 (Fig. 8, Fig. 6), a "
        "Table 2 analogue (mesh errors after ICP, WLS against least squares, DCT Poisson and "
        "Frankot-Chellappa) and the bundled real photos. Rerunning skips the finished stages (cached "
        "in DIR/cache).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if its parent exists)")
    p.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"test heads (default {DEFAULT_COUNT})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the test set (default {DEFAULT_SEED})")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"image side in pixels (default {DEFAULT_SIZE})")
    p.add_argument("--spp", type=int, default=16, help="samples per pixel of the rendered test images (default 16)")
    p.add_argument(
        "--data", metavar="DIR", help="use this synthetic data set (monohead synth) instead of rendering one"
    )
    p.add_argument("--model", metavar="PATH", help="weights file, checkpoint or run folder instead of the shipped "
                   "weights; 'oracle' uses the true maps (checks the evaluation, no photos)")  # fmt: skip
    p.add_argument("--lams", help="comma-separated lambda values of the sweep (default 0,0.025,...,0.3)")
    p.add_argument("--no-photos", action="store_true", help="skip the real photos")
    p.add_argument(
        "--no-flip", action="store_true", help="one network pass per image (default: mirror-averaged, as reconstruct)"
    )
    p.add_argument("--workers", type=int, help="processes for the ICP of Table 2 (default: up to 8)")
    p.add_argument("--toy", type=int, help=argparse.SUPPRESS)  # N analytic toy heads (tests, smoke runs)
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.set_defaults(run=_cmd_experiments, show=_print_experiments)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__, integration, photo

    ap = argparse.ArgumentParser(prog="monohead", description="Monocular 3D head reconstruction toolkit.")
    ap.add_argument("--version", action="version", version=f"monohead {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="<command>")
    sub.required = True

    p = sub.add_parser(
        "reconstruct",
        help="photo(s) -> head mesh(es) and preview figures",
        description="Reconstruct the head in each photo: face detection, framing, the network's normal "
        "and W maps, weighted integration, and a mesh coloured from the photo. Writes NAME.ply (or .obj) "
        "and NAME_preview.png per face into the output folder. Mesh coordinates: pixels of the 128 x 128 crop "
        "(default) or of the photo (--units photo); x right, y up, z toward the viewer.",
    )
    p.add_argument("photos", nargs="*", help="photos or folders of photos")
    p.add_argument("--example", action="store_true", help="reconstruct the astronaut photo bundled with scikit-image")
    p.add_argument("-o", "--output", default=".", help="output folder (created if its parent exists; default .)")
    p.add_argument(
        "--format", choices=photo.MESH_FORMATS, default="ply", help="mesh format (default ply; glb: binary glTF)"
    )
    p.add_argument(
        "--units",
        choices=photo.UNITS,
        default="crop",
        help="mesh coordinates: pixels of the 128 x 128 crop (default), or of the photo (x = column, y = -row, "
        "depth scaled alike), so that the mesh overlays the photo",
    )
    p.add_argument(
        "--detector",
        choices=photo.DETECTORS,
        default="combined",
        help="face detector (default combined: frontal and profile cascades plus the network's coarse pass)",
    )
    p.add_argument("--lam", type=float, default=0.1, help="lambda in w = 1/(1 + lambda W) (default 0.1)")
    p.add_argument("--no-detect", action="store_true", help="the photos are already cropped to the head")
    p.add_argument("--all-faces", action="store_true", help="reconstruct every detected face, not only the largest")
    p.add_argument(
        "--no-flip",
        action="store_true",
        help="one network pass (default: average with the mirrored crop's, lower error at twice the network time)",
    )
    p.add_argument(
        "--no-reframe",
        action="store_true",
        help="keep the first crop (default: a head turned 35 degrees or more, or whose first crop is too tight, "
        "is framed again from a first network pass and the network runs on the new crop)",
    )
    p.add_argument(
        "--full-head",
        action="store_true",
        help="also write NAME_full.FORMAT: the complete, watertight head (the ICT-FaceKit head model fitted behind "
        "the surface, its visible region on it; monohead.fullhead), and show it from the front, side and back in "
        "the preview",
    )
    p.add_argument(
        "--focal-mm",
        type=float,
        default=None,
        help="with --full-head: the photos' focal length, 35 mm equivalent (a phone's EXIF FocalLengthIn35mmFilm, "
        "e.g. 26); the complete head is then fitted with that perspective camera (default: orthographically)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(run=_cmd_reconstruct, show=_print_reconstruct)

    p = sub.add_parser(
        "integrate",
        help="integrate a normal map into a depth map",
        description="Integrate a normal map (.npy of (H, W, 3); .npz with 'normals' and optional 'W', "
        "'mask' and 'K'; or a folder in BiNI's layout: normal_map.png (8/16 bit), mask.png, optional K.txt in "
        "BiNI's convention) by weighted least squares; writes the depth as .npy (NaN outside the mask). "
        "With intrinsics the depth is the z-depth along the optical axis with geometric mean 1.",
    )
    p.add_argument("input", nargs="?", help="normal map (.npy or .npz) or a BiNI folder")
    p.add_argument("--K", help="perspective: 3x3 intrinsics in OpenCV form, a text file (overrides the input's)")
    p.add_argument("--orthographic", action="store_true", help="ignore any intrinsics of the input")
    p.add_argument(
        "--sharpness",
        type=float,
        default=None,
        help="discontinuity-preserving integration (robust reweighting; 2 is BiNI's default k); default: smooth WLS",
    )
    p.add_argument(
        "--prior", help="depth prior (.npy, NaN where unknown; a BiNI folder's prior_depth.npy is read by default)"
    )
    p.add_argument("--prior-weight", type=float, default=0.1, help="weight of each prior pixel (default 0.1)")
    p.add_argument("--example", action="store_true", help="integrate the bundled analytic head + neck example")
    p.add_argument("-o", "--output", default="depth.npy", help="depth map to write (.npy; default depth.npy)")
    p.add_argument("--mesh", help="also write the depth as a mesh (.ply or .obj)")
    p.add_argument("--lam", type=float, default=0.1, help="lambda in w = 1/(1 + lambda W) (default 0.1)")
    p.add_argument("--method", default="mg", choices=integration.METHODS)
    p.add_argument("--tol", type=float, default=1e-6, help="relative residual to reach (default 1e-6)")
    p.add_argument("--no-weights", action="store_true", help="ignore W (unit weights)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(run=_cmd_integrate, show=_print_integrate)
    _add_train_parser(sub)
    _add_train_canonical_parser(sub)
    _add_synth_parser(sub)
    _add_experiments_parser(sub)
    return ap


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (Python and C code alike: file descriptor 1) to stderr
    for the duration, so that ``--json`` output stays alone on stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (embedded interpreters): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):  # Python writers that do not use fd 1
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _error_text(exc: BaseException) -> str:
    """One line that names the file (if any) and the problem."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _CREATED_FOLDERS.clear()
    try:
        with _stdout_to_stderr() if args.json else contextlib.nullcontext():
            result = args.run(args)
    except (CliError, ValueError, TypeError, OSError) as exc:
        _remove_created_folders()
        print(f"monohead {args.command}: error: {_error_text(exc)}", file=sys.stderr)
        return 2
    except BaseException:
        _remove_created_folders()
        raise
    if result.get("rank", 0) != 0:  # under torchrun only rank 0 reports
        return 0
    try:
        if args.json:
            print(json.dumps(result))
        else:
            args.show(result)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`monohead ... --json | head`): the work is done and its files
        # are written; say nothing more (Python would print a traceback at exit otherwise).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if result.get("failures") else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
