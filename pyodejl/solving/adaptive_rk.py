"""Adaptive explicit Runge–Kutta: one ``lax.while_loop`` over the tableau's step.

The step-size control is Diffrax's default ``PIDController`` (an integral
controller) wrapped in ``ClipStepSizeController(step_ts=ts)``, written out
with the same constants and the same arithmetic:

* initial step by Hairer, Nørsett & Wanner (1993), *Solving ODEs I*, §II.4;
* error ratio ``rms(err / (atol + rtol·max(|y0|, |y1|)))``, step accepted when
  it is below 1;
* next step ``h · clip(0.9 · ratio^(−1/q), fmin, fmax)`` with q the error order,
  (fmin, fmax) = (1, 10) after an accepted step and (0.2, 0.9) after a rejected one;
* every step clipped so that it ends on the next observation time, and the
  last one on t_end (Diffrax's rule for steps within 100 ulp of t_end included).

So the accepted grid is Diffrax's to round-off (tested), but the compiled loop
is a fraction of the size of ``diffrax.diffeqsolve``'s general machinery
(events, dense output, checkpointing, progress meters), which makes the first
call of a loss much cheaper to compile. Implicit solvers still go through
Diffrax (:mod:`pyodejl.solving.integrate`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pyodejl.solving.controllers import PIDController
from pyodejl.solving.explicit_rk import Tableau, rk_step


def _rms(x):
    return jnp.sqrt(jnp.sum(x * x)) / (x.size**0.5)


def controlled(x, error_dims):
    """The part of a state that step-size control sees: the first ``error_dims``
    entries of the last axis (all of it when None). Entries appended for
    running costs or constant inputs are left out (as RNODE does)."""
    return x if error_dims is None else x[..., :error_dims]


def initial_step(f, t0, y0, f0, error_order, rtol, atol, error_dims=None):
    """Hairer's starting step (Hairer, Nørsett & Wanner 1993, §II.4), as Diffrax takes it."""
    c = lambda x: controlled(x, error_dims)
    scale = atol + jnp.abs(c(y0)) * rtol
    d0, d1 = _rms(c(y0) / scale), _rms(c(f0) / scale)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = jnp.where(small, 1e-6, 0.01 * (d0 / jnp.where(small, 1.0, d1)))
    f1 = f(t0 + h0, y0 + h0 * f0)
    d2 = _rms(c(f1 - f0) / scale) / h0
    max_d = jnp.maximum(d1, d2)
    h1 = jnp.where(max_d <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / max_d) ** (1 / error_order))
    return jnp.minimum(100 * h0, h1)


def _next_stop(t, ts):
    """The first observation time strictly after t (inf past the last)."""
    i = jnp.searchsorted(ts, t, side="right")
    return jnp.where(i < ts.shape[0], ts[jnp.minimum(i, ts.shape[0] - 1)], jnp.inf)


def _ulps_below(t, n: int):
    """The n representable numbers below t in t's precision (t > 0 or t < 0): Diffrax's end-clip floor."""
    # the integer of t's width (int32 under PYODEJL_NO_X64's float32), so the bits are t's own
    bits = jax.lax.bitcast_convert_type(t, jnp.int64 if t.dtype == jnp.float64 else jnp.int32)
    return jax.lax.bitcast_convert_type(jnp.where(t > 0, bits - n, bits + n), t.dtype)


def adaptive_rk(
    tab: Tableau,
    error_order: float,
    rtol: float,
    atol: float,
    max_steps: int,
    f,
    ts,
    y0,
    dt0=None,
    controller: PIDController | None = None,
    error_dims: int | None = None,
):
    """Integrate ``dy/dt = f(t, y)`` from ``ts[0]`` to ``ts[-1]`` with step-size control.

    Pure and traceable (call it under ``jax.jit``; it vmaps). Not meant to be
    differentiated: derivatives replay the accepted grid instead
    (:func:`pyodejl.solving.integrate.grid_states_jax`), which is what Diffrax's
    own discrete adjoints compute, step sizes being treated as constants.

    Args:
        tab: an explicit FSAL tableau with an embedded error estimate (``b_error``).
        error_order: q in the step-size update ``ratio^(−1/q)`` (Diffrax's
            ``solver.error_order``: 5 for dopri5 and tsit5, 8 for dopri8, 3 for bosh3).
        rtol, atol: tolerances (> 0).
        max_steps: attempted-step limit.
        f: the vector field ``f(t, y)``.
        ts: ``(T,)`` strictly increasing observation times; steps end on each of them.
        y0: initial state, any shape (the error norm is taken over all of it,
            so a batch is solved as one system).
        dt0: initial step (default None: Hairer's rule, one extra evaluation of f).
        controller: the :class:`~pyodejl.solving.controllers.PIDController`
            whose constants set the step-size update (default: Diffrax's defaults).
        error_dims: only the first ``error_dims`` entries of the state's last
            axis enter the error norm (default None: all).

    Returns:
        ``(times, ys, stats, ok)``: ``times`` ``(max_steps + 1,)`` the accepted
        step end points (``times[0] = ts[0]``, inf after the last); ``ys``
        ``(T, *y0.shape)`` the states at ``ts``; ``stats`` the attempted,
        accepted and rejected step counts; ``ok`` whether ``ts[-1]`` was
        reached within ``max_steps`` steps.
    """
    f0 = f(ts[0], y0)
    h = initial_step(f, ts[0], y0, f0, error_order, rtol, atol, error_dims) if dt0 is None else dt0

    def step(t0, t1, y, f0):
        return rk_step(tab, f, t0, t1, y, f0)

    return controlled_loop(step, f0, error_order, rtol, atol, max_steps, ts, y0, h, controller, error_dims)


