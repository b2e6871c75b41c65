"""Seed 004 Table 5.3: a Neural SDE fitted to the spiral SDE by moment matching, with ERNSDE and SRNSDE.

Seed 004 ch. 5 §3.2.1: the diagonal-noise Itô spiral SDE

    du₁ = (−αu₁³ + βu₂³) dt + γu₁ dW₁,   du₂ = (−βu₁³ − αu₂³) dt + γu₂ dW₂,

α = 0.1, β = 2, γ = 0.2, u₀ = (2, 0), 30 times on [0, 1]; drift f_θ(x) = W₂ tanh(W₁x³ + B₁) + B₂
(width 50, the spiral ODE's network), diagonal diffusion g_φ(x) = W₃x + B₃ (2×2); loss
mean_i (μ_i − μ̂_i)² + mean_i (σ²_i − σ̂²_i)² over the 30 times × 2 states, the moments of
100 model trajectories against those of 10 000 data trajectories, plus λ R; AdaBelief, lr
0.01, 250 iterations, 100 new trajectories (new Brownian paths) per iteration; vanilla,
SRNSDE and ERNSDE over 3 seeds.

The reference code (RegNeuralDE.jl's ``experiments/sde_toy_problem.jl``) fixes what the
seed's text leaves open, and this declaration follows it: SOSRI at reltol = abstol = 0.3,
the loss as *means* of the squared moment errors, R = Σ_j E_j·|dt_j| (the controller's
error estimate times the step) with weight 0.2, and the NFE it reports counts drift
evaluations only.

Here: :class:`pyodejl.NeuralSDE` with the adaptive SRIW1 method (Rößler's SRI family with
Rackauckas & Nie's error estimate; the seed uses SOSRI of the same family) at
rtol = atol = 0.3, the 100 trajectories as one system (joint error control; the
reference solves them as one array too); data by Euler–Maruyama (dt = 1e-4, NumPy,
``data_seed``). SRNSDE takes the same weight 0.2 (the reference code has no SRNSDE run).
At 0.3 every solve keeps the 30 steps the observation times force, so the rows
``*-tol0.02`` repeat the three at rtol = atol = 0.02, where a trained model's solve
takes ~115 steps, near the ~130 SOSRI steps the seed's 528 drift evaluations imply. The paths of step k are
``with_seed(1_000_003 · seed + k)``; the trained model is scored on paths it never saw
(``with_seed(10_000 + seed)``): the moment loss, the NFE and the CPU time of one adaptive
solve of the 100 trajectories; NFE counts drift evaluations, as the seed's does (SRIW1
evaluates the drift twice a step; ``nfe_total`` adds the diffusion's four). ERNSDE:
:class:`pyodejl.regularizers.ErrorEstimate` (Σ_j E_j·|dt_j|), SRNSDE:
:class:`pyodejl.regularizers.StiffnessEstimate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

import pyodejl as pj
from pyodejl import regularizers as R
from pyodejl.experiments import measures
from pyodejl.experiments.catalogue import regularisers_spiral as spiral
from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.trainer import Problem, Training

GAMMA = 0.2
TS = np.linspace(0.0, 1.0, 30)
RTOL = ATOL = 0.3
#: The second tolerance: at the reference's 0.3 every solve stays on the 30 steps the observation
#: times force (nothing for ERNSDE to cut); at 0.02 a trained model's solve takes ~115 steps, near
#: the ~130 SOSRI steps the seed's 528 drift evaluations imply.
TIGHT = 0.02
WEIGHT = 0.2
HELD_OUT = 10_000


def data_moments(n: int, seed: int, dt: float = 1e-4):
    """Means and variances ``(2, 30, 2)`` of the Itô spiral SDE at ``TS`` by Euler–Maruyama."""
    rng = np.random.default_rng([seed, 4])
    u = np.tile(spiral.U0, (n, 1))
    save = set(np.round(TS / dt).astype(int).tolist())
    mu, var = [u.mean(0)], [u.var(0)]
    for k in range(1, int(round(TS[-1] / dt)) + 1):
        a = np.stack([-spiral.ALPHA * u[:, 0] ** 3 + spiral.BETA * u[:, 1] ** 3,
                      -spiral.BETA * u[:, 0] ** 3 - spiral.ALPHA * u[:, 1] ** 3], 1)
        u = u + a * dt + GAMMA * u * rng.standard_normal(u.shape) * np.sqrt(dt)
        if k in save:
            mu.append(u.mean(0))
            var.append(u.var(0))
    return np.stack([np.array(mu), np.array(var)])


def diffusion(t, y, th):
    """g_φ(x) = W₃x + B₃, the diagonal noise amplitudes (seed 004 §3.2.1)."""
    return th[:4].reshape(2, 2) @ y + th[4:6]


DIFFUSION = pj.VectorField(diffusion, num_params=6, state_dim=2, name="spiral_diffusion",
                           init=lambda seed: np.random.default_rng([seed, 5]).uniform(-1, 1, 6) * 0.1)


@dataclass(frozen=True)
class MomentCost:
    """mean (μ − μ̂)² + mean (σ² − σ̂²)² over the times and states, the moments over the trajectories of
    the batch; ``data`` = (μ, σ²) ``(2, T, D)``."""

    def __call__(self, extra, Y, moments):
        return jnp.mean((Y.mean(0) - moments[0]) ** 2) + jnp.mean((Y.var(0) - moments[1]) ** 2)


TERMS = {
    "vanilla": lambda: [],
    "srnsde": lambda: [R.StiffnessEstimate(WEIGHT)],
    "ernsde": lambda: [R.ErrorEstimate(WEIGHT)],
}
#: ``{row: (terms, tolerance, solver)}``: each variant at the reference's tolerance, then at :data:`TIGHT`
#: (SRIW1), then the seed's own solver SOSRI at the reference's tolerance (no SRNSDE: SOSRI has no two
#: stages at one time with distinct states).
ROWS = {**{name: (name, RTOL, "sriw1") for name in TERMS},
        **{f"{name}-tol{TIGHT:g}": (name, TIGHT, "sriw1") for name in TERMS},
        **{f"{name}-sosri": (name, RTOL, "sosri") for name in ("vanilla", "ernsde")}}


def settings(quick: bool) -> dict:
    return {"steps": 3 if quick else 250, "lr": 0.01, "trajectories": 10 if quick else 100,
            "data_trajectories": 1000 if quick else 10_000, "data_seed": 1234}


def model(seed: int, tol: float = RTOL, solver: str = "sriw1") -> pj.NeuralSDE:
    return pj.NeuralSDE(spiral.VECTOR_FIELD, DIFFUSION, solver=solver, dt0=0.01, rtol=tol, atol=tol,
                        max_steps=4096, seed=seed)


def training_objective(base: pj.NeuralSDE, seed: int, y0, moments, terms=()):
    """The ``Problem.objective`` of a run: the moment loss (plus ``terms``) on new Brownian paths every
    iteration, as the seed draws 100 new trajectories each time."""

    def objective(step, indices):
        paths = base.with_seed(1_000_003 * seed + max(step, 0))
        return pj.ObservationLoss(paths, TS, y0, MomentCost(), data=moments, regularizers=list(terms) or None)

    return objective


def setup(variant: str, seed: int, s: dict) -> RunSpec:
    moments = data_moments(s["data_trajectories"], s["data_seed"])
    y0 = np.tile(spiral.U0, (s["trajectories"], 1))
    name, tol, solver = ROWS[variant]
    base = model(0, tol, solver)
    objective = training_objective(base, seed, y0, moments, TERMS[name]())
    held_out = base.with_seed(HELD_OUT + seed)
    plain = pj.ObservationLoss(held_out, TS, y0, MomentCost(), data=moments)
    predict = lambda theta: held_out.solve(theta, TS, y0)
    drift_per_step = held_out.solver.tableau.evaluations(True)

    def evaluations(theta):
        stats = predict(theta).stats
        return {"nfe": int(stats.num_steps) * drift_per_step, "nfe_total": int(stats.nfe),
                "steps": int(stats.num_steps)}

    measurements = (
        measures.evaluate(lambda theta: {"moment_loss": plain.value(theta)}),
        measures.evaluate(evaluations, name="solve_stats"),
        measures.prediction_time(lambda theta: predict(theta).ys),
    )
    theta0 = np.concatenate([spiral.init(seed), DIFFUSION.init(seed)])
    problem = Problem(theta0=theta0, objective=objective, num_samples=1, varies=True)
    return RunSpec(problem, Training(steps=s["steps"], lr=s["lr"], optimizer="adabelief"), measurements)


def _targets(suffix: str, where: str) -> tuple[Target, ...]:
    er, sr, plain = "ernsde" + suffix, "srnsde" + suffix, "vanilla" + suffix
    return (
        Target("nfe", er, plain, "ratio", "<=", 502.0 / 528.67, f"ERNSDE: fewer NFE (seed: −5 %), {where}",
               "528.67 → 502.00"),
        Target("moment_loss", er, plain, "ratio", "<=", 1.1, "… at a moment loss within 10 %",
               "0.0217 → 0.0227 (+4.6 %)"),
        Target("train_cpu_s", sr, plain, "speedup", ">=", 1.07, f"SRNSDE trains faster (seed: 7 %), {where}",
               "178.95 → 166.42 s"),
    )


EXPERIMENT = Experiment(
    name="sde-spiral",
    title="A Neural SDE fitted to the spiral SDE by moment matching, with ERNSDE and SRNSDE",
    source="seed 004 Table 5.3",
    variants=tuple(ROWS),
    settings=settings,
    setup=setup,
    columns=(
        Column("moment_loss", "moment loss (held-out paths)", digits=3),
        Column("train_cpu_s", "training CPU s", digits=3),
        Column("predict_cpu_s", "prediction CPU ms", scale=1e3, digits=3),
        Column("nfe", "drift NFE (prediction)", digits=3),
        Column("steps", "steps (prediction)", digits=3),
    ),
    targets=_targets("", "tolerance 0.3") + _targets(f"-tol{TIGHT:g}", f"tolerance {TIGHT:g}") + (
        Target("nfe", "ernsde-sosri", "vanilla-sosri", "ratio", "<=", 502.0 / 528.67,
               "ERNSDE: fewer NFE (seed: −5 %), the seed's SOSRI at tolerance 0.3", "528.67 → 502.00"),
        Target("moment_loss", "ernsde-sosri", "vanilla-sosri", "ratio", "<=", 1.1, "… at a moment loss within 10 %",
               "0.0217 → 0.0227 (+4.6 %)"),),
    quick_variants=("srnsde", "ernsde-sosri"),  # vanilla's path is theirs without a term
    notes="NFE counts the drift evaluations of one adaptive solve of the 100 held-out trajectories, as the "
          "seed's reference code does; the loss is its mean squared moment error. Rows without a suffix: the "
          "reference code's tolerance 0.3.",
)
