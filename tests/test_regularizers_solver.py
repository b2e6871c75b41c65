"""Solver-heuristic regularisers (seed 004 ch. 5–6), weight schedules, baselines.

References and bounds:

* **Values** are recomputed independently in NumPy on the step grid the
  solve reports (``obj.solve(theta).grid``): our own Runge–Kutta arithmetic
  from Diffrax's Butcher tables and a NumPy MLP, then E_j, S_j and the
  aggregate. Same arithmetic in another order: agreement to round-off, which
  the estimates amplify — E_j is a cancelling difference of stages over the
  tolerance scale, S_j a ratio of two small differences (bounds per test).
* **Gradients** against central differences *of the same discrete loss*: the
  loss on θ's frozen step grid (``obj.direct_function(theta)``), which is the
  function the ``discrete`` gradient differentiates — step sizes are constants.
  A five-point stencil at h = 3e-4 balances its O(h⁴) truncation against the
  round-off E_j carries from the cancellation in its embedded difference
  (observed 2e-7; bound 2e-6).
  (The library's ``fd``/``fd-grad`` re-solve at every perturbed θ, so on a
  moving grid they also differentiate the step sizes, which E_j·dt_j depends
  on at O(1): they are compared where the grid is locally constant, below.)
* **Hessians** where every step ends on an observation time (uniform ``ts``,
  a first step ``dt`` ≥ the spacing, no rejections — asserted), so the grid is
  locally independent of θ and the library's ``fd-grad`` and ``fd`` differentiate
  the same function as ``direct-direct``, ``direct-adjoint`` and
  ``elementwise``. Same-discretisation methods agree to round-off amplified by
  S_j's ratio of small differences (observed ≤ 3.6e-11; bound 4e-10);
  ``fd-grad`` to its truncation/noise floor (observed 8.4e-7; bound 8e-6);
  ``fd`` to its floor (observed 1.5e-4; bound 1.5e-3).
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl import regularizers as R
from pyodejl.derivatives.autodiff import batched_values
from pyodejl.regularizers.base import TermInputs

TS = np.linspace(0.0, 1.0, 5)
Y0 = np.array([[1.0, 0.0], [0.4, 0.6]])
TABLEAUX = {"dopri5": diffrax.Dopri5, "tsit5": diffrax.Tsit5, "bosh3": diffrax.Bosh3, "dopri8": diffrax.Dopri8}


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def targets_for(ts, B=2):
    return np.stack([np.stack([np.cos(ts + k), -np.sin(ts + k)], 1) for k in range(B)])


def np_mlp(theta):
    """The [2, 3, 2] tanh MLP in NumPy (PyTorch layout: W1 (3, 2), b1, W2 (2, 3), b2)."""
    W1, b1 = theta[:6].reshape(3, 2), theta[6:9]
    W2, b2 = theta[9:15].reshape(2, 3), theta[15:17]
    return lambda t, y: np.tanh(y @ W1.T + b1) @ W2.T + b2


def np_steps(f, times, y0, tab):
    """Our own RK arithmetic on the given grid: per step (y, y1, stages g, derivatives k, error)."""
    c = np.concatenate([[0.0], np.asarray(tab.c)])
    s = len(tab.b_sol)
    y, out = np.array(y0, dtype=float), []
    for t0, t1 in zip(times[:-1], times[1:]):
        h = t1 - t0
        ks, gs = [], []
        for i in range(s):
            g = y + h * sum(tab.a_lower[i - 1][m] * ks[m] for m in range(i)) if i else y
            gs.append(g)
            ks.append(f(t0 + c[i] * h, g))
        y1 = y + h * sum(b * k for b, k in zip(tab.b_sol, ks))
        err = h * sum(e * k for e, k in zip(tab.b_error, ks))
        out.append((h, y, y1, gs, ks, err))
        y = y1
    return out


def np_error(step, rtol, atol):
    h, y, y1, gs, ks, err = step
    r = err / (atol + rtol * np.maximum(np.abs(y), np.abs(y1)))
    return np.sqrt(np.mean(r * r))


def np_stiffness(step, a, b):
    h, y, y1, gs, ks, err = step
    return np.linalg.norm(ks[b] - ks[a]) / np.linalg.norm(gs[b] - gs[a])


def aggregate(values, how):
    return {"sum": np.sum, "mean": np.mean, "max": np.max}[how](values)


def make_objective(terms, solver="tsit5", rtol=1e-6, atol=1e-8, ts=TS, dt=None, sizes=(2, 3, 2)):
    ts = np.asarray(ts, dtype=float)
    model = pj.NeuralODE(pj.MLP(list(sizes), "tanh"), solver=solver, rtol=rtol, atol=atol, dt=dt)
    return pj.TrajectoryLoss(model, ts=ts, y0=Y0, targets=targets_for(ts), regularizers=terms), model


THETA = pj.MLP([2, 3, 2]).init(1) * 1.5


# ---- global terms: values -------------------------------------------------------------


@pytest.mark.parametrize("solver", ["tsit5", "dopri5", "bosh3"])
def test_global_estimates_against_own_tableau_arithmetic(solver):
    has_s = pj.SOLVERS[solver].unit_stages is not None
    terms = [R.ErrorEstimate(2.0)] + ([R.StiffnessEstimate(0.5)] if has_s else [])
    obj, model = make_objective(terms, solver=solver)
    sol = obj.solve(THETA)
    times = sol.grid.times[: sol.grid.num_steps + 1]
    steps = np_steps(np_mlp(THETA), times, Y0, TABLEAUX[solver].tableau)
    E = np.array([np_error(s, model.rtol, model.atol) for s in steps])
    dt = np.diff(times)
    assert np.all(E < 1) and E.max() > 0.05  # accepted steps, and not trivially small
    parts = obj.terms(THETA)
    # E_j's round-off is ε·|k|·h over atol + rtol|y| ≥ 1e-8, i.e. ≤ 1e-9 absolute
    # per step (observed ≤ 4e-11); summed with Σ dt = 1 (observed 2e-11)
    assert parts["error_estimate"] == pytest.approx(np.sum(E * dt), abs=2e-10)
    total = parts["data"] + 2.0 * parts["error_estimate"]
    if has_s:
        a, b = pj.SOLVERS[solver].unit_stages
        S = np.array([np_stiffness(s, a, b) for s in steps])
        assert parts["stiffness_estimate"] == pytest.approx(np.sum(S * dt), rel=1e-11)  # observed 6e-13
        total += 0.5 * parts["stiffness_estimate"]
    assert obj.value(THETA) == pytest.approx(total, rel=1e-12)
    # the aggregates, on the reported (NumPy) step record
    rec = sol.steps
    inputs = TermInputs(THETA, THETA, THETA[:0], None, TS, steps=rec, error_dims=2, model=model)
    for how in ("sum", "mean", "max"):
        assert float(R.ErrorEstimate(1.0, aggregate=how).value(inputs)) == pytest.approx(
            aggregate(E * dt, how), abs=2e-10
        )
        if has_s:
            assert float(R.StiffnessEstimate(1.0, aggregate=how).value(inputs)) == pytest.approx(
                aggregate(S * dt, how), rel=1e-11
            )


def test_stiffness_estimate_on_dopri8_uses_its_last_two_unit_stages():
    # large steps (first step 0.3): dopri8's c = 1 stages differ by ~1e-7 only, so
    # S_j carries a relative round-off of ε·|g|/|g_b − g_a| ≈ 1e-9 (observed 1.2e-9)
    obj, model = make_objective(
        [R.StiffnessEstimate(1.0)], solver="dopri8", rtol=1e-3, atol=1e-5, ts=[0.0, 1.0], dt=0.3
    )
    sol = obj.solve(THETA)
    times = sol.grid.times[: sol.grid.num_steps + 1]
    tab = TABLEAUX["dopri8"].tableau
    steps = np_steps(np_mlp(THETA), times, Y0, tab)
    # The pair, stated independently: Prince & Dormand's RK8(7)13M has abscissae c₁…c₁₃ below
    # (1-based, c₁ = 0), so its stages 12 and 13 sit at c = 1; Diffrax appends the first-same-as-last
    # stage f(t₁, y₁) (its row of A equals b), also at c = 1. The last two (0-based) are 12 and 13.
    published_c = [1 / 18, 1 / 12, 1 / 8, 5 / 16, 3 / 8, 59 / 400, 93 / 200, 5490023248 / 9719169821, 13 / 20,
                   1201146811 / 1299019798, 1.0, 1.0]
    assert np.allclose(np.asarray(tab.c)[:12], published_c, rtol=1e-15, atol=0) and tab.c[12] == 1.0
    assert np.array_equal(np.asarray(tab.a_lower[12]), np.asarray(tab.b_sol)[:13]) and tab.b_sol[13] == 0
    # Order conditions of the quadrature (bushy trees): Σ b c^(k−1) = 1/k, to order 8.
    c_all, b = np.concatenate([[0.0], np.asarray(tab.c)]), np.asarray(tab.b_sol)
    assert np.allclose([b @ c_all ** (k - 1) for k in range(1, 9)], 1 / np.arange(1, 9), rtol=0, atol=1e-14)
    # The embedded 7th-order weights b − b_error: exact to order 7, not 8 (so it is the 8(7) pair).
    emb = [(b - np.asarray(tab.b_error)) @ c_all ** (k - 1) - 1 / k for k in range(1, 9)]
    assert np.allclose(emb[:7], 0, atol=1e-14) and abs(emb[7]) > 1e-5
    a, b = 12, 13
    assert pj.SOLVERS["dopri8"].unit_stages == (a, b)
    S = np.array([np_stiffness(s, a, b) for s in steps])
    assert obj.terms(THETA)["stiffness_estimate"] == pytest.approx(np.sum(S * np.diff(times)), rel=1e-8)


# ---- global terms: derivatives -----------------------------------------------------------


def test_global_gradient_against_differences_of_the_frozen_grid_loss():
    obj, _ = make_objective([R.ErrorEstimate(50.0), R.StiffnessEstimate(0.5)])
    g = obj.grad(THETA)
    fn, args = obj.direct_function(THETA)
    V = np.random.default_rng(0).standard_normal((4, len(THETA)))
    # five-point stencil: E_j is strongly nonlinear (truncation of the two-point
    # rule is 6e-4 at h = 1e-3) and carries ~1e-11 of round-off (so h >~ 1e-4)
    h = 3e-4
    P = np.concatenate([THETA + h * V, THETA - h * V, THETA + 2 * h * V, THETA - 2 * h * V])
    L = np.asarray(batched_values(fn, jnp.asarray(P), args)).reshape(4, 4)
    fd = (8 * (L[0] - L[1]) - (L[2] - L[3])) / (12 * h)
    assert rel(V @ g, fd) < 2e-6  # observed 2e-7
    # the terms contribute to it
    plain, _ = make_objective(None)
    assert rel(g, plain.grad(THETA)) > 1e-2


def _frozen_grid_objective(terms):
    ts = np.linspace(0.0, 1.0, 9)
    obj, model = make_objective(terms, rtol=1e-4, atol=1e-6, ts=ts, dt=1.0)
    stats = obj.stats(THETA)
    assert stats.num_rejected_steps == 0 and np.array_equal(obj.solve(THETA).grid.times, ts)
    return obj


def test_global_hessian_products_agree_where_the_grid_is_locally_fixed():
    obj = _frozen_grid_objective([R.ErrorEstimate(10.0), R.StiffnessEstimate(0.1)])
    V = np.random.default_rng(1).standard_normal((len(THETA), 2))
    methods = {
        "direct-direct": "direct-direct",
        "fd-grad": pj.FiniteDifferenceGradient(h=1e-5),  # inside the flat region of its h ladder
    }
    Hv = {m: obj.hvp(THETA, V, method=meth) for m, meth in methods.items()}
    assert rel(Hv["fd-grad"], Hv["direct-direct"]) < 4e-6  # observed 4.3e-7
    # The full Hessian by forward-over-reverse, projected on V: same discretisation as the
    # forward-over-forward products, so round-off amplified by S_j's ratio (observed 3.5e-11).
    assert rel(obj.hessian(THETA, method="direct-adjoint") @ V, Hv["direct-direct"]) < 4e-10
    for m in ("backsolve", "interpolating", "forward"):
        with pytest.raises(NotImplementedError, match="per-step record"):
            obj.grad(THETA, method=m)
    with pytest.raises(NotImplementedError, match="per-step record"):
        obj.hvp(THETA, V[:, 0], method="adjoint-adjoint")


@pytest.mark.slow
def test_global_full_hessians_agree_across_every_method_that_supports_them():
    obj = _frozen_grid_objective([R.ErrorEstimate(10.0), R.StiffnessEstimate(0.1)])
    H = {m: obj.hessian(THETA, method=m) for m in ("direct-direct", "direct-adjoint", "elementwise", "fd-grad", "fd")}
    bound = {"fd-grad": 8e-6, "fd": 1.5e-3}
    for a in H:
        for b in H:
            assert rel(H[a], H[b]) < max(bound.get(a, 4e-10), bound.get(b, 4e-10)), (a, b)
    with pytest.raises(NotImplementedError, match="per-step record"):
        obj.hessian(THETA, method="adjoint-direct")


# ---- bad input ----------------------------------------------------------------------------


def test_solver_heuristics_bad_input():
    with pytest.raises(ValueError, match="aggregate"):
        R.ErrorEstimate(1.0, aggregate="median")
    with pytest.raises(ValueError, match="weight"):
        R.StiffnessEstimate(-1.0)
    with pytest.raises(ValueError, match="'rk4'.*fixed steps"):
        make_objective([R.ErrorEstimate(1.0)], solver="rk4", dt=0.1)
    with pytest.raises(ValueError, match="c = 1.*'bosh3'"):
        make_objective([R.StiffnessEstimate(1.0)], solver="bosh3")
    with pytest.raises(NotImplementedError, match="'kvaerno5' is implicit"):
        make_objective([R.ErrorEstimate(1.0)], solver="kvaerno5")


# ---- weight schedules -------------------------------------------------------------------


def test_exponential_schedule_is_the_seeds_annealing_formula():
    """Seed 004: λ(k) = λ₀·exp(−c·k), c = log(λ₀/λ₁)/K, from 100 to 10 over K steps."""
    K = 75
    s = R.ExponentialDecay(100.0, 10.0, steps=K)
    c = np.log(100.0 / 10.0) / K
    for k in (0, 1, 30, 74, 75):
        assert s(k) == pytest.approx(100.0 * np.exp(-c * k), rel=1e-14)
    assert s(500) == pytest.approx(10.0, rel=1e-14)  # held at the end value
    grow = R.schedule("exponential", 0.1, 5.0, 10)  # seed 004's multiscale model grows it
    assert grow(10) == pytest.approx(5.0, rel=1e-14) and grow(5) == pytest.approx(np.sqrt(0.5), rel=1e-14)
    assert R.schedule(2.5)(7) == 2.5 and R.Constant(0.0)(3) == 0.0
    assert R.weights_at({"a": s, "b": 0.3}, 75) == {"a": pytest.approx(10.0), "b": 0.3}
    with pytest.raises(ValueError, match="unknown schedule"):
        R.schedule("cosine", 1.0)
    with pytest.raises(ValueError, match="start"):
        R.ExponentialDecay(0.0, 1.0, 10)
    with pytest.raises(ValueError, match="steps"):
        R.ExponentialDecay(1.0, 2.0, 0)
    with pytest.raises(ValueError, match="training step"):
        s(-1)
    with pytest.raises(ValueError, match="weight"):
        R.Constant(-1.0)


def test_set_weights_changes_data_not_the_compiled_loss():
    from pyodejl.derivatives.ode_loss import _evaluate

    obj, _ = make_objective([R.ErrorEstimate(100.0), R.WeightDecay(1e-3)])
    parts = obj.terms(THETA)
    obj.value(THETA)
    compiled = _evaluate._current()._cache_size()
    for k in (0, 40, 75):
        w = R.weights_at({"error_estimate": R.ExponentialDecay(100.0, 10.0, 75)}, k)
        obj.set_weights(w)
        assert obj.weights == {"error_estimate": pytest.approx(w["error_estimate"]), "weight_decay": 1e-3}
        expected = parts["data"] + w["error_estimate"] * parts["error_estimate"] + 1e-3 * parts["weight_decay"]
        assert obj.value(THETA) == pytest.approx(expected, rel=1e-13)
    assert _evaluate._current()._cache_size() == compiled
    with pytest.raises(ValueError, match="no term named 'kinetic_energy'"):
        obj.set_weights({"kinetic_energy": 1.0})
    with pytest.raises(ValueError, match="weight"):
        obj.set_weights({"error_estimate": -1.0})
    with pytest.raises(ValueError, match="unknown regulariser"):
        R.regularizer("erro_estimate", 1.0)


# ---- local terms (seed 004 ch. 6) ------------------------------------------------------------


def np_initial_step(f, t0, y0, q, rtol, atol):
    """Hairer, Nørsett & Wanner (1993) §II.4 starting step, in NumPy (RMS norms)."""
    rms = lambda x: np.sqrt(np.mean(x * x))
    f0 = f(t0, y0)
    scale = atol + np.abs(y0) * rtol
    d0, d1 = rms(y0 / scale), rms(f0 / scale)
    h0 = 1e-6 if min(d0, d1) < 1e-5 else 0.01 * d0 / d1
    d2 = rms((f(t0 + h0, y0 + h0 * f0) - f0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / q)
    return min(100 * h0, h1)


def np_state_at(f, times, y0, tab, t):
    """y(t) by our own RK steps along the grid nodes up to t (a node)."""
    k = int(np.flatnonzero(np.isclose(times, t, rtol=0, atol=1e-15))[0])
    steps = np_steps(f, times[: k + 1], y0, tab)
    return steps[-1][2] if steps else np.array(y0, dtype=float)


@pytest.mark.parametrize("kind", ["error", "stiffness"])
def test_local_unbiased_value_against_own_arithmetic(kind):
    cls = R.LocalErrorEstimate if kind == "error" else R.LocalStiffnessEstimate
    term = cls(1.0, sampling="unbiased", seed=3, step="initial")  # the reference code's step rule
    obj, model = make_objective([term])
    t_reg = term.sample_time(TS)
    assert t_reg == pytest.approx(np.random.default_rng(3).random())  # U[0, 1) on [0, 1]
    sol = obj.solve(THETA)
    assert t_reg in sol.ts and t_reg not in TS  # added as an observation time
    f, tab = np_mlp(THETA), TABLEAUX["tsit5"].tableau
    times = sol.grid.times[: sol.grid.num_steps + 1]
    y = np_state_at(f, times, Y0, tab, t_reg)
    dt = min(np_initial_step(f, t_reg, y, 5, model.rtol, model.atol), 1.0 - t_reg)
    (step,) = np_steps(f, np.array([t_reg, t_reg + dt]), y, tab)
    ref = np_error(step, model.rtol, model.atol) if kind == "error" else np_stiffness(step, 5, 6)
    got = obj.terms(THETA)[term.name]
    if kind == "error":
        assert got == pytest.approx(ref * dt, abs=1e-10 * dt)  # E's round-off (see module docstring)
    else:
        # Hairer's first step is short: the c = 1 stages differ by ~1e-7, so S carries
        # a relative round-off of ε·|g|/|g_b − g_a| ~ 1e-9 (observed 1.7e-9)
        assert got == pytest.approx(ref * dt, rel=2e-8)
    # the data term still sees only the user's times
    plain, _ = make_objective(None)
    assert obj.terms(THETA)["data"] == pytest.approx(plain.value(THETA), rel=1e-9)
    assert obj.predict(THETA).shape == (2, len(TS), 2)


def test_local_biased_samples_are_the_solves_steps():
    """Biased sampling with the accepted step: the sample at the start of step j
    regularises exactly the solve's step j, so the mean over j is the global
    ErrorEstimate with aggregate="mean"."""
    obj_g, model = make_objective(None)
    sol = obj_g.solve(THETA)
    nodes = sol.grid.times[: sol.grid.num_steps + 1]
    steps = np_steps(np_mlp(THETA), nodes, Y0, TABLEAUX["tsit5"].tableau)
    per_step = np.array([np_error(s, model.rtol, model.atol) * s[0] for s in steps])
    for seed in range(5):
        t = R.LocalErrorEstimate(1.0, sampling="biased", seed=seed).sample_time(TS, nodes)
        assert t in nodes[:-1]
    values = []
    for j in range(len(nodes) - 1):
        obj, _ = make_objective([R.LocalErrorEstimate(1.0, t_reg=nodes[j])])
        assert np.array_equal(obj.solve(THETA).grid.times, sol.grid.times)  # a node: the grid is unchanged
        values.append(obj.terms(THETA)["local_error_estimate"])
    assert np.allclose(values, per_step, rtol=0, atol=2e-10)
    obj_mean, _ = make_objective([R.ErrorEstimate(1.0, aggregate="mean")])
    assert np.mean(values) == pytest.approx(obj_mean.terms(THETA)["error_estimate"], abs=2e-10)


def test_local_sample_at_t_end_is_an_empty_step():
    term = R.LocalErrorEstimate(1e3, t_reg=1.0)
    obj, _ = make_objective([term])
    plain, _ = make_objective(None)
    assert obj.terms(THETA)["local_error_estimate"] == 0.0
    g = obj.grad(THETA)
    assert np.all(np.isfinite(g)) and rel(g, plain.grad(THETA)) < 1e-13
    with pytest.raises(ValueError, match=r"in \[0.0, 1.0\]"):
        make_objective([R.LocalErrorEstimate(1.0, t_reg=1.5)])[0].value(THETA)


def _local_gradients(methods):
    term = R.LocalErrorEstimate(10.0, sampling="unbiased", seed=3)
    obj, _ = make_objective([term], rtol=1e-7, atol=1e-9)
    plain, _ = make_objective(None, rtol=1e-7, atol=1e-9)
    return {m: obj.grad(THETA, method=m) for m in methods}, plain


def test_local_term_gradient_by_the_backsolve_adjoint():
    """The point of local regularisation: a continuous adjoint differentiates it
    (at rtol 1e-7 observed 1.7e-9 from the discrete gradient; bound 2e-8)."""
    g, plain = _local_gradients(("discrete", "backsolve"))
    assert rel(g["discrete"], plain.grad(THETA)) > 1e-2  # the term contributes
    assert rel(g["backsolve"], g["discrete"]) < 2e-8


@pytest.mark.slow
def test_local_term_gradients_agree_across_discrete_and_continuous_adjoints():
    """The point of local regularisation: backsolve and interpolating adjoints
    differentiate it too. Discrete vs continuous differ by the solvers' error:
    at rtol 1e-7 observed 1.7e-9 (bound 2e-8), 1.0e-9 for the term's part alone.
    (At much tighter tolerances the error estimate itself, a difference of
    nearly equal stage combinations, sits near round-off, and so does the
    agreement of its derivatives.)"""
    methods = ("discrete", "backsolve", "interpolating", "forward")
    g, plain = _local_gradients(methods)
    gp = {m: plain.grad(THETA, method=m) for m in methods}
    assert rel(g["discrete"], gp["discrete"]) > 1e-2  # the term contributes
    for m in methods[1:]:
        assert rel(g[m], g["discrete"]) < 2e-8, m
        assert rel(g[m] - gp[m], g["discrete"] - gp["discrete"]) < 2e-8, m


def test_local_terms_hvps_by_the_continuous_second_order_adjoints():
    """The fast case of the test below: one product by each continuous second-order adjoint
    against direct-direct on the same locally frozen grid. Discrete vs continuous differ by
    the solvers' error (observed 1.8e-9; bound 3e-8, as below)."""
    obj = _frozen_grid_objective(
        [
            R.LocalErrorEstimate(10.0, sampling="biased", seed=2),
            R.LocalStiffnessEstimate(0.1, sampling="biased", seed=5),
        ]
    )
    v = np.random.default_rng(1).standard_normal(len(THETA))
    ref = obj.hvp(THETA, v, method="direct-direct")
    for method in ("adjoint-direct", "adjoint-adjoint"):
        assert rel(obj.hvp(THETA, v, method=method), ref) < 3e-8, method


