"""Peak memory of each gradient method with and without (local) solver-heuristic regularisers.

Checks seed 004 Table 6.1: local regularisation adds a constant O(s × stages)
to any sensitivity method (s = state size), while global regularisation
needs discrete sensitivities, O(s × t × stages) (t = steps).

Measure: XLA's own buffer accounting of the compiled gradient
(``jax.jit(...).lower(...).compile().memory_analysis()``): the temporary
buffers the gradient needs at its peak, in the same process and on the same
problem for every method. It is exact for the compiled program and free of
allocator noise, unlike the process's RSS. Rows vary the state size
s = B·D (batch B) and the number of steps t (the span T at fixed tolerance).

    .venv/bin/python benchmarks/local_regularisation_memory.py [--quick] [--out runs/local_memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

import pyodejl as pj
from pyodejl import regularizers as R
from pyodejl._jit import to_device
from pyodejl.derivatives import continuous
from pyodejl.derivatives.autodiff import value_and_grad


def temp_bytes(jitted, *args):
    stats = jitted.lower(*args).compile().memory_analysis()
    return int(stats.temp_size_in_bytes) if stats is not None else None


def measure(B, T, terms, width=32, D=2, rtol=1e-6, max_steps=256):
    model = pj.NeuralODE(
        pj.MLP([D, width, D], "tanh"), solver="tsit5", rtol=rtol, atol=rtol * 1e-2, max_steps=max_steps
    )
    rng = np.random.default_rng(0)
    ts = np.linspace(0.0, T, 5)
    y0 = rng.standard_normal((B, D))
    targets = rng.standard_normal((B, len(ts), D))
    obj = pj.TrajectoryLoss(model, ts, y0, targets, regularizers=terms)
    theta = model.init(0)
    steps = obj.stats(theta).num_accepted_steps
    fn, args = obj.direct_function(theta)
    th = to_device(theta)
    out = {"steps": steps, "discrete": temp_bytes(value_and_grad, fn, th, args)}
    if not obj.problem.needs_steps:
        problem, cargs = obj.continuous_problem(theta)
        out["backsolve"] = temp_bytes(continuous.gradient_backsolve, problem, th, *cargs)
        # as the objective calls it: the dense interpolant sized from this solve's steps
        dense = continuous.dense_step_budget(obj.stats(theta).num_steps, max_steps)
        out["interpolating"] = temp_bytes(continuous.gradient_interpolating, problem, th, *cargs, False, dense)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="two small rows (smoke test)")
    ap.add_argument("--out", default=None, help="write the rows as JSON")
    a = ap.parse_args(argv)
    grid = [(4, 1.0), (4, 8.0)] if a.quick else [(4, 1.0), (4, 4.0), (4, 16.0), (32, 1.0), (32, 4.0), (32, 16.0)]
    variants = {
        "none": lambda: None,
        "local": lambda: [R.LocalErrorEstimate(1.0, seed=0)],
        "global": lambda: [R.ErrorEstimate(1.0)],
    }
    rows = []
    print(
        f"{'B':>4} {'T':>5} {'variant':>7} {'steps':>5} {'discrete':>10} {'backsolve':>10} {'interp.':>10}  (temp KiB)"
    )
    for B, T in grid:
        for name, make in variants.items():
            r = measure(B, T, make())
            row = {"B": B, "T": T, "variant": name, **r}
            rows.append(row)
            kib = lambda k: f"{r[k] / 1024:10.1f}" if r.get(k) is not None else f"{'-':>10}"
            print(
                f"{B:4d} {T:5.1f} {name:>7} {r['steps']:5d} {kib('discrete')} {kib('backsolve')} {kib('interpolating')}",
                flush=True,
            )
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
