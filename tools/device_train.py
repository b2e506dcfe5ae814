#!/usr/bin/env python3
"""Issue 13's prepared GPU run: version-2 data with Mitsuba's CUDA variant, a fine-tune of the
shipped network on it, and Table 1 on a balanced version-2 test set of a disjoint seed.

Run it through ``tools/device_train.sh`` (which installs monohead and its wheels first) on a
machine with one NVIDIA GPU and ~16 cores; everything it keeps is written into ``--out``
(``$OUT`` on the device machine), at most 8 files, each under 16 MiB:

- ``table1.md``: Table 1 (paper, shipped weights, fine-tuned weights; one pass and
  mirror-averaged) on the test heads, with the sizes and timings of every stage;
- ``summary.json``: the same as data (stages, seconds, samples made, images seen, metrics);
- ``curves.png``, ``log.jsonl``: the fine-tune's learning curve and log;
- ``model_card.json`` and ``unet.pt.part-00``, ``unet.pt.part-01``: the fine-tuned weights as
  :func:`monohead.model.export_weights` writes them, cut in two under 16 MiB (join with
  ``cat unet.pt.part-* > unet.pt``, beside ``model_card.json``).

Stages, each within its share of ``--budget`` seconds (default 390; with the install about 8
minutes, inside a 10-minute call):

1. **Test set** (at most 30 % of the budget; the heads of the whole shards are used if it
   runs out): the first ``--test-count`` heads (half female, half male, as ``monohead
   experiments`` chooses) of seed ``--test-seed`` (2,000,000,000, disjoint from every training
   seed), 16 spp, rendered by ``--procs`` processes, each making the shards ``i/procs``.
2. **Training data**: seed ``--train-seed``, ``--train-count`` samples at most, by the same
   processes until ``--gen-seconds`` have passed; then they are stopped (a shard is written
   whole or not at all) and the whole shards are used (``partial=True``).
3. **Fine-tune**: from ``--init`` (default: the shipped weights), on the GPU (``--device``),
   bf16, batch ``--batch-size``, constant learning rate ``--lr``, until ``--train-seconds``
   have passed; the last ``--val-count`` samples validate, and the best validation checkpoint
   is kept.
4. **Table 1** of the shipped and the fine-tuned weights on the test set, one pass and
   mirror-averaged; the fine-tuned weights are exported with that set as their evaluation data.

``--dry-run`` runs every stage on the CPU with tiny sizes (the test suite runs it, so that this
script cannot rot): the auto Mitsuba variant instead of ``cuda_ad_rgb``, in-process rendering,
a few samples and steps.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

TEST_SEED = 2_000_000_000
TRAIN_SEED = 90  # the device run's own seed: disjoint from the CPU plan's (see the README)
PART_BYTES = 15 * 2**20  # files that come back from the device machine must stay under 16 MiB


def _log(msg: str) -> None:
    print(f"[device_train {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _render_part(
    root: str, count: int, seed: int, size: int, spp: int, shard_size: int, variant: str, part: tuple[int, int]
) -> None:
    """One rendering process: the shards ``part`` of a data set (runs until done or killed)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from monohead.synth.dataset import generate

    generate(
        root, count, seed=seed, size=size, spp=spp, shard_size=shard_size, shard=part, variant=variant, preview=False
    )


def render(
    root: Path, count: int, seed: int, args: argparse.Namespace, spp: int, deadline: float | None, min_samples: int = 0
) -> float:
    """Render ``count`` samples of ``seed`` into ``root`` with ``args.procs`` processes (in this
    process when 0), stopping them at ``deadline`` (``time.monotonic()``) once at least
    ``min_samples`` samples are in whole shards (waiting past the deadline by at most half the
    time it gave); returns seconds."""
    t0 = time.monotonic()
    if args.procs == 0:
        _render_part(str(root), count, seed, args.size, spp, args.shard_size, args.variant, (0, 1))
        return time.monotonic() - t0
    ctx = mp.get_context("spawn")  # a fresh Mitsuba / Dr.Jit state per process
    procs = [
        ctx.Process(
            target=_render_part,
            args=(str(root), count, seed, args.size, spp, args.shard_size, args.variant, (i, args.procs)),
            daemon=True,
        )  # fmt: skip
        for i in range(args.procs)
    ]
    for p in procs:
        p.start()
    late = None if deadline is None else deadline + 0.5 * max(0.0, deadline - t0)
    while any(p.is_alive() for p in procs):
        now = time.monotonic()
        whole = len(list((root / "shards").glob("shard-*"))) * args.shard_size if (root / "shards").is_dir() else 0
        if deadline is not None and now > deadline and (whole >= min_samples or now > late):
            for p in procs:
                if p.is_alive():
                    p.terminate()  # shards are written atomically: nothing half-made is read
            break
        time.sleep(0.5)
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, -15)]
    if bad:
        raise RuntimeError(f"a rendering process failed (exit codes {bad}); see its traceback above")
    return time.monotonic() - t0


