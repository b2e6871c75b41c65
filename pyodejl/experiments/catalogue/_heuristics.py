"""What the solver-heuristic experiments (seed 004 ch. 5–6) share: a variant is its loss
terms, their weight schedules, STEER's end-time jitter and the gradient method."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyodejl.experiments.trainer import Problem


def _no_terms():
    return []


def _no_schedules(steps):
    return {}


@dataclass(frozen=True)
class Variant:
    """One row of a regularisation table.

    Attributes:
        terms: ``() -> list`` of fresh loss terms (none for vanilla).
        schedules: ``steps -> {term name: schedule}``.
        steer: ``seed -> RandomEndTime`` (STEER's end-time jitter, drawn from the run's
            seed), or None.
        gradient: the gradient method that trains it.
    """

    terms: Callable[[], list] = _no_terms
    schedules: Callable[[int], dict] = field(default=_no_schedules)
    steer: object = None
    gradient: object = "discrete"


def regularised_problem(variant: Variant, seed: int, theta0, ts, make_objective, num_samples: int = 1) -> Problem:
    """The :class:`~pyodejl.experiments.trainer.Problem` of a variant.

    Args:
        variant: the :class:`Variant`.
        seed: the run's seed (STEER's draws).
        theta0: initial θ.
        ts: the nominal observation times.
        make_objective: ``(times, indices, terms) -> Objective`` (``indices``: the
            minibatch, None for all samples).
        num_samples: samples the minibatches are drawn from.
    """
    terms = variant.terms()
    steer = None if variant.steer is None else variant.steer(seed)

    def objective(step, indices):
        times = ts if steer is None or step < 0 else steer.times(ts, step)
        return make_objective(times, indices, terms)

    return Problem(theta0=theta0, objective=objective, num_samples=num_samples, varies=steer is not None)