@pytest.mark.slow
def test_local_terms_hessians_agree_across_all_seven_methods():
    """Local terms read only observed states: every Hessian method applies, the
    continuous second-order adjoints included. Biased samples on a grid whose
    every step ends on an observation time, so the sampled times and steps are
    locally independent of θ (as the finite differences need). Observed: same
    discretisation 4e-11, discrete vs continuous 3e-9, fd-grad 2e-6, fd 5e-5."""
    obj = _frozen_grid_objective(
        [
            R.LocalErrorEstimate(10.0, sampling="biased", seed=2),
            R.LocalStiffnessEstimate(0.1, sampling="biased", seed=5),
        ]
    )
    H = {m: obj.hessian(THETA, method=m) for m in pj.HESSIAN_METHODS}
    same = {"direct-direct", "direct-adjoint", "elementwise"}
    bound = {"fd-grad": 2e-5, "fd": 5e-4}
    for a in H:
        for b in H:
            tol = 5e-10 if (a in same and b in same) or a == b else max(bound.get(a, 3e-8), bound.get(b, 3e-8))
            assert rel(H[a], H[b]) < tol, (a, b, rel(H[a], H[b]))


# ---- baselines: TayNODE and STEER --------------------------------------------------------------

A_LIN = np.array([[-0.4, 1.0], [-1.2, -0.1]])


