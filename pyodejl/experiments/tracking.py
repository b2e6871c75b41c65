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

Randomness: minibatch ``k`` of the run is a slice of the permutation
``default_rng([seed, 2, epoch])`` (the last partial batch of every epoch is
dropped so that every batch has ``batch_size`` samples and compilations are
reused); the tracking fraction is ``default_rng([seed, 3])``; the randomised
estimators at step ``n`` use ``default_rng([seed, 4, n])``. Nothing but θ and the
Optax state needs restoring on resumption.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pyodejl.experiments.models import accuracy, build_objective, init_params, parameter_counts
from pyodejl.experiments.runs import (
    ConfigMismatchError,
    Run,
    RunConfig,
    RunFolderError,
    VersionMismatchError,
    atomic_savez,
    atomic_write_text,
    jsonl_text,
    load_checkpoint_arrays,
    load_step_arrays,
    package_versions,
    read_config_file,
    read_jsonl,
    read_records,
    records_text,
    step_key,
    version_differences,
    write_config_file,
)
from pyodejl.experiments.trainer import batch_indices

__all__ = [
    "track",
    "objective_from_run",
    "tracking_indices",
    "batch_indices",
    "curvature_record",
]

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
# optimisers
# --------------------------------------------------------------------------------------


def make_optimizer(config: RunConfig) -> optax.GradientTransformation:
    """``gd``/``sgd``: ``optax.sgd(lr)``; ``adam``: ``optax.adam(lr)``."""
    if config.optimizer in ("gd", "sgd"):
        return optax.sgd(config.lr)
    return optax.adam(config.lr)


def _save_checkpoint(path: Path, step, theta, opt_state):
    leaves = jax.tree_util.tree_leaves(opt_state)
    arrays = {f"opt_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    atomic_savez(path / "checkpoint.npz", step=np.asarray(step, dtype=np.int64),
                 theta=np.asarray(theta, dtype=np.float64), num_leaves=np.asarray(len(leaves)), **arrays)


def _load_checkpoint(path: Path, template_state, num_params: int, steps: int):
    """``(step, θ, Optax state)`` from ``checkpoint.npz``, or None if there is none.

    Raises:
        RunFolderError: unreadable, or arrays that do not fit the configuration.
    """
    file = path / "checkpoint.npz"
    ck = load_checkpoint_arrays(file)
    if ck is None:
        return None
    leaves, treedef = jax.tree_util.tree_flatten(template_state)
    n = int(ck["num_leaves"])
    if n != len(leaves):
        raise RunFolderError(file, f"{n} optimizer arrays, expected {len(leaves)} for this configuration")
    step = int(ck["step"])
    if not 0 <= step <= steps:
        raise RunFolderError(file, f"step {step} is outside 0..{steps}")
    theta = ck["theta"]
    if theta.shape != (num_params,) or theta.dtype.kind != "f":
        raise RunFolderError(file, f"theta has shape {theta.shape} and dtype {theta.dtype}, "
                                   f"expected ({num_params},) floats")
    restored = []
    for i, leaf in enumerate(leaves):
        a, leaf = ck[f"opt_{i}"], jnp.asarray(leaf)
        if a.shape != leaf.shape:
            raise RunFolderError(file, f"optimizer array opt_{i} has shape {a.shape}, expected {leaf.shape}")
        restored.append(jnp.asarray(a, dtype=leaf.dtype))
    return step, theta, jax.tree_util.tree_unflatten(treedef, restored)


def _tracked_steps(config: RunConfig, upto: int) -> set[int]:
    out = set(range(0, upto + 1, config.hessian_every))
    if upto >= config.steps:
        out.add(config.steps)
    return out


