"""Generalised Gauss–Newton (GGN) and empirical-Fisher operators of an objective's data term.

For a loss that is a function of model outputs, L(θ) = ℓ(z(θ)), the Hessian is

    ∇²L = Jᵀ ∇²ℓ J + Σ_k (∂ℓ/∂z_k) ∇²z_k,        J = ∂z/∂θ,

and the **generalised Gauss–Newton matrix** keeps the first term, G = Jᵀ ∇²ℓ J
(Schraudolph 2002, *Fast curvature matrix-vector products for second-order
gradient descent*; Martens 2020, *New insights and perspectives on the natural
gradient method*). G is positive semi-definite whenever ℓ is convex in z, and
it equals the Hessian when z is affine in θ (the residual term vanishes).

**What z is for a Neural ODE loss** (:class:`pyodejl.ObservationLoss`, whose
data term is ``cost(θ_extra, Y, data)``):

* by default z = (Y, θ_extra): the data states at the observation times ``Y``
  ``(B, T, D)``, computed on θ's frozen step grid (the discrete solve, the same
  discretisation the ``direct-*`` Hessians differentiate), together with the
  extra parameters (e.g. a readout) as an identity output. Then
  ``∇²ℓ = ∇²_{(Y, θ_extra)} cost`` keeps all the curvature of the cost in the
  readout, cross terms included, and G = H_data − Σ_k (∂cost/∂Y_k) ∇²Y_k(θ_vf)
  with H_data the data term's Hessian (θ_extra enters z linearly).
  G is PSD when the cost is jointly convex in (Y, θ_extra) — true for a
  trajectory MSE or any convex cost of Y without extra parameters, **not** for
  a bilinear readout ``Y·w + b`` inside a squared error, whose (Y, w) Hessian is
  indefinite;
* with ``cost = OutputCost(output, loss)``: z = F = ``output(θ_extra, Y, data)``
  (e.g. the readout's predictions) and ∇²ℓ = ∇²_F ``loss(F, data)``. This is the
  usual network-output GGN, PSD whenever ``loss`` is convex in F.

For a :class:`pyodejl.FunctionObjective` built from ``OutputLoss(output, loss)``,
z = ``output(θ, *args)``.

For an :class:`pyodejl.EquilibriumLoss` (``cost(z*, θ_extra[, data])``), z = (z*,
θ_extra): the equilibrium ``(B, d)``, whose Jacobian J = (I − ∂f/∂z)⁻¹ ∂f/∂θ is
the implicit-function-theorem derivative the loss's Hessians use (its JVP and,
transposed, its VJP are Krylov solves), with the readout parameters as an
identity output, so the readout's curvature is all in ∇²ℓ. With ``cost =
OutputCost(output, loss)``, called as ``output(z*, θ_extra, data)``, z = F (e.g. a
readout's logits), as for ODE losses. The Skip and Jacobian
penalties are regularisers and are left out. A loss built with an inexact
derivative (JFB, phantom) is refused.

A :class:`pyodejl.MinibatchObjective` Σᵢ wᵢ Lᵢ has G = Σᵢ wᵢ Gᵢ and F = Σᵢ wᵢ Fᵢ
from its parts (each on its own step grid), evaluated part by part.
Other objectives raise NotImplementedError.

Products G V are a JVP through the solve (``jax.linearize``), the loss Hessian
by forward over reverse on the cost alone, and a VJP (the transpose of the same
linearisation), ``vmap``-ed over a block of tangents in fixed-width blocks, as
the Hessian methods are.

Only the **data term** enters: regulariser terms (``objective.regularizers``)
are left out of G and of the empirical Fisher. (Their curvature is not of the
form Jᵀ ∇²ℓ J; a parameter penalty such as weight decay 2wI can be added by hand.)

**Empirical Fisher.** F = (1/N) Σ_n g_n g_nᵀ with g_n = ∇ℓ_n the gradient of
sample n's data loss, normalised so that the data term is their mean,
L_data = (1/N) Σ_n ℓ_n (Kunstner, Balles & Hennig 2019, *Limitations of the
empirical Fisher approximation*). A *sample* is one trajectory of the batch
(one row of ``y0``, with row n of every leaf of the cost's ``data``) for ODE
losses, and one row of every argument of a ``FunctionObjective``. ℓ_n is the
cost evaluated on that sample alone; for a cost that averages over the batch
(every built-in one) ℓ_n is exactly that, for a cost that sums it is N times
that — the reduction is read off at θ by comparing with the data term, and a
cost that is neither a mean nor a sum of per-sample costs is refused. A batch
is solved as one system with one joint step grid, so each g_n is taken on that
grid (the same discretisation the batch's discrete gradient uses; the mean of
the g_n is the data term's discrete gradient, to round-off). All N gradients
come from one ``vmap``-ed call (memory about that of one batch gradient, plus
the ``(N, p)`` result). With a single trajectory, N = 1 and F = ggᵀ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit, to_device
from pyodejl._sharding import to_host
from pyodejl.derivatives.methods import HessianMethod
from pyodejl.derivatives.operator import HessianOperator
from pyodejl.solving.integrate import grid_states_jax

__all__ = [
    "OutputCost",
    "SoftmaxCrossEntropy",
    "OutputLoss",
    "ggn_operator",
    "ggn",
    "empirical_fisher_operator",
    "empirical_fisher",
    "per_sample_gradients",
]


# ---- costs that name their model output ------------------------------------------------
@dataclass(frozen=True)
class OutputCost:
    """An :class:`pyodejl.ObservationLoss` cost split into a model output and a loss of it.

    ``OutputCost(output, loss)(θ_extra, Y, data) = loss(output(θ_extra, Y, data), data)``.
    The GGN then linearises ``output`` too (z = F), e.g. a readout's predictions.

    Args:
        output: hashable ``output(theta_extra, Y, data) -> F`` (array or pytree),
            ``Y`` ``(B, T, D)``.
        loss: hashable ``loss(F, data) -> scalar``; the GGN is PSD when it is convex in F.
    """

    output: Callable
    loss: Callable

    def __call__(self, extra, Y, data):
        return self.loss(self.output(extra, Y, data), data)


@dataclass(frozen=True)
class SoftmaxCrossEntropy:
    """Mean softmax cross-entropy of logits against integer labels: the ``loss`` of an :class:`OutputCost`.

    ``SoftmaxCrossEntropy()(logits, labels) = −(1/B) Σ_n log softmax(logits_n)[labels_n]``
    with ``logits`` ``(B, C)`` and ``labels`` ``(B,)`` integers in [0, C). Convex in the
    logits, so the GGN of ``OutputCost(readout, SoftmaxCrossEntropy())`` is PSD: per
    sample Jᵀ(diag p − p pᵀ)J / B with p = softmax(logits). :class:`pyodejl.Laplace`
    reads a loss built from it as a categorical likelihood.
    """

    def __call__(self, logits, labels):
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, jnp.asarray(labels)[:, None], axis=-1))


@dataclass(frozen=True)
class MeanSquaredError:
    """Mean squared error of an output against targets of its shape: the ``loss`` of an :class:`OutputCost`.

    ``MeanSquaredError()(F, targets) = (1/N) Σ (F − targets)²`` over the N entries of
    ``F``. With ``OutputCost(statistic, MeanSquaredError())``, ``statistic(θ_extra, Y,
    targets)`` may summarise the whole batch of trajectories (e.g. their means and
    variances, the moment matching of seed 004's Neural SDEs); :class:`pyodejl.Laplace`
    reads it as N independent Gaussian observations of the statistic (a synthetic
    likelihood, Wood 2010, *Statistical inference for noisy nonlinear ecological dynamic
    systems*) with noise σ.
    """

    def __call__(self, output, targets):
        return jnp.mean((output - jnp.asarray(targets)) ** 2)


@dataclass(frozen=True)
class OutputLoss:
    """A :class:`pyodejl.FunctionObjective` loss split into an output and a loss of it.

    ``OutputLoss(output, loss)(θ, *args) = loss(output(θ, *args), *args)``.

    Args:
        output: hashable ``output(theta, *args) -> F`` (array or pytree).
        loss: hashable ``loss(F, *args) -> scalar``; the GGN is PSD when it is convex in F.
    """

    output: Callable
    loss: Callable

    def __call__(self, theta, *args):
        return self.loss(self.output(theta, *args), *args)


# ---- z(θ) and ℓ(z) for each kind of objective ---------------------------------------
@dataclass(frozen=True)
class _DataTerm:
    """What the data term of an observed-ODE loss depends on (and nothing else, so that
    objectives differing only in their regulariser terms share compiled code)."""

    model: Any  # the solved model (with running-cost entries appended, if any)
    D: int
    num_vf: int
    cost: Callable

    @classmethod
    def of(cls, problem):
        return cls(problem.model, problem.D, problem.num_vf, problem.cost)

    def split(self, theta):
        return theta[: self.num_vf], theta[self.num_vf :]

    def states(self, vf, times, obs_index, y0):
        """``(B, T, D)`` data states at the observation nodes of a frozen grid."""
        Y = grid_states_jax(self.model, vf, times, obs_index, y0)  # (T, B, D_solved)
        return jnp.swapaxes(Y, 0, 1)[..., : self.D]


@dataclass(frozen=True)
class _ODEOutputs:
    """z(θ) of an observed-ODE loss: (Y, θ_extra), or an OutputCost's F."""

    term: _DataTerm

    def __call__(self, theta, times, obs_index, y0, user_data):
        vf, extra = self.term.split(theta)
        states = self.term.states(vf, times, obs_index, y0)
        if isinstance(self.term.cost, OutputCost):
            return self.term.cost.output(extra, states, user_data)
        return (states, extra)


@dataclass(frozen=True)
class _ODEOutputLoss:
    cost: Callable

    def __call__(self, z, user_data):
        if isinstance(self.cost, OutputCost):
            return self.cost.loss(z, user_data)
        states, extra = z
        return self.cost(extra, states, user_data)


@dataclass(frozen=True)
class _FnOutputs:
    fn: OutputLoss

    def __call__(self, theta, *args):
        return self.fn.output(theta, *args)


@dataclass(frozen=True)
class _FnOutputLoss:
    fn: OutputLoss

    def __call__(self, z, *args):
        return self.fn.loss(z, *args)


@dataclass(frozen=True)
class _DEQOutputs:
    """z(θ) of an equilibrium loss: (z*, θ_extra), z* by the loss's (exact) derivative;
    or, for a cost ``OutputCost(output, loss)`` (called as ``output(z*, θ_extra, data)``), its F."""

    fn: Any  # the loss's EquilibriumLossFunction

    def __call__(self, theta, inputs, data=None):
        z, extra = self.fn.equilibrium_state(theta, inputs)[:2]
        if isinstance(self.fn.cost, OutputCost):
            return self.fn.cost.output(z, extra, data)
        return (z, extra)


@dataclass(frozen=True)
class _DEQOutputLoss:
    fn: Any

    def __call__(self, z, data):
        if isinstance(self.fn.cost, OutputCost):
            return self.fn.cost.loss(z, data)
        return self.fn.data_term(z[0], z[1], data)


@dataclass(frozen=True)
class _DEQDataTerm:
    """The data term ℓ(z*(θ), θ_extra) of an equilibrium loss, as a loss of θ."""

    fn: Any

    def __call__(self, theta, inputs, data=None):
        return _DEQOutputLoss(self.fn)(_DEQOutputs(self.fn)(theta, inputs, data), data)


def _deq_function(objective):
    """The EquilibriumLoss's pure loss, refused for derivatives that are not exact."""
    if not objective.derivative.exact:
        raise ValueError(
            f"the Gauss–Newton matrix needs an exact derivative of z*, but this loss's derivative is "
            f"{objective.derivative.name!r}; build the loss with derivative='implicit' (or 'unrolled')"
        )
    return objective.loss_function()


def _ode_data_args(objective, theta):
    """``(times, obs_index, y0, user_data)`` of the data term on θ's frozen step grid.

    With sampled terms (:mod:`pyodejl.regularizers.sampled`) the grid also lands on
    the terms' times; ``obs_index`` is then mapped back to the user's observation
    times, which are all the data term reads.
    """
    if getattr(objective.problem, "initial", None) is not None:
        raise NotImplementedError(
            "the Gauss–Newton and Fisher operators take y0 as data; this loss's initial state depends on θ "
            "(an initial-state map), whose Jacobian they do not chain in"
        )
    _, (times, obs_index, y0, data) = objective.direct_function(theta)
    if len(data) > 3:  # (data, weights, solved times, (user_index, per-term entries))
        obs_index = to_device(to_host(obs_index)[to_host(data[3][0])])
    return times, obs_index, y0, data[0]


def _is_equilibrium(objective):
    from pyodejl.derivatives.equilibrium import EquilibriumLoss

    return isinstance(objective, EquilibriumLoss)


def _split(objective, theta):
    """``(outputs, loss, out_args, loss_args)`` with data term = loss(outputs(θ, *out_args), *loss_args)."""
    from pyodejl.derivatives.objective import FunctionObjective

    if getattr(objective, "is_ode", False) and hasattr(objective, "problem"):
        times, obs_index, y0, user_data = _ode_data_args(objective, theta)  # θ's frozen grid
        term = _DataTerm.of(objective.problem)
        return _ODEOutputs(term), _ODEOutputLoss(term.cost), (times, obs_index, y0, user_data), (user_data,)
    if _is_equilibrium(objective):
        fn = _deq_function(objective)
        return _DEQOutputs(fn), _DEQOutputLoss(fn), (objective._inputs, objective._data), (objective._data,)
    if isinstance(objective, FunctionObjective):
        fn, args = objective.value_function()
        if not isinstance(fn, OutputLoss):
            raise TypeError(
                "the Gauss–Newton matrix needs the model output: build the FunctionObjective from "
                "pyodejl.derivatives.gauss_newton.OutputLoss(output, loss), got a plain "
                f"{type(fn).__name__} loss"
            )
        return _FnOutputs(fn), _FnOutputLoss(fn), tuple(args), tuple(args)
    raise NotImplementedError(
        f"Gauss–Newton and Fisher operators are defined for ObservationLoss, FunctionObjective, "
        f"EquilibriumLoss and MinibatchObjective; {type(objective).__name__} does not expose its model outputs"
    )


# ---- GGN products ---------------------------------------------------------------------
@jit(static_argnums=(0, 1))
def ggn_products(outputs, loss, theta, V, out_args, loss_args):
    """G V = Jᵀ ∇²ℓ J V for a block ``V`` ``(p, b)``.

    One linearisation of z at θ serves the JVPs and, transposed, the VJPs;
    ∇²ℓ is applied by forward mode over the reverse-mode gradient of ℓ alone.
    """
    z, push = jax.linearize(lambda th: outputs(th, *out_args), theta)
    pull = jax.linear_transpose(push, theta)
    grad_loss = lambda zz: jax.grad(loss)(zz, *loss_args)

    def one(v):
        u = push(v)
        w = jax.jvp(grad_loss, (z,), (u,))[1]
        return pull(w)[0]

    return jax.vmap(one, in_axes=1, out_axes=1)(V)


class _GGN(HessianMethod):
    """Block products with G at a fixed θ (the split is computed once)."""

    name = "ggn"

    def __init__(self, objective, theta):
        self._split = _split(objective, theta)

    def _apply(self, objective, theta, V):
        outputs, loss, out_args, loss_args = self._split
        return ggn_products(outputs, loss, theta, V, out_args, loss_args)


def ggn_operator(objective, theta, *, chunk_size=None) -> HessianOperator:
    """The generalised Gauss–Newton matrix G(θ) = Jᵀ ∇²ℓ J of the data term, matrix-free.

    See the module docstring for z, ∇²ℓ and J (ODE losses: on θ's frozen step grid).

    Args:
        objective: an :class:`pyodejl.ObservationLoss` (any cost) or a
            :class:`pyodejl.FunctionObjective` built from :class:`OutputLoss`.
        theta: ``(p,)``.
        chunk_size: tangents per compiled batch (default: the objective's
            ``default_chunk()``, sized to a 1 GiB budget for ODE losses).

    Returns:
        a symmetric ``(p, p)`` :class:`~pyodejl.derivatives.operator.HessianOperator`
        with ``method == "ggn"``; ``matvecs`` counts products (a block of k counts k).
        Each product costs about one JVP and one VJP through the solve.
    """
    theta = objective.check_theta(theta)
    chunk = objective._chunk(chunk_size)
    method = _GGN(objective, theta)

    def apply(V):
        out, _ = method.hvp(objective, theta, V, chunk)
        return objective.raise_if_failed(out)

    return HessianOperator(apply, objective.num_params, "ggn")


def ggn(objective, theta, *, chunk_size=None) -> np.ndarray:
    """The dense GGN ``(p, p)`` (products with the identity in blocks); for small p.

    Symmetric to round-off; see :func:`ggn_operator`.
    """
    theta = objective.check_theta(theta)
    chunk = objective._chunk(chunk_size)
    G, _ = _GGN(objective, theta).hessian(objective, theta, chunk)
    return objective.raise_if_failed(G)


# ---- empirical Fisher -------------------------------------------------------------------
@dataclass(frozen=True)
class _ODESampleLoss:
    """Sample n's data cost: its trajectory solved alone on the batch's step grid."""

    term: _DataTerm

    def __call__(self, theta, times, obs_index, y0_n, data_n):
        vf, extra = self.term.split(theta)
        states = self.term.states(vf, times, obs_index, y0_n[None])
        return self.term.cost(extra, states, jax.tree_util.tree_map(lambda a: a[None], data_n))


@dataclass(frozen=True)
class _SDESampleLoss:
    """Sample n's data cost of a Neural SDE loss: its trajectory alone on the batch's grid and its own noise."""

    term: _DataTerm
    FIELDS = ("dW", "chi1", "chi2", "chi3")  # the per-trajectory noise, (steps, B, D) on the batch's grid

    def __call__(self, theta, times, sqrt_h, obs_index, y0_n, data_n, *noise_n):
        from pyodejl.solving.sde import SDEGrid, StepNoise

        noise = StepNoise(*(a[:, None] for a in noise_n), sqrt_h=sqrt_h)
        return _ODESampleLoss(self.term)(theta, SDEGrid(times, noise), obs_index, y0_n, data_n)


@dataclass(frozen=True)
class _DEQSampleLoss:
    """Sample n's data cost of an equilibrium loss: its input's equilibrium solved alone."""

    fn: Any

    def __call__(self, theta, inputs_n, data_n):
        batch = jax.tree_util.tree_map(lambda a: a[None], (inputs_n, data_n))
        return _DEQDataTerm(self.fn)(theta, *batch)


@dataclass(frozen=True)
class _FnSampleLoss:
    fn: Callable

    def __call__(self, theta, *args_n):
        return self.fn(theta, *(a[None] for a in args_n))


@jit(static_argnums=0)
def _sample_values_and_grads(sample_loss, theta, shared, per_sample):
    """Per-sample (value, gradient): ``vmap`` over the leading axis of ``per_sample``."""
    vg = lambda *a: jax.value_and_grad(sample_loss)(theta, *shared, *a)
    return jax.vmap(vg)(*per_sample)


def _leading(tree, n, what):
    for leaf in jax.tree_util.tree_leaves(tree):
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] != n:
            raise ValueError(
                f"the empirical Fisher needs per-sample {what}: every array must have a leading "
                f"axis of length {n} (one entry per sample), got shape {np.shape(leaf)}"
            )


