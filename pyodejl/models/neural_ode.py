"""Neural ODEs: a vector field, a solver and its tolerances, as one hashable value."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import to_device
from pyodejl._validation import check_initial_state, check_integer, check_number, check_theta, check_times
from pyodejl.models.vector_field import check_vector_field, output_shape
from pyodejl.solving.controllers import resolve_controller
from pyodejl.solving.solvers import Solver, solver_spec


def batched_call(field, t, y, theta):
    """``field(t, y, theta)`` for ``y`` ``(D,)`` or ``(..., D)``: the protocol's one state, mapped over a batch."""
    if y.ndim == 1:
        return field(t, y, theta)
    flat = y.reshape(-1, y.shape[-1])
    out = jax.vmap(field, in_axes=(None, 0, None))(t, flat, theta)
    return out.reshape(y.shape)


class NeuralODE(eqx.Module):
    """dy/dt = f(t, y; θ) for any vector field f, solved by a solver and a step-size controller.

    Chen et al. (2018), *Neural Ordinary Differential Equations*; augmentation
    as in Dupont et al. (2019), *Augmented Neural ODEs* (seed 000, Eq. 9).

    Args:
        vector_field: anything following the vector-field protocol
            (:mod:`pyodejl.models.vector_field`): ``num_params`` and a pure JAX
            ``__call__(t, y, theta)`` — a :class:`pyodejl.MLP`, a
            :class:`pyodejl.VectorField` or your own object. Its state includes
            the augmented dimensions.
        solver: a :class:`pyodejl.solving.Solver` or its name: ``"dopri5"``
            (default), ``"tsit5"``, ``"dopri8"``, ``"bosh3"``, ``"kvaerno5"``
            (implicit, for stiff problems) — adaptive — or the fixed-step
            ``"euler"``, ``"heun"``, ``"rk4"``, which need ``dt``.
        rtol: relative local error tolerance of adaptive solvers (default 1e-7).
        atol: absolute local error tolerance (default 1e-9).
        dt: step for fixed-step solvers; for adaptive ones the initial step
            (``None``: Hairer's rule).
        max_steps: step limit of one solve (default 4096); hitting it raises
            :class:`pyodejl.solving.SolveError`.
        augment_dim: number of zero-initialised dimensions appended to the data
            state (default 0). Data have ``D - augment_dim`` dimensions.
        controller: a step-size controller or its name (default: ``"pid"`` for
            adaptive solvers, ``"constant"`` for fixed-step ones; see
            :mod:`pyodejl.solving.controllers`).
        error_dims: how many leading state entries enter step-size control
            (default None: all). Objectives with running costs set it so that the
            appended integrals do not steer the steps.
        diffusion: not accepted (keyword-only): an ODE has none. Passing one
            raises TypeError pointing to :class:`pyodejl.NeuralSDE`.

    The object is immutable and hashable: compiled functions are cached per model.
    """

    vector_field: object = eqx.field(static=True)
    solver: Solver = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    dt: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    augment_dim: int = eqx.field(static=True)
    controller: object = eqx.field(static=True)
    error_dims: int | None = eqx.field(static=True)

    def __init__(
        self,
        vector_field,
        solver="dopri5",
        rtol: float = 1e-7,
        atol: float = 1e-9,
        dt: float | None = None,
        max_steps: int = 4096,
        augment_dim: int = 0,
        controller=None,
        error_dims: int | None = None,
        *,
        diffusion=None,
    ):
        if diffusion is not None or (not isinstance(solver, (str, Solver)) and hasattr(solver, "num_params")):
            raise TypeError(
                "NeuralODE takes one vector field and no diffusion (its second argument is the solver); "
                "for a stochastic model with drift and diffusion use pj.NeuralSDE(drift, diffusion, ...)"
            )
        check_vector_field(vector_field)
        spec = solver_spec(solver)
        if spec.is_sde:
            raise ValueError(
                f"{spec.name!r} is a solver for stochastic differential equations; NeuralODE solves ODEs. "
                f"Use pj.NeuralSDE(drift, diffusion, solver={spec.name!r}) or an ODE solver such as 'dopri5'"
            )
        self.rtol = check_number(rtol, "rtol")
        self.atol = check_number(atol, "atol")
        if dt is not None:
            dt = check_number(dt, "dt")
        elif not spec.adaptive:
            raise ValueError(f"solver {spec.name!r} takes fixed steps and needs dt > 0")
        max_steps = check_integer(max_steps, "max_steps")
        state_dim = getattr(vector_field, "state_dim", None)
        augment_dim = check_integer(augment_dim, "augment_dim", minimum=0)
        if state_dim is not None and augment_dim >= state_dim:
            raise ValueError(f"augment_dim must be an integer in [0, {state_dim}), got {augment_dim!r}")
        error_dims = None if error_dims is None else check_integer(error_dims, "error_dims")
        self.vector_field = vector_field
        self.solver = spec
        self.dt = dt
        self.max_steps = int(max_steps)
        self.augment_dim = int(augment_dim)
        self.controller = resolve_controller(controller, spec.adaptive)
        self.error_dims = None if error_dims is None else int(error_dims)
        if state_dim is not None:
            self.check_state_dim(state_dim)

    @property
    def num_params(self) -> int:
        """Number of vector-field parameters."""
        return int(self.vector_field.num_params)

    @property
    def state_dim(self) -> int | None:
        """D: dimension of the (augmented) state, or None if the vector field leaves it to y0."""
        return getattr(self.vector_field, "state_dim", None)

    @property
    def data_dim(self) -> int | None:
        """Dimension of the data (state without augmentation), or None if not fixed."""
        return None if self.state_dim is None else self.state_dim - self.augment_dim

    def check_state_dim(self, D: int) -> None:
        """Raise ValueError unless f maps a state of size D to a derivative of size D."""
        shape = output_shape(self.vector_field, D)
        if shape != (D,):
            raise ValueError(
                "a vector field maps the state to its derivative, so its output shape must match "
                f"the state's: f(t, y, theta) should be ({D},), got {shape}"
            )

    def init(self, seed: int = 0) -> np.ndarray:
        """Initial θ of the vector field (its ``init(seed)``)."""
        if not hasattr(self.vector_field, "init"):
            raise NotImplementedError(f"vector field {self.vector_field!r} has no init(seed); give theta explicitly")
        return self.vector_field.init(seed)

    def rhs(self, t, y, theta):
        """f(t, y; θ) for ``y`` of shape ``(D,)`` or ``(..., D)`` (batches by ``vmap``)."""
        return batched_call(self.vector_field, t, y, theta)

    def augment(self, y0):
        """Append ``augment_dim`` zeros to the last axis of ``y0``."""
        if self.augment_dim == 0:
            return y0
        pad = jnp.zeros(y0.shape[:-1] + (self.augment_dim,), dtype=y0.dtype)
        return jnp.concatenate([y0, pad], axis=-1)

    def solve(self, theta, ts, y0):
        """Solve from ``y0`` and return the state at every time in ``ts``.

        Args:
            theta: ``(num_params,)``.
            ts: ``(T,)`` strictly increasing times; ``ts[0]`` is the initial time.
            y0: ``(data_dim,)`` or ``(B, data_dim)``.

        Returns:
            :class:`pyodejl.solving.Solution`; ``ys`` is ``(T, D)`` or
            ``(B, T, D)``; ``steps`` is the per-step record
            (:class:`pyodejl.solving.StepRecord`) of the accepted steps.
        """
        from pyodejl.solving.integrate import adaptive_solve

        theta = check_theta(theta, self.num_params)
        ts = check_times(ts)
        y0 = np.asarray(y0, dtype=np.float64)
        single = y0.ndim == 1
        y0b = check_initial_state(y0, self.data_dim)
        if self.state_dim is None:
            self.check_state_dim(y0b.shape[1] + self.augment_dim)
        sol = adaptive_solve(self, theta, ts, self.augment(to_device(y0b)))
        if single:
            sol = sol.single()
        return sol
