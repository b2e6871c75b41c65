"""The Hessian against the Gauss–Newton matrix through training (experiment ``ggn-vs-hessian``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_ggn_vs_hessian"]


def plot_ggn_vs_hessian(finals: dict, path=None):
    """One row of three panels per task: the spectra of H, G (and F) at the first and last
    checkpoint, the extremes against the step, and where H and G differ.

    Args:
        finals: ``{row: final measurement}`` of an experiment folder's rows
            (``<task>-step<k>``), in row order.
        path: where to save the PNG; None: do not save.

    Returns:
        the Matplotlib figure.
    """
    import matplotlib.pyplot as plt

    tasks: dict[str, list] = {}
    for row, rec in finals.items():
        task, step = row.rsplit("-step", 1)
        tasks.setdefault(task, []).append((int(step), rec))
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 4.2 * len(tasks)), squeeze=False)
    for row_axes, (task, recs) in zip(axes, tasks.items()):
        recs.sort(key=lambda sr: sr[0])
        ax = row_axes[0]
        for (step, rec), ls in ((recs[0], ":"), (recs[-1], "-")):
            rank = np.arange(1, len(rec["eig_H"]) + 1)
            for key, color, label in (("eig_H", "C0", "H"), ("eig_G", "C1", "GGN"), ("eig_F", "C2", "emp. Fisher")):
                if key in rec:
                    ax.plot(rank, rec[key][::-1], ls, color=color, label=f"{label}, step {step}")
        scale = max(abs(recs[0][1]["lam_max_H"]), abs(recs[-1][1]["lam_max_H"]))
        ax.set_yscale("symlog", linthresh=1e-8 * scale)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="eigenvalue rank", ylabel="eigenvalue (symlog)", title=f"{task}: spectra")
        ax.legend(fontsize=7)
        x = np.maximum([s for s, _ in recs], 1)
        ax = row_axes[1]
        ax.plot(x, [r["lam_max_H"] for _, r in recs], "o-", color="C0", label="λmax(H)")
        ax.plot(x, [r["lam_max_G"] for _, r in recs], "s--", color="C1", label="λmax(GGN)")
        ax.plot(x, [-r["lam_min_H"] for _, r in recs], "v:", color="C0", label="−λmin(H)")
        if "lam_max_F" in recs[0][1]:
            ax.plot(x, [r["lam_max_F"] for _, r in recs], "^-.", color="C2", label="λmax(emp. Fisher)")
        ax.plot(x, [r["loss"] for _, r in recs], "-", color="0.6", label="loss")
        ax.set(xscale="log", yscale="log", xlabel="training step (0 plotted at 1)", title="extremes through training")
        ax.legend(fontsize=7)
        ax = row_axes[2]
        for key, style, label in (("rel_diff", "o-", "‖H − GGN‖_F / ‖H‖_F"),
                                  ("neg_mass_H", "v:", "negative mass of H"),
                                  ("top1_overlap", "s--", "|⟨u₁(H), u₁(GGN)⟩|"),
                                  ("topk_overlap", "d-.", "top-5 subspace overlap")):
            ax.plot(x, [r[key] for _, r in recs], style, label=label)
        ax.set(xscale="log", ylim=(-0.02, 1.05), xlabel="training step (0 plotted at 1)",
               title="where H and GGN differ")
        ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
