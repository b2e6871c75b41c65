"""One prepared check of an accelerator machine: devices, float64 agreement, speed, sharding.

Runs unchanged on a GPU machine (about 2–4 minutes, well under 5) and, with
``--quick`` (small sizes), on a CPU as a smoke test. Every section is guarded:
a failure is recorded in the JSON (with its traceback) and the next section
still runs. Sections:

* ``devices`` — ``jax.devices()`` with each ``device_kind`` and platform;
* ``agreement`` — value, gradient and a block of Hessian-vector products of a small
  trajectory loss (MLP [2, 16, 2], dopri5, rtol 1e-7) on ``jax.devices("cpu")[0]``
  and on the default device; the maximum relative difference of each (float64 on
  both: differences are reduction order and library kernels, ~1e-12 or less);
* ``hessian_1e4`` — the full Hessian at p = 10⁴ (``benchmarks/hessian_speed.py``'s
  MLP [2, 2000, 2] problem, its ``pyodejl_hessian``): first call and steady time;
* ``large_node`` — gradient and one HVP of the p ≈ 166k digits Neural ODE
  (``benchmarks/large_node_curvature.py``'s 784 → 100 → 784 concat field): first
  call and steady time;
* ``sharded`` — gradient and a 16-column HVP block of a batch of trajectories split
  over every visible device of the default platform, their times, and their
  relative difference from one device.

    python benchmarks/device_check.py                      # on the GPU machine
    python benchmarks/device_check.py --quick --out /tmp/dc.json   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the benchmarks' shared helpers
from _timing import max_rel_diff as _rel  # noqa: E402
from _timing import timed as _timed  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))






def _bench_module(name):
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    return __import__(name)


def devices():
    import jax

    return dict(platform=jax.default_backend(), count=jax.device_count(),
                devices=[dict(id=d.id, kind=d.device_kind, platform=d.platform) for d in jax.devices()],
                x64=bool(jax.config.jax_enable_x64))


def _small_problem(batch=4, width=16):
    import pyodejl as pj

    ts = np.linspace(0, 1, 8)
    rng = np.random.default_rng(0)
    y0 = rng.normal(size=(batch, 2))
    targets = np.stack([np.stack([np.cos(ts + y[0]), np.sin(ts + y[1])], 1) for y in y0])
    model = pj.NeuralODE(pj.MLP([2, width, 2], "tanh"), solver="dopri5", rtol=1e-7, atol=1e-9)
    theta = model.init(0)
    V = rng.normal(size=(model.num_params, 4))
    return model, ts, y0, targets, theta, V


def agreement(quick):
    import jax

    import pyodejl as pj

    model, ts, y0, targets, theta, V = _small_problem()
    out = {}
    for name, dev in (("cpu", jax.devices("cpu")[0]), ("default", jax.devices()[0])):
        with jax.default_device(dev):
            obj = pj.TrajectoryLoss(model, ts=ts, y0=y0, targets=targets)
            out[name] = dict(value=obj.value(theta), grad=obj.grad(theta), hvp=obj.hvp(theta, V),
                             device=str(dev))
    return dict(default_device=out["default"]["device"], cpu_device=out["cpu"]["device"],
                **{f"max_rel_{k}": _rel(out["default"][k], out["cpu"][k]) for k in ("value", "grad", "hvp")})


def hessian_1e4(quick, repeats):
    hs = _bench_module("hessian_speed")
    width = 100 if quick else 2000
    theta = hs.theta_for(width)
    H, first, steady, stats = hs.pyodejl_hessian(width, theta, repeats)
    return dict(p=len(theta), first_s=first, steady_s=steady, steps=stats.num_steps,
                symmetric_rel=_rel(H, H.T), finite=bool(np.all(np.isfinite(H))))


def large_node(quick, repeats):
    lc = _bench_module("large_node_curvature")
    from pyodejl.experiments import build_objective, make_task

    args = types.SimpleNamespace(rtol=1e-7, atol=1e-9)
    samples = 8 if quick else 512
    task = make_task("digits", seed=0, dim=lc.IMAGE_DIM)
    obj = build_objective(lc.spec_for(args), task, indices=np.arange(samples))
    from pyodejl.experiments import init_params

    theta = init_params(lc.spec_for(args), task, seed=0)
    v = np.random.default_rng(0).standard_normal(len(theta))
    g, g_first, g_steady = _timed(lambda: obj.grad(theta), repeats)
    hv, h_first, h_steady = _timed(lambda: obj.hvp(theta, v), repeats)
    return dict(p=obj.num_params, samples=samples, steps=obj.stats(theta).num_steps,
                grad_first_s=g_first, grad_steady_s=g_steady, hvp_first_s=h_first, hvp_steady_s=h_steady,
                grad_norm=float(np.linalg.norm(g)), hvp_norm=float(np.linalg.norm(hv)))


def sharded(quick, repeats):
    import jax

    import pyodejl as pj

    n = jax.device_count()
    batch = n * (4 if quick else 64)
    model, ts, y0, targets, theta, _ = _small_problem(batch=batch, width=16 if quick else 64)
    V = np.random.default_rng(1).normal(size=(model.num_params, 16))
    res = dict(devices=n, batch=batch, p=model.num_params)
    outs = {}
    for k in sorted({1, n}):
        obj = pj.TrajectoryLoss(model, ts=ts, y0=y0, targets=targets, devices=k)
        g, _, g_s = _timed(lambda: obj.grad(theta), repeats)
        hv, _, h_s = _timed(lambda: obj.hvp(theta, V, chunk_size=16), repeats)
        outs[k] = (g, hv)
        res[f"grad_steady_s_{k}"], res[f"hvp_block_steady_s_{k}"] = g_s, h_s
    res["max_rel_grad"] = _rel(outs[n][0], outs[1][0])
    res["max_rel_hvp"] = _rel(outs[n][1], outs[1][1])
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="device_check.json", help="JSON output path (default device_check.json)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a CPU smoke test")
    ap.add_argument("--repeats", type=int, default=None, help="steady-state repeats (default 2; 1 with --quick)")
    ap.add_argument("--sections", nargs="+", default=["devices", "agreement", "hessian_1e4", "large_node", "sharded"])
    args = ap.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 2)
    import pyodejl  # noqa: F401  (float64 on)

    runs = dict(devices=lambda: devices(), agreement=lambda: agreement(args.quick),
                hessian_1e4=lambda: hessian_1e4(args.quick, repeats), large_node=lambda: large_node(args.quick, repeats),
                sharded=lambda: sharded(args.quick, repeats))
    report = dict(quick=args.quick, repeats=repeats)
    for name in args.sections:
        if name not in runs:
            ap.error(f"unknown section {name!r}; expected some of {list(runs)}")
        t = time.perf_counter()
        try:
            report[name] = dict(ok=True, **runs[name]())
        except Exception as e:  # recorded, and the next section runs
            report[name] = dict(ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        report[name]["section_s"] = time.perf_counter() - t
        print(f"[{name}] " + json.dumps({k: v for k, v in report[name].items() if k != "traceback"}), flush=True)
        with open(args.out, "w") as f:  # rewritten after every section: a kill keeps what finished
            json.dump(report, f, indent=1, default=str)
    failed = [n for n in args.sections if not report[n]["ok"]]
    print(f"wrote {args.out}; " + (f"failed sections: {failed}" if failed else "every section ran"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
