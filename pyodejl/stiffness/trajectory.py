"""Stiffness along a Neural ODE trajectory: Jacobian spectra, Shampine's estimate, Hairer's test.

For every accepted step j of a solve, from t_j with step h_j:

* the eigenvalues of the Jacobian ∂f/∂y at the step's start (t_j, y_j) — the exact
  local spectrum, at the price of one Jacobian and one eigendecomposition per step;
* Shampine's (1977) estimate λ̂_j = ‖k_b − k_a‖ / ‖g_b − g_a‖ of the dominant |λ|
  from the two stages a, b evaluated at c = 1 (stages 6 and 7 of dopri5 and tsit5;
  seed 004 §2.4), read from the solver's step record at no extra evaluation of f
  (:func:`pyodejl.solving.shampine_stiffness`, the library's one implementation);
* Hairer's stiffness test of the DOPRI5 code (Hairer & Wanner, *Solving Ordinary
  Differential Equations II*, 2nd ed., §IV.2; the ``IASTI``/``NONSTI`` counters of
  ``dopri5.f``) on h_j·λ̂_j: :func:`hairer_detector`.

Why h·λ̂ > 3.25: dopri5's stability region meets the negative real axis near
−3.3; a step size pinned there by stability rather than accuracy is the mark of
stiffness, and 15 such steps (without 6 non-stiff ones in between) make the
code declare the problem stiff.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import numpy as np

from pyodejl._validation import check_integer, check_number
from pyodejl.models.neural_ode import NeuralODE
from pyodejl.solving.steps import shampine_stiffness

__all__ = ["TrajectoryStiffnessResult", "hairer_detector", "trajectory_stiffness"]


@dataclass(frozen=True)
class TrajectoryStiffnessResult:
    """Stiffness of one solve, per accepted step (N steps, state dimension D, batch B).

    Attributes:
        times: ``(N,)`` start time t_j of each accepted step.
        dt: ``(N,)`` its step size h_j.
        eigenvalues: ``(N, D)`` complex eigenvalues of ∂f/∂y at (t_j, y_j), or
            ``(N, B, D)`` for a batch of initial states (unordered, as
            ``numpy.linalg.eigvals`` returns them). D includes augmented dimensions.
            None when computed with ``eigenvalues=False``.
        shampine: ``(N,)`` Shampine's estimate λ̂_j (0 where the two c = 1 stage
            states coincide). A batch is solved as one system with shared steps,
            so for a batch the norms run over every trajectory and entry.
        stiff_at: t_j of the step on which Hairer's detector fired, or None.
        stiff_step: the index j of that step, or None.
    """

    times: np.ndarray
    dt: np.ndarray
    eigenvalues: np.ndarray
    shampine: np.ndarray
    stiff_at: float | None
    stiff_step: int | None

    @property
    def h_lambda(self) -> np.ndarray:
        """``(N,)`` h_j·λ̂_j, the quantity Hairer's test compares with 3.25."""
        return self.dt * self.shampine

    @property
    def spectral_radius(self) -> np.ndarray:
        """``(N,)`` (or ``(N, B)``) max |λ| of ∂f/∂y at each step's start, which λ̂ estimates."""
        if self.eigenvalues is None:
            raise ValueError("this result was computed with eigenvalues=False; it has no spectra")
        return np.max(np.abs(self.eigenvalues), axis=-1)


