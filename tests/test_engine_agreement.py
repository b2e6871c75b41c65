"""Nonlinear Neural ODEs: every gradient and Hessian method agrees with every other.

Reference for the bounds: all methods differentiate the same ODE, at rtol = 1e-8.

* Methods on the same discretisation (discrete gradient; direct-direct,
  direct-adjoint, elementwise) agree to round-off: observed ≤ 7.8e-16 relative.
* Continuous adjoints differ from the discrete derivative by the solvers' global
  error, observed 0.02–2.4 × rtol depending on the case (tsit5 on the small
  augmented sigmoid field is the most accurate), and from each other by less.
* Finite differences add truncation and noise: fd ≈ 3–8e-8 and fd-grad
  ≈ 7e-10–4e-8 relative at their automatically chosen steps.

Bounds are per case and per kind of pair, :data:`MARGIN` times the largest gap
observed on this project's machine (:data:`OBSERVED`), so a regression of a
few-fold in any method shows.
"""

import functools

import numpy as np
import pytest

import pyodejl as pj

RTOL = 1e-8
ROUND_OFF = 5e-15  # observed max 7.8e-16 (Hessians, products, asymmetry)
SAME_DISCRETISATION = {"direct-direct", "direct-adjoint", "elementwise"}
CONTINUOUS_METHODS = {"backsolve", "interpolating", "forward", "adjoint-direct", "adjoint-adjoint"}
MARGIN = 5

# Largest relative gap max|a − b| / max|b| observed per case and kind of pair:
#   grad_dc   discrete gradient vs a continuous one      grad_cc  continuous vs continuous
#   hess_dc   discrete Hessian vs a continuous one       hess_cc  adjoint-direct vs adjoint-adjoint
#   fd, fd_grad   that method vs any other               hvp      continuous products vs H·v
OBSERVED = {
    "case_batch_tanh": dict(
        grad_dc=7.6e-9, grad_cc=8.4e-10, hess_dc=1.8e-8, hess_cc=3.8e-9, fd=7.5e-8, fd_grad=3.7e-8, hvp=6.6e-8
    ),
    "case_time_dependent_softplus_abs": dict(
        grad_dc=3.2e-9, grad_cc=8.3e-10, hess_dc=2.4e-8, hess_cc=1.0e-9, fd=3.3e-8, fd_grad=1.9e-8
    ),
    "case_augmented_sigmoid_tsit5": dict(
        grad_dc=1.8e-10, grad_cc=7.8e-11, hess_dc=1.2e-9, hess_cc=1.7e-10, fd=3.3e-8, fd_grad=7.5e-10
    ),
}


def bound(case, kind):
    return MARGIN * OBSERVED[case][kind]


def gradient_pair_kind(a, b):
    if a == b == "discrete":
        return None
    return "grad_dc" if "discrete" in (a, b) else "grad_cc"


def hessian_pair_kind(a, b):
    if a in SAME_DISCRETISATION and b in SAME_DISCRETISATION:
        return None
    if "fd" in (a, b):
        return "fd"
    if "fd-grad" in (a, b):
        return "fd_grad"
    return "hess_cc" if a in CONTINUOUS_METHODS and b in CONTINUOUS_METHODS else "hess_dc"


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


@functools.cache
def compute(case):
    obj = case()
    theta = obj.model.init(seed=3) * 1.5
    grads = {m: obj.grad(theta, method=m) for m in pj.GRADIENT_METHODS}
    hessians = {m: obj.hessian(theta, method=m) for m in pj.HESSIAN_METHODS}
    return case.__name__, obj, theta, grads, hessians


# cached per case: the indirect parametrisation below makes a fixture instance of its
# own, which would otherwise compute every derivative of its case a second time
@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.__name__)
def computed(request):
    return compute(request.param)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_gradients_agree_pairwise(computed):
    case, _, _, grads, _ = computed
    for a in grads:
        for b in grads:
            kind = gradient_pair_kind(a, b)
            limit = ROUND_OFF if kind is None else bound(case, kind)
            assert rel(grads[a], grads[b]) < limit, (a, b, rel(grads[a], grads[b]))


def test_hessians_agree_pairwise(computed):
    case, _, _, _, H = computed
    for a in H:
        for b in H:
            kind = hessian_pair_kind(a, b)
            limit = ROUND_OFF if kind is None else bound(case, kind)
            assert rel(H[a], H[b]) < limit, (a, b, rel(H[a], H[b]))


def test_exact_hessians_symmetric_to_round_off(computed):
    _, _, _, _, H = computed
    for m in SAME_DISCRETISATION:
        assert np.abs(H[m] - H[m].T).max() <= ROUND_OFF * np.abs(H[m]).max()


# products are checked on one case to bound compilation time
@pytest.mark.parametrize("computed", [case_batch_tanh], indirect=True, ids=["case_batch_tanh"])
def test_hvp_equals_hessian_times_v_and_operator_counts(computed):
    case, obj, theta, _, H = computed
    rng = np.random.default_rng(0)
    v = rng.normal(size=obj.num_params)
    V = rng.normal(size=(obj.num_params, 3))
    ref = H["direct-direct"]
    for m in ("direct-direct", "direct-adjoint", "adjoint-adjoint", "adjoint-direct"):
        limit = ROUND_OFF if m in SAME_DISCRETISATION else bound(case, "hvp")
        assert rel(obj.hvp(theta, v, method=m), ref @ v) < limit, m
        assert rel(obj.hvp(theta, V, method=m), ref @ V) < limit, m
    op = obj.hessian_operator(theta)
    assert op.shape == (obj.num_params, obj.num_params) and op.matvecs == 0
    op.matvec(v)
    op.matmat(V)
    op @ v
    assert op.matvecs == 1 + 3 + 1
    assert rel(op.matmat(V), ref @ V) < ROUND_OFF


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
    # same steps, same tableau, Diffrax's own arithmetic: round-off (observed 3.0e-16)
    assert rel(obj.grad(theta), g_diffrax) < 3e-15
