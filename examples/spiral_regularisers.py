"""Seed 004 Fig. 5.2 on the spiral ODE: NFE of Neural ODEs trained with solver-heuristic regularisers.

Seed 004 ch. 5 (Fig. 5.2) fits a Neural ODE to the spiral
du₁ = −αu₁³ + βu₂³, du₂ = −βu₁³ − αu₂³ (α = 0.1, β = 2, u₀ = (2, 0), 30 times on
[0, 1]) with the drift network x ↦ W₂ tanh(W₁x³ + B₁) + B₂ (width 50, p = 252),
and reports 1083 ± 58 NFE unregularised against 676 ± 68 regularised with the
error and stiffness estimates (−38 %).

Here: the same data, network and initial state; tsit5 at rtol 1e-6, atol 1e-8;
Adam; variants vanilla, ERNODE (mean of E_j·dt_j, weight 10 → 1; ``ernode-x10``:
100 → 10, seed 004's MNIST schedule), SRNODE, ERNODE+SRNODE, local ERNODE (unbiased,
biased; trained with the ``interpolating`` continuous adjoint unless
``--local-gradient discrete``), STEER (every observation time jittered within
half a spacing, seed 004's time-series form), TayNODE (K = 2) and RNODE
(kinetic energy + Jacobian Frobenius), over ``--seeds``. Reported per run:
the final data loss (MSE), **prediction NFE** — one solve of the trained model
from 0 to 1 with no intermediate stops (what a dense-output prediction costs;
pyodejl's training solves also stop at the 30 observation times, which caps
the step size, so their NFE is reported separately as ``train_nfe``) —
training CPU time (compilation excluded) and prediction CPU time.

Results go to ``--out`` (JSON, one record per variant and seed, written after
each run; rerunning resumes). ``--curvature`` then computes, for seed 0 of each
variant, the exact Hessian of the *data* loss (p = 252, ``direct-direct``) and
reports its top eigenvalues, trace and a spectral-density figure.

Usage: python examples/spiral_regularisers.py [--quick] [--steps 400] [--seeds 0 1 2]
       [--variants vanilla ernode ...] [--out results/spiral_regularisers.json] [--curvature]
"""

from __future__ import annotations

import argparse
import os
import sys

import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

import pyodejl as pj
from pyodejl import regularizers as R
from pyodejl.experiments.regularised import ResultsFile, Variant, best_time, mean_std, train_variant

ALPHA, BETA, WIDTH = 0.1, 2.0, 50
U0 = np.array([2.0, 0.0])
RTOL, ATOL = 1e-6, 1e-8


def spiral_data(n=30):
    ts = np.linspace(0.0, 1.0, n)
    rhs = lambda t, u: [-ALPHA * u[0] ** 3 + BETA * u[1] ** 3, -BETA * u[0] ** 3 - ALPHA * u[1] ** 3]
    sol = solve_ivp(rhs, (0.0, 1.0), U0, t_eval=ts, method="DOP853", rtol=1e-12, atol=1e-12)
    return ts, sol.y.T


def drift(t, y, th):
    """Seed 004's drift network x ↦ W₂ tanh(W₁x³ + B₁) + B₂ (W₁ 50×2, W₂ 2×50)."""
    W = WIDTH
    W1, b1 = th[: 2 * W].reshape(W, 2), th[2 * W : 3 * W]
    W2, b2 = th[3 * W : 5 * W].reshape(2, W), th[5 * W : 5 * W + 2]
    return W2 @ jnp.tanh(W1 @ (y**3) + b1) + b2


def init(seed):
    """PyTorch's nn.Linear default: U(±1/√fan_in) per layer."""
    r = np.random.default_rng(seed)
    return np.concatenate([r.uniform(-1, 1, 3 * WIDTH) / np.sqrt(2), r.uniform(-1, 1, 2 * WIDTH + 2) / np.sqrt(WIDTH)])


