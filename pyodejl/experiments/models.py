"""Objective builders for the experiment models: Neural ODEs, augmented Neural ODE, MLP.

* ``node`` — a Neural ODE (Chen et al. 2018) whose vector field is an MLP
  ``D -> width x depth -> D``.
* ``concat-node`` — a Neural ODE whose vector field feeds ``t`` to every layer and
  squashes its output by tanh (:class:`pyodejl.models.ConcatTimeMLP`): seed 004's
  MNIST model f(x, t) = tanh(W₂[tanh(W₁[x; t] + B₁); t] + B₂), which on ``digits``
  at ``dim=784, width=100`` has 158 568 + 7 850 (readout) = 166 418 parameters.
* ``anode`` — the same with the state padded by ``augment_dim`` zeros
  (Dupont et al. 2019; seed 000 Eq. 9).
* ``mlp`` — a feedforward network baseline (seed 000 Fig. 9).

What the model predicts depends on the task (see :mod:`pyodejl.experiments.tasks`):

* trajectory tasks: the Neural ODE's data dimensions *are* the prediction
  (no readout parameters; the seed's 4-parameter Neural ODE for the 1-D
  exponential is a ``1 -> 1 -> 1`` vector field); the MLP maps ``t`` (observation
  tasks) or ``(y0, t)`` (trajectory tasks) to the state.
* point tasks (nested spheres, alpine02): the flow runs from ``t = 0`` to
  ``t = flow_time`` (default 1) and a linear readout ``w · y(T) + b`` of the whole
  (augmented) final state gives the scalar output; ``w`` and ``b`` are the last
  ``D + 1`` entries of θ (Dupont et al. 2019's ``linear_layer``). Multiclass tasks
  (``digits``) read ``C`` logits ``W y(T) + b`` (``W`` ``C x D``, seed 004's linear
  classifier); the last ``C (D + 1)`` entries of θ are ``W`` (row-major) then ``b``.

Losses: trajectories ``mse`` (seed 000 Eq. 1) or ``abs`` (absolute difference,
seed 000 Fig. 2); nested spheres ``mse`` on the ±1 labels (default — Dupont et al.
2019 regress g(x) with a squared error and seed 000 §6 reuses their setup) or
``logistic`` (mean softplus(−y·f), a classification log-loss); alpine02 ``mse`` or ``abs``;
digits ``cross-entropy`` (mean softmax cross-entropy of the logits).

θ layout: ``[vector-field (or MLP) parameters, readout W (C x D, row-major), readout b (C)]``
with ``C = 1`` except for multiclass tasks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np

import pyodejl as pj
from pyodejl.experiments.tasks import Task

__all__ = [
    "MODEL_KINDS",
    "LOSSES",
    "ModelSpec",
    "SoftmaxReadoutCost",
    "build_objective",
    "init_params",
    "parameter_counts",
    "predict",
    "accuracy",
    "softmax_cross_entropy",
]

MODEL_KINDS = ("node", "anode", "concat-node", "mlp")
LOSSES = {
    "trajectory": ("mse", "abs"),
    "classification": ("mse", "logistic"),
    "multiclass": ("cross-entropy",),
    "regression": ("mse", "abs"),
}


def _residual_loss(kind, r):
    if kind == "mse":
        return jnp.mean(r**2)
    if kind == "abs":
        return jnp.mean(jnp.abs(r))
    raise ValueError(f"unknown residual loss {kind!r}")


def softmax_cross_entropy(logits, labels):
    """Mean over the batch of ``−log softmax(logits)[label]``; logits ``(B, C)``, integer labels ``(B,)``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def _scalar_loss(kind, pred, y):
    if kind == "cross-entropy":
        return softmax_cross_entropy(pred, y)
    if kind == "logistic":
        return jnp.mean(jax.nn.softplus(-y * pred))
    return _residual_loss(kind, pred - y)


@dataclass(frozen=True)
class StateCost:
    """Trajectory-fit cost on ODE states: mean ρ(y − target) over (b, t, i).

    ``Y`` is ``(B, T + 1, D)`` with ``T + 1`` times including the initial one,
    which is skipped; only the first ``d`` (data) dimensions are compared.
    """

    loss: str

    def __call__(self, extra, Y, targets):
        d = targets.shape[-1]
        return _residual_loss(self.loss, Y[:, 1:, :d] - targets)


