"""Residual networks, and the same network read as an explicit-Euler Neural ODE (seed 001).

A ResNet with ``N`` residual layers of step ``h = T/N``,

    x₀ = W_in·u + b_in,   xₙ = xₙ₋₁ + h·σ(Wₙxₙ₋₁ + bₙ)  (n = 1..N),   output = W_out·x_N + b_out,

is explicit Euler with ``N`` steps of size ``h`` on the Neural ODE

    dx/dt = σ(W(t)x + b(t)),   x(0) = x₀,   t ∈ [0, T],

when the weights are piecewise constant in time: layer n on ``[(n−1)h, nh)``
(Hudson et al., *Examining stiffness in ResNets through interpretation as discretized
Neural ODEs*, Sandia 2022 — seed 001; E 2017 and Haber & Ruthotto 2017 for the reading).
The seed writes ``Wₙ = W(tₙ)``, ``tₙ = nh``; explicit Euler evaluates the field at the
*start* of each step, so the interval attached to layer n is the one that starts at
``(n−1)h``. :class:`ResNet` is the network, :class:`ResNetVectorField` its vector field
(the pyodejl vector-field protocol: ``num_params``, ``__call__(t, y, theta)``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._validation import check_integer, check_number, check_traced_inputs, check_traced_theta
from pyodejl.models.mlp import activation_fn, linear_layers_init

__all__ = ["ResNet", "ResNetVectorField"]

# Step times that a solver accumulates (t + h + h + ...) can land a few ulps below a
# layer boundary nh; reading the layer index as floor(t/h + _BOUNDARY_SLACK) keeps
# them on layer n+1. It moves every boundary left by 1e-6 of a layer's width, which
# no other time a solver uses comes near.
_BOUNDARY_SLACK = 1e-6


class ResNetVectorField(eqx.Module):
    """The Neural ODE of a ResNet: ``f(t, y; θ) = σ(W(t)y + b(t))``, piecewise constant in t.

    Layer ``n`` (1-based) acts on ``[(n−1)T/N, nT/N)``; times before 0 use layer 1,
    times at or after ``T`` layer N. Explicit Euler with ``N`` steps of size ``T/N``
    from ``x₀`` reproduces the ResNet's hidden states (to round-off).

    Follows pyodejl's vector-field protocol: ``num_params``, a pure JAX
    ``__call__(t, y, theta)``, ``init(seed)``, ``state_dim``.

    **Layout of θ** (``num_params = depth · (width² + width)``): for each layer in
    order, ``Wₙ`` ``(width, width)`` row-major then ``bₙ`` ``(width,)`` — the residual
    part of :class:`ResNet`'s θ.
    """

    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    T: float = eqx.field(static=True)

    def __init__(self, width: int, depth: int, activation: str = "tanh", T: float = 1.0):
        self.width = check_integer(width, "width")
        self.depth = check_integer(depth, "depth")
        activation_fn(activation)
        self.activation = activation
        self.T = check_number(T, "T")

    @property
    def num_params(self) -> int:
        return self.depth * (self.width**2 + self.width)

    @property
    def state_dim(self) -> int:
        return self.width

    @property
    def step(self) -> float:
        """h = T / depth, the Euler step that reproduces the ResNet."""
        return self.T / self.depth

    def init(self, seed: int = 0) -> np.ndarray:
        """PyTorch's default ``nn.Linear`` initialisation of the residual layers."""
        rng = np.random.default_rng(seed)
        return linear_layers_init(rng, [(self.width, self.width)] * self.depth)

    def unflatten(self, theta):
        """θ ``(num_params,)`` → ``(Ws (depth, width, width), bs (depth, width))``."""
        w = self.width
        blocks = jnp.reshape(jnp.asarray(theta), (self.depth, w * w + w))
        return blocks[:, : w * w].reshape(self.depth, w, w), blocks[:, w * w :]

    def layer_index(self, t):
        """0-based index of the layer acting at time ``t`` (an int32 array)."""
        n = jnp.floor(jnp.asarray(t) / self.step + _BOUNDARY_SLACK)
        return jnp.clip(n, 0, self.depth - 1).astype(jnp.int32)

    def __call__(self, t, y, theta):
        """dy/dt at time ``t`` (scalar) for ``y`` ``(width,)`` or ``(..., width)``."""
        Ws, bs = self.unflatten(theta)
        n = self.layer_index(t)
        return activation_fn(self.activation)(y @ Ws[n].T + bs[n])


