"""Experiments: the engine that runs the seeds' experiments, tasks, models, run folders, command line.

The engine: an experiment is a declaration (:class:`Experiment`, in
``pyodejl.experiments.catalogue``); :func:`run_experiment` trains each of its
rows and seeds with the one trainer (:func:`train`) into the one run folder
(:class:`RunFolder`), resumably; :func:`build_report` and :func:`render_markdown`
turn the folder into tables and verdicts (``pyodejl run`` / ``pyodejl report``).

Seed 000 (§5–6, Appendix B) is the study tracking reproduces; seed 002 adds tracking
on a data fraction r. See ``REPRODUCTION.md``.

>>> from pyodejl.experiments import RunConfig, track, load_run, objective_from_run
>>> run = track(RunConfig(task="nested-spheres", model="anode", steps=50), "runs/anode")  # doctest: +SKIP
"""

from pyodejl.experiments.catalogue import experiment_names, get_experiment
from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.engine import run_experiment
from pyodejl.experiments.folder import RunFolder
from pyodejl.experiments.models import (
    LOSSES,
    MODEL_KINDS,
    ModelSpec,
    accuracy,
    build_objective,
    init_params,
    parameter_counts,
    predict,
)
from pyodejl.experiments.report import build_report, render_markdown, sync_markdown
from pyodejl.experiments.runs import (
    ConfigMismatchError,
    Run,
    RunConfig,
    RunFolderError,
    VersionMismatchError,
    load_run,
)
from pyodejl.experiments.surface import loss_surface, run_surface
from pyodejl.experiments.tasks import TASKS, Task, alpine02, make_task, task_names
from pyodejl.experiments.tracking import (
    batch_indices,
    curvature_record,
    objective_from_run,
    track,
    tracking_indices,
)
from pyodejl.experiments.trainer import Measurement, Plateau, Problem, Training, train

__all__ = [
    "Column",
    "Experiment",
    "Measurement",
    "Plateau",
    "Problem",
    "RunFolder",
    "RunSpec",
    "Target",
    "Training",
    "build_report",
    "experiment_names",
    "get_experiment",
    "render_markdown",
    "run_experiment",
    "sync_markdown",
    "train",
    "LOSSES",
    "MODEL_KINDS",
    "TASKS",
    "ConfigMismatchError",
    "ModelSpec",
    "Run",
    "RunConfig",
    "RunFolderError",
    "Task",
    "VersionMismatchError",
    "accuracy",
    "alpine02",
    "batch_indices",
    "build_objective",
    "curvature_record",
    "init_params",
    "load_run",
    "loss_surface",
    "make_task",
    "objective_from_run",
    "parameter_counts",
    "predict",
    "run_surface",
    "task_names",
    "track",
    "tracking_indices",
]
