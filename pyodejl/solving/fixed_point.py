"""Fixed-point and root solvers for equilibria z* = f(z*), as values with one registry.

Every solver finds a root of the residual g(z) = f(z) − z for a state ``z`` of any
shape (a batch ``(B, d)`` is solved as one system, like a batch of ODE
trajectories), runs in a ``lax.while_loop`` (jit- and vmap-compatible), and
returns a :class:`FixedPointInfo`: the final state, the residual history, the
number of iterations and of f-evaluations, and whether it converged.

**Convergence** (one criterion for every solver, and the one Diffrax's
steady-state event uses for the continuous DEQ)::

    rms(f(z) − z) <= atol + rtol · rms(z)

``rms`` is the root-mean-square over all entries. The residual history records
``rms(f(z_k) − z_k)`` at the initial state and after every accepted iteration, with
no gaps (a continuous DEQ's rejected steps leave no entry); it is NaN past the last.

==================  ==================================================================
``"fixed-point"``   damped Picard iteration z ← z + β (f(z) − z).
``"anderson"``      Anderson acceleration (type II) over the last ``m`` iterates
                    (Anderson 1965; Walker & Ni 2011).
``"broyden"``       Broyden's "good" method with a dense inverse-Jacobian estimate
                    B ≈ (∂g/∂z)⁻¹, B₀ = −I (Broyden 1965; seed 004 ch. 3 §3.1.1).
                    O(n²) memory: small systems.
``"lbroyden"``      limited-memory Broyden: B = −I + Σ uᵢvᵢᵀ over the last ``m``
                    Sherman–Morrison updates, first in first out (Bai et al. 2020;
                    seed 004 ch. 3 §3.1.2).
``"newton-krylov"`` Jacobian-free Newton–Krylov: ``optimistix.Newton`` steps whose
                    linear systems are solved by a matrix-free ``lineax.GMRES`` on
                    Jacobian-vector products (seed 004 ch. 3 §3.2); the Jacobian is
                    never formed.
``"steady-state"``  integrate dz/dt = f(z) − z with Diffrax until the criterion above
                    holds (``diffrax.steady_state_event``): the continuous DEQ's solver
                    (seed 004 ch. 4 §1).
==================  ==================================================================

A solver is passed by name or as an object (``LBroyden(m=10)``).

:func:`krylov_solve` is the matrix-free GMRES used by implicit differentiation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._validation import check_integer, check_number


class FixedPointInfo(NamedTuple):
    """The outcome of one equilibrium solve (a pytree of arrays).

    Attributes:
        z: the iterate with the smallest residual, shaped like the initial state.
        residuals: ``(max_steps + 1,)``; ``rms(f(z_k) − z_k)`` at the initial state (k = 0)
            and after each accepted iteration k = 1 … ``accepted``, NaN after.
        steps: iterations taken (accepted and rejected steps for ``steady-state``).
        nfe: evaluations of f (for ``newton-krylov`` without its Jacobian-vector products).
        converged: whether the convergence criterion holds at ``z``.
        accepted: iterations that produced a new state: ``steps`` for the iterative
            solvers, the accepted steps for ``steady-state`` (a rejected step leaves
            the state, and so the history, unchanged).
    """

    z: jax.Array
    residuals: jax.Array
    steps: jax.Array
    nfe: jax.Array
    converged: jax.Array
    accepted: jax.Array


def rms(x):
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def _check_damping(beta):
    if not (isinstance(beta, (int, float, np.floating)) and 0 < beta <= 1):
        raise ValueError(f"damping must be in (0, 1], got {beta!r}")
    return float(beta)


class _IterativeSolver:
    """Shared loop: subclasses provide ``_init(z, fz)`` and ``_step(f, z, fz, state)``.

    The loop keeps the iterate with the smallest residual and returns it. Solvers
    with a memory (``resets = True``) are safeguarded: when a step raises the
    residual above ``RESET_FACTOR`` times the best so far, they go back to the
    best iterate and clear their memory (quasi-Newton and Anderson updates can
    go stale, e.g. when first-in-first-out drops an update the others were
    built on).
    """

    name = ""
    evals_per_step = 1
    resets = False
    RESET_FACTOR = 10.0

    def __call__(self, f: Callable, z0, rtol: float, atol: float, max_steps: int) -> FixedPointInfo:
        fz0 = f(z0)
        r0 = rms(fz0 - z0)
        hist = jnp.full((max_steps + 1,), jnp.nan, dtype=z0.dtype).at[0].set(r0)
        done0 = r0 <= atol + rtol * rms(z0)

        def cond(c):
            k, z, fz, state, best, hist, done, _ = c
            return (~done) & (k < max_steps) & jnp.isfinite(hist[k])

        def body(c):
            k, z, fz, state, best, hist, done, just_reset = c
            z, fz, state = self._step(f, z, fz, state)
            r = rms(fz - z)
            bz, bfz, br = best
            better = r < br
            best = (jnp.where(better, z, bz), jnp.where(better, fz, bfz), jnp.where(better, r, br))
            reset = jnp.asarray(False)
            if self.resets:
                # Never twice in a row: the first step after a reset is a plain one, which
                # would otherwise be retried forever where it does not contract.
                reset = ~(r <= self.RESET_FACTOR * br) & ~just_reset
                z, fz = jnp.where(reset, bz, z), jnp.where(reset, bfz, fz)
                state = jax.tree_util.tree_map(lambda a, b: jnp.where(reset, a, b), self._init(bz, bfz), state)
            return k + 1, z, fz, state, best, hist.at[k + 1].set(r), r <= atol + rtol * rms(z), reset

        carry = (jnp.asarray(0), z0, fz0, self._init(z0, fz0), (z0, fz0, r0), hist, done0, jnp.asarray(False))
        k, z, fz, _, (bz, bfz, br), hist, done, _ = jax.lax.while_loop(cond, body, carry)
        converged = br <= atol + rtol * rms(bz)
        return FixedPointInfo(bz, hist, k, 1 + self.evals_per_step * k, converged, k)

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def _key(self):
        return (type(self), tuple(sorted(vars(self).items())))

    def __eq__(self, other):
        return isinstance(other, _IterativeSolver) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())


class FixedPointIteration(_IterativeSolver):
    """Damped Picard iteration ``z ← z + β (f(z) − z)``; converges when f is a contraction.

    Args:
        damping: β in (0, 1] (default 1: plain iteration z ← f(z)).
    """

    name = "fixed-point"

    def __init__(self, damping: float = 1.0):
        self.damping = _check_damping(damping)

    def _init(self, z, fz):
        return ()

    def _step(self, f, z, fz, state):
        z = z + self.damping * (fz - z)
        return z, f(z), state


class Anderson(_IterativeSolver):
    """Anderson acceleration, type II (Anderson 1965; Walker & Ni 2011).

    Keeps the last ``m`` pairs (zᵢ, f(zᵢ)); each step takes the affine combination
    α (Σα = 1) minimising ‖Σ αᵢ (f(zᵢ) − zᵢ)‖ and sets
    ``z ← β Σ αᵢ f(zᵢ) + (1 − β) Σ αᵢ zᵢ``.

    Args:
        m: memory (≥ 1; default 5).
        damping: β in (0, 1] (default 1).
        regularization: Tikhonov term added to the Gram matrix, relative to its
            largest diagonal entry (default 1e-10), for stability when residuals
            become nearly collinear.
    """

    name = "anderson"
    resets = True

    def __init__(self, m: int = 5, damping: float = 1.0, regularization: float = 1e-10):
        self.m = check_integer(m, "m")
        self.damping = _check_damping(damping)
        self.regularization = float(regularization)

    def _init(self, z, fz):
        n = z.size
        X = jnp.zeros((self.m, n), z.dtype).at[0].set(z.ravel())
        F = jnp.zeros((self.m, n), z.dtype).at[0].set(fz.ravel())
        return X, F, jnp.asarray(1)

    def _step(self, f, z, fz, state):
        X, F, count = state
        m = self.m
        used = jnp.arange(m) < count
        G = jnp.where(used[:, None], F - X, 0.0)
        gram = G @ G.T
        scale = jnp.maximum(jnp.max(jnp.diag(gram)), jnp.finfo(z.dtype).tiny)
        gram = gram + self.regularization * scale * jnp.eye(m)
        # Bordered system [[0, 1ᵀ], [1, GGᵀ]] [ν; α] = [1; 0]; unused slots get α = 0.
        H = jnp.zeros((m + 1, m + 1), z.dtype)
        H = H.at[1:, 1:].set(jnp.where(used[:, None] & used[None, :], gram, jnp.eye(m)))
        H = H.at[0, 1:].set(used.astype(z.dtype)).at[1:, 0].set(used.astype(z.dtype))
        rhs = jnp.zeros(m + 1, z.dtype).at[0].set(1.0)
        alpha = jnp.linalg.solve(H, rhs)[1:]
        znew = self.damping * (alpha @ F) + (1 - self.damping) * (alpha @ X)
        znew = znew.reshape(z.shape)
        fnew = f(znew)
        slot = count % m
        X = X.at[slot].set(znew.ravel())
        F = F.at[slot].set(fnew.ravel())
        return znew, fnew, (X, F, count + 1)


def _safe_denominator(d):
    tiny = jnp.finfo(d.dtype).eps ** 2
    return jnp.abs(d) > tiny, jnp.where(jnp.abs(d) > tiny, d, 1.0)


class Broyden(_IterativeSolver):
    """Broyden's "good" method on g(z) = f(z) − z with a dense inverse-Jacobian estimate.

    ``B₀ = −I`` (so the first step is a plain fixed-point step), ``z ← z − B g``, and
    ``B ← B + (Δz − BΔg)(ΔzᵀB) / (ΔzᵀBΔg)`` (Broyden 1965; seed 004 ch. 3 §3.1.1).
    Memory O(n²) for n = z.size; use :class:`LBroyden` for large states.
    """

    name = "broyden"
    resets = True

    def __init__(self):
        pass

    def _init(self, z, fz):
        return -jnp.eye(z.size, dtype=z.dtype)

    def _step(self, f, z, fz, B):
        g = (fz - z).ravel()
        dz = -B @ g
        znew = z + dz.reshape(z.shape)
        fnew = f(znew)
        dg = (fnew - znew).ravel() - g
        Bdg = B @ dg
        ok, den = _safe_denominator(dz @ Bdg)
        B = jnp.where(ok, B + jnp.outer((dz - Bdg) / den, dz @ B), B)
        return znew, fnew, B


class LBroyden(_IterativeSolver):
    """Limited-memory Broyden (Bai et al. 2020; seed 004 ch. 3 §3.1.2).

    The inverse-Jacobian estimate is ``B = −I + Σᵢ uᵢ vᵢᵀ`` over the last ``m``
    Sherman–Morrison updates of :class:`Broyden`, replaced first in first out, so
    memory is O(m n). Dropping an update leaves the later ones (built on it)
    inconsistent; the shared safeguard restarts from −I at the best iterate if
    that makes the residual jump.

    Args:
        m: memory (≥ 1; default 10).
    """

    name = "lbroyden"
    resets = True

    def __init__(self, m: int = 10):
        self.m = check_integer(m, "m")

    def _init(self, z, fz):
        n = z.size
        return jnp.zeros((self.m, n), z.dtype), jnp.zeros((self.m, n), z.dtype), jnp.asarray(0)

    def _step(self, f, z, fz, state):
        U, V, count = state
        B = lambda x: -x + U.T @ (V @ x)
        Bt = lambda x: -x + V.T @ (U @ x)
        g = (fz - z).ravel()
        dz = -B(g)
        znew = z + dz.reshape(z.shape)
        fnew = f(znew)
        dg = (fnew - znew).ravel() - g
        Bdg = B(dg)
        ok, den = _safe_denominator(dz @ Bdg)
        slot = count % self.m
        U = jnp.where(ok, U.at[slot].set((dz - Bdg) / den), U)
        V = jnp.where(ok, V.at[slot].set(Bt(dz)), V)
        return znew, fnew, (U, V, count + jnp.where(ok, 1, 0))


class NewtonKrylov(_IterativeSolver):
    """Jacobian-free Newton–Krylov: ``optimistix.Newton`` with a matrix-free ``lineax.GMRES``.

    Each Newton step linearises g(z) = f(z) − z (``jax.linearize``) and solves
    ``(∂g/∂z) Δ = g`` by restarted GMRES on Jacobian-vector products (Saad &
    Schultz 1986; Knoll & Keyes 2004; seed 004 ch. 3 §3.2). No line search:
    use it from a reasonable initial state.

    Args:
        krylov_rtol: GMRES relative tolerance per Newton step (default 1e-8).
        restart: GMRES restart length (default 20).
        krylov_max_steps: GMRES iteration cap per Newton step (default 200).
    """

    name = "newton-krylov"
    evals_per_step = 2

    def __init__(self, krylov_rtol: float = 1e-8, restart: int = 20, krylov_max_steps: int = 200):
        self.krylov_rtol = check_number(krylov_rtol, "krylov_rtol")
        self.restart = check_integer(restart, "restart")
        self.krylov_max_steps = check_integer(krylov_max_steps, "krylov_max_steps")

    def _newton(self):
        import lineax as lx
        import optimistix as optx

        gmres = lx.GMRES(rtol=self.krylov_rtol, atol=1e-300, restart=self.restart, max_steps=self.krylov_max_steps)
        # Newton's own termination is not used: the shared loop applies the DEQ criterion.
        return optx.Newton(rtol=1.0, atol=1.0, linear_solver=gmres, cauchy_termination=False)

    def _init(self, z, fz):
        return ()

    def _step(self, f, z, fz, state):
        newton = self._newton()
        fn = lambda y, args: (f(y) - y, None)
        struct = jax.eval_shape(lambda: z)
        s = newton.init(fn, z, None, {}, struct, None, frozenset())
        znew, _, _ = newton.step(fn, z, None, {}, s, frozenset())
        return znew, f(znew), state


class SteadyState:
    """Integrate dz/dt = f(z) − z from z₀ with Diffrax until it is at steady state.

    The continuous DEQ's forward solver (Pal et al. 2022; seed 004 ch. 4 §1):
    ``t1 = ∞``, a PID step-size controller with the solve's ``rtol``/``atol``, and
    ``diffrax.steady_state_event`` with the same tolerances and the RMS norm, so
    it stops exactly when ``rms(f(z) − z) <= atol + rtol · rms(z)``.

    Args:
        ode_solver: ``"tsit5"`` (default), ``"dopri5"``, ``"bosh3"`` or ``"dopri8"``: an
            adaptive explicit Runge–Kutta pair of :data:`pyodejl.SOLVERS`.

    ``steps`` counts accepted and rejected steps; ``nfe`` counts the Runge–Kutta
    stage evaluations of every attempted step (``Solver.evaluations_per_step()`` of
    the registry, FSAL-aware) plus the two of the initial step-size choice and the
    residual at z₀, not the residual recorded once per accepted step for the history.
    The history has one entry per accepted step (Diffrax saves accepted steps only).
    """

    name = "steady-state"

    def __init__(self, ode_solver: str = "tsit5"):
        from pyodejl.solving.solvers import SOLVERS

        usable = sorted(n for n, s in SOLVERS.items() if s.adaptive and s.tableau is not None)
        if ode_solver not in usable:
            raise ValueError(f"unknown ODE solver {ode_solver!r} for a continuous DEQ; expected one of {usable}")
        self.ode_solver = ode_solver

    def __repr__(self):
        return f"SteadyState(ode_solver={self.ode_solver!r})"

    def __eq__(self, other):
        return isinstance(other, SteadyState) and other.ode_solver == self.ode_solver

    def __hash__(self):
        return hash((SteadyState, self.ode_solver))

    def __call__(self, f: Callable, z0, rtol: float, atol: float, max_steps: int) -> FixedPointInfo:
        import diffrax
        import optimistix as optx

        from pyodejl.solving.solvers import SOLVERS

        spec = SOLVERS[self.ode_solver]
        term = diffrax.ODETerm(lambda t, z, args: f(z) - z)
        controller = diffrax.PIDController(rtol=rtol, atol=atol, norm=optx.rms_norm)
        event = diffrax.Event(diffrax.steady_state_event(rtol=rtol, atol=atol, norm=optx.rms_norm))
        saveat = diffrax.SaveAt(
            subs=(
                diffrax.SubSaveAt(t1=True),
                diffrax.SubSaveAt(steps=True, fn=lambda t, z, args: rms(f(z) - z)),
            )
        )
        sol = diffrax.diffeqsolve(
            term, spec.make(rtol, atol), 0.0, jnp.inf, None, z0,
            stepsize_controller=controller, event=event, saveat=saveat,
            max_steps=max_steps, throw=False, adjoint=diffrax.DirectAdjoint(),
        )
        z = sol.ys[0][0]
        steps = sol.stats["num_steps"]
        accepted = sol.stats["num_accepted_steps"]
        r0 = rms(f(z0) - z0)
        # Diffrax fills the slots past the last accepted step with inf: the history's padding is NaN.
        saved = jnp.where(jnp.arange(max_steps) < accepted, sol.ys[1], jnp.nan)
        hist = jnp.concatenate([r0[None], saved])
        converged = rms(f(z) - z) <= atol + rtol * rms(z)
        return FixedPointInfo(z, hist, steps, 1 + 2 + spec.evaluations_per_step() * steps, converged, accepted)


FIXED_POINT_SOLVERS = {
    cls.name: cls for cls in (FixedPointIteration, Anderson, Broyden, LBroyden, NewtonKrylov, SteadyState)
}
"""Every equilibrium solver, by name."""


def fixed_point_solver(solver):
    """A solver instance from a name or an instance; an unknown name lists the valid ones."""
    if isinstance(solver, str):
        try:
            return FIXED_POINT_SOLVERS[solver]()
        except KeyError:
            known = sorted(FIXED_POINT_SOLVERS)
            raise ValueError(f"unknown equilibrium solver {solver!r}; expected one of {known}") from None
    if isinstance(solver, (_IterativeSolver, SteadyState)):
        return solver
    raise TypeError(f"solver must be a solver name or a solver object, got {solver!r}")


def krylov_solve(matvec: Callable, b, rtol: float, restart: int = 30, maxiter: int = 50, strict: bool = True):
    """Solve ``A x = b`` by restarted GMRES on ``matvec`` (matrix-free); NaN if it fails.

    Converged means ``‖b − A x‖ <= 10 · rtol · ‖b‖`` after the solve (the factor 10
    leaves room for GMRES's estimated residual against the true one); otherwise
    the result is NaN, so a failed linear solve can never pass as a derivative.
    With ``strict=False`` (DEQs built with ``throw=False``) the last GMRES iterate
    is returned instead, as the forward solve returns its last iterate.
    """
    from jax.scipy.sparse.linalg import gmres

    x, _ = gmres(matvec, b, tol=rtol, atol=0.0, restart=restart, maxiter=maxiter, solve_method="batched")
    res = jnp.linalg.norm((b - matvec(x)).ravel())
    ok = (res <= 10 * rtol * jnp.linalg.norm(b.ravel())) | (not strict)
    return jnp.where(ok, x, jnp.nan)
