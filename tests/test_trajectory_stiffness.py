"""Stiffness along a Neural ODE solve: Shampine's estimate, ∂f/∂y spectra, Hairer's DOPRI5 test.

References: linear systems whose estimate is known exactly (y' = −λy: λ̂ = λ; a damped
rotation A = [[−a, b], [−b, −a]], normal with AᵀA = (a² + b²)I, so ‖A v‖/‖v‖ = √(a² + b²)
for every v and λ̂ = √(a² + b²)), ``numpy.linalg.eigvals`` of A and closed-form Jacobian
spectra, dopri5's real-axis stability boundary computed from Diffrax's Butcher tableau,
and hand-counted detector sequences (Hairer & Wanner, *Solving ODEs II*, §IV.2, dopri5.f).

Tolerances: λ̂ is a quotient of a stage difference k_b − k_a by g_b − g_a, which is of the
size of the local error (≈ rtol·|y|), so rounding in f costs ≈ eps/rtol relative error;
the bounds below are within 10× of what was observed.
"""

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl as pj
from pyodejl.stiffness import TrajectoryStiffnessResult, hairer_detector, trajectory_stiffness

TS = np.array([0.0, 1.0])


def _decay(t, y, theta):
    return -theta[0] * y


def _rotation(t, y, theta):
    a, b = theta[0], theta[1]
    return jnp.array([[-a, b], [-b, -a]]) @ y


def _forced(t, y, theta):
    # y' = −λ(y − cos t): stiff for large λ (Hairer & Wanner II, §IV.2's example type)
    return -theta[0] * (y - jnp.cos(t))


def _nonlinear(t, y, theta):
    # ∂f/∂y = diag(−3y₀², −(1 + t)): tests that the Jacobian is taken at (t_j, y_j)
    return jnp.array([-(y[0] ** 3), -(1.0 + t) * y[1]])


DECAY = pj.NeuralODE(pj.VectorField(_decay, 1, state_dim=1, name="decay"), "dopri5", rtol=1e-6, atol=1e-9)
ROTATION = pj.VectorField(_rotation, 2, state_dim=2, name="rotation")


# ---------------------------------------------------------------------------
# Shampine's estimate on linear systems
# ---------------------------------------------------------------------------
def test_decay_estimate_equals_lambda():
    lam = 3.0
    r = trajectory_stiffness(DECAY, np.array([lam]), np.array([0.0, 4.0]), np.array([1.0]))
    assert isinstance(r, TrajectoryStiffnessResult)
    n = len(r.times)
    assert n > 15
    assert r.dt.shape == r.shampine.shape == (n,)
    assert r.eigenvalues.shape == (n, 1) and np.iscomplexobj(r.eigenvalues)
    np.testing.assert_allclose(r.shampine, lam, rtol=1e-12)  # observed 3e-13
    np.testing.assert_allclose(r.eigenvalues, -lam, rtol=0, atol=0)  # ∂(−λy)/∂y is −λ exactly
    np.testing.assert_allclose(np.diff(r.times), r.dt[:-1], rtol=1e-14)
    assert r.times[0] == 0.0 and r.times[-1] + r.dt[-1] == pytest.approx(4.0, rel=1e-14)


@pytest.mark.parametrize(("solver", "tol"), [("dopri5", 2e-9), ("tsit5", 3e-12)])  # observed 2.3e-10, 2.7e-13
def test_damped_rotation_estimate_and_spectrum(solver, tol):
    a, b = 0.5, 4.0
    model = pj.NeuralODE(ROTATION, solver, rtol=1e-6, atol=1e-9)
    A = np.array([[-a, b], [-b, -a]])
    exact = np.sort_complex(np.linalg.eigvals(A))
    np.testing.assert_allclose(exact, [-a - 1j * b, -a + 1j * b], rtol=1e-15)

    r = trajectory_stiffness(model, np.array([a, b]), np.array([0.0, 5.0]), np.array([1.0, 0.5]))
    np.testing.assert_allclose(r.shampine, np.hypot(a, b), rtol=tol)
    assert r.eigenvalues.shape == (len(r.times), 2)
    np.testing.assert_allclose(np.sort_complex(r.eigenvalues), np.broadcast_to(exact, r.eigenvalues.shape), rtol=1e-15)
    np.testing.assert_allclose(r.spectral_radius, np.hypot(a, b), rtol=1e-15)
    assert r.stiff_at is None  # |hλ| stays accuracy-limited
    if solver != "dopri5":
        return  # the batch path does not depend on the tableau; one solver keeps the test short

    # a batch is one system: ‖A V‖_F / ‖V‖_F = √(a² + b²) still; one spectrum per trajectory
    y0 = np.array([[1.0, 0.5], [-2.0, 3.0], [0.1, 0.0]])
    rb = trajectory_stiffness(model, np.array([a, b]), np.array([0.0, 5.0]), y0)
    assert rb.eigenvalues.shape == (len(rb.times), 3, 2)
    np.testing.assert_allclose(rb.shampine, np.hypot(a, b), rtol=1e-10)  # observed 1e-11
    np.testing.assert_allclose(
        np.sort_complex(rb.eigenvalues), np.broadcast_to(exact, rb.eigenvalues.shape), rtol=1e-15
    )