VECTOR_FIELD = pj.VectorField(drift, num_params=5 * WIDTH + 2, init=init, state_dim=2, name="spiral_drift")
MODEL = pj.NeuralODE(VECTOR_FIELD, solver="tsit5", rtol=RTOL, atol=ATOL, max_steps=8192)


def variants(steps, local_gradient="interpolating"):
    ann = lambda: R.ExponentialDecay(10.0, 1.0, steps)  # seed 004's 10x annealing
    ann_local = lambda: R.ExponentialDecay(5.0, 0.5, steps)
    return {
        "vanilla": Variant("vanilla"),
        "ernode": Variant("ernode", lambda: [R.ErrorEstimate(10.0, aggregate="mean")], {"error_estimate": ann()}),
        "ernode-x10": Variant(
            "ernode-x10",
            lambda: [R.ErrorEstimate(100.0, aggregate="mean")],
            {"error_estimate": R.ExponentialDecay(100.0, 10.0, steps)},
        ),
        "srnode": Variant("srnode", lambda: [R.StiffnessEstimate(1e-2, aggregate="mean")]),
        "ernode+srnode": Variant(
            "ernode+srnode",
            lambda: [R.ErrorEstimate(10.0, aggregate="mean"), R.StiffnessEstimate(1e-2, aggregate="mean")],
            {"error_estimate": ann()},
        ),
        "local-unbiased": Variant(
            "local-unbiased",
            lambda: [R.LocalErrorEstimate(5.0, sampling="unbiased")],
            {"local_error_estimate": ann_local()},
            gradient=local_gradient,
        ),
        "local-biased": Variant(
            "local-biased",
            lambda: [R.LocalErrorEstimate(5.0, sampling="biased")],
            {"local_error_estimate": ann_local()},
            gradient=local_gradient,
        ),
        "steer": Variant("steer", steer=R.RandomEndTime(0.45 / 29, seed=0, every=True)),
        "taynode": Variant("taynode", lambda: [R.TaylorDerivative(3e-8, order=2)]),
        "rnode": Variant("rnode", lambda: [R.KineticEnergy(1e-5), R.JacobianFrobenius(1e-6, seed=0)]),
        # 30x / 100x the weights above (which barely move the NFE)
        "taynode-x30": Variant("taynode-x30", lambda: [R.TaylorDerivative(1e-6, order=2)]),
        "rnode-x100": Variant("rnode-x100", lambda: [R.KineticEnergy(1e-3), R.JacobianFrobenius(1e-4, seed=0)]),
    }


def make_loss_factory(targets):
    return lambda ts, terms, k=0: pj.TrajectoryLoss(MODEL, ts, U0, targets, regularizers=terms or None)


def evaluate(theta, targets, ts):
    plain = pj.TrajectoryLoss(MODEL, ts, U0, targets)
    span = lambda: MODEL.solve(theta, [0.0, 1.0], U0)
    sol = span()
    return {
        "data_loss": plain.value(theta),
        "nfe": sol.stats.nfe,
        "steps": sol.stats.num_steps,
        "train_nfe": plain.stats(theta).nfe,
        "predict_cpu_s": best_time(span),
    }


