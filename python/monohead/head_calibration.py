"""A learned correction of the complete head's fitted identity and scale (issue 17).

From the network's maps, :func:`monohead.fullhead.fit_head` reads the identity ``y`` mostly as
noise and the head about 2 % too small (README, "A complete head"). An
:class:`IdentityCalibration` is a linear map, learned on synthetic **training** samples whose
true identity and scale are known, from what a fit returns (:func:`features`: the fitted
identity, expression, scale, pose, residuals) to the true identity, and to the factor between
the true and the fitted scale. It is made for one network (the maps' biases are the network's):
the file records the sha256 of the weights it was learned for, and the shipped one
(:data:`DEFAULT_FILE`, made by ``benchmarks/make_identity_calibration.py``) is used only while
they are the shipped weights (:func:`default_calibration`).

Per camera mode (``"orthographic"``, ``"perspective"``: a fit with ``K``), with ``x`` the
features and ``z = (x[columns] - mean) / sd``::

    y     = y_mean + z @ A
    scale = fitted scale * exp(scale_bias + z @ scale_coef)
    w     = clip(expression_scale * fitted w, 0, 1)      (files that have expression_scale)

The expression factors (one per blendshape, in [0, 1]) shrink weights the fit reads as
noise: on the training heads of the shipped file only ``jawOpen`` correlates with the truth
(its factor about one half: the fit opens the jaw about twice too wide), and the fitted
weights as they are miss the truth by more than the neutral face does (README, "A complete
head").
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_FILE",
    "FEATURE_POSE",
    "MODES",
    "IdentityCalibration",
    "ModeCalibration",
    "default_calibration",
    "features",
    "learn_expression_scale",
    "learn_mode",
    "load_cached",
]

log = logging.getLogger(__name__)

#: The shipped calibration (for the shipped network weights).
DEFAULT_FILE = Path(__file__).resolve().parent / "data" / "identity_calibration.npz"
#: Camera modes, each with its own map: a fit without and with ``K``.
MODES = ("orthographic", "perspective")
#: The features after the identity and the expression weights (:func:`features`).
FEATURE_POSE = (
    "log_scale",
    "yaw",
    "pitch",
    "roll",
    "rms",
    "inliers",
    "log_mask_pixels",
    "log_depth_scale",
    "converged",
)
_FORMAT = "monohead-identity-calibration/1"
#: The mode name's suffix of the maps learned on fits with image landmarks (the fit reads the
#: identity differently with them: each needs its own map).
LANDMARKS_SUFFIX = "+landmarks"
#: ``FitSettings.expression_prior`` of the calibrations written before they recorded it.
LEGACY_EXPRESSION_PRIOR = 0.5


def features(fit: Any, k: int = 100) -> np.ndarray:
    """What a :class:`~monohead.fullhead.HeadFit` returns, as one float64 vector: its identity
    padded with zeros to ``k`` modes, its expression weights, then :data:`FEATURE_POSE` (log
    scale, yaw, pitch, roll in radians, depth RMS, inlier share, log mask pixels, log depth
    scale, 1 if converged)."""
    y = np.zeros(int(k))
    n = min(int(k), int(np.asarray(fit.identity).size))
    y[:n] = np.asarray(fit.identity, np.float64)[:n]
    ypr = np.radians(fit.params()["yaw_pitch_roll"])
    rest = [math.log(fit.scale), *ypr, fit.rms if math.isfinite(fit.rms) else 0.0, fit.inliers,
            math.log(max(int(fit.mask_pixels), 1)), math.log(fit.depth_scale), float(fit.converged)]  # fmt: skip
    return np.concatenate([y, np.asarray(fit.expression, np.float64), np.asarray(rest, np.float64)])


@dataclass(frozen=True)
class ModeCalibration:
    """The map of one camera mode (see the module docstring).

    Attributes:
        columns: ``(C,)`` indices of the features used.
        mean, sd: ``(C,)`` standardisation of those features.
        y_mean: ``(K,)`` identity at the mean features.
        A: ``(C, K)`` identity map.
        scale_bias: mean log ratio of the true to the fitted scale.
        scale_coef: ``(C,)`` its dependence on the features (zeros: a constant factor).
        kind: how it was chosen (e.g. ``"shrink"``, ``"ridge:y"``), for the record.
        expression_scale: ``(E,)`` factors in [0, 1] on the fitted expression weights
            (:func:`learn_expression_scale`); ``None``: the expression is kept as fitted.
    """

    columns: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    y_mean: np.ndarray
    A: np.ndarray
    scale_bias: float = 0.0
    scale_coef: np.ndarray | None = None
    kind: str = ""
    expression_scale: np.ndarray | None = None

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``(identity (K,), scale factor)`` for the features ``x`` (:func:`features`)."""
        z = (np.asarray(x, np.float64)[self.columns] - self.mean) / self.sd
        y = self.y_mean + z @ self.A
        ls = self.scale_bias + (0.0 if self.scale_coef is None else float(z @ self.scale_coef))
        return y, math.exp(ls)

    def expression(self, w: np.ndarray) -> np.ndarray | None:
        """The calibrated ``(E,)`` expression weights for the fitted ones, or ``None`` when
        this map has no :attr:`expression_scale` (or one of another length)."""
        w = np.asarray(w, np.float64)
        if self.expression_scale is None or self.expression_scale.shape != w.shape:
            return None
        return np.clip(w * self.expression_scale, 0.0, 1.0)


