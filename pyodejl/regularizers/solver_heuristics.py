"""Regularising what an adaptive solver already computes: error and stiffness estimates.

Pal, Ma, Shah & Rackauckas (2021), *Opening the Blackbox: Accelerating Neural
Differential Equations by Regularizing Internal Solver Heuristics*, ICML
(seed 004, ch. 5), and Pal, Edelman & Rackauckas (2023), *Locally Regularized
Neural Differential Equations*, ICML (seed 004, ch. 6).

At an accepted step j of size dt_j the explicit solver has, for free,

* E_j — the scaled local error estimate the step-size controller accepts the
  step on (:func:`pyodejl.solving.error_ratios`): the RMS over the controlled
  state entries of dt_j·Σᵢ(bᵢ − b̃ᵢ)kᵢ / (atol + rtol·max(|y_j|, |y_{j+1}|));
* S_j — Shampine's stiffness estimate ‖k_b − k_a‖ / ‖g_b − g_a‖ from the two
  stages at c = 1 (:func:`pyodejl.solving.shampine_stiffness`).

**Global terms** (ERNODE, SRNODE; seed 004 ch. 5 §1) sum them over the
accepted steps of the solve, weighted by the step sizes:

    R_E = Σ_j E_j·|dt_j|,     R_S = Σ_j S_j·|dt_j|.

They read the per-step record (``needs_steps``), so they are defined on the
discrete solve: the step sizes are constants (the grid is frozen, as Diffrax
and OrdinaryDiffEq treat them) and the estimates are differentiated through
the stages — the ``discrete`` gradient and the ``direct-*``, ``fd*`` and
``elementwise`` Hessians; the continuous adjoints refuse them.

**Which aggregate.** ``aggregate="sum"`` is the formula above (seed 004
ch. 5 §1, Eq. for (R_E)_g). The reference code behind seed 004's MNIST table
(RegNeuralDE.jl, ``experiments/mnist_node.jl``) saves E_j·dt_j at every
accepted step with a saving callback and regularises ``λ·mean(saved values)``
— ``aggregate="mean"``, i.e. R_E divided by the number of steps; the PhysioNet
variant notes that Σ_j E_j² "yields similar results". ``"max"`` is
max_j E_j·|dt_j|. With ``mean`` the weight of the seed's annealing schedule
(100 → 10) is on the scale of a single step's E·dt.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit, to_device
from pyodejl._validation import check_integer
from pyodejl.regularizers.base import Regularizer
from pyodejl.solving.adaptive_rk import initial_step
from pyodejl.solving.explicit_rk import rk_step_record
from pyodejl.solving.solvers import solver_spec
from pyodejl.solving.steps import StepRecord, error_ratios, shampine_stiffness

AGGREGATES = ("sum", "mean", "max")


def check_aggregate(aggregate) -> str:
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; expected one of {list(AGGREGATES)}")
    return aggregate


def controlled_dims(inputs) -> int:
    """The state entries step-size control sees: the model's ``error_dims``, else the data state D."""
    ed = getattr(inputs.model, "error_dims", None)
    return inputs.error_dims if ed is None else ed


def aggregate_steps(values, valid, aggregate: str):
    """Σ, mean or max of per-step ``values`` ``(N,)`` over the ``valid`` steps (values ≥ 0)."""
    values = jnp.where(valid, values, 0.0)
    if aggregate == "sum":
        return jnp.sum(values)
    if aggregate == "mean":
        return jnp.sum(values) / jnp.maximum(jnp.sum(valid), 1)
    return jnp.max(values)


def _why_no_stages(spec) -> str:
    if spec.implicit:
        return "is implicit (its stages are Newton iterates inside Diffrax)"
    return "is a multistep method without Runge–Kutta stages"


def _explicit_rk_spec(term, model, alternatives: str):
    """``model``'s solver facts; NotImplementedError (naming ``alternatives``) unless it has explicit RK stages."""
    spec = solver_spec(model.solver)
    if spec.tableau is None:
        raise NotImplementedError(
            f"{type(term).__name__} needs the stages of an explicit Runge–Kutta solver; {spec.name!r} "
            f"{_why_no_stages(spec)}. Use {alternatives}"
        )
    return spec


