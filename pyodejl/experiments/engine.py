"""Running declared experiments into run folders (``pyodejl run``).

An experiment folder ``OUT`` is itself a :class:`~pyodejl.experiments.folder.RunFolder`
whose configuration names the experiment and its settings, and whose records
list every invocation (command, date). Each (variant, seed) run is a run
folder ``OUT/<variant>/seed_<k>``: rerunning the same command skips finished
runs and resumes unfinished ones from their checkpoint; more seeds or rows can
be added later to the same folder. A run whose training diverges or whose solve fails
is finished with its error as its result (``"failed"``): the report lists it, and the
other runs go on.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from pyodejl.experiments.catalogue import get_experiment
from pyodejl.experiments.declaration import Experiment
from pyodejl.experiments.folder import RunFolder, git_commit, utc_timestamp
from pyodejl.experiments.trainer import train
from pyodejl.solving import SolveError

__all__ = ["experiment_config", "run_experiment", "run_path"]


def experiment_config(experiment: Experiment, quick: bool) -> dict:
    """The experiment folder's configuration: the experiment's name and every setting."""
    return {"experiment": experiment.name, "quick": bool(quick), "settings": experiment.settings(bool(quick))}


def run_path(out, variant: str, seed: int) -> Path:
    """The run folder of one (variant, seed) run inside experiment folder ``out``."""
    return Path(out) / variant / f"seed_{int(seed)}"


def _check_choice(values, allowed, what):
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; expected some of {list(allowed)}")


def machine_busy_seconds() -> float | None:
    """CPU seconds every process of this machine has spent busy since boot (Linux
    ``/proc/stat``: user, nice, system, irq, softirq, steal), or None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _train_run(exp, variant, seed, settings, folder, progress) -> dict:
    spec = exp.setup(variant, seed, settings)
    load = os.getloadavg()[0]
    busy0, own0, wall0 = machine_busy_seconds(), _own_cpu_seconds(), time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=spec.training.steps, desc=f"{variant} seed {seed}", leave=False,
                   initial=folder.checkpoint_step())
    try:
        out = train(spec.problem, spec.training, folder, seed=seed, measurements=spec.measurements,
                    progress=None if bar is None else (lambda n: bar.update(n - bar.n)))
    finally:
        if bar is not None:
            bar.close()
    return {"final": out["final"], "train_wall_s": out["train_wall_s"], "train_cpu_s": out["train_cpu_s"],
            "compile_s": out["compile_s"], "compiling_steps": out["compiling_steps"],
            "load": [load, os.getloadavg()[0]], "cores": os.cpu_count(), "wall_s": time.perf_counter() - wall0,
            "other_cpu_s": None if busy0 is None else max(0.0, machine_busy_seconds() - busy0
                                                         - (_own_cpu_seconds() - own0))}


def run_experiment(experiment, out, *, quick: bool = False, seeds=None, variants=None, progress: bool = True,
                   allow_version_change: bool = False, command: str | None = None, log=print) -> Path:
    """Run (or resume) an experiment into folder ``out``.

    Args:
        experiment: an :class:`~pyodejl.experiments.declaration.Experiment` or its name.
        out: the experiment folder (created if missing).
        quick: the experiment's ``--quick`` settings, rows and seeds (a smoke run).
        seeds: seeds to run (default: the experiment's, or its quick seeds).
        variants: rows to run (default: all, or the quick rows).
        progress: show a progress bar per run.
        allow_version_change: resume unfinished runs computed under other package versions.
        command: the command line recorded with this invocation (default: ``sys.argv``).
        log: where one-line messages go.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: unknown experiment, seed or row.
        pyodejl.experiments.ConfigMismatchError: ``out`` holds another experiment
            or other settings.
        pyodejl.experiments.RunFolderError: a file of ``out`` cannot be read.
    """
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    rows = tuple(variants) if variants else exp.rows(quick)
    _check_choice(rows, exp.variants, "rows")
    seeds = tuple(seeds) if seeds else (exp.quick_seeds if quick else exp.seeds)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be non-negative integers, got {s!r}")
    config = experiment_config(exp, quick)
    top = RunFolder(out, config, allow_version_change=True)  # holds no numbers: the runs check versions
    folders = {}
    for variant in rows:  # every existing file is read before anything is written
        for seed in seeds:
            run_config = {"experiment": exp.name, "variant": variant, "seed": seed, **config}
            folder = RunFolder(run_path(out, variant, seed), run_config, allow_version_change=allow_version_change)
            folder.check()
            folders[variant, seed] = folder
    commit = git_commit()
    top.append({"step": len(top.records()), "command": command or shlex.join(sys.argv), "commit": commit,
                "date": utc_timestamp()})
    for (variant, seed), folder in folders.items():
        if folder.finished:
            log(f"{exp.name} {variant} seed {seed}: finished, skipped")
            continue
        try:
            result = _train_run(exp, variant, seed, config["settings"], folder, progress)
        except (SolveError, FloatingPointError) as exc:
            # a configuration that diverges is a result of the table, not a reason to stop it
            folder.finish({"final": {}, "failed": " ".join(str(exc).split()), "commit": commit})
            log(f"{exp.name} {variant} seed {seed}: failed: {exc}")
            continue
        folder.finish({**result, "commit": commit})
        summary = ", ".join(f"{k} {v:.4g}" for k, v in result["final"].items() if isinstance(v, (int, float)))
        log(f"{exp.name} {variant} seed {seed}: {summary}")
    return Path(out)
