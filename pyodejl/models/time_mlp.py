"""An MLP vector field with the time fed to every layer (seed 004's MNIST Neural ODE).

Seed 004 (§3.1.1 of its Chapter 5, after Kelly et al. 2020, *Learning
Differential Equations that are Easy to Solve*) classifies flattened MNIST
images with the Neural ODE

    z(x, t) = tanh(W₁ [x; t] + B₁),      f(x, t) = tanh(W₂ [z(x, t); t] + B₂),

W₁ ∈ R^{100×785}, W₂ ∈ R^{784×101}: the time is concatenated to the input of
*both* layers and the output layer is squashed by tanh too. :class:`pyodejl.MLP`
feeds ``t`` to the first layer only and has a linear output, so this is its own
model. With ``sizes = (784, 100, 784)`` it has 158 568 parameters (plus a
784 → 10 readout, 7 850, in the experiments: p = 166 418).
"""

from __future__ import annotations

import equinox as eqx
import numpy as np

from pyodejl.models.mlp import activation_fn, layer_sizes, linear_layers_init

__all__ = ["ConcatTimeMLP"]


class ConcatTimeMLP(eqx.Module):
    """``f(t, y) = σ_out(W_L [h_{L-1}; t] + b_L)``, ``h_k = σ(W_k [h_{k-1}; t] + b_k)``, ``h_0 = y``.

    A vector field (the protocol of :mod:`pyodejl.models.vector_field`):
    ``field(t, y, theta)``; as a plain network ``field.apply(theta, x, t)``.

    **Layout of θ.** Layer by layer, the weight ``(out, in + 1)`` row-major — its
    last column multiplies ``t`` — then the bias ``(out,)``: what PyTorch gives for
    ``nn.Linear(in + 1, out)`` layers applied to ``torch.cat([h, t], -1)``.

    Args:
        sizes: widths including input and output, e.g. ``(784, 100, 784)``;
            ``sizes[-1] == sizes[0]`` for a vector field.
        activation: hidden activation (default ``"tanh"``).
        output_activation: activation of the last layer (default ``"tanh"``, as in
            seed 004; ``"identity"`` for a linear output).

    Reference: seed 004 §3.1.1 (Chapter 5), Kelly et al. (2020).
    """

    sizes: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    output_activation: str = eqx.field(static=True)

    def __init__(self, sizes, activation: str = "tanh", output_activation: str = "tanh"):
        sizes = layer_sizes(sizes)
        activation_fn(activation)
        activation_fn(output_activation)
        self.sizes = sizes
        self.activation = activation
        self.output_activation = output_activation

    @property
    def state_dim(self) -> int:
        """d, the input width (a vector field needs ``sizes[-1] == sizes[0]``)."""
        return self.sizes[0]

    def layer_shapes(self) -> list[tuple[int, int]]:
        """``[(out, in + 1), ...]``: each layer's weight shape, in θ order."""
        return [(o, i + 1) for i, o in zip(self.sizes[:-1], self.sizes[1:])]

    @property
    def num_params(self) -> int:
        """Length p of θ: ``Σ out·(in + 1) + out``."""
        return sum(o * i + o for o, i in self.layer_shapes())

    def init(self, seed: int = 0) -> np.ndarray:
        """PyTorch's default ``nn.Linear`` initialisation: U(±1/√fan_in), fan_in = in + 1.

        Returns:
            θ, float64 ``(num_params,)``, reproducible from ``seed``.
        """
        return linear_layers_init(np.random.default_rng(seed), self.layer_shapes())

    def unflatten(self, theta):
        """θ as ``[(W (out, in + 1), b (out,)), ...]``."""
        out, offset = [], 0
        for o, i in self.layer_shapes():
            w = theta[offset : offset + o * i].reshape(o, i)
            offset += o * i
            out.append((w, theta[offset : offset + o]))
            offset += o
        return out

    def __call__(self, t, y, theta):
        """f(t, y; θ): ``y`` ``(..., sizes[0])`` → ``(..., sizes[-1])``."""
        return self.apply(theta, y, t)

    def apply(self, theta, x, t):
        """Evaluate the network on ``x`` ``(..., sizes[0])`` at the scalar time ``t``."""
        hidden, last = activation_fn(self.activation), activation_fn(self.output_activation)
        h = x
        layers = self.unflatten(theta)
        for k, (w, b) in enumerate(layers):
            # W [h; t] = W[:, :-1] h + t W[:, -1]: no concatenated copy of h
            h = h @ w[:, :-1].T + t * w[:, -1] + b
            h = last(h) if k == len(layers) - 1 else hidden(h)
        return h
