"""Seed 000 Table 2: computational Hessians against the analytic Hessian of a 6-parameter network.

The network f(x) = Σ_k w2_k σ(w1_k x + b1_k) (k = 1, 2; θ = [w1, b1, w2], 6 parameters,
as in seed 000 §4.2.1) is fitted to 10 points with an absolute-error or MSE loss and a
tanh or sigmoid activation. Its Hessian is derived by hand below and compared with
pyodejl's "direct-direct" (seed 000's AA), "elementwise" (EA) and "fd" (FD, seed 000
Eq. 10, automatic step) Hessians.

Error measure (the seed's): the fractional difference between the sums of all
matrix elements, |ΣH − ΣH_analytic| / |ΣH_analytic|; we also print the largest
elementwise error relative to max|H_analytic|, which is more demanding.

Writes docs/figures/repro_table2.png. Runtime: about 5 s on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import pyodejl as pj
from pyodejl.experiments.catalogue.agreement import SixParamLoss, analytic_hessian

FIG = Path(__file__).resolve().parent.parent / "docs" / "figures" / "repro_table2.png"

# the network, its loss and its hand-derived Hessian live with the declared experiment
# (``pyodejl run agreement`` regenerates the table); this script draws the figure


def main():
    rng = np.random.default_rng(2021)
    x = rng.uniform(-2, 2, 10)
    y = np.sin(x) + 0.1 * rng.standard_normal(10)
    theta = rng.normal(0, 1, 6)
    rows = []
    t0 = time.time()
    for loss, loss_name in (("abs", "Absolute Error"), ("mse", "MSE")):
        for act in ("tanh", "sigmoid"):
            obj = pj.FunctionObjective(SixParamLoss(loss, act), 6, args=(x, y))
            Ha = analytic_hessian(theta, x, y, loss, act)
            errs, maxerrs = {}, {}
            for label, method in (("AA", "direct-direct"), ("EA", "elementwise"), ("FD", "fd")):
                H = obj.hessian(theta, method=method)
                errs[label] = abs(H.sum() - Ha.sum()) / abs(Ha.sum())
                maxerrs[label] = np.max(np.abs(H - Ha)) / np.max(np.abs(Ha))
            rows.append((loss_name, act, errs, maxerrs))
    print(f"{'Loss':15s} {'Activation':10s} {'AA Error':>10s} {'EA Error':>10s} {'FD Error':>10s}   "
          "(max elementwise: AA, EA, FD)")
    for loss_name, act, e, m in rows:
        print(f"{loss_name:15s} {act:10s} {e['AA']:10.2e} {e['EA']:10.2e} {e['FD']:10.2e}   "
              f"({m['AA']:.1e}, {m['EA']:.1e}, {m['FD']:.1e})")
    print(f"[{time.time() - t0:.1f} s]")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = {("Absolute Error", "tanh"): (3.35e-8, 3.35e-8, 1.92e-2), ("Absolute Error", "sigmoid"): (3.72e-7, 3.72e-7, 4.03e-3),
            ("MSE", "tanh"): (2.13e-7, 2.13e-7, 2.34e-2), ("MSE", "sigmoid"): (4.56e-7, 4.56e-7, 5.62e-3)}
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.13
    for i, (loss_name, act, e, _) in enumerate(rows):
        for j, lab in enumerate(("AA", "EA", "FD")):
            ours = max(e[lab], 1e-17)
            ax.bar(i + (j - 2.5) * width, ours, width, color=f"C{j}", label=f"{lab} (pyodejl)" if i == 0 else None)
            ax.bar(i + (j + 0.5) * width, seed[(loss_name, act)][j], width, color=f"C{j}", alpha=0.35,
                   hatch="//", label=f"{lab} (seed 000)" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [f"{l}\n{a}" for l, a, _, _ in rows], fontsize=8)
    ax.set_ylabel("|ΣH − ΣH_analytic| / |ΣH_analytic|")
    ax.set_title("Table 2: computational vs analytic Hessian, 6-parameter networks", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    FIG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG, dpi=150)
    print(f"wrote {FIG}")


if __name__ == "__main__":
    main()
