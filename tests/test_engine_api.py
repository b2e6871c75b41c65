"""Models, solvers, parameter layout, statistics and bad input."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

import pyodejl as pj

TS = np.linspace(0, 1, 5)
TARGETS = np.stack([np.cos(TS), -np.sin(TS)], 1)


def loss(solver="dopri5", **kw):
    model = pj.NeuralODE(pj.MLP([2, 2]), solver=solver, **kw)
    return pj.TrajectoryLoss(model, ts=TS, y0=[1.0, 0.0], targets=TARGETS)


def test_layout_matches_pytorch_sequential_flattening():
    mlp = pj.MLP([3, 4, 2], "tanh")
    theta = np.arange(mlp.num_params, dtype=float)
    (W1, b1), (W2, b2) = mlp.unflatten(theta)
    assert W1.shape == (4, 3) and W1[1, 0] == 3 and b1[0] == 12
    assert W2.shape == (2, 4) and W2[0, 1] == 17 and b2[1] == mlp.num_params - 1
    x = np.array([0.1, -0.2, 0.3])
    expected = np.asarray(W2) @ np.tanh(np.asarray(W1) @ x + b1) + b2
    assert np.allclose(np.asarray(mlp.apply(jnp.asarray(theta) / 50, x)), (np.asarray(W2) / 50) @ np.tanh((np.asarray(W1) / 50) @ x + b1 / 50) + b2 / 50)
    assert mlp.num_params == 4 * 3 + 4 + 2 * 4 + 2
    assert expected.shape == (2,)


def test_time_dependent_layout_and_init_reproducible():
    mlp = pj.MLP([2, 3, 2], "swish", time_dependent=True)
    assert mlp.layer_shapes()[0] == ((3, 3), (3,))
    assert mlp.num_params == 3 * 3 + 3 + 2 * 3 + 2
    a, b, c = mlp.init(7), mlp.init(7), mlp.init(8)
    assert a.dtype == np.float64 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.abs(a[:9]) <= 1 / np.sqrt(3))


@pytest.mark.parametrize("activation", sorted(pj.models.ACTIVATIONS))
def test_activations_evaluate(activation):
    mlp = pj.MLP([2, 3, 2], activation)
    out = np.asarray(mlp.apply(jnp.asarray(mlp.init(0)), jnp.ones((4, 2))))
    assert out.shape == (4, 2) and np.all(np.isfinite(out))


@pytest.mark.parametrize(
    "solver,dt,tol",
    [("dopri5", None, 1e-8), ("tsit5", None, 1e-8), ("dopri8", None, 1e-8), ("bosh3", None, 1e-7),
     ("kvaerno5", None, 1e-7), ("rk4", 0.01, 1e-8), ("heun", 0.01, 1e-4), ("euler", 0.001, 2e-3)],
)
def test_every_solver_solves_a_linear_ode(solver, dt, tol):
    W, b = np.array([[-0.5, 1.0], [-1.0, -0.2]]), np.array([0.1, 0.0])
    theta = np.concatenate([W.ravel(), b])
    model = pj.NeuralODE(pj.MLP([2, 2]), solver=solver, rtol=1e-10, atol=1e-12, dt=dt)
    sol = model.solve(theta, TS, [1.0, 0.0])
    M = np.zeros((3, 3))
    M[:2, :2], M[:2, 2] = W, b
    exact = np.stack([(expm(t * M) @ np.array([1.0, 0.0, 1.0]))[:2] for t in TS])
    assert np.abs(sol.ys - exact).max() < tol
    assert sol.stats.num_accepted_steps >= len(TS) - 1 and sol.stats.nfe > 0


def test_stats_and_rejections_reported():
    model = pj.NeuralODE(pj.MLP([2, 8, 2], "tanh"), rtol=1e-9, atol=1e-11)
    theta = model.init(1) * 4
    sol = model.solve(theta, np.linspace(0, 3, 4), [1.0, 0.0])
    s = sol.stats
    assert s.num_rejected_steps > 0 and s.num_steps == s.num_accepted_steps + s.num_rejected_steps
    # nfe against counted calls: tests/test_engine_adaptive.py
    steps = sol.steps
    assert steps.dt.shape == (s.num_accepted_steps,) and np.all(steps.dt > 0)
    # local error estimates are below the requested tolerance scale
    assert np.abs(steps.error).max() < 1e-6


def test_augmented_state_starts_at_zero_and_loss_uses_data_dims():
    model = pj.NeuralODE(pj.MLP([3, 4, 3], "tanh"), augment_dim=1)
    theta = model.init(0)
    sol = model.solve(theta, TS, [1.0, 0.0])
    assert sol.ys.shape == (len(TS), 3) and sol.ys[0, 2] == 0.0
    obj = pj.TrajectoryLoss(model, ts=TS, y0=[1.0, 0.0], targets=TARGETS)
    assert obj.value(theta) == pytest.approx(np.mean((sol.ys[:, :2] - TARGETS) ** 2), rel=1e-12)


def test_method_objects_are_values():
    obj = loss(rtol=1e-9, atol=1e-11)
    theta = np.array([-0.3, 0.9, -1.1, -0.2, 0.15, -0.05])
    H_fd, info = obj.hessian(theta, method=pj.FiniteDifference(h=1e-3), return_info=True)
    assert info["h"] == 1e-3
    H_auto, info = obj.hessian(theta, method="fd", return_info=True)
    assert info["h"] in info["candidates"]
    H = obj.hessian(theta, method=pj.DirectDirect())
    assert np.abs(H_auto - H).max() < 1e-4 * np.abs(H).max()
    assert np.abs(H_fd - H).max() < 1e-3 * np.abs(H).max()


def _quartic(theta, c):
    # L(θ) = Σ c_i θ_i⁴ + (Σ θ)³: closed-form Hessian 12 diag(c θ²) + 6 (Σ θ) 11ᵀ
    return jnp.sum(c * theta**4) + jnp.sum(theta) ** 3


def test_finite_differences_choose_their_step_once_per_hessian():
    p = 5
    c = np.linspace(0.5, 1.5, p)
    theta = np.linspace(-0.8, 0.6, p)
    H_ref = 12 * np.diag(c * theta**2) + 6 * theta.sum() * np.ones((p, p))
    obj = pj.FunctionObjective(_quartic, p, (jnp.asarray(c),))
    calls = {"values": 0, "grad": 0}
    values, grad = obj.values, obj.grad
    obj.values = lambda *a, **k: calls.__setitem__("values", calls["values"] + 1) or values(*a, **k)
    obj.grad = lambda *a, **k: calls.__setitem__("grad", calls["grad"] + 1) or grad(*a, **k)
    ladder = len(pj.FiniteDifference().candidates)
    # fd: a block of k products is one ladder (one batch of loss values per candidate step) plus one
    # batch per column; before, the ladder ran again for every column.
    HV = obj.hvp(theta, np.eye(p), method="fd")
    assert calls["values"] == ladder + p
    # Quartic: the four-point rule's truncation is O(h²)·|L⁽⁴⁾| (observed ~1e-8 at the chosen h).
    assert np.abs(HV - H_ref).max() < 1e-6 * np.abs(H_ref).max()
    # An operator applied column by column (as Lanczos does) also searches once.
    for method, counter, per_column in (("fd", "values", 1), ("fd-grad", "grad", 2)):
        calls[counter] = 0
        op = obj.hessian_operator(theta, method=method)
        H_op = np.stack([op @ e for e in np.eye(p)], axis=1)
        search = ladder if method == "fd" else 2 * ladder * pj.FiniteDifferenceGradient().sample
        assert calls[counter] == search + per_column * p, method
        assert np.abs(H_op - H_ref).max() < 1e-6 * np.abs(H_ref).max(), method


_FLOAT32_SCRIPT = """
import json, warnings
warnings.simplefilter("error", UserWarning)  # e.g. JAX truncating an int64 it cannot make
import jax, numpy as np, pyodejl as pj
model = pj.NeuralODE(pj.MLP([2, 3, 2], "tanh"), rtol=1e-5, atol=1e-7)
ts = np.linspace(0, 1, 5)
loss = pj.TrajectoryLoss(model, ts, [1.0, 0.0], np.stack([np.cos(ts), -np.sin(ts)], 1))
th = model.init(0)
ys, g = model.solve(th, ts, [1.0, 0.0]).ys, loss.grad(th)
print(json.dumps({"x64": jax.config.jax_enable_x64, "dtypes": [str(ys.dtype), str(np.asarray(g).dtype)],
                  "value": loss.value(th), "grad": np.asarray(g, dtype=float).tolist()}))