def _linear_field(t, y, th):
    return th.reshape(2, 2) @ y


def test_taylor_derivative_on_a_linear_ode_is_the_integral_of_a_power_of_A():
    """y' = Ay: dᴷy/dtᴷ = Aᴷ e^{tA} y0, so R_K = mean_b ∫₀¹ ‖Aᴷ e^{tA} y0_b‖² dt
    (quadrature of the closed form; observed 9e-11 at rtol 1e-10, bound 1e-9)."""
    from scipy.integrate import quad
    from scipy.linalg import expm

    vf = pj.VectorField(_linear_field, num_params=4)
    model = pj.NeuralODE(vf, rtol=1e-10, atol=1e-12)
    terms = [R.TaylorDerivative(1.0, order=3), R.KineticEnergy(1.0)]
    obj = pj.TrajectoryLoss(model, TS, Y0, np.zeros((2, len(TS), 2)), regularizers=terms)
    parts = obj.terms(A_LIN.ravel())
    for K, name in ((3, "taylor_derivative"), (1, "kinetic_energy")):
        AK = np.linalg.matrix_power(A_LIN, K)
        ref = np.mean([quad(lambda t: np.sum((AK @ expm(t * A_LIN) @ y) ** 2), 0, 1, epsabs=1e-14)[0] for y in Y0])
        assert parts[name] == pytest.approx(ref, rel=1e-9), name
    # Taylor mode itself, pointwise, for K = 1..4
    y = np.array([0.7, -0.3])
    d = R.taylor_derivatives(lambda t, y_: jnp.asarray(A_LIN) @ y_, 0.2, jnp.asarray(y), 4)
    for k, dk in enumerate(d, start=1):
        assert np.allclose(dk, np.linalg.matrix_power(A_LIN, k) @ y, rtol=1e-14, atol=1e-15)
    with pytest.raises(ValueError, match="order K"):
        R.TaylorDerivative(1.0, order=0)


