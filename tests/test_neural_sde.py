"""Neural SDEs: the adaptive SRI solver, its Brownian paths, derivatives and solver-heuristic terms.

References and bounds:

* **Moments** of the Ornstein–Uhlenbeck process dX = −aX dt + b dW over
  2000 independent paths against the closed form
  E X_T = x₀e^{−aT}, Var X_T = b²(1 − e^{−2aT})/(2a). Bound: 4 Monte-Carlo
  standard errors (σ/√n for the mean, Var·√(2/(n−1)) for the variance); the
  solver's bias at rtol = atol = 1e-3 is orders of magnitude below them.
* **Strong order** on geometric Brownian motion dX = μX dt + σX dW, whose
  solution X_T = X₀exp((μ − σ²/2)T + σW_T) is read off the same virtual
  Brownian tree the solver steps on (128 increments, coarsened by Chen's
  relation). Uniform steps h = 2⁻³ … 2⁻⁷ replayed by the library's SRI step:
  mean |error| over 200 paths falls with slope ≈ 1.5 in log h (observed
  1.41 for SRIW1 and for SOSRI); bound > 1.2 separates order 1.5 from
  Milstein-type order 1 and Euler–Maruyama's 0.5, so a mistyped SOSRI
  coefficient fails it.
* **Adaptive solves** follow one path through rejected steps: on the same GBM
  the adaptive solution converges pathwise to the closed form (bound below).
* **Error estimate** against a closed form: with a constant drift c and no
  diffusion, SRIW1's E = δ·h·(a₁ + a₂) = h·c/3 (δ = 1/6) per step exactly
  (SOSRI's, over its four drift stages with δ = 1, 4h·c), so
  ERNSDE's R_E = Σⱼ hⱼ·(hⱼ|c|/3)/(atol + rtol·max|y|) on the reported grid.
* **Stiffness estimate** against a closed form: for the diagonal diffusion
  b(y) = s·y + r, Shampine's quotient of the two diffusion stages at c = 1/4
  is |s| exactly, so R_S = |s|·(t_end − t₀).
* **Derivatives** against central differences of the same discrete loss (θ's
  frozen step grid and Brownian increments, ``direct_function``): gradients
  by a five-point stencil at h = 1e-4 (truncation O(h⁴) ≈ 1e-16, round-off
  ≈ 1e-16/h ≈ 1e-12 relative; observed 3.5e-12, bound 1e-7), Hessians by
  central differences of the discrete gradient at h = 1e-5 (truncation
  ≈ 1e-10, round-off ≈ 1e-11; observed 1.2e-10, bound 1e-6). The loss carries
  ERNSDE and SRNSDE, so their derivatives are checked with the data term's.
  (The library's ``fd``/``fd-grad`` re-solve at every perturbed θ; the
  accepted grid then moves and E_j·dt_j with it, so they differentiate
  another function and are not compared here, as for ODEs.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl import regularizers as R
from pyodejl.solving import sde
from pyodejl.solving.steps import error_ratios

TS = np.linspace(0.0, 1.0, 4)
SOLVERS = ("sriw1", "sosri", "sosri2")


def _drift_fn(t, y, th):
    return jnp.tanh(th[:4].reshape(2, 2) @ y + th[4:6])


def _diffusion_fn(t, y, th):
    return th[0] * y + th[1]


DRIFT = pj.VectorField(_drift_fn, 6, init=lambda s: np.array([-0.5, 0.8, -0.6, -0.3, 0.1, -0.2]), name="drift")
DIFFUSION = pj.VectorField(_diffusion_fn, 2, init=lambda s: np.array([0.3, 0.1]), name="diffusion")
Y0 = np.array([[1.0, 0.0], [0.5, 0.5]])
TARGETS = np.stack([np.stack([np.cos(TS + k), np.sin(TS + k)], 1) for k in range(2)])


@pytest.fixture(scope="module")
def model():
    return pj.NeuralSDE(DRIFT, DIFFUSION, dt0=0.05, rtol=1e-2, atol=1e-2)


@pytest.fixture(scope="module")
def loss(model):
    return pj.TrajectoryLoss(model, TS, Y0, TARGETS, regularizers=[R.ErrorEstimate(0.5), R.StiffnessEstimate(0.2)])


def central(f, x, h, stencil=2):
    out = []
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        if stencil == 2:
            out.append((f(x + e) - f(x - e)) / (2 * h))
        else:
            out.append((-f(x + 2 * e) + 8 * f(x + e) - 8 * f(x - e) + f(x - 2 * e)) / (12 * h))
    return np.stack(out, axis=-1)


# ---- the solver against closed forms ------------------------------------------------------


def test_ornstein_uhlenbeck_moments_match_closed_form(solver="sriw1"):
    # SOSRI's adaptive solve runs in sde-spiral's quick run; its tableau is checked by the strong order below
    a, b, x0, n = 1.0, 0.5, 1.0, 2000
    drift = pj.VectorField(lambda t, y, th: -th[0] * y, 1)
    diffusion = pj.VectorField(lambda t, y, th: th[0] * jnp.ones_like(y), 1)
    m = pj.NeuralSDE(drift, diffusion, solver=solver, dt0=0.05, rtol=1e-3, atol=1e-3)
    ts = np.array([0.0, 0.5, 1.0])
    ys = m.solve(np.array([a, b]), ts, np.full((n, 1), x0)).ys[:, :, 0]  # (n, T)
    for k, t in enumerate(ts[1:], start=1):
        mean, var = x0 * np.exp(-a * t), b**2 * (1 - np.exp(-2 * a * t)) / (2 * a)
        assert abs(ys[:, k].mean() - mean) < 4 * np.sqrt(var / n)
        assert abs(ys[:, k].var(ddof=1) - var) < 4 * var * np.sqrt(2 / (n - 1))


@pytest.mark.parametrize("solver", SOLVERS)
def test_strong_order_on_geometric_brownian_motion(solver):
    mu, sigma, x0, B = 0.5, 1.0, 1.0, 200
    drift = pj.VectorField(lambda t, y, th: th[0] * y, 1)
    diffusion = pj.VectorField(lambda t, y, th: th[0] * y, 1)
    m = pj.NeuralSDE(drift, diffusion, solver=solver)
    theta = jnp.array([mu, sigma])
    y0 = jnp.full((B, 1), x0)
    fine = sde.replay_grid(m, np.linspace(0.0, 1.0, 129), y0).noise  # 128 steps, from the tree the solver uses
    dW, H = np.asarray(fine.dW), np.asarray(fine.chi2 - fine.dW / 2)  # I_(1,0)/h = ΔW/2 + H
    exact = x0 * np.exp((mu - sigma**2 / 2) + sigma * dW.sum(0))[:, 0]
    replay = jax.jit(sde.grid_scan, static_argnums=0)
    hs, errs = [], []
    for n in (128, 64, 32, 16, 8):
        times = np.linspace(0.0, 1.0, n + 1)
        noise = jax.vmap(sde.step_noise)(jnp.asarray(dW), jnp.asarray(H), jnp.asarray(np.diff(times)))
        ys, _, _, _ = replay(m, theta, sde.SDEGrid(jnp.asarray(times), noise), y0)
        hs.append(1 / n)
        errs.append(np.mean(np.abs(np.asarray(ys[-1, :, 0]) - exact)))
        # the coarser grid's increments by Chen's relation: W adds, and over two equal halves
        # H = (H₁ + H₂)/2 + (W₁ − W₂)/4 (from ∫W ds = h(W/2 + H) on each half)
        dW, H = dW[0::2] + dW[1::2], (H[0::2] + H[1::2]) / 2 + (dW[0::2] - dW[1::2]) / 4
    # ... which is how the tree itself composes: its own increments over the coarsest steps (a check
    # that the solver's I_(1,0) = h(ΔW/2 + H) reads the tree's Lévy area with the right convention)
    coarse = sde.replay_grid(m, np.linspace(0.0, 1.0, 5), y0).noise
    np.testing.assert_allclose(np.asarray(coarse.dW), dW, atol=1e-12)
    np.testing.assert_allclose(np.asarray(coarse.chi2 - coarse.dW / 2), H, atol=1e-12)
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert slope > 1.2, (slope, errs)


def test_adaptive_solve_follows_one_path_through_rejected_steps():
    # Rejected steps are retried on shorter intervals of the same path, so the adaptive solution of GBM
    # converges pathwise to X₀exp((μ − σ²/2)T + σW_T) with W_T read off the tree. Observed max relative
    # error 2.0e-3 at rtol = atol = 1e-3 (95 accepted, 10 rejected steps); bound 1e-2. Increments redrawn
    # on rejection would leave errors of order σ·√h·X ≈ 0.1 at the rejected steps.
    mu, sigma, x0, B = 0.5, 1.0, 1.0, 20
    field = pj.VectorField(lambda t, y, th: th[0] * y, 1)
    m = pj.NeuralSDE(field, field, dt0=0.1, rtol=1e-3, atol=1e-3)
    y0 = np.full((B, 1), x0)
    sol = m.solve(np.array([mu, sigma]), np.array([0.0, 1.0]), y0)
    assert sol.stats.num_rejected_steps > 0
    W = np.asarray(sde.interval_noise(m, 0.0, 1.0, 0.0, 1.0, y0).dW)[:, 0]
    exact = x0 * np.exp((mu - sigma**2 / 2) + sigma * W)
    assert np.max(np.abs(sol.ys[:, -1, 0] - exact) / exact) < 1e-2


@pytest.mark.parametrize("solver, drift_stages, delta", [("sriw1", 2, 1 / 6), ("sosri", 4, 1.0), ("sosri2", 4, 1.0)])
def test_error_estimate_matches_closed_form_for_a_constant_drift(solver, drift_stages, delta):
    c = 0.7
    drift = pj.VectorField(lambda t, y, th: th[0] * jnp.ones_like(y), 1)
    diffusion = pj.VectorField(lambda t, y, th: 0.0 * th[0] * y, 1)
    m = pj.NeuralSDE(drift, diffusion, solver=solver, dt0=0.01, rtol=1e-3, atol=1e-3)
    loss = pj.TrajectoryLoss(m, TS, np.array([0.2]), np.zeros((len(TS), 1)), regularizers=[R.ErrorEstimate(1.0)])
    theta = np.array([c, 0.0])
    sol = loss.solve(theta)
    t = sol.grid.times[: sol.grid.num_steps + 1]
    h, y = np.diff(t), 0.2 + c * t  # the solve of a constant drift is exact
    ratio = (delta * drift_stages * h * abs(c)) / (1e-3 + 1e-3 * np.maximum(np.abs(y[:-1]), np.abs(y[1:])))
    assert np.all(ratio < 1)  # every accepted step passed the controller on this estimate
    np.testing.assert_allclose(loss.terms(theta)["error_estimate"], np.sum(ratio * h), rtol=1e-12)


@pytest.mark.parametrize("name", ["sosri", "sosri2"])
def test_sosri_tableaus_satisfy_the_sri_consistency_conditions(name):
    # Rößler (2010): c⁽⁰⁾ and c⁽¹⁾ are the row sums of A⁽⁰⁾ and A⁽¹⁾; Σα = 1, Σβ⁽¹⁾ = 1 and
    # Σβ⁽²⁾ = Σβ⁽³⁾ = Σβ⁽⁴⁾ = 0 (the published coefficients carry 16 digits, hence 1e-14)
    tab = pj.solving.SDE_SOLVERS[name].tableau
    np.testing.assert_allclose(np.sum(tab.A0, 1), tab.c0, atol=1e-14)
    np.testing.assert_allclose(np.sum(tab.A1, 1), tab.c1, atol=1e-14)
    sums = [np.sum(v) for v in (tab.alpha, tab.beta1, tab.beta2, tab.beta3, tab.beta4)]
    np.testing.assert_allclose(sums, [1, 1, 0, 0, 0], atol=1e-14)
    assert pj.solving.SDE_SOLVERS[name].evaluations_per_step() == 8


def test_sosri2_stiffness_estimate_is_the_drift_lipschitz_constant():
    # SOSRI2's drift stages 3 and 4 share c = 1 at distinct states: for the linear drift a(y) = λy
    # Shampine's quotient ‖λ(H₄ − H₃)‖ / ‖H₄ − H₃‖ is |λ| exactly, so R_S = |λ|·(t_end − t₀)
    lam = -1.7
    drift = pj.VectorField(lambda t, y, th: th[0] * y, 1)
    diffusion = pj.VectorField(lambda t, y, th: th[0] * jnp.ones_like(y), 1)
    m = pj.NeuralSDE(drift, diffusion, solver="sosri2", dt0=0.05, rtol=1e-2, atol=1e-2)
    loss = pj.TrajectoryLoss(m, TS, np.array([[1.0], [0.5]]), np.zeros((2, len(TS), 1)),
                             regularizers=[R.StiffnessEstimate(1.0)])
    estimate = loss.terms(np.array([lam, 0.3]))["stiffness_estimate"]
    assert estimate == pytest.approx(abs(lam) * (TS[-1] - TS[0]), rel=1e-12)


def test_sosri_refuses_the_stiffness_estimate_with_a_reason():
    m = pj.NeuralSDE(DRIFT, DIFFUSION, solver="sosri", dt0=0.05, rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="'sosri' has none. Use sriw1"):
        pj.TrajectoryLoss(m, TS, Y0, TARGETS, regularizers=[R.StiffnessEstimate(0.2)]).value(m.init(0))


def test_stiffness_estimate_reads_the_diffusion_stages(model, loss):
    theta = model.init(0)
    s = theta[DRIFT.num_params]
    assert loss.terms(theta)["stiffness_estimate"] == pytest.approx(abs(s) * (TS[-1] - TS[0]), rel=1e-12)
    steps = model.solve(theta, TS, Y0).steps
    assert steps.k.shape == (steps.num_steps, 8, 2, 2)  # 4 drift then 4 diffusion stages


# ---- paths --------------------------------------------------------------------------------


def test_paths_are_fixed_by_the_seed_and_independent_per_trajectory(model, loss):
    theta = model.init(0)
    terms = [R.ErrorEstimate(0.5), R.StiffnessEstimate(0.2)]
    again = pj.TrajectoryLoss(model, TS, Y0, TARGETS, regularizers=terms)
    other = pj.TrajectoryLoss(model.with_seed(1), TS, Y0, TARGETS, regularizers=terms)
    assert again.value(theta) == loss.value(theta)
    assert abs(other.value(theta) - loss.value(theta)) > 1e-6
    # the differentiated replay (compiled once for every seed) steps on seed 1's increments:
    # it reproduces that seed's adaptive solve to round-off
    replayed = other.terms(theta)["data"]
    assert replayed == pytest.approx(np.mean((other.predict(theta) - TARGETS) ** 2), rel=1e-12)
    assert model.with_seed(1).seed == 1 and model.with_seed(1).drift is model.drift
    twins = model.solve(theta, TS, np.array([[1.0, 0.0], [1.0, 0.0]])).ys
    assert np.abs(twins[0, -1] - twins[1, -1]).max() > 1e-3
    # trajectory b's path does not depend on how many trajectories share the batch
    one = sde.interval_noise(model, 0.0, 1.0, 0.25, 0.5, np.zeros((1, 2)))
    three = sde.interval_noise(model, 0.0, 1.0, 0.25, 0.5, np.zeros((3, 2)))
    np.testing.assert_array_equal(one.dW[0], three.dW[0])
    np.testing.assert_array_equal(one.chi2[0], three.chi2[0])
    assert np.abs(three.dW[1] - three.dW[0]).min() > 0


def test_solution_shapes(model):
    theta = model.init(0)
    assert model.solve(theta, TS, Y0[0]).ys.shape == (len(TS), 2)
    assert model.solve(theta, TS, Y0).ys.shape == (2, len(TS), 2)


# ---- derivatives --------------------------------------------------------------------------


def test_gradient_and_hessian_against_finite_differences(model, loss):
    theta = model.init(0)
    fn, args = loss.direct_function(theta)
    f = jax.jit(lambda th: fn(th, *args))
    value = lambda th: float(f(jnp.asarray(th)))
    g = loss.grad(theta)
    g_fd = central(value, theta, 1e-4, stencil=4)
    assert np.abs(g - g_fd).max() < 1e-7 * np.abs(g_fd).max()

    H = loss.hessian(theta, method="direct-direct")
    grad = jax.jit(jax.grad(lambda th: fn(th, *args)))
    H_fd = central(lambda th: np.asarray(grad(jnp.asarray(th))), theta, 1e-5)
    assert np.abs(H - H_fd).max() < 1e-6 * np.abs(H_fd).max()
    assert np.abs(H - H.T).max() < 1e-12 * np.abs(H).max()
    # the same discrete loss by reverse-over-forward AD (observed 2e-15; "elementwise" agrees as
    # closely but compiles p second derivatives, too slow for this file)
    assert np.abs(loss.hessian(theta, method="direct-adjoint") - H).max() < 1e-12 * np.abs(H).max()
    op = loss.hessian_operator(theta)
    v = np.linspace(-1.0, 1.0, len(theta))
    np.testing.assert_allclose(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12 * np.abs(H).max())
    top = pj.spectral.eigenvalues(op, k=1, which="magnitude", method="lanczos").eigenvalues[0]
    lam = np.linalg.eigvalsh(H)
    assert top == pytest.approx(lam[np.argmax(np.abs(lam))], rel=1e-8)


class _ScaledStart:
    """y0 = s ⊙ x with s the loss's extra parameters: an initial-state map (e.g. an encoder)."""

    def __call__(self, extra, data):
        return data[0] * extra[:2]

    def __hash__(self):
        return hash(type(self))

    def __eq__(self, other):
        return type(other) is type(self)


