"""Public integration API: :func:`integrate`, :class:`Integrator`, :func:`wls_system`.

The system solved is the staggered-grid weighted least squares of the conventions (paper
eq. 7-8): for every pair of 4-neighbour mask pixels, the residual of the depth difference
against the averaged gradient ``p = -Nx/Nz`` (horizontal, x to the right) or ``q = -Ny/Nz``
(vertical, y up = one row up), weighted by the averaged ``w = 1 / (1 + lam * W)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import numbers
import os
import threading
import time
import warnings
from typing import Any

import numpy as np

from .. import _validate as v

# OpenMP (libgomp) threads of the C++ core spin at each barrier before they sleep: 300000 turns
# by default (milliseconds), read once when libgomp loads with monohead._core. On a machine
# shared with other busy processes a thread that spins while its sibling is descheduled burns
# its time slice at every one of the few hundred barriers of a solve (measured: 2 threads 7x
# slower than one at 1024² under a load of 12 on 2 cores). 10000 turns (tenths of a
# millisecond) still cover the waits of a quiet machine, and under that load 2 threads then
# take 1.3-1.7x the time of one instead of 7x. The user's own OMP_WAIT_POLICY or
# GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
from . import perspective as persp
from .common import (
    BACKENDS,
    METHODS,
    ConvergenceWarning,
    SolveInfo,
    check_method,
    default_maxiter,
    import_cupy,
    is_cupy,
    not_converged_message,
)
from .generic import check_finite_depth, integrate_xp

__all__ = [
    "BACKENDS",
    "METHODS",
    "THREADS_ENV",
    "ConvergenceWarning",
    "Integrator",
    "SolveInfo",
    "default_threads",
    "integrate",
    "wls_system",
    "work_cache",
]

#: Environment variable with the default thread count of the C++ core (a positive integer).
THREADS_ENV = "MONOHEAD_NUM_THREADS"


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def default_threads() -> int:
    """Threads the C++ core uses when ``threads=None``.

    ``$MONOHEAD_NUM_THREADS`` if set, else ``$OMP_NUM_THREADS`` if set, else the CPU cores
    this process may run on (its affinity mask). Results never depend on it: every solve is
    bitwise identical for any thread count.

    Raises:
        ValueError: the environment variable is not a positive integer.
    """
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        text = os.environ.get(name, "").strip()
        if not text:
            continue
        # OMP_NUM_THREADS may be a list for nested levels ("4,2"): the first entry counts.
        first = text.split(",")[0].strip() if name == "OMP_NUM_THREADS" else text
        try:
            n = int(first)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"environment variable {name} must be a positive integer; got {text!r}")
        return n
    return _available_cores()


def work_cache(limit: int | None = None) -> tuple[int, int]:
    """The C++ core's cache of freed work arrays: ``(limit, cached)`` in bytes.

    Solves allocate their large work arrays (the system, the multigrid hierarchy, the CG
    vectors: about 200 bytes per unknown) from a process-wide cache, so that repeated calls
    reuse memory the kernel has already mapped instead of paying it to zero fresh pages (a
    third of a repeated 2048² call's time before the cache). At most ``limit`` bytes of freed
    blocks are kept (default 1 GiB; the least recently freed go first).

    Args:
        limit: new limit in bytes (``0`` turns the cache off and frees what it holds), or
            ``None`` to leave it.

    Returns:
        ``(limit before the call, bytes cached after it)``.
    """
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
            raise TypeError(f"limit must be an int (bytes) or None; got {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0 bytes; got {limit}")
        limit = min(int(limit), 2**63 - 1)
    old, cached = _core().work_cache(limit)
    return int(old), int(cached)


def _check_threads(threads: Any) -> int:
    """``threads`` (None: :func:`default_threads`) as an int >= 1."""
    if threads is None:
        return default_threads()
    return int(v.check_positive_int(threads, "threads", allow_none=False, maximum=v.THREADS_LIMIT))


#: Environment variable choosing the build of the C++ core: ``auto`` (default: the x86-64-v3 /
#: AVX2 build where the CPU runs it, else the baseline), ``baseline`` or ``avx2``.
CORE_ENV = "MONOHEAD_CORE"
# The instructions GCC and Clang may use under -march=x86-64-v3, as /proc/cpuinfo names them
# (abm: LZCNT).
_X86_64_V3_FLAGS = frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})
_CORE_MODULE: Any = None


def _cpu_has_x86_64_v3() -> bool:
    """Whether this CPU runs x86-64-v3 code (Linux: from /proc/cpuinfo; elsewhere: no)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return _X86_64_V3_FLAGS <= set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return False


def _load_core() -> Any:
    """The build of the compiled core for this process (see ``CORE_ENV``).

    The two builds compile the same source with the same floating-point operations (no fused
    multiply-adds), so they give bitwise the same results; ``_core_avx2`` is only faster. It
    exists on x86-64 wheels built by GCC or Clang (``CMakeLists.txt``).
    """
    choice = os.environ.get(CORE_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "baseline", "avx2"):
        raise ValueError(f"{CORE_ENV} must be 'auto', 'baseline' or 'avx2'; got {choice!r}")
    if choice != "baseline":
        # The CPU first: the AVX2 module's own initialisation may already use AVX2 instructions.
        cpu = _cpu_has_x86_64_v3()
        built = importlib.util.find_spec(f"{__package__.rsplit('.', 1)[0]}._core_avx2") is not None
        if cpu and built:
            from .. import _core_avx2 as fast

            return fast
        if choice == "avx2":
            why = "was not built" if not built else "needs a CPU with AVX2, FMA and BMI2 (x86-64-v3)"
            raise ImportError(f"{CORE_ENV}=avx2, but monohead's AVX2 core {why}")
    from .. import _core as core

    return core


def _core() -> Any:
    """The compiled core this process uses (chosen once, at the first call: ``CORE_ENV``)."""
    global _CORE_MODULE
    if _CORE_MODULE is None:
        _CORE_MODULE = _load_core()
    return _CORE_MODULE


def _check_sharpness(sharpness: Any) -> float | None:
    """``None`` or a finite real number >= 0."""
    if sharpness is None:
        return None
    if isinstance(sharpness, bool) or not isinstance(sharpness, numbers.Real):
        raise TypeError(f"sharpness must be None or a real number >= 0; got {type(sharpness).__name__}")
    value = v.check_real(sharpness, "sharpness", "None or a finite number >= 0")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"sharpness must be None or a finite number >= 0; got {value}")
    return value


