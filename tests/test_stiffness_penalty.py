"""Seed 001's penalised ResNet loss (pyodejl.stiffness.penalty) against an independent NumPy loop."""

from __future__ import annotations

import numpy as np
import pytest

import pyodejl  # noqa: F401  (float64)
from pyodejl.experiments.catalogue.stiffness import alpine02_split
from pyodejl.models.resnet import ResNet
from pyodejl.stiffness import draw_penalty_triples, penalised_loss, penalty_per_sample, sampled_penalty_sq_sum


def _numpy_forward(theta, x, width, depth):
    """Independent forward pass from the documented θ layout (PyTorch nn.Linear order)."""
    i = 0

    def take(n, shape):
        nonlocal i
        out = theta[i : i + n].reshape(shape)
        i += n
        return out

    W_in, b_in = take(width * 2, (width, 2)), take(width, (width,))
    layers = [(take(width * width, (width, width)), take(width, (width,))) for _ in range(depth)]
    W_out, b_out = take(width, (1, width)), take(1, (1,))
    assert i == theta.size
    return W_in, b_in, layers, W_out, b_out


def _numpy_loss(theta, x, y, width, depth, lam, penalty):
    """Seed 001's loss by a loop over samples and layers; ρ from numpy eig.

    Returns the loss with pᵢ = Σₙ ρ(Jₙ,ᵢ) and with pᵢ = Σₙ (κ(Vₙ,ᵢ)√d)^{1/1024} ρ(Jₙ,ᵢ):
    Gelfand's ‖J^k‖_F^{1/k} (k = 1024) lies between the two, since for J = VΛV⁻¹,
    ρ^k ≤ ‖J^k‖₂ ≤ ‖J^k‖_F ≤ ‖V‖₂‖V⁻¹‖₂·√d·ρ^k.
    """
    W_in, b_in, layers, W_out, b_out = _numpy_forward(theta, x, width, depth)
    h = 1.0 / depth
    sq, p_lo, p_hi = 0.0, [], []
    for xi, yi in zip(x, y):
        s = W_in @ xi + b_in
        lo = hi = 0.0
        for W, b in layers:
            z = W @ s + b
            J = (1.0 - np.tanh(z) ** 2)[:, None] * W
            lam_j, V = np.linalg.eig(J)
            rho = np.max(np.abs(lam_j))
            lo += rho
            hi += rho * (np.linalg.cond(V) * np.sqrt(width)) ** (1.0 / 1024)
            s = s + h * np.tanh(z)
        sq += float((W_out @ s + b_out)[0] - yi) ** 2
        p_lo.append(lo)
        p_hi.append(hi)
    if penalty == "l2":
        tensors = [W_in, b_in, *[a for wb in layers for a in wb], W_out, b_out]
        pm = np.mean([np.linalg.norm(t) for t in tensors])
        v = np.sqrt(sq + lam * len(x) * pm**2)
        return v, v
    return np.sqrt(sq + lam * np.sum(np.square(p_lo))), np.sqrt(sq + lam * np.sum(np.square(p_hi)))


def _theta_after_training(net, x, y, steps=30):
    """θ after a few Adam steps of the plain loss: away from the initialisation."""
    import jax
    import optax

    theta = jax.numpy.asarray(net.init(3))
    opt = optax.adam(1e-2)
    state = opt.init(theta)
    grad = jax.jit(jax.grad(lambda t: penalised_loss(net, t, x, y)))
    for _ in range(steps):
        u, state = opt.update(grad(theta), state, theta)
        theta = optax.apply_updates(theta, u)
    return np.asarray(theta)


