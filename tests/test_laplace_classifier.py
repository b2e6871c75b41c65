"""pj.Laplace with a categorical likelihood, against references computed by hand in NumPy.

The ODE classifier is multinomial logistic regression in disguise: the state is
(x, z) with x' = 0 and z' = W x, so z(T) = T W x exactly (tsit5 integrates a
constant right-hand side without error), and the readout adds a bias b:
logits_n = T W x_n + b, linear in θ = [vec W, b]. Its per-sample Jacobian J_n is
written down below, so the GGN Σ_n J_nᵀ(diag p_n − p_n p_nᵀ)J_n, the evidence, the
GLM logit moments and the last-layer block need nothing from the library.

The DEQ classifier's reference Jacobian is ``jax.jacfwd`` through 300 plain
fixed-point iterations (no implicit differentiation).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl.derivatives.equilibrium import EquilibriumLoss
from pyodejl.models.deq import DEQ, Dense, MLPCell

F, C, B, T = 3, 3, 40, 1.5
P = C * F + C
DELTA = 0.7


def field(t, y, th):
    x = y[:F]
    return jnp.concatenate([jnp.zeros(F), th.reshape(C, F) @ x])


def readout(extra, Y, labels):
    return Y[:, -1, F:] + extra


MODEL = pj.NeuralODE(pj.VectorField(field, num_params=C * F, state_dim=F + C), solver="tsit5", rtol=1e-12,
                     atol=1e-12)
COST = pj.OutputCost(readout, pj.SoftmaxCrossEntropy())


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def jacobians(X):
    """J_n = ∂logits_n/∂θ by hand, ``(B, C, p)``."""
    J = np.zeros((len(X), C, P))
    for c in range(C):
        J[:, c, c * F : (c + 1) * F] = T * X
        J[:, c, C * F + c] = 1.0
    return J


def logits_of(theta, X):
    return T * X @ theta[: C * F].reshape(C, F).T + theta[C * F :]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((B, F))
    theta = 0.5 * rng.standard_normal(P)
    labels = np.array([rng.choice(C, p=q) for q in softmax(logits_of(theta, X))]).astype(np.int32)
    loss = pj.ObservationLoss(MODEL, np.array([0.0, T]), np.hstack([X, np.zeros((B, C))]), COST, data=labels,
                              num_extra_params=C)
    J = jacobians(X)
    prob = softmax(logits_of(theta, X))
    G = sum(J[n].T @ (np.diag(prob[n]) - np.outer(prob[n], prob[n])) @ J[n] for n in range(B))
    return loss, theta, X, labels, J, G


@pytest.fixture(scope="module")
def full(problem):
    return pj.Laplace(problem[0], problem[1], prior_precision=DELTA)


def test_sampled_predictive_refuses_non_finite_logits(full, monkeypatch):
    """A posterior sample whose solve fails (NaN logits, as a DEQ that does not converge gives) is an
    error naming the remedy, never a NaN probability."""
    real, calls = pj.Laplace._logits, []

    def second_sample_fails(loss, theta):
        calls.append(1)
        return real(loss, theta) * (np.nan if len(calls) == 2 else 1.0)

    monkeypatch.setattr(pj.Laplace, "_logits", staticmethod(second_sample_fails))
    with pytest.raises(pj.SolveError, match="1 of 4 posterior samples gave non-finite logits.*probit"):
        full.predictive(method="samples", n=4, seed=0)
    calls.clear()
    monkeypatch.setattr(pj.Laplace, "_logits", staticmethod(lambda loss, theta: real(loss, theta)))
    assert np.all(np.isfinite(full.predictive(method="samples", n=4, seed=0)))


def test_ggn_is_the_softmax_ggn_by_hand(problem, full):
    G = problem[5]
    np.testing.assert_allclose(full.posterior_precision(), G + DELTA * np.eye(P), rtol=1e-9, atol=1e-11)
    # linear in θ: the Hessian of the NLL is the GGN
    hess = pj.Laplace(problem[0], problem[1], prior_precision=DELTA, curvature="hessian")
    np.testing.assert_allclose(hess.posterior_precision(), full.posterior_precision(), rtol=1e-8, atol=1e-10)
    assert full.likelihood == "categorical" and full.noise_std is None and full.num_classes == C


def test_empirical_fisher_of_the_summed_categorical_nll(problem):
    loss, theta, X, labels, J, _ = problem
    # g_n = J_nᵀ (p_n − e_{y_n}), the gradient of −log softmax(logits_n)[y_n]
    resid = softmax(logits_of(theta, X)) - np.eye(C)[labels]
    g = np.einsum("nci,nc->ni", J, resid)
    la = pj.Laplace(loss, theta, prior_precision=DELTA, curvature="fisher")
    np.testing.assert_allclose(la.posterior_precision(), g.T @ g + DELTA * np.eye(P), rtol=1e-8, atol=1e-10)
    diag = pj.Laplace(loss, theta, prior_precision=DELTA, curvature="fisher", structure="diagonal")
    np.testing.assert_allclose(diag.posterior_variance(), 1.0 / (np.sum(g**2, axis=0) + DELTA), rtol=1e-8)


def hand_evidence(theta, X, labels, G, delta):
    logp = np.log(softmax(logits_of(theta, X)))
    loglik = np.sum(logp[np.arange(len(labels)), labels])
    d = np.broadcast_to(delta, theta.shape)
    logprior = -0.5 * np.sum(d * theta**2) + 0.5 * np.sum(np.log(d / (2 * np.pi)))
    return loglik + logprior + 0.5 * len(theta) * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(G + np.diag(d))[1]


def test_evidence_by_hand(problem, full):
    _, theta, X, labels, _, G = problem
    assert full.log_marginal_likelihood() == pytest.approx(hand_evidence(theta, X, labels, G, DELTA), rel=1e-10)
    assert full.log_marginal_likelihood(prior_precision=3.0) == pytest.approx(
        hand_evidence(theta, X, labels, G, 3.0), rel=1e-10)
    # the diagonal structure's evidence uses diag(G) alone
    diag = pj.Laplace(problem[0], theta, prior_precision=DELTA, structure="diagonal")
    expected = hand_evidence(theta, X, labels, np.diag(np.diag(G)), DELTA)
    assert diag.log_marginal_likelihood() == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(diag.posterior_variance(), 1.0 / (np.diag(G) + DELTA), rtol=1e-9)


def test_glm_logit_moments_probit_and_samples(problem, full):
    _, theta, X, _, J, _ = problem
    Sigma = np.linalg.inv(full.posterior_precision())
    glm = full.predictive(method="glm")
    var_ref = np.einsum("nci,ij,ncj->nc", J, Sigma, J)
    np.testing.assert_allclose(glm.mean, logits_of(theta, X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(glm.var, var_ref, rtol=1e-8)

    # probit against the probit formula on the variance of Monte Carlo GLM logits
    n = 20000
    thetas = full.sample(n, seed=1)
    logits = np.einsum("nci,si->snc", J, thetas)  # the GLM logits (exact: linear in θ)
    var_mc = logits.var(axis=0)
    # relative standard error of a sample variance is √(2/(n−1)); 5 standard errors
    np.testing.assert_allclose(var_mc, var_ref, rtol=5 * np.sqrt(2 / (n - 1)))
    probit = full.predictive()
    kappa = 1.0 / np.sqrt(1.0 + np.pi / 8.0 * var_mc)
    ref = softmax(kappa * logits.mean(axis=0))
    # the MC mean and variance of the logits carry relative errors of about 1 %; the
    # probabilities move by less than that
    np.testing.assert_allclose(probit, ref, atol=1e-2)
    np.testing.assert_allclose(probit.sum(axis=1), 1.0, rtol=1e-12)

    # samples: the mean softmax over the same posterior draws (the model is its own GLM)
    sampled = full.predictive(method="samples", n=50, seed=2)
    np.testing.assert_allclose(sampled, softmax(np.einsum("nci,si->snc", J, full.sample(50, seed=2))).mean(axis=0),
                               rtol=1e-9)
    # new inputs
    Xn = np.random.default_rng(5).standard_normal((4, F))
    new = full.predictive(method="glm", x=np.hstack([Xn, np.zeros((4, C))]))
    Jn = jacobians(Xn)
    np.testing.assert_allclose(new.var, np.einsum("nci,ij,ncj->nc", Jn, Sigma, Jn), rtol=1e-8)


@pytest.mark.parametrize("structure, kwargs", [("diagonal", {}), ("low-rank", {"rank": 4})])
def test_glm_logit_variance_of_large_structures_by_jacobian_rows(problem, structure, kwargs, monkeypatch):
    """diag(J Σ Jᵀ) for diagonal and low-rank posteriors: their unit-vector terms come from C
    reverse-mode rows per input, so the only JVPs are the low-rank columns (≤ rank), not p."""
    import pyodejl.laplace as lap

    loss, theta, X, _, J, _ = problem
    la = pj.Laplace(loss, theta, prior_precision=DELTA, structure=structure, **kwargs)
    S = la._covariance_factor_apply(np.eye(P))  # Σ = S Sᵀ, dense (p = 12)
    directions = []
    jvps = lap._output_jvps
    monkeypatch.setattr(lap, "_output_jvps", lambda o, th, V, a: directions.append(V.shape[0]) or jvps(o, th, V, a))
    Xn = np.random.default_rng(6).standard_normal((7, F))  # 7 inputs: chunks padded past the end
    monkeypatch.setattr(lap, "_ROW_BYTES", 8 * C * P * 3)  # 3 inputs per chunk
    glm = la.predictive(method="glm", x=np.hstack([Xn, np.zeros((7, C))]))
    Jn = jacobians(Xn)
    np.testing.assert_allclose(glm.var, np.einsum("nci,ij,ncj->nc", Jn, S @ S.T, Jn), rtol=1e-10)
    assert sum(directions) == kwargs.get("rank", 0)
    # the subsets: readout alone, and an index subset inside the vector field
    for subset in ("last-layer", np.arange(6)):
        sub = pj.Laplace(loss, theta, prior_precision=DELTA, structure=structure, subset=subset,
                         **({"rank": 2} if kwargs else {}))
        S = sub._covariance_factor_apply(np.eye(sub.num_params))
        Js = J[:, :, sub.subset_index]
        np.testing.assert_allclose(sub.predictive(method="glm").var, np.einsum("nci,ij,ncj->nc", Js, S @ S.T, Js),
                                   rtol=1e-10)


def test_last_layer_is_the_conditional_of_the_full_posterior(problem, full):
    loss, theta, X, labels, _, G = problem
    S = np.arange(C * F, P)
    last = pj.Laplace(loss, theta, prior_precision=DELTA, subset="last-layer")
    assert last.num_params == C and np.array_equal(last.subset_index, S)
    # other parameters fixed at θ*: the posterior of the readout is N(θ*_S, (P_SS)⁻¹)
    P_SS = full.posterior_precision()[np.ix_(S, S)]
    np.testing.assert_allclose(last.posterior_covariance(), np.linalg.inv(P_SS), rtol=1e-9)
    np.testing.assert_allclose(P_SS, G[np.ix_(S, S)] + DELTA * np.eye(C), rtol=1e-9)
    # evidence of the readout's posterior
    logp = np.log(softmax(logits_of(theta, X)))
    expected = (np.sum(logp[np.arange(B), labels]) - 0.5 * DELTA * theta[S] @ theta[S] + 0.5 * C * np.log(DELTA)
                - 0.5 * np.linalg.slogdet(P_SS)[1])
    assert last.log_marginal_likelihood() == pytest.approx(expected, rel=1e-10)
    # the same subset by indices (operator restriction of the whole GGN)
    by_index = pj.Laplace(loss, theta, prior_precision=DELTA, subset=S)
    np.testing.assert_allclose(by_index.posterior_covariance(), last.posterior_covariance(), rtol=1e-9)
    # samples keep the other parameters at θ*; the predictive uses the readout's block only
    draws = last.sample(3, seed=0)
    np.testing.assert_array_equal(draws[:, : C * F], np.broadcast_to(theta[: C * F], (3, C * F)))
    _, _, _, _, J, _ = problem
    var_ref = np.einsum("nci,ij,ncj->nc", J[:, :, S], np.linalg.inv(P_SS), J[:, :, S])
    np.testing.assert_allclose(last.predictive(method="glm").var, var_ref, rtol=1e-8)
    np.testing.assert_allclose(by_index.predictive(method="glm").var, var_ref, rtol=1e-8)
    np.testing.assert_allclose(last.predictive(method="samples", n=20, seed=3),
                               by_index.predictive(method="samples", n=20, seed=3), rtol=1e-9)


BLOCKS = (C * F, C)


def test_per_block_prior_evidence_is_stationary_at_its_optimum(problem):
    loss, theta, X, labels, _, G = problem
    la = pj.Laplace(loss, theta, prior_precision=[0.3, 4.0], blocks=BLOCKS)
    d = np.repeat([0.3, 4.0], BLOCKS)
    assert la.log_marginal_likelihood() == pytest.approx(hand_evidence(theta, X, labels, G, d), rel=1e-10)
    delta = la.optimize_prior_precision()
    assert delta.shape == (2,)
    for b in range(2):
        h = 1e-5 * delta[b]
        up, down = delta.copy(), delta.copy()
        up[b] += h
        down[b] -= h
        fd = (la.log_marginal_likelihood(up) - la.log_marginal_likelihood(down)) / (2 * h)
        assert abs(fd) < 1e-6 * (1.0 + abs(la.log_marginal_likelihood()))
    # the analytic gradient against central differences away from the optimum
    at = np.array([0.5, 2.0])
    fd = [(la.log_marginal_likelihood(at + h * e) - la.log_marginal_likelihood(at - h * e)) / (2 * h)
          for e, h in zip(np.eye(2), 1e-6 * at)]
    np.testing.assert_allclose(la.evidence_gradient(at), fd, rtol=1e-6)


def test_per_block_prior_diagonal_by_hand(problem):
    loss, theta, X, labels, _, G = problem
    la = pj.Laplace(loss, theta, prior_precision=[0.3, 4.0], blocks=BLOCKS, structure="diagonal")
    d = np.repeat([0.3, 4.0], BLOCKS)
    expected = hand_evidence(theta, X, labels, np.diag(np.diag(G)), d)
    assert la.log_marginal_likelihood() == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(la.posterior_variance(), 1.0 / (np.diag(G) + d), rtol=1e-9)
    delta = la.optimize_prior_precision()
    np.testing.assert_allclose(la.evidence_gradient(delta), 0.0, atol=1e-6)


def test_per_block_prior_low_rank_full_rank_equals_full(problem):
    loss, theta = problem[:2]
    prior = [0.3, 4.0]
    full = pj.Laplace(loss, theta, prior_precision=prior, blocks=BLOCKS)
    low = pj.Laplace(loss, theta, prior_precision=prior, blocks=BLOCKS, structure="low-rank", rank=P)
    trunc = pj.Laplace(loss, theta, prior_precision=prior, blocks=BLOCKS, structure="low-rank", rank=4)
    Sigma = full.posterior_covariance()
    np.testing.assert_allclose(low.posterior_variance(), np.diag(Sigma), rtol=1e-8)
    assert low.log_marginal_likelihood() == pytest.approx(full.log_marginal_likelihood(), rel=1e-10)
    S = low._covariance_factor_apply(np.eye(P))
    np.testing.assert_allclose(S @ S.T, Sigma, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(low.predictive(method="glm").var, full.predictive(method="glm").var, rtol=1e-7)
    # truncated: P = U Λ Uᵀ + D exactly, checked densely
    lam, U = trunc._curvature()
    P_trunc = (U * lam) @ U.T + np.diag(np.repeat(prior, BLOCKS))
    np.testing.assert_allclose(trunc.posterior_variance(), np.diag(np.linalg.inv(P_trunc)), rtol=1e-8)
    S = trunc._covariance_factor_apply(np.eye(P))
    np.testing.assert_allclose(S @ S.T, np.linalg.inv(P_trunc), rtol=1e-8, atol=1e-12)


# ---- DEQ classifier ----------------------------------------------------------------------------
NB, NIN, ND, NC = 6, 4, 5, 3


def deq_readout(z, extra, labels):
    return z @ extra[: NC * ND].reshape(NC, ND).T + extra[NC * ND :]


def test_deq_classifier_ggn_against_unrolled_iterations():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((NB, NIN))
    labels = rng.integers(0, NC, NB).astype(np.int32)
    deq = DEQ(MLPCell(ND, ND), encoder=Dense((NIN, ND), "tanh"), solver="anderson", tol=1e-12, max_steps=200)
    loss = EquilibriumLoss(deq, x, pj.OutputCost(deq_readout, pj.SoftmaxCrossEntropy()), NC * ND + NC, data=labels)
    th = np.concatenate([deq.init(0), 0.5 * rng.standard_normal(NC * ND + NC)])
    p = deq.num_params

    def logits(t):
        th_cell, th_enc, _ = deq.split(t[:p])
        xe = deq.encode(th_enc, jnp.asarray(x))
        z = jax.lax.fori_loop(0, 300, lambda _, z: deq.f(th_cell, z, xe), jnp.zeros((NB, ND)))
        return deq_readout(z, t[p:], None)

    out = np.asarray(logits(jnp.asarray(th)))
    J = np.asarray(jax.jit(jax.jacfwd(logits))(jnp.asarray(th)))  # (NB, NC, p)
    prob = softmax(out)
    G_ref = sum(J[n].T @ (np.diag(prob[n]) - np.outer(prob[n], prob[n])) @ J[n] for n in range(NB))
    la = pj.Laplace(loss, th, prior_precision=DELTA)
    np.testing.assert_allclose(la.posterior_precision(), G_ref + DELTA * np.eye(len(th)), rtol=1e-7, atol=1e-9)
    op = loss.ggn_operator(th)
    V = rng.standard_normal((len(th), 3))
    np.testing.assert_allclose(NB * op.matmat(V), G_ref @ V, rtol=1e-7, atol=1e-9)
    # last-layer: the readout's block; the probit predictive is a distribution per input
    last = pj.Laplace(loss, th, prior_precision=DELTA, subset="last-layer")
    S = np.arange(p, len(th))
    np.testing.assert_allclose(last.posterior_precision(), G_ref[np.ix_(S, S)] + DELTA * np.eye(len(S)),
                               rtol=1e-7, atol=1e-9)
    probs = last.predictive(x=x[:2])
    assert probs.shape == (2, NC)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    var_ref = np.einsum("nci,ij,ncj->nc", J[:, :, S], last.posterior_covariance(), J[:, :, S])
    np.testing.assert_allclose(last.predictive(method="glm").var, var_ref, rtol=1e-6)
    # all of θ, diagonal: the rows of J through the implicit function theorem, one input at a time
    diag = pj.Laplace(loss, th, prior_precision=DELTA, structure="diagonal")
    np.testing.assert_allclose(diag.predictive(method="glm").var,
                               np.einsum("nci,i,nci->nc", J, diag.posterior_variance(), J), rtol=1e-9)


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    ({"noise_std": 0.5}, ValueError, "has no observation noise: noise_std must be None"),
    ({"subset": "first-layer"}, ValueError, "unknown subset 'first-layer'"),
    ({"subset": np.array([0, 0])}, ValueError, "distinct and in"),
    ({"subset": np.array([P])}, ValueError, "distinct and in"),
    ({"blocks": (2, 3)}, ValueError, f"blocks must sum to p = {P}"),
    ({"blocks": BLOCKS, "prior_precision": [1.0, 0.0]}, ValueError, r"prior_precision\[1\] must be a finite number > 0"),
    ({"blocks": BLOCKS, "prior_precision": [1.0, -2.0]}, ValueError, r"prior_precision\[1\] must be a finite"),
    ({"blocks": BLOCKS, "prior_precision": [1.0, 2.0, 3.0]}, ValueError, r"one value per block, shape \(2,\)"),
    ({"prior_precision": [1.0, 2.0]}, ValueError, "must be a scalar without blocks"),
])
def test_bad_arguments(problem, kwargs, error, match):
    with pytest.raises(error, match=match):
        pj.Laplace(problem[0], problem[1], **kwargs)


def test_bad_calls(problem, full):
    with pytest.raises(ValueError, match="categorical .* no observation noise"):
        full.optimize_noise_std()
    with pytest.raises(ValueError, match="no noise_std"):
        full.log_marginal_likelihood(noise_std=1.0)
    with pytest.raises(ValueError, match="unknown predictive method 'mean'"):
        full.predictive(method="mean")
    with pytest.raises(ValueError, match="ts must be None"):
        full.predictive(np.array([0.5]))
    with pytest.raises(ValueError, match=r"x must be initial states of shape \(B', D\)"):
        full.predictive(x=np.zeros((2, F)))
    with pytest.raises(ValueError, match="per block"):
        pj.Laplace(problem[0], problem[1], blocks=BLOCKS).log_marginal_likelihood(prior_precision=[1.0])