def require_error_estimate(term, model) -> None:
    """Raise unless ``model``'s solver has explicit stages and an embedded error estimate."""
    spec = _explicit_rk_spec(term, model, "dopri5, tsit5, dopri8 or bosh3")
    if not spec.has_error_estimate:
        raise ValueError(
            f"{type(term).__name__} needs an adaptive solver with an embedded error estimate; "
            f"{spec.name!r} takes fixed steps and has none. Use dopri5, tsit5, dopri8 or bosh3"
        )


def require_unit_stages(term, model) -> None:
    """Raise unless ``model``'s solver has two stages at c = 1 (Shampine's estimate)."""
    spec = _explicit_rk_spec(term, model, "dopri5, tsit5 or dopri8")
    if spec.unit_stages is None:
        if spec.is_sde:
            raise ValueError(
                f"{type(term).__name__} needs two stages of the step at one time with distinct states for "
                f"Shampine's stiffness estimate; {spec.name!r} has none. Use sriw1"
            )
        raise ValueError(
            f"{type(term).__name__} needs a solver with two stages at c = 1 for Shampine's stiffness "
            f"estimate; {spec.name!r} has fewer. Use dopri5, tsit5 or dopri8"
        )


class _GlobalHeuristic(Regularizer):
    needs_steps = True

    def __init__(self, weight: float = 1.0, aggregate: str = "sum"):
        super().__init__(weight)
        self.aggregate = check_aggregate(aggregate)

    def static_key(self):
        return (self.aggregate,)

    def __repr__(self):
        return f"{type(self).__name__}(weight={self.weight}, aggregate={self.aggregate!r})"

    def per_step(self, inputs):  # pragma: no cover - abstract
        raise NotImplementedError

    def value(self, inputs):
        steps = inputs.steps
        return aggregate_steps(self.per_step(inputs) * jnp.abs(steps.dt), steps.valid, self.aggregate)


class ErrorEstimate(_GlobalHeuristic):
    """ERNODE: R_E = Σ_j E_j·|dt_j| over the accepted steps (or their mean or max).

    Pal et al. (2021), seed 004 ch. 5 §1. E_j is the controller's scaled error
    (:func:`pyodejl.solving.error_ratios`, over the controlled entries).

    Args:
        weight: w ≥ 0 (default 1).
        aggregate: ``"sum"`` (default, the paper's formula), ``"mean"`` (the
            reference code's MNIST runs) or ``"max"``.

    Needs an adaptive explicit solver with an embedded pair (dopri5, tsit5,
    dopri8, bosh3) or, for a :class:`pyodejl.NeuralSDE`, its SRI solver
    (ERNSDE: E_j is the SDE error estimate δE₁ + E₂, :mod:`pyodejl.solving.sde`);
    gradients by ``"discrete"``.
    """

    name = "error_estimate"

    def check(self, model):
        require_error_estimate(self, model)

    def per_step(self, inputs):
        m = inputs.model
        return error_ratios(inputs.steps, m.rtol, m.atol, controlled_dims(inputs))


class StiffnessEstimate(_GlobalHeuristic):
    """SRNODE: R_S = Σ_j S_j·|dt_j| over the accepted steps (or their mean or max).

    Pal et al. (2021), seed 004 ch. 5 §1; S_j is Shampine's (1977) estimate
    (:func:`pyodejl.solving.shampine_stiffness`) from the two stages at c = 1.

    Args:
        weight: w ≥ 0 (default 1).
        aggregate: ``"sum"`` (default), ``"mean"`` or ``"max"``.

    Needs an explicit solver with two stages at c = 1 (dopri5, tsit5, dopri8;
    not bosh3, whose only c = 1 stage is its FSAL stage), or a
    :class:`pyodejl.NeuralSDE`'s SRI solver (SRNSDE: Shampine's quotient of its
    two diffusion stages at one c, :mod:`pyodejl.solving.sde`).
    """

    name = "stiffness_estimate"

    def check(self, model):
        require_unit_stages(self, model)

    def per_step(self, inputs):
        spec = solver_spec(inputs.model.solver)
        return shampine_stiffness(inputs.steps, spec.unit_stages, controlled_dims(inputs))


# ---- local regularisation (seed 004 ch. 6) ------------------------------------------------

SAMPLINGS = ("unbiased", "biased")
STEP_RULES = ("initial", "accepted")


@jit(static_argnums=0)
def _initial_step(model, theta_vf, t, y):
    spec = solver_spec(model.solver)
    if spec.is_sde:  # an SDE integrator starts with the model's dt0 (Hairer's rule is for ODEs)
        return jnp.asarray(model.dt)
    f = lambda t_, y_: model.rhs(t_, y_, theta_vf)
    return initial_step(f, t, y, f(t, y), spec.order, model.rtol, model.atol, model.error_dims)


