"""Run configurations and run folders: atomic writes, resumption, loading.

A run folder holds

* ``config.json`` — the :class:`RunConfig` (every setting that affects a number),
  plus ``"versions"``: the versions of pyodejl, JAX, jaxlib, Diffrax, Equinox,
  Optax and NumPy that computed the run (:func:`package_versions`), and, after a
  resume allowed across versions, ``"version_history"``: ``[{"until_step": n,
  "versions": {...} or null}]`` — records at steps ``<= n`` came from those versions;
* ``records.jsonl`` — one JSON object per tracked step (see
  :mod:`pyodejl.experiments.tracking` for the keys);
* ``params.npz`` — θ of every tracked step under ``step_<n>``;
* ``spectra.npz`` — the full Hessian spectrum (ascending) under ``step_<n>``,
  for tracked steps computed exactly;
* ``checkpoint.npz`` — step, θ and the Optax state, the point a resumed run
  continues from;
* ``timings.jsonl`` — wall-clock seconds of the Hessian work, one line per
  tracked step (the only non-reproducible output, so kept out of the records).

Every file is written to a temporary file in the folder and moved into place
with :func:`os.replace`, so a kill leaves either the old or the new version.
The checkpoint is written last; on resumption everything after the checkpoint's
step is discarded and recomputed, which (all randomness being a function of
``(seed, step)``) reproduces an uninterrupted run bit for bit — under the same
package versions, so a resume under other versions is refused unless allowed
(:class:`VersionMismatchError`); folders written before versions were recorded
count as "unknown versions" and are refused in the same way.
A file that cannot be read (truncated, garbage, not written by pyodejl) raises
:class:`RunFolderError` naming it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from pyodejl.derivatives.methods import FAST_METHODS, GRADIENT_METHODS, HESSIAN_METHODS
from pyodejl.experiments.folder import (
    FORMAT_VERSION,
    VERSION_PACKAGES,
    ConfigMismatchError,
    RunFolderError,
    VersionMismatchError,
    atomic_savez,
    atomic_write_bytes,
    atomic_write_text,
    jsonl_text,
    load_npz,
    package_versions,
    read_json,
    read_jsonl,
    version_differences,
)
from pyodejl.experiments.models import MODEL_KINDS, ModelSpec
from pyodejl.experiments.tasks import TASKS, Task, make_task

__all__ = [
    "RunConfig",
    "ConfigMismatchError",
    "VersionMismatchError",
    "RunFolderError",
    "Run",
    "load_run",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_savez",
    "OPTIMIZERS",
    "FORMAT_VERSION",
    "VERSION_PACKAGES",
    "package_versions",
    "version_differences",
    "gradient_method_names",
    "hessian_method_names",
]

OPTIMIZERS = ("gd", "sgd", "adam")


def gradient_method_names() -> list[str]:
    """The engine's gradient methods (:data:`pyodejl.GRADIENT_METHODS`), by name."""
    return list(GRADIENT_METHODS)


def hessian_method_names() -> list[str]:
    """The engine's Hessian methods, independent and fast routes alike, sorted."""
    return sorted({**HESSIAN_METHODS, **FAST_METHODS})


def load_step_arrays(path) -> dict[int, np.ndarray]:
    """The arrays of ``params.npz`` / ``spectra.npz`` by step (``{}`` if the file does not exist).

    Raises:
        RunFolderError: unreadable file, or a key that is not ``step_<n>``.
    """
    out = {}
    for key, value in load_npz(path).items():
        try:
            step = parse_step_key(key)
        except ValueError:
            raise RunFolderError(path, f"array {key!r} is not named step_<n>") from None
        out[step] = value
    return out


_CHECKPOINT_KEYS = ("step", "theta", "num_leaves")


