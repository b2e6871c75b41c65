"""``make demo``: method agreement, then a Neural ODE and an augmented Neural ODE
trained on 2-D nested spheres with Hessian tracking (seed 000 §6, Fig. 11).

Writes to ``out``: ``agreement/`` (the engine's method-agreement job, when
:mod:`pyodejl.experiments.agreement` is present), ``nested_spheres_node/`` and
``nested_spheres_anode/`` (run folders), ``figures/demo_*.png`` and ``summary.md``.
Rerunning resumes finished or interrupted runs instead of recomputing them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pyodejl.experiments.runs import Run, RunConfig
from pyodejl.experiments.tracking import objective_from_run, track

__all__ = ["DEMO_CONFIGS", "demo_configs", "run_demo", "evolution_roughness", "compare_node_anode"]

#: Shared settings of the demo's two runs: 128 points of 2-D nested spheres
#: (Dupont et al. 2019), vector fields with one hidden layer of 16 tanh units,
#: the squared error on ±1 labels, full-batch Adam (lr 0.01) for 300 steps,
#: exact Hessians every 20 steps.
DEMO_COMMON = dict(task="nested-spheres", dim=2, num_samples=128, width=16, depth=1, activation="tanh",
                   loss="mse", optimizer="adam", lr=0.01, steps=300, hessian_every=20, seed=0)


def demo_configs(steps: int | None = None) -> dict[str, RunConfig]:
    """The NODE and ANODE (augment_dim 1) configurations of the demo."""
    common = dict(DEMO_COMMON)
    if steps is not None:
        common["steps"] = int(steps)
        common["hessian_every"] = max(1, int(steps) // 15)
    return {"node": RunConfig(model="node", **common),
            "anode": RunConfig(model="anode", augment_dim=1, **common)}


DEMO_CONFIGS = demo_configs()


def evolution_roughness(values, steps=None, start_fraction=0.5) -> float:
    """Total variation of a tracked series over the later part of training,
    relative to its mean magnitude there: ``Σ|Δλ| / mean|λ|`` over records with
    ``step >= start_fraction * last step``. 0 for a constant series; larger = less smooth.
    Used to quantify seed 000's "ANODE eigenvalues evolve more smoothly" (§6.2)."""
    v = np.asarray(values, dtype=float)
    s = np.arange(len(v)) if steps is None else np.asarray(steps, dtype=float)
    keep = s >= start_fraction * s[-1]
    v = v[keep]
    if len(v) < 2:
        return float("nan")
    return float(np.sum(np.abs(np.diff(v))) / max(np.mean(np.abs(v)), 1e-300))


def compare_node_anode(node: Run, anode: Run) -> list[dict]:
    """Seed 000 §6.2's three claims, evaluated on two finished runs.

    Returns a list of ``{"claim", "node", "anode", "holds"}`` dicts.
    """
    n_last, a_last = node.records[-1], anode.records[-1]
    rough_n = evolution_roughness(node.column("eig_max"), node.steps)
    rough_a = evolution_roughness(anode.column("eig_max"), anode.steps)
    return [
        dict(claim="ANODE finds a flatter minimum (smaller final largest eigenvalue)",
             node=n_last["eig_max"], anode=a_last["eig_max"], holds=a_last["eig_max"] < n_last["eig_max"]),
        dict(claim="ANODE eigenvalues evolve more smoothly (smaller late-training roughness of eig_max)",
             node=rough_n, anode=rough_a, holds=rough_a < rough_n),
        dict(claim="ANODE's negative eigenvalues are smaller in magnitude at the end (|eig_min|)",
             node=abs(min(n_last["eig_min"], 0.0)), anode=abs(min(a_last["eig_min"], 0.0)),
             holds=abs(min(a_last["eig_min"], 0.0)) < abs(min(n_last["eig_min"], 0.0))),
    ]


def _fmt(x):
    if x is None:
        return "—"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.4g}"


