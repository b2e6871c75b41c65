"""A tiny declared experiment for the engine's tests: least squares by Adam.

Each step also sleeps in a cadence measurement, so a kill from outside lands at
a random point of training, checkpointing or recording.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

import pyodejl as pj
from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.trainer import Measurement, Problem, Training

N, P = 40, 3


def data():
    r = np.random.default_rng(7)
    X = r.normal(size=(N, P))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.1 * r.normal(size=N)


def squared_error(theta, X, y):
    return 0.5 * jnp.mean((X @ theta - y) ** 2)


def settings(quick):
    return {"steps": 12 if quick else 90, "lr": 0.05, "sleep": 0.0 if quick else 0.01}


def setup(variant, seed, s):
    X, y = data()
    batch = None if variant == "full" else 8

    def objective(step, indices):
        idx = slice(None) if indices is None else indices
        return pj.FunctionObjective(squared_error, P, (X[idx], y[idx]))

    def slow_norm(obj, theta):
        time.sleep(s["sleep"])
        return {"grad_norm": float(np.linalg.norm(obj.grad(theta)))}

    full = objective(-1, None)
    final = Measurement("final", lambda obj, th: {"loss": full.value(th), "w0": float(th[0])})
    problem = Problem(theta0=np.random.default_rng(seed).normal(size=P), objective=objective, num_samples=N)
    training = Training(steps=s["steps"], lr=s["lr"], batch_size=batch, record_every=3, checkpoint_every=4)
    return RunSpec(problem, training, (Measurement("norm", slow_norm, every=2), final))


EXPERIMENT = Experiment(
    name="toy", title="least squares", source="none", variants=("full", "minibatch"), settings=settings,
    setup=setup, columns=(Column("loss", "loss"), Column("w0", "w₀")),
    targets=(Target("loss", "minibatch", "full", "ratio", "<=", 10.0, "minibatches within 10× of full batch"),),
    seeds=(0, 1), quick_seeds=(0,))


if __name__ == "__main__":
    import sys

    from pyodejl.experiments.engine import run_experiment

    run_experiment(EXPERIMENT, sys.argv[1], progress=False, log=lambda m: None)
