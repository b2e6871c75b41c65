"""XLA compile options for pyodejl's kernels: compile time against run time.

Each option set runs in a fresh process (so every kernel compiles from scratch)
on the issue-2 case: MLP [2, w, 2] tanh, dopri5, rtol 1e-7, atol 1e-9,
targets (cos t, −sin t) at 20 points on [0, 2], y0 = (1, 0). Measured:

* first call at p = 502: solve + default (structured) Hessian, compilation included;
* steady structured Hessian at p = 502 and p = 2502;
* direct-direct Hessian at p = 502 (forward over reverse through the grid replay),
  first call and steady;
* a training-sized forward solve: batch 256, MLP [2, 64, 2], steady.

The baseline is XLA's defaults (``{}``); ratios are baseline / this (> 1: faster).

Run:  python benchmarks/compile_options.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

FAST = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}
#: name -> (options, applied to every kernel?); None: pyodejl as shipped
OPTION_SETS = {
    "XLA defaults, every kernel": ({}, True),
    "loop emitters, every kernel": ({"xla_cpu_use_fusion_emitters": False}, True),
    "LLVM -O1, every kernel": ({"xla_backend_optimization_level": 1}, True),
    "both, every kernel": (FAST, True),
    "pyodejl: both, structured kernel only": None,
}

TS = np.linspace(0.0, 2.0, 20)
TARGETS = np.stack([np.cos(TS), -np.sin(TS)], axis=1)


def _loss(width):
    import pyodejl as pj

    model = pj.NeuralODE(pj.MLP([2, width, 2], "tanh"), rtol=1e-7, atol=1e-9)
    return pj.TrajectoryLoss(model, ts=TS, y0=[1.0, 0.0], targets=TARGETS), model.init(0)


def _best(f, repeats=5):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def _fresh(width, theta, method):
    """A new objective each time, so no per-θ solve is reused."""
    obj, _ = _loss(width)
    return obj.hessian(theta, method=method)


def child(setting_json):
    import pyodejl as pj
    import pyodejl._jit as pjit

    setting = json.loads(setting_json)
    if setting is not None:
        options, everywhere = setting
        pjit.COMPILER_OPTIONS = options
        for name, module in list(sys.modules.items()):
            if name.startswith("pyodejl") and everywhere:
                for value in vars(module).values():
                    if isinstance(value, pjit._Jitted):
                        value._fast = True
    out = {}
    t = time.perf_counter()
    obj, theta = _loss(100)
    obj.hessian(theta)
    out["first call p=502"] = time.perf_counter() - t
    out["structured p=502"] = _best(lambda: _fresh(100, theta, None))
    t = time.perf_counter()
    _fresh(100, theta, "direct-direct")
    out["direct-direct first p=502"] = time.perf_counter() - t
    out["direct-direct p=502"] = _best(lambda: _fresh(100, theta, "direct-direct"), 3)
    _, theta5 = _loss(500)
    _fresh(500, theta5, None)
    out["structured p=2502"] = _best(lambda: _fresh(500, theta5, None), 3)
    model = pj.NeuralODE(pj.MLP([2, 64, 2], "tanh"), rtol=1e-7, atol=1e-9)
    th = model.init(1)
    y0 = np.random.default_rng(0).normal(size=(256, 2))
    model.solve(th, TS, y0)
    out["solve B=256 w=64"] = _best(lambda: model.solve(th, TS, y0))
    print(json.dumps(out))


def main():
    results = {}
    for name, options in OPTION_SETS.items():
        run = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(options)], capture_output=True, text=True
        )
        if run.returncode != 0:
            print(f"{name}: failed\n{run.stderr[-2000:]}")
            continue
        results[name] = json.loads(run.stdout.strip().splitlines()[-1])
    base = results.get("XLA defaults, every kernel")
    keys = list(next(iter(results.values())).keys())
    print(f"{'options':>40} " + " ".join(f"{k:>26}" for k in keys))
    for name, r in results.items():
        cells = []
        for k in keys:
            ratio = f" (×{base[k] / r[k]:.2f})" if base else ""
            cells.append(f"{r[k]:>14.4f} s{ratio:>10}")
        print(f"{name:>40} " + " ".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
