"""Figures of training runs with Hessian tracking (seed 000 Figs. 4, 6, 7–9, 11, 14–17;
seed 003 Fig. 1 for the loss surface).

Every ``plot_*`` function returns a Matplotlib ``Figure`` and, given ``path``,
also saves it there (PNG at 150 dpi unless the suffix says otherwise). Runs may
be given as :class:`pyodejl.experiments.Run` objects (``load_run(folder)``);
plotting draws what it is given and computes no curvature itself (loss surfaces
come from :func:`pyodejl.experiments.loss_surface`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "EVOLUTION_PANELS",
    "plot_evolution",
    "plot_metric_grid",
    "plot_spectra_stages",
    "plot_fd_error",
    "plot_hessian_time",
    "plot_loss_surface",
    "plot_runs",
]

EVOLUTION_PANELS = (
    ("eig_max", "largest eigenvalue"),
    ("eig_2nd", "second-largest eigenvalue"),
    ("eig_min", "smallest eigenvalue"),
    ("trace", "trace"),
    ("loss", "loss"),
    ("grad_norm", "gradient norm"),
)


def pyplot():
    """``matplotlib.pyplot``, imported on first use (plotting is optional)."""
    import matplotlib.pyplot as plt

    return plt


def _as_runs(runs):
    # a run is anything with `records`, `config`, `spectra()` and `label`
    # (pyodejl.experiments.Run); plotting reads them and computes nothing
    if hasattr(runs, "records"):
        runs = [runs]
    out = list(runs)
    if not out:
        raise ValueError("no runs given")
    for r in out:
        if not hasattr(r, "records"):
            raise TypeError(f"expected run objects (pyodejl.experiments.load_run(folder)), got {r!r}")
    return out


def _labels(runs, labels):
    if labels is None:
        return [r.label for r in runs]
    labels = list(labels)
    if len(labels) != len(runs):
        raise ValueError(f"labels must have one entry per run ({len(runs)}), got {len(labels)}")
    return labels


def save_figure(fig, path):
    """Save ``fig`` to ``path`` (parents created; 150 dpi, tight box) unless ``path`` is None; return ``fig``.

    The one figure-saving rule of every plot.
    """
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def plot_evolution(runs, labels=None, panels=EVOLUTION_PANELS, path=None, title=None):
    """Evolution of the tracked quantities over training, one line per run.

    Seed 000 Figs. 7, 11, 16, 17: largest, second-largest and smallest Hessian
    eigenvalue and the trace; here also the loss (log scale) and gradient norm.
    The smallest eigenvalue uses a symmetric-log axis so that both tiny and
    large negative values are visible. Estimated records (Lanczos/Hutch++) are
    drawn with hollow markers.

    Args:
        runs: run folders or :class:`~pyodejl.experiments.Run` objects.
        labels: legend labels (default: model, parameter count, optimiser).
        panels: ``(record key, title)`` pairs, default :data:`EVOLUTION_PANELS`.
        path: where to save the figure.
    """
    plt = pyplot()
    runs = _as_runs(runs)
    labels = _labels(runs, labels)
    ncol = 3 if len(panels) > 4 else 2
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.1 * nrow), squeeze=False)
    for ax, (key, name) in zip(axes.flat, panels):
        for run, lab in zip(runs, labels):
            steps, vals = run.steps, run.column(key)
            exact = np.array([r.get("hessian", "exact") == "exact" for r in run.records])
            line, = ax.plot(steps, vals, "-", lw=1.4, label=lab)
            ax.plot(steps[exact], vals[exact], "o", ms=2.5, color=line.get_color())
            if np.any(~exact):
                ax.plot(steps[~exact], vals[~exact], "o", ms=3.5, mfc="none", color=line.get_color())
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        if key in ("loss", "grad_norm"):
            ax.set_yscale("log")
        elif key == "eig_min":
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_metric_grid(runs, key="eig_max", labels=None, path=None, title=None, sharey=False):
    """One panel per run of a single tracked quantity (seed 000 Figs. 7 and 9:
    the top eigenvalue for several batch sizes, full-batch GD last)."""
    plt = pyplot()
    runs = _as_runs(runs)
    labels = _labels(runs, labels)
    n = len(runs)
    ncol = 2 if n > 1 else 1
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.9 * nrow), squeeze=False, sharey=sharey)
    for ax, run, lab in zip(axes.flat, runs, labels):
        ax.plot(run.steps, run.column(key), "-", lw=1.2)
        ax.axhline(0.0, color="k", lw=0.6, ls=":")
        ax.set_title(lab, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_spectra_stages(run, steps=None, num_stages=4, bins=60, path=None, title=None):
    """Histograms of the full Hessian spectrum at stages of training
    (seed 000 Figs. 8, 14, 15; exact runs only).

    Args:
        run: a run folder or :class:`~pyodejl.experiments.Run` with ``spectra.npz``.
        steps: tracked steps to show (default: ``num_stages`` spread over the run).
        bins: histogram bins (log-scaled counts).
    """
    plt = pyplot()
    (run,) = _as_runs(run)
    spectra = run.spectra()
    if not spectra:
        raise ValueError(f"run {run.path} has no full spectra (its Hessians were estimated, not exact)")
    available = sorted(spectra)
    if steps is None:
        pick = np.unique(np.linspace(0, len(available) - 1, min(num_stages, len(available))).round().astype(int))
        steps = [available[i] for i in pick]
    missing = [s for s in steps if s not in spectra]
    if missing:
        raise ValueError(f"no spectrum at steps {missing}; available: {available}")
    fig, axes = plt.subplots(1, len(steps), figsize=(3.3 * len(steps), 2.9), squeeze=False)
    for ax, s in zip(axes[0], steps):
        w = spectra[s]
        ax.hist(w, bins=bins, color="C0", log=True)
        ax.set_title(f"step {s}: λ ∈ [{w[0]:.3g}, {w[-1]:.3g}]", fontsize=9)
        ax.set_xlabel("eigenvalue")
    axes[0, 0].set_ylabel("count")
    fig.suptitle(title or f"Hessian spectra during training — {run.label}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_fd_error(h, errors, reference=None, labels=None, path=None, title=None):
    """Finite-difference Hessian error against the step h (seed 000 Fig. 4).

    Args:
        h: ``(m,)`` steps.
        errors: ``(m,)`` or ``(k, m)``: error measure for each h (e.g. summed
            absolute difference to the exact Hessian), one row per curve.
        reference: scalar or ``(k,)``: a scale drawn dashed (seed: summed magnitudes
            of all exact Hessian elements).
        labels: ``k`` curve labels.
    """
    plt = pyplot()
    h = np.asarray(h, dtype=float)
    E = np.atleast_2d(np.asarray(errors, dtype=float))
    if E.shape[1] != h.size:
        raise ValueError(f"errors must have {h.size} columns (one per h), got shape {E.shape}")
    labels = labels or [None] * E.shape[0]
    refs = None if reference is None else np.broadcast_to(np.asarray(reference, float), (E.shape[0],))
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for i, (row, lab) in enumerate(zip(E, labels)):
        line, = ax.loglog(h, row, "o-", ms=3, label=lab)
        if refs is not None:
            ax.axhline(refs[i], ls="--", color=line.get_color(), lw=1)
    ax.set_xlabel("finite-difference step h")
    ax.set_ylabel("Σ|H_fd − H_exact|")
    ax.grid(alpha=0.3, which="both")
    if any(lab is not None for lab in labels):
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_hessian_time(num_params, times: dict, path=None, title=None):
    """Wall-clock time of a full Hessian against parameter count (seed 000 Fig. 6).

    Args:
        num_params: ``(m,)`` parameter counts.
        times: ``{method label: (m,) seconds}`` (NaN for not measured).
    """
    plt = pyplot()
    p = np.asarray(num_params, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for lab, t in times.items():
        t = np.asarray(t, dtype=float)
        if t.shape != p.shape:
            raise ValueError(f"times[{lab!r}] must have shape {p.shape}, got {t.shape}")
        ok = np.isfinite(t)
        ax.loglog(p[ok], t[ok], "o-", ms=3, label=lab)
    ax.set_xlabel("number of parameters p")
    ax.set_ylabel("seconds per full Hessian")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_loss_surface(alphas, betas, Z, path=None, title=None, log=True):
    """3-D surface and contour map of :func:`pyodejl.experiments.loss_surface` output (seed 003 Fig. 1)."""
    plt = pyplot()
    A, B = np.meshgrid(alphas, betas)
    Zp = np.log10(np.maximum(Z, 1e-300)) if log else Z
    fig = plt.figure(figsize=(9, 3.8))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    ax.plot_surface(A, B, np.where(np.isfinite(Zp), Zp, np.nan), cmap="viridis", linewidth=0, antialiased=True)
    ax.set_xlabel("α (top eigenvector)")
    ax.set_ylabel("β (2nd eigenvector)")
    ax.set_zlabel("log10 loss" if log else "loss")
    ax2 = fig.add_subplot(1, 2, 2)
    cs = ax2.contourf(A, B, np.ma.masked_invalid(Zp), levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax2, label="log10 loss" if log else "loss")
    ax2.plot([0], [0], "r+", ms=10)
    ax2.set_xlabel("α (top eigenvector)")
    ax2.set_ylabel("β (2nd eigenvector)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_runs(runs, out, labels=None, surfaces=None) -> list[Path]:
    """All figures for one run or an overlay of several (``python -m pyodejl plot``).

    One run: ``evolution.png``, ``spectra.png`` (exact runs), ``surface.png``
    (given ``surfaces``). Several: ``overlay.png`` (evolution of every run),
    ``eig_max_panels.png``, each exact run's ``spectra_<i>.png`` and ``surface_<i>.png``.

    Args:
        surfaces: optional list, one per run, of ``(alphas, betas, Z, step)`` from
            :func:`pyodejl.experiments.run_surface`.

    Returns:
        the written paths.
    """
    import matplotlib.pyplot as plt

    runs = _as_runs(runs)
    labels = _labels(runs, labels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def keep(fig, name):
        written.append(out / name)
        save_figure(fig, out / name)
        plt.close(fig)

    if len(runs) == 1:
        run = runs[0]
        keep(plot_evolution(runs, labels, title=f"{run.config.task}: {labels[0]}"), "evolution.png")
        if run.spectra():
            keep(plot_spectra_stages(run), "spectra.png")
    else:
        keep(plot_evolution(runs, labels, title="overlay"), "overlay.png")
        keep(plot_metric_grid(runs, "eig_max", labels), "eig_max_panels.png")
        for i, run in enumerate(runs):
            if run.spectra():
                keep(plot_spectra_stages(run, title=f"Hessian spectra — {labels[i]}"), f"spectra_{i}.png")
    if surfaces is not None:
        if len(surfaces) != len(runs):
            raise ValueError(f"surfaces needs one entry per run ({len(runs)}), got {len(surfaces)}")
        for i, (a, b, Z, last) in enumerate(surfaces):
            name = "surface.png" if len(runs) == 1 else f"surface_{i}.png"
            keep(plot_loss_surface(a, b, Z, title=f"loss along top-2 eigenvectors, step {last} — {labels[i]}"), name)
    return written
