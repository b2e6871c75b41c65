"""Full-Hessian speed: the seed-000 way (PyTorch + torchdiffeq), Diffrax + jax.hessian, and pyodejl.

Same network, same θ, same tolerances for all three:
MLP [2, w, …, w, 2] (``--depth`` hidden layers, default 1), tanh; targets
(cos t, −sin t) at 20 points on [0, 2]; y0 = (1, 0); dopri5, rtol 1e-7, atol 1e-9.

* seed way — torchdiffeq ``odeint`` (dopri5) and one autograd pass per Hessian
  row, as seed 000 §4.1 ("AA") describes;
* Diffrax ``DirectAdjoint`` + ``jax.hessian`` — the obvious JAX route;
* pyodejl's default (``auto``: the ``structured`` exact Hessian for MLP
  vector fields of any depth), and its ``direct-direct`` (forward over reverse).

Prints first-call time (compilation included), steady-state time (best of
``--repeats``), ratios and agreement; then a scaling table of pyodejl's full
Hessian from p ≈ 10² to 10⁴ with each size's peak resident memory (measured in
a fresh subprocess).

Run:  python benchmarks/hessian_speed.py [--widths 100 500] [--scaling] [--seed-rows N]
      python benchmarks/hessian_speed.py --depth 2 --widths 47     # p = 2493
Needs the ``bench`` extra (torch, torchdiffeq) for the seed-way column.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

TS = np.linspace(0.0, 2.0, 20)
TARGETS = np.stack([np.cos(TS), -np.sin(TS)], axis=1)
Y0 = np.array([1.0, 0.0])
RTOL, ATOL = 1e-7, 1e-9


DEPTH = 1  # hidden layers; set by --depth


def sizes_for(width):
    return [2] + [width] * DEPTH + [2]


def theta_for(width, seed=0):
    import pyodejl as pj

    return pj.MLP(sizes_for(width), "tanh").init(seed)


def pyodejl_hessian(width, theta, repeats, method=None):
    import pyodejl as pj

    model = pj.NeuralODE(pj.MLP(sizes_for(width), "tanh"), solver="dopri5", rtol=RTOL, atol=ATOL)
    t = time.perf_counter()
    obj = pj.TrajectoryLoss(model, ts=TS, y0=Y0, targets=TARGETS)
    H = obj.hessian(theta, method=method)
    first = time.perf_counter() - t
    times = [first]
    for _ in range(repeats):
        H = None  # free the last Hessian first: peak memory is then one Hessian's
        t = time.perf_counter()
        obj = pj.TrajectoryLoss(model, ts=TS, y0=Y0, targets=TARGETS)  # no per-θ cache carried over
        H = obj.hessian(theta, method=method)
        times.append(time.perf_counter() - t)
    return H, first, min(times), obj.stats(theta)


def diffrax_hessian(width, theta, repeats):
    import diffrax
    import jax
    import jax.numpy as jnp

    import pyodejl as pj

    mlp = pj.MLP(sizes_for(width), "tanh")

    def loss(th):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, a: mlp.apply(a, y)),
            diffrax.Dopri5(),
            TS[0],
            TS[-1],
            None,
            jnp.asarray(Y0),
            args=th,
            saveat=diffrax.SaveAt(ts=TS),
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
            adjoint=diffrax.DirectAdjoint(),
            max_steps=4096,
        )
        return jnp.mean((sol.ys - TARGETS) ** 2)

    hess = jax.jit(jax.hessian(loss))
    th = jnp.asarray(theta)
    t = time.perf_counter()
    H = np.asarray(hess(th))
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        H = np.asarray(hess(th))
        times.append(time.perf_counter() - t)
    return H, first, min(times)


def seed_way_hessian(width, theta, rows=None):
    """Seed 000's AA: torchdiffeq dopri5, then autograd once per Hessian row."""
    import torch
    from torchdiffeq import odeint

    torch.set_default_dtype(torch.float64)
    layers = []
    for n_in, n_out in zip(sizes_for(width)[:-1], sizes_for(width)[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.Tanh()]
    net = torch.nn.Sequential(*layers[:-1])
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(theta), net.parameters())
    params = list(net.parameters())
    ts, y0, tg = torch.as_tensor(TS), torch.as_tensor(Y0), torch.as_tensor(TARGETS)
    p = len(theta)
    rows = p if rows is None else min(rows, p)
    t = time.perf_counter()
    ys = odeint(lambda t_, y: net(y), y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
    loss = torch.mean((ys - tg) ** 2)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    g = torch.cat([x.reshape(-1) for x in grads])
    H = np.zeros((rows, p))
    for i in range(rows):
        row = torch.autograd.grad(g[i], params, retain_graph=True)
        H[i] = torch.cat([x.reshape(-1) for x in row]).detach().numpy()
    elapsed = time.perf_counter() - t
    return H, elapsed * p / rows, rows


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def compare(widths, repeats, seed_rows):
    head = ("p", "method", "first call s", "steady s", "seed/this", "max rel diff vs ours")
    print("{:>6} {:>28} {:>13} {:>10} {:>10} {:>21}".format(*head))
    row = "{:>6} {:>28} {:>13.3f} {:>10.3f} {:>10.1f} {:>21.2e}{}"
    for w in widths:
        theta = theta_for(w)
        p = len(theta)
        H_ours, first, steady, stats = pyodejl_hessian(w, theta, repeats)
        try:
            H_seed, t_seed, rows = seed_way_hessian(w, theta, seed_rows)
            seed_note = "" if rows == p else f" (extrapolated from {rows} rows)"
        except ImportError as e:  # pragma: no cover - optional extra
            H_seed, t_seed, seed_note = None, float("nan"), f" unavailable: {e}"
        H_dfx, first_dfx, steady_dfx = diffrax_hessian(w, theta, repeats)
        H_dd, first_dd, steady_dd, _ = pyodejl_hessian(w, theta, repeats, method="direct-direct")
        if H_seed is not None:
            diff = rel(H_seed, H_ours[: len(H_seed)])
            print(row.format(p, "seed way (torchdiffeq rows)", t_seed, t_seed, 1.0, diff, seed_note))
        diff = rel(H_dfx, H_ours)
        print(row.format(p, "DirectAdjoint+jax.hessian", first_dfx, steady_dfx, t_seed / steady_dfx, diff, ""))
        diff = rel(H_dd, H_ours)
        print(row.format(p, "pyodejl direct-direct", first_dd, steady_dd, t_seed / steady_dd, diff, ""))
        print(row.format(p, "pyodejl default (structured)", first, steady, t_seed / steady, 0.0, ""))
        warm = _first_call_with_warm_cache(w)
        print(f"{'':>6} first call in a new process with a warm compilation cache: {warm:.3f} s", end=" ")
        print(f"(seed/this {t_seed / warm:.1f})")
        print(f"{'':>6} first-call ratio seed/pyodejl = {t_seed / first:.1f};", end=" ")
        print(f"solver steps {stats.num_steps}, nfe {stats.nfe}")


def _first_call_with_warm_cache(width):
    """First-call time of a fresh process after another process filled the cache."""
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = {**__import__("os").environ, "PYODEJL_CACHE_DIR": cache}
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, __file__, "--depth", str(DEPTH), "--first-call-child", str(width)],
                capture_output=True,
                text=True,
                env=env,
            )
        return float(out.stdout.strip().splitlines()[-1])