def test_taylor_mode_on_a_nonlinear_time_dependent_field():
    """y'' = f_t + f_y f by forward-mode Jacobians (round-off: bound 1e-13)."""
    mlp = pj.MLP([2, 3, 2], "tanh", time_dependent=True)
    th = mlp.init(0)
    f = lambda t, y: mlp(t, y, jnp.asarray(th))
    t0, y = jnp.asarray(0.3), jnp.array([0.5, -0.2])
    d = R.taylor_derivatives(f, t0, y, 2)
    ft, fy = jax.jacfwd(f, argnums=0)(t0, y), jax.jacfwd(f, argnums=1)(t0, y)
    assert np.allclose(d[1], ft + fy @ f(t0, y), rtol=1e-13, atol=1e-15)


@pytest.mark.slow
def test_taylor_derivative_is_differentiated_by_discrete_and_continuous_adjoints():
    """The running cost's gradient by discrete vs backsolve: the solvers' error at
    rtol 1e-9 (observed 2.3e-10; bound 3e-9)."""
    mlp = pj.MLP([2, 3, 2], "tanh", time_dependent=True)
    th = mlp.init(0)
    model = pj.NeuralODE(mlp, rtol=1e-9, atol=1e-11)
    obj = pj.TrajectoryLoss(model, TS, Y0, targets_for(TS), regularizers=[R.TaylorDerivative(0.1, order=2)])
    plain = pj.TrajectoryLoss(model, TS, Y0, targets_for(TS))
    g = {m: obj.grad(th, method=m) for m in ("discrete", "backsolve")}
    assert rel(g["discrete"], plain.grad(th)) > 1e-3
    assert rel(g["backsolve"], g["discrete"]) < 3e-9


