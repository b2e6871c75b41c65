"""Seed 000 Fig. 4: finite-difference Hessian error against the step h.

Seed 000 §5.1: Σ|H_FD − H_AA| is below Σ|H_AA| only for a narrow range of h — truncation
error at large h, round-off (and solver noise) below about 1e-8; late in training
(their iteration 7700) the difference is never smaller than the elements themselves.

Setup (ours): the 27-parameter Neural ODE of reproduce_fig2_3_agreement.py (GD run), at
steps 50 and 400; FD Hessian (seed 000 Eq. 10) for h = 1e-9 ... 1e-1 against the
direct-direct Hessian. Dashed lines: Σ|H_AA|.

Writes docs/figures/repro_fig4.png. Runtime: about 10 s on 2 cores (after the runs
of reproduce_fig2_3_agreement.py, which it reuses or creates).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_fig2_3_agreement import OUT, configs  # noqa: E402

import pyodejl as pj  # noqa: E402
from pyodejl.experiments import objective_from_run, track  # noqa: E402
from pyodejl.plotting.training import plot_fd_error  # noqa: E402

FIG = Path(__file__).resolve().parent.parent / "docs" / "figures" / "repro_fig4.png"


def main():
    cfg = configs()["GD"]
    run = track(cfg, OUT / "gd", progress=False)
    obj = objective_from_run(run.path)
    params = run.params()
    hs = 10.0 ** np.arange(-9, -0.5, 0.5)
    errors, refs, labels = [], [], []
    for step in (50, 400):
        theta = params[step]
        H = obj.hessian(theta, method="direct-direct")
        row = []
        for h in hs:
            Hfd = obj.hessian(theta, method=pj.FiniteDifference(h=float(h)))
            row.append(np.abs(Hfd - H).sum())
        errors.append(row)
        refs.append(np.abs(H).sum())
        labels.append(f"step {step}")
        best = int(np.argmin(row))
        good = hs[np.array(row) < np.abs(H).sum()]
        print(f"step {step}: Σ|H_AA| = {refs[-1]:.4g}; best h = {hs[best]:.1e} with Σ|H_FD−H_AA| = {row[best]:.3g} "
              f"(relative {row[best] / refs[-1]:.2e}); error below Σ|H_AA| for h in "
              + (f"[{good.min():.0e}, {good.max():.0e}]" if len(good) else "none"))
        for h, e in zip(hs, row):
            print(f"    h = {h:.1e}: {e:.3e}")
    plot_fd_error(hs, errors, reference=refs, labels=labels, path=FIG,
                  title="Seed 000 Fig. 4: FD Hessian error vs h (27-parameter NODE); dashed: Σ|H_AA|")
    print(f"wrote {FIG}")


if __name__ == "__main__":
    main()