def load_checkpoint_arrays(path) -> dict | None:
    """The arrays of ``checkpoint.npz`` (None if it does not exist), with ``step``,
    ``theta``, ``num_leaves`` and ``opt_0 .. opt_{num_leaves-1}`` checked present.

    Raises:
        RunFolderError: unreadable file or missing arrays.
    """
    path = Path(path)
    ck = load_npz(path)
    if not ck:
        if path.exists():
            raise RunFolderError(path, "the archive holds no arrays")
        return None
    missing = [k for k in _CHECKPOINT_KEYS if k not in ck]
    if not missing:
        for k in ("step", "num_leaves"):
            if ck[k].shape != () or ck[k].dtype.kind not in "iu":
                raise RunFolderError(path, f"{k!r} is not an integer scalar")
        missing = [f"opt_{i}" for i in range(int(ck["num_leaves"])) if f"opt_{i}" not in ck]
    if missing:
        raise RunFolderError(path, f"missing arrays {missing}")
    return ck


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


def step_key(step: int) -> str:
    return f"step_{int(step)}"


def parse_step_key(key: str) -> int:
    """``"step_<n>"`` -> n (ValueError for anything else)."""
    prefix, _, n = key.partition("_")
    if prefix != "step" or not n.isdigit():
        raise ValueError(f"{key!r} is not step_<n>")
    return int(n)


def read_config_file(folder) -> tuple[RunConfig, dict | None, list]:
    """``(config, versions, version_history)`` from ``folder/config.json``.

    ``versions`` is None for folders written before versions were recorded.

    Raises:
        FileNotFoundError: no ``config.json``.
        RunFolderError: ``config.json`` is not a valid configuration.
    """
    path = Path(folder) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{Path(folder)} is not a run folder (no config.json)")
    d = read_json(path)
    versions = d.pop("versions", None)
    history = d.pop("version_history", [])
    if versions is not None and not (isinstance(versions, dict) and all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in versions.items())):
        raise RunFolderError(path, "'versions' must map package names to version strings")
    if not isinstance(history, list):
        raise RunFolderError(path, "'version_history' must be a list")
    try:
        config = RunConfig.from_dict(d)
    except (TypeError, ValueError) as exc:  # unknown or missing keys
        raise RunFolderError(path, f"not a run configuration ({exc})") from exc
    return config, versions, history


def write_config_file(folder, config: RunConfig, versions: dict | None, history=()) -> None:
    """Write ``folder/config.json`` atomically (the inverse of :func:`read_config_file`)."""
    d = config.as_dict()
    if versions is not None:
        d["versions"] = dict(versions)
    if history:
        d["version_history"] = list(history)
    atomic_write_text(Path(folder) / "config.json", json.dumps(d, indent=2) + "\n")


class Run:
    """A run folder, read from disk.

    Attributes:
        path: the folder.
        config: its :class:`RunConfig`.
        versions: package versions that computed it (:func:`package_versions`);
            None for folders written before versions were recorded.
        version_history: earlier versions after resumes allowed across versions,
            ``[{"until_step": n, "versions": {...} or None}]``.
        records: list of record dicts, ordered by step.

    Raises:
        FileNotFoundError: ``path`` has no ``config.json``.
        RunFolderError: ``config.json`` or ``records.jsonl`` cannot be read.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.config, self.versions, self.version_history = read_config_file(self.path)
        self.records = read_records(self.path / "records.jsonl")

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

    def params(self) -> dict[int, np.ndarray]:
        """θ by tracked step."""
        return load_step_arrays(self.path / "params.npz")

    def spectra(self) -> dict[int, np.ndarray]:
        """Full spectra (ascending) by tracked step; empty when not exact."""
        return load_step_arrays(self.path / "spectra.npz")

    def timings(self) -> list[dict]:
        """``timings.jsonl``: ``{"step", "hessian_seconds", "hessian"}`` per tracked step."""
        return read_jsonl(self.path / "timings.jsonl")

    def task(self) -> Task:
        return self.config.make_task()

    @property
    def complete(self) -> bool:
        ck = load_checkpoint_arrays(self.path / "checkpoint.npz")
        return ck is not None and int(ck["step"]) == self.config.steps


def load_run(path) -> Run:
    """Open a run folder written by :func:`pyodejl.experiments.track`."""
    return Run(path)


def read_records(path) -> list[dict]:
    """``records.jsonl``: one dict per tracked step (see :func:`read_jsonl` for errors)."""
    return read_jsonl(path)


def records_text(records) -> str:
    return jsonl_text(records)
