"""Deep equilibrium models: solvers, implicit gradients and Hessians, continuous DEQs, bad input.

References are independent of the implicit path: the closed-form fixed point of a
linear cell (differentiated by plain AD through ``jnp.linalg.solve``), AD unrolled
through fixed-point iterations run to convergence, central differences of the
gradient, and dense Jacobians. Tolerances: solves at tol 1e-12 (RMS residual);
implicit derivatives then agree with the references to ~1e-13–1e-10 (observed),
asserted at 1e-9 (1e-8 where the issue asks for it); fd-grad to its ~1e-9 noise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pyodejl.derivatives.equilibrium import (
    JFB,
    EquilibriumLoss,
    JacobianRegularizer,
    Phantom,
    Unrolled,
    jacobian_spectral_radius,
)
from pyodejl.models.deq import DEQ, ContinuousDEQ, Dense, EquilibriumError, MLPCell, Skip, SkipReg
from pyodejl.solving.fixed_point import FIXED_POINT_SOLVERS, Anderson, LBroyden

D, N, B = 3, 2, 2
P_LIN = D * D + D * N + D


def lin_cell(z, x, th):
    A = th[: D * D].reshape(D, D)
    Bm = th[D * D : D * D + D * N].reshape(D, N)
    return z @ A.T + x @ Bm.T + th[D * D + D * N :]


def lin_cost(z, extra):
    return jnp.sum(jnp.sin(z)) + 0.5 * jnp.sum(z**2)


def lin_theta(scale=0.3, seed=0):
    rng = np.random.default_rng(seed)
    A = scale * rng.standard_normal((D, D))
    return np.concatenate([A.ravel(), rng.standard_normal(D * N), rng.standard_normal(D)])


X_LIN = np.random.default_rng(1).standard_normal((B, N))


def closed_form_loss(th):
    A = th[: D * D].reshape(D, D)
    Bm = th[D * D : D * D + D * N].reshape(D, N)
    z = jnp.linalg.solve(jnp.eye(D) - A, (X_LIN @ Bm.T + th[D * D + D * N :]).T).T
    return lin_cost(z, None)


# Compiled once: eager AD of the closed form costs seconds of dispatch per call.
closed_form_value = jax.jit(closed_form_loss)
closed_form_grad = jax.jit(jax.grad(closed_form_loss))
closed_form_hessian = jax.jit(jax.hessian(closed_form_loss))


def rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


@pytest.fixture(scope="module")
def linear():
    deq = DEQ(lin_cell, P_LIN, dim=D, solver="lbroyden", tol=1e-12, max_steps=100)
    return deq, EquilibriumLoss(deq, X_LIN, lin_cost), lin_theta()


@pytest.mark.parametrize("solver", sorted(set(FIXED_POINT_SOLVERS) - {"steady-state"}))
def test_every_solver_finds_the_linear_fixed_point(solver):
    th = lin_theta()
    sol = DEQ(lin_cell, P_LIN, dim=D, solver=solver, tol=1e-12, max_steps=200).solve(th, X_LIN)
    A, Bm, c = th[:9].reshape(3, 3), th[9:15].reshape(3, 2), th[15:]
    exact = np.linalg.solve(np.eye(3) - A, (X_LIN @ Bm.T + c).T).T
    assert sol.converged and sol.residuals.shape == (sol.steps + 1,)
    assert sol.residuals[-1] <= sol.target and np.abs(sol.z - exact).max() < 1e-10


def test_linear_cell_gradient_hvp_and_spectrum_match_closed_form(linear):
    from pyodejl import spectral

    deq, loss, th = linear
    g_ref = np.asarray(closed_form_grad(jnp.asarray(th)))
    H_ref = np.asarray(closed_form_hessian(jnp.asarray(th)))
    assert rel(loss.grad(th), g_ref) < 1e-10
    v = np.random.default_rng(4).standard_normal(loss.num_params)
    # Observed ~1e-15: a linear cell converges to round-off; 1e-11 = solve tol 1e-12 × κ(I − A) ≲ 10.
    assert rel(loss.hvp(th, v), H_ref @ v) < 1e-11
    # The operator reuses the compiled HVP and plugs into the spectral toolkit.
    op = loss.hessian_operator(th)
    res = spectral.eigenvalues(op, k=2, which="both", method="lanczos", seed=0)
    ev = np.linalg.eigvalsh(H_ref)
    assert np.allclose(np.sort(res.eigenvalues), [ev[0], ev[-1]], rtol=1e-8, atol=1e-10)
    assert op.matvecs == res.matvecs


def test_implicit_hvp_matches_unrolled_hvp_on_the_linear_cell(linear):
    deq, loss, th = linear
    unrolled = EquilibriumLoss(deq, X_LIN, lin_cost, derivative=Unrolled(steps=100))
    v = np.random.default_rng(4).standard_normal(loss.num_params)
    assert rel(loss.hvp(th, v), unrolled.hvp(th, v)) < 1e-11  # observed ~1e-15, as above


def test_nonlinear_cell_hvp_and_hessian_match_ad_through_the_unrolled_iteration():
    """A tanh cell, so f_zz and f_θθ are non-zero (the linear cell's are zero). Reference:
    jax.hessian of the loss through 80 plain fixed-point iterations written here (not the
    library's Unrolled): at ρ(∂f/∂z) ≈ 0.23 the iterate and its first and second derivatives
    converge like ρᵏ, to round-off after ~25 steps. The implicit side solves to 1e-12 (GMRES
    tighter); observed agreement 1e-12, asserted at 1e-9. The full Hessian is the block of
    implicit HVPs H·I (one compiled product)."""
    cell = MLPCell(D, N)
    th = 0.6 * cell.init(5)

    def unrolled_loss(t):
        z = jax.lax.fori_loop(0, 80, lambda _, z: cell(z, jnp.asarray(X_LIN), t), jnp.zeros((B, D)))
        return lin_cost(z, None)

    H_ref = np.asarray(jax.jit(jax.hessian(unrolled_loss))(jnp.asarray(th)))
    deq = DEQ(cell, solver="anderson", tol=1e-12, max_steps=100)
    loss = EquilibriumLoss(deq, X_LIN, lin_cost)
    assert rel(loss.hessian(th), H_ref) < 1e-9


@pytest.mark.slow
def test_linear_cell_hessian_by_the_independent_methods(linear):
    deq, loss, th = linear
    H_ref = np.asarray(closed_form_hessian(jnp.asarray(th)))
    assert abs(loss.value(th) - float(closed_form_value(th))) < 1e-12
    assert rel(loss.hessian(th, method="direct-direct"), H_ref) < 1e-9
    assert rel(loss.hessian(th, method="direct-adjoint"), H_ref) < 1e-9
    assert rel(loss.hessian(th, method="elementwise"), H_ref) < 1e-9
    assert rel(loss.hessian(th, method="fd-grad"), H_ref) < 1e-7
    assert rel(loss.hessian(th, method="fd"), H_ref) < 1e-4


@pytest.mark.slow
def test_forward_over_reverse_equals_reverse_over_forward(linear):
    deq, loss, th = linear
    fn, args = loss.value_function()
    f = lambda t: fn(t, *args)
    H1 = np.asarray(jax.jit(jax.jacfwd(jax.jacrev(f)))(jnp.asarray(th)))
    H2 = np.asarray(jax.jit(jax.jacrev(jax.jacfwd(f)))(jnp.asarray(th)))
    assert rel(H1, H2) < 1e-12 and rel(H1, H1.T) < 1e-12


# ---- a nonlinear DEQ with an encoder, a Skip predictor and a readout ------------------------
NB, NIN, ND, NC = 3, 4, 5, 2


def ce_cost(z, W, labels):
    logits = z @ W.reshape(NC, ND).T
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


@pytest.fixture(scope="module")
def mlp_problem():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((NB, NIN))
    labels = np.array([0, 1, 1])
    deq = DEQ(
        MLPCell(ND, ND),
        encoder=Dense((NIN, ND), "tanh"),
        skip=Skip(Dense((ND, ND), "tanh"), 0.1),
        solver="anderson",
        tol=1e-12,
        max_steps=200,
    )
    jac = JacobianRegularizer(weight=0.5, num_probes=2, seed=0)
    loss = EquilibriumLoss(deq, x, ce_cost, NC * ND, data=labels, jacobian_regularizer=jac)
    th = np.concatenate([deq.init(0), 0.5 * rng.standard_normal(NC * ND)])
    return deq, loss, th, x, labels, jac


def test_implicit_gradient_matches_unrolled(mlp_problem):
    deq, loss, th, x, labels, jac = mlp_problem
    g = loss.grad(th)
    assert rel(g, loss.grad(th, method=Unrolled(steps=60))) < 1e-8
    # and finite differences along two random directions (the full FD gradient is the slow test's):
    # central differences at h = 1e-6 err by O(h²)·|L‴|, about 1e-12, plus round-off ε·|L|/h, about 1e-10
    fn, args = loss.value_function()
    V = np.random.default_rng(7).standard_normal((2, len(th)))
    h = 1e-6
    shifted = jnp.asarray(np.concatenate([th + h * V, th - h * V]))
    vals = np.asarray(jax.jit(jax.vmap(lambda t: fn(t, *args)))(shifted))
    assert rel(V @ g, (vals[:2] - vals[2:]) / (2 * h)) < 1e-7


@pytest.mark.slow
def test_implicit_gradient_and_hvp_match_unrolled_and_fd(mlp_problem):
    deq, loss, th, x, labels, jac = mlp_problem
    assert rel(loss.grad(th), _fd_grad(loss, th)) < 1e-7
    unrolled = EquilibriumLoss(
        deq, x, ce_cost, NC * ND, data=labels, jacobian_regularizer=jac, derivative=Unrolled(steps=60)
    )
    V = np.random.default_rng(4).standard_normal((loss.num_params, 2))
    H_V = loss.hvp(th, V)
    assert rel(H_V, unrolled.hvp(th, V)) < 1e-8
    assert rel(H_V, loss.hvp(th, V, method="fd-grad")) < 1e-6


def _fd_grad(loss, th, h=1e-6):
    fn, args = loss.value_function()
    E = h * np.eye(len(th))
    vals = np.asarray(jax.jit(jax.vmap(lambda t: fn(t, *args)))(jnp.asarray(np.concatenate([th + E, th - E]))))
    return (vals[: len(th)] - vals[len(th) :]) / (2 * h)


def test_hessians_refuse_inexact_gradients(linear):
    deq, loss, th = linear
    bad = EquilibriumLoss(deq, X_LIN, lin_cost, derivative=JFB())
    for call in (lambda: bad.hessian(th), lambda: bad.hvp(th, th), lambda: bad.hessian_operator(th)):
        with pytest.raises(ValueError, match="exact derivative"):
            call()


@pytest.mark.slow
def test_inexact_gradients_converge_when_they_should(linear):
    deq, loss, th = linear
    g = loss.grad(th)
    # Phantom steps with λ = 1 sum the Neumann series of (I − J)⁻¹; 40 terms at ρ(J) ≈ 0.3 are exact.
    assert rel(loss.grad(th, method=Phantom(k=40, damping=1.0)), g) < 1e-12
    jfb = loss.grad(th, method="jfb")
    assert rel(jfb, g) > 1e-3  # JFB drops (I − J)⁻¹: a different vector


def _continuous_twin():
    return ContinuousDEQ(
        MLPCell(ND, ND),
        encoder=Dense((NIN, ND), "tanh"),
        skip=Skip(Dense((ND, ND), "tanh"), 0.1),
        rtol=1e-11,
        atol=1e-12,
        max_steps=4000,
    )


def test_continuous_deq_matches_discrete_at_tight_tolerance(mlp_problem):
    deq, loss, th, x, labels, jac = mlp_problem
    sd, sc = deq.solve(th[: deq.num_params], x), _continuous_twin().solve(th[: deq.num_params], x)
    assert sc.converged and sc.nfe > sc.steps > 0
    assert np.abs(sd.z - sc.z).max() < 1e-10


@pytest.mark.slow
def test_continuous_deq_gradient_matches_discrete(mlp_problem):
    deq, loss, th, x, labels, jac = mlp_problem
    lc = EquilibriumLoss(_continuous_twin(), x, ce_cost, NC * ND, data=labels, jacobian_regularizer=jac)
    assert rel(lc.grad(th), loss.grad(th)) < 1e-9


def test_jacobian_regularizer_estimates_the_frobenius_norm_not_the_trace(mlp_problem):
    deq, loss, th, x, *_ = mlp_problem
    th_deq = th[: deq.num_params]
    z = deq.solve(th_deq, x).z
    th_cell, xe, _ = deq.prepare(jnp.asarray(th_deq), jnp.asarray(x))
    per_sample = jax.vmap(jax.jacfwd(lambda zz, xx: deq.f(th_cell, zz[None], xx[None])[0]))
    J = np.asarray(jax.jit(per_sample)(jnp.asarray(z), xe))  # jitted: eager jacfwd dispatches op by op
    exact = np.mean(np.sum(J**2, axis=(1, 2))) / ND
    trace = np.mean(np.trace(J, axis1=1, axis2=2)) / ND
    reg = JacobianRegularizer(num_probes=4000, seed=1)
    est = reg.estimate(deq, th_deq, x)
    # Same probes through the dense Jacobians: the estimator is exactly mean_k ‖ε_kᵀJ‖² / (B d).
    eps = reg.probes(z.shape)
    direct = np.mean(np.sum(np.einsum("kbi,bij->kbj", eps, J) ** 2, axis=(1, 2))) / z.size
    assert abs(est - direct) < 1e-12 * abs(direct)
    # Gaussian probes: Var‖εᵀJ‖² = 2‖JᵀJ‖²_F (summed over the batch); allow 4 standard errors.
    var = 2 * np.sum([np.sum((Jb.T @ Jb) ** 2) for Jb in J]) / z.size**2
    assert abs(est - exact) < 4 * np.sqrt(var / reg.num_probes)
    assert abs(exact - trace) > 10 * np.sqrt(var / reg.num_probes)


def test_spectral_radius_matches_dense_eigenvalues(mlp_problem):
    deq, loss, th, x, *_ = mlp_problem
    th_deq = th[: deq.num_params]
    z = deq.solve(th_deq, x).z
    th_cell, xe, _ = deq.prepare(jnp.asarray(th_deq), jnp.asarray(x))
    J = np.asarray(jax.jit(jax.jacfwd(lambda zz: deq.f(th_cell, zz, xe)))(jnp.asarray(z))).reshape(z.size, z.size)
    assert abs(jacobian_spectral_radius(deq, th_deq, x) - np.max(np.abs(np.linalg.eigvals(J)))) < 1e-10


def test_spectral_radius_by_arpack_and_its_fallback_match_dense_eigenvalues(monkeypatch):
    import scipy.sparse.linalg

    from pyodejl.derivatives import equilibrium as eq

    cell = MLPCell(22, N)  # a batch of 3 states of width 22: 66 unknowns, above the dense cut-off of 64
    deq = DEQ(cell, solver="anderson", tol=1e-10, max_steps=200)
    th = 1.5 * cell.init(2)  # scaled up so that ρ is far from 0
    x = np.random.default_rng(6).standard_normal((3, N))
    z = deq.solve(th, x).z
    J = np.asarray(jax.jit(jax.jacfwd(lambda zz: cell(zz, jnp.asarray(x), jnp.asarray(th))))(jnp.asarray(z)))
    rho = np.max(np.abs(np.linalg.eigvals(J.reshape(z.size, z.size))))
    assert 0.1 < rho < 1
    # ARPACK at tol 1e-6 (relative accuracy of the Ritz value): observed 2.7e-8 relative, asserted at 1e-6.
    assert abs(jacobian_spectral_radius(deq, th, x) - rho) < 1e-6 * rho

    # ARPACK giving up with only a small, non-dominant eigenvalue converged: the answer is the dense one.
    def no_convergence(*args, **kwargs):
        raise scipy.sparse.linalg.ArpackNoConvergence("forced", np.array([0.01 * rho]), np.zeros((z.size, 1)))

    monkeypatch.setattr(scipy.sparse.linalg, "eigs", no_convergence)
    assert abs(jacobian_spectral_radius(deq, th, x) - rho) < 1e-12
    monkeypatch.setattr(eq, "DENSE_FALLBACK_MAX", 10)  # too large to solve densely: the estimate, flagged
    with pytest.warns(RuntimeWarning, match="ARPACK did not converge"):
        assert jacobian_spectral_radius(deq, th, x) == pytest.approx(0.01 * rho, rel=1e-15)


@pytest.fixture(scope="module")
def skip_reg_linear():
    deq = DEQ(lin_cell, P_LIN, dim=D, skip=SkipReg(weight=2.0), tol=1e-12, max_steps=100)
    return deq, EquilibriumLoss(deq, X_LIN, lin_cost), lin_theta()


def test_skip_reg_penalty_and_initial_state(skip_reg_linear):
    deq, loss, th = skip_reg_linear
    th_cell, xe, z0 = deq.prepare(jnp.asarray(th), jnp.asarray(X_LIN))
    assert np.allclose(z0, lin_cell(jnp.zeros((B, D)), xe, th_cell))
    A, Bm, c = th[:9].reshape(3, 3), th[9:15].reshape(3, 2), th[15:]
    z = np.linalg.solve(np.eye(3) - A, (X_LIN @ Bm.T + c).T).T  # the closed-form equilibrium
    expected = float(closed_form_value(th)) + 2.0 * np.mean(np.abs(np.asarray(lin_cell(z, X_LIN, th)) - np.asarray(z0)))
    assert abs(loss.value(th) - expected) < 1e-10


def test_deq_weights_are_data_that_follow_schedules_without_recompiling(skip_reg_linear):
    from pyodejl.regularizers.schedules import ExponentialDecay, weights_at

    deq, _, th = skip_reg_linear
    traces = [0]

    def counted_cost(z, extra):  # runs in Python only while JAX traces the loss
        traces[0] += 1
        return lin_cost(z, extra)

    jac = JacobianRegularizer(weight=0.5, num_probes=2, seed=0)
    loss = EquilibriumLoss(deq, X_LIN, counted_cost, jacobian_regularizer=jac)
    assert loss.weights == {"skip": 2.0, "jacobian": 0.5}
    g = {}
    for w in ((2.0, 0.5), (0.0, 0.0), (1.0, 0.0), (0.0, 1.0)):
        loss.set_weights({"skip": w[0], "jacobian": w[1]})
        g[w] = loss.grad(th)
        if w == (0.0, 0.0):
            compiled = traces[0]
    assert traces[0] == compiled  # new weights: no new trace, so no recompilation
    # L = data + w_s·S + w_j·J is linear in the weights: the gradients must be too.
    g_s, g_j = g[(1.0, 0.0)] - g[(0.0, 0.0)], g[(0.0, 1.0)] - g[(0.0, 0.0)]
    assert np.abs(g_s).max() > 1e-3 and np.abs(g_j).max() > 1e-3
    assert rel(g[(2.0, 0.5)], g[(0.0, 0.0)] + 2.0 * g_s + 0.5 * g_j) < 1e-9
    # The data term alone is the closed-form loss's gradient.
    assert rel(g[(0.0, 0.0)], closed_form_grad(jnp.asarray(th))) < 1e-10
    # Schedules, as for the ODE regularisers (λ(k) = 2·exp(−k·log(2/0.2)/10) at k = 5).
    loss.set_weights(weights_at({"skip": ExponentialDecay(2.0, 0.2, steps=10)}, 5))
    assert loss.weights["skip"] == pytest.approx(2.0 * np.exp(-5 * np.log(10.0) / 10), rel=1e-14)
    with pytest.raises(ValueError, match=r"no term named 'jac'.*\['skip', 'jacobian'\]"):
        loss.set_weights({"jac": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        loss.set_weights({"skip": -1.0})
    # The weight is not part of the model's identity: DEQs differing only in it share compilations.
    assert DEQ(lin_cell, P_LIN, dim=D, skip=SkipReg(weight=3.0)) == DEQ(lin_cell, P_LIN, dim=D, skip=SkipReg())


@pytest.mark.slow
def test_skip_reg_gradient_matches_unrolled(skip_reg_linear):
    deq, loss, th = skip_reg_linear
    assert rel(loss.grad(th), loss.grad(th, method=Unrolled(steps=100))) < 1e-9


# ---- failures and bad input ------------------------------------------------------------------
def test_divergence_is_a_clear_error_or_a_flagged_result():
    th = lin_theta()
    th[:9] = (1.5 * np.eye(3)).ravel()  # spectral radius 1.5: fixed-point iteration diverges
    deq = DEQ(lin_cell, P_LIN, dim=D, solver="fixed-point", tol=1e-10, max_steps=30)
    with pytest.raises(EquilibriumError, match=r"residual grew.*newton-krylov"):
        deq.solve(th, X_LIN)
    sol = deq.solve(th, X_LIN, throw=False)
    assert not sol.converged and sol.residuals[-1] > sol.residuals[0]
    with pytest.raises(EquilibriumError, match="history"):
        EquilibriumLoss(deq, X_LIN, lin_cost).value(th)
    # The suggested solver finds the (unstable) fixed point.
    # (The same DEQ as in the solver test above, so its compiled solve is reused.)
    assert DEQ(lin_cell, P_LIN, dim=D, solver="newton-krylov", tol=1e-12, max_steps=200).solve(th, X_LIN).converged


def test_bad_input_is_rejected_with_clear_errors():
    th = lin_theta()
    with pytest.raises(ValueError, match="shaped like z"):
        DEQ(lambda z, x, t: z[:, :2], P_LIN, dim=D).solve(th, X_LIN)
    deq = DEQ(lin_cell, P_LIN, dim=D)
    bad_x = X_LIN.copy()
    bad_x[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        deq.solve(th, bad_x)
    with pytest.raises(ValueError, match="NaN"):
        EquilibriumLoss(deq, bad_x, lin_cost)
    bad_th = th.copy()
    bad_th[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        EquilibriumLoss(deq, X_LIN, lin_cost).grad(bad_th)
    for kw in ({"tol": 0.0}, {"tol": -1e-6}, {"atol": 0.0}, {"max_steps": 0}):
        with pytest.raises(ValueError):
            DEQ(lin_cell, P_LIN, dim=D, **kw)
    for bad in (lambda: LBroyden(m=0), lambda: Anderson(m=0)):
        with pytest.raises(ValueError, match="m must be a positive integer"):
            bad()
    with pytest.raises(ValueError, match="lbroyden"):
        DEQ(lin_cell, P_LIN, solver="bryoden")
    with pytest.raises(ValueError, match="num_params"):
        DEQ(lin_cell)
    with pytest.raises(ValueError, match="implicit"):
        EquilibriumLoss(deq, X_LIN, lin_cost).grad(th, method="backprop")


# ---- continuous DEQ: residual history and NFE --------------------------------------------------
def _stiff_linear_theta(scale):
    """A linear cell with df/dz ≈ −scale·I: dz/dt = f(z) − z is stiff enough that an explicit
    pair sits at its stability limit, where the controller rejects many steps."""
    rng = np.random.default_rng(0)
    A = -scale * np.eye(D) + 0.3 * rng.standard_normal((D, D))
    return np.concatenate([A.ravel(), rng.standard_normal(D * N), rng.standard_normal(D)])


def _np_residual(th, z):
    A, Bm, c = th[:9].reshape(3, 3), th[9:15].reshape(3, 2), th[15:]
    return np.sqrt(np.mean((z @ A.T + X_LIN @ Bm.T + c - z) ** 2))


def test_continuous_deq_history_holds_the_accepted_steps_without_gaps():
    th = _stiff_linear_theta(3.0)
    deq = ContinuousDEQ(lin_cell, P_LIN, dim=D, solver="bosh3", rtol=1e-6, atol=1e-7, max_steps=300)
    sol = deq.solve(th, X_LIN, throw=False)
    assert sol.steps > sol.accepted > 10  # a step was rejected (observed: 96 steps, 95 accepted)
    assert sol.residuals.shape == (sol.accepted + 1,) and np.all(np.isfinite(sol.residuals))
    # First and last entries: the residual at z₀ = 0 and at the returned state, recomputed in NumPy.
    assert abs(sol.residuals[0] - _np_residual(th, np.zeros((B, D)))) < 1e-14
    assert abs(sol.residuals[-1] - _np_residual(th, sol.z)) < 1e-12 * _np_residual(th, sol.z) + 1e-18


def test_continuous_deq_nfe_with_dopri8_counts_thirteen_evaluations_a_step():
    # Prince & Dormand's RK8(7)13M: 13 stages; Diffrax's 14th (first same as last) is the next
    # step's first, so 13 new evaluations per attempted step, plus 2 for the initial step size
    # and 1 for the residual at z₀.
    th = _stiff_linear_theta(3.0)
    sol = ContinuousDEQ(lin_cell, P_LIN, dim=D, solver="dopri8", rtol=1e-6, atol=1e-7, max_steps=300).solve(th, X_LIN)
    assert sol.converged and sol.nfe == 3 + 13 * sol.steps
