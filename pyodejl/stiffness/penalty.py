"""Seed 001's stiffness penalty of a ResNet, exact and sampled, and its penalised loss.

Seed 001 (Hudson et al., *Examining stiffness in ResNets through interpretation as
discretized Neural ODEs*, Sandia 2022) trains ResNets with the loss
``√(Σ_{(xᵢ,yᵢ)∈S} |F(xᵢ) − yᵢ|² + λ pᵢ²)`` on a minibatch S, where ``pᵢ`` is either the
mean parameter norm (``"l2"``) or ``Σₙ ρ_G(Jₙ,ᵢ)``, the Gelfand spectral radii of every
layer's Jacobian for sample i (``"stiff"``). We read the sum as running over both
terms (the seed calls it the "quadratic mean of RMSE and penalty"). ``"stiff-sampled"``
is ours: an unbiased estimate of ``Σᵢ pᵢ²`` from a few random (sample, layer, layer)
triples (:func:`sampled_penalty_sq_sum`), two Gelfand radii per draw instead of
depth × batch.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pyodejl.stiffness.layers import jacobians_at, layer_stiffness
from pyodejl.stiffness.measures import UNCHECKED

__all__ = ["PENALTIES", "draw_penalty_triples", "parameter_norm_mean", "penalised_loss", "penalty_per_sample",
           "sampled_penalty_sq_sum"]

#: The penalties :func:`penalised_loss` knows.
PENALTIES = ("none", "l2", "stiff", "stiff-sampled")


def parameter_norm_mean(resnet, theta):
    """Mean over the 2·depth + 4 parameter tensors of their Euclidean/Frobenius norms (seed 001's L2 penalty)."""
    p = resnet.unflatten(theta)
    norms = [
        jnp.linalg.norm(p["W_in"]),
        jnp.linalg.norm(p["b_in"]),
        jnp.linalg.norm(p["Ws"], axis=(1, 2)),
        jnp.linalg.norm(p["bs"], axis=1),
        jnp.linalg.norm(p["W_out"]),
        jnp.linalg.norm(p["b_out"]),
    ]
    flat = jnp.concatenate([jnp.atleast_1d(n) for n in norms])
    return jnp.mean(flat)


def penalty_per_sample(resnet, theta, inputs, penalty: str):
    """Seed 001's pᵢ for a batch ``inputs`` ``(B, 2)``: ``(B,)``.

    ``"none"``: 0; ``"l2"``: :func:`parameter_norm_mean` for every sample;
    ``"stiff"``: ``Σₙ ρ_G(Jₙ,ᵢ)`` (Gelfand, k = 2¹⁰) over the layers.
    """
    B = inputs.shape[0]
    if penalty == "none":
        return jnp.zeros(B)
    if penalty == "l2":
        return jnp.full(B, parameter_norm_mean(resnet, theta))
    if penalty == "stiff":
        return jnp.sum(layer_stiffness(resnet, theta, inputs, "spectral_radius", method="gelfand"), axis=0)
    raise ValueError(f"unknown penalty {penalty!r}; expected 'none', 'l2' or 'stiff'")


def draw_penalty_triples(rng: np.random.Generator, batches: int, batch_size: int, depth: int, draws: int):
    """Random (sample i, layer a, layer b) triples for :func:`sampled_penalty_sq_sum`.

    Independent and uniform: ``i`` in ``[0, batch_size)``, ``a`` and ``b`` in ``[0, depth)``.

    Returns:
        ``(batches, 3, draws)`` int64: row 0 the samples, rows 1 and 2 the two layers.
    """
    shape = (batches, draws)
    return np.stack(
        [rng.integers(0, batch_size, shape), rng.integers(0, depth, shape), rng.integers(0, depth, shape)], axis=1
    )


def sampled_penalty_sq_sum(resnet, theta, states, triples):
    """Unbiased estimate of seed 001's ``Σᵢ pᵢ²``, ``pᵢ = Σₙ ρ_G(Jₙ,ᵢ)``, from a few Jacobians.

    Since ``pᵢ² = Σₐ Σ_b ρ_G(J_{a,i}) ρ_G(J_{b,i})``, a sample i drawn uniformly from the B
    of the minibatch and two layers a, b drawn independently and uniformly from the N
    give ``E[B·N²·ρ_G(J_{a,i})·ρ_G(J_{b,i})] = Σᵢ pᵢ²``; the estimate is the mean of that
    over the ``K`` draws. It is never negative (radii are), so the seed's square root
    stays real, and its gradient is an unbiased estimate of the exact penalty's
    gradient (the square root around the sum makes the loss's gradient slightly
    biased, as any minibatch estimate inside a nonlinearity is). Cost: 2K Gelfand
    radii instead of N·B. Ours, not seed 001's (whose penalty is exact and ~100× the
    plain training time); the same idea as Hutchinson's estimator, applied to a
    double sum.

    Args:
        resnet: a :class:`pyodejl.ResNet`.
        theta: ``(p,)``.
        states: ``(N + 1, B, width)``, ``resnet.hidden_states(theta, inputs)``.
        triples: ``(3, K)`` integers from :func:`draw_penalty_triples`.

    Returns:
        a JAX scalar.
    """
    N, B = states.shape[0] - 1, states.shape[1]
    K = triples.shape[1]
    layers = jnp.concatenate([triples[1], triples[2]])
    samples = jnp.concatenate([triples[0], triples[0]])
    rho = UNCHECKED["spectral_radius"](jacobians_at(resnet, theta, states, layers, samples), method="gelfand")
    return (B * N**2 / K) * jnp.sum(rho[:K] * rho[K:])


def penalised_loss(resnet, theta, inputs, targets, penalty: str = "none", lam: float = 0.0, triples=None):
    """Seed 001's minibatch loss ``√(Σᵢ |F(xᵢ) − yᵢ|² + λ Σᵢ pᵢ²)`` (a JAX scalar).

    Args:
        resnet: a :class:`pyodejl.ResNet` with ``out_dim = 1``.
        theta: ``(p,)``.
        inputs: ``(B, in_dim)``; targets ``(B,)``.
        penalty: ``"none"``, ``"l2"`` or ``"stiff"`` (:func:`penalty_per_sample`), or
            ``"stiff-sampled"``: ``Σᵢ pᵢ²`` of ``"stiff"`` estimated by
            :func:`sampled_penalty_sq_sum` from ``triples``.
        lam: λ ≥ 0.
        triples: ``(3, K)`` integers, required by ``"stiff-sampled"`` (ignored otherwise).
    """
    if penalty != "stiff-sampled":
        r = resnet(theta, inputs)[:, 0] - targets
        p = penalty_per_sample(resnet, theta, inputs, penalty)
        return jnp.sqrt(jnp.sum(r**2) + lam * jnp.sum(p**2))
    if triples is None:
        raise ValueError("penalty 'stiff-sampled' needs triples (3, K) from draw_penalty_triples")
    states = resnet.hidden_states(theta, inputs)
    r = resnet.readout(resnet.split(theta)[2], states[-1])[:, 0] - targets
    return jnp.sqrt(jnp.sum(r**2) + lam * sampled_penalty_sq_sum(resnet, theta, states, triples))
