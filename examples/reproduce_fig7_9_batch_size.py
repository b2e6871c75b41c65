"""Seed 000 Figs. 7 and 9: smaller batches destabilise the top Hessian eigenvalue.

Seed 000 §5.3: fitting a 1-D exponential, SGD makes the evolution of the top eigenvalue
erratic, sometimes negative, more so for smaller batches; the same happens for a plain
feedforward network (Fig. 9), so it is not specific to Neural ODEs.

Setup (ours): task exponential-1d (dx/dt = -x, 40 observations at random times in
(0, 2]; a sample is one observation). Neural ODE with a 1 -> 1 -> 1 tanh vector field
(4 parameters, as Fig. 7) and an MLP t -> x(t) with 10 tanh units (31 parameters, as
Fig. 9); SGD with batch sizes 1, 4, 10 and full-batch GD, same lr, same initialisation;
exact Hessian of the full-batch loss every 10 steps.

Measures per run: roughness of eig_max (total variation / mean |eig_max|, whole run),
the number of tracked steps with eig_max < 0, and the final loss.

Writes runs to runs/repro_fig7_9/ and docs/figures/repro_fig7_node_lr<lr>.png,
repro_fig9_mlp_lr<lr>.png (lr 0.05 and 0.3). Runtime: about 1 minute on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pyodejl.experiments import RunConfig, load_run, track  # noqa: E402
from pyodejl.plotting.training import plot_metric_grid  # noqa: E402
from pyodejl.solving import SolveError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIGS = ROOT / "docs" / "figures"


def roughness(run):
    v = run.column("eig_max")
    return float(np.sum(np.abs(np.diff(v))) / np.mean(np.abs(v)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 10])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, nargs="+", default=[0.05, 0.3],
                    help="learning rates (one set of runs and figures per value)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "repro_fig7_9")
    args = ap.parse_args(argv)
    FIGS.mkdir(parents=True, exist_ok=True)
    table = []
    for lr in args.lr:
        for name in ("node", "mlp"):
            _runs(name, lr, args, table)
    print(f"{'model':5s} {'p':>3s} {'lr':>5s} {'batch':>5s} {'roughness':>9s} {'#eig_max<0':>10s} {'min eig_max':>11s} "
          f"{'max eig_max':>11s} {'final loss':>10s} {'s':>5s}")
    for name, p, lr, bs, r, neg, n, lo, hi, loss, secs, status in table:
        print(f"{name:5s} {p:3d} {lr:5.2g} {str(bs):>5s} {r:9.3f} {neg:>6d}/{n:<3d} {lo:11.4g} {hi:11.4g} "
              f"{loss:10.3g} {secs:5.0f}  {status}")


def _runs(name, lr, args, table):
    m = dict(model="node", width=1) if name == "node" else dict(model="mlp", width=10)
    runs, labels = [], []
    for bs in args.batch_sizes + [None]:
        cfg = RunConfig(task="exponential-1d", optimizer="sgd" if bs else "gd", batch_size=bs,
                        lr=lr, steps=args.steps, hessian_every=10, seed=args.seed, **m)
        t0 = time.time()
        folder = args.out / f"{name}_lr{lr:g}_{'gd' if bs is None else f'b{bs}'}"
        status = "ok"
        try:
            run = track(cfg, folder, progress=False)
        except SolveError as exc:  # the ODE blew up under SGD: keep the records up to there
            run = load_run(folder)
            status = f"solve failed after step {run.records[-1]['step']}: {str(exc).split(':')[0]}"
        runs.append(run)
        p = run.records[0]["num_params"]
        labels.append(f"{name.upper()} (p={p}), " + ("GD (batch 40)" if bs is None else f"SGD batch {bs}"))
        eig = run.column("eig_max")
        table.append((name, p, lr, "GD" if bs is None else bs, roughness(run), int(np.sum(eig < 0)), len(eig),
                      float(eig.min()), float(eig.max()), run.records[-1]["loss"], time.time() - t0, status))
    fig_name = (f"repro_fig7_node_lr{lr:g}.png" if name == "node" else f"repro_fig9_mlp_lr{lr:g}.png")
    fig = plot_metric_grid(runs, "eig_max", labels, path=FIGS / fig_name,
                           title=f"Top Hessian eigenvalue vs batch size — {name.upper()}, lr {lr:g} "
                                 f"(seed 000 Fig. {'7' if name == 'node' else '9'})")
    plt.close(fig)


if __name__ == "__main__":
    main()
