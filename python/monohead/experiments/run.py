"""run_experiments: the stages of the paper's experiments in order, each taken from the cache
when what it depends on has not changed (see :mod:`monohead.experiments`)."""

from __future__ import annotations

import datetime
import json
import numbers
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io
from .._env import is_torch_module, package_versions
from . import cache as c
from . import figures, stages
from .predictors import predict, resolve_model
from .report import render_report
from .settings import (
    DEFAULT_COUNT,
    DEFAULT_LAMS,
    DEFAULT_SEED,
    DEFAULT_SIZE,
    ICP_STRIDE,
    MIN_PIXELS,
    PAPER_LAMBDA,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PHOTOS,
    THETA,
    Callback,
    check_count,
    check_lams,
)
from .testset import TestSet, load_test_set, make_test_set

__all__ = ["run_experiments"]


def run_experiments(
    out: Any,
    *,
    count: int = DEFAULT_COUNT,
    seed: int = DEFAULT_SEED,
    size: int = DEFAULT_SIZE,
    spp: int = 16,
    data: Any = None,
    model: Any = None,
    model_key: str | None = None,
    lams: Sequence[float] = DEFAULT_LAMS,
    photos: bool = True,
    workers: int | None = None,
    command: str | None = None,
    callback: Callback | None = None,
    flip: bool = True,
) -> dict[str, Any]:
    """Run the paper's experiments and write ``out/report.md`` with its figures (see :mod:`monohead.experiments`).

    Args:
        out: output folder (created): ``report.md``, ``results.json``, ``figures/*.png``,
            ``meshes/*.ply`` (the photos) and ``cache/`` (test set, predictions, results).
        count: test heads (default 200, half female-looking, half male-looking).
        seed: the test set's seed (default :data:`DEFAULT_SEED`, disjoint from training seeds).
        size: image side in pixels (128 for the shipped network).
        spp: samples per pixel of the rendered test images (the generator's default 16).
        data: an existing test set instead of rendering one: a synthetic data set folder or an
            indexable data set of item dicts (see :func:`load_test_set`); ``count`` samples of
            it are used (balanced by sex when its ``params`` say), ``seed``/``size``/``spp``
            are then ignored.
        model: the predictor: ``None`` (the shipped weights,
            :func:`monohead.model.load_pretrained`), a weights file or run folder
            (:func:`monohead.model.load_generator`), a torch module, ``"oracle"`` (the true
            maps: checks the evaluation itself; no photos), or any callable taking
            ``(B, H, W, 3)`` uint8 images and returning ``(normals (B, H, W, 3), W (B, H, W),
            mask (B, H, W))`` in the conventions' frame.
        model_key: the predictor's cache key; by default the SHA-256 of the weights, or the
            qualified name of a callable (pass a key when a callable's results change).
        lams: the λ values of the sweep (default 0 to 0.3 by 0.025).
        photos: reconstruct the real photos (astronaut, Grace Hopper).
        workers: processes for the ICP of Table 2 (default: up to 8, the CPU count).
        command: the command line, for the report.
        callback: ``callback(stage, done, total)`` on progress; ``stage`` is one of
            :data:`STAGES`. A stage taken from the cache reports ``(total, total)`` once.
        flip: a network's prediction averages the image's and its mirror image's outputs, as
            :func:`monohead.reconstruct` does by default (no effect on a callable
            or the oracle).

    Returns:
        The results (JSON-able dict, also written to ``out/results.json``): ``report``
        (path), ``stages`` (per stage ``seconds`` and ``cached``), ``test_set``, ``model``,
        ``table1`` (``all``, ``female``, ``male``), ``sweep`` and ``oracle_sweep``
        (``lam``, ``sigma``, ``best_lam``, ``best_sigma``, per-sample variances), ``fig6``,
        ``table2`` (``rows``), ``photos``, ``figures``.

    Raises:
        FileNotFoundError: no shipped weights (``model=None``) or no such model file.
        ValueError, TypeError: bad arguments or data.
    """
    count = check_count(count)
    size = check_count(size, "size")
    spp = check_count(spp, "spp")
    lams = check_lams(lams)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    workers = check_count(max(1, min(8, os.cpu_count() or 1)) if workers is None else workers, "workers")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    run = _Run(out, callback)

    # The predictor first: a missing model must fail before the test set is rendered.
    t_model = time.perf_counter()
    net, mkey, minfo = resolve_model(model, model_key)
    flip = bool(flip) and is_torch_module(net)
    if flip:
        mkey += ":flip"
    minfo["flip"], minfo["key"] = flip, mkey
    t_model = time.perf_counter() - t_model

    ts = _test_set(run, data, count, int(seed), size, spp)
    pred, pkey = _predictions(run, net, ts, mkey, flip, t_model)
    table1 = _table1(run, ts, pred)
    # From here on the predicted normals are integrated as the pipeline integrates them
    # (monohead.reconstruct): slopes limited to Nz >= MIN_NZ (Table 1 above scores the raw prediction).
    pred = {**pred, "normals": _limit_slopes(pred["normals"], pred["mask"])}
    sweep, oracle, excluded = _sweeps(run, ts, pred, pkey, lams)
    best, best_true = float(sweep["best_lam"]), float(oracle["best_lam"])
    fig_files, fig6 = _figures(run, ts, pred, sweep, oracle, best)
    table2 = _table2(run, ts, pred, pkey, best, best_true, workers)
    full_head = _full_head(run, ts, pred, pkey, best, shipped=model is None)
    photo_results, photo_note = _photos(run, net, mkey, best, photos, flip)
    for p in photo_results:
        if "figure" in p:
            fig_files[f"photo_{p['photo']}"] = p["figure"]

    results: dict[str, Any] = {
        "report": str(run.root / "report.md"),
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "test_set": _test_set_facts(ts),
        "model": minfo,
        "table1": table1,
        "sweep": sweep,
        "oracle_sweep": oracle,
        "excluded": excluded,
        "fig6": fig6,
        "table2": table2,
        "full_head": full_head,
        "photos": photo_results,
        "photos_note": photo_note,
        "figures": fig_files,
        "stages": run.stages,
        "paper": {"table1": PAPER_TABLE1, "table2": PAPER_TABLE2, "lambda": PAPER_LAMBDA},
    }
    return run.write_report(results)


