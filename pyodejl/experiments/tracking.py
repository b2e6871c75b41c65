"""Training with Hessian tracking (seed 000 §5–6, Appendix B; seed 002).

:func:`track` trains a model of :mod:`pyodejl.experiments.models` on a task of
:mod:`pyodejl.experiments.tasks` with Optax, and every ``hessian_every`` steps
records the curvature of the tracking objective (the full-batch loss, or the
loss on a fixed fraction r of the samples as in seed 002).

Each record (one line of ``records.jsonl``) has

* ``step`` — number of optimiser updates applied to θ;
* ``loss``, ``grad_norm`` — of the tracking objective at θ;
* ``eig_max``, ``eig_2nd``, ``eig_min``, ``trace`` — of its Hessian;
* ``hessian`` — ``"exact"`` (full Hessian by ``hessian_method``, spectrum by
  ``numpy.linalg.eigvalsh``, kept in ``spectra.npz``) or ``"lanczos+hutch++"``
  (Lanczos extremes, Hutch++ trace: estimates);
* ``hessian_method``, ``hvps`` (Hessian-vector products used), ``num_params``,
  ``tracked_samples``;
* ``nfe`` — vector-field evaluations of the forward solve at θ (node/anode; None for mlp);
* ``lanczos_converged`` — estimated regime only;
* ``accuracy`` — classification tasks.

The run folder is the one :class:`~pyodejl.experiments.folder.RunFolder` and the
training the one trainer (:func:`pyodejl.experiments.trainer.train`): a record is
a measurement record of the folder, which also keeps θ (``"theta"``), the full
spectrum of exact steps (``"spectrum"``) and the seconds the Hessian work took
(``"hessian_seconds"``, the only number that is not reproducible);
:class:`~pyodejl.experiments.runs.Run` reads them back.

Randomness: minibatch ``k`` of the run is a slice of the permutation
``default_rng([seed, 2, epoch])`` (:func:`pyodejl.experiments.trainer.batch_indices`);
the tracking fraction is ``default_rng([seed, 3])``; the randomised estimators at
step ``n`` use ``default_rng([seed, 4, n])``. Nothing but θ and the Optax state
needs restoring on resumption.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pyodejl.experiments.folder import RunFolder, RunFolderError
from pyodejl.experiments.models import accuracy, build_objective, init_params
from pyodejl.experiments.runs import RUN_FILES, Run, RunConfig
from pyodejl.experiments.trainer import Measurement, Problem, Training, batch_indices, train

__all__ = [
    "track",
    "objective_from_run",
    "tracking_indices",
    "batch_indices",
    "curvature_record",
]

#: Optimiser steps between checkpoints (besides the tracked steps' records).
CHECKPOINT_EVERY = 100


# --------------------------------------------------------------------------------------
# randomness as a function of (seed, step)
# --------------------------------------------------------------------------------------


def tracking_indices(seed: int, num_samples: int, fraction: float) -> np.ndarray | None:
    """The fixed subset (``ceil(fraction * num_samples)`` samples) whose loss is tracked; None = all."""
    if fraction >= 1.0:
        return None
    from pyodejl.derivatives.minibatch import fraction_indices

    return fraction_indices(num_samples, fraction, seed)


# --------------------------------------------------------------------------------------
# curvature
# --------------------------------------------------------------------------------------


def _trace_estimate(op, num_matvecs, seed):
    from pyodejl.spectral import trace as spectral_trace

    res = spectral_trace(op, num_matvecs=num_matvecs, method="hutch++", seed=seed)
    return float(res.estimate), "hutch++"


def curvature_record(obj, theta, config: RunConfig, step: int) -> tuple[dict, np.ndarray | None, float]:
    """Loss, gradient norm and Hessian extremes/trace of ``obj`` at θ.

    Returns:
        ``(record, spectrum or None, hessian_seconds)``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    p = obj.num_params
    loss = obj.value(theta)
    g = obj.grad(theta, method=config.grad_method)
    rec = {"step": int(step), "loss": loss, "grad_norm": float(np.linalg.norm(g))}
    t0 = time.perf_counter()
    spectrum = None
    if p <= config.exact_max_params:
        H = obj.hessian(theta, method=config.hessian_method)
        H = 0.5 * (H + H.T)
        w = np.linalg.eigvalsh(H)
        spectrum = w
        rec.update(eig_max=float(w[-1]), eig_2nd=float(w[-2]) if p > 1 else None,
                   eig_min=float(w[0]), trace=float(np.sum(w)), hessian="exact",
                   hessian_method=config.hessian_method, hvps=int(p))
    else:
        from pyodejl.spectral import eigenvalues

        op = obj.hessian_operator(theta, method=config.hessian_method)
        rng = np.random.default_rng([int(config.seed), 4, int(step)])
        res = eigenvalues(op, k=3, which="both", method="lanczos", tol=config.lanczos_tol, seed=rng)
        vals = np.sort(res.eigenvalues)  # [smallest, 2nd largest, largest]
        tr, how = _trace_estimate(op, config.trace_matvecs, rng)
        rec.update(eig_max=float(vals[-1]), eig_2nd=float(vals[-2]), eig_min=float(vals[0]),
                   trace=tr, hessian="lanczos+" + how, hessian_method=config.hessian_method,
                   hvps=int(op.matvecs), lanczos_converged=bool(np.all(res.converged)))
    seconds = time.perf_counter() - t0
    rec["num_params"] = int(p)
    rec["nfe"] = int(obj.stats(theta).nfe) if getattr(obj, "is_ode", False) else None
    return rec, spectrum, seconds


