"""Loss terms (regularisers) that see θ, the observed states and the solver's steps.

Pass them to an objective: ``pj.TrajectoryLoss(..., regularizers=[pj.regularizers.KineticEnergy(0.1)])``;
``loss.value(theta)`` is the weighted total and ``loss.terms(theta)`` each
term's unweighted value (the data term under ``"data"``). The protocol, and
where a new term goes, is in :mod:`pyodejl.regularizers.base`.

==========================  ==================================================
``WeightDecay(w)``          ‖θ_vf‖²
``KineticEnergy(w)``        ∫ ‖f‖² dt (RNODE)
``JacobianFrobenius(w, seed)``  ∫ ‖εᵀ ∂f/∂y‖² dt, Gaussian ε fixed by ``seed`` (RNODE)
``RunningCost(g, w)``       ∫ g(t, y; θ) dt for any JAX g
``ErrorEstimate(w)``        Σ_j E_j·|dt_j|, the solver's error estimates (ERNODE)
``StiffnessEstimate(w)``    Σ_j S_j·|dt_j|, Shampine's stiffness estimates (SRNODE)
``LocalErrorEstimate(w)``   E·|dt| of one step from a sampled time (local ERNODE)
``LocalStiffnessEstimate``  S·|dt| of one step from a sampled time
``TaylorDerivative(w, K)``  ∫ ‖dᴷy/dtᴷ‖² dt by Taylor mode (TayNODE)
==========================  ==================================================

STEER is not a term (it changes the solved times, not the loss of a solve):
:class:`RandomEndTime` gives a training step's times.

Weights can follow a schedule (:mod:`pyodejl.regularizers.schedules`):
``loss.set_weights(weights_at({"error_estimate": ExponentialDecay(100, 10, K)}, k))``
at training step k changes data, not the compiled loss. :func:`regularizer`
builds a term from its registry name.
"""

from pyodejl.regularizers.base import Regularizer, TermInputs
from pyodejl.regularizers.baselines import RandomEndTime, TaylorDerivative, taylor_derivatives
from pyodejl.regularizers.parameters import WeightDecay
from pyodejl.regularizers.running import JacobianFrobenius, KineticEnergy, RunningCost
from pyodejl.regularizers.schedules import SCHEDULES, Constant, ExponentialDecay, schedule, weights_at
from pyodejl.regularizers.solver_heuristics import (
    ErrorEstimate,
    LocalErrorEstimate,
    LocalStiffnessEstimate,
    StiffnessEstimate,
)

REGULARIZERS = {
    "weight_decay": WeightDecay,
    "kinetic_energy": KineticEnergy,
    "jacobian_frobenius": JacobianFrobenius,
    "running_cost": RunningCost,
    "error_estimate": ErrorEstimate,
    "stiffness_estimate": StiffnessEstimate,
    "local_error_estimate": LocalErrorEstimate,
    "local_stiffness_estimate": LocalStiffnessEstimate,
    "taylor_derivative": TaylorDerivative,
}
"""The built-in terms by name."""


def regularizer(name: str, *args, **kwargs):
    """The term registered as ``name`` in :data:`REGULARIZERS`, built with the given arguments."""
    try:
        cls = REGULARIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown regulariser {name!r}; expected one of {sorted(REGULARIZERS)}") from None
    return cls(*args, **kwargs)


__all__ = [
    "REGULARIZERS",
    "SCHEDULES",
    "Constant",
    "ExponentialDecay",
    "regularizer",
    "schedule",
    "weights_at",
    "ErrorEstimate",
    "LocalErrorEstimate",
    "LocalStiffnessEstimate",
    "RandomEndTime",
    "StiffnessEstimate",
    "TaylorDerivative",
    "taylor_derivatives",
    "JacobianFrobenius",
    "KineticEnergy",
    "Regularizer",
    "RunningCost",
    "TermInputs",
    "WeightDecay",
]
