"""Continuous sensitivity analysis: adjoint and forward-sensitivity ODEs, first and second order.

All functions are compiled with the :class:`~pyodejl.derivatives.ode_loss.ODEProblem`
static and take ``args = (ts, y0, data)``. A failed solve yields NaN, which the
calling objective turns into :class:`pyodejl.solving.SolveError`.

Notation: f(t, y; θ) the vector field, Y_i = y(t_i) the observed states,
ℓ = cost(θ, Y). With λ the adjoint (λ' = −f_yᵀλ, λ jumps by ∂ℓ/∂Y_i at t_i),
∇L = ∂ℓ/∂θ + ∫ f_θᵀλ dt (Pontryagin; Chen et al. 2018).

Second order along v (Ito, Matsuda & Miyatake 2021; Papadimitriou &
Giannakoglou 2008): the tangent-linear state δy' = f_y δy + f_θ v, δy(t_0) = 0,
and the second-order adjoint μ = dλ[v],

    μ' = −f_yᵀμ − (∂²(λᵀf)/∂y²) δy − (∂²(λᵀf)/∂y∂θ) v,
    μ jumps by d(∂ℓ/∂Y_i)[δY, v] at t_i,
    Hv = d(∂ℓ/∂θ)[δY, v] + ∫ f_θᵀμ + (∂²(λᵀf)/∂θ∂y) δy + (∂²(λᵀf)/∂θ²) v dt.

All the bracketed terms are one forward-mode derivative of the map
(y, θ, λ) ↦ (f_yᵀλ, f_θᵀλ) along (δy, v, μ), which is what the code computes.
The backward passes re-integrate y (and δy) alongside the adjoints and reset
them to the stored forward values at each observation time (checkpointing at
observations, as SciMLSensitivity's ``BacksolveAdjoint`` does by default), so
memory is independent of the number of steps.

**Error control of the backward solves.** By default the step-size controller
measures the error of every entry of the backward state, including the p entries
that accumulate ∫ f_θᵀλ dt. With ``seminorm=True`` (Kidger, Chen & Lyons, *"Hey,
that's not an ODE": Faster ODE Adjoints via Seminorms*, ICML 2021) it measures
only the entries that feed back into the dynamics (y and λ for backsolve, λ for
interpolating): the parameter integral is then a quadrature on the steps that λ
needs, which it does not influence, and many fewer steps are taken when p is large.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import optimistix as optx

from pyodejl._jit import jit
from pyodejl.solving.integrate import make_controller
from pyodejl.solving.solvers import solver_spec


def _seminorm(controlled: int):
    """RMS over the first ``controlled`` leaves of a backward state's scaled error only."""

    def norm(scaled_error):
        return optx.rms_norm(jax.tree_util.tree_leaves(scaled_error)[:controlled])

    return norm


def _solve(model, rhs, t0, t1, y0, args, saveat, step_ts=None, norm=None, max_steps=None):
    """One Diffrax solve of ``rhs`` with the model's solver, controller and tolerances.

    Forward solves (``step_ts`` given: steps land on the observation times)
    control the error of the model's state entries only (``model.error_dims``);
    backward adjoint solves control every entry, or what ``norm`` measures.
    """
    spec = solver_spec(model.solver)
    controller = make_controller(model, step_ts, controlled_state=step_ts is not None, norm=norm)
    if spec.adaptive:
        dt0 = None if model.dt is None else jnp.sign(t1 - t0) * model.dt
    else:
        dt0 = jnp.sign(t1 - t0) * model.dt
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs),
        spec.make(model.rtol, model.atol),
        t0,
        t1,
        dt0,
        y0,
        args=args,
        saveat=saveat,
        stepsize_controller=controller,
        max_steps=model.max_steps if max_steps is None else max_steps,
        throw=False,
        adjoint=diffrax.ForwardMode(),
    )
    return sol, sol.result == diffrax.RESULTS.successful


def _sweep_backward(model, rhs, ts, state, args, reset, jump, norm=None):
    """Integrate ``state`` from ts[-1] back to ts[0] one observation interval at a time.

    Before each interval ``reset(state, i)`` restores checkpointed components at
    ts[i]; after it ``jump(state, i - 1)`` adds the observation's contribution.
    """
    saveat = diffrax.SaveAt(t1=True)

    def interval(carry, i):
        st = reset(carry, i)
        sol, ok = _solve(model, rhs, ts[i], ts[i - 1], st, args, saveat, norm=norm)
        st = jax.tree_util.tree_map(lambda x: x[-1], sol.ys)
        return jump(st, i - 1), ok

    T = ts.shape[0]
    state, oks = jax.lax.scan(interval, state, jnp.arange(T - 1, 0, -1))
    return state, jnp.all(oks)