def controlled_loop(step, carry0, error_order, rtol, atol, max_steps, ts, y0, h0, controller=None, error_dims=None):
    """The step-size-controlled loop shared by every one-step method (ODE and SDE).

    ``step(t0, t1, y, carry) -> (y1, error, carry1)`` takes one step of the
    method; ``carry`` is what an accepted step hands to the next (FSAL's
    f(t1, y1) for Runge–Kutta pairs, None for methods without one). The
    rest — error ratio, acceptance, step-size update, landing on every
    observation time — is described in the module docstring.

    Returns ``(times, ys, stats, ok)`` as :func:`adaptive_rk`.
    """
    t0, t_end = ts[0], ts[-1]
    t_floor = _ulps_below(t_end, 100)  # a step ending above it is rounded up to t_end
    h = h0
    controller = PIDController() if controller is None else controller
    safety, factor_min, factor_max = controller.safety, controller.factor_min, controller.factor_max
    t1 = jnp.minimum(jnp.minimum(t0 + h, _next_stop(t0, ts)), t_end)

    times = jnp.full((max_steps + 1,), jnp.inf, dtype=ts.dtype).at[0].set(t0)
    ys = jnp.zeros((ts.shape[0],) + y0.shape, dtype=y0.dtype).at[0].set(y0)
    zero = jnp.zeros((), dtype=jnp.int32)
    init = (t0, t1, y0, carry0, times, ys, zero + 1, zero, zero)

    def cond(state):
        t0, *_, n_acc, n_rej = state
        return (t0 < t_end) & (n_acc + n_rej < max_steps)

    def body(state):
        t0, t1, y, f0, times, ys, k, n_acc, n_rej = state
        y1, err, f1 = step(t0, t1, y, f0)
        # a step into a region where f is NaN is rejected, not propagated
        err = jnp.where(jnp.isnan(err), jnp.inf, err)
        y1_safe = jnp.where(jnp.any(jnp.isnan(y1)), y, y1)
        c = lambda x: controlled(x, error_dims)
        ratio = _rms(c(err) / (atol + jnp.maximum(jnp.abs(c(y)), jnp.abs(c(y1_safe))) * rtol))
        keep = ratio < 1
        factor = jnp.clip(
            safety * (1 / ratio) ** (1 / error_order),
            jnp.where(keep, 1.0, factor_min),
            jnp.where(keep, factor_max, safety),
        )
        next_t0 = jnp.minimum(jnp.where(keep, t1, t0), t_end)
        next_t1 = jnp.minimum(next_t0 + (t1 - t0) * factor, _next_stop(next_t0, ts))
        next_t1 = jnp.where(next_t1 > t_floor, jnp.where(keep, t_end, next_t0 + 0.5 * (t_end - next_t0)), next_t1)
        times = times.at[n_acc + 1].set(jnp.where(keep, t1, jnp.inf))
        k_safe = jnp.minimum(k, ts.shape[0] - 1)
        at_obs = keep & (t1 == ts[k_safe])
        ys = ys.at[k_safe].set(jnp.where(at_obs, y1, ys[k_safe]))
        return (
            next_t0,
            next_t1,
            jnp.where(keep, y1, y),
            jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), f1, f0),
            times,
            ys,
            k + at_obs,
            n_acc + keep,
            n_rej + (~keep),
        )

    t_last, _, _, _, times, ys, _, n_acc, n_rej = jax.lax.while_loop(cond, body, init)
    return times, ys, (n_acc + n_rej, n_acc, n_rej), t_last >= t_end
