"""Seed 004 Table 6.1: the memory of each gradient method with global and local regularisation.

Seed 004 ch. 6 §2 (Table 6.1): local regularisation (one randomly chosen step's
error or stiffness estimate) adds a constant O(s × stages) to any sensitivity
method, s the state size, while a global term Σ over every step needs discrete
sensitivities, O(s × t × stages) for t steps; backsolve adjoints stay O(s).

Rows ``B<B>-T<T>``: a tanh MLP field 2 → 32 → 2 (p = 162), tsit5 at
rtol = 1e-6, atol = 1e-8, a batch of B random initial states (s = 2B) observed at
5 times on [0, T] against random targets (squared error); a longer span T takes
more steps t at the same tolerance. Nothing is trained. For the plain loss
(``none``), the loss with :class:`pyodejl.regularizers.LocalErrorEstimate`
(``local``) and with :class:`~pyodejl.regularizers.ErrorEstimate` (``global``,
which the continuous adjoints refuse: it needs every step's stages), each
gradient method is compiled at the initial θ and measured by XLA's own buffer
accounting (``compile().memory_analysis()``): the temporary bytes the compiled
gradient needs at its peak. That is exact for the compiled program and free of
allocator noise, unlike a process's resident memory; it is a property of the
program, so one seed serves.
"""

from __future__ import annotations

import numpy as np

import pyodejl as pj
from pyodejl import regularizers as R
from pyodejl._jit import to_device
from pyodejl.derivatives import continuous
from pyodejl.derivatives.autodiff import value_and_grad
from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.trainer import Measurement, Problem, Training

ROWS = {f"B{B}-T{T}": (B, T) for B in (4, 32) for T in (1, 4, 16)}
TERMS = {
    "none": lambda: None,
    "local": lambda: [R.LocalErrorEstimate(1.0, seed=0)],
    "global": lambda: [R.ErrorEstimate(1.0)],
}
KIB = 1024.0


def settings(quick: bool) -> dict:
    # quick: two of the three methods (the interpolating adjoint's compile is the slowest)
    return {"width": 32, "state_dim": 2, "rtol": 1e-6, "atol": 1e-8, "max_steps": 256, "observations": 5,
            "methods": list(METHODS[:2] if quick else METHODS)}


def temp_bytes(jitted, *args) -> int:
    """Temporary bytes XLA allocates at the peak of ``jitted(*args)`` (compiled here, not run)."""
    stats = jitted.lower(*args).compile().memory_analysis()
    if stats is None:  # pragma: no cover - every XLA backend this project runs on reports it
        raise RuntimeError("this XLA backend gives no memory analysis of compiled programs")
    return int(stats.temp_size_in_bytes)


METHODS = ("discrete", "backsolve", "interpolating")


def gradient_memory(objective, theta, methods=METHODS) -> dict:
    """Temporary KiB of each gradient method of ``objective`` at ``theta`` ``(p,)``, and its accepted steps.

    Keys: ``steps``, and those of ``methods`` (default: all three) that apply:
    ``discrete`` always; ``backsolve`` and ``interpolating`` (its dense
    interpolant sized from this solve's steps, as the objective does) when the
    objective has a continuous adjoint (no term needs every step).
    """
    th = to_device(theta)
    stats = objective.stats(theta)
    out = {"steps": int(stats.num_accepted_steps)}
    if "discrete" in methods:
        fn, args = objective.direct_function(theta)
        out["discrete"] = temp_bytes(value_and_grad, fn, th, args) / KIB
    if objective.problem.needs_steps:
        return out
    problem, cargs = objective.continuous_problem(theta)
    if "backsolve" in methods:
        out["backsolve"] = temp_bytes(continuous.gradient_backsolve, problem, th, *cargs) / KIB
    if "interpolating" in methods:
        dense = continuous.dense_step_budget(stats.num_steps, objective.model.max_steps)
        out["interpolating"] = temp_bytes(continuous.gradient_interpolating, problem, th, *cargs, False,
                                          dense) / KIB
    return out


