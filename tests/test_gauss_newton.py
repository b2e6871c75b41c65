"""Generalised Gauss–Newton and empirical-Fisher operators (pyodejl.derivatives.gauss_newton).

References are independent of the GGN code: the full Hessian (direct-direct) minus
its residual term Σ_k (∂ℓ/∂z_k) ∇²z_k, the latter by jax.hessian of the outputs
written out here; closed forms for linear models; explicit per-sample loops.
Everything is on one discretisation (θ's frozen step grid), so agreement is to
float64 round-off: observed ≤ 1.1e-15 relative (max-norm), asserted at 1e-14;
smallest eigenvalues of PSD matrices observed ≥ −1.1e-16 × the largest, asserted
≥ −1e-14 × (eigvalsh's round-off for p ≈ 20 is about p·eps ≈ 4e-15).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl.derivatives.gauss_newton import OutputCost, OutputLoss, per_sample_gradients
from pyodejl.solving.integrate import grid_states_jax

TS = np.linspace(0.0, 1.0, 4)
RTOL = 1e-14  # relative agreement on one discretisation: float64 round-off, ~10x observed


PSD_TOL = 1e-14


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def min_eig_ratio(M):
    lam = np.linalg.eigvalsh((M + M.T) / 2)
    return lam[0] / np.abs(lam).max()


def readout_output(extra, Y, data):
    D = Y.shape[-1]
    return Y[:, -1, :] @ extra[:D] + extra[D]


def squared_error(F, labels):
    return jnp.mean((F - labels) ** 2)


def bilinear_readout_cost(extra, Y, labels):
    return squared_error(readout_output(extra, Y, labels), labels)


def sum_cost(extra, Y, targets):
    return jnp.sum((Y - targets) ** 2)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    vf = pj.MLP([2, 3, 2], activation="tanh")
    model = pj.NeuralODE(vf, solver="dopri5", rtol=1e-8, atol=1e-10)
    # a fixed-step one-stage model for the readout test: smaller compiled graphs, same
    # frozen-grid code (the states are still nonlinear in θ)
    model_euler = pj.NeuralODE(vf, solver="euler", dt=0.25)
    y0 = rng.normal(size=(3, 2))
    targets = rng.normal(size=(3, len(TS), 2))
    labels = np.array([1.0, -1.0, 1.0])
    theta_vf = vf.init(0) * 2.0  # larger weights: a clearly nonlinear flow
    extra = rng.normal(size=3)
    return dict(vf=vf, model=model, model_euler=model_euler, y0=y0, targets=targets, labels=labels,
                theta_vf=theta_vf, theta_ro=np.concatenate([theta_vf, extra]),
                traj=pj.TrajectoryLoss(model, TS, y0, targets))


def states_fn(loss, theta):
    """Y(θ') (B, T, D) on θ's frozen grid, written out independently of the GGN module."""
    grid = loss.solve(theta).grid
    times, obs = jnp.asarray(grid.times), jnp.asarray(grid.obs_index)
    y0 = jnp.asarray(loss.model.augment(jnp.asarray(loss.y0)))
    p_vf = loss.model.num_params
    return lambda th: jnp.swapaxes(grid_states_jax(loss.model, th[:p_vf], times, obs, y0), 0, 1)


def residual_term(z, ell, theta):
    """Σ_k (∂ℓ/∂z_k) ∇²z_k = ∇²_θ ⟨c, z(θ)⟩ with c = ∂ℓ/∂z held fixed at θ."""
    th = jnp.asarray(theta)
    c = jax.jit(lambda t: jax.grad(ell)(z(t)))(th)
    # forward over forward: independent of the GGN's JVP/VJP and cheaper to compile here
    return np.asarray(jax.jit(jax.jacfwd(jax.jacfwd(lambda t: jnp.vdot(c, z(t)))))(th))


# ---- GGN = H − residual, on Neural ODEs -----------------------------------------------

def test_ggn_is_hessian_minus_residual_trajectory_mse(setup):
    s = setup
    loss = s["traj"]
    th = s["theta_vf"]
    Y = states_fn(loss, th)
    tg = jnp.asarray(s["targets"])
    R = residual_term(Y, lambda y: jnp.mean((y - tg) ** 2), th)
    H = loss.hessian(th)  # "auto": the structured assembly, equal to direct-direct to round-off
    G = loss.ggn(th)
    assert rel(R, H) > 1e-3  # the residual term is not negligible here
    assert rel(G, H - R) < RTOL
    assert np.abs(G - G.T).max() < RTOL * np.abs(G).max()
    assert min_eig_ratio(G) > -PSD_TOL  # PSD to round-off (MSE is convex in Y)
    assert min_eig_ratio(H) < -1e-3  # while the Hessian is indefinite


def test_ggn_with_a_readout(setup):
    """Two definitions on one loss (a bilinear readout Y(T)·w + b under a squared error):

    * default, z = (Y, θ_extra): G = H − Σ (∂ℓ/∂Y_k) ∇²Y_k — the readout's curvature,
      cross terms with the states included, stays in G;
    * OutputCost, z = F = readout(Y): G = H − Σ (∂ℓ/∂F_b) ∇²F_b, PSD.
    """
    s = setup
    args = (s["model_euler"], np.array([0.0, 1.0]), s["y0"])
    bilinear = pj.ObservationLoss(*args, bilinear_readout_cost, data=s["labels"], num_extra_params=3)
    split = pj.ObservationLoss(*args, OutputCost(readout_output, squared_error), data=s["labels"],
                               num_extra_params=3)
    th = s["theta_ro"]
    H = bilinear.hessian(th)  # also split's Hessian: OutputCost composes to the same function
    Y = states_fn(bilinear, th)
    p_vf = bilinear.model.num_params
    extra = jnp.asarray(th[p_vf:])
    lab = jnp.asarray(s["labels"])
    R_states = residual_term(Y, lambda y: bilinear_readout_cost(extra, y, lab), th)
    assert rel(bilinear.ggn(th), H - R_states) < RTOL
    F = lambda t: readout_output(t[p_vf:], Y(t), lab)
    R_outputs = residual_term(F, lambda f: squared_error(f, lab), th)
    G = split.ggn(th)
    assert rel(G, H - R_outputs) < RTOL
    assert min_eig_ratio(G) > -PSD_TOL


# ---- GGN = H where the outputs are affine in θ ------------------------------------------

A_LIN = jnp.array([[-0.5, 1.0], [-1.0, -0.2]])


def affine_field(t, y, th):
    # linear in (y, θ) jointly with A fixed: every Runge–Kutta stage, hence every
    # state on any step grid, is affine in θ, so ∇²Y = 0 and G = H exactly
    return A_LIN @ y + th[:2] + t * th[2:4]


def test_ggn_equals_hessian_when_states_are_affine_in_theta(setup):
    model = pj.NeuralODE(pj.VectorField(affine_field, 4), solver="euler", dt=0.25)
    loss = pj.TrajectoryLoss(model, TS, setup["y0"], setup["targets"])
    th = np.array([0.3, -0.2, 0.5, 0.1])
    H = loss.hessian(th, method="direct-direct")
    assert rel(loss.ggn(th), H) < RTOL


def lin_output(theta, X, y):
    return X @ theta


def lin_loss(F, X, y):
    return jnp.mean((F - y) ** 2)


def lin_sum_loss(F, X, y):
    return jnp.sum((F - y) ** 2)


def lin_nonseparable_loss(F, X, y):
    return jnp.mean(F - y) ** 2


def test_function_objective_linear_regression_closed_forms():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    th = rng.normal(size=3)
    obj = pj.FunctionObjective(OutputLoss(lin_output, lin_loss), 3, args=(X, y))
    exact = 2 * X.T @ X / len(y)  # Hessian = GGN of a linear least-squares loss
    assert rel(obj.ggn(th), exact) < RTOL
    assert rel(obj.hessian(th, method="direct-direct"), exact) < RTOL
    g = 2 * (X @ th - y)[:, None] * X  # per-sample gradients of (x_nᵀθ − y_n)²
    assert rel(obj.empirical_fisher(th), g.T @ g / len(y)) < RTOL
    # a sum-reduced loss: ℓ_n = N·(its per-sample cost), so L = mean ℓ_n still
    obj_sum = pj.FunctionObjective(OutputLoss(lin_output, lin_sum_loss), 3, args=(X, y))
    assert rel(per_sample_gradients(obj_sum, th), len(y) * g) < RTOL
    with pytest.raises(ValueError, match="neither the mean"):
        pj.FunctionObjective(OutputLoss(lin_output, lin_nonseparable_loss), 3, args=(X, y)).empirical_fisher(th)
    with pytest.raises(TypeError, match="OutputLoss"):
        pj.FunctionObjective(lambda t, X, y: jnp.sum(t), 3, args=(X, y)).ggn(th)


# ---- operators -------------------------------------------------------------------------

def test_operator_products_equal_dense_products(setup):
    s = setup
    loss = s["traj"]
    th = s["theta_vf"]
    G = loss.ggn(th)
    V = np.random.default_rng(2).normal(size=(loss.num_params, 5))
    op = loss.ggn_operator(th, chunk_size=1)  # five blocks of one column
    assert op.method == "ggn" and op.shape == G.shape
    assert rel(op @ V, G @ V) < RTOL
    assert rel(op @ V[:, 0], G @ V[:, 0]) < RTOL
    assert op.matvecs == 6
    F = loss.empirical_fisher(th)
    fop = loss.empirical_fisher_operator(th)
    assert fop.method == "empirical-fisher"
    assert rel(fop @ V, F @ V) < RTOL and fop.matvecs == 5


def test_empirical_fisher_against_per_sample_loop(setup):
    """g_n from the *batched* solve on the joint grid (rows of one Jacobian of the per-trajectory losses)."""
    s = setup
    loss = s["traj"]
    th = s["theta_vf"]
    Y = states_fn(loss, th)
    tg = jnp.asarray(s["targets"])
    per_sample_losses = lambda t: jnp.mean((Y(t) - tg) ** 2, axis=(1, 2))
    g = np.asarray(jax.jit(jax.jacfwd(per_sample_losses))(jnp.asarray(th)))  # row n: ∇ℓ_n
    F = loss.empirical_fisher(th)
    assert rel(F, g.T @ g / len(g)) < RTOL
    assert min_eig_ratio(F) > -PSD_TOL
    assert np.linalg.matrix_rank(F) == len(g)
    # the mean of the per-sample gradients is the data term's discrete gradient
    G, vals = per_sample_gradients(loss, th, return_values=True)
    assert rel(G.mean(axis=0), loss.grad(th)) < RTOL
    assert np.isclose(vals.mean(), loss.terms(th)["data"], rtol=RTOL)


def test_regularizers_are_left_out(setup):
    s = setup
    plain = s["traj"]
    reg = pj.TrajectoryLoss(s["model"], TS, s["y0"], s["targets"],
                            regularizers=[pj.regularizers.WeightDecay(0.1)])
    th = s["theta_vf"]
    assert rel(reg.ggn(th), plain.ggn(th)) < RTOL


def test_bad_input(setup):
    s = setup
    loss = pj.ObservationLoss(s["model"], TS, s["y0"], sum_cost, data=s["targets"][0])  # no batch axis
    with pytest.raises(ValueError, match="leading axis of length 3"):
        loss.empirical_fisher(s["theta_vf"])
    with pytest.raises(ValueError, match="theta"):
        loss.ggn_operator(np.zeros(3))
    with pytest.raises(ValueError, match="chunk_size"):
        loss.ggn_operator(s["theta_vf"], chunk_size=0)
