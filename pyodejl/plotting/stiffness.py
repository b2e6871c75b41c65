"""Figures of the stiffness-penalised training experiment (seed 001).

They read what :func:`load_stiffness_experiment` returns from a folder of
``pyodejl run stiffness`` (records by epoch, Hessian spectra) and compute nothing but
medians and ranges over seeds for drawing.

* :func:`plot_proxy_evolution` — seed 001's "evolution of stiffness proxies" (plus the
  training and test error), one line per model: median over the seeds, min–max shaded.
* :func:`plot_hessian_spectra` — the exact Hessian spectra of the trained ResNets side by side.
* :func:`plot_node_evolution` — the Neural ODE pair: error, SRNODE's R_S and NFE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyodejl.plotting.training import pyplot, save_figure  # one figure-saving rule for every plot

__all__ = ["load_stiffness_experiment", "plot_proxy_evolution", "plot_hessian_spectra", "plot_node_evolution",
           "plot_stiffness_experiment"]

_COLOURS = {"res": "C0", "res-l2": "C1", "res-stiff": "C3", "res-stiff-sampled": "C5", "node": "C2", "node-stiff": "C4"}
#: Display names of the models (figures and tables).
LABELS = {
    "res": "RES",
    "res-l2": "RES L2",
    "res-stiff": "RES stiff",
    "res-stiff-sampled": "RES stiff (sampled)",
    "node": "NODE",
    "node-stiff": "NODE stiff",
}
_RESNETS = ("res", "res-l2", "res-stiff", "res-stiff-sampled")
_PROXY_PANELS = (
    ("train_mse", "training MSE (ER)", "log"),
    ("test_mse", "test MSE (GE)", "log"),
    ("stiffness_ratio", "Σ stiffness ratio r (can be < 0)", "symlog"),
    ("magnitude_ratio", "Σ magnitude ratio r̃ (+inf, not drawn, once a J is singular)", "log"),
    ("singular_value_ratio", "Σ singular value ratio σ₁/σ_d (+inf once a J is singular)", "log"),
    ("spectral_radius", "Σ spectral radius ρ", "log"),
)
_NODE_PANELS = (
    ("train_mse", "training MSE (ER)", "log"),
    ("test_mse", "test MSE (GE)", "log"),
    ("stiffness_estimate", "R_S (mean Shampine estimate · dt)", "log"),
    ("nfe", "NFE of the training-set solve", "linear"),
)


def load_stiffness_experiment(folder) -> dict:
    """``{model: [{"records": [per-epoch dicts with "epoch"], "spectrum": ascending array or None}]}``
    of a ``pyodejl run stiffness`` folder, finished runs and unfinished ones alike.

    Measurement records at step k belong to epoch k / (steps per epoch); the trained
    model's measurements (``result.json``) to the last epoch.
    """
    from pyodejl.experiments.folder import RunFolder

    folder = Path(folder)
    top = RunFolder(folder)
    s = top.config["settings"]
    per_epoch = s["n_train"] // s["batch_size"]
    out = {}
    for model in LABELS:
        runs = []
        for seed in sorted((folder / model).glob("seed_*"), key=lambda p: int(p.name.split("_")[1])):
            run = RunFolder(seed)
            epochs = {}
            for r in run.records():
                if r.get("kind") == "measurement":
                    epochs.setdefault(r["step"] // per_epoch, {}).update(r)
            result = run.result()
            spectrum = None
            if result is not None:
                final = dict(result["final"])
                spectrum = final.pop("hessian_spectrum", None)
                last = s["node_epochs"] if model.startswith("node") else s["epochs"]
                epochs.setdefault(last, {}).update(final)
            records = [{**rec, "epoch": e} for e, rec in sorted(epochs.items())]
            runs.append({"records": records, "spectrum": None if spectrum is None else np.asarray(spectrum)})
        if runs:
            out[model] = runs
    return out


def _series(runs, key):
    """Epochs where every run has ``key``, and the ``(seeds, epochs)`` values there."""
    per_run = [{r["epoch"]: r[key] for r in run["records"] if r.get(key) is not None} for run in runs]
    epochs = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    return np.array(epochs), np.array([[d[e] for e in epochs] for d in per_run], dtype=np.float64)


def _evolution(experiment, models, panels, title, path):
    plt = pyplot()
    ncol = 3 if len(panels) > 4 else 2
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.3 * nrow), squeeze=False)
    for ax, (key, label, scale) in zip(axes.flat, panels):
        for m in models:
            epochs, vals = _series(experiment[m], key)
            if epochs.size == 0:
                continue
            c = _COLOURS.get(m)
            ax.plot(
                epochs,
                np.median(vals, axis=0),
                color=c,
                marker="o" if epochs.size < 30 else None,
                ms=3,
                label=f"{LABELS.get(m, m)} (n={vals.shape[0]})",
            )
            if vals.shape[0] > 1:
                ax.fill_between(epochs, vals.min(axis=0), vals.max(axis=0), color=c, alpha=0.2, lw=0)
        if scale == "symlog":
            ax.set_yscale("symlog", linthresh=1e3)
        else:
            ax.set_yscale(scale)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_proxy_evolution(experiment: dict, path=None, models=_RESNETS):
    """Seed 001's "evolution of stiffness proxies": totals over layers and training samples per epoch.

    Args:
        experiment: :func:`load_stiffness_experiment` of a folder.
        path: where to save the figure (PNG), or None.
        models: ResNet models to draw (those present).
    """
    models = [m for m in models if m in experiment]
    return _evolution(
        experiment,
        models,
        _PROXY_PANELS,
        "ResNet on Alpine02: error and stiffness proxies (median over seeds, min–max shaded)",
        path,
    )


def plot_node_evolution(experiment: dict, path=None, models=("node", "node-stiff")):
    """The Neural ODE pair: errors, SRNODE's stiffness estimate R_S and the NFE per epoch."""
    models = [m for m in models if m in experiment]
    return _evolution(
        experiment,
        models,
        _NODE_PANELS,
        "Neural ODE on Alpine02 with/without the SRNODE penalty (median, min–max)",
        path,
    )


