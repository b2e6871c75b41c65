"""Trace estimators: unbiasedness within standard errors, Hutch++'s advantage, the
Chebyshev bound of seed 002."""

import itertools
import math

import numpy as np
import pytest

from pyodejl import spectral
from pyodejl.spectral import SpectrumOperator, chebyshev_sample_count, hutchinson_variance, outlier_bulk_spectrum


@pytest.fixture(scope="module")
def hessian_like():
    # a few outliers over a large near-zero bulk, with negative eigenvalues
    lam = outlier_bulk_spectrum(500, num_outliers=8, seed=3)
    A = SpectrumOperator(lam, seed=3)
    return A, A.to_dense()


def test_hutchinson_variance_formula_is_exact():
    # enumerate all 2^4 Rademacher vectors: the exact variance of z^T A z
    rng = np.random.default_rng(0)
    B = rng.standard_normal((4, 4))
    A = B + B.T
    q = [np.array(z) @ A @ np.array(z) for z in itertools.product([-1.0, 1.0], repeat=4)]
    assert np.isclose(np.mean(q), np.trace(A))
    assert np.isclose(np.var(q), hutchinson_variance(A, "rademacher"))
    assert hutchinson_variance(A, "gaussian") == pytest.approx(2 * np.sum(A * A))


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_within_standard_errors(hessian_like, distribution):
    A, M = hessian_like
    N = 200
    res = spectral.trace(A, num_matvecs=N, method="hutchinson", seed=11,
                         distribution=distribution)
    sigma = math.sqrt(hutchinson_variance(M, distribution) / N)
    assert res.matvecs == N and res.samples.shape == (N,)
    assert abs(res.estimate - A.trace) <= 4 * sigma
    # the reported standard error estimates sigma (sample std of 200 draws: within 2x)
    assert 0.5 * sigma <= res.std_error <= 2 * sigma


def test_hutchpp_beats_hutchinson_at_equal_matvecs(hessian_like):
    A, M = hessian_like
    budget = 60
    err_h = [spectral.trace(A, num_matvecs=budget, method="hutchinson", seed=s).estimate
             - A.trace for s in range(20)]
    err_pp = [spectral.trace(A, num_matvecs=budget, method="hutch++", seed=s).estimate
              - A.trace for s in range(20)]
    rms_h, rms_pp = np.sqrt(np.mean(np.square(err_h))), np.sqrt(np.mean(np.square(err_pp)))
    # Hutchinson's RMS error is sqrt(Var/N); check the estimate of it, then Hutch++ is >10x
    # better (the 8 outliers are captured exactly by the 20-column range sketch)
    sigma_h = math.sqrt(hutchinson_variance(M) / budget)
    assert 0.5 * sigma_h < rms_h < 1.5 * sigma_h
    assert rms_pp < rms_h / 10, (rms_pp, rms_h)


def test_hutchpp_exact_on_low_rank():
    lam = np.concatenate([np.geomspace(1, 1000, 6) * np.array([1, -1, 1, -1, 1, 1]),
                          np.zeros(294)])
    A = SpectrumOperator(lam, seed=0)
    res = spectral.trace(A, num_matvecs=21, method="hutch++", seed=0)  # 7 >= rank 6
    assert res.matvecs == 21
    assert abs(res.estimate - A.trace) < 1e-9 * np.abs(lam).sum()
    assert abs(res.exact_part - A.trace) < 1e-9 * np.abs(lam).sum()


def test_hutchpp_std_error_is_honest(hessian_like):
    A, _ = hessian_like
    ests = [spectral.trace(A, num_matvecs=90, method="hutch++", seed=s) for s in range(30)]
    errs = np.array([r.estimate - A.trace for r in ests])
    ses = np.array([r.std_error for r in ests])
    # the typical |error| is about one reported standard error
    assert np.sqrt(np.mean(errs ** 2)) < 2.5 * np.mean(ses)
    assert np.mean(np.abs(errs) < 4 * ses) >= 0.9


def test_chebyshev_sample_count_values():
    # N = Var / (delta * max(eps^2 tr^2, eps_abs^2))
    assert chebyshev_sample_count(100.0, trace=10.0, epsilon=0.1, delta=0.05) == 2000
    assert chebyshev_sample_count(100.0, epsilon_abs=2.0, delta=0.1) == 250
    # the larger of the two tolerances wins (seed 002 Eq. 14-16)
    assert chebyshev_sample_count(100.0, trace=10.0, epsilon=0.1, epsilon_abs=2.0,
                                  delta=0.1) == 250
    assert chebyshev_sample_count(0.0, trace=1.0, epsilon=0.1) == 1
    with pytest.raises(ValueError, match="epsilon"):
        chebyshev_sample_count(1.0)
    with pytest.raises(ValueError, match="trace"):
        chebyshev_sample_count(1.0, epsilon=0.1)
    with pytest.raises(ValueError, match="delta"):
        chebyshev_sample_count(1.0, epsilon_abs=0.1, delta=1.5)


def test_chebyshev_bound_holds_empirically(hessian_like):
    A, M = hessian_like
    eps, delta = 0.1, 0.2
    N = chebyshev_sample_count(hutchinson_variance(M), A.trace, epsilon=eps, delta=delta)
    fails = [abs(spectral.trace(A, num_matvecs=N, method="hutchinson", seed=s).estimate
                 - A.trace) > eps * abs(A.trace) for s in range(40)]
    assert np.mean(fails) <= delta


def test_adaptive_mode_stops_when_bound_met(hessian_like):
    A, M = hessian_like
    res = spectral.trace(A, num_matvecs=5000, method="hutchinson", seed=1, epsilon=0.1,
                         epsilon_abs=1.0, delta=0.05)
    assert res.bound_met
    assert res.matvecs == len(res.samples) < 5000
    n = len(res.samples)
    assert n >= res.required_samples and n - 10 < max(res.required_samples, 10)
    # the stop is where the bound computed from the samples is met
    assert n >= chebyshev_sample_count(np.var(res.samples, ddof=1), np.mean(res.samples),
                                       0.1, 1.0, 0.05)
    true_N = chebyshev_sample_count(hutchinson_variance(M), A.trace, 0.1, 1.0, 0.05)
    assert 0.5 * true_N < n < 2 * true_N
    assert abs(res.estimate - A.trace) <= 0.1 * abs(A.trace)


def test_adaptive_mode_reports_unmet_bound(hessian_like):
    A, _ = hessian_like
    res = spectral.trace(A, num_matvecs=25, method="hutchinson", seed=1, epsilon=0.001)
    assert res.bound_met is False and res.matvecs == 25
    assert res.required_samples > 25
    with pytest.raises(ValueError, match="adaptive"):
        spectral.trace(A, method="hutch++", epsilon=0.1)
