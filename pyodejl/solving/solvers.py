"""ODE solvers by name: each name maps to a Diffrax solver and how it steps.

Explicit adaptive Runge–Kutta pairs (``dopri5``, ``tsit5``, ``dopri8``,
``bosh3``), fixed-step explicit methods (``euler``, ``heun``, ``rk4``; these need
``dt``) and one L-stable implicit method for stiff problems (``kvaerno5``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import diffrax
import numpy as np
import optimistix as optx


_rk4_tableau = diffrax.ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    # Classical RK4 has no embedded pair; the error estimate is unused because
    # rk4 only runs with a constant step.
    b_error=np.array([0.0, 0.0, 0.0, 0.0]),
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


class RK4(diffrax.AbstractERK):
    """The classical fourth-order Runge–Kutta method (Kutta 1901), fixed step only."""

    tableau: ClassVar[diffrax.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4


@dataclass(frozen=True)
class SolverSpec:
    """What the rest of the library needs to know about a named solver."""

    name: str
    adaptive: bool
    implicit: bool
    stages: int
    fsal: bool
    order: int
    reference: str

    def evaluations_per_step(self) -> int:
        """Vector-field evaluations per attempted step (FSAL reuses one)."""
        return self.stages - 1 if self.fsal else self.stages

    def make(self, rtol: float, atol: float):
        """Build the Diffrax solver object.

        Stages are looped with a bounded loop (``scan_kind="bounded"``) so that
        a step can be differentiated in reverse mode twice.
        """
        if self.name == "kvaerno5":
            # Newton tolerances well below the step tolerance, so that the
            # nonlinear solve error does not pollute the local error estimate.
            return diffrax.Kvaerno5(
                root_finder=optx.Newton(rtol=rtol * 1e-3, atol=atol * 1e-3), scan_kind="bounded"
            )
        if self.name == "euler":
            return diffrax.Euler()
        return _CONSTRUCTORS[self.name](scan_kind="bounded")


_CONSTRUCTORS = {
    "dopri5": diffrax.Dopri5,
    "tsit5": diffrax.Tsit5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "rk4": RK4,
}

SOLVERS: dict[str, SolverSpec] = {
    "dopri5": SolverSpec("dopri5", True, False, 7, True, 5, "Dormand & Prince (1980)"),
    "tsit5": SolverSpec("tsit5", True, False, 7, True, 5, "Tsitouras (2011)"),
    "dopri8": SolverSpec("dopri8", True, False, 14, True, 8, "Prince & Dormand (1981)"),
    "bosh3": SolverSpec("bosh3", True, False, 4, True, 3, "Bogacki & Shampine (1989)"),
    "euler": SolverSpec("euler", False, False, 1, False, 1, "Euler (1768)"),
    "heun": SolverSpec("heun", False, False, 2, False, 2, "Heun (1900)"),
    "rk4": SolverSpec("rk4", False, False, 4, False, 4, "Kutta (1901)"),
    "kvaerno5": SolverSpec("kvaerno5", True, True, 7, True, 5, "Kværnø (2004)"),
}


def solver_spec(name: str) -> SolverSpec:
    """Look up a solver by name; unknown names raise ValueError listing the valid ones."""
    try:
        return SOLVERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown solver {name!r}; expected one of {sorted(SOLVERS)}") from None
