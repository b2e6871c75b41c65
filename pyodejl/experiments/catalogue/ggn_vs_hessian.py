"""The Hessian against the generalised Gauss–Newton matrix (and the empirical Fisher) through training.

Not a seed claim: issue 12 §2's question, on two seed-000 tasks. Every row trains one
model with full-batch Adam for the row's number of steps (rows of one task share the
initialisation, so they are one run's checkpoints), then forms the exact Hessian H, the GGN
G = Jᵀ∇²ℓJ of the data term (``loss.ggn``) and, for the batched task, the empirical Fisher
F = (1/N) Σ g_n g_nᵀ (``loss.empirical_fisher``), and diagonalises them.

* ``sinusoids-step<k>``: task ``coupled-sinusoids``, a Neural ODE 2 → 16 → 2 (tanh, p = 82)
  fitting one trajectory observed at 40 random times (MSE), Adam lr 0.02. One trajectory,
  so F has rank 1 and is left out.
* ``spheres-step<k>``: 2-D nested spheres (128 points), an augmented Neural ODE (one zero
  appended, 3 → 16 → 3 tanh) with a linear readout (p = 119), MSE on the ±1 labels (Dupont
  et al. 2019), Adam lr 0.01. The GGN linearises the readout too: the cost is an
  ``OutputCost(readout, mse)`` (z = the 128 predictions). ``lam_min_G_default`` is the
  smallest eigenvalue of the GGN of the experiments' own objective, whose cost takes
  z = (states, readout parameters): its readout block is bilinear, so it can be indefinite.

Statistics (:func:`spectrum_statistics`): extremes and traces, H's negative eigenvalue
count (below −1e-8·max|λ|) and negative mass Σ|λ<0| / Σ|λ|, ‖H − G‖_F / ‖H‖_F, the overlap of
the top eigenvectors |u₁(H)·u₁(G)| and of the top-5 eigenspaces ‖U₅(H)ᵀU₅(G)‖²_F / 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

import pyodejl as pj
from pyodejl.derivatives.gauss_newton import OutputCost
from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.models import ModelSpec, build_objective, init_params
from pyodejl.experiments.tasks import make_task
from pyodejl.experiments.trainer import Measurement, Problem, Training

TASKS = {"sinusoids": ("coupled-sinusoids", 0.02), "spheres": ("nested-spheres", 0.01)}
STEPS = (0, 10, 30, 100, 300)
ROWS = {f"{task}-step{k}": (task, k) for task in TASKS for k in STEPS}


def settings(quick: bool) -> dict:
    return {"width": 8 if quick else 16, "sinusoid_observations": 20 if quick else 40,
            "sphere_points": 32 if quick else 128, "steps": {k: min(k, 5) for k in STEPS} if quick else
            {k: k for k in STEPS}, "data_seed": 0}


def readout(extra, Y, labels):
    """w · y(T) + b for each point: the predictions z of the spheres GGN."""
    D = Y.shape[-1]
    return Y[:, -1, :] @ extra[:D] + extra[D]


def mse(F, labels):
    return jnp.mean((F - labels) ** 2)


@dataclass(frozen=True)
class _Objectives:
    loss: object  # trained, and the H / G / F are of it
    default: object | None  # the spheres loss with the experiments' own cost (its GGN is reported too)
    theta0: np.ndarray


def objectives(task_name: str, s: dict, seed: int) -> _Objectives:
    if task_name == "coupled-sinusoids":
        task = make_task(task_name, seed=s["data_seed"], num_samples=s["sinusoid_observations"])
        spec = ModelSpec("node", width=s["width"])
        return _Objectives(build_objective(spec, task), None, init_params(spec, task, seed))
    task = make_task(task_name, seed=s["data_seed"], dim=2, num_samples=s["sphere_points"])
    spec = ModelSpec("anode", width=s["width"], augment_dim=1).resolved(task)
    default = build_objective(spec, task)
    split = pj.ObservationLoss(default.model, default.ts, task.x, OutputCost(readout, mse), data=task.y,
                               num_extra_params=default.num_params - default.model.num_params)
    return _Objectives(split, default, init_params(spec, task, seed))


def spectrum_statistics(H, G, F=None, k: int = 5) -> dict:
    """H against G (and F): the statistics of the module docstring, and every eigenvalue."""
    lh, Uh = np.linalg.eigh(H)
    lg, Ug = np.linalg.eigh(G)
    scale = np.abs(lh).max()
    out = {"lam_max_H": float(lh[-1]), "lam_max_G": float(lg[-1]), "lam_min_H": float(lh[0]),
           "lam_min_G": float(lg[0]), "lam_min_G_relative": float(lg[0] / abs(lg[-1])),
           "trace_H": float(lh.sum()), "trace_G": float(lg.sum()),
           "neg_count_H": int(np.sum(lh < -1e-8 * scale)), "neg_mass_H": float(-lh[lh < 0].sum() / np.abs(lh).sum()),
           "rel_diff": float(np.linalg.norm(H - G) / np.linalg.norm(H)),
           "lam_max_gap": float(abs(lg[-1] / lh[-1] - 1.0)),
           "top1_overlap": float(abs(Uh[:, -1] @ Ug[:, -1])),
           "topk_overlap": float(np.linalg.norm(Uh[:, -k:].T @ Ug[:, -k:]) ** 2 / k),
           "eig_H": lh.tolist(), "eig_G": lg.tolist()}
    if F is not None:
        lf = np.linalg.eigvalsh(F)
        out.update(lam_max_F=float(lf[-1]), trace_F=float(lf.sum()), eig_F=lf.tolist())
    return out


def setup(row: str, seed: int, s: dict) -> RunSpec:
    task, k = ROWS[row]
    task_name, lr = TASKS[task]
    objs = objectives(task_name, s, seed)
    loss = objs.loss

    def measure(objective, theta):
        F = loss.empirical_fisher(theta) if loss.batch_size > 1 else None
        out = {"loss": float(loss.value(theta)), **spectrum_statistics(loss.hessian(theta), loss.ggn(theta), F)}
        if objs.default is not None:
            out["lam_min_G_default"] = float(np.linalg.eigvalsh(objs.default.ggn(theta))[0])
        return out

    problem = Problem(theta0=np.asarray(objs.theta0, dtype=np.float64), objective=lambda step, indices: loss)
    return RunSpec(problem, Training(steps=s["steps"][k], lr=lr), (Measurement("spectra", measure),))


EXPERIMENT = Experiment(
    name="ggn-vs-hessian",
    title="The Hessian against the Gauss–Newton matrix (and the empirical Fisher) through training",
    source="issue 12 §2 on seed 000's tasks (a new measurement, not a seed claim)",
    variants=tuple(ROWS),
    settings=settings,
    setup=setup,
    columns=(
        Column("loss", "loss", digits=2),
        Column("lam_max_H", "λmax H", digits=4),
        Column("lam_max_G", "λmax G", digits=4),
        Column("lam_min_H", "λmin H", digits=2),
        Column("lam_min_G_relative", "λmin G / λmax G", digits=1),
        Column("rel_diff", "‖H−G‖_F/‖H‖_F", digits=2),
        Column("neg_count_H", "#λ<0 of H", digits=2),
        Column("neg_mass_H", "neg. mass of H", digits=2),
        Column("top1_overlap", "u₁(H)·u₁(G)", digits=4),
        Column("topk_overlap", "top-5 overlap", digits=3),
        Column("lam_max_F", "λmax F", digits=3),
        Column("lam_min_G_default", "λmin G, (states, readout) cost", digits=2),
    ),
    targets=tuple(
        Target("lam_max_gap", f"{task}-step10", f"{task}-step10", "value", "<=", 0.055,
               f"{task}: λmax(G) within 5.5 % of λmax(H) from step 10", "–")
        for task in TASKS
    ) + tuple(
        Target("lam_min_G_relative", f"{task}-step300", f"{task}-step300", "value", ">=", -1e-12,
               f"{task}: the GGN is positive semi-definite (to round-off)", "–")
        for task in TASKS
    ) + tuple(
        Target("rel_diff", f"{task}-step0", f"{task}-step0", "value", ">=", 0.5,
               f"{task}: at initialisation H and G differ by half of H or more", "–")
        for task in TASKS
    ),
    seeds=(0,),
    quick_variants=("sinusoids-step0", "spheres-step10"),
    notes="One seed; rows of a task are checkpoints of one deterministic run (full-batch Adam).",
)