def local_step(inputs) -> StepRecord:
    """One solver step from the sampled state, as a one-step :class:`~pyodejl.solving.StepRecord`.

    Reads ``inputs.extra_states[:, 0]`` (y(t_reg), the full solved state) and
    ``inputs.term_data = (t_reg, t_reg + dt)`` (constants). A step of length 0
    is marked invalid, so its estimates are 0 with finite derivatives.
    """
    y = inputs.extra_states[:, 0]
    model = inputs.model
    if solver_spec(model.solver).is_sde:
        from pyodejl.solving import sde

        t0, t1, noise = inputs.term_data
        return sde.local_step(model, inputs.theta_vf, inputs.ts[0], inputs.ts[-1], t0, t1, y, noise)
    f = lambda t, y_: model.rhs(t, y_, inputs.theta_vf)
    t0, t1 = inputs.term_data
    y1, err, _, g, k = rk_step_record(solver_spec(model.solver).tableau, f, t0, t1, y, f(t0, y))
    one = lambda x: x[None]
    return StepRecord(
        t=one(t0), dt=one(t1 - t0), y=one(y), y1=one(y1), k=one(k), stage_states=one(g), error=one(err),
        valid=one(t1 > t0),
    )


class _LocalHeuristic(Regularizer):
    """A solver heuristic at one sampled time (seed 004 Algorithms 6.1/6.2); see :class:`LocalErrorEstimate`."""

    def __init__(self, weight: float = 1.0, sampling: str = "unbiased", seed: int = 0, step: str = "accepted",
                 t_reg: float | None = None):
        super().__init__(weight)
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; expected one of {list(SAMPLINGS)}")
        if step not in STEP_RULES:
            raise ValueError(f"unknown step rule {step!r}; expected one of {list(STEP_RULES)}")
        check_integer(seed, "seed", minimum=0)
        if t_reg is not None:
            t_reg = float(t_reg)
            if not np.isfinite(t_reg):
                raise ValueError(f"t_reg must be a finite time, got {t_reg!r}")
        self.sampling, self.seed, self.step, self.t_reg = sampling, int(seed), step, t_reg

    def __repr__(self):
        at = f", t_reg={self.t_reg}" if self.t_reg is not None else ""
        return (f"{type(self).__name__}(weight={self.weight}, sampling={self.sampling!r}, seed={self.seed}, "
                f"step={self.step!r}{at})")

    def sample_key(self):
        return (self.sampling, self.seed, self.step, self.t_reg)

    def sample_time(self, ts, nodes=None) -> float:
        """t_reg for observation times ``ts`` (and, for biased sampling, the accepted nodes).

        Unbiased: t_0 + u·(t_end − t_0), u ~ U[0, 1) from ``seed``. Biased: the
        start of an accepted step drawn uniformly (``nodes`` ``(N + 1,)``, the
        step end points: one of ``nodes[:-1]``). An explicit ``t_reg`` wins.
        """
        if self.t_reg is not None:
            return self.t_reg
        rng = np.random.default_rng(self.seed)
        if self.sampling == "unbiased":
            return float(min(ts[0] + rng.random() * (ts[-1] - ts[0]), ts[-1]))
        nodes = np.asarray(nodes, dtype=np.float64)
        return float(nodes[rng.integers(len(nodes) - 1)])

    def extra_times(self, ctx):
        nodes = None
        if self.t_reg is None and self.sampling == "biased":
            grid = ctx.plain().grid
            nodes = grid.times[: grid.num_steps + 1]
        return np.array([self.sample_time(ctx.ts, nodes)])

    def term_data(self, ctx, times, states):
        t0, t_end = float(times[0]), float(ctx.ts[-1])
        if self.step == "initial":
            h = float(_initial_step(ctx.model, to_device(ctx.theta_vf), t0, to_device(states[:, 0])))
            t1 = min(t0 + h, t_end)
        else:
            # the accepted step of the solve at the user's times that contains t0
            grid = ctx.plain().grid
            nodes = grid.times[: grid.num_steps + 1]
            j = int(np.clip(np.searchsorted(nodes, t0, side="right") - 1, 0, grid.num_steps - 1))
            t1 = float(nodes[j + 1]) if t0 == nodes[j] else min(t0 + float(nodes[j + 1] - nodes[j]), t_end)
        if solver_spec(ctx.model.solver).is_sde:
            # the step's Brownian noise, from the paths of the solve, is a per-θ constant like its size
            from pyodejl.solving.sde import interval_noise

            noise = interval_noise(ctx.model, ctx.ts[0], t_end, t0, t1, states[:, 0])
            return (np.float64(t0), np.float64(t1), noise)
        return (np.float64(t0), np.float64(t1))


