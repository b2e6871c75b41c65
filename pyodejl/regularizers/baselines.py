"""Baselines seed 004 compares its solver-heuristic regularisers with: TayNODE and STEER.

* :class:`TaylorDerivative` — TayNODE (Kelly, Bettencourt, Johnson &
  Duvenaud 2020, *Learning Differential Equations that are Easy to Solve*,
  NeurIPS): R_K = ∫ ‖dᴷy/dtᴷ‖² dt, the K-th total time derivative of the
  solution along the flow, computed by Taylor-mode AD
  (``jax.experimental.jet``) and integrated as a running cost on the
  augmented state (:mod:`pyodejl.regularizers.running`), so every gradient
  method differentiates it.
* :class:`RandomEndTime` — STEER (Behl, Ghosh, Tian & Huang 2020,
  *Learning to Solve Differential Equations Faster*; seed 004 ch. 2 §8.2):
  during training only, integrate to an end time T' ~ U(T − b, T + b) and
  compare with the data at T. It changes *what is solved* (the observation
  times), not the loss of a solve, so it is a training-loop helper rather
  than a loss term: it gives the training times of step k, and the loop
  builds that step's objective on them (objectives with the same model, cost,
  terms and shapes share their compiled code, so this does not recompile).
  Evaluation and prediction use the nominal times.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax.experimental.jet import jet

from pyodejl._validation import check_integer
from pyodejl.regularizers.running import RunningTerm


def taylor_derivatives(f, t, y, order: int, f0=None):
    """[y', y'', …, y⁽ᴷ⁾] of the solution of y' = f(t, y) through (t, y), by Taylor mode.

    Each pass pushes the known derivatives of y (and t' = 1) through f with
    ``jax.experimental.jet``, which returns f's total derivatives along the
    path — one more derivative of y each time (K − 1 passes; Kelly et al.
    2020 §3; Griewank & Walther 2008, ch. 13).

    Args:
        f: ``f(t, y) -> (d,)``.
        t: scalar time; y: ``(d,)``.
        order: K ≥ 1.
        f0: f(t, y) if already computed.

    Returns:
        a list of K arrays ``(d,)``.
    """
    d = [f(t, y) if f0 is None else f0]
    t = jnp.asarray(t, dtype=y.dtype)
    for _ in range(1, order):
        t_series = [jnp.ones_like(t)] + [jnp.zeros_like(t)] * (len(d) - 1)
        primal, series = jet(lambda y_, t_: f(t_, y_), (y, t), (d, t_series))
        d = [primal] + list(series)
    return d


class TaylorDerivative(RunningTerm):
    """TayNODE: R_K = mean over trajectories of ∫ ‖dᴷy/dtᴷ‖² dt (Kelly et al. 2020).

    dᴷy/dtᴷ is the K-th total derivative along the flow (for y' = Ay it is
    Aᴷy), computed by Taylor mode (:func:`taylor_derivatives`); the integral is
    a running cost on the augmented state, left out of step-size control.
    ``order=1`` is the kinetic energy ∫‖f‖² dt. Seed 004 used K = 3 (MNIST)
    and K = 2 (PhysioNet).

    Args:
        weight: w ≥ 0 (default 1).
        order: K ≥ 1 (default 2).
    """

    name = "taylor_derivative"

    def __init__(self, weight: float = 1.0, order: int = 2):
        super().__init__(weight)
        self.order = check_integer(order, "order K")

    def static_key(self):
        return (self.order,)

    def __repr__(self):
        return f"TaylorDerivative(weight={self.weight}, order={self.order})"

    def integrand(self, t, y, theta_vf, vector_field, noise, f):
        dK = taylor_derivatives(lambda t_, y_: vector_field(t_, y_, theta_vf), t, y, self.order, f0=f)[-1]
        return jnp.sum(dK * dK)


class RandomEndTime:
    """STEER's training times: the last observation time moved to T' ~ U(T − b, T + b).

    Behl et al. (2020); seed 004 ch. 2 §8.2 and ch. 5 §3 (T = 1, b = 0.5 for
    MNIST). The draw for training step k comes from ``(seed, k)``. The data
    stay those at the nominal T. Use::

        steer = RandomEndTime(b=0.5, seed=0)
        for k in range(steps):
            loss = pj.ObservationLoss(model, steer.times(ts, k), y0, cost, data)
            ...

    Args:
        b: half-width, 0 < b < T − (previous time): T' stays after the
            previous observation time (for a single span [t₀, T], b < T − t₀
            as in the seed).
        seed: seed of the draws (default 0).
        every: move every observation time t_i (i ≥ 1) by U(−b, b) instead of
            only the last — seed 004's STEER for time series (ch. 5 §3.1.2),
            with b below half the smallest spacing (default False).
    """

    def __init__(self, b: float, seed: int = 0, every: bool = False):
        try:
            b = float(b)
        except (TypeError, ValueError):
            raise TypeError(f"b must be a number, got {b!r}") from None
        if not (math.isfinite(b) and b > 0):
            raise ValueError(f"b must be positive and finite, got {b!r}")
        seed = check_integer(seed, "seed", minimum=0)
        self.b, self.seed, self.every = b, int(seed), bool(every)

    def __repr__(self):
        return f"RandomEndTime(b={self.b}, seed={self.seed}, every={self.every})"

    def end_time(self, T: float, step: int) -> float:
        """T' = T + (2u − 1)·b, u ~ U[0, 1) from ``(seed, step)``."""
        check_integer(step, "step", minimum=0)
        u = np.random.default_rng([self.seed, int(step)]).random()
        return float(T + (2.0 * u - 1.0) * self.b)

    def times(self, ts, step: int) -> np.ndarray:
        """``ts`` with its last entry replaced by this step's T' (with ``every``, each
        t_i, i ≥ 1, moved by its own U(−b, b)); ``(T,)``."""
        ts = np.array(ts, dtype=np.float64)
        if ts.ndim != 1 or len(ts) < 2:
            raise ValueError(f"ts must hold at least two times, got shape {ts.shape}")
        if self.every:
            room = float(np.min(np.diff(ts))) / 2
            if not self.b < room:
                raise ValueError(f"b = {self.b} must be below half the smallest spacing of ts, {room}")
            u = np.random.default_rng([self.seed, int(step)]).random(len(ts) - 1)
            ts[1:] = ts[1:] + (2.0 * u - 1.0) * self.b
            return ts
        room = ts[-1] - ts[-2]
        if not self.b < room:
            raise ValueError(
                f"b = {self.b} must be below T - (previous time) = {room}, so that the end time stays "
                "after the previous observation"
            )
        ts[-1] = self.end_time(ts[-1], step)
        return ts
