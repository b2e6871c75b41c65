"""Laplace uncertainty of the spiral Neural SDE (issue 19, experiment 4: the NSDE).

The model, data and training of :mod:`.sde_spiral`'s ``vanilla`` row: seed 004's
Neural SDE (drift W₂ tanh(W₁x³ + B₁) + B₂, diagonal diffusion W₃x + B₃, p = 258) fitted
to the moments of 10 000 Euler–Maruyama paths of the Itô spiral SDE by matching the means
and variances of 100 model paths (SRIW1 at rtol = atol = 0.3; AdaBelief, 250 iterations,
new paths each), no prior.

The moment matching has a likelihood reading once its statistic is the observation:
``OutputCost(moments, MeanSquaredError())`` reads F(θ) = (mean, variance) over the
model's paths at the 30 times ``(2, 30, 2)`` as 120 Gaussian observations of the data's
moments with noise σ (a synthetic likelihood, Wood 2010). At the trained θ*, on the 100
held-out paths ``with_seed(10_000 + seed)`` of :mod:`.sde_spiral` (common random numbers:
F is a deterministic function of θ), a full-GGN :class:`pyodejl.Laplace` with δ and σ
maximising the evidence gives the GLM predictive of F: mean F(θ*), epistemic variance
diag(J Σ Jᵀ). Its 90 % interval adds σ²: F(θ*) ± 1.645 √(var + σ²).

Scores, on data the fit never saw:

* ``coverage_data``: the share of the 120 moments of a fresh sample of the true SDE
  (10 000 new paths, ``data_seed + 1 + seed``) inside the interval;
* ``coverage_paths``: the share of the model's own moments on 100 new paths
  (``with_seed(20_000 + seed)``) inside it (the path noise the statistic carries);
* ``coverage_noise_only``: ``coverage_data`` with σ alone (no epistemic variance), to
  show what the posterior adds;
* ``epistemic_ratio``: the mean over the 120 entries of √var / σ.

``--quick``: 3 iterations, 10 model and 1 000 data paths.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

import pyodejl as pj
from pyodejl.experiments.catalogue import regularisers_spiral as spiral
from pyodejl.experiments.catalogue import sde_spiral
from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.trainer import Measurement, Problem, Training

Z90 = 1.6448536269514722  # the standard normal's 95 % quantile: a central 90 % interval
NEW_PATHS = 20_000


def moments(extra, Y, targets):
    """Means and variances over the batch's paths ``(2, T, D)``: the statistic seed 004 matches."""
    return jnp.stack([Y.mean(0), Y.var(0)])


STATISTIC = pj.OutputCost(moments, pj.MeanSquaredError())


def settings(quick: bool) -> dict:
    return sde_spiral.settings(quick)


def coverage(mean, var, sigma, observed) -> float:
    """Share of ``observed`` inside ``mean ± Z90 √(var + σ²)``."""
    half = Z90 * np.sqrt(var + sigma**2)
    return float(np.mean(np.abs(observed - mean) <= half))


def measure(theta, loss, fresh_data, new_paths) -> dict:
    start = time.process_time()
    la = pj.Laplace(loss, theta, structure="full")
    delta, sigma = la.optimize()
    fit = time.process_time() - start
    pred = la.predictive()
    return {"noise_std": float(sigma), "prior_precision": float(delta),
            "log_evidence": float(la.log_marginal_likelihood()),
            "epistemic_ratio": float(np.mean(np.sqrt(pred.var)) / sigma),
            "coverage_data": coverage(pred.mean, pred.var, sigma, fresh_data),
            "coverage_paths": coverage(pred.mean, pred.var, sigma, new_paths(theta)),
            "coverage_noise_only": coverage(pred.mean, 0.0, sigma, fresh_data),
            "fit_cpu_s": fit}


def setup(variant: str, seed: int, s: dict) -> RunSpec:
    data = sde_spiral.data_moments(s["data_trajectories"], s["data_seed"])
    fresh = sde_spiral.data_moments(s["data_trajectories"], s["data_seed"] + 1 + seed)
    y0 = np.tile(spiral.U0, (s["trajectories"], 1))
    base = sde_spiral.model(0)

    objective = sde_spiral.training_objective(base, seed, y0, data)  # sde-spiral's vanilla row
    paths = base.with_seed(sde_spiral.HELD_OUT + seed)
    held_out = pj.ObservationLoss(paths, sde_spiral.TS, y0, STATISTIC, data=data)
    plain = pj.ObservationLoss(paths, sde_spiral.TS, y0, sde_spiral.MomentCost(), data=data)
    other = base.with_seed(NEW_PATHS + seed)

    def new_paths(theta):
        return np.asarray(moments(None, other.solve(theta, sde_spiral.TS, y0).ys, None))

    def measurement(objective, theta):
        return {"moment_loss": float(plain.value(theta)), **measure(theta, held_out, fresh, new_paths)}

    theta0 = np.concatenate([spiral.init(seed), sde_spiral.DIFFUSION.init(seed)])
    problem = Problem(theta0=theta0, objective=objective, num_samples=1, varies=True)
    training = Training(steps=s["steps"], lr=s["lr"], optimizer="adabelief")
    return RunSpec(problem, training, (Measurement("laplace", measurement),))


EXPERIMENT = Experiment(
    name="laplace-sde",
    title="Laplace uncertainty of the spiral Neural SDE's moments (a Gaussian synthetic likelihood)",
    source="issue 19, experiment 4 (the spiral NSDE of seed 004 Table 5.3)",
    variants=("vanilla",),
    settings=settings,
    setup=setup,
    columns=(
        Column("moment_loss", "moment loss (held-out paths)", digits=3),
        Column("noise_std", "σ (evidence)", digits=3),
        Column("prior_precision", "δ (evidence)", digits=3),
        Column("epistemic_ratio", "epistemic std / σ", digits=3),
        Column("coverage_data", "90 % coverage, fresh data (%)", scale=100, digits=3),
        Column("coverage_paths", "90 % coverage, new model paths (%)", scale=100, digits=3),
        Column("coverage_noise_only", "90 % coverage by σ alone (%)", scale=100, digits=3),
        Column("fit_cpu_s", "fit CPU s", digits=3),
    ),
    targets=(
        Target("coverage_data", "vanilla", "vanilla", "value", ">=", 0.85,
               "90 % intervals cover ≥ 85 % of a fresh sample's moments", "–"),
    ),
    notes="Full GGN of the 120 moments (2 × 30 times × 2 states) of 100 fixed held-out paths; δ and σ jointly by "
          "the evidence; intervals F(θ*) ± 1.645 √(var + σ²).",
)
