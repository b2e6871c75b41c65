"""Laplace approximations of the posterior of Neural ODE regressors and ODE / DEQ classifiers.

MacKay (1992), *A practical Bayesian framework for backpropagation networks* (and
*The evidence framework applied to classification networks*, the probit predictive);
conventions of laplace-torch (Daxberger et al. 2021, *Laplace Redux — Effortless
Bayesian deep learning*); the GLM predictive of Immer, Korzepa & Bauer (2021),
*Improving predictions of Bayesian neural nets via local linearization*; last-layer
Laplace of Kristiadi, Hein & Hennig (2020), *Being Bayesian, even just a bit, fixes
overconfidence in ReLU networks*.

**Categorical likelihood (classifiers).** An :class:`pyodejl.ObservationLoss` or
:class:`pyodejl.EquilibriumLoss` whose cost is
``OutputCost(readout, SoftmaxCrossEntropy())`` (logits ``(B, C)`` from the readout,
integer labels ``(B,)`` as the cost's data) is read as independent categorical
observations: −log p(D | θ) = −Σ_n log softmax(logits_n)[y_n] = B L (the library's
loss is the mean). There is no σ (``noise_std`` is None). The GGN of the summed NLL
is Σ_n J_nᵀ(diag p_n − p_n p_nᵀ)J_n = B · ``loss.ggn`` (J_n = ∂logits_n/∂θ, for a
DEQ through the implicit function theorem), PSD; the Hessian is B · ``loss.hessian``;
the empirical Fisher Σ_n ∇ℓ_n ∇ℓ_nᵀ of the per-input NLLs. The predictive gives class
probabilities (probit or Monte Carlo), see :meth:`Laplace.predictive`.

**Subsets and per-block priors.** ``subset="last-layer"`` (or an index array) puts
the posterior on those parameters alone, the others fixed at θ*: its precision is the
(S, S) block of the curvature plus the prior — for the readout computed from the
readout alone with the features fixed (exact, since the features do not depend on
its parameters). ``blocks=`` sizes give one prior precision per block, each tuned by
:meth:`Laplace.optimize_prior_precision` (laplace-torch's layer-wise prior).

**Gaussian likelihood reading.** An ODE objective whose data term is the mean squared
error (:class:`pyodejl.TrajectoryLoss` with ``loss="mse"``, or an
:class:`pyodejl.ObservationLoss` whose cost is
:func:`pyodejl.derivatives.ode_loss.mse_cost`) is read as independent Gaussian
observations with noise standard deviation σ of the N observed scalars
(N = the number of target entries, ``ts[0]`` included):

    −log p(D | θ) = Σ r² / (2σ²) + (N/2) log(2πσ²),

r the residuals of ``loss.predict(θ)`` (its data dimensions) against the targets.
Since the library's loss is L = Σ r² / N, −log p(D | θ) = N L / (2σ²) + const.
The prior is isotropic, θ ~ N(0, δ⁻¹ I) (δ the prior precision).

**A statistic of the batch.** An :class:`pyodejl.ObservationLoss` whose cost is
``OutputCost(statistic, MeanSquaredError())`` with targets of the statistic's shape as
data reads the statistic F(θ) = statistic(θ_extra, Y, targets) (any shape, N entries)
as N Gaussian observations with noise σ, r = F(θ) − targets: a synthetic likelihood
(Wood 2010) of a summary that may couple the batch, such as the means and variances
over a Neural SDE's paths that seed 004 matches. Its curvatures are ``"ggn"`` and
``"hessian"`` (no per-trajectory terms, so no empirical Fisher); its predictive is
that of F at the loss's own times.

**Curvature of the summed negative log-likelihood** (laplace-torch's convention),
from the library's curvature of L:

* ``"ggn"``: Jᵀ J / σ² = (N/2) · ``loss.ggn`` / σ² (the library's GGN of the
  mean is (2/N) Jᵀ J), J = ∂r/∂θ on θ*'s step grid;
* ``"hessian"``: (N/2) · ``loss.hessian`` / σ²;
* ``"fisher"``: the empirical Fisher Σ_n ∇ℓ_n ∇ℓ_nᵀ of the per-trajectory
  negative log-likelihoods ℓ_n = M L_n / (2σ²) + const (M = N / B scalars per
  trajectory, L_n trajectory n's mean squared error), i.e.
  B (M / (2σ²))² · ``loss.empirical_fisher``; it scales as σ⁻⁴ and has rank at
  most B (one trajectory: rank one), so it needs the prior to be invertible.

The unscaled curvature is computed once and cached, so changing σ or δ (evidence,
optimisation) costs no new derivatives.

**Posterior precision** P = C + δ I with C the curvature in the chosen structure:

* ``"full"``: C dense ``(p, p)`` (refused above :data:`MAX_FULL_PARAMS`);
* ``"diagonal"``: the exact diagonal of C (from ``p`` operator columns for
  p ≤ :data:`MAX_EXACT_DIAGONAL`; above that an XDiag estimate,
  :func:`pyodejl.spectral.diagonal`, with :data:`DIAGONAL_MATVECS` products, whose
  negative entries are set to 0 for the GGN, which is positive semi-definite);
* ``"low-rank"``: C ≈ U diag(λ) Uᵀ from the top ``rank`` eigenpairs (Lanczos,
  :func:`pyodejl.spectral.eigenvalues`; a dense eigendecomposition when
  ``rank = p``), the prior alone on the complement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import to_device
from pyodejl._validation import check_integer, check_number

__all__ = ["Laplace", "Predictive", "MAX_FULL_PARAMS", "MAX_EXACT_DIAGONAL", "DIAGONAL_MATVECS"]

#: Largest p for ``structure="full"`` (a (p, p) float64 matrix takes 8 p² bytes; several are held).
MAX_FULL_PARAMS = 10_000
#: Largest p whose curvature diagonal is computed exactly from p operator columns.
MAX_EXACT_DIAGONAL = 4096
#: Operator products of the XDiag diagonal estimate used above :data:`MAX_EXACT_DIAGONAL`.
DIAGONAL_MATVECS = 400

CURVATURES = ("ggn", "hessian", "fisher")
STRUCTURES = ("full", "diagonal", "low-rank")
SUBSETS = ("all", "last-layer")
_BLOCK = 256
_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class Predictive:
    """A predictive distribution's moments at the loss's observation times (or the requested ``ts``).

    Attributes:
        mean: model states, ``(T, D)`` for a single initial state or ``(B, T, D)``;
            for a classifier's ``method="glm"``, the logits ``(B, C)``.
        var: the epistemic variance of each entry, same shape as ``mean``.
    """

    mean: np.ndarray
    var: np.ndarray


def _positive(value, name):
    try:
        return check_number(value, name)
    except TypeError:
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}") from None
    except ValueError:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None


# ---- likelihood readings -----------------------------------------------------------------
@dataclass(frozen=True)
class _Reading:
    """What the loss's data term says about the likelihood.

    ``factor`` turns the library's curvature of the data term (a mean) into that of the
    summed NLL at σ = 1; ``fisher_factor`` does the same for per-sample gradients.
    """

    kind: str  # "gaussian" or "categorical"
    num_observations: int  # N scalars (Gaussian) or B samples (categorical)
    factor: float
    fisher_factor: float
    targets: Any = None  # (B, T, d), Gaussian; the statistic's shape for a statistic
    statistic: bool = False  # Gaussian on OutputCost(statistic, MeanSquaredError()): no per-sample terms
    labels: Any = None  # (B,), categorical
    readout_start: int | None = None  # first readout parameter (categorical)


def _categorical_cost(cost):
    from pyodejl.derivatives.gauss_newton import OutputCost, SoftmaxCrossEntropy

    return isinstance(cost, OutputCost) and isinstance(cost.loss, SoftmaxCrossEntropy)


def _statistic_cost(cost):
    from pyodejl.derivatives.gauss_newton import MeanSquaredError, OutputCost

    return isinstance(cost, OutputCost) and isinstance(cost.loss, MeanSquaredError)


_SUPPORTED = (
    "a pyodejl.TrajectoryLoss with loss='mse' or a pyodejl.ObservationLoss whose cost is "
    "pyodejl.derivatives.ode_loss.mse_cost or OutputCost(statistic, MeanSquaredError()) (Gaussian "
    "observations), or a pyodejl.ObservationLoss or "
    "pyodejl.EquilibriumLoss whose cost is OutputCost(readout, SoftmaxCrossEntropy()) (categorical)"
)


def _labels(labels, B):
    labels = np.asarray(labels)
    if labels.shape != (B,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"a categorical likelihood needs integer labels of shape (B,) = ({B},) as the cost's data; "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    return labels


def _likelihood_reading(loss) -> _Reading:
    """The :class:`_Reading` of a supported loss; else a ValueError naming what is supported."""
    from pyodejl.derivatives.equilibrium import EquilibriumLoss
    from pyodejl.derivatives.ode_loss import ObservationLoss, mse_cost

    if isinstance(loss, EquilibriumLoss):
        if not _categorical_cost(loss.cost):
            raise ValueError(f"Laplace needs {_SUPPORTED}; this EquilibriumLoss's cost has no likelihood reading")
        if not loss.derivative.exact:
            raise ValueError(
                f"Laplace needs the exact curvature of the equilibrium: this loss's derivative is "
                f"{loss.derivative.name!r}; build it with derivative='implicit' (or 'unrolled')"
            )
        if loss.deq.skip is not None or loss.jacobian_regularizer is not None:
            raise ValueError(
                "Laplace reads the data term as the likelihood and prior_precision as the prior; the DEQ's Skip "
                "and Jacobian penalties have no likelihood reading: build the loss without them"
            )
        B = int(loss.inputs.shape[0])
        labels = _labels(loss.data, B)
        return _Reading("categorical", B, float(B), 1.0, labels=labels, readout_start=loss.deq.num_params)
    if not isinstance(loss, ObservationLoss):
        raise ValueError(
            f"Laplace needs a loss whose data term reads as a likelihood, i.e. {_SUPPORTED}; "
            f"got a {type(loss).__name__}, a loss with no likelihood reading"
        )
    if loss.problem.initial is not None:
        raise ValueError("Laplace takes y0 as data; this loss's initial state depends on θ (an initial-state map)")
    if loss.regularizers:
        names = [t.name for t in loss.regularizers]
        raise ValueError(
            f"Laplace reads the data term as the likelihood and prior_precision as the prior; the loss's "
            f"regularizer terms {names} have no likelihood reading: build the loss without regularizers"
        )
    if _categorical_cost(loss.problem.cost):
        B = loss.batch_size
        labels = _labels(loss.data[0], B)
        return _Reading("categorical", B, float(B), 1.0, labels=labels, readout_start=loss.problem.num_vf)
    if _statistic_cost(loss.problem.cost):
        targets = np.asarray(loss.data[0], dtype=np.float64)
        N = int(targets.size)
        return _Reading("gaussian", N, N / 2.0, None, targets=targets, statistic=True)
    if loss.problem.cost is not mse_cost:
        cost = getattr(loss, "loss", getattr(loss.problem.cost, "__name__", type(loss.problem.cost).__name__))
        raise ValueError(f"Laplace needs {_SUPPORTED}; this loss's cost ({cost!r}) has no likelihood reading")
    targets = np.asarray(loss.data[0], dtype=np.float64)
    if targets.ndim != 3 or targets.shape[:2] != (loss.batch_size, len(loss.ts)):
        raise ValueError(
            f"the MSE cost's data must be targets of shape (B, T, d) = ({loss.batch_size}, {len(loss.ts)}, d); "
            f"got {targets.shape}"
        )
    N = int(targets.size)
    return _Reading("gaussian", N, N / 2.0, N / (2.0 * loss.batch_size), targets=targets)


# ---- the readout alone (last-layer Laplace) -------------------------------------------------
@dataclass(frozen=True)
class _ReadoutOutput:
    """The readout's logits as a function of its own parameters, the features held as data."""

    output: Any
    deq: bool  # an EquilibriumLoss's OutputCost takes (z*, θ_extra, data), an ODE loss's (θ_extra, Y, data)

    def __call__(self, extra, features, labels):
        return self.output(features, extra, labels) if self.deq else self.output(extra, features, labels)