def _per_sample(objective, theta):
    """``(sample_loss, shared, per_sample, N, data_value)``: ℓ_n(θ) = sample_loss(θ, *shared, *per_sample[n])."""
    from pyodejl.derivatives.objective import FunctionObjective

    if getattr(objective, "is_ode", False) and hasattr(objective, "problem"):
        times, obs_index, y0, user_data = _ode_data_args(objective, theta)  # θ's frozen grid
        N = int(y0.shape[0])
        value = objective.terms(theta)["data"]
        term = _DataTerm.of(objective.problem)
        if N == 1:  # the one sample is the whole data term; its data need no batch axis
            return _WholeODEData(term), (times, obs_index, user_data), (y0,), 1, value
        _leading(user_data, N, f"cost data (the batch has B = {N} trajectories)")
        if hasattr(times, "noise"):  # an SDE grid: trajectory n steps on its own Brownian noise
            noise = times.noise
            per_trajectory = tuple(jnp.moveaxis(getattr(noise, k), 1, 0) for k in _SDESampleLoss.FIELDS)
            return (_SDESampleLoss(term), (times.times, noise.sqrt_h, obs_index), (y0, user_data) + per_trajectory,
                    N, value)
        return _ODESampleLoss(term), (times, obs_index), (y0, user_data), N, value
    if _is_equilibrium(objective):
        fn = _deq_function(objective)
        inputs, data = objective._inputs, objective._data
        N = int(inputs.shape[0])
        value = float(_evaluate(_DEQDataTerm(fn), to_device(theta), (inputs, data)))
        if data is None:
            return _FnSampleLoss(_DEQDataTerm(fn)), (), (inputs,), N, value
        _leading(data, N, f"cost data (the batch has B = {N} inputs)")
        return _DEQSampleLoss(fn), (), (inputs, data), N, value
    if isinstance(objective, FunctionObjective):
        fn, args = objective.value_function()
        if not args:
            raise ValueError(
                "the empirical Fisher needs data: this FunctionObjective has no args to split into samples"
            )
        N = int(np.shape(args[0])[0]) if np.ndim(args[0]) else 0
        _leading(args, N, "arguments")
        value = float(_evaluate(fn, to_device(theta), tuple(args)))
        return _FnSampleLoss(fn), (), tuple(args), N, value
    raise NotImplementedError(
        f"the empirical Fisher is defined for ObservationLoss, FunctionObjective, EquilibriumLoss and "
        f"MinibatchObjective; "
        f"{type(objective).__name__} does not split into per-sample losses"
    )


