"""The running environment, asked without importing anything heavy.

:data:`__version__` is monohead's own version (``monohead.__version__``; ``0+unknown`` when run
from a source tree that was not installed); :func:`package_versions` records what produced a
data set or a table (provenance written into ``meta.json`` and ``results.json``);
:func:`is_torch_module` tells a network from a plain callable without importing torch;
:func:`shared_data` finds the project's shared data folder (third-party data that is not part of
the package: development photos, DiLiGenT maps, the ICT-FaceKit sources); :data:`WEIGHTS_DIR`
and :data:`WEIGHTS_CARD` locate the shipped network weights and their model card for code that
must not import torch (``monohead.model`` does).
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = [
    "RECORDED_PACKAGES",
    "WEIGHTS_CARD",
    "WEIGHTS_DIR",
    "__version__",
    "is_torch_module",
    "package_versions",
    "shared_data",
    "shared_roots",
]

try:
    __version__ = version("monohead")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

#: Folder of the network weights shipped inside the package (``unet.pt``, written by
#: :func:`monohead.model.export_weights`) and their model card (JSON: sha256, metrics, training).
WEIGHTS_DIR = Path(__file__).resolve().parent / "model" / "weights"
WEIGHTS_CARD = WEIGHTS_DIR / "model_card.json"

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


def shared_roots() -> list[Path]:
    """The candidate shared folders, in order: ``$MONOHEAD_SHARED`` when set, then ``shared/``
    beside the source checkout (``<repo>/../shared``; meaningful for a source or editable install
    only). No other place is searched."""
    roots = []
    env = os.environ.get("MONOHEAD_SHARED")
    if env:
        roots.append(Path(env))
    roots.append(Path(__file__).resolve().parents[3] / "shared")  # python/monohead/_env.py -> <repo>/..
    return roots


def shared_data(*parts: str) -> Path | None:
    """``<shared>/data/<parts...>`` in the first of :func:`shared_roots` that has it, or ``None``
    (callers skip or refuse with a reason: the shared data are never required)."""
    for root in shared_roots():
        path = root.joinpath("data", *parts)
        if path.exists():
            return path
    return None
