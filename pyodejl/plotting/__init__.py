"""Matplotlib plots for pyodejl results."""

from .spectra import (plot_cumulative_density, plot_density, plot_eigenvalue_histogram,
                      plot_ritz_convergence, plot_sketch_error)