def _forward_states(problem, vf, ts, y0):
    model = problem.model
    rhs = lambda t, y, th: model.rhs(t, y, th)
    sol, ok = _solve(model, rhs, ts[0], ts[-1], y0, vf, diffrax.SaveAt(ts=ts), step_ts=ts)
    return sol.ys, ok


def _cost_gradient(problem, theta, Y, data):
    """(∂ℓ/∂Y, ∂ℓ/∂θ) with Y laid out (T, B, D); ∂ℓ/∂θ is zero on the vector field."""
    gth, gY = jax.grad(problem.cost_of_states, argnums=(0, 1))(theta, Y, data)
    return gY, gth


def _pad_vf(problem, g_vf, like):
    return like.at[: problem.num_vf].add(g_vf)


def _nan_unless(ok, x):
    return jnp.where(ok, x, jnp.nan)


def _backsolve(problem, theta, ts, y0, data, seminorm=False):
    model = problem.model
    vf, _ = problem.split(theta)
    Y, ok_f = _forward_states(problem, vf, ts, y0)
    gY, g_direct = _cost_gradient(problem, theta, Y, data)

    def rhs(t, s, th):
        y, lam, _ = s
        f, pull = jax.vjp(lambda a, b: model.rhs(t, a, b), y, th)
        gy, gth = pull(lam)
        return f, -gy, -gth

    T = ts.shape[0]
    state = (Y[T - 1], gY[T - 1], jnp.zeros_like(vf))
    reset = lambda s, i: (Y[i], s[1], s[2])
    jump = lambda s, i: (s[0], s[1] + gY[i], s[2])
    norm = _seminorm(2) if seminorm else None  # (y, λ) controlled, ∫ f_θᵀλ not
    (_, _, g_vf), ok_b = _sweep_backward(model, rhs, ts, state, vf, reset, jump, norm)
    return _nan_unless(ok_f & ok_b, _pad_vf(problem, g_vf, g_direct))


@jit(static_argnums=(0, 5))
def gradient_backsolve(problem, theta, ts, y0, data, seminorm=False):
    """∇L by the continuous adjoint integrated backward (Chen et al. 2018). ``(p,)``.

    ``seminorm``: control the error of (y, λ) only (see the module docstring).
    """
    return _backsolve(problem, theta, ts, y0, data, seminorm)


def dense_step_budget(steps: int, max_steps: int) -> int:
    """Step budget of the interpolating adjoint's forward solve for a solve of ``steps`` steps.

    Diffrax allocates (and fills) the dense interpolant for every step of the budget,
    so the budget follows the steps actually taken: the power of two above
    ``2·steps + 8`` (room for a different rejection pattern; few distinct compiled
    sizes), at least 16 and at most ``max_steps``.
    """
    return int(min(max_steps, 1 << max(4, int(2 * steps + 8).bit_length())))


@jit(static_argnums=(0, 5, 6))
def gradient_interpolating(problem, theta, ts, y0, data, seminorm=False, dense_steps=None):
    """∇L by the continuous adjoint, y(t) read from the forward dense interpolant. ``(p,)``.

    ``seminorm``: control the error of λ only (see the module docstring).
    ``dense_steps``: the forward solve's step budget (default ``model.max_steps``;
    the objectives pass :func:`dense_step_budget`). Diffrax allocates the dense
    interpolant for every step of the budget (stages × state per step), so a budget
    near the steps actually taken saves filling a large buffer on every call (on the
    digits model of seed 004 ch. 5, 64 × 64 state, max_steps 8192: 0.75 s → 0.015 s
    per gradient); a solve that exceeds it returns NaN.
    """
    model = problem.model
    vf, _ = problem.split(theta)
    rhs_f = lambda t, y, th: model.rhs(t, y, th)
    dense = diffrax.SaveAt(ts=ts, dense=True)
    fwd, ok_f = _solve(model, rhs_f, ts[0], ts[-1], y0, vf, dense, step_ts=ts, max_steps=dense_steps)
    Y = fwd.ys
    gY, g_direct = _cost_gradient(problem, theta, Y, data)

    def rhs(t, s, th):
        lam, _ = s
        y = fwd.evaluate(t)
        _, pull = jax.vjp(lambda a, b: model.rhs(t, a, b), y, th)
        gy, gth = pull(lam)
        return -gy, -gth

    T = ts.shape[0]
    state = (gY[T - 1], jnp.zeros_like(vf))
    jump = lambda s, i: (s[0] + gY[i], s[1])
    norm = _seminorm(1) if seminorm else None  # λ controlled, ∫ f_θᵀλ not
    (_, g_vf), ok_b = _sweep_backward(model, rhs, ts, state, vf, lambda s, i: s, jump, norm)
    return _nan_unless(ok_f & ok_b, _pad_vf(problem, g_vf, g_direct))


