"""Deep equilibrium models: z* = f_θ(z*, x), discrete and continuous, with Skip variants.

A DEQ (Bai et al. 2019; seed 004 ch. 3 §3) maps an input batch ``x`` of shape
``(B, n)`` to the equilibrium ``z*`` ``(B, d)`` of a cell with input injection,
``z* = f_θ(z*, x̃)``, where ``x̃ = encoder(x)`` (an optional explicit layer, the
seed's "downsampling layer", applied once). A continuous DEQ (Pal et al. 2022;
seed 004 ch. 4 §1) reaches the same equilibrium by integrating
``dz/dt = f_θ(z, x̃) − z`` to steady state.

Skip variants (seed 004 ch. 4 §2–3) start the solve nearer the answer and add a
training penalty the loss (:class:`pyodejl.EquilibriumLoss`) picks up:

* :class:`Skip` — an explicit network g_φ predicts ``z₀ = g_φ(x̃)``; penalty
  ``λ · mean|f_θ(z*, x̃) − g_φ(x̃)|``.
* :class:`SkipReg` — no extra parameters: ``z₀ = f_θ(0, x̃)``; penalty
  ``λ · mean|f_θ(z*, x̃) − f_θ(0, x̃)|``.

**Parameter layout.** A DEQ's θ is ``[cell, encoder, skip predictor]`` (absent
parts are empty); each part uses the PyTorch ``nn.Linear`` layout of
:class:`pyodejl.MLP` (weight ``(out, in)`` row-major, then bias).

The forward solve here is not differentiable; derivatives (implicit, JFB,
phantom, unrolled) live in :mod:`pyodejl.derivatives.equilibrium`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit, to_device
from pyodejl._validation import check_integer, check_number
from pyodejl.models.mlp import activation_fn, layer_sizes, linear_layers_init
from pyodejl.solving.fixed_point import FixedPointInfo, SteadyState, fixed_point_solver
from pyodejl.solving.integrate import SolveError


class EquilibriumError(SolveError):
    """An equilibrium solve did not converge (its message has the residual history)."""


def _layers_apply(shapes, theta, h, sigma, last_activation):
    offset = 0
    for k, (n_out, n_in) in enumerate(shapes):
        w = theta[offset : offset + n_out * n_in].reshape(n_out, n_in)
        offset += n_out * n_in
        b = theta[offset : offset + n_out]
        offset += n_out
        h = h @ w.T + b
        if k < len(shapes) - 1 or last_activation:
            h = sigma(h)
    return h


@dataclass(frozen=True)
class Dense:
    """An explicit fully connected network ``R^sizes[0] → R^sizes[-1]`` from a flat θ.

    Used as a DEQ's encoder (the seed's downsampling layer), as a Skip DEQ's
    predictor g_φ, or as a classifier. ``activation`` follows every layer when
    ``last_activation`` (default True), otherwise every layer but the last.
    Layout: PyTorch ``nn.Linear`` per layer, as :class:`pyodejl.MLP`.
    """

    sizes: tuple
    activation: str = "identity"
    last_activation: bool = True

    def __post_init__(self):
        sizes = layer_sizes(self.sizes)
        activation_fn(self.activation)
        object.__setattr__(self, "sizes", sizes)

    @property
    def in_features(self) -> int:
        return self.sizes[0]

    @property
    def out_features(self) -> int:
        return self.sizes[-1]

    def _shapes(self):
        return [(o, i) for i, o in zip(self.sizes[:-1], self.sizes[1:])]

    @property
    def num_params(self) -> int:
        return sum(o * i + o for o, i in self._shapes())

    def init(self, seed: int = 0) -> np.ndarray:
        """PyTorch's default ``nn.Linear`` initialisation, U(±1/√fan_in), from ``seed``."""
        return linear_layers_init(np.random.default_rng(seed), self._shapes())

    def apply(self, x, theta):
        """``x``: ``(..., sizes[0])`` → ``(..., sizes[-1])``."""
        return _layers_apply(self._shapes(), theta, x, activation_fn(self.activation), self.last_activation)


