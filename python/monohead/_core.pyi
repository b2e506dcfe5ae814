"""Type stubs of monohead's compiled core (csrc/bindings.cpp)."""

from typing import TypedDict

import numpy as np
import numpy.typing as npt

class _SolveInfo(TypedDict):
    iterations: int
    residual: float
    converged: bool
    assembly_seconds: float
    solve_seconds: float

#: Whether the core was built with OpenMP (without it, ``threads`` has no effect).
openmp: bool

_Float = np.float32 | np.float64
_F64 = npt.NDArray[np.float64]
#: (fx, fy, cx, cy) of a pinhole camera.
_K = tuple[float, float, float, float]
#: (indptr int64, indices int32, data float64, rhs float64) of a CSR system.
_Csr = tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], _F64, _F64]
#: (depth or log-depth (H, W), info).
_Solved = tuple[_F64, _SolveInfo]

class Integrator:
    """WLS normal integrator on a fixed mask (system and solver built once)."""

    def __init__(
        self,
        mask: npt.NDArray[np.uint8],
        weights: npt.NDArray[_Float] | None = None,
        lam: float = 0.1,
        method: str = "mg",
        threads: int = 1,
    ) -> None: ...
    def solve(
        self, normals: npt.NDArray[_Float], x0: _F64 | None = None, tol: float = 1e-6, maxiter: int = -1
    ) -> _Solved: ...
    def csr(self, normals: npt.NDArray[_Float]) -> _Csr: ...
    def solve_perspective(
        self, normals: _F64, k: _K, x0: _F64 | None = None, tol: float = 1e-6, maxiter: int = -1
    ) -> _Solved: ...
    def solve_robust(
        self,
        normals: _F64,
        k: _K | None = None,
        sharpness: float = 2.0,
        max_reweightings: int = 100,
        energy_tol: float = 1e-2,
        inner_iterations: int = 3,
        x0: _F64 | None = None,
        tol: float = 1e-6,
        maxiter: int = -1,
    ) -> tuple[_F64, dict[str, object]]: ...
    def solve_prior(
        self,
        normals: _F64,
        k: _K | None,
        weight: _F64,
        target: _F64,
        x0: _F64 | None = None,
        tol: float = 1e-6,
        maxiter: int = -1,
    ) -> _Solved: ...
    def csr_perspective(self, normals: _F64, k: _K) -> _Csr: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def num_unknowns(self) -> int: ...
    @property
    def num_components(self) -> int: ...
    @property
    def num_levels(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @threads.setter
    def threads(self, value: int) -> None: ...
    @property
    def assembly_seconds(self) -> float: ...
    @property
    def setup_seconds(self) -> float: ...
    @property
    def nbytes(self) -> int: ...

def scan_normals(
    normals: npt.NDArray[_Float],
    mask: npt.NDArray[np.uint8],
    nz_lo: float,
    nz_hi: float,
    slope_limit: float,
    threads: int,
) -> tuple[int, int, int, int, float, float]:
    """(non-finite, Nz <= 0, Nz out of range, too grazing) counts over the mask, then max |p|, max |q|."""

def scan_nonnegative(a: npt.NDArray[_Float], threads: int) -> tuple[bool, float]:
    """(every value finite and >= 0, the largest value)."""

def sample_planes(
    table: npt.NDArray[np.float64], H: int, W: int, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> tuple[
    npt.NDArray[np.uint8],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]:
    """The observed surface under points (x, y) from a padded ((H + 2) (W + 2), 8) table of pixel
    planes: (found, depth, unit normal (n, 3), nearest pixel's flat index, coverage, pixel weight)."""

def work_cache(limit: int | None = None) -> tuple[int, int]:
    """(limit before the call, bytes cached after it) of the cache of freed work blocks."""

class LbpCascade:
    """A multi-block LBP cascade (the OpenCV LBP format, evaluated as scikit-image does)."""

    def __init__(
        self,
        window_h: int,
        window_w: int,
        eps: float,
        features: npt.NDArray[np.int32],
        stump_feature: npt.NDArray[np.int32],
        stump_lut: npt.NDArray[np.uint32],
        stump_leaves: npt.NDArray[np.float32],
        stages: npt.NDArray[np.int32],
        stage_threshold: npt.NDArray[np.float32],
    ) -> None: ...
    def detect(
        self,
        image: npt.NDArray[np.uint8],
        scales: npt.NDArray[np.float32],
        step_ratio: float,
        min_neighbours: int,
        threshold: float,
        threads: int = 1,
    ) -> npt.NDArray[np.int32]: ...