def test_taylor_derivative_under_the_continuous_adjoints_on_a_linear_ode():
    """The fast case of the test above, on y' = Ay (θ = A): R_2 = ∫‖A² y‖² is quartic in θ, so
    its gradient and Hessian are non-trivial. Discrete vs continuous differ by the solvers' error
    at rtol 1e-9: gradient by backsolve observed 2.3e-9 (bound 3e-8), HVP by the second-order
    adjoint observed 6.6e-9 (bound 1e-7)."""
    model = pj.NeuralODE(pj.VectorField(_linear_field, num_params=4), rtol=1e-9, atol=1e-11)
    targets = targets_for(TS)
    obj = pj.TrajectoryLoss(model, TS, Y0, targets, regularizers=[R.TaylorDerivative(0.1, order=2)])
    th = A_LIN.ravel()
    g = obj.grad(th)
    assert rel(g, pj.TrajectoryLoss(model, TS, Y0, targets).grad(th)) > 1e-1  # the term contributes
    assert rel(obj.grad(th, method="backsolve"), g) < 3e-8
    v = np.random.default_rng(1).standard_normal(len(th))
    assert rel(obj.hvp(th, v, method="adjoint-adjoint"), obj.hvp(th, v, method="direct-direct")) < 1e-7


def test_random_end_time_draws_steer_times():
    steer = R.RandomEndTime(0.1, seed=4)
    ts = np.linspace(0.0, 1.0, 5)
    draws = np.array([steer.times(ts, k)[-1] for k in range(400)])
    assert np.all((draws >= 0.9) & (draws < 1.1))
    # U(T − b, T + b): mean T, variance b²/3 (400 draws: 5 standard errors)
    assert abs(draws.mean() - 1.0) < 5 * 0.1 / np.sqrt(3 * 400)
    assert draws.var() == pytest.approx(0.01 / 3, rel=0.25)  # 5 standard errors of a sample variance (0.045)
    assert np.array_equal(steer.times(ts, 7), steer.times(ts, 7)) and np.array_equal(steer.times(ts, 7)[:-1], ts[:-1])
    assert steer.times(ts, 7)[-1] == 1.0 + (2 * np.random.default_rng([4, 7]).random() - 1) * 0.1
    with pytest.raises(ValueError, match="b = 0.3 must be below"):
        R.RandomEndTime(0.3).times(ts, 0)
    with pytest.raises(ValueError, match="positive"):
        R.RandomEndTime(-0.1)