class _Run:
    """One run: its folders, the progress callback and the stages' timings.

    Args:
        out: the output folder (created with ``cache/``, ``figures/`` and ``meshes/``).
        callback: ``callback(stage, done, total)`` or ``None``.
    """

    def __init__(self, out: Any, callback: Callback | None) -> None:
        if isinstance(out, bytes) or not isinstance(out, (str, os.PathLike)):
            raise TypeError(f"out must be a str or os.PathLike; got {type(out).__name__}")
        self.root = Path(out)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"out must be a folder; {str(self.root)!r} is a file")
        self.cache, self.figures, self.meshes = self.root / "cache", self.root / "figures", self.root / "meshes"
        for d in (self.root, self.cache, self.figures, self.meshes):
            d.mkdir(parents=True, exist_ok=True)
        self.callback = callback
        #: Per stage: ``seconds`` and ``cached``, in the order run.
        self.stages: dict[str, dict[str, Any]] = {}
        self.started = time.perf_counter()

    def progress(self, stage: str) -> Callable[[int, int], None]:
        """The ``(done, total)`` callback of one stage."""

        def cb(done: int, total: int) -> None:
            if self.callback is not None:
                self.callback(stage, int(done), int(total))

        return cb

    def finish(self, stage: str, t0: float, cached: bool, total: int | None = None) -> None:
        """Record a stage begun at ``t0``; a stage from the cache reports ``(total, total)`` once."""
        self.stages[stage] = {"seconds": time.perf_counter() - t0, "cached": cached}
        if cached and total is not None:
            self.progress(stage)(total, total)

    def cached(
        self,
        stage: str,
        key: str,
        compute: Callable[[Callable[[int, int], None]], Any],
        total: Callable[[Any], int],
        usable: Callable[[Any], bool] = lambda value: True,
    ) -> Any:
        """The JSON result of ``stage``: from ``cache/<stage>.json`` when stored under ``key``
        (and ``usable``), else ``compute(progress)``, stored."""
        t0 = time.perf_counter()
        path = self.cache / f"{stage}.json"
        value = c.load_json(path, key)
        if value is not None and usable(value):
            self.finish(stage, t0, True, total(value))
            return value
        value = compute(self.progress(stage))
        c.save_json(path, key, value)
        self.finish(stage, t0, False)
        return value

    def write_report(self, results: dict[str, Any]) -> dict[str, Any]:
        """Write ``report.md`` and ``results.json``; the results as JSON values."""
        t0 = time.perf_counter()
        report = self.progress("report")
        report(0, 1)
        self.stages["report"] = {"seconds": time.perf_counter() - t0, "cached": False}
        results["seconds"] = time.perf_counter() - self.started
        _io.atomic_write_text(self.root / "report.md", render_report(results))
        _io.atomic_write_text(self.root / "results.json", json.dumps(results, indent=1, default=c.json_default) + "\n")
        report(1, 1)
        return json.loads(json.dumps(results, default=c.json_default))


