"""Losses of Neural ODE solutions observed at a set of times, plus weighted loss terms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit, to_device
from pyodejl._sharding import batch_placement, resolve_devices, to_host
from pyodejl._validation import check_finite, check_initial_state, check_integer, check_times
from pyodejl.derivatives.objective import Objective
from pyodejl.regularizers.base import TermInputs, check_terms, has_running_cost, term_noise
from pyodejl.regularizers.running import RunningCostField
from pyodejl.regularizers.sampled import is_sampled, linearise, sample_key
from pyodejl.solving.integrate import (
    SolveError,
    SolveStats,
    adaptive_solve,
    adaptive_states,
    grid_states_jax,
    record_steps,
    replay_times,
)
from pyodejl.solving.solvers import solver_spec


@dataclass(frozen=True)
class ODEProblem:
    """The static part of an observed-ODE loss: the solved model, the data cost, the terms.

    ``cost(theta_extra, Y, data) -> scalar`` with ``Y`` of shape ``(B, T, D)``
    (the augmented state at every observation time) and ``theta_extra`` the
    parameters after the vector field's (e.g. a readout). It must be a
    hashable callable (a module-level function or a frozen dataclass).

    ``model`` is the system actually solved: the user's model, or — with
    running-cost terms — the same model on the augmented state
    ``[y (D), noise, integrals]`` (:mod:`pyodejl.regularizers.running`).
    The loss's data argument is the tuple ``(data, term weights, ts)``, or
    ``(data, term weights, ts, sampled)`` when some term observes the state at
    extra times (:meth:`ObservationLoss.linearisation`): ``ts`` then holds
    every solved time and ``sampled = (user_index, per-term (index, term data)
    or None)``.

    ``initial`` (default None) is an optional hashable initial-state map
    ``initial(theta_extra, data) -> (B, d)``: the initial state then depends on
    θ (e.g. a latent ODE's encoder) and the ``y0`` the loss functions take holds
    only the entries appended after the D model entries (``(B, 0)`` without
    running-cost terms); see :meth:`start`.
    """

    model: Any
    cost: Callable
    D: int
    terms: tuple = ()
    running_offset: int = 0
    initial: Callable | None = None

    @property
    def num_vf(self) -> int:
        return self.model.num_params

    @property
    def needs_steps(self) -> bool:
        return any(getattr(t, "needs_steps", False) for t in self.terms)

    def split(self, theta):
        return theta[: self.num_vf], theta[self.num_vf :]

    def start(self, theta, y0, user_data):
        """The solved initial state ``(B, D_solved)``.

        Without an initial map, ``y0`` itself. With one, ``[initial(θ_extra,
        data), augmentation zeros, y0]``: computed inside the traced loss so that
        every derivative through the frozen-grid replay reaches θ_extra.
        """
        if self.initial is None:
            return y0
        _, extra = self.split(theta)
        z0 = self.initial(extra, user_data)
        pad = jnp.zeros(z0.shape[:-1] + (self.D - z0.shape[-1],), dtype=z0.dtype)
        return jnp.concatenate([z0, pad, y0.astype(z0.dtype)], axis=-1)

    def parts(self, theta, Y_tbd, data, steps=None) -> dict:
        """Each term's unweighted value (the data term under ``"data"``), states laid out ``(T, B, D)``."""
        user_data, ts = data[0], data[2]
        sampled = data[3] if len(data) > 3 else None
        vf, extra = self.split(theta)
        Y_all = jnp.swapaxes(Y_tbd, 0, 1)
        Y = Y_all if sampled is None else Y_all[:, sampled[0]]
        ts = ts if sampled is None else ts[sampled[0]]
        states = Y[..., : self.D]
        out = {"data": self.cost(extra, states, user_data)}
        r = self.running_offset
        for i, term in enumerate(self.terms):
            running = None
            if has_running_cost(term):
                running = Y[:, -1, r] - Y[:, 0, r]
                r += 1
            extra_states = term_data = None
            if sampled is not None and sampled[1][i] is not None:
                index, term_data = sampled[1][i]
                extra_states = Y_all[:, index]
            inputs = TermInputs(
                theta, vf, extra, states, ts, running, steps, self.D, self.model, extra_states, term_data
            )
            out[term.name] = term.value(inputs)
        return out

    def cost_of_states(self, theta, Y_tbd, data, steps=None):
        """The total loss from states laid out ``(T, B, D)``: data + Σ wᵢ Rᵢ."""
        parts = self.parts(theta, Y_tbd, data, steps)
        weights = data[1]
        total = parts["data"]
        for i, term in enumerate(self.terms):
            total = total + weights[i] * parts[term.name]
        return total


@dataclass(frozen=True)
class _AdaptiveLoss:
    """L(θ) through an adaptive solve; NaN when the solve fails (vmappable)."""

    problem: ODEProblem

    def __call__(self, theta, ts, y0, data):
        vf, _ = self.problem.split(theta)
        y0 = self.problem.start(theta, y0, data[0])
        _, ys, _, ok = adaptive_states(self.problem.model, vf, ts, y0)
        loss = self.problem.cost_of_states(theta, ys, data)
        return jnp.where(ok & jnp.isfinite(loss), loss, jnp.nan)


@dataclass(frozen=True)
class _GridLoss:
    """L(θ) on a frozen step grid: the discretise-then-optimise loss (``parts``: the dict of terms)."""

    problem: ODEProblem
    parts: bool = False

    def __call__(self, theta, times, obs_index, y0, data):
        problem = self.problem
        vf, _ = problem.split(theta)
        y0 = problem.start(theta, y0, data[0])
        steps = None
        if problem.needs_steps:
            steps = record_steps(problem.model, vf, times, y0)
            Y = jnp.concatenate([y0[None], steps.y1])[obs_index]
        else:
            Y = grid_states_jax(problem.model, vf, times, obs_index, y0)
        if self.parts:
            return problem.parts(theta, Y, data, steps)
        return problem.cost_of_states(theta, Y, data, steps)


@dataclass(frozen=True)
class _Start:
    """The solved initial state at θ (:meth:`ODEProblem.start`), for the host-side solve."""

    problem: ODEProblem

    def __call__(self, theta, y0, user_data):
        return self.problem.start(theta, y0, user_data)


@jit(static_argnums=0)
def _evaluate(fn, theta, args):
    return fn(theta, *args)


def _initial_shape(initial, model, y0, num_extra, data) -> tuple[int, int]:
    """``(B, d)``: the shape of ``initial(theta_extra, data)``, checked without running it."""
    if y0 is not None:
        raise ValueError("give either y0 or an initial-state map `initial`, not both (pass y0=None)")
    num_extra = check_integer(num_extra, "num_extra_params", minimum=0)
    if not callable(initial):
        raise TypeError(f"initial must be callable as initial(theta_extra, data) -> (B, d), got {initial!r}")
    extra = jax.ShapeDtypeStruct((num_extra,), jnp.float64)
    try:
        out = jax.eval_shape(initial, extra, data)
    except Exception as exc:  # the map's own error, re-raised with context
        raise ValueError(
            f"initial(theta_extra, data) cannot be evaluated with theta_extra of shape ({num_extra},): {exc}"
        ) from exc
    shape = tuple(getattr(out, "shape", ()))
    d = "d" if model.data_dim is None else model.data_dim
    if len(shape) != 2 or min(shape) < 1 or (model.data_dim is not None and shape[1] != model.data_dim):
        raise ValueError(f"initial(theta_extra, data) must return initial states of shape (B, {d}), got {shape}")
    return shape


def _running_model(model, terms, D):
    """The model on the state [y, noise, integrals] when some term has a running cost."""
    from pyodejl.models.neural_ode import NeuralODE

    if getattr(model, "is_sde", False):
        names = [t.name for t in terms if has_running_cost(t)]
        raise NotImplementedError(
            f"the terms {names} integrate a running cost along the ODE's state; for an SDE that integral "
            "would need its own Itô step, which the SRI solvers do not take. Use per-step or sampled terms"
        )
    field = RunningCostField(model.vector_field, tuple(terms), D)
    return NeuralODE(
        field,
        solver=model.solver,
        rtol=model.rtol,
        atol=model.atol,
        dt=model.dt,
        max_steps=model.max_steps,
        controller=model.controller,
        error_dims=D if model.error_dims is None else model.error_dims,
    )


class ObservationLoss(Objective):
    """A loss of a Neural ODE's states at observation times, plus weighted terms.

    L(θ) = cost(θ_extra, Y(θ_vf), data) + Σᵢ wᵢ Rᵢ(θ, Y, steps). The general
    ODE objective; :class:`TrajectoryLoss` is the common case and
    classification losses with a readout are built on it too.

    Args:
        model: a :class:`pyodejl.NeuralODE` (any vector field).
        ts: ``(T,)`` strictly increasing times; ``ts[0]`` is the initial time.
        y0: ``(d,)`` or ``(B, d)`` initial data states (``d = model.data_dim``);
            augmentation zeros are appended.
        cost: hashable ``cost(theta_extra, Y, data) -> scalar``, ``Y`` ``(B, T, D)``.
        data: array (or pytree of arrays) passed to ``cost``.
        num_extra_params: parameters after the vector field's in θ (default 0).
        regularizers: loss terms (:mod:`pyodejl.regularizers`), default none.
        initial: optional hashable initial-state map ``initial(theta_extra,
            data) -> (B, d)`` (default None: the fixed ``y0``). With it, pass
            ``y0=None``: the initial state is a function of θ (e.g. the encoder
            of :class:`pyodejl.LatentODE`), solved at each θ and differentiated
            through in the frozen-grid replay (``"discrete"`` gradient, ``direct-*``
            Hessians, every regulariser). The continuous adjoints and the
            Gauss–Newton operators treat y0 as data and refuse such a loss.
        devices: JAX devices to split the batch of trajectories over: None or 1
            (default: one device), a count n (the first n of ``jax.devices()``)
            or a list of devices. B must be divisible by their number. See
            :mod:`pyodejl._sharding`: results equal the single-device ones up to
            the order of floating-point reductions.

    θ layout: ``[vector-field parameters (model.num_params), extra parameters]``.
    The batch of initial states is solved as one system: one step grid with a
    joint error norm (as torchdiffeq and seed 000 do).
    """

    is_ode = True

    def __init__(
        self,
        model,
        ts,
        y0,
        cost: Callable,
        data: Any = None,
        num_extra_params: int = 0,
        regularizers=None,
        devices=None,
        initial: Callable | None = None,
    ):
        if not (callable(getattr(model, "rhs", None)) and hasattr(model, "solver")):
            raise TypeError(f"model must be a pyodejl.NeuralODE or NeuralSDE, got {type(model).__name__}")
        self.model = model
        self.ts = check_times(ts)
        if initial is None:
            self.single = np.ndim(y0) == 1
            self.y0 = check_initial_state(y0, model.data_dim)
            B, d = self.y0.shape
        else:
            B, d = _initial_shape(initial, model, y0, num_extra_params, data)
            self.single, self.y0 = False, None
        self._B = B
        D = d + model.augment_dim
        if model.state_dim is None:
            model.check_state_dim(D)
        if data is not None:
            for leaf in jax.tree_util.tree_leaves(data):
                check_finite(np.asarray(leaf), "data")
        num_extra_params = check_integer(num_extra_params, "num_extra_params", minimum=0)
        self.num_params = model.num_params + int(num_extra_params)
        self.regularizers = check_terms(regularizers)
        for term in self.regularizers:
            term.check(model)
        running = [t for t in self.regularizers if has_running_cost(t)]
        # with an initial map the stored y0 holds only the appended entries (ODEProblem.start)
        y0_aug = np.zeros((B, 0)) if initial is not None else np.asarray(model.augment(to_device(self.y0)))
        if running:
            solve_model = _running_model(model, self.regularizers, D)
            noise = [term_noise(t, B, D) for t in running]
            y0_aug = np.concatenate([y0_aug] + noise + [np.zeros((B, len(running)))], axis=1)
            offset = D + sum(n.shape[1] for n in noise)
        else:
            solve_model, offset = model, 0
        self.problem = ODEProblem(solve_model, cost, D, self.regularizers, offset, initial)
        if self.problem.needs_steps and solver_spec(model.solver).tableau is None:
            raise NotImplementedError(
                f"terms that read the per-step record need an explicit solver; {model.solver} "
                "is implicit and its stages are Newton iterates inside Diffrax"
            )
        weights = np.array([t.weight for t in self.regularizers], dtype=np.float64)
        self._host_batch = (data, y0_aug)
        self.data = (None, to_device(weights), to_device(self.ts))
        self._ts = to_device(self.ts)
        self._sampled = any(is_sampled(t) for t in self.regularizers)
        self.place(devices)

    def place(self, devices):
        """Split the batch of trajectories over ``devices`` (in place; returns self).

        Args:
            devices: as the constructor's ``devices``: None or 1 (one device), a
                count n or a list of devices; B must be divisible by their number.
        """
        self.devices = resolve_devices(devices)
        put = batch_placement(self.devices, self._B)
        data, y0_aug = self._host_batch
        self.data = (put(data),) + tuple(self.data[1:])
        self._y0_aug = put(y0_aug)
        self._cache_key = self._cache = self._linearisation = None
        return self

    @property
    def weights(self) -> dict:
        """The current weight of each term, ``{name: w}``."""
        return {t.name: float(w) for t, w in zip(self.regularizers, np.asarray(self.data[1]))}

    def set_weights(self, weights: dict) -> None:
        """Set some terms' weights in place, ``{name: w}`` (the others keep theirs).

        Weights are data of the compiled loss, so a training loop can follow a
        schedule (:mod:`pyodejl.regularizers.schedules`) without recompiling.
        """
        from pyodejl.regularizers.base import updated_weights

        names = [t.name for t in self.regularizers]
        current = updated_weights(names, np.asarray(self.data[1]), weights)
        self.data = (self.data[0], to_device(current)) + tuple(self.data[2:])

    @property
    def batch_size(self) -> int:
        return self._B

    @property
    def state_dim(self) -> int:
        """D: the model state's width (augmentation included, appended integrals excluded)."""
        return self.problem.D

    # ---- hooks -------------------------------------------------------------
    def _vectorised_values(self) -> bool:
        # per-step terms on an adaptive solve need each θ's own grid: no single pure function
        # terms sampling extra observation times carry per-θ data (times, step sizes)
        if self._sampled:
            return False
        return not (solver_spec(self.model.solver).adaptive and self.problem.needs_steps)

    def value_function(self):
        if self._sampled:
            raise NotImplementedError(
                "a loss with terms that sample observation times has no single vectorised value "
                "function (their times and step sizes are fixed per θ); use value() or values()"
            )
        if not solver_spec(self.model.solver).adaptive:
            # fixed-step solvers: the grid does not depend on θ
            return self.direct_function(np.zeros(self.num_params))
        if self.problem.needs_steps:
            raise NotImplementedError(
                "a loss with per-step terms on an adaptive solve has no single vectorised value "
                "function (each θ has its own step grid); use value() or values()"
            )
        return _AdaptiveLoss(self.problem), (self._ts, self._y0_aug, self.data)

    def value(self, theta) -> float:
        """L(θ), the weighted total. θ: ``(p,)``."""
        if self._vectorised_values():
            return super().value(theta)
        theta = self.check_theta(theta)
        fn, args = self.direct_function(theta)
        val = float(_evaluate(fn, to_device(theta), args))
        if not np.isfinite(val):
            raise SolveError("the loss is not finite (NaN or inf) at this theta")
        return val

    def values(self, thetas, batch: int = 512) -> np.ndarray:
        """L at each row of ``thetas`` ``(n, p)``; NaN where a solve fails."""
        if self._vectorised_values():
            return super().values(thetas, batch)
        out = []
        for th in np.asarray(thetas, dtype=np.float64):
            try:
                out.append(self.value(th))
            except SolveError:
                out.append(np.nan)
        return np.asarray(out)

    def terms(self, theta) -> dict:
        """Each term's unweighted value, ``{"data": ..., name: ...}`` (floats).

        Computed on θ's accepted step grid (the discrete solve).
        """
        theta = self.check_theta(theta)
        _, args = self.direct_function(theta)
        parts = _evaluate(_GridLoss(self._replay_problem(), parts=True), to_device(theta), args)
        return {k: float(v) for k, v in parts.items()}

    def solve(self, theta):
        """The forward :class:`pyodejl.solving.Solution` at θ (cached per θ).

        With running-cost terms the states carry the appended entries after the
        first :attr:`state_dim`.
        """
        theta = np.asarray(theta, dtype=np.float64)
        # a sampled term's seed picks its times: part of the linearisation point
        key = (theta.tobytes(), tuple(sample_key(t) for t in self.regularizers))
        if key != self._cache_key:
            vf = theta[: self.model.num_params]
            y0 = self.initial_state(theta)
            if self._sampled:
                self._cache, self._linearisation = linearise(self, vf, y0)
            else:
                self._cache = adaptive_solve(self.problem.model, vf, self.ts, y0)
            self._cache_key = key
        return self._cache

    def initial_state(self, theta):
        """The solved initial state at θ, ``(B, D_solved)`` (appended entries included)."""
        if self.problem.initial is None:
            return self._y0_aug
        # the start does not depend on an SDE's paths: one compiled start serves every with_seed(k)
        return _evaluate(_Start(self._replay_problem()), to_device(np.asarray(theta, dtype=np.float64)),
                         (self._y0_aug, self.data[0]))

    def linearisation(self, theta):
        """``(solved times, data)`` at θ: the data tuple the compiled loss takes.

        Without sampled terms, ``(ts, self.data)``. With them (e.g.
        :class:`pyodejl.regularizers.LocalErrorEstimate`), the times add each
        term's sampled observation times and the data carries where they are
        and the term's per-θ constants (:mod:`pyodejl.regularizers.sampled`).
        """
        self.solve(theta)
        if not self._sampled:
            return self._ts, self.data
        times, sampled = self._linearisation
        return times, tuple(self.data[:3]) + (sampled,)

    def _explain_failure(self, theta):
        self.solve(theta)  # raises SolveError naming max_steps or divergence

    def direct_function(self, theta):
        sol = self.solve(theta)
        g = sol.grid
        _, data = self.linearisation(theta)
        args = (replay_times(self.problem.model, g, self._solved_start_shape()), to_device(g.obs_index),
                self._y0_aug, data)
        return _GridLoss(self._replay_problem()), args

    def _solved_start_shape(self):
        """A stand-in of the solved initial state's shape ``(B, D)``: an SDE grid's noise is drawn for it.
        With an initial-state map ``_y0_aug`` holds only the augmentation columns."""
        width = self._y0_aug.shape[1] + (self.problem.D if self.problem.initial is not None else 0)
        return np.zeros((self._B, width))

    def _replay_problem(self):
        # An SDE replay steps on the Brownian noise carried by its grid (replay_times), never on the
        # model's seed: one compiled replay then serves every with_seed(k), so fresh paths per
        # training step compile nothing new
        if getattr(self.problem.model, "is_sde", False):
            from dataclasses import replace

            return replace(self.problem, model=self.problem.model.with_seed(0))
        return self.problem

    def continuous_problem(self, theta=None):
        if self.problem.initial is not None:
            raise NotImplementedError(
                "this loss has an initial-state map (y0 depends on θ): the continuous adjoints take y0 as "
                "data and do not chain the adjoint at t0 into the map; use the 'discrete' gradient and the "
                "direct-* Hessian methods"
            )
        if getattr(self.model, "is_sde", False):
            raise NotImplementedError(
                "continuous adjoints (backsolve, interpolating, forward sensitivities and the adjoint-* Hessians) "
                "integrate sensitivity ODEs with ODE solvers; a Neural SDE's sensitivities obey an SDE on the same "
                "Brownian path (Li et al. 2020), which they do not solve. Use the 'discrete' gradient and the "
                "direct-direct, direct-adjoint, fd, fd-grad or elementwise Hessians"
            )
        if self.problem.needs_steps:
            names = [t.name for t in self.regularizers if getattr(t, "needs_steps", False)]
            raise NotImplementedError(
                f"the terms {names} read the per-step record of the discrete solve, which a continuous "
                "adjoint does not have; use the 'discrete' gradient and the direct-* Hessian methods"
            )
        if self._sampled:
            if theta is None:
                raise ValueError("this objective's terms sample times per θ: continuous_problem needs theta")
            times, data = self.linearisation(theta)
            return self.problem, (times, self._y0_aug, data)
        return self.problem, (self._ts, self._y0_aug, self.data)

    def default_chunk(self) -> int:
        """Tangents per batch so that one batch's residuals fit in about 1 GiB."""
        steps = self._cache.grid.num_steps if self._cache is not None else 256
        spec = solver_spec(self.model.solver)
        sizes = getattr(self.model.vector_field, "sizes", None)
        width = self._solved_start_shape().shape[1]
        widths = sum(sizes) + width if sizes is not None else 8 * width + 64
        per_tangent = 8 * 4 * steps * spec.stages * self.batch_size * widths
        return int(np.clip(2**30 // max(per_tangent, 1), 1, self.num_params))

    def continuous_gradient(self, kind, theta, seminorm: bool = False):
        """∇L by a continuous sensitivity method: ``"backsolve"``, ``"interpolating"`` or ``"forward"``.

        ``seminorm``: the adjoints' error control skips the parameter integral
        (:mod:`pyodejl.derivatives.continuous`); not for ``"forward"``.
        """
        from pyodejl.derivatives import continuous

        problem, args = self.continuous_problem(theta)
        if kind == "forward":
            if seminorm:
                raise ValueError("seminorm applies to the adjoint methods (backsolve, interpolating), not 'forward'")
            return continuous.gradient_forward_sensitivity(problem, to_device(theta), *args)
        if kind == "backsolve":
            return continuous.gradient_backsolve(problem, to_device(theta), *args, bool(seminorm))
        # The dense interpolant is allocated for the whole step budget: size it from the
        # steps this θ's forward solve takes (power-of-two buckets bound recompilation),
        # and fall back to the model's budget if Diffrax's own solve needs more.
        budget = self.model.max_steps
        dense = continuous.dense_step_budget(self.solve(theta).stats.num_steps, budget)
        g = continuous.gradient_interpolating(problem, to_device(theta), *args, bool(seminorm), dense)
        if dense < budget and not np.all(np.isfinite(to_host(g))):
            g = continuous.gradient_interpolating(problem, to_device(theta), *args, bool(seminorm), budget)
        return g

    # ---- extras ------------------------------------------------------------
    def predict(self, theta) -> np.ndarray:
        """States at ``ts``: ``(T, D)`` for a single y0, else ``(B, T, D)`` (appended integrals dropped)."""
        ys = self.solve(self.check_theta(theta)).ys[..., : self.problem.D]
        if self._sampled:  # drop the sampled terms' extra times
            ys = ys[:, np.searchsorted(self._cache.ts, self.ts)]
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
        regularizers: loss terms (:mod:`pyodejl.regularizers`), default none.
        devices: split the batch over JAX devices (see :class:`ObservationLoss`).

    Only the data dimensions of an augmented state enter the loss.
    """

    def __init__(self, model, ts, y0, targets, loss: str = "mse", regularizers=None, devices=None):
        if loss not in TRAJECTORY_COSTS:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(TRAJECTORY_COSTS)}")
        ts_arr = check_times(ts)
        y0_arr = np.asarray(y0, dtype=np.float64)
        tg = np.asarray(targets, dtype=np.float64)
        d = model.data_dim if model.data_dim is not None else (y0_arr.shape[-1] if y0_arr.ndim else 0)
        if y0_arr.ndim == 1 and tg.ndim == 2:
            tg = tg[None]
        if tg.ndim != 3 or y0_arr.ndim not in (1, 2):
            raise ValueError(
                "targets must be (T, d) with y0 (d,), or (B, T, d) with y0 (B, d); "
                f"got targets {np.shape(targets)} and y0 {y0_arr.shape}"
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
        super().__init__(
            model, ts_arr, y0_arr, TRAJECTORY_COSTS[loss], data=tg, regularizers=regularizers, devices=devices
        )
