"""ODE solvers as values: one :class:`Solver` per method, one registry.

Explicit adaptive Runge–Kutta pairs (``dopri5``, ``tsit5``, ``dopri8``,
``bosh3``), fixed-step explicit methods (``euler``, ``heun``, ``rk4``; these need
``dt``), one L-stable implicit method for stiff problems (``kvaerno5``) and
the explicit variable-step Adams–Bashforth 3 (``vcab3``, :mod:`pyodejl.solving.vcab3`).

A solver is passed by name (``solver="tsit5"``) or as the object
(``solver=pj.SOLVERS["tsit5"]``). Everything the library needs to know about a
method lives in its :class:`Solver`: whether it adapts its steps, its Butcher
tableau (explicit methods, stepped by pyodejl's own loop), the Diffrax solver it
maps to (implicit methods and continuous adjoints), its order and reference.
**A new solver is one** :class:`Solver` **value plus one entry in**
:data:`SOLVERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import diffrax
import numpy as np
import optimistix as optx

from pyodejl.solving.explicit_rk import EULER, Tableau

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


def _kvaerno5(rtol, atol):
    # Newton tolerances well below the step tolerance, so that the nonlinear
    # solve error does not pollute the local error estimate.
    return diffrax.Kvaerno5(root_finder=optx.Newton(rtol=rtol * 1e-3, atol=atol * 1e-3), scan_kind="bounded")


def _vcab3(rtol, atol):
    from pyodejl.solving.vcab3 import VCAB3

    return VCAB3()


def _bounded(cls):
    # stages looped with a bounded loop so that a Diffrax step can be
    # differentiated in reverse mode twice
    return lambda rtol, atol: cls(scan_kind="bounded")


@dataclass(frozen=True)
class Solver:
    """A named ODE solver.

    Attributes:
        name: registry name.
        adaptive: whether it controls its step size (fixed-step methods need ``dt``).
        implicit: whether its stages are implicit (then Diffrax steps it).
        stages: stages per step.
        fsal: first-same-as-last (the last stage of a step is the next step's first).
        order: order of the error estimate used by the step-size controller
            (Diffrax's ``error_order``), or of the method for fixed-step solvers.
        reference: where the method comes from.
        tableau: the explicit Butcher tableau (None for implicit methods).
        diffrax_solver: ``(rtol, atol) -> diffrax.AbstractSolver``, used by the
            implicit path and the continuous adjoints.
        startup_evaluations: extra vector-field evaluations of a multistep
            method's start-up steps (counted once per solve).
    """

    name: str
    adaptive: bool
    implicit: bool
    stages: int
    fsal: bool
    order: int
    reference: str
    tableau: Tableau | None = field(default=None, repr=False)
    diffrax_solver: Callable = field(default=None, repr=False, compare=False)
    startup_evaluations: int = 0
    #: SDE solvers (:mod:`pyodejl.solving.sde`) set it; ODE models refuse them and vice versa
    is_sde: ClassVar[bool] = False

    def __str__(self):
        return self.name

    def __hash__(self):
        return hash(self.name)

    def evaluations_per_step(self) -> int:
        """Vector-field evaluations per attempted step (FSAL reuses one)."""
        return self.stages - 1 if self.fsal else self.stages

    def make(self, rtol: float, atol: float):
        """The Diffrax solver object for these tolerances."""
        return self.diffrax_solver(rtol, atol)

    @property
    def has_error_estimate(self) -> bool:
        """Whether steps come with an embedded local error estimate."""
        return self.adaptive and (self.tableau is None or self.tableau.b_error is not None)

    @property
    def unit_stages(self) -> tuple[int, int] | None:
        """Indices of the last two stages evaluated at c = 1 (both at t_{n+1}),
        which Shampine's stiffness estimate compares (seed 004 §2.4); None if
        the tableau has fewer than two."""
        if self.tableau is None:
            return None
        c = (0.0,) + self.tableau.c
        ones = [i for i, ci in enumerate(c) if ci == 1.0]
        return (ones[-2], ones[-1]) if len(ones) >= 2 else None


def _explicit(name, diffrax_cls, adaptive, order, reference):
    tab = Tableau.from_diffrax(diffrax_cls.tableau)
    fsal = tab.fsal and adaptive
    return Solver(name, adaptive, False, tab.stages, fsal, order, reference, tab, _bounded(diffrax_cls))


SOLVERS: dict[str, Solver] = {
    s.name: s
    for s in (
        _explicit("dopri5", diffrax.Dopri5, True, 5, "Dormand & Prince (1980)"),
        _explicit("tsit5", diffrax.Tsit5, True, 5, "Tsitouras (2011)"),
        _explicit("dopri8", diffrax.Dopri8, True, 8, "Prince & Dormand (1981)"),
        _explicit("bosh3", diffrax.Bosh3, True, 3, "Bogacki & Shampine (1989)"),
        Solver("euler", False, False, 1, False, 1, "Euler (1768)", EULER, lambda rtol, atol: diffrax.Euler()),
        _explicit("heun", diffrax.Heun, False, 2, "Heun (1900)"),
        _explicit("rk4", RK4, False, 4, "Kutta (1901)"),
        Solver("kvaerno5", True, True, 7, True, 5, "Kværnø (2004)", None, _kvaerno5),
        # explicit multistep: no tableau, stepped by Diffrax (solving/vcab3.py); one
        # evaluation per step after two Bogacki–Shampine start-up steps (2 extra each)
        # and Diffrax's own f(t0, y0) at init (1); order = its error estimate's
        # (AB3's local error, O(h^4))
        Solver("vcab3", True, False, 1, False, 4, "Durran (1991); seed 004 §2.2", None, _vcab3, 5),
    )
}
"""Every solver by name."""


def solver_spec(solver) -> Solver:
    """The :class:`Solver` for a name or a Solver; anything else raises, listing the valid names."""
    if isinstance(solver, Solver):
        return solver
    try:
        return SOLVERS[solver]
    except (KeyError, TypeError):
        from pyodejl.solving.sde import SDE_SOLVERS

        if isinstance(solver, str) and solver in SDE_SOLVERS:
            raise ValueError(
                f"{solver!r} is a solver for stochastic differential equations; ODE models take one of "
                f"{sorted(SOLVERS)}. Solve an SDE with pj.NeuralSDE(drift, diffusion, solver={solver!r})"
            ) from None
        raise ValueError(f"unknown solver {solver!r}; expected one of {sorted(SOLVERS)} or a pyodejl Solver") from None