def _metrics_row(name: str, m: dict[str, Any]) -> str:
    a = m["angular"]
    return (
        f"| {name} | {m['mask_precision']:.2f} | {m['mask_recall']:.2f} | {a['mean']:.2f} | {a['std']:.2f} | "
        f"{a['median']:.2f} | {a['under_10']:.1f} | {a['under_20']:.1f} | {a['under_30']:.1f} |"
    )


def table1_markdown(rows: list[tuple[str, dict[str, Any]]], summary: dict[str, Any]) -> str:
    """Table 1 as Markdown, with the run's sizes and timings under it."""
    from monohead.experiments import PAPER_TABLE1 as P

    lines = [
        f"# Table 1 on {summary['test']['count']} balanced version-2 test heads (seed {summary['test']['seed']})",
        "",
        "| | mask precision % | mask recall % | mean ° | std ° | median ° | < 10° % | < 20° % | < 30° % |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| paper (their synthetic test set) | {P['mask_precision']:.2f} | {P['mask_recall']:.2f} | {P['mean']:.2f} | "
        f"{P['std']:.2f} | – | {P['under_10']:.1f} | {P['under_20']:.1f} | {P['under_30']:.1f} |",
    ]
    lines += [_metrics_row(name, m) for name, m in rows]
    t, d, f = summary["test"], summary["train_data"], summary["fine_tune"]
    lines += [
        "",
        f"- machine: {summary['machine']}; Mitsuba variant {summary['variant']}; "
        f"{summary['procs']} rendering processes",
        f"- test set: {t['count']} balanced heads (of {t['asked']} asked) among {t['rendered']} rendered samples, "
        f"{t['seconds']:.0f} s",
        f"- training data: seed {d['seed']}, {d['samples']} whole samples ({d['skipped_shards']} shards not finished), "
        f"{d['seconds']:.0f} s ({d['samples_per_second']:.1f} samples/s)",
        f"- fine-tune from {f['init']}: {f['steps']} steps of batch {f['batch_size']} = {f['images_seen']} images, "
        f"{f['seconds']:.0f} s ({f['images_per_second']:.0f} img/s); best validation step {f['best_step']} "
        f"({f['best_val_mean']} ° on {f['val_count']} held-out training samples)",
        f"- total {summary['seconds']:.0f} s"
        + (" (dry run: CPU, tiny sizes; not a result)" if summary["dry_run"] else ""),
        "",
    ]
    return "\n".join(lines)


