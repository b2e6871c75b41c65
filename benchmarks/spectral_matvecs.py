"""Matvecs and time to a given accuracy: power iteration vs ARPACK vs our Lanczos, and
Hutchinson vs Hutch++ trace error at equal budgets.

    python benchmarks/spectral_matvecs.py            # synthetic + real Neural ODE Hessian
    python benchmarks/spectral_matvecs.py --no-real  # synthetic only

All eigen-solvers run to tol = 1e-8. Lanczos and power iteration stop on the relative
residual ‖Hy − θy‖ <= 1e-8·‖H‖_est; ARPACK (eigsh) uses its own ‖r‖ <= tol·|θ|, and its
matvec count includes k products to compute residuals (ARPACK's own count is k fewer).
"Accuracy" columns are measured against a dense eigendecomposition.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from pyodejl import spectral
from pyodejl.spectral import SpectrumOperator, outlier_bulk_spectrum, student_t_spectrum

TOL = 1e-8


def run_eigen(op, k, method, true_desc, anorm, seed=0, power_max_iter=3000):
    kw = {"power_max_iter": power_max_iter} if method == "power" else {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = spectral.eigenvalues(op, k=k, which="largest", method=method, tol=TOL,
                                 seed=seed, **kw)
    dt = time.perf_counter() - t0
    if len(r.eigenvalues) < k:
        return r, dt, np.inf, np.inf
    err = np.max(np.abs(np.sort(r.eigenvalues)[::-1] - true_desc[:k])) / anorm
    relres = np.max(r.residual_norms) / anorm
    return r, dt, err, relres


def eigen_table(op, true_desc, title, ks=(1, 5, 20)):
    anorm = np.max(np.abs(true_desc))
    print(f"\n== top-k eigenpairs: {title} (p = {op.shape[0]}, tol = {TOL:g}) ==")
    print(f"{'k':>3} {'method':>8} {'matvecs':>8} {'time[s]':>8} {'max rel res':>12} "
          f"{'max |err|/|H|':>13} {'all conv':>8}")
    ratios = {}
    for k in ks:
        counts = {}
        for method in ("power", "eigsh", "lanczos"):
            r, dt, err, relres = run_eigen(op, k, method, true_desc, anorm)
            counts[method] = (r.matvecs, bool(np.all(r.converged)) and len(r.converged) == k)
            print(f"{k:>3} {method:>8} {r.matvecs:>8d} {dt:>8.3f} {relres:>12.2e} "
                  f"{err:>13.2e} {str(counts[method][1]):>8}")
        counts["eigsh"] = (counts["eigsh"][0] - k, counts["eigsh"][1])  # ARPACK's own count
        ratio = counts["power"][0] / counts["lanczos"][0]
        ratios[k] = ratio
        note = "" if counts["power"][1] else " (power iteration did NOT converge: ratio is a lower bound)"
        print(f"    power/lanczos matvec ratio for k={k}: {ratio:.1f}x{note}; "
              f"eigsh (ARPACK's own count, without the {k} residual products)/lanczos: "
              f"{counts['eigsh'][0] / counts['lanczos'][0]:.2f}x")
    return ratios


def zero_cluster_table(p, k=5):
    """The case ARPACK's |theta|-relative test is bad at: eigenvalues at zero."""
    lam = student_t_spectrum(p, 0.9, seed=0)
    op = SpectrumOperator(lam, seed=1)
    anorm = np.max(np.abs(lam))
    print(f"\n== smallest-{k} of the seed 003 spectrum (90% exact zeros; p = {p}) ==")
    print("    (the true smallest eigenvalues are all exactly 0; 'max |err|/|H|' = max|θ|/‖H‖)")
    print(f"{'method':>8} {'matvecs':>8} {'time[s]':>8} {'max rel res':>12} "
          f"{'max |err|/|H|':>13} {'all conv':>8}")
    for method in ("eigsh", "lanczos"):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = spectral.eigenvalues(op, k=k, which="smallest", method=method, tol=TOL,
                                     seed=0, max_matvecs=5000 if method == "lanczos" else 500)
        dt = time.perf_counter() - t0
        ok = len(r.eigenvalues) == k and bool(np.all(r.converged))
        err = np.max(np.abs(r.eigenvalues)) / anorm if len(r.eigenvalues) else np.inf
        res = np.max(r.residual_norms) / anorm if len(r.eigenvalues) else np.inf
        print(f"{method:>8} {r.matvecs:>8d} {dt:>8.3f} {res:>12.2e} {err:>13.2e} "
              f"{str(ok):>8}{'' if len(r.eigenvalues) == k else f' ({len(r.eigenvalues)}/{k} returned)'}")