def _mse_of_data(extra, Y, data):
    return jnp.mean((Y - data[1]) ** 2)


def test_initial_state_map_on_an_sde_is_differentiated_through(model):
    # an encoder in front of an SDE (nsde-mnist's downsampling): the grid's noise must be drawn for
    # the solved start's shape, and the gradient reaches the map's parameters
    data = (Y0, TARGETS)
    mapped = pj.ObservationLoss(model, TS, None, _mse_of_data, data=data, num_extra_params=2,
                                initial=_ScaledStart(), regularizers=[R.ErrorEstimate(0.5)])
    fixed = pj.ObservationLoss(model, TS, Y0, _mse_of_data, data=data, regularizers=[R.ErrorEstimate(0.5)])
    theta = np.concatenate([model.init(0), [1.0, 1.0]])
    # at unit scales the map is the identity: the same loss as the fixed start, on the same paths
    assert mapped.value(theta) == pytest.approx(fixed.value(theta[:-2]), rel=1e-12)
    fn, args = mapped.direct_function(theta)
    f = jax.jit(lambda th: fn(th, *args))
    g = mapped.grad(theta)
    g_fd = central(lambda th: float(f(jnp.asarray(th))), theta, 1e-4, stencil=4)
    assert np.abs(g - g_fd).max() < 1e-7 * np.abs(g_fd).max()
    assert np.abs(g[-2:]).min() > 0  # the map's parameters get a gradient


