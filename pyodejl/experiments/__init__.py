"""Experiments: tasks, models, training with Hessian tracking, run folders, command line.

Seed 000 (§5–6, Appendix B) is the study these reproduce; seed 002 adds tracking
on a data fraction r. See ``REPRODUCTION.md``.

>>> from pyodejl.experiments import RunConfig, track, load_run, objective_from_run
>>> run = track(RunConfig(task="nested-spheres", model="anode", steps=50), "runs/anode")  # doctest: +SKIP
"""

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
from pyodejl.experiments.runs import (
    ConfigMismatchError,
    Run,
    RunConfig,
    RunFolderError,
    VersionMismatchError,
    load_run,
)
from pyodejl.experiments.stiffness_training import (
    StiffnessRunConfig,
    load_stiffness_experiment,
    run_stiffness_experiment,
    stiffness_table,
    train_stiffness_run,
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

__all__ = [
    "LOSSES",
    "MODEL_KINDS",
    "TASKS",
    "ConfigMismatchError",
    "ModelSpec",
    "Run",
    "RunConfig",
    "RunFolderError",
    "StiffnessRunConfig",
    "Task",
    "VersionMismatchError",
    "accuracy",
    "alpine02",
    "batch_indices",
    "build_objective",
    "curvature_record",
    "init_params",
    "load_run",
    "load_stiffness_experiment",
    "loss_surface",
    "make_task",
    "objective_from_run",
    "parameter_counts",
    "predict",
    "run_stiffness_experiment",
    "run_surface",
    "stiffness_table",
    "task_names",
    "track",
    "train_stiffness_run",
    "tracking_indices",
]