class ResNet(eqx.Module):
    """A fully connected ResNet ``R^in_dim → R^out_dim`` read from a flat θ (seed 001).

    ``x₀ = W_in·u + b_in``; ``xₙ = xₙ₋₁ + (T/N)·σ(Wₙxₙ₋₁ + bₙ)`` for ``n = 1..N``
    (``N = depth``); output ``W_out·x_N + b_out``.

    **Layout of θ** — PyTorch ``nn.Linear`` order, as ``torch.cat([q.flatten() for q in
    model.parameters()])`` gives for the layers in this order: ``W_in`` ``(width,
    in_dim)`` row-major, ``b_in``; then each residual layer's ``Wₙ`` ``(width, width)``
    and ``bₙ``; then ``W_out`` ``(out_dim, width)``, ``b_out``.
    :meth:`split` cuts θ into (input layer, vector-field θ, output layer).

    Args:
        in_dim: input width (positive integer).
        width: hidden width of every residual layer.
        depth: N, the number of residual layers (≥ 1).
        out_dim: output width.
        activation: a :data:`pyodejl.models.mlp.ACTIVATIONS` name (default ``"tanh"``).
        T: final time of the Neural ODE reading; the residual step is ``T/depth``.
    """

    in_dim: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    T: float = eqx.field(static=True)

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int, activation: str = "tanh", T: float = 1.0):
        self.in_dim = check_integer(in_dim, "in_dim")
        self.width = check_integer(width, "width")
        self.depth = check_integer(depth, "depth")
        self.out_dim = check_integer(out_dim, "out_dim")
        activation_fn(activation)
        self.activation = activation
        self.T = check_number(T, "T")

    # ---- parameters ---------------------------------------------------------
    @property
    def num_input_params(self) -> int:
        return self.width * self.in_dim + self.width

    @property
    def num_output_params(self) -> int:
        return self.out_dim * self.width + self.out_dim

    @property
    def num_params(self) -> int:
        """Length p of θ."""
        return self.num_input_params + self.vector_field.num_params + self.num_output_params

    @property
    def step(self) -> float:
        """h = T / depth."""
        return self.T / self.depth

    @property
    def vector_field(self) -> ResNetVectorField:
        """The residual layers as a time-dependent vector field (see :class:`ResNetVectorField`)."""
        return ResNetVectorField(self.width, self.depth, self.activation, self.T)

    def init(self, seed: int = 0) -> np.ndarray:
        """PyTorch's default ``nn.Linear`` initialisation, U(±1/√fan_in), from ``seed``.

        Returns:
            θ, float64 ``(num_params,)``.
        """
        rng = np.random.default_rng(seed)
        shapes = [(self.width, self.in_dim)] + [(self.width, self.width)] * self.depth + [(self.out_dim, self.width)]
        return linear_layers_init(rng, shapes)

    def split(self, theta):
        """θ → ``(theta_in, theta_vf, theta_out)``: input layer, :attr:`vector_field` θ, output layer."""
        a = self.num_input_params
        b = a + self.vector_field.num_params
        return theta[:a], theta[a:b], theta[b:]

    def join(self, theta_in, theta_vf, theta_out):
        """Inverse of :meth:`split`."""
        return jnp.concatenate([jnp.asarray(theta_in), jnp.asarray(theta_vf), jnp.asarray(theta_out)])

    def unflatten(self, theta):
        """θ → ``dict(W_in, b_in, Ws (depth, width, width), bs (depth, width), W_out, b_out)``."""
        t_in, t_vf, t_out = self.split(jnp.asarray(theta))
        Ws, bs = self.vector_field.unflatten(t_vf)
        nw = self.width * self.in_dim
        return dict(
            W_in=t_in[:nw].reshape(self.width, self.in_dim),
            b_in=t_in[nw:],
            Ws=Ws,
            bs=bs,
            W_out=t_out[: self.out_dim * self.width].reshape(self.out_dim, self.width),
            b_out=t_out[self.out_dim * self.width :],
        )

    # ---- evaluation -----------------------------------------------------------
    def embed(self, theta_in, inputs):
        """x₀ = W_in·u + b_in for inputs ``(..., in_dim)``."""
        nw = self.width * self.in_dim
        return inputs @ theta_in[:nw].reshape(self.width, self.in_dim).T + theta_in[nw:]

    def readout(self, theta_out, x):
        """W_out·x + b_out for states ``(..., width)``."""
        n = self.out_dim * self.width
        return x @ theta_out[:n].reshape(self.out_dim, self.width).T + theta_out[n:]

    def hidden_states(self, theta, inputs):
        """All states ``x₀ … x_N``.

        Args:
            theta: ``(num_params,)``.
            inputs: ``(B, in_dim)`` or ``(in_dim,)``.

        Returns:
            ``(depth + 1, B, width)`` (or ``(depth + 1, width)``).
        """
        theta = check_traced_theta(theta, self.num_params)
        inputs = check_traced_inputs(inputs, self.in_dim)
        t_in, t_vf, _ = self.split(theta)
        return self._states(t_in, t_vf, inputs)

    def _states(self, t_in, t_vf, inputs, keep=True):
        sigma = activation_fn(self.activation)
        Ws, bs = self.vector_field.unflatten(t_vf)
        h = self.step
        x0 = self.embed(t_in, inputs)

        def layer(x, wb):
            W, b = wb
            x = x + h * sigma(x @ W.T + b)
            return x, (x if keep else None)

        xN, xs = jax.lax.scan(layer, x0, (Ws, bs))
        return jnp.concatenate([x0[None], xs], axis=0) if keep else xN

    def __call__(self, theta, inputs):
        """The network's output.

        Args:
            theta: ``(num_params,)``.
            inputs: ``(B, in_dim)`` (or a single ``(in_dim,)``).

        Returns:
            ``(B, out_dim)`` (or ``(out_dim,)``).
        """
        theta = check_traced_theta(theta, self.num_params)
        inputs = check_traced_inputs(inputs, self.in_dim)
        t_in, t_vf, t_out = self.split(theta)
        return self.readout(t_out, self._states(t_in, t_vf, inputs, keep=False))