def _restore_outputs(out: Path, config: RunConfig, start: int, num_params: int):
    """Records, θ, spectra and timings of the tracked steps ``<= start``, checked complete.

    Everything after the checkpoint's step is dropped (it is recomputed); one
    timing line per step is kept (the last, for folders whose older versions
    appended a line again after a resume).
    """
    records = [r for r in read_records(out / "records.jsonl") if r["step"] <= start]
    params = {k: v for k, v in load_step_arrays(out / "params.npz").items() if k <= start}
    spectra = {k: v for k, v in load_step_arrays(out / "spectra.npz").items() if k <= start}
    timings = {t["step"]: t for t in read_jsonl(out / "timings.jsonl") if t["step"] <= start}
    expected = _tracked_steps(config, start)
    steps = [r["step"] for r in records]
    if len(set(steps)) != len(steps) or steps != sorted(steps):
        raise RunFolderError(out / "records.jsonl", "steps are repeated or out of order")
    missing = sorted(expected - set(steps))
    if missing:
        raise RunFolderError(out / "records.jsonl", f"no records for tracked steps {missing[:5]} "
                                                    f"(the checkpoint is at step {start})")
    missing = sorted(expected - set(params))
    if missing:
        raise RunFolderError(out / "params.npz", f"no θ for tracked steps {missing[:5]} "
                                                 f"(the checkpoint is at step {start})")
    missing = sorted(r["step"] for r in records if r.get("hessian") == "exact" and r["step"] not in spectra)
    if missing:
        raise RunFolderError(out / "spectra.npz", f"no spectrum for exact steps {missing[:5]}")
    for name, arrays in (("params.npz", params), ("spectra.npz", spectra)):
        for k, v in arrays.items():
            if v.shape != (num_params,):
                raise RunFolderError(out / name, f"{step_key(k)} has shape {v.shape}, expected ({num_params},)")
    return (records, {step_key(k): v for k, v in params.items()}, {step_key(k): v for k, v in spectra.items()},
            [timings[k] for k in sorted(timings)])


# --------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------


def _prepare_folder(out: Path, config: RunConfig, resume: bool, versions: dict):
    """Create the folder or check its configuration.

    Returns:
        ``(saved versions, version history)`` of an existing folder, else None.
    """
    out.mkdir(parents=True, exist_ok=True)
    cfg_file = out / "config.json"
    if cfg_file.exists():
        saved, saved_versions, history = read_config_file(out)
        diff = saved.diff(config)
        if diff:
            lines = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ConfigMismatchError(
                f"run folder {out} holds a run with a different configuration ({lines}); "
                "it cannot be resumed with these settings. Use another output folder, or delete this one "
                "to start over.")
        if not resume:
            raise FileExistsError(f"run folder {out} already exists and resume=False")
        return saved_versions, history
    stale = [f for f in ("records.jsonl", "params.npz", "spectra.npz", "checkpoint.npz", "timings.jsonl")
             if (out / f).exists()]
    if stale:
        raise FileExistsError(f"{out} contains run files {stale} but no config.json; "
                              "refusing to overwrite them — choose an empty folder")
    write_config_file(out, config, versions)
    return None