def split_file(path: Path, dest: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """Cut ``path`` into ``dest/NAME.part-00``, ``-01``, ... of at most ``part_bytes`` bytes."""
    data = path.read_bytes()
    parts = []
    for k in range(max(1, -(-len(data) // part_bytes))):
        p = dest / f"{path.name}.part-{k:02d}"
        p.write_bytes(data[k * part_bytes : (k + 1) * part_bytes])
        parts.append(p)
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", required=True, help="folder of the results (the device machine's $OUT)")
    ap.add_argument("--work", help="folder of the data sets and the run (default: a temporary folder)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the script, gives no result")
    ap.add_argument(
        "--budget",
        type=float,
        default=390.0,
        help="seconds for all stages (default 390; the install takes about a minute more)",
    )
    ap.add_argument("--procs", type=int, help="rendering processes (default: cores - 2; 0: in this process)")
    ap.add_argument("--variant", help="Mitsuba variant (default cuda_ad_rgb; dry run: auto)")
    ap.add_argument("--device", help="PyTorch device of the fine-tune (default cuda; dry run: cpu)")
    ap.add_argument("--size", type=int, default=128, help="image side (default 128, the shipped network's)")
    ap.add_argument("--shard-size", type=int, help="samples per shard (default 16; dry run 2)")
    ap.add_argument("--test-count", type=int, help="balanced test heads (default 100; dry run 4)")
    ap.add_argument("--test-seed", type=int, default=TEST_SEED)
    ap.add_argument("--test-spp", type=int, help="samples per pixel of the test images (default 16; dry run 1)")
    ap.add_argument("--train-spp", type=int, help="samples per pixel of the training images (default 9; dry run 1)")
    ap.add_argument("--train-seed", type=int, default=TRAIN_SEED)
    ap.add_argument("--train-count", type=int, help="training samples at most (default 20000; dry run 12)")
    ap.add_argument(
        "--gen-seconds",
        type=float,
        help="seconds of training-data rendering (default 45 %% of what the test set left of the budget)",
    )
    ap.add_argument(
        "--train-seconds", type=float, help="seconds of fine-tuning (default 35 %% of what the test set left)"
    )
    ap.add_argument("--init", help="weights to start from (default: the shipped ones; 'none': a new network)")
    ap.add_argument("--width", type=int, help="U-Net width of a new network (--init none)")
    ap.add_argument("--depth", type=int, help="U-Net depth of a new network (--init none)")
    ap.add_argument("--batch-size", type=int, help="batch (default 32; dry run 4)")
    ap.add_argument("--lr", type=float, default=5e-5, help="RMSprop learning rate of the fine-tune (default 5e-5)")
    ap.add_argument("--val-count", type=int, help="held-out training samples for validation (default 64; dry run 2)")
    ap.add_argument("--val-every", type=int, help="steps between validations (default 100; dry run 2)")
    ap.add_argument(
        "--max-steps", type=int, help="stop the fine-tune after this many steps too (default: time only; dry run 3)"
    )
    args = ap.parse_args(argv)

    dry = args.dry_run

    def pick(value, device, dry_value):
        return value if value is not None else (dry_value if dry else device)

    args.procs = pick(args.procs, max(1, (os.cpu_count() or 4) - 2), 0)
    args.variant = pick(args.variant, "cuda_ad_rgb", "auto")
    args.device = pick(args.device, "cuda", "cpu")
    args.shard_size = pick(args.shard_size, 16, 2)
    args.test_count = pick(args.test_count, 100, 4)
    args.train_count = pick(args.train_count, 20000, 12)
    args.batch_size = pick(args.batch_size, 32, 4)
    args.test_spp = pick(args.test_spp, 16, 1)
    args.train_spp = pick(args.train_spp, 9, 1)
    args.val_count = pick(args.val_count, 64, 2)
    args.val_every = pick(args.val_every, 100, 2)
    args.max_steps = pick(args.max_steps, 10**9, 3)

    import torch

    from monohead.experiments import balanced_indices
    from monohead.model import TrainConfig, evaluate_checkpoint, export_weights, load_generator, train
    from monohead.model.train import BEST, LOG
    from monohead.model.weights import WEIGHTS_DIR
    from monohead.synth import SyntheticHeads
    from monohead.synth.render import select_variant

    t_start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(os.environ.get("TMPDIR", "/tmp")) / f"monohead-device-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("device_train: --device cuda, but PyTorch sees no GPU (use --dry-run on a CPU)")
    variant = select_variant(args.variant)  # a clear error now if cuda_ad_rgb cannot run
    machine = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "CPU"
    machine += f", {os.cpu_count()} cores, torch {torch.__version__}"
    _log(f"{machine}; variant {variant}; {args.procs} rendering processes; work folder {work}")

    # 1. Test set: balanced heads of the test seed, rendered whole.
    indices, _ = balanced_indices(args.test_seed, args.test_count, args.size)
    test_dir = work / f"test_s{args.test_seed}"
    t = render(
        test_dir,
        indices[-1] + 1,
        args.test_seed,
        args,
        spp=args.test_spp,
        deadline=t_start + 0.3 * args.budget,
        min_samples=0,
    )
    test_all = SyntheticHeads(test_dir, partial=True)  # whole, unless its time share ran out
    wanted = set(indices)
    positions = [j for j in range(len(test_all)) if test_all[j]["index"] in wanted]
    indices = [test_all[j]["index"] for j in positions]
    if not positions:
        raise SystemExit(f"device_train: no test head was rendered in {t:.0f} s: give more --budget")

    class Picked:  # the balanced heads, in order
        meta = {"root": str(test_dir), "seed": args.test_seed, "generator_version": test_all.generator_version,
                "indices": indices, "selection": "balanced"}  # fmt: skip

        def __len__(self) -> int:
            return len(indices)

        def __getitem__(self, i: int) -> Any:
            return test_all[positions[i]]

    test = Picked()
    summary: dict[str, Any] = {
        "dry_run": dry, "machine": machine, "variant": variant, "procs": args.procs,
        "test": {"seed": args.test_seed, "count": len(indices), "asked": args.test_count,
                 "rendered": len(test_all), "seconds": t,
                 "generator_version": test_all.generator_version},
    }  # fmt: skip
    _log(f"test set: {len(indices)} of {args.test_count} balanced heads ({len(test_all)} rendered) in {t:.0f} s")
    left = max(0.0, args.budget - (time.monotonic() - t_start))  # the rest: evaluation and export (~20 %)
    gen_s = args.gen_seconds if args.gen_seconds is not None else 0.45 * left
    train_s = args.train_seconds if args.train_seconds is not None else 0.35 * left

    # 2. Training data until the deadline; only whole shards are used.
    train_dir = work / f"train_s{args.train_seed}"
    t = render(
        train_dir,
        args.train_count,
        args.train_seed,
        args,
        spp=args.train_spp,
        deadline=time.monotonic() + gen_s,
        min_samples=args.batch_size + args.val_count,
    )
    data = SyntheticHeads(train_dir, partial=True)
    if len(data) < args.batch_size + args.val_count:
        raise SystemExit(
            f"device_train: only {len(data)} training samples were made in {t:.0f} s; a batch and the "
            f"validation need {args.batch_size + args.val_count}: give more --gen-seconds or --budget"
        )
    summary["train_data"] = {"seed": args.train_seed, "samples": len(data), "skipped_shards": len(data.skipped),
                             "seconds": t, "samples_per_second": len(data) / max(t, 1e-9),
                             "generator_version": data.generator_version}  # fmt: skip
    _log(f"training data: {len(data)} samples in {t:.0f} s")

    # 3. Fine-tune, time-boxed; the best validation checkpoint is kept.
    init = None if args.init == "none" else (args.init or str(WEIGHTS_DIR))
    arch: dict[str, Any] = {}
    if init is not None:
        src = load_generator(init)
        arch = {**{k: src.config[k] for k in ("width", "depth", "dropout")}, "w_scale": float(src.w_scale)}
    for name in ("width", "depth"):
        if getattr(args, name) is not None:
            arch[name] = getattr(args, name)
    run = work / "run"
    cfg = TrainConfig(**arch, batch_size=args.batch_size, lr=args.lr, seed=args.train_seed, val_count=args.val_count,
                      steps=args.max_steps, val_every=args.val_every, ckpt_every=10**6, log_every=10 if not dry else 1,
                      device=args.device, workers=0 if dry else 6, figure_count=0)  # fmt: skip
    stop_at = time.monotonic() + train_s
    res = train(data, run, cfg, init=init, should_stop=lambda: time.monotonic() > stop_at)
    best = res["best"] or {}
    summary["fine_tune"] = {
        "init": init or "a new network", "steps": res["step"], "batch_size": cfg.batch_size,
        "images_seen": res["images_seen"],
        "seconds": res["wall_seconds"], "images_per_second": res["images_per_second"], "best_step": best.get("step"),
        "best_val_mean": None if best.get("mean") is None else round(best["mean"], 2), "val_count": cfg.val_count,
        "lr": cfg.lr,
    }  # fmt: skip
    _log(f"fine-tune: {res['step']} steps, {res['images_seen']} images in {res['wall_seconds']:.0f} s")

    # 4. Table 1 and the weights.
    rows = []
    tuned = run / BEST if (run / BEST).exists() else run
    sources = ([("shipped weights", str(WEIGHTS_DIR))] if init == str(WEIGHTS_DIR) else []) + [
        ("fine-tuned here", str(tuned))
    ]
    metrics: dict[str, Any] = {}
    for name, path in sources:
        for flip in (False, True):
            label = f"{name}, {'mirror-averaged' if flip else 'one pass'}"
            m = evaluate_checkpoint(path, test, device=args.device, flip=flip)
            metrics[label] = m
            rows.append((label, m))
    summary["table1"] = {
        k: {kk: v[kk] for kk in ("mask_precision", "mask_recall", "angular", "count")} for k, v in metrics.items()
    }
    wdir = work / "weights"
    card = export_weights(
        tuned,
        wdir,
        eval_dataset=test,
        max_items=len(test),
        card={"notes": "device_train.py fine-tune (issue 13's GPU check); see table1.md"},
    )
    summary["weights"] = {"dtype": card["dtype"], "bytes": card["bytes"], "sha256": card["sha256"]}
    summary["seconds"] = time.monotonic() - t_start

    split_file(wdir / "unet.pt", out)
    shutil.copy(wdir / "model_card.json", out / "model_card.json")
    for name in ("curves.png", LOG):
        if (run / name).exists():
            shutil.copy(run / name, out / name)
    (out / "table1.md").write_text(table1_markdown(rows, summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    _log(f"done in {summary['seconds']:.0f} s: " + ", ".join(sorted(p.name for p in out.iterdir())))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
