"""monohead: monocular 3D head reconstruction by prediction and integration of normal fields.

The headline component is the normal integrator::

    import monohead
    depth = monohead.integrate(normals, weights, lam=0.1)

and the whole photo -> head mesh pipeline of the paper::

    rec = monohead.reconstruct("photo.jpg", lam=0.1)   # a monohead.photo.Reconstruction

See :func:`monohead.integrate`, :class:`monohead.Integrator` and :func:`monohead.wls_system`.
Importing monohead is light: torch, CuPy and the renderer are imported only by the functions
that need them.
"""

# ``monohead.reconstruct`` is the pipeline's function. The module monohead/reconstruct.py (the
# pipeline's former home, kept for ``from monohead.reconstruct import ...``) is imported first,
# which binds the package attribute to the module; the next line rebinds it to the function, and
# later imports of the module find it in sys.modules and leave the attribute alone.
from . import reconstruct as _reconstruct_module  # noqa: F401  # imported for the binding order above
from ._env import __version__
from .integration import ConvergenceWarning, Integrator, SolveInfo, integrate, wls_system
from .photo import reconstruct

__all__ = ["ConvergenceWarning", "Integrator", "SolveInfo", "__version__", "integrate", "reconstruct", "wls_system"]
