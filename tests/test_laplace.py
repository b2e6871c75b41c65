"""pj.Laplace against closed-form Bayesian linear regression.

The model y' = θ @ B(t) does not depend on y, so y(t) = y0 + Φ(t) θ with
Φ(t) = ∫₀ᵗ B(s) ds known in closed form: a Gaussian likelihood with a Gaussian
prior is then conjugate, and the Laplace approximation at the MAP is exact
(MacKay 1992). References below come from that Φ with NumPy/SciPy only.

Tolerances: the solves run at rtol = atol = 1e-12 (tsit5), so the discrete Φ
matches the analytic one to about 1e-10 relative; posterior quantities involve
inverting matrices of condition number below 1e3, hence rtol 1e-7.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import pyodejl as pj

TS = np.linspace(0.0, 2.0, 9)
Y0 = np.array([0.3, -0.2])
P = 4
SIGMA = 0.3
DELTA = 0.5
RTOL = 1e-7


def basis(t):
    """B(t), (p, d) = (4, 2)."""
    return jnp.array([[1.0, t], [t, 1.0], [jnp.sin(t), jnp.cos(t)], [jnp.cos(t), 0.0]])


def field(t, y, th):
    return th @ basis(t)


def integrated_basis(t):
    """Φ(t) = ∫₀ᵗ B(s) ds, (4, 2), by hand."""
    return np.array([[t, t * t / 2], [t * t / 2, t], [1 - np.cos(t), np.sin(t)], [np.sin(t), 0.0]])


def design():
    """Φ, (T·d, p): row (i, j) (C order) is ∂y_j(t_i)/∂θ."""
    return np.stack([integrated_basis(t).T for t in TS]).reshape(-1, P)


MODEL = pj.NeuralODE(pj.VectorField(field, num_params=P), solver="tsit5", rtol=1e-12, atol=1e-12)


def make_problem(y0=Y0, seed=0):
    rng = np.random.default_rng(seed)
    theta_true = rng.standard_normal(P)
    y0 = np.asarray(y0)
    Phi = design()
    offsets = np.broadcast_to(y0[..., None, :], y0.shape[:-1] + (len(TS), 2))
    clean = offsets + (Phi @ theta_true).reshape(len(TS), 2)
    targets = clean + SIGMA * rng.standard_normal(clean.shape)
    loss = pj.TrajectoryLoss(MODEL, TS, y0, targets)
    # conjugate posterior of θ given all residuals y − y0 (Φ is the same for every trajectory)
    resid = (targets - offsets).reshape(-1, len(TS) * 2)
    A = resid.shape[0] * Phi.T @ Phi / SIGMA**2 + DELTA * np.eye(P)
    Sigma = np.linalg.inv(A)
    mean = Sigma @ (Phi.T @ resid.sum(axis=0)) / SIGMA**2
    return loss, targets, offsets, Phi, mean, Sigma


@pytest.fixture(scope="module")
def problem():
    return make_problem()


@pytest.fixture(scope="module")
def full(problem):
    loss, _, _, _, mean, _ = problem
    return pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA)


def laplace_evidence(problem, delta, sigma):
    """The Laplace evidence at fixed θ* = the δ = DELTA MAP, from Φ (closed form)."""
    _, targets, offsets, Phi, mean, _ = problem
    r = (targets - offsets).reshape(-1) - np.tile(Phi @ mean, targets.size // Phi.shape[0])
    N = r.size
    B = targets.size // Phi.shape[0]
    _, logdet = np.linalg.slogdet(B * Phi.T @ Phi / sigma**2 + delta * np.eye(P))
    return (-r @ r / (2 * sigma**2) - 0.5 * N * np.log(2 * np.pi * sigma**2)
            - 0.5 * delta * mean @ mean + 0.5 * P * np.log(delta) - 0.5 * logdet)


def test_full_equals_bayesian_linear_regression(problem, full):
    loss, targets, offsets, Phi, mean, Sigma = problem
    np.testing.assert_allclose(full.posterior_precision(), np.linalg.inv(Sigma), rtol=RTOL)
    np.testing.assert_allclose(full.posterior_covariance(), Sigma, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(full.posterior_variance(), np.diag(Sigma), rtol=RTOL)
    evidence = multivariate_normal(offsets.reshape(-1), SIGMA**2 * np.eye(Phi.shape[0]) + Phi @ Phi.T / DELTA)
    assert full.log_marginal_likelihood() == pytest.approx(evidence.logpdf(targets.reshape(-1)), rel=1e-9)
    pred = full.predictive()
    np.testing.assert_allclose(pred.mean, offsets + (Phi @ mean).reshape(len(TS), 2), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(pred.var, np.einsum("ik,kl,il->i", Phi, Sigma, Phi).reshape(len(TS), 2),
                               rtol=RTOL, atol=1e-12)


def test_hessian_curvature_scaled_like_ggn(problem):
    # linear model: the Hessian of the summed NLL is ΦᵀΦ/σ² too (checks the N/2 scaling of loss.hessian)
    loss, _, _, _, mean, Sigma = problem
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA, curvature="hessian")
    np.testing.assert_allclose(la.posterior_covariance(), Sigma, rtol=RTOL, atol=1e-12)


def test_evidence_at_other_noise_and_prior_without_recomputing(problem, full):
    for delta, sigma in [(0.1, 0.5), (3.0, 0.2)]:
        assert full.log_marginal_likelihood(delta, sigma) == pytest.approx(
            laplace_evidence(problem, delta, sigma), rel=1e-9)
    assert full.prior_precision == DELTA and full.noise_std == SIGMA


def test_diagonal_is_the_exact_curvature_diagonal(problem):
    loss, _, _, Phi, mean, _ = problem
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA, structure="diagonal")
    prec = np.sum(Phi**2, axis=0) / SIGMA**2 + DELTA
    np.testing.assert_allclose(la.posterior_variance(), 1 / prec, rtol=RTOL)
    assert la.log_marginal_likelihood() == pytest.approx(
        laplace_evidence(problem, DELTA, SIGMA) + 0.5 * np.linalg.slogdet(Phi.T @ Phi / SIGMA**2 + DELTA * np.eye(P))[1]
        - 0.5 * np.sum(np.log(prec)), rel=1e-9)
    np.testing.assert_allclose(la.predictive().var, ((Phi**2) @ (1 / prec)).reshape(len(TS), 2), rtol=RTOL)
    with pytest.raises(ValueError, match="structure='full' only"):
        la.posterior_covariance()
    with pytest.raises(ValueError, match="structure='full' only"):
        la.posterior_precision()


def test_low_rank_full_rank_equals_full(problem, full):
    loss, _, _, _, mean, Sigma = problem
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA, structure="low-rank", rank=P)
    np.testing.assert_allclose(la.posterior_variance(), np.diag(Sigma), rtol=RTOL)
    assert la.log_marginal_likelihood() == pytest.approx(full.log_marginal_likelihood(), rel=1e-9)
    np.testing.assert_allclose(la.predictive().var, full.predictive().var, rtol=RTOL, atol=1e-12)


def test_low_rank_truncated_by_lanczos(problem):
    loss, _, _, Phi, mean, _ = problem
    k = 2
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA, structure="low-rank", rank=k)
    lam, U = np.linalg.eigh(Phi.T @ Phi / SIGMA**2)
    lam, U = lam[-k:], U[:, -k:]
    Sigma_k = np.linalg.inv(U @ np.diag(lam) @ U.T + DELTA * np.eye(P))
    np.testing.assert_allclose(la.posterior_variance(), np.diag(Sigma_k), rtol=1e-6)
    logdet = np.sum(np.log(lam + DELTA)) + (P - k) * np.log(DELTA)
    assert la.log_marginal_likelihood() == pytest.approx(
        laplace_evidence(problem, DELTA, SIGMA) + 0.5 * np.linalg.slogdet(Phi.T @ Phi / SIGMA**2 + DELTA * np.eye(P))[1]
        - 0.5 * logdet, rel=1e-8)
    np.testing.assert_allclose(la.predictive().var,
                               np.einsum("ik,kl,il->i", Phi, Sigma_k, Phi).reshape(len(TS), 2), rtol=1e-6)
    X = la.sample(20000, seed=2)
    assert_sample_covariance(X, mean, Sigma_k)


def assert_sample_covariance(X, mean, Sigma):
    # the standard error of a sample covariance entry is sqrt((Σii Σjj + Σij²)/n): allow 5 of them
    n = len(X)
    se = np.sqrt((np.outer(np.diag(Sigma), np.diag(Sigma)) + Sigma**2) / n)
    assert np.all(np.abs(np.cov(X.T) - Sigma) < 5 * se)
    assert np.all(np.abs(X.mean(axis=0) - mean) < 5 * np.sqrt(np.diag(Sigma) / n))


def test_samples_have_the_posterior_covariance(problem, full):
    _, _, _, Phi, mean, Sigma = problem
    X = full.sample(20000, seed=1)
    assert X.shape == (20000, P)
    assert_sample_covariance(X, mean, Sigma)
    la = pj.Laplace(problem[0], mean, noise_std=SIGMA, prior_precision=DELTA, structure="diagonal")
    prec = np.sum(Phi**2, axis=0) / SIGMA**2 + DELTA
    assert_sample_covariance(la.sample(20000, seed=3), mean, np.diag(1 / prec))


def test_sampled_predictive_matches_glm(full):
    # linear in θ: the sampled solutions are Gaussian with the GLM moments; n = 200 samples,
    # mean within 5 standard errors, variance within 5 relative standard errors sqrt(2/n)
    glm = full.predictive()
    n = 200
    mc = full.predictive(method="samples", n=n, seed=4)
    assert mc.mean.shape == glm.mean.shape == (len(TS), 2)
    assert np.all(np.abs(mc.mean - glm.mean) <= 5 * np.sqrt(glm.var / n) + 1e-12)
    assert np.allclose(mc.var, glm.var, rtol=5 * np.sqrt(2 / n), atol=1e-12)


def test_optimize_prior_precision_matches_grid(problem):
    loss, _, _, _, mean, _ = problem
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA)
    grid = np.logspace(-4, 4, 8001)
    values = np.array([laplace_evidence(problem, d, SIGMA) for d in grid])
    best = la.optimize_prior_precision()
    assert la.prior_precision == best
    assert abs(np.log(best) - np.log(grid[np.argmax(values)])) <= np.log(grid[1] / grid[0])
    assert la.log_marginal_likelihood() >= values.max() - 1e-9


def test_optimize_noise_std_matches_grid(problem):
    loss, _, _, _, mean, _ = problem
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA)
    grid = np.logspace(-2, 1, 6001)
    values = np.array([laplace_evidence(problem, DELTA, s) for s in grid])
    best = la.optimize_noise_std()
    assert abs(np.log(best) - np.log(grid[np.argmax(values)])) <= np.log(grid[1] / grid[0])
    assert la.log_marginal_likelihood() >= values.max() - 1e-9


def test_empirical_fisher_of_the_summed_nll():
    # two trajectories: the empirical Fisher is Σ_n g_n g_nᵀ with g_n = −Φᵀ r_n / σ²
    y0 = np.array([[0.3, -0.2], [-0.1, 0.4]])
    loss, targets, offsets, Phi, mean, _ = make_problem(y0, seed=5)
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA, curvature="fisher")
    F = np.zeros((P, P))
    for n in range(2):
        r = (targets[n] - offsets[n]).reshape(-1) - Phi @ mean
        g = -Phi.T @ r / SIGMA**2
        F += np.outer(g, g)
    np.testing.assert_allclose(la.posterior_precision(), F + DELTA * np.eye(P), rtol=RTOL)
    diag = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA, curvature="fisher", structure="diagonal")
    np.testing.assert_allclose(diag.posterior_variance(), 1 / (np.diag(F) + DELTA), rtol=RTOL)
    # σ⁻⁴ scaling: the log-determinant term at another σ
    s = 0.6
    F2 = F * (SIGMA / s) ** 4
    expected = (la.log_likelihood(s) - 0.5 * DELTA * mean @ mean + 0.5 * P * np.log(DELTA)
                - 0.5 * np.linalg.slogdet(F2 + DELTA * np.eye(P))[1])
    assert la.log_marginal_likelihood(noise_std=s) == pytest.approx(expected, rel=1e-9)


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"noise_std": 0.0}, "noise_std must be a finite number > 0"),
    ({"noise_std": -1.0}, "noise_std must be a finite number > 0"),
    ({"prior_precision": 0.0}, "prior_precision must be a finite number > 0"),
    ({"prior_precision": -2.0}, "prior_precision must be a finite number > 0"),
    ({"prior_precision": np.nan}, "prior_precision must be a finite number > 0"),
    ({"curvature": "kfac"}, "unknown curvature 'kfac'"),
    ({"structure": "kron"}, "unknown structure 'kron'"),
    ({"structure": "low-rank"}, "needs an integer rank"),
    ({"structure": "low-rank", "rank": 0}, "1 <= rank <= p = 4"),
    ({"structure": "low-rank", "rank": 5}, "1 <= rank <= p = 4"),
    ({"structure": "low-rank", "rank": 1.5}, "needs an integer rank"),
    ({"rank": 2}, "rank applies to structure='low-rank' only"),
    ({"subset": "last-layer"}, "subset='last-layer' needs a categorical loss"),
    ({"blocks": (1, 2)}, "blocks must sum to p = 4"),
])
def test_bad_arguments(problem, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pj.Laplace(problem[0], problem[4], **kwargs)


def test_bad_evidence_arguments(full):
    with pytest.raises(ValueError, match="prior_precision must be a finite number > 0"):
        full.log_marginal_likelihood(prior_precision=-1.0)
    with pytest.raises(ValueError, match="noise_std must be a finite number > 0"):
        full.log_marginal_likelihood(noise_std=0.0)
    with pytest.raises(ValueError, match="must be a scalar without blocks"):
        full.log_marginal_likelihood(prior_precision=np.ones(P))
    with pytest.raises(ValueError, match="unknown predictive method"):
        full.predictive(method="mc")
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        full.sample(0)


def test_full_refuses_large_p_stating_memory():
    p = 20000
    model = pj.NeuralODE(pj.VectorField(lambda t, y, th: th[:2] * y, num_params=p))
    loss = pj.TrajectoryLoss(model, TS, Y0, np.zeros((len(TS), 2)))
    with pytest.raises(ValueError, match=r"p = 20000 needs 2\.98 GiB per matrix"):
        pj.Laplace(loss, np.zeros(p))


def test_losses_without_likelihood_reading(problem):
    fo = pj.FunctionObjective(lambda th: jnp.sum(th**2), num_params=P)
    with pytest.raises(ValueError, match="no likelihood reading"):
        pj.Laplace(fo, np.zeros(P))
    absl = pj.TrajectoryLoss(MODEL, TS, Y0, problem[1], loss="abs")
    with pytest.raises(ValueError, match="no likelihood reading"):
        pj.Laplace(absl, np.zeros(P))
    reg = pj.TrajectoryLoss(MODEL, TS, Y0, problem[1], regularizers=[pj.regularizers.WeightDecay(0.1)])
    with pytest.raises(ValueError, match="no likelihood reading"):
        pj.Laplace(reg, np.zeros(P))


def test_diagonal_by_xdiag_above_the_exact_limit(problem, monkeypatch):
    # above the limit the diagonal is XDiag's estimate: the same estimator, seed and budget applied to
    # the dense ΦᵀΦ (the curvature times σ²) must give the same numbers, to round-off
    import pyodejl.laplace as laplace
    from pyodejl.spectral import diagonal

    monkeypatch.setattr(laplace, "MAX_EXACT_DIAGONAL", 0)
    monkeypatch.setattr(laplace, "DIAGONAL_MATVECS", 6)
    loss, _, _, Phi, mean, _ = problem
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA, structure="diagonal", seed=7)
    est = np.maximum(diagonal(Phi.T @ Phi, num_matvecs=6, method="xdiag", seed=7).estimate, 0.0)
    np.testing.assert_allclose(la.posterior_variance(), 1 / (est / SIGMA**2 + DELTA), rtol=1e-7)


def test_xdiag_ggn_diagonal_is_never_negative_so_small_priors_stay_valid(problem, monkeypatch):
    # with few products XDiag's estimate of the (non-negative) GGN diagonal dips below 0; set to 0,
    # every prior δ > 0 gives a positive-definite P, as the exact diagonal would (the p = 166k
    # benchmark's evidence search failed here before)
    import pyodejl.laplace as laplace
    from pyodejl.spectral import diagonal

    monkeypatch.setattr(laplace, "MAX_EXACT_DIAGONAL", 0)
    monkeypatch.setattr(laplace, "DIAGONAL_MATVECS", 4)
    loss, _, _, Phi, mean, _ = problem
    raw = diagonal(Phi.T @ Phi, num_matvecs=4, method="xdiag", seed=3).estimate
    assert raw.min() < 0  # the case this test is about
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=1e-8, structure="diagonal", seed=3)
    assert np.isfinite(la.log_marginal_likelihood())
    assert np.all(la.posterior_variance() > 0)


def test_joint_optimisation_matches_closed_form_optimum(problem):
    from scipy.optimize import minimize

    loss, _, _, _, mean, _ = problem
    la = pj.Laplace(loss, mean, noise_std=1.0, prior_precision=1.0)
    delta, sigma = la.optimize()
    ref = minimize(lambda x: -laplace_evidence(problem, np.exp(x[0]), np.exp(x[1])), [0.0, 0.0],
                   method="BFGS", options={"gtol": 1e-10})
    # the optimum is flat to second order: 1e-5 in log space moves the evidence by ~1e-10
    np.testing.assert_allclose(np.log([delta, sigma]), ref.x, atol=1e-4)
    assert la.log_marginal_likelihood() >= -ref.fun - 1e-9
    assert (la.prior_precision, la.noise_std) == (delta, sigma)


def test_predictive_at_other_times(problem, full):
    _, _, offsets, _, mean, Sigma = problem
    ts = np.array([0.25, 1.1, 2.5])  # does not start at ts[0] = 0: the solve starts there
    Phi_t = np.stack([integrated_basis(t).T for t in ts]).reshape(-1, P)
    pred = full.predictive(ts=ts)
    np.testing.assert_allclose(pred.mean, Y0 + (Phi_t @ mean).reshape(3, 2), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(pred.var, np.einsum("ik,kl,il->i", Phi_t, Sigma, Phi_t).reshape(3, 2), rtol=RTOL)
    with pytest.raises(ValueError, match="at or after the loss's initial time"):
        full.predictive(ts=np.array([-1.0, 1.0]))
    with pytest.raises(ValueError, match="strictly increasing"):
        full.predictive(ts=np.array([1.0, 0.5]))


def nonlinear_field(t, y, th):
    return jnp.tanh(th[:4].reshape(2, 2) @ y) + th[4:6]


def test_nonlinear_batch_ggn_and_glm_against_finite_differences():
    # a batch of two trajectories of a nonlinear model: the GGN of the summed NLL is JᵀJ/σ² and the
    # GLM variance diag(J Σ Jᵀ), with J = ∂y/∂θ by central differences of the solution (solves at
    # 1e-12 and step 1e-5: truncation ~1e-10, solver noise ~1e-12/1e-5 = 1e-7, hence rtol 1e-5)
    model = pj.NeuralODE(pj.VectorField(nonlinear_field, num_params=6), solver="tsit5", rtol=1e-12, atol=1e-12)
    ts = np.linspace(0.0, 1.0, 5)
    y0 = np.array([[0.5, -0.3], [-0.2, 0.8]])
    rng = np.random.default_rng(11)
    theta = 0.5 * rng.standard_normal(6)
    targets = rng.standard_normal((2, 5, 2))
    loss = pj.TrajectoryLoss(model, ts, y0, targets)
    h = 1e-5
    J = np.stack([(loss.predict(theta + h * e) - loss.predict(theta - h * e)).reshape(-1) / (2 * h)
                  for e in np.eye(6)], axis=1)
    full = pj.Laplace(loss, theta, noise_std=SIGMA, prior_precision=DELTA)
    np.testing.assert_allclose(full.posterior_precision(), J.T @ J / SIGMA**2 + DELTA * np.eye(6), rtol=1e-5)
    Sigma = np.linalg.inv(J.T @ J / SIGMA**2 + DELTA * np.eye(6))
    var = full.predictive().var
    assert var.shape == (2, 5, 2)
    np.testing.assert_allclose(var, np.einsum("ik,kl,il->i", J, Sigma, J).reshape(2, 5, 2), rtol=1e-5, atol=1e-12)
    low = pj.Laplace(loss, theta, noise_std=SIGMA, prior_precision=DELTA, structure="low-rank", rank=6)
    np.testing.assert_allclose(low.predictive().var, var, rtol=1e-8, atol=1e-14)
    diag = pj.Laplace(loss, theta, noise_std=SIGMA, prior_precision=DELTA, structure="diagonal")
    d = 1 / (np.sum(J**2, axis=0) / SIGMA**2 + DELTA)
    np.testing.assert_allclose(diag.predictive().var, ((J**2) @ d).reshape(2, 5, 2), rtol=1e-5, atol=1e-12)


def test_index_subset_is_the_conditional_posterior(problem, full):
    """θ_S | θ_rest = θ*_rest is Gaussian with precision P_SS (the linear model's exact conditional)."""
    loss, _, _, Phi, mean, Sigma = problem
    S = np.array([0, 2])
    sub = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA, subset=S)
    P_SS = np.linalg.inv(Sigma)[np.ix_(S, S)]
    np.testing.assert_allclose(sub.posterior_precision(), P_SS, rtol=RTOL)
    var = np.einsum("ik,kl,il->i", Phi[:, S], np.linalg.inv(P_SS), Phi[:, S]).reshape(len(TS), 2)
    np.testing.assert_allclose(sub.predictive().var, var, rtol=RTOL, atol=1e-12)
    draws = sub.sample(4, seed=0)
    np.testing.assert_array_equal(draws[:, [1, 3]], np.broadcast_to(mean[[1, 3]], (4, 2)))


