"""Several processes, one objective: the several-hosts recipe, run on one machine.

Starts N local processes (default 2), each with ``--devices-per-process`` XLA host
devices (default 2), joined by ``jax.distributed.initialize`` over a local
coordinator with gloo CPU collectives. Every process builds the same objectives
with the same full data and ``devices=jax.device_count()`` (the batch split over
all N × 2 devices, half of them in the other process), then computes a value, a
gradient and a block of Hessian-vector products, for

* a :class:`pyodejl.TrajectoryLoss` (batch of 8 trajectories; also the full Hessian, p is
  small, and the top Hessian eigenvalue by Lanczos on ``hessian_operator``),
* a :class:`pyodejl.MinibatchObjective` of two such losses (``devices=`` on the mean),
* a :class:`pyodejl.EquilibriumLoss` of a small DEQ (value, gradient, products),
* a :class:`pyodejl.TrajectoryLoss` of a :class:`pyodejl.NeuralSDE` (8 trajectories,
  each on its own Brownian path; value, gradient, products).

A separate single-process run (one device) computes the reference. Every process
prints its numbers; the launcher prints the largest relative difference from the
reference over the processes and exits non-zero if a process fails or the run
exceeds ``--timeout`` (the processes are then killed).

    python examples/multi_process.py                  # 2 processes × 2 devices
    python examples/multi_process.py --processes 3 --json out.json

On real hosts the same worker code runs once per host, with
``coordinator_address`` the first host's address and ``process_id`` its rank
(``jax.distributed.initialize()`` reads both from SLURM/Open MPI/Cloud TPU
environments without arguments), and on GPUs without the gloo setting.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

# ---- the work every process does -------------------------------------------------------


def problem(devices):
    """The objectives, θ's and probe vectors: identical in every process (fixed seeds)."""
    import jax.numpy as jnp
    import numpy as np

    import pyodejl as pj

    ts = np.linspace(0, 1, 5)
    rng = np.random.default_rng(0)
    y0 = rng.normal(size=(8, 2))
    targets = np.stack([np.stack([np.cos(ts + k), np.sin(ts)], 1) for k in range(8)])
    model = pj.NeuralODE(pj.MLP([2, 3, 2], "tanh"), rtol=1e-6, atol=1e-8)  # few steps: few collectives
    theta = model.init(1)
    traj = pj.TrajectoryLoss(model, ts=ts, y0=y0, targets=targets, devices=devices)
    halves = [pj.TrajectoryLoss(model, ts=ts, y0=y0[i : i + 4], targets=targets[i : i + 4]) for i in (0, 4)]
    mini = pj.MinibatchObjective(halves, devices=devices)
    deq = pj.DEQ(pj.MLPCell(3, 3), encoder=pj.Dense((2, 3), "tanh"), solver="anderson", tol=1e-12, max_steps=200)
    x = rng.normal(size=(8, 2))
    eq = pj.EquilibriumLoss(deq, x, _deq_cost, devices=devices)
    theta_eq = deq.init(2)
    V = rng.normal(size=(model.num_params, 3))
    V_eq = rng.normal(size=(deq.num_params, 2))
    diffusion = pj.VectorField(_sde_diffusion, 2, init=lambda seed: np.array([0.2, 0.05]))
    sde = pj.NeuralSDE(pj.MLP([2, 3, 2], "tanh"), diffusion, dt0=0.05, rtol=1e-2, atol=1e-2, seed=3)
    sde_loss = pj.TrajectoryLoss(sde, ts=ts, y0=y0, targets=targets, devices=devices)
    theta_sde = sde.init(1)
    V_sde = rng.normal(size=(sde.num_params, 2))
    del jnp
    # the full Hessian and Lanczos once (trajectory): minibatch reaches them through the same products,
    # and its Lanczos alone cost 16 s a process
    return [("trajectory", traj, theta, V, True), ("minibatch", mini, theta, V, False),
            ("equilibrium", eq, theta_eq, V_eq, False), ("sde", sde_loss, theta_sde, V_sde, False)]


def _sde_diffusion(t, y, th):
    return th[0] * y + th[1]


def _deq_cost(z, extra):
    import jax.numpy as jnp

    return jnp.mean(jnp.sin(z) + 0.5 * z**2)


OBJECTIVES = ("trajectory", "minibatch", "equilibrium", "sde")


