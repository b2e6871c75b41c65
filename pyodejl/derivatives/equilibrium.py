"""Losses of deep equilibrium models with exact gradients, HVPs and Hessians.

**Implicit differentiation, applied as often as you like.** The equilibrium
``z*(θ, x̃)`` is a ``jax.custom_jvp`` function whose JVP rule is the implicit
function theorem (seed 004 ch. 3 §2)::

    (I − ∂f/∂z) ż = ∂f/∂θ θ̇ + ∂f/∂x̃ x̃̇          at z = z*,

solved matrix-free by GMRES inside ``jax.lax.custom_linear_solve`` with a
transpose solve. Reverse mode then comes from transposing the rule — the
adjoint system (I − ∂f/∂z)ᵀ λ = ∂ℓ/∂z of seed 004 ch. 3 §3.3 — and because
the rule itself is written in differentiable JAX (it calls ``z*`` again, and
``custom_linear_solve`` has its own JVP), forward-over-reverse gives exact
Hessian-vector products: the second-order terms f_zz, f_zθ, f_θθ come from
differentiating the rule. Every Hessian method of :mod:`pyodejl.derivatives`
(``direct-direct``, ``direct-adjoint``, ``fd``, ``fd-grad``, ``elementwise``)
therefore works on a DEQ loss, as does ``jacfwd(jacrev(·))``.

Gradient methods (values; ``loss.grad(theta, method=...)``):

================  ===============================================================
``"implicit"``    the IFT adjoint (exact at the equilibrium; the default).
``"unrolled"``    reverse mode through ``steps`` damped fixed-point iterations
                  from z₀ — the reference; exact as the iteration converges.
``"jfb"``         Jacobian-free backpropagation: one application of f at a
                  constant z* (Fung et al. 2022; seed 004 ch. 3 §4.2). Not exact.
``"phantom"``     phantom gradient: ``k`` damped steps at a constant z*
                  (Geng et al. 2021). Not exact.
================  ===============================================================

The Hessian methods refuse the inexact ones (their "Hessian" is not the loss's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit, to_device
from pyodejl._sharding import to_host
from pyodejl._validation import check_integer, check_number
from pyodejl.derivatives.autodiff import value_and_grad
from pyodejl.derivatives.objective import Objective
from pyodejl.models.deq import DEQ, EquilibriumError, EquilibriumSolution
from pyodejl.solving.fixed_point import krylov_solve, rms
from pyodejl.solving.integrate import SolveError


# ---- the differentiable equilibrium ------------------------------------------
def _solved(deq, th_cell, xe, z0):
    info = deq.solve_state(th_cell, xe, z0)
    return jnp.where(info.converged | (not deq.throw), info.z, jnp.nan)


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def equilibrium(deq: DEQ, th_cell, xe, z0):
    """z*(θ, x̃) solved from ``z0``, differentiable to any order by the implicit function theorem.

    NaN where the solve does not converge and ``deq.throw`` is set. ``z0`` only
    chooses where the solver starts: z* does not depend on it.
    """
    return _solved(deq, th_cell, xe, z0)


@equilibrium.defjvp
def _equilibrium_jvp(deq, primals, tangents):
    th, xe, z0 = primals
    dth, dxe, _ = tangents
    # Calling z* again (not its solver) makes the outer derivative of this rule use the rule too.
    z = equilibrium(deq, th, xe, z0)
    _, b = jax.jvp(lambda t, x: deq.f(t, z, x), (th, xe), (dth, dxe))
    tol, strict = deq.linear_tol, deq.throw

    def matvec(v):
        return v - jax.jvp(lambda zz: deq.f(th, zz, xe), (z,), (v,))[1]

    dz = jax.lax.custom_linear_solve(
        matvec, b,
        solve=lambda mv, r: krylov_solve(mv, r, tol, strict=strict),
        transpose_solve=lambda vm, r: krylov_solve(vm, r, tol, strict=strict),
    )
    return z, dz


# ---- gradient methods ----------------------------------------------------------
@dataclass(frozen=True)
class Implicit:
    """The implicit-function-theorem derivative (exact at the equilibrium)."""

    name = "implicit"
    exact = True

    def __call__(self, deq, th_cell, xe, z0):
        return equilibrium(deq, th_cell, xe, z0)


@dataclass(frozen=True)
class Unrolled:
    """Automatic differentiation through ``steps`` damped fixed-point iterations from z₀.

    The reference derivative: as the iteration converges, its derivative converges
    to the implicit one. NaN if after ``steps`` iterations the DEQ's convergence test
    fails (and the DEQ throws). Default ``steps``: the DEQ's ``max_steps``.
    """

    steps: int | None = None
    damping: float = 1.0

    name = "unrolled"
    exact = True

    def __call__(self, deq, th_cell, xe, z0):
        steps = deq.max_steps if self.steps is None else int(self.steps)
        beta = self.damping

        def step(z, _):
            return z + beta * (deq.f(th_cell, z, xe) - z), None

        z, _ = jax.lax.scan(step, z0, None, length=steps)
        ok = rms(deq.f(th_cell, z, xe) - z) <= deq.atol + deq.tol * rms(z)
        return jnp.where(ok | (not deq.throw), z, jnp.nan)


@dataclass(frozen=True)
class JFB:
    """Jacobian-free backpropagation (Fung et al. 2022): differentiate one f-step at a constant z*.

    Equivalent to replacing (I − ∂f/∂z)⁻¹ by I (seed 004 ch. 3 §4.2). Not an exact gradient.
    """

    name = "jfb"
    exact = False

    def __call__(self, deq, th_cell, xe, z0):
        z = jax.lax.stop_gradient(equilibrium(deq, th_cell, xe, z0))
        return deq.f(th_cell, z, xe)


@dataclass(frozen=True)
class Phantom:
    """Phantom gradient (Geng et al. 2021): differentiate ``k`` damped steps at a constant z*.

    ``z ← (1 − λ) z + λ f(z)`` k times from stop_gradient(z*); k → ∞ with λ small
    approaches the implicit gradient. Not an exact gradient.
    """

    k: int = 5
    damping: float = 0.5

    name = "phantom"
    exact = False

    def __post_init__(self):
        check_integer(self.k, "phantom k")
        if not 0 < self.damping <= 1:
            raise ValueError(f"phantom damping must be in (0, 1], got {self.damping!r}")

    def __call__(self, deq, th_cell, xe, z0):
        z = jax.lax.stop_gradient(equilibrium(deq, th_cell, xe, z0))
        for _ in range(int(self.k)):
            z = (1 - self.damping) * z + self.damping * deq.f(th_cell, z, xe)
        return z


EQUILIBRIUM_GRADIENTS = {cls.name: cls for cls in (Implicit, Unrolled, JFB, Phantom)}
"""Gradient methods of equilibrium losses, by name."""


def equilibrium_gradient(method, default="implicit"):
    """A gradient-method value from a name, a value or None (``"discrete"`` means ``default``)."""
    if method is None or method == "discrete" or getattr(method, "name", None) == "discrete":
        method = default
    if isinstance(method, str):
        try:
            return EQUILIBRIUM_GRADIENTS[method]()
        except KeyError:
            raise ValueError(
                f"unknown gradient method {method!r} for an equilibrium loss; expected one of "
                f"{sorted(EQUILIBRIUM_GRADIENTS)}"
            ) from None
    if isinstance(method, tuple(EQUILIBRIUM_GRADIENTS.values())):
        return method
    raise TypeError(f"method must be a gradient-method name or value, got {method!r}")


# ---- Jacobian regularisation ---------------------------------------------------
def jacobian_frobenius_estimate(deq, th_cell, z, xe, probes):
    """Hutchinson estimate of ``mean_b ‖∂f/∂z‖²_F / d`` at ``z`` (Bai et al. 2021).

    ``probes`` ``(K, B, d)`` with E[εεᵀ] = I. For a cell acting per sample (block-
    diagonal Jacobian J over the batch), ``E‖εᵀJ‖² = ‖J‖²_F = Σ_b ‖J_b‖²_F``, so
    ``mean_k ‖ε_kᵀJ‖² / (B d)`` is unbiased for the batch mean of ‖J_b‖²_F / d.
    (Not the trace of J, which an estimator with ``εᵀJε`` would give.)
    """
    _, pull = jax.vjp(lambda zz: deq.f(th_cell, zz, xe), z)
    sq = jax.vmap(lambda e: jnp.sum(jnp.square(pull(e)[0])))(probes)
    return jnp.mean(sq) / z.size


@dataclass(frozen=True)
class JacobianRegularizer:
    """Jacobian regularisation (Bai et al. 2021; seed 004 ch. 3 §4.1).

    Adds ``weight · ‖∂f/∂z‖²_F / d`` at z*, estimated with ``num_probes`` random
    probes (Hutchinson 1989); the Frobenius norm bounds the spectral radius that
    decides whether the equilibrium is stable. Its gradient and Hessian include
    the derivatives of z* (implicit) and the second derivatives of f.

    Args:
        weight: γ (the seed's λ_jac = 1.0): the initial weight of the loss's
            ``"jacobian"`` term, data of the compiled loss (changed by
            :meth:`EquilibriumLoss.set_weights` without recompiling).
        num_probes: probes per evaluation (default 1).
        seed: seed of the probes (fixed per loss object, so the loss is a
            deterministic function of θ).
        distribution: ``"gaussian"`` (default) or ``"rademacher"``.
    """

    weight: float = field(default=1.0, compare=False)
    num_probes: int = 1
    seed: int = 0
    distribution: str = "gaussian"

    def __post_init__(self):
        object.__setattr__(self, "weight", check_number(self.weight, "jacobian regulariser weight", allow_zero=True))
        check_integer(self.num_probes, "num_probes")
        if self.distribution not in ("gaussian", "rademacher"):
            raise ValueError(f"distribution must be 'gaussian' or 'rademacher', got {self.distribution!r}")

    def probes(self, shape) -> np.ndarray:
        """``(num_probes, *shape)`` probes from ``seed``."""
        rng = np.random.default_rng(self.seed)
        size = (int(self.num_probes), *shape)
        if self.distribution == "gaussian":
            return rng.standard_normal(size)
        return rng.choice([-1.0, 1.0], size=size)

    def estimate(self, deq: DEQ, theta, x) -> float:
        """The estimate ``‖∂f/∂z‖²_F / d`` (batch mean) at the equilibrium of ``x`` (unweighted)."""
        sol = deq.solve(theta, x)
        probes = self.probes(sol.z.shape)
        return float(_frobenius_jit(deq, to_device(np.asarray(theta)), to_device(deq.check_inputs(x)),
                                    to_device(sol.z), to_device(probes)))


@jit(static_argnums=0)
def _frobenius_jit(deq, theta, x, z, probes):
    th_cell, xe, _ = deq.prepare(theta, x)
    return jacobian_frobenius_estimate(deq, th_cell, z, xe, probes)


def jacobian_spectral_radius(deq: DEQ, theta, x, tol: float = 1e-6, maxiter: int = 300) -> float:
    """Spectral radius ρ(∂f/∂z) at the equilibrium of the batch ``x``.

    ρ < 1 makes the equilibrium attracting for fixed-point iteration (seed 004
    ch. 3 §4.1). The batch's Jacobian is applied matrix-free (Jacobian-vector
    products) to ARPACK's implicitly restarted Arnoldi (``scipy.sparse.linalg.eigs``);
    small systems (≤ 64 unknowns) use a dense eigensolve. If ARPACK has not converged
    after ``maxiter`` restarts (clustered or complex dominant eigenvalues), a system of
    at most ``DENSE_FALLBACK_MAX`` (4096) unknowns is solved densely instead (its
    Jacobian from n Jacobian-vector products); a larger one returns the largest
    converged estimate with a warning (NaN if none converged).

    Args:
        deq: the model.
        theta: ``(deq.num_params,)``.
        x: ``(B, n)`` inputs.
        tol: ARPACK's relative accuracy (default 1e-6).
        maxiter: ARPACK's restart limit (default 300).

    Returns:
        ρ as a float.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigs

    sol = deq.solve(theta, x)
    theta_j, x_j, z_j = to_device(np.asarray(theta)), to_device(deq.check_inputs(x)), to_device(sol.z)
    shape = sol.z.shape
    n = int(np.prod(shape))

    def dense():
        J = np.asarray(_jacobian_jit(deq, theta_j, x_j, z_j)).reshape(n, n)
        return float(np.max(np.abs(np.linalg.eigvals(J))))

    if n <= 64:
        return dense()

    def matvec(v):
        return np.asarray(_jvp_jit(deq, theta_j, x_j, z_j, to_device(np.asarray(v).reshape(shape)))).ravel()

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    try:
        vals = eigs(op, k=1, which="LM", tol=tol, return_eigenvectors=False, v0=np.ones(n), maxiter=maxiter)
    except ArpackNoConvergence as e:
        # A converged eigenvalue need not be the dominant one: solve densely where affordable.
        if n <= DENSE_FALLBACK_MAX:
            return dense()
        if len(e.eigenvalues) == 0:
            return float("nan")
        import warnings

        warnings.warn(f"ARPACK did not converge in {maxiter} restarts on {n} unknowns; the spectral radius is the "
                      "largest converged estimate and may miss the dominant eigenvalue", RuntimeWarning, stacklevel=2)
        vals = e.eigenvalues
    return float(np.max(np.abs(vals)))


