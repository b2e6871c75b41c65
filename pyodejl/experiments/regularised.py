"""Training Neural ODEs with solver-heuristic regularisers and their baselines (seed 004 ch. 5–6).

One training loop for every variant of the comparison: vanilla, ERNODE,
SRNODE, local (unbiased/biased), STEER, TayNODE, RNODE and combinations.

* A :class:`Variant` names its loss terms (fresh per run), their weight
  schedules, whether STEER moves the training times, and which gradient
  method trains it.
* :func:`train_variant` runs Adam (Optax) for a number of steps: at step k it
  sets the scheduled weights (data, no recompilation), reseeds sampled terms
  (local regularisation draws a new t_reg each step, from ``(seed, k)``) and,
  for STEER, rebuilds the objective on that step's times (same model, cost,
  terms and shapes: the compiled code is shared).
* :class:`ResultsFile` keeps finished runs in one JSON file, written after
  every run, so an interrupted experiment resumes where it stopped.

Timings are process CPU seconds (``time.process_time``: every thread of this
process), which a shared machine disturbs far less than wall time; the wall
time is recorded too. Compilation (the first step) is reported separately.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pyodejl.regularizers.sampled import is_sampled
from pyodejl.regularizers.schedules import weights_at


@dataclass
class Variant:
    """One trained configuration.

    Attributes:
        name: label in tables.
        terms: ``() -> list`` of fresh loss terms (none for vanilla).
        schedules: ``{term name: schedule or number}`` applied every step.
        steer: a :class:`pyodejl.regularizers.RandomEndTime` (STEER), or None.
        gradient: gradient method, a name or a method object such as
            ``pyodejl.Interpolating(seminorm=True)`` (default ``"discrete"``).
    """

    name: str
    terms: Callable[[], list] = field(default=lambda: [])
    schedules: dict = field(default_factory=dict)
    steer: object = None
    gradient: object = "discrete"


def train_variant(make_loss: Callable, ts, theta0, variant: Variant, steps: int, lr: float, seed: int,
                  log_every: int = 0, log=print, minibatches: bool = False) -> dict:
    """Adam on ``make_loss(ts, terms, k)`` for ``steps`` steps; returns θ and timings.

    Args:
        make_loss: ``(ts, terms, k) -> objective`` (k: the training step, which
            picks the minibatch when ``minibatches``).
        ts: the nominal observation times.
        theta0: initial θ ``(p,)``.
        variant: the :class:`Variant`.
        steps, lr: Adam steps and learning rate.
        seed: seeds the sampled terms' draws (``seed·10⁶ + k`` at step k) and STEER's.
        log_every: print the data loss every so many steps (0: never).
        minibatches: build a new objective every step (its batch changes).

    Returns:
        ``{"theta", "losses" [(step, data loss)], "train_cpu_s", "train_wall_s",
        "compile_cpu_s"}`` — times exclude the first step, which compiles.
    """
    import optax

    terms = list(variant.terms())
    obj = make_loss(ts, terms, 0)
    opt = optax.adam(lr)
    theta = np.array(theta0, dtype=np.float64)
    state = opt.init(theta)
    losses = []
    cpu0 = wall0 = compile_cpu = None
    for k in range(steps):
        if k == 1:
            compile_cpu = time.process_time() - cpu0
            cpu0, wall0 = time.process_time(), time.perf_counter()
        elif k == 0:
            cpu0, wall0 = time.process_time(), time.perf_counter()
        if variant.steer is not None:
            obj = make_loss(variant.steer.times(ts, k), terms, k)
        elif minibatches and k > 0:
            obj = make_loss(ts, terms, k)
        for t in terms:
            if is_sampled(t) and getattr(t, "t_reg", None) is None:
                t.seed = seed * 1_000_000 + k
        if variant.schedules:
            obj.set_weights(weights_at(variant.schedules, k))
        g = obj.grad(theta, method=variant.gradient)
        updates, state = opt.update(g, state, theta)
        theta = np.asarray(optax.apply_updates(theta, updates), dtype=np.float64)
        if log_every and (k % log_every == 0 or k == steps - 1):
            loss = obj.terms(theta)["data"]
            losses.append((k, loss))
            log(f"    {variant.name} seed {seed} step {k}: data loss {loss:.3e}")
    return {
        "theta": theta,
        "losses": losses,
        "train_cpu_s": time.process_time() - cpu0,
        "train_wall_s": time.perf_counter() - wall0,
        "compile_cpu_s": compile_cpu,
    }


def best_time(fn, repeats: int = 5) -> float:
    """Best process CPU time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return float(best)


class ResultsFile:
    """Finished runs in one JSON file ``{key: record}``, rewritten after every run (resumable).

    ``config`` is stored under ``"_config"``; a file written with another
    configuration is refused rather than mixed.
    """

    def __init__(self, path: str, config: dict):
        self.path, self.config = path, dict(config)
        self.records = {}
        if os.path.exists(path):
            with open(path) as fh:
                data = json.load(fh)
            if data.get("_config") != self.config:
                raise ValueError(
                    f"{path} holds results of another configuration ({data.get('_config')}); "
                    "use another --out or delete it"
                )
            self.records = {k: v for k, v in data.items() if k != "_config"}

    def __contains__(self, key):
        return key in self.records

    def __getitem__(self, key):
        return self.records[key]

    def add(self, key: str, record: dict):
        self.records[key] = record
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"_config": self.config, **self.records}, fh, indent=1)
        os.replace(tmp, self.path)


def mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4g} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2g}"