def _test_set(run: _Run, data: Any, count: int, seed: int, size: int, spp: int) -> TestSet:
    """Stage 1: the test set, read from ``data`` or rendered (resumable) into the cache."""
    t0 = time.perf_counter()
    if data is not None:
        ts = load_test_set(data, count)
        run.progress("testset")(len(ts), len(ts))
        run.finish("testset", t0, False)
        return ts
    folder = run.cache / f"testset_seed{seed}_n{count}_{size}px_spp{spp}"
    ts = make_test_set(folder, count=count, seed=seed, size=size, spp=spp, callback=run.progress("testset"))
    run.finish("testset", t0, ts.source["rendered_now"] == 0)  # generate() reported the progress
    return ts


def _test_set_facts(ts: TestSet) -> dict[str, Any]:
    """The test set in the results: counts per sex, size, ids, key and source."""
    n_f = sum(s == "female" for s in ts.sex)
    n_m = sum(s == "male" for s in ts.sex)
    return {"count": len(ts), "female": n_f, "male": n_m, "unknown_sex": len(ts) - n_f - n_m,
            "size": list(ts.images.shape[1:3]), "ids": ts.ids, "key": ts.key, "source": ts.source}  # fmt: skip


def _predictions(
    run: _Run, net: Any, ts: TestSet, mkey: str, flip: bool, t_model: float
) -> tuple[dict[str, np.ndarray], str]:
    """Stage 2: the predictions of the test set (``cache/predictions.npz``) and their key. The
    stage's time includes loading the model (``t_model`` seconds)."""
    t0 = time.perf_counter() - t_model
    pkey = c.make_key("predictions", ts.key, mkey)
    path = run.cache / "predictions.npz"
    pred = c.load_predictions(path, pkey)
    if pred is None:
        pred = predict(net, ts, run.progress("predict"), flip=flip)
        c.save_predictions(path, pkey, pred)
        run.finish("predict", t0, False)
    else:
        run.finish("predict", t0, True, len(ts))
    return pred, pkey


