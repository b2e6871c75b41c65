"""Hessian against generalised Gauss–Newton (and empirical Fisher) spectra through training.

Two seed tasks (seed 000 §5–6), each trained with Adam while the exact Hessian H, the
GGN G = Jᵀ∇²ℓJ of the data term (``loss.ggn``) and, for the batched task, the empirical
Fisher F = (1/N) Σ g_n g_nᵀ (``loss.empirical_fisher``) are formed at a few steps and
diagonalised:

* ``coupled-sinusoids``: a Neural ODE 2 → 16 → 2 (tanh, p = 82) fitting one trajectory
  observed at 40 random times (MSE). z = the observed states. One trajectory, so F has rank 1
  and is left out.
* ``nested-spheres`` (2-D, 128 points): an augmented Neural ODE (one zero appended,
  3 → 16 → 3 tanh) with a linear readout (p = 119), MSE on the ±1 labels (Dupont et al.
  2019). The GGN linearises the readout too: the cost is an ``OutputCost(readout, mse)``
  (z = the 128 predictions). For comparison the script also reports the GGN of the
  experiments' own objective, whose cost takes z = (states, readout parameters)
  (the module's default definition): its readout block is bilinear, so that matrix can
  be indefinite.

    python examples/ggn_vs_hessian.py            # ~5 min on 2 cores; docs/figures/ggn_vs_hessian.png
    python examples/ggn_vs_hessian.py --quick    # < 1 min smoke run (smaller models, 20 steps)
    python examples/ggn_vs_hessian.py --replot   # redraw the figure from the saved numbers

Numbers go to ``runs/ggn_vs_hessian[_quick].json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pyodejl as pj  # noqa: E402
from pyodejl.derivatives.gauss_newton import OutputCost  # noqa: E402
from pyodejl.experiments import ModelSpec, build_objective, init_params, make_task  # noqa: E402
from pyodejl.experiments.trainer import Measurement, Problem, Training, train  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEED = 0


def readout(extra, Y, labels):
    """w · y(T) + b for each point: the predictions z of the GGN."""
    D = Y.shape[-1]
    return Y[:, -1, :] @ extra[:D] + extra[D]


def mse(F, labels):
    return jnp.mean((F - labels) ** 2)


def objectives(name, quick):
    """(training objective, objective with the experiments' cost or None, θ0, description)."""
    width = 8 if quick else 16
    if name == "coupled-sinusoids":
        task = make_task(name, seed=SEED, num_samples=20 if quick else 40)
        spec = ModelSpec("node", width=width)
        loss = build_objective(spec, task)
        return loss, None, init_params(spec, task, SEED), f"NODE 2→{width}→2, MSE, one trajectory"
    task = make_task(name, seed=SEED, dim=2, num_samples=32 if quick else 128)
    spec = ModelSpec("anode", width=width, augment_dim=1).resolved(task)
    default = build_objective(spec, task)  # cost: ReadoutCost (z = (states, readout) in the GGN)
    split = pj.ObservationLoss(default.model, default.ts, task.x, OutputCost(readout, mse),
                               data=task.y, num_extra_params=default.num_params - default.model.num_params)
    n = len(task.y)
    return split, default, init_params(spec, task, SEED), f"ANODE 3→{width}→3 + readout, MSE, {n} points"


def spectrum_stats(H, G, F=None, k=5):
    lh, Uh = np.linalg.eigh(H)
    lg, Ug = np.linalg.eigh(G)
    scale = np.abs(lh).max()
    out = dict(
        lam_max_H=float(lh[-1]), lam_max_G=float(lg[-1]), lam_min_H=float(lh[0]), lam_min_G=float(lg[0]),
        trace_H=float(lh.sum()), trace_G=float(lg.sum()),
        neg_count_H=int(np.sum(lh < -1e-8 * scale)),
        neg_mass_H=float(-lh[lh < 0].sum() / np.abs(lh).sum()),
        rel_diff=float(np.linalg.norm(H - G) / np.linalg.norm(H)),
        top1_overlap=float(abs(Uh[:, -1] @ Ug[:, -1])),
        topk_overlap=float(np.linalg.norm(Uh[:, -k:].T @ Ug[:, -k:]) ** 2 / k),
        eig_H=lh.tolist(), eig_G=lg.tolist(),
    )
    if F is not None:
        lf, Uf = np.linalg.eigh(F)
        out.update(lam_max_F=float(lf[-1]), trace_F=float(lf.sum()), eig_F=lf.tolist(),
                   top1_overlap_FG=float(abs(Uf[:, -1] @ Ug[:, -1])),
                   cos_FG=float(np.sum(F * G) / (np.linalg.norm(F) * np.linalg.norm(G))))
    return out


def run_task(name, quick, steps, checkpoints, lr):
    loss, default, theta, description = objectives(name, quick)
    start = time.perf_counter()

    def curvature(objective, theta):
        H = loss.hessian(theta)
        G = loss.ggn(theta)
        F = loss.empirical_fisher(theta) if loss.batch_size > 1 else None
        rec = dict(loss=loss.value(theta), **spectrum_stats(H, G, F))
        if default is not None:  # the (states, readout)-output GGN of the same loss
            lam = np.linalg.eigvalsh(default.ggn(theta))
            rec["lam_min_G_default"], rec["lam_max_G_default"] = float(lam[0]), float(lam[-1])
        print(f"  {name}: loss {rec['loss']:.4g}, λmax H {rec['lam_max_H']:.4g} "
              f"G {rec['lam_max_G']:.4g}, λmin H {rec['lam_min_H']:.3g}, "
              f"‖H−G‖/‖H‖ {rec['rel_diff']:.3f}  ({time.perf_counter() - start:.0f} s)", flush=True)
        return rec

    # Adam on the discrete gradient through the one trainer; the measurement runs before the
    # update of each checkpoint step and after the last one
    out = train(Problem(theta, lambda step, indices: loss), Training(steps=steps, lr=lr),
                measurements=(Measurement("curvature", curvature, at=tuple(checkpoints)),))
    records = [{k: v for k, v in r.items() if k != "kind"} for r in out["records"] if r["kind"] == "measurement"]
    return dict(task=name, description=description, num_params=int(loss.num_params), lr=lr,
                records=records, seconds=time.perf_counter() - start)


def plot(results, path):
    fig, axes = plt.subplots(len(results), 3, figsize=(15, 4.2 * len(results)), squeeze=False)
    for row, res in zip(axes, results):
        recs = res["records"]
        first, last = recs[0], recs[-1]
        ax = row[0]
        for rec, ls in ((first, ":"), (last, "-")):
            r = np.arange(1, len(rec["eig_H"]) + 1)
            ax.plot(r, rec["eig_H"][::-1], ls, color="C0", label=f"H, step {rec['step']}")
            ax.plot(r, rec["eig_G"][::-1], ls, color="C1", label=f"GGN, step {rec['step']}")
            if "eig_F" in rec:
                ax.plot(r, rec["eig_F"][::-1], ls, color="C2", label=f"emp. Fisher, step {rec['step']}")
        scale = max(abs(last["lam_max_H"]), abs(first["lam_max_H"]))
        ax.set_yscale("symlog", linthresh=1e-8 * scale)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="eigenvalue rank", ylabel="eigenvalue (symlog)",
               title=f"{res['task']}: {res['description']} (p = {res['num_params']})")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)

        steps = [r["step"] for r in recs]
        x = np.maximum(steps, 1)
        ax = row[1]
        ax.plot(x, [r["lam_max_H"] for r in recs], "o-", color="C0", label="λmax(H)")
        ax.plot(x, [r["lam_max_G"] for r in recs], "s--", color="C1", label="λmax(GGN)")
        ax.plot(x, [-r["lam_min_H"] for r in recs], "v:", color="C0", label="−λmin(H)")
        if "lam_max_F" in recs[0]:
            ax.plot(x, [r["lam_max_F"] for r in recs], "^-.", color="C2", label="λmax(emp. Fisher)")
        ax.plot(x, [r["loss"] for r in recs], "-", color="0.6", label="loss")
        ax.set(xscale="log", yscale="log", xlabel="training step (0 plotted at 1)", title="extremes through training")
        ax.legend(fontsize=7)

        ax = row[2]
        ax.plot(x, [r["rel_diff"] for r in recs], "o-", label="‖H − GGN‖_F / ‖H‖_F")
        ax.plot(x, [r["neg_mass_H"] for r in recs], "v:", label="negative mass of H: Σ|λ<0| / Σ|λ|")
        ax.plot(x, [r["top1_overlap"] for r in recs], "s--", label="|⟨u₁(H), u₁(GGN)⟩|")
        ax.plot(x, [r["topk_overlap"] for r in recs], "d-.", label="top-5 subspace overlap")
        ax.set(xscale="log", ylim=(-0.02, 1.05), xlabel="training step (0 plotted at 1)",
               title="where H and GGN differ")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results):
    lines = []
    for res in results:
        lines.append(f"\n{res['task']} ({res['description']}, p = {res['num_params']}, {res['seconds']:.0f} s)")
        head = ("step", "loss", "λmax H", "λmax G", "λmin H", "#neg H", "neg mass", "‖H−G‖/‖H‖", "u1·u1", "top5",
                "λmax F", "λmin G(Y,θx)")
        lines.append(" ".join(f"{h:>11}" for h in head))
        for r in res["records"]:
            vals = (r["step"], r["loss"], r["lam_max_H"], r["lam_max_G"], r["lam_min_H"], r["neg_count_H"],
                    r["neg_mass_H"], r["rel_diff"], r["top1_overlap"], r["topk_overlap"],
                    r.get("lam_max_F", float("nan")), r.get("lam_min_G_default", float("nan")))
            lines.append(" ".join(f"{v:>11d}" if isinstance(v, int) else f"{v:>11.4g}" for v in vals))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, 20 steps (a smoke run)")
    parser.add_argument("--replot", action="store_true", help="redraw the figure from the saved JSON")
    args = parser.parse_args()
    suffix = "_quick" if args.quick else ""
    json_path = ROOT / "runs" / f"ggn_vs_hessian{suffix}.json"
    fig_path = ROOT / "runs" / "ggn_vs_hessian_quick.png"
    if not args.quick:
        fig_path = ROOT / "docs" / "figures" / "ggn_vs_hessian.png"
    if args.replot:
        results = json.loads(json_path.read_text())
        plot(results, fig_path)
        print(table(results))
        return
    if args.quick:
        steps, checkpoints = 20, (0, 20)
    else:
        steps, checkpoints = 300, (0, 10, 30, 100, 300)
    start = time.perf_counter()
    results = [run_task("coupled-sinusoids", args.quick, steps, checkpoints, lr=0.02),
               run_task("nested-spheres", args.quick, steps, checkpoints, lr=0.01)]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1))
    plot(results, fig_path)
    print(table(results))
    print(f"\nwrote {fig_path} ({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
