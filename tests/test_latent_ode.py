"""Latent ODEs (pyodejl.LatentODE): ELBO gradients, KL, masks, the backward encoder, regularisers, training."""

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl.derivatives.ode_loss import _evaluate
from pyodejl.experiments.series import irregular_split
from pyodejl.models.latent_ode import gaussian_kl

L, C, H, B, T = 3, 2, 6, 4, 9


def small_model(solver="tsit5", **kw):
    ode = pj.NeuralODE(pj.MLP((L, 8, L)), solver=solver, rtol=1e-6, atol=1e-8, **kw)
    return pj.LatentODE(ode, C, hidden_dim=H, obs_std=0.1)


@pytest.fixture(scope="module")
def series():
    rng = np.random.default_rng(0)
    ts = np.linspace(0.0, 1.0, T)
    values = rng.normal(size=(B, T, C))
    mask = rng.random((B, T, C)) < 0.5
    mask[:, 0, 0] = True  # every series observed somewhere
    return ts, values, mask


def directional_fd(f, theta, v, h=1e-5):
    return (f(theta + h * v) - f(theta - h * v)) / (2 * h)


def frozen(loss, theta):
    """The loss on θ's frozen step grid, as a function of θ (what the discrete gradient differentiates)."""
    fn, args = loss.direct_function(theta)
    return lambda th: float(_evaluate(fn, th, args))


def test_layout_and_init():
    m = small_model()
    th = m.init(3)
    assert th.shape == (m.num_params,) and th.dtype == np.float64
    vf, enc, dec = m.split(th)
    assert vf.size == m.ode.num_params and enc.size == m.num_encoder_params and dec.size == (C * L + C)
    np.testing.assert_array_equal(vf, m.ode.init(3))
    assert np.array_equal(m.init(3), th) and not np.array_equal(m.init(4), th)


def test_elbo_gradient_matches_finite_differences(series):
    """Fixed-step RK4: the loss is a smooth function of θ, so central FD of ``value`` checks the
    discrete gradient through the decoder, the latent solve, z₀ = μ + σε and the backward GRU."""
    ts, values, mask = series
    m = small_model(solver="rk4", dt=0.125)
    loss = m.loss(ts, values, mask, noise_seed=1)
    assert np.any(loss.noise != 0)
    th = m.init(0)
    g = loss.grad(th)
    rng = np.random.default_rng(2)
    for _ in range(3):
        v = rng.normal(size=th.size)
        np.testing.assert_allclose(g @ v, directional_fd(loss.value, th, v), rtol=1e-6)
    a, b = m.ode.num_params, m.ode.num_params + m.num_encoder_params
    for i in [0, a - 1, a, a + 5, b - 1, b, th.size - 1]:  # each block: field, encoder (gates, output), decoder
        e = np.zeros(th.size)
        e[i] = 1.0
        np.testing.assert_allclose(g[i], directional_fd(loss.value, th, e), rtol=1e-5, atol=1e-8)


def test_kl_closed_form_and_its_place_in_the_loss(series):
    rng = np.random.default_rng(1)
    mu, sigma = rng.normal(size=(5, L)), np.exp(rng.normal(size=(5, L)) * 0.5)
    # KL(N(μ1, σ1²) ‖ N(μ2, σ2²)) = log σ2/σ1 + (σ1² + (μ1 − μ2)²) / (2σ2²) − ½, per dimension, with μ2 = 0, σ2 = 1
    expected = np.sum(-np.log(sigma) + (sigma**2 + mu**2) / 2 - 0.5, axis=-1)
    np.testing.assert_allclose(np.asarray(gaussian_kl(mu, sigma)), expected, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(gaussian_kl(np.zeros(L), np.ones(L))), 0.0, atol=1e-15)
    ts, values, mask = series
    m = small_model()
    th = m.init(0)
    with_kl = m.loss(ts, values, mask, noise_seed=0).value(th)
    without = m.loss(ts, values, mask, noise_seed=0, kl_weight=0.0).value(th)
    _, enc, _ = m.split(th)
    tb = np.broadcast_to(ts, (B, T))
    mu, sigma = m.encode(enc, tb, np.where(mask, values, 0), mask.astype(float))
    np.testing.assert_allclose(with_kl - without, float(np.sum(gaussian_kl(mu, sigma))) / mask.sum(), rtol=1e-9)


def test_masked_entries_do_not_affect_the_loss(series):
    ts, values, mask = series
    m = small_model()
    th = m.init(0)
    base = m.loss(ts, values, mask)
    perturbed = values.copy()
    perturbed[~mask] += 100.0
    perturbed[0, ~mask[0]] = np.nan  # unobserved entries are never read
    other = m.loss(ts, perturbed, mask)
    assert other.value(th) == base.value(th)
    np.testing.assert_array_equal(other.grad(th), base.grad(th))


