"""The per-step record of a solve, and the estimates an explicit solver gets for free from it.

Every accepted step j of a solve from t_j to t_j + dt_j is recorded as a
:class:`StepRecord` — a pytree (``jax.tree_util`` dataclass) of arrays with a
leading step axis. Inside a differentiable loss it holds JAX arrays on the
padded step grid (``valid`` marks the real steps; padding steps have
``dt = 0``); :attr:`pyodejl.solving.Solution.steps` holds NumPy arrays of the
real steps only.

Two estimates read from it, kept here so every user (stiffness analysis,
regularisers) shares one implementation:

* :func:`error_ratios` — E_j, the scaled local error the step-size controller
  compares with 1 (seed 004 §2.3, Eq. for ERNODE).
* :func:`shampine_stiffness` — S_j = ‖k_b − k_a‖ / ‖g_b − g_a‖ from the two
  stages evaluated at c = 1 (both at t_{j+1}); h·S_j estimates h·|λ| of the
  dominant eigenvalue (Shampine 1977; Hairer & Wanner, *Solving ODEs II*,
  §IV.2; seed 004 §2.4). For dopri5 and tsit5 these are stages 6 and 7.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class StepRecord:
    """Everything a solve computed at each accepted step.

    Shapes, with N steps, s stages and a state ``(B, D)`` (``(D,)`` for a single
    trajectory from :meth:`pyodejl.NeuralODE.solve`):

    Attributes:
        t: ``(N,)`` start time of each step.
        dt: ``(N,)`` step size.
        y: ``(N, B, D)`` state at the start of the step.
        y1: ``(N, B, D)`` state at its end.
        k: ``(N, s, B, D)`` stage derivatives k_i = f(t + c_i dt, g_i), or None
            for implicit solvers (their stages are Newton iterates inside Diffrax).
        stage_states: ``(N, s, B, D)`` the stage states g_i, or None (implicit).
        error: ``(N, B, D)`` the embedded local error estimate
            dt·Σ_i (b_i − b̃_i) k_i (zeros for methods without one).
        valid: ``(N,)`` True for real steps, False for padding (``dt = 0``).
    """

    t: jax.Array
    dt: jax.Array
    y: jax.Array
    y1: jax.Array
    k: jax.Array | None
    stage_states: jax.Array | None
    error: jax.Array
    valid: jax.Array

    @property
    def num_steps(self) -> int:
        return int(np.sum(np.asarray(self.valid)))

    def trimmed(self, n: int, single: bool = False) -> StepRecord:
        """The first ``n`` steps as NumPy arrays; ``single`` drops the batch axis of 1."""

        from pyodejl._sharding import to_host

        def cut(x, batch_axis):
            if x is None:
                return None
            x = to_host(x)[:n]
            return np.take(x, 0, axis=batch_axis) if single else x

        return StepRecord(
            t=np.asarray(self.t)[:n],
            dt=np.asarray(self.dt)[:n],
            y=cut(self.y, 1),
            y1=cut(self.y1, 1),
            k=cut(self.k, 2),
            stage_states=cut(self.stage_states, 2),
            error=cut(self.error, 1),
            valid=np.asarray(self.valid)[:n],
        )


def error_ratios(steps: StepRecord, rtol: float, atol: float, error_dims=None):
    """E_j = RMS over state entries of error_j / (atol + rtol·max(|y_j|, |y_{j+1}|)), ``(N,)``.

    The quantity the step-size controller accepts a step on (E_j < 1); the
    batch is one system, so the RMS runs over every trajectory and entry.
    ``error_dims`` restricts it to the leading state entries, as the
    controller does. Zero on padding steps.
    """
    c = (lambda x: x) if error_dims is None else (lambda x: x[..., :error_dims])
    scale = atol + rtol * jnp.maximum(jnp.abs(c(steps.y)), jnp.abs(c(steps.y1)))
    ratio = c(steps.error) / scale
    axes = tuple(range(1, ratio.ndim))
    # double where: sqrt has an infinite derivative at 0 (padding steps, h = 0),
    # and 0·inf would turn the gradient of a sum over steps into NaN
    ms = jnp.mean(ratio * ratio, axis=axes)
    ok = steps.valid & (ms > 0)
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, ms, 1.0)), 0.0)


def shampine_stiffness(steps: StepRecord, unit_stages: tuple[int, int], error_dims=None):
    """S_j = ‖k_b − k_a‖ / ‖g_b − g_a‖ per step, ``(N,)`` (see module docstring).

    Args:
        steps: a record with stage values (explicit solvers).
        unit_stages: ``(a, b)``, the indices of the two stages at c = 1
            (:attr:`pyodejl.solving.Solver.unit_stages`).
        error_dims: restrict the norms to the leading state entries.

    Zero on padding steps and where the two stage states coincide (then the
    step carries no information about the Jacobian); the double ``where``
    keeps its gradient finite there.
    """
    if steps.k is None:
        raise NotImplementedError("Shampine's stiffness estimate needs the stage values of an explicit solver")
    a, b = unit_stages
    c = (lambda x: x) if error_dims is None else (lambda x: x[..., :error_dims])
    dk = c(steps.k[:, b] - steps.k[:, a])
    dg = c(steps.stage_states[:, b] - steps.stage_states[:, a])
    axes = tuple(range(1, dk.ndim))
    num = jnp.sum(dk * dk, axis=axes)
    den = jnp.sum(dg * dg, axis=axes)
    ok = steps.valid & (den > 0) & (num > 0)
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, num, 1.0) / jnp.where(ok, den, 1.0)), 0.0)