@dataclass(frozen=True)
class _ReadoutLoss:
    loss: Any

    def __call__(self, logits, features, labels):
        return self.loss(logits, labels)


def _features(loss, theta):
    """The readout's input at θ: the data states ``(B, T, D)`` on θ's step grid, or z* ``(B, d)``."""
    from pyodejl.derivatives.equilibrium import EquilibriumLoss
    from pyodejl.derivatives.gauss_newton import _DataTerm, _deq_function, _ode_data_args

    th = to_device(theta)
    if isinstance(loss, EquilibriumLoss):
        return np.asarray(_deq_function(loss).equilibrium_state(th, loss._inputs)[0])
    times, obs_index, y0, _ = _ode_data_args(loss, theta)
    return np.asarray(_DataTerm.of(loss.problem).states(th[: loss.problem.num_vf], times, obs_index, y0))


def _readout_objective(loss, theta, labels, start):
    """A FunctionObjective of the readout's parameters θ[start:] alone, the features fixed at θ.

    Its GGN, Hessian and per-sample gradients are exactly the (readout, readout) blocks of
    the whole loss's, since the features do not depend on the readout's parameters.
    """
    from pyodejl.derivatives.equilibrium import EquilibriumLoss
    from pyodejl.derivatives.gauss_newton import OutputLoss
    from pyodejl.derivatives.objective import FunctionObjective

    deq = isinstance(loss, EquilibriumLoss)
    cost = loss.cost if deq else loss.problem.cost
    fn = OutputLoss(_ReadoutOutput(cost.output, deq), _ReadoutLoss(cost.loss))
    return FunctionObjective(fn, loss.num_params - start, args=(_features(loss, theta), np.asarray(labels)))


def _output_jvps_impl(outputs, theta, V, out_args):
    _, push = jax.linearize(lambda th: outputs(th, *out_args), theta)
    return jax.vmap(push)(V)


_output_jvps = jax.jit(_output_jvps_impl, static_argnums=0)


def _weighted_row_norms_impl(outputs, axes, theta, weights, out_args):
    """Σ_j w_j (∂F_{n,c}/∂θ_j)² ``(B, C)`` for logits F = outputs(θ, *out_args) ``(B, C)``.

    One input at a time (vmapped over the batch axes ``axes`` of ``out_args``): C
    reverse-mode rows of its Jacobian, never the (B·C, p) Jacobian.
    """

    def one(*args):
        args = tuple(a if ax is None else a[None] for a, ax in zip(args, axes))
        out, pull = jax.vjp(lambda th: outputs(th, *args)[0], theta)
        rows = jax.vmap(pull)(jnp.eye(out.shape[-1], dtype=out.dtype))[0]  # (C, p)
        return (rows**2) @ weights

    return jax.vmap(one, in_axes=axes)(*out_args)


_weighted_row_norms = jax.jit(_weighted_row_norms_impl, static_argnums=(0, 1))
#: Bytes of Jacobian rows held at once by the per-input route (inputs per chunk follow from C·p).
_ROW_BYTES = 2**27


