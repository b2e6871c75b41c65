"""Compiled second-order AD kernels on a pure loss ``fn(theta, *args) -> scalar``.

``fn`` is a static, hashable callable and ``args`` a tuple of arrays, so one
compilation serves every objective with the same structure and shapes.
Each kernel maps a block of tangents ``V`` of shape ``(p, b)`` with ``vmap``;
callers split large blocks (full Hessians) into fixed-width pieces, so memory
stays bounded and one compilation serves every piece.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pyodejl._jit import jit


@jit(static_argnums=0)
def value_and_grad(fn, theta, args):
    return jax.value_and_grad(fn)(theta, *args)


@jit(static_argnums=0)
def hvp_forward_over_reverse(fn, theta, V, args):
    """H @ V by forward mode over the reverse-mode gradient. V: ``(p, b)``."""
    grad = lambda th: jax.grad(fn)(th, *args)
    one = lambda v: jax.jvp(grad, (theta,), (v,))[1]
    return jax.vmap(one, in_axes=1, out_axes=1)(V)


@jit(static_argnums=0)
def hvp_reverse_over_reverse(fn, theta, V, args):
    """H @ V by reverse mode over the reverse-mode gradient (H symmetric). V: ``(p, b)``."""
    grad = lambda th: jax.grad(fn)(th, *args)
    _, pullback = jax.vjp(grad, theta)
    return jax.vmap(lambda v: pullback(v)[0], in_axes=1, out_axes=1)(V)


@jit(static_argnums=(0, 4))
def elementwise_second_derivatives(fn, theta, pairs, args, chunk):
    """∂²L/∂θ_i∂θ_j for each row (i, j) of ``pairs``, one scalar derivative each.

    Each entry is the derivative with respect to the scalar θ_i of the scalar
    ∂L/∂θ_j — the seed-000 "explicit auto-differentiation" (EA) technique.
    """

    def entry(ij):
        i, j = ij[0], ij[1]
        dj = lambda s: jax.grad(fn)(theta.at[i].set(s), *args)[j]
        return jax.grad(dj)(theta[i])

    return jax.lax.map(entry, pairs, batch_size=chunk)


@jit(static_argnums=0)
def batched_values(fn, thetas, args):
    """``fn`` at each row of ``thetas`` (used by finite differences)."""
    return jax.vmap(lambda th: fn(th, *args))(thetas)


def as_jax(x):
    return jnp.asarray(x)