# ---- a Neural SDE on fixed Brownian paths --------------------------------------------------


def additive_noise_sde(seed, B, ts):
    """dy = a dt + b dW (constant drift and noise, θ = (a, b)) and its B fixed paths W ``(B, T)``.

    On fixed paths it solves to y(t) = y0 + a·(t − t0) + b·W(t) exactly (SRIW1 integrates
    additive noise and a constant drift without error on any grid). W_b is read from the
    documented paths (diffrax's VirtualBrownianTree keyed by fold_in(key(seed), b)), not from
    the solver.
    """
    import diffrax
    import jax

    drift = pj.VectorField(lambda t, y, th: th[0] * jnp.ones_like(y), num_params=1, state_dim=1)
    noise = pj.VectorField(lambda t, y, th: th[0] * jnp.ones_like(y), num_params=1, state_dim=1)
    # exact on any grid, so a loose tolerance: the estimate δ·h·Σa of a constant drift never shrinks below h/10
    model = pj.NeuralSDE(drift, noise, rtol=1.0, atol=1.0, seed=seed)
    W = np.empty((B, len(ts)))
    for b in range(B):
        tree = diffrax.VirtualBrownianTree(ts[0], ts[-1], (ts[-1] - ts[0]) * 2.0**-20,
                                           jax.ShapeDtypeStruct((1,), jnp.float64),
                                           jax.random.fold_in(jax.random.key(seed), b),
                                           levy_area=diffrax.SpaceTimeLevyArea)
        W[b] = [0.0] + [float(tree.evaluate(ts[0], t, use_levy=True).W[0]) for t in ts[1:]]
    return model, W


