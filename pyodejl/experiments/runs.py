"""Run configurations of tracked training (:func:`pyodejl.experiments.track`) and reading their folders.

A tracked run's folder is the one :class:`~pyodejl.experiments.folder.RunFolder`:
``config.json`` holds the :class:`RunConfig` (every setting that affects a number)
with the package versions and their history, ``records.jsonl`` the tracked steps'
records (with θ, the exact spectra and the Hessian's seconds), ``checkpoint.npz``
the point a resumed run continues from and ``result.json`` the trained model's
numbers. :class:`Run` reads it back. Writing, resuming and the refusal of corrupt
files are the run folder's (:mod:`pyodejl.experiments.folder`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from pyodejl.derivatives.methods import FAST_METHODS, GRADIENT_METHODS, HESSIAN_METHODS
from pyodejl.experiments.folder import (
    FORMAT_VERSION,
    ConfigMismatchError,
    RunFolder,
    RunFolderError,
    VersionMismatchError,
    package_versions,
)
from pyodejl.experiments.models import MODEL_KINDS, ModelSpec
from pyodejl.experiments.tasks import TASKS, Task, make_task
from pyodejl.experiments.trainer import OPTIMIZERS

__all__ = [
    "RunConfig",
    "ConfigMismatchError",
    "VersionMismatchError",
    "RunFolderError",
    "RUN_FILES",
    "Run",
    "load_run",
    "OPTIMIZERS",
    "FORMAT_VERSION",
    "package_versions",
    "gradient_method_names",
    "hessian_method_names",
]



def gradient_method_names() -> list[str]:
    """The engine's gradient methods (:data:`pyodejl.GRADIENT_METHODS`), by name."""
    return list(GRADIENT_METHODS)


def hessian_method_names() -> list[str]:
    """The engine's Hessian methods, independent and fast routes alike, sorted."""
    return sorted({**HESSIAN_METHODS, **FAST_METHODS})


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