def plot_hessian_spectra(experiment: dict, path=None, models=_RESNETS, bins: int = 60):
    """The trained ResNets' exact Hessian spectra (training MSE), one panel per model.

    Each panel is a histogram of the eigenvalues of every seed's Hessian pooled (counts
    per seed, so a panel sums to p), on a symmetric-log axis with logarithmic bins down to
    1e-8 of the largest |λ| (smaller ones share the central bin): bulk and both tails are
    visible; the title gives the median largest eigenvalue, trace and negative mass.
    """
    plt = pyplot()
    models = [m for m in models if m in experiment and any(r["spectrum"] is not None for r in experiment[m])]
    if not models:
        raise ValueError("no model of the experiment has a Hessian spectrum (was it run with --no-hessian?)")
    spectra = {m: [r["spectrum"] for r in experiment[m] if r["spectrum"] is not None] for m in models}
    allw = np.concatenate([w for ws in spectra.values() for w in ws])
    top = float(np.max(np.abs(allw))) * 1.5
    lin = top * 1e-8  # eigenvalues within 1e-8 of the largest fall in the central bin
    edges_pos = np.geomspace(lin, top, bins // 2)
    edges = np.concatenate([-edges_pos[::-1], [0.0], edges_pos])
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.4), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], models):
        ws = spectra[m]
        counts = np.mean([np.histogram(w, bins=edges)[0] for w in ws], axis=0)
        ax.stairs(counts, edges, fill=True, color=_COLOURS.get(m), alpha=0.7)
        ax.set_xscale("symlog", linthresh=lin)
        ticks = [t for d in (4, 2, 0, -2, -4) for t in (-(10.0**d),)] + [0.0] + [10.0**d for d in (-4, -2, 0, 2, 4)]
        ax.set_xticks([t for t in ticks if abs(t) <= top and (t == 0 or abs(t) >= lin)])
        ax.tick_params(axis="x", labelsize=7)
        ax.set_yscale("log")
        ax.set_xlabel("Hessian eigenvalue")
        emax = np.median([w[-1] for w in ws])
        tr = np.median([np.sum(w) for w in ws])
        neg = np.median([np.sum(w[w < 0]) for w in ws])
        ax.set_title(f"{LABELS.get(m, m)} (n={len(ws)})\nλmax {emax:.3g}, trace {tr:.3g}, Σλ<0 {neg:.2g}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("eigenvalues per bin (mean over seeds)")
    fig.suptitle(f"Exact Hessian spectra of the training MSE at the end of training (p = {ws[0].size})", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_stiffness_experiment(experiment: dict, out) -> list[Path]:
    """Every figure the experiment's data allow, into the folder ``out``; returns the paths.

    ``stiffness_proxies.png``, ``stiffness_hessian_spectra.png`` (if any ResNet has a
    spectrum) and ``stiffness_node.png`` (if a Neural ODE model ran).
    """
    plt = pyplot()
    out = Path(out)
    written = []
    if any(m in experiment for m in _RESNETS):
        plt.close(plot_proxy_evolution(experiment, out / "stiffness_proxies.png"))
        written.append(out / "stiffness_proxies.png")
        if any(r["spectrum"] is not None for m in _RESNETS for r in experiment.get(m, [])):
            plt.close(plot_hessian_spectra(experiment, out / "stiffness_hessian_spectra.png"))
            written.append(out / "stiffness_hessian_spectra.png")
    if any(m in experiment for m in ("node", "node-stiff")):
        plt.close(plot_node_evolution(experiment, out / "stiffness_node.png"))
        written.append(out / "stiffness_node.png")
    return written