def test_eigenvalues_at_step_start_nonlinear():
    # one augmented dimension (y₁ = 0 throughout): its eigenvalue −(1 + t_j) is still there
    model = pj.NeuralODE(pj.VectorField(_nonlinear, 0, state_dim=2), "dopri5", rtol=1e-6, atol=1e-9, augment_dim=1)
    ts, y0 = np.array([0.0, 2.0]), np.array([1.5])
    r = trajectory_stiffness(model, np.zeros(0), ts, y0)
    steps = model.solve(np.zeros(0), ts, y0).steps
    np.testing.assert_array_equal(r.times, steps.t)
    expected = np.stack([-3 * steps.y[:, 0] ** 2, -(1.0 + steps.t)], axis=1)
    np.testing.assert_allclose(np.sort(r.eigenvalues.real, axis=1), np.sort(expected, axis=1), rtol=1e-14)
    np.testing.assert_array_equal(r.eigenvalues.imag, 0.0)
    assert r.eigenvalues.dtype == np.complex128


# ---------------------------------------------------------------------------
# Hairer's test on a stiff and a non-stiff problem
# ---------------------------------------------------------------------------
def _real_stability_boundary(tableau):
    """x > 0 with |R(−x)| = 1 for an explicit RK tableau (Diffrax's), by bisection."""
    s = len(tableau.b_sol)
    A = np.zeros((s, s))
    for i, row in enumerate(tableau.a_lower):
        A[i + 1, : len(row)] = row

    def R(z):
        return 1 + z * tableau.b_sol @ np.linalg.solve(np.eye(s) - z * A, np.ones(s))

    lo, hi = 2.0, 4.0  # |R| < 1 at −2, > 1 at −4 for dopri5
    assert abs(R(-lo)) < 1 < abs(R(-hi))
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if abs(R(-mid)) < 1 else (lo, mid)
    return lo


def test_detector_fires_on_stiff_problem():
    lam = 1000.0
    model = pj.NeuralODE(pj.VectorField(_forced, 1, state_dim=1), "dopri5", rtol=1e-5, atol=1e-5)
    r = trajectory_stiffness(model, np.array([lam]), TS, np.array([0.0]))
    np.testing.assert_allclose(r.shampine, lam, rtol=1e-12)  # linear in y: λ̂ = λ (observed 2e-13)
    assert r.stiff_at is not None
    j = r.stiff_step
    assert r.stiff_at == r.times[j] and 0.0 < r.stiff_at < 1.0
    # it fires because the steps are pinned by stability: hλ hovers at dopri5's boundary
    hl = r.h_lambda
    assert np.sum(hl[: j + 1] > 3.25) >= 15
    boundary = _real_stability_boundary(diffrax.Dopri5.tableau)
    assert boundary == pytest.approx(3.3, abs=0.05)
    assert np.median(hl[j:]) == pytest.approx(boundary, rel=0.05)  # observed 1.7 %
    assert j == hairer_detector(r.dt, np.full_like(r.dt, lam))  # the exact |λ| gives the same answer