@dataclass(frozen=True)
class MLPCell:
    """The DEQ cell ``f_θ(z, x) = σ(MLP([z, x]))``: a fully connected map with input injection.

    ``z`` ``(B, dim)`` and ``x`` ``(B, input_dim)`` are concatenated and passed
    through layers ``dim + input_dim → hidden… → dim`` with ``activation`` after
    every layer (so a tanh cell maps into the unit cube and an equilibrium exists).
    With no hidden layer this is ``σ(W z + U x + b)`` with ``θ = [W U, b]`` laid out
    as one ``nn.Linear(dim + input_dim, dim)``.

    Args:
        dim: state width d.
        input_dim: injected input width n.
        hidden: hidden widths (default none).
        activation: default ``"tanh"``.
    """

    dim: int
    input_dim: int
    hidden: tuple = ()
    activation: str = "tanh"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        Dense((self.dim + self.input_dim, *self.hidden, self.dim), self.activation)

    @property
    def _net(self):
        return Dense((self.dim + self.input_dim, *self.hidden, self.dim), self.activation, last_activation=True)

    @property
    def num_params(self) -> int:
        return self._net.num_params

    def init(self, seed: int = 0) -> np.ndarray:
        return self._net.init(seed)

    def __call__(self, z, x, theta):
        return self._net.apply(jnp.concatenate([z, x], axis=-1), theta)


DEQCell = MLPCell


@dataclass(frozen=True)
class Skip:
    """Skip DEQ (seed 004 ch. 4 §2): ``z₀ = g_φ(x̃)`` and penalty ``weight · mean|f(z*, x̃) − g_φ(x̃)|``.

    Args:
        predictor: an explicit network with ``num_params``, ``init(seed)`` and
            ``apply(x̃, φ) -> (B, d)`` (e.g. :class:`Dense`).
        weight: λ_skip (default 0.01, the seed's): the initial weight of the loss's
            ``"skip"`` term. It is data of the compiled loss, not part of the model's
            identity (two Skips differing only in weight are equal), so
            :meth:`pyodejl.EquilibriumLoss.set_weights` changes it without recompiling.
    """

    predictor: Any
    weight: float = field(default=0.01, compare=False)

    def __post_init__(self):
        if not all(hasattr(self.predictor, a) for a in ("num_params", "apply")):
            raise TypeError("Skip's predictor needs num_params and apply(x, phi), e.g. pyodejl.models.deq.Dense")
        object.__setattr__(self, "weight", check_number(self.weight, "skip weight", allow_zero=True))

    @property
    def num_params(self) -> int:
        return int(self.predictor.num_params)

    def initial_state(self, deq, th_cell, th_skip, xe):
        return self.predictor.apply(xe, th_skip)

    def penalty(self, deq, th_cell, th_skip, z, xe):
        """The unweighted penalty ``mean|f(z*, x̃) − g_φ(x̃)|`` (the loss applies the weight)."""
        fz = deq.f(th_cell, z, xe)
        return jnp.mean(jnp.abs(fz - self.predictor.apply(xe, th_skip)))


@dataclass(frozen=True)
class SkipReg:
    """Skip-Reg DEQ (seed 004 ch. 4 §3): ``z₀ = f(0, x̃)``, penalty ``weight · mean|f(z*, x̃) − f(0, x̃)|``.

    No parameters of its own: the cell's first step is the predictor.

    Args:
        weight: λ_skip (default 0.01): the initial weight of the loss's ``"skip"``
            term; data, not identity, as for :class:`Skip`.
    """

    weight: float = field(default=0.01, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "weight", check_number(self.weight, "skip weight", allow_zero=True))

    num_params = 0

    def initial_state(self, deq, th_cell, th_skip, xe):
        return deq.f(th_cell, jnp.zeros(xe.shape[:-1] + (deq.dim,), xe.dtype), xe)

    def penalty(self, deq, th_cell, th_skip, z, xe):
        """The unweighted penalty ``mean|f(z*, x̃) − f(0, x̃)|`` (the loss applies the weight)."""
        f0 = deq.f(th_cell, jnp.zeros_like(z), xe)
        return jnp.mean(jnp.abs(deq.f(th_cell, z, xe) - f0))