def _outputs_impl(outputs, theta, out_args):
    return outputs(theta, *out_args)


_outputs = jax.jit(_outputs_impl, static_argnums=0)


def _states(model, vf, times, obs_index, y0):
    from pyodejl.solving.integrate import grid_states_jax

    return grid_states_jax(model, vf, times, obs_index, y0)


def _jvp_block_impl(model, vf, times, obs_index, y0, V):
    def one(v):
        return jax.jvp(lambda th: _states(model, th, times, obs_index, y0), (vf,), (v,))[1]

    return jax.vmap(one)(V)


_jvp_block = jax.jit(_jvp_block_impl, static_argnums=0)


def _softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Laplace:
    """Laplace approximation N(θ*, P⁻¹) of the posterior at a MAP estimate θ*.

    Args:
        loss: an objective whose data term reads as a likelihood (see the module
            docstring), without regularizer terms:

            * Gaussian: :class:`pyodejl.TrajectoryLoss` with ``loss="mse"`` or
              :class:`pyodejl.ObservationLoss` with ``cost=mse_cost``, or with
              ``cost=OutputCost(statistic, MeanSquaredError())`` (a statistic of the batch);
            * categorical: :class:`pyodejl.ObservationLoss` or :class:`pyodejl.EquilibriumLoss`
              (exact derivative, no Skip or Jacobian penalty) whose cost is
              ``OutputCost(readout, SoftmaxCrossEntropy())`` with integer labels ``(B,)`` as data.

            Other objectives raise ValueError.
        theta_map: ``(p,)`` the MAP estimate θ*: the minimiser of the summed NLL plus
            ½ Σ δ_i θ_i² (Gaussian: N L/(2σ²) + δ‖θ‖²/2, i.e. the loss plus (δσ²/N)‖θ‖²;
            categorical: B L + δ‖θ‖²/2, i.e. the loss plus (δ/(2B))‖θ‖²). The approximation
            is taken there whatever θ is given; the evidence is meaningful at a MAP.
        noise_std: σ > 0 of the Gaussian observation noise (default None: 1.0). A
            categorical likelihood has no σ: it must be None.
        prior_precision: δ > 0 of the prior N(0, δ⁻¹ I) (default 1.0); a scalar, or with
            ``blocks`` one value per block ``(len(blocks),)`` (a scalar is then the
            starting value of every block): laplace-torch's "layerwise" prior.
        curvature: ``"ggn"`` (default), ``"hessian"`` or ``"fisher"`` (empirical Fisher).
        structure: ``"full"`` (default), ``"diagonal"`` or ``"low-rank"``.
        rank: the number of eigenpairs for ``"low-rank"`` (1 ≤ rank ≤ p); must be
            None for the other structures.
        seed: seed of the randomised algorithms (Lanczos start, XDiag probes); default 0.
        subset: the parameters the posterior is over, the others fixed at θ*
            (laplace-torch's ``subset_of_weights``): ``None``/``"all"`` (default),
            ``"last-layer"`` (a categorical loss's readout parameters θ_extra; Kristiadi,
            Hein & Hennig 2020, *Being Bayesian, even just a bit, fixes overconfidence in
            ReLU networks*) or an array of distinct parameter indices. p below is then the
            subset's size: ``num_params``, the prior, ``blocks``, ``posterior_*`` and the
            evidence are over the subset; :meth:`sample` returns whole θ vectors.
        blocks: sizes of consecutive parameter blocks summing to p (of the subset), one
            prior precision each; default None (one block).

    Attributes:
        likelihood: ``"gaussian"`` or ``"categorical"``.
        num_params: p, the dimension of the posterior.
        subset_index: ``(p,)`` indices into θ of the posterior's parameters.

    The curvature is computed on first use and cached unscaled.
    """

    def __init__(self, loss, theta_map, noise_std=None, prior_precision=1.0, curvature="ggn",
                 structure="full", rank=None, seed=0, *, subset=None, blocks=None):
        self._reading = reading = _likelihood_reading(loss)
        self.likelihood = reading.kind
        self.num_observations = reading.num_observations
        self._targets = reading.targets
        self.loss = loss
        self.theta_map = loss.check_theta(theta_map)
        if reading.kind == "categorical":
            if noise_std is not None:
                raise ValueError(
                    f"a categorical likelihood (softmax cross-entropy) has no observation noise: noise_std must be "
                    f"None, got {noise_std!r}"
                )
            self.noise_std = None
        else:
            self.noise_std = 1.0 if noise_std is None else _positive(noise_std, "noise_std")
        self._set_subset(subset)
        self.num_params = p = len(self.subset_index)
        self.blocks = self._check_blocks(blocks, p)
        self.prior_precision = self._check_prior(prior_precision)
        if curvature not in CURVATURES:
            raise ValueError(f"unknown curvature {curvature!r}; expected one of {list(CURVATURES)}")
        if structure not in STRUCTURES:
            raise ValueError(f"unknown structure {structure!r}; expected one of {list(STRUCTURES)}")
        if structure == "low-rank":
            if rank is None or isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
                raise ValueError(f"structure='low-rank' needs an integer rank with 1 <= rank <= p = {p}; got {rank!r}")
            if not 1 <= int(rank) <= p:
                raise ValueError(f"rank must satisfy 1 <= rank <= p = {p}; got {rank}")
            rank = int(rank)
        elif rank is not None:
            raise ValueError(f"rank applies to structure='low-rank' only; got rank={rank!r} with {structure!r}")
        if structure == "full" and p > MAX_FULL_PARAMS:
            gib = 8.0 * p * p / 2**30
            raise ValueError(
                f"structure='full' stores (p, p) float64 matrices: p = {p} needs {gib:.2f} GiB per matrix "
                f"(several are held), above the limit p <= {MAX_FULL_PARAMS}; use 'diagonal' or 'low-rank'"
            )
        self.curvature = curvature
        self.structure = structure
        self.rank = rank
        self.seed = seed
        if reading.statistic:
            if curvature == "fisher":
                raise ValueError(
                    "curvature='fisher' (the empirical Fisher) sums per-observation gradients, but a statistic of "
                    "the batch (OutputCost(statistic, MeanSquaredError())) has none per trajectory: use 'ggn' or "
                    "'hessian'"
                )
            stat = self._statistic(self.theta_map)
            if stat.shape != self._targets.shape:
                raise ValueError(
                    f"OutputCost(statistic, MeanSquaredError()) needs targets of the statistic's shape "
                    f"{stat.shape} as the cost's data; got {self._targets.shape}"
                )
            self._sum_sq = float(np.sum((stat - self._targets) ** 2))
        elif reading.kind == "gaussian":
            pred = np.asarray(loss.predict(self.theta_map), dtype=np.float64)
            pred = pred[None] if loss.single else pred
            d = self._targets.shape[-1]
            self._sum_sq = float(np.sum((pred[..., :d] - self._targets) ** 2))
        else:
            logits = self._logits(loss, self.theta_map)
            C = logits.shape[-1]
            if logits.shape != (self.num_observations, C) or np.any((reading.labels < 0) | (reading.labels >= C)):
                raise ValueError(
                    f"a categorical likelihood needs logits (B, C) and labels in [0, C): got logits of shape "
                    f"{logits.shape} and labels in [{reading.labels.min()}, {reading.labels.max()}]"
                )
            self.num_classes = C
            logp = logits - logits.max(axis=1, keepdims=True)
            logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
            self._log_lik = float(np.sum(logp[np.arange(len(logits)), reading.labels]))
        self._unscaled = None
        self._eigenvalues = None

    # ---- arguments -------------------------------------------------------------------------
    def _set_subset(self, subset):
        p_all = self.loss.num_params
        self._readout = None
        if subset is None or (isinstance(subset, str) and subset == "all"):
            self.subset, self._index = "all", None
            self.subset_index = np.arange(p_all)
            return
        if isinstance(subset, str):
            if subset != "last-layer":
                raise ValueError(f"unknown subset {subset!r}; expected one of {list(SUBSETS)} or an index array")
            start = self._reading.readout_start
            if start is None:
                raise ValueError(
                    "subset='last-layer' needs a categorical loss whose readout parameters are θ_extra "
                    "(OutputCost(readout, SoftmaxCrossEntropy())); use an index array for a Gaussian loss"
                )
            if start >= p_all:
                raise ValueError("subset='last-layer': this loss has no readout parameters (num_extra_params = 0)")
            self.subset, self._index = "last-layer", None
            self.subset_index = np.arange(start, p_all)
            self._readout = _readout_objective(self.loss, self.theta_map, self._reading.labels, start)
            return
        idx = np.asarray(subset)
        if idx.ndim != 1 or idx.size < 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"subset must be None, 'all', 'last-layer' or a 1-D integer index array; got {subset!r}")
        if np.any((idx < 0) | (idx >= p_all)) or len(np.unique(idx)) != idx.size:
            raise ValueError(f"subset indices must be distinct and in [0, p) = [0, {p_all}); got {subset!r}")
        self.subset, self._index = "indices", idx.astype(np.int64)
        self.subset_index = self._index

    @staticmethod
    def _check_blocks(blocks, p):
        if blocks is None:
            return None
        sizes = np.asarray(blocks)
        if sizes.ndim != 1 or sizes.size < 1:
            raise ValueError(f"blocks must be a 1-D sequence of block sizes summing to p = {p}; got {blocks!r}")
        sizes = tuple(check_integer(b, "each block size") for b in sizes.tolist())
        if sum(sizes) != p:
            raise ValueError(
                f"blocks must sum to p = {p} (the posterior's parameters); got sizes summing to {sum(sizes)}"
            )
        return sizes

    def _check_prior(self, value):
        """A float (one block) or a ``(len(blocks),)`` array of positive precisions (a scalar fills every block)."""
        if self.blocks is None:
            if np.ndim(value) != 0:
                raise ValueError(
                    f"prior_precision must be a scalar without blocks; got shape {np.shape(value)}: pass blocks= "
                    "(block sizes summing to p) for one precision per block"
                )
            return _positive(value, "prior_precision")
        nb = len(self.blocks)
        if np.ndim(value) == 0:
            return np.full(nb, _positive(value, "prior_precision"))
        arr = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else None
        if arr is None or arr.shape != (nb,):
            raise ValueError(f"prior_precision must hold one value per block, shape ({nb},); got {value!r}")
        for b, v in enumerate(arr):
            _positive(v, f"prior_precision[{b}]")
        return arr.copy()

    def _per_param(self, delta):
        """δ per parameter ``(p,)``, or the scalar itself."""
        return delta if np.ndim(delta) == 0 else np.repeat(delta, self.blocks)

    def _params(self, prior_precision, noise_std):
        delta = self.prior_precision if prior_precision is None else self._check_prior(prior_precision)
        if self.likelihood == "categorical":
            if noise_std is not None:
                raise ValueError(f"a categorical likelihood has no noise_std; got {noise_std!r} (pass None)")
            return delta, None
        sigma = self.noise_std if noise_std is None else _positive(noise_std, "noise_std")
        return delta, sigma

    # ---- curvature -----------------------------------------------------------------------
    def _curvature_objective(self):
        """``(objective, θ)`` whose curvature is taken: the readout alone for last-layer, else the loss."""
        if self._readout is not None:
            return self._readout, self.theta_map[self.subset_index]
        return self.loss, self.theta_map

    def _unscaled_operator(self):
        """The curvature of the summed NLL times σ^q as an operator (q = 2, or 4 for the Fisher)."""
        from scipy.sparse.linalg import LinearOperator

        obj, theta = self._curvature_objective()
        p = self.num_params
        if self.curvature == "fisher":
            G = self._fisher_gradients()
            return LinearOperator((p, p), matvec=lambda v: G.T @ (G @ v), matmat=lambda V: G.T @ (G @ V),
                                  dtype=np.float64)
        base = obj.ggn_operator(theta) if self.curvature == "ggn" else obj.hessian_operator(theta)
        factor, idx = self._reading.factor, self._index

        def matmat(V):
            if idx is None:
                return factor * base.matmat(V)
            full = np.zeros((self.loss.num_params, V.shape[1]))
            full[idx] = V
            return factor * base.matmat(full)[idx]

        return LinearOperator((p, p), matvec=lambda v: matmat(v[:, None])[:, 0], matmat=matmat, dtype=np.float64)

    def _fisher_gradients(self):
        """Rows ∇ℓ_n·σ² of the per-sample NLLs (trajectories or inputs), ``(B, p)``."""
        from pyodejl.derivatives.gauss_newton import per_sample_gradients

        obj, theta = self._curvature_objective()
        G = self._reading.fisher_factor * per_sample_gradients(obj, theta)
        return G if self._index is None else G[:, self._index]

    def _curvature(self):
        if self._unscaled is not None:
            return self._unscaled
        p = self.num_params
        obj, theta = self._curvature_objective()
        factor = self._reading.factor
        if self.structure == "full":
            if self.curvature == "fisher":
                G = self._fisher_gradients()
                C = G.T @ G
            elif self._index is not None:
                C = self._unscaled_operator().matmat(np.eye(p))
            elif self.curvature == "ggn":
                C = factor * obj.ggn(theta)
            else:
                C = factor * obj.hessian(theta)
            self._unscaled = 0.5 * (C + C.T)
        elif self.structure == "diagonal":
            if self.curvature == "fisher":
                self._unscaled = np.sum(self._fisher_gradients() ** 2, axis=0)
            elif p <= MAX_EXACT_DIAGONAL:
                op = self._unscaled_operator()
                diag = np.empty(p)
                for start in range(0, p, _BLOCK):
                    stop = min(start + _BLOCK, p)
                    E = np.zeros((p, stop - start))
                    E[np.arange(start, stop), np.arange(stop - start)] = 1.0
                    diag[start:stop] = np.diagonal(op.matmat(E)[start:stop])
                self._unscaled = diag
            else:
                from pyodejl.spectral import diagonal

                est = diagonal(self._unscaled_operator(), num_matvecs=DIAGONAL_MATVECS, method="xdiag",
                               seed=self.seed)
                self._unscaled = np.asarray(est.estimate, dtype=np.float64)
                if self.curvature == "ggn":
                    # a GGN is positive semi-definite, so its diagonal is ≥ 0; the stochastic estimate
                    # is not, and its negative entries would make P singular for a small prior
                    self._unscaled = np.maximum(self._unscaled, 0.0)
        else:
            op = self._unscaled_operator()
            if self.rank == p:
                C = op.matmat(np.eye(p))
                lam, U = np.linalg.eigh(0.5 * (C + C.T))
            else:
                from pyodejl.spectral import eigenvalues

                res = eigenvalues(op, k=self.rank, which="largest", method="lanczos", seed=self.seed)
                lam, U = res.eigenvalues, res.eigenvectors
            self._unscaled = (np.asarray(lam, dtype=np.float64), np.asarray(U, dtype=np.float64))
        return self._unscaled

    def _scale(self, noise_std):
        if self.likelihood == "categorical":
            return 1.0
        return noise_std ** (-4.0 if self.curvature == "fisher" else -2.0)

    def _precision_parts(self, delta, sigma):
        """The structure's curvature scaled to σ: full (p, p), diagonal (p,), low-rank (λ, U)."""
        C = self._curvature()
        s = self._scale(sigma)
        if self.structure == "low-rank":
            return s * C[0], C[1]
        return s * C

    def _not_positive(self):
        remedy = ("use curvature='ggn' or a larger prior_precision" if self.curvature == "hessian"
                  else "use a larger prior_precision")
        return np.linalg.LinAlgError(
            f"the posterior precision (curvature {self.curvature!r} + prior) is not positive definite at "
            f"this theta and prior precision; {remedy}"
        )

    def _low_rank_whitened(self, delta, sigma):
        """``(d, W, γ)`` with P = D^{1/2} (I + W diag(γ) Wᵀ) D^{1/2}, D = diag(d), W orthonormal ``(p, k)``.

        For a per-block prior the low-rank curvature U Λ Uᵀ is whitened by D^{-1/2}
        (a thin QR of D^{-1/2} U and the eigenpairs of the small R Λ Rᵀ), so that
        P⁻¹, its square root and log det P stay O(p k²).
        """
        lam, U = self._precision_parts(delta, sigma)
        d = self._per_param(delta)
        Q, R = np.linalg.qr(U / np.sqrt(d)[:, None])
        gamma, V = np.linalg.eigh((R * lam) @ R.T)
        if np.any(1.0 + gamma <= 0):
            raise self._not_positive()
        return d, Q @ V, gamma

    def _log_det(self, delta, sigma):
        p = self.num_params
        if np.ndim(delta) != 0:
            d = self._per_param(delta)
            if self.structure == "full":
                try:
                    L = np.linalg.cholesky(self._precision_parts(delta, sigma) + np.diag(d))
                except np.linalg.LinAlgError:
                    raise self._not_positive() from None
                return float(2.0 * np.sum(np.log(np.diagonal(L))))
            if self.structure == "diagonal":
                dd = self._precision_parts(delta, sigma) + d
                if np.any(dd <= 0):
                    raise self._not_positive()
                return float(np.sum(np.log(dd)))
            d, _, gamma = self._low_rank_whitened(delta, sigma)
            return float(np.sum(np.log(d)) + np.sum(np.log1p(gamma)))
        if self.structure == "full":
            if self._eigenvalues is None:  # once: then log det P = Σ log(s μ_i + δ) for every σ and δ
                self._eigenvalues = np.linalg.eigvalsh(self._curvature())
            mu = self._scale(sigma) * self._eigenvalues + delta
            if np.any(mu <= 0):
                raise self._not_positive()
            return float(np.sum(np.log(mu)))
        parts = self._precision_parts(delta, sigma)
        if self.structure == "diagonal":
            d = parts + delta
            if np.any(d <= 0):
                raise self._not_positive()
            return float(np.sum(np.log(d)))
        lam = parts[0] + delta
        if np.any(lam <= 0):
            raise self._not_positive()
        return float(np.sum(np.log(lam)) + (p - len(lam)) * np.log(delta))

    # ---- posterior -------------------------------------------------------------------------
    def _full_only(self, what):
        if self.structure != "full":
            raise ValueError(
                f"{what} is a dense (p, p) matrix, available for structure='full' only; this Laplace has "
                f"structure={self.structure!r} (use posterior_variance() or sample())"
            )

    def _precision_matrix(self, delta):
        return self._precision_parts(delta, self.noise_std) + np.diag(np.broadcast_to(self._per_param(delta),
                                                                                       (self.num_params,)))

    def posterior_precision(self) -> np.ndarray:
        """P = C + δ I (or C + diag(δ per block)), ``(p, p)``; ``structure="full"`` only."""
        self._full_only("posterior_precision")
        return self._precision_matrix(self.prior_precision)

    def _cholesky(self, delta=None):
        try:
            return np.linalg.cholesky(self._precision_matrix(self.prior_precision if delta is None else delta))
        except np.linalg.LinAlgError:
            raise self._not_positive() from None

    def posterior_covariance(self) -> np.ndarray:
        """Σ = P⁻¹, ``(p, p)``; ``structure="full"`` only."""
        self._full_only("posterior_covariance")
        L = self._cholesky()
        Linv = np.linalg.solve(L, np.eye(self.num_params))
        return Linv.T @ Linv

    def _variance(self, delta):
        """diag(P⁻¹) ``(p,)`` at the prior precision ``delta``."""
        if self.structure == "full":
            Linv = np.linalg.solve(self._cholesky(delta), np.eye(self.num_params))
            return np.sum(Linv**2, axis=0)
        if self.structure == "diagonal":
            d = self._precision_parts(delta, self.noise_std) + self._per_param(delta)
            if np.any(d <= 0):
                raise self._not_positive()
            return 1.0 / d
        if np.ndim(delta) != 0:
            d, W, gamma = self._low_rank_whitened(delta, self.noise_std)
            return (1.0 - (W**2) @ (gamma / (1.0 + gamma))) / d
        lam, U = self._precision_parts(delta, self.noise_std)
        if np.any(lam + delta <= 0):
            raise self._not_positive()
        return 1.0 / delta - (U**2) @ (lam / (delta * (lam + delta)))

    def posterior_variance(self) -> np.ndarray:
        """diag(P⁻¹), ``(p,)``, for every structure.

        Low-rank: 1/δ − Σ_k U_ik² λ_k / (δ (λ_k + δ)); with a per-block prior the same
        Woodbury identity after whitening by the prior.
        """
        return self._variance(self.prior_precision)

    def _covariance_factor_apply(self, Z):
        """S Z with S Sᵀ = P⁻¹, Z ``(p, n)``."""
        delta = self.prior_precision
        if self.structure == "full":
            L = self._cholesky()
            from scipy.linalg import solve_triangular

            return solve_triangular(L.T, Z, lower=False)  # L⁻ᵀ Z: covariance L⁻ᵀ L⁻¹ = P⁻¹
        if self.structure == "diagonal":
            return np.sqrt(self.posterior_variance())[:, None] * Z
        if np.ndim(delta) != 0:
            d, W, gamma = self._low_rank_whitened(delta, self.noise_std)
            WZ = W.T @ Z
            return (Z + W @ ((1.0 / np.sqrt(1.0 + gamma) - 1.0)[:, None] * WZ)) / np.sqrt(d)[:, None]
        lam, U = self._precision_parts(delta, self.noise_std)
        if np.any(lam + delta <= 0):
            raise self._not_positive()
        UZ = U.T @ Z
        return (Z - U @ UZ) / np.sqrt(delta) + U @ (UZ / np.sqrt(lam + delta)[:, None])

    def sample(self, n: int, seed=0) -> np.ndarray:
        """``n`` draws of θ from the posterior, ``(n, p_θ)`` (whole θ vectors).

        With a ``subset``, the subset's entries are drawn from N(θ*_S, P⁻¹) and the other
        entries stay at θ* (so each row is a parameter vector of the loss).

        Args:
            n: number of samples (≥ 1).
            seed: seed of NumPy's default generator (default 0).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        Z = np.random.default_rng(seed).standard_normal((self.num_params, int(n)))
        out = np.repeat(self.theta_map[None, :], int(n), axis=0)
        out[:, self.subset_index] += self._covariance_factor_apply(Z).T
        return out

    # ---- evidence --------------------------------------------------------------------------
    def log_likelihood(self, noise_std=None) -> float:
        """log p(D | θ*).

        Gaussian: −Σ r²/(2σ²) − (N/2) log(2πσ²); categorical: Σ_n log softmax(logits_n)[y_n].

        Args:
            noise_std: σ (default: the current one); must be None for a categorical likelihood.
        """
        _, sigma = self._params(None, noise_std)
        if self.likelihood == "categorical":
            return self._log_lik
        N = self.num_observations
        return -self._sum_sq / (2.0 * sigma**2) - 0.5 * N * (_LOG_2PI + 2.0 * np.log(sigma))

    def _log_prior(self, delta):
        theta, p = self.theta_map[self.subset_index], self.num_params
        if np.ndim(delta) == 0:
            return -0.5 * delta * float(theta @ theta) + 0.5 * p * (np.log(delta) - _LOG_2PI)
        d = self._per_param(delta)
        return float(-0.5 * np.sum(d * theta**2) + 0.5 * np.sum(np.log(d)) - 0.5 * p * _LOG_2PI)

    def log_marginal_likelihood(self, prior_precision=None, noise_std=None) -> float:
        """The Laplace evidence log p(D|θ*) + log p(θ*) + (p/2) log 2π − ½ log det P.

        log p(θ*) = −Σ δ_i θ*_i²/2 + ½ Σ log(δ_i/2π) (δ_i = δ, or its block's value).
        Exact for a Gaussian likelihood of a model linear in θ with θ* the MAP
        (MacKay 1992; Daxberger et al. 2021, Eq. 4); with a subset, the evidence of the
        subset's posterior, the other parameters fixed.

        Args:
            prior_precision: δ to evaluate at (default: the current one; with blocks
                ``(len(blocks),)``, or a scalar for every block); not stored.
            noise_std: σ to evaluate at (default: the current one); not stored. None for
                a categorical likelihood.
        """
        delta, sigma = self._params(prior_precision, noise_std)
        p = self.num_params
        return (self.log_likelihood(sigma) + self._log_prior(delta) + 0.5 * p * _LOG_2PI
                - 0.5 * self._log_det(delta, sigma))

    def _maximise(self, fn, lower, upper, name):
        from scipy.optimize import minimize_scalar

        lo, hi = _positive(lower, f"{name} lower bound"), _positive(upper, f"{name} upper bound")
        if lo >= hi:
            raise ValueError(f"the {name} bracket must have lower < upper, got ({lower}, {upper})")
        res = minimize_scalar(lambda x: -fn(np.exp(x)), bounds=(np.log(lo), np.log(hi)), method="bounded",
                              options={"xatol": 1e-10})
        return float(np.exp(res.x))

    def evidence_gradient(self, prior_precision=None) -> np.ndarray:
        """∂ log evidence / ∂δ_b per block ``(len(blocks),)`` (one entry without blocks).

        −½ Σ_{i∈b} θ*_i² + p_b/(2δ_b) − ½ Σ_{i∈b} (P⁻¹)_ii: the derivative of
        −½ log det P is −½ tr(P⁻¹ ∂P/∂δ_b), the posterior variances of block b.

        Args:
            prior_precision: δ (default: the current one).
        """
        delta, _ = self._params(prior_precision, None if self.likelihood == "categorical" else self.noise_std)
        sizes = self.blocks or (self.num_params,)
        theta = self.theta_map[self.subset_index]
        var = self._variance(delta)
        ends = np.cumsum(sizes)[:-1]
        sq = np.array([np.sum(b) for b in np.split(theta**2, ends)])
        vs = np.array([np.sum(b) for b in np.split(var, ends)])
        return -0.5 * sq + 0.5 * np.asarray(sizes) / np.atleast_1d(delta) - 0.5 * vs

    def optimize_prior_precision(self, lower=1e-6, upper=1e6):
        """Maximise the evidence over δ at fixed θ* (and σ); store and return it.

        A scalar δ: a bounded scalar search (:func:`scipy.optimize.minimize_scalar`)
        over log δ. Per-block δ (``blocks``): L-BFGS-B over log δ with the exact gradient
        :meth:`evidence_gradient`.

        Args:
            lower: smallest δ searched (default 1e-6).
            upper: largest δ searched (default 1e6).

        Returns:
            δ, a float or ``(len(blocks),)``.
        """
        self._curvature()
        if self.blocks is None:
            self.prior_precision = self._maximise(lambda d: self.log_marginal_likelihood(prior_precision=d),
                                                  lower, upper, "prior_precision")
            return self.prior_precision
        from scipy.optimize import minimize

        lo, hi = _positive(lower, "prior_precision lower bound"), _positive(upper, "prior_precision upper bound")
        if lo >= hi:
            raise ValueError(f"the prior_precision bracket must have lower < upper, got ({lower}, {upper})")

        def negative(x):
            delta = np.exp(x)
            return -self.log_marginal_likelihood(prior_precision=delta), -delta * self.evidence_gradient(delta)

        x0 = np.clip(np.log(self.prior_precision), np.log(lo), np.log(hi))
        res = minimize(negative, x0, jac=True, method="L-BFGS-B", bounds=[(np.log(lo), np.log(hi))] * len(x0),
                       options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1000})
        self.prior_precision = np.exp(res.x)
        return self.prior_precision.copy()

    def _gaussian_only(self, what):
        if self.likelihood != "gaussian":
            raise ValueError(
                f"{what} applies to a Gaussian likelihood; this loss is categorical (softmax cross-entropy), "
                "which has no observation noise: use optimize_prior_precision()"
            )

    def optimize_noise_std(self, lower=1e-6, upper=1e6) -> float:
        """Maximise the evidence over σ at fixed θ* and δ; store and return it. Gaussian only.

        Args:
            lower: smallest σ searched (default 1e-6).
            upper: largest σ searched (default 1e6).
        """
        self._gaussian_only("optimize_noise_std")
        self._curvature()
        self.noise_std = self._maximise(lambda s: self.log_marginal_likelihood(noise_std=s),
                                        lower, upper, "noise_std")
        return self.noise_std

    def optimize(self, prior_bounds=(1e-6, 1e6), noise_bounds=(1e-6, 1e6)) -> tuple[float, float]:
        """Maximise the evidence jointly over δ and σ at fixed θ*; store and return ``(δ, σ)``.

        Nelder–Mead (:func:`scipy.optimize.minimize`) over (log δ, log σ) within the
        bounds, started at the current values (moved into the bounds). Gaussian
        likelihood with a scalar prior only.

        Args:
            prior_bounds: ``(lower, upper)`` of δ (default (1e-6, 1e6)).
            noise_bounds: ``(lower, upper)`` of σ (default (1e-6, 1e6)).
        """
        from scipy.optimize import minimize

        self._gaussian_only("optimize (joint δ and σ)")
        if self.blocks is not None:
            raise NotImplementedError(
                "joint (δ, σ) optimisation covers a scalar prior only: with blocks, alternate "
                "optimize_prior_precision() and optimize_noise_std()"
            )
        bounds = []
        for (lo, hi), name in ((prior_bounds, "prior_precision"), (noise_bounds, "noise_std")):
            lo, hi = _positive(lo, f"{name} lower bound"), _positive(hi, f"{name} upper bound")
            if lo >= hi:
                raise ValueError(f"the {name} bounds must have lower < upper, got ({lo}, {hi})")
            bounds.append((np.log(lo), np.log(hi)))
        self._curvature()
        x0 = [np.clip(np.log(v), lo, hi) for v, (lo, hi) in zip((self.prior_precision, self.noise_std), bounds)]
        res = minimize(lambda x: -self.log_marginal_likelihood(np.exp(x[0]), np.exp(x[1])), x0,
                       method="Nelder-Mead", bounds=bounds,
                       options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000, "maxfev": 20000})
        self.prior_precision, self.noise_std = float(np.exp(res.x[0])), float(np.exp(res.x[1]))
        return self.prior_precision, self.noise_std

    # ---- predictive ------------------------------------------------------------------------
    def _prediction_loss(self, ts):
        """``(an ObservationLoss observing ts, rows to drop)``; the loss itself for ts None."""
        if ts is None:
            return self.loss, 0
        from pyodejl.derivatives.ode_loss import ObservationLoss, mse_cost

        arr = np.atleast_1d(np.asarray(ts, dtype=np.float64))
        t0 = float(self.loss.ts[0])
        if arr.ndim != 1 or arr.size < 1 or not np.all(np.isfinite(arr)) or np.any(np.diff(arr) <= 0):
            raise ValueError(f"ts must be a 1-D array of finite, strictly increasing times; got {ts!r}")
        if arr[0] < t0:
            raise ValueError(f"ts must start at or after the loss's initial time ts[0] = {t0}; got ts[0] = {arr[0]}")
        drop = int(arr[0] > t0)
        times = np.concatenate([[t0], arr]) if drop else arr
        if times.size < 2:
            raise ValueError(f"ts must hold a time after the initial time {t0}; got {ts!r}")
        loss = self.loss
        y0 = loss.y0[0] if loss.single else loss.y0
        data = np.zeros((loss.batch_size, times.size, self._targets.shape[-1]))
        return ObservationLoss(loss.model, times, y0, mse_cost, data=data,
                               num_extra_params=loss.num_params - loss.model.num_params), drop

    def _jacobian_products(self, V, loss=None):
        """J V for parameter directions V ``(p, m)``: states ``(m, T, B, D)`` on θ*'s step grid."""
        loss = self.loss if loss is None else loss
        theta = self.theta_map
        nvf = loss.problem.num_vf
        grid = loss.solve(theta).grid
        out = _jvp_block(loss.problem.model, to_device(theta[:nvf]), to_device(grid.times),
                         to_device(grid.obs_index), loss._y0_aug, to_device(np.ascontiguousarray(V[:nvf].T)))
        return np.asarray(out)

    def _embed(self, V):
        """Directions over the subset ``(p, m)`` as directions over all of θ."""
        if self.subset == "all":
            return V
        full = np.zeros((len(self.theta_map), V.shape[1]))
        full[self.subset_index] = V
        return full

    def _covariance_terms(self):
        """Σ = Σ_terms C diag(w) Cᵀ as ``[(C (p, m) or None for the unit vectors, w (m,))]``."""
        p, delta = self.num_params, self.prior_precision
        if self.structure == "full":
            from scipy.linalg import solve_triangular

            return [(solve_triangular(self._cholesky().T, np.eye(p), lower=False), np.ones(p))]  # S Sᵀ = P⁻¹
        if self.structure == "diagonal":
            return [(None, self.posterior_variance())]
        if np.ndim(delta) != 0:
            # Σ = D^{-1/2} (I − W diag(γ/(1+γ)) Wᵀ) D^{-1/2}
            d, W, gamma = self._low_rank_whitened(delta, self.noise_std)
            return [(None, 1.0 / d), (W / np.sqrt(d)[:, None], -gamma / (1.0 + gamma))]
        lam, U = self._precision_parts(delta, self.noise_std)
        if np.any(lam + delta <= 0):
            raise self._not_positive()
        # Σ = I/δ − U diag(λ/(δ(λ+δ))) Uᵀ
        return [(None, np.full(p, 1.0 / delta)), (U, -lam / (delta * (lam + delta)))]

    def _weighted_square_sum(self, jvp, unit_rows=None):
        """diag(J Σ Jᵀ) = Σ_terms Σ_j w_j (J c_j)², ``jvp`` mapping directions ``(p, m)`` to ``(m, ...)``.

        Unit-vector columns are generated block by block, so neither a (p, p) identity
        nor a dense Jacobian is ever held; or, given ``unit_rows`` (weights ``(p,)`` ↦
        Σ_j w_j J_{o,j}² for every output o, from the Jacobian's rows), the unit-vector
        terms take rows instead of p JVPs.
        """
        acc = 0.0
        p = self.num_params
        for columns, weights in self._covariance_terms():
            if columns is None and unit_rows is not None:
                acc = acc + unit_rows(weights)
                continue
            m = p if columns is None else columns.shape[1]
            for start in range(0, m, _BLOCK):
                stop = min(start + _BLOCK, m)
                if columns is None:
                    block = np.zeros((p, stop - start))
                    block[np.arange(start, stop), np.arange(stop - start)] = 1.0
                else:
                    block = columns[:, start:stop]
                JV = np.asarray(jvp(block))
                acc = acc + np.tensordot(weights[start:stop], JV**2, axes=(0, 0))
        return acc

    def _glm_variance(self, loss):
        return self._weighted_square_sum(lambda V: self._jacobian_products(self._embed(V), loss))

    def _classifier_loss(self, x):
        """The loss on new inputs ``x`` (dummy labels: the readout must not read them); the loss for None."""
        if x is None:
            return self.loss
        from pyodejl.derivatives.equilibrium import EquilibriumLoss
        from pyodejl.derivatives.ode_loss import ObservationLoss

        loss = self.loss
        x = np.asarray(x, dtype=np.float64)
        labels = np.zeros(x.shape[:1], dtype=self._reading.labels.dtype)
        if isinstance(loss, EquilibriumLoss):
            if x.ndim != 2 or x.shape[1:] != loss.inputs.shape[1:]:
                raise ValueError(f"x must be inputs of shape (B', {loss.inputs.shape[1]}); got {x.shape}")
            return EquilibriumLoss(loss.deq, x, loss.cost, loss.num_params - loss.deq.num_params, data=labels,
                                   derivative=loss.derivative)
        D = loss.y0.shape[-1]
        if x.ndim != 2 or x.shape[1] != D:
            raise ValueError(f"x must be initial states of shape (B', D) = (B', {D}); got {x.shape}")
        return ObservationLoss(loss.model, loss.ts, x, loss.problem.cost, data=labels,
                               num_extra_params=loss.num_params - loss.model.num_params)

    @staticmethod
    def _logits(loss, theta):
        from pyodejl.derivatives.gauss_newton import _split

        outputs, _, args, _ = _split(loss, theta)
        return np.asarray(_outputs(outputs, to_device(theta), tuple(args)), dtype=np.float64)

    def _statistic(self, theta):
        """The statistic F(θ) of an ``OutputCost(statistic, MeanSquaredError())`` loss, on θ's step grid."""
        return self._logits(self.loss, theta)

    def _logit_parts(self, x):
        """``(outputs, out_args, θ_point, embed)``: logits = outputs(θ_point, *out_args) and their JVPs."""
        from pyodejl.derivatives.gauss_newton import _FnOutputs, _split

        loss = self._classifier_loss(x)
        if self._readout is not None:
            labels = np.zeros(loss.inputs.shape[0] if hasattr(loss, "deq") else loss.batch_size,
                              dtype=self._reading.labels.dtype)
            fn, args = _readout_objective(loss, self.theta_map, labels, self._reading.readout_start).value_function()
            return _FnOutputs(fn), tuple(args), self.theta_map[self.subset_index], False
        outputs, _, args, _ = _split(loss, self.theta_map)
        return outputs, tuple(args), self.theta_map, self.subset != "all"

    def _logit_moments(self, x):
        """GLM logits: mean ``(B, C)`` at θ* and variance diag(J Σ Jᵀ) ``(B, C)`` by forward-mode JVPs.

        A statistic's loss: the statistic's mean and variance, its shape, by JVPs alone
        (it couples the batch, so its Jacobian has no per-input rows).
        """
        outputs, args, theta, embed = self._logit_parts(x)
        th = to_device(theta)
        mean = np.asarray(_outputs(outputs, th, args), dtype=np.float64)

        def jvp(V):
            V = self._embed(V) if embed else V
            return _output_jvps(outputs, th, to_device(np.ascontiguousarray(V.T)), args)

        def unit_rows(weights):
            return self._row_norms(outputs, args, th, self._embed(weights[:, None])[:, 0] if embed else weights,
                                   mean.shape)

        return mean, self._weighted_square_sum(jvp, None if self._reading.statistic else unit_rows)

    @staticmethod
    def _row_norms(outputs, args, theta, weights, shape):
        """Σ_j w_j J_{n,c,j}² ``(B, C)`` by C VJPs per input, in chunks of inputs.

        The logits of one input depend on θ through that input alone (the ODE's frozen
        step grid is shared, the models act row-wise), so the inputs are vmapped one
        by one. This is the cheap side whenever C ≪ p: the MNIST classifier's
        isotropic or diagonal term costs 10 VJPs per input instead of p = 166k JVPs.
        """
        from pyodejl.derivatives.gauss_newton import _ODEOutputs

        B, C = shape
        if isinstance(outputs, _ODEOutputs):  # (times, obs_index, y0, user data)
            axes = (None, None, 0, None if args[3] is None else 0)
        else:  # the readout's (features, labels) or a DEQ's (inputs, labels)
            axes = tuple(None if a is None else 0 for a in args)
        chunk = int(max(1, min(B, _ROW_BYTES // (8 * C * max(1, len(theta))))))
        w = to_device(np.asarray(weights, dtype=np.float64))
        host = tuple(a if ax is None else np.asarray(a) for a, ax in zip(args, axes))  # batched args, once
        out = np.empty((B, C))
        for start in range(0, B, chunk):
            take = np.minimum(np.arange(start, start + chunk), B - 1)  # the last chunk padded: one compile
            part = tuple(a if ax is None else to_device(a[take]) for a, ax in zip(host, axes))
            rows = np.asarray(_weighted_row_norms(outputs, axes, theta, w, part))
            out[start:start + chunk] = rows[: min(chunk, B - start)]
        return out

    def _sampled_probabilities(self, x, n, seed):
        thetas = self.sample(n, seed)
        if self._readout is not None:  # the features do not move: one solve, n cheap readouts
            outputs, args, _, _ = self._logit_parts(x)
            logits = [np.asarray(_outputs(outputs, to_device(th[self.subset_index]), args)) for th in thetas]
        else:
            loss = self._classifier_loss(x)
            logits = [self._logits(loss, th) for th in thetas]
        bad = sum(not np.all(np.isfinite(z)) for z in logits)
        if bad:
            from pyodejl.solving import SolveError

            raise SolveError(
                f"{bad} of {n} posterior samples gave non-finite logits (their solves diverged or did not "
                "converge): the posterior is too wide to predict by sampling θ. Use method='probit' (the "
                "linearised predictive), a larger prior_precision, or subset='last-layer'")
        return np.mean([_softmax(z) for z in logits], axis=0)

    def predictive(self, ts=None, method: str | None = None, n: int = 100, seed=0, *, x=None):
        """The predictive distribution: model states (Gaussian) or class probabilities (categorical).

        **Gaussian** (ODE states at the loss's times or at ``ts``):

        * ``method="glm"`` (default; Immer et al. 2021): the model linearised at θ*,
          var = diag(J Σ Jᵀ) with J = ∂y/∂θ on θ*'s step grid, from forward-mode
          products — never a dense (T·D, p) Jacobian: Σ = S Sᵀ is applied as
          Σ_j w_j (J s_j)² over p columns (S = L⁻ᵀ for ``"full"``, the unit vectors for
          ``"diagonal"``, unit vectors and U for ``"low-rank"``), p to p + rank JVPs in
          blocks of 256;
        * ``method="samples"``: solve at ``n`` posterior samples; mean and variance,
          normalised by n, of the solutions.

        **A statistic** (``OutputCost(statistic, MeanSquaredError())``): its ``"glm"``
        mean and variance, or ``"samples"``, with the statistic's shape; ``ts`` must be None.

        **Categorical** (class probabilities of the training inputs or of ``x``):

        * ``method="probit"`` (default; MacKay 1992): the GLM logit mean μ and variance
          σ² (as ``"glm"``), then softmax(κ ⊙ μ) with κ_c = 1/√(1 + π σ_c²/8) per class;
          the softmax renormalises. For a classifier the unit-vector parts of Σ (the
          diagonal, the low-rank structure's isotropic part) take C reverse-mode
          Jacobian rows per input, in chunks of inputs, instead of p JVPs (each input's
          logits depend on θ through that input alone);
        * ``method="samples"``: the mean of softmax(logits(θ_s)) over ``n`` posterior
          samples θ_s (each solved anew; last-layer: the features solved once);
        * ``method="glm"``: the GLM logits' :class:`Predictive` (mean and variance ``(B, C)``).

        Args:
            ts: Gaussian only: None (default: the loss's times) or ``(T',)`` strictly
                increasing times from the loss's initial time ``ts[0]`` on.
            method: see above; default ``"glm"`` (Gaussian) or ``"probit"`` (categorical).
            n: number of samples for ``"samples"`` (default 100).
            seed: seed of the samples (default 0).
            x: categorical only: new inputs, initial states ``(B', D)`` of an ODE
                classifier or DEQ inputs ``(B', n)`` (default: the training inputs).

        Returns:
            Gaussian: a :class:`Predictive` with ``mean`` and ``var`` of shape ``(T, D)``
            for a single initial state, else ``(B, T, D)``; epistemic only (add σ² for
            the observation noise). Categorical: class probabilities ``(B, C)``
            (``"probit"``, ``"samples"``) or a :class:`Predictive` of logits (``"glm"``).
        """
        if self.likelihood == "categorical":
            if ts is not None:
                raise ValueError("a classifier predicts at its final state: ts must be None (pass new inputs as x=)")
            method = "probit" if method is None else method
            if method not in ("probit", "samples", "glm"):
                raise ValueError(f"unknown predictive method {method!r} for a classifier; expected 'probit', "
                                 "'samples' or 'glm'")
            if method == "samples":
                return self._sampled_probabilities(x, n, seed)
            mean, var = self._logit_moments(x)
            if method == "glm":
                return Predictive(mean, var)
            kappa = 1.0 / np.sqrt(1.0 + np.pi / 8.0 * var)
            return _softmax(kappa * mean)
        if x is not None:
            raise ValueError("x (new inputs) applies to classifiers; a Gaussian loss's predictive takes ts")
        method = "glm" if method is None else method
        if method not in ("glm", "samples"):
            raise ValueError(f"unknown predictive method {method!r}; expected 'glm' or 'samples'")
        if self._reading.statistic:
            if ts is not None:
                raise ValueError("a statistic's likelihood predicts the statistic at the loss's own times: ts must "
                                 "be None")
            if method == "glm":
                return Predictive(*self._logit_moments(None))
            stats = np.stack([self._statistic(th) for th in self.sample(n, seed)])
            return Predictive(stats.mean(axis=0), stats.var(axis=0))
        loss, drop = self._prediction_loss(ts)
        D = loss.problem.D
        if method == "glm":
            mean = np.asarray(loss.predict(self.theta_map), dtype=np.float64)
            var = np.swapaxes(self._glm_variance(loss), 0, 1)[..., :D]  # (B, T, D)
            var = var[0] if loss.single else var
        else:
            thetas = self.sample(n, seed)
            ys = np.stack([np.asarray(loss.predict(th)) for th in thetas])
            mean, var = ys.mean(axis=0), ys.var(axis=0)
        return Predictive(mean[..., drop:, :], var[..., drop:, :])
