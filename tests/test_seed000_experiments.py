"""The measurements of the seed-000 figure experiments (fd-step, hessian-scaling) on closed forms."""

import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl.experiments.catalogue.fd_step import fd_errors
from pyodejl.experiments.catalogue.hessian_scaling import timings


def _sines(theta):
    return jnp.sum(jnp.sin(theta)) + 0.5 * theta[0] * theta[1] ** 2


def _closed_form_hessian(theta):
    H = np.diag(-np.sin(theta))
    H[1, 1] += theta[0]
    H[0, 1] = H[1, 0] = theta[1]
    return H


def test_fd_errors_against_the_closed_form_hessian():
    theta = np.array([0.3, -1.2, 0.7])
    obj = pj.FunctionObjective(_sines, 3)
    hs = [1e-9, 1e-6, 1e-4, 1e-2, 1e-1]
    out = fd_errors(obj, theta, hs)
    H = _closed_form_hessian(theta)
    assert out["hessian_abs_sum"] == pytest.approx(np.abs(H).sum(), rel=1e-14)
    # the four-point formula's truncation error is O(h²)·|f⁗| and its round-off O(ε/h²)·|f|:
    # at h = 1e-9 round-off (~1e2) dwarfs the best error; at h = 1e-1 truncation is ~1e-3
    errors = np.array(out["fd_error"])
    assert errors[0] > 1.0 and errors[-1] > 1e-4
    assert 1e-6 <= out["best_h"] <= 1e-2 and out["best_error"] < 1e-6
    assert out["round_off_ratio"] == pytest.approx(errors[0] / errors.min())
    within = [h for h, e in zip(hs, errors) if e < 0.01 * np.abs(H).sum()]
    assert out["decades_within_1pct"] == pytest.approx(np.log10(max(within) / min(within)))


def test_hessian_timings_respect_the_size_limits():
    obj = pj.FunctionObjective(_sines, 3)
    out = timings(obj, np.array([0.3, -1.2, 0.7]), {"direct-direct": 10, "fd": 2, "elementwise": 3})
    assert out["num_params"] == 3
    assert {"time_direct_direct", "time_elementwise", "elementwise_over_aa"} <= set(out)
    assert "time_fd" not in out and "fd_over_aa" not in out  # p = 3 is past fd's limit of 2
    assert out["time_direct_direct"] > 0


def test_spectrum_statistics_on_diagonal_matrices():
    from pyodejl.experiments.catalogue.ggn_vs_hessian import spectrum_statistics

    H, G = np.diag([3.0, 1.0, -1.0]), np.diag([3.0, 1.0, 0.0])
    out = spectrum_statistics(H, G, k=2)
    assert out["rel_diff"] == pytest.approx(1 / np.sqrt(11))  # ‖diag(0, 0, −1)‖ / ‖diag(3, 1, −1)‖
    assert out["neg_mass_H"] == pytest.approx(1 / 5) and out["neg_count_H"] == 1
    assert out["top1_overlap"] == pytest.approx(1.0) and out["topk_overlap"] == pytest.approx(1.0)
    assert out["lam_max_gap"] == 0.0 and out["lam_min_G"] == 0.0
    # a rotated GGN: its top eigenvector is at 45° to H's, so u₁(H)·u₁(G) = cos 45°
    c = np.sqrt(0.5)
    R = np.array([[c, -c, 0], [c, c, 0], [0, 0, 1.0]])
    assert spectrum_statistics(H, R @ G @ R.T)["top1_overlap"] == pytest.approx(c)