def _check_versions(out: Path, config: RunConfig, saved, history, current, start, allow):
    """Refuse (or, if allowed, record) a resume at ``start`` under other versions."""
    diff = version_differences(saved, current)
    if not diff:
        return
    if not allow:
        if saved is None:
            what = ("records no package versions (it was written before pyodejl recorded them), "
                    "so the versions of its results are unknown")
        else:
            what = "was computed under other package versions (" + ", ".join(
                f"{k}: saved {a}, now {b}" for k, (a, b) in diff.items()) + ")"
        raise VersionMismatchError(
            f"run folder {out} {what}; resuming it at step {start} would mix results of different versions. "
            "Pass allow_version_change=True (command line: --allow-version-change) to resume anyway, "
            "or use another output folder", diff)
    write_config_file(out, config, current, [*history, {"until_step": int(start), "versions": saved}])


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
            :class:`~pyodejl.experiments.runs.RunFolderError` naming it.
        progress: show a tqdm bar of training steps and Hessian work.
        resume: if False, an existing folder is an error.
        allow_version_change: resume an unfinished run although it was
            computed under other versions of pyodejl, JAX, jaxlib, Diffrax,
            Equinox, Optax or NumPy (or records none: folders written before
            versions were recorded). Without it such a resume raises
            :class:`~pyodejl.experiments.runs.VersionMismatchError` naming the
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
    versions = package_versions()
    existing = _prepare_folder(out, config, resume, versions)

    task = config.make_task()
    spec = config.model_spec().resolved(task)
    n = task.num_samples
    opt = make_optimizer(config)
    theta0 = init_params(spec, task, config.seed)
    expected_p = parameter_counts(spec, task)["total"]
    if theta0.shape != (expected_p,):  # pragma: no cover - internal consistency
        raise RuntimeError("initial parameters do not match the parameter count")
    opt_state = opt.init(jnp.asarray(theta0))

    # ---- resume ------------------------------------------------------------------
    ck = _load_checkpoint(out, opt_state, expected_p, config.steps)
    if ck is None:
        start, theta = 0, theta0
        records, params, spectra, timings = [], {}, {}, []
        if existing is not None and existing != (versions, []):
            # killed before its first checkpoint: nothing is kept, so it starts afresh under these versions
            write_config_file(out, config, versions)
    else:
        start, theta, opt_state = ck
        if existing is not None and start < config.steps:
            _check_versions(out, config, *existing, versions, start, allow_version_change)
        records, params, spectra, timings = _restore_outputs(out, config, start, expected_p)
    done = {r["step"] for r in records}

    track_idx = tracking_indices(config.seed, n, config.hessian_fraction)
    track_obj = build_objective(spec, task, track_idx)
    full_obj = track_obj if track_idx is None else None

    def is_tracked(step):
        return step % config.hessian_every == 0 or step == config.steps

    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=start, disable=not progress, unit="step",
               desc=f"{config.model} on {config.task}", dynamic_ncols=True)
    last_ckpt = start
    try:
        step = start
        while True:
            if is_tracked(step) and step not in done:
                bar.set_description(f"hessian @ step {step}")
                rec, spectrum, secs = curvature_record(track_obj, theta, config, step)
                if task.target in ("classification", "multiclass"):
                    rec["accuracy"] = accuracy(spec, task, theta, track_idx)
                rec["tracked_samples"] = int(n if track_idx is None else len(track_idx))
                records.append(rec)
                done.add(step)
                params[step_key(step)] = np.asarray(theta, dtype=np.float64)
                if spectrum is not None:
                    spectra[step_key(step)] = spectrum
                atomic_write_text(out / "records.jsonl", records_text(records))
                atomic_savez(out / "params.npz", **params)
                if spectra:
                    atomic_savez(out / "spectra.npz", **spectra)
                timings.append({"step": step, "hessian_seconds": secs, "hessian": rec["hessian"]})
                atomic_write_text(out / "timings.jsonl", jsonl_text(timings))
                _save_checkpoint(out, step, theta, opt_state)
                last_ckpt = step
                bar.set_postfix(loss=f"{rec['loss']:.3g}", eig_max=f"{rec['eig_max']:.3g}")
                bar.set_description(f"{config.model} on {config.task}")
            if step >= config.steps:
                break
            idx = batch_indices(config.seed, step, n, config.batch_size)
            if idx is None:
                if full_obj is None:
                    full_obj = build_objective(spec, task, None)
                obj = full_obj
            else:
                obj = build_objective(spec, task, idx)
            try:
                g = obj.grad(theta, method=config.grad_method)
            except Exception as exc:
                from pyodejl.solving import SolveError

                if isinstance(exc, SolveError):
                    raise SolveError(f"training step {step} failed: {exc}. The run is saved up to step "
                                     f"{last_ckpt}; a smaller lr or a larger max_steps may help") from exc
                raise
            updates, opt_state = opt.update(jnp.asarray(g), opt_state, jnp.asarray(theta))
            theta = np.asarray(optax.apply_updates(jnp.asarray(theta), updates), dtype=np.float64)
            step += 1
            bar.update(1)
            if not np.all(np.isfinite(theta)):
                raise FloatingPointError(f"θ became non-finite at step {step}; lower the learning rate")
            if step % CHECKPOINT_EVERY == 0 and not is_tracked(step):
                _save_checkpoint(out, step, theta, opt_state)
                last_ckpt = step
            if callback is not None:
                callback(step, theta)
    finally:
        bar.close()
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
