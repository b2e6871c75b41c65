"""What the benchmarks share: first-call and steady timings, and the agreement of two results."""

from __future__ import annotations

import time

import numpy as np


def timed(fn, repeats):
    """``(result, first call's seconds, best of the next ``repeats`` calls' seconds)``."""
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    rest = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        rest.append(time.perf_counter() - t)
    return out, first, (min(rest) if rest else first)


def max_rel_diff(a, b) -> float:
    """max |a − b| / max |b|."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))
