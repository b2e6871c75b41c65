"""Derivatives: objectives, gradient methods and Hessian methods."""

from pyodejl.derivatives.finite_differences import FiniteDifference, FiniteDifferenceGradient
from pyodejl.derivatives.methods import (
    FAST_METHODS,
    GRADIENT_METHODS,
    HESSIAN_METHODS,
    AdjointAdjoint,
    AdjointDirect,
    DirectAdjoint,
    DirectDirect,
    Auto,
    Elementwise,
    Structured,
)
from pyodejl.derivatives.objective import FunctionObjective, Objective
from pyodejl.derivatives.ode_loss import ODEProblem, ObservationLoss, TrajectoryLoss
from pyodejl.derivatives.operator import HessianOperator

__all__ = [
    "FAST_METHODS",
    "GRADIENT_METHODS",
    "HESSIAN_METHODS",
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
    "ODEProblem",
    "ObservationLoss",
    "Objective",
    "TrajectoryLoss",
]