class LocalErrorEstimate(_LocalHeuristic):
    """Local ERNODE: E·|dt| of one solver step from a sampled time (seed 004 Algorithms 6.1, 6.2).

    Pal, Edelman & Rackauckas (2023), *Locally Regularized Neural Differential
    Equations*, ICML (seed 004 ch. 6). At a time t_reg,

    * ``sampling="unbiased"`` (Algorithm 6.1): t_reg = t_0 + u·(t_end − t_0),
      u ~ U[0, 1) drawn from ``seed``;
    * ``sampling="biased"`` (Algorithm 6.2): t_reg is the start of one of the
      solve's accepted steps, drawn uniformly from ``seed`` — steps crowd where
      the dynamics are hard, so samples do too. (The reference code draws from
      all saved times, t_end included, where no step remains; we draw step
      starts.)

    the objective adds t_reg to its observation times, and the term takes one
    step of the model's solver from y(t_reg), of size

    * ``step="accepted"`` (default): the step the solver takes there — the
      size of the accepted step of the solve (at the user's times) that
      contains t_reg, clipped to t_end − t_reg. For a biased sample it is
      exactly the solve's step j, so the expected value over samples is
      :class:`ErrorEstimate` with ``aggregate="mean"`` (tested);
    * ``step="initial"`` (the reference code's: a fresh integrator started at
      t_reg): Hairer's starting step at (t_reg, y(t_reg)), clipped to
      t_end − t_reg. That rule aims at 1 % of the tolerance, so its step is
      short and E·dt tiny (at rtol 1e-7 about 1e-5 of the accepted step's);
      at tight tolerances its error estimate sits near round-off and so does
      its derivative.

    R = E(t_reg)·|dt|. t_reg and dt are per-θ constants (like the step grid),
    y(t_reg) is an observed state: so *every* gradient method differentiates
    the term — ``discrete``, ``backsolve``, ``interpolating``, ``forward`` —
    and every Hessian method, the continuous second-order adjoints included.

    **At t_end.** A sample at t_end (an explicit ``t_reg=t_end``, or the
    unbiased draw rounding up) leaves no span to step over: dt is clipped to
    0, the step is empty and R = 0 with zero derivatives.

    Resampling: a term with a new ``seed`` (e.g. the training step) draws a new
    t_reg; it reuses the compiled loss (terms compare equal regardless of seed).

    Args:
        weight: w ≥ 0 (default 1).
        sampling: ``"unbiased"`` (default) or ``"biased"``.
        seed: seed of the draw (default 0).
        step: ``"accepted"`` (default) or ``"initial"``.
        t_reg: a fixed time in [t_0, t_end] instead of a draw (default None).
    """

    name = "local_error_estimate"

    def check(self, model):
        require_error_estimate(self, model)

    def value(self, inputs):
        rec = local_step(inputs)
        m = inputs.model
        return error_ratios(rec, m.rtol, m.atol, controlled_dims(inputs))[0] * jnp.abs(rec.dt[0])


class LocalStiffnessEstimate(_LocalHeuristic):
    """Local SRNODE: S·|dt| of one solver step from a sampled time (seed 004 ch. 6).

    As :class:`LocalErrorEstimate` with Shampine's stiffness estimate
    (:func:`pyodejl.solving.shampine_stiffness`) in place of the error
    estimate. (Seed 004 ch. 6 §4 reports that its stiffness variant did not
    help and leaves it out of its tables.) Needs a solver with two stages at
    c = 1 and an embedded pair: dopri5, tsit5, dopri8.
    """

    name = "local_stiffness_estimate"

    def check(self, model):
        require_error_estimate(self, model)
        require_unit_stages(self, model)

    def value(self, inputs):
        rec = local_step(inputs)
        spec = solver_spec(inputs.model.solver)
        return shampine_stiffness(rec, spec.unit_stages, controlled_dims(inputs))[0] * jnp.abs(rec.dt[0])
