"""Figures of an experiment folder (``pyodejl report DIR --figures OUT``): they draw the records."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_experiment", "plot_training_curves"]


def plot_training_curves(folder, path=None, key: str = "loss"):
    """The training loss of every row of an experiment folder against the step: the
    mean over its finished and unfinished seeds (thin lines: each seed).

    Args:
        folder: an experiment folder written by ``pyodejl run``.
        path: where to save the figure (PNG); None: do not save.
        key: the record key drawn (records of kind ``"loss"``).

    Returns:
        the Matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from pyodejl.experiments.folder import RunFolder

    folder = Path(folder)
    name = RunFolder(folder).config.get("experiment", folder.name)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.cm.tab20(np.linspace(0, 1, 20))
    rows = sorted(d for d in folder.iterdir() if d.is_dir() and any(d.glob("seed_*/config.json")))
    for i, row in enumerate(rows):
        curves = []
        for seed in sorted(row.glob("seed_*")):
            recs = [r for r in RunFolder(seed).records() if r.get("kind") == "loss" and key in r]
            if recs:
                curves.append((np.array([r["step"] for r in recs]), np.array([r[key] for r in recs])))
        if not curves:
            continue
        color = colors[i % 20]
        for steps, values in curves:
            ax.plot(steps, values, color=color, lw=0.5, alpha=0.4)
        n = min(len(s) for s, _ in curves)
        ax.plot(curves[0][0][:n], np.mean([v[:n] for _, v in curves], axis=0), color=color, lw=1.6, label=row.name)
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"training {key} (regularised objective)")
    ax.set_title(name)
    ax.legend(fontsize=7, ncol=2)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130, bbox_inches="tight")
    return fig


def plot_experiment(folder, out) -> list[Path]:
    """Every figure of an experiment folder into folder ``out``: the training curves, and
    the experiment's own figures where it has them (``stiffness``: seed 001's proxy
    evolution, Hessian spectra, the Neural ODE pair; ``laplace-lv``: the predictive bands).
    Returns the paths written."""
    import matplotlib.pyplot as plt

    from pyodejl.experiments.folder import RunFolder

    folder, out = Path(folder), Path(out)
    name = RunFolder(folder).config.get("experiment")
    path = out / f"{name}_training.png"
    plt.close(plot_training_curves(folder, path))
    written = [path]
    if name == "stiffness":
        from pyodejl.plotting.stiffness import load_stiffness_experiment, plot_stiffness_experiment

        written += plot_stiffness_experiment(load_stiffness_experiment(folder), out)
    if name == "laplace-lv":
        from pyodejl.plotting.laplace import plot_predictive_bands

        path = out / "laplace-lv_bands.png"
        plt.close(plot_predictive_bands(folder, path))
        written.append(path)
    return written
