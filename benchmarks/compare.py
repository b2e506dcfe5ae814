"""monohead's integrator beside the peers a user would otherwise call, in one run.

Usage::

    python benchmarks/compare.py --threads both       # the README's table and targets (< 10 min)
    python benchmarks/compare.py --sizes 128 512 --problems head+neck --threads 1
    python benchmarks/compare.py --threads 1 2 4 8 16 --sizes 2048 4096 --problems head+neck \
        --methods mg amgcl --no-limits                # thread scaling (benchmarks/device_run.sh)

Each thread setting runs in a child process, because OpenMP/MKL read their thread counts
when they load: a number ``T`` sets OMP_NUM_THREADS = MKL_NUM_THREADS = OPENBLAS_NUM_THREADS =
MONOHEAD_NUM_THREADS = T, ``all`` leaves them unset (every library takes the available cores;
monohead's core too). ``both`` means ``1`` and ``all``, plus ``2`` for ``mg`` alone when the
machine has more than 2 cores (the 1 -> 2 thread speedup target). Peers that do not import are
listed as missing, not failed.

Every method solves the same system (monohead's staggered-grid WLS, built by
``monohead.wls_system``; the peers get the matrix with one unknown per connected component
pinned to 0, which makes it SPD) to the same stopping rule ``||b - L h|| <= 1e-6 ||b||``; the
table reports the true relative residual after the solve and the RMSE against the analytic
depth (both shifted to mean 0 per component). Columns, in seconds: assembly (validation,
matrix and right-hand side), setup (hierarchy or factorisation), solve, total; peak memory is
the peak resident-set growth during the call, sampled every millisecond, in bytes per unknown.
The times are the best of the warm calls made without the memory sampler after the first call
(20 at ≤ 128², 10 at 256², 3 at 512² and 1024², 2 above: a single call at 2048² left its
time to chance); that first call, inside the sampler, gives the
memory.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOL = 1e-6
METHODS = ("mg", "jacobi", "direct", "spsolve", "pyamg-rs", "amgcl", "pardiso", "cholmod", "dct")
# Sizes above which a method is skipped, so that `--threads both` stays under about 10 minutes
# on a 2-core box (`--no-limits` lifts them). The targets need mg and amgcl at every size.
LIMITS = {"jacobi": 512, "direct": 512, "spsolve": 256, "pyamg-rs": 1024, "cholmod": 1024, "pardiso": 1024}
ENV_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MONOHEAD_NUM_THREADS")


class PeakRSS:
    """Peak resident-set growth (bytes) over a block, sampled by a thread."""

    def __init__(self, interval=0.001):
        self.interval = interval
        self.peak = 0

    @staticmethod
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss() - self.base)
            time.sleep(self.interval)

    def __enter__(self):
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.base = self.rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self.peak = max(self.peak, self.rss() - self.base)
        self._stop.set()
        self._t.join()


def _pinned(L, b, mask):
    """Remove one unknown per connected component (the first); returns (A, b, keep, labels)."""
    import numpy as np
    import scipy.sparse.csgraph as csgraph

    ncomp, labels = csgraph.connected_components(L, directed=False)
    first = np.zeros(ncomp, dtype=np.int64)
    seen = np.zeros(ncomp, bool)
    order = np.arange(labels.size)
    # first index of each label
    first[labels[::-1]] = order[::-1]
    seen[labels] = True
    keep = np.ones(labels.size, bool)
    keep[first] = False
    A = L[keep][:, keep].tocsr()
    return A, b[keep], keep, labels


def _gauge(x_keep, keep, labels):
    import numpy as np

    x = np.zeros(keep.size)
    x[keep] = x_keep
    sums = np.bincount(labels, weights=x)
    counts = np.bincount(labels)
    return x - (sums / counts)[labels]


def run_method(method, normals, W, mask, lam):
    """Returns dict(assembly, setup, solve, iterations, x (mask order))."""
    import numpy as np

    import monohead

    if method in ("mg", "jacobi", "direct"):
        depth, info = monohead.integrate(normals, W, lam, mask, method=method, tol=TOL, return_info=True)
        return dict(
            assembly=info.assembly_seconds,
            setup=info.setup_seconds,
            solve=info.solve_seconds,
            iterations=info.iterations,
            x=depth[mask],
        )
    if method == "dct":
        from monohead.integration import dct_poisson

        t0 = time.perf_counter()
        d = dct_poisson(normals)
        return dict(assembly=0.0, setup=0.0, solve=time.perf_counter() - t0, iterations=0, x=d[mask])

    t0 = time.perf_counter()
    L, b = monohead.wls_system(normals, W, lam, mask)
    A, bk, keep, labels = _pinned(L, b, mask)
    assembly = time.perf_counter() - t0
    it = 0
    if method == "spsolve":
        import scipy.sparse.linalg as spla

        t0 = time.perf_counter()
        setup = 0.0
        xk = spla.spsolve(A.tocsc(), bk)
        solve = time.perf_counter() - t0
    elif method == "pyamg-rs":
        import pyamg

        t0 = time.perf_counter()
        ml = pyamg.ruge_stuben_solver(A)
        setup = time.perf_counter() - t0
        res = []
        t0 = time.perf_counter()
        xk = ml.solve(bk, tol=TOL, accel="cg", maxiter=2000, residuals=res)
        solve = time.perf_counter() - t0
        it = len(res) - 1
    elif method == "amgcl":
        import pyamgcl

        t0 = time.perf_counter()
        P = pyamgcl.amg(A, prm={})
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        S = pyamgcl.solver(P, prm={"type": "cg", "tol": TOL, "maxiter": 2000})
        xk = S(bk)
        solve = time.perf_counter() - t0
        it = int(S.iters)
    elif method == "pardiso":
        import pypardiso

        t0 = time.perf_counter()
        ps = pypardiso.PyPardisoSolver(mtype=2)  # real SPD
        Au = __import__("scipy.sparse", fromlist=["triu"]).triu(A, format="csr")
        ps.factorize(Au)
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        xk = ps.solve(Au, bk)
        solve = time.perf_counter() - t0
    elif method == "cholmod":
        from sksparse.cholmod import cholesky

        t0 = time.perf_counter()
        F = cholesky(A.tocsc())
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        xk = F(bk)
        solve = time.perf_counter() - t0
    else:
        raise ValueError(method)
    t0 = time.perf_counter()
    x = _gauge(np.asarray(xk).ravel(), keep, labels)
    solve += time.perf_counter() - t0
    return dict(assembly=assembly, setup=setup, solve=solve, iterations=it, x=x)


def available(method):
    mods = {"pyamg-rs": "pyamg", "amgcl": "pyamgcl", "pardiso": "pypardiso", "cholmod": "sksparse.cholmod"}
    if method not in mods:
        return True
    try:
        __import__(mods[method])
        return True
    except Exception:
        return False


def worker(args):
    import numpy as np

    sys.path.insert(0, str(HERE))
    import monohead
    from monohead.integration import default_threads
    from problems import LAM, make

    nthreads = default_threads()
    rows = []
    for problem in args.problems:
        for size in args.sizes:
            normals, W, mask, truth = make(problem, size)
            L, b = monohead.wls_system(normals, W, LAM, mask)
            bnorm = np.linalg.norm(b)
            t = truth[mask] - truth[mask].mean()
            for method in args.methods:
                if method == "dct" and problem != "rect":
                    continue
                if not args.no_limits and size > LIMITS.get(method, 1 << 30):
                    continue
                if not available(method):
                    rows.append(dict(problem=problem, size=size, method=method, missing=True))
                    continue
                # Memory: one call inside the sampler (a thread that wakes every millisecond and
                # takes the GIL, after gc + malloc_trim: cold allocations). Time: the best of the
                # warm calls that follow without the sampler (at every size, so that the growth
                # with N compares like with like), as a user calling repeatedly sees it.
                with PeakRSS() as mem:
                    run_method(method, normals, W, mask, LAM)
                reps = 20 if size <= 128 else 10 if size <= 256 else 3 if size <= 1024 else 2
                best = None
                for _ in range(reps):
                    r = run_method(method, normals, W, mask, LAM)
                    r["total"] = r["assembly"] + r["setup"] + r["solve"]
                    if best is None or r["total"] < best["total"]:
                        best = r
                best["peak"] = mem.peak
                x = best.pop("x")
                res = float(np.linalg.norm(b - L @ x) / bnorm) if bnorm > 0 else 0.0
                e = x - x.mean() - t
                best.update(
                    problem=problem,
                    size=size,
                    unknowns=int(mask.sum()),
                    method=method,
                    residual=res,
                    rmse=float(np.sqrt(np.mean(e**2))),
                    bytes_per_unknown=best["peak"] / mask.sum(),
                    threads=args.threads,
                    nthreads=nthreads,
                )
                rows.append(best)
                print(json.dumps(best), flush=True)
    return rows


def _threads_label(r):
    t, n = r.get("threads"), r.get("nthreads")
    return f"{t} ({n})" if t == "all" and n is not None else str(t)


def table(rows):
    out = [
        "| problem | size | unknowns | threads | method | assembly s | setup s | solve s | total s | iters "
        "| rel. residual | RMSE px | peak B/unknown |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("missing"):
            continue
        out.append(
            f"| {r['problem']} | {r['size']}² | {r['unknowns']} | {_threads_label(r)} | {r['method']} | "
            f"{r['assembly']:.4f} | {r['setup']:.4f} | {r['solve']:.4f} | **{r['total']:.4f}** | "
            f"{r['iterations']} | {r['residual']:.1e} | {r['rmse']:.3g} | {r['bytes_per_unknown']:.0f} |"
        )
    return "\n".join(out)


def targets(rows):
    """The issue's targets (issue 16), judged on ratios from this run."""
    import math

    def get(problem, size, method, threads):
        for r in rows:
            if (r["problem"], r["size"], r["method"], r.get("threads")) == (
                problem,
                size,
                method,
                threads,
            ) and not r.get("missing"):
                return r
        return None

    def verdict(ok):
        return "met" if ok else "NOT met"

    settings = sorted(
        {r["threads"] for r in rows if not r.get("missing")}, key=lambda t: (t == "all", int(t) if t.isdigit() else 0)
    )
    out = ["", "Targets (ratios from this run):", ""]
    for threads in settings:
        for size in (1024, 2048):
            mg = get("head+neck", size, "mg", threads)
            for peer, need in (("amgcl", 5), ("pyamg-rs", 8)):
                p = get("head+neck", size, peer, threads)
                if mg and p:
                    ratio = p["total"] / mg["total"]
                    out.append(
                        f"- head+neck {size}², threads={_threads_label(mg)}: "
                        f"{peer} {p['total']:.3f} s / mg {mg['total']:.3f} s = "
                        f"{ratio:.1f}x (target >= {need}x: {verdict(ratio >= need)}; residuals "
                        f"{mg['residual']:.1e} vs {p['residual']:.1e})"
                    )
    two = "2" if any(r.get("threads") == "2" for r in rows) else "all"
    for size in (1024, 2048):
        a, b = get("head+neck", size, "mg", "1"), get("head+neck", size, "mg", two)
        if a and b and (two == "2" or b.get("nthreads") == 2):
            sp = a["total"] / b["total"]
            out.append(
                f"- head+neck {size}², mg 1 -> 2 threads: {a['total']:.3f} s / {b['total']:.3f} s = {sp:.2f}x "
                f"(target >= 1.6x: {verdict(sp >= 1.6)})"
            )
    for threads in ("1",):
        mg = get("head", 128, "mg", threads)
        ch = get("head", 128, "cholmod", threads)
        if mg:
            out.append(
                f"- head 128², threads={threads}: mg total {mg['total'] * 1e3:.2f} ms "
                f"(target <= 2 ms: {verdict(mg['total'] <= 2e-3)})"
            )
        if mg and ch:
            ratio = ch["total"] / mg["total"]
            out.append(
                f"- head 128²: CHOLMOD {ch['total'] * 1e3:.2f} ms / mg = {ratio:.1f}x "
                f"(target >= 8x: {verdict(ratio >= 8)})"
            )
        mg = get("rect", 1024, "mg", threads)
        dct = get("rect", 1024, "dct", threads)
        if mg and dct:
            ratio = mg["total"] / dct["total"]
            out.append(
                f"- rect 1024², threads=1: mg {mg['total']:.3f} s / DCT {dct['total']:.3f} s = {ratio:.2f}x "
                f"(target <= 2.5x: {verdict(ratio <= 2.5)})"
            )
        its = [
            r
            for r in rows
            if r.get("method") == "mg"
            and r.get("problem") == "head+neck"
            and r.get("threads") == threads
            and 256 <= r["size"] <= 2048
            and not r.get("missing")
        ]
        if its:
            its.sort(key=lambda r: r["size"])
            worst = max(r["iterations"] for r in its)
            listing = ", ".join(f"{r['size']}²: {r['iterations']}" for r in its)
            out.append(f"- head+neck mg iterations ({listing}): at most {worst} (target <= 10: {verdict(worst <= 10)})")
        a, b = get("head+neck", 256, "mg", threads), get("head+neck", 2048, "mg", threads)
        if a and b:
            k = math.log(b["total"] / a["total"]) / math.log(b["unknowns"] / a["unknowns"])
            out.append(
                f"- head+neck 256² -> 2048², threads=1: time grows as N^{k:.2f} (target <= N^1.1: {verdict(k <= 1.1)}; "
                f"iterations {a['iterations']} -> {b['iterations']})"
            )
    mgs = [r for r in rows if r.get("method") == "mg" and not r.get("missing") and r["size"] >= 512]
    if mgs:
        worst = max(mgs, key=lambda r: r["bytes_per_unknown"])
        out.append(
            f"- peak memory of mg, sizes >= 512²: at most {worst['bytes_per_unknown']:.0f} B/unknown "
            f"({worst['problem']} {worst['size']}², threads={_threads_label(worst)}; target <= 150: "
            f"{verdict(worst['bytes_per_unknown'] <= 150)})"
        )
    return "\n".join(out)