@jit(static_argnums=0)
def _evaluate(fn, theta, args):
    return fn(theta, *args)


@dataclass(frozen=True)
class _WholeODEData:
    """The data term of a single-trajectory loss, its data passed whole."""

    term: _DataTerm

    def __call__(self, theta, times, obs_index, user_data, y0_n):
        vf, extra = self.term.split(theta)
        states = self.term.states(vf, times, obs_index, y0_n[None])
        return self.term.cost(extra, states, user_data)


def per_sample_gradients(objective, theta, *, return_values=False):
    """Gradients g_n = ∇ℓ_n of the per-sample data losses, ``(N, p)``.

    ℓ_n is normalised so that the data term is their mean (see the module
    docstring: for a mean-reduced cost ℓ_n is the cost of sample n alone, for a
    sum-reduced one N times it). ODE losses: each trajectory is solved alone on
    the batch's joint step grid at θ; all N gradients are one ``vmap``-ed call.

    Args:
        objective: an :class:`pyodejl.ObservationLoss` or :class:`pyodejl.FunctionObjective`.
        theta: ``(p,)``.
        return_values: also return the ℓ_n ``(N,)``.

    Raises:
        ValueError: the data do not split into N samples, or the data term is
            neither the mean nor the sum of the per-sample costs.
    """
    theta = objective.check_theta(theta)
    sample_loss, shared, per_sample, N, value = _per_sample(objective, theta)
    vals, grads = _sample_values_and_grads(sample_loss, to_device(theta), shared, per_sample)
    vals, grads = to_host(vals), objective.raise_if_failed(grads)
    scale = _reduction_scale(vals, value, N)
    return (grads * scale, vals * scale) if return_values else grads * scale


