"""Linear Neural ODE dy/dt = W y + b: the loss in closed form via the matrix exponential.

pyodejl.MLP([2, 2]) is exactly f(y) = W y + b (one layer, no activation), so
y(t) = [expm(t [[W, b], [0, 0]]) [y0; 1]]_{:2}. The reference Hessian is the
Hessian of that closed-form loss (AD through expm, accurate to round-off).
Every method must approach it as the solver tolerance tightens.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.linalg import expm

import pyodejl as pj

TS = np.linspace(0.0, 1.5, 6)
Y0 = np.array([[1.0, 0.0], [0.3, -0.8]])
TARGETS = np.stack([np.stack([np.cos(TS) + 0.1 * k, -np.sin(TS)], axis=1) for k in range(2)])
THETA = np.array([-0.3, 0.9, -1.1, -0.2, 0.15, -0.05])  # W row-major, then b


def closed_form_loss(theta):
    W, b = theta[:4].reshape(2, 2), theta[4:]
    M = jnp.zeros((3, 3)).at[:2, :2].set(W).at[:2, 2].set(b)
    Ys = jnp.stack([expm(t * M) for t in TS])  # (T, 3, 3)
    y0a = jnp.concatenate([jnp.asarray(Y0), jnp.ones((2, 1))], axis=1)  # (B, 3)
    Y = jnp.einsum("tij,bj->bti", Ys, y0a)[..., :2]
    return jnp.mean((Y - TARGETS) ** 2)


H_EXACT = np.asarray(jax.hessian(closed_form_loss)(jnp.asarray(THETA)))
G_EXACT = np.asarray(jax.grad(closed_form_loss)(jnp.asarray(THETA)))


def objective(rtol):
    model = pj.NeuralODE(pj.MLP([2, 2]), solver="dopri5", rtol=rtol, atol=rtol * 1e-2)
    return pj.TrajectoryLoss(model, ts=TS, y0=Y0, targets=TARGETS, loss="mse")


# Convergence with tolerance is shown for one discrete and one continuous
# method of each order; every method is checked at the tight tolerance.
LOOSE_HESSIAN = ("direct-direct", "adjoint-adjoint")
LOOSE_GRADIENT = ("discrete", "backsolve")


@pytest.fixture(scope="module")
def results():
    tight, loose = objective(1e-10), objective(1e-6)
    return {
        1e-10: {
            "value": tight.value(THETA),
            "hessian": {m: tight.hessian(THETA, method=m) for m in pj.HESSIAN_METHODS},
            "grad": {m: tight.grad(THETA, method=m) for m in pj.GRADIENT_METHODS},
        },
        1e-6: {
            "value": loose.value(THETA),
            "hessian": {m: loose.hessian(THETA, method=m) for m in LOOSE_HESSIAN},
            "grad": {m: loose.grad(THETA, method=m) for m in LOOSE_GRADIENT},
        },
    }


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_loss_value_matches_closed_form(results):
    exact = float(closed_form_loss(jnp.asarray(THETA)))
    assert abs(results[1e-10]["value"] - exact) < 1e-9 * max(1, exact)
    assert abs(results[1e-6]["value"] - exact) > abs(results[1e-10]["value"] - exact)


@pytest.mark.parametrize("method", list(pj.GRADIENT_METHODS))
def test_gradient_matches_closed_form(results, method):
    # global error of a 5th-order method at rtol 1e-10: ~1e-9 relative
    assert rel(results[1e-10]["grad"][method], G_EXACT) < 1e-8


@pytest.mark.parametrize("method", list(pj.HESSIAN_METHODS))
def test_hessian_matches_closed_form(results, method):
    # fd differences loss values whose adaptive grids change with θ, so its
    # noise floor is ~rtol/h² rather than round-off: judged more loosely.
    bound = 1e-4 if method == "fd" else 1e-7
    assert rel(results[1e-10]["hessian"][method], H_EXACT) < bound


@pytest.mark.parametrize("method", LOOSE_HESSIAN)
def test_hessian_error_shrinks_with_tolerance(results, method):
    loose, tight = rel(results[1e-6]["hessian"][method], H_EXACT), rel(results[1e-10]["hessian"][method], H_EXACT)
    assert loose > 10 * tight, (loose, tight)


@pytest.mark.parametrize("method", LOOSE_GRADIENT)
def test_gradient_error_shrinks_with_tolerance(results, method):
    loose, tight = rel(results[1e-6]["grad"][method], G_EXACT), rel(results[1e-10]["grad"][method], G_EXACT)
    assert loose > 10 * tight, (loose, tight)