def test_new_paths_with_an_initial_state_map_compile_nothing_new(model):
    # a training loop draws new paths every step; the encoder's start does not depend on them, so
    # after the first seed nothing recompiles (it once compiled the start for every seed)
    from pyodejl.experiments.trainer import backend_compilations

    data = (Y0, TARGETS)
    theta = np.concatenate([model.init(0), [1.0, 1.0]])

    def loss_of(seed):
        return pj.ObservationLoss(model.with_seed(seed), TS, None, _mse_of_data, data=data, num_extra_params=2,
                                  initial=_ScaledStart())

    # two seeds whose frozen grids have the same padded length (a new length is a new program)
    by_length = {}
    for seed in range(11, 40):  # the model's own solve: at unit scales the map's start is Y0
        padded = len(model.with_seed(seed).solve(theta[:-2], TS, Y0).grid.times)
        by_length.setdefault(padded, []).append(seed)
    a, b = next(seeds for seeds in by_length.values() if len(seeds) >= 2)[:2]
    g_a = loss_of(a).grad(theta)
    before = backend_compilations()
    g_b = loss_of(b).grad(theta)
    assert backend_compilations() == before
    assert not np.allclose(g_a, g_b)  # other paths, other gradients


def test_gauss_newton_and_fisher_on_a_fixed_path(model):
    # GGN = (2/N) JᵀJ of the frozen-grid states (J by forward-mode AD of the replay, independent of
    # the GGN operator's JVP/VJP products); the per-trajectory gradients, each trajectory on its own
    # noise, average to the gradient of the mean loss
    from pyodejl.derivatives.gauss_newton import per_sample_gradients
    from pyodejl.solving.integrate import grid_states_jax

    plain = pj.TrajectoryLoss(model, TS, Y0, TARGETS)
    theta = model.init(0)
    times, obs, y0, _ = plain.direct_function(theta)[1]
    J = jax.jacfwd(lambda th: grid_states_jax(model.with_seed(0), th, times, obs, y0).ravel())(jnp.asarray(theta))
    G_ref = 2.0 / TARGETS.size * np.asarray(J.T @ J)
    np.testing.assert_allclose(plain.ggn(theta), G_ref, rtol=0, atol=1e-12 * np.abs(G_ref).max())
    g = per_sample_gradients(plain, theta)
    assert g.shape == (len(Y0), len(theta))
    np.testing.assert_allclose(g.mean(0), plain.grad(theta), rtol=0, atol=1e-12 * np.abs(g).max())
    F = plain.empirical_fisher(theta)
    np.testing.assert_allclose(F, g.T @ g / len(g), rtol=0, atol=1e-12 * np.abs(F).max())


