"""Stiffness of a ResNet's layers: each layer's Jacobian, measured for every sample (seed 001).

Reading the ResNet ``xₙ = xₙ₋₁ + h·Fₙ(xₙ₋₁)`` as explicit Euler on a Neural ODE, layer
n's rate of change is ``Fₙ(x) = σ(Wₙx + bₙ)`` and its Jacobian at sample i is

    Jₙ,ᵢ = ∇ₓFₙ(xₙ₋₁⁽ⁱ⁾) = diag(σ'(Wₙxₙ₋₁⁽ⁱ⁾ + bₙ)) · Wₙ.

Seed 001 (Hudson et al., Sandia 2022) measures the stiffness ``s_{n,i}`` of each and
sums them, ``Σ_{n,i} s_{n,i}``, for the total stiffness of the network — the quantity it
penalises in training. Here every ``Jₙ,ᵢ`` is built at once as a ``(depth, B, width,
width)`` array and measured in one batched call, so the whole thing is one traced
function: ``jax.grad`` of it is a training penalty's gradient, with no Python loop over
layers or samples.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp

from pyodejl._validation import check_traced_inputs, check_traced_theta
from pyodejl.models.mlp import activation_fn
from pyodejl.models.resnet import ResNet
from pyodejl.stiffness.measures import MEASURES, UNCHECKED

__all__ = ["layer_jacobians", "jacobians_at", "layer_stiffness", "total_layer_stiffness"]


def _check_resnet(resnet):
    if not isinstance(resnet, ResNet):
        raise TypeError(f"resnet must be a pyodejl ResNet, got {type(resnet).__name__}")


def layer_jacobians(resnet: ResNet, theta, inputs):
    """Every layer's Jacobian ``Jₙ,ᵢ = diag(σ'(Wₙxₙ₋₁⁽ⁱ⁾ + bₙ))·Wₙ``.

    Args:
        resnet: a :class:`pyodejl.models.resnet.ResNet`.
        theta: ``(resnet.num_params,)``.
        inputs: ``(B, in_dim)`` or ``(in_dim,)``.

    Returns:
        ``(depth, B, width, width)`` (or ``(depth, width, width)`` for one input).
    """
    _check_resnet(resnet)
    theta = check_traced_theta(theta, resnet.num_params)
    inputs = check_traced_inputs(inputs, resnet.in_dim)
    if isinstance(theta, jax.core.Tracer):
        theta = eqx.error_if(theta, ~jnp.all(jnp.isfinite(theta)), "theta contains NaN or inf")
    if isinstance(inputs, jax.core.Tracer):
        inputs = eqx.error_if(inputs, ~jnp.all(jnp.isfinite(inputs)), "inputs contain NaN or inf")
    return _jacobians(resnet, theta, inputs)


def _diag_dsigma_times(resnet, z, W):
    """``diag(σ'(z))·W`` with σ' from one forward-mode product with a tangent of ones."""
    _, dsigma = jax.jvp(activation_fn(resnet.activation), (z,), (jnp.ones_like(z),))
    return dsigma[..., :, None] * W


@functools.partial(jax.jit, static_argnums=0)
def _jacobians(resnet, theta, inputs):
    xs = resnet.hidden_states(theta, inputs)[:-1]  # x₀ … x_{N−1}: the inputs of layers 1 … N
    _, t_vf, _ = resnet.split(theta)
    Ws, bs = resnet.vector_field.unflatten(t_vf)
    batch = xs.ndim == 3
    if batch:
        z = jnp.einsum("nbj,nij->nbi", xs, Ws) + bs[:, None, :]
    else:
        z = jnp.einsum("nj,nij->ni", xs, Ws) + bs
    return _diag_dsigma_times(resnet, z, Ws[:, None] if batch else Ws)


def jacobians_at(resnet: ResNet, theta, states, layers, samples):
    """The layer Jacobians ``J_{layers[k], samples[k]}`` only, from states already computed.

    For stochastic penalties that measure a few (layer, sample) pairs per step: the
    training loss computes the hidden states once (``resnet.hidden_states``) for its
    output, and this gathers the pairs' inputs from them, so no Jacobian beyond the
    requested ones is formed. No input checks (a building block inside a jitted loss).

    Args:
        resnet: a :class:`pyodejl.models.resnet.ResNet`.
        theta: ``(resnet.num_params,)``.
        states: ``(depth + 1, B, width)``, ``resnet.hidden_states(theta, inputs)``.
        layers: ``(K,)`` integers in ``[0, depth)`` (layer n + 1 of seed 001's numbering).
        samples: ``(K,)`` integers in ``[0, B)``.

    Returns:
        ``(K, width, width)``, equal to ``layer_jacobians(resnet, theta, inputs)[layers, samples]``.
    """
    _, t_vf, _ = resnet.split(theta)
    Ws, bs = resnet.vector_field.unflatten(t_vf)
    W = Ws[layers]
    z = jnp.einsum("kj,kij->ki", states[layers, samples], W) + bs[layers]
    return _diag_dsigma_times(resnet, z, W)


def layer_stiffness(resnet: ResNet, theta, inputs, measure: str = "stiffness_ratio", **options):
    """Seed 001's per-layer, per-sample stiffness ``s_{n,i} = measure(Jₙ,ᵢ)``.

    Args:
        resnet: a :class:`pyodejl.models.resnet.ResNet`.
        theta: ``(resnet.num_params,)``.
        inputs: ``(B, in_dim)`` or ``(in_dim,)``.
        measure: ``"stiffness_ratio"`` (default, the seed's ``r``), ``"magnitude_ratio"``,
            ``"singular_value_ratio"`` or ``"spectral_radius"`` — the functions of
            :mod:`pyodejl.stiffness.measures`, whose rules for singular Jacobians apply.
        **options: passed to the measure, e.g. ``method="gelfand"`` for
            ``"spectral_radius"`` (seed 001's penalty) or ``rtol=...`` for the ratios.

    Returns:
        ``(depth, B)`` (or ``(depth,)`` for one input), float64. A pure JAX function of
        ``theta`` and ``inputs``: ``jax.grad`` of its sum is a penalty gradient.
    """
    if not isinstance(measure, str) or measure not in MEASURES:
        raise ValueError(f"unknown stiffness measure {measure!r}; expected one of {sorted(MEASURES)}")
    # θ and the inputs are checked once (layer_jacobians); every Jacobian built from
    # finite ones is finite, so the per-matrix check is skipped.
    return UNCHECKED[measure](layer_jacobians(resnet, theta, inputs), **options)


def total_layer_stiffness(resnet: ResNet, theta, inputs, measure: str = "stiffness_ratio", **options):
    """Seed 001's total stiffness ``Σ_{n,i} s_{n,i}`` (sum over layers and samples).

    Arguments as :func:`layer_stiffness`; returns a scalar.
    """
    return jnp.sum(layer_stiffness(resnet, theta, inputs, measure, **options))