def test_penalised_loss_matches_numpy_loop():
    width, depth = 10, 4
    net = ResNet(2, width, depth, 1)
    x, y, _, _ = alpine02_split(900, 100, 0)
    x, y = x[:12], y[:12]
    theta = _theta_after_training(net, x, y)
    # no penalty and the L2 penalty are exact (float64 round-off)
    import jax

    loss = jax.jit(lambda t, penalty, lam: penalised_loss(net, t, x, y, penalty, lam), static_argnums=1)
    for penalty, lam in (("none", 0.0), ("l2", 1e-5), ("l2", 3.0)):
        ref, _ = _numpy_loss(theta, x, y, width, depth, lam, penalty)
        ours = float(loss(theta, penalty, lam))
        assert ours == pytest.approx(ref, rel=1e-12), penalty
    # the stiffness penalty (Gelfand) lies in the bracket that its convergence theory gives;
    # λ large enough that the penalty dominates the data term
    for lam in (1e-3, 1.0):
        lo, hi = _numpy_loss(theta, x, y, width, depth, lam, "stiff")
        ours = float(loss(theta, "stiff", lam))
        assert lo * (1 - 1e-12) <= ours <= hi * (1 + 1e-12)
        assert (hi - lo) / lo < 2e-2  # the bracket is informative (observed: ~5e-3 at λ = 1)


def test_sampled_penalty_averages_to_the_exact_one_over_every_draw():
    """The estimate is unbiased: its mean over all B·N² equally likely (i, a, b) is Σᵢpᵢ²
    exactly (a finite sum, so float64 round-off), and so is its gradient's mean."""
    import jax
    import jax.numpy as jnp

    from pyodejl.stiffness import jacobians_at, layer_jacobians

    width, depth, B = 6, 3, 4
    net = ResNet(2, width, depth, 1)
    x, y, _, _ = alpine02_split(900, 100, 0)
    x, y = x[:B], y[:B]
    theta = jnp.asarray(_theta_after_training(net, x, y))
    i, a, b = np.meshgrid(np.arange(B), np.arange(depth), np.arange(depth), indexing="ij")
    every = np.stack([i.ravel(), a.ravel(), b.ravel()])  # (3, B·N²): all draws, each once

    # the gathered Jacobians are the full set's entries
    states = net.hidden_states(theta, x)
    full = np.asarray(layer_jacobians(net, theta, x))
    gathered = np.asarray(jacobians_at(net, theta, states, every[1], every[0]))
    np.testing.assert_allclose(gathered, full[every[1], every[0]], rtol=1e-13, atol=1e-15)  # einsum order: round-off

    def exact(t):
        return jnp.sum(penalty_per_sample(net, t, x, "stiff") ** 2)

    def mean_estimate(t):
        return sampled_penalty_sq_sum(net, t, net.hidden_states(t, x), every)

    assert float(mean_estimate(theta)) == pytest.approx(float(exact(theta)), rel=1e-13)
    np.testing.assert_allclose(jax.grad(mean_estimate)(theta), jax.grad(exact)(theta), rtol=1e-11, atol=1e-13)
    # one draw: B·N²·ρ_a ρ_b, the summand itself
    rho = np.asarray(penalty_per_sample(net, theta, x, "stiff"))  # Σₙ ρ per sample, for scale
    one = float(sampled_penalty_sq_sum(net, theta, states, every[:, :1]))
    assert 0 < one < B * rho.max() ** 2 * depth**2
    # the loss with the estimate: data term from the same states
    loss = float(penalised_loss(net, theta, x, y, "stiff-sampled", 1e-3, every))
    ref = float(penalised_loss(net, theta, x, y, "stiff", 1e-3))
    assert loss == pytest.approx(ref, rel=1e-13)
    with pytest.raises(ValueError, match="needs triples"):
        penalised_loss(net, theta, x, y, "stiff-sampled", 1e-3)
    # draws are uniform over their ranges and seed-determined
    t1 = draw_penalty_triples(np.random.default_rng(0), 5, B, depth, 2)
    assert t1.shape == (5, 3, 2) and t1[:, 0].max() < B and t1[:, 1:].max() < depth and t1.min() >= 0
    np.testing.assert_array_equal(t1, draw_penalty_triples(np.random.default_rng(0), 5, B, depth, 2))
