"""pyodejl: second-order analysis of neural differential equations.

Exact gradients (discrete and continuous adjoints), Hessians and Hessian-vector
products by several independent methods, and spectral summaries of the loss
curvature of Neural ODEs. Float64 throughout (JAX's x64 mode is enabled on import).

The package reads like the pipeline: ``models`` (vector fields, Neural ODEs and
SDEs, ResNets, deep equilibrium models) → ``solving`` (ODE and SDE solvers,
controllers, step records, fixed-point solvers) → ``regularizers`` (loss terms) → ``derivatives``
(objectives, gradient and Hessian methods, equilibrium losses) → ``stiffness``
(stiffness measures) → ``spectral`` → ``experiments`` → ``plotting``.
``stiffness``, ``spectral``, ``experiments`` and ``plotting`` load on first use
(``pyodejl.stiffness``).
"""

from pyodejl import (
    _config,  # noqa: F401  (enables float64 before anything else)
    regularizers,
)
from pyodejl._config import enable_compilation_cache
from pyodejl.derivatives import (
    GRADIENT_METHODS,
    HESSIAN_METHODS,
    AdjointAdjoint,
    AdjointDirect,
    Auto,
    Backsolve,
    DirectAdjoint,
    DirectDirect,
    Discrete,
    Elementwise,
    FiniteDifference,
    FiniteDifferenceGradient,
    ForwardSensitivity,
    FunctionObjective,
    HessianOperator,
    Interpolating,
    MeanSquaredError,
    MinibatchObjective,
    Objective,
    ObservationLoss,
    OutputCost,
    OutputLoss,
    SoftmaxCrossEntropy,
    Structured,
    TrajectoryLoss,
)
from pyodejl.derivatives.equilibrium import (
    EQUILIBRIUM_GRADIENTS,
    EquilibriumLoss,
    JacobianRegularizer,
    jacobian_spectral_radius,
)
from pyodejl.laplace import Laplace
from pyodejl.models import MLP, NeuralODE, NeuralSDE, ResNet, ResNetVectorField, SecondOrder, VectorField
from pyodejl.models.deq import DEQ, ContinuousDEQ, Dense, EquilibriumError, MLPCell, Skip, SkipReg
from pyodejl.models.latent_ode import LatentODE, LatentODELoss
from pyodejl.solving import CONTROLLERS, SOLVERS, ConstantStepSize, PIDController, SolveError, Solver
from pyodejl.solving.fixed_point import FIXED_POINT_SOLVERS

__version__ = "0.1.0"

__all__ = [
    "DEQ",
    "EQUILIBRIUM_GRADIENTS",
    "FIXED_POINT_SOLVERS",
    "ContinuousDEQ",
    "Dense",
    "EquilibriumError",
    "EquilibriumLoss",
    "JacobianRegularizer",
    "Laplace",
    "LatentODE",
    "LatentODELoss",
    "MLPCell",
    "Skip",
    "SkipReg",
    "jacobian_spectral_radius",
    "CONTROLLERS",
    "GRADIENT_METHODS",
    "HESSIAN_METHODS",
    "MLP",
    "SOLVERS",
    "AdjointAdjoint",
    "AdjointDirect",
    "Backsolve",
    "ConstantStepSize",
    "Discrete",
    "ForwardSensitivity",
    "Interpolating",
    "PIDController",
    "ResNet",
    "ResNetVectorField",
    "SecondOrder",
    "Solver",
    "VectorField",
    "regularizers",
    "DirectAdjoint",
    "DirectDirect",
    "Auto",
    "Elementwise",
    "Structured",
    "FiniteDifference",
    "FiniteDifferenceGradient",
    "FunctionObjective",
    "HessianOperator",
    "OutputCost",
    "OutputLoss",
    "MeanSquaredError",
    "SoftmaxCrossEntropy",
    "MinibatchObjective",
    "NeuralODE",
    "NeuralSDE",
    "ObservationLoss",
    "Objective",
    "SolveError",
    "TrajectoryLoss",
    "enable_compilation_cache",
]


def __getattr__(name):
    # Submodules with heavier or optional imports load on first use.
    import importlib

    if name in ("spectral", "plotting", "experiments", "stiffness"):
        return importlib.import_module(f"pyodejl.{name}")
    raise AttributeError(f"module 'pyodejl' has no attribute {name!r}")
