"""The open engine: any vector field, loss terms, per-step records, methods as values.

References: the matrix exponential for linear fields; quadrature of a dense
SciPy solution (solve_ivp, DOP853 at rtol 1e-12) for running costs; the
pairwise agreement of every gradient and Hessian method, which differentiate
the same ODE four and seven independent ways. Bounds: methods on the same
discretisation agree to float64 round-off (observed ≤ 1e-13); discrete vs
continuous methods differ by the solvers' global error at rtol = 1e-9
(observed ≤ 3e-9, bound 3e-8); fd-grad by its truncation/noise floor (observed
≤ 2e-7, bound 2e-6); fd by its floor (observed ≤ 3e-5, bound 3e-4).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp
from scipy.linalg import expm

import pyodejl as pj
from pyodejl import regularizers as R

RTOL = 1e-9
ROUND_OFF = 1e-11
CONTINUOUS = 3e-8
FD = {"fd": 3e-4, "fd-grad": 2e-6}
SAME = {"direct-direct", "direct-adjoint", "elementwise"}
TS = np.linspace(0.0, 1.0, 5)
THREE_TERMS = [R.WeightDecay(1e-2), R.KineticEnergy(0.1), R.JacobianFrobenius(0.1, seed=0)]


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def assert_all_methods_agree(obj, theta):
    grads = {m: obj.grad(theta, method=m) for m in pj.GRADIENT_METHODS}
    for a in grads:
        for b in grads:
            bound = ROUND_OFF if a == b else CONTINUOUS
            assert rel(grads[a], grads[b]) < bound, (a, b, rel(grads[a], grads[b]))
    H = {m: obj.hessian(theta, method=m) for m in pj.HESSIAN_METHODS}
    for a in H:
        for b in H:
            bound = ROUND_OFF if (a in SAME and b in SAME) else max(FD.get(a, CONTINUOUS), FD.get(b, CONTINUOUS))
            assert rel(H[a], H[b]) < bound, (a, b, rel(H[a], H[b]))
    return grads, H


# ---- any vector field -------------------------------------------------------------


def cubic_field(t, y, theta):
    """A hand-written non-MLP field: y' = A y + c ⊙ sin(y)² + b sin(t)."""
    A = theta[:4].reshape(2, 2)
    return A @ y + theta[4:6] * jnp.sin(y) ** 2 + theta[6:8] * jnp.sin(t)


@pytest.mark.slow  # the Equinox field below runs the same suite through the same VectorField path by default
def test_plain_function_field_passes_the_agreement_suite():
    vf = pj.VectorField(cubic_field, num_params=8, init=lambda s: 0.3 * np.random.default_rng(s).normal(size=8))
    model = pj.NeuralODE(vf, rtol=RTOL, atol=RTOL * 1e-2)
    targets = np.stack([np.cos(TS), np.sin(TS)], 1)
    obj = pj.TrajectoryLoss(model, ts=TS, y0=[1.0, 0.2], targets=targets)
    assert_all_methods_agree(obj, vf.init(1))


class _EqxField(eqx.Module):
    lin: eqx.nn.Linear
    out: eqx.nn.Linear

    def __call__(self, t, y):
        return self.out(jnp.tanh(self.lin(jnp.concatenate([y, t[None] if jnp.ndim(t) == 0 else t]))))


def _make_eqx(key):
    k1, k2 = jax.random.split(key)
    return _EqxField(eqx.nn.Linear(3, 4, key=k1), eqx.nn.Linear(4, 2, key=k2))


def test_equinox_module_field_with_all_three_terms_passes_the_agreement_suite():
    """One objective for two claims (each method compiles once, ~40 s saved): an Equinox field
    keeps its θ order and passes the agreement suite, and the three loss terms reach every method."""
    module = _make_eqx(jax.random.key(0))
    vf = pj.VectorField.from_equinox(module, make=_make_eqx)
    # θ order: lin.weight (4x3) row-major, lin.bias, out.weight (2x4), out.bias
    theta0 = vf.init(None)
    assert vf.num_params == 12 + 4 + 8 + 2
    assert np.array_equal(theta0[:12], np.asarray(module.lin.weight).ravel())
    assert np.array_equal(theta0[-2:], np.asarray(module.out.bias))
    assert np.array_equal(vf.init(3), vf.init(3)) and not np.array_equal(vf.init(3), vf.init(4))
    y, t = jnp.array([0.3, -0.2]), jnp.asarray(0.4)
    assert np.allclose(vf(t, y, jnp.asarray(theta0)), module(t, y), rtol=0, atol=1e-15)
    model = pj.NeuralODE(vf, solver="tsit5", rtol=RTOL, atol=RTOL * 1e-2)
    y0 = np.array([[1.0, 0.0], [0.2, 0.5]])
    targets = np.stack([np.stack([np.cos(TS + k), np.sin(TS)], 1) for k in range(2)])
    obj = pj.TrajectoryLoss(model, ts=TS, y0=y0, targets=targets, regularizers=THREE_TERMS)
    grads, _ = assert_all_methods_agree(obj, theta0)
    # the terms contribute: every method's gradient differs from the plain loss's
    plain = pj.TrajectoryLoss(model, ts=TS, y0=y0, targets=targets).grad(theta0)
    assert min(rel(g, plain) for g in grads.values()) > 1e-3


