"""monohead: monocular 3D head reconstruction by prediction and integration of normal fields.

The headline component is the normal integrator::

    import monohead
    depth = monohead.integrate(normals, weights, lam=0.1)

See :func:`monohead.integrate`, :class:`monohead.Integrator` and :func:`monohead.wls_system`.
Importing monohead is light: torch, CuPy and the renderer are imported only by the functions
that need them.
"""

from importlib.metadata import PackageNotFoundError, version

from .integration import ConvergenceWarning, Integrator, SolveInfo, integrate, wls_system

try:
    __version__ = version("monohead")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["ConvergenceWarning", "Integrator", "SolveInfo", "__version__", "integrate", "wls_system"]