DENSE_FALLBACK_MAX = 4096
"""Largest system :func:`jacobian_spectral_radius` solves densely when ARPACK does not converge."""


@jit(static_argnums=0)
def _jvp_jit(deq, theta, x, z, v):
    th_cell, xe, _ = deq.prepare(theta, x)
    return jax.jvp(lambda zz: deq.f(th_cell, zz, xe), (z,), (v,))[1]


@jit(static_argnums=0)
def _jacobian_jit(deq, theta, x, z):
    th_cell, xe, _ = deq.prepare(theta, x)
    return jax.jacfwd(lambda zz: deq.f(th_cell, zz, xe))(z)


# ---- the loss -----------------------------------------------------------------------
WEIGHT_NAMES = ("skip", "jacobian")
"""The weighted terms of an equilibrium loss, in the order of its weight vector."""


@dataclass(frozen=True)
class EquilibriumLossFunction:
    """The pure loss ``fn(theta, inputs, data, probes, weights=None) -> scalar`` of an :class:`EquilibriumLoss`.

    Hashable, so one compilation serves every batch of the same shapes (training
    loops call it directly). ``data`` is passed to ``cost`` as a third argument
    when ``with_data``; ``probes`` ``(K, B, d)`` feed the Jacobian regulariser
    (ignored without one); ``weights`` ``(2,)`` are the ``(skip, jacobian)`` weights
    (:data:`WEIGHT_NAMES`), traced data, so changing them does not recompile.
    Without ``weights`` the function's own ``weights`` (a static tuple, part of its
    identity) are used.
    """

    deq: DEQ
    cost: Callable
    gradient: Any
    with_data: bool
    jacobian: bool
    weights: tuple | None = None

    def equilibrium_state(self, theta, inputs):
        """``(z*, θ_extra, θ_cell, θ_skip, x̃)``: z* ``(B, d)`` differentiable by ``gradient``."""
        deq = self.deq
        p = deq.num_params
        th_deq, extra = theta[:p], theta[p:]
        th_cell, th_enc, th_skip = deq.split(th_deq)
        xe = deq.encode(th_enc, inputs)
        z0 = deq.initial_state(th_cell, th_skip, xe)
        return self.gradient(deq, th_cell, xe, z0), extra, th_cell, th_skip, xe

    def data_term(self, z, extra, data):
        """The cost alone (no Skip or Jacobian penalty)."""
        return self.cost(z, extra, data) if self.with_data else self.cost(z, extra)

    def __call__(self, theta, inputs, data, probes, weights=None):
        if weights is None:
            if self.weights is None:
                raise TypeError("this loss function has no weights of its own: pass weights=(skip, jacobian)")
            weights = jnp.asarray(self.weights, dtype=theta.dtype)
        deq = self.deq
        z, extra, th_cell, th_skip, xe = self.equilibrium_state(theta, inputs)
        loss = self.data_term(z, extra, data)
        if deq.skip is not None:
            loss = loss + weights[0] * deq.skip.penalty(deq, th_cell, th_skip, z, xe)
        if self.jacobian:
            loss = loss + weights[1] * jacobian_frobenius_estimate(deq, th_cell, z, xe, probes)
        return loss


