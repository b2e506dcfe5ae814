"""Batches ``(B, H, W, 3)``: their validation, and backend dispatch of :func:`monohead.integrate`.

The results of batches on every backend (per item against the independent reference, shared
masks and weights, a batch of one, x0, the convergence warning) are checked in test_integrators.py.

CuPy arrays are imitated by a stand-in class whose module is ``cupy``: the dispatch and the
mixed-device errors look only at the array type, so they are tested without a GPU.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import monohead
from monohead.integration import generic, surfaces
from tests._helpers import unit_normals_from_gradients

HAS_CUPY = importlib.util.find_spec("cupy") is not None


def batch(rng: np.random.Generator, B: int = 3, H: int = 20, W: int = 24):
    masks = np.ones((B, H, W), bool)
    masks[0, 5:9, :] = False  # two components
    masks[1, :, :6] = False
    masks[1, 10, 10] = False
    masks[2, 3, 3:] = False
    masks[2, 0, 0] = True
    masks[2, 1, 0] = False
    masks[2, 0, 1] = False  # (0, 0) isolated
    p = rng.normal(scale=0.4, size=(B, H, W))
    q = rng.normal(scale=0.4, size=(B, H, W))
    n = unit_normals_from_gradients(p, q)
    n[~masks] = 0.0
    Wmap = rng.uniform(0, 4, size=(B, H, W))
    return n, Wmap, masks


class FakeCupyArray:
    """Looks like a CuPy array to the type checks (module ``cupy``), and to nothing else."""

    __module__ = "cupy._core.core"

    def __init__(self, shape):
        self.shape = shape
        self.ndim = len(shape)
        self.dtype = np.dtype(np.float64)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (
            lambda a: a | {"mask": a["mask"][:2]},
            ValueError,
            r"mask must have shape \(B, H, W\) = \(3, 20, 24\).*batch size",
        ),
        (lambda a: a | {"weights": a["weights"][:1]}, ValueError, r"weights must have shape \(B, H, W\).*batch size"),
        (lambda a: a | {"mask": a["mask"][:, :, :5]}, ValueError, r"mask must have shape .*\(3, 20, 5\)"),
        (lambda a: a | {"weights": a["weights"][..., None]}, ValueError, "weights must have shape"),
        (
            lambda a: a | {"mask": a["mask"][0, :4]},
            ValueError,
            r"mask must have shape \(B, H, W\) = \(3, 20, 24\) or \(H, W\) = \(20, 24\) shared by the batch; "
            r"got \(4, 24\)",
        ),
        (
            lambda a: a | {"normals": a["normals"][..., :2]},
            ValueError,
            r"normals must have shape .*; got \(3, 20, 24, 2\)",
        ),
        (
            lambda a: a | {"normals": a["normals"][None]},
            ValueError,
            r"normals must have shape \(H, W, 3\) or \(B, H, W, 3\)",
        ),
        (lambda a: a | {"normals": a["normals"].astype(complex)}, TypeError, "normals must have a real floating dtype"),
        (lambda a: a | {"weights": a["weights"] > 1}, TypeError, "weights must have a real floating dtype"),
        (lambda a: a | {"mask": a["mask"].astype(float)}, TypeError, "mask must be a boolean"),
        (lambda a: a | {"x0": np.zeros((2, 20, 24))}, ValueError, r"x0 must have shape \(3, 20, 24\)"),
        (lambda a: a | {"backend": "gpu"}, ValueError, "backend must be one of 'auto', 'cpu', 'cupy'"),
        (lambda a: a | {"method": "lu"}, ValueError, "method must be one of"),
    ],
)
def test_batch_validation(rng, mutate, exc, match):
    n, Wmap, masks = batch(rng)
    args = mutate({"normals": n, "weights": Wmap, "lam": 0.1, "mask": masks})
    normals = args.pop("normals")
    with pytest.raises(exc, match=match):
        monohead.integrate(normals, **args)


def test_batch_empty_item_and_bad_values(rng):
    n, Wmap, masks = batch(rng)
    m = masks.copy()
    m[1] = False
    with pytest.raises(ValueError, match=r"mask is empty for batch item\(s\) \[1\]"):
        monohead.integrate(n, Wmap, 0.1, m)
    nz = n.copy()
    nz[2] = 0.0
    with pytest.raises(ValueError, match=r"normals are all zero for batch item\(s\) \[2\]"):
        monohead.integrate(nz, Wmap)
    bad = n.copy()
    bad[0, 0, 0, 2] = -0.5
    with pytest.raises(ValueError, match="Nz > 0"):
        monohead.integrate(bad, Wmap, 0.1, masks)
    w = Wmap.copy()
    w[1, 12, 12] = np.nan
    with pytest.raises(ValueError, match="weights must be finite inside the mask"):
        monohead.integrate(n, w, 0.1, masks)


# ------------------------------------------------------------------ backend dispatch
def test_cpu_backend_refuses_cupy_arrays():
    with pytest.raises(TypeError, match="normals is a CuPy array but backend='cpu'"):
        monohead.integrate(FakeCupyArray((8, 8, 3)), backend="cpu")


def test_mixed_devices_are_named(rng):
    n, Wmap, masks = batch(rng)
    with pytest.raises(TypeError, match="mask is a CuPy array but the normals are on the host"):
        monohead.integrate(n, Wmap, 0.1, FakeCupyArray(masks.shape))
    with pytest.raises(TypeError, match="weights is a CuPy array"):
        monohead.integrate(n, FakeCupyArray(Wmap.shape), 0.1, masks)


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed here")
def test_missing_cupy_is_a_clear_error_only_when_asked(rng):
    n, Wmap, masks = batch(rng)
    with pytest.raises(ImportError, match=r"backend='cupy' needs CuPy.*monohead\[cuda\]"):
        monohead.integrate(n, Wmap, 0.1, masks, backend="cupy")
    with pytest.raises(ImportError, match="needs CuPy"):
        monohead.integrate(FakeCupyArray((8, 8, 3)))  # auto -> cupy
    monohead.integrate(n, Wmap, 0.1, masks, backend="auto")  # NumPy: no CuPy needed


@pytest.mark.skipif(not HAS_CUPY, reason="needs CuPy installed")
def test_cupy_backend_refuses_numpy_arrays(rng):
    n, Wmap, masks = batch(rng)
    with pytest.raises(TypeError, match="backend='cupy' needs CuPy arrays"):
        monohead.integrate(n, Wmap, 0.1, masks, backend="cupy")


def test_import_is_light():
    code = (
        "import sys, numpy as np, monohead\n"
        "from monohead.integration import generic, surfaces\n"
        "s = surfaces.paraboloid((8, 8))\n"
        "monohead.integrate(s.normals); generic.integrate_xp(s.normals)\n"
        "bad = [m for m in ('cupy', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_generic_numpy_is_a_backend_of_its_own():
    s = surfaces.head(32)
    _, info = generic.integrate_xp(s.normals, s.W, 0.1, s.mask, return_info=True)
    assert info.backend == "numpy"
