"""Solving: solvers and step-size controllers as values, adaptive solves, frozen-grid replays, per-step records.

Where things go: a new solver is a :class:`Solver` value and an entry in
:data:`SOLVERS` (``solvers.py``; an SDE solver: an :class:`SDESolver` in
:data:`SDE_SOLVERS`, ``sde.py``); a new step-size controller is a class and an
entry in :data:`CONTROLLERS` (``controllers.py``); a new per-step estimate is a
function of a :class:`StepRecord` (``steps.py``).
"""

from pyodejl.solving.controllers import CONTROLLERS, ConstantStepSize, PIDController
from pyodejl.solving.integrate import (
    Solution,
    SolveError,
    SolveStats,
    StepGrid,
    adaptive_solve,
    grid_states,
    record_steps,
)
from pyodejl.solving.sde import SDE_SOLVERS, SDESolver
from pyodejl.solving.solvers import SOLVERS, Solver, solver_spec
from pyodejl.solving.steps import StepRecord, error_ratios, shampine_stiffness

__all__ = [
    "CONTROLLERS",
    "SDE_SOLVERS",
    "SDESolver",
    "SOLVERS",
    "ConstantStepSize",
    "PIDController",
    "Solution",
    "SolveError",
    "SolveStats",
    "Solver",
    "StepGrid",
    "StepRecord",
    "adaptive_solve",
    "error_ratios",
    "grid_states",
    "record_steps",
    "shampine_stiffness",
    "solver_spec",
]
