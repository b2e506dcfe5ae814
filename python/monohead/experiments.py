"""The paper's experiments (§4) as one function: a Markdown report with its PNG figures.

:func:`run_experiments` (``monohead experiments --out DIR`` on the command line) runs, on a
synthetic test set and with one predictor (the shipped network by default):

1. **Test set**: ``count`` heads (200, as in the paper) rendered by :mod:`monohead.synth` from a
   seed disjoint from the training data's (:data:`DEFAULT_SEED`), half female-looking and half
   male-looking (the generator's ``params["skin"]["sex"]``): the sexes of samples ``0, 1, 2, ...``
   are read from their random parameters (nothing is rendered for that) and the first
   ``ceil(count / 2)`` female and ``floor(count / 2)`` male indices are kept; the data set
   ``0 .. max index`` is generated (:func:`monohead.synth.dataset.generate`) and those samples
   are used. ``data=`` uses an existing data set instead.
2. **Table 1**: mask precision and recall, pooled over all pixels of all images; the angular
   error of the normals, pooled over the pixels inside both the true and the predicted mask
   of all images (mean, std, shares under 10°, 20°, 30°), overall and per sex.
3. **§4.2**: the λ sweep (Fig. 8): each sample's predicted N is integrated with its predicted
   W, ``w = 1 / (1 + λ W)``, on its predicted mask, and compared with the true depth by the
   robust σ of :func:`monohead.evaluate.robust_depth_sigma` (the median ``M`` absorbs the
   unknown depth offset; the comparison uses the intersection of the predicted mask and the
   true domain); the same sweep with the true N, W and mask is the oracle reference curve.
   Fig. 6 shows the sample with the median error at the best λ.
4. **Table 2 analogue**: the reconstructed depth (pixel units) is meshed on the intersection of
   the predicted and the true mask (the paper crops the reconstruction to the valid pixels),
   aligned by ICP (fitted on every 4th vertex) to the mesh of the true depth over the true
   mask, and compared on all its vertices by
   :func:`monohead.evaluate.mesh_errors_set` (mean, std, median, 90th percentile of the
   point-to-surface distances; ē and σ of eq. 9), for WLS at the best λ and at the paper's
   0.1, least squares (λ = 0), DCT Poisson and Frankot-Chellappa. The two Fourier methods work
   on the full rectangle: the normals outside the mask are set to (0, 0, 1) (flat) and only
   the mask is kept. Once with the predicted N, W, mask (the pipeline) and once with the true
   ones (the integrators alone).
5. **Real photos**: the astronaut of scikit-image and Grace Hopper of matplotlib, reconstructed
   by :func:`monohead.reconstruct` at the best λ and shown as in Fig. 7.

Every expensive stage is cached in ``out/cache`` (test set shards, predictions as ``.npz``,
results as JSON, each under a key of what it depends on), so a rerun skips finished stages;
figures and the report are rewritten each time. All files are written atomically.

Units: depths and mesh errors are in pixels of the ``size x size`` images; angles in degrees;
precision and recall in percent.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import numbers
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _io
from ._env import is_torch_module, package_versions

__all__ = [
    "DEFAULT_COUNT",
    "DEFAULT_LAMS",
    "DEFAULT_SEED",
    "DEFAULT_SIZE",
    "PAPER_LAMBDA",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "STAGES",
    "TestSet",
    "balanced_indices",
    "load_test_set",
    "make_test_set",
    "run_experiments",
    "select_balanced",
]

#: Seed of the test set: the training data sets use small seeds (0, 1, ...); sample ``i`` of seed
#: ``s`` draws from ``SeedSequence(s, spawn_key=(i,))``, so other seeds give independent samples.
DEFAULT_SEED = 2_000_000_000
#: Test images, as in the paper.
DEFAULT_COUNT = 200
#: Image side in pixels (the network's input).
DEFAULT_SIZE = 128
#: λ values of the sweep: 0 to 0.3 by 0.025 (includes the paper's 0.1).
DEFAULT_LAMS = tuple(round(0.025 * i, 10) for i in range(13))
#: The paper's λ (§4.2).
PAPER_LAMBDA = 0.1
#: θ of the robust σ (§4.2), pixels.
THETA = 7.0
#: Samples whose compared domain (predicted ∩ true mask) has fewer pixels are left out of the
#: depth and mesh evaluations (counted in the report).
MIN_PIXELS = 16
#: Table 2's ICP is fitted on every ICP_STRIDE-th vertex of a reconstruction (its errors are
#: measured on all of them): 3x faster, the errors change by ~1 %.
ICP_STRIDE = 4
#: Stages of :func:`run_experiments`, in order (the ``stage`` of the callback).
STAGES = ("testset", "predict", "table1", "sweep", "oracle_sweep", "figures", "table2", "full_head", "photos", "report")

#: The paper's Table 1 (its test set of 200 synthetic heads).
PAPER_TABLE1 = {
    "mask_precision": 93.72,
    "mask_recall": 98.40,
    "mean": 10.01,
    "std": 12.45,
    "under_10": 67.50,
    "under_20": 92.65,
    "under_30": 97.13,
}
#: The paper's own row of Table 2 (BU-3DFE scans, millimetres: another data set and unit).
PAPER_TABLE2 = {"mean": 3.04, "std": 1.78, "median": 2.62, "p90": 5.48, "e_bar": 0.10, "sigma": 2.18}

#: The real photos of §4.3 (name, loader).
PHOTOS = ("astronaut", "grace_hopper")

_CACHE_FORMAT = "monohead-experiments-cache/1"

Callback = Callable[[str, int, int], None]


# --------------------------------------------------------------------------------------------
# The test set
# --------------------------------------------------------------------------------------------


@dataclass
class TestSet:
    """Ground truth of a test set, stacked.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 photos.
        normals: ``(N, H, W, 3)`` float32 unit normals (camera frame of the conventions), 0
            outside the mask.
        W: ``(N, H, W)`` float32 ``|grad h|``, 0 outside the mask.
        depth: ``(N, H, W)`` float32 height toward the viewer in pixels, NaN outside the mask.
        mask: ``(N, H, W)`` bool head masks.
        sex: per sample ``"female"``, ``"male"`` or ``None`` (no such notion in the data).
        ids: per sample its index in its data set.
        source: how the set was made or where it was read (JSON-able).
        key: SHA-256 of the arrays and ids (the cache key of everything computed from it).
    """

    __test__ = False  # not a pytest class

    images: np.ndarray
    normals: np.ndarray
    W: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    sex: list[str | None]
    ids: list[int]
    source: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _hash_arrays(*arrays: np.ndarray, extra: Any = None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _sex_of(params: Any) -> str | None:
    try:
        sex = params["skin"]["sex"]
    except (KeyError, TypeError, IndexError):
        return None
    return sex if sex in ("female", "male") else None


def select_balanced(sexes: Sequence[str | None], count: int) -> list[int]:
    """Positions of ``count`` samples, half female and half male, earliest first.

    The first ``ceil(count / 2)`` positions with ``"female"`` and the first ``floor(count / 2)``
    with ``"male"``, in increasing order. If the sexes are unknown (any ``None``) or one sex
    has too few samples, the first ``count`` positions are returned instead.
    """
    count = _check_count(count)
    n_f, n_m = (count + 1) // 2, count // 2
    fem = [i for i, s in enumerate(sexes) if s == "female"][:n_f]
    mal = [i for i, s in enumerate(sexes) if s == "male"][:n_m]
    if any(s is None for s in sexes) or len(fem) < n_f or len(mal) < n_m:
        return list(range(min(count, len(sexes))))
    return sorted(fem + mal)


def balanced_indices(seed: int, count: int, size: int = DEFAULT_SIZE) -> tuple[list[int], list[str]]:
    """Indices of a balanced test set of the generator, from the random parameters only.

    The sex of sample ``i`` (``params["skin"]["sex"]``) is drawn before anything is rendered;
    the indices ``0, 1, 2, ...`` are scanned until ``ceil(count / 2)`` female and
    ``floor(count / 2)`` male ones are found.

    Returns:
        ``(indices, sexes)``, increasing indices.
    """
    from .synth.generator import sample_params
    from .synth.head_model import HeadModel

    count = _check_count(count)
    model = HeadModel.load(None)
    n_f, n_m = (count + 1) // 2, count // 2
    indices: list[int] = []
    sexes: list[str] = []
    i = 0
    while n_f or n_m:
        sex = _sex_of(sample_params(seed, i, model, (size, size)))
        if sex is None:
            raise ValueError("the generator's parameters have no params['skin']['sex']: cannot balance the sexes")
        if (sex == "female" and n_f) or (sex == "male" and n_m):
            indices.append(i)
            sexes.append(sex)
            if sex == "female":
                n_f -= 1
            else:
                n_m -= 1
        i += 1
        if i > 100 * count + 1000:  # pragma: no cover - a broken generator
            raise RuntimeError("could not find a balanced set of samples")
    return indices, sexes


def _stack_items(items: Iterable[dict[str, Any]], ids: list[int], source: dict[str, Any]) -> TestSet:
    imgs, normals, Ws, depths, masks, sexes = [], [], [], [], [], []
    shape = None
    for j, it in enumerate(items):
        for k in ("image", "normals", "W", "depth", "mask"):
            if k not in it:
                raise ValueError(f"test item {j} has no {k!r}; got keys {sorted(it)}")
        img = np.asarray(it["image"])
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(f"test item {j}: image must be (H, W, 3) uint8; got {img.shape} {img.dtype}")
        if shape is None:
            shape = img.shape[:2]
        H, W_ = shape
        arrs = {
            "normals": (np.asarray(it["normals"], np.float32), (H, W_, 3)),
            "W": (np.asarray(it["W"], np.float32), (H, W_)),
            "depth": (np.asarray(it["depth"], np.float32), (H, W_)),
            "mask": (np.asarray(it["mask"], bool), (H, W_)),
        }
        for k, (a, want) in arrs.items():
            if a.shape != want or img.shape[:2] != shape:
                raise ValueError(f"test item {j}: {k} must have shape {want} like the first image; got {a.shape}")
        m = arrs["mask"][0]
        imgs.append(img)
        normals.append(np.where(m[..., None], arrs["normals"][0], 0.0).astype(np.float32))
        Ws.append(np.where(m, arrs["W"][0], 0.0).astype(np.float32))
        depths.append(np.where(m, arrs["depth"][0], np.nan).astype(np.float32))
        masks.append(m)
        sexes.append(_sex_of(it.get("params")))
    if not imgs:
        raise ValueError("the test set is empty")
    ts = TestSet(np.stack(imgs), np.stack(normals), np.stack(Ws), np.stack(depths), np.stack(masks), sexes, ids, source)
    ts.key = _hash_arrays(ts.images, ts.normals, ts.W, ts.depth, ts.mask, extra=[ids, sexes])
    return ts


def load_test_set(data: Any, count: int | None = None, balance: bool = True) -> TestSet:
    """A test set from an existing data set.

    Args:
        data: a synthetic data set folder (:class:`monohead.synth.dataset.SyntheticHeads`) or
            any indexable object of item dicts (``image``, ``normals``, ``W``, ``depth``,
            ``mask``, optional ``params``), e.g. a ``SyntheticHeads`` or a list.
        count: how many samples (default: all).
        balance: choose half female, half male (:func:`select_balanced`) when the items'
            ``params`` say; else the first ``count``.
    """
    if isinstance(data, (str, os.PathLike)):
        root = Path(data)
        if not root.is_dir():
            raise ValueError(f"data must be a data set folder; {str(root)!r} is not a folder")
        from .synth.dataset import SyntheticHeads

        ds: Any = SyntheticHeads(root)
        source: dict[str, Any] = {"kind": "folder", "root": str(root.resolve()), "manifest": ds.manifest}
    elif hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        ds = data
        source = {"kind": type(data).__name__, "meta": getattr(data, "meta", None) or getattr(data, "manifest", None)}
    else:
        raise TypeError(f"data must be a data set folder or an indexable data set; got {type(data).__name__}")
    n = len(ds)
    if n == 0:
        raise ValueError("the data set is empty")
    want = n if count is None else min(_check_count(count), n)
    if balance and want < n:
        pos = select_balanced([_sex_of(ds[i].get("params")) for i in range(n)], want)
    else:
        pos = list(range(want))
    items = [ds[i] for i in pos]
    ids = [int(it.get("index", p)) for it, p in zip(items, pos)]
    source["count"] = len(pos)
    return _stack_items(items, ids, source)


def make_test_set(
    folder: Any,
    *,
    count: int = DEFAULT_COUNT,
    seed: int = DEFAULT_SEED,
    size: int = DEFAULT_SIZE,
    spp: int = 16,
    callback: Callable[[int, int], None] | None = None,
) -> TestSet:
    """Render (or resume) the balanced synthetic test set in ``folder`` and load it.

    The indices are chosen by :func:`balanced_indices`; the data set ``0 .. max index`` (a
    few more samples than ``count``, as the sexes are drawn at random) is generated by
    :func:`monohead.synth.dataset.generate` in ``folder`` (resumable, shards), and the chosen
    samples are returned.

    Args:
        folder: data set folder (created); a folder holding another data set is an error.
        count, seed, size, spp: the test set (``size x size`` images, ``spp`` samples per pixel).
        callback: ``callback(done, total)`` after each rendered sample.
    """
    from .synth import dataset

    indices, sexes = balanced_indices(seed, count, size)
    total = indices[-1] + 1
    info = dataset.generate(folder, total, seed=seed, size=size, spp=spp, preview=False, progress=callback)
    ds = dataset.SyntheticHeads(folder)
    items = [ds[i] for i in indices]
    got = [_sex_of(it.get("params")) for it in items]
    if got != sexes:  # pragma: no cover - the generator changed under our feet
        raise RuntimeError("the rendered samples' sexes differ from their parameters'")
    source = {"kind": "generated", "root": str(Path(folder).resolve()), "seed": seed, "size": size, "spp": spp,
              "data_set_count": total, "rendered_now": int(info.get("generated", 0)),
              "seconds_per_sample": info.get("seconds_per_sample"), "settings": ds.manifest.get("settings")}  # fmt: skip
    return _stack_items(items, indices, source)


# --------------------------------------------------------------------------------------------
# Predictors
# --------------------------------------------------------------------------------------------


def _state_sha256(module: Any) -> str:
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _resolve_model(model: Any, model_key: str | None) -> tuple[Any, str, dict[str, Any]]:
    """``(predictor, cache key, info)``; the predictor is ``"oracle"``, a torch module or a callable."""
    if model is None:
        from .model import load_pretrained
        from .model.weights import WEIGHTS_DIR, WEIGHTS_FILE

        net = load_pretrained()
        card = dict(getattr(net, "card", {}) or {})
        key = "shipped:" + (card.get("sha256") or _io.file_sha256(WEIGHTS_DIR / WEIGHTS_FILE))
        info = {"name": "shipped weights (monohead/model/weights/unet.pt)", "card": card}
    elif isinstance(model, str) and model == "oracle":
        net, key, info = "oracle", "oracle", {"name": "oracle: the true N, W and mask (no network)"}
    elif isinstance(model, (str, os.PathLike)):
        from .model import load_generator

        if not Path(model).exists():
            raise FileNotFoundError(f"model: no such file or folder: {model}")
        net = load_generator(model)
        src = Path(net.info["source"])
        key = "file:" + _io.file_sha256(src)
        card_path = src.parent / "model_card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        info = {"name": str(model), "source": {k: net.info.get(k) for k in ("source", "kind", "step", "images_seen", "w_scale")},
                "card": card}  # fmt: skip
    elif is_torch_module(model):
        net = model
        key = "module:" + _state_sha256(model)
        card = dict(getattr(model, "card", {}) or {})
        info = {"name": f"{type(model).__module__}.{type(model).__qualname__} (module passed in)", "card": card,
                "source": getattr(model, "info", None)}  # fmt: skip
    elif callable(model):
        net = model
        key = f"callable:{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', type(model).__qualname__)}"
        info = {"name": key.split(":", 1)[1] + " (callable passed in)"}
    else:
        raise TypeError(
            f"model must be None, 'oracle', a weights path, a torch module or a callable; got {type(model).__name__}"
        )
    if model_key is not None:
        if not isinstance(model_key, str):
            raise TypeError(f"model_key must be a str; got {type(model_key).__name__}")
        key = model_key
    info["key"] = key
    return net, key, info


def _predict(
    net: Any, ts: TestSet, callback: Callable[[int, int], None], batch: int = 32, flip: bool = False
) -> dict[str, np.ndarray]:
    n = len(ts)
    if isinstance(net, str) and net == "oracle":
        callback(n, n)
        return {"normals": ts.normals.copy(), "W": ts.W.copy(), "mask": ts.mask.copy()}
    out: dict[str, list[np.ndarray]] = {"normals": [], "W": [], "mask": []}
    for s in range(0, n, batch):
        imgs = ts.images[s : s + batch]
        if is_torch_module(net):
            from .model import predict

            N, W, M = predict(net, imgs, batch_size=batch, flip=flip)
        else:
            N, W, M = net(imgs)
        N, W, M = np.asarray(N, np.float32), np.asarray(W, np.float32), np.asarray(M, bool)
        b = imgs.shape[0]
        if N.shape != (b, *ts.normals.shape[1:]) or W.shape != (b, *ts.W.shape[1:]) or M.shape != W.shape:
            raise ValueError(
                f"the predictor must return normals (B, H, W, 3), W (B, H, W) and mask (B, H, W) for {b} images; "
                f"got {N.shape}, {W.shape}, {M.shape}"
            )
        out["normals"].append(np.where(M[..., None], N, 0.0).astype(np.float32))
        out["W"].append(np.where(M, W, 0.0).astype(np.float32))
        out["mask"].append(M)
        callback(min(n, s + batch), n)
    return {k: np.concatenate(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _table1(ts: TestSet, pred: dict[str, np.ndarray], select: np.ndarray) -> dict[str, Any]:
    from .evaluate import angular_error_stats, mask_precision_recall

    pm, tm = pred["mask"][select], ts.mask[select]
    precision, recall = mask_precision_recall(pm, tm)
    both = pm & tm
    out: dict[str, Any] = {"images": int(select.sum()), "mask_precision": precision, "mask_recall": recall,
                           "pixels_compared": int(both.sum())}  # fmt: skip
    if both.any():
        out.update(angular_error_stats(pred["normals"][select], ts.normals[select], both))
        out["w_mae"] = float(np.abs(pred["W"][select][both] - ts.W[select][both]).mean())
    else:
        out.update({k: math.nan for k in ("mean", "std", "median", "under_10", "under_20", "under_30", "w_mae")})
        out["count"] = 0
    return out


def _domains(mask: np.ndarray, true_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the compared domain (mask ∩ true mask) and whether it is large enough."""
    dom = mask & true_mask
    return dom, dom.reshape(dom.shape[0], -1).sum(axis=1) >= MIN_PIXELS


