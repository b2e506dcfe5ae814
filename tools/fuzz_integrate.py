"""Long fuzz of the integrators: ``monohead.integrate`` (mg, jacobi, direct; single maps and
batches), ``Integrator`` (reused), ``wls_system``, the generic NumPy solver and
``monohead.torch.integrate`` (forward and backward), with random shapes, dtypes, layouts,
masks, weights, cameras, scalars and extreme or non-finite values.

Every call runs in a worker subprocess (several at once); the parent watches each call, so a
crash (the worker dies) or a hang (no answer within ``--hang-seconds``) is recorded against its
case and the worker is restarted after it. Each call is classified:

* ``rejected``: ``ValueError``/``TypeError`` whose one-line message names the argument;
* ``unclear``: any other exception, or a message that names no argument or spans lines;
* ``ok``: a result, then checked: finite inside the mask and NaN outside (``nonfinite``
  otherwise); ``converged`` equal to ``residual <= tol`` and a ``ConvergenceWarning`` exactly
  when not converged (``dishonest``); and, when converged, the relative residual recomputed
  by an independent implementation of conventions.md in long double at most
  ``10 tol + 1e-9`` (``wrong``; this also catches a silent zero for a non-zero right-hand
  side). ``wls_system`` is compared entry by entry with the independent system; torch
  gradients must be finite.

Usage (a case is reproducible from its number: ``--replay N`` prints it and its outcome)::

    nice -n 15 python tools/fuzz_integrate.py --calls 100000 --workers 2 --json fuzz.json
    python tools/fuzz_integrate.py --replay 12345

The exit status is 1 if any crash, hang, unclear message, non-finite, dishonest or wrong
result was found, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
import traceback
import warnings
from typing import Any

import numpy as np

#: Names an error message may start with (the arguments of the fuzzed functions).
ARG_NAMES = ("normals", "weights", "mask", "lam", "tol", "maxiter", "x0", "K", "method", "backend", "dtype",
             "sharpness", "threads", "max_reweightings", "energy_tol", "inner_iterations")  # fmt: skip
BAD = ("crash", "hang", "unclear", "nonfinite", "dishonest", "wrong")
EXTREMES = [0.0, -0.0, 1.0, -1.0, 5e-324, 1e-310, 1e-300, 1e-200, 1e-160, 1e-100, 1e-20, 1e-9, 1e8, 1e20,
            1e100, 1e160, 1e300, 1.7e308, np.inf, -np.inf, np.nan]  # fmt: skip
APIS = ("mg", "jacobi", "direct", "batch", "integrator", "wls_system", "numpy", "torch")


# --------------------------------------------------------------------------------------------
# Independent reference (long double, written from conventions.md and docs/conventions.md).


def reference(normals, W, lam, mask, K=None):
    """``(b, apply_L)`` of the WLS system in long double; ``apply_L(h)`` gives ``L h``."""
    f = np.longdouble
    m = np.asarray(mask, bool)
    n = np.where(m[..., None], normals, 0).astype(f)
    n[..., 2] = np.where(m, n[..., 2], 1)
    H, Wd = m.shape
    if K is None:
        p, q = -n[..., 0] / n[..., 2], -n[..., 1] / n[..., 2]
    else:
        fx, fy, cx, cy = (f(K[0][0]), f(K[1][1]), f(K[0][2]), f(K[1][2]))
        r = np.arange(H, dtype=f)[:, None]
        c = np.arange(Wd, dtype=f)[None, :]
        d = n[..., 2] - n[..., 0] * (c - cx) / fx + n[..., 1] * (r - cy) / fy
        p, q = n[..., 0] / (fx * d), n[..., 1] / (fy * d)
    p, q = np.where(m, p, 0), np.where(m, q, 0)
    w = np.ones(m.shape, f) if W is None else 1 / (1 + f(lam) * np.where(m, W, 0).astype(f))
    pairs = []
    for si, sj, g in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None)), p),  # (r, c) -> (r, c + 1)
        ((slice(1, None), slice(None)), (slice(None, -1), slice(None)), q),  # (r, c) -> (r - 1, c)
    ):
        both = m[si] & m[sj]
        pairs.append((si, sj, np.where(both, (w[si] + w[sj]) / 2, 0), (g[si] + g[sj]) / 2))
    b = np.zeros(m.shape, f)
    for si, sj, we, ge in pairs:
        b[sj] += we * ge
        b[si] -= we * ge

    def apply_L(h):
        h = np.where(m, h, 0).astype(f)
        out = np.zeros(m.shape, f)
        for si, sj, we, _ in pairs:
            t = we * (h[sj] - h[si])
            out[sj] += t
            out[si] -= t
        return out

    return b, apply_L


def reference_residual(normals, W, lam, mask, depth, K=None):
    """Relative residual ``||b - L h|| / ||b||`` (``h = log depth`` with ``K``); 0/0 is 0.

    The float64 depth can only be within half an ulp of the exact solution (and no closer to
    0 than the smallest subnormal); with ``K`` it is ``exp`` of the solved log-depth, so
    ``log depth`` carries about one ulp of the log-depth. That representation floor,
    ``||L d|| <= 8 sqrt(n) (ulp * max|h| + 5e-324)``, is subtracted from the residual before it
    is compared (it is not the solver's error).
    """
    b, apply_L = reference(normals, W, lam, mask, K)
    h = np.asarray(depth, dtype=np.float64)
    if K is not None:
        with np.errstate(all="ignore"):
            h = np.log(h)
    inside = h[np.asarray(mask, bool)]
    # The returned float64 depth itself can only be within half an ulp of the exact solution
    # (down to half the smallest subnormal, 2.5e-324): its rounding floor, as a residual.
    hmax = float(np.abs(inside).max()) if inside.size else 0.0
    floor = (
        8
        * np.sqrt(inside.size)
        * ((4.4e-16 if K is not None else 1.2e-16) * (hmax + (1.0 if K is not None else 0.0)) + 5e-324)
    )
    r = b - apply_L(np.where(mask, h, 0))
    bn = np.sqrt(np.sum(b * b))
    rn = max(float(np.sqrt(np.sum(r * r))) - floor, 0.0)
    if bn == 0:
        return 0.0 if rn == 0 else float("inf")
    return float(rn / bn)


# --------------------------------------------------------------------------------------------
# Case generation: everything follows from the case number.


def _pick(rng, items, p=None):
    return items[int(rng.choice(len(items), p=p))]


def _layout(rng, a):
    """The same values in another memory layout or dtype."""
    k = rng.integers(6)
    if k == 0:
        return np.asfortranarray(a)
    if k == 1 and a.ndim >= 2:  # a strided view
        big = np.zeros((a.shape[0] * 2,) + a.shape[1:], a.dtype)
        big[::2] = a
        return big[::2]
    if k == 2 and a.ndim >= 2:  # negative strides
        return np.ascontiguousarray(a[::-1])[::-1]
    if k == 3:
        with np.errstate(all="ignore"):
            return a.astype(_pick(rng, [np.float32, np.float16, np.longdouble]))
    return a


def make_case(i: int) -> dict[str, Any]:
    rng = np.random.default_rng([20261130, i])
    api = _pick(rng, APIS, p=[0.22, 0.15, 0.15, 0.1, 0.12, 0.12, 0.08, 0.06])
    side = 9 if api in ("torch", "numpy") else 17  # the slower paths get smaller maps
    H, W = int(rng.integers(1, side)), int(rng.integers(1, side))
    B = int(rng.integers(1, 4))
    shape = (B, H, W) if api == "batch" else (H, W)
    scale = _pick(rng, [0.01, 0.3, 1.0, 5.0])
    n = np.concatenate([rng.normal(scale=scale, size=shape + (2,)), np.ones(shape + (1,))], axis=-1)
    if rng.random() < 0.5:
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
    if rng.random() < 0.15:
        with np.errstate(all="ignore"):
            n *= _pick(rng, [1e-300, 1e-120, 1e-60, 1e-8, 1e8, 1e60, 1e120, 1e300])
    for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.5 else 0):
        idx = tuple(int(rng.integers(s)) for s in shape) + (int(rng.integers(3)),)
        n[idx] = _pick(rng, EXTREMES)
    mask: Any = None
    r = rng.random()
    if r < 0.6:
        mask = rng.random(shape) < _pick(rng, [0.3, 0.7, 0.95, 1.0])
        if rng.random() < 0.1:
            mask = mask.astype(_pick(rng, [np.int32, np.uint8]))
    elif r < 0.65:
        mask = np.zeros(shape, bool)
    elif r < 0.68:
        mask = np.ones((H + 1, W), bool)
    elif r < 0.7:
        mask = rng.integers(0, 3, size=shape)
    if mask is None and rng.random() < 0.3:
        n[rng.random(shape) < 0.3] = 0.0  # background by zero normals
    weights: Any = None
    if rng.random() < 0.6:
        weights = rng.uniform(0, 10, size=shape[-2:] if (api == "batch" and rng.random() < 0.5) else shape)
        with np.errstate(all="ignore"):
            weights *= _pick(rng, [1.0, 1e-300, 1e6, 1e11, 1e13, 1e300])
        for _ in range(int(rng.integers(0, 3))):
            weights[tuple(int(rng.integers(s)) for s in weights.shape)] = _pick(rng, EXTREMES + [-1.0, -1e-300])
        if rng.random() < 0.03:
            weights = weights.T.copy() if weights.ndim == 2 else weights[:, :1]
        if rng.random() < 0.03:
            weights = weights.tolist()
    valid = rng.random() < 0.85  # the scalars below: all valid, or some invalid
    lam = _pick(
        rng, [0.1, 0.0, 1.0, 1e-300, 1e6, 1e12] if valid else [1e300, -0.1, float("nan"), 10**400, "0.1", True, 0.1]
    )
    tol = _pick(rng, [1e-6, 1e-6, 1e-3, 1e-10, 1e-14, 0.5] if valid else [0.0, 1.0, float("nan"), 10**400, 1e-6])
    maxiter = _pick(rng, [None, None, None, 1, 5, 10**4, 2**31 - 1] if valid else [2**31, 0, -3, 2.5, None])
    x0 = None
    if api in ("mg", "jacobi", "numpy", "integrator") and rng.random() < 0.2:
        x0 = rng.normal(size=shape) * _pick(rng, [1.0, 1e50, 1e120, 1e-300])
        if rng.random() < 0.2:
            x0[tuple(int(rng.integers(s)) for s in shape)] = _pick(rng, [np.nan, np.inf])
    K = None
    if rng.random() < 0.15 and api != "integrator":
        f = _pick(rng, [0.5, 20.0, 500.0, 1e6])
        K = [[f, 0.0, W / 2 + rng.normal()], [0.0, f * rng.uniform(0.5, 2), H / 2 + rng.normal()], [0.0, 0.0, 1.0]]
        if rng.random() < 0.1:
            K[0][0] = _pick(rng, [0.0, -1.0, np.nan])
    extra: dict[str, Any] = {}
    if api in ("mg", "batch", "integrator") and rng.random() < 0.1:
        extra["sharpness"] = _pick(rng, [0.5, 2.0, 10.0] if valid else [-1.0, float("nan"), 10**400, "2"])
    if api in ("mg", "jacobi", "direct", "batch") and rng.random() < 0.05:
        extra["threads"] = _pick(rng, [1, 2] if valid else [0, 10**10, 2.0])
    n = _layout(rng, n)
    if isinstance(weights, np.ndarray):
        weights = _layout(rng, weights)
    return {"i": i, "api": api, "normals": n, "weights": weights, "lam": lam, "mask": mask, "tol": tol,
            "maxiter": maxiter, "x0": x0, "K": K, "extra": extra}  # fmt: skip


def describe(case: dict[str, Any]) -> str:
    def arr(a):
        if isinstance(a, np.ndarray):
            return f"{a.dtype}{list(a.shape)}{'F' if a.flags.f_contiguous and not a.flags.c_contiguous else ''}"
        return type(a).__name__ if isinstance(a, list) else repr(a)

    lam = case["lam"] if not (isinstance(case["lam"], int) and abs(case["lam"]) > 2**64) else "10**400"
    tol = case["tol"] if not (isinstance(case["tol"], int) and abs(case["tol"]) > 2**64) else "10**400"
    return (f"#{case['i']} {case['api']}: normals {arr(case['normals'])}, weights {arr(case['weights'])}, "
            f"mask {arr(case['mask'])}, lam {lam}, tol {tol}, maxiter {case['maxiter']}, x0 {arr(case['x0'])}, "
            f"K {'yes' if case['K'] is not None else 'no'}, {case['extra'] or ''}")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Running one case (in a worker).


def _clear(exc: BaseException) -> bool:
    msg = str(exc)
    first = msg.split(" ", 1)[0].strip(":,;'\"`")
    return (
        isinstance(exc, (ValueError, TypeError))
        and "\n" not in msg
        and (first in ARG_NAMES or msg.startswith(ARG_NAMES))
    )


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    import monohead
    from monohead.integration import ConvergenceWarning
    from monohead.integration.generic import integrate_xp

    api = case["api"]
    n, W, lam, mask, tol, maxiter, x0, K = (
        case[k] for k in ("normals", "weights", "lam", "mask", "tol", "maxiter", "x0", "K")
    )
    kw: dict[str, Any] = {"tol": tol, "maxiter": maxiter}
    extra = case.get("extra", {})
    if K is not None:
        kw["K"] = np.asarray(K)
    out: dict[str, Any] = {"i": case["i"], "api": api}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if api in ("mg", "jacobi", "direct", "batch"):
                method = "mg" if api == "batch" else api
                res = monohead.integrate(n, W, lam, mask, method=method, x0=x0, return_info=True, **kw, **extra)
            elif api == "integrator":
                m = mask if mask is not None else np.any(np.asarray(n) != 0, axis=-1)
                solver = monohead.Integrator(m, W, lam, method="mg")
                solver.solve(n, tol=tol, maxiter=maxiter, **extra)  # reused: the second solve is checked
                res = solver.solve(n, tol=tol, maxiter=maxiter, x0=x0, return_info=True, **extra)
            elif api == "wls_system":
                kw2 = {"K": kw["K"]} if K is not None else {}
                res = monohead.wls_system(n, W, lam, mask, **kw2)
            elif api == "numpy":
                res = integrate_xp(n, W, lam, mask, x0=x0, return_info=True, **kw)
            else:
                import torch

                import monohead.torch as mt

                def tensor(a, grad=False):
                    return torch.tensor(np.ascontiguousarray(a, dtype=np.float64), requires_grad=grad)

                t = tensor(n, True)
                Wt = tensor(W, True) if isinstance(W, np.ndarray) else None
                mk = None if mask is None else torch.tensor(np.ascontiguousarray(mask))
                kwt = {k: v for k, v in kw.items() if k != "K"}
                if K is not None:
                    kwt["K"] = kw["K"]
                depth_t = mt.integrate(t, Wt if Wt is not None else W, lam, mk, **kwt)
                sel = torch.isfinite(depth_t)
                weights_t = torch.linspace(-1, 1, depth_t.numel(), dtype=torch.float64).reshape(depth_t.shape)
                (depth_t[sel] * weights_t[sel]).sum().backward()
                grads = [t.grad] + ([Wt.grad] if Wt is not None and Wt.grad is not None else [])
                res = (depth_t.detach().numpy(), None, [g.numpy() for g in grads])
        except Exception as exc:
            out["outcome"] = "rejected" if _clear(exc) else "unclear"
            out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            return out
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    out["outcome"] = "ok"
    problems = check_result(case, res, warned)
    if problems:
        out["outcome"], out["error"] = problems
    return out


def _masks(case, depth_shape):
    n = np.asarray(case["normals"], dtype=np.float64)
    if case["mask"] is None:
        m = np.any(n != 0, axis=-1)
    else:
        m = np.broadcast_to(np.asarray(case["mask"]).astype(bool), depth_shape)
    return n, m


def check_result(case, res, warned):
    api = case["api"]
    W = case["weights"]
    W = None if W is None else np.asarray(W, dtype=np.float64)
    lam = float(case["lam"])
    K = case["K"]
    if api == "wls_system":
        L, b = res
        n, m = _masks(case, np.asarray(case["normals"]).shape[:2])
        if not (np.isfinite(L.data).all() and np.isfinite(b).all()):
            return "nonfinite", "wls_system returned a non-finite entry"
        b_ref, apply_L = reference(n, W, lam, m, K)
        b_ref = b_ref[m]
        scale = float(np.sqrt(np.sum(b_ref * b_ref))) or 1.0
        if float(np.sqrt(np.sum((b - b_ref) ** 2))) > 1e-9 * scale + 1e-300:
            return (
                "wrong",
                f"wls_system b differs from the reference by {float(np.sqrt(np.sum((b - b_ref) ** 2))) / scale:.3g}",
            )
        x = np.random.default_rng(case["i"]).normal(size=b.shape)
        h = np.zeros(m.shape)
        h[m] = x
        Lx_ref = apply_L(h)[m]
        err = float(np.abs(L @ x - Lx_ref).max()) if x.size else 0.0
        if err > 1e-9 * (float(np.abs(Lx_ref).max()) + 1.0):
            return "wrong", f"wls_system L differs from the reference by {err:.3g}"
        return None
    depth, info, *grads = res
    depth = np.asarray(depth, dtype=np.float64)
    n, m = _masks(case, depth.shape)
    if not np.isfinite(depth[m]).all():
        return "nonfinite", f"{int((~np.isfinite(depth[m])).sum())} non-finite depth value(s) inside the mask"
    if not np.isnan(depth[~m]).all():
        return "wrong", "a value outside the mask is not NaN"
    if grads and not all(np.isfinite(g).all() for g in grads[0]):
        return "nonfinite", "non-finite gradient"
    infos = info if isinstance(info, list) else [info]
    depths = depth if depth.ndim == 3 else depth[None]
    ns = n if n.ndim == 4 else n[None]
    ms = m if m.ndim == 3 else m[None]
    Ws = None if W is None else (W if W.ndim == 3 else np.broadcast_to(W, depths.shape))
    tol = float(case["tol"])
    bound_tol = tol
    for k, d in enumerate(depths):
        inf = infos[k] if info is not None else None
        if inf is not None and case.get("extra", {}).get("sharpness") is not None:
            # Robust solve: its own system (reweighted); check only the honesty of the report.
            if (not inf.converged) and not warned:
                return "dishonest", "robust solve not converged without a ConvergenceWarning"
            continue
        if inf is not None:
            if inf.converged != (np.isfinite(inf.residual) and inf.residual <= bound_tol):
                return "dishonest", f"converged={inf.converged} with residual {inf.residual:.3g} and tol {bound_tol:g}"
            if (not inf.converged) and not warned:
                return "dishonest", f"not converged (residual {inf.residual:.3g}) without a ConvergenceWarning"
            if not inf.converged:
                continue
        elif warned:
            continue  # torch: an unconverged solve says so by its warning
        res_ref = reference_residual(ns[k], None if Ws is None else Ws[k], lam, ms[k], d, K)
        limit = 10 * max(bound_tol, inf.residual if inf is not None else 0.0) + 1e-9
        if not res_ref <= limit:
            return (
                "wrong",
                f"independent relative residual {res_ref:.3g} > {limit:.3g} "
                f"(reported {getattr(inf, 'residual', None)})",
            )
    return None


def _normalise_case(case):
    """Cases as built, except the direct method's default tol (what integrate uses)."""
    if case["api"] == "direct" and case["tol"] is None:
        case["tol"] = 1e-6
    return case


def worker(start: int, stop: int) -> None:
    """Run cases ``start .. stop - 1``, one JSON line per event on stdout."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    out = sys.stdout
    for i in range(start, stop):
        out.write(json.dumps({"start": i}) + "\n")
        out.flush()
        case = _normalise_case(make_case(i))
        try:
            r = run_case(case)
        except Exception:
            r = {
                "i": i,
                "api": case["api"],
                "outcome": "unclear",
                "error": "fuzzer: " + traceback.format_exc(limit=3)[-300:],
            }
        out.write(json.dumps(r) + "\n")
        out.flush()


# --------------------------------------------------------------------------------------------
# The parent: workers, watchdog, report.


class _Worker:
    def __init__(self, start: int, stop: int) -> None:
        self.stop = stop
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", str(start), str(stop)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )  # fmt: skip
        self.current: int | None = None
        self.since = time.monotonic()
        self.buf = ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100_000, help="number of cases (default 100000)")
    ap.add_argument("--first", type=int, default=0, help="first case number (default 0)")
    ap.add_argument("--workers", type=int, default=2, help="worker subprocesses (default 2)")
    ap.add_argument("--hang-seconds", type=float, default=120.0, help="a call taking longer is a hang (default 120)")
    ap.add_argument("--json", help="write the full report here")
    ap.add_argument("--replay", type=int, help="run one case in this process and print it")
    ap.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    if args.replay is not None:
        case = _normalise_case(make_case(args.replay))
        print(describe(case))
        print(json.dumps(run_case(case)))
        return 0

    t0 = time.time()
    lo, hi = args.first, args.first + args.calls
    chunk = max(1, (hi - lo + args.workers - 1) // args.workers)
    pending = [(s, min(s + chunk, hi)) for s in range(lo, hi, chunk)]
    workers = [_Worker(s, e) for s, e in pending]
    counts: dict[str, dict[str, int]] = {}
    findings: list[dict[str, Any]] = []
    done = 0
    last_report = time.monotonic()

    def record(r: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        counts.setdefault(r["api"], {}).setdefault(r["outcome"], 0)
        counts[r["api"]][r["outcome"]] += 1
        if r["outcome"] in BAD:
            findings.append(r)
            print(f"{r['outcome']}: {r.get('case', r['i'])}: {r.get('error', '')}", file=sys.stderr, flush=True)

    while workers:
        fds = {w.proc.stdout.fileno(): w for w in workers}
        ready, _, _ = select.select(list(fds), [], [], 1.0)
        now = time.monotonic()
        for fd in ready:
            w = fds[fd]
            line = w.proc.stdout.readline()
            if not line:  # the worker exited
                w.proc.wait()
                if w.current is not None:  # it died inside a call: a crash
                    record({"i": w.current, "api": make_case(w.current)["api"], "outcome": "crash",
                            "error": f"worker exited with status {w.proc.returncode}",
                            "case": describe(make_case(w.current))})  # fmt: skip
                    if w.current + 1 < w.stop:
                        workers.append(_Worker(w.current + 1, w.stop))
                workers.remove(w)
                continue
            msg = json.loads(line)
            if "start" in msg:
                w.current, w.since = msg["start"], now
            else:
                w.current = None
                if msg["outcome"] in BAD:
                    msg["case"] = describe(make_case(msg["i"]))
                record(msg)
        for w in list(workers):
            if w.current is not None and now - w.since > args.hang_seconds:
                w.proc.kill()
                w.proc.wait()
                case = make_case(w.current)
                record({"i": w.current, "api": case["api"], "outcome": "hang",
                        "error": f"no answer in {args.hang_seconds:g} s", "case": describe(case)})  # fmt: skip
                if w.current + 1 < w.stop:
                    workers.append(_Worker(w.current + 1, w.stop))
                workers.remove(w)
        if now - last_report > 30:
            last_report = now
            print(
                f"{done}/{hi - lo} calls, {len(findings)} finding(s), {time.time() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    totals: dict[str, int] = {}
    for per in counts.values():
        for k, c in per.items():
            totals[k] = totals.get(k, 0) + c
    report = {
        "calls": done,
        "first": lo,
        "seconds": round(time.time() - t0, 1),
        "workers": args.workers,
        "totals": totals,
        "by_api": counts,
        "findings": findings[:200],
        "bad": {k: totals.get(k, 0) for k in BAD},
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps({k: report[k] for k in ("calls", "seconds", "totals", "bad")}))
    return 1 if any(report["bad"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
