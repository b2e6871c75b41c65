"""Plots of Hessian spectra (matplotlib; every function takes an optional ``ax`` and
returns the Axes; nothing here calls ``plt.show``).

* :func:`plot_eigenvalue_histogram` — seed 000 Fig. 2 style histogram, log-scaled counts
  so the bulk near zero and the outliers are both visible.
* :func:`plot_density` / :func:`plot_cumulative_density` — SLQ density and its CDF
  (seed 003 Fig. 2), from a :class:`~pyodejl.spectral.DensityResult` or exact eigenvalues.
* :func:`plot_ritz_convergence` — eigenvalue estimates against matvecs (seed 003 Fig. 4).
* :func:`plot_sketch_error` — sketch error against sketch size (seed 003 Figs. 7–18).
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_eigenvalue_histogram", "plot_density", "plot_cumulative_density",
           "plot_ritz_convergence", "plot_sketch_error"]


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots()
    return ax


def plot_eigenvalue_histogram(eigenvalues, bins=60, log_counts: bool = True, ax=None,
                              label=None, **hist_kwargs):
    """Histogram of eigenvalues (seed 000 Fig. 2), counts on a log axis by default.

    Parameters
    ----------
    eigenvalues : array_like (n,)
    bins : int or sequence, default 60
    log_counts : bool, default True
        Log-scale the count axis so a few outliers show next to a large bulk.
    ax : matplotlib Axes, optional
    label : str, optional
    **hist_kwargs : passed to ``ax.hist``.
    """
    ax = _axes(ax)
    lam = np.asarray(eigenvalues, dtype=float).ravel()
    hist_kwargs.setdefault("alpha", 0.6 if label is not None else 1.0)
    ax.hist(lam, bins=bins, label=label, log=log_counts, **hist_kwargs)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("count (log scale)" if log_counts else "count")
    if label is not None:
        ax.legend()
    return ax


def _density_from(source, grid, sigma):
    if hasattr(source, "nodes") and hasattr(source, "weights"):
        x = source.grid() if grid is None else np.asarray(grid, float)
        return x, source.evaluate(x, sigma=sigma), source
    lam = np.asarray(source, dtype=float).ravel()
    lo, hi = lam.min(), lam.max()
    w = hi - lo if hi > lo else 1.0
    x = np.linspace(lo - 0.05 * w, hi + 0.05 * w, 1000) if grid is None else np.asarray(grid, float)
    s = 0.01 * w if sigma is None else sigma
    z = (x[:, None] - lam[None, :]) / s
    return x, np.exp(-0.5 * z * z).mean(axis=1) / (s * np.sqrt(2 * np.pi)), None


def plot_density(source, grid=None, sigma=None, log: bool = True, ax=None, label=None,
                 **plot_kwargs):
    """Gaussian-broadened spectral density.

    ``source`` is a :class:`~pyodejl.spectral.DensityResult` (SLQ) or an array of exact
    eigenvalues (broadened the same way). ``sigma`` defaults to 1 % of the range;
    ``log`` puts the density on a log axis (Ghorbani et al. 2019 style).
    """
    ax = _axes(ax)
    x, y, _ = _density_from(source, grid, sigma)
    if log:
        y = np.maximum(y, 1e-12 * max(float(np.max(y)), 1e-300))
    ax.plot(x, y, label=label, **plot_kwargs)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    if label is not None:
        ax.legend()
    return ax


def plot_cumulative_density(source, grid=None, complementary: bool = False, ax=None,
                            label=None, **plot_kwargs):
    """Cumulative spectral density: fraction of eigenvalues ``<= x`` (or ``> x`` with
    ``complementary=True``, the form of seed 003 Fig. 2).

    ``source``: a :class:`~pyodejl.spectral.DensityResult` (its quadrature step
    function) or an array of exact eigenvalues (their empirical CDF).
    """
    ax = _axes(ax)
    if hasattr(source, "nodes") and hasattr(source, "weights"):
        x = source.grid() if grid is None else np.asarray(grid, float)
        F = source.cdf(x)
    else:
        lam = np.sort(np.asarray(source, dtype=float).ravel())
        lo, hi = lam[0], lam[-1]
        w = hi - lo if hi > lo else 1.0
        x = np.linspace(lo - 0.05 * w, hi + 0.05 * w, 2000) if grid is None else \
            np.asarray(grid, float)
        F = np.searchsorted(lam, x, side="right") / lam.size
    y = 1.0 - F if complementary else F
    ax.step(x, y, where="post", label=label, **plot_kwargs)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("fraction of eigenvalues " + ("> x" if complementary else "<= x"))
    ax.set_ylim(-0.02, 1.02)
    if label is not None:
        ax.legend()
    return ax


def plot_ritz_convergence(history, true_eigenvalues=None, ax=None, label=None,
                          color="k", markersize=2):
    """Eigenvalue estimates against matvecs (seed 003 Fig. 4).

    ``history`` is ``EigenResult.history`` (``record_history=True``) or
    ``SketchResult.history``: a list of ``(matvecs, estimates)``. True eigenvalues, if
    given, are drawn as red horizontal lines.
    """
    ax = _axes(ax)
    first = True
    for mv, vals in history:
        vals = np.atleast_1d(np.asarray(vals, float))
        ax.plot(np.full(vals.size, mv), vals, "o", color=color, markersize=markersize,
                label=label if first else None)
        first = False
    if true_eigenvalues is not None:
        for i, lam in enumerate(np.atleast_1d(true_eigenvalues)):
            ax.axhline(lam, color="r", lw=0.6, alpha=0.7,
                       label="true eigenvalues" if i == 0 else None)
    ax.set_xlabel("matvecs")
    ax.set_ylabel("eigenvalue estimate")
    if label is not None or true_eigenvalues is not None:
        ax.legend(loc="best")
    return ax


def plot_sketch_error(sizes, errors, ax=None, label=None, relative: bool = True,
                      **plot_kwargs):
    """Sketch error against sketch size ``d`` (or matvecs).

    ``errors`` is ``(len(sizes),)`` or ``(len(sizes), repeats)``; with repeats the mean is
    drawn with a band from min to max.
    """
    ax = _axes(ax)
    sizes = np.asarray(sizes, float)
    E = np.asarray(errors, float)
    if E.ndim == 1:
        line, = ax.plot(sizes, E, "o-", label=label, **plot_kwargs)
    else:
        line, = ax.plot(sizes, E.mean(axis=1), "o-", label=label, **plot_kwargs)
        ax.fill_between(sizes, E.min(axis=1), E.max(axis=1), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("sketch size d")
    ax.set_ylabel("relative error" if relative else "error")
    if label is not None:
        ax.legend()
    return ax