@dataclass(frozen=True)
class IdentityCalibration:
    """Calibrations per camera mode, with the network weights they were learned for.

    Attributes:
        modes: ``{"orthographic": ModeCalibration, "perspective": ...}``.
        weights_sha256: sha256 of the network weights (``unet.pt``) whose maps it was learned on.
        meta: provenance (training sets and seeds, samples, cross-validation figures, command).
        expression_prior: ``FitSettings.expression_prior`` of the fits it was learned on (its
            features hold their expression weights): :func:`monohead.fullhead.fit_head` applies
            it only to fits of the same prior; ``None``: to any. Files written before the field
            existed were learned at 0.5, the default then, and load with it.
    """

    modes: dict[str, ModeCalibration]
    weights_sha256: str
    meta: dict[str, Any] = field(default_factory=dict)
    expression_prior: float | None = None

    @property
    def n_identity(self) -> int:
        """Identity modes of the fits it was learned on (and of those it applies to)."""
        return int(next(iter(self.modes.values())).y_mean.size)

    def covers(self, fit: Any) -> bool:
        """Whether it has a map for the fit's mode (camera, and landmarks or not)."""
        return _mode(fit) in self.modes

    def apply(self, fit: Any) -> tuple[np.ndarray, float]:
        """``(identity, scale factor)`` for a fit (its mode: perspective when it has a camera)
        of :attr:`n_identity` modes."""
        mode = _mode(fit)
        if mode not in self.modes:
            raise ValueError(f"the calibration has no {mode!r} map (it has {sorted(self.modes)})")
        cal = self.modes[mode]
        k = int(np.asarray(fit.identity).size)
        if k != cal.y_mean.size:
            raise ValueError(f"the calibration is for fits of {cal.y_mean.size} identity modes; this one has {k}")
        return cal.apply(features(fit, k))

    def expression(self, fit: Any) -> np.ndarray | None:
        """The calibrated expression weights of a fit (its mode's
        :meth:`ModeCalibration.expression`), or ``None`` when the map has none."""
        cal = self.modes.get(_mode(fit))
        return None if cal is None else cal.expression(fit.expression)

    def save(self, path: Any) -> None:
        """Write an ``.npz`` (atomically)."""
        from ._io import atomic_open

        arrays: dict[str, np.ndarray] = {}
        for mode, c in self.modes.items():
            arrays[f"{mode}/columns"] = np.asarray(c.columns, np.int32)
            for name in ("mean", "sd", "y_mean", "A"):
                arrays[f"{mode}/{name}"] = np.asarray(getattr(c, name), np.float32)
            coef = np.zeros(len(c.columns)) if c.scale_coef is None else c.scale_coef
            arrays[f"{mode}/scale_coef"] = np.asarray(coef, np.float32)
            if c.expression_scale is not None:
                arrays[f"{mode}/expression_scale"] = np.asarray(c.expression_scale, np.float32)
        head = {
            "format": _FORMAT,
            "weights_sha256": self.weights_sha256,
            "modes": {m: {"scale_bias": float(c.scale_bias), "kind": c.kind} for m, c in self.modes.items()},
            "meta": self.meta,
            "expression_prior": None if self.expression_prior is None else float(self.expression_prior),
        }
        arrays["header"] = np.array(json.dumps(head))
        with atomic_open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: Any) -> IdentityCalibration:
        """Read a file written by :meth:`save`; ``ValueError`` if it is not one."""
        with np.load(path, allow_pickle=False) as z:
            if "header" not in z.files:
                raise ValueError(f"{path} is not an identity calibration (no header)")
            head = json.loads(str(z["header"]))
            if head.get("format") != _FORMAT:
                raise ValueError(f"{path}: format {head.get('format')!r}, expected {_FORMAT!r}")
            modes = {}
            for mode, info in head["modes"].items():
                modes[mode] = ModeCalibration(
                    columns=z[f"{mode}/columns"].astype(np.int64),
                    mean=z[f"{mode}/mean"].astype(np.float64),
                    sd=z[f"{mode}/sd"].astype(np.float64),
                    y_mean=z[f"{mode}/y_mean"].astype(np.float64),
                    A=z[f"{mode}/A"].astype(np.float64),
                    scale_bias=float(info["scale_bias"]),
                    scale_coef=z[f"{mode}/scale_coef"].astype(np.float64),
                    kind=str(info.get("kind", "")),
                    expression_scale=(
                        z[f"{mode}/expression_scale"].astype(np.float64)
                        if f"{mode}/expression_scale" in z.files
                        else None
                    ),
                )
        return cls(
            modes=modes,
            weights_sha256=str(head["weights_sha256"]),
            meta=head.get("meta", {}),
            expression_prior=_prior_of(head),
        )


