"""Issue 12 §1: seed 004's MNIST Neural ODE (small sizes here), its readout, mini-batch objectives.

References: a hand NumPy implementation of the vector field and of softmax
cross-entropy; separable linear interpolation for the digits upsampling; the
closed-form Hessian of a least-squares loss; a fixed-step solve of the whole
batch (identical per-sample trajectories, so the mini-batch mean must equal it
to round-off).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl.derivatives import MinibatchObjective, fraction_indices
from pyodejl.derivatives.minibatch import split_batches
from pyodejl.experiments import ModelSpec, RunConfig, build_objective, init_params, make_task, parameter_counts
from pyodejl.experiments.models import SoftmaxReadoutCost, softmax_cross_entropy
from pyodejl.experiments.tasks import digits_images
from pyodejl.experiments.tracking import tracking_indices
from pyodejl.models import ConcatTimeMLP


def _numpy_field(sizes, theta, t, y, output=np.tanh):
    """f(t, y) = out(W_L [h; t] + b_L), h = tanh(W_k [h; t] + b_k), written out with concatenation."""
    h, off = np.asarray(y, dtype=np.float64), 0
    n = len(sizes) - 1
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = theta[off : off + o * (i + 1)].reshape(o, i + 1)
        off += o * (i + 1)
        b = theta[off : off + o]
        off += o
        x = np.concatenate([h, np.full(h.shape[:-1] + (1,), t)], axis=-1)
        h = x @ W.T + b
        h = output(h) if k == n - 1 else np.tanh(h)
    assert off == len(theta)
    return h


def test_concat_time_mlp_matches_numpy():
    rng = np.random.default_rng(0)
    for sizes, out_act, out_np in [((5, 4, 5), "tanh", np.tanh), ((3, 4, 6, 3), "identity", lambda x: x)]:
        vf = ConcatTimeMLP(sizes, output_activation=out_act)
        p = sum(o * (i + 1) + o for i, o in zip(sizes[:-1], sizes[1:]))
        assert vf.num_params == p and vf.state_dim == sizes[0]
        theta = rng.normal(size=p)
        y = rng.normal(size=(7, sizes[0]))
        for t in (0.0, 0.37, -1.5):
            ref = _numpy_field(sizes, theta, t, y, out_np)
            np.testing.assert_allclose(np.asarray(vf(t, jnp.asarray(y), jnp.asarray(theta))), ref, rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(np.asarray(vf(t, jnp.asarray(y[2]), jnp.asarray(theta))), ref[2], rtol=1e-13, atol=1e-14)
        # as a NeuralODE field: the batched right-hand side is the same function
        model = pj.NeuralODE(vf, solver="dopri5")
        np.testing.assert_allclose(np.asarray(model.rhs(0.2, jnp.asarray(y), jnp.asarray(theta))),
                                   _numpy_field(sizes, theta, 0.2, y, out_np), rtol=1e-13, atol=1e-14)


def test_concat_time_mlp_init_and_sizes():
    vf = ConcatTimeMLP((784, 100, 784))
    assert vf.num_params == 100 * 785 + 100 + 784 * 101 + 784 == 158568  # seed 004: W1 100x785, W2 784x101
    small = ConcatTimeMLP((6, 5, 6))
    a, b = small.init(3), small.init(3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, small.init(4))
    (W1, b1), (W2, b2) = small.unflatten(a)
    assert W1.shape == (5, 7) and W2.shape == (6, 6)
    # PyTorch nn.Linear default: U(±1/sqrt(fan_in)) with fan_in = in + 1 (the t column)
    assert np.abs(W1).max() <= 1 / math.sqrt(7) and np.abs(b2).max() <= 1 / math.sqrt(6)
    with pytest.raises(ValueError, match="activation"):
        ConcatTimeMLP((3, 3), output_activation="nope")
    with pytest.raises(ValueError, match="at least"):
        ConcatTimeMLP((3,))


def test_softmax_readout_cost_matches_numpy():
    rng = np.random.default_rng(1)
    B, D, C = 6, 5, 4
    Y = rng.normal(size=(B, 2, D))
    labels = rng.integers(0, C, size=B)
    extra = rng.normal(size=C * D + C)
    cost = SoftmaxReadoutCost(C)
    logits = Y[:, -1] @ extra[: C * D].reshape(C, D).T + extra[C * D :]
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    ref = -np.mean(logp[np.arange(B), labels])
    assert float(cost(jnp.asarray(extra), jnp.asarray(Y), jnp.asarray(labels))) == pytest.approx(ref, rel=1e-14)
    # d/dlogits of the mean cross-entropy = (softmax - onehot) / B
    g = np.asarray(jax.grad(softmax_cross_entropy)(jnp.asarray(logits), jnp.asarray(labels)))
    np.testing.assert_allclose(g, (np.exp(logp) - np.eye(C)[labels]) / B, rtol=1e-13, atol=1e-16)


def test_digits_task_upsampling_and_model_size():
    small, labels = digits_images(8)
    big, labels28 = digits_images(28)
    assert small.shape == (1797, 64) and big.shape == (1797, 784)
    np.testing.assert_array_equal(labels, labels28)
    assert set(np.unique(labels)) == set(range(10)) and small.min() == 0.0 and small.max() == 1.0
    # bilinear zoom = separable linear interpolation with corners mapped onto corners
    grid = np.linspace(0.0, 7.0, 28)
    for k in (0, 100):
        img = small[k].reshape(8, 8)
        rows = np.stack([np.interp(grid, np.arange(8), img[i]) for i in range(8)])  # (8, 28)
        ref = np.stack([np.interp(grid, np.arange(8), rows[:, j]) for j in range(28)], axis=1)
        np.testing.assert_allclose(big[k].reshape(28, 28), ref, atol=1e-12)
    task = make_task("digits", seed=2, dim=64, num_samples=30)
    again = make_task("digits", seed=2, dim=64, num_samples=30)
    np.testing.assert_array_equal(task.x, again.x)
    assert task.x.shape == (30, 64) and task.y.dtype == np.int64 and task.num_classes == 10
    full = make_task("digits", seed=0, num_samples=2)
    assert full.dim == 784
    assert parameter_counts(ModelSpec("concat-node", width=100), full) == {
        "network": 158568, "readout": 7850, "total": 166418}
    cfg = RunConfig(task="digits", model="concat-node", dim=64, num_samples=20, width=3).resolved()
    assert cfg.loss == "cross-entropy"
    with pytest.raises(ValueError, match="1797"):
        make_task("digits", num_samples=1800)
    with pytest.raises(ValueError, match="supports dim"):
        make_task("digits", dim=100)
    with pytest.raises(ValueError, match="every layer"):
        RunConfig(task="digits", model="concat-node", dim=64, time_dependent=True).resolved()
    with pytest.raises(ValueError, match="does not fit"):
        RunConfig(task="digits", model="node", dim=64, loss="mse").resolved()


def _fixed_step_losses(B=6, parts=3):
    """A concat-node classifier on B random points solved with rk4 as one batch and in parts."""
    rng = np.random.default_rng(2)
    d, C = 3, 4
    vf = ConcatTimeMLP((d, 4, d))
    model = pj.NeuralODE(vf, solver="rk4", dt=0.25)
    x = rng.normal(size=(B, d))
    labels = rng.integers(0, C, size=B)
    cost = SoftmaxReadoutCost(C)

    def loss(idx):
        return pj.ObservationLoss(model, [0.0, 1.0], x[idx], cost, data=labels[idx], num_extra_params=C * (d + 1))

    theta = np.concatenate([vf.init(0), rng.uniform(-0.5, 0.5, C * (d + 1))])
    return loss, theta, [np.arange(B)] + [np.asarray(i) for i in np.array_split(np.arange(B), parts)]


def test_minibatch_equals_full_batch_for_fixed_steps():
    loss, theta, (all_idx, *batches) = _fixed_step_losses()
    full = loss(all_idx)
    parts = [loss(b) for b in batches]
    mb = MinibatchObjective(parts, weights=[len(b) for b in batches])
    v = np.random.default_rng(3).normal(size=len(theta))
    # fixed steps: every sample's trajectory is the same solved alone or in the batch, so
    # only the order of the sums differs (observed: value 0, gradient 2e-16, HVP 3e-16 relative)
    assert mb.value(theta) == pytest.approx(full.value(theta), rel=1e-15)
    g = full.grad(theta)
    np.testing.assert_allclose(mb.grad(theta), g, rtol=0, atol=2e-15 * np.abs(g).max())
    Hv = full.hvp(theta, v)
    np.testing.assert_allclose(mb.hvp(theta, v), Hv, rtol=0, atol=3e-15 * np.abs(Hv).max())
    op = mb.hessian_operator(theta)
    np.testing.assert_allclose(op @ v, Hv, rtol=0, atol=3e-15 * np.abs(Hv).max())
    assert op.matvecs == 1
    # and it is the explicit weighted mean of the parts
    w = np.array([len(b) for b in batches]) / len(all_idx)
    np.testing.assert_allclose(mb.hvp(theta, v), sum(wi * p.hvp(theta, v) for wi, p in zip(w, parts)), rtol=1e-15, atol=1e-15)
    assert mb.stats(theta).nfe == sum(p.stats(theta).nfe for p in parts)


def test_minibatch_adaptive_agrees_with_joint_solve_to_tolerance():
    task = make_task("digits", seed=1, dim=64, num_samples=12)
    spec = ModelSpec("concat-node", width=3, rtol=1e-8, atol=1e-10)
    theta = init_params(spec, task, 0)
    full = build_objective(spec, task)
    mb = build_objective(spec, task, batch_size=5)
    assert isinstance(mb, MinibatchObjective) and [len(p.y0) for p in mb.parts] == [4, 4, 4]
    np.testing.assert_allclose(mb.weights, [1 / 3] * 3)
    # one step grid for the batch vs one per part: equal up to the solver tolerance (rtol);
    # observed 2e-13 — at initialisation the flow is gentle and both grids are fine for it
    assert mb.value(theta) == pytest.approx(full.value(theta), rel=1e-8)


def _least_squares_parts(n=20, p=4, batch_size=6, fraction=1.0, seed=0):
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(n, p)), rng.normal(size=n)

    def fn(theta, Xb, yb):
        return jnp.mean((Xb @ theta - yb) ** 2)

    build = lambda idx: pj.FunctionObjective(fn, p, args=(X[idx], y[idx]))
    obj = MinibatchObjective.from_samples(build, n, batch_size, fraction=fraction, seed=seed)
    return obj, X, y


def test_minibatch_from_samples_least_squares_closed_form():
    obj, X, y = _least_squares_parts()
    theta = np.array([0.3, -0.2, 0.5, 1.0])
    r = X @ theta - y
    assert obj.value(theta) == pytest.approx(np.mean(r**2), rel=1e-14)
    np.testing.assert_allclose(obj.grad(theta), 2 * X.T @ r / len(y), rtol=1e-13)
    H = 2 * X.T @ X / len(y)
    np.testing.assert_allclose(obj.hessian(theta), H, rtol=1e-13)
    v = np.arange(4.0)
    np.testing.assert_allclose(obj.hessian_operator(theta) @ v, H @ v, rtol=1e-13)
    assert [len(i) for i in obj.indices] == [5, 5, 5, 5]  # 20 samples, ceil(20/6) = 4 near-equal parts
    np.testing.assert_array_equal(np.concatenate(obj.indices), np.arange(20))
    # a fraction: the mean over the subset only
    sub, X, y = _least_squares_parts(fraction=0.3, seed=7)
    idx = np.concatenate(sub.indices)
    np.testing.assert_array_equal(idx, fraction_indices(20, 0.3, 7))
    assert sub.value(theta) == pytest.approx(np.mean((X[idx] @ theta - y[idx]) ** 2), rel=1e-14)


def test_fraction_sampling_reproducible_by_seed():
    a = fraction_indices(1797, 0.1, seed=3)
    np.testing.assert_array_equal(a, fraction_indices(1797, 0.1, seed=3))
    assert len(a) == 180 and len(np.unique(a)) == 180 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, fraction_indices(1797, 0.1, seed=4))
    # the draw the experiments' tracking always made (existing run folders keep their subsets)
    np.testing.assert_array_equal(a, np.sort(np.random.default_rng([3, 3]).choice(1797, size=180, replace=False)))
    np.testing.assert_array_equal(tracking_indices(3, 1797, 0.1), a)
    np.testing.assert_array_equal(fraction_indices(10, 1.0, seed=0), np.arange(10))
    assert len(fraction_indices(10, 0.01, seed=0)) == 2
    assert [len(s) for s in split_batches(np.arange(1797), 512)] == [450, 449, 449, 449]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan"), True, "0.5"])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"fraction.*\(0, 1\]"):
        fraction_indices(100, fraction, seed=0)
    with pytest.raises(ValueError, match=r"fraction"):
        _least_squares_parts(fraction=fraction)


def test_minibatch_bad_input():
    f = lambda p: pj.FunctionObjective(lambda th: jnp.sum(th**2), p)
    with pytest.raises(ValueError, match="at least one"):
        MinibatchObjective([])
    with pytest.raises(ValueError, match="same num_params"):
        MinibatchObjective([f(2), f(3)])
    with pytest.raises(ValueError, match="one entry per part"):
        MinibatchObjective([f(2), f(2)], weights=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        MinibatchObjective([f(2), f(2)], weights=[1.0, -1.0])
    with pytest.raises(TypeError, match="not a pyodejl objective"):
        MinibatchObjective([np.zeros(2)])
    with pytest.raises(ValueError, match="batch_size"):
        split_batches(np.arange(5), 0)
    with pytest.raises(ValueError, match="num_params|length|shape"):
        MinibatchObjective([f(2), f(2)]).grad(np.zeros(3))
    with pytest.raises(NotImplementedError, match="one at a time"):
        MinibatchObjective([f(2)]).value_function()


def test_checkpointed_replay_gives_the_same_derivatives(monkeypatch):
    """Large states replay with padding skipped and steps checkpointed; the numbers must not change."""
    import pyodejl.solving.integrate as integrate

    rng = np.random.default_rng(6)
    vf = ConcatTimeMLP((3, 4, 3))
    x = rng.normal(size=(5, 3))
    theta = vf.init(1)
    v = rng.normal(size=vf.num_params)
    target = rng.normal(size=(5, 3))

    def loss(max_steps):  # a different max_steps: a different model, so a separate compilation
        model = pj.NeuralODE(vf, solver="dopri5", rtol=1e-6, atol=1e-8, max_steps=max_steps)
        return pj.TrajectoryLoss(model, [0.0, 0.5, 1.0], x, np.stack([x, target, target], axis=1))

    plain = loss(4096)
    Hv = plain.hvp(theta, v)  # forward over reverse: exercises both directions of the replay
    assert plain.solve(theta).grid.num_steps < len(plain.solve(theta).grid.times) - 1  # padding present
    monkeypatch.setattr(integrate, "REMAT_MIN_STATE_SIZE", 1)
    remat = loss(4095)
    assert integrate.remat_replay(jnp.zeros((5, 3)))
    np.testing.assert_allclose(remat.hvp(theta, v), Hv, rtol=0, atol=1e-15 * np.abs(Hv).max())