def test_detector_silent_on_nonstiff_problem():
    r = trajectory_stiffness(DECAY, np.array([1.0]), np.array([0.0, 5.0]), np.array([1.0]))
    assert len(r.times) > 15
    assert r.stiff_at is None and r.stiff_step is None
    assert np.all(r.h_lambda < 3.25)  # accuracy, not stability, limits the steps

    # without spectra: the same estimate from the same solve
    r2 = trajectory_stiffness(DECAY, np.array([1.0]), np.array([0.0, 5.0]), np.array([1.0]), eigenvalues=False)
    assert r2.eigenvalues is None
    np.testing.assert_array_equal(r2.shampine, r.shampine)
    with pytest.raises(ValueError, match="eigenvalues=False"):
        _ = r2.spectral_radius


# ---------------------------------------------------------------------------
# the detector on synthetic sequences (dopri5.f's counters, counted by hand)
# ---------------------------------------------------------------------------
def _run(pattern):
    """'S' = hλ = 4 (stiff), 'n' = hλ = 1, with dt = 1."""
    est = np.array([4.0 if c == "S" else 1.0 for c in pattern])
    return hairer_detector(np.ones(len(est)), est)


def test_detector_fires_on_fifteenth_stiff_step():
    assert _run("S" * 14) is None
    assert _run("S" * 15) == 14
    assert _run("nnn" + "S" * 20) == 17
    # runs of fewer than 6 non-stiff steps do not reset the count
    assert _run("S" * 10 + "n" * 5 + "S" * 5) == 19
    assert _run("S" * 10 + "nnn" + "S" + "nnn" + "S" * 4) == 20
    # 6 non-stiff steps in a row reset it
    assert _run("S" * 10 + "n" * 6 + "S" * 14) is None
    assert _run("S" * 10 + "n" * 6 + "S" * 15) == 30
    # the threshold is strict, and scales with dt
    assert hairer_detector(np.ones(20), np.full(20, 3.25)) is None
    assert hairer_detector(np.full(20, 0.5), np.full(20, 6.6)) == 14
    assert hairer_detector(np.full(20, 0.5), np.full(20, 6.6), threshold=3.5) is None
    assert hairer_detector(np.ones(5), np.full(5, 4.0), fire_after=3, reset_after=1) == 2


def test_detector_nstiff_gating():
    # dopri5.f checks only every NSTIFF-th accepted step until the stiff counter is positive
    est = np.full(1100, 4.0)
    assert hairer_detector(np.ones(1100), est, check_every=1000) == 999 + 14
    assert hairer_detector(np.ones(999), np.full(999, 4.0), check_every=1000) is None


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("solver", "error", "kw"),
    [("kvaerno5", NotImplementedError, {}), ("bosh3", ValueError, {}), ("euler", ValueError, {"dt": 0.1})],
)
def test_solver_without_two_unit_stages(solver, error, kw):
    model = pj.NeuralODE(pj.VectorField(_decay, 1, state_dim=1), solver, **kw)
    with pytest.raises(error, match=solver):
        trajectory_stiffness(model, np.array([1.0]), TS, np.array([1.0]))


def test_bad_model_and_detector_arguments():
    with pytest.raises(TypeError, match="NeuralODE"):
        trajectory_stiffness(lambda t, y: y, np.array([1.0]), TS, np.array([1.0]))
    with pytest.raises(ValueError, match="fire_after"):
        trajectory_stiffness(DECAY, np.array([1.0]), TS, np.array([1.0]), fire_after=0)
    with pytest.raises(TypeError, match="eigenvalues"):
        trajectory_stiffness(DECAY, np.array([1.0]), TS, np.array([1.0]), eigenvalues="no")
    ok = np.ones(3)
    with pytest.raises(ValueError, match="same length"):
        hairer_detector(ok, np.ones(4))
    with pytest.raises(ValueError, match="1-D"):
        hairer_detector(np.ones((3, 1)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="estimate contains NaN"):
        hairer_detector(ok, np.array([1.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="dt must be non-negative"):
        hairer_detector(-ok, ok)
    with pytest.raises(ValueError, match="threshold"):
        hairer_detector(ok, ok, threshold=-1.0)
    with pytest.raises(TypeError, match="threshold"):
        hairer_detector(ok, ok, threshold="big")
    with pytest.raises(ValueError, match="reset_after"):
        hairer_detector(ok, ok, reset_after=1.5)
    with pytest.raises(ValueError, match="check_every"):
        hairer_detector(ok, ok, check_every=True)
