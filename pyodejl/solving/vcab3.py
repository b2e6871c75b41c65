"""VCAB3: the variable-step third-order Adams–Bashforth method, adaptive, as a Diffrax solver.

Seed 004 ch. 2 §2.2 (Durran 1991; Hairer, Nørsett & Wanner, *Solving ODEs I*,
§III.5). With the last three nodes t_{n−2}, t_{n−1}, t_n and their slopes
F_i = f(t_i, y_i), the step to t_{n+1} = t_n + h integrates the quadratic
interpolant P of the slopes:

    y_{n+1} = y_n + ∫_{t_n}^{t_n+h} P(τ) dτ = y_n + Σ_i β_i F_i,

β_i = ∫₀ʰ L_i(s) ds with L_i the Lagrange basis on the (variable) nodes; on
a uniform grid β = h·(23, −16, 5)/12, the seed's formula.

**Error estimate** (Milne's device). After the step, F_{n+1} = f(t_{n+1},
y_{n+1}) — which the next step needs anyway — gives the cubic interpolant
through four slopes; integrated over the step it is the fourth-order
(Adams–Moulton) value y*, and y* − y_{n+1} estimates AB3's local error,
O(h⁴). So each step after start-up costs **one** evaluation of f. A rejected
step costs one too (its F_{n+1} is discarded).

**Start-up.** The first two steps, before three slopes exist, are
Bogacki–Shampine 3(2) steps (three evaluations each, FSAL) with their own
embedded estimate, as OrdinaryDiffEq's VCAB3 starts with BS3.

It is a ``diffrax.AbstractAdaptiveSolver`` whose solver state carries the
history (step count, last three times and slopes), so it runs in
``diffrax.diffeqsolve`` with any step-size controller (a rejected step keeps
the old state) and in pyodejl's frozen-grid replay (``lax.scan`` over
``solver.step``), whose reverse-mode derivative is the discrete gradient.
Dense output: cubic Hermite on (y_n, y_{n+1}, F_n, F_{n+1}).
"""

from __future__ import annotations

from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp

# Bogacki & Shampine (1989) 3(2): c, a, b (3rd order), b_hat (2nd order, FSAL stage included)
_C = (0.5, 0.75)
_B = (2 / 9, 1 / 3, 4 / 9)
_B_ERR = (2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8)


def _int_basis(nodes, h):
    """∫₀ʰ L_i(s) ds for the Lagrange basis on ``nodes`` (a tuple of scalars), each a scalar."""
    out = []
    for i, xi in enumerate(nodes):
        others = [x for j, x in enumerate(nodes) if j != i]
        # the numerator polynomial ∏ (s − x_j), as coefficients in increasing powers
        poly = [1.0]
        for x in others:
            poly = [(-x) * poly[0]] + [poly[k - 1] - x * poly[k] for k in range(1, len(poly))] + [poly[-1]]
        integral = sum(c * h ** (k + 1) / (k + 1) for k, c in enumerate(poly))
        denom = 1.0
        for x in others:
            denom = denom * (xi - x)
        out.append(integral / denom)
    return out


def ab3_weights(t_hist, t0, t1):
    """β for slopes at ``t_hist = (t_{n−2}, t_{n−1}, t_n)`` (t_n = t0) over [t0, t1]; a list of 3."""
    h = t1 - t0
    return _int_basis((t_hist[0] - t0, t_hist[1] - t0, jnp.zeros_like(h)), h)


def am4_weights(t_hist, t0, t1):
    """Weights of the slopes at (t_{n−2}, t_{n−1}, t_n, t_{n+1}) integrated over [t0, t1]; a list of 4."""
    h = t1 - t0
    return _int_basis((t_hist[0] - t0, t_hist[1] - t0, jnp.zeros_like(h), h), h)


class VCAB3(diffrax.AbstractAdaptiveSolver):
    """Variable-step Adams–Bashforth 3 with a Milne error estimate (see module docstring).

    Solver state: ``(count, ts (3,), fs (3, *y.shape))`` — accepted steps so
    far (capped at 2) and the last three nodes and slopes (the oldest entries
    repeat t_0, f_0 until filled). ODEs only (one ``diffrax.ODETerm``).
    """

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation

    def order(self, terms):
        return 3

    def error_order(self, terms):
        # the Milne estimate is AB3's local error, O(h^4)
        return 4

    def init(self, terms, t0, t1, y0, args):
        f0 = terms.vf(t0, y0, args)
        ts = jnp.stack([t0, t0, t0]).astype(jnp.result_type(t0, float))
        return (jnp.zeros((), jnp.int32), ts, jnp.stack([f0, f0, f0]))

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del made_jump
        count, ts, fs = solver_state
        f = lambda t, y: terms.vf(t, y, args)
        h = t1 - t0
        fn = fs[2]

        def startup(_):
            k2 = f(t0 + _C[0] * h, y0 + h * _C[0] * fn)
            k3 = f(t0 + _C[1] * h, y0 + h * _C[1] * k2)
            y1 = y0 + h * (_B[0] * fn + _B[1] * k2 + _B[2] * k3)
            f1 = f(t1, y1)
            err = h * (_B_ERR[0] * fn + _B_ERR[1] * k2 + _B_ERR[2] * k3 + _B_ERR[3] * f1)
            return y1, f1, err

        def adams(_):
            beta = ab3_weights(ts, t0, t1)
            y1 = y0 + beta[0] * fs[0] + beta[1] * fs[1] + beta[2] * fs[2]
            f1 = f(t1, y1)
            gamma = am4_weights(ts, t0, t1)
            y_star = y0 + gamma[0] * fs[0] + gamma[1] * fs[1] + gamma[2] * fs[2] + gamma[3] * f1
            return y1, f1, y_star - y1

        # both branches are traced; lax.cond runs (and differentiates) one
        y1, f1, err = jax.lax.cond(count < 2, startup, adams, None)
        new_times = jnp.stack([ts[1], ts[2], jnp.asarray(t1, ts.dtype)])
        new_state = (jnp.minimum(count + 1, 2), new_times, jnp.stack([fs[1], fs[2], f1]))
        dense_info = dict(y0=y0, y1=y1, k0=h * fn, k1=h * f1)
        return y1, err, dense_info, new_state, diffrax.RESULTS.successful