def run_demo(out="runs/demo", steps: int | None = None, progress: bool = True) -> Path:
    """Run the demo and write its results and ``summary.md`` to ``out``.

    Args:
        out: output folder (default ``runs/demo``).
        steps: training steps per model (default 300; the tracking interval is
            then ``steps // 15``).
        progress: show progress bars.

    Returns:
        the path of ``summary.md``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyodejl.experiments.surface import loss_surface
    from pyodejl.plotting.training import plot_evolution, plot_loss_surface, plot_spectra_stages

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    t_start = time.perf_counter()
    lines = ["# pyodejl demo", ""]

    # ---- 1. method agreement (issue 2), when the engine provides it ----------------
    try:
        from pyodejl.experiments.agreement import run_agreement
    except ImportError:
        lines += ["## Method agreement", "", "Skipped: `pyodejl.experiments.agreement` is not available.", ""]
    else:
        t0 = time.perf_counter()
        result = run_agreement(out / "agreement")
        lines += ["## Method agreement", "", f"See `agreement/` ({time.perf_counter() - t0:.0f} s)."]
        if isinstance(result, str):  # a Markdown summary, if run_agreement returns one
            lines += ["", result]
        lines.append("")

    # ---- 2. NODE vs ANODE on 2-D nested spheres -------------------------------------
    runs, seconds = {}, {}
    for name, cfg in demo_configs(steps).items():
        t0 = time.perf_counter()
        runs[name] = track(cfg, out / f"nested_spheres_{name}", progress=progress)
        seconds[name] = time.perf_counter() - t0
    node, anode = runs["node"], runs["anode"]
    labels = [f"NODE (p={node.records[0]['num_params']})", f"ANODE (p={anode.records[0]['num_params']})"]
    written = []
    fig = plot_evolution([node, anode], labels, path=figs / "demo_evolution.png",
                         title="2-D nested spheres: Hessian evolution, NODE vs ANODE (cf. seed 000 Fig. 11)")
    plt.close(fig)
    written.append("figures/demo_evolution.png")
    for name, lab in zip(("node", "anode"), labels):
        fig = plot_spectra_stages(runs[name], path=figs / f"demo_spectra_{name}.png",
                                  title=f"Hessian spectra during training — {lab} (cf. seed 000 Figs. 14/15)")
        plt.close(fig)
        written.append(f"figures/demo_spectra_{name}.png")
    for name, lab in zip(("node", "anode"), labels):
        run = runs[name]
        params = run.params()
        last = max(params)
        a, b, Z, _ = loss_surface(objective_from_run(run.path), params[last], radius=1.0, num=21)
        fig = plot_loss_surface(a, b, Z, path=figs / f"demo_surface_{name}.png",
                                title=f"{lab}: loss along the top two Hessian eigenvectors at step {last}")
        plt.close(fig)
        written.append(f"figures/demo_surface_{name}.png")

    cfg = node.config
    lines += [
        "## NODE vs ANODE on 2-D nested spheres (seed 000 §6, Fig. 11)",
        "",
        f"{cfg.num_samples} points (Dupont et al. 2019's g(x): −1 inside radius 0.5, +1 for radius in [1, 1.5]), "
        f"vector field 1 hidden layer × {cfg.width} {cfg.activation}, linear readout of the final state, "
        f"squared error on ±1 labels, full-batch Adam lr {cfg.lr}, {cfg.steps} steps, "
        f"exact Hessian ({cfg.hessian_method}) every {cfg.hessian_every} steps, "
        f"dopri5 rtol {cfg.rtol} atol {cfg.atol}.",
        "",
        "| model | parameters | final loss | accuracy | eig_max | eig_2nd | eig_min | trace | NFE | run time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("node", "anode"):
        r = runs[name].records[-1]
        lines.append(f"| {name.upper()} | {r['num_params']} | {_fmt(r['loss'])} | {_fmt(r.get('accuracy'))} | "
                     f"{_fmt(r['eig_max'])} | {_fmt(r['eig_2nd'])} | {_fmt(r['eig_min'])} | {_fmt(r['trace'])} | "
                     f"{r['nfe']} | {seconds[name]:.0f} |")
    lines += ["", "Seed 000's claims (§6.2) on these two runs:", "",
              "| claim | NODE | ANODE | holds here |", "|---|---|---|---|"]
    for c in compare_node_anode(node, anode):
        lines.append(f"| {c['claim']} | {_fmt(c['node'])} | {_fmt(c['anode'])} | {_fmt(c['holds'])} |")
    peak_n = int(node.steps[np.argmax(node.column("eig_max"))])
    peak_a = int(anode.steps[np.argmax(anode.column("eig_max"))])
    lines += ["", f"Largest eigenvalue peaks at step {peak_n} (NODE) and {peak_a} (ANODE) "
              "(seed 000: 'after an initial period of growth, the top eigenvalues ... decay').",
              "", "Roughness = total variation of eig_max over the second half of training / its mean there.",
              "", "Figures: " + ", ".join(f"`{w}`" for w in written), "",
              f"Total demo time: {time.perf_counter() - t_start:.0f} s.", ""]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines))
    print("\n".join(lines))
    return summary