def memory_table(objectives: dict, theta, methods=METHODS) -> dict:
    """Flattened :func:`gradient_memory` of each objective (``{term: objective}``), e.g. ``backsolve_local``,
    plus what each local term adds to its method (``backsolve_local_extra``)."""
    out = {}
    for term, objective in objectives.items():
        for key, value in gradient_memory(objective, theta, methods).items():
            out[f"{key}_{term}"] = value
    for method in ("discrete", "backsolve", "interpolating"):
        if f"{method}_local" in out:
            out[f"{method}_local_extra"] = out[f"{method}_local"] - out[f"{method}_none"]
    out["discrete_global_over_none"] = out["discrete_global"] / out["discrete_none"]
    return out


def setup(row: str, seed: int, s: dict) -> RunSpec:
    B, T = ROWS[row]
    D = s["state_dim"]
    model = pj.NeuralODE(pj.MLP([D, s["width"], D], "tanh"), solver="tsit5", rtol=s["rtol"], atol=s["atol"],
                         max_steps=s["max_steps"])
    rng = np.random.default_rng([seed, B, T])
    ts = np.linspace(0.0, float(T), s["observations"])
    y0 = rng.standard_normal((B, D))
    targets = rng.standard_normal((B, len(ts), D))
    objectives = {term: pj.TrajectoryLoss(model, ts, y0, targets, regularizers=make())
                  for term, make in TERMS.items()}
    problem = Problem(theta0=model.init(seed), objective=lambda step, indices: objectives["none"], num_samples=1)
    measurement = Measurement("gradient_memory", lambda o, th: memory_table(objectives, th, tuple(s["methods"])))
    return RunSpec(problem, Training(steps=0, lr=1e-3), (measurement,))  # lr unused: nothing is trained


def _same(key, row, baseline, what, figure):
    # "does not depend on the steps": equal to 1 % between the shortest and the longest span
    return (Target(key, row, baseline, "ratio", "<=", 1.01, what, figure),
            Target(key, row, baseline, "ratio", ">=", 0.99, "… and no smaller", ""))


EXPERIMENT = Experiment(
    name="local-memory",
    title="Temporary memory of each gradient method with no, local and global regularisation",
    source="seed 004 Table 6.1",
    variants=tuple(ROWS),
    settings=settings,
    setup=setup,
    columns=(
        Column("steps_none", "steps t", digits=3),
        Column("discrete_none", "discrete KiB", digits=4),
        Column("discrete_local", "discrete, local KiB", digits=4),
        Column("discrete_global", "discrete, global KiB", digits=4),
        Column("backsolve_none", "backsolve KiB", digits=4),
        Column("backsolve_local_extra", "backsolve: local adds KiB", digits=4),
        Column("interpolating_none", "interpolating KiB", digits=4),
        Column("interpolating_local_extra", "interpolating: local adds KiB", digits=4),
    ),
    targets=(
        *_same("backsolve_local_extra", "B32-T16", "B32-T1",
               "local regularisation adds the same memory to backsolve however many steps (B = 32, T = 16 vs 1)",
               "O(s × stages), no t"),
        *_same("interpolating_local_extra", "B32-T16", "B32-T1",
               "… and to the interpolating adjoint", "O(s × stages), no t"),
        *_same("backsolve_none", "B32-T16", "B32-T1", "backsolve's memory does not grow with the steps", "O(s)"),
        Target("discrete_none", "B32-T16", "B32-T1", "ratio", ">=", 2.0,
               "the discrete gradient's memory grows with the steps (B = 32, T = 16 vs 1)", "O(s × t × stages)"),
        Target("discrete_global_over_none", "B32-T16", "B32-T16", "value", "<=", 1.01,
               "a global term costs the discrete gradient nothing more (it reads stages it stores)", "–"),
    ),
    seeds=(0,),
    quick_variants=("B4-T1",),
    notes="KiB of temporary buffers at the compiled gradient's peak (XLA's accounting); a property of the "
          "program, so one seed. The continuous adjoints refuse global terms.",
)