def _mode(fit: Any) -> str:
    """The mode of a fit: its camera (:data:`MODES`: perspective when it has a camera), with
    ``LANDMARKS_SUFFIX`` when it had image landmarks (``fit_head(..., canonical=...)``)."""
    base = "orthographic" if fit.camera is None else "perspective"
    return base + (LANDMARKS_SUFFIX if getattr(fit, "landmarks", 0) else "")


def _prior_of(head: dict[str, Any]) -> float | None:
    if "expression_prior" not in head:
        return LEGACY_EXPRESSION_PRIOR
    p = head["expression_prior"]
    return None if p is None else float(p)


_DEFAULT: dict[str, Any] = {}


def default_calibration() -> IdentityCalibration | None:
    """The shipped calibration if it was made for the shipped network weights (their model
    card's sha256), else ``None`` with one warning (logged) saying why. Cached."""
    if "cal" not in _DEFAULT:
        cal = None
        if not DEFAULT_FILE.is_file():
            log.warning("identity calibration %s is missing: the fitted identity is used as it is", DEFAULT_FILE)
        else:
            from ._env import WEIGHTS_CARD  # not monohead.model: the fit works without torch

            sha = json.loads(WEIGHTS_CARD.read_text())["sha256"] if WEIGHTS_CARD.is_file() else None
            loaded = IdentityCalibration.load(DEFAULT_FILE)
            if sha != loaded.weights_sha256:
                log.warning(
                    "identity calibration %s was made for network weights %s, the shipped ones are %s: not used "
                    "(make it again with benchmarks/make_identity_calibration.py)",
                    DEFAULT_FILE.name, loaded.weights_sha256[:12], str(sha)[:12],
                )  # fmt: skip
            else:
                cal = loaded
        _DEFAULT["cal"] = cal
    return _DEFAULT["cal"]


def load_cached(path: Any) -> IdentityCalibration:
    """:meth:`IdentityCalibration.load` of ``path``, cached by its resolved path (a file named
    by the caller is used whatever network it was made for)."""
    key = str(Path(path).resolve())
    if key not in _DEFAULT:
        _DEFAULT[key] = IdentityCalibration.load(key)
    return _DEFAULT[key]