def trace_table(op, true_trace, title, budgets=(30, 99, 300), reps=20):
    print(f"\n== trace: {title} (true trace {true_trace:.6g}, RMS error over {reps} seeds) ==")
    print(f"{'matvecs':>8} {'Hutchinson':>12} {'Hutch++':>12} {'ratio':>8}")
    out = {}
    for b in budgets:
        eh = [spectral.trace(op, num_matvecs=b, method="hutchinson", seed=s).estimate
              - true_trace for s in range(reps)]
        ep = [spectral.trace(op, num_matvecs=b, method="hutch++", seed=s).estimate
              - true_trace for s in range(reps)]
        rh, rp = np.sqrt(np.mean(np.square(eh))), np.sqrt(np.mean(np.square(ep)))
        out[b] = rh / rp
        print(f"{b:>8d} {rh / abs(true_trace):>11.2e}r {rp / abs(true_trace):>11.2e}r "
              f"{rh / rp:>7.1f}x")
    print("    (r = relative to |trace|; ratio = Hutchinson RMS error / Hutch++ RMS error)")
    return out


def synthetic(p):
    specs = {
        "hessian-like: 30 outliers log-spaced in [1, 100] over a uniform [-0.5, 0.5] bulk":
            np.concatenate([np.geomspace(1, 100, 30), np.linspace(-0.5, 0.5, p - 30)]),
        "seed 003 generator: 90% zeros, rest |Student-t_1|":
            student_t_spectrum(p, 0.9, seed=0),
    }
    for title, lam in specs.items():
        op = SpectrumOperator(lam, seed=1)
        eigen_table(op, op.eigenvalues, title)
    zero_cluster_table(p)
    lam = outlier_bulk_spectrum(p, num_outliers=10, seed=2)
    op = SpectrumOperator(lam, seed=2)
    trace_table(op, op.trace, "10 outliers in [10, 100] + 50% zeros + |N(0, 0.05^2)| bulk "
                "with 30% negative")


def real_neural_ode():
    print("\n== real Neural ODE Hessian ==")
    try:
        import pyodejl
        vf = pyodejl.MLP([2, 32, 32, 2], activation="tanh")
        model = pyodejl.NeuralODE(vf, solver="dopri5", rtol=1e-7, atol=1e-9)
        ts = np.linspace(0.0, 2.0, 21)
        y0 = np.array([1.0, 0.0])
        targets = np.stack([np.exp(-0.1 * ts) * np.cos(2 * ts),
                            np.exp(-0.1 * ts) * np.sin(2 * ts)], axis=1)
        loss = pyodejl.TrajectoryLoss(model, ts=ts, y0=y0, targets=targets, loss="mse")
        theta = vf.init(0)
        H = loss.hessian_operator(theta)
    except (ImportError, AttributeError) as exc:
        print(f"skipped: the engine is not available ({type(exc).__name__}: {exc})")
        return
    p = vf.num_params
    print(f"MLP [2, 32, 32, 2] tanh vector field, dopri5, MSE trajectory loss on a damped "
          f"spiral (21 times), p = {p}, at the initial parameters")
    t0 = time.perf_counter()
    M = spectral.as_operator(H).matmat(np.eye(p))  # the full Hessian, p products
    M = 0.5 * (M + M.T)
    lam = np.sort(np.linalg.eigvalsh(M))[::-1]
    print(f"dense truth: {p} matvecs, {time.perf_counter() - t0:.1f}s; "
          f"top eigenvalues {np.round(lam[:6], 4)}, trace {lam.sum():.6g}, "
          f"|lambda| < 1e-3 * lambda_max: {np.mean(np.abs(lam) < 1e-3 * lam[0]):.0%}")
    for k in (1, 5, 20, 33):  # compile the block widths used below, outside the timings
        H.matmat(np.zeros((p, k)))
    eigen_table(H, lam, "Neural ODE Hessian")
    trace_table(H, float(lam.sum()), "Neural ODE Hessian", reps=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--p", type=int, default=1000, help="synthetic dimension")
    ap.add_argument("--no-real", action="store_true", help="skip the Neural ODE section")
    args = ap.parse_args()
    synthetic(args.p)
    if not args.no_real:
        real_neural_ode()


if __name__ == "__main__":
    main()
