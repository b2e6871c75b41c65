"""The one trainer: Optax on an objective, resumable through a :class:`~pyodejl.experiments.folder.RunFolder`.

What an experiment declares (:class:`Training`) is a value; :func:`train` runs it.

* **One compiled step.** With the objective's own gradient (the discrete one
  for ODE losses, the implicit one for DEQs), the objective's
  discretisation at θ (``Objective.direct_function``: for an adaptive solve, its
  accepted step grid, found by one forward solve) is differentiated, and loss,
  gradient and the Optax update run in one ``jax.jit`` call; θ and the Optax
  state stay on the device. The host reads back the loss at the recording
  cadence and θ only where something reads it there: a measurement, a
  checkpoint, or an objective whose forward solve fixes its discretisation on
  the host (``Objective.direct_function_reads_theta``: adaptive ODE and SDE
  solves, not DEQs or plain losses). The continuous adjoints take their
  gradient from the objective, followed by the compiled update.
* **Minibatches** come from a seeded sampler (:func:`batch_indices`): epoch e is
  the permutation ``default_rng([seed, 2, e])``; nothing but the step is needed
  to reproduce a batch.
* **Schedules.** Term weights follow :mod:`pyodejl.regularizers.schedules`
  (data of the compiled loss: no recompilation); the learning rate can be cut on
  a plateau by Optax's own ``optax.contrib.reduce_on_plateau``, whose state is
  part of the checkpointed Optax state.
* **Measurements** (:class:`Measurement`) run every ``every`` steps and on the
  trained θ; each returns a dict of numbers that becomes a record.
* **Timings** keep compilation out: JAX reports every backend compilation
  through ``jax.monitoring``; a step during which XLA compiled a program is not
  timed (its wall time is reported as ``compile_s``) and counts as the mean of
  the timed steps, so a late recompilation (a new step-grid length, a new batch
  shape) does not land in the training time.
* **Resumption.** θ, the Optax state and the accumulated timings are
  checkpointed every ``checkpoint_every`` steps; all randomness is a function of
  ``(seed, step)``, so a run killed at any moment and resumed computes the same
  numbers as an uninterrupted one.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jax
import numpy as np
import optax

from pyodejl.experiments.folder import RunFolder
from pyodejl.regularizers.sampled import is_sampled
from pyodejl.regularizers.schedules import weights_at

__all__ = ["OPTIMIZERS", "Measurement", "Plateau", "Problem", "Training", "backend_compilations", "batch_indices",
           "best_time", "compile_seconds", "train"]

#: The Optax transformation of each optimizer name ("gd" is "sgd" on the full batch).
OPTIMIZERS = {"adam": optax.adam, "adabelief": optax.adabelief, "sgd": optax.sgd, "gd": optax.sgd}


def batch_indices(seed: int, step: int, num_samples: int, batch_size: int | None) -> np.ndarray | None:
    """Sample indices of minibatch ``step`` (``None`` = full batch).

    Epoch ``e = step // (num_samples // batch_size)`` shuffles with
    ``default_rng([seed, 2, e])``; the batch is the ``step mod batches``-th slice of
    that permutation. The last ``num_samples mod batch_size`` samples of each
    permutation are dropped (each epoch drops different ones), so every batch has
    one shape and one compilation.
    """
    if batch_size is None or batch_size >= num_samples:
        return None
    per_epoch = num_samples // batch_size
    epoch, k = divmod(int(step), per_epoch)
    perm = _epoch_permutation(int(seed), epoch, int(num_samples))
    return np.sort(perm[k * batch_size : (k + 1) * batch_size])


@functools.lru_cache(maxsize=8)
def _epoch_permutation(seed: int, epoch: int, num_samples: int) -> np.ndarray:
    # drawn once an epoch, not once a step: a generator's construction costs more than a small step
    perm = np.random.default_rng([seed, 2, epoch]).permutation(num_samples)
    perm.setflags(write=False)
    return perm


@dataclass(frozen=True)
class Plateau:
    """Cut the learning rate by ``factor`` after ``patience`` evaluations without a relative
    improvement of ``rtol`` in the training loss (``optax.contrib.reduce_on_plateau``, as
    PyTorch's ReduceLROnPlateau). An evaluation is the mean loss of ``accumulation_size``
    steps (e.g. one epoch of minibatches)."""

    factor: float = 0.1
    patience: int = 10
    rtol: float = 1e-4
    cooldown: int = 0
    accumulation_size: int = 1


@dataclass(frozen=True)
class Measurement:
    """A measurement at a cadence, and always on the trained θ.

    Attributes:
        name: names it in messages; the keys of ``fn``'s dict are the record's keys.
        fn: ``(objective, theta) -> dict`` of JSON numbers; ``objective`` is the
            full-batch training objective.
        every: also every so many steps, before the step's update (0: not).
        at: also at these steps (the training's last step count included: after
            the last update).
        with_step: call ``fn(objective, theta, step)`` (e.g. to seed an estimator
            from the step).
    """

    name: str
    fn: Callable
    every: int = 0
    at: tuple = ()
    with_step: bool = False

    def __call__(self, objective, theta, step):
        return self.fn(objective, theta, step) if self.with_step else self.fn(objective, theta)

    def due(self, step: int) -> bool:
        return bool(self.every and step % self.every == 0) or step in self.at


@dataclass(frozen=True)
class Training:
    """How a run trains.

    Attributes:
        steps: optimiser steps (0: measure θ0 only).
        lr: learning rate.
        optimizer: ``"adam"`` (default), ``"adabelief"`` (Zhuang et al. 2020; seed 004's
            Neural SDE), ``"sgd"`` (plain minibatch steps) or ``"gd"``.
        batch_size: samples per step (None: full batch).
        gradient: gradient method, a name or object (default None: the objective's
            own, e.g. ``"discrete"`` for ODE losses, ``"implicit"`` for DEQs, which
            the trainer differentiates in its compiled step).
        schedules: ``{term name: schedule or number}`` of the regulariser weights.
        plateau: a :class:`Plateau` learning-rate cut, or None.
        record_every: record the training loss every so many steps (default 10).
        checkpoint_every: checkpoint every so many steps (default 10).
    """

    steps: int
    lr: float
    optimizer: str = "adam"
    batch_size: int | None = None
    gradient: object = None
    schedules: Mapping = field(default_factory=dict)
    plateau: Plateau | None = None
    record_every: int = 10
    checkpoint_every: int = 10

    def __post_init__(self):
        from pyodejl._validation import check_integer, check_number

        # zero steps: an evaluation-only run, its measurements taken at θ0
        check_integer(self.steps, "steps", minimum=0)
        check_number(self.lr, "lr")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {list(OPTIMIZERS)}")
        if self.batch_size is not None:
            check_integer(self.batch_size, "batch_size")
        check_integer(self.record_every, "record_every")
        check_integer(self.checkpoint_every, "checkpoint_every")


@dataclass(frozen=True)
class Problem:
    """What one run trains.

    Attributes:
        theta0: the initial θ ``(p,)``.
        objective: ``(step, indices) -> Objective``: the objective of training
            step ``step`` on the samples ``indices`` (None: all); step -1 asks for
            the full-batch objective the measurements read.
        num_samples: samples the minibatch sampler draws from.
        varies: the objective changes from step to step even at full batch (e.g.
            STEER's random end times); otherwise it is built once per batch.
    """

    theta0: np.ndarray
    objective: Callable
    num_samples: int = 1
    varies: bool = False


# --------------------------------------------------------------------------------------
# timing without compilation
# --------------------------------------------------------------------------------------

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   _BACKEND_COMPILE)
_compile_total = [0.0, 0]  # seconds tracing, lowering and compiling; backend compilations


def _on_duration(event, duration, **kwargs):
    if event in _COMPILE_EVENTS:
        _compile_total[0] += duration
        _compile_total[1] += event == _BACKEND_COMPILE


jax.monitoring.register_event_duration_secs_listener(_on_duration)


def compile_seconds() -> float:
    """Seconds this process has spent tracing, lowering and compiling JAX programs."""
    return _compile_total[0]


def backend_compilations() -> int:
    """How many programs XLA has compiled in this process (tracing alone, e.g. ``jax.eval_shape``,
    does not count)."""
    return _compile_total[1]


class _Clock:
    """Wall and CPU seconds of the training steps, compilation kept out.

    A step during which XLA compiled a program is not timed: its wall time goes
    to ``compile``, and the step is counted in ``skipped``; the totals add the
    mean of the timed steps for each skipped one, so a run's training time
    covers every step whatever its compilations.
    """

    def __init__(self, wall=0.0, cpu=0.0, compile_s=0.0, timed=0, skipped=0):
        self.wall, self.cpu, self.compile = float(wall), float(cpu), float(compile_s)
        self.timed, self.skipped = int(timed), int(skipped)

    def state(self) -> np.ndarray:
        return np.array([self.wall, self.cpu, self.compile, self.timed, self.skipped], dtype=np.float64)

    def __enter__(self):
        self._start = (time.perf_counter(), time.process_time(), backend_compilations())
        return self

    def __exit__(self, *exc):
        w0, c0, k0 = self._start
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if backend_compilations() > k0:
            self.compile += wall
            self.skipped += 1
        else:
            self.wall += wall
            self.cpu += cpu
            self.timed += 1
        return False

    def totals(self) -> tuple[float, float]:
        """(wall, CPU) seconds of all steps: the timed ones plus their mean for each skipped one."""
        if self.timed == 0:
            return math.nan, math.nan
        scale = (self.timed + self.skipped) / self.timed
        return self.wall * scale, self.cpu * scale


def best_time(fn, repeats: int = 5) -> tuple[float, float]:
    """``(best wall, best CPU)`` seconds of ``fn()`` over ``repeats`` calls after a warm-up
    call (which compiles)."""
    fn()
    wall = cpu = math.inf
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


# --------------------------------------------------------------------------------------
# the compiled pieces
# --------------------------------------------------------------------------------------


_compiled: dict = {}  # optimisers and jitted steps, shared by every run of a process


def _optimizer(training: Training):
    """One Optax transformation per (optimizer, lr, plateau), so compiled steps are shared across runs."""
    key = (training.optimizer, float(training.lr), training.plateau)
    if key not in _compiled:
        base = OPTIMIZERS[training.optimizer](training.lr)
        if training.plateau is not None:
            p = training.plateau
            base = optax.chain(base, optax.contrib.reduce_on_plateau(
                factor=p.factor, patience=p.patience, rtol=p.rtol, cooldown=p.cooldown,
                accumulation_size=p.accumulation_size))
        _compiled[key] = base
    return _compiled[key]


def _fused_step(fn, opt):
    key = ("fused", fn, opt)
    if key not in _compiled:
        def step(theta, state, args):
            loss, g = jax.value_and_grad(fn)(theta, *args)
            updates, state = opt.update(g, state, theta, value=loss)
            return optax.apply_updates(theta, updates), state, loss

        _compiled[key] = jax.jit(step)
    return _compiled[key]


def _update_step(opt):
    key = ("update", opt)
    if key not in _compiled:
        def update(theta, state, g, loss):
            updates, state = opt.update(g, state, theta, value=loss)
            return optax.apply_updates(theta, updates), state

        _compiled[key] = jax.jit(update)
    return _compiled[key]


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------


def _record_measurements(write, measurements, objective, theta, step, final):
    """Run the measurements due at ``step`` (all of them when ``final``); the ones due at
    the step are also written as a record."""
    out, record = {}, {}
    for m in measurements:
        if final or m.due(step):
            values = m(objective, theta, step)
            out.update(values)
            if m.due(step):
                record.update(values)
    if record:
        write({"step": step, "kind": "measurement", **record})
    return out


def train(problem: Problem, training: Training, folder: RunFolder | None = None, *, seed: int = 0,
          measurements: tuple[Measurement, ...] = (), progress: Callable | None = None,
          callback: Callable | None = None) -> dict:
    """Train ``problem`` as ``training`` says, resuming ``folder``'s checkpoint.

    Args:
        problem: the :class:`Problem`.
        training: the :class:`Training`.
        folder: the run folder (None: nothing is written, nothing resumed); its
            records get ``{"step", "kind": "loss", "loss"}``
            every ``record_every`` steps and the measurements at their cadence.
        seed: seeds the minibatches and the sampled terms' draws (``seed·10⁶ + k``
            at step k).
        measurements: cadence measurements; every one also runs on the trained θ.
        progress: ``progress(steps_done)`` after each step (e.g. a tqdm update).
        callback: ``callback(steps_done, theta)`` after each step, θ as a NumPy
            array (an exception raised in it stops the run as a kill would).

    Returns:
        ``{"theta": (p,), "final": {measurements on the trained θ}, "records": [the
        records written by this call], "train_wall_s", "train_cpu_s", "compile_s",
        "compiling_steps"}``:
        seconds of this and all earlier segments of the run, the first two
        without compilation (see the module docstring), and the number of steps
        that compiled.

    Raises:
        pyodejl.SolveError: the loss or θ became non-finite.
    """
    from pyodejl.solving import SolveError

    opt = _optimizer(training)
    theta = np.asarray(problem.theta0, dtype=np.float64)
    state = opt.init(jax.numpy.asarray(theta))
    leaves, treedef = jax.tree_util.tree_flatten(state)
    template = {"theta": theta, "clock": _Clock().state(),
                **{f"opt_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}}
    resumed = None if folder is None else folder.resume(template)
    clock = _Clock()
    start = 0
    if resumed is not None:
        start, arrays = resumed
        theta = arrays["theta"]
        state = jax.tree_util.tree_unflatten(treedef, [arrays[f"opt_{i}"] for i in range(len(leaves))])
        clock = _Clock(*arrays["clock"])

    def checkpoint(step):
        if folder is None:
            return
        folder.save_checkpoint(step, {"theta": np.asarray(theta_dev), "clock": clock.state(),
                                      **{f"opt_{i}": np.asarray(x)
                                         for i, x in enumerate(jax.tree_util.tree_leaves(state))}})

    written = []

    def write(record):
        written.append(record)
        if folder is not None:
            folder.append(record)

    full = problem.objective(-1, None)
    update = _update_step(opt)
    theta_dev = jax.numpy.asarray(theta)
    # ``theta`` is the host copy of ``theta_dev`` or None: copied only when something reads it on
    # the host (an objective whose forward solve fixes its discretisation, a measurement, a record,
    # a checkpoint), so a step of a purely traced objective never waits for the device

    def host_theta(k):
        nonlocal theta
        if theta is None:
            theta = np.asarray(theta_dev)
        if not np.all(np.isfinite(theta)):
            raise SolveError(f"training diverged at step {k}: θ is not finite (lower the learning rate)")
        return theta

    for k in range(start, training.steps):
        if any(m.due(k) for m in measurements):
            _record_measurements(write, measurements, full, host_theta(k), k, final=False)
        recording = k % training.record_every == 0 or k == training.steps - 1
        with clock:
            indices = batch_indices(seed, k, problem.num_samples, training.batch_size)
            obj = full if indices is None and not problem.varies else problem.objective(k, indices)
            for t in getattr(obj, "regularizers", ()):
                if is_sampled(t) and getattr(t, "t_reg", None) is None:
                    t.seed = seed * 1_000_000 + k
            if training.schedules:
                obj.set_weights(weights_at(training.schedules, k))
            if training.gradient is None or training.gradient == obj.default_gradient_method:
                # the discretisation at θ (its step grid), or θ-free for a traced objective
                fn, args = obj.direct_function(host_theta(k) if obj.direct_function_reads_theta else theta_dev)
                theta_dev, state, loss = _fused_step(fn, opt)(theta_dev, state, args)
            else:
                th = host_theta(k)
                loss = obj.value(th) if recording or training.plateau is not None else np.nan
                g = obj.grad(th, method=training.gradient)
                theta_dev, state = update(theta_dev, state, jax.numpy.asarray(g), loss)
            # wait for the step (no copy) so that its time is its own, not a later recording's
            jax.block_until_ready(theta_dev)
            theta = None
        if recording:
            loss = float(loss)
            if not (math.isfinite(loss) and np.all(np.isfinite(np.asarray(theta_dev)))):
                raise SolveError(f"training diverged at step {k}: the loss or θ is not finite "
                                 "(lower the learning rate, or check the solver's max_steps)")
            write({"step": k, "kind": "loss", "loss": loss})
        if (k + 1) % training.checkpoint_every == 0 or k + 1 == training.steps:
            checkpoint(k + 1)
        if progress is not None:
            progress(k + 1)
        if callback is not None:
            callback(k + 1, host_theta(k + 1))
    theta = host_theta(training.steps)
    final = _record_measurements(write, measurements, full, theta, training.steps, final=True)
    wall, cpu = clock.totals()
    return {"theta": theta, "final": final, "records": written, "train_wall_s": wall, "train_cpu_s": cpu,
            "compile_s": clock.compile, "compiling_steps": clock.skipped}