def _reduction_scale(vals, value, N):
    """Factor s with ℓ_n = s·c_n and L_data = mean ℓ_n: 1 for a mean cost, N for a sum."""
    if N == 1:
        return 1.0
    size = float(np.mean(np.abs(vals))) + 1e-300
    # a classification, not an accuracy check: a mean and a sum differ by the factor N,
    # so a tolerance far above round-off (N·eps) still separates them cleanly
    tol = 1e-10 * max(N, 100)
    if abs(float(np.mean(vals)) - value) <= tol * size:
        return 1.0
    if abs(float(np.sum(vals)) - value) <= tol * N * size:
        return float(N)
    raise ValueError(
        f"the data term ({value!r}) is neither the mean ({np.mean(vals)!r}) nor the sum "
        f"({np.sum(vals)!r}) of the {N} per-sample costs, so it does not split into per-sample "
        "losses; the empirical Fisher needs a cost that averages or sums over samples"
    )


def empirical_fisher_operator(objective, theta) -> HessianOperator:
    """The empirical Fisher F = (1/N) Σ_n g_n g_nᵀ of the data term, as an operator.

    The per-sample gradients ``(N, p)`` are computed once (memory O(N p)); each
    product is then two dense matrix products. See :func:`per_sample_gradients`.

    Returns:
        a symmetric PSD ``(p, p)`` :class:`~pyodejl.derivatives.operator.HessianOperator`
        with ``method == "empirical-fisher"`` (rank ≤ N).
    """
    G = per_sample_gradients(objective, theta)
    N = G.shape[0]

    def apply(V):
        return G.T @ (G @ V) / N

    return HessianOperator(apply, objective.num_params, "empirical-fisher")


def empirical_fisher(objective, theta) -> np.ndarray:
    """The dense empirical Fisher ``(p, p)``; see :func:`empirical_fisher_operator`."""
    G = per_sample_gradients(objective, theta)
    return G.T @ G / G.shape[0]
