"""Losses of Neural ODE solutions observed at a set of times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import to_device
from pyodejl.derivatives.objective import Objective
from pyodejl.derivatives.validation import check_finite, check_initial_state, check_times
from pyodejl.models.neural_ode import NeuralODE
from pyodejl.solving.integrate import (
    SolveStats,
    adaptive_solve,
    adaptive_states,
    grid_states_jax,
)
from pyodejl.solving.solvers import solver_spec


@dataclass(frozen=True)
class ODEProblem:
    """The static part of an observed-ODE loss: model, cost and θ's split.

    ``cost(theta_extra, Y, data) -> scalar`` with ``Y`` of shape ``(B, T, D)``
    (the augmented state at every observation time) and ``theta_extra`` the
    parameters after the vector field's (e.g. a readout). It must be a
    hashable callable (a module-level function or a frozen dataclass).
    """

    model: NeuralODE
    cost: Callable

    @property
    def num_vf(self) -> int:
        return self.model.num_params

    def split(self, theta):
        return theta[: self.num_vf], theta[self.num_vf :]

    def cost_of_states(self, theta, Y_tbd, data):
        """Cost from states laid out ``(T, B, D)``."""
        _, extra = self.split(theta)
        return self.cost(extra, jnp.swapaxes(Y_tbd, 0, 1), data)


@dataclass(frozen=True)
class _AdaptiveLoss:
    """L(θ) through an adaptive solve; NaN when the solve fails (vmappable)."""

    problem: ODEProblem

    def __call__(self, theta, ts, y0, data):
        model = self.problem.model
        vf, _ = self.problem.split(theta)
        if solver_spec(model.solver).adaptive:
            _, ys, _, ok = adaptive_states(model, vf, ts, y0)
            loss = self.problem.cost_of_states(theta, ys, data)
            return jnp.where(ok & jnp.isfinite(loss), loss, jnp.nan)
        raise NotImplementedError  # fixed-step losses use _GridLoss directly


@dataclass(frozen=True)
class _GridLoss:
    """L(θ) on a frozen step grid: the discretise-then-optimise loss."""

    problem: ODEProblem

    def __call__(self, theta, times, obs_index, y0, data):
        vf, _ = self.problem.split(theta)
        Y = grid_states_jax(self.problem.model, vf, times, obs_index, y0)
        return self.problem.cost_of_states(theta, Y, data)


class ObservationLoss(Objective):
    """A loss of a Neural ODE's states at observation times: L(θ) = cost(θ_extra, Y(θ_vf)).

    The general ODE objective; :class:`TrajectoryLoss` is the common case and
    classification losses with a readout are built on it too.

    Args:
        model: a :class:`pyodejl.NeuralODE`.
        ts: ``(T,)`` strictly increasing times; ``ts[0]`` is the initial time.
        y0: ``(d,)`` or ``(B, d)`` initial data states (``d = model.data_dim``);
            augmentation zeros are appended.
        cost: hashable ``cost(theta_extra, Y, data) -> scalar``, ``Y`` ``(B, T, D)``.
        data: array (or tuple of arrays) passed to ``cost``.
        num_extra_params: parameters after the vector field's in θ (default 0).

    θ layout: ``[vector-field parameters (model.num_params), extra parameters]``.
    The batch of initial states is solved as one system: one step grid with a
    joint error norm (as torchdiffeq and seed 000 do).
    """

    is_ode = True

    def __init__(self, model: NeuralODE, ts, y0, cost: Callable, data: Any = None, num_extra_params: int = 0):
        if not isinstance(model, NeuralODE):
            raise TypeError(f"model must be a pyodejl.NeuralODE, got {type(model).__name__}")
        self.model = model
        self.ts = check_times(ts)
        self.single = np.ndim(y0) == 1
        self.y0 = check_initial_state(y0, model.data_dim)
        if data is not None:
            for leaf in jax.tree_util.tree_leaves(data):
                check_finite(np.asarray(leaf), "data")
        self.data = jax.tree_util.tree_map(to_device, data)
        if int(num_extra_params) != num_extra_params or num_extra_params < 0:
            raise ValueError(f"num_extra_params must be a non-negative integer, got {num_extra_params!r}")
        self.num_params = model.num_params + int(num_extra_params)
        self.problem = ODEProblem(model, cost)
        self._y0_aug = model.augment(to_device(self.y0))
        self._ts = to_device(self.ts)
        self._cache_key = None
        self._cache = None

    @property
    def batch_size(self) -> int:
        return self.y0.shape[0]

    # ---- hooks -------------------------------------------------------------
    def value_function(self):
        if not solver_spec(self.model.solver).adaptive:
            # fixed-step solvers: the grid does not depend on θ
            fn, args = self.direct_function(np.zeros(self.num_params))
            return fn, args
        return _AdaptiveLoss(self.problem), (self._ts, self._y0_aug, self.data)

    def solve(self, theta):
        """The forward :class:`pyodejl.solving.Solution` at θ (cached per θ)."""
        theta = np.asarray(theta, dtype=np.float64)
        key = theta.tobytes()
        if key != self._cache_key:
            vf = theta[: self.model.num_params]
            self._cache = adaptive_solve(self.model, vf, self.ts, self._y0_aug)
            self._cache_key = key
        return self._cache

    def _explain_failure(self, theta):
        self.solve(theta)  # raises SolveError naming max_steps or divergence

    def direct_function(self, theta):
        sol = self.solve(theta)
        g = sol.grid
        args = (to_device(g.times), to_device(g.obs_index), self._y0_aug, self.data)
        return _GridLoss(self.problem), args

    def continuous_problem(self):
        return self.problem, (self._ts, self._y0_aug, self.data)

    def default_chunk(self) -> int:
        """Tangents per batch so that one batch's residuals fit in about 1 GiB."""
        steps = self._cache.grid.num_steps if self._cache is not None else 256
        spec = solver_spec(self.model.solver)
        widths = sum(self.model.vector_field.sizes)
        per_tangent = 8 * 4 * steps * spec.stages * self.batch_size * widths
        return int(np.clip(2**30 // max(per_tangent, 1), 1, self.num_params))

    def _continuous_gradient(self, method, theta):
        from pyodejl.derivatives import continuous

        fn = {
            "backsolve": continuous.gradient_backsolve,
            "interpolating": continuous.gradient_interpolating,
            "forward": continuous.gradient_forward_sensitivity,
        }[method]
        problem, args = self.continuous_problem()
        return fn(problem, to_device(theta), *args)

    # ---- extras ------------------------------------------------------------
    def predict(self, theta) -> np.ndarray:
        """States at ``ts``: ``(T, D)`` for a single y0, else ``(B, T, D)``."""
        ys = self.solve(self.check_theta(theta)).ys
        return ys[0] if self.single else ys

    def stats(self, theta) -> SolveStats:
        """Statistics (steps, rejections, function evaluations) of the forward solve."""
        return self.solve(self.check_theta(theta)).stats


def mse_cost(extra, Y, targets):
    """Mean of squared residuals over every batch, time and data dimension."""
    return jnp.mean((Y[..., : targets.shape[-1]] - targets) ** 2)


def abs_cost(extra, Y, targets):
    """Mean absolute residual over every batch, time and data dimension."""
    return jnp.mean(jnp.abs(Y[..., : targets.shape[-1]] - targets))


TRAJECTORY_COSTS = {"mse": mse_cost, "abs": abs_cost}


class TrajectoryLoss(ObservationLoss):
    """Fit a trajectory: L(θ) = mean over (b, t, i) of ρ(y_b(t)_i − target_{b,t,i}).

    Args:
        model: a :class:`pyodejl.NeuralODE`.
        ts: ``(T,)`` times; the prediction is taken at every entry, ``ts[0]``
            included (where it equals y0).
        y0: ``(d,)`` or ``(B, d)``.
        targets: ``(T, d)`` (with ``y0`` of shape ``(d,)``) or ``(B, T, d)``.
        loss: ``"mse"`` (ρ = r², seed 000 Eq. 1) or ``"abs"`` (ρ = |r|).

    Only the data dimensions of an augmented state enter the loss.
    """

    def __init__(self, model: NeuralODE, ts, y0, targets, loss: str = "mse"):
        if loss not in TRAJECTORY_COSTS:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(TRAJECTORY_COSTS)}")
        ts_arr = check_times(ts)
        y0_arr = np.asarray(y0, dtype=np.float64)
        tg = np.asarray(targets, dtype=np.float64)
        d = model.data_dim
        if y0_arr.ndim == 1 and tg.ndim == 2:
            tg = tg[None]
        if tg.ndim != 3 or y0_arr.ndim not in (1, 2):
            raise ValueError(
                f"targets must be (T, d) with y0 (d,), or (B, T, d) with y0 (B, d); got targets {np.shape(targets)} and y0 {y0_arr.shape}"
            )
        B = 1 if y0_arr.ndim == 1 else y0_arr.shape[0]
        if tg.shape != (B, len(ts_arr), d):
            raise ValueError(
                f"targets must have shape {(len(ts_arr), d) if y0_arr.ndim == 1 else (B, len(ts_arr), d)} "
                f"to match ts ({len(ts_arr)},) and y0 {y0_arr.shape}; got {np.shape(targets)}"
            )
        check_finite(tg, "targets")
        self.loss = loss
        self.targets = tg
        super().__init__(model, ts_arr, y0_arr, TRAJECTORY_COSTS[loss], data=tg)
