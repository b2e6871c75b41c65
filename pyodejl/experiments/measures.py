"""Measurements the trainer runs at a cadence or on the trained θ.

Each function returns a :class:`~pyodejl.experiments.trainer.Measurement`
whose ``fn(objective, theta)`` gives a dict of numbers (the keys of a record or
of a run's result).
"""

from __future__ import annotations

import numpy as np

from pyodejl.experiments.trainer import Measurement, best_time

__all__ = ["curvature", "evaluate", "prediction_time", "solve_stats"]


def evaluate(fn, name: str = "evaluate", every: int = 0) -> Measurement:
    """A measurement from any ``fn(theta) -> dict`` (e.g. a held-out loss or an accuracy)."""
    return Measurement(name, lambda objective, theta: dict(fn(theta)), every)


def solve_stats(solve, prefix: str = "", every: int = 0) -> Measurement:
    """``{prefix}nfe`` and ``{prefix}steps`` of ``solve(theta)`` (anything returning a
    solution with ``.stats``, e.g. ``lambda th: model.solve(th, [0, 1], y0)``)."""

    def fn(objective, theta):
        stats = solve(theta).stats
        return {f"{prefix}nfe": int(stats.nfe), f"{prefix}steps": int(stats.num_steps)}

    return Measurement(f"{prefix}solve_stats", fn, every)


def prediction_time(predict, repeats: int = 5, name: str = "predict") -> Measurement:
    """``{name}_wall_s`` and ``{name}_cpu_s``: the best of ``repeats`` calls of
    ``predict(theta)`` after a warm-up call, so compilation is not counted."""

    def fn(objective, theta):
        wall, cpu = best_time(lambda: predict(theta), repeats)
        return {f"{name}_wall_s": wall, f"{name}_cpu_s": cpu}

    return Measurement(f"{name}_time", fn, 0)


def curvature(objective=None, *, exact_max_params: int = 1000, method: str = "direct-direct", seed: int = 0,
              lanczos_tol: float = 1e-6, trace_matvecs: int = 60, prefix: str = "hessian_",
              keep_spectrum: bool = False, every: int = 0) -> Measurement:
    """Top and bottom eigenvalue and trace of the Hessian of ``objective`` (default: the
    training objective the trainer passes) at θ.

    Exact (full Hessian by ``method``, ``numpy.linalg.eigvalsh``) when
    p ≤ ``exact_max_params``; otherwise Lanczos for the extremes (relative residual
    ``lanczos_tol``) and a Hutch++ trace from ``trace_matvecs`` products
    (:mod:`pyodejl.spectral`), seeded by ``seed``.

    Returns:
        a measurement giving ``{prefix}max``, ``{prefix}min``, ``{prefix}trace`` and
        ``{prefix}exact`` (1 exact, 0 estimated), and with ``keep_spectrum`` (exact
        only) ``{prefix}spectrum``, every eigenvalue in ascending order.
    """

    def fn(training_objective, theta):
        obj = training_objective if objective is None else objective
        p = obj.num_params
        if p <= exact_max_params:
            H = obj.hessian(theta, method=method)
            w = np.linalg.eigvalsh(0.5 * (H + H.T))
            out = {f"{prefix}max": float(w[-1]), f"{prefix}min": float(w[0]), f"{prefix}trace": float(w.sum()),
                   f"{prefix}exact": 1}
            return {**out, f"{prefix}spectrum": w.tolist()} if keep_spectrum else out
        from pyodejl.spectral import eigenvalues, trace

        op = obj.hessian_operator(theta, method=method)
        rng = np.random.default_rng([seed, 4])
        res = eigenvalues(op, k=2, which="both", method="lanczos", tol=lanczos_tol, seed=rng)
        vals = np.sort(res.eigenvalues)
        tr = trace(op, trace_matvecs, method="hutch++", seed=rng)
        return {f"{prefix}max": float(vals[-1]), f"{prefix}min": float(vals[0]), f"{prefix}trace": float(tr.estimate),
                f"{prefix}exact": 0}

    return Measurement(f"{prefix}curvature", fn, every)
