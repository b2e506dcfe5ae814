"""The running environment, asked without importing anything heavy.

:data:`__version__` is monohead's own version (``monohead.__version__``; ``0+unknown`` when run
from a source tree that was not installed); :func:`package_versions` records what produced a
data set or a table (provenance written into ``meta.json`` and ``results.json``);
:func:`is_torch_module` tells a network from a plain callable without importing torch.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["RECORDED_PACKAGES", "__version__", "is_torch_module", "package_versions"]

try:
    __version__ = version("monohead")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

#: Packages whose versions :func:`package_versions` records (those installed).
RECORDED_PACKAGES = ("monohead", "numpy", "scipy", "torch", "mitsuba", "drjit")


def package_versions() -> dict[str, str]:
    """``{"python": "3.11.4", "monohead": ..., "numpy": ...}``: the Python version and the
    installed version of each of :data:`RECORDED_PACKAGES` (a package not installed is left out)."""
    out = {"python": platform.python_version()}
    for pkg in RECORDED_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` (found in its type's MRO; torch is not imported)."""
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(obj).__mro__)