class EquilibriumLoss(Objective):
    """A scalar loss of a DEQ's equilibrium: ``L(θ) = cost(z*, θ_extra) + penalties``.

    Args:
        deq: a :class:`pyodejl.DEQ` or :class:`pyodejl.ContinuousDEQ`.
        inputs: ``(B, n)`` inputs (NaN/inf rejected).
        cost: hashable ``cost(z_star, theta_extra) -> scalar`` with ``z_star`` ``(B, d)``
            (``cost(z_star, theta_extra, data)`` when ``data`` is given), e.g. a
            classifier's cross-entropy with its weights in ``theta_extra``.
        num_extra_params: parameters after the DEQ's in θ (default 0).
        data: optional array (or pytree) passed to ``cost`` (e.g. labels).
        derivative: the gradient method the Hessian methods differentiate
            (``"implicit"``, default, or ``"unrolled"``); ``"jfb"``/``"phantom"``
            allow ``grad`` only.
        jacobian_regularizer: an optional :class:`JacobianRegularizer`.
        devices: JAX devices to split the batch over (inputs and every ``data``
            leaf with leading axis B; θ replicated): None or 1 (default: one
            device), a count n or a list of devices; B must be divisible by
            their number (see :mod:`pyodejl._sharding`).

    θ layout: ``[DEQ (cell, encoder, skip predictor), extra]``. The Skip penalty
    of ``deq.skip`` is added automatically. The two weights, ``"skip"`` (from
    ``deq.skip.weight``) and ``"jacobian"`` (from ``jacobian_regularizer.weight``),
    are data of the compiled loss: :meth:`set_weights` changes them without
    recompiling, e.g. to follow a schedule (:mod:`pyodejl.regularizers.schedules`)::

        loss.set_weights(weights_at({"skip": ExponentialDecay(1.0, 0.1, 1000)}, k))
 Interface as every
    :class:`~pyodejl.derivatives.objective.Objective`: ``value``, ``grad(method=)``,
    ``hvp``, ``hessian``, ``hessian_operator`` (which plugs into :mod:`pyodejl.spectral`).
    A non-converged forward solve raises :class:`EquilibriumError` with the
    residual history and a suggested solver.
    """

    default_gradient_method = "implicit"
    direct_function_reads_theta = False  # the solve runs inside the traced loss

    def __init__(self, deq: DEQ, inputs, cost: Callable, num_extra_params: int = 0, *, data=None,
                 derivative="implicit", jacobian_regularizer: JacobianRegularizer | None = None, devices=None):
        if not isinstance(deq, DEQ):
            raise TypeError(f"deq must be a pyodejl.DEQ or ContinuousDEQ, got {type(deq).__name__}")
        num_extra_params = check_integer(num_extra_params, "num_extra_params", minimum=0)
        if not callable(cost):
            raise TypeError("cost must be callable as cost(z_star, theta_extra[, data])")
        if jacobian_regularizer is not None and not isinstance(jacobian_regularizer, JacobianRegularizer):
            raise TypeError("jacobian_regularizer must be a JacobianRegularizer")
        self.deq, self.cost = deq, cost
        self.inputs = deq.check_inputs(inputs, "inputs")
        if data is not None:
            for leaf in jax.tree_util.tree_leaves(data):
                if np.issubdtype(np.asarray(leaf).dtype, np.floating) and not np.all(np.isfinite(leaf)):
                    raise ValueError("data contains NaN or inf")
        self.data = data
        self.num_params = deq.num_params + int(num_extra_params)
        self.derivative = equilibrium_gradient(derivative)
        self.jacobian_regularizer = jacobian_regularizer
        d = jax.eval_shape(lambda th, x: deq.prepare(th, x)[2], jax.ShapeDtypeStruct((deq.num_params,), jnp.float64),
                           jax.ShapeDtypeStruct(self.inputs.shape, jnp.float64)).shape
        self._probes = to_device(jacobian_regularizer.probes(d) if jacobian_regularizer else np.zeros((1, *d)))
        skip_w = deq.skip.weight if deq.skip is not None else 0.0
        self._weights = np.array([skip_w, jacobian_regularizer.weight if jacobian_regularizer else 0.0])
        self._weights_device = to_device(self._weights)
        self._current = None
        self.place(devices)

    def place(self, devices):
        """Split the batch over ``devices`` (in place; returns self), as the constructor's ``devices``.

        Args:
            devices: None or 1 (one device), a count n or a list of devices.
        """
        from pyodejl._sharding import batch_placement, resolve_devices

        self.devices = resolve_devices(devices)
        put = batch_placement(self.devices, self.inputs.shape[0])
        self._inputs = put(self.inputs)
        self._data = put(self.data) if self.data is not None else None
        return self

    @property
    def weights(self) -> dict:
        """The current weight of each term present, ``{"skip": w, "jacobian": w}``."""
        return {n: float(w) for n, w, on in zip(WEIGHT_NAMES, self._weights, self._terms_present()) if on}

    def set_weights(self, weights: dict) -> None:
        """Set some terms' weights in place, ``{"skip": w, "jacobian": w}`` (the others keep theirs).

        As :meth:`pyodejl.TrajectoryLoss.set_weights`: weights are data of the compiled
        loss, so a training loop can follow a schedule without recompiling.
        """
        from pyodejl.regularizers.base import updated_weights

        names = [n for n, on in zip(WEIGHT_NAMES, self._terms_present()) if on]
        present = updated_weights(names, [self.weights[n] for n in names], weights)
        for n, w in zip(names, present):
            self._weights[WEIGHT_NAMES.index(n)] = w
        self._weights_device = to_device(self._weights)

    def _terms_present(self):
        return (self.deq.skip is not None, self.jacobian_regularizer is not None)

    # ---- hooks ----------------------------------------------------------------
    def loss_function(self, gradient=None) -> EquilibriumLossFunction:
        """The pure loss ``fn(theta, inputs, data, probes)`` with ``gradient`` (default: this
        objective's ``derivative``) and the current weights as its own (static) weights,
        for training loops that call it directly. Pass ``weights=`` to it instead to change
        weights without recompiling."""
        return EquilibriumLossFunction(self.deq, self.cost, gradient or self.derivative, self.data is not None,
                                       self.jacobian_regularizer is not None, tuple(float(w) for w in self._weights))

    def _pure(self, gradient=None) -> EquilibriumLossFunction:
        # Without weights of its own: the objective passes them as data (last of _args).
        return EquilibriumLossFunction(self.deq, self.cost, gradient or self.derivative, self.data is not None,
                                       self.jacobian_regularizer is not None)

    def _args(self):
        return (self._inputs, self._data, self._probes, self._weights_device)

    def value_function(self):
        return self._pure(), self._args()

    def direct_function(self, theta):
        return self._pure(), self._args()

    # ---- checks ---------------------------------------------------------------------
    def check_theta(self, theta):
        theta = super().check_theta(theta)
        self._current = theta
        return theta

    def solution(self, theta) -> EquilibriumSolution:
        """The forward solve at θ (iterations, residual history, NFE; flagged, never raising)."""
        theta = self.check_theta(theta)
        return self.deq.solve(theta[: self.deq.num_params], self.inputs, throw=False)

    def _explain_failure(self, theta):
        sol = self.deq.solve(theta[: self.deq.num_params], self.inputs, throw=False)
        if not sol.converged and self.deq.throw:
            raise EquilibriumError(_failure(sol))

    def raise_if_failed(self, out):
        out = to_host(out)
        if not np.all(np.isfinite(out)):
            if self._current is not None:
                self._explain_failure(self._current)
            raise SolveError(
                "the derivative is not finite (NaN or inf) although the equilibrium converged: the implicit "
                "linear solve (GMRES on I - df/dz) missed its tolerance, so I - df/dz is (nearly) singular "
                "here (spectral radius of df/dz near 1), an 'unrolled' derivative ran too few steps to converge, "
                "or the cost is not finite"
            )
        return out

    def _method(self, method):
        if not self.derivative.exact:
            raise ValueError(
                f"Hessians need an exact derivative, but this loss's derivative is {self.derivative.name!r}: "
                "JFB and phantom gradients approximate (I - df/dz)^-1, so differentiating them again does not "
                "give the loss's Hessian; build the loss with derivative='implicit' (or 'unrolled')"
            )
        return super()._method(method)

    # ---- public API --------------------------------------------------------------
    def grad(self, theta, method=None) -> np.ndarray:
        """∇L(θ), ``(p,)``, by ``method`` (``"implicit"`` default, ``"unrolled"``, ``"jfb"``,
        ``"phantom"`` or a value such as ``Phantom(k=10)``; ``"discrete"`` means the loss's ``derivative``)."""
        theta = self.check_theta(theta)
        m = equilibrium_gradient(method, self.derivative)
        _, g = value_and_grad(self._pure(m), to_device(theta), self._args())
        return self.raise_if_failed(g)


def _failure(sol):
    from pyodejl.models.deq import failure_message

    return failure_message(sol)
