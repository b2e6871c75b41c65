"""A tour of pyodejl.spectral on an operator with a known, Hessian-like spectrum.

    python examples/spectral_tour.py     # writes docs/figures/spectral_tour.png

Panels: eigenvalue histogram with log counts (seed 000 Fig. 2 style), SLQ density
against the exact spectrum, cumulative density (seed 003 Fig. 2), and Lanczos Ritz
values against matvecs (seed 003 Fig. 4).
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pyodejl import plotting, spectral  # noqa: E402
from pyodejl.spectral import SpectrumOperator, outlier_bulk_spectrum  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "figures"


def main():
    lam = outlier_bulk_spectrum(1000, num_outliers=12, outlier_range=(2.0, 60.0),
                                bulk_scale=0.3, seed=0)
    H = SpectrumOperator(lam, seed=0)

    top = spectral.eigenvalues(H, k=10, tol=1e-8, seed=0, record_history=True)
    dens = spectral.density(H, num_steps=60, num_probes=10, seed=0)
    tr = spectral.trace(H, num_matvecs=99, method="hutch++", seed=0)
    print(f"top-10: {top.matvecs} matvecs, max |error| "
          f"{np.max(np.abs(top.eigenvalues - H.eigenvalues[:10])):.1e}")
    for x in (-0.3, 1.0):
        print(f"SLQ ({dens.matvecs} matvecs): fraction of eigenvalues <= {x}: "
              f"{dens.cdf(x):.3f} (exact {np.mean(lam <= x):.3f})")
    print(f"Hutch++ trace (99 matvecs): {tr.estimate:.4f} +- {tr.std_error:.4f}, "
          f"exact {H.trace:.4f}")

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    plotting.plot_eigenvalue_histogram(lam, bins=80, ax=axes[0])
    axes[0].set_title("exact spectrum, log counts")
    plotting.plot_density(dens, ax=axes[1], label="SLQ (60 steps x 10 probes)")
    plotting.plot_density(lam, grid=dens.grid(), sigma=dens.default_sigma(), ax=axes[1],
                          label="exact, same broadening", ls="--")
    axes[1].set_title("spectral density")
    plotting.plot_cumulative_density(dens, ax=axes[2], label="SLQ")
    plotting.plot_cumulative_density(lam, grid=dens.grid(), ax=axes[2], label="exact",
                                     ls="--")
    axes[2].set_title("cumulative spectral density")
    plotting.plot_ritz_convergence(top.history, true_eigenvalues=H.eigenvalues[:10],
                                   ax=axes[3])
    axes[3].set_title(f"Lanczos top-10: converged in {top.matvecs} matvecs")
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "spectral_tour.png"
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
