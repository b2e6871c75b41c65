"""Multilayer-perceptron vector fields with a flat, documented parameter layout."""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "swish": jax.nn.swish,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "identity": lambda x: x,
}


def activation_fn(name: str) -> Callable:
    """Return the elementwise activation called ``name``.

    Raises ValueError listing the known names for anything else.
    """
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None


def layer_sizes(sizes) -> tuple[int, ...]:
    """``sizes`` as a tuple of ints ``(in, hidden..., out)``, each >= 1 and at least two.

    Raises:
        TypeError: not a sequence of integers.
        ValueError: fewer than two widths, or a width below 1.
    """
    try:
        sizes = tuple(int(s) for s in sizes)
    except TypeError:
        raise TypeError(f"sizes must be a sequence of ints, got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output width, got {sizes}")
    if any(s < 1 for s in sizes):
        raise ValueError(f"every layer width must be >= 1, got {sizes}")
    return sizes


def linear_layers_init(rng: np.random.Generator, shapes) -> np.ndarray:
    """PyTorch's default ``nn.Linear`` initialisation of a stack of layers, flattened.

    For each ``(n_out, n_in)`` in ``shapes``: the weight ``(n_out, n_in)`` row-major, then
    the bias ``(n_out,)``, every entry ~ U(−1/√n_in, 1/√n_in) (fan_in = n_in), drawn from
    ``rng`` in that order. The one initialiser of the package's models.

    Returns:
        float64 ``(Σ n_out·n_in + n_out,)``.
    """
    parts = []
    for n_out, n_in in shapes:
        bound = 1.0 / math.sqrt(n_in)
        parts.append(rng.uniform(-bound, bound, size=n_out * n_in))
        parts.append(rng.uniform(-bound, bound, size=n_out))
    return np.concatenate(parts).astype(np.float64)


class MLP(eqx.Module):
    """A fully connected network ``R^sizes[0] -> R^sizes[-1]`` read from a flat θ.

    As a vector field (the protocol of :mod:`pyodejl.models.vector_field`) it is
    called ``mlp(t, y, theta)``; as a plain network, ``mlp.apply(theta, x, t=None)``.

    The network holds no parameters itself: it is a pure function of a flat
    float64 parameter vector ``theta`` of length :attr:`num_params`, so that
    Hessians with respect to θ are plain ``(p, p)`` matrices.

    **Layout of θ.** Layer by layer, the weight matrix of shape ``(out, in)``
    flattened row-major, then the bias of shape ``(out,)`` — exactly what
    ``torch.cat([q.flatten() for q in nn.Sequential(nn.Linear, ...).parameters()])``
    gives. With ``time_dependent=True`` the time ``t`` is appended as the last
    input of the first layer, whose weight is then ``(sizes[1], sizes[0] + 1)``.

    Args:
        sizes: layer widths including input and output, e.g. ``(2, 50, 2)``.
        activation: name of the hidden activation (``tanh``, ``sigmoid``,
            ``softplus``, ``relu``, ``elu``, ``swish``, ``gelu``, ``identity``).
            No activation after the last layer.
        time_dependent: append ``t`` to the input of the first layer.
    """

    sizes: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    time_dependent: bool = eqx.field(static=True)

    def __init__(self, sizes, activation: str = "tanh", time_dependent: bool = False):
        sizes = layer_sizes(sizes)
        activation_fn(activation)
        self.sizes = sizes
        self.activation = activation
        self.time_dependent = bool(time_dependent)

    @property
    def in_features(self) -> int:
        return self.sizes[0]

    @property
    def out_features(self) -> int:
        return self.sizes[-1]

    def layer_shapes(self) -> list[tuple[tuple[int, int], tuple[int]]]:
        """``[(weight_shape, bias_shape), ...]`` in θ order."""
        shapes = []
        for k, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            if k == 0 and self.time_dependent:
                n_in += 1
            shapes.append(((n_out, n_in), (n_out,)))
        return shapes

    @property
    def state_dim(self) -> int:
        """The input width: the state dimension d when used as a vector field
        (which then needs ``sizes[-1] == sizes[0]``)."""
        return self.sizes[0]

    @property
    def num_params(self) -> int:
        """Length p of θ."""
        return sum(o * i + o for (o, i), _ in self.layer_shapes())

    def init(self, seed: int = 0) -> np.ndarray:
        """PyTorch's default ``nn.Linear`` initialisation, reproducible from ``seed``.

        Weights and biases are drawn from U(-1/√fan_in, 1/√fan_in).

        Returns:
            θ, float64 array of shape ``(num_params,)``.
        """
        return linear_layers_init(np.random.default_rng(seed), [w for w, _ in self.layer_shapes()])

    def unflatten(self, theta):
        """Split θ into ``[(W, b), ...]`` following the documented layout."""
        out, offset = [], 0
        for (n_out, n_in), _ in self.layer_shapes():
            w = theta[offset : offset + n_out * n_in].reshape(n_out, n_in)
            offset += n_out * n_in
            b = theta[offset : offset + n_out]
            offset += n_out
            out.append((w, b))
        return out

    def __call__(self, t, y, theta):
        """The vector field f(t, y; θ): ``y`` ``(..., sizes[0])`` -> ``(..., sizes[-1])``."""
        return self.apply(theta, y, t)

    def apply(self, theta, x, t=None):
        """Evaluate the network.

        Args:
            theta: ``(num_params,)``.
            x: ``(..., sizes[0])``.
            t: scalar time; required when ``time_dependent``.

        Returns:
            ``(..., sizes[-1])``.
        """
        sigma = activation_fn(self.activation)
        h = x
        if self.time_dependent:
            if t is None:
                raise ValueError("a time-dependent MLP needs t")
            tcol = jnp.broadcast_to(jnp.asarray(t, dtype=h.dtype), h.shape[:-1] + (1,))
            h = jnp.concatenate([h, tcol], axis=-1)
        layers = self.unflatten(theta)
        for k, (w, b) in enumerate(layers):
            h = h @ w.T + b
            if k < len(layers) - 1:
                h = sigma(h)
        return h
