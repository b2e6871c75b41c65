"""Stiffness: measures of a Jacobian, and the stiffness of ResNet layers (seed 001).

* :func:`stiffness_ratio`, :func:`magnitude_ratio` — eigenvalue ratios (seed 001's
  ``r`` and ``r̃``), with documented values for singular and unstable Jacobians.
* :func:`singular_value_ratio`, :func:`spectral_radius` (``"eig"``, ``"power"``,
  ``"gelfand"``) — the seed's differentiable proxies.
* :func:`layer_jacobians`, :func:`layer_stiffness`, :func:`total_layer_stiffness` — every
  layer's Jacobian ``diag(σ'(Wₙxₙ₋₁ + bₙ))·Wₙ`` for every sample, measured in one
  batched, differentiable call; :func:`jacobians_at` forms only chosen (layer, sample)
  pairs, for sampled penalties.
* :func:`trajectory_stiffness` — along a Neural ODE solve: ∂f/∂y spectra, Shampine's
  per-step estimate, and Hairer's DOPRI5 stiffness test (:func:`hairer_detector`).
* :func:`penalised_loss` — seed 001's stiffness-penalised ResNet loss, with the exact
  penalty or an unbiased sampled estimate of it (:func:`sampled_penalty_sq_sum`).
* :mod:`pyodejl.stiffness.tied_linear` — discretise-then-optimise vs
  optimise-then-discretise gradients of a linear ResNet with tied weights, in closed form.

The measures take ``(..., d, d)`` batches of matrices and are pure JAX functions.
"""

from pyodejl.stiffness.layers import jacobians_at, layer_jacobians, layer_stiffness, total_layer_stiffness
from pyodejl.stiffness.measures import (
    MEASURES,
    SPECTRAL_RADIUS_METHODS,
    PowerInfo,
    magnitude_ratio,
    singular_value_ratio,
    spectral_radius,
    stiffness_ratio,
)
from pyodejl.stiffness.penalty import (
    PENALTIES,
    draw_penalty_triples,
    parameter_norm_mean,
    penalised_loss,
    penalty_per_sample,
    sampled_penalty_sq_sum,
)
from pyodejl.stiffness.trajectory import TrajectoryStiffnessResult, hairer_detector, trajectory_stiffness

__all__ = [
    "PENALTIES",
    "draw_penalty_triples",
    "parameter_norm_mean",
    "penalised_loss",
    "penalty_per_sample",
    "sampled_penalty_sq_sum",
    "MEASURES",
    "SPECTRAL_RADIUS_METHODS",
    "PowerInfo",
    "TrajectoryStiffnessResult",
    "hairer_detector",
    "jacobians_at",
    "layer_jacobians",
    "layer_stiffness",
    "magnitude_ratio",
    "singular_value_ratio",
    "spectral_radius",
    "stiffness_ratio",
    "total_layer_stiffness",
    "trajectory_stiffness",
]