def linear_field(t, y, theta):
    return theta[:4].reshape(2, 2) @ y + theta[4:]


def test_linear_field_matches_matrix_exponential():
    vf = pj.VectorField(linear_field, num_params=6)
    theta = np.array([-0.3, 0.9, -1.1, -0.2, 0.15, -0.05])
    model = pj.NeuralODE(vf, rtol=1e-11, atol=1e-13)
    ts = np.linspace(0, 2, 6)
    sol = model.solve(theta, ts, [1.0, 0.0])
    M = np.zeros((3, 3))
    M[:2, :2], M[:2, 2] = theta[:4].reshape(2, 2), theta[4:]
    exact = np.stack([(expm(t * M) @ np.array([1.0, 0.0, 1.0]))[:2] for t in ts])
    assert np.abs(sol.ys - exact).max() < 1e-10  # observed 2e-12 at rtol 1e-11

    def closed_loss(th):
        M = np.zeros((3, 3))
        M[:2, :2], M[:2, 2] = th[:4].reshape(2, 2), th[4:]
        Y = np.stack([(expm(t * M) @ np.array([1.0, 0.0, 1.0]))[:2] for t in ts])
        return np.mean((Y - 0.5) ** 2)

    obj = pj.TrajectoryLoss(model, ts=ts, y0=[1.0, 0.0], targets=np.full((6, 2), 0.5))
    assert obj.value(theta) == pytest.approx(closed_loss(theta), rel=1e-10)
    h = 1e-6
    g_fd = np.array([(closed_loss(theta + h * e) - closed_loss(theta - h * e)) / (2 * h) for e in np.eye(6)])
    assert rel(obj.grad(theta), g_fd) < 1e-8  # central differences: O(h²) + 1e-16/h ≈ 1e-10


def test_vector_field_bad_input():
    with pytest.raises(TypeError, match="num_params"):
        pj.NeuralODE(lambda t, y, th: y)
    with pytest.raises(ValueError, match="output shape must match"):
        model = pj.NeuralODE(pj.VectorField(lambda t, y, th: y[:1], num_params=0))
        model.solve(np.zeros(0), TS, [1.0, 2.0])
    with pytest.raises(NotImplementedError, match="init"):
        pj.VectorField(linear_field, num_params=6).init(0)
    with pytest.raises(TypeError, match="equinox.Module"):
        pj.VectorField.from_equinox(lambda t, y: y)


# ---- loss terms -------------------------------------------------------------------

A_LIN = np.array([[-0.4, 1.0], [-1.2, -0.1]])


def _linear_objective(terms, solver="dopri5"):
    vf = pj.VectorField(lambda t, y, th: th.reshape(2, 2) @ y, num_params=4)
    model = pj.NeuralODE(vf, solver=solver, rtol=1e-10, atol=1e-12)
    y0 = np.array([[1.0, 0.0], [0.3, -0.7]])
    targets = np.zeros((2, len(TS), 2))
    return pj.TrajectoryLoss(model, ts=TS, y0=y0, targets=targets, regularizers=terms), y0


