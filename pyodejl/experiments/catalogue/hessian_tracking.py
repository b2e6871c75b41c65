"""Seed 000 §6: the top Hessian eigenvalue through training — batch size (Figs. 7, 9) and NODE vs ANODE (Fig. 11).

Every row is a tracked run (:func:`pyodejl.experiments.track`'s configuration and
measurement): the exact Hessian of the full-batch loss every ``hessian_every`` steps.

* ``fig7-*`` / ``fig9-*``: task ``exponential-1d`` (x' = −x, 40 observations); a NODE
  with a 1 → 1 → 1 tanh field (4 parameters, Fig. 7's size) and an MLP t → x(t) with 10
  tanh units (31 parameters, Fig. 9's size); SGD with batches 1, 4, 10 and full-batch GD,
  at lr 0.05 and 0.3, 600 steps, the Hessian every 10 steps.
* ``fig11-node`` / ``fig11-anode``: 128 points of Dupont et al.'s nested spheres in 2-D,
  fields with two hidden layers of 16 tanh units (the ANODE one augmented dimension),
  squared error on the ±1 labels, full-batch Adam 0.01, 300 steps, the Hessian every 20.

Derived from each run's records: the roughness of the top eigenvalue (its total
variation over the run divided by its mean magnitude; ``late_roughness`` over the second
half), the smallest top eigenvalue reached, and how many tracked steps had a negative one.
"""

from __future__ import annotations

import numpy as np

from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.runs import RunConfig


def _rows():
    rows = {}
    for lr in (0.05, 0.3):
        for fig, model in (("fig7", dict(model="node", width=1)), ("fig9", dict(model="mlp", width=10))):
            for batch in (1, 4, 10, None):
                name = f"{fig}-{model['model']}-{'gd' if batch is None else f'b{batch}'}-lr{lr:g}"
                rows[name] = dict(task="exponential-1d", optimizer="gd" if batch is None else "sgd", batch_size=batch,
                                  lr=lr, hessian_every=10, steps_key="batch_steps", **model)
    for model in ("node", "anode"):
        rows[f"fig11-{model}"] = dict(task="nested-spheres", dim=2, num_samples=128, width=16, depth=2, loss="mse",
                                      optimizer="adam", lr=0.01, hessian_every=20, steps_key="sphere_steps",
                                      model=model, **({"augment_dim": 1} if model == "anode" else {}))
    return rows


ROWS = _rows()


def settings(quick: bool) -> dict:
    return {"batch_steps": 20 if quick else 600, "sphere_steps": 20 if quick else 300}


def config_of(row: str, seed: int, s: dict) -> RunConfig:
    """The tracked-run configuration of a row."""
    fields = dict(ROWS[row])
    steps = s[fields.pop("steps_key")]
    return RunConfig(steps=steps, seed=seed, **fields).resolved()


def setup(row: str, seed: int, s: dict) -> RunSpec:
    from pyodejl.experiments.tracking import tracking_spec

    problem, training, measurement = tracking_spec(config_of(row, seed, s))
    return RunSpec(problem, training, (measurement,))


def tracked_runs(folder, seed: int = 0) -> dict:
    """``{row: Run}`` of the rows of a ``hessian-tracking`` folder that recorded anything (diverged rows
    included, up to their last tracked step), each a :class:`~pyodejl.experiments.Run` the tracking figures read."""
    from pathlib import Path

    from pyodejl.experiments.folder import RunFolder
    from pyodejl.experiments.runs import Run

    folder = Path(folder)
    s = RunFolder(folder).config["settings"]
    runs = {}
    for row in ROWS:
        path = folder / row / f"seed_{seed}"
        if path.is_dir():
            run = Run(path, config=config_of(row, seed, s))
            if run.records:
                runs[row] = run
    return runs


def summarise(records: list[dict]) -> dict:
    """Roughness and sign of the top eigenvalue over a run's tracked steps."""
    steps = np.array([r["step"] for r in records])
    eig = np.array([r["eig_max"] for r in records], dtype=np.float64)
    late = eig[steps >= steps[-1] / 2]
    rough = lambda v: float(np.sum(np.abs(np.diff(v))) / np.mean(np.abs(v))) if len(v) > 1 else 0.0  # noqa: E731
    return {"roughness": rough(eig), "late_roughness": rough(late), "min_eig_max": float(eig.min()),
            "negative_eig_max_steps": int(np.sum(eig < 0)), "abs_eig_min": abs(float(records[-1]["eig_min"]))}


EXPERIMENT = Experiment(
    name="hessian-tracking",
    title="The top Hessian eigenvalue through training: batch size, and NODE against ANODE",
    source="seed 000 §6, Figs. 7, 9 and 11",
    variants=tuple(ROWS),
    settings=settings,
    setup=setup,
    summarise=summarise,
    columns=(
        Column("loss", "final loss", digits=3),
        Column("eig_max", "final λ_max", digits=3),
        Column("abs_eig_min", "final −λ_min", digits=2),
        Column("roughness", "roughness of λ_max", digits=3),
        Column("late_roughness", "roughness, 2nd half", digits=3),
        Column("min_eig_max", "smallest λ_max", digits=3),
        Column("negative_eig_max_steps", "steps with λ_max < 0", digits=2),
        Column("accuracy", "accuracy (%)", scale=100, digits=3),
    ),
    targets=(
        Target("eig_max", "fig11-anode", "fig11-node", "ratio", "<=", 1.0,
               "ANODE ends in a flatter minimum (final λ_max)", "ANODE flatter"),
        Target("late_roughness", "fig11-anode", "fig11-node", "ratio", "<=", 1.0,
               "ANODE's λ_max evolves more smoothly late in training", "ANODE smoother"),
        Target("abs_eig_min", "fig11-anode", "fig11-node", "ratio", "<=", 1.0,
               "ANODE ends with smaller negative eigenvalues", "ANODE smaller"),
        Target("roughness", "fig7-node-b1-lr0.05", "fig7-node-gd-lr0.05", "ratio", ">=", 1.0,
               "batch 1 makes the NODE's λ_max rougher than GD (lr 0.05)", "erratic for small batches"),
        Target("roughness", "fig9-mlp-b1-lr0.05", "fig9-mlp-gd-lr0.05", "ratio", ">=", 1.0,
               "batch 1 makes the MLP's λ_max rougher than GD (lr 0.05)", "the same for a plain network"),
        Target("negative_eig_max_steps", "fig7-node-b1-lr0.05", "fig7-node-b1-lr0.05", "value", ">=", 1.0,
               "the full-batch λ_max becomes negative with batch 1 (NODE, lr 0.05)", "sometimes negative"),
    ),
    seeds=(0,),
    quick_variants=("fig7-node-b4-lr0.05", "fig9-mlp-b4-lr0.05"),
    notes="Hessians of the full-batch loss; the seed does not say which loss its Hessian was of.",
)
