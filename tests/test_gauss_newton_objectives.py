"""GGN and empirical Fisher of the objectives beyond a plain ObservationLoss.

* sampled local terms (``LocalErrorEstimate``): only the data term enters, so G equals
  (i) a dense Jᵀ∇²ℓJ written out here on the sampled loss's own grid (Y read at the
  user's times), to round-off, and (ii) the GGN of the same loss without the term, to
  the solver tolerance: the two solves take different step grids (one lands on t_reg),
  each accurate to rtol 1e-8, so their Jacobians differ by O(rtol); observed ~1e-8
  relative, asserted at 1e-6;
* ``MinibatchObjective``: Σᵢ wᵢ Gᵢ of the parts' dense GGNs (round-off) and a dense
  Jᵀ∇²ℓJ from ``jax.jacfwd`` of each part's states on its grid (round-off);
* ``EquilibriumLoss``: J of z* by ``jax.jacfwd`` of the closed-form equilibrium of a
  linear cell, and of 300 fixed-point iterations of a nonlinear cell (converged to
  ~1e-16), against the implicit (GMRES) derivative at linear-solve tolerance 1e-10:
  asserted at 1e-8.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl.derivatives.equilibrium import JFB, EquilibriumLoss
from pyodejl.models.deq import DEQ, Dense, MLPCell
from pyodejl.regularizers import LocalErrorEstimate
from pyodejl.solving.integrate import grid_states_jax

TS = np.linspace(0.0, 1.0, 4)
ROUND_OFF = 1e-13


def rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


@pytest.fixture(scope="module")
def ode():
    rng = np.random.default_rng(0)
    vf = pj.MLP([2, 3, 2], activation="tanh")
    model = pj.NeuralODE(vf, solver="dopri5", rtol=1e-8, atol=1e-10)
    y0 = rng.normal(size=(4, 2))
    targets = rng.normal(size=(4, len(TS), 2))
    return dict(model=model, y0=y0, targets=targets, theta=vf.init(0) * 2.0)


def mse_ggn_reference(loss, theta, user_times=None):
    """2/n JᵀJ for the trajectory MSE, J = ∂Y/∂θ by jax.jacfwd on θ's frozen grid (Y at the user's times)."""
    sol = loss.solve(theta)
    grid = sol.grid
    obs = np.asarray(grid.obs_index)
    if user_times is not None:  # the grid also lands on sampled times: keep the user's
        obs = obs[np.searchsorted(sol.ts, user_times)]
    y0 = jnp.asarray(loss.model.augment(jnp.asarray(loss.y0)))
    times = jnp.asarray(grid.times)
    states = jax.jit(lambda th: grid_states_jax(loss.model, th, times, jnp.asarray(obs), y0))
    J = np.asarray(jax.jacfwd(states)(jnp.asarray(theta))).reshape(-1, len(theta))
    return 2.0 / J.shape[0] * J.T @ J


# ---- sampled local terms ------------------------------------------------------------
def test_ggn_with_a_sampled_local_term_is_the_data_terms(ode):
    plain = pj.TrajectoryLoss(ode["model"], TS, ode["y0"], ode["targets"])
    term = LocalErrorEstimate(10.0, t_reg=0.4)  # 0.4 is not an observation time: a merged grid
    local = pj.TrajectoryLoss(ode["model"], TS, ode["y0"], ode["targets"], regularizers=[term])
    th = ode["theta"]
    G = local.ggn(th)
    assert len(local.solve(th).ts) == len(TS) + 1
    assert rel(G, mse_ggn_reference(local, th, user_times=TS)) < ROUND_OFF
    assert rel(G, plain.ggn(th)) < 1e-6


# ---- MinibatchObjective ------------------------------------------------------------------
def test_minibatch_ggn_is_the_weighted_sum_of_the_parts(ode):
    # equal part sizes share compiled kernels; the weights need not be the sizes
    parts = [pj.TrajectoryLoss(ode["model"], TS, ode["y0"][i:j], ode["targets"][i:j]) for i, j in ((0, 2), (2, 4))]
    mini = pj.MinibatchObjective(parts, weights=[1, 3])
    th = ode["theta"]
    G = mini.ggn(th)
    assert rel(G, 0.25 * parts[0].ggn(th) + 0.75 * parts[1].ggn(th)) < ROUND_OFF
    dense = 0.25 * mse_ggn_reference(parts[0], th) + 0.75 * mse_ggn_reference(parts[1], th)
    assert rel(G, dense) < ROUND_OFF
    op = mini.ggn_operator(th)
    assert op.method == "ggn" and rel(op.matmat(np.eye(len(th))), G) < ROUND_OFF
    g = [pj.derivatives.gauss_newton.per_sample_gradients(p, th) for p in parts]
    assert rel(mini.empirical_fisher(th), 0.25 * g[0].T @ g[0] / 2 + 0.75 * g[1].T @ g[1] / 2) < ROUND_OFF


# ---- EquilibriumLoss -----------------------------------------------------------------------
D, N, B = 3, 2, 2


def lin_cell(z, x, th):
    A = th[: D * D].reshape(D, D)
    Bm = th[D * D : D * D + D * N].reshape(D, N)
    return z @ A.T + x @ Bm.T + th[D * D + D * N :]


def lin_cost(z, extra):
    return jnp.sum(jnp.sin(z)) + 0.5 * jnp.sum(z**2)


X_LIN = np.random.default_rng(1).standard_normal((B, N))


def lin_equilibrium(th):
    A = th[: D * D].reshape(D, D)
    Bm = th[D * D : D * D + D * N].reshape(D, N)
    return jnp.linalg.solve(jnp.eye(D) - A, (X_LIN @ Bm.T + th[D * D + D * N :]).T).T


def test_equilibrium_ggn_linear_cell_against_the_closed_form():
    rng = np.random.default_rng(0)
    th = np.concatenate([0.3 * rng.standard_normal(D * D), rng.standard_normal(D * N), rng.standard_normal(D)])
    deq = DEQ(lin_cell, len(th), dim=D, solver="lbroyden", tol=1e-12, max_steps=100)
    loss = EquilibriumLoss(deq, X_LIN, lin_cost)
    z = np.asarray(lin_equilibrium(jnp.asarray(th)))
    J = np.asarray(jax.jacfwd(lin_equilibrium)(jnp.asarray(th))).reshape(-1, len(th))
    curvature = 1.0 - np.sin(z).ravel()  # ∇²ℓ of Σ sin z + z²/2 is diagonal
    G_ref = J.T @ (curvature[:, None] * J)
    G = loss.ggn(th)
    assert rel(G, G_ref) < 1e-8
    bad = EquilibriumLoss(deq, X_LIN, lin_cost, derivative=JFB())
    with pytest.raises(ValueError, match="exact derivative"):
        bad.ggn(th)


NB, NIN, ND, NC = 3, 4, 5, 2


def ce_cost(z, W, labels):
    logits = z @ W.reshape(NC, ND).T
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def test_equilibrium_ggn_with_a_readout_against_unrolled_iterations():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((NB, NIN))
    labels = np.array([0, 1, 1])
    deq = DEQ(MLPCell(ND, ND), encoder=Dense((NIN, ND), "tanh"), solver="anderson", tol=1e-12, max_steps=200)
    loss = EquilibriumLoss(deq, x, ce_cost, NC * ND, data=labels)
    th = np.concatenate([deq.init(0), 0.5 * rng.standard_normal(NC * ND)])
    p = deq.num_params

    def z_unrolled(th_deq):
        th_cell, th_enc, th_skip = deq.split(th_deq)
        xe = deq.encode(th_enc, jnp.asarray(x))
        z = jax.lax.fori_loop(0, 300, lambda _, z: deq.f(th_cell, z, xe), jnp.zeros((NB, ND)))
        return z

    z = z_unrolled(jnp.asarray(th[:p]))
    Jz = np.asarray(jax.jit(jax.jacfwd(z_unrolled))(jnp.asarray(th[:p]))).reshape(-1, p)
    # z = (z*, W): J = [[Jz, 0], [0, I]]; ∇²ℓ over (z*, W) jointly
    J = np.block([[Jz, np.zeros((Jz.shape[0], NC * ND))], [np.zeros((NC * ND, p)), np.eye(NC * ND)]])
    flat = lambda u: ce_cost(u[: NB * ND].reshape(NB, ND), u[NB * ND :], jnp.asarray(labels))
    Hl = np.asarray(jax.hessian(flat)(jnp.concatenate([z.ravel(), jnp.asarray(th[p:])])))
    G_ref = J.T @ Hl @ J
    G = loss.ggn(th)
    assert rel(G, G_ref) < 1e-8  # (indefinite: the readout z*·W is bilinear in (z*, W))
    # per-sample gradients of the data term average to its gradient (the unrolled one here)
    grads = pj.derivatives.gauss_newton.per_sample_gradients(loss, th)
    data_grad = jax.grad(lambda t: ce_cost(z_unrolled(t[:p]), t[p:], jnp.asarray(labels)))(jnp.asarray(th))
    assert rel(grads.mean(axis=0), np.asarray(data_grad)) < 1e-8
    assert rel(loss.empirical_fisher(th), grads.T @ grads / NB) < ROUND_OFF
