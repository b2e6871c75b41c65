"""The engine's method-agreement job (seed 000 §5.1, Figs. 2–3).

Fits a small Neural ODE to the coupled sinusoids (x' = y, y' = −x from (1, 0):
targets (cos t, −sin t)), computes its Hessian by every method, and writes
the pairwise agreement table, each method's Hessian and eigenvalue histograms
in seed 000 Fig. 2 style.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import pyodejl as pj


def coupled_sinusoids_loss(width=8, num_times=10, t_end=2.0, loss="abs", rtol=1e-8, atol=1e-10):
    """The seed-000 §5 learning-dynamics problem as a :class:`pyodejl.TrajectoryLoss`.

    Defaults give a 2-``width``-2 tanh Neural ODE (p = 4·width + width + 2 … = 42
    for width 8) with an absolute-error loss, like the seed's 27-parameter
    example of Fig. 2.
    """
    ts = np.linspace(0.0, t_end, num_times)
    targets = np.stack([np.cos(ts), -np.sin(ts)], axis=1)
    model = pj.NeuralODE(pj.MLP([2, width, 2], "tanh"), solver="dopri5", rtol=rtol, atol=atol)
    return pj.TrajectoryLoss(model, ts=ts, y0=[1.0, 0.0], targets=targets, loss=loss)


def fit(objective, theta, steps=300, lr=1e-2):
    """Adam on the discrete gradient (the one trainer, nothing written); returns the fitted θ."""
    from pyodejl.experiments.trainer import Problem, Training, train

    return train(Problem(theta, lambda step, indices: objective), Training(steps=steps, lr=lr))["theta"]


def agreement_table(hessians: dict) -> tuple[list[str], np.ndarray]:
    """Pairwise max |H_a − H_b| / max |H_b| for every pair of methods."""
    names = list(hessians)
    table = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            table[i, j] = np.abs(hessians[a] - hessians[b]).max() / np.abs(hessians[b]).max()
    return names, table


def run_agreement(out_dir, width=8, steps=300, seed=0) -> str:
    """Fit, compute the Hessian by every method, write results; returns a Markdown summary.

    Files written to ``out_dir``: ``agreement.json`` (table, timings, fd step),
    ``hessians.npz``, ``histograms.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyodejl.plotting import plot_eigenvalue_histogram

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    obj = coupled_sinusoids_loss(width=width)
    theta0 = obj.model.init(seed)
    theta = fit(obj, theta0, steps=steps)
    hessians, seconds, infos = {}, {}, {}
    for name in pj.HESSIAN_METHODS:
        t = time.perf_counter()
        hessians[name], infos[name] = obj.hessian(theta, method=name, return_info=True)
        seconds[name] = time.perf_counter() - t
    names, table = agreement_table(hessians)
    eigs = {n: np.linalg.eigvalsh(0.5 * (H + H.T)) for n, H in hessians.items()}

    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharex=True)
    for ax, name in zip(axes.ravel(), names):
        plot_eigenvalue_histogram(eigs[name], bins=40, ax=ax)
        ax.set_title(name)
    axes.ravel()[-1].axis("off")
    fig.suptitle(f"Hessian eigenvalues by method, coupled sinusoids, p = {obj.num_params} (cf. seed 000 Fig. 2)")
    fig.tight_layout()
    fig.savefig(out / "histograms.png", dpi=110)
    plt.close(fig)
    np.savez(out / "hessians.npz", theta=theta, **{n.replace("-", "_"): H for n, H in hessians.items()})
    summary = {
        "num_params": obj.num_params,
        "loss_initial": obj.value(theta0),
        "loss_final": obj.value(theta),
        "methods": names,
        "relative_difference": table.tolist(),
        "seconds_first_call": seconds,
        "fd_step": float(infos["fd"]["h"]),
        "fd_grad_step": float(infos["fd-grad"]["h"]),
        "eig_max": {n: float(e[-1]) for n, e in eigs.items()},
        "eig_min": {n: float(e[0]) for n, e in eigs.items()},
    }
    (out / "agreement.json").write_text(json.dumps(summary, indent=2))

    w = max(len(n) for n in names)
    lines = [
        f"Coupled sinusoids, 2-{width}-2 tanh Neural ODE (p = {obj.num_params}), abs loss, "
        f"dopri5 rtol 1e-8; fitted {steps} Adam steps: "
        f"loss {summary['loss_initial']:.4f} → {summary['loss_final']:.4f}.",
        "",
        "Pairwise max |H_row − H_col| / max |H_col|:",
        "",
        "```",
        " " * w + " " + " ".join(f"{n[:10]:>10}" for n in names),
    ]
    for i, a in enumerate(names):
        lines.append(f"{a:>{w}} " + " ".join(f"{table[i, j]:10.1e}" for j in range(len(names))))
    lines += ["```", "", f"fd chose h = {summary['fd_step']:g}; fd-grad chose h = {summary['fd_grad_step']:g}.", ""]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":  # pragma: no cover
    run_agreement("runs/agreement")
