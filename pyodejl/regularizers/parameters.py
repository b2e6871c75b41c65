"""Terms of θ alone."""

from __future__ import annotations

import jax.numpy as jnp

from pyodejl.regularizers.base import Regularizer


class WeightDecay(Regularizer):
    """R = ‖θ_vf‖², the squared norm of the vector field's parameters.

    All of them, biases included, as PyTorch's ``weight_decay`` and Optax's
    ``add_decayed_weights`` apply it (Krogh & Hertz 1991). With
    ``include_extra=True`` the extra parameters (readouts) are included too.

    Args:
        weight: w ≥ 0 (default 1).
        include_extra: also penalise θ beyond the vector field (default False).
    """

    name = "weight_decay"

    def __init__(self, weight: float = 1.0, include_extra: bool = False):
        super().__init__(weight)
        self.include_extra = bool(include_extra)

    def static_key(self):
        return (self.include_extra,)

    def value(self, inputs):
        th = inputs.theta if self.include_extra else inputs.theta_vf
        return jnp.sum(th * th)
