"""Derivatives: objectives, gradient methods and Hessian methods.

Where things go: a new objective subclasses :class:`Objective`
(``objective.py``; ODE losses in ``ode_loss.py``); a new gradient or Hessian
method is a class plus an entry in ``GRADIENT_METHODS`` / ``HESSIAN_METHODS``
(``methods.py``).
"""

from pyodejl.derivatives.finite_differences import FiniteDifference, FiniteDifferenceGradient
from pyodejl.derivatives.gauss_newton import MeanSquaredError, OutputCost, OutputLoss, SoftmaxCrossEntropy
from pyodejl.derivatives.methods import (
    FAST_METHODS,
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
    ForwardSensitivity,
    Interpolating,
    Structured,
)
from pyodejl.derivatives.minibatch import MinibatchObjective, fraction_indices
from pyodejl.derivatives.objective import FunctionObjective, Objective
from pyodejl.derivatives.ode_loss import ObservationLoss, ODEProblem, TrajectoryLoss
from pyodejl.derivatives.operator import HessianOperator

__all__ = [
    "FAST_METHODS",
    "GRADIENT_METHODS",
    "HESSIAN_METHODS",
    "AdjointAdjoint",
    "Backsolve",
    "Discrete",
    "ForwardSensitivity",
    "Interpolating",
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
    "OutputCost",
    "OutputLoss",
    "MeanSquaredError",
    "SoftmaxCrossEntropy",
    "MinibatchObjective",
    "ODEProblem",
    "ObservationLoss",
    "Objective",
    "TrajectoryLoss",
    "fraction_indices",
]
