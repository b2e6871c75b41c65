"""Seed 000 Fig. 6: seconds per full Hessian against the number of parameters.

Seed 000 §5.2: for randomly initialised single-hidden-layer Neural ODEs learning two
coupled sinusoids, AA is the fastest technique (then EA, then FD) and handles O(10⁴)
parameters in O(10³) s.

Rows ``p<p>``: task ``coupled-sinusoids`` (40 observations), absolute-error loss, a sigmoid
field 2 → w → 2 (p = 5w + 2) at its initialisation (nothing is trained). One full Hessian
per method, timed (``perf_counter``) after an untimed call that compiles it:
``structured`` (the default), ``direct-direct`` (the seed's AA), ``adjoint-adjoint``,
``elementwise`` (EA) and ``fd`` (FD); the last three only up to the sizes in
:data:`LIMITS`, being O(p²) derivative or loss evaluations. Row ``p10002`` times only
``structured``: the seed's O(10⁴) claim.
"""

from __future__ import annotations

import time

from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.models import ModelSpec, build_objective, init_params
from pyodejl.experiments.tasks import make_task
from pyodejl.experiments.trainer import Measurement, Problem, Training

WIDTHS = (2, 5, 10, 20, 40, 80, 160, 320, 2000)
ROWS = {f"p{5 * w + 2}": w for w in WIDTHS}
#: The largest p each method is timed at.
LIMITS = {"structured": 10**9, "direct-direct": 1602, "adjoint-adjoint": 402, "elementwise": 52, "fd": 102}


def time_key(method: str) -> str:
    """The result key of a method's seconds per Hessian, e.g. ``time_direct_direct``."""
    return "time_" + method.replace("-", "_")


def settings(quick: bool) -> dict:
    return {"observations": 40, "data_seed": 0, "limits": dict(LIMITS)}


def timings(objective, theta, limits) -> dict:
    """Seconds per full Hessian by every method allowed at this p, each after a compiling call."""
    out = {"num_params": objective.num_params}
    for method, limit in limits.items():
        if objective.num_params > limit:
            continue
        objective.hessian(theta, method=method)
        t0 = time.perf_counter()
        objective.hessian(theta, method=method)
        out[time_key(method)] = time.perf_counter() - t0
    aa = out.get(time_key("direct-direct"))
    for method in ("elementwise", "fd", "adjoint-adjoint"):
        if aa is not None and time_key(method) in out:
            out[f"{method.replace('-', '_')}_over_aa"] = out[time_key(method)] / aa
    return out


def setup(row: str, seed: int, s: dict) -> RunSpec:
    task = make_task("coupled-sinusoids", seed=s["data_seed"], num_samples=s["observations"])
    spec = ModelSpec("node", width=ROWS[row], activation="sigmoid", loss="abs")
    obj = build_objective(spec, task)
    problem = Problem(theta0=init_params(spec, task, seed), objective=lambda step, indices: obj, num_samples=1)
    measurement = Measurement("hessian_time", lambda o, th: timings(obj, th, s["limits"]))
    return RunSpec(problem, Training(steps=0, lr=1e-3), (measurement,))  # lr unused: nothing is trained


EXPERIMENT = Experiment(
    name="hessian-scaling",
    title="Seconds per full Hessian against the number of parameters, by method",
    source="seed 000 Fig. 6",
    variants=tuple(ROWS),
    settings=settings,
    setup=setup,
    columns=(
        Column("time_structured", "structured (default) s", digits=2),
        Column("time_direct_direct", "AA (direct-direct) s", digits=2),
        Column("time_adjoint_adjoint", "adjoint-adjoint s", digits=2),
        Column("time_elementwise", "EA (elementwise) s", digits=2),
        Column("time_fd", "FD s", digits=2),
    ),
    targets=(
        Target("elementwise_over_aa", "p52", "p52", "value", ">=", 1.0, "AA is faster than EA (p = 52)", "AA fastest"),
        Target("fd_over_aa", "p102", "p102", "value", ">=", 1.0, "AA is faster than FD (p = 102)", "AA fastest"),
        Target("adjoint_adjoint_over_aa", "p402", "p402", "value", ">=", 1.0,
               "AA is faster than adjoint-adjoint (p = 402)", "–"),
        Target("time_structured", "p10002", "p10002", "value", "<=", 1000.0,
               "a full Hessian at p ≈ 10⁴ in O(10³) s", "O(10³) s"),
    ),
    seeds=(0,),
    quick_variants=("p12",),
    notes="Timed on the machine the report names, compilation excluded; only same-run ratios compare.",
)