#: Defaults of the discontinuity-preserving solve (``sharpness``): at most this many reweightings,
#: stop when one lowers the energy by less than ``energy_tol`` (relative), CG iterations per
#: reweighting.
ROBUST_DEFAULTS = {"max_reweightings": 100, "energy_tol": 1e-2, "inner_iterations": 3}


def _check_robust(method: str, sharpness: Any, max_reweightings: Any, energy_tol: Any, inner_iterations: Any) -> Any:
    """``None`` (no ``sharpness``) or the validated ``(sharpness, max_reweightings, energy_tol, inner_iterations)``."""
    sharpness = _check_sharpness(sharpness)
    if sharpness is None:
        return None
    if method != "mg":
        raise ValueError(f"sharpness needs method='mg' (reweighted multigrid solves); got method={method!r}")
    return (
        sharpness,
        int(v.check_positive_int(max_reweightings, "max_reweightings", allow_none=False, maximum=v.MAXITER_LIMIT)),
        v.check_tol(energy_tol, "energy_tol"),
        int(v.check_positive_int(inner_iterations, "inner_iterations", allow_none=False, maximum=v.MAXITER_LIMIT)),
    )


#: Default weight of a depth prior (``prior_weight``): each prior pixel counts a tenth of one
#: gradient pair, so the normals shape the details and the prior the low frequencies and gauge.
DEFAULT_PRIOR_WEIGHT = 0.1


def _check_prior(
    prior: Any, prior_weight: Any, mask: np.ndarray, K: tuple[float, ...] | None, method: str, robust: Any
) -> tuple[np.ndarray, np.ndarray] | None:
    """``None`` or ``(weight, target)`` maps for the C++ prior solve (target: height, or log-depth with ``K``)."""
    if prior is None:
        return None
    if robust is not None:
        raise ValueError("prior and sharpness cannot be combined (yet); pass one of them")
    if method != "mg":
        raise ValueError(f"prior needs method='mg'; got method={method!r}")
    arr = v.as_float_array(prior, "prior")
    if arr.shape != mask.shape:
        raise ValueError(
            f"prior must have shape {v.shape_str(mask.shape)} (a depth map, NaN where unknown); "
            f"got {v.shape_str(arr.shape)}"
        )
    known = np.isfinite(arr) & mask
    if not bool(known.any()):
        raise ValueError("prior must have at least one finite value inside the mask; got none (all NaN or inf there)")
    if K is not None:
        bad = int(np.count_nonzero(known & (arr <= 0)))
        if bad:
            raise ValueError(
                f"prior must be a positive depth where known inside the mask when K is given; got {bad} value(s) <= 0"
            )
    if isinstance(prior_weight, bool) or prior_weight is None or isinstance(prior_weight, (str, bytes)):
        raise TypeError(f"prior_weight must be a number >= 0 or an (H, W) map; got {type(prior_weight).__name__}")
    if isinstance(prior_weight, numbers.Real):
        wv = float(prior_weight)
        if not (np.isfinite(wv) and wv >= 0):
            raise ValueError(f"prior_weight must be a finite number >= 0; got {wv}")
        weight = np.where(known, wv, 0.0)
    else:
        wmap = v.as_float_array(prior_weight, "prior_weight")
        if wmap.shape != mask.shape:
            raise ValueError(
                f"prior_weight must be a number or have shape {v.shape_str(mask.shape)}; got {v.shape_str(wmap.shape)}"
            )
        bad = int(np.count_nonzero(known & ~(np.isfinite(wmap) & (wmap >= 0))))
        if bad:
            raise ValueError(f"prior_weight must be finite and >= 0 where the prior is known; got {bad} bad value(s)")
        weight = np.where(known, wmap, 0.0)
    if not bool((weight > 0).any()):
        raise ValueError("prior_weight must be > 0 at one pixel at least where the prior is known; got 0 everywhere")
    with np.errstate(divide="ignore", invalid="ignore"):
        target = np.where(known, np.log(np.where(known, arr, 1.0)) if K is not None else arr, 0.0)
    return np.ascontiguousarray(weight), np.ascontiguousarray(target)


def _core_figure(name: str, kind: type, doc: str) -> Any:
    """A read-only property of :class:`Integrator`: ``kind(self._core.<name>)``, a figure the C++ core keeps."""
    return property(lambda self: kind(getattr(self._core, name)), doc=doc)