def scaling(rows):
    """Thread scaling of each method (total seconds per setting, speedup over 1 thread), when
    the run has more than two thread settings."""
    settings = [t for t in dict.fromkeys(r["threads"] for r in rows if not r.get("missing"))]
    if len(settings) <= 2:
        return ""
    out = ["", "Thread scaling (total s; speedup over threads=1; mg / amgcl ratio):", ""]
    out.append("| problem | size | method | " + " | ".join(f"threads={t}" for t in settings) + " |")
    out.append("|---|---|---|" + "---|" * len(settings))
    keys = dict.fromkeys((r["problem"], r["size"], r["method"]) for r in rows if not r.get("missing"))
    by = {(r["problem"], r["size"], r["method"], r["threads"]): r for r in rows if not r.get("missing")}
    for prob, size, method in keys:
        base = by.get((prob, size, method, "1"))
        cells = []
        for t in settings:
            r = by.get((prob, size, method, t))
            if r is None:
                cells.append("")
                continue
            cell = f"{r['total']:.3f}"
            if base:
                cell += f" ({base['total'] / r['total']:.2f}x)"
            if method == "mg" and (prob, size, "amgcl", t) in by:
                cell += f"; amgcl/mg {by[(prob, size, 'amgcl', t)]['total'] / r['total']:.1f}x"
            cells.append(cell)
        out.append(f"| {prob} | {size}² | {method} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _settings(tokens):
    """Thread settings from --threads tokens: numbers, 'all', 'both' (1, all, and 2 for mg)."""
    out = []
    for t in tokens:
        if t == "both":
            out += ["1", "all"]
            if (os.cpu_count() or 1) > 2:
                out.append("2")
        else:
            out.append(t)
    return list(dict.fromkeys(out))


def _thread_arg(text):
    if text in ("all", "both") or (text.isdigit() and int(text) >= 1):
        return text
    raise argparse.ArgumentTypeError(f"thread setting must be a positive integer, 'all' or 'both'; got {text!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    ap.add_argument("--problems", nargs="+", default=["head", "head+neck", "rect"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument(
        "--threads",
        type=_thread_arg,
        nargs="+",
        default=["both"],
        help="thread settings: numbers, 'all' (every library free), 'both' = 1 and all (default)",
    )
    ap.add_argument("--no-limits", action="store_true", help="run every method at every size (LIMITS lifted)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--from-json", type=Path, help="print the table and targets of saved rows (no run)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        worker(args)
        return
    if args.from_json:
        rows = json.loads(args.from_json.read_text())
        print(table(rows))
        print(targets(rows))
        print(scaling(rows))
        return
    rows = []
    auto_two = "2" not in args.threads and "both" in args.threads
    for threads in _settings(args.threads):
        env = dict(os.environ)
        for k in ENV_THREADS:
            env.pop(k, None)
            if threads != "all":
                env[k] = threads
        methods = ["mg"] if (threads == "2" and auto_two) else args.methods
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--threads", threads]
        cmd += ["--sizes", *map(str, args.sizes), "--problems", *args.problems, "--methods", *methods]
        if args.no_limits:
            cmd.append("--no-limits")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"worker for threads={threads} failed")
        new = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        rows += new
        print(f"threads={threads}: {len(new)} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    missing = sorted({r["method"] for r in rows if r.get("missing")})
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}", file=sys.stderr)
    print(table(rows))
    print(targets(rows))
    print(scaling(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