@dataclass(frozen=True)
class EquilibriumSolution:
    """A solved equilibrium (NumPy arrays).

    Attributes:
        z: ``(B, d)`` the final state (the equilibrium if ``converged``).
        residuals: ``(accepted + 1,)`` the RMS residual ``rms(f(z_k) − z_k)`` at z₀ and
            after each accepted iteration (no gaps: a continuous DEQ's rejected steps
            leave no entry).
        steps: iterations (accepted + rejected steps for a continuous DEQ).
        nfe: evaluations of the cell.
        converged: whether ``rms(f(z) − z) <= atol + tol · rms(z)``.
        target: the right-hand side ``atol + tol · rms(z)`` at ``z``.
        solver: the solver's name.
        accepted: iterations that produced a new state (``steps`` for the iterative
            solvers; accepted steps for a continuous DEQ).
    """

    z: np.ndarray
    residuals: np.ndarray
    steps: int
    nfe: int
    converged: bool
    target: float
    solver: str
    accepted: int

    def raise_if_failed(self):
        """Raise :class:`EquilibriumError` explaining the failure unless converged."""
        if not self.converged:
            raise EquilibriumError(failure_message(self))
        return self


def failure_message(sol: EquilibriumSolution) -> str:
    r = sol.residuals
    shown = r if len(r) <= 10 else np.concatenate([r[:5], r[-5:]])
    hist = ", ".join(f"{v:.3g}" for v in shown[:5]) + (", ..., " if len(r) > 10 else (", " if len(shown) > 5 else ""))
    hist += ", ".join(f"{v:.3g}" for v in shown[5:])
    grew = (not np.all(np.isfinite(r))) or (len(r) > 1 and r[-1] > r[0])
    if sol.solver == "steady-state":
        hint = "raise max_steps, or loosen rtol/atol"
    elif grew:
        others = [s for s in ("newton-krylov", "lbroyden", "broyden") if s != sol.solver]
        hint = (
            "the residual grew: the iteration map is not contractive here (spectral radius of df/dz "
            f">= 1), so fixed-point iteration cannot converge; try solver={others[0]!r} or {others[1]!r}, "
            "a damping < 1, or Jacobian regularisation"
        )
    else:
        others = [s for s in ("lbroyden", "anderson", "newton-krylov") if s != sol.solver]
        hint = f"it converged too slowly: raise max_steps or try solver={others[0]!r} or {others[1]!r}"
    return (
        f"the equilibrium solve ({sol.solver}) did not converge in {sol.steps} iterations "
        f"({sol.nfe} cell evaluations): RMS residual |f(z) - z| history [{hist}], target {sol.target:.3g}; {hint}"
    )