def learn_expression_scale(
    fitted: Any, true: Any, *, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """One factor per blendshape on the fitted expression weights, by least squares through
    the origin (``sum(fitted * true) / sum(fitted ** 2)``, 0 for a weight never fitted),
    clipped to [0, 1].

    Args:
        fitted, true: ``(n, E)`` fitted and true expression weights of n training heads.
        folds, seed: the cross-validation of the report (samples shuffled with ``seed``).

    Returns:
        ``(scale (E,), report)``: the report gives the cross-validated mean squared weight
        error of the neutral face (all zero), of the fitted weights as they are and of the
        scaled ones.
    """
    F = np.asarray(fitted, np.float64)
    T = np.asarray(true, np.float64)
    if F.ndim != 2 or F.shape != T.shape:
        raise ValueError(f"fitted and true must both be (n, E); got {F.shape} and {T.shape}")
    if not (np.isfinite(F).all() and np.isfinite(T).all()):
        raise ValueError("fitted and true must be finite")
    if F.shape[0] < 2 * folds:
        raise ValueError(f"at least {2 * folds} samples are needed for {folds} folds; got {F.shape[0]}")

    def factors(f: np.ndarray, t: np.ndarray) -> np.ndarray:
        den = (f * f).sum(axis=0)
        a = np.where(den > 0, (f * t).sum(axis=0) / np.where(den > 0, den, 1.0), 0.0)
        return np.clip(a, 0.0, 1.0)

    fold = np.random.default_rng(seed).permutation(np.arange(F.shape[0]) % folds)
    P = np.zeros_like(F)
    for f in range(folds):
        tr, te = fold != f, fold == f
        P[te] = np.clip(F[te] * factors(F[tr], T[tr]), 0.0, 1.0)
    report = {
        "samples": int(F.shape[0]),
        "mse_neutral": float(np.mean(T**2)),
        "mse_fitted": float(np.mean((F - T) ** 2)),
        "mse_scaled": float(np.mean((P - T) ** 2)),
    }
    return factors(F, T), report


def _ridge(Z: np.ndarray, T: np.ndarray, alpha: float) -> np.ndarray:
    """``(C, K)`` ridge coefficients of the centred targets ``T`` on standardised ``Z``."""
    n, c = Z.shape
    return np.linalg.solve(Z.T @ Z + alpha * n * np.eye(c), Z.T @ T)


def _fit_one(
    X: np.ndarray, Y: np.ndarray, r: np.ndarray, kind: str, alpha: float, scale: str, k: int
) -> ModeCalibration:
    cols = np.arange(k) if kind in ("shrink", "ridge:y") else np.arange(X.shape[1])
    Xc = X[:, cols]
    mean, sd = Xc.mean(axis=0), Xc.std(axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    Z = (Xc - mean) / sd
    ym = Y.mean(axis=0)
    if kind == "shrink":  # one factor per mode, on that mode's fitted value only
        A = np.diag((Z * (Y - ym)).sum(axis=0) / ((Z**2).sum(axis=0) + alpha * len(Z)))
    elif kind == "zero":
        A = np.zeros((len(cols), Y.shape[1]))
    else:
        A = _ridge(Z, Y - ym, alpha)
    bias, coef = 0.0, None
    if scale == "bias":
        bias = float(r.mean())
    elif scale == "ridge":
        bias = float(r.mean())
        coef = _ridge(Z, (r - bias)[:, None], alpha)[:, 0]
    return ModeCalibration(cols, mean, sd, ym, A, bias, coef, f"{kind} alpha={alpha:g} scale={scale}")


def learn_mode(
    X: Any,
    Y: Any,
    log_scale_ratio: Any,
    *,
    metric: Any = None,
    folds: int = 5,
    seed: int = 0,
    kinds: tuple[str, ...] = ("zero", "shrink", "ridge:y", "ridge:all"),
    alphas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
) -> tuple[ModeCalibration, dict[str, Any]]:
    """Learn one mode's map by ``folds``-fold cross-validation.

    Args:
        X: ``(n, F)`` features of n fits (:func:`features`; the first K columns the identity).
        Y: ``(n, K)`` true identities.
        log_scale_ratio: ``(n,)`` log of the true over the fitted scale.
        metric: ``(K, K)`` positive semidefinite: the identity error counted is
            ``(y - y_true)^T metric (y - y_true)`` (e.g. the Gram matrix of the identity basis
            over the head's vertices: the mean squared vertex error); default the identity.
        folds, seed: the cross-validation's folds (samples shuffled with ``seed``).
        kinds: identity maps tried: ``"zero"`` (the mean identity), ``"shrink"`` (a factor per
            mode), ``"ridge:y"`` (ridge on the fitted identity), ``"ridge:all"`` (ridge on all
            features).
        alphas: ridge penalties tried (per sample, on standardised features).

    Returns:
        ``(calibration, report)``: the map of the lowest cross-validated identity error,
        refitted on all samples, with the scale map of the lowest cross-validated squared log
        error among none, a constant and a ridge on the features; the report lists the
        cross-validated errors of every candidate and of the fitted identity as it is.
    """
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    r = np.asarray(log_scale_ratio, np.float64).reshape(-1)
    n, k = Y.shape
    if X.ndim != 2 or X.shape[0] != n or X.shape[1] < k or r.shape != (n,):
        raise ValueError(f"X must be (n, F >= {k}) and log_scale_ratio (n,) with n = {n}; got {X.shape}, {r.shape}")
    if not (np.isfinite(X).all() and np.isfinite(Y).all() and np.isfinite(r).all()):
        raise ValueError("X, Y and log_scale_ratio must be finite")
    if n < 2 * folds:
        raise ValueError(f"at least {2 * folds} samples are needed for {folds} folds; got {n}")
    G = np.eye(k) if metric is None else np.asarray(metric, np.float64)
    fold = np.random.default_rng(seed).permutation(np.arange(n) % folds)

    def id_err(P: np.ndarray) -> float:
        D = P - Y
        return float(np.mean(np.einsum("ij,jk,ik->i", D, G, D)))

    report: dict[str, Any] = {"samples": n, "fitted_identity": id_err(X[:, :k]), "identity": {}, "scale": {}}
    cands = [(kd, a) for kd in kinds for a in (alphas if kd != "zero" else (0.0,))]
    best: tuple[float, Any] = (np.inf, None)
    for kd, a in cands:
        P = np.zeros_like(Y)
        for f in range(folds):
            tr, te = fold != f, fold == f
            c = _fit_one(X[tr], Y[tr], r[tr], kd, a, "none", k)
            P[te] = np.array([c.apply(x)[0] for x in X[te]])
        e = id_err(P)
        report["identity"][f"{kd} alpha={a:g}"] = e
        if e < best[0]:
            best = (e, (kd, a))
    s_best: tuple[float, Any] = (float(np.mean(r**2)), ("none", 0.0))
    report["scale"]["none"] = s_best[0]
    for sc, a in [("bias", 0.0)] + [("ridge", a) for a in alphas]:
        P = np.zeros(n)
        for f in range(folds):
            tr, te = fold != f, fold == f
            c = _fit_one(X[tr], Y[tr], r[tr], "zero", a, sc, k)
            P[te] = np.array([math.log(c.apply(x)[1]) for x in X[te]])
        e = float(np.mean((P - r) ** 2))
        report["scale"][f"{sc} alpha={a:g}"] = e
        if e < s_best[0]:
            s_best = (e, (sc, a))
    (kd, a), (sc, sa) = best[1], s_best[1]
    c_id = _fit_one(X, Y, r, kd, a, "none", k)
    c_sc = _fit_one(X, Y, r, "ridge:all" if sc == "ridge" else kd, sa, sc, k)
    if sc == "ridge" and not np.array_equal(c_sc.columns, c_id.columns):
        # one standardisation for both maps: re-express the identity map on all columns
        A = np.zeros((X.shape[1], k))
        A[c_id.columns] = c_id.A * (c_sc.sd[c_id.columns] / c_id.sd)[:, None]
        y_mean = c_id.y_mean + ((c_sc.mean[c_id.columns] - c_id.mean) / c_id.sd) @ c_id.A
        c_id = ModeCalibration(c_sc.columns, c_sc.mean, c_sc.sd, y_mean, A, kind=c_id.kind)
    cal = ModeCalibration(
        c_id.columns, c_id.mean, c_id.sd, c_id.y_mean, c_id.A, c_sc.scale_bias, c_sc.scale_coef,
        f"{kd} alpha={a:g}, scale {sc} alpha={sa:g}",
    )  # fmt: skip
    report["chosen"] = {"identity": f"{kd} alpha={a:g}", "identity_error": best[0], "scale": f"{sc} alpha={sa:g}",
                        "scale_error": s_best[0]}  # fmt: skip
    return cal, report