def test_neural_sde_on_fixed_paths_equals_bayesian_linear_regression():
    """On fixed paths dy = a dt + b dW is linear in θ (:func:`additive_noise_sde`): the Laplace
    posterior, evidence and predictive are Bayesian linear regression's on the design [t − t0, W_b(t)]."""
    seed, B, ts = 3, 3, np.linspace(0.0, 1.0, 7)
    model, W = additive_noise_sde(seed, B, ts)
    Phi = np.stack([np.broadcast_to(ts - ts[0], W.shape), W], axis=-1).reshape(-1, 2)  # (B·T, 2)
    rng = np.random.default_rng(1)
    y0 = rng.standard_normal((B, 1))
    offsets = np.repeat(y0, len(ts), axis=1)[..., None]  # (B, T, 1)
    targets = offsets + (Phi @ np.array([0.7, 0.4])).reshape(B, len(ts), 1) \
        + SIGMA * rng.standard_normal((B, len(ts), 1))
    A = Phi.T @ Phi / SIGMA**2 + DELTA * np.eye(2)
    Sigma = np.linalg.inv(A)
    mean = Sigma @ Phi.T @ (targets - offsets).reshape(-1) / SIGMA**2
    loss = pj.TrajectoryLoss(model, ts, y0, targets)
    la = pj.Laplace(loss, mean, noise_std=SIGMA, prior_precision=DELTA)
    np.testing.assert_allclose(la.posterior_covariance(), Sigma, rtol=RTOL, atol=1e-12)
    evidence = multivariate_normal(offsets.reshape(-1), SIGMA**2 * np.eye(len(Phi)) + Phi @ Phi.T / DELTA)
    assert la.log_marginal_likelihood() == pytest.approx(evidence.logpdf(targets.reshape(-1)), rel=1e-9)
    pred = la.predictive()
    np.testing.assert_allclose(pred.mean, offsets + (Phi @ mean).reshape(B, len(ts), 1), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(pred.var, np.einsum("ik,kl,il->i", Phi, Sigma, Phi).reshape(B, len(ts), 1),
                               rtol=RTOL, atol=1e-12)


def path_moments(extra, Y, targets):
    """The mean and variance over the batch's paths ``(2, T, 1)``: seed 004's moment matching."""
    return jnp.stack([Y.mean(0), Y.var(0)])


def test_neural_sde_moment_statistic_as_gaussian_observations():
    """OutputCost(path_moments, MeanSquaredError()) is read as Gaussian observations of the
    statistic F(θ) = (mean_b y_b(t), var_b y_b(t)) ``(2, T, 1)``. On fixed paths of dy = a dt + b dW,
    y_b(t) = y0_b + a t + b W_b(t), so F(θ) is known in closed form: the mean is linear in θ,
    the variance var(y0) + 2b cov(y0, W) + b² var(W) quadratic in b. The GGN JᵀJ/σ², the evidence
    of the Laplace formula, the GLM predictive diag(J Σ Jᵀ) and the sampled statistics follow by hand."""
    seed, B, ts = 3, 4, np.linspace(0.0, 1.0, 6)
    model, W = additive_noise_sde(seed, B, ts)
    y0 = np.random.default_rng(2).standard_normal((B, 1))
    x0 = y0[:, 0]

    def moments(theta):  # (2, T): F(θ) by hand
        Y = x0[:, None] + theta[0] * ts[None, :] + theta[1] * W
        return np.stack([Y.mean(0), Y.var(0)])

    def jacobian(theta):  # (2T, 2)
        cov = ((x0 - x0.mean())[:, None] * (W - W.mean(0))).mean(0)
        dvar_db = 2.0 * cov + 2.0 * theta[1] * W.var(0)
        return np.block([[ts[:, None], W.mean(0)[:, None]], [np.zeros((len(ts), 1)), dvar_db[:, None]]])

    targets = moments(np.array([0.6, 0.5]))[..., None] + SIGMA * np.random.default_rng(4).standard_normal(
        (2, len(ts), 1))
    theta = np.array([0.55, 0.45])
    loss = pj.ObservationLoss(model, ts, y0, pj.OutputCost(path_moments, pj.MeanSquaredError()), data=targets)
    la = pj.Laplace(loss, theta, noise_std=SIGMA, prior_precision=DELTA)
    J = jacobian(theta)
    P_ref = J.T @ J / SIGMA**2 + DELTA * np.eye(2)
    np.testing.assert_allclose(la.posterior_precision(), P_ref, rtol=RTOL)
    r = (moments(theta)[..., None] - targets).reshape(-1)
    N = r.size
    evidence = (-r @ r / (2 * SIGMA**2) - 0.5 * N * np.log(2 * np.pi * SIGMA**2) - 0.5 * DELTA * theta @ theta
                + np.log(DELTA) - 0.5 * np.linalg.slogdet(P_ref)[1])  # + (p/2) log 2π − (p/2) log 2π
    assert la.log_marginal_likelihood() == pytest.approx(evidence, rel=1e-9)
    pred = la.predictive()
    np.testing.assert_allclose(pred.mean[..., 0], moments(theta), rtol=1e-9, atol=1e-12)
    var = np.einsum("ik,kl,il->i", J, np.linalg.inv(P_ref), J).reshape(2, len(ts))
    np.testing.assert_allclose(pred.var[..., 0], var, rtol=RTOL, atol=1e-14)
    draws = la.sample(5, seed=1)
    stats = np.stack([moments(th) for th in draws])
    sampled = la.predictive(method="samples", n=5, seed=1)
    np.testing.assert_allclose(sampled.mean[..., 0], stats.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sampled.var[..., 0], stats.var(0), rtol=1e-8, atol=1e-13)
    # the σ the evidence picks: its stationarity by hand, d/dσ of −Σr²/(2σ²) − N log σ − ½ log det(JᵀJ/σ² + δI)
    sigma = la.optimize_noise_std()
    G = J.T @ J
    lam = np.linalg.eigvalsh(G)
    grad = r @ r / sigma**3 - N / sigma + np.sum(lam / sigma**3 / (lam / sigma**2 + DELTA))
    assert abs(grad) < 1e-6 * N / sigma
    # bad input: a statistic's likelihood predicts no other times; its empirical Fisher does not exist
    with pytest.raises(ValueError, match="ts must be None"):
        la.predictive(ts=[0.5])
    with pytest.raises(ValueError, match="none per trajectory"):
        pj.Laplace(loss, theta, curvature="fisher")
    bad = pj.ObservationLoss(model, ts, y0, pj.OutputCost(path_moments, pj.MeanSquaredError()),
                             data=targets[:, :3])
    with pytest.raises(ValueError, match=r"targets of the statistic's shape \(2, 6, 1\)"):
        pj.Laplace(bad, theta)
