"""Seed 000 Fig. 6: time for a full Hessian against the number of parameters.

Seed 000 §5.2: for randomly initialised single-hidden-layer Neural ODEs learning two
coupled sinusoidal ODEs, AA is the fastest technique (then EA, then FD) and handles
O(10^4) parameters in O(10^3) s.

Setup (ours): task coupled-sinusoids (40 observations), absolute-error loss, sigmoid
vector field 2 -> w -> 2 (p = 5w + 2) at its initialisation; one full Hessian per method
and size, timed after a warm-up call (compilation excluded): direct-direct (seed's AA),
adjoint-adjoint, elementwise (EA) and fd (FD) — the last two only for small p, being
O(p^2) derivative or loss evaluations.

Writes docs/figures/repro_fig6.png. Runtime: about 2 minutes on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pyodejl.experiments import ModelSpec, build_objective, init_params, make_task
from pyodejl.plotting.training import plot_hessian_time

FIG = Path(__file__).resolve().parent.parent / "docs" / "figures" / "repro_fig6.png"
WIDTHS = (2, 5, 10, 20, 40, 80, 160, 320)
LIMITS = {"structured": 10**9, "direct-direct": 10**9, "adjoint-adjoint": 402, "elementwise": 52, "fd": 102}
LABELS = {"structured": "structured (default)", "direct-direct": "AA (direct-direct)", "adjoint-adjoint": "adjoint-adjoint",
          "elementwise": "EA (elementwise)", "fd": "FD (Eq. 10)"}


def main():
    task = make_task("coupled-sinusoids", seed=0)
    ps, times = [], {m: [] for m in LIMITS}
    for w in WIDTHS:
        spec = ModelSpec("node", width=w, activation="sigmoid", loss="abs")
        obj = build_objective(spec, task)
        theta = init_params(spec, task, seed=0)
        ps.append(obj.num_params)
        for method, limit in LIMITS.items():
            if obj.num_params > limit:
                times[method].append(np.nan)
                continue
            obj.hessian(theta, method=method)  # warm-up: compilation
            t0 = time.perf_counter()
            obj.hessian(theta, method=method)
            times[method].append(time.perf_counter() - t0)
        print(f"p = {obj.num_params:5d}: " + ", ".join(f"{LABELS[m]} {times[m][-1]:.3g} s" for m in LIMITS), flush=True)
    plot_hessian_time(ps, {LABELS[m]: t for m, t in times.items()}, path=FIG,
                      title="Seed 000 Fig. 6: seconds per full Hessian (2 CPU cores, compilation excluded)")
    dd = np.array(times["direct-direct"])
    slope = np.polyfit(np.log(ps[-4:]), np.log(dd[-4:]), 1)[0]
    print(f"direct-direct time grows like p^{slope:.2f} over the last four sizes")
    print(f"wrote {FIG}")


if __name__ == "__main__":
    main()