class Integrator:
    """A WLS normal integrator for one mask, set up once and solved many times.

    Builds the sparse system's matrix (which depends only on the mask and the weights) and
    the solver's setup (multigrid hierarchy, Jacobi diagonal or Cholesky factor) in the
    constructor; :meth:`solve` then integrates new normal maps on the same mask.

    Args:
        mask: ``(H, W)`` bool (or 0/1 integer) array, the integration domain; not empty.
        weights: ``(H, W)`` gradient-magnitude map ``W = |grad h| >= 0`` (dimensionless, any
            float dtype and layout), or ``None`` for unit weights. Only mask pixels are read.
        lam: ``lam >= 0`` in ``w = 1 / (1 + lam * W)``; the paper's optimum is 0.1. Inside the
            mask ``lam * W <= 1e12`` (so ``w >= 1e-12``; :data:`monohead._validate.LAM_W_LIMIT`).
        method: ``"mg"`` (default, multigrid-preconditioned CG), ``"jacobi"`` (Jacobi-PCG, the
            usual public recipe) or ``"direct"`` (sparse Cholesky; small problems, reference).
        K: optional ``(3, 3)`` pinhole intrinsics in OpenCV form (``fx, fy > 0``; ``cx`` the
            column and ``cy`` the row of the principal point). With ``K`` the unknown is the
            log-depth and :meth:`solve` returns the depth along the optical axis, geometric mean
            1 per component (see :mod:`monohead.integration.perspective`).
        threads: threads of the C++ core for setup and solves (default ``None``:
            :func:`default_threads`, i.e. ``$MONOHEAD_NUM_THREADS``, else ``$OMP_NUM_THREADS``,
            else the available cores). Results are bitwise identical for any value.

    Thread safety: :meth:`solve` may be called from many threads at once and returns the
    result of a serial call, bit for bit. The solves of one ``"mg"`` integrator run one at a
    time (a per-instance lock: the multigrid hierarchy holds the work arrays of its cycles);
    ``"jacobi"`` and ``"direct"`` integrators solve concurrently (their solves only read the
    setup). Separate integrators never share state. The mask and weights are copied: changing
    the caller's arrays later does not affect the integrator, and their flags are left alone.

    Example:
        >>> import numpy as np, monohead
        >>> mask = np.ones((64, 64), bool)
        >>> normals = np.zeros((64, 64, 3)); normals[..., 2] = 1.0
        >>> depth = monohead.Integrator(mask).solve(normals)
        >>> float(abs(depth).max())
        0.0
    """

    def __init__(
        self,
        mask: Any,
        weights: Any = None,
        lam: float = 0.1,
        method: str = "mg",
        *,
        K: Any = None,
        threads: Any = None,
    ) -> None:
        method = check_method(method)
        nthreads = _check_threads(threads)
        lam = v.check_lam(lam)
        cam = None if K is None else persp.check_K(K)
        if mask is None:
            raise TypeError("mask must be a boolean (H, W) array; got None")
        arr = np.asarray(mask) if not isinstance(mask, np.ndarray) else mask
        if arr.ndim != 2:
            raise ValueError(f"mask must have shape (H, W); got {v.shape_str(tuple(arr.shape))}")
        m = v.check_mask(arr, arr.shape)
        w = None
        if weights is not None:
            w = _check_weights(weights, m, lam, nthreads)
        self._build(m, w, lam, method, cam, nthreads)

    @classmethod
    def _from_checked(
        cls,
        mask: np.ndarray,
        weights: np.ndarray | None,
        lam: float,
        method: str,
        K: tuple[float, ...] | None = None,
        threads: int | None = None,
    ) -> Integrator:
        """Construct from inputs already validated by this module (no second check)."""
        self = cls.__new__(cls)
        self._build(mask, weights, lam, method, K, default_threads() if threads is None else threads)
        return self

    def _build(
        self,
        mask: np.ndarray,
        weights: np.ndarray | None,
        lam: float,
        method: str,
        K: tuple[float, ...] | None,
        threads: int,
    ) -> None:
        # A private read-only copy: the caller's mask (possibly the very array validated) keeps
        # its values and flags.
        self._mask = np.array(mask, dtype=bool, order="C", copy=True)
        self._mask.flags.writeable = False
        self._method = method
        self._lam = lam
        self._K = K
        self._core = _core().Integrator(self._mask.view(np.uint8), weights, lam, method, threads=threads)
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if method == "mg" else contextlib.nullcontext()
        )

    @property
    def K(self) -> np.ndarray | None:
        """The ``(3, 3)`` intrinsics of a perspective integrator, or ``None`` (orthographic)."""
        if self._K is None:
            return None
        fx, fy, cx, cy = self._K
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    @property
    def threads(self) -> int:
        """Threads of the C++ core (settable; results do not depend on it)."""
        return int(self._core.threads)

    @threads.setter
    def threads(self, value: Any) -> None:
        n = _check_threads(value)
        with self._lock:  # not while a solve of this integrator runs
            self._core.threads = n

    @property
    def mask(self) -> np.ndarray:
        """The ``(H, W)`` bool integration domain (read-only)."""
        return self._mask

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (int(self._mask.shape[0]), int(self._mask.shape[1]))

    @property
    def method(self) -> str:
        """``"mg"``, ``"jacobi"`` or ``"direct"``."""
        return self._method

    @property
    def lam(self) -> float:
        """``lam`` of the weights ``w = 1 / (1 + lam * W)``."""
        return self._lam

    num_unknowns = _core_figure("num_unknowns", int, "Number of mask pixels.")
    num_components = _core_figure("num_components", int, "4-connected components of the mask.")
    num_levels = _core_figure("num_levels", int, "Multigrid levels (0 for the other methods).")
    nbytes = _core_figure("nbytes", int, "Bytes held by the system and solver, plus one solve's work arrays.")
    assembly_seconds = _core_figure("assembly_seconds", float, "Time spent building the matrix.")
    setup_seconds = _core_figure(
        "setup_seconds", float, "Time spent on the solver's setup (hierarchy, diagonal or factorisation)."
    )

    def solve(
        self,
        normals: Any,
        *,
        tol: float = 1e-6,
        maxiter: int | None = None,
        x0: Any = None,
        return_info: bool = False,
        sharpness: float | None = None,
        max_reweightings: int = ROBUST_DEFAULTS["max_reweightings"],
        energy_tol: float = ROBUST_DEFAULTS["energy_tol"],
        inner_iterations: int = ROBUST_DEFAULTS["inner_iterations"],
        prior: Any = None,
        prior_weight: Any = DEFAULT_PRIOR_WEIGHT,
    ) -> Any:
        """Integrate a normal map on this integrator's mask.

        Args:
            normals: ``(H, W, 3)`` unit normals in the camera frame (x right, y up, z toward
                the viewer), any float dtype and layout (float32 and float64 C-contiguous maps
                are read in place, without a copy; others are converted once to float64);
                finite inside the mask, ignored outside it, and facing the camera: ``Nz > 0``
                (orthographic), or with ``K`` ``Nz - Nx (c - cx)/fx + Ny (r - cy)/fy > 0``.
                Inside the mask that denominator (``Nz`` or ``d``) is in ``[1e-100, 1e100]`` and
                the slopes it gives are at most 1e8 (see :func:`monohead._validate.check_slopes`).
            tol: stop when ``||b - L h|| <= tol * ||b||``, in ``(0, 1)``; ``"direct"`` reports
                (and warns) when its residual is above it.
            maxiter: iteration cap in ``[1, 2**31 - 1]`` (default: generous, ``20 (H + W) + 1000``).
            x0: optional ``(H, W)`` initial depth (pixel units, ``|x0| <= 1e100`` inside the mask;
                with ``K`` a positive depth, any scale; NaN outside the mask is fine).
            return_info: also return a :class:`SolveInfo`.
            sharpness: ``None`` (default) for the paper's WLS; a number ``>= 0`` for the
                discontinuity-preserving solve of :func:`integrate` (method ``"mg"`` only).
            max_reweightings, energy_tol, inner_iterations: its iteration control: at most
                ``max_reweightings`` reweightings, stopping when one lowers the energy by less
                than ``energy_tol`` relative (in ``(0, 1)``), each a warm-started multigrid-PCG
                of ``inner_iterations`` iterations (more: each reweighting goes further down).
            prior, prior_weight: a depth prior fused in the same least squares, as in
                :func:`integrate` (method ``"mg"``; not with ``sharpness``).

        Returns:
            ``(H, W)`` float64 depth, NaN outside the mask: orthographic, the height toward the
            viewer in pixel units, mean 0 over each 4-connected component of the mask, 0 on
            isolated pixels; with ``K``, the depth along the optical axis (positive), geometric
            mean 1 over each component, 1 on isolated pixels. With ``return_info``, also the
            :class:`SolveInfo`.

        Raises:
            TypeError, ValueError: bad input, with the argument named.

        Warns:
            ConvergenceWarning: when the true relative residual ends above ``tol``.
        """
        t0 = time.perf_counter()
        n = v.check_normals(normals, keep_float32=self._K is None)
        if n.shape[:2] != self.shape:
            raise ValueError(
                f"normals must have shape ({self.shape[0]}, {self.shape[1]}, 3) to match the mask; "
                f"got {v.shape_str(n.shape)}"
            )
        smax = _check_normal_values(n, self._mask, self._K, self.threads)
        tol = v.check_tol(tol)
        maxiter = v.check_maxiter(maxiter)
        x0_arr = _check_x0(x0, self.shape, self._mask, self._K)
        robust = _check_robust(self._method, sharpness, max_reweightings, energy_tol, inner_iterations)
        prior_maps = _check_prior(prior, prior_weight, self._mask, self._K, self._method, robust)
        check_seconds = time.perf_counter() - t0
        return self._solve_checked(
            n, smax, tol, maxiter, x0_arr, return_info, check_seconds, stacklevel=3, robust=robust, prior=prior_maps
        )

    def _solve_checked(
        self,
        n: np.ndarray,
        smax: float,
        tol: float,
        maxiter: int | None,
        x0: np.ndarray | None,
        return_info: bool,
        check_seconds: float = 0.0,
        stacklevel: int = 2,
        robust: Any = None,
        prior: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Any:
        """Solve for inputs already validated (``smax``: the largest slope, from
        :func:`monohead._validate.check_slopes`; ``robust``: from :func:`_check_robust`); see
        :meth:`solve`."""
        if maxiter is None:
            maxiter = default_maxiter(*self.shape)
        # Tiny slopes (|p|, |q| < 2**-40, orthographic): solve for s p, s q (s a power of two,
        # exact) so that squared norms and the float32 hierarchy stay clear of underflow; divide
        # back after. (Perspective slopes are not linear in Nx, Ny; tiny log-depth slopes give
        # depth 1 to float64 precision anyway.)
        s = v.power_of_two_scale(smax) if self._K is None and prior is None else 1.0
        if s != 1.0:
            n = np.array(n, dtype=np.float64)  # a copy, in float64 (a float32 map would overflow)
            n[..., :2] *= s
            if x0 is not None:
                with np.errstate(over="ignore"):
                    x0 = x0 * s
                if not float(np.abs(x0).max()) <= v.X0_LIMIT:
                    x0 = None  # only a starting guess: far from the scaled solution, drop it

        def core_solve(x0: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]:
            with self._lock:
                if robust is not None:
                    sharpness, max_rw, energy_tol, inner = robust
                    n64 = np.ascontiguousarray(n, dtype=np.float64)
                    return self._core.solve_robust(n64, self._K, sharpness, max_rw, energy_tol, inner, x0, tol, maxiter)
                if prior is not None:
                    n64 = np.ascontiguousarray(n, dtype=np.float64)
                    return self._core.solve_prior(n64, self._K, prior[0], prior[1], x0, tol, maxiter)
                if self._K is None:
                    return self._core.solve(n, x0, tol, maxiter)
                return self._core.solve_perspective(n, self._K, x0, tol, maxiter)

        depth, raw = core_solve(x0)
        if x0 is not None:
            good = bool(raw["converged"]) and (robust is not None or np.isfinite(float(raw["residual"])))
            if not good or int(np.count_nonzero(np.isfinite(depth))) != self.num_unknowns:
                # x0 is only a starting guess; one so far off that CG cannot recover from it
                # (|x0| ~ 1e50 leaves a residual floor far above tol * ||b||) is dropped.
                depth, raw = core_solve(None)
        if s != 1.0:
            depth /= s
        residual = float(raw["residual"])
        if robust is None:
            converged = bool(raw["converged"]) and np.isfinite(residual) and residual <= tol
        else:
            converged = bool(raw["converged"])
        if self._K is not None:
            with np.errstate(over="ignore", under="ignore"):
                np.exp(depth, out=depth)  # log-depth with mean 0 per component -> geometric mean 1
            check_finite_depth(depth, self._mask, self.num_unknowns, self._method, perspective=True)
        inside = int(np.count_nonzero(np.isfinite(depth)))
        if inside != self.num_unknowns:
            # Unreachable for inputs that pass the checks above; never return it silently.
            raise FloatingPointError(
                f"{self._method} solve produced {self.num_unknowns - inside} non-finite depth value(s) inside the "
                f"mask (relative residual {residual:.3g}); please report this input"
            )
        if robust is not None and not converged:
            warnings.warn(
                f"the discontinuity-preserving solve stopped after {raw['reweightings']} reweightings with the "
                f"energy still decreasing by more than energy_tol={robust[2]:g}; raise max_reweightings",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )
        elif not converged:
            iterations = None if self._method == "direct" else int(raw["iterations"])
            warnings.warn(
                not_converged_message(self._method, iterations, residual, tol),
                ConvergenceWarning,
                stacklevel=stacklevel,
            )
        if not return_info:
            return depth
        info = SolveInfo(
            method=self._method,
            backend="cpu",
            iterations=int(raw["iterations"]),
            residual=residual,
            converged=converged,
            assembly_seconds=float(raw["assembly_seconds"]) + check_seconds,
            setup_seconds=0.0,
            solve_seconds=float(raw["solve_seconds"]),
            num_unknowns=self.num_unknowns,
            num_components=self.num_components,
            reweightings=int(raw.get("reweightings", 0)),
            energies=tuple(float(e) / (s * s) for e in raw.get("energies", ())),
            scale=float(raw.get("scale", 0.0)) / s,
        )
        return depth, info

    def __repr__(self) -> str:
        cam = "" if self._K is None else ", K=(fx={:g}, fy={:g}, cx={:g}, cy={:g})".format(*self._K)
        return (
            f"Integrator(shape={self.shape}, unknowns={self.num_unknowns}, components={self.num_components}, "
            f"method={self._method!r}, lam={self._lam:g}{cam})"
        )


def _check_x0(
    x0: Any, shape: tuple[int, int], mask: np.ndarray, K: tuple[float, ...] | None = None
) -> np.ndarray | None:
    """Validate an optional ``(H, W)`` initial depth; 0 outside the mask in the result (with
    ``K``: a positive depth, returned as its log)."""
    if x0 is None:
        return None
    arr = v.as_float_array(x0, "x0")
    if arr.shape != shape:
        raise ValueError(f"x0 must have shape ({shape[0]}, {shape[1]}); got {v.shape_str(arr.shape)}")
    arr = v.check_x0_in_mask(arr, mask)
    if K is not None:
        bad = int(np.count_nonzero((arr <= 0) & mask))
        if bad:
            raise ValueError(f"x0 must be a positive depth inside the mask when K is given; got {bad} value(s) <= 0")
        arr = np.where(mask, np.log(np.where(mask, arr, 1.0)), 0.0)
    return arr


def _prepare(
    normals: Any, weights: Any, lam: Any, mask: Any, K: tuple[float, ...] | None = None, threads: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float, float]:
    """Validate one map's inputs (numpy; the value scans on ``threads`` threads); returns
    (normals, mask, weights, lam, largest slope).

    Orthographic float32 normals and float32 weights stay float32 (the core reads them in place).
    """
    n = v.check_normals(normals, keep_float32=K is None)
    lam = v.check_lam(lam)
    m = v.default_mask(n) if mask is None else v.check_mask(mask, n.shape[:2])
    if mask is None and not bool(m.any()):
        raise ValueError("normals are all zero, so the default mask (non-zero normals) is empty; pass a mask")
    smax = _check_normal_values(n, m, K, threads)
    w = None
    if weights is not None:
        w = _check_weights(weights, m, lam, threads)
    return n, m, w, lam, smax


def _check_normal_values(n: np.ndarray, mask: np.ndarray, K: tuple[float, ...] | None, threads: int) -> float:
    """The value checks of one validated ``(H, W, 3)`` map inside ``mask`` (finite, facing the
    viewer or the camera, representable slopes); returns the largest slope
    (:func:`monohead._validate.check_slopes`).

    Orthographic maps are first scanned by the core in one parallel pass without temporaries;
    the NumPy checks run only when the scan finds a problem (they word the error) or tiny
    slopes (where the edge gradients decide the scale): same outcome, same messages.
    """
    if K is None:
        lo, hi = v.NZ_RANGE
        nonfinite, facing, nz_range, grazing, pmax, qmax = _core().scan_normals(
            n, mask.view(np.uint8), lo, hi, v.SLOPE_LIMIT, threads
        )
        if nonfinite == facing == nz_range == grazing == 0 and min(pmax, qmax) >= 2.0**-40:
            return float(max(pmax, qmax))
        v.check_normals_in_mask(n, mask)
    else:
        persp.check_normals_facing_camera(n, mask, K)
    return v.check_slopes(n, mask, K=K)


def _check_weights(weights: Any, mask: np.ndarray, lam: float, threads: int) -> np.ndarray:
    """A validated gradient-magnitude map for ``mask`` (float32 kept), checked in one parallel
    pass of the core when it is clean (:func:`monohead._validate.check_weights`)."""
    return v.check_weights(
        weights, mask.shape, mask, lam, keep_float32=True, scan=lambda a: _core().scan_nonnegative(a, threads)
    )


def _with_setup(info: SolveInfo, solver: Integrator, check_seconds: float) -> SolveInfo:
    """A solve's info with the one-shot call's validation, matrix assembly and setup added."""
    return dataclasses.replace(
        info,
        assembly_seconds=info.assembly_seconds + check_seconds + solver.assembly_seconds,
        setup_seconds=solver.setup_seconds,
    )


def integrate(
    normals: Any,
    weights: Any = None,
    lam: float = 0.1,
    mask: Any = None,
    *,
    method: str = "mg",
    tol: float = 1e-6,
    maxiter: int | None = None,
    x0: Any = None,
    return_info: bool = False,
    backend: str = "auto",
    K: Any = None,
    threads: Any = None,
    sharpness: float | None = None,
    prior: Any = None,
    prior_weight: Any = DEFAULT_PRIOR_WEIGHT,
) -> Any:
    """Integrate a normal map into a depth map by weighted least squares (paper eq. 7-8).

    Accepts one map ``(H, W, 3)`` or a batch ``(B, H, W, 3)``; NumPy arrays (C++ core on the
    CPU) or CuPy arrays (GPU solver, :mod:`monohead.integration.generic`; nothing is copied to
    the host). Shapes below are for one map; for a batch, ``weights``, ``mask`` and ``x0`` are
    ``(B, H, W)`` (``weights`` and ``mask`` may also be ``(H, W)``, shared by the batch) and the
    depth is ``(B, H, W)``.

    Args:
        normals: ``(H, W, 3)`` unit normals in the camera frame of the conventions (x to the
            right, y up, z toward the viewer; ``Nz > 0`` inside the mask). Any float dtype and
            memory layout: float32 or float64 C-contiguous maps (what networks produce) are read
            in place by the C++ core, without a copy; others are converted once to float64 C
            order. The arithmetic is float64 whatever the input dtype. What the solver derives from
            them must be representable: inside the mask ``1e-100 <= Nz <= 1e100`` and the slopes
            ``|Nx/Nz|``, ``|Ny/Nz|`` at most 1e8 ("too grazing" otherwise). Values outside the
            mask are ignored (NaN included).
        weights: ``(H, W)`` gradient-magnitude map ``W = |grad h| >= 0`` (the network's second
            output), or ``None`` for unit weights. The per-pixel weight is
            ``w = 1 / (1 + lam * W)``; each pair of neighbours uses the mean of its two weights.
            Inside the mask ``W`` is finite and ``lam * W <= 1e12``; outside it is ignored.
        lam: finite ``lam >= 0`` (default 0.1, the paper's optimum); 0 gives plain least squares.
        mask: ``(H, W)`` bool integration domain; default: the pixels whose normal is non-zero.
        method: ``"mg"`` (multigrid-preconditioned CG, default), ``"jacobi"`` (Jacobi-PCG) or
            ``"direct"`` (sparse Cholesky).
        tol: relative residual ``||b - L h|| <= tol * ||b||`` at which iterations stop, in
            ``(0, 1)`` (``"direct"`` warns when it ends above it).
        maxiter: iteration cap in ``[1, 2**31 - 1]``; default ``20 (H + W) + 1000``.
        x0: optional ``(H, W)`` initial depth for the iterative methods (``|x0| <= 1e100``
            inside the mask).
        return_info: also return a :class:`SolveInfo` (iterations, residual, timings); for a
            batch, a list of one per map.
        backend: ``"auto"`` (default: ``"cupy"`` for CuPy normals, else ``"cpu"``), ``"cpu"``
            (C++ core; NumPy inputs only, a batch is solved map by map) or ``"cupy"`` (GPU;
            CuPy inputs only, every array on the same device; methods ``"mg"`` and
            ``"jacobi"``; a batch is solved at once). CuPy is imported only for the GPU path:
            install it with ``pip install "monohead[cuda]"`` (``cupy-cuda12x``).
        K: optional ``(3, 3)`` pinhole intrinsics in OpenCV form ``[[fx, 0, cx], [0, fy, cy],
            [0, 0, 1]]`` (pixels; ``cx`` is the column and ``cy`` the row of the principal
            point; shared by a batch). With ``K`` the unknown is the log-depth ``log z``, whose
            slopes follow from each normal and its pixel's ray (rule in
            :mod:`monohead.integration.perspective` and ``docs/conventions.md``); the system
            keeps the staggered grid and the weights ``w``. The normals must face the camera:
            ``Nz - Nx (c - cx)/fx + Ny (r - cy)/fy > 0`` inside the mask.
        threads: threads of the C++ core (``"cpu"`` backend): default ``None`` =
            :func:`default_threads` (``$MONOHEAD_NUM_THREADS``, else ``$OMP_NUM_THREADS``, else
            the available cores). The result is bitwise identical for any value.
        sharpness: ``None`` (default): the paper's fixed-weight WLS, one linear solve. A number
            ``s >= 0``: discontinuity-preserving integration (method ``"mg"``, CPU backend). It
            minimises ``E(h) = sum_e w_e sigma^2 log(1 + r_e^2 / sigma^2)`` over the same edges,
            ``r_e`` the residual of edge ``e`` and ``w_e`` its paper weight (so ``weights`` and
            ``sharpness`` combine), with ``sigma = 1.4826 median_e |r_e| / s`` taken from the
            smooth solution: residuals far above ``sigma`` (depth steps the normals cannot
            explain) cost only logarithmically, so the surface may tear there instead of
            bending. Larger ``s`` tears more readily; ``s = 0`` is the smooth solve; 2 is the
            default of BiNI's ``k``, which this follows in spirit (reweighting each edge by how
            well it agrees with the normals). Solved by majorize-minimize reweighting in C++
            from the smooth solution, each reweighting a warm-started multigrid-PCG: the energy
            decreases at every reweighting (``info.energies``) however loosely each linear system
            is solved, and more CG iterations per reweighting only take each step further down
            the same energy. Stops when a reweighting lowers ``E`` by less than 1e-2 relative
            (:meth:`Integrator.solve` has the controls).
        prior: optional ``(H, W)`` depth prior, NaN (or inf) where unknown, in the unit of the
            result: orthographic, height toward the viewer in pixels; with ``K``, positive
            z-depth (any unit: the result takes the prior's scale). Fused in the same least
            squares: ``sum_e w_e r_e^2 + sum_i lambda_i (u_i - t_i)^2`` with ``u`` the unknown
            (height, or log-depth with ``K``) and ``t`` the prior's value (its log with ``K``),
            so the offset (orthographic) or the scale (perspective) of every component that has
            prior pixels comes from the prior; components without keep the default gauge. CPU
            backend, method ``"mg"``, one map (not with ``sharpness``).
        prior_weight: ``lambda``: a number ``>= 0`` (default 0.1: a prior pixel weighs a tenth of
            one gradient pair) or an ``(H, W)`` map of them (per-pixel confidence).

    Returns:
        ``(H, W)`` float64 depth (float64 for every input dtype), NaN outside the mask; a NumPy
        array on ``"cpu"``, a CuPy array on ``"cupy"``. Orthographic (no ``K``): height toward
        the viewer in pixel units, mean 0 over each 4-connected component of the mask, 0 on
        isolated mask pixels. With
        ``K``: depth ``z`` along the optical axis (positive, away from the camera), defined
        up to one scale per component, fixed so that the geometric mean of ``z`` over each
        component is 1 (1 on isolated pixels). With ``return_info``, ``(depth, info)``.

    Raises:
        TypeError, ValueError: bad input, with the argument named (and the count of offending
            pixels for value checks).

    Warns:
        ConvergenceWarning: the true relative residual ended above ``tol`` (``info.converged``
            is then false).
    """
    backend = _resolve_backend(backend, normals)
    method = check_method(method)
    nthreads = _check_threads(threads)
    cam = None if K is None else persp.check_K(K)
    robust = _check_robust(method, sharpness, *ROBUST_DEFAULTS.values())
    if backend == "cupy":
        if robust is not None:
            raise ValueError("sharpness is available on the 'cpu' backend only (reweighting runs in the C++ core)")
        if prior is not None:
            raise ValueError("prior is available on the 'cpu' backend only")
        if method == "direct":
            raise ValueError("method 'direct' is not available on the cupy backend; use 'mg' or 'jacobi'")
        return integrate_xp(
            normals,
            weights,
            lam,
            mask,
            xp=import_cupy(),
            K=K,
            method=method,
            tol=tol,
            maxiter=maxiter,
            x0=x0,
            return_info=return_info,
        )
    if np.ndim(normals) >= 4:  # a batch (or too many axes, reported by the batch validator)
        if prior is not None:
            raise ValueError("prior takes one normal map (H, W, 3); got a batch: call integrate per map")
        return _integrate_batch_cpu(
            normals, weights, lam, mask, method, tol, maxiter, x0, return_info, cam, nthreads, robust
        )
    t0 = time.perf_counter()
    n, m, w, lam, smax = _prepare(normals, weights, lam, mask, cam, nthreads)
    tol = v.check_tol(tol)
    maxiter = v.check_maxiter(maxiter)
    x0_arr = _check_x0(x0, m.shape, m, cam)
    prior_maps = _check_prior(prior, prior_weight, m, cam, method, robust)
    check_seconds = time.perf_counter() - t0
    solver = Integrator._from_checked(m, w, lam, method, cam, nthreads)
    out = solver._solve_checked(
        n, smax, tol, maxiter, x0_arr, return_info, stacklevel=3, robust=robust, prior=prior_maps
    )
    if not return_info:
        return out
    depth, info = out
    return depth, _with_setup(info, solver, check_seconds)


def _resolve_backend(backend: Any, normals: Any) -> str:
    """``"cpu"`` or ``"cupy"`` from the ``backend`` option and the array type of ``normals``."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}; got {backend!r}")
    on_gpu = is_cupy(normals)
    if backend == "auto":
        return "cupy" if on_gpu else "cpu"
    if backend == "cpu" and on_gpu:
        raise TypeError(
            "normals is a CuPy array but backend='cpu' runs the C++ core on the host; pass NumPy "
            "arrays (cupy.asnumpy) or use backend='cupy' (or 'auto')"
        )
    if backend == "cupy":
        import_cupy()
        if not on_gpu:
            raise TypeError(
                f"backend='cupy' needs CuPy arrays; normals is a {type(normals).__module__}.{type(normals).__name__}: "
                "move the inputs with cupy.asarray or use backend='cpu' (or 'auto')"
            )
    return backend


def _integrate_batch_cpu(
    normals: Any,
    weights: Any,
    lam: Any,
    mask: Any,
    method: str,
    tol: Any,
    maxiter: Any,
    x0: Any,
    return_info: bool,
    K: tuple[float, ...] | None = None,
    threads: int | None = None,
    robust: Any = None,
) -> Any:
    """The C++ core on each map of a ``(B, H, W, 3)`` batch; returns ``(B, H, W)``."""
    t0 = time.perf_counter()
    n, m, w, lam, _ = v.check_batch_inputs(normals, weights, lam, mask, check_values=K is None)
    if K is not None:
        persp.check_normals_facing_camera(n, m, K)
    smax = v.check_slopes(n, m, K=K)
    tol = v.check_tol(tol)
    maxiter = v.check_maxiter(maxiter)
    B, H, W = m.shape
    x0_arr = None
    if x0 is not None:
        x0_arr = v.as_float_array(x0, "x0")
        if x0_arr.shape != (B, H, W):
            raise ValueError(f"x0 must have shape {v.shape_str((B, H, W))}; got {v.shape_str(x0_arr.shape)}")
        x0_arr = np.stack([_check_x0(x0_arr[i], (H, W), m[i], K) for i in range(B)])
    check_seconds = (time.perf_counter() - t0) / B
    depth = np.empty((B, H, W))
    infos = []
    for i in range(B):
        solver = Integrator._from_checked(m[i], None if w is None else w[i], lam, method, K, threads)
        depth[i], info = solver._solve_checked(
            n[i], float(smax[i]), tol, maxiter, None if x0_arr is None else x0_arr[i], True, stacklevel=4, robust=robust
        )
        infos.append(_with_setup(info, solver, check_seconds))
    return (depth, infos) if return_info else depth


def wls_system(
    normals: Any, weights: Any = None, lam: float = 0.1, mask: Any = None, *, K: Any = None
) -> tuple[Any, np.ndarray]:
    """The WLS normal equations ``L h = b`` as a SciPy CSR matrix and a right-hand side.

    For users with their own solver. Unknown ``k`` is the ``k``-th mask pixel in row-major
    order, so a solution ``x`` goes back into an image as ``depth[mask] = x``. ``L`` is the
    weighted graph Laplacian of the mask's 4-neighbour pairs (symmetric positive
    semi-definite, one null vector per connected component; isolated pixels have an empty
    row with a zero diagonal entry) and ``b`` sums to zero over each component.

    Args:
        normals, weights, lam, mask: as in :func:`integrate`, validated by the same rules
            (slopes, their denominator and ``lam * W`` inside the mask), so every entry of ``L``
            and ``b`` is finite: orthographic ``|b| <= 4e8``, off-diagonal entries in
            ``[-1, -5e-13]``.
        K: optional intrinsics as in :func:`integrate`; then the unknown is the log-depth
            ``log z`` (same matrix, slopes of the perspective rule in ``b``).

    Returns:
        ``(L, b)``: ``scipy.sparse.csr_matrix`` of shape ``(n, n)`` float64 and ``(n,)`` float64,
        with ``n = mask.sum()``.
    """
    import scipy.sparse as sp

    cam = None if K is None else persp.check_K(K)
    n, m, w, lam, _ = _prepare(normals, weights, lam, mask, cam)
    core = Integrator._from_checked(m, w, lam, "jacobi")._core
    indptr, indices, data, rhs = core.csr(n) if cam is None else core.csr_perspective(n, cam)
    k = rhs.shape[0]
    return sp.csr_matrix((data, indices, indptr), shape=(k, k)), rhs