# ---- VCAB3 (seed 004 §2.2) ---------------------------------------------------------------------


def _vcab3_linear():
    return pj.NeuralODE(pj.VectorField(_linear_field, num_params=4), solver="vcab3", rtol=1e-6, atol=1e-8)


def test_vcab3_converges_with_order_three_on_uniform_and_variable_grids():
    """y' = Ay on [0, 2] against expm: halving every step divides the error by 2³
    (observed orders 2.9–3.0; bounds [2.8, 3.2]), also on a graded grid, which
    exercises the variable-coefficient weights."""
    from scipy.linalg import expm

    from pyodejl.solving.integrate import grid_states_jax

    model, y0 = _vcab3_linear(), np.array([1.0, 0.5])
    exact = expm(2 * A_LIN) @ y0
    for warp in (lambda s: s, lambda s: s**1.5):
        errs = []
        for n in (20, 40, 80, 160):
            times = jnp.asarray(2.0 * warp(np.linspace(0.0, 1.0, n + 1)))
            Y = grid_states_jax(model, jnp.asarray(A_LIN.ravel()), times, jnp.array([0, n]), jnp.asarray(y0[None]))
            errs.append(np.abs(np.asarray(Y[-1, 0]) - exact).max())
        orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
        assert np.all((orders > 2.8) & (orders < 3.2)), orders