def test_solver_heuristic_terms_change_the_loss_and_its_gradient(model, loss):
    # their gradients are checked against finite differences with the data term's, above
    theta = model.init(0)
    plain = pj.TrajectoryLoss(model, TS, Y0, TARGETS)
    terms = loss.terms(theta)
    assert terms["error_estimate"] > 0 and terms["stiffness_estimate"] > 0
    expected = plain.terms(theta)["data"] + 0.5 * terms["error_estimate"] + 0.2 * terms["stiffness_estimate"]
    assert loss.value(theta) == pytest.approx(expected, rel=1e-12)
    g, g_plain = loss.grad(theta), plain.grad(theta)
    assert np.abs(g - g_plain).max() > 1e-3 * np.abs(g).max()
    # switched off (weight 0), the terms leave the loss and its gradient as they were
    loss.set_weights({"error_estimate": 0.0, "stiffness_estimate": 0.0})
    try:
        assert loss.value(theta) == pytest.approx(plain.terms(theta)["data"], rel=1e-12)
        np.testing.assert_allclose(loss.grad(theta), g_plain, rtol=1e-10, atol=1e-14)
    finally:
        loss.set_weights({"error_estimate": 0.5, "stiffness_estimate": 0.2})


def test_error_estimate_term_is_the_recorded_controller_ratio(model, loss):
    theta = model.init(0)
    steps = model.solve(theta, TS, Y0).steps
    scale = 1e-2 + 1e-2 * np.maximum(np.abs(steps.y), np.abs(steps.y1))
    E = np.sqrt(np.mean((steps.error / scale) ** 2, axis=(1, 2)))
    assert np.all(E < 1)
    assert loss.terms(theta)["error_estimate"] == pytest.approx(np.sum(E * steps.dt), rel=1e-10)
    np.testing.assert_allclose(E, np.asarray(error_ratios(steps, 1e-2, 1e-2)), rtol=1e-12)


