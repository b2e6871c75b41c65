"""pyodejl: second-order analysis of neural differential equations.

Exact gradients (discrete and continuous adjoints), Hessians and Hessian-vector
products by several independent methods, and spectral summaries of the loss
curvature of Neural ODEs. Float64 throughout (JAX's x64 mode is enabled on import).
"""

from pyodejl import _config  # noqa: F401  (enables float64 before anything else)
from pyodejl._config import enable_compilation_cache
from pyodejl.derivatives import (
    GRADIENT_METHODS,
    HESSIAN_METHODS,
    AdjointAdjoint,
    AdjointDirect,
    DirectAdjoint,
    DirectDirect,
    Auto,
    Elementwise,
    Structured,
    FiniteDifference,
    FiniteDifferenceGradient,
    FunctionObjective,
    HessianOperator,
    ObservationLoss,
    Objective,
    TrajectoryLoss,
)
from pyodejl.models import MLP, NeuralODE
from pyodejl.solving import SOLVERS, SolveError

__version__ = "0.1.0"

__all__ = [
    "GRADIENT_METHODS",
    "HESSIAN_METHODS",
    "MLP",
    "SOLVERS",
    "AdjointAdjoint",
    "AdjointDirect",
    "DirectAdjoint",
    "DirectDirect",
    "Auto",
    "Elementwise",
    "Structured",
    "FiniteDifference",
    "FiniteDifferenceGradient",
    "FunctionObjective",
    "HessianOperator",
    "NeuralODE",
    "ObservationLoss",
    "Objective",
    "SolveError",
    "TrajectoryLoss",
    "enable_compilation_cache",
]


def __getattr__(name):
    # Submodules with heavier or optional imports load on first use.
    import importlib

    if name in ("spectral", "plotting", "experiments"):
        return importlib.import_module(f"pyodejl.{name}")
    raise AttributeError(f"module 'pyodejl' has no attribute {name!r}")