class SavedConfig:
    """``as_dict``/``from_dict`` for a dataclass configuration kept in a run folder's
    ``config.json``; ``from_dict`` refuses keys the class does not know."""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class RunConfig(SavedConfig):
    """Everything that determines the numbers of a tracked training run.

    Task: ``task``, ``dim`` (None: task default), ``num_samples`` (None: task default).
    Model (:class:`pyodejl.experiments.models.ModelSpec`): ``model`` (node|anode|concat-node|mlp),
    ``width``, ``depth``, ``activation``, ``augment_dim``, ``time_dependent``,
    ``loss``, ``solver``, ``rtol``, ``atol``, ``max_steps``, ``flow_time``.
    Training: ``optimizer`` — ``"gd"`` (full-batch gradient descent, seed 000
    Eq. 3), ``"sgd"`` (minibatches of ``batch_size``, required) or ``"adam"``
    (``batch_size`` optional, full batch if None) — ``lr``, ``steps``,
    ``grad_method`` (any gradient method of the engine).
    Tracking (seed 000 §5–6, seed 002): every ``hessian_every`` steps (and at the
    last step), on the full-batch objective or a fixed random fraction
    ``hessian_fraction`` = r of the samples (seed 002). Exact (full Hessian by
    ``hessian_method``, full spectrum kept) when the parameter count
    ``p <= exact_max_params`` (default 1000: a full Hessian costs p Hessian-vector
    products, about what Lanczos for three extremes plus Hutch++ cost near
    p = 1000, and ``eigvalsh`` of a 1000 x 1000 matrix takes well under a second);
    otherwise Lanczos for the two largest and the smallest eigenvalue (relative
    residual ``lanczos_tol``) and a Hutch++ trace with ``trace_matvecs`` products.
    ``seed``: data, initialisation, minibatches, the tracking fraction and the
    randomised estimators are all drawn from it.
    """

    task: str
    model: str
    dim: int | None = None
    num_samples: int | None = None
    # the model's settings, flat so that the saved configuration is one flat
    # JSON object; defaults come from ModelSpec
    width: int = ModelSpec.width
    depth: int = ModelSpec.depth
    activation: str = ModelSpec.activation
    augment_dim: int | None = ModelSpec.augment_dim
    time_dependent: bool = ModelSpec.time_dependent
    loss: str | None = ModelSpec.loss
    solver: str = ModelSpec.solver
    rtol: float = ModelSpec.rtol
    atol: float = ModelSpec.atol
    max_steps: int = ModelSpec.max_steps
    flow_time: float = ModelSpec.flow_time
    optimizer: str = "gd"
    batch_size: int | None = None
    lr: float = 0.01
    steps: int = 100
    grad_method: str = "discrete"
    hessian_every: int = 10
    hessian_fraction: float = 1.0
    hessian_method: str = "auto"
    exact_max_params: int = 1000
    lanczos_tol: float = 1e-6
    trace_matvecs: int = 60
    seed: int = 0
    format: int = FORMAT_VERSION

    # ---- derived ------------------------------------------------------------------
    def model_spec(self) -> ModelSpec:
        settings = {f.name: getattr(self, f.name) for f in fields(ModelSpec) if f.name != "kind"}
        return ModelSpec(kind=self.model, **settings)

    def make_task(self) -> Task:
        return make_task(self.task, seed=self.seed, dim=self.dim, num_samples=self.num_samples)

    def resolved(self) -> RunConfig:
        """Validate every field and fill in task- and model-dependent defaults.

        Raises:
            ValueError: naming the field, its value and what was expected.
        """
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {list(TASKS)}")
        if self.model not in MODEL_KINDS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {list(MODEL_KINDS)}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        task = self.make_task()  # validates dim and num_samples
        spec = self.model_spec().resolved(task)
        n = task.num_samples
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {list(OPTIMIZERS)}")
        bs = self.batch_size
        if bs is not None and (not _is_int(bs) or bs < 1):
            raise ValueError(f"batch_size must be a positive integer, got {bs!r}")
        if self.optimizer == "gd" and bs is not None:
            raise ValueError("optimizer 'gd' is full-batch gradient descent and takes no batch_size; "
                             "use optimizer 'sgd' for minibatches")
        if self.optimizer == "sgd" and bs is None:
            raise ValueError("optimizer 'sgd' needs a batch_size (use 'gd' for full batches)")
        if bs is not None and bs > n:
            raise ValueError(f"batch_size {bs} exceeds the {n} samples of task {self.task!r} "
                             f"(a sample is one {task.sample})")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not _is_int(self.steps) or self.steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {self.steps!r}")
        if not _is_int(self.hessian_every) or self.hessian_every < 1:
            raise ValueError(f"hessian_every must be a positive integer, got {self.hessian_every!r}")
        r = self.hessian_fraction
        if not (isinstance(r, (int, float)) and 0 < r <= 1):
            raise ValueError(f"hessian_fraction must be in (0, 1], got {r!r}")
        if math.ceil(r * n) < 2:
            raise ValueError(f"hessian_fraction {r} keeps fewer than 2 of the {n} samples")
        if self.grad_method not in gradient_method_names():
            raise ValueError(f"unknown grad_method {self.grad_method!r}; expected one of {gradient_method_names()}")
        if self.hessian_method not in hessian_method_names():
            raise ValueError(f"unknown hessian_method {self.hessian_method!r}; "
                             f"expected one of {hessian_method_names()}")
        if spec.kind == "mlp":
            if self.grad_method != "discrete":
                raise ValueError(f"grad_method {self.grad_method!r} needs an ODE model; "
                                 "model 'mlp' supports only 'discrete'")
            if self.hessian_method in ("adjoint-direct", "adjoint-adjoint", "structured"):
                raise ValueError(f"hessian_method {self.hessian_method!r} needs an ODE model; model 'mlp' "
                                 "supports 'auto', 'direct-direct', 'direct-adjoint', 'fd', 'fd-grad' "
                                 "and 'elementwise'")
            if self.solver != "dopri5" or self.time_dependent:
                raise ValueError("solver settings apply to node/anode models, not to model 'mlp'")
        if not _is_int(self.exact_max_params) or self.exact_max_params < 0:
            raise ValueError(f"exact_max_params must be a non-negative integer, got {self.exact_max_params!r}")
        if not (isinstance(self.lanczos_tol, float) and 0 < self.lanczos_tol < 1):
            raise ValueError(f"lanczos_tol must be in (0, 1), got {self.lanczos_tol!r}")
        if not _is_int(self.trace_matvecs) or self.trace_matvecs < 3:
            raise ValueError(f"trace_matvecs must be an integer >= 3, got {self.trace_matvecs!r}")
        if self.format != FORMAT_VERSION:
            raise ValueError(f"run format {self.format} is not supported (this version writes {FORMAT_VERSION})")
        return RunConfig(**{**self.as_dict(), "dim": task.dim, "num_samples": n,
                            "augment_dim": spec.augment_dim, "loss": spec.loss,
                            "lr": float(self.lr), "hessian_fraction": float(r),
                            "rtol": float(self.rtol), "atol": float(self.atol),
                            "flow_time": float(self.flow_time)})

    def diff(self, other: RunConfig) -> dict:
        """``{key: (self value, other value)}`` for every differing key."""
        a, b = self.as_dict(), other.as_dict()
        return {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}