def test_vcab3_adaptive_solve_takes_one_evaluation_per_step():
    """Counted with a host callback in the vector field: after the two
    Bogacki–Shampine start-up steps, exactly one evaluation per attempted step,
    which is what ``stats.nfe`` reports."""
    from scipy.linalg import expm

    calls = [0]

    def counted(t, y, th):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return _linear_field(t, y, th)

    y0 = np.array([1.0, 0.5])
    errors = []
    for rtol in (1e-5, 1e-7):
        model = pj.NeuralODE(pj.VectorField(counted, num_params=4), solver="vcab3", rtol=rtol, atol=rtol * 1e-2)
        calls[0] = 0
        sol = model.solve(A_LIN.ravel(), [0.0, 2.0], y0)
        assert sol.stats.nfe == calls[0] == sol.stats.num_steps + 2 + 5
        errors.append(np.abs(sol.ys[-1] - expm(2 * A_LIN) @ y0).max())
    assert errors[1] < errors[0] / 20  # tighter tolerance, smaller error (observed /30)


def test_vcab3_discrete_gradient_against_differences_of_the_frozen_grid_loss():
    model = pj.NeuralODE(pj.MLP([2, 3, 2], "tanh"), solver="vcab3", rtol=1e-6, atol=1e-8)
    obj = pj.TrajectoryLoss(model, TS, Y0, targets_for(TS))
    g = obj.grad(THETA)
    fn, args = obj.direct_function(THETA)
    V = np.random.default_rng(0).standard_normal((3, len(THETA)))
    h = 1e-5  # smooth loss: two-point truncation ~1e-10, round-off ~1e-11 (observed 5e-10)
    L = np.asarray(batched_values(fn, jnp.asarray(np.concatenate([THETA + h * V, THETA - h * V])), args))
    assert rel(V @ g, (L[:3] - L[3:]) / (2 * h)) < 3e-9
    with pytest.raises(NotImplementedError, match="'vcab3' is a multistep method"):
        pj.TrajectoryLoss(model, TS, Y0, targets_for(TS), regularizers=[R.ErrorEstimate(1.0)])


