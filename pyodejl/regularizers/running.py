"""Running costs: integrals along the trajectory, computed by augmenting the ODE state.

For a term with integrand g(t, y; θ), the objective solves the augmented system

    d/dt [y, ε, r] = [f(t, y; θ), 0, g(t, y, ε; θ)],   r(t0) = 0,

so r(T) = ∫ g dt along each trajectory. The appended entries are left out of
step-size control (``NeuralODE(error_dims=D)``), as RNODE does (Finlay et al.
2020, *How to train your neural ODE*), and every gradient method — discrete,
backsolve, interpolating, forward — differentiates the augmented system like
any other. ε is fixed per-trajectory noise (e.g. the Gaussian probe of the
Jacobian term), carried as constant state entries so that a new seed changes
data, not the compiled code. A term's value is the mean over trajectories of
its integral.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._validation import check_integer
from pyodejl.regularizers.base import Regularizer, has_running_cost, noise_dim


class RunningTerm(Regularizer):
    """Base of the running-cost terms: R = mean over trajectories of the integral the solve
    accumulated for the term (``inputs.running``)."""

    def value(self, inputs):
        return jnp.mean(inputs.running)


class RunningCost(RunningTerm):
    """R = mean over trajectories of ∫ g(t, y; θ_vf) dt, for any pure JAX ``g``.

    Args:
        integrand: ``g(t, y, theta_vf) -> scalar`` for one state ``y`` ``(D,)``.
            It must be hashable (a module-level function): it keys the compiled code.
        weight: w ≥ 0 (default 1).
        name: key in ``loss.terms`` (default ``"running_cost"``).
    """

    def __init__(self, integrand: Callable, weight: float = 1.0, name: str = "running_cost"):
        super().__init__(weight)
        if not callable(integrand):
            raise TypeError(f"integrand must be callable as g(t, y, theta), got {type(integrand).__name__}")
        self.fn = integrand
        self.name = str(name)

    def static_key(self):
        return (self.fn, self.name)

    def integrand(self, t, y, theta_vf, vector_field, noise, f):
        return self.fn(t, y, theta_vf)


class KineticEnergy(RunningTerm):
    """R = mean over trajectories of ∫ ‖f(t, y; θ)‖² dt (RNODE's kinetic energy).

    Finlay, Jacobsen, Nurbekyan & Oberman (2020), *How to train your neural
    ODE: the world of Jacobian and kinetic regularization*, ICML, Eq. (8).

    Args:
        weight: w ≥ 0 (default 1).
    """

    name = "kinetic_energy"

    def integrand(self, t, y, theta_vf, vector_field, noise, f):
        return jnp.sum(f * f)


class JacobianFrobenius(RunningTerm):
    """R = mean over trajectories of ∫ ‖εᵀ ∂f/∂y‖² dt, ε ~ N(0, I) fixed per trajectory.

    Hutchinson's estimator of ∫ ‖∂f/∂y‖²_F dt (unbiased over ε), RNODE's
    Jacobian term (Finlay et al. 2020, Eq. (9)); one vector-Jacobian product
    per evaluation. ε is drawn once from ``seed`` (shape ``(B, D)``) and held
    fixed, so the objective is a deterministic function of θ whose Hessian is
    well defined; pass a new seed (e.g. the training step) for a new probe.

    Args:
        weight: w ≥ 0 (default 1).
        seed: seed of ε (default 0).
    """

    name = "jacobian_frobenius"

    def __init__(self, weight: float = 1.0, seed: int = 0):
        super().__init__(weight)
        self.seed = check_integer(seed, "seed", minimum=0)

    def __repr__(self):
        return f"JacobianFrobenius(weight={self.weight}, seed={self.seed})"

    def noise_dim(self, D):
        return D

    def noise(self, B, D):
        return np.random.default_rng(self.seed).standard_normal((B, D))

    def integrand(self, t, y, theta_vf, vector_field, noise, f):
        _, pull = jax.vjp(lambda y_: vector_field(t, y_, theta_vf), y)
        (eJ,) = pull(noise)
        return jnp.sum(eJ * eJ)


@dataclass(frozen=True)
class RunningCostField:
    """The augmented vector field [f, 0, g_1, …, g_R] of state [y (D), ε (n), r (R)].

    Follows the vector-field protocol; hashable by its parts.
    """

    base: object
    terms: tuple
    D: int

    @property
    def num_params(self):
        return self.base.num_params

    @property
    def layout(self):
        """``[(noise slice, running index)]`` per running term, and (n_noise, R)."""
        slices, offset = [], self.D
        running = [t for t in self.terms if has_running_cost(t)]
        for t in running:
            n = noise_dim(t, self.D)
            slices.append((offset, offset + n))
            offset += n
        return slices, offset - self.D, len(running)

    @property
    def state_dim(self):
        _, n, R = self.layout
        return self.D + n + R

    def __call__(self, t, s, theta):
        y = s[: self.D]
        f = self.base(t, y, theta)
        slices, n, _ = self.layout
        running = [term for term in self.terms if has_running_cost(term)]
        g = [term.integrand(t, y, theta, self.base, s[a:b], f) for term, (a, b) in zip(running, slices)]
        return jnp.concatenate([f, jnp.zeros((n,), dtype=s.dtype), jnp.stack(g).astype(s.dtype)])
