"""Matplotlib plots for pyodejl results: they draw what they are given and compute no curvature."""

from .report import plot_training_curves
from .spectra import (
    plot_cumulative_density,
    plot_density,
    plot_eigenvalue_histogram,
    plot_ritz_convergence,
    plot_sketch_error,
)
from .stiffness import (
    load_stiffness_experiment,
    plot_hessian_spectra,
    plot_node_evolution,
    plot_proxy_evolution,
    plot_stiffness_experiment,
)
from .training import (
    plot_evolution,
    plot_fd_error,
    plot_hessian_time,
    plot_loss_surface,
    plot_metric_grid,
    plot_runs,
    plot_spectra_stages,
)

__all__ = [
    "load_stiffness_experiment",
    "plot_training_curves",
    "plot_cumulative_density",
    "plot_density",
    "plot_eigenvalue_histogram",
    "plot_evolution",
    "plot_fd_error",
    "plot_hessian_spectra",
    "plot_hessian_time",
    "plot_loss_surface",
    "plot_metric_grid",
    "plot_node_evolution",
    "plot_proxy_evolution",
    "plot_ritz_convergence",
    "plot_runs",
    "plot_sketch_error",
    "plot_spectra_stages",
    "plot_stiffness_experiment",
]
