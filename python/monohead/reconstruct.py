"""Compatibility module: the photo pipeline's names under their former home.

The pipeline lives in :mod:`monohead.photo`. This module re-exports its public names so that
``from monohead.reconstruct import preview_png, FRAMING, ...`` keeps working. The package
attribute ``monohead.reconstruct`` is the *function* :func:`monohead.photo.reconstruct`
(``monohead.reconstruct(image)``), not this module: ``monohead/__init__.py`` imports this module
first and then binds the name to the function, so later imports of the module (already in
``sys.modules``) leave the attribute alone. Consequently ``import monohead.reconstruct as m``
gives the function; import the module's names with ``from monohead.reconstruct import ...`` or,
better, from :mod:`monohead.photo`.
"""

from __future__ import annotations

from .framing import FRAMING, Box, crop_square, head_box
from .photo import (
    DETECT_SIZE,
    INPUT_SIZE,
    MIN_NZ,
    MIN_SIDE,
    NoFaceError,
    Reconstruction,
    detect_faces,
    limit_slope,
    load_image,
    preview_png,
    reconstruct,
    shaded_view,
)

__all__ = [
    "DETECT_SIZE",
    "FRAMING",
    "INPUT_SIZE",
    "MIN_NZ",
    "MIN_SIDE",
    "Box",
    "NoFaceError",
    "Reconstruction",
    "crop_square",
    "detect_faces",
    "head_box",
    "limit_slope",
    "load_image",
    "preview_png",
    "reconstruct",
    "shaded_view",
]
