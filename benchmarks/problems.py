"""The benchmark problems, shared by the pytest-benchmark files and compare.py.

* ``head``: the head-like surface on an ellipse mask, weighted by its true |grad h| (lam = 0.1);
* ``head+neck``: the same with a neck and a depth step under the chin, weighted by the true
  |grad h| (which carries the step);
* ``rect``: a smooth surface on the full rectangle, unweighted (the DCT's home ground).
"""

from __future__ import annotations

from monohead.integration import surfaces

PROBLEMS = ("head", "head+neck", "rect")
LAM = 0.1


def make(problem: str, size: int):
    """(normals, W or None, mask, true depth) of a problem at ``size x size``."""
    if problem == "head":
        s = surfaces.head(size, neck=False)
        return s.normals, s.W, s.mask, s.depth
    if problem == "head+neck":
        s = surfaces.head(size, neck=True)
        return s.normals, s.W, s.mask, s.depth
    if problem == "rect":
        s = surfaces.rectangle(size)
        return s.normals, None, s.mask, s.depth
    raise ValueError(f"problem must be one of {PROBLEMS}; got {problem!r}")
