"""Sampled terms: loss terms that observe the solved state at times they choose.

Local regularisation (Pal, Edelman & Rackauckas 2023; seed 004 ch. 6) needs
y(t_reg) at a random time t_reg and regularises one solver step taken from
there. To make y(t_reg) differentiable by *every* gradient method — the
continuous adjoints too, which only see the loss through the states at the
observation times — the objective adds t_reg to its observation times: the
forward solve lands on it, the discrete replay records it, and an adjoint
jumps there by ∂L/∂y(t_reg) (seed 004 ch. 6 §2: "piggy-backing on the
existing adjoint"). A sampled term provides

* ``extra_times(context) -> (k,)`` — times in [t_0, t_end] (they may
  coincide with observation times; then nothing is added);
* ``term_data(context, times, states) -> pytree`` — per-θ constants computed
  once at the linearisation point from the solve (e.g. the step size of the
  local step), like the step grid: every derivative treats them as constants;

and reads ``inputs.extra_states`` ``(B, k, D_solved)`` and
``inputs.term_data`` in its ``value``. ``seed`` (if it has one) is part of the
objective's cache key, so a term whose seed changes resamples.

The data cost and the other terms still see only the user's observation
times. The number of solved times varies (T, or T + k when no sample
coincides with an observation): at most k + 1 compiled shapes per objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from pyodejl._jit import to_device


@dataclass
class SampleContext:
    """What a sampled term may read when it picks its times and constants (NumPy, host side).

    Attributes:
        theta_vf: ``(p_vf,)`` the vector field's parameters.
        model: the :class:`pyodejl.NeuralODE` being solved (with appended entries, if any).
        ts: ``(T,)`` the user's observation times.
        plain: ``() -> Solution``: the solve at ``ts`` alone (computed on first call).
        solution: the solve at every time (``ts`` and all samples); set before
            ``term_data`` is called.
    """

    theta_vf: np.ndarray
    model: Any
    ts: np.ndarray
    plain: Callable
    solution: Any = None


def is_sampled(term) -> bool:
    return callable(getattr(term, "extra_times", None)) and callable(getattr(term, "term_data", None))


def sample_key(term):
    """What of a term picks its sampled times, beyond θ (its seed and explicit times)."""
    if not is_sampled(term):
        return None
    key = getattr(term, "sample_key", None)
    return key() if callable(key) else getattr(term, "seed", None)


def linearise(objective, theta_vf, y0=None):
    """Solve at the observation times plus every sampled term's times; build the sampled data.

    Returns ``(solution, (times, sampled))``: the :class:`~pyodejl.solving.Solution`
    on all solved times, those times (device array) and ``sampled = (user_index,
    per-term (index, term data) or None)`` for :class:`~pyodejl.derivatives.ode_loss.ODEProblem`.
    ``y0``: the solved initial state (default: the objective's fixed one; an
    objective whose y0 depends on θ passes its state at θ).
    """
    from pyodejl.solving.integrate import adaptive_solve

    problem, ts = objective.problem, objective.ts
    y0 = objective._y0_aug if y0 is None else y0
    cache = {}

    def plain():
        if "sol" not in cache:
            cache["sol"] = adaptive_solve(problem.model, theta_vf, ts, y0)
        return cache["sol"]

    ctx = SampleContext(np.asarray(theta_vf), problem.model, ts, plain)
    asked = []
    for term in problem.terms:
        if not is_sampled(term):
            asked.append(None)
            continue
        times = np.atleast_1d(np.asarray(term.extra_times(ctx), dtype=np.float64))
        if times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(times < ts[0]) or np.any(times > ts[-1]):
            raise ValueError(
                f"{term!r} asked for observation times {times}, expected finite times in [{ts[0]}, {ts[-1]}]"
            )
        asked.append(times)
    merged = np.union1d(ts, np.concatenate([a for a in asked if a is not None]))
    sol = plain() if len(merged) == len(ts) else adaptive_solve(problem.model, theta_vf, merged, y0)
    ctx.solution = sol
    entries = []
    for term, times in zip(problem.terms, asked):
        if times is None:
            entries.append(None)
            continue
        index = np.searchsorted(merged, times)
        data = term.term_data(ctx, times, np.asarray(sol.ys)[:, index])
        entries.append((to_device(index.astype(np.int32)), jax.tree_util.tree_map(to_device, data)))
    user_index = to_device(np.searchsorted(merged, ts).astype(np.int32))
    return sol, (to_device(merged), (user_index, tuple(entries)))
