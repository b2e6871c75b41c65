"""Seed 000 §4.2.1 / Table 2: 6-parameter feedforward nets with closed-form Hessians.

The net is y = σ(W x + b), W ∈ R^{2×2}, b ∈ R^2 (p = 6), on a fixed data set;
loss = mean over samples and outputs of r² (MSE) or |r| (absolute error),
r = y − t. With z = W x + b the Hessian is Σ_{n,k} c_{nk} g_{nk} g_{nk}ᵀ,
g_{nk} = ∂z_{nk}/∂θ, c = (σ'² + r σ'')·2/M (MSE) or sign(r) σ''/M (abs).
"""

import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj

X = np.array([[0.3, -1.2], [1.1, 0.4], [-0.7, 0.9], [0.2, 0.25], [-1.3, -0.6]])
T = np.array([[0.1, 0.8], [0.9, 0.2], [0.4, 0.6], [0.7, 0.3], [0.2, 0.5]])


def sigma(name):
    if name == "tanh":
        s = np.tanh
        return s, lambda z: 1 - s(z) ** 2, lambda z: -2 * s(z) * (1 - s(z) ** 2)
    s = lambda z: 1 / (1 + np.exp(-z))
    return s, lambda z: s(z) * (1 - s(z)), lambda z: s(z) * (1 - s(z)) * (1 - 2 * s(z))


def closed_form_hessian(theta, act, loss):
    W, b = theta[:4].reshape(2, 2), theta[4:]
    s, ds, d2s = sigma(act)
    Z = X @ W.T + b
    R = s(Z) - T
    M = R.size
    if loss == "mse":
        C = 2 * (ds(Z) ** 2 + R * d2s(Z)) / M
    else:
        C = np.sign(R) * d2s(Z) / M
    H = np.zeros((6, 6))
    for n in range(len(X)):
        for k in range(2):
            g = np.zeros(6)
            g[2 * k : 2 * k + 2] = X[n]
            g[4 + k] = 1.0
            H += C[n, k] * np.outer(g, g)
    return H


def feedforward_loss_mse_tanh(theta, x, t):
    return _ff(theta, x, t, jnp.tanh, "mse")


def feedforward_loss_abs_tanh(theta, x, t):
    return _ff(theta, x, t, jnp.tanh, "abs")


def feedforward_loss_mse_sigmoid(theta, x, t):
    return _ff(theta, x, t, lambda z: 1 / (1 + jnp.exp(-z)), "mse")


def feedforward_loss_abs_sigmoid(theta, x, t):
    return _ff(theta, x, t, lambda z: 1 / (1 + jnp.exp(-z)), "abs")


def _ff(theta, x, t, act, loss):
    W, b = theta[:4].reshape(2, 2), theta[4:]
    r = act(x @ W.T + b) - t
    return jnp.mean(r**2) if loss == "mse" else jnp.mean(jnp.abs(r))


LOSSES = {
    ("abs", "tanh"): feedforward_loss_abs_tanh,
    ("abs", "sigmoid"): feedforward_loss_abs_sigmoid,
    ("mse", "tanh"): feedforward_loss_mse_tanh,
    ("mse", "sigmoid"): feedforward_loss_mse_sigmoid,
}
# Round-off bound for AD in float64: a few hundred ulps of the largest entry.
AD_TOL = 1e-13
# Finite differences: truncation O(h²) plus round-off O(eps/h²) at the chosen h.
FD_TOL = {"fd": 1e-6, "fd-grad": 1e-8}
SEED_TABLE2 = {("abs", "tanh"): 1.92e-2, ("abs", "sigmoid"): 4.03e-3, ("mse", "tanh"): 2.34e-2, ("mse", "sigmoid"): 5.62e-3}


def fractional_sum_error(H, ref):
    """Seed 000's Table 2 metric: fractional difference of the sums of all elements."""
    return abs(H.sum() - ref.sum()) / abs(ref.sum())


def test_table2_closed_form_hessians():
    theta = np.random.default_rng(2).normal(size=6)
    rows = []
    for (loss, act), fn in LOSSES.items():
        obj = pj.FunctionObjective(fn, 6, args=(X, T))
        ref = closed_form_hessian(theta, act, loss)
        scale = np.abs(ref).max()
        errs = {}
        for method in ["direct-direct", "direct-adjoint", "elementwise", "fd", "fd-grad"]:
            H = obj.hessian(theta, method=method)
            errs[method] = np.abs(H - ref).max() / scale
            tol = FD_TOL.get(method, AD_TOL)
            assert errs[method] < tol, (loss, act, method, errs[method])
            assert fractional_sum_error(H, ref) < max(tol * 10, AD_TOL * 10)
        rows.append((loss, act, errs, SEED_TABLE2[(loss, act)]))
    print("\nTable 2 (max |H - H_exact| / max |H_exact|; seed's FD error for comparison)")
    print(f"{'loss':5} {'act':8} " + " ".join(f"{m:>14}" for m in rows[0][2]) + f" {'seed FD':>10}")
    for loss, act, errs, seed_fd in rows:
        print(f"{loss:5} {act:8} " + " ".join(f"{e:14.2e}" for e in errs.values()) + f" {seed_fd:10.2e}")
    # the AD methods beat the seed's AA/EA (3e-8 to 5e-7) by many orders of magnitude
    assert all(r[2]["direct-direct"] < 3e-8 * 1e-4 for r in rows)


def test_closed_form_reference_is_not_trivial():
    """The closed form itself must match a finite difference of its own gradient-free loss."""
    theta = np.random.default_rng(3).normal(size=6)
    ref = closed_form_hessian(theta, "tanh", "mse")
    f = lambda th: float(feedforward_loss_mse_tanh(jnp.asarray(th), X, T))
    h = 1e-4
    i, j = 1, 4
    e = np.eye(6)
    fd = (f(theta + h * e[i] + h * e[j]) - f(theta + h * e[i] - h * e[j]) - f(theta - h * e[i] + h * e[j]) + f(theta - h * e[i] - h * e[j])) / (4 * h * h)
    assert fd == pytest.approx(ref[i, j], rel=1e-5, abs=1e-8)
    assert np.abs(ref).max() > 1e-3