def test_terms_against_closed_forms_on_a_linear_ode():
    terms = [R.WeightDecay(0.5), R.KineticEnergy(0.25), R.JacobianFrobenius(2.0, seed=7)]
    obj, y0 = _linear_objective(terms)
    theta = A_LIN.ravel()
    parts = obj.terms(theta)
    assert parts["weight_decay"] == pytest.approx(np.sum(theta**2), rel=1e-15)
    # ∫₀ᵀ ‖A e^{tA} y0‖² dt by quadrature of the closed-form solution
    ke = np.mean([quad(lambda t, y=y: np.sum((A_LIN @ expm(t * A_LIN) @ y) ** 2), 0, 1, epsabs=1e-13)[0] for y in y0])
    assert parts["kinetic_energy"] == pytest.approx(ke, rel=1e-8)  # observed 1e-10 at rtol 1e-10
    # εᵀ∂f/∂y = εᵀA is constant: the integral is T‖εᵀA‖²
    eps = np.random.default_rng(7).standard_normal((2, 2))
    assert parts["jacobian_frobenius"] == pytest.approx(np.mean(np.sum((eps @ A_LIN) ** 2, 1)), rel=1e-10)
    Y = obj.predict(theta)
    assert parts["data"] == pytest.approx(np.mean(Y**2), rel=1e-14)
    total = (parts["data"] + 0.5 * parts["weight_decay"] + 0.25 * parts["kinetic_energy"]
             + 2 * parts["jacobian_frobenius"])
    assert obj.value(theta) == pytest.approx(total, rel=1e-9)
    # appended integrals do not steer the steps: same accepted grid as without terms
    plain, _ = _linear_objective(None)
    assert np.array_equal(plain.solve(theta).grid.times, obj.solve(theta).grid.times)


def _tanh_field(t, y, th):
    return th[4:6] * jnp.tanh(th[:4].reshape(2, 2) @ y)


def test_kinetic_and_jacobian_terms_against_quadrature_of_a_dense_solution():
    vf = pj.VectorField(_tanh_field, num_params=6)
    theta = np.array([0.5, -1.3, 1.1, 0.2, 0.9, -0.7])
    model = pj.NeuralODE(vf, rtol=1e-10, atol=1e-12)
    obj = pj.TrajectoryLoss(model, ts=TS, y0=[0.8, -0.4], targets=np.zeros((5, 2)),
                            regularizers=[R.KineticEnergy(1.0), R.JacobianFrobenius(1.0, seed=3)])
    W, c = theta[:4].reshape(2, 2), theta[4:]
    f = lambda t, y: c * np.tanh(W @ y)
    dense = solve_ivp(f, (0, 1), [0.8, -0.4], method="DOP853", rtol=1e-12, atol=1e-14, dense_output=True).sol
    eps = np.random.default_rng(3).standard_normal((1, 2))[0]
    jac = lambda y: (c * (1 - np.tanh(W @ y) ** 2))[:, None] * W
    ke = quad(lambda t: np.sum(f(t, dense(t)) ** 2), 0, 1, epsabs=1e-13)[0]
    jf = quad(lambda t: np.sum((eps @ jac(dense(t))) ** 2), 0, 1, epsabs=1e-13)[0]
    parts = obj.terms(theta)
    assert parts["kinetic_energy"] == pytest.approx(ke, rel=1e-8)
    assert parts["jacobian_frobenius"] == pytest.approx(jf, rel=1e-8)


def test_structured_refuses_terms_and_auto_falls_back_to_direct_direct():
    """Every method's agreement with the terms on: the Equinox test above."""
    model = pj.NeuralODE(pj.MLP([2, 5, 2], "tanh"), rtol=RTOL, atol=RTOL * 1e-2)
    y0 = np.array([[1.0, 0.0], [0.4, 0.6]])
    targets = np.stack([np.stack([np.cos(TS + k), -np.sin(TS + k)], 1) for k in range(2)])
    obj = pj.TrajectoryLoss(model, ts=TS, y0=y0, targets=targets, regularizers=THREE_TERMS)
    theta = model.init(2) * 1.5
    assert rel(obj.hessian(theta), obj.hessian(theta, method="direct-direct")) < ROUND_OFF
    with pytest.raises((NotImplementedError, ValueError), match="structured|regulari|term"):
        obj.hessian(theta, method="structured")


def test_terms_bad_input():
    with pytest.raises(ValueError, match="weight"):
        R.KineticEnergy(-1.0)
    with pytest.raises(ValueError, match="seed"):
        R.JacobianFrobenius(1.0, seed=-2)
    with pytest.raises(ValueError, match="named"):
        _linear_objective([R.KineticEnergy(1.0), R.KineticEnergy(2.0)])
    with pytest.raises(TypeError, match="not a loss term"):
        _linear_objective([object()])


# ---- per-step record ----------------------------------------------------------------


