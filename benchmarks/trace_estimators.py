"""Trace, diagonal and density estimators at equal matvec budgets: Hutchinson, Hutch++,
XTrace and XNysTrace (trace), Hutchinson and XDiag (diagonal), SLQ, deflated SLQ and KPM
(density), on spectra of different shapes and on a real Neural ODE Hessian.

    python benchmarks/trace_estimators.py              # synthetic + Neural ODE Hessian
    python benchmarks/trace_estimators.py --no-real    # synthetic only
    python benchmarks/trace_estimators.py --seeds 20   # quicker

Errors are medians over seeds (seeds 0 … S−1) of the relative error |estimate − tr|/|tr|
(diagonal: ‖d̂ − d‖₂/‖d‖₂; density: the Wasserstein-1 distance between the estimated
measure and the true eigenvalue measure, relative to the spectral range). The operators
are dense matrices built once (for the Neural ODE Hessian from p Hessian-vector
products), so every estimator sees exactly the same operator; the number of products is
what each estimator is given, not time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pyodejl import spectral
from pyodejl.spectral import SpectrumOperator, outlier_bulk_spectrum

TRACE_METHODS = ("hutchinson", "hutch++", "xtrace", "xnystrace")
BUDGETS = (30, 60, 120)


def synthetic_spectra(p):
    k = np.arange(1, p + 1, dtype=float)
    return {
        "fast decay, exponential: 0.8^k": 0.8 ** (k - 1),
        "fast decay, polynomial: k^-3": k ** -3.0,
        "slow decay, polynomial: k^-1": k ** -1.0,
        "flat: uniform in [1, 2]": np.linspace(1.0, 2.0, p),
        "outliers + bulk (outlier_bulk_spectrum, 10 outliers, 30 % of the bulk < 0)":
            outlier_bulk_spectrum(p, num_outliers=10, seed=2),
    }


def trace_table(M, lam, title, seeds):
    tr = float(np.sum(lam))
    psd = bool(np.min(lam) >= -1e-12 * np.max(np.abs(lam)))
    print(f"\n== trace: {title} (p = {len(lam)}, tr = {tr:.6g}, median relative error over "
          f"{seeds} seeds) ==")
    print(f"{'matvecs':>8} " + " ".join(f"{m:>11}" for m in TRACE_METHODS)
          + f" {'XT/H++':>8} {'XNT/H++':>8} {'XT err-est ratio':>16}")
    out = {}
    for b in BUDGETS:
        med = {}
        est_ratio = np.nan
        for meth in TRACE_METHODS:
            if meth == "xnystrace" and not psd:
                med[meth] = np.nan
                continue
            res = [spectral.trace(M, num_matvecs=b, method=meth, seed=s) for s in range(seeds)]
            err = np.array([abs(r.estimate - tr) for r in res])
            med[meth] = float(np.median(err)) / abs(tr)
            if meth == "xtrace":
                ee = np.array([r.error_estimate for r in res])
                est_ratio = float(np.sqrt(np.mean(err ** 2)) / np.sqrt(np.mean(ee ** 2)))
        out[b] = med
        print(f"{b:>8d} " + " ".join(f"{med[m]:>11.2e}" for m in TRACE_METHODS)
              + f" {med['xtrace'] / med['hutch++']:>8.3g}"
              + f" {med['xnystrace'] / med['hutch++']:>8.3g} {est_ratio:>16.2f}")
    print("    (XT/H++ = XTrace median error / Hutch++ median error; nan: XNysTrace refuses "
          "an indefinite operator; last column: RMS error / RMS of XTrace's error estimate)")
    return out


def diagonal_table(M, title, seeds, budgets=(60, 120)):
    d = np.diag(M)
    print(f"\n== diagonal: {title} (median ‖d̂ − d‖/‖d‖ over {seeds} seeds) ==")
    print(f"{'matvecs':>8} {'hutchinson':>11} {'xdiag':>11} {'ratio':>8}")
    for b in budgets:
        med = {}
        for meth in ("hutchinson", "xdiag"):
            e = [np.linalg.norm(spectral.diagonal(M, num_matvecs=b, method=meth,
                                                  seed=s).estimate - d) / np.linalg.norm(d)
                 for s in range(seeds)]
            med[meth] = float(np.median(e))
        print(f"{b:>8d} {med['hutchinson']:>11.2e} {med['xdiag']:>11.2e} "
              f"{med['xdiag'] / med['hutchinson']:>8.3g}")


def wasserstein1(res, lam):
    """∫|F̂ − F| between the estimated measure and the eigenvalue measure."""
    lam = np.sort(lam)
    xs = np.sort(np.concatenate([lam, res.nodes]))
    F = res.cdf(xs[:-1])
    G = np.searchsorted(lam, xs[:-1], side="right") / len(lam)
    return float(np.sum(np.abs(F - G) * np.diff(xs)))


def density_table(M, lam, title, seeds, num_steps=30, num_probes=5, num_deflate=10):
    span = float(np.ptp(lam))
    print(f"\n== density: {title} (num_steps = {num_steps}, num_probes = {num_probes}, "
          f"deflated k = {num_deflate}; median W1 / range over {seeds} seeds) ==")
    print(f"{'method':>13} {'W1/range':>10} {'matvecs':>8}")
    for meth in ("slq", "deflated_slq", "kpm"):
        w, mv = [], []
        for s in range(seeds):
            r = spectral.density(M, num_steps=num_steps, num_probes=num_probes, seed=s,
                                 method=meth, num_deflate=num_deflate)
            w.append(wasserstein1(r, lam) / span)
            mv.append(r.matvecs)
        print(f"{meth:>13} {np.median(w):>10.2e} {np.median(mv):>8.0f}")


def neural_ode_hessian():
    try:
        import pyodejl
        vf = pyodejl.MLP([2, 32, 32, 2], activation="tanh")
        model = pyodejl.NeuralODE(vf, solver="dopri5", rtol=1e-7, atol=1e-9)
        ts = np.linspace(0.0, 2.0, 21)
        targets = np.stack([np.exp(-0.1 * ts) * np.cos(2 * ts),
                            np.exp(-0.1 * ts) * np.sin(2 * ts)], axis=1)
        loss = pyodejl.TrajectoryLoss(model, ts=ts, y0=np.array([1.0, 0.0]),
                                      targets=targets, loss="mse")
        H = loss.hessian_operator(vf.init(0))
    except (ImportError, AttributeError, TypeError) as exc:
        print(f"\nNeural ODE section skipped: the engine is not available "
              f"({type(exc).__name__}: {exc})")
        return None
    p = H.shape[0]
    t0 = time.perf_counter()
    M = spectral.as_operator(H).matmat(np.eye(p))
    M = 0.5 * (M + M.T)
    print(f"\nNeural ODE Hessian (MLP [2, 32, 32, 2] tanh, dopri5, MSE on a damped spiral, at "
          f"initialisation): p = {p}, dense from {p} products in "
          f"{time.perf_counter() - t0:.1f} s")
    return M


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p", type=int, default=1000, help="synthetic dimension")
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--no-real", action="store_true", help="skip the Neural ODE Hessian")
    args = ap.parse_args()
    t0 = time.perf_counter()
    spectra = synthetic_spectra(args.p)
    mats = {}
    for title, lam in spectra.items():
        M = SpectrumOperator(lam, seed=1).to_dense()
        mats[title] = M
        trace_table(M, lam, title, args.seeds)
    real = None if args.no_real else neural_ode_hessian()
    if real is not None:
        lam_real = np.linalg.eigvalsh(real)
        print(f"eigenvalues: top {np.round(lam_real[::-1][:4], 3)}, bottom "
              f"{np.round(lam_real[:2], 3)}, trace {lam_real.sum():.6g}")
        trace_table(real, lam_real, "Neural ODE Hessian", args.seeds)
        try:
            spectral.trace(real, num_matvecs=60, method="xnystrace", seed=0)
        except ValueError as exc:
            print(f"    xnystrace on it: ValueError: {exc}")
    for title in ("fast decay, exponential: 0.8^k", "slow decay, polynomial: k^-1",
                  "outliers + bulk (outlier_bulk_spectrum, 10 outliers, 30 % of the bulk < 0)"):
        diagonal_table(mats[title], title, args.seeds)
    dseeds = min(args.seeds, 10)
    for title in ("flat: uniform in [1, 2]",
                  "outliers + bulk (outlier_bulk_spectrum, 10 outliers, 30 % of the bulk < 0)"):
        density_table(mats[title], spectra[title], title, dseeds)
    if real is not None:
        density_table(real, lam_real, "Neural ODE Hessian", dseeds)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