# ---- seed 004 Table 6.1: memory of the gradient methods ------------------------------------


def test_local_regularisation_adds_the_same_memory_whatever_the_steps():
    """Table 6.1's claims, measured by XLA's accounting of the compiled gradients (the
    ``local-memory`` experiment's measurement): backsolve's memory and what a local term adds
    to it do not depend on the number of steps, while the discrete gradient's grows with them.
    Switching the local term off (``None``) makes the added memory 0, which the first assert
    would catch."""
    from pyodejl.experiments.catalogue.local_memory import gradient_memory

    model = pj.NeuralODE(pj.MLP([2, 4, 2], "tanh"), solver="tsit5", rtol=1e-6, atol=1e-8, max_steps=64)
    rng = np.random.default_rng(0)
    y0 = rng.standard_normal((2, 2))
    theta = model.init(0)
    out = {}
    for T in (1.0, 16.0):
        ts = np.linspace(0.0, T, 5)
        targets = rng.standard_normal((2, 5, 2))
        for name, terms in (("none", None), ("local", [R.LocalErrorEstimate(1.0, seed=0)])):
            obj = pj.TrajectoryLoss(model, ts, y0, targets, regularizers=terms)
            out[T, name] = gradient_memory(obj, theta, methods=("discrete", "backsolve"))
    short, long = out[1.0, "none"], out[16.0, "none"]
    assert long["steps"] >= 2 * short["steps"]
    extra = {T: out[T, "local"]["backsolve"] - out[T, "none"]["backsolve"] for T in (1.0, 16.0)}
    assert extra[1.0] > 0 and extra[1.0] == extra[16.0]
    assert short["backsolve"] == long["backsolve"]
    assert long["discrete"] > 1.5 * short["discrete"]
