"""Neural SDEs: drift, diagonal diffusion, an adaptive SRI solver and fixed Brownian paths, as one hashable value."""

from __future__ import annotations

import equinox as eqx
import numpy as np

from pyodejl._jit import to_device
from pyodejl._validation import check_initial_state, check_integer, check_number, check_theta, check_times
from pyodejl.models.neural_ode import batched_call
from pyodejl.models.vector_field import check_vector_field, output_shape
from pyodejl.solving.controllers import resolve_controller
from pyodejl.solving.sde import NOISE_TYPES, SDESolver, sde_solver_spec


class NeuralSDE(eqx.Module):
    """The Itô SDE dy = a(t, y; θ_a) dt + b(t, y; θ_b) ⊙ dW with diagonal noise, solved adaptively.

    Seed 004 ch. 5 §3.2 (Neural SDEs regularised by ERNSDE and SRNSDE; Pal
    et al. 2021). Solved by an adaptive stochastic Runge–Kutta method of
    Rößler's SRI family (Rößler 2010) with Rackauckas & Nie's (2017) error
    estimate, which exposes its stages and error estimate per step
    (:mod:`pyodejl.solving.sde`), so :class:`pyodejl.regularizers.ErrorEstimate`,
    :class:`~pyodejl.regularizers.StiffnessEstimate` and their local variants
    apply as they do to Neural ODEs.

    Args:
        drift: a vector field (the protocol of :mod:`pyodejl.models.vector_field`):
            ``num_params`` and a pure JAX ``__call__(t, y, theta) -> (D,)``.
        diffusion: a vector field of the same protocol whose output has the
            state's shape ``(D,)``: entry i multiplies dW_i in the equation of y_i.
        noise: ``"diagonal"`` (the only noise type; others raise ValueError).
        solver: an SDE solver or its name (default ``"sriw1"``; ``"sosri"`` and ``"sosri2"`` are seed 004's; see
            :data:`pyodejl.solving.sde.SDE_SOLVERS`). ODE solvers raise ValueError.
        dt0: the first step of the adaptive solve (default 0.01; > 0).
        rtol: relative tolerance of the error estimate (default 1e-3).
        atol: absolute tolerance of the error estimate (default 1e-3).
        max_steps: attempted-step limit of one solve (default 4096); hitting
            it raises :class:`pyodejl.SolveError`.
        seed: the Brownian paths (default 0). Trajectory b of a batch follows
            the path keyed by ``fold_in(key(seed), b)`` on [ts[0], ts[-1]]: the
            paths are common random numbers, so a loss is a deterministic function of θ.
        brownian_tol: resolution of the virtual Brownian tree (default None:
            2⁻²⁰ of the solved time span).
        controller: step-size controller (default ``"pid"``).

    θ layout: ``[drift θ (drift.num_params), diffusion θ (diffusion.num_params)]``.
    The object is immutable and hashable: compiled functions are cached per model.
    """

    drift: object = eqx.field(static=True)
    diffusion: object = eqx.field(static=True)
    noise: str = eqx.field(static=True)
    solver: SDESolver = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    seed: int = eqx.field(static=True)
    brownian_tol: float | None = eqx.field(static=True)
    controller: object = eqx.field(static=True)

    #: the state is never augmented and every entry enters step-size control
    #: (attributes the observed-ODE losses read from any model)
    augment_dim = 0
    error_dims = None
    is_sde = True

    def __init__(
        self,
        drift,
        diffusion,
        noise: str = "diagonal",
        solver="sriw1",
        dt0: float = 0.01,
        rtol: float = 1e-3,
        atol: float = 1e-3,
        max_steps: int = 4096,
        seed: int = 0,
        brownian_tol: float | None = None,
        controller=None,
    ):
        for name, field in (("drift", drift), ("diffusion", diffusion)):
            try:
                check_vector_field(field)
            except TypeError as exc:
                raise TypeError(f"the {name} of a NeuralSDE: {exc}") from None
        if noise not in NOISE_TYPES:
            raise ValueError(
                f"unknown noise type {noise!r}; expected one of {list(NOISE_TYPES)} "
                "(diagonal: the diffusion returns the state's shape and entry i drives y_i)"
            )
        spec = sde_solver_spec(solver)
        self.drift, self.diffusion, self.noise, self.solver = drift, diffusion, noise, spec
        self.dt = check_number(dt0, "dt0")
        self.rtol = check_number(rtol, "rtol")
        self.atol = check_number(atol, "atol")
        self.max_steps = check_integer(max_steps, "max_steps")
        self.seed = check_integer(seed, "seed", minimum=0)
        self.brownian_tol = None if brownian_tol is None else check_number(brownian_tol, "brownian_tol")
        self.controller = resolve_controller(controller, True)
        if self.state_dim is not None:
            self.check_state_dim(self.state_dim)

    def with_seed(self, seed: int) -> NeuralSDE:
        """The same model on another set of Brownian paths."""
        return NeuralSDE(
            self.drift, self.diffusion, self.noise, self.solver, self.dt, self.rtol, self.atol, self.max_steps,
            seed, self.brownian_tol, self.controller,
        )

    @property
    def num_drift_params(self) -> int:
        return int(self.drift.num_params)

    @property
    def num_params(self) -> int:
        """Drift plus diffusion parameters."""
        return self.num_drift_params + int(self.diffusion.num_params)

    @property
    def vector_field(self):
        """The drift (what code written for Neural ODEs reads as the model's vector field)."""
        return self.drift

    @property
    def state_dim(self) -> int | None:
        """D, when the drift or the diffusion fixes it; else None (read from y0)."""
        dims = {getattr(f, "state_dim", None) for f in (self.drift, self.diffusion)} - {None}
        if len(dims) > 1:
            raise ValueError(f"the drift and the diffusion fix different state dimensions {sorted(dims)}")
        return dims.pop() if dims else None

    @property
    def data_dim(self) -> int | None:
        return self.state_dim

    def check_state_dim(self, D: int) -> None:
        """Raise ValueError unless the drift maps ``(D,)`` to ``(D,)`` and the diffusion's output fits the noise."""
        shape = output_shape(self.drift, D, "the drift")
        if shape != (D,):
            raise ValueError(f"the drift a(t, y, theta) must return the state's shape ({D},), got {shape}")
        shape = output_shape(self.diffusion, D, "the diffusion")
        if shape != (D,):
            raise ValueError(
                f"with noise={self.noise!r} the diffusion b(t, y, theta) must return the state's shape ({D},) — "
                f"one noise amplitude per state entry — got {shape}"
            )

    def init(self, seed: int = 0) -> np.ndarray:
        """Initial θ: the drift's ``init(seed)`` then the diffusion's."""
        parts = []
        for name, field in (("drift", self.drift), ("diffusion", self.diffusion)):
            if not hasattr(field, "init"):
                raise NotImplementedError(f"the {name} {field!r} has no init(seed); give theta explicitly")
            parts.append(np.asarray(field.init(seed), dtype=np.float64))
        return np.concatenate(parts)

    def rhs(self, t, y, theta):
        """The drift a(t, y; θ_a) for ``y`` ``(D,)`` or ``(..., D)``; θ is the whole ``(p,)``."""
        return batched_call(self.drift, t, y, theta[: self.num_drift_params])

    def diffusion_rhs(self, t, y, theta):
        """The diagonal diffusion b(t, y; θ_b), y's shape; θ is the whole ``(p,)``."""
        return batched_call(self.diffusion, t, y, theta[self.num_drift_params :])

    def augment(self, y0):
        return y0

    def solve(self, theta, ts, y0):
        """Solve from ``y0`` on the model's Brownian paths and return the state at every time in ``ts``.

        Args:
            theta: ``(num_params,)``.
            ts: ``(T,)`` strictly increasing times; ``ts[0]`` is the initial time.
            y0: ``(D,)`` or ``(B, D)``; trajectory b has its own path.

        Returns:
            :class:`pyodejl.solving.Solution`: ``ys`` ``(T, D)`` or ``(B, T, D)``;
            ``steps`` the per-step record (stages: drift then diffusion; error E = δE₁ + E₂).
        """
        from pyodejl.solving.integrate import adaptive_solve

        theta = check_theta(theta, self.num_params)
        ts = check_times(ts)
        y0 = np.asarray(y0, dtype=np.float64)
        single = y0.ndim == 1
        y0b = check_initial_state(y0, self.data_dim)
        if self.state_dim is None:
            self.check_state_dim(y0b.shape[1])
        sol = adaptive_solve(self, theta, ts, to_device(y0b))
        return sol.single() if single else sol