# --------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------


def tracking_spec(config: RunConfig, progress_bar=None):
    """``(Problem, Training, Measurement)`` of a resolved configuration: what :func:`track`
    hands to the trainer (the declared seed-000 experiment uses it too)."""
    task = config.make_task()
    spec = config.model_spec().resolved(task)
    n = task.num_samples
    track_idx = tracking_indices(config.seed, n, config.hessian_fraction)
    track_obj = build_objective(spec, task, track_idx)

    def objective(step, indices):
        # the trainer asks for the full batch once and keeps it
        if indices is None and track_idx is None:
            return track_obj
        return build_objective(spec, task, indices)

    def curvature(obj, theta, step):
        if progress_bar is not None:
            progress_bar.set_description(f"hessian @ step {step}")
        rec, spectrum, seconds = curvature_record(track_obj, theta, config, step)
        rec.pop("step")
        if task.target in ("classification", "multiclass"):
            rec["accuracy"] = accuracy(spec, task, theta, track_idx)
        rec["tracked_samples"] = int(n if track_idx is None else len(track_idx))
        rec["theta"] = np.asarray(theta, dtype=np.float64).tolist()
        if spectrum is not None:
            rec["spectrum"] = np.asarray(spectrum).tolist()
        rec["hessian_seconds"] = seconds
        if progress_bar is not None:
            progress_bar.set_postfix(loss=f"{rec['loss']:.3g}", eig_max=f"{rec['eig_max']:.3g}")
            progress_bar.set_description(f"{config.model} on {config.task}")
        return rec

    problem = Problem(theta0=init_params(spec, task, config.seed), objective=objective, num_samples=n)
    optimizer = "adam" if config.optimizer == "adam" else "sgd"  # "gd" is SGD on the full batch
    training = Training(steps=config.steps, lr=config.lr, optimizer=optimizer, batch_size=config.batch_size,
                        gradient=config.grad_method, record_every=config.steps,
                        checkpoint_every=min(CHECKPOINT_EVERY, config.hessian_every))
    measurement = Measurement("curvature", curvature, every=config.hessian_every, at=(config.steps,),
                              with_step=True)
    return problem, training, measurement


