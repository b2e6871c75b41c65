"""Neural ODEs: a vector field, a solver and its tolerances, as one hashable value."""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import to_device
from pyodejl.models.mlp import MLP
from pyodejl.solving.solvers import solver_spec


def _positive(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


class NeuralODE(eqx.Module):
    """dy/dt = f(t, y; θ) with f an :class:`MLP`, solved by a named solver.

    Chen et al. (2018), *Neural Ordinary Differential Equations*; augmentation
    as in Dupont et al. (2019), *Augmented Neural ODEs* (seed 000, Eq. 9).

    Args:
        vector_field: an :class:`MLP` with ``sizes[0] == sizes[-1]`` (the state
            dimension ``D``, augmented dimensions included).
        solver: ``"dopri5"`` (default), ``"tsit5"``, ``"dopri8"``, ``"bosh3"``,
            ``"kvaerno5"`` (implicit, for stiff problems) — adaptive — or the
            fixed-step ``"euler"``, ``"heun"``, ``"rk4"``, which need ``dt``.
        rtol, atol: local error tolerances of adaptive solvers (default 1e-7, 1e-9).
        dt: step for fixed-step solvers; for adaptive ones the initial step
            (``None``: chosen automatically).
        max_steps: step limit of one solve (default 4096); hitting it raises
            :class:`pyodejl.solving.SolveError`.
        augment_dim: number of zero-initialised dimensions appended to the data
            state (default 0). Data have ``D - augment_dim`` dimensions.

    The object is immutable and hashable: compiled functions are cached per model.
    """

    vector_field: MLP = eqx.field(static=True)
    solver: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    dt: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    augment_dim: int = eqx.field(static=True)

    def __init__(
        self,
        vector_field: MLP,
        solver: str = "dopri5",
        rtol: float = 1e-7,
        atol: float = 1e-9,
        dt: float | None = None,
        max_steps: int = 4096,
        augment_dim: int = 0,
    ):
        if not isinstance(vector_field, MLP):
            raise TypeError(f"vector_field must be a pyodejl.MLP, got {type(vector_field).__name__}")
        if vector_field.sizes[0] != vector_field.sizes[-1]:
            raise ValueError(
                "a vector field maps the state to its derivative, so its input and output "
                f"widths must match; got sizes {vector_field.sizes}"
            )
        spec = solver_spec(solver)
        self.rtol = _positive("rtol", rtol)
        self.atol = _positive("atol", atol)
        if dt is not None:
            dt = _positive("dt", dt)
        elif not spec.adaptive:
            raise ValueError(f"solver {solver!r} takes fixed steps and needs dt > 0")
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        if int(augment_dim) != augment_dim or not 0 <= augment_dim < vector_field.sizes[0]:
            raise ValueError(
                f"augment_dim must be an integer in [0, {vector_field.sizes[0]}), got {augment_dim!r}"
            )
        self.vector_field = vector_field
        self.solver = solver
        self.dt = dt
        self.max_steps = int(max_steps)
        self.augment_dim = int(augment_dim)

    @property
    def num_params(self) -> int:
        """Number of vector-field parameters."""
        return self.vector_field.num_params

    @property
    def state_dim(self) -> int:
        """D: dimension of the (augmented) state."""
        return self.vector_field.sizes[0]

    @property
    def data_dim(self) -> int:
        """Dimension of the data (state without augmentation)."""
        return self.state_dim - self.augment_dim

    def init(self, seed: int = 0) -> np.ndarray:
        """Initial θ of the vector field (see :meth:`MLP.init`)."""
        return self.vector_field.init(seed)

    def rhs(self, t, y, theta):
        """f(t, y; θ) for ``y`` of shape ``(..., D)``."""
        return self.vector_field(theta, y, t)

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
            :class:`pyodejl.solving.Solution`; ``ys`` is ``(T, D)`` or ``(B, T, D)``.
        """
        from pyodejl.derivatives.validation import check_initial_state, check_theta, check_times
        from pyodejl.solving.integrate import adaptive_solve

        theta = check_theta(theta, self.num_params)
        ts = check_times(ts)
        y0 = np.asarray(y0, dtype=np.float64)
        single = y0.ndim == 1
        y0b = check_initial_state(y0, self.data_dim)
        sol = adaptive_solve(self, theta, ts, self.augment(to_device(y0b)))
        if single:
            sol.ys = sol.ys[0]
        return sol
