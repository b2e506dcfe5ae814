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

class Integrator:
    """WLS normal integrator on a fixed mask (system and solver built once)."""

    def __init__(
        self,
        mask: npt.NDArray[np.uint8],
        weights: npt.NDArray[_Float] | None = None,
        lam: float = 0.1,
        method: str = "mg",
        coarse_scale: float = 2.0,
        coarsest_max: int = 128,
        kcycle: bool = True,
        threads: int = 1,
        kcycle_reduction: float = 0.15,
    ) -> None: ...
    def solve(
        self,
        normals: npt.NDArray[_Float],
        x0: npt.NDArray[np.float64] | None = None,
        tol: float = 1e-6,
        maxiter: int = -1,
    ) -> tuple[npt.NDArray[np.float64], _SolveInfo]: ...
    def csr(
        self, normals: npt.NDArray[_Float]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
    @staticmethod
    def from_edge_weights(
        mask: npt.NDArray[np.uint8], eE: npt.NDArray[np.float64], eN: npt.NDArray[np.float64], method: str = "mg"
    ) -> Integrator: ...
    def solve_perspective(
        self,
        normals: npt.NDArray[np.float64],
        k: tuple[float, float, float, float],
        x0: npt.NDArray[np.float64] | None = None,
        tol: float = 1e-6,
        maxiter: int = -1,
    ) -> tuple[npt.NDArray[np.float64], _SolveInfo]: ...
    def solve_slopes(
        self,
        p: npt.NDArray[np.float64],
        q: npt.NDArray[np.float64],
        x0: npt.NDArray[np.float64] | None = None,
        tol: float = 1e-6,
        maxiter: int = -1,
    ) -> tuple[npt.NDArray[np.float64], _SolveInfo]: ...
    def solve_robust(
        self,
        normals: npt.NDArray[np.float64] | None = None,
        k: tuple[float, float, float, float] | None = None,
        p: npt.NDArray[np.float64] | None = None,
        q: npt.NDArray[np.float64] | None = None,
        sharpness: float = 2.0,
        max_reweightings: int = 100,
        energy_tol: float = 1e-2,
        inner_iterations: int = 3,
        x0: npt.NDArray[np.float64] | None = None,
        tol: float = 1e-6,
        maxiter: int = -1,
        rebuild_every: int = 1,
    ) -> tuple[npt.NDArray[np.float64], dict[str, object]]: ...
    def solve_prior(
        self,
        normals: npt.NDArray[np.float64],
        k: tuple[float, float, float, float] | None,
        weight: npt.NDArray[np.float64],
        target: npt.NDArray[np.float64],
        x0: npt.NDArray[np.float64] | None = None,
        tol: float = 1e-6,
        maxiter: int = -1,
    ) -> tuple[npt.NDArray[np.float64], _SolveInfo]: ...
    def csr_perspective(
        self, normals: npt.NDArray[np.float64], k: tuple[float, float, float, float]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
    def csr_slopes(
        self, p: npt.NDArray[np.float64], q: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
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
