"""Explicit Runge–Kutta steps written out stage by stage from a Butcher tableau.

Used to step the adaptive loop (:mod:`pyodejl.solving.adaptive_rk`) and to
replay a solve on a frozen step grid. The stages are unrolled in
Python (their number is static), so the step is a straight-line computation
that JAX differentiates to any order in forward or reverse mode and XLA fuses
well — unlike a stage loop. The arithmetic is the tableau's, so the result
matches Diffrax's step to round-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import diffrax
import jax.numpy as jnp


@dataclass(frozen=True)
class Tableau:
    """Butcher tableau: ``c`` (s−1,), ``a`` rows 1..s−1, weights ``b``, error weights ``b_error``."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] | None
    fsal: bool

    @classmethod
    def from_diffrax(cls, t: diffrax.ButcherTableau) -> Tableau:
        return cls(
            c=tuple(float(x) for x in t.c),
            a=tuple(tuple(float(x) for x in row) for row in t.a_lower),
            b=tuple(float(x) for x in t.b_sol),
            b_error=tuple(float(x) for x in t.b_error),
            fsal=bool(t.fsal),
        )

    @property
    def stages(self) -> int:
        return len(self.b)


EULER = Tableau(c=(), a=(), b=(1.0,), b_error=None, fsal=False)


def combine(y0, h, weights, ks):
    """``y0 + h Σ_j weights[j] ks[j]``, skipping zero weights (a stage input or update)."""
    acc = None
    for w, k in zip(weights, ks):
        if w != 0.0:
            term = w * k
            acc = term if acc is None else acc + term
    return y0 if acc is None else y0 + h * acc


def _rk(tab: Tableau, f, t0, t1, y0, f0):
    h = t1 - t0
    ks, times, inputs = [f0], [t0], [y0]
    for ci, row in zip(tab.c, tab.a):
        times.append(t0 + ci * h)
        inputs.append(combine(y0, h, row, ks))
        ks.append(f(times[-1], inputs[-1]))
    y1 = combine(y0, h, tab.b, ks)
    if tab.b_error is None:
        err = y1 * 0.0
    else:
        err = combine(y0 * 0.0, h, tab.b_error, ks)
    f1 = ks[-1] if tab.fsal else f(t1, y1)
    return y1, err, f1, times, inputs, ks


def rk_stages(tab: Tableau, f, t0, t1, y0, f0):
    """One explicit RK step from (t0, y0) to t1, also returning where f was called.

    Args:
        tab: the tableau.
        f: ``f(t, y)``.
        f0: ``f(t0, y0)`` (reused: the first stage, and FSAL's carried value).

    Returns:
        ``(y1, error, f1, stage_times, stage_inputs)`` with ``f1 = f(t1, y1)``
        (free for FSAL tableaux) and the time and state of every stage,
        ``(s,)`` and ``(s, *y0.shape)``; stage 0 is ``(t0, y0)``.
    """
    y1, err, f1, times, inputs, _ = _rk(tab, f, t0, t1, y0, f0)
    return y1, err, f1, jnp.stack(times), jnp.stack(inputs)


def rk_step_record(tab: Tableau, f, t0, t1, y0, f0):
    """One explicit RK step with everything it computed.

    Returns:
        ``(y1, error, f1, stage_inputs, stage_derivatives)``; the last two are
        ``(s, *y0.shape)``: the state g_i each stage evaluated f at and
        k_i = f(t0 + c_i h, g_i).
    """
    y1, err, f1, _, inputs, ks = _rk(tab, f, t0, t1, y0, f0)
    return y1, err, f1, jnp.stack(inputs), jnp.stack(ks)


def rk_step(tab: Tableau, f, t0, t1, y0, f0):
    """One explicit RK step; ``(y1, error, f1)`` of :func:`rk_stages`."""
    y1, err, f1, _, _, _ = _rk(tab, f, t0, t1, y0, f0)
    return y1, err, f1


def tableau_of(solver) -> Tableau | None:
    """The explicit tableau of a solver (name or :class:`~pyodejl.solving.solvers.Solver`), None for implicit ones."""
    from pyodejl.solving.solvers import solver_spec

    return solver_spec(solver).tableau