class DEQ:
    """A deep equilibrium model ``z* = f_θ(z*, x̃)`` solved by a root/fixed-point solver.

    Args:
        cell: ``cell(z, x, theta) -> z`` with ``z`` ``(B, d)``, ``x`` ``(B, n)``: the map
            with input injection. Either an object with ``num_params`` (and
            optionally ``dim``, ``init``), like :class:`MLPCell`, or a plain JAX
            function, in which case ``num_params`` is required.
        num_params: the cell's parameter count (required for a plain function).
        dim: state width d (default: ``cell.dim``, else the injected input's width).
        solver: a name from :data:`pyodejl.solving.fixed_point.FIXED_POINT_SOLVERS`
            or a solver object (default ``"lbroyden"``).
        tol: relative tolerance; converged when
            ``rms(f(z) − z) <= atol + tol · rms(z)`` (default 1e-6).
        atol: absolute tolerance (default ``tol``).
        max_steps: iteration cap (default 50).
        encoder: optional explicit layer applied to x once before the solve
            (``num_params``, ``init``, ``apply(x, theta)``; e.g. :class:`Dense`).
        skip: ``None`` (z₀ = 0), :class:`Skip` or :class:`SkipReg`.
        throw: if True (default) a non-converged solve makes the loss NaN and the
            objectives raise :class:`EquilibriumError` with the residual history;
            if False the last iterate is used (check ``solve(...).converged``).
        linear_tol: relative tolerance of the implicit-differentiation GMRES solves
            (default ``min(tol, atol) · 1e-2``, tighter than the forward's).

    ``num_params`` (the property) counts the cell, encoder and skip predictor.
    """

    def __init__(
        self,
        cell: Callable,
        num_params: int | None = None,
        *,
        dim: int | None = None,
        solver="lbroyden",
        tol: float = 1e-6,
        atol: float | None = None,
        max_steps: int = 50,
        encoder=None,
        skip=None,
        throw: bool = True,
        linear_tol: float | None = None,
    ):
        if not callable(cell):
            raise TypeError(f"cell must be callable as cell(z, x, theta), got {type(cell).__name__}")
        if num_params is None:
            num_params = getattr(cell, "num_params", None)
            if num_params is None:
                raise ValueError("a plain-function cell needs num_params (its parameter count)")
        self.cell = cell
        self.cell_params = check_integer(num_params, "num_params", minimum=0)
        self.tol = check_number(tol, "tol")
        self.atol = check_number(tol if atol is None else atol, "atol")
        self.max_steps = check_integer(max_steps, "max_steps")
        self.solver = fixed_point_solver(solver)
        if encoder is not None and not all(hasattr(encoder, a) for a in ("num_params", "apply")):
            raise TypeError("encoder needs num_params and apply(x, theta), e.g. pyodejl.models.deq.Dense")
        if skip is not None and not isinstance(skip, (Skip, SkipReg)):
            raise TypeError(f"skip must be None, Skip(predictor) or SkipReg(), got {skip!r}")
        self.encoder, self.skip = encoder, skip
        self.throw = bool(throw)
        lt = min(self.tol, self.atol) * 1e-2 if linear_tol is None else check_number(linear_tol, "linear_tol")
        self.linear_tol = max(lt, 1e-14)
        cell_dim = getattr(cell, "dim", None)
        self._dim = None if dim is None and cell_dim is None else check_integer(
            dim if dim is not None else cell_dim, "dim")

    # ---- identity (DEQs are static arguments of compiled functions) --------
    def _key(self):
        return (type(self), self.cell, self.cell_params, self.tol, self.atol, self.max_steps, self.solver,
                self.encoder, self.skip, self.throw, self.linear_tol, self._dim)

    def __eq__(self, other):
        return isinstance(other, DEQ) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return (f"{type(self).__name__}(cell={self.cell!r}, solver={self.solver!r}, tol={self.tol}, "
                f"atol={self.atol}, max_steps={self.max_steps}, skip={self.skip!r})")

    # ---- parameters -----------------------------------------------------------
    @property
    def num_params(self) -> int:
        """Length of θ: cell, encoder and skip predictor."""
        enc = self.encoder.num_params if self.encoder is not None else 0
        skp = self.skip.num_params if self.skip is not None else 0
        return self.cell_params + int(enc) + int(skp)

    def split(self, theta):
        """θ → (cell, encoder, skip-predictor) parts."""
        a = self.cell_params
        b = a + (self.encoder.num_params if self.encoder is not None else 0)
        return theta[:a], theta[a:b], theta[b : self.num_params]

    def init(self, seed: int = 0) -> np.ndarray:
        """θ from each part's ``init`` (PyTorch default initialisation), reproducible from ``seed``."""
        parts = []
        predictor = self.skip.predictor if isinstance(self.skip, Skip) else None
        for k, part in enumerate((self.cell, self.encoder, predictor)):
            if part is None:
                continue
            if not hasattr(part, "init"):
                raise TypeError(f"{part!r} has no init(seed); build theta yourself")
            parts.append(np.asarray(part.init(seed + 7919 * k), dtype=np.float64))
        return np.concatenate(parts) if parts else np.zeros(0)

    # ---- pieces of the forward pass (traced) ----------------------------------
    @property
    def dim(self) -> int | None:
        return self._dim

    def state_dim(self, xe_width: int) -> int:
        return self._dim if self._dim is not None else int(xe_width)

    def f(self, th_cell, z, xe):
        return self.cell(z, xe, th_cell)

    def encode(self, th_enc, x):
        return x if self.encoder is None else self.encoder.apply(x, th_enc)

    def initial_state(self, th_cell, th_skip, xe):
        if self.skip is None:
            return jnp.zeros(xe.shape[:-1] + (self.state_dim(xe.shape[-1]),), xe.dtype)
        return self.skip.initial_state(_WithDim(self, xe.shape[-1]), th_cell, th_skip, xe)

    def solve_state(self, th_cell, xe, z0) -> FixedPointInfo:
        """Run the solver from ``z0`` (not differentiable)."""
        f = lambda z: self.f(th_cell, z, xe)
        return self.solver(f, z0, self.tol, self.atol, self.max_steps)

    def prepare(self, theta, x):
        """θ, x → (cell θ, encoded x̃, z₀)."""
        th_cell, th_enc, th_skip = self.split(theta)
        xe = self.encode(th_enc, x)
        return th_cell, xe, self.initial_state(th_cell, th_skip, xe)

    # ---- checks and host API --------------------------------------------------
    def check_inputs(self, x, name="x") -> np.ndarray:
        """``x`` as a finite ``(B, n)`` float64 array; checks the cell's output shape."""
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from None
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[0] < 1:
            raise ValueError(f"{name} must have shape (batch, n), got {np.shape(x)}")
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(f"{name} contains NaN or inf (at index {tuple(int(i) for i in bad)})")
        self._check_shapes(arr.shape)
        return arr

    def _check_shapes(self, shape):
        theta = jax.ShapeDtypeStruct((self.num_params,), jnp.float64)
        x = jax.ShapeDtypeStruct(shape, jnp.float64)
        try:
            xe = jax.eval_shape(lambda th, x: self.encode(self.split(th)[1], x), theta, x)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ValueError(f"the encoder cannot take inputs of shape {shape}: {e}") from None
        d = self.state_dim(xe.shape[-1])
        z = jax.ShapeDtypeStruct(xe.shape[:-1] + (d,), jnp.float64)
        try:
            out = jax.eval_shape(lambda th, z, xe: self.f(self.split(th)[0], z, xe), theta, z, xe)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ValueError(
                f"the cell failed on z of shape {z.shape} and injected input of shape {xe.shape}: {e}"
            ) from None
        if getattr(out, "shape", None) != z.shape:
            raise ValueError(
                f"the cell's output has shape {getattr(out, 'shape', type(out))} but the state z has shape "
                f"{z.shape}: cell(z, x, theta) must return an array shaped like z (pass dim= if the state "
                "width differs from the input width)"
            )
        if self.skip is not None:
            z0 = jax.eval_shape(lambda th, xe: self.initial_state(self.split(th)[0], self.split(th)[2], xe), theta, xe)
            if z0.shape != z.shape:
                raise ValueError(f"the skip predictor returns shape {z0.shape}; the state z has shape {z.shape}")

    def solve(self, theta, x, throw: bool | None = None) -> EquilibriumSolution:
        """Solve for the equilibrium of a batch.

        Args:
            theta: ``(num_params,)``.
            x: ``(B, n)`` inputs (before the encoder).
            throw: raise :class:`EquilibriumError` if not converged (default: the DEQ's ``throw``).

        Returns:
            an :class:`EquilibriumSolution` (flagged with ``converged`` when ``throw`` is False).
        """
        from pyodejl._validation import check_theta

        theta = check_theta(theta, self.num_params)
        x = self.check_inputs(x)
        info = _solve_jit(self, to_device(theta), to_device(x))
        z, hist, steps, nfe, conv, target, accepted = (np.asarray(a) for a in info)
        accepted = int(accepted)
        sol = EquilibriumSolution(z, hist[: accepted + 1], int(steps), int(nfe), bool(conv), float(target),
                                  self.solver.name, accepted)
        if (self.throw if throw is None else throw):
            sol.raise_if_failed()
        return sol