def _first_call_child(width):
    theta = theta_for(width)
    _, first, _, _ = pyodejl_hessian(width, theta, repeats=0)
    print(first)


def _peak_rss_mb():
    """This process's own peak resident memory (VmHWM; ru_maxrss would include the parent's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _scaling_child(width):
    theta = theta_for(width)
    _, first, steady, stats = pyodejl_hessian(width, theta, repeats=1)
    peak_mb = _peak_rss_mb()
    print(json.dumps({"p": len(theta), "first": first, "steady": steady, "peak_mb": peak_mb, "steps": stats.num_steps}))


def scaling(widths):
    print(f"\n{'p':>6} {'first call s':>13} {'steady s':>10} {'peak RSS MB':>12} {'H size MB':>10}")
    for w in widths:
        out = subprocess.run(
            [sys.executable, __file__, "--depth", str(DEPTH), "--scaling-child", str(w)], capture_output=True, text=True
        )
        if out.returncode != 0:
            print(f"width {w}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        h_mb = r["p"] ** 2 * 8 / 2**20
        print(f"{r['p']:>6} {r['first']:>13.2f} {r['steady']:>10.2f} {r['peak_mb']:>12.0f} {h_mb:>10.0f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=None,
        help="hidden widths (default: 100 500 at depth 1, p = 5w + 2; 47 at depth 2, p = 2493)",
    )
    ap.add_argument("--depth", type=int, default=1, help="hidden layers of the MLP (default 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed-rows", type=int, default=None, help="time only this many seed-way rows and extrapolate")
    ap.add_argument("--scaling", action="store_true", help="also run the p = 1e2 … 1e4 scaling table")
    ap.add_argument("--scaling-widths", type=int, nargs="+", default=[20, 100, 200, 500, 1000, 2000])
    ap.add_argument("--scaling-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--first-call-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global DEPTH
    DEPTH = args.depth
    if args.widths is None:
        args.widths = [100, 500] if DEPTH == 1 else [47]
    if args.scaling_child:
        _scaling_child(args.scaling_child)
        return
    if args.first_call_child:
        _first_call_child(args.first_call_child)
        return
    compare(args.widths, args.repeats, args.seed_rows)
    if args.scaling:
        scaling(args.scaling_widths)


if __name__ == "__main__":
    main()
