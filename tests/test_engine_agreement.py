"""Nonlinear Neural ODEs: every gradient and Hessian method agrees with every other.

Reference for the bounds: all methods differentiate the same ODE. Methods on
the same discretisation (discrete gradient; direct-direct, direct-adjoint,
elementwise) agree to round-off. Continuous adjoints differ from the discrete
derivative by the solver's global error, a modest multiple of rtol
(≲ 1e3·rtol here). Finite differences add their own noise (see the fd bounds).
"""

import numpy as np
import pytest

import pyodejl as pj

RTOL = 1e-8
ROUND_OFF = 1e-11
CONTINUOUS = 1e3 * RTOL
FD = {"fd": 1e-4, "fd-grad": 1e-6}
SAME_DISCRETISATION = {"direct-direct", "direct-adjoint", "elementwise"}


def case_batch_tanh():
    ts = np.linspace(0, 1.5, 6)
    y0 = np.array([[1.0, 0.0], [0.5, 0.5], [-0.4, 0.8]])
    targets = np.stack([np.stack([np.cos(ts + k), -np.sin(ts + k)], 1) for k in range(3)])
    model = pj.NeuralODE(pj.MLP([2, 6, 2], "tanh"), rtol=RTOL, atol=RTOL * 1e-2)
    return pj.TrajectoryLoss(model, ts=ts, y0=y0, targets=targets, loss="mse")


def case_time_dependent_softplus_abs():
    ts = np.linspace(0, 1.0, 5)
    targets = np.stack([np.exp(-ts), 0.5 * ts], 1) + 0.3
    model = pj.NeuralODE(pj.MLP([2, 5, 2], "softplus", time_dependent=True), rtol=RTOL, atol=RTOL * 1e-2)
    return pj.TrajectoryLoss(model, ts=ts, y0=[1.0, 0.2], targets=targets, loss="abs")


def case_augmented_sigmoid_tsit5():
    ts = np.linspace(0, 1.0, 4)
    targets = np.stack([np.cos(ts), np.sin(ts)], 1)
    model = pj.NeuralODE(pj.MLP([3, 4, 3], "sigmoid"), solver="tsit5", rtol=RTOL, atol=RTOL * 1e-2, augment_dim=1)
    return pj.TrajectoryLoss(model, ts=ts, y0=[0.7, -0.2], targets=targets)


CASES = [case_batch_tanh, case_time_dependent_softplus_abs, case_augmented_sigmoid_tsit5]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.__name__)
def computed(request):
    obj = request.param()
    theta = obj.model.init(seed=3) * 1.5
    grads = {m: obj.grad(theta, method=m) for m in pj.GRADIENT_METHODS}
    hessians = {m: obj.hessian(theta, method=m) for m in pj.HESSIAN_METHODS}
    return obj, theta, grads, hessians


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_gradients_agree_pairwise(computed):
    _, _, grads, _ = computed
    for a in grads:
        for b in grads:
            bound = ROUND_OFF if a == b == "discrete" else CONTINUOUS
            assert rel(grads[a], grads[b]) < bound, (a, b, rel(grads[a], grads[b]))


def test_hessians_agree_pairwise(computed):
    _, _, _, H = computed
    for a in H:
        for b in H:
            if a in SAME_DISCRETISATION and b in SAME_DISCRETISATION:
                bound = ROUND_OFF
            else:
                bound = max(FD.get(a, CONTINUOUS), FD.get(b, CONTINUOUS))
            assert rel(H[a], H[b]) < bound, (a, b, rel(H[a], H[b]))


def test_exact_hessians_symmetric_to_round_off(computed):
    _, _, _, H = computed
    for m in SAME_DISCRETISATION:
        assert np.abs(H[m] - H[m].T).max() <= 1e-13 * np.abs(H[m]).max()


# products are checked on one case to bound compilation time
@pytest.mark.parametrize("computed", [case_batch_tanh], indirect=True, ids=["case_batch_tanh"])
def test_hvp_equals_hessian_times_v_and_operator_counts(computed):
    obj, theta, _, H = computed
    rng = np.random.default_rng(0)
    v = rng.normal(size=obj.num_params)
    V = rng.normal(size=(obj.num_params, 3))
    for m in ("direct-direct", "direct-adjoint", "adjoint-adjoint", "adjoint-direct"):
        ref = H["direct-direct"]
        bound = ROUND_OFF if m in SAME_DISCRETISATION else CONTINUOUS
        assert rel(obj.hvp(theta, v, method=m), ref @ v) < bound * 10
        assert rel(obj.hvp(theta, V, method=m), ref @ V) < bound * 10
    op = obj.hessian_operator(theta)
    assert op.shape == (obj.num_params, obj.num_params) and op.matvecs == 0
    op.matvec(v)
    op.matmat(V)
    op @ v
    assert op.matvecs == 1 + 3 + 1
    assert rel(op.matmat(V), H["direct-direct"] @ V) < ROUND_OFF * 10


def test_matches_diffrax_own_discrete_derivative():
    """Our discrete gradient equals reverse mode through diffrax.diffeqsolve itself."""
    import diffrax
    import jax
    import jax.numpy as jnp

    obj = case_batch_tanh()
    theta = obj.model.init(seed=3)
    model = obj.model
    # diffeqsolve starts from 0.01 when dt0 is None; hand it our first step so
    # that both follow the same accepted grid
    times = obj.solve(theta).grid.times
    dt0 = times[1] - times[0]

    def loss(th):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, a: model.rhs(t, y, a)),
            diffrax.Dopri5(),
            obj.ts[0],
            obj.ts[-1],
            dt0,
            jnp.asarray(obj.y0),
            args=th,
            saveat=diffrax.SaveAt(ts=obj.ts),
            stepsize_controller=diffrax.ClipStepSizeController(
                diffrax.PIDController(rtol=model.rtol, atol=model.atol), step_ts=obj.ts
            ),
            adjoint=diffrax.RecursiveCheckpointAdjoint(),
        )
        return jnp.mean((jnp.swapaxes(sol.ys, 0, 1) - obj.targets) ** 2)

    g_diffrax = np.asarray(jax.grad(loss)(jnp.asarray(theta)))
    assert rel(obj.grad(theta), g_diffrax) < 1e-10