class _WithDim:
    """A DEQ view whose ``dim`` is resolved from the injected width (for plain-function cells)."""

    def __init__(self, deq, width):
        self._deq, self.dim = deq, deq.state_dim(width)

    def f(self, *a):
        return self._deq.f(*a)


@jit(static_argnums=0)
def _solve_jit(deq, theta, x):
    th_cell, xe, z0 = deq.prepare(theta, x)
    info = deq.solve_state(th_cell, xe, z0)
    from pyodejl.solving.fixed_point import rms

    target = deq.atol + deq.tol * rms(info.z)
    return info.z, info.residuals, info.steps, info.nfe, info.converged, target, info.accepted


class ContinuousDEQ(DEQ):
    """A continuous DEQ: integrate ``dz/dt = f_θ(z, x̃) − z`` from z₀ to steady state.

    Pal et al. (2022), seed 004 ch. 4 §1: an infinite-time Neural ODE whose end
    state is the DEQ's equilibrium, so it is differentiated by the same implicit
    formula (no backpropagation through the solver's steps). Integration uses
    Diffrax with a PID controller and stops by ``diffrax.steady_state_event`` once
    ``rms(dz/dt) <= atol + rtol · rms(z)``; :meth:`solve` reports the steps and NFE.

    Args:
        cell: ``cell(z, x, theta) -> z``, as :class:`DEQ`.
        num_params: the cell's parameter count, as :class:`DEQ`.
        dim: state width d, as :class:`DEQ`.
        solver: explicit Runge–Kutta pair (default ``"tsit5"``; also ``"dopri5"``,
            ``"bosh3"``, ``"dopri8"``); its evaluations per step come from
            :data:`pyodejl.SOLVERS`.
        rtol: relative tolerance of the steps and of the steady-state test (default 1e-3;
            the seed uses 0.005).
        atol: absolute tolerance (default ``rtol``).
        max_steps: step cap, accepted and rejected steps together (default 1000).
        encoder: optional explicit layer applied to x once, as :class:`DEQ`.
        skip: ``None``, :class:`Skip` or :class:`SkipReg`, as :class:`DEQ`.
        throw: raise on a non-converged solve (default True), as :class:`DEQ`.
        linear_tol: tolerance of the implicit-differentiation solves, as :class:`DEQ`.
    """

    def __init__(self, cell, num_params=None, *, dim=None, solver="tsit5", rtol: float = 1e-3, atol=None,
                 max_steps: int = 1000, encoder=None, skip=None, throw: bool = True, linear_tol=None):
        if not isinstance(solver, str):
            raise TypeError(f"a continuous DEQ's solver is an ODE solver name, got {solver!r}")
        super().__init__(cell, num_params, dim=dim, solver=SteadyState(solver), tol=rtol, atol=atol,
                         max_steps=max_steps, encoder=encoder, skip=skip, throw=throw, linear_tol=linear_tol)

    @property
    def rtol(self) -> float:
        return self.tol
