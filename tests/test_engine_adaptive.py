"""The adaptive explicit Runge–Kutta loop against Diffrax's controller, and its counts."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl.solving.adaptive_rk import adaptive_rk, initial_step
from pyodejl.solving.explicit_rk import tableau_of
from pyodejl.solving.solvers import solver_spec

TS = np.linspace(0.0, 3.0, 7)
Y0 = np.array([[1.0, 0.0], [0.2, -1.0]])


def stiff_enough(solver):
    """A problem on which every explicit pair rejects some steps at these tolerances."""
    model = pj.NeuralODE(pj.MLP([2, 16, 2], "tanh"), solver=solver, rtol=1e-7, atol=1e-9)
    return model, model.init(1) * 6


def first_step(model, theta):
    """Our automatic first step, handed to Diffrax so both start alike."""
    f = lambda t, y: model.rhs(t, y, jnp.asarray(theta))
    y0 = jnp.asarray(Y0)
    return initial_step(f, TS[0], y0, f(TS[0], y0), solver_spec(model.solver).order, model.rtol, model.atol)


def diffrax_solve(model, theta):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, a: model.rhs(t, y, a)),
        solver_spec(model.solver).make(model.rtol, model.atol),
        TS[0],
        TS[-1],
        first_step(model, theta),
        jnp.asarray(Y0),
        args=jnp.asarray(theta),
        saveat=diffrax.SaveAt(ts=TS),
        stepsize_controller=diffrax.ClipStepSizeController(
            diffrax.PIDController(rtol=model.rtol, atol=model.atol), step_ts=TS
        ),
        max_steps=model.max_steps,
    )


@pytest.mark.parametrize("solver", ["dopri5", "tsit5", "bosh3"])
def test_controller_reproduces_diffrax(solver):
    """Same attempted/accepted/rejected steps and the same states as diffrax.diffeqsolve
    with PIDController clipped to the observation times, started from the same step.

    On the same grid the states agree to round-off (~1e-14); a grid that differed
    by even one step would move them by the local error, ~rtol = 1e-7.
    """
    model, theta = stiff_enough(solver)
    sol = model.solve(theta, TS, Y0)
    ref = diffrax_solve(model, theta)
    s = sol.stats
    assert s.num_rejected_steps > 0  # the rejection branch is exercised
    assert (s.num_steps, s.num_accepted_steps, s.num_rejected_steps) == (
        int(ref.stats["num_steps"]),
        int(ref.stats["num_accepted_steps"]),
        int(ref.stats["num_rejected_steps"]),
    )
    assert np.abs(sol.ys - np.swapaxes(np.asarray(ref.ys), 0, 1)).max() < 1e-12
    grid = sol.grid.times[: sol.grid.num_steps + 1]
    assert np.all(np.diff(grid) > 0) and set(TS) <= set(grid)


def test_dopri8_agrees_with_diffrax_to_tolerance():
    """dopri8's local error estimates here are within a few hundred ulp of round-off,
    so the two codes' step sizes drift apart at the 1e-6 level (the estimates agree
    to that relative accuracy: same tableau, different summation order); the
    solutions still agree far inside the tolerance."""
    model, theta = stiff_enough("dopri8")
    sol = model.solve(theta, TS, Y0)
    ref = diffrax_solve(model, theta)
    assert np.abs(sol.ys - np.swapaxes(np.asarray(ref.ys), 0, 1)).max() < 1e-9
    assert abs(sol.stats.num_steps - int(ref.stats["num_steps"])) <= 2


def test_initial_step_is_diffrax_hairer_rule():
    """Diffrax's PIDController computes the same starting step for a bare ODETerm
    (diffeqsolve itself wraps the term and starts at 0.01 instead)."""
    model, theta = stiff_enough("dopri5")
    term = diffrax.ODETerm(lambda t, y, a: model.rhs(t, y, a))
    solver = diffrax.Dopri5()
    t1, _ = diffrax.PIDController(rtol=model.rtol, atol=model.atol).init(
        term, TS[0], TS[-1], jnp.asarray(Y0), None, jnp.asarray(theta), solver.func, solver.error_order(term)
    )
    assert float(first_step(model, theta)) == pytest.approx(float(t1) - TS[0], rel=1e-14)


def test_nfe_counts_every_evaluation():
    """The reported nfe equals the vector-field calls actually executed."""
    model, theta = stiff_enough("dopri5")
    calls = []

    def counted(t, y):
        jax.debug.callback(lambda: calls.append(1))
        return model.rhs(t, y, jnp.asarray(theta))

    run = jax.jit(lambda ts, y0: adaptive_rk(tableau_of("dopri5"), 5, model.rtol, model.atol, model.max_steps, counted, ts, y0))
    _, _, steps, _ = run(jnp.asarray(TS), jnp.asarray(Y0))
    jax.effects_barrier()
    stats = model.solve(theta, TS, Y0).stats
    assert int(steps[0]) == stats.num_steps and stats.num_rejected_steps > 0
    assert len(calls) == stats.nfe


def test_step_limit_and_given_initial_step():
    model, theta = stiff_enough("dopri5")
    tab, q = tableau_of("dopri5"), 5
    f = lambda t, y: model.rhs(t, y, jnp.asarray(theta))
    times, ys, (n, n_acc, n_rej), ok = adaptive_rk(tab, q, 1e-9, 1e-11, 5, f, jnp.asarray(TS), jnp.asarray(Y0))
    assert not bool(ok) and int(n) == 5 and np.isinf(np.asarray(times)[int(n_acc) + 1 :]).all()
    times, *_ = adaptive_rk(tab, q, 1e-9, 1e-11, 4096, f, jnp.asarray(TS), jnp.asarray(Y0), dt0=1e-3)
    assert float(times[1]) == pytest.approx(1e-3, rel=1e-15)


def test_unknown_compiler_option_falls_back_to_plain_jit(monkeypatch):
    """An XLA without one of our compile options still runs fast_compile kernels."""
    import pyodejl._jit as pjit

    monkeypatch.setattr(pjit, "COMPILER_OPTIONS", {"xla_no_such_option_in_any_version": True})
    monkeypatch.setattr(pjit, "_options_supported", True)
    double = pjit.jit(lambda x: 2.0 * x, fast_compile=True)
    assert float(double(jnp.asarray(3.0))) == 6.0
    assert pjit._options_supported is False