@pytest.mark.parametrize("solver", ["dopri5", "tsit5", "bosh3"])
def test_step_record_against_own_tableau_arithmetic(solver):
    import diffrax

    model = pj.NeuralODE(pj.MLP([2, 4, 2], "tanh"), solver=solver, rtol=1e-6, atol=1e-8)
    theta = model.init(0) * 2
    y0 = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]])
    sol = model.solve(theta, TS, y0)
    st = sol.steps
    N = sol.stats.num_accepted_steps
    tab = {"dopri5": diffrax.Dopri5, "tsit5": diffrax.Tsit5, "bosh3": diffrax.Bosh3}[solver].tableau
    s = len(tab.b_sol)
    assert st.k.shape == (N, s, 3, 2) and st.stage_states.shape == (N, s, 3, 2)
    f = lambda t, y: np.asarray(model.rhs(t, jnp.asarray(y), jnp.asarray(theta)))
    c = np.concatenate([[0.0], tab.c])
    for j in range(N):
        h = st.dt[j]
        ks = []
        for i in range(s):
            g = st.y[j] + h * sum(tab.a_lower[i - 1][m] * ks[m] for m in range(i)) if i else st.y[j]
            assert np.allclose(st.stage_states[j, i], g, rtol=0, atol=1e-13)
            ks.append(f(st.t[j] + c[i] * h, g))
            assert np.allclose(st.k[j, i], ks[-1], rtol=0, atol=1e-13)
        assert np.allclose(st.y1[j], st.y[j] + h * sum(b * k for b, k in zip(tab.b_sol, ks)), atol=1e-13)
        assert np.allclose(st.error[j], h * sum(e * k for e, k in zip(tab.b_error, ks)), atol=1e-15)
    assert np.allclose(st.t[1:], st.t[:-1] + st.dt[:-1], rtol=0, atol=1e-15)
    assert np.array_equal(st.y[1:], st.y1[:-1])
    # the controller accepted every recorded step: E_j < 1
    E = np.asarray(pj.solving.error_ratios(st, model.rtol, model.atol))
    assert np.all(E < 1) and E.max() > 0.05
    # a single trajectory drops the batch axis
    one = model.solve(theta, TS, y0[0]).steps
    assert one.y.shape[1:] == (2,) and one.k.shape[2:] == (2,)


def test_shampine_estimate_on_linear_decay():
    """y' = -λ y: k₇ − k₆ = −λ(g₇ − g₆) exactly, so the estimate is λ at every step."""
    lam = 37.0
    vf = pj.VectorField(lambda t, y, th: -th[0] * y, num_params=1)
    for solver in ("dopri5", "tsit5"):
        model = pj.NeuralODE(vf, solver=solver, rtol=1e-6, atol=1e-9)
        steps = model.solve(np.array([lam]), TS, [1.0]).steps
        S = np.asarray(pj.solving.shampine_stiffness(steps, pj.SOLVERS[solver].unit_stages))
        assert np.allclose(S, lam, rtol=1e-9)


# ---- methods as values ------------------------------------------------------------


def test_gradient_methods_solvers_and_controllers_are_values():
    model = pj.NeuralODE(pj.MLP([2, 3, 2]), solver=pj.SOLVERS["tsit5"], controller=pj.PIDController(factor_max=2.0))
    assert model.solver.name == "tsit5"
    theta = model.init(0)
    obj = pj.TrajectoryLoss(model, ts=TS, y0=[1.0, 0.0], targets=np.zeros((5, 2)))
    assert np.array_equal(obj.grad(theta, method=pj.Backsolve()), obj.grad(theta, method="backsolve"))
    # a tighter growth limit takes at least as many steps
    loose = pj.NeuralODE(pj.MLP([2, 3, 2]), solver="tsit5")
    n_tight = model.solve(theta, [0, 5.0], [1.0, 0.0]).stats.num_steps
    n_loose = loose.solve(theta, [0, 5.0], [1.0, 0.0]).stats.num_steps
    assert n_tight > n_loose
    with pytest.raises(ValueError, match="unknown step-size controller"):
        pj.NeuralODE(pj.MLP([2, 2]), controller="pi")
    with pytest.raises(ValueError, match="cannot use"):
        pj.NeuralODE(pj.MLP([2, 2]), solver="euler", dt=0.1, controller="pid")
    with pytest.raises(ValueError, match="factor_max"):
        pj.PIDController(factor_max=0.5)
    with pytest.raises(TypeError, match="gradient-method"):
        obj.grad(theta, method=3)
