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
    if ax.get_legend_handles_labels()[0]:  # an experiment that trains nothing has no curves
        ax.legend(fontsize=7, ncol=2)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130, bbox_inches="tight")
    return fig


def _finals(folder: Path, seed: int = 0) -> dict:
    from pyodejl.experiments.report import row_finals

    finals = row_finals(folder, seed)
    if not finals:
        raise FileNotFoundError(f"{folder} holds no finished run of seed {seed}")
    return finals


def plot_experiment(folder, out) -> list[Path]:
    """Every figure of an experiment folder into folder ``out``: the training curves, and
    the experiment's own figures where it has them (``stiffness``: seed 001's proxy
    evolution, Hessian spectra, the Neural ODE pair; ``laplace-lv``: the predictive bands;
    ``fd-step``: seed 000's Fig. 4; ``hessian-scaling``: its Fig. 6; ``ggn-vs-hessian``: the spectra;
    ``hessian-tracking``: its Figs. 7, 9, 11, 14 and 15).
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
    if name == "fd-step":
        from pyodejl.plotting.training import plot_fd_error

        finals = _finals(folder)
        path = out / "fd-step_error.png"
        plt.close(plot_fd_error(next(iter(finals.values()))["h"], [f["fd_error"] for f in finals.values()],
                                reference=[f["hessian_abs_sum"] for f in finals.values()], labels=list(finals),
                                path=path, title="Seed 000 Fig. 4: FD Hessian error against h; dashed: Σ|H_AA|"))
        written.append(path)
    if name == "hessian-scaling":
        from pyodejl.experiments.catalogue.hessian_scaling import LIMITS, time_key
        from pyodejl.plotting.training import plot_hessian_time

        finals = _finals(folder)
        path = out / "hessian-scaling_time.png"
        times = {m: [f.get(time_key(m), np.nan) for f in finals.values()] for m in LIMITS}
        plt.close(plot_hessian_time([f["num_params"] for f in finals.values()], times, path=path,
                                    title="Seed 000 Fig. 6: seconds per full Hessian (compilation excluded)"))
        written.append(path)
    if name == "ggn-vs-hessian":
        from pyodejl.plotting.gauss_newton import plot_ggn_vs_hessian

        path = out / "ggn-vs-hessian_spectra.png"
        plt.close(plot_ggn_vs_hessian(_finals(folder), path))
        written.append(path)
    if name == "hessian-tracking":
        written += _tracking_figures(folder, out)
    if name == "laplace-lv":
        from pyodejl.plotting.laplace import plot_predictive_bands

        path = out / "laplace-lv_bands.png"
        plt.close(plot_predictive_bands(folder, path))
        written.append(path)
    return written


def _tracking_figures(folder: Path, out: Path) -> list[Path]:
    """Seed 000 Figs. 7 and 9 (λ_max per batch size, one figure per model and learning rate), Fig. 11
    (NODE against ANODE) and Figs. 14–15 (their spectra at four stages) of a ``hessian-tracking`` folder."""
    import matplotlib.pyplot as plt

    from pyodejl.experiments.catalogue.hessian_tracking import tracked_runs
    from pyodejl.plotting.training import plot_evolution, plot_metric_grid, plot_spectra_stages

    runs = tracked_runs(folder)
    written = []
    for prefix, fig_no, model in (("fig7-node", 7, "NODE"), ("fig9-mlp", 9, "MLP")):
        for lr in ("0.05", "0.3"):
            rows = [r for r in runs if r.startswith(prefix + "-") and r.endswith(f"-lr{lr}")]
            if not rows:
                continue
            path = out / f"hessian-tracking_{prefix}_lr{lr}.png"
            plt.close(plot_metric_grid([runs[r] for r in rows], "eig_max", path=path,
                                       title=f"Top Hessian eigenvalue against batch size: {model}, lr {lr} "
                                             f"(seed 000 Fig. {fig_no})"))
            written.append(path)
    pair = [runs[r] for r in ("fig11-node", "fig11-anode") if r in runs]
    if pair:
        path = out / "hessian-tracking_fig11.png"
        plt.close(plot_evolution(pair, path=path, title="Nested spheres 2-D: NODE against ANODE (seed 000 Fig. 11)"))
        written.append(path)
        for run in pair:
            if run.spectra():
                path = out / f"hessian-tracking_fig14_15_{run.config.model}.png"
                plt.close(plot_spectra_stages(run, path=path, title=f"Hessian spectra during training: {run.label} "
                                                                     "(seed 000 Figs. 14 and 15)"))
                written.append(path)
    return written
