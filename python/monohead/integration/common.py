"""What every front end of the integrator shares: methods, backends, defaults, results, warnings.

The C++ core (:mod:`monohead.integration.api`), the array-generic NumPy/CuPy solver
(:mod:`monohead.integration.generic`) and the PyTorch front end (:mod:`monohead.torch`) import
these names from here, so that a method list, a default or a message is written once. The
public ones are re-exported by :mod:`monohead.integration` and :mod:`monohead`
(``monohead.SolveInfo``, ``monohead.ConvergenceWarning``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BACKENDS",
    "GENERIC_METHODS",
    "METHODS",
    "ConvergenceWarning",
    "SolveInfo",
    "check_method",
    "default_maxiter",
    "import_cupy",
    "is_cupy",
    "not_converged_message",
]

#: Solvers of the C++ core: multigrid-preconditioned CG, Jacobi-preconditioned CG, sparse Cholesky.
METHODS = ("mg", "jacobi", "direct")

#: Solvers of the array-generic path (CuPy, NumPy, PyTorch): the iterative ones.
GENERIC_METHODS = ("mg", "jacobi")

#: Backends of :func:`monohead.integrate`.
BACKENDS = ("auto", "cpu", "cupy")


class ConvergenceWarning(RuntimeWarning):
    """A solve ended with a true relative residual above ``tol``: an iterative method stopped
    at ``maxiter`` (or stagnated), or a direct factorisation was not accurate enough."""


@dataclass(frozen=True)
class SolveInfo:
    """What a solve did.

    Attributes:
        method: ``"mg"``, ``"jacobi"`` or ``"direct"``.
        backend: ``"cpu"`` (C++ core), ``"cupy"`` (GPU solver) or ``"numpy"`` (the GPU
            solver's algorithm run with NumPy, :func:`monohead.integration.generic.integrate_xp`).
        iterations: CG iterations (0 for ``"direct"``).
        residual: final true relative residual ``||b - L h|| / ||b||`` (0 when ``b = 0``),
            recomputed from the returned depth, never the recursive CG estimate.
        converged: whether ``residual <= tol`` (a finite residual; for ``"direct"`` too).
        assembly_seconds: building the matrix and the right-hand side.
        setup_seconds: multigrid hierarchy, Jacobi diagonal or Cholesky factorisation.
        solve_seconds: the solve proper, gauge fixing and writing the depth map.
        num_unknowns: mask pixels.
        num_components: 4-connected components of the mask (one constant of gauge each).
        reweightings: discontinuity-preserving solves (``sharpness``): the reweightings done
            after the smooth solve (0 otherwise); ``iterations`` then counts every CG iteration,
            ``residual`` is that of the last reweighted system and ``converged`` says whether
            the energy criterion was met.
        energies: with ``sharpness``, the robust energy after the smooth solve and after each
            reweighting (decreasing); empty otherwise.
        scale: with ``sharpness``, the residual scale ``sigma`` of the robust energy (0 otherwise).
    """

    method: str
    backend: str
    iterations: int
    residual: float
    converged: bool
    assembly_seconds: float
    setup_seconds: float
    solve_seconds: float
    num_unknowns: int
    num_components: int
    reweightings: int = 0
    energies: tuple[float, ...] = ()
    scale: float = 0.0

    @property
    def total_seconds(self) -> float:
        """Assembly + setup + solve."""
        return self.assembly_seconds + self.setup_seconds + self.solve_seconds


def check_method(method: Any, methods: Sequence[str] = METHODS, solver: str = "") -> str:
    """``method`` if it is one of ``methods``, else a ``ValueError`` listing them.

    ``solver`` names the solver in the message when the list is not the full :data:`METHODS`
    (e.g. ``" for the generic solver"``).
    """
    if not isinstance(method, str) or method not in methods:
        raise ValueError(f"method must be one of {', '.join(repr(m) for m in methods)}{solver}; got {method!r}")
    return method


def default_maxiter(height: int, width: int) -> int:
    """CG iteration cap when ``maxiter=None``: ``20 (H + W) + 1000`` for an ``(H, W)`` map.

    Far above what any method needs on a well-posed map (mg: tens; Jacobi-PCG: a few times
    the image side); it only guards against a hang.
    """
    return 20 * (height + width) + 1000


def not_converged_message(
    method: str, iterations: int | None, residual: float, tol: float, items: Sequence[int] | None = None
) -> str:
    """The text of a :class:`ConvergenceWarning` for a linear solve that ended above ``tol``.

    Args:
        method: the solver's name (``"mg"``, ``"jacobi"``, ``"direct"``, or which solve:
            ``"forward"``, ``"adjoint"``).
        iterations: CG iterations done (the largest of a batch), or ``None`` for a direct solve.
        residual: the true relative residual reached (the largest of a batch).
        tol: the tolerance asked for.
        items: for a batch, the indices of the items that did not converge (the first five
            are named).
    """
    if iterations is None:
        return f"{method} solve reached relative residual {residual:.3g} > tol={tol:g}"
    batch = "" if items is None else f" (batch item(s) {[int(i) for i in items][:5]})"
    return (
        f"{method} solve stopped after {iterations} iterations at relative residual {residual:.3g} > tol={tol:g}"
        f"{batch}; raise maxiter or tol"
    )


def is_cupy(a: Any) -> bool:
    """Whether ``a`` is a CuPy array (by its type's module; CuPy is not imported)."""
    return type(a).__module__.split(".")[0] == "cupy"


def import_cupy(what: str = "backend='cupy'") -> Any:
    """The cupy module, or an ImportError that says who needs it (``what``) and how to get it."""
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(
            f"{what} needs CuPy, which could not be imported; install it with "
            'pip install "monohead[cuda]" (cupy-cuda12x) on a machine with CUDA'
        ) from exc
    return cupy