def _table1(run: _Run, ts: TestSet, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    """Stage 3: Table 1, over all heads and per sex (when the test set says)."""
    t0 = time.perf_counter()
    sexes = np.array([s or "" for s in ts.sex])
    table1 = {"all": stages.table1(ts, pred, np.ones(len(ts), bool))}
    for sex in ("female", "male"):
        if (sexes == sex).any():
            table1[sex] = stages.table1(ts, pred, sexes == sex)
    run.progress("table1")(1, 1)
    run.finish("table1", t0, False)
    return table1


def _limit_slopes(normals: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Each sample's normals with slopes limited as :func:`monohead.reconstruct` limits them."""
    from ..photo import limit_slope

    return np.stack([limit_slope(n, m) for n, m in zip(normals, masks, strict=True)])


def _sweeps(
    run: _Run, ts: TestSet, pred: dict[str, np.ndarray], pkey: str, lams: list[float]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Stage 4 (§4.2): the λ sweeps with the predicted and the true maps, and how many heads
    each left out (too few pixels in both masks)."""
    from ..photo import MIN_NZ

    _, valid = stages.domains(pred["mask"], ts.mask)
    sweep = run.cached("sweep", c.make_key("sweep", pkey, lams, THETA, MIN_PIXELS, "min_nz", MIN_NZ),
                       lambda cb: stages.sweep(pred["normals"], pred["W"], pred["mask"], ts, valid, lams, cb),
                       total=lambda _: len(lams) * int(valid.sum()))  # fmt: skip
    _, tvalid = stages.domains(ts.mask, ts.mask)
    true_normals = _limit_slopes(ts.normals, ts.mask)
    oracle = run.cached("oracle_sweep", c.make_key("oracle_sweep", ts.key, lams, THETA, MIN_PIXELS, "min_nz", MIN_NZ),
                        lambda cb: stages.sweep(true_normals, ts.W, ts.mask, ts, tvalid, lams, cb),
                        total=lambda _: len(lams) * int(tvalid.sum()))  # fmt: skip
    return sweep, oracle, {"predicted": int((~valid).sum()), "true": int((~tvalid).sum())}


def _figures(
    run: _Run, ts: TestSet, pred: dict[str, np.ndarray], sweep: dict[str, Any], oracle: dict[str, Any], best: float
) -> tuple[dict[str, str], dict[str, Any] | None]:
    """Stage 5: Fig. 8, Fig. 6 and Fig. 5 (redrawn on every run)."""
    t0 = time.perf_counter()
    fig_files, fig6 = figures.draw_figures(ts, pred, sweep, oracle, best, run.figures)
    run.progress("figures")(1, 1)
    run.finish("figures", t0, False)
    return fig_files, fig6


def _table2(
    run: _Run, ts: TestSet, pred: dict[str, np.ndarray], pkey: str, best: float, best_true: float, workers: int
) -> dict[str, Any]:
    """Stage 6: the Table 2 analogue, with the predicted maps at ``best`` and the true ones at ``best_true``."""
    key = c.make_key("table2", pkey, best, best_true, MIN_PIXELS, ICP_STRIDE, stages.table2_methods(best),
                     stages.table2_methods(best_true))  # fmt: skip
    return run.cached("table2", key, lambda cb: stages.table2(ts, pred, best, best_true, workers, cb),
                      total=lambda t2: sum(r["samples"] for r in t2["rows"]))  # fmt: skip


def _full_head(
    run: _Run, ts: TestSet, pred: dict[str, np.ndarray], pkey: str, best: float, shipped: bool = True
) -> dict[str, Any] | None:
    """Stage 6b: complete heads (:mod:`monohead.fullhead`), visible and hidden side errors, when
    the test set is a synthetic data set folder (its samples' parameters give the whole true heads);
    the identity calibration (learned for the shipped network's maps) only for the shipped network."""
    if not ts.source.get("root"):
        run.finish("full_head", time.perf_counter(), False)
        return None
    from ..evaluate import full_head as fh
    from ..fullhead import FitSettings

    settings = FitSettings(identity_calibration=shipped)
    # the correspondence network is trained on the shipped network's maps: landmarks only there
    from ..model.canonical import CANONICAL_FILE
    from ..model.weights import WEIGHTS_DIR

    canon_file = WEIGHTS_DIR / CANONICAL_FILE
    use_lm = shipped and canon_file.is_file()

    def compute(cb: Callable[[int, int], None]) -> dict[str, Any]:
        canonical = None
        if use_lm:
            from ..model.canonical import load_canonical, predict_canonical

            canonical = predict_canonical(load_canonical(), ts.images, pred["normals"], pred["W"], pred["mask"])
        return fh.evaluate_test_set(
            ts.source["root"], ts.ids, pred["normals"], pred["W"], pred["mask"], lam=best, callback=cb,
            settings=settings, canonical=canonical,
        )  # fmt: skip

    from .. import head_calibration

    cal_file = head_calibration.DEFAULT_FILE
    cal = _io.file_sha256(cal_file) if shipped and cal_file.is_file() else None
    lm_key = _io.file_sha256(canon_file) if use_lm else None
    key = c.make_key("full_head", pkey, best, "v5", repr(settings), cal, lm_key)
    return run.cached("full_head", key, compute, total=lambda _: len(ts))


def _photos(run: _Run, net: Any, mkey: str, best: float, photos: bool, flip: bool) -> tuple[list[dict[str, Any]], str]:
    """Stage 7: the real photos at the best λ, or why they were not run."""
    if not photos or (isinstance(net, str) and net == "oracle"):
        run.finish("photos", time.perf_counter(), False)
        note = (
            "not run (photos=False / --no-photos)"
            if not photos
            else "not run: the oracle predictor has no ground truth for real photos"
        )
        return [], note

    def files_there(entries: list[dict[str, Any]]) -> bool:
        return all(
            "error" in p or ((run.root / p["figure"]).is_file() and (run.root / p["mesh"]).is_file()) for p in entries
        )

    return run.cached("photos", c.make_key("photos", mkey, best, PHOTOS),
                      lambda cb: figures.reconstruct_photos(net, best, run.figures, run.meshes, cb, flip=flip),
                      total=lambda _: len(PHOTOS), usable=files_there), ""  # fmt: skip
