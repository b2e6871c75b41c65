"""Solving: named solvers, adaptive solves and frozen-grid replays."""

from pyodejl.solving.integrate import (
    Solution,
    SolveError,
    SolveStats,
    StepGrid,
    adaptive_solve,
    grid_diagnostics,
    grid_states,
)
from pyodejl.solving.solvers import SOLVERS, SolverSpec, solver_spec

__all__ = [
    "SOLVERS",
    "Solution",
    "SolveError",
    "SolveStats",
    "SolverSpec",
    "StepGrid",
    "adaptive_solve",
    "grid_diagnostics",
    "grid_states",
    "solver_spec",
]