@dataclass(frozen=True)
class ReadoutCost:
    """Cost of a linear readout of the final state: ``f = Y[:, -1] @ w + b``."""

    loss: str

    def __call__(self, extra, Y, y):
        D = Y.shape[-1]
        pred = Y[:, -1, :] @ extra[:D] + extra[D]
        return _scalar_loss(self.loss, pred, y)


@dataclass(frozen=True)
class SoftmaxReadoutCost:
    """Softmax cross-entropy of a linear classifier on the final state (seed 004 §3.1.1).

    ``extra`` = ``[W (C x D) row-major, b (C)]``; logits ``Y[:, -1] @ W.T + b``;
    labels are integers in ``[0, C)``.
    """

    num_classes: int

    def logits(self, extra, final_state):
        """``(B, C)`` logits of final states ``(B, D)``."""
        C, D = self.num_classes, final_state.shape[-1]
        W = extra[: C * D].reshape(C, D)
        return final_state @ W.T + extra[C * D : C * D + C]

    def __call__(self, extra, Y, labels):
        return softmax_cross_entropy(self.logits(extra, Y[:, -1, :]), labels)


@dataclass(frozen=True)
class MLPLoss:
    """Loss of a feedforward network ``net.apply(θ, X)`` against ``Y``."""

    net: pj.MLP
    loss: str

    def __call__(self, theta, X, Y):
        pred = self.net.apply(theta, X)
        if Y.ndim == 1 and self.loss != "cross-entropy":
            pred = pred[:, 0]
        return _scalar_loss(self.loss, pred, Y)