# --------------------------------------------------------------------------------------
# run folders
# --------------------------------------------------------------------------------------

#: The files a run folder may hold; :func:`pyodejl.experiments.track` refuses a folder with
#: any of them but no configuration.
RUN_FILES = (RunFolder.RECORDS, RunFolder.CHECKPOINT, RunFolder.RESULT)
#: Record keys that are not a tracked quantity (θ, the spectrum, the Hessian's seconds).
_ARRAYS = ("theta", "spectrum", "hessian_seconds", "kind")


class Run:
    """A tracked run's folder, read from disk.

    Attributes:
        path: the folder.
        config: its :class:`RunConfig`.
        versions: package versions that computed it (:func:`package_versions`).
        version_history: earlier versions after resumes allowed across versions,
            ``[{"until_step": n, "versions": {...}}]``.
        records: the tracked steps' records (without θ and spectra), ordered by step.

    Args:
        path: the folder.
        config: its :class:`RunConfig` when the folder's own configuration is an
            experiment's (a row of ``pyodejl run hessian-tracking``); default None:
            read from the folder.

    Raises:
        FileNotFoundError: ``path`` has no ``config.json``.
        RunFolderError: ``config.json`` or ``records.jsonl`` cannot be read.
    """

    def __init__(self, path, config: RunConfig | None = None):
        self.path = Path(path)
        self._folder = RunFolder(self.path)
        try:
            self.config = RunConfig.from_dict(self._folder.config) if config is None else config
        except (TypeError, ValueError) as exc:  # unknown or missing keys
            raise RunFolderError(self.path / RunFolder.CONFIG, f"not a run configuration ({exc})") from exc
        self.versions, self.version_history = self._folder.versions, self._folder.version_history
        self._raw = [r for r in self._folder.records() if r.get("kind") == "measurement"]
        self.records = [{k: v for k, v in r.items() if k not in _ARRAYS} for r in self._raw]

    def __repr__(self):
        return f"Run({str(self.path)!r}, model={self.config.model!r}, records={len(self.records)})"

    @property
    def label(self) -> str:
        """A short label: model, parameter count, optimizer and batch size."""
        c = self.config
        p = self.records[0].get("num_params") if self.records else None
        bs = f" b={c.batch_size}" if c.batch_size else ""
        return f"{c.model.upper()}" + (f" (p={p})" if p else "") + f" {c.optimizer}{bs}"

    @property
    def steps(self) -> np.ndarray:
        return np.array([r["step"] for r in self.records], dtype=np.int64)

    def column(self, key: str) -> np.ndarray:
        """Values of ``key`` over the records (NaN where missing or None)."""
        out = []
        for r in self.records:
            v = r.get(key)
            out.append(np.nan if v is None else float(v))
        return np.array(out, dtype=np.float64)

    def _arrays(self, key) -> dict[int, np.ndarray]:
        out = {}
        for r in self._raw:
            if key in r:
                a = np.asarray(r[key], dtype=np.float64)
                if a.ndim != 1:
                    raise RunFolderError(self.path / RunFolder.RECORDS, f"step {r['step']}: {key!r} is not a vector")
                out[r["step"]] = a
        return out

    def params(self) -> dict[int, np.ndarray]:
        """θ by tracked step."""
        return self._arrays("theta")

    def spectra(self) -> dict[int, np.ndarray]:
        """Full spectra (ascending) by tracked step; empty when not exact."""
        return self._arrays("spectrum")

    def timings(self) -> list[dict]:
        """``{"step", "hessian_seconds", "hessian"}`` per tracked step."""
        return [{"step": r["step"], "hessian_seconds": r.get("hessian_seconds"), "hessian": r.get("hessian")}
                for r in self._raw]

    def task(self) -> Task:
        return self.config.make_task()

    @property
    def complete(self) -> bool:
        return self._folder.finished


def load_run(path) -> Run:
    """Open a run folder written by :func:`pyodejl.experiments.track`."""
    return Run(path)