def test_local_error_estimate_is_one_step_of_the_same_path(model):
    theta = model.init(0)
    steps = model.solve(theta, TS, Y0).steps
    E = np.asarray(error_ratios(steps, model.rtol, model.atol))
    term = R.LocalErrorEstimate(1.0, sampling="biased", seed=3)
    local = pj.TrajectoryLoss(model, TS, Y0, TARGETS, regularizers=[term])
    nodes = np.concatenate([steps.t, [TS[-1]]])
    j = int(np.searchsorted(nodes, term.sample_time(TS, nodes)))
    assert local.terms(theta)["local_error_estimate"] == pytest.approx(E[j] * steps.dt[j], rel=1e-9)
    stiff = pj.TrajectoryLoss(model, TS, Y0, TARGETS, regularizers=[R.LocalStiffnessEstimate(1.0, t_reg=0.3)])
    assert stiff.terms(theta)["local_stiffness_estimate"] > 0


# ---- bad input ----------------------------------------------------------------------------


def test_bad_input_raises_clear_errors(model):
    scalar = pj.VectorField(lambda t, y, th: th[0] * jnp.sum(y), 1, state_dim=2)
    with pytest.raises(ValueError, match="diffusion.*state's shape"):
        pj.NeuralSDE(DRIFT, scalar)
    wide = pj.VectorField(lambda t, y, th: th[0] * jnp.concatenate([y, y]), 1)
    with pytest.raises(ValueError, match="diffusion.*state's shape"):
        pj.NeuralSDE(DRIFT, wide).solve(np.array([0.0] * 6 + [0.1]), TS, Y0)
    for dt0 in (0.0, -0.1):
        with pytest.raises(ValueError, match="dt0 must be positive"):
            pj.NeuralSDE(DRIFT, DIFFUSION, dt0=dt0)
    with pytest.raises(ValueError, match="noise type"):
        pj.NeuralSDE(DRIFT, DIFFUSION, noise="general")
    with pytest.raises(ValueError, match="'dopri5' is an ODE solver"):
        pj.NeuralSDE(DRIFT, DIFFUSION, solver="dopri5")
    with pytest.raises(ValueError, match="'sriw1' is a solver for stochastic"):
        pj.NeuralODE(DRIFT, solver="sriw1")
    with pytest.raises(ValueError, match="'sriw1' is a solver for stochastic"):
        pj.NeuralODE(DRIFT, solver=pj.solving.SDE_SOLVERS["sriw1"])
    with pytest.raises(TypeError, match="NeuralSDE"):
        pj.NeuralODE(DRIFT, DIFFUSION)
    with pytest.raises(TypeError, match="NeuralSDE"):
        pj.NeuralODE(DRIFT, diffusion=DIFFUSION)
    with pytest.raises(TypeError, match="diffusion of a NeuralSDE"):
        pj.NeuralSDE(DRIFT, lambda t, y, th: y)


def test_sde_refuses_continuous_adjoints_and_running_costs(model, loss):
    theta = model.init(0)
    plain = pj.TrajectoryLoss(model, TS, Y0, TARGETS)
    for method in ("backsolve", "interpolating", "forward"):
        with pytest.raises(NotImplementedError, match="Neural SDE"):
            plain.grad(theta, method=method)
    for method in ("adjoint-direct", "adjoint-adjoint"):
        with pytest.raises(NotImplementedError, match="Neural SDE"):
            plain.hvp(theta, np.ones(len(theta)), method=method)
    with pytest.raises(NotImplementedError, match="running cost"):
        pj.TrajectoryLoss(model, TS, Y0, TARGETS, regularizers=[R.KineticEnergy(1.0)])


def test_divergent_solve_raises_solve_error():
    blowup = pj.VectorField(lambda t, y, th: th[0] * y**3, 1)
    noise = pj.VectorField(lambda t, y, th: th[0] * y, 1)
    m = pj.NeuralSDE(blowup, noise, dt0=0.01, max_steps=200)
    with pytest.raises(pj.SolveError, match="hit max_steps=200"):
        m.solve(np.array([5.0, 0.1]), np.array([0.0, 1.0]), np.array([2.0]))