@dataclass(frozen=True)
class ModelSpec:
    """A model of the experiments.

    Args:
        kind: ``"node"``, ``"anode"``, ``"concat-node"`` or ``"mlp"``.
        width: hidden width (default 16).
        depth: number of hidden layers (default 1).
        activation: hidden activation (default ``"tanh"``; see :data:`pyodejl.models.mlp.ACTIVATIONS`).
        augment_dim: zeros appended to the state (``anode`` only; default 1 for anode, 0 otherwise).
        time_dependent: feed ``t`` to the vector field's first layer (node/anode only;
            ``concat-node`` always feeds it to every layer).
        loss: see the module docstring; ``None`` picks ``"mse"`` (``"cross-entropy"``
            for multiclass tasks).
        solver: ODE solver name (node/anode; default dopri5).
        rtol: relative tolerance (default 1e-7).
        atol: absolute tolerance (default 1e-9).
        max_steps: step limit of one solve (default 4096).
        flow_time: integration time of point tasks (default 1.0).
    """

    kind: str
    width: int = 16
    depth: int = 1
    activation: str = "tanh"
    augment_dim: int | None = None
    time_dependent: bool = False
    loss: str | None = None
    solver: str = "dopri5"
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096
    flow_time: float = 1.0

    def resolved(self, task: Task) -> ModelSpec:
        """A copy with defaults filled in, validated against ``task``.

        Raises:
            ValueError: naming the bad field and what was expected.
        """
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind must be one of {list(MODEL_KINDS)}, got {self.kind!r}")
        for name in ("width", "depth", "max_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        from pyodejl.models.mlp import activation_fn

        activation_fn(self.activation)
        aug = self.augment_dim
        if self.kind == "anode":
            aug = 1 if aug is None else aug
            if isinstance(aug, bool) or not isinstance(aug, (int, np.integer)) or aug < 1:
                raise ValueError(f"an augmented Neural ODE needs augment_dim >= 1, got {aug!r}")
        else:
            if aug not in (None, 0):
                raise ValueError(
                    f"augment_dim={aug} only applies to model 'anode' (got model {self.kind!r})")
            aug = 0
        if self.kind in ("mlp", "concat-node") and self.time_dependent:
            raise ValueError(f"time_dependent applies to node/anode vector fields, not to model {self.kind!r}"
                             + (" (it always feeds t to every layer)" if self.kind == "concat-node" else ""))
        loss = self.loss or LOSSES[task.target][0]
        allowed = LOSSES[task.target]
        if loss not in allowed:
            raise ValueError(f"loss {loss!r} does not fit task {task.name!r} ({task.target}); "
                             f"expected one of {list(allowed)}")
        if not (math.isfinite(self.flow_time) and self.flow_time > 0):
            raise ValueError(f"flow_time must be positive, got {self.flow_time!r}")
        spec = ModelSpec(self.kind, int(self.width), int(self.depth), self.activation, int(aug),
                         bool(self.time_dependent), loss, self.solver, float(self.rtol),
                         float(self.atol), int(self.max_steps), float(self.flow_time))
        if spec.kind != "mlp":
            spec.neural_ode(task)  # validates solver and tolerances
        return spec

    def as_dict(self) -> dict:
        return asdict(self)

    # ---- networks ------------------------------------------------------------------
    def vector_field(self, task: Task):
        """A :class:`pyodejl.MLP` (node, anode) or :class:`pyodejl.models.ConcatTimeMLP` (concat-node)."""
        D = task.dim + (self.augment_dim or 0)
        sizes = [D] + [self.width] * self.depth + [D]
        if self.kind == "concat-node":
            from pyodejl.models.time_mlp import ConcatTimeMLP

            return ConcatTimeMLP(sizes, activation=self.activation, output_activation="tanh")
        return pj.MLP(sizes, activation=self.activation, time_dependent=self.time_dependent)

    def neural_ode(self, task: Task) -> pj.NeuralODE:
        return pj.NeuralODE(self.vector_field(task), solver=self.solver, rtol=self.rtol,
                            atol=self.atol, max_steps=self.max_steps,
                            augment_dim=self.augment_dim or 0)

    def mlp(self, task: Task) -> pj.MLP:
        if task.sample == "observation":
            n_in = 1
        elif task.sample == "trajectory":
            n_in = task.dim + 1
        else:
            n_in = task.dim
        return pj.MLP([n_in] + [self.width] * self.depth + [task.output_dim],
                      activation=self.activation)


def readout_size(spec: ModelSpec, task: Task) -> int:
    """Parameters of the linear readout of a point task's model (0 for mlp and trajectory tasks)."""
    if spec.kind == "mlp" or task.sample != "point":
        return 0
    return task.output_dim * (task.dim + spec.augment_dim + 1)


def parameter_counts(spec: ModelSpec, task: Task) -> dict:
    """``{"network": ..., "readout": ..., "total": ...}`` parameter counts.

    ``network`` is the vector field (node/anode) or the feedforward network (mlp).
    """
    spec = spec.resolved(task)
    net = spec.mlp(task) if spec.kind == "mlp" else spec.vector_field(task)
    r = readout_size(spec, task)
    return {"network": net.num_params, "readout": r, "total": net.num_params + r}


def init_params(spec: ModelSpec, task: Task, seed: int) -> np.ndarray:
    """Initial θ, float64 ``(p,)``: PyTorch's ``nn.Linear`` initialisation
    (U(±1/√fan_in)) for the network and the readout, from ``default_rng([seed, 1])``."""
    spec = spec.resolved(task)
    rng = np.random.default_rng([int(seed), 1])
    net_seed = int(rng.integers(2**31 - 1))
    net = spec.mlp(task) if spec.kind == "mlp" else spec.vector_field(task)
    theta = net.init(net_seed)
    r = readout_size(spec, task)
    if r:
        D = task.dim + spec.augment_dim
        bound = 1.0 / math.sqrt(D)
        theta = np.concatenate([theta, rng.uniform(-bound, bound, size=r)])
    return theta.astype(np.float64)


def _index(task: Task, indices):
    n = task.num_samples
    if indices is None:
        return np.arange(n)
    idx = np.sort(np.asarray(indices, dtype=np.int64).reshape(-1))
    if idx.size == 0 or idx[0] < 0 or idx[-1] >= n or np.any(np.diff(idx) == 0):
        raise ValueError(f"indices must be distinct integers in [0, {n}), got {np.asarray(indices)!r}")
    return idx


def _mlp_data(task: Task, idx):
    if task.sample == "observation":
        return task.times[idx][:, None], task.ys[0, idx]
    if task.sample == "trajectory":
        y0 = task.y0[idx]  # (b, d)
        T = len(task.times)
        X = np.concatenate([np.repeat(y0[:, None, :], T, axis=1),
                            np.broadcast_to(task.times[None, :, None], (len(idx), T, 1))], axis=-1)
        return X.reshape(-1, task.dim + 1), task.ys[idx].reshape(-1, task.dim)
    return task.x[idx], task.y[idx]


def build_objective(spec: ModelSpec, task: Task, indices=None, batch_size: int | None = None):
    """The loss of ``spec`` on the samples ``indices`` of ``task`` as a pyodejl objective.

    Args:
        spec: the model.
        task: the data.
        indices: sample indices (any order, distinct; sorted internally so that
            observation times increase); ``None`` = every sample (full batch).
        batch_size: if given and smaller than the number of samples, the samples
            are split (in sorted order) into ``ceil(n / batch_size)`` near-equal
            mini-batches, each solved as its own system, and the loss is their mean
            weighted by sample counts — the same mean over samples, with the memory of
            one mini-batch (:class:`pyodejl.derivatives.MinibatchObjective`).

    Returns:
        an :class:`pyodejl.ObservationLoss` (node/anode/concat-node),
        :class:`pyodejl.FunctionObjective` (mlp) or, with ``batch_size``, a
        :class:`~pyodejl.derivatives.MinibatchObjective` of them, with
        ``num_params`` as in :func:`parameter_counts`.
    """
    spec = spec.resolved(task)
    idx = _index(task, indices)
    if batch_size is not None:
        from pyodejl.derivatives.minibatch import MinibatchObjective, split_batches

        parts = split_batches(idx, batch_size)
        if len(parts) > 1:
            return MinibatchObjective([build_objective(spec, task, part) for part in parts],
                                      weights=[len(part) for part in parts])
    if spec.kind == "mlp":
        net = spec.mlp(task)
        X, Y = _mlp_data(task, idx)
        return pj.FunctionObjective(MLPLoss(net, spec.loss), net.num_params, args=(X, Y))
    model = spec.neural_ode(task)
    if task.sample == "observation":
        ts = np.concatenate([[task.t0], task.times[idx]])
        return pj.ObservationLoss(model, ts, task.y0[0], StateCost(spec.loss),
                                  data=task.ys[:, idx])
    if task.sample == "trajectory":
        ts = np.concatenate([[task.t0], task.times])
        return pj.ObservationLoss(model, ts, task.y0[idx], StateCost(spec.loss), data=task.ys[idx])
    cost = SoftmaxReadoutCost(task.num_classes) if task.target == "multiclass" else ReadoutCost(spec.loss)
    return pj.ObservationLoss(model, np.array([0.0, spec.flow_time]), task.x[idx], cost,
                              data=task.y[idx], num_extra_params=readout_size(spec, task))


def predict(spec: ModelSpec, task: Task, theta, indices=None) -> np.ndarray:
    """Model outputs on the samples ``indices``.

    Returns:
        point tasks: ``(b,)`` scalar outputs (multiclass: ``(b, C)`` logits);
        observation tasks: ``(b, d)``; trajectory tasks: ``(b, T, d)``.
    """
    spec = spec.resolved(task)
    idx = _index(task, indices)
    theta = np.asarray(theta, dtype=np.float64)
    if spec.kind == "mlp":
        net = spec.mlp(task)
        X, _ = _mlp_data(task, idx)
        out = np.asarray(net.apply(jnp.asarray(theta), jnp.asarray(X)))
        if task.sample == "point":
            return out if task.target == "multiclass" else out[:, 0]
        if task.sample == "trajectory":
            return out.reshape(len(idx), len(task.times), task.dim)
        return out
    obj = build_objective(spec, task, idx)
    Y = np.asarray(obj.solve(theta).ys)  # (B, T+1, D)
    if task.sample == "point":
        D = Y.shape[-1]
        extra = theta[obj.model.num_params:]
        if task.target == "multiclass":
            return np.asarray(SoftmaxReadoutCost(task.num_classes).logits(extra, Y[:, -1, :]))
        return Y[:, -1, :] @ extra[:D] + extra[D]
    if task.sample == "observation":
        return Y[0, 1:, : task.dim]
    return Y[:, 1:, : task.dim]


def accuracy(spec: ModelSpec, task: Task, theta, indices=None) -> float:
    """Fraction of points classified correctly: the output has the sign of the ±1
    label (classification), or the largest logit is the label's (multiclass)."""
    if task.target not in ("classification", "multiclass"):
        raise ValueError(f"accuracy needs a classification task, got {task.name!r} ({task.target})")
    idx = _index(task, indices)
    out = predict(spec, task, theta, idx)
    if task.target == "multiclass":
        return float(np.mean(np.argmax(out, axis=-1) == task.y[idx]))
    return float(np.mean(np.sign(out) == task.y[idx]))
