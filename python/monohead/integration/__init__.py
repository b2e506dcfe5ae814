"""Normal integration: the WLS system of the conventions, its solvers and classic baselines.

:func:`integrate` and :class:`Integrator` run the C++ core (``mg``, ``jacobi``, ``direct``);
:func:`wls_system` hands the system to users with their own solver; :func:`dct_poisson` and
:func:`frankot_chellappa` are the classic Fourier-domain baselines. The names every solver
shares (:class:`SolveInfo`, :class:`ConvergenceWarning`, :data:`METHODS`) live in
:mod:`monohead.integration.common`.
"""

from .api import THREADS_ENV, Integrator, default_threads, integrate, wls_system, work_cache
from .baselines import dct_poisson, frankot_chellappa
from .common import METHODS, ConvergenceWarning, SolveInfo

__all__ = [
    "METHODS",
    "THREADS_ENV",
    "ConvergenceWarning",
    "Integrator",
    "SolveInfo",
    "dct_poisson",
    "default_threads",
    "frankot_chellappa",
    "integrate",
    "wls_system",
    "work_cache",
]