def hairer_detector(
    dt, estimate, threshold: float = 3.25, fire_after: int = 15, reset_after: int = 6, check_every: int = 1
) -> int | None:
    """Hairer's stiffness test of the DOPRI5 code on a sequence of accepted steps.

    Hairer & Wanner, *Solving Ordinary Differential Equations II* (2nd ed., 1996),
    §IV.2 "Automatic stiffness detection", as coded in ``dopri5.f`` (Hairer's
    ``IASTI``/``NONSTI`` counters). For each checked accepted step j, with
    hλ_j = dt_j·estimate_j:

    * hλ_j > ``threshold``: the stiff counter goes up by one and the non-stiff
      counter returns to 0; when the stiff counter reaches ``fire_after`` the
      test fires at step j;
    * otherwise the non-stiff counter goes up by one; when it reaches
      ``reset_after`` the stiff counter returns to 0.

    So the stiff steps need not be consecutive: runs of fewer than ``reset_after``
    non-stiff steps do not reset the count. As in ``dopri5.f``, steps are checked
    only while the stiff counter is positive or when the (1-based) accepted-step
    count is a multiple of ``check_every`` (the code's ``NSTIFF``, 1000 there by
    default; 1 here, checking every step). One difference: where the code keeps the
    previous hλ when the stage states coincide, an ``estimate`` of 0 counts as
    non-stiff.

    Args:
        dt: ``(N,)`` step sizes of the accepted steps, ≥ 0.
        estimate: ``(N,)`` estimates λ̂_j ≥ 0 of the dominant |λ| (Shampine's,
            :func:`pyodejl.solving.shampine_stiffness`).
        threshold: hλ above which a step counts as stiff (default 3.25, DOPRI5's).
        fire_after: stiff steps to fire (default 15).
        reset_after: non-stiff steps in a row that reset the stiff count (default 6).
        check_every: ``NSTIFF``, see above (default 1).

    Returns:
        The index j of the step on which the test first fires, or None.
    """
    dt = np.asarray(dt, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if dt.ndim != 1 or est.ndim != 1 or dt.shape != est.shape:
        raise ValueError(
            f"dt and estimate must be 1-D arrays of the same length (one entry per accepted step), "
            f"got shapes {dt.shape} and {est.shape}"
        )
    for name, x in (("dt", dt), ("estimate", est)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} contains NaN or inf")
        if np.any(x < 0):
            raise ValueError(f"{name} must be non-negative, got a minimum of {x.min()}")
    threshold = check_number(threshold, "threshold")
    fire_after = check_integer(fire_after, "fire_after")
    reset_after = check_integer(reset_after, "reset_after")
    check_every = check_integer(check_every, "check_every")

    stiff = nonstiff = 0
    for j, hl in enumerate(dt * est):
        if not ((j + 1) % check_every == 0 or stiff > 0):
            continue
        if hl > threshold:
            nonstiff = 0
            stiff += 1
            if stiff == fire_after:
                return j
        else:
            nonstiff += 1
            if nonstiff == reset_after:
                stiff = 0
    return None


@functools.partial(jax.jit, static_argnums=0)
def _jacobians(vector_field, t, y, theta):
    # y: (N, D) or (N, B, D); one Jacobian per step (and trajectory), forward mode
    # since ∂f/∂y is square.
    jac = jax.jacfwd(vector_field, argnums=1)
    if y.ndim == 2:
        return jax.vmap(jac, in_axes=(0, 0, None))(t, y, theta)
    per_batch = jax.vmap(jac, in_axes=(None, 0, None))
    return jax.vmap(per_batch, in_axes=(0, 0, None))(t, y, theta)


def _check_solver(model):
    spec = model.solver
    if spec.tableau is None:
        raise NotImplementedError(
            f"trajectory_stiffness needs the stages of an explicit solver for Shampine's estimate; "
            f"solver {spec.name!r} is implicit (its stages are Newton iterates inside Diffrax). "
            "Use dopri5, tsit5 or dopri8"
        )
    if spec.unit_stages is None:
        raise ValueError(
            f"trajectory_stiffness needs a solver with two stages at c = 1 for Shampine's estimate; "
            f"solver {spec.name!r} has fewer. Use dopri5, tsit5 or dopri8"
        )


def trajectory_stiffness(
    model: NeuralODE,
    theta,
    ts,
    y0,
    *,
    eigenvalues: bool = True,
    threshold: float = 3.25,
    fire_after: int = 15,
    reset_after: int = 6,
) -> TrajectoryStiffnessResult:
    """Stiffness of a Neural ODE along its solve: spectra, Shampine's estimate and Hairer's test.

    Solves once (``model.solve(theta, ts, y0)``) and reads, for every accepted step,
    Shampine's estimate from the step record (seed 004 §2.4; no extra evaluation of
    f), the eigenvalues of ∂f/∂y at the step's start (``jax.jacfwd`` of the vector
    field, then ``numpy.linalg.eigvals``), and runs :func:`hairer_detector` on
    h_j·λ̂_j (Hairer & Wanner, *Solving ODEs II*, §IV.2). See the module docstring.

    Args:
        model: a :class:`pyodejl.NeuralODE` whose solver has two explicit stages at
            c = 1 (dopri5, tsit5, dopri8).
        theta: ``(model.num_params,)``.
        ts: ``(T,)`` strictly increasing observation times (steps land on them).
        y0: ``(data_dim,)`` or ``(B, data_dim)``.
        eigenvalues: whether to compute the spectra (default True). They hold
            N·B·D² Jacobian entries at once; with ``False`` only Shampine's
            estimate and the detector are computed (no evaluation of f beyond the
            solve) and ``.eigenvalues`` is None.
        threshold: Hairer's bound on |h·λ̂| (default 3.25, DOPRI5's), see
            :func:`hairer_detector`.
        fire_after: stiff steps to fire (default 15).
        reset_after: non-stiff steps in a row that reset the stiff count (default 6).

    Returns:
        :class:`TrajectoryStiffnessResult`. Shampine's estimate uses the state
        entries the step-size controller sees (``model.error_dims``; all by default).

    Raises:
        TypeError: ``model`` is not a NeuralODE.
        NotImplementedError: the solver is implicit (``kvaerno5``).
        ValueError: the solver has fewer than two stages at c = 1 (``bosh3``, the
            fixed-step methods), or a Jacobian is not finite.
    """
    if not isinstance(model, NeuralODE):
        raise TypeError(f"model must be a pyodejl NeuralODE, got {type(model).__name__}")
    _check_solver(model)
    if not isinstance(eigenvalues, bool):
        raise TypeError(f"eigenvalues must be True or False, got {eigenvalues!r}")
    # the detector's arguments are checked before the (possibly long) solve
    hairer_detector(np.zeros(0), np.zeros(0), threshold, fire_after, reset_after)

    sol = model.solve(theta, ts, y0)
    steps = sol.steps
    theta = np.asarray(theta, dtype=np.float64)
    estimate = np.asarray(shampine_stiffness(steps, model.solver.unit_stages, model.error_dims), dtype=np.float64)
    times = np.asarray(steps.t, dtype=np.float64)
    dt = np.asarray(steps.dt, dtype=np.float64)

    if eigenvalues:
        J = np.asarray(_jacobians(model.vector_field, times, np.asarray(steps.y), theta))
        if not np.all(np.isfinite(J)):
            bad = int(np.argmax(~np.all(np.isfinite(J.reshape(J.shape[0], -1)), axis=1)))
            raise ValueError(f"the Jacobian ∂f/∂y is not finite at step {bad} (t = {times[bad]})")
        # eigvals returns a real array when every eigenvalue is real; keep one dtype
        eigenvalues = np.linalg.eigvals(J).astype(np.complex128)
    else:
        eigenvalues = None

    j = hairer_detector(dt, estimate, threshold, fire_after, reset_after)
    return TrajectoryStiffnessResult(
        times=times,
        dt=dt,
        eigenvalues=eigenvalues,
        shampine=estimate,
        stiff_at=None if j is None else float(times[j]),
        stiff_step=j,
    )
