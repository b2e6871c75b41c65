"""Stiffness-penalised training of ResNets and Neural ODEs on Alpine02 (seed 001; seed 004 ch. 5).

Seed 001 (Hudson et al., *Examining stiffness in ResNets through interpretation as
discretized Neural ODEs*, Sandia 2022) trains three ResNets and compares their error,
total stiffness and wall time:

* ``res`` — no penalty;
* ``res-l2`` — λ = 1e-5 on the mean of the Euclidean/Frobenius norms of the network's
  parameter tensors (``W_in, b_in, W₁, b₁, …, W_N, b_N, W_out, b_out``: 2N + 4 tensors);
* ``res-stiff`` — λ = 1e-3 on ``pᵢ = Σₙ ρ_G(Jₙ,ᵢ)``, the spectral radius by Gelfand's
  formula (k = 2¹⁰) of every layer's Jacobian ``Jₙ,ᵢ = diag(σ'(Wₙxₙ₋₁⁽ⁱ⁾ + bₙ))Wₙ``,
  summed over the layers for each sample (:func:`pyodejl.stiffness.layer_stiffness`).

Ours, not the seed's:

* ``res-stiff-sampled`` — the same loss with ``Σᵢ pᵢ²`` replaced by an unbiased
  estimate from ``penalty_draws`` random (sample, layer, layer) triples per minibatch
  (:func:`sampled_penalty_sq_sum`): two Gelfand radii per draw instead of
  depth × batch (450 in the seed's setup), which is what brings the penalised epoch
  within about 2× of the plain one (``benchmarks/stiffness_penalty.py``).

**The loss** is the seed's ``√(Σ_{(xᵢ,yᵢ)∈S} |F(xᵢ) − yᵢ|² + λ pᵢ²)`` on a minibatch S.
We read the sum as running over both terms (the seed calls it the "quadratic mean of
RMSE and penalty"), i.e. ``√(Σᵢ |F(xᵢ) − yᵢ|² + λ Σᵢ pᵢ²)``; for ``res-l2`` the
penalty does not depend on the sample, so ``Σᵢ pᵢ² = |S|·p²`` (:func:`penalised_loss`).

The Neural ODE variant (seed 004 ch. 5, SRNODE) is ours, not the seed's:

* ``node`` / ``node-stiff`` — an augmented Neural ODE (Dupont et al. 2019) on the
  2-D input padded with ``augment_dim`` zeros (default 8: a 10-D state), vector
  field an MLP ``10 → node_width → 10`` (tanh), solved adaptively by ``tsit5`` on
  ``[0, 1]``, linear readout of the final state (:mod:`pyodejl.experiments.models`).
  ``node-stiff`` adds :class:`pyodejl.regularizers.StiffnessEstimate` (Shampine's
  per-step estimate from the two stages at c = 1, mean over the accepted steps) with
  weight λ (default 1, our choice, not tuned: λ·R_S starts at a few per cent of the
  MSE). We chose a smooth MLP field over the ResNet's own Euler Neural ODE because
  that field is piecewise constant in t: an adaptive solver would spend its steps
  resolving the jumps between layers, not the dynamics, and Shampine's estimate across
  a jump measures the jump. The loss is the engine's
  additive one, ``mean|F(x) − y|² + λ R_S``: R_S belongs to the solve of the whole
  minibatch (one ODE system), not to a sample, so the seed's per-sample form has no
  counterpart.

**Setup** (seed 001's Alpine02 slide): inputs in [−5, 5]², 900 training points in 20
minibatches of 45 (reshuffled every epoch from ``default_rng([seed, 2, epoch])``; the
sampled penalty's triples from ``default_rng([seed, 3, epoch])``), 100
test points, drawn once from ``data_seed`` (:func:`pyodejl.experiments.make_task`);
ResNet width 20, depth 10, tanh, T = 1 (p = 4281); Adam (lr 1e-3) and the seed's
"reduce on plateau": PyTorch's ``ReduceLROnPlateau`` defaults (factor 0.1, patience 10
epochs, relative threshold 1e-4, no cooldown), stepped once per epoch on the epoch's
mean minibatch loss — the seed does not say which quantity it monitored. Initial θ:
PyTorch's ``nn.Linear`` initialisation from ``seed``. The seed trained 10 000 epochs
(Alpine02); the epoch count here is a setting (see REPRODUCTION.md for what we ran).

**Records** (one JSON line per epoch, epoch 0 = initial θ): ``train_mse``, ``test_mse``
(mean |F − y|² over the 900 / 100 points: ER and GE), ``objective`` (mean minibatch
loss of the epoch), ``lr``, ``wall_s`` / ``cpu_s`` (the epoch's optimiser steps:
``time.perf_counter`` and ``time.process_time``, compilation included in the first
epoch of a process), and, every ``proxy_every`` epochs and at the last, seed 001's
stiffness proxies of the ResNet summed over layers and the 900 training samples:
``stiffness_ratio`` (r), ``magnitude_ratio`` (r̃), ``singular_value_ratio``,
``spectral_radius`` (by ``eig``: the exact radius, not the penalised Gelfand value).
Neural ODE records carry ``stiffness_estimate`` (R_S on the training set, unweighted)
and ``nfe`` of the training-set solve instead.

**Hessian** (an add-on to a finished run, not part of its configuration, so that it
can be computed for some seeds now and for others later): the exact Hessian of the data loss ``(1/n) Σᵢ |F(xᵢ) − yᵢ|²``
on the training set (ResNet models: forward-over-reverse Hessian-vector products with
every unit vector, float64; ``numpy.linalg.eigvalsh``); its spectrum is kept in ``hessian.npz``.

**Run folders**: ``<root>/<model>/seed_<s>/`` holds ``config.json`` (settings and
package versions), ``records.jsonl``, ``checkpoint.npz`` (epoch, θ, Adam state, plateau
state), and when done ``params.npz`` (final θ) and ``summary.json`` (its presence marks
the run finished); ``hessian.npz`` once the Hessian is computed (``summary.json``'s
``"hessian"`` entry is then filled in). Every file is written atomically
(:func:`pyodejl.experiments.runs.atomic_write_bytes`); records are written before the
checkpoint, and a resumed run drops records after the checkpoint's epoch, so a kill at
any point loses at most one epoch and never duplicates one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pyodejl.experiments.runs import (
    ConfigMismatchError,
    RunFolderError,
    SavedConfig,
    VersionMismatchError,
    atomic_savez,
    atomic_write_text,
    jsonl_text,
    package_versions,
    read_jsonl,
    version_differences,
)

__all__ = [
    "STIFFNESS_MODELS",
    "DEFAULT_LAMBDAS",
    "PROXIES",
    "StiffnessRunConfig",
    "alpine02_split",
    "parameter_norm_mean",
    "penalty_per_sample",
    "sampled_penalty_sq_sum",
    "draw_penalty_triples",
    "penalised_loss",
    "PlateauState",
    "plateau_step",
    "train_stiffness_run",
    "run_stiffness_experiment",
    "load_stiffness_experiment",
    "stiffness_table",
    "hessian_summary",
    "EXPERIMENT_FILE",
]

#: The models: seed 001's three ResNets, and our Neural ODE pair (SRNODE penalty).
STIFFNESS_MODELS = ("res", "res-l2", "res-stiff", "res-stiff-sampled", "node", "node-stiff")
#: λ by model (seed 001 for the ResNets; the sampled penalty keeps the seed's λ; ours for node-stiff).
DEFAULT_LAMBDAS = {
    "res": 0.0,
    "res-l2": 1e-5,
    "res-stiff": 1e-3,
    "res-stiff-sampled": 1e-3,
    "node": 0.0,
    "node-stiff": 1.0,
}
#: The recorded ResNet stiffness proxies (totals over layers and training samples).
PROXIES = ("stiffness_ratio", "magnitude_ratio", "singular_value_ratio", "spectral_radius")
#: Marker file of an experiment root (read by ``python -m pyodejl plot``).
EXPERIMENT_FILE = "stiffness_experiment.json"
FORMAT_VERSION = 1
_PENALTY = {"res": "none", "res-l2": "l2", "res-stiff": "stiff", "res-stiff-sampled": "stiff-sampled"}
_RUN_FILES = ("records.jsonl", "checkpoint.npz", "params.npz", "hessian.npz", "summary.json")


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StiffnessRunConfig(SavedConfig):
    """Everything that determines the numbers of one (model, seed) run.

    Args:
        model: one of :data:`STIFFNESS_MODELS`.
        seed: initialisation and minibatch order (non-negative integer).
        epochs: passes over the 900 training points (positive integer).
        lam: penalty weight λ ≥ 0 (None: :data:`DEFAULT_LAMBDAS`; must be 0 for
            ``res`` and ``node``).
        width: ResNet width (default 20).
        depth: ResNet depth, the number of Euler steps (default 10).
        activation: ResNet activation (default ``"tanh"``).
        T: ResNet time horizon; the step is T / depth (default 1.0).
        node_width: hidden width of the Neural ODE's vector field (default 20).
        augment_dim: zero dimensions appended to the Neural ODE state (default 8).
        solver: the Neural ODE's Diffrax solver name (default ``"tsit5"``).
        rtol: the Neural ODE's relative tolerance (default 1e-5).
        atol: the Neural ODE's absolute tolerance (default 1e-7).
        max_steps: the Neural ODE's step budget (default 4096).
        n_train: training points (default 900).
        n_test: test points (default 100).
        batch_size: minibatch size (default 45).
        data_seed: seed of the Alpine02 sample (default 0).
        lr: initial Adam learning rate (1e-3).
        plateau_factor: reduce-on-plateau factor (PyTorch's default 0.1).
        plateau_patience: reduce-on-plateau patience in epochs (PyTorch's default 10).
        plateau_threshold: reduce-on-plateau relative threshold (PyTorch's default 1e-4).
        proxy_every: record the stiffness proxies every this many epochs (and at
            the last); they cost about 100 plain epochs each time (see REPRODUCTION.md).
        hessian_chunk: Hessian-vector products per batch of the Hessian (memory ∝ chunk · n_train).
        penalty_draws: (sample, layer, layer) triples per minibatch of
            ``res-stiff-sampled`` (default 1; ignored by the other models).
    """

    model: str
    seed: int = 0
    epochs: int = 50
    lam: float | None = None
    width: int = 20
    depth: int = 10
    activation: str = "tanh"
    T: float = 1.0
    node_width: int = 20
    augment_dim: int = 8
    solver: str = "tsit5"
    rtol: float = 1e-5
    atol: float = 1e-7
    max_steps: int = 4096
    n_train: int = 900
    n_test: int = 100
    batch_size: int = 45
    data_seed: int = 0
    lr: float = 1e-3
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    plateau_threshold: float = 1e-4
    proxy_every: int = 5
    hessian_chunk: int = 128
    penalty_draws: int = 1
    format: int = FORMAT_VERSION

    @property
    def is_node(self) -> bool:
        return self.model.startswith("node")

    def resolved(self) -> StiffnessRunConfig:
        """Validate every field and fill in λ.

        Raises:
            ValueError: naming the field, its value and what was expected.
        """
        if self.model not in STIFFNESS_MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {list(STIFFNESS_MODELS)}")
        for name in ("seed", "data_seed"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        for name in (
            "epochs",
            "penalty_draws",
            "width",
            "depth",
            "node_width",
            "augment_dim",
            "max_steps",
            "n_train",
            "n_test",
            "batch_size",
            "plateau_patience",
            "proxy_every",
            "hessian_chunk",
        ):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.n_train % self.batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} must divide n_train {self.n_train} "
                "(every minibatch has the same size, as in the seed's 20 x 45)"
            )
        lam = DEFAULT_LAMBDAS[self.model] if self.lam is None else self.lam
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"lam (the penalty weight λ) must be a finite number >= 0, got {lam!r}")
        if self.model in ("res", "node") and lam != 0:
            raise ValueError(f"model {self.model!r} has no penalty; lam must be 0 or None, got {lam!r}")
        for name in ("lr", "T", "rtol", "atol", "plateau_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        if not (isinstance(self.plateau_factor, (int, float)) and 0 < self.plateau_factor < 1):
            raise ValueError(f"plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
        from pyodejl.models.mlp import activation_fn

        activation_fn(self.activation)
        if self.format != FORMAT_VERSION:
            raise ValueError(f"format {self.format} is not supported (this version writes {FORMAT_VERSION})")
        return replace(
            self,
            lam=float(lam),
            lr=float(self.lr),
            T=float(self.T),
            rtol=float(self.rtol),
            atol=float(self.atol),
            plateau_factor=float(self.plateau_factor),
            plateau_threshold=float(self.plateau_threshold),
        )

    # ---- derived ------------------------------------------------------------------
    def resnet(self):
        from pyodejl.models.resnet import ResNet

        return ResNet(2, self.width, self.depth, 1, activation=self.activation, T=self.T)

    def node_spec(self):
        from pyodejl.experiments.models import ModelSpec

        return ModelSpec(
            "anode",
            width=self.node_width,
            depth=1,
            activation=self.activation,
            augment_dim=self.augment_dim,
            solver=self.solver,
            rtol=self.rtol,
            atol=self.atol,
            max_steps=self.max_steps,
            flow_time=1.0,
        )


def alpine02_split(n_train: int = 900, n_test: int = 100, data_seed: int = 0):
    """Seed 001's Alpine02 data: points uniform in [−5, 5]², ``y = f_A2(x)``.

    Returns:
        ``(x_train (n_train, 2), y_train (n_train,), x_test (n_test, 2), y_test (n_test,))``,
        the first ``n_train`` and the last ``n_test`` of one draw of
        :func:`pyodejl.experiments.make_task` ``("alpine02", seed=data_seed)``.
    """
    from pyodejl.experiments.tasks import make_task

    task = make_task("alpine02", seed=data_seed, dim=2, num_samples=n_train + n_test)
    return task.x[:n_train], task.y[:n_train], task.x[n_train:], task.y[n_train:]


# --------------------------------------------------------------------------------------
# the seed's loss
# --------------------------------------------------------------------------------------


def parameter_norm_mean(resnet, theta):
    """Mean over the 2·depth + 4 parameter tensors of their Euclidean/Frobenius norms (seed 001's L2 penalty)."""
    p = resnet.unflatten(theta)
    norms = [
        jnp.linalg.norm(p["W_in"]),
        jnp.linalg.norm(p["b_in"]),
        jnp.linalg.norm(p["Ws"], axis=(1, 2)),
        jnp.linalg.norm(p["bs"], axis=1),
        jnp.linalg.norm(p["W_out"]),
        jnp.linalg.norm(p["b_out"]),
    ]
    flat = jnp.concatenate([jnp.atleast_1d(n) for n in norms])
    return jnp.mean(flat)


def penalty_per_sample(resnet, theta, inputs, penalty: str):
    """Seed 001's pᵢ for a batch ``inputs`` ``(B, 2)``: ``(B,)``.

    ``"none"``: 0; ``"l2"``: :func:`parameter_norm_mean` for every sample;
    ``"stiff"``: ``Σₙ ρ_G(Jₙ,ᵢ)`` (Gelfand, k = 2¹⁰) over the layers.
    """
    B = inputs.shape[0]
    if penalty == "none":
        return jnp.zeros(B)
    if penalty == "l2":
        return jnp.full(B, parameter_norm_mean(resnet, theta))
    if penalty == "stiff":
        from pyodejl.stiffness import layer_stiffness

        return jnp.sum(layer_stiffness(resnet, theta, inputs, "spectral_radius", method="gelfand"), axis=0)
    raise ValueError(f"unknown penalty {penalty!r}; expected 'none', 'l2' or 'stiff'")


def draw_penalty_triples(rng: np.random.Generator, batches: int, batch_size: int, depth: int, draws: int):
    """Random (sample i, layer a, layer b) triples for :func:`sampled_penalty_sq_sum`.

    Independent and uniform: ``i`` in ``[0, batch_size)``, ``a`` and ``b`` in ``[0, depth)``.

    Returns:
        ``(batches, 3, draws)`` int64: row 0 the samples, rows 1 and 2 the two layers.
    """
    shape = (batches, draws)
    return np.stack(
        [rng.integers(0, batch_size, shape), rng.integers(0, depth, shape), rng.integers(0, depth, shape)], axis=1
    )


def sampled_penalty_sq_sum(resnet, theta, states, triples):
    """Unbiased estimate of seed 001's ``Σᵢ pᵢ²``, ``pᵢ = Σₙ ρ_G(Jₙ,ᵢ)``, from a few Jacobians.

    Since ``pᵢ² = Σₐ Σ_b ρ_G(J_{a,i}) ρ_G(J_{b,i})``, a sample i drawn uniformly from the B
    of the minibatch and two layers a, b drawn independently and uniformly from the N
    give ``E[B·N²·ρ_G(J_{a,i})·ρ_G(J_{b,i})] = Σᵢ pᵢ²``; the estimate is the mean of that
    over the ``K`` draws. It is never negative (radii are), so the seed's square root
    stays real, and its gradient is an unbiased estimate of the exact penalty's
    gradient (the square root around the sum makes the loss's gradient slightly
    biased, as any minibatch estimate inside a nonlinearity is). Cost: 2K Gelfand
    radii instead of N·B. Ours, not seed 001's (whose penalty is exact and ~100× the
    plain training time); the same idea as Hutchinson's estimator, applied to a
    double sum.

    Args:
        resnet: a :class:`pyodejl.ResNet`.
        theta: ``(p,)``.
        states: ``(N + 1, B, width)``, ``resnet.hidden_states(theta, inputs)``.
        triples: ``(3, K)`` integers from :func:`draw_penalty_triples`.

    Returns:
        a JAX scalar.
    """
    from pyodejl.stiffness import jacobians_at
    from pyodejl.stiffness.measures import UNCHECKED

    N, B = states.shape[0] - 1, states.shape[1]
    K = triples.shape[1]
    layers = jnp.concatenate([triples[1], triples[2]])
    samples = jnp.concatenate([triples[0], triples[0]])
    rho = UNCHECKED["spectral_radius"](jacobians_at(resnet, theta, states, layers, samples), method="gelfand")
    return (B * N**2 / K) * jnp.sum(rho[:K] * rho[K:])


def penalised_loss(resnet, theta, inputs, targets, penalty: str = "none", lam: float = 0.0, triples=None):
    """Seed 001's minibatch loss ``√(Σᵢ |F(xᵢ) − yᵢ|² + λ Σᵢ pᵢ²)`` (a JAX scalar).

    Args:
        resnet: a :class:`pyodejl.ResNet` with ``out_dim = 1``.
        theta: ``(p,)``.
        inputs: ``(B, in_dim)``; targets ``(B,)``.
        penalty: ``"none"``, ``"l2"`` or ``"stiff"`` (:func:`penalty_per_sample`), or
            ``"stiff-sampled"``: ``Σᵢ pᵢ²`` of ``"stiff"`` estimated by
            :func:`sampled_penalty_sq_sum` from ``triples``.
        lam: λ ≥ 0.
        triples: ``(3, K)`` integers, required by ``"stiff-sampled"`` (ignored otherwise).
    """
    if penalty != "stiff-sampled":
        r = resnet(theta, inputs)[:, 0] - targets
        p = penalty_per_sample(resnet, theta, inputs, penalty)
        return jnp.sqrt(jnp.sum(r**2) + lam * jnp.sum(p**2))
    if triples is None:
        raise ValueError("penalty 'stiff-sampled' needs triples (3, K) from draw_penalty_triples")
    states = resnet.hidden_states(theta, inputs)
    r = resnet.readout(resnet.split(theta)[2], states[-1])[:, 0] - targets
    return jnp.sqrt(jnp.sum(r**2) + lam * sampled_penalty_sq_sum(resnet, theta, states, triples))


# --------------------------------------------------------------------------------------
# reduce on plateau
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlateauState:
    """``lr``, the best monitored value so far, and the epochs since it improved."""

    lr: float
    best: float = math.inf
    bad_epochs: int = 0


def plateau_step(state: PlateauState, value: float, factor=0.1, patience=10, threshold=1e-4) -> PlateauState:
    """One epoch of PyTorch's ``ReduceLROnPlateau`` (mode "min", relative threshold, no cooldown).

    ``value`` improves on ``best`` if ``value < best·(1 − threshold)``; after more than
    ``patience`` epochs without improvement the rate is multiplied by ``factor``.
    """
    if value < state.best * (1.0 - threshold):
        return PlateauState(state.lr, float(value), 0)
    bad = state.bad_epochs + 1
    if bad > patience:
        return PlateauState(state.lr * factor, state.best, 0)
    return PlateauState(state.lr, state.best, bad)


# --------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------


class _ResNetTrainer:
    def __init__(self, config: StiffnessRunConfig, data):
        self.config = config
        self.net = config.resnet()
        self.xtr, self.ytr, self.xte, self.yte = (jnp.asarray(a) for a in data)
        self.opt = optax.scale_by_adam()
        net, penalty, lam, opt = self.net, _PENALTY[config.model], config.lam, self.opt

        def step(theta, state, x, y, lr, triples):
            value, g = jax.value_and_grad(lambda t: penalised_loss(net, t, x, y, penalty, lam, triples))(theta)
            updates, state = opt.update(g, state, theta)
            return theta - lr * updates, state, value

        self.step = jax.jit(step)
        self.mse = jax.jit(lambda t, x, y: jnp.mean((net(t, x)[:, 0] - y) ** 2))

    def init(self, seed):
        return np.asarray(self.net.init(seed), dtype=np.float64)

    def evaluate(self, theta, proxies: bool) -> dict:
        th = jnp.asarray(theta)
        rec = {
            "train_mse": float(self.mse(th, self.xtr, self.ytr)),
            "test_mse": float(self.mse(th, self.xte, self.yte)),
        }
        if proxies:
            from pyodejl.stiffness import layer_stiffness

            for m in PROXIES:
                kw = {"method": "eig"} if m == "spectral_radius" else {}
                rec[m] = float(jnp.sum(layer_stiffness(self.net, th, self.xtr, m, **kw)))
        return rec

    def hessian(self, theta):
        """Exact Hessian of the training MSE: forward-over-reverse products with the unit
        vectors, ``hessian_chunk`` at a time (``lax.map`` over chunks bounds the memory)."""
        net, xtr, ytr, chunk = self.net, self.xtr, self.ytr, self.config.hessian_chunk
        p = self.net.num_params
        grad = jax.grad(lambda t: jnp.mean((net(t, xtr)[:, 0] - ytr) ** 2))

        def hess(t):
            pad = (-p) % chunk
            basis = jnp.eye(p + pad, p).reshape(-1, chunk, p)
            block = lambda V: jax.vmap(lambda v: jax.jvp(grad, (t,), (v,))[1])(V)
            return jax.lax.map(block, basis).reshape(-1, p)[:p]

        if not hasattr(self, "_hess"):
            self._hess = jax.jit(hess)
        H = np.asarray(self._hess(jnp.asarray(theta)))
        return 0.5 * (H + H.T)


class _NodeTrainer:
    def __init__(self, config: StiffnessRunConfig, data):
        from pyodejl.experiments.models import ReadoutCost, _readout_size
        from pyodejl.experiments.tasks import Task

        self.config = config
        self.xtr, self.ytr, self.xte, self.yte = data
        self.task = Task(
            name="alpine02",
            sample="point",
            target="regression",
            dim=2,
            seed=config.data_seed,
            params={},
            x=self.xtr,
            y=self.ytr,
        )
        self.spec = config.node_spec().resolved(self.task)
        self.model = self.spec.neural_ode(self.task)
        self.cost = ReadoutCost("mse")
        self.extra = _readout_size(self.spec, self.task)
        self.opt = optax.scale_by_adam()
        self._update = jax.jit(lambda g, s, t: self.opt.update(g, s, t))

    def objective(self, x, y, penalised: bool):
        import pyodejl as pj
        from pyodejl.regularizers import StiffnessEstimate

        terms = [StiffnessEstimate(self.config.lam, aggregate="mean")] if penalised else None
        return pj.ObservationLoss(
            self.model, np.array([0.0, 1.0]), x, self.cost, data=y, num_extra_params=self.extra, regularizers=terms
        )

    def init(self, seed):
        from pyodejl.experiments.models import init_params

        return init_params(self.spec, self.task, seed)

    def step(self, theta, state, x, y, lr, triples=None):
        obj = self.objective(np.asarray(x), np.asarray(y), self.config.model == "node-stiff")
        value = obj.value(np.asarray(theta))
        g = obj.grad(np.asarray(theta))
        updates, state = self._update(jnp.asarray(g), state, jnp.asarray(theta))
        return jnp.asarray(theta) - lr * updates, state, value

    def evaluate(self, theta, proxies: bool) -> dict:
        theta = np.asarray(theta)
        tr = self.objective(self.xtr, self.ytr, True)
        terms = tr.terms(theta)
        rec = {
            "train_mse": terms["data"],
            "test_mse": float(self.objective(self.xte, self.yte, False).value(theta)),
            "stiffness_estimate": terms["stiffness_estimate"],
            "nfe": int(tr.stats(theta).nfe),
        }
        return rec

    def hessian(self, theta):
        return None


_TRAINERS: dict = {}


def _trainer(config, data):
    """The trainer of ``config`` (compiled steps shared by the seeds of one model: a few recent kept)."""
    key = (replace(config, seed=0, epochs=1), tuple(np.asarray(a).tobytes() for a in data))
    if key not in _TRAINERS:
        if len(_TRAINERS) >= 4:
            _TRAINERS.pop(next(iter(_TRAINERS)))
        _TRAINERS[key] = _NodeTrainer(config, data) if config.is_node else _ResNetTrainer(config, data)
    return _TRAINERS[key]


def _epoch_records(path: Path) -> list[dict]:
    """``records.jsonl`` (one object per epoch, key ``"epoch"``)."""
    return read_jsonl(path, key="epoch")


def _read_config(folder: Path):
    path = folder / "config.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        versions = d.pop("versions", None)
        return StiffnessRunConfig.from_dict(d), versions
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise RunFolderError(path, f"not a stiffness-run configuration ({exc})") from exc


def _write_config(folder: Path, config: StiffnessRunConfig, versions: dict):
    atomic_write_text(folder / "config.json", json.dumps({**config.as_dict(), "versions": versions}, indent=2) + "\n")


def _save_checkpoint(folder, epoch, theta, opt_state, plateau: PlateauState):
    leaves = jax.tree_util.tree_leaves(opt_state)
    atomic_savez(
        folder / "checkpoint.npz",
        epoch=np.asarray(epoch, dtype=np.int64),
        theta=np.asarray(theta, dtype=np.float64),
        num_leaves=np.asarray(len(leaves)),
        plateau=np.asarray([plateau.lr, plateau.best, plateau.bad_epochs], dtype=np.float64),
        **{f"opt_{i}": np.asarray(x) for i, x in enumerate(leaves)},
    )


def _load_checkpoint(folder, template, p, epochs):
    file = folder / "checkpoint.npz"
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            ck = {k: np.array(z[k]) for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any failure to read means a corrupt file
        raise RunFolderError(file, f"not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
    leaves, treedef = jax.tree_util.tree_flatten(template)
    missing = [k for k in ("epoch", "theta", "num_leaves", "plateau") if k not in ck]
    if missing or int(ck["num_leaves"]) != len(leaves) or any(f"opt_{i}" not in ck for i in range(len(leaves))):
        raise RunFolderError(file, f"missing or mismatched arrays (missing {missing})")
    epoch = int(ck["epoch"])
    if not 0 <= epoch <= epochs or ck["theta"].shape != (p,):
        raise RunFolderError(file, f"epoch {epoch} or θ shape {ck['theta'].shape} does not fit the configuration")
    state = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(ck[f"opt_{i}"], dtype=jnp.asarray(leaf).dtype) for i, leaf in enumerate(leaves)]
    )
    lr, best, bad = ck["plateau"]
    return epoch, ck["theta"], state, PlateauState(float(lr), float(best), int(bad))


def hessian_summary(spectrum, top: int = 5) -> dict:
    """Summary of an ascending Hessian spectrum: top eigenvalues, trace, negative mass.

    Returns:
        ``{"top": [largest ``top``, descending], "min", "trace", "negative_mass"
        (Σ of the negative eigenvalues), "negative_fraction" (share of negative
        eigenvalues), "negative_ratio" (|Σ negative| / Σ positive), "p"}``.
    """
    w = np.asarray(spectrum, dtype=np.float64)
    neg, pos = w[w < 0], w[w > 0]
    return {
        "top": [float(v) for v in w[::-1][:top]],
        "min": float(w[0]),
        "trace": float(np.sum(w)),
        "negative_mass": float(np.sum(neg)),
        "negative_fraction": float(neg.size / w.size),
        "negative_ratio": float(-np.sum(neg) / np.sum(pos)) if pos.size else math.inf,
        "p": int(w.size),
    }


def train_stiffness_run(
    config: StiffnessRunConfig | dict,
    out,
    *,
    hessian: bool = True,
    progress: bool = True,
    allow_version_change: bool = False,
    data=None,
    stop_after: int | None = None,
) -> dict:
    """Train one (model, seed) run into the folder ``out``, resuming it if it exists.

    Args:
        config: a :class:`StiffnessRunConfig` (or dict of its fields).
        out: the run folder. An existing folder with another configuration raises
            :class:`~pyodejl.experiments.ConfigMismatchError`; an unfinished one computed
            under other package versions raises
            :class:`~pyodejl.experiments.VersionMismatchError` unless
            ``allow_version_change``; a finished one is returned as it is.
        hessian: compute the exact Hessian spectrum of the data loss when training is
            done (ResNet models), also for a run finished earlier without it.
        progress: a tqdm bar over the epochs.
        data: ``alpine02_split(...)`` output, to share it between runs (default: drawn
            from the configuration).
        stop_after: stop (as a kill would) after this many epochs of this call —
            for tests of resumption.

    Returns:
        ``{"config", "records", "summary"}`` (``summary`` None if stopped early).
    """
    if isinstance(config, dict):
        config = StiffnessRunConfig.from_dict(config)
    config = config.resolved()
    out = Path(out)
    versions = package_versions()
    out.mkdir(parents=True, exist_ok=True)
    if (out / "config.json").exists():
        saved, saved_versions = _read_config(out)
        diff = {k: (v, config.as_dict()[k]) for k, v in saved.as_dict().items() if v != config.as_dict()[k]}
        if diff:
            lines = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ConfigMismatchError(
                f"run folder {out} holds a run with a different configuration ({lines}); "
                "use another folder, or delete this one to start over"
            )
        if (out / "summary.json").exists():
            if hessian and not config.is_node and not (out / "hessian.npz").exists():
                _add_hessian(out, config, data)
            return _load_run(out)
        vdiff = version_differences(saved_versions, versions)
        if vdiff and (out / "checkpoint.npz").exists():
            if not allow_version_change:
                raise VersionMismatchError(
                    f"run folder {out} was computed under other package versions ("
                    + ", ".join(f"{k}: saved {a}, now {b}" for k, (a, b) in vdiff.items())
                    + "); resuming would mix them. Pass --allow-version-change, or use another folder",
                    vdiff,
                )
        _write_config(out, config, versions)
    else:
        stale = [f for f in _RUN_FILES if (out / f).exists()]
        if stale:
            raise FileExistsError(f"{out} holds run files {stale} but no config.json; choose an empty folder")
        _write_config(out, config, versions)

    data = alpine02_split(config.n_train, config.n_test, config.data_seed) if data is None else data
    tr = _trainer(config, data)
    theta = tr.init(config.seed)
    state = tr.opt.init(jnp.asarray(theta))
    plateau = PlateauState(config.lr)
    ck = _load_checkpoint(out, state, theta.size, config.epochs)
    records = []
    start = 0
    if ck is not None:
        start, theta, state, plateau = ck
        records = [r for r in _epoch_records(out / "records.jsonl") if r["epoch"] <= start]
        if [r["epoch"] for r in records] != list(range(start + 1)):
            raise RunFolderError(out / "records.jsonl", f"records do not cover epochs 0..{start} once each")

    def proxies_at(e):
        return e % config.proxy_every == 0 or e == config.epochs

    if start == 0 and not records:
        rec = {
            "epoch": 0,
            "lr": plateau.lr,
            "objective": None,
            "wall_s": 0.0,
            "cpu_s": 0.0,
            **tr.evaluate(theta, proxies_at(0)),
        }
        records = [rec]
        atomic_write_text(out / "records.jsonl", jsonl_text(records))
        _save_checkpoint(out, 0, theta, state, plateau)

    from tqdm.auto import tqdm

    nb = config.n_train // config.batch_size
    bar = tqdm(
        total=config.epochs,
        initial=start,
        disable=not progress,
        unit="epoch",
        dynamic_ncols=True,
        desc=f"{config.model} seed {config.seed}",
    )
    done_now = 0
    try:
        for epoch in range(start + 1, config.epochs + 1):
            if stop_after is not None and done_now >= stop_after:
                return {"config": config, "records": records, "summary": None}
            perm = np.random.default_rng([config.seed, 2, epoch]).permutation(config.n_train)
            draws = np.random.default_rng([config.seed, 3, epoch])
            triples = draw_penalty_triples(draws, nb, config.batch_size, config.depth, config.penalty_draws)
            xtr, ytr = np.asarray(tr.xtr)[perm], np.asarray(tr.ytr)[perm]
            th = jnp.asarray(theta)
            values = []
            w0, c0 = time.perf_counter(), time.process_time()
            for b in range(nb):
                sl = slice(b * config.batch_size, (b + 1) * config.batch_size)
                th, state, v = tr.step(th, state, xtr[sl], ytr[sl], plateau.lr, triples[b])
                values.append(v)
            theta = np.asarray(jax.block_until_ready(th), dtype=np.float64)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            if not np.all(np.isfinite(theta)):
                raise FloatingPointError(f"θ became non-finite in epoch {epoch} of {out}; lower the learning rate")
            objective = float(np.mean([float(v) for v in values]))
            lr_used = plateau.lr
            plateau = plateau_step(
                plateau, objective, config.plateau_factor, config.plateau_patience, config.plateau_threshold
            )
            rec = {
                "epoch": epoch,
                "lr": lr_used,
                "objective": objective,
                "wall_s": wall,
                "cpu_s": cpu,
                **tr.evaluate(theta, proxies_at(epoch)),
            }
            records.append(rec)
            atomic_write_text(out / "records.jsonl", jsonl_text(records))
            _save_checkpoint(out, epoch, theta, state, plateau)
            done_now += 1
            bar.update(1)
            bar.set_postfix(train=f"{rec['train_mse']:.3g}", test=f"{rec['test_mse']:.3g}")
    finally:
        bar.close()

    summary = {
        "epochs": config.epochs,
        "final": records[-1],
        "train_wall_s": float(sum(r["wall_s"] for r in records)),
        "train_cpu_s": float(sum(r["cpu_s"] for r in records)),
        "num_params": int(theta.size),
        "hessian": None,
    }
    atomic_savez(out / "params.npz", theta=theta)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    if hessian and not config.is_node:
        _add_hessian(out, config, data)
    return _load_run(out)


def _add_hessian(out: Path, config: StiffnessRunConfig, data=None):
    """Exact Hessian spectrum of a finished ResNet run's training MSE: ``hessian.npz`` and summary entry."""
    data = alpine02_split(config.n_train, config.n_test, config.data_seed) if data is None else data
    with np.load(out / "params.npz") as z:
        theta = np.array(z["theta"])
    w0, c0 = time.perf_counter(), time.process_time()
    spectrum = np.linalg.eigvalsh(_trainer(config, data).hessian(theta))
    atomic_savez(out / "hessian.npz", spectrum=spectrum)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    summary["hessian"] = {
        **hessian_summary(spectrum),
        "wall_s": time.perf_counter() - w0,
        "cpu_s": time.process_time() - c0,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")


def _load_run(folder: Path) -> dict:
    folder = Path(folder)
    config, versions = _read_config(folder)
    summary = None
    if (folder / "summary.json").exists():
        try:
            summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunFolderError(folder / "summary.json", f"invalid JSON ({exc.msg})") from exc
    spectrum = None
    if (folder / "hessian.npz").exists():
        with np.load(folder / "hessian.npz") as z:
            spectrum = np.array(z["spectrum"])
    return {
        "config": config,
        "versions": versions,
        "records": _epoch_records(folder / "records.jsonl"),
        "summary": summary,
        "spectrum": spectrum,
        "path": folder,
    }


# --------------------------------------------------------------------------------------
# the experiment: every (model, seed)
# --------------------------------------------------------------------------------------


def run_stiffness_experiment(
    root,
    models=STIFFNESS_MODELS,
    seeds=(0, 1, 2, 3, 4),
    *,
    epochs: int = 50,
    node_epochs: int | None = None,
    lambdas: dict | None = None,
    hessian_seeds=None,
    progress: bool = True,
    allow_version_change: bool = False,
    log=print,
    **settings,
) -> dict:
    """Train every (model, seed) into ``root/<model>/seed_<s>``; finished runs are skipped.

    Args:
        root: experiment folder (created; :data:`EXPERIMENT_FILE` marks it).
        models: names from :data:`STIFFNESS_MODELS`.
        seeds: non-negative integers (at least one).
        epochs: epochs of the ResNet models; ``node_epochs`` those of the Neural ODE
            models (default: ``epochs``).
        lambdas: ``{model: λ}`` overrides of :data:`DEFAULT_LAMBDAS`.
        hessian_seeds: seeds whose trained ResNets get the exact Hessian spectrum
            (default: all of ``seeds``; ``()``: none). Hessians missing from finished
            runs are added by a later call.
        **settings: further :class:`StiffnessRunConfig` fields, for every run.

    Returns:
        :func:`load_stiffness_experiment` of ``root``.
    """
    models = list(models)
    bad = [m for m in models if m not in STIFFNESS_MODELS]
    if bad or not models:
        raise ValueError(f"unknown model(s) {bad}; expected names from {list(STIFFNESS_MODELS)}")
    seeds = list(seeds)
    if not seeds or any(not _is_int(s) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    hessian_seeds = set(seeds if hessian_seeds is None else hessian_seeds)
    lambdas = dict(lambdas or {})
    unknown = sorted(set(lambdas) - set(STIFFNESS_MODELS))
    if unknown:
        raise ValueError(f"lambdas for unknown models {unknown}; expected names from {list(STIFFNESS_MODELS)}")
    configs = []
    for m in models:
        ep = node_epochs if (m.startswith("node") and node_epochs is not None) else epochs
        for s in seeds:
            configs.append(
                StiffnessRunConfig(model=m, seed=int(s), epochs=ep, lam=lambdas.get(m), **settings).resolved()
            )
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / EXPERIMENT_FILE
    known = {}
    if marker.exists():
        known = json.loads(marker.read_text(encoding="utf-8"))
    runs = sorted(set(known.get("runs", [])) | {f"{c.model}/seed_{c.seed}" for c in configs})
    atomic_write_text(
        marker, json.dumps({"kind": "pyodejl-stiffness", "format": FORMAT_VERSION, "runs": runs}, indent=1) + "\n"
    )
    data_cache = {}
    for c in configs:
        folder = root / c.model / f"seed_{c.seed}"
        want_hessian = c.seed in hessian_seeds and not c.is_node
        if (folder / "summary.json").exists() and (folder / "config.json").exists():
            saved, _ = _read_config(folder)
            if saved == c and (not want_hessian or (folder / "hessian.npz").exists()):
                continue
        key = (c.n_train, c.n_test, c.data_seed)
        if key not in data_cache:
            data_cache[key] = alpine02_split(*key)
        res = train_stiffness_run(
            c,
            folder,
            hessian=want_hessian,
            progress=progress,
            allow_version_change=allow_version_change,
            data=data_cache[key],
        )
        if log is not None:
            f = res["records"][-1]
            log(
                f"{c.model} seed {c.seed}: train MSE {f['train_mse']:.4g}, test MSE {f['test_mse']:.4g}, "
                f"{res['summary']['train_wall_s']:.1f} s wall"
            )
    return load_stiffness_experiment(root)


def is_stiffness_experiment(root) -> bool:
    """Whether ``root`` is a folder written by :func:`run_stiffness_experiment`."""
    return (Path(root) / EXPERIMENT_FILE).exists()


def load_stiffness_experiment(root) -> dict:
    """``{model: [run dict per seed, ordered by seed]}`` of an experiment folder.

    Each run dict has ``config``, ``versions``, ``records`` (per epoch), ``summary``
    (None while unfinished), ``spectrum`` (Hessian eigenvalues, ascending, or None), ``path``.

    Raises:
        FileNotFoundError: ``root`` is not an experiment folder.
    """
    root = Path(root)
    if not is_stiffness_experiment(root):
        raise FileNotFoundError(f"{root} is not a stiffness experiment folder (no {EXPERIMENT_FILE})")
    out = {}
    for m in STIFFNESS_MODELS:
        d = root / m
        if not d.is_dir():
            continue
        folders = sorted(
            (f for f in d.glob("seed_*") if (f / "config.json").exists()), key=lambda f: int(f.name.split("_")[1])
        )
        runs = [_load_run(f) for f in folders]
        if runs:
            out[m] = runs
    return out


def _spread(values):
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"median": None, "min": None, "max": None, "q25": None, "q75": None, "n": 0}
    return {
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "q25": float(np.percentile(v, 25)),
        "q75": float(np.percentile(v, 75)),
        "n": int(v.size),
    }


def stiffness_table(experiment: dict) -> dict:
    """Seed 001's table from :func:`load_stiffness_experiment` output, finished runs only.

    Returns:
        ``{model: {column: {"median", "min", "max", "q25", "q75", "n"}}}`` with columns
        ``ER`` (final training MSE), ``GE`` (final test MSE), the final proxies
        (:data:`PROXIES`; Neural ODEs: ``stiffness_estimate``, ``nfe``), ``wall_s`` and
        ``cpu_s`` (training, summed over epochs), ``epoch_wall_s`` (median epoch), and the
        Hessian's ``eig_max``, ``trace``, ``negative_mass``.
    """
    table = {}
    for m, runs in experiment.items():
        done = [r for r in runs if r["summary"] is not None]
        if not done:
            continue
        fin = [r["summary"]["final"] for r in done]
        cols = {"ER": [f["train_mse"] for f in fin], "GE": [f["test_mse"] for f in fin]}
        for k in (*PROXIES, "stiffness_estimate", "nfe"):
            if any(k in f for f in fin):
                cols[k] = [f.get(k) for f in fin]
        cols["wall_s"] = [r["summary"]["train_wall_s"] for r in done]
        cols["cpu_s"] = [r["summary"]["train_cpu_s"] for r in done]
        cols["epoch_wall_s"] = [float(np.median([x["wall_s"] for x in r["records"][2:]] or [np.nan])) for r in done]
        hs = [r["summary"]["hessian"] for r in done if r["summary"].get("hessian")]
        if hs:
            cols["eig_max"] = [h["top"][0] for h in hs]
            cols["trace"] = [h["trace"] for h in hs]
            cols["negative_mass"] = [h["negative_mass"] for h in hs]
        table[m] = {k: _spread(v) for k, v in cols.items()}
        table[m]["epochs"] = done[0]["summary"]["epochs"]
        table[m]["seeds"] = [r["config"].seed for r in done]
    return table