@jit(static_argnums=0)
def gradient_forward_sensitivity(problem, theta, ts, y0, data):
    """∇L from the forward-sensitivity equations S' = f_y S + f_θ, S = ∂y/∂θ. ``(p,)``.

    Integrates ``p`` sensitivity columns alongside the state: cost grows with p.
    """
    model = problem.model
    vf, _ = problem.split(theta)
    p = vf.shape[0]
    eye = jnp.eye(p, dtype=vf.dtype)

    def rhs(t, s, th):
        y, S = s
        g = lambda a, b: model.rhs(t, a, b)
        f = g(y, th)
        col = lambda sj, ej: jax.jvp(g, (y, th), (sj, ej))[1]
        dS = jax.vmap(col, in_axes=(-1, 0), out_axes=-1)(S, eye)
        return f, dS

    S0 = jnp.zeros(y0.shape + (p,), dtype=y0.dtype)
    sol, ok = _solve(model, rhs, ts[0], ts[-1], (y0, S0), vf, diffrax.SaveAt(ts=ts), step_ts=ts)
    Y, S = sol.ys
    gY, g_direct = _cost_gradient(problem, theta, Y, data)
    g_vf = jnp.einsum("tbd,tbdp->p", gY, S)
    return _nan_unless(ok, _pad_vf(problem, g_vf, g_direct))


@jit(static_argnums=0)
def hvp_adjoint_direct(problem, args, theta, V):
    """H V by forward mode through the backsolve-adjoint gradient. V: ``(p, b)``."""
    ts, y0, data = args
    grad = lambda th: _backsolve(problem, th, ts, y0, data)
    one = lambda v: jax.jvp(grad, (theta,), (v,))[1]
    return jax.vmap(one, in_axes=1, out_axes=1)(V)


def _second_order_adjoint(problem, theta, v, ts, y0, data):
    model = problem.model
    vf, _ = problem.split(theta)
    v_vf, _ = problem.split(v)

    def tlm(t, s, th):
        y, dy = s
        return jax.jvp(lambda a, b: model.rhs(t, a, b), (y, th), (dy, v_vf))

    sol, ok_f = _solve(model, tlm, ts[0], ts[-1], (y0, jnp.zeros_like(y0)), vf, diffrax.SaveAt(ts=ts), step_ts=ts)
    Y, dY = sol.ys
    (gY, _), (dgY, dg_direct) = jax.jvp(
        lambda th, Yx: _cost_gradient(problem, th, Yx, data), (theta, Y), (v, dY)
    )

    def rhs(t, s, th):
        y, dy, lam, mu, _ = s

        def first_order(a, b, lam_):
            f, pull = jax.vjp(lambda a_, b_: model.rhs(t, a_, b_), a, b)
            gy, gth = pull(lam_)
            return f, gy, gth

        (f, gy, _), (df, dgy, dgth) = jax.jvp(first_order, (y, th, lam), (dy, v_vf, mu))
        return f, df, -gy, -dgy, -dgth

    T = ts.shape[0]
    state = (Y[T - 1], dY[T - 1], gY[T - 1], dgY[T - 1], jnp.zeros_like(vf))
    reset = lambda s, i: (Y[i], dY[i], s[2], s[3], s[4])
    jump = lambda s, i: (s[0], s[1], s[2] + gY[i], s[3] + dgY[i], s[4])
    (_, _, _, _, hv_vf), ok_b = _sweep_backward(model, rhs, ts, state, vf, reset, jump)
    return _nan_unless(ok_f & ok_b, _pad_vf(problem, hv_vf, dg_direct))


@jit(static_argnums=0)
def hvp_second_order_adjoint(problem, args, theta, V):
    """H V by the continuous second-order adjoint, one product per column. V: ``(p, b)``."""
    ts, y0, data = args
    one = lambda v: _second_order_adjoint(problem, theta, v, ts, y0, data)
    return jax.vmap(one, in_axes=1, out_axes=1)(V)
