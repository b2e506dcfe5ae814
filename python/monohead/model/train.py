"""Resumable, seeded training of the generator against the conditional critic (paper §3.2, §4.1).

:func:`train` runs the steps ``start .. config.steps - 1`` of a run folder and can be stopped
(``should_stop``, a signal in the CLI, or a kill) and resumed any number of times:

- ``RUN/checkpoint.pt``: the whole state after the last saved step (config, step, both
  networks, both RMSprop states, best metric, the generator's EMA if the run keeps one),
  written atomically every ``ckpt_every`` steps and when the run stops. A run folder with a
  checkpoint resumes from it.
- ``RUN/best.pt``: the generator with the lowest validation mean angular error so far (the
  EMA's, where the run keeps one: ``ema_decay``, :mod:`monohead.model.ema`).
- ``RUN/log.jsonl``: one JSON object a line: ``{"kind": "train", ...}`` (mean losses over
  ``log_every`` steps, images/s, seconds waiting for data vs computing), ``{"kind": "val",
  ...}`` (Table 1 metrics of the generator selected by, ``"generator": "raw"`` or ``"ema"``;
  with an EMA also the raw generator's under ``"raw"``) and ``{"kind": "ema", ...}`` (a resume
  that started, changed or dropped the EMA). On resume the lines past the checkpoint's step are
  dropped.
- ``RUN/curves.png`` (losses and the learning curve: validation error against images seen) and
  ``RUN/val_predictions.png`` (the paper's Fig. 5), rewritten at each validation.
- ``RUN/config.json``: the run's options, its data (each folder's root, seed, generator version,
  count and skipped shards: :func:`monohead.model.data.data_summary`), the data's history (a
  new entry, also logged as ``{"kind": "data", ...}``, whenever a resume is given other data,
  e.g. a data set that grew or a folder of another generator version listed with ``--data``)
  and the weights the run started from (``init``).

Fine-tuning: ``init=`` (CLI ``--init``) starts a new run's generator from a generator file
(shipped weights, a ``best.pt``, a run folder); the critic and both optimizers start afresh.
The architecture must match; the file's SHA-256 is recorded and a resume checks it.

Data errors: an item that cannot be read (a damaged shard, a corrupt sample: see
:class:`monohead.synth.SyntheticHeads`) stops the run with that error, after saving a
checkpoint of the last finished step; nothing of the bad batch was trained on.

Every batch is a pure function of ``(seed, step)`` (see :mod:`monohead.model.data`) and the
dropout generator is reseeded from ``(seed, step, rank)`` at every step, so a resumed run
continues exactly as an uninterrupted one would. Under ``torchrun`` (``WORLD_SIZE > 1``) the
networks are wrapped in DistributedDataParallel (gloo on CPU, NCCL on CUDA), each process
takes ``batch_size / world`` samples of every global batch, and rank 0 alone validates and writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import io
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import _figures
from .._io import atomic_write_bytes, atomic_write_text, file_sha256
from .critic import Critic
from .data import Augment, StepBatches, StepDataset, collate, data_summary, dataset_info, sample_seed
from .ema import GeneratorEMA, check_decay
from .files import BEST, CHECKPOINT, CHECKPOINT_FORMAT, GENERATOR_FORMAT, load_checkpoint, load_generator
from .losses import LAMBDA_L2, critic_loss, generator_loss
from .predict import evaluate_model, prediction_figure
from .unet import W_SCALE, UNet

__all__ = ["CHECKPOINT", "TrainConfig", "load_checkpoint", "plot_curves", "read_log", "run_config", "train"]

log = logging.getLogger(__name__)

LOG = "log.jsonl"


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoint).

    Architecture and objective (fixed for the life of a run): ``width``, ``depth``,
    ``dropout``, ``critic_width`` (default: ``width``), ``w_scale``, ``batch_size`` (global,
    over all processes), ``lr`` (RMSprop), ``lambda_l2``, ``n_critic`` (critic updates per
    generator update, on the same batch), ``seed``, ``val_count`` and the augmentation
    (``blur_p``, ``blur_sigma`` pixels, ``noise_p``, ``noise_std`` in [0, 1] image units).

    Schedule and machine (may change when resuming): ``steps`` (the total to reach),
    ``lr_decay_from`` (``None``: constant ``lr``; a step ``s``: from step ``s`` the learning
    rate of both optimizers falls linearly to 0 at ``steps``, as in pix2pix; see
    :func:`learning_rate`),
    ``log_every``, ``val_every``, ``ckpt_every`` (steps), ``val_max`` (validation images),
    ``figure_count``, ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``), ``amp``
    (``"bf16"``: bfloat16 autocast, ``"none"``, ``"auto"``: bf16), ``channels_last`` (memory
    format; with bf16 about 1.3x faster on a CPU),
    ``ema_decay`` (``None``: keep what the run has, none for a new run; ``D`` in (0, 1): keep an
    exponential moving average of the generator's weights with decay ``D`` per step, see
    :mod:`monohead.model.ema`, which is then validated, selected for ``best.pt`` and exported;
    given on a resume of a run without one, the EMA starts there from the current generator;
    ``0``: drop the run's EMA),
    ``workers`` (DataLoader worker processes; 0 loads in the training process), ``threads``
    (intra-op threads of this process; 0 keeps PyTorch's default. On a machine whose cores are
    shared with other busy processes, 1 thread can be several times faster than 2, because
    every parallel region waits for its slowest thread).
    """

    width: int = 32
    depth: int = 8
    dropout: float = 0.5
    critic_width: int | None = None
    w_scale: float = W_SCALE
    batch_size: int = 16
    lr: float = 1e-4
    lambda_l2: float = LAMBDA_L2
    n_critic: int = 1
    seed: int = 0
    val_count: int = 200
    blur_p: float = 0.5
    blur_sigma: float = 1.5
    noise_p: float = 0.5
    noise_std: float = 0.05
    steps: int = 1000
    lr_decay_from: int | None = None
    log_every: int = 10
    val_every: int = 500
    ckpt_every: int = 100
    val_max: int = 200
    figure_count: int = 6
    device: str = "cpu"
    amp: str = "auto"
    channels_last: bool = True
    ema_decay: float | None = None
    workers: int = 0
    threads: int = 0

    FIXED = (
        "width", "depth", "dropout", "critic_width", "w_scale", "batch_size", "lr", "lambda_l2",
        "n_critic", "seed", "val_count", "blur_p", "blur_sigma", "noise_p", "noise_std",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.critic_width is None:
            self.critic_width = self.width
        for name in (
            "width",
            "depth",
            "critic_width",
            "batch_size",
            "n_critic",
            "log_every",
            "val_every",
            "ckpt_every",
            "val_max",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
        for name in ("steps", "val_count", "figure_count", "workers", "seed", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {v!r}")
        if self.lr_decay_from is not None:
            v = self.lr_decay_from
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"lr_decay_from must be None or an integer >= 0; got {v!r}")
        if self.ema_decay is not None and self.ema_decay != 0:
            try:
                check_decay(self.ema_decay)
            except ValueError:
                raise ValueError(
                    f"ema_decay must be None, 0 (no EMA) or a number in (0, 1), e.g. 0.999; got {self.ema_decay!r}"
                ) from None
        if self.depth < 2:
            raise ValueError(f"depth must be >= 2; got {self.depth}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0; got {self.lr}")
        if not (self.lambda_l2 >= 0 and math.isfinite(self.lambda_l2)):
            raise ValueError(f"lambda_l2 must be a finite number >= 0; got {self.lambda_l2}")
        if not self.w_scale > 0:
            raise ValueError(f"w_scale must be > 0; got {self.w_scale}")
        if self.amp not in ("auto", "bf16", "none"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'none'; got {self.amp!r}")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {self.device!r}")
        self.augment()  # validates the augmentation fields

    def augment(self) -> Augment:
        """The :class:`Augment` of this run."""
        return Augment(self.blur_p, self.blur_sigma, self.noise_p, self.noise_std)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s): {unknown}")
        return cls(**d)


def run_config(
    run_dir: str | os.PathLike, options: dict[str, Any] | None = None, init: str | os.PathLike | None = None
) -> TrainConfig:
    """The :class:`TrainConfig` of a run: the ``options`` given over what the run already has.

    - ``run_dir`` holds a checkpoint (a resume): the options over the run's saved configuration,
      so that an option not given keeps the run's value;
    - else, with ``init`` (fine-tuning a new run): the options over the architecture of the
      ``init`` generator (``width``, ``depth``, ``dropout``, ``w_scale``);
    - else: the options over the defaults.

    Args:
        run_dir: the run folder (it need not exist).
        options: :class:`TrainConfig` fields (``None`` values count as not given).
        init: the generator a new run starts from (what :func:`monohead.model.load_generator` reads).

    Raises:
        FileNotFoundError: ``init`` names no weights, checkpoint or run.
        ValueError: an unknown option or an invalid value.
    """
    given = {k: v for k, v in (options or {}).items() if v is not None}
    ckpt = Path(run_dir) / CHECKPOINT
    base: dict[str, Any] = {}
    if ckpt.exists():
        base = dict(load_checkpoint(ckpt).get("config", {}))
    elif init is not None:
        if not Path(init).exists():
            raise FileNotFoundError(f"init: no weights, checkpoint or run at {init}")
        src = load_generator(init)
        base = {**{k: src.config[k] for k in ("width", "depth", "dropout")}, "w_scale": float(src.w_scale)}
    return TrainConfig.from_dict({**base, **given})


def _worker_ignores_stop_signals(worker_id: int) -> None:
    """DataLoader worker init: leave SIGINT and SIGTERM to the training process.

    Ctrl-C in a terminal (or ``kill -- -PGID``) signals the whole process group; a worker that
    died of it would make the training process fail without its last checkpoint, instead of
    stopping cleanly. The training process shuts its workers down when it stops; a worker
    whose parent is gone exits by itself (PyTorch's watchdog).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The RMSprop learning rate of training step ``step`` (0-based: the update that makes step
    ``step + 1``): ``cfg.lr``, times ``(steps - step) / (steps - lr_decay_from)`` from
    ``lr_decay_from`` on (linear decay to 0 at ``steps``)."""
    start = cfg.lr_decay_from
    if start is None or step < start or cfg.steps <= start:
        return cfg.lr
    return cfg.lr * max(0.0, (cfg.steps - step) / (cfg.steps - start))


def _new_models(cfg: TrainConfig) -> tuple[UNet, Critic]:
    torch.manual_seed(cfg.seed)
    G = UNet(width=cfg.width, depth=cfg.depth, dropout=cfg.dropout)
    D = Critic(width=cfg.critic_width)
    G.w_scale = cfg.w_scale
    return G, D


def _to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``RUN/log.jsonl`` (empty list if there is none)."""
    p = Path(run_dir) / LOG
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _truncate_log(run_dir: Path, step: int) -> None:
    records = [r for r in read_log(run_dir) if r.get("step", 0) <= step]
    atomic_write_text(run_dir / LOG, "".join(json.dumps(r) + "\n" for r in records))


def jsonable(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def _append_log(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(jsonable(record)) + "\n")


def plot_curves(records: list[dict[str, Any]]) -> bytes:
    """PNG bytes: the L2 loss, the critic's Wasserstein estimate, the validation angular error and
    the mask precision/recall, each against the number of training images seen.

    The validation panels show the generator each record was selected by (the EMA where the run
    keeps one, ``"generator": "ema"``); the raw generator's mean error is drawn thin beside it."""
    tr = [r for r in records if r["kind"] == "train"]
    va = [r for r in records if r["kind"] == "val"]
    fig = _figures.new_figure(10, 7, dpi=90)
    axes = fig.subplots(2, 2)
    x = [r["images_seen"] for r in tr]
    ax = axes[0, 0]
    ax.plot(x, [r["loss_l2"] for r in tr], lw=1)
    ax.set_title("training L2 (per pixel, 4 channels)")
    ax = axes[0, 1]
    ax.plot(x, [r["wasserstein"] for r in tr], lw=1, label="critic: E[D(y|x)] - E[D(y~|x)]")
    ax.plot(x, [r["loss_adv"] for r in tr], lw=1, label="generator: -E[D(y~|x)]")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("adversarial terms")
    va = [r for r in va if r["angular"]["mean"] is not None]  # an untrained model predicts no mask
    xv = [r["images_seen"] for r in va]
    ax = axes[1, 0]
    ax.plot(xv, [r["angular"]["mean"] for r in va], "o-", label="mean")
    ax.plot(xv, [r["angular"]["median"] for r in va], "s-", label="median")
    raw = [r for r in va if r.get("raw") and r["raw"]["angular"]["mean"] is not None]
    if raw:
        starts = sorted({r["ema"]["since_step"] for r in raw})
        since = ", ".join(map(str, starts))
        label = f"raw generator's mean (the others: its EMA since step {since})"
        ax.plot([r["images_seen"] for r in raw], [r["raw"]["angular"]["mean"] for r in raw], "x:", lw=1, label=label)
    ax.axhline(10.01, color="gray", ls="--", lw=1, label="paper (mean 10.01°)")
    ax.set_title("validation angular error (degrees)")
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[1, 1]
    ax.plot(xv, [r["mask_precision"] for r in va], "o-", label="precision")
    ax.plot(xv, [r["mask_recall"] for r in va], "s-", label="recall")
    ax.set_title("validation mask (%)")
    ax.legend(fontsize=8, loc="upper right")
    for a in axes.flat:
        a.set_xlabel("training images seen")
        a.grid(alpha=0.3)
    for a in axes[1]:
        # log x only over a decade or more (below that matplotlib labels the minor ticks, which overlap)
        if len(xv) > 1 and min(xv) > 0 and max(xv) >= 10 * min(xv):
            a.set_xscale("log")
    if x and min(r["loss_l2"] for r in tr) > 0:
        axes[0, 0].set_yscale("log")
    fig.tight_layout()
    return _figures.png_bytes(fig)


class _Dist:
    """Process-group bookkeeping: rank, world size, and whether we created the group."""

    def __init__(self, device: torch.device) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.owned = False
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.owned = True
        self.on = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    def barrier(self) -> None:
        if self.on:
            self.dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        if not self.on:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def close(self) -> None:
        if self.owned:
            self.dist.destroy_process_group()


def _resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {cfg.device!r} asked for, but PyTorch sees no CUDA device")
        if cfg.device == "cuda" and "LOCAL_RANK" in os.environ:
            return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(cfg.device)


def _check_resume(saved: dict[str, Any], cfg: TrainConfig) -> None:
    diff = [
        f"{k}: run has {saved.get(k)!r}, asked {getattr(cfg, k)!r}"
        for k in TrainConfig.FIXED
        if saved.get(k) != getattr(cfg, k)
    ]
    if diff:
        raise ValueError("cannot resume with a different run definition (" + "; ".join(diff) + ")")


def _init_file(init: str | os.PathLike) -> str:
    try:
        return load_generator(init).info["source"]
    except FileNotFoundError as exc:
        raise ValueError(f"init: {exc}") from exc


def _write_config(
    run: Path,
    cfg: TrainConfig,
    data_info: dict[str, Any],
    history: list[dict[str, Any]],
    init_info: dict[str, Any] | None,
    ema_info: dict[str, Any] | None,
) -> None:
    record = {
        "config": cfg.to_dict(),
        "data": data_info,
        "data_parts": history[-1]["parts"],
        "data_history": history,
        "init": init_info,
        "ema": ema_info,
    }
    atomic_write_text(run / "config.json", json.dumps(jsonable(record), indent=2))


def _split(n: int, cfg: TrainConfig, has_val: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out indices: the last ``val_count`` items are held out unless a
    validation set is given."""
    if has_val or cfg.val_count == 0:
        return np.arange(n), np.arange(0)
    if n - cfg.val_count < cfg.batch_size:
        raise ValueError(
            f"the data set has {n} items: too few to hold out val_count={cfg.val_count} and keep one batch "
            f"of {cfg.batch_size}; pass a validation set or a smaller val_count"
        )
    return np.arange(n - cfg.val_count), np.arange(n - cfg.val_count, n)


def _load_init(init: str | os.PathLike, G: UNet, cfg: TrainConfig) -> dict[str, Any]:
    """Copy the generator of ``init`` into ``G`` (same architecture and W encoding); returns
    what the run records of it."""
    try:
        src = load_generator(init)
    except FileNotFoundError as exc:
        raise ValueError(f"init: {exc}") from exc
    if src.config != G.config:
        raise ValueError(
            f"init: {init} is a generator of {src.config}; the run's is {G.config} (give matching --width, "
            "--depth, --dropout, or leave them out to take the init's)"
        )
    if not math.isclose(float(src.w_scale), float(cfg.w_scale)):
        raise ValueError(f"init: {init} encodes W with w_scale {src.w_scale}; the run's is {cfg.w_scale}")
    G.load_state_dict(src.state_dict())
    path = Path(src.info["source"])
    return {
        "source": str(path.resolve()),
        "sha256": file_sha256(path),
        "kind": src.info.get("kind"),
        "step": src.info.get("step"),
        "images_seen": src.info.get("images_seen"),
        "ema": src.info.get("ema"),
    }


def _ema_info(cfg: TrainConfig, saved: dict[str, Any] | None, step: int) -> dict[str, Any] | None:
    """The EMA a session keeps (``{"decay", "since_step"}``, or ``None``): the run's, with the
    decay of ``cfg``; one starting at ``step`` if the run has none; none if ``cfg`` has none."""
    if not cfg.ema_decay:
        return None
    since = step if saved is None else int(saved["since_step"])
    return {"decay": float(cfg.ema_decay), "since_step": since}


def _logged_ema(run_dir: Path) -> dict[str, Any] | None:
    """The EMA the run's log says it keeps (its last ``"ema"`` record), or ``None``."""
    records = [r for r in read_log(run_dir) if r.get("kind") == "ema"]
    if not records or records[-1]["decay"] is None:
        return None
    return {"decay": records[-1]["decay"], "since_step": records[-1]["since_step"]}


def _log_ema(run_dir: Path, step: int, images_seen: int, ema_info: dict[str, Any] | None) -> None:
    info = ema_info or {"decay": None, "since_step": None}
    _append_log(run_dir, {"kind": "ema", "step": step, "images_seen": images_seen, **info})


def _drop_log_records(run_dir: Path, kind: str, step: int) -> None:
    records = read_log(run_dir)
    kept = [r for r in records if not (r.get("kind") == kind and r.get("step") == step)]
    if len(kept) != len(records):
        atomic_write_text(run_dir / LOG, "".join(json.dumps(r) + "\n" for r in kept))


def _same_parts(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    keys = ("root", "seed", "generator_version", "count")
    return [tuple(r.get(k) for k in keys) for r in a] == [tuple(r.get(k) for k in keys) for r in b]


def train(
    dataset: Any,
    run_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    val_dataset: Any = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    init: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train (or resume training) the generator and the critic up to ``config.steps`` steps.

    Args:
        dataset: indexable data set of item dicts (see :mod:`monohead.model.data`), images
            ``(S, S, 3)`` with ``S`` divisible by ``2 ** (depth - 1)``.
        run_dir: the run folder (created if missing). If it holds a checkpoint the run resumes
            from it; the fields of ``config`` that define the run must then match.
        config: the run's options (default :class:`TrainConfig`).
        val_dataset: held-out items for validation; default: the last ``config.val_count``
            items of ``dataset``, which are then not trained on.
        callback: called on rank 0 with event dicts: ``{"event": "start" | "step" | "val" |
            "checkpoint" | "done", "step": ..., ...}``.
        should_stop: polled after every step; when it returns true (on any process) the run
            saves a checkpoint and returns with ``"stopped": True``.
        init: fine-tune: start a new run's generator from this generator file or folder
            (what :func:`monohead.model.load_generator` reads, e.g. the shipped weights
            folder). On a resume it must be the same file as the run's (or ``None``).

    Returns:
        A summary dict: ``step``, ``images_seen``, ``stopped``, ``wall_seconds`` (this call),
        ``images_per_second``, ``data_seconds`` and ``step_seconds`` (time waiting for
        batches vs computing, this call), ``last_val`` (metrics or None), ``best``.
    """
    cfg = config or TrainConfig()
    run = Path(run_dir)
    device = _resolve_device(cfg)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist = _Dist(device)
    try:
        return _train(dataset, run, cfg, device, dist, val_dataset, callback, should_stop, init)
    finally:
        dist.close()
        torch.set_num_threads(threads)


def _train(
    dataset: Any,
    run: Path,
    cfg: TrainConfig,
    device: torch.device,
    dist: _Dist,
    val_dataset: Any,
    callback: Callable[[dict[str, Any]], None] | None,
    should_stop: Callable[[], bool] | None,
    init: str | os.PathLike | None = None,
) -> dict[str, Any]:
    t_call = time.perf_counter()
    main = dist.rank == 0
    emit = callback if (callback is not None and main) else (lambda e: None)
    if cfg.batch_size % dist.world:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by the number of processes ({dist.world})")

    item0 = dataset[0]
    side = np.asarray(item0["image"]).shape[:2]
    mult = 2 ** (cfg.depth - 1)
    if side[0] % mult or side[1] % mult or side[0] < 8 or side[1] < 8:
        raise ValueError(
            f"images of {side} pixels do not fit depth={cfg.depth}: sides must be multiples of {mult} (and >= 8)"
        )
    train_idx, val_idx = _split(len(dataset), cfg, val_dataset is not None)
    val_src = val_dataset if val_dataset is not None else dataset
    val_items = (np.arange(len(val_dataset)) if val_dataset is not None else val_idx)[: cfg.val_max]
    G, D = _new_models(cfg)
    ckpt_path = run / CHECKPOINT
    init_info: dict[str, Any] | None = None
    if init is not None and not ckpt_path.exists():  # fine-tuning a new run: checked before the folder is made
        init_info = _load_init(init, G, cfg)
    if main:  # after the checks: a refused call leaves no folder behind
        run.mkdir(parents=True, exist_ok=True)
    dist.barrier()

    G.to(device)
    D.to(device)
    if cfg.channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    opt_g = torch.optim.RMSprop(G.parameters(), lr=cfg.lr)
    opt_d = torch.optim.RMSprop(D.parameters(), lr=cfg.lr)
    step, images_seen, wall_before = 0, 0, 0.0
    best: dict[str, Any] | None = None
    data_info = dataset_info(dataset)
    parts = data_summary(data_info)
    ck: dict[str, Any] = {}
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        if ck.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{ckpt_path} is not a monohead training checkpoint")
        _check_resume(ck["config"], cfg)
        init_info = ck.get("init")
        if init is not None:
            sha = file_sha256(Path(_init_file(init)))
            if init_info is None or init_info.get("sha256") != sha:
                was = f"from {init_info['source']}" if init_info else "from scratch"
                raise ValueError(
                    f"init: the run in {run} was started {was}; resume it without --init or with the same weights"
                )
        G.load_state_dict(ck["generator"])
        D.load_state_dict(ck["critic"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        step, images_seen, wall_before, best = ck["step"], ck["images_seen"], ck["wall_seconds"], ck["best"]
        history = list(ck.get("data_history") or [{"step": 0, "parts": data_summary(ck.get("data"))}])
        if main:
            _truncate_log(run, step)
        log.info("resuming %s at step %d", run, step)
        ema_saved = ck.get("ema")
        if cfg.ema_decay is None and ema_saved is not None:  # not given: the run's EMA goes on
            cfg = dataclasses.replace(cfg, ema_decay=ema_saved["decay"])
        ema_info = _ema_info(cfg, ema_saved, step)
        if main:
            # the log's "ema" records are the EMA's history: one where it started, changed or stopped
            _drop_log_records(run, "ema", step)  # a session that began here may have left one
            before = _logged_ema(run)
            if ema_info != before:
                log.info("EMA of the generator at step %d: %s", step, ema_info)
                _log_ema(run, step, images_seen, ema_info)
                _write_config(run, cfg, data_info, history, init_info, ema_info)
                emit({"event": "ema", "step": step, "before": before and before["decay"], "ema": ema_info})
        if not _same_parts(history[-1]["parts"], parts):
            if history[-1]["step"] == step:  # changed again before any step was made on it
                history.pop()
            before = history[-1]["parts"] if history else []
            history.append({"step": step, "parts": parts})
            if main:
                _append_log(run, {"kind": "data", "step": step, "images_seen": images_seen, "parts": parts})
                _write_config(run, cfg, data_info, history, init_info, ema_info)
            emit({"event": "data", "step": step, "before": before, "parts": parts})
    else:
        history = [{"step": 0, "parts": parts}]
        ema_info = _ema_info(cfg, None, 0)
        if main:
            _write_config(run, cfg, data_info, history, init_info, ema_info)
            if ema_info is not None:
                _drop_log_records(run, "ema", 0)
                _log_ema(run, 0, 0, ema_info)
    # Rank 0 alone keeps the EMA: it alone validates and writes, and DDP keeps the generators of
    # all ranks equal. It averages the plain module, never the DDP wrapper.
    ema: GeneratorEMA | None = None
    if main and ema_info is not None:
        ema = GeneratorEMA(G, ema_info["decay"], since_step=ema_info["since_step"])
        if ck.get("ema") is not None:
            ema.load(ck["ema"])

    Gm, Dm = G, D  # the plain modules (for state dicts and the generator step's critic pass)
    if dist.on:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        G = DDP(G, device_ids=ids)
        D = DDP(D, device_ids=ids)

    amp = cfg.amp != "none"
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    )
    aug = cfg.augment()

    def save(path: Path, *, full: bool, metrics: dict[str, Any] | None = None) -> None:
        if full:
            obj = {
                "format": CHECKPOINT_FORMAT,
                "config": cfg.to_dict(),
                "step": step,
                "images_seen": images_seen,
                "wall_seconds": wall_before + (time.perf_counter() - t_call),
                "best": best,
                "generator": Gm.state_dict(),
                "critic": Dm.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "data": data_info,
                "data_history": history,
                "init": init_info,
                "ema": None if ema is None else ema.state(),
            }
        else:
            obj = {
                "format": GENERATOR_FORMAT,
                "model": Gm.config,
                "w_scale": cfg.w_scale,
                "state_dict": (Gm if ema is None else ema.module).state_dict(),
                "ema": None if ema is None else ema.info(),
                "step": step,
                "images_seen": images_seen,
                "wall_seconds": wall_before + (time.perf_counter() - t_call),
                "metrics": metrics,
                "train_config": cfg.to_dict(),
                "data": data_info,
                "data_history": history,
                "init": init_info,
            }
        atomic_write_bytes(path, _to_bytes(obj))

    last_val: dict[str, Any] | None = None

    def validate() -> None:
        nonlocal best, last_val
        if not len(val_items):
            return
        t0 = time.perf_counter()
        # the EMA when the run keeps one: its figures are the record's, selected and drawn
        metrics, kept = evaluate_model(
            Gm if ema is None else ema.module,
            val_src,
            indices=val_items,
            keep=cfg.figure_count,
            channels_last=cfg.channels_last,
        )
        rec = {"kind": "val", "step": step, "images_seen": images_seen, "generator": "raw" if ema is None else "ema"}
        rec.update(metrics)
        if ema is not None:
            rec["ema"] = ema.info()
            rec["raw"], _ = evaluate_model(Gm, val_src, indices=val_items, channels_last=cfg.channels_last)
        rec["seconds"] = time.perf_counter() - t0
        _append_log(run, rec)
        last_val = rec
        err = metrics["angular"]["mean"]
        if math.isfinite(err) and (best is None or err < best["mean"]):
            best = {"step": step, "images_seen": images_seen, "mean": err, "generator": rec["generator"]}
            save(run / BEST, full=False, metrics=metrics)
        try:
            atomic_write_bytes(run / "curves.png", plot_curves(read_log(run)))
            if kept:
                title = f"step {step}, {images_seen} images: mean angular error {err:.2f} deg"
                atomic_write_bytes(run / "val_predictions.png", prediction_figure(kept, cfg.w_scale, title))
        except Exception:  # pragma: no cover - a figure must never kill a run
            log.exception("could not draw the figures of step %d", step)
        emit({"event": "val", "step": step, "metrics": metrics, "raw": rec.get("raw")})

    sampler = StepBatches(len(train_idx), cfg.batch_size, cfg.seed, step, cfg.steps, dist.rank, dist.world)
    loader = torch.utils.data.DataLoader(
        StepDataset(dataset, train_idx),
        batch_sampler=sampler,
        collate_fn=functools.partial(collate, augment=aug, seed=cfg.seed, w_scale=cfg.w_scale),
        num_workers=cfg.workers,
        worker_init_fn=_worker_ignores_stop_signals if cfg.workers else None,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    emit({"event": "start", "step": step, "steps": cfg.steps, "world": dist.world, "device": str(device), "amp": amp})
    acc = {"loss_critic": 0.0, "loss_adv": 0.0, "loss_l2": 0.0, "wasserstein": 0.0, "n": 0}
    data_s = step_s = 0.0
    data_total = step_total = 0.0
    images_this_call = 0
    stopped = False
    Gm.train()
    Dm.train()
    t_prev = time.perf_counter()
    batches = iter(loader)
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except Exception:
                # A data error (damaged shard, corrupt item): keep the last finished step, then stop.
                if main and step > 0:
                    save(ckpt_path, full=True)
                    emit({"event": "checkpoint", "step": step, "path": str(ckpt_path)})
                raise
            t_got = time.perf_counter()
            data_s += t_got - t_prev
            torch.manual_seed(sample_seed(cfg.seed, step, 1_000_003 + dist.rank))  # dropout stream
            x = batch["image"].to(device, non_blocking=True)
            y = batch["target"].to(device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
                y = y.contiguous(memory_format=torch.channels_last)
            b = x.shape[0]
            lr = learning_rate(cfg, step)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = lr
            xx = torch.cat([x, x])
            with autocast():
                fake = G(x)
            for p in Dm.parameters():
                p.requires_grad_(True)
            for _ in range(cfg.n_critic):
                opt_d.zero_grad(set_to_none=True)
                with autocast():
                    s = D(xx, torch.cat([y, fake.detach().to(y.dtype)]))
                loss_d = critic_loss(s[:b], s[b:])
                loss_d.backward()
                opt_d.step()
            for p in Dm.parameters():
                p.requires_grad_(False)
            opt_g.zero_grad(set_to_none=True)
            with autocast():
                s2 = Dm(xx, torch.cat([y, fake.to(y.dtype)]))
            loss_g, adv, l2 = generator_loss(s2[b:], fake, y, cfg.lambda_l2)
            loss_g.backward()
            opt_g.step()
            if ema is not None:
                ema.update(step)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step += 1
            images_seen += cfg.batch_size
            images_this_call += cfg.batch_size
            acc["loss_critic"] += loss_d.item()
            acc["loss_adv"] += adv.item()
            acc["loss_l2"] += l2.item()
            acc["wasserstein"] += -loss_d.item()
            acc["n"] += 1
            t_prev = time.perf_counter()
            step_s += t_prev - t_got
            if step % cfg.log_every == 0 or step == cfg.steps:
                n = acc.pop("n")
                rec = {
                    "kind": "train",
                    "step": step,
                    "images_seen": images_seen,
                    "lr": lr,
                    **{k: v / n for k, v in acc.items()},
                    "images_per_second": n * cfg.batch_size / max(data_s + step_s, 1e-9),
                    "data_seconds": data_s / n,
                    "step_seconds": step_s / n,
                }
                data_total += data_s
                step_total += step_s
                if main:
                    _append_log(run, rec)
                emit({"event": "step", **rec, "steps": cfg.steps})
                acc = {k: 0.0 for k in ("loss_critic", "loss_adv", "loss_l2", "wasserstein")} | {"n": 0}
                data_s = step_s = 0.0
            if main and (step % cfg.val_every == 0 or step == cfg.steps):
                validate()
            stop_now = dist.any(bool(should_stop and should_stop()), device)
            if step % cfg.ckpt_every == 0 or step == cfg.steps or stop_now:
                if main:
                    save(ckpt_path, full=True)
                    emit({"event": "checkpoint", "step": step, "path": str(ckpt_path)})
            if stop_now:
                stopped = True
                break
            t_prev = time.perf_counter()
    finally:
        # Shut the loader's workers down here, not at interpreter exit: they ignore SIGTERM (see
        # _worker_ignores_stop_signals), and multiprocessing's exit handler would send them SIGTERM
        # and wait for them forever if something (a reference cycle through this frame, say)
        # still held the iterator then.
        del batches
        gc.collect()
    data_total += data_s
    step_total += step_s
    wall = time.perf_counter() - t_call
    summary = {
        "run": str(run),
        "step": step,
        "steps": cfg.steps,
        "images_seen": images_seen,
        "stopped": stopped,
        "wall_seconds": wall,
        "total_wall_seconds": wall_before + wall,
        "images_per_second": images_this_call / max(data_total + step_total, 1e-9) if images_this_call else 0.0,
        "data_seconds": data_total,
        "step_seconds": step_total,
        "last_val": last_val,
        "best": best,
        "world": dist.world,
        "device": str(device),
    }
    emit({"event": "done", **summary})
    return summary
