"""Step-size controllers as values.

Adaptive solves land on every observation time (steps are clipped to them, as
Diffrax's ``ClipStepSizeController(step_ts=ts)`` does); what a controller
decides is how the next step's size follows from the error ratio.

* :class:`PIDController` (``"pid"``, the default for adaptive solvers): the
  integral controller of Hairer, Nørsett & Wanner (1993), *Solving ODEs I*,
  §II.4, with Diffrax's ``PIDController`` defaults — next step
  ``h · clip(safety · ratio^(−1/q), lo, hi)`` with ``(lo, hi) = (1, factor_max)``
  after an accepted step and ``(factor_min, safety)`` after a rejected one.
* :class:`ConstantStepSize` (``"constant"``, fixed-step solvers): steps of at
  most ``dt`` inside each observation interval.

A new controller is one class here plus one entry in :data:`CONTROLLERS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import diffrax


def _check_factor(name, value, lo, hi):
    v = float(value)
    if not (math.isfinite(v) and lo < v < hi):
        raise ValueError(f"{name} must lie in ({lo}, {hi}), got {value!r}")
    return v


@dataclass(frozen=True)
class PIDController:
    """Integral step-size control on the embedded error estimate (see module docstring).

    Args:
        safety: safety factor (default 0.9).
        factor_min: smallest step shrink after a rejection (default 0.2).
        factor_max: largest step growth after an acceptance (default 10).
    """

    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0
    name = "pid"
    adaptive = True

    def __post_init__(self):
        object.__setattr__(self, "safety", _check_factor("safety", self.safety, 0.0, 1.0))
        object.__setattr__(self, "factor_min", _check_factor("factor_min", self.factor_min, 0.0, 1.0))
        object.__setattr__(self, "factor_max", _check_factor("factor_max", self.factor_max, 1.0, math.inf))

    def to_diffrax(self, rtol, atol, norm=None, step_ts=None):
        """The equivalent Diffrax controller (used by the implicit path and the adjoints)."""
        kw = {} if norm is None else {"norm": norm}
        pid = diffrax.PIDController(
            rtol=rtol, atol=atol, safety=self.safety, factormin=self.factor_min, factormax=self.factor_max, **kw
        )
        return pid if step_ts is None else diffrax.ClipStepSizeController(pid, step_ts=step_ts)


@dataclass(frozen=True)
class ConstantStepSize:
    """Fixed steps of at most ``dt`` (the model's) inside each observation interval."""

    name = "constant"
    adaptive = False

    def to_diffrax(self, rtol, atol, norm=None, step_ts=None):
        return diffrax.ConstantStepSize()


CONTROLLERS = {"pid": PIDController, "constant": ConstantStepSize}
"""Step-size controllers by name."""


def resolve_controller(controller, adaptive: bool):
    """A controller object from a name, an object or None (the solver's default)."""
    if controller is None:
        return PIDController() if adaptive else ConstantStepSize()
    if isinstance(controller, str):
        try:
            controller = CONTROLLERS[controller]()
        except KeyError:
            known = sorted(CONTROLLERS)
            raise ValueError(f"unknown step-size controller {controller!r}; expected one of {known}") from None
    if not hasattr(controller, "adaptive") or not hasattr(controller, "to_diffrax"):
        raise TypeError(f"controller must be a name or a step-size controller object, got {controller!r}")
    if controller.adaptive != adaptive:
        kind = "an adaptive" if adaptive else "a fixed-step"
        raise ValueError(f"{kind} solver cannot use the {controller.name!r} step-size controller")
    return controller