def test_masks_are_used(series):
    """Fails if the masks were ignored: an observed entry moves the loss and z₀, an unobserved one
    neither; dropping an entry from the mask changes the loss."""
    ts, values, mask = series
    m = small_model()
    th = m.init(0)
    _, enc, _ = m.split(th)
    tb = np.broadcast_to(ts, (B, T))
    mu0 = np.asarray(m.encode(enc, tb, values, mask.astype(float))[0])
    b, t, c = map(int, np.argwhere(mask)[3])
    moved = values.copy()
    moved[b, t, c] += 1.0
    assert m.loss(ts, moved, mask).value(th) != m.loss(ts, values, mask).value(th)
    assert not np.allclose(m.encode(enc, tb, moved, mask.astype(float))[0][b], mu0[b])
    b2, t2, c2 = map(int, np.argwhere(~mask)[0])
    hidden = values.copy()
    hidden[b2, t2, c2] += 1.0
    np.testing.assert_array_equal(m.encode(enc, tb, hidden, mask.astype(float))[0], mu0)
    fewer = mask.copy()
    fewer[b, t, c] = False
    assert m.loss(ts, values, fewer).value(th) != m.loss(ts, values, mask).value(th)


def test_backward_encoder_sees_the_order(series):
    ts, values, mask = series
    m = small_model()
    _, enc, _ = m.split(m.init(0))
    tb = np.broadcast_to(ts, (B, T))
    mu, _ = m.encode(enc, tb, values, mask.astype(float))
    mu_rev, _ = m.encode(enc, tb, values[:, ::-1], mask[:, ::-1].astype(float))
    assert np.all(np.linalg.norm(np.asarray(mu) - np.asarray(mu_rev), axis=1) > 1e-6)


def test_regularised_gradient_matches_finite_differences(series):
    """ERNODE, SRNODE, local unbiased/biased and TayNODE on the latent solve: the discrete gradient
    against central FD of the loss on θ's frozen step grid (the function it differentiates)."""
    ts, values, mask = series
    m = small_model()
    R = pj.regularizers
    terms = [R.ErrorEstimate(0.5), R.StiffnessEstimate(0.1), R.LocalErrorEstimate(0.3, sampling="unbiased", seed=1),
             R.LocalStiffnessEstimate(0.2, sampling="biased", seed=2), R.TaylorDerivative(0.01, order=2)]
    loss = m.loss(ts, values, mask, noise_seed=3, regularizers=terms)
    th = m.init(1)
    parts = loss.terms(th)
    assert set(parts) == {"data"} | {t.name for t in terms}
    assert all(np.isfinite(v) and v > 0 for v in parts.values())
    g = loss.grad(th)
    f = frozen(loss, th)
    rng = np.random.default_rng(4)
    for _ in range(3):
        v = rng.normal(size=th.size)
        np.testing.assert_allclose(g @ v, directional_fd(f, th, v), rtol=1e-6)
    # the encoder block gets its share: z₀ feeds the regularisers too
    assert np.linalg.norm(m.split(g)[1]) > 0


