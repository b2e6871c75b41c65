"""Second-order Neural ODEs: y″ = a_θ(t, y, y′), solved as a first-order system.

Seed 004's Lux chapter (and Norcliffe et al. 2020, *On Second Order Behaviour in
Augmented Neural ODEs*) learn an acceleration rather than a velocity. Written as the
first-order system

    d/dt [y, v] = [v, a_θ(t, [y, v])],

a second-order model is an ordinary vector field on the state ``[y, v]`` of size 2d,
so every solver, gradient method, Hessian method and regulariser of pyodejl applies
to it unchanged: ``pj.NeuralODE(pj.SecondOrder(pj.MLP((2 * d, 64, d))))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pyodejl._validation import check_integer
from pyodejl.models.vector_field import check_vector_field


class SecondOrder:
    """The vector field of y″ = a(t, y, y′; θ) on the state ``[y, y′]``.

    Args:
        acceleration: a vector field (the protocol of :mod:`pyodejl.models.vector_field`)
            evaluated on the whole state: ``acceleration(t, state, theta)`` with
            ``state = [y, y′]`` of shape ``(2d,)`` returns y″ of shape ``(d,)``; e.g.
            ``pj.MLP((2 * d, width, d))``. θ is the acceleration's θ.
        dim: d, the dimension of y (default: half the acceleration's ``state_dim``).

    Attributes:
        num_params: p of the acceleration.
        state_dim: 2d.

    Initial states ``y0`` are ``(2d,)`` (or ``(B, 2d)``): positions then velocities.

    Raises:
        TypeError: ``acceleration`` does not follow the vector-field protocol.
        ValueError: d cannot be found, the acceleration's input is not 2d wide, or its
            output is not ``(d,)``.
    """

    def __init__(self, acceleration, dim: int | None = None):
        check_vector_field(acceleration)
        width = getattr(acceleration, "state_dim", None)
        if dim is None:
            if width is None:
                raise ValueError("SecondOrder needs dim (the dimension d of y) when the acceleration does not "
                                 "fix its input width through state_dim")
            if width % 2:
                raise ValueError(f"the acceleration's input is the state [y, y'] of size 2d, so its state_dim must "
                                 f"be even; got {width}")
            dim = width // 2
        dim = check_integer(dim, "dim")
        if width is not None and width != 2 * dim:
            raise ValueError(f"the acceleration reads the state [y, y'] of size 2d = {2 * dim}, but its state_dim "
                             f"is {width}")
        self.acceleration = acceleration
        self.dim = int(dim)
        self.state_dim = 2 * self.dim
        self.num_params = int(acceleration.num_params)
        self._check_output()

    def _check_output(self):
        t = jax.ShapeDtypeStruct((), jnp.float64)
        state = jax.ShapeDtypeStruct((self.state_dim,), jnp.float64)
        theta = jax.ShapeDtypeStruct((self.num_params,), jnp.float64)
        try:
            out = jax.eval_shape(self.acceleration, t, state, theta)
        except Exception as exc:  # the acceleration's own error, re-raised with context
            raise ValueError(f"the acceleration cannot be evaluated on a state [y, y'] of shape ({self.state_dim},): "
                             f"{exc}") from exc
        if getattr(out, "shape", None) != (self.dim,):
            raise ValueError(f"the acceleration must return y'' of shape ({self.dim},) for a state of shape "
                             f"({self.state_dim},); got {getattr(out, 'shape', type(out).__name__)}")

    def init(self, seed: int = 0):
        """The acceleration's ``init(seed)``."""
        if not hasattr(self.acceleration, "init"):
            raise NotImplementedError(f"{type(self.acceleration).__name__} has no init(seed); pass θ explicitly")
        return self.acceleration.init(seed)

    def __call__(self, t, state, theta):
        """``[y′, a(t, [y, y′]; θ)]`` for a state ``(2d,)``."""
        velocity = state[self.dim :]
        return jnp.concatenate([velocity, self.acceleration(t, state, theta)])

    def __repr__(self):
        return f"SecondOrder({self.acceleration!r}, dim={self.dim})"