def track(config: RunConfig | dict, out, *, progress: bool = True, resume: bool = True,
          allow_version_change: bool = False,
          callback: Callable[[int, np.ndarray], None] | None = None) -> Run:
    """Train with Hessian tracking, writing (or resuming) the run folder ``out``.

    Args:
        config: a :class:`RunConfig` or a dict of its fields; validated and
            completed by :meth:`RunConfig.resolved`.
        out: run folder. If it holds a run with the same configuration, training
            resumes from its checkpoint (a finished run returns at once); a
            different configuration raises :class:`ConfigMismatchError` naming
            the differing keys; an unreadable file raises
            :class:`~pyodejl.experiments.folder.RunFolderError` naming it.
        progress: show a tqdm bar of training steps and Hessian work.
        resume: if False, an existing folder is an error.
        allow_version_change: resume an unfinished run although it was
            computed under other versions of pyodejl, JAX, jaxlib, Diffrax,
            Equinox, Optax or NumPy. Without it such a resume raises
            :class:`~pyodejl.experiments.folder.VersionMismatchError` naming the
            packages; with it the new versions are saved and the old ones
            appended to ``version_history`` with the step up to which they
            computed the records. A finished run is returned as it is, whatever
            the versions, since nothing is computed.
        callback: ``callback(step, theta)`` after every optimiser update (for
            monitoring; an exception raised in it stops the run like a kill).

    Returns:
        the finished :class:`Run`.

    Reference: seed 000 §5–6 (eigenvalue evolution under GD/SGD, NODE vs ANODE),
    seed 002 (tracking trace and top eigenvalue on a data fraction r).
    """
    if isinstance(config, dict):
        config = RunConfig.from_dict(config)
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig or dict, got {type(config).__name__}")
    config = config.resolved()
    out = Path(out)
    if (out / RunFolder.CONFIG).exists():
        if not resume:
            raise FileExistsError(f"run folder {out} already exists and resume=False")
    else:
        stale = [f for f in RUN_FILES if (out / f).exists()]
        if stale:
            raise FileExistsError(f"{out} contains run files {stale} but no config.json; "
                                  "refusing to overwrite them — choose an empty folder")
    folder = RunFolder(out, config.as_dict(), allow_version_change=allow_version_change)
    if folder.finished:
        folder.result()
        return Run(out)
    folder.check()
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=folder.checkpoint_step(), disable=not progress, unit="step",
               desc=f"{config.model} on {config.task}", dynamic_ncols=True)
    problem, training, measurement = tracking_spec(config, bar)

    def after_step(step, theta):
        bar.update(1)
        if callback is not None:
            callback(step, theta)

    try:
        out_ = train(problem, training, folder, seed=config.seed, measurements=(measurement,),
                     callback=after_step)
    finally:
        bar.close()
    folder.finish({"final": {k: v for k, v in out_["final"].items() if k not in ("theta", "spectrum")},
                   "train_wall_s": out_["train_wall_s"], "train_cpu_s": out_["train_cpu_s"],
                   "compile_s": out_["compile_s"]})
    return Run(out)


def objective_from_run(folder, *, fraction: bool = True):
    """The objective whose Hessian a run tracked, rebuilt from its configuration.

    ``objective_from_run(f).value(theta)`` with ``theta = load_run(f).params()[n]``
    reproduces record ``n``'s ``loss`` (and its Hessian the eigenvalues).

    Args:
        folder: a run folder.
        fraction: True (default): the tracked objective (the fixed fraction r of
            the samples when ``hessian_fraction < 1``); False: the full-batch objective.

    Returns:
        a pyodejl objective (:class:`pyodejl.ObservationLoss` or :class:`pyodejl.FunctionObjective`).
    """
    run = Run(folder)
    try:
        config = run.config.resolved()
    except ValueError as exc:
        raise RunFolderError(run.path / "config.json", f"invalid configuration ({exc})") from exc
    task = config.make_task()
    spec = config.model_spec().resolved(task)
    idx = tracking_indices(config.seed, task.num_samples, config.hessian_fraction) if fraction else None
    return build_objective(spec, task, idx)