def sine_series(n, seed):
    """Damped sines in two channels (a 2-D linear ODE's solution) on a 16-point grid."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 16)
    amp, phase = rng.uniform(0.5, 1.5, size=(n, 1)), rng.uniform(0, 2 * np.pi, size=(n, 1))
    x = np.stack([amp * np.sin(2 * np.pi * t + phase), amp * np.cos(2 * np.pi * t + phase)], axis=-1)
    return x, np.full(n, 16)


def test_training_lowers_heldout_interpolation_mse():
    """80 Adam steps on 24 sine series halve the held-out MSE of the initial model and beat half the
    held-out entries' variance (≈ 1 after standardisation: the MSE of the best constant predictor).
    Initial seeds 0–3 reach 0.05–0.24 against a threshold of ≈ 0.5, so the margin is twofold."""
    from pyodejl.experiments.trainer import Problem, Training, train

    raw, lengths = sine_series(24, 0)
    d = irregular_split(raw, lengths, seed=0)
    ode = pj.NeuralODE(pj.MLP((4, 16, 4)), solver="tsit5", rtol=1e-4, atol=1e-6)
    m = pj.LatentODE(ode, 2, hidden_dim=16)
    loss = m.loss(d.ts, d.values, d.observed_mask)
    th0 = m.init(0)

    def objective(step, indices):
        return loss.reseed(max(step, 0))  # a new ε each step; step -1 (measurements) takes seed 0

    out = train(Problem(th0, objective, num_samples=24, varies=True), Training(steps=80, lr=3e-2))
    before = m.interpolation_mse(th0, d.ts, d.values, d.observed_mask, d.target_mask)
    after = m.interpolation_mse(out["theta"], d.ts, d.values, d.observed_mask, d.target_mask)
    variance = float(np.var(d.values[d.target_mask]))
    assert after < 0.5 * before and after < 0.5 * variance, (before, after, variance)


def test_bad_input(series):
    ts, values, mask = series
    m = small_model()
    with pytest.raises(ValueError, match=r"observed_mask must have the shape of values \(B, T, C\) = \(4, 9, 2\)"):
        m.loss(ts, values, mask[:, :-1])
    empty = mask.copy()
    empty[2] = False
    with pytest.raises(ValueError, match=r"series \[2\] have no observed entry"):
        m.loss(ts, values, empty)
    with pytest.raises(ValueError, match=r"values must have shape \(B, T, 2\)"):
        m.loss(ts, values[..., :1], mask[..., :1])
    with pytest.raises(ValueError, match=r"times must have shape \(9,\)"):
        m.loss(ts[:-1], values, mask)
    with pytest.raises(ValueError, match="target_mask must have the shape"):
        m.interpolation_mse(m.init(0), ts, values, mask, mask[:1])
    with pytest.raises(ValueError, match="target_mask overlaps observed_mask"):
        m.interpolation_mse(m.init(0), ts, values, mask, mask)
    with pytest.raises(TypeError, match="must be a pyodejl.NeuralODE"):
        pj.LatentODE(pj.MLP((2, 2)), C)
    loss = m.loss(ts, values, mask)
    with pytest.raises(NotImplementedError, match="initial-state map"):
        loss.grad(m.init(0), method="backsolve")
    with pytest.raises(NotImplementedError, match="initial-state map"):
        loss.ggn(m.init(0))
    with pytest.raises(ValueError, match="either y0 or an initial-state map"):
        pj.ObservationLoss(m.ode, ts, np.zeros((B, L)), loss.problem.cost, data=loss._host_batch[0],
                           num_extra_params=m.num_params - m.ode.num_params, initial=loss.problem.initial)


def test_direct_hessians_agree_through_the_encoder():
    """direct-direct and direct-adjoint differentiate the same frozen-grid loss twice, encoder included."""
    ode = pj.NeuralODE(pj.MLP((2, 4, 2)), solver="tsit5", rtol=1e-6, atol=1e-8)
    m = pj.LatentODE(ode, 2, hidden_dim=3, obs_std=0.1)
    rng = np.random.default_rng(0)
    values, mask = rng.normal(size=(3, 6, 2)), rng.random((3, 6, 2)) < 0.5
    mask[:, 0] = True
    loss = m.loss(np.linspace(0, 1, 6), values, mask, regularizers=[pj.regularizers.ErrorEstimate(0.1)])
    th = m.init(0)
    H = loss.hessian(th, method="direct-direct")
    np.testing.assert_allclose(H, H.T, atol=1e-9 * np.abs(H).max())
    np.testing.assert_allclose(loss.hessian(th, method="direct-adjoint"), H, atol=1e-10 * np.abs(H).max())
    enc = slice(m.ode.num_params, m.ode.num_params + m.num_encoder_params)
    assert np.abs(H[enc, enc]).max() > 0


@dataclass(frozen=True)
class ShiftedStart:
    """y0 = data's base states + θ_extra (one shift shared by the batch)."""

    def __call__(self, extra, data):
        return data[0] + extra


@dataclass(frozen=True)
class TargetMSE:
    def __call__(self, extra, Y, data):
        return jnp.mean((Y[..., : data[1].shape[-1]] - data[1]) ** 2)


def test_initial_map_equals_the_fixed_y0_loss_and_differentiates_the_shift():
    """ObservationLoss(initial=...) at a zero shift is the fixed-y0 loss (augmented state and a running
    cost included); its gradient in the shift matches FD of the frozen-grid loss."""
    # loose tolerances: the error estimates E_j stay well above rounding, so FD of ERNODE is not noise
    model = pj.NeuralODE(pj.MLP((3, 5, 3)), solver="tsit5", rtol=1e-4, atol=1e-6, augment_dim=1)
    rng = np.random.default_rng(5)
    ts, y0 = np.linspace(0, 1, 5), rng.normal(size=(3, 2))
    targets = rng.normal(size=(3, 5, 2))
    terms = [pj.regularizers.KineticEnergy(0.1), pj.regularizers.ErrorEstimate(0.2)]
    fixed = pj.TrajectoryLoss(model, ts, y0, targets, regularizers=terms)
    mapped = pj.ObservationLoss(model, ts, None, TargetMSE(), data=(y0, targets), num_extra_params=2,
                                regularizers=terms, initial=ShiftedStart())
    vf = model.init(0)
    th = np.concatenate([vf, np.zeros(2)])
    assert mapped.value(th) == pytest.approx(fixed.value(vf), rel=1e-12)
    g = mapped.grad(th)
    np.testing.assert_allclose(g[: vf.size], fixed.grad(vf), rtol=1e-9, atol=1e-12)
    f = frozen(mapped, th)
    for i in (vf.size, vf.size + 1):
        e = np.zeros(th.size)
        e[i] = 1.0
        np.testing.assert_allclose(g[i], directional_fd(f, th, e, h=1e-4), rtol=1e-6)
    with pytest.raises(ValueError, match=r"must return initial states of shape \(B, 2\)"):
        pj.ObservationLoss(model, ts, None, TargetMSE(), data=(y0[:, :1], targets), num_extra_params=1,
                           initial=ShiftedStart())