def compute(devices, names=OBJECTIVES):
    """``{objective: {quantity: list}}`` of host NumPy results, on this process."""
    import numpy as np

    from pyodejl import spectral

    out = {}
    for name, obj, theta, V, full in problem(devices):
        if name not in names:
            continue
        clock, seconds = time.perf_counter(), {}

        def timed(key, value):
            nonlocal clock
            now = time.perf_counter()
            seconds[key], clock = now - clock, now
            return value

        # chunk_size=1: every product (the block here, Lanczos's vectors and blocks) runs the one
        # compiled single-column kernel; a compilation of a partitioned program costs seconds
        res = dict(value=timed("value", obj.value(theta)), grad=timed("grad", obj.grad(theta)),
                   hvp=timed("hvp", obj.hvp(theta, V, chunk_size=1)))
        if full:
            res["hessian"] = timed("hessian", obj.hessian(theta))
            # a short basis: the top eigenvalue converges within it (tol 1e-9 leaves ~1e-18 in λ)
            top = spectral.eigenvalues(obj.hessian_operator(theta, chunk_size=1), k=1, which="largest", ncv=10, tol=1e-9, seed=0)
            res["top_eigenvalue"] = timed("top_eigenvalue", top.eigenvalues)
        out[name] = {k: np.asarray(v, dtype=float).tolist() for k, v in res.items()}
        out[name + ".seconds"] = seconds
    return out


def worker(rank, processes, port, names):
    import jax

    if rank >= 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=processes,
                                   process_id=rank)
    devices = jax.device_count() if rank >= 0 else None
    res = compute(devices, names)
    info = dict(rank=rank, process_index=jax.process_index(), devices=jax.device_count(),
                local_devices=jax.local_device_count(), used_devices=devices or 1)
    print("RESULT" + json.dumps(dict(info=info, results=res)), flush=True)
    if rank >= 0:
        jax.distributed.shutdown()


# ---- the launcher ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rel(a, b):
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def launch(processes=2, devices_per_process=2, timeout=300.0, names=OBJECTIVES, reference=None):
    """Run the reference and the N joined processes; return ``(reference, [per process], max_rel)``.

    ``reference``: a result computed already (``{"info": ..., "results": compute(None, names)}``);
    by default a single-process, single-device run before the others.

    Raises:
        RuntimeError: a process failed or the run exceeded ``timeout`` seconds (all killed).
    """
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
    deadline = time.monotonic() + timeout
    base = [sys.executable, os.path.abspath(__file__), "--processes", str(processes), "--objectives", *names]
    # the reference first, alone, then the joined processes (they share the machine's cores)
    results = [] if reference is None else [reference]
    groups = [] if reference is not None else [[base + ["--worker", "-1"]]]
    port = free_port()
    groups.append([base + ["--worker", str(r), "--port", str(port)] for r in range(processes)])
    for cmds in groups:
        procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for c in cmds]
        outs = []
        try:
            for p in procs:
                outs.append(p.communicate(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            for p in procs:
                p.communicate()
            raise RuntimeError(f"the processes did not finish within {timeout} s and were killed") from None
        for p, (so, se) in zip(procs, outs):
            lines = [ln for ln in so.splitlines() if ln.startswith("RESULT")]
            if p.returncode != 0 or not lines:
                raise RuntimeError(f"a process failed (exit {p.returncode}):\n{se[-3000:]}")
            results.append(json.loads(lines[-1][len("RESULT"):]))
    ref, rest = results[0], results[1:]
    worst = {}
    for r in rest:
        for obj, quantities in r["results"].items():
            if obj.endswith(".seconds"):
                continue
            for q, v in quantities.items():
                key = f"{obj}.{q}"
                worst[key] = max(worst.get(key, 0.0), _rel(v, ref["results"][obj][q]))
    return ref, rest, worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--devices-per-process", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before every process is killed")
    ap.add_argument("--json", default=None, help="write the reference, per-process results and differences here")
    ap.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.processes, args.port, args.objectives)
        return 0
    if args.processes < 1 or args.devices_per_process < 1:
        ap.error("--processes and --devices-per-process must be positive")
    ref, rest, worst = launch(args.processes, args.devices_per_process, args.timeout, args.objectives)
    for r in [ref] + rest:
        i = r["info"]
        who = "reference (1 process, 1 device)" if i["rank"] < 0 else (
            f"process {i['process_index']} ({i['local_devices']} of the {i['used_devices']} devices used)")
        print(who)
        for obj, q in r["results"].items():
            if obj.endswith(".seconds"):
                continue
            top = f", top eigenvalue {q['top_eigenvalue'][0]:.15g}" if "top_eigenvalue" in q else ""
            print(f"  {obj:12s} value {q['value']:.15g}, |grad| {sum(g * g for g in q['grad']) ** 0.5:.15g}{top}")
    print("largest relative difference from the reference over the processes:")
    for k, v in worst.items():
        print(f"  {k:30s} {v:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(reference=ref, processes=rest, max_relative_difference=worst), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
