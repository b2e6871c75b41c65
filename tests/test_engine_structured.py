"""The structured Hessian equals forward-over-reverse AD of the same discrete loss to round-off.

Both compute the exact Hessian of one frozen-grid loss, so they may differ by
float64 round-off only: observed 1e-16 – 8e-16 (relative to max |H|) over
these cases; the tolerance 1e-14 leaves about 10x room.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl.derivatives import structured

TOL = 1e-14


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def trajectory_loss(sizes, activation, solver, batch, loss="mse", time_dependent=False, augment_dim=0):
    vf = pj.MLP(sizes, activation, time_dependent=time_dependent)
    fixed = solver in ("heun", "rk4", "euler")
    model = pj.NeuralODE(vf, solver=solver, rtol=1e-8, atol=1e-10, dt=0.1 if fixed else None, augment_dim=augment_dim)
    ts = np.linspace(0, 1.5, 6)
    rng = np.random.default_rng(0)
    d = sizes[0] - augment_dim
    y0 = rng.normal(size=(batch, d))
    targets = rng.normal(size=(batch, len(ts), d))
    return pj.TrajectoryLoss(model, ts=ts, y0=y0, targets=targets, loss=loss), vf.init(2)


@pytest.mark.parametrize(
    "sizes,activation,time_dependent,solver,batch,loss,augment_dim",
    [
        ([2, 6, 2], "tanh", False, "dopri5", 1, "mse", 0),  # one hidden layer
        ([2, 4, 5, 3, 2], "softplus", True, "bosh3", 3, "abs", 0),  # depth 3, time-dependent
        ([3, 4, 3, 3], "sigmoid", False, "heun", 2, "mse", 1),  # depth 2, non-FSAL fixed step, augmented
        ([2, 2], "tanh", False, "euler", 2, "mse", 0),  # no hidden layer (f = Wy + b), one stage
    ],
)
def test_structured_equals_direct_direct(sizes, activation, time_dependent, solver, batch, loss, augment_dim):
    obj, theta = trajectory_loss(sizes, activation, solver, batch, loss, time_dependent, augment_dim)
    H_ad = obj.hessian(theta, method="direct-direct")
    H_st = obj.hessian(theta, method="structured")
    assert rel(H_st, H_ad) <= TOL
    assert np.array_equal(obj.hessian(theta), H_st)  # "auto" picks the structured path here


def readout_cost(extra, Y, labels):
    """Cross-entropy of a linear readout of the final data state, plus a term coupling θ_e and Y."""
    W, b = extra[:6].reshape(2, 3), extra[6:]
    logits = Y[:, -1, :3] @ W.T + b
    ce = -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))
    return ce + 0.1 * jnp.sum(extra**2) * jnp.mean(Y[:, :, 0] ** 2)


def test_extra_parameters_augmentation_and_chunking(monkeypatch):
    """Depth 2 with readout parameters (∂²ℓ/∂θ_e², ∂²ℓ/∂θ_e∂Y), augmentation, time
    dependence and a batch; then blocks of rows and chunks of steps (forced small)
    give the same matrix."""
    vf = pj.MLP([4, 5, 4, 4], "tanh", time_dependent=True)
    model = pj.NeuralODE(vf, solver="dopri5", rtol=1e-8, atol=1e-10, augment_dim=1)
    rng = np.random.default_rng(1)
    y0 = rng.normal(size=(3, 3))
    labels = np.eye(2)[[0, 1, 1]]
    obj = pj.ObservationLoss(model, np.linspace(0, 1, 4), y0, readout_cost, data=labels, num_extra_params=8)
    theta = np.concatenate([vf.init(3), rng.normal(size=8)])
    H_ad = obj.hessian(theta, method="direct-direct")
    H_st, info = obj.hessian(theta, method="structured", return_info=True)
    assert info["block"] == obj.num_params
    assert rel(H_st, H_ad) <= TOL
    assert np.abs(H_ad[vf.num_params :, : vf.num_params]).max() > 1e-3  # the θ_e–θ_vf block is exercised

    # 12 products of 7 rows (p = 82); chunks of 2 steps (the last padded), each chunk's rows assembled on their own
    monkeypatch.setattr(structured, "_steps_per_chunk", lambda *args: 2)
    monkeypatch.setattr(structured, "BUDGET_BYTES", 2**14)
    H_chunks, info = obj.hessian(theta, method="structured", chunk_size=7, return_info=True)
    assert info["block"] == 7 and obj.stats(theta).num_steps == 5
    assert rel(H_chunks, H_st) <= TOL


def test_block_rows():
    assert structured.block_rows(100) == 100
    assert structured.block_rows(100, 30) == 30
    assert structured.block_rows(100, 500) == 100
    rows = structured.block_rows(20000)  # a 20000² product would exceed the budget
    assert rows < 20000 and 8 * rows * 20000 <= structured.BUDGET_BYTES


def test_unsupported_objectives_raise_and_auto_falls_back():
    ts = np.linspace(0, 1, 3)
    A = np.array([[0.0, 1.0], [-1.0, 0.0]])
    field = pj.VectorField(lambda t, y, th: th[0] * (A @ y) + th[1:], num_params=3, state_dim=2)
    mlp = pj.MLP([2, 3, 2], "tanh")
    cases = [
        (pj.NeuralODE(mlp, solver="kvaerno5"), {}, "implicit", mlp.init(0)),
        (pj.NeuralODE(mlp), {"regularizers": [pj.regularizers.WeightDecay(0.1)]}, "regularizer", mlp.init(0)),
        (pj.NeuralODE(field), {}, "pyodejl.MLP", np.array([0.5, 0.1, -0.2])),  # last: cheapest fallback below
    ]
    for model, kwargs, reason, theta in cases:
        obj = pj.TrajectoryLoss(model, ts=ts, y0=[1.0, 0.0], targets=np.zeros((3, 2)), **kwargs)
        assert not structured.supports(obj)
        with pytest.raises(NotImplementedError, match=reason):
            obj.hessian(theta, method="structured")
    _, info = obj.hessian(theta, return_info=True)
    assert info["method"] == "direct-direct"  # "auto" falls back