"""


def test_float32_opt_out_solves_and_differentiates_in_single_precision():
    """PYODEJL_NO_X64=1 leaves JAX in 32-bit mode: a fresh process solves and differentiates in
    float32, and agrees with this (float64) process to the solves' tolerance: rtol 1e-5 on
    possibly different step grids, plus float32 round-off ~1e-7 (observed 4e-8; bound 1e-4)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYODEJL_NO_X64": "1", "JAX_ENABLE_X64": "0"}
    out = subprocess.run([sys.executable, "-c", _FLOAT32_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["x64"] is False and res["dtypes"] == ["float32", "float32"]
    model = pj.NeuralODE(pj.MLP([2, 3, 2], "tanh"), rtol=1e-5, atol=1e-7)
    ts = np.linspace(0, 1, 5)
    loss = pj.TrajectoryLoss(model, ts, [1.0, 0.0], np.stack([np.cos(ts), -np.sin(ts)], 1))
    th = model.init(0)
    assert res["value"] == pytest.approx(loss.value(th), rel=1e-4)
    g = loss.grad(th)
    assert np.abs(np.array(res["grad"]) - g).max() < 1e-4 * np.abs(g).max()


# ---- bad input ------------------------------------------------------------------


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown solver 'rk45'.*dopri5"):
        pj.NeuralODE(pj.MLP([2, 2]), solver="rk45")
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        pj.MLP([2, 2], "tanhh")
    obj = loss()
    theta = np.zeros(6)
    with pytest.raises(ValueError, match="unknown Hessian method 'exact'"):
        obj.hessian(theta, method="exact")
    with pytest.raises(ValueError, match="unknown gradient method 'adjoint'"):
        obj.grad(theta, method="adjoint")
    with pytest.raises(ValueError, match="unknown loss 'l2'"):
        pj.TrajectoryLoss(obj.model, ts=TS, y0=[1.0, 0.0], targets=TARGETS, loss="l2")


def test_bad_tolerances_and_solver_settings():
    for kw in ({"rtol": 0.0}, {"atol": -1e-9}, {"rtol": float("nan")}):
        with pytest.raises(ValueError, match="must be positive"):
            pj.NeuralODE(pj.MLP([2, 2]), **kw)
    with pytest.raises(ValueError, match="needs dt"):
        pj.NeuralODE(pj.MLP([2, 2]), solver="rk4")
    with pytest.raises(ValueError, match="output shape must match"):
        pj.NeuralODE(pj.MLP([2, 3]))
    with pytest.raises(ValueError, match="max_steps"):
        pj.NeuralODE(pj.MLP([2, 2]), max_steps=0)


def test_bad_shapes_and_non_finite_data():
    model = pj.NeuralODE(pj.MLP([2, 2]))
    with pytest.raises(ValueError, match=r"targets must have shape \(5, 2\)"):
        pj.TrajectoryLoss(model, ts=TS, y0=[1.0, 0.0], targets=TARGETS[:4])
    with pytest.raises(ValueError, match=r"y0 must have shape \(2,\) or \(B, 2\)"):
        pj.TrajectoryLoss(model, ts=TS, y0=[1.0, 0.0, 0.0], targets=TARGETS)
    with pytest.raises(ValueError, match="strictly increasing"):
        pj.TrajectoryLoss(model, ts=TS[::-1], y0=[1.0, 0.0], targets=TARGETS)
    with pytest.raises(ValueError, match="targets contains NaN or inf"):
        pj.TrajectoryLoss(model, ts=TS, y0=[1.0, 0.0], targets=np.where(TARGETS > 0.9, np.nan, TARGETS))
    with pytest.raises(ValueError, match="y0 contains NaN or inf"):
        pj.TrajectoryLoss(model, ts=TS, y0=[np.inf, 0.0], targets=TARGETS)
    obj = pj.TrajectoryLoss(model, ts=TS, y0=[1.0, 0.0], targets=TARGETS)
    with pytest.raises(ValueError, match=r"theta must have shape \(6,\)"):
        obj.value(np.zeros(5))
    with pytest.raises(ValueError, match="theta contains NaN or inf"):
        obj.grad(np.array([0, 0, np.nan, 0, 0, 0.0]))
    with pytest.raises(ValueError, match=r"v must have shape \(6,\)"):
        obj.hvp(np.zeros(6), np.zeros(4))


def test_max_steps_raises_solve_error():
    obj = loss(max_steps=3)
    with pytest.raises(pj.SolveError, match="max_steps=3"):
        obj.value(np.array([-0.3, 0.9, -1.1, -0.2, 0.15, -0.05]))
    # dy/dt = 30 y grows by e^60 over [0, 2]; resolving that to rtol 1e-7 takes dopri5
    # 356 steps, more than the 200 allowed (it stays finite: the step limit is the cause)
    model = pj.NeuralODE(pj.MLP([2, 2]), max_steps=200)
    blow = pj.TrajectoryLoss(model, ts=np.linspace(0, 2, 3), y0=[1.0, 1.0], targets=np.zeros((3, 2)))
    with pytest.raises(pj.SolveError, match="max_steps=200"):
        blow.value(np.array([30.0, 0, 0, 30.0, 0, 0]))
    with pytest.raises(pj.SolveError):
        blow.hessian(np.array([30.0, 0, 0, 30.0, 0, 0]), method="adjoint-adjoint")


def test_non_finite_state_raises_solve_error():
    # fixed-step Euler on dy/dt = 1e4 y with dt = 0.01 multiplies y by 101 per step:
    # past float64's range (inf, then NaN from 0 * inf) after about 154 of its 200 steps
    model = pj.NeuralODE(pj.MLP([2, 2]), solver="euler", dt=0.01)
    ts = [0.0, 1.0, 2.0]
    obj = pj.TrajectoryLoss(model, ts=ts, y0=[1.0, 1.0], targets=np.zeros((3, 2)))
    theta = np.array([1e4, 0, 0, 1e4, 0, 0])
    message = "the euler solve diverged: the state became non-finite"
    with pytest.raises(pj.SolveError, match=message):
        model.solve(theta, ts, [1.0, 1.0])
    with pytest.raises(pj.SolveError, match=message):
        obj.value(theta)
    with pytest.raises(pj.SolveError, match=message):
        obj.grad(theta)
    # the same solve with a 100x smaller field stays finite (1.6e60 at t = 2)
    assert np.all(np.isfinite(model.solve(theta / 100, ts, [1.0, 1.0]).ys))


def test_integer_and_number_arguments_share_one_clear_check():
    mlp = pj.MLP([2, 2])
    with pytest.raises(TypeError, match=r"max_steps must be a positive integer, got None \(NoneType\)"):
        pj.NeuralODE(mlp, max_steps=None)
    with pytest.raises(ValueError, match="max_steps must be a positive integer, got 2.5"):
        pj.NeuralODE(mlp, max_steps=2.5)
    with pytest.raises(ValueError, match="augment_dim must be a non-negative integer, got True"):
        pj.NeuralODE(mlp, augment_dim=True)
    with pytest.raises(TypeError, match="rtol must be a positive number, got '1e-6'"):
        pj.NeuralODE(mlp, rtol="1e-6")
    with pytest.raises(ValueError, match="atol must be positive and finite, got nan"):
        pj.NeuralODE(mlp, atol=float("nan"))
    assert pj.NeuralODE(mlp, max_steps=1e4).max_steps == 10000  # an integral float is an integer
    with pytest.raises(TypeError, match="max_steps must be a positive integer"):
        pj.DEQ(pj.MLPCell(2, 2), max_steps="50")
    with pytest.raises(ValueError, match="num_probes must be a positive integer, got 0"):
        pj.JacobianRegularizer(num_probes=0)
    with pytest.raises(ValueError, match="a regulariser weight must be non-negative and finite, got -1"):
        pj.regularizers.KineticEnergy(-1)
