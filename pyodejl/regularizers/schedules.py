"""Weight schedules: a term's weight as a function of the training step.

A schedule is a value ``s`` with ``s(k) -> float`` for a training step k ≥ 0.
Weights are data of the compiled loss, so a training loop changes them every
step without recompiling::

    sched = {"error_estimate": ExponentialDecay(100.0, 10.0, steps=1000)}
    for k in range(1000):
        loss.set_weights(weights_at(sched, k))
        g = loss.grad(theta)
        ...

Seed 004 anneals the error-estimate weight exponentially, 100 → 10 over
training (ch. 5 §3.1.1 MNIST, ch. 6 §3.2 PhysioNet: λ(k) = λ₀·exp(−c·k) with
c = log(λ₀/λ₁)/K), keeps the stiffness weight constant, and for its
multiscale model grows the weight 0.1 → 5 (ch. 6 §3.3.2) — the same formula
with λ₁ > λ₀.
"""

from __future__ import annotations

from pyodejl._validation import check_integer, check_number


def _step(k) -> int:
    return check_integer(k, "a training step", minimum=0)


class Constant:
    """w(k) = w for every step.

    Args:
        value: w ≥ 0.
    """

    def __init__(self, value: float):
        from pyodejl.regularizers.base import check_weight

        self.value = check_weight(value)

    def __call__(self, k: int) -> float:
        _step(k)
        return self.value

    def __repr__(self):
        return f"Constant({self.value})"


class ExponentialDecay:
    """w(k) = start·(end/start)^(min(k, steps)/steps): geometric from ``start`` to ``end``.

    ``w(0) = start``, ``w(steps) = end``, constant after. With ``end < start``
    it anneals (seed 004: 100 → 10); with ``end > start`` it grows (seed 004's
    multiscale model: 0.1 → 5).

    Args:
        start: the weight at step 0 (positive).
        end: the weight from ``steps`` on (positive).
        steps: number of training steps over which the weight moves (≥ 1).
    """

    def __init__(self, start: float, end: float, steps: int):
        self.start = check_number(start, "start")
        self.end = check_number(end, "end")
        self.steps = check_integer(steps, "steps")

    def __call__(self, k: int) -> float:
        k = min(_step(k), self.steps)
        return self.start * (self.end / self.start) ** (k / self.steps)

    def __repr__(self):
        return f"ExponentialDecay(start={self.start}, end={self.end}, steps={self.steps})"


SCHEDULES = {"constant": Constant, "exponential": ExponentialDecay}
"""The schedules by name."""


def schedule(spec, *args, **kwargs):
    """A schedule from a name (``"constant"``, ``"exponential"``) and its arguments,
    a number (a constant weight) or a schedule (returned as is)."""
    if isinstance(spec, str):
        try:
            cls = SCHEDULES[spec]
        except KeyError:
            raise ValueError(f"unknown schedule {spec!r}; expected one of {sorted(SCHEDULES)}") from None
        return cls(*args, **kwargs)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Constant(spec)
    if callable(spec):
        return spec
    raise TypeError(f"a schedule must be a name, a number or a callable s(k), got {spec!r}")


def weights_at(schedules: dict, k: int) -> dict:
    """``{term name: schedule(k)}`` for a dict of schedules (or numbers), at training step ``k``."""
    _step(k)
    return {name: float(schedule(s)(k)) for name, s in schedules.items()}