def _sweep(normals: np.ndarray, W: np.ndarray, mask: np.ndarray, ts: TestSet, valid: np.ndarray, lams: Sequence[float],
           callback: Callable[[int, int], None]) -> dict[str, Any]:  # fmt: skip
    from .evaluate import DepthSample, lambda_sweep

    idx = np.nonzero(valid)[0]
    if not idx.size:  # nothing to integrate (e.g. an untrained network predicts no mask)
        callback(0, 0)
        nan = [math.nan] * len(lams)
        return {"lam": [float(x) for x in lams], "sigma": nan, "variance": [[] for _ in lams], "samples": [],
                "best_lam": PAPER_LAMBDA, "best_sigma": math.nan}  # fmt: skip
    samples = [DepthSample(normals[i], W[i], mask[i], ts.depth[i]) for i in idx]
    table = lambda_sweep(samples, list(lams), theta=THETA, callback=callback)
    return {
        "lam": [float(x) for x in table["lam"]],
        "sigma": [float(x) for x in table["sigma"]],
        "variance": np.asarray(table["variance"]).tolist(),
        "samples": [int(i) for i in idx],
        "best_lam": float(table["best_lam"]),
        "best_sigma": float(table["best_sigma"]),
    }


def _integrate_method(method: str, lam: float, normals: np.ndarray, W: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Depth (pixels, NaN outside ``mask``) of one sample by one integrator."""
    from .integration import dct_poisson, frankot_chellappa, integrate

    if method == "wls":
        return integrate(normals, W, lam, mask)
    filled = np.array(normals, np.float64)
    filled[~mask] = (0.0, 0.0, 1.0)
    depth = (dct_poisson if method == "dct" else frankot_chellappa)(filled)
    depth[~mask] = np.nan
    return depth


def _table2_task(depths: list[np.ndarray], domains: list[np.ndarray], true_depths: list[np.ndarray],
                 true_masks: list[np.ndarray], progress: Callable[[], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Mesh errors of reconstructions (meshed on their domains) against the true surfaces.

    Each reconstruction is aligned by :func:`monohead.evaluate.icp` (point-to-plane, from the
    centroids) fitted on every :data:`ICP_STRIDE`-th vertex, then all its vertices are compared
    by :func:`monohead.evaluate.mesh_errors_set` (``align=False``). Pairs whose ICP fails are
    left out and counted in ``icp_failed``.
    """
    from .evaluate import apply_transform, icp, mesh_errors_set
    from .geometry import MeshSurface, depth_to_mesh

    failed = 0

    def pairs() -> Iterable[tuple[Any, Any]]:
        nonlocal failed
        for d, dom, t, tm in zip(depths, domains, true_depths, true_masks):
            surface = MeshSurface(depth_to_mesh(t, tm), "true mesh")
            P = np.asarray(depth_to_mesh(np.where(dom, d, np.nan), dom).vertices)
            stride = max(1, min(ICP_STRIDE, P.shape[0] // 64))
            try:
                T = icp(P[::stride], surface).transform
            except ValueError:  # too few correspondences: the alignment failed
                failed += 1
            else:
                yield apply_transform(T, P), surface
            if progress is not None:
                progress()

    out = mesh_errors_set(pairs(), align=False)
    out["icp_failed"] = failed
    return out


def _table2_methods(best_lam: float) -> list[tuple[str, str, float]]:
    """``(label, method, λ)`` rows of Table 2."""
    rows = [(f"WLS, λ = {best_lam:g} (best of the sweep)", "wls", best_lam)]
    if not math.isclose(best_lam, PAPER_LAMBDA):
        rows.append((f"WLS, λ = {PAPER_LAMBDA:g} (paper)", "wls", PAPER_LAMBDA))
    if best_lam != 0.0:
        rows.append(("least squares (λ = 0)", "wls", 0.0))
    rows += [("DCT Poisson (full rectangle)", "dct", 0.0), ("Frankot-Chellappa (full rectangle)", "fc", 0.0)]
    return rows


def _table2(ts: TestSet, pred: dict[str, np.ndarray], best_pred: float, best_true: float, workers: int,
            callback: Callable[[int, int], None]) -> dict[str, Any]:  # fmt: skip
    blocks = [("predicted", pred["normals"], pred["W"], pred["mask"], best_pred),
              ("true", ts.normals, ts.W, ts.mask, best_true)]  # fmt: skip
    rows: list[dict[str, Any]] = []  # in table order; "task" points into tasks
    tasks = []
    for block, normals, W, mask, best in blocks:
        dom, valid = _domains(mask, ts.mask)
        idx = np.nonzero(valid)[0]
        for label, method, lam in _table2_methods(best):
            rows.append(
                {"block": block, "label": label, "method": method, "lam": lam, "samples": int(idx.size), "pairs": 0}
            )
            if not idx.size:  # nothing to compare (e.g. an untrained network predicts no mask)
                continue
            depths = [_integrate_method(method, lam, normals[i], W[i], mask[i]) for i in idx]
            rows[-1]["task"] = len(tasks)
            tasks.append((depths, [dom[i] for i in idx], [ts.depth[i] for i in idx], [ts.mask[i] for i in idx]))
    total = sum(len(t[0]) for t in tasks)
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    done = 0
    callback(0, total)

    def tick() -> None:
        nonlocal done
        done += 1
        callback(done, total)

    if workers <= 1 or len(tasks) <= 1:
        for k, args in enumerate(tasks):
            results[k] = _table2_task(*args, progress=tick)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(
            max_workers=min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn")
        ) as ex:
            futures = {ex.submit(_table2_task, *args): k for k, args in enumerate(tasks)}
            for fut in as_completed(futures):
                k = futures[fut]
                results[k] = fut.result()
                done += len(tasks[k][0])
                callback(done, total)
    for row in rows:
        k = row.pop("task", None)
        if k is not None:
            row.update(results[k] or {})
    return {"rows": rows}


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _io.atomic_write_bytes(path, buf.getvalue())


def _plot_sweeps(sweep: dict[str, Any], oracle: dict[str, Any], path: Path) -> None:
    """Fig. 8: σ(λ) with the predicted maps (left) and with the true maps (right)."""
    fig = _new_figure(10.0, 3.6)
    for k, (tab, title, colour) in enumerate(((sweep, "predicted N, W (the pipeline)", "tab:blue"),
                                              (oracle, "true N, W (oracle)", "tab:green"))):  # fmt: skip
        ax = fig.add_subplot(1, 2, k + 1)
        lam, sigma = np.asarray(tab["lam"]), np.asarray(tab["sigma"])
        ax.plot(lam, sigma, "o-", color=colour)
        if np.isfinite(sigma).any():
            b = int(np.nanargmin(sigma))
            ax.plot([lam[b]], [sigma[b]], "o", color="tab:red", label=f"best λ = {lam[b]:g}")
        ax.axvline(PAPER_LAMBDA, color="0.5", linestyle=":", label=f"paper's λ = {PAPER_LAMBDA:g}")
        ax.set_xlabel("λ")
        ax.set_ylabel("σ (pixels)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper right")
    fig.suptitle(f"Effect of λ on the reconstruction error ({len(sweep['samples'])} test heads)", fontsize=11)
    fig.tight_layout()
    _save_png(fig, path)


def _prediction_png(ts: TestSet, pred: dict[str, np.ndarray], rows: int) -> bytes | None:
    """Fig. 5 (photo, N true | predicted, W true | predicted) for the first ``rows`` samples."""
    try:
        from .model.predict import prediction_figure
        from .model.unet import W_SCALE
    except ImportError:  # no torch: no figure
        return None
    kept = [{"image": ts.images[i], "normals": ts.normals[i], "W": ts.W[i], "mask": ts.mask[i],
             "pred_normals": pred["normals"][i], "pred_W": pred["W"][i], "pred_mask": pred["mask"][i]}
            for i in range(min(rows, len(ts)))]  # fmt: skip
    return prediction_figure(kept, W_SCALE)


# --------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------


def _photo(name: str) -> Any:
    if name == "astronaut":
        from skimage import data

        return data.astronaut()
    import matplotlib.cbook

    return matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def _photos(
    net: Any, lam: float, figures: Path, meshes: Path, callback: Callable[[int, int], None], flip: bool = False
) -> list[dict[str, Any]]:
    from . import geometry
    from .photo import preview_png, reconstruct

    out = []
    callback(0, len(PHOTOS))
    for k, name in enumerate(PHOTOS):
        entry: dict[str, Any] = {"photo": name}
        try:
            rec = reconstruct(_photo(name), lam=lam, model=net, flip=flip)
        except (ValueError, TypeError, OSError) as exc:  # no face found, unreadable photo
            entry["error"] = str(exc)
        else:
            fig = figures / f"photo_{name}.png"
            mesh = meshes / f"{name}.ply"
            _io.atomic_write_bytes(fig, preview_png(rec, title=f"{name} (λ = {lam:g})"))
            geometry.save_mesh(rec.mesh, mesh)
            entry.update(figure=f"{figures.name}/{fig.name}", mesh=f"{meshes.name}/{mesh.name}",
                         vertices=int(len(rec.mesh.vertices)), face_box=None if rec.face_box is None else list(rec.face_box),
                         seconds={s: float(v) for s, v in rec.seconds.items()})  # fmt: skip
        out.append(entry)
        callback(k + 1, len(PHOTOS))
    return out


# --------------------------------------------------------------------------------------------
# Caching
# --------------------------------------------------------------------------------------------


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([_CACHE_FORMAT, *parts], sort_keys=True, default=str).encode()).hexdigest()


def _load_json(path: Path, key: str) -> Any:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("value") if isinstance(data, dict) and data.get("key") == key else None


def _save_json(path: Path, key: str, value: Any) -> None:
    _io.atomic_write_text(path, json.dumps({"key": key, "value": value}, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def _load_predictions(path: Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return {k: z[k] for k in ("normals", "W", "mask")}
    except (OSError, KeyError, ValueError):
        return None


def _save_predictions(path: Path, key: str, pred: dict[str, np.ndarray]) -> None:
    with _io.atomic_open(path, "wb") as f:
        np.savez_compressed(f, key=np.array(key), **pred)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_count(count: Any, name: str = "count") -> int:
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or int(count) < 1:
        raise ValueError(f"{name} must be a positive integer; got {count!r}")
    return int(count)


def _check_lams(lams: Any) -> list[float]:
    if isinstance(lams, (str, bytes)) or not isinstance(lams, Iterable):
        raise TypeError(f"lams must be a sequence of numbers; got {type(lams).__name__}")
    out = []
    for x in lams:
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)) or float(x) < 0:
            raise ValueError(f"lams must hold finite numbers >= 0; got {x!r}")
        out.append(float(x))
    if not out:
        raise ValueError("lams is empty: need at least one λ")
    return out


# --------------------------------------------------------------------------------------------
# The experiments
# --------------------------------------------------------------------------------------------


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
    """Run the paper's experiments and write ``out/report.md`` with its figures (see the module docstring).

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
    count = _check_count(count)
    size = _check_count(size, "size")
    spp = _check_count(spp, "spp")
    lams = _check_lams(lams)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if workers is None:
        workers = max(1, min(8, os.cpu_count() or 1))
    workers = _check_count(workers, "workers")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    if isinstance(out, bytes) or not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a str or os.PathLike; got {type(out).__name__}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ValueError(f"out must be a folder; {str(root)!r} is a file")
    cache, figures, meshes = root / "cache", root / "figures", root / "meshes"
    for d in (root, cache, figures, meshes):
        d.mkdir(parents=True, exist_ok=True)

    def report(stage: str) -> Callable[[int, int], None]:
        def cb(done: int, total: int) -> None:
            if callback is not None:
                callback(stage, int(done), int(total))

        return cb

    stages: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()

    def finish(stage: str, t0: float, cached: bool, total: int | None = None) -> None:
        stages[stage] = {"seconds": time.perf_counter() - t0, "cached": cached}
        if cached and total is not None:
            report(stage)(total, total)

    # The predictor first: a missing model must fail before the test set is rendered.
    t_model = time.perf_counter()
    net, mkey, minfo = _resolve_model(model, model_key)
    flip = bool(flip) and is_torch_module(net)
    if flip:
        mkey += ":flip"
    minfo["flip"], minfo["key"] = flip, mkey
    t_model = time.perf_counter() - t_model

    # 1. The test set.
    t0 = time.perf_counter()
    if data is not None:
        ts = load_test_set(data, count)
        report("testset")(len(ts), len(ts))
        finish("testset", t0, False)
    else:
        folder = cache / f"testset_seed{int(seed)}_n{count}_{size}px_spp{spp}"
        ts = make_test_set(folder, count=count, seed=int(seed), size=size, spp=spp, callback=report("testset"))
        finish("testset", t0, ts.source["rendered_now"] == 0)  # generate() reported the progress

    # 2. Predictions.
    t0 = time.perf_counter() - t_model
    pkey = _key("predictions", ts.key, mkey)
    ppath = cache / "predictions.npz"
    pred = _load_predictions(ppath, pkey)
    if pred is None:
        pred = _predict(net, ts, report("predict"), flip=flip)
        _save_predictions(ppath, pkey, pred)
        finish("predict", t0, False)
    else:
        finish("predict", t0, True, len(ts))

    # 3. Table 1.
    t0 = time.perf_counter()
    sexes = np.array([s or "" for s in ts.sex])
    table1 = {"all": _table1(ts, pred, np.ones(len(ts), bool))}
    for sex in ("female", "male"):
        if (sexes == sex).any():
            table1[sex] = _table1(ts, pred, sexes == sex)
    report("table1")(1, 1)
    finish("table1", t0, False)

    # 4. §4.2: λ sweeps. From here on the predicted normals are integrated as the pipeline
    # integrates them (monohead.reconstruct): slopes limited to Nz >= MIN_NZ (Table 1 above
    # scores the raw prediction).
    from .photo import MIN_NZ, limit_slope

    pred = dict(pred)
    pred["normals"] = np.stack([limit_slope(n, m) for n, m in zip(pred["normals"], pred["mask"])])
    t0 = time.perf_counter()
    _, valid = _domains(pred["mask"], ts.mask)
    skey = _key("sweep", pkey, lams, THETA, MIN_PIXELS, "min_nz", MIN_NZ)
    sweep = _load_json(cache / "sweep.json", skey)
    if sweep is None:
        sweep = _sweep(pred["normals"], pred["W"], pred["mask"], ts, valid, lams, report("sweep"))
        _save_json(cache / "sweep.json", skey, sweep)
        finish("sweep", t0, False)
    else:
        finish("sweep", t0, True, len(lams) * int(valid.sum()))
    t0 = time.perf_counter()
    _, tvalid = _domains(ts.mask, ts.mask)
    okey = _key("oracle_sweep", ts.key, lams, THETA, MIN_PIXELS, "min_nz", MIN_NZ)
    oracle = _load_json(cache / "oracle_sweep.json", okey)
    if oracle is None:
        true_limited = np.stack([limit_slope(n, m) for n, m in zip(ts.normals, ts.mask)])
        oracle = _sweep(true_limited, ts.W, ts.mask, ts, tvalid, lams, report("oracle_sweep"))
        _save_json(cache / "oracle_sweep.json", okey, oracle)
        finish("oracle_sweep", t0, False)
    else:
        finish("oracle_sweep", t0, True, len(lams) * int(tvalid.sum()))
    best = float(sweep["best_lam"])

    # 5. Figures: Fig. 8, Fig. 6 (the sample of median error at the best λ), Fig. 5.
    t0 = time.perf_counter()
    from .evaluate import plot_depth_comparison
    from .integration import integrate

    fig_files: dict[str, str] = {}
    _plot_sweeps(sweep, oracle, figures / "fig8_lambda_sweep.png")
    fig_files["fig8"] = "figures/fig8_lambda_sweep.png"
    fig6: dict[str, Any] | None = None
    if sweep["samples"]:
        kbest = int(np.argmin(np.abs(np.asarray(sweep["lam"]) - best)))
        order = np.argsort(np.asarray(sweep["variance"][kbest]), kind="stable")
        i6 = int(sweep["samples"][int(order[(len(order) - 1) // 2])])
        depth6 = integrate(pred["normals"][i6], pred["W"][i6], best, pred["mask"][i6])
        stats6 = plot_depth_comparison(
            ts.depth[i6], depth6, figures / "fig6_sample.png", mask=pred["mask"][i6], theta=THETA
        )
        fig_files["fig6"] = "figures/fig6_sample.png"
        fig6 = {"sample": i6, "id": ts.ids[i6], "sex": ts.sex[i6], "lam": best, **stats6}
    png5 = _prediction_png(ts, pred, 4)
    if png5 is not None:
        _io.atomic_write_bytes(figures / "fig5_predictions.png", png5)
        fig_files["fig5"] = "figures/fig5_predictions.png"
    report("figures")(1, 1)
    finish("figures", t0, False)

    # 6. Table 2 analogue.
    t0 = time.perf_counter()
    tkey = _key("table2", pkey, best, float(oracle["best_lam"]), MIN_PIXELS, ICP_STRIDE, _table2_methods(best),
                _table2_methods(float(oracle["best_lam"])))  # fmt: skip
    table2 = _load_json(cache / "table2.json", tkey)
    if table2 is None:
        table2 = _table2(ts, pred, best, float(oracle["best_lam"]), workers, report("table2"))
        _save_json(cache / "table2.json", tkey, table2)
        finish("table2", t0, False)
    else:
        finish("table2", t0, True, sum(r["samples"] for r in table2["rows"]))

    # 6b. Complete heads (monohead.fullhead): visible and hidden side errors, when the test set
    # is a synthetic data set folder (its samples' parameters give the whole true heads).
    t0 = time.perf_counter()
    full_head = None
    if ts.source.get("root"):
        from .evaluate import full_head as fh

        fkey = _key("full_head", pkey, best, "v1")
        full_head = _load_json(cache / "full_head.json", fkey)
        if full_head is None:
            full_head = fh.evaluate_test_set(ts.source["root"], ts.ids, pred["normals"], pred["W"], pred["mask"], lam=best,
                                             callback=report("full_head"))  # fmt: skip
            _save_json(cache / "full_head.json", fkey, full_head)
            finish("full_head", t0, False)
        else:
            finish("full_head", t0, True, len(ts))
    else:
        finish("full_head", t0, False)

    # 7. Real photos.
    t0 = time.perf_counter()
    photo_results: list[dict[str, Any]] = []
    photo_note = ""
    if not photos:
        photo_note = "not run (photos=False / --no-photos)"
    elif isinstance(net, str) and net == "oracle":
        photo_note = "not run: the oracle predictor has no ground truth for real photos"
    else:
        phkey = _key("photos", mkey, best, PHOTOS)
        photo_results = _load_json(cache / "photos.json", phkey)
        ok = photo_results is not None and all(
            "error" in p or ((root / p["figure"]).is_file() and (root / p["mesh"]).is_file()) for p in photo_results
        )
        if not ok:
            photo_results = _photos(net, best, figures, meshes, report("photos"), flip=flip)
            _save_json(cache / "photos.json", phkey, photo_results)
            finish("photos", t0, False)
        else:
            finish("photos", t0, True, len(PHOTOS))
    if "photos" not in stages:
        finish("photos", t0, False)
    for p in photo_results or []:
        if "figure" in p:
            fig_files[f"photo_{p['photo']}"] = p["figure"]

    # 8. The report.
    t0 = time.perf_counter()
    n_f = sum(s == "female" for s in ts.sex)
    n_m = sum(s == "male" for s in ts.sex)
    results: dict[str, Any] = {
        "report": str(root / "report.md"),
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "test_set": {
            "count": len(ts),
            "female": n_f,
            "male": n_m,
            "unknown_sex": len(ts) - n_f - n_m,
            "size": list(ts.images.shape[1:3]),
            "ids": ts.ids,
            "key": ts.key,
            "source": ts.source,
        },  # fmt: skip
        "model": minfo,
        "table1": table1,
        "sweep": sweep,
        "oracle_sweep": oracle,
        "excluded": {"predicted": int((~valid).sum()), "true": int((~tvalid).sum())},
        "fig6": fig6,
        "table2": table2,
        "full_head": full_head,
        "photos": photo_results or [],
        "photos_note": photo_note,
        "figures": fig_files,
        "stages": stages,
        "paper": {"table1": PAPER_TABLE1, "table2": PAPER_TABLE2, "lambda": PAPER_LAMBDA},
    }
    report("report")(0, 1)
    stages["report"] = {"seconds": time.perf_counter() - t0, "cached": False}
    results["seconds"] = time.perf_counter() - started
    _io.atomic_write_text(root / "report.md", render_report(results))
    _io.atomic_write_text(root / "results.json", json.dumps(results, indent=1, default=_json_default) + "\n")
    report("report")(1, 1)
    return json.loads(json.dumps(results, default=_json_default))


# --------------------------------------------------------------------------------------------
# The Markdown report
# --------------------------------------------------------------------------------------------


def _f(x: Any, digits: int = 2, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}{unit}"


def table1_markdown(results: dict[str, Any]) -> str:
    """Table 1 as a Markdown table (paper | ours, all | female | male)."""
    t1 = results["table1"]
    cols = [c for c in ("all", "female", "male") if c in t1]
    names = {"all": f"ours ({t1['all']['images']} heads)", "female": f"female-looking ({t1.get('female', {}).get('images', 0)})",
             "male": f"male-looking ({t1.get('male', {}).get('images', 0)})"}  # fmt: skip
    head = "| | paper | " + " | ".join(names[c] for c in cols) + " |"
    sep = "|---|---:|" + "---:|" * len(cols)
    rows = [
        ("Mask precision", "mask_precision", " %"),
        ("Mask recall", "mask_recall", " %"),
        ("Angular error, mean", "mean", "°"),
        ("Angular error, std", "std", "°"),
        ("< 10°", "under_10", " %"),
        ("< 20°", "under_20", " %"),
        ("< 30°", "under_30", " %"),
    ]
    lines = [head, sep]
    for label, key, unit in rows:
        lines.append(
            f"| {label} | {_f(PAPER_TABLE1[key], 2, unit)} | "
            + " | ".join(_f(t1[c].get(key), 2, unit) for c in cols)
            + " |"
        )
    lines.append(
        "| W = \\|∇h\\|, mean abs. error | n/a | " + " | ".join(_f(t1[c].get("w_mae"), 3) for c in cols) + " |"
    )
    return "\n".join(lines)


def sweep_markdown(results: dict[str, Any]) -> str:
    """σ(λ) of both sweeps as a Markdown table."""
    s, o = results["sweep"], results["oracle_sweep"]
    lines = ["| λ | σ, predicted N, W (px) | σ, true N, W (px) |", "|---:|---:|---:|"]
    for k, lam in enumerate(s["lam"]):
        a = _f(s["sigma"][k], 3)
        b = _f(o["sigma"][k], 3) if k < len(o["sigma"]) else "n/a"
        if math.isclose(lam, s["best_lam"]):
            a = f"**{a}**"
        if k < len(o["lam"]) and math.isclose(lam, o["best_lam"]):
            b = f"**{b}**"
        lines.append(f"| {lam:g} | {a} | {b} |")
    return "\n".join(lines)


def table2_markdown(results: dict[str, Any]) -> str:
    """The Table 2 analogue as a Markdown table."""
    lines = [
        "| N, W | integration | heads | mean | std | median | 90 % | ē | σ (eq. 9) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["table2"]["rows"]:
        lines.append(
            f"| {r['block']} | {r['label']} | {r.get('pairs', r['samples'])} | {_f(r.get('mean'), 3)} | {_f(r.get('std'), 3)} | "
            f"{_f(r.get('median'), 3)} | {_f(r.get('p90'), 3)} | {_f(r.get('e_bar'), 3)} | {_f(r.get('sigma'), 3)} |"
        )
    p = PAPER_TABLE2
    lines.append(f"| paper (BU-3DFE, mm) | ours | 100 | {p['mean']:.2f} | {p['std']:.2f} | {p['median']:.2f} | {p['p90']:.2f} | "
                 f"{p['e_bar']:.2f} | {p['sigma']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def _model_lines(m: dict[str, Any]) -> list[str]:
    lines = [f"- Predictor: {m.get('name')}", f"- Cache key: `{m.get('key')}`"]
    card = m.get("card") or {}
    if card:
        tr = card.get("training") or {}
        bits = [
            f"{k} {card[k]}" for k in ("dtype", "parameters", "exported", "monohead_version") if card.get(k) is not None
        ]
        if tr.get("step") is not None:
            bits.append(f"trained {tr.get('step')} steps, {tr.get('images_seen')} images seen")
        if bits:
            lines.append("- Model card: " + "; ".join(str(b) for b in bits))
        lines += [
            "",
            "<details><summary>model card</summary>",
            "",
            "```json",
            json.dumps(card, indent=1, default=str),
            "```",
            "",
            "</details>",
        ]
    src = m.get("source")
    if src:
        lines.append(f"- Weights: {json.dumps(src, default=str)}")
    return lines


def render_report(results: dict[str, Any]) -> str:
    """The Markdown report of :func:`run_experiments`' results."""
    ts = results["test_set"]
    src = ts["source"]
    s, o = results["sweep"], results["oracle_sweep"]
    figs = results["figures"]
    L: list[str] = []
    L += ["# monohead: the paper's experiments", ""]
    L += [f"- Date: {results['date']}", f"- Command: `{results['command'] or 'monohead.experiments.run_experiments(...)'}`",
          f"- Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}",
          f"- Total time: {results['seconds']:.1f} s"]  # fmt: skip
    L += _model_lines(results["model"])
    if src.get("kind") == "generated":
        desc = (f"rendered by `monohead.synth` (seed {src['seed']}, disjoint from the training seeds; "
                f"{src['size']}x{src['size']} px, {src['spp']} samples per pixel; samples {ts['ids'][0]} to "
                f"{ts['ids'][-1]} of that seed, chosen for the sexes; generator settings "
                f"`{json.dumps(src.get('settings'), default=str)}`)")  # fmt: skip
    else:
        desc = f"read from {src.get('root') or src.get('kind')}"
    L += [f"- Test set: {ts['count']} heads ({ts['female']} female-looking, {ts['male']} male-looking"
          + (f", {ts['unknown_sex']} without that notion" if ts["unknown_sex"] else "") + f"), {desc}", ""]  # fmt: skip

    L += ["## Table 1: masks and normals (§4.1)", "", table1_markdown(results), ""]
    L += ["Mask precision and recall are pooled over all pixels of all test images. The angular error "
          "is pooled over the pixels inside both the true and the predicted mask of all images "
          f"({results['table1']['all'].get('count', 0)} pixels). The paper's numbers are for its own "
          "test set of 200 synthetic heads.", ""]  # fmt: skip
    if "fig5" in figs:
        L += [f"![Fig. 5: photo, N true and predicted, W true and predicted]({figs['fig5']})", ""]

    L += ["## λ sweep (§4.2, Fig. 8)", ""]
    L += ["For each λ, each test head's predicted normals are integrated with its predicted W "
          "(w = 1 / (1 + λW), `monohead.integrate`) on its predicted mask and compared with the true "
          "depth on the intersection of the two domains: Err = d_GT − d_R, M = median(Err), σ_M = std "
          f"of Err in [M − θ, M + θ] (θ = {THETA:g} px), V = variance of Err in [M − 3σ_M, M + 3σ_M]; "
          "σ = sqrt(Σ V_i / N). The median absorbs the unknown offset of the integrated depth. The "
          "oracle curve does the same with the true N, W and mask (the integrator alone).", ""]  # fmt: skip
    L += [sweep_markdown(results), ""]
    best_text = (f"Best λ: **{s['best_lam']:g}** (σ = {_f(s['best_sigma'], 3)} px) with the predicted maps, " if s["samples"]
                 else f"Best λ: none with the predicted maps (no head to integrate; λ = {s['best_lam']:g} is used below), ")  # fmt: skip
    L += [best_text +
          f"{o['best_lam']:g} (σ = {_f(o['best_sigma'], 3)} px) with the true maps; the paper found 0.1. "
          f"Heads used: {len(s['samples'])} (predicted; {results['excluded']['predicted']} left out with fewer than "
          f"{MIN_PIXELS} pixels in both masks), {len(o['samples'])} (true).", ""]  # fmt: skip
    L += [f"![Fig. 8: σ against λ]({figs['fig8']})", ""]
    f6 = results["fig6"]
    if f6:
        L += [f"Fig. 6: test head {f6['id']} ({f6['sex'] or 'sex n/a'}), the one with the median V at λ = {f6['lam']:g}: "
              f"M = {_f(f6['median'], 2)} px, σ_M = {_f(f6['sigma_m'], 3)} px, V = {_f(f6['variance'], 3)} px², "
              f"{int(f6['inliers'])} of {int(f6['count'])} pixels within M ± 3σ_M.", ""]  # fmt: skip
        L += [
            f"![Fig. 6: (a) ground truth, (b) reconstruction, (c) residuals, (d) error after removing M]({figs['fig6']})",
            "",
        ]
    else:
        L += ["Fig. 6: no test head could be integrated (no predicted mask overlaps a true one).", ""]

    L += ["## Table 2 analogue: mesh errors after ICP (§4.3)", ""]
    L += ["Each reconstructed depth (pixels of the test image) becomes a mesh (one vertex per pixel) on the "
          "intersection of its mask and the true mask, is aligned to the true head surface (the mesh of "
          "the true depth over the true mask) by point-to-plane ICP (started from the centroids, fitted "
          f"on every {ICP_STRIDE}th vertex), and is compared with it on all its vertices: mean, std, "
          "median and 90th percentile (our reading of the paper's \"90 % largest\") of the vertices' "
          "distances to the true surface (pooled over all heads), ē and σ of eq. 9 (signed errors along the true normals at the nearest true vertex; ē "
          "is the mean of the per-head means, σ = sqrt(mean of the per-head variances)). All in pixels. "
          "DCT Poisson and Frankot-Chellappa integrate the full rectangle: the normals outside the mask "
          "are set to (0, 0, 1), and only the mask is kept. Rows 'predicted' use the network's N, W and "
          "mask (the whole pipeline); rows 'true' the true ones (the integrators alone). The paper's row "
          "is on BU-3DFE scans in millimetres: another data set and unit.", ""]  # fmt: skip
    L += [table2_markdown(results), ""]
    failed = sum(int(r.get("icp_failed", 0)) for r in results["table2"]["rows"])
    if failed:
        L += [
            f"ICP failed (too few correspondences) for {failed} reconstruction(s); they are left out, as in the paper.",
            "",
        ]

    if results.get("full_head"):
        from .evaluate.full_head import markdown as full_head_markdown

        fhr = results["full_head"]
        L += ["## Complete heads (`monohead.fullhead`)", ""]
        L += ["The head model fitted behind each reconstruction and merged with it (README, \"A complete head\"). "
              "Distances (pixels) from the true surface to each reconstruction after one ICP alignment of the 2.5D "
              "mesh: the visible side is one true point per pixel of both masks, the hidden side the points of the "
              "true skin the camera did not see (`monohead.evaluate.full_head`). "
              f"{fhr['heads']} heads, {len(fhr['failed'])} refused, {fhr['converged']} fits converged; fit "
              f"{fhr['seconds']['fit_median'] * 1e3:.0f} ms and merge {fhr['seconds']['merge_median'] * 1e3:.0f} ms "
              "per head (median).", ""]  # fmt: skip
        L += [full_head_markdown(fhr), ""]
    L += ["## Real photos (§4.3, Fig. 7)", ""]
    if results["photos_note"]:
        L += [f"Photos: {results['photos_note']}.", ""]
    for p in results["photos"]:
        if "error" in p:
            L += [f"- {p['photo']}: failed: {p['error']}"]
        else:
            sec = p["seconds"]
            L += [f"### {p['photo']}", "", f"![{p['photo']}]({p['figure']})", "",
                  f"Face box {p['face_box']}, {p['vertices']} vertices (mesh: `{p['mesh']}`), λ = {s['best_lam']:g}; "
                  + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in sec.items()), ""]  # fmt: skip
    L += ["## Timings", "", "| stage | seconds | from cache |", "|---|---:|---|"]
    for name in STAGES:
        st = results["stages"].get(name)
        if st:
            L.append(f"| {name} | {st['seconds']:.1f} | {'yes' if st['cached'] else 'no'} |")
    L.append("")
    return "\n".join(L)
