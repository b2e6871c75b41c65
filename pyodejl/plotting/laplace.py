"""Predictive bands of the Laplace experiment (``laplace-lv``): one panel per state."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_predictive_bands"]

_COLORS = {"laplace-glm": "C0", "laplace-samples": "C2", "nuts": "k", "ensemble": "C3"}


def plot_predictive_bands(folder, path=None, seed: int = 0):
    """Mean and 90 % epistemic band (mean ± 1.645 std) of every row of a ``laplace-lv``
    folder at one seed, with the training and held-out observations and the truth.

    Args:
        folder: the experiment folder (``pyodejl run laplace-lv``).
        path: where to save the PNG; None: do not save.
        seed: the run seed drawn (default 0).

    Returns:
        the Matplotlib figure.

    Raises:
        FileNotFoundError: no finished run of that seed in ``folder``.
    """
    import matplotlib.pyplot as plt

    from pyodejl.experiments.catalogue import laplace_lv as lv
    from pyodejl.experiments.folder import RunFolder
    from pyodejl.experiments.report import row_finals

    folder = Path(folder)
    settings = RunFolder(folder).config["settings"]
    sets = lv.data(settings["data_seed"], settings["n_train"], settings["n_held"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharex=True)
    grid = np.linspace(0.0, lv.T_END, 400)
    truth = lv.lotka_volterra(grid)
    drawn, spans = 0, [[], []]
    for row, final in row_finals(folder, seed).items():
        if "band_t" not in final:
            continue
        drawn += 1
        t, mean, std = (np.asarray(final[k]) for k in ("band_t", "band_mean", "band_std"))
        for i, ax in enumerate(axes):
            if row != "laplace-samples":  # its weight-space samples blow up: it would set the scale alone
                spans[i] += [np.min(mean[:, i] - lv.Z90 * std[:, i]), np.max(mean[:, i] + lv.Z90 * std[:, i])]
            ax.plot(t, mean[:, i], color=_COLORS.get(row, "C4"), lw=1.2, label=row)
            ax.fill_between(t, mean[:, i] - lv.Z90 * std[:, i], mean[:, i] + lv.Z90 * std[:, i],
                            color=_COLORS.get(row, "C4"), alpha=0.15)
    if not drawn:
        raise FileNotFoundError(f"{folder} holds no finished laplace-lv run of seed {seed}")
    for i, (ax, name) in enumerate(zip(axes, ("prey x", "predator y"))):
        ax.plot(grid, truth[:, i], color="0.5", lw=0.8, ls="--", label="truth")
        ax.plot(*(lambda t, v: (t, v[:, i]))(*sets["train"]), "o", ms=3, color="k", label="training")
        for key, marker in (("interp", "x"), ("extrap", "+")):
            ax.plot(*(lambda t, v: (t, v[:, i]))(*sets[key]), marker, ms=5, color="C1", label=f"held out ({key})")
        ax.axvline(lv.T_TRAIN, color="0.7", lw=0.8)
        low, high = min(spans[i] + [truth[:, i].min()]), max(spans[i] + [truth[:, i].max()])
        ax.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
        ax.set_xlabel("t")
        ax.set_title(name)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Predictive 90 % bands (epistemic), seed {seed}; laplace-samples' band runs off the axes")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130, bbox_inches="tight")
    return fig
