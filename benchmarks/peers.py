"""Peers, side by side: one problem, each library's Hessian / HVPs timed against ours.

The problem is README's MLP field, ``pj.MLP([2, w, 2], activation="tanh")``
(``--widths``: 16, 64, 128 give p = 82, 322, 642), one trajectory from y0 = (1, 0)
fitted to (cos t, −sin t) at 10 points on [0, 1] (mean squared error), dopri5,
rtol 1e-7, atol 1e-9, the same θ for every library. Timed, for each p:

* ``ours`` — ``TrajectoryLoss.hessian`` (default method) and ``hvp`` of a block of
  ``--hvp-columns`` tangents;
* ``diffrax-hessian`` — ``diffrax.diffeqsolve`` with ``DirectAdjoint`` under
  ``jax.jit(jax.hessian(loss))``;
* ``diffrax-hvp`` — the same solve, HVPs as ``jax.jvp`` over ``jax.grad``, ``vmap``-ed
  over the block (then compared with our HVPs);
* ``torchdiffeq-hessian`` — torchdiffeq ``odeint`` (dopri5) with
  ``torch.autograd.functional.hessian``;
* ``pyhessian-loop`` — PyHessian's scheme: one torchdiffeq solve, ``create_graph``
  gradient, then one double-backward HVP per column, building the Hessian column by
  column.

The torch peers need the ``bench`` extra (``pip install torch==2.13.0 torchdiffeq``,
a CPU build); without it they are skipped with a note. For each peer: first call
(compilation included, for JAX a fresh jit), steady time (best of ``--repeats``),
the ratio peer / ours (same kind: Hessian against our Hessian, HVP block against our
HVP block) and the agreement, max |peer − ours| / max |ours|. The peers do not clip
steps to the observation times (we do), so agreement is at the level of the solver
tolerance (~1e-6), not round-off.

    python benchmarks/peers.py                             # p = 82, 322, 642
    python benchmarks/peers.py --widths 16 --repeats 5 --out peers.json

Timings from a loaded machine are noise: run it on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the benchmarks' shared helpers
from _timing import max_rel_diff as _rel  # noqa: E402
from _timing import timed as _timed  # noqa: E402

TS = np.linspace(0.0, 1.0, 10)
TARGETS = np.stack([np.cos(TS), -np.sin(TS)], axis=1)
Y0 = np.array([1.0, 0.0])
RTOL, ATOL = 1e-7, 1e-9






# ---- ours ------------------------------------------------------------------------------------
def ours(width, theta, V, repeats):
    import pyodejl as pj

    model = pj.NeuralODE(pj.MLP([2, width, 2], activation="tanh"), solver="dopri5", rtol=RTOL, atol=ATOL)

    def fresh():  # a new objective: no per-θ cache carried over (the solve is timed too)
        return pj.TrajectoryLoss(model, ts=TS, y0=Y0, targets=TARGETS)

    H, h_first, h_steady = _timed(lambda: fresh().hessian(theta), repeats)
    HV, v_first, v_steady = _timed(lambda: fresh().hvp(theta, V), repeats)
    return dict(H=H, HV=HV, hessian=(h_first, h_steady), hvp=(v_first, v_steady))


# ---- Diffrax ---------------------------------------------------------------------------------
def _diffrax_loss(width):
    import diffrax
    import jax.numpy as jnp

    import pyodejl as pj

    mlp = pj.MLP([2, width, 2], activation="tanh")

    def loss(th):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, a: mlp.apply(a, y)), diffrax.Dopri5(), TS[0], TS[-1], None,
            jnp.asarray(Y0), args=th, saveat=diffrax.SaveAt(ts=TS),
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
            adjoint=diffrax.DirectAdjoint(), max_steps=4096,
        )
        return jnp.mean((sol.ys - TARGETS) ** 2)

    return loss


def diffrax_hessian(width, theta, repeats):
    import jax
    import jax.numpy as jnp

    hess = jax.jit(jax.hessian(_diffrax_loss(width)))
    th = jnp.asarray(theta)
    H, first, steady = _timed(lambda: np.asarray(hess(th)), repeats)
    return dict(H=H, time=(first, steady))


def diffrax_hvp(width, theta, V, repeats):
    import jax
    import jax.numpy as jnp

    grad = jax.grad(_diffrax_loss(width))
    hvps = jax.jit(jax.vmap(lambda th, v: jax.jvp(grad, (th,), (v,))[1], in_axes=(None, 1), out_axes=1))
    th, Vj = jnp.asarray(theta), jnp.asarray(V)
    HV, first, steady = _timed(lambda: np.asarray(hvps(th, Vj)), repeats)
    return dict(HV=HV, time=(first, steady))


# ---- torch -----------------------------------------------------------------------------------
def _torch_net(width, theta):
    import torch

    torch.set_default_dtype(torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(), torch.nn.Linear(width, 2))
    # pyodejl's MLP θ layout per layer: W (out, in) row-major, then b — torch's parameter order
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(theta), net.parameters())
    return net


def _torch_loss(width):
    import torch
    from torchdiffeq import odeint

    ts, y0, tg = torch.as_tensor(TS), torch.as_tensor(Y0), torch.as_tensor(TARGETS)
    shapes = [(width, 2), (width,), (2, width), (2,)]

    def loss(flat):
        parts, i = [], 0
        for s in shapes:
            n = int(np.prod(s))
            parts.append(flat[i : i + n].reshape(s))
            i += n
        W1, b1, W2, b2 = parts
        f = lambda t, y: torch.tanh(y @ W1.T + b1) @ W2.T + b2
        ys = odeint(f, y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        return torch.mean((ys - tg) ** 2)

    return loss


def torchdiffeq_hessian(width, theta, repeats):
    import torch

    loss = _torch_loss(width)
    th = torch.as_tensor(theta)
    H, first, steady = _timed(lambda: torch.autograd.functional.hessian(loss, th).numpy(), repeats)
    return dict(H=H, time=(first, steady))


def pyhessian_loop(width, theta, repeats):
    """PyHessian's HVP: double backward through one solve's graph, one column at a time."""
    import torch
    from torchdiffeq import odeint

    net = _torch_net(width, theta)
    params = list(net.parameters())

    ts, y0, tg = torch.as_tensor(TS), torch.as_tensor(Y0), torch.as_tensor(TARGETS)
    p = len(theta)

    def hessian():
        ys = odeint(lambda t, y: net(y), y0, ts, method="dopri5", rtol=RTOL, atol=ATOL)
        loss = torch.mean((ys - tg) ** 2)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        H = np.empty((p, p))
        for j in range(p):
            e = torch.zeros(p)
            e[j] = 1.0
            v, i = [], 0  # e_j split into the parameters' shapes
            for g in grads:
                v.append(e[i : i + g.numel()].reshape(g.shape))
                i += g.numel()
            Hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
            H[:, j] = torch.cat([h.reshape(-1) for h in Hv]).numpy()
        return H

    H, first, steady = _timed(hessian, repeats)
    return dict(H=H, time=(first, steady))


def _torch_available():
    try:
        import torch  # noqa: F401
        import torchdiffeq  # noqa: F401
    except (ImportError, OSError):  # not installed, or a broken install
        return False
    return True


# ---- the run ---------------------------------------------------------------------------------
def run(widths, repeats, hvp_columns, skip_torch=False):
    import pyodejl as pj

    torch_ok = not skip_torch and _torch_available()
    if not torch_ok:
        print("note: torch/torchdiffeq not installed (or --skip-torch): the torch peers are skipped; "
              "pip install torch==2.13.0 torchdiffeq", flush=True)
    results = []
    for width in widths:
        theta = pj.MLP([2, width, 2], activation="tanh").init(0)
        p = len(theta)
        V = np.random.default_rng(0).standard_normal((p, hvp_columns))
        us = ours(width, theta, V, repeats)
        row = dict(width=width, p=p, hvp_columns=hvp_columns,
                   ours=dict(hessian_first_s=us["hessian"][0], hessian_steady_s=us["hessian"][1],
                             hvp_first_s=us["hvp"][0], hvp_steady_s=us["hvp"][1]), peers={})
        peers = [("diffrax-hessian", "hessian", lambda: diffrax_hessian(width, theta, repeats)),
                 ("diffrax-hvp", "hvp", lambda: diffrax_hvp(width, theta, V, repeats))]
        if torch_ok:
            peers += [("torchdiffeq-hessian", "hessian", lambda: torchdiffeq_hessian(width, theta, repeats)),
                      ("pyhessian-loop", "hessian", lambda: pyhessian_loop(width, theta, repeats))]
        for name, kind, fn in peers:
            try:
                res = fn()
            except Exception as e:  # one peer failing does not stop the others
                row["peers"][name] = dict(error=f"{type(e).__name__}: {e}")
                print(f"p={p:5d} {name:20s} failed: {type(e).__name__}: {e}", flush=True)
                continue
            first, steady = res["time"]
            ref = us["H"] if kind == "hessian" else us["HV"]
            ours_first, ours_steady = us[kind]
            entry = dict(kind=kind, first_s=first, steady_s=steady,
                         ratio_first=first / ours_first, ratio_steady=steady / ours_steady,
                         max_rel_diff=_rel(res["H" if kind == "hessian" else "HV"], ref))
            row["peers"][name] = entry
            print(f"p={p:5d} {name:20s} {kind:7s} steady {steady:9.4f} s (ours {ours_steady:8.4f} s, "
                  f"{entry['ratio_steady']:8.1f}x)  first {first:8.2f} s (ours {ours_first:6.2f} s, "
                  f"{entry['ratio_first']:6.1f}x)  max rel diff {entry['max_rel_diff']:.1e}", flush=True)
        results.append(row)
    return dict(problem=dict(field="MLP [2, w, 2] tanh", solver="dopri5", rtol=RTOL, atol=ATOL,
                             ts=TS.tolist(), y0=Y0.tolist(), loss="mse"),
                repeats=repeats, torch=torch_ok, results=results)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64, 128],
                    help="hidden widths (default 16 64 128: p = 82, 322, 642)")
    ap.add_argument("--repeats", type=int, default=3, help="steady-state repeats after the first call (default 3)")
    ap.add_argument("--hvp-columns", type=int, default=8, help="tangents in the HVP block (default 8)")
    ap.add_argument("--skip-torch", action="store_true", help="only the JAX peers")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if any(w < 1 for w in args.widths) or args.repeats < 0 or args.hvp_columns < 1:
        ap.error("widths and --hvp-columns must be positive, --repeats non-negative")
    report = run(args.widths, args.repeats, args.hvp_columns, args.skip_torch)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
