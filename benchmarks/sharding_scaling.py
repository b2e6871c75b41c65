"""Scaling of sharded gradients and Hessian-vector products from 1 to N devices.

Each device count runs in a fresh interpreter (JAX fixes its devices at
start-up). On a CPU the devices are XLA host devices
(``--xla_force_host_platform_device_count``) sharing the machine's cores, so
efficiency is bounded by the core count; on a GPU machine pass ``--platform gpu``
to use the real cards. Prints, per device count, the steady time of a
gradient and of a block of Hessian-vector products, the speed-up over one
device and the efficiency speed-up / n.

    python benchmarks/sharding_scaling.py                 # 1, 2, 4 host devices
    python benchmarks/sharding_scaling.py --platform gpu --devices 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent(
    """
    import json, sys, time, numpy as np, jax, pyodejl as pj
    n, batch, width, cols = (int(a) for a in sys.argv[1:5])
    ts = np.linspace(0, 1, 10)
    rng = np.random.default_rng(0)
    y0 = rng.normal(size=(batch, 2))
    targets = np.stack([np.stack([np.cos(ts + y[0]), np.sin(ts + y[1])], 1) for y in y0])
    model = pj.NeuralODE(pj.MLP([2, width, 2], "tanh"), rtol=1e-7, atol=1e-9)
    obj = pj.TrajectoryLoss(model, ts=ts, y0=y0, targets=targets, devices=n)
    theta = model.init(0)
    V = rng.normal(size=(model.num_params, cols))
    def best(f, reps=3):
        f()
        out = []
        for _ in range(reps):
            t0 = time.perf_counter(); f(); out.append(time.perf_counter() - t0)
        return min(out)
    g = best(lambda: obj.grad(theta))
    h = best(lambda: obj.hvp(theta, V, chunk_size=cols))
    print("RESULT" + json.dumps(dict(n=n, grad=g, hvp=h, device=str(jax.devices()[0].device_kind),
                                     platform=jax.devices()[0].platform)))
    """
)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--batch", type=int, default=256, help="trajectories (divisible by every device count)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--columns", type=int, default=16, help="tangents per HVP block")
    p.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    args = p.parse_args(argv)
    env = dict(os.environ)
    if args.platform == "cpu":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={max(args.devices)}"
        env["JAX_PLATFORMS"] = "cpu"
    rows = []
    for n in args.devices:
        cmd = [sys.executable, "-c", WORKER, str(n), str(args.batch), str(args.width), str(args.columns)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            sys.exit(f"devices={n} failed: {proc.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][6:]))
    base = rows[0]
    print(f"device: {base['device']} ({base['platform']}); batch {args.batch}, MLP [2, {args.width}, 2], "
          f"{args.columns} tangents per HVP block; {os.cpu_count()} CPU cores")
    print(f"{'devices':>8} {'grad s':>9} {'speed-up':>9} {'eff.':>6} {'HVP s':>9} {'speed-up':>9} {'eff.':>6}")
    for r in rows:
        sg, sh = base["grad"] / r["grad"], base["hvp"] / r["hvp"]
        print(f"{r['n']:>8} {r['grad']:>9.4f} {sg:>9.2f} {sg / r['n'] * base['n']:>6.2f} "
              f"{r['hvp']:>9.4f} {sh:>9.2f} {sh / r['n'] * base['n']:>6.2f}")


if __name__ == "__main__":
    main()