def curvature(results, names, out_dir, targets, ts):
    """Exact data-loss Hessians of each variant's seed-0 model: top eigenvalues, trace, density figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = pj.TrajectoryLoss(MODEL, ts, U0, targets)
    rows, spectra = {}, {}
    for name in names:
        key = f"{name}/0"
        if key not in results:
            continue
        theta = np.asarray(results[key]["theta"])
        H = plain.hessian(theta, method="direct-direct")
        ev = np.linalg.eigvalsh(0.5 * (H + H.T))
        spectra[name] = ev
        rows[name] = {
            "top": ev[::-1][:3].tolist(),
            "min": float(ev[0]),
            "trace": float(ev.sum()),
            "nfe": results[key]["nfe"],
        }
        print(
            f"  {name:>15}: λ_max {ev[-1]:.4g}, λ_2 {ev[-2]:.4g}, λ_min {ev[0]:.3g}, trace {ev.sum():.4g}, "
            f"NFE {results[key]['nfe']}",
            flush=True,
        )
    if spectra:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        for i, (name, ev) in enumerate(spectra.items()):
            # tab20 and two line styles: more variants than the default 10-colour cycle
            color, style = plt.cm.tab20(2 * i % 20 + i // 10), "-" if i < 10 else "--"
            mag = np.abs(ev[np.abs(ev) > 1e-12])
            ax[0].hist(np.log10(mag), bins=40, histtype="step", label=name, color=color, linestyle=style)
            ax[1].scatter(rows[name]["nfe"], ev[-1], label=name, color=color, marker="o" if i < 10 else "s")
            ax[1].annotate(name, (rows[name]["nfe"], ev[-1]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax[0].set_xlabel("log10 |eigenvalue| of the data-loss Hessian")
        ax[0].set_ylabel("count")
        ax[1].set_xlabel("prediction NFE")
        ax[1].set_ylabel("largest eigenvalue")
        ax[1].set_yscale("log")
        ax[0].legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out_dir, "spiral_curvature.png")
        fig.savefig(path, dpi=120)
        print(f"  figure: {path}")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 variants, 6 steps, one seed (smoke test)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument("--local-gradient", default="interpolating", choices=sorted(pj.GRADIENT_METHODS))
    ap.add_argument("--out", default="results/spiral_regularisers.json")
    ap.add_argument("--curvature", action="store_true", help="Hessian spectra of the seed-0 models")
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.seeds = 6, [0]
        a.variants = a.variants or ["vanilla", "ernode", "local-unbiased"]
    table = variants(a.steps, a.local_gradient)
    names = a.variants or list(table)
    for n in names:
        if n not in table:
            raise SystemExit(f"unknown variant {n!r}; expected some of {list(table)}")
    ts, targets = spiral_data()
    config = {"steps": a.steps, "lr": a.lr, "rtol": RTOL, "atol": ATOL, "local_gradient": a.local_gradient}
    results = ResultsFile(a.out, config)
    make_loss = make_loss_factory(targets)
    for name in names:
        for seed in a.seeds:
            key = f"{name}/{seed}"
            if key in results:
                continue
            print(f"training {key}", flush=True)
            run = train_variant(
                make_loss, ts, init(seed), table[name], a.steps, a.lr, seed, log_every=max(a.steps // 4, 1)
            )
            rec = {
                **evaluate(run["theta"], targets, ts),
                "train_cpu_s": run["train_cpu_s"],
                "train_wall_s": run["train_wall_s"],
                "compile_cpu_s": run["compile_cpu_s"],
                "losses": run["losses"],
                "theta": run["theta"].tolist(),
            }
            results.add(key, rec)
            print(
                f"  {key}: loss {rec['data_loss']:.3e}, NFE {rec['nfe']}, train {rec['train_cpu_s']:.1f} s", flush=True
            )
    print(
        f"\n{'variant':>15} {'data loss':>18} {'prediction NFE':>16} {'train NFE':>14} {'train CPU s':>16} "
        f"{'predict CPU ms':>16}"
    )
    summary = {}
    for name in names:
        recs = [results[f"{name}/{s}"] for s in a.seeds if f"{name}/{s}" in results]
        if not recs:
            continue
        col = lambda k, f=1.0: [r[k] * f for r in recs]
        summary[name] = {
            k: (float(np.mean(col(k))), float(np.std(col(k), ddof=1)) if len(recs) > 1 else 0.0)
            for k in ("data_loss", "nfe", "train_nfe", "train_cpu_s", "predict_cpu_s")
        }
        print(
            f"{name:>15} {mean_std(col('data_loss')):>18} {mean_std(col('nfe')):>16} "
            f"{mean_std(col('train_nfe')):>14} {mean_std(col('train_cpu_s')):>16} "
            f"{mean_std(col('predict_cpu_s', 1e3)):>16}"
        )
    if a.curvature:
        print("\ncurvature of the data loss at the end of training (seed 0):")
        summary["curvature"] = curvature(results, names, os.path.dirname(a.out) or ".", targets, ts)
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
