"""Forward solves: adaptive and on a frozen step grid (``lax.scan``).

Two ways to integrate the same ODE:

* :func:`adaptive_solve` runs the adaptive solver (our compact loop for
  explicit pairs, :mod:`pyodejl.solving.adaptive_rk`; Diffrax for the implicit
  ``kvaerno5``) with steps clipped to land on every observation time, and
  reports the accepted step grid and the solve statistics. It is what loss
  *values* use.
* :func:`grid_states` replays exactly the same solver steps on a given grid in
  a ``lax.scan`` (no step-size control, no while loop). Its derivatives are the
  derivatives of the numerical solution map with the step sizes held fixed —
  the discretise-then-optimise derivative that Diffrax's own
  ``RecursiveCheckpointAdjoint``/``DirectAdjoint`` compute, since Diffrax
  treats step sizes as constants. The scan is much cheaper to differentiate
  twice than Diffrax's checkpointed while loop.

Every solve also has a per-step record (:class:`pyodejl.solving.StepRecord`:
stage values, stage states, error estimates), produced by the same replay
(:func:`record_steps`), for stiffness analyses and solver-heuristic regularisers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit, to_device
from pyodejl._sharding import to_host
from pyodejl.solving.adaptive_rk import adaptive_rk, controlled, initial_step
from pyodejl.solving.explicit_rk import rk_step, rk_step_record
from pyodejl.solving.solvers import solver_spec
from pyodejl.solving.steps import StepRecord


class SolveError(RuntimeError):
    """An ODE solve failed: it hit its step limit or its solution diverged."""


@dataclass
class StepGrid:
    """The accepted steps of a solve, padded to a bucketed length.

    Attributes:
        times: ``(n_pad + 1,)`` step end points; entries past ``num_steps`` repeat
            the final time (zero-length steps, skipped by the scan).
        obs_index: ``(T,)`` index into ``times`` of each observation time.
        num_steps: number of real steps.
        noise: for SDE models, the Brownian noise of every step
            (:class:`pyodejl.solving.sde.StepNoise`, drawn by the first replay); else None.
    """

    times: np.ndarray
    obs_index: np.ndarray
    num_steps: int
    noise: object = field(default=None, repr=False)


@dataclass
class SolveStats:
    """Statistics of one forward solve.

    ``nfe`` counts vector-field evaluations: for adaptive (FSAL) methods one
    evaluation at the start, stages − 1 per attempted step and one probe of the
    automatic initial step size (none when ``dt`` is given); for fixed-step
    methods stages per step.
    For the implicit ``kvaerno5`` it counts stages only: the evaluations inside
    each stage's Newton iterations are not included. For SDE solvers it counts
    drift plus diffusion evaluations per attempted step (``sriw1``: 2 + 4).
    """

    num_steps: int
    num_accepted_steps: int
    num_rejected_steps: int
    nfe: int

    def as_dict(self) -> dict:
        return dict(
            num_steps=self.num_steps,
            num_accepted_steps=self.num_accepted_steps,
            num_rejected_steps=self.num_rejected_steps,
            nfe=self.nfe,
        )


@dataclass
class Solution:
    """Result of :meth:`pyodejl.NeuralODE.solve`.

    Attributes:
        ts: ``(T,)`` observation times.
        ys: ``(T, D)`` or ``(B, T, D)`` state at each observation time (the full,
            possibly augmented, state).
        stats: :class:`SolveStats`.
        grid: the accepted :class:`StepGrid`.
        steps: the :class:`~pyodejl.solving.StepRecord` of the accepted steps
            (NumPy arrays, batch axis dropped for a single trajectory), computed
            on first access by replaying the accepted grid (one more solve's work).
    """

    ts: np.ndarray
    ys: np.ndarray
    stats: SolveStats
    grid: StepGrid = field(repr=False)
    _record: object = field(default=None, repr=False)
    _single: bool = field(default=False, repr=False)
    _steps: StepRecord | None = field(default=None, repr=False)

    @property
    def steps(self) -> StepRecord:
        if self._steps is None:
            if self._record is None:  # pragma: no cover - every solve sets it
                raise AttributeError("this solution carries no step record")
            self._steps = self._record().trimmed(self.grid.num_steps, single=self._single)
        return self._steps

    def single(self) -> Solution:
        """The same solution for one trajectory: ``ys`` ``(T, D)``, steps without a batch axis."""
        return Solution(self.ts, self.ys[0], self.stats, self.grid, self._record, True)


def _bucket(n: int) -> int:
    """Smallest size >= n in 8, 12, 16, 24, 32, 48, ...: bounds recompilations
    to O(log n) shapes while wasting at most a third of the scan."""
    size = 8
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


def nearest_nodes(times, ts, xp=np):
    """Index of the node of ``times`` nearest each observation time (``xp``: numpy or jax.numpy).

    Diffrax's clipping controller lands on each observation time up to an ulp
    or two; ``times`` may end in inf padding.
    """
    right = xp.clip(xp.searchsorted(times, ts), 1, len(times) - 1)
    obs = xp.where(xp.abs(times[right] - ts) <= xp.abs(times[right - 1] - ts), right, right - 1)
    return xp.concatenate([xp.zeros(1, dtype=obs.dtype), obs[1:]])


def _pad_grid(times: np.ndarray, ts: np.ndarray) -> StepGrid:
    n = len(times) - 1
    # take the node nearest each observation time and snap it to the exact time
    obs = nearest_nodes(times, ts)
    bad = np.abs(times[obs] - ts) > 1e-12 * max(1.0, float(np.max(np.abs(ts))))
    if np.any(bad):  # pragma: no cover - guards the clipping controller
        raise SolveError(f"step grid does not contain observation times {ts[bad]}")
    times = times.copy()
    times[obs] = ts
    n_pad = _bucket(n)
    padded = np.concatenate([times, np.full(n_pad - n, times[-1])])
    return StepGrid(padded, obs.astype(np.int32), n)


def fixed_grid(ts: np.ndarray, dt: float) -> np.ndarray:
    """Uniform steps of size <= dt inside each observation interval."""
    pieces = [ts[:1]]
    for a, b in zip(ts[:-1], ts[1:]):
        n = max(1, math.ceil((b - a) / dt - 1e-9))
        pieces.append(np.linspace(a, b, n + 1)[1:])
    return np.concatenate(pieces)


def _rhs(model, t, y, theta):
    return model.rhs(t, y, theta)


def _term(model):
    return diffrax.ODETerm(partial(_rhs, model))


def state_norm(model):
    """The error norm of step-size control: RMS over the controlled state entries
    (all of them unless ``model.error_dims`` is set); None means Diffrax's default."""
    if model.error_dims is None:
        return None

    def norm(x):
        leaves = jax.tree_util.tree_leaves(x)
        first = controlled(leaves[0], model.error_dims)
        flat = jnp.concatenate([first.ravel()] + [leaf.ravel() for leaf in leaves[1:]])
        return jnp.sqrt(jnp.mean(flat * flat))

    return norm


def make_controller(model, ts=None, controlled_state=True, norm=None):
    """The model's step-size controller for Diffrax, clipped so that steps land on ``ts``.

    ``controlled_state``: the solved state's first leaf is the model state, so
    the model's ``error_dims`` applies (forward solves); backward adjoint
    solves use Diffrax's norm over every entry. ``norm``: measure the scaled
    error with this function instead (e.g. an adjoint's seminorm).
    """
    if norm is None and controlled_state:
        norm = state_norm(model)
    return model.controller.to_diffrax(model.rtol, model.atol, norm=norm, step_ts=ts)


def adaptive_states(model, theta, ts, y0):
    """One adaptive solve, pure and traceable (jit- and vmap-compatible).

    Explicit solvers run :func:`pyodejl.solving.adaptive_rk.adaptive_rk`;
    the implicit ``kvaerno5`` runs ``diffrax.diffeqsolve`` with the same
    controller (Diffrax's ``PIDController`` clipped to ``ts``) and the same
    initial step. Either way every step ends on each observation time.

    Args:
        model: a :class:`pyodejl.NeuralODE` with an adaptive solver.
        theta: ``(p_vf,)`` vector-field parameters.
        ts: ``(T,)`` strictly increasing observation times.
        y0: ``(B, D)`` initial states.

    Returns:
        ``(times, ys, stats, ok)``: accepted step end points ``(max_steps + 1,)``
        (``ts[0]`` first, inf after the last), states at ``ts`` ``(T, B, D)``,
        (attempted, accepted, rejected) step counts, and whether ``ts[-1]``
        was reached.
    """
    spec = solver_spec(model.solver)
    if spec.is_sde:
        from pyodejl.solving import sde

        return sde.adaptive_states(model, theta, ts, y0)
    f = lambda t, y: model.rhs(t, y, theta)
    if spec.tableau is not None:
        return adaptive_rk(
            spec.tableau, spec.order, model.rtol, model.atol, model.max_steps, f, ts, y0,
            dt0=model.dt, controller=model.controller, error_dims=model.error_dims,
        )
    dt0 = model.dt
    if dt0 is None:
        dt0 = initial_step(f, ts[0], y0, f(ts[0], y0), spec.order, model.rtol, model.atol, model.error_dims)
    sol = diffrax.diffeqsolve(
        _term(model),
        spec.make(model.rtol, model.atol),
        ts[0],
        ts[-1],
        dt0,
        y0,
        args=theta,
        saveat=diffrax.SaveAt(steps=True),
        stepsize_controller=make_controller(model, ts),
        max_steps=model.max_steps,
        throw=False,
        adjoint=diffrax.ForwardMode(),
    )
    times = jnp.concatenate([ts[:1], sol.ts])
    nodes = jnp.concatenate([y0[None], sol.ys])
    obs = nearest_nodes(times, ts, jnp)
    stats = (sol.stats["num_steps"], sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"])
    return times, nodes[obs], stats, sol.result == diffrax.RESULTS.successful


_adaptive = jit(adaptive_states, static_argnums=0)


def _sde_adaptive_states(model, theta, ts, y0, seed):
    from pyodejl.solving import sde

    return sde.adaptive_states(model, theta, ts, y0, seed)


# SDE solves hold a Brownian tree whose compile the fast options cut ~4× (see sde._noise_kernel);
# the seed is an argument, so one compiled solve serves every seed of a model
_adaptive_sde = jit(_sde_adaptive_states, static_argnums=0, fast_compile=True)


def replay_times(model, grid: StepGrid, y0):
    """What a replay of ``model`` from ``y0`` ``(B, D)`` steps on for the frozen ``grid``: its node
    times (device array) or, for an SDE, a :class:`pyodejl.solving.sde.SDEGrid` of node times and
    their Brownian noise (drawn on first use and kept with the grid)."""
    if not solver_spec(model.solver).is_sde:
        return to_device(grid.times)
    from pyodejl.solving.sde import replay_grid

    if grid.noise is None:
        grid.noise = replay_grid(model, grid.times, y0).noise
    return replay_grid(model, grid.times, y0, grid.noise)


def _node_times(times):
    return getattr(times, "times", times)


def raise_for_failure(model, ok, ys, t_end=None):
    """Turn a failed or non-finite solve into a :class:`SolveError` naming the cause."""
    if not bool(ok):
        remedy = "" if solver_spec(model.solver).is_sde else ", or use a stiff solver such as 'kvaerno5'"
        raise SolveError(
            f"the {model.solver} solve hit max_steps={model.max_steps} (or its step size "
            f"underflowed) before reaching t={t_end}; the dynamics may be stiff or blowing up. "
            f"Raise max_steps or loosen rtol/atol{remedy}."
        )
    if not np.all(np.isfinite(ys)):
        raise SolveError(
            f"the {model.solver} solve diverged: the state became non-finite (inf or NaN)"
        )


def adaptive_solve(model, theta, ts, y0) -> Solution:
    """Solve once and return states at ``ts``, the accepted grid and statistics.

    Args:
        model: a :class:`pyodejl.NeuralODE`.
        theta: ``(p_vf,)`` vector-field parameters.
        ts: ``(T,)`` strictly increasing observation times.
        y0: ``(B, D)`` initial (augmented) states.

    Returns:
        :class:`Solution` with ``ys`` of shape ``(B, T, D)``.

    Raises:
        SolveError: the solve hit ``max_steps`` or diverged.
    """
    ts = np.asarray(ts, dtype=np.float64)
    spec = solver_spec(model.solver)
    if not spec.adaptive:
        times = fixed_grid(ts, model.dt)
        grid = _pad_grid(times, ts)
        ys = to_host(grid_states(model, to_device(theta), grid, to_device(y0)))
        raise_for_failure(model, True, ys)
        n = grid.num_steps
        stats = SolveStats(n, n, 0, n * spec.evaluations_per_step())
        return Solution(ts, np.moveaxis(ys, 0, 1), stats, grid, _recorder(model, theta, grid, y0))
    args = (to_device(theta), to_device(ts), to_device(y0))
    if spec.is_sde:  # compiled once per model up to its seed, which is data
        times, ys, (n_steps, n_acc, n_rej), ok = _adaptive_sde(model.with_seed(0), *args, model.seed)
    else:
        times, ys, (n_steps, n_acc, n_rej), ok = _adaptive(model, *args)
    ys = to_host(ys)
    raise_for_failure(model, ok, ys, ts[-1])
    times = to_host(times)
    grid = _pad_grid(times[np.isfinite(times)], ts)
    n_steps = int(n_steps)
    # FSAL: one evaluation at (t0, y0), then stages - 1 per attempted step;
    # the automatic initial step adds one probe evaluation; a multistep method
    # adds its start-up steps' extra evaluations (vcab3: 2 Bogacki–Shampine steps);
    # SDE steps carry nothing over (drift + diffusion evaluations per attempted step)
    nfe = n_steps * spec.evaluations_per_step()
    if not spec.is_sde:
        nfe += 1 + (1 if model.dt is None else 0) + spec.startup_evaluations
    stats = SolveStats(n_steps, int(n_acc), int(n_rej), nfe)
    return Solution(ts, np.moveaxis(ys, 0, 1), stats, grid, _recorder(model, theta, grid, y0))


def _recorder(model, theta, grid, y0):
    return lambda: _record_jit(model, to_device(theta), replay_times(model, grid, y0), to_device(y0))


#: Replays of states with at least this many entries (batch × dimension) skip the
#: zero-length padding steps with ``lax.cond`` and checkpoint each step
#: (``jax.checkpoint``): reverse mode then stores two states per step rather than
#: every stage's intermediate values. For seed 004's 784 → 100 → 784 field at
#: batch 512 (``benchmarks/large_node_curvature.py``) one Hessian-vector product
#: peaked at 1.3 GB instead of 3.8 GB (18 steps) in the same time, and skipping the
#: padding cut a gradient by 29 % (5 steps padded to 8). Smaller states keep the
#: plain scan, where a branch costs more than the arithmetic it saves.
REMAT_MIN_STATE_SIZE = 2**15


def remat_replay(y0, record=False) -> bool:
    """Whether the replay of ``y0`` ``(B, D)`` checkpoints its steps (never when recording stages)."""
    return not record and y0.size >= REMAT_MIN_STATE_SIZE


def _grid_scan(model, theta, times, y0, record=False):
    """Replay the solver's steps on ``times``; zero-length padding steps change nothing.

    Returns the states at every node ``(N + 1, B, D)``, each step's local error
    estimate ``(N, B, D)`` and, with ``record`` (explicit solvers), the stage
    states and stage derivatives ``(N, s, B, D)`` (else None).
    """
    spec = solver_spec(model.solver)
    if spec.is_sde:
        from pyodejl.solving import sde

        return sde.grid_scan(model, theta, times, y0, record)
    pairs = jnp.stack([times[:-1], times[1:]], axis=1)
    tab = spec.tableau
    f = lambda t, y: model.rhs(t, y, theta)

    if tab is not None:

        # Padding steps have t1 == t0: h = 0 makes them exact no-ops
        # (y1 = y0, f1 = f0), cheaper than branching around them.
        def step(carry, t01):
            y, f0 = carry
            if record:
                y1, err, f1, g, k = rk_step_record(tab, f, t01[0], t01[1], y, f0)
                return (y1, f1), (y1, err, g, k)
            y1, err, f1 = rk_step(tab, f, t01[0], t01[1], y, f0)
            return (y1, f1), (y1, err, None, None)

        body = step
        if remat_replay(y0, record):
            # Large states: branch around padding steps (their stages cost as much as a
            # real step's), and keep only each step's carry for differentiation,
            # recomputing its stages instead of storing them.
            def body(carry, t01):
                skip = lambda c, _: (c, (c[0], jnp.zeros_like(c[0]), None, None))
                return jax.lax.cond(t01[1] > t01[0], step, skip, carry, t01)

            body = jax.checkpoint(body, prevent_cse=False)
        _, (ys, errs, gs, ks) = jax.lax.scan(body, (y0, f(times[0], y0)), pairs)
    else:
        solver = spec.make(model.rtol, model.atol)
        term = _term(model)
        state = solver.init(term, times[0], times[1], y0, theta)

        def step(carry, t01):
            y, st = carry
            t0, t1 = t01[0], t01[1]

            def advance(_):
                y1, err, _, st1, _ = solver.step(term, t0, t1, y, theta, st, made_jump=False)
                return (y1, st1), (y1, err)

            return jax.lax.cond(t1 > t0, advance, lambda _: ((y, st), (y, jnp.zeros_like(y))), None)

        _, (ys, errs) = jax.lax.scan(step, (y0, state), pairs)
        gs = ks = None
    return jnp.concatenate([y0[None], ys], axis=0), errs, gs, ks


def record_steps(model, theta, times, y0) -> StepRecord:
    """The :class:`StepRecord` of a replay on the node times ``times`` (pure, differentiable).

    Args:
        model: a :class:`pyodejl.NeuralODE` or :class:`pyodejl.NeuralSDE`.
        theta: ``(p,)`` vector-field parameters.
        times: ``(N + 1,)`` step end points; repeated final entries are padding
            (:func:`replay_times`: an SDE's may carry their noise).
        y0: ``(B, D)``.
    """
    ys, errs, gs, ks = _grid_scan(model, theta, times, y0, record=True)
    times = _node_times(times)
    dt = jnp.diff(times)
    return StepRecord(t=times[:-1], dt=dt, y=ys[:-1], y1=ys[1:], k=ks, stage_states=gs, error=errs, valid=dt > 0)


_record_jit = jit(record_steps, static_argnums=0)


def grid_states_jax(model, theta, times, obs_index, y0):
    """States at the observation nodes of a frozen grid; pure and differentiable.

    Returns ``(T, B, D)``.
    """
    ys, _, _, _ = _grid_scan(model, theta, times, y0)
    return ys[obs_index]


def grid_states(model, theta, grid: StepGrid, y0):
    """:func:`grid_states_jax` for a :class:`StepGrid` (jit-compiled)."""
    return _grid_states_jit(model, theta, replay_times(model, grid, y0), to_device(grid.obs_index), y0)


_grid_states_jit = jit(grid_states_jax, static_argnums=0)
