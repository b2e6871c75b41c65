"""Seed 004 Tables 5.1 / 6.2 on scikit-learn's digits: Neural ODE classifiers trained with solver heuristics.

Seed 004 trains an MNIST classifier — a Neural ODE on the flattened image with
dynamics z = tanh(W₁[x; t] + B₁) (width 100), f = tanh(W₂[z; t] + B₂), then a
linear classifier — with tsit5 at rtol = atol = 1.4e-8, and compares vanilla,
STEER, TayNODE, SRNODE, ERNODE (Table 5.1) and local ERNODE (Table 6.2) on
train/test accuracy, training time, prediction time and NFE. ERNODE's weight
is annealed 100 → 10 on the *mean* of E_j·dt_j (the reference code), SRNODE's
is constant.

Here (no download, a 2-core CPU):

* data: ``sklearn.datasets.load_digits`` (1797 8×8 images, pixels / 16), a
  stratified 80/20 split with a fixed seed (0);
* the seed's model on 64 pixels: p = 13 128 dynamics + 650 classifier
  parameters; tsit5 at rtol = atol = 1.4e-8 on [0, 1];
* Adam, minibatches of ``--batch`` drawn per step from ``(seed, step)``;
  the batch is solved as one system (joint error control), as in the seed;
* variants vanilla (also ``vanilla-interpolating``: trained with the ``interpolating``
  continuous adjoint, the local terms' gradient, to separate the adjoint's cost from
  theirs; ``…-seminorm``: the same adjoint with its error control on λ only, Kidger,
  Chen & Lyons 2021, for vanilla and local unbiased ERNODE), ERNODE (mean, 100 → 10, the seed's; ``ernode-light``:
  10 → 1), SRNODE (0.0285, the seed's), local ERNODE (unbiased/biased,
  2.5 → 1.0 as seed 004 ch. 6, ``interpolating`` adjoint), STEER
  (T' ~ U(0.5, 1.5)), TayNODE (K = 3, λ = 3.02e-3, the seed's), RNODE (0.01, 0.01);
* columns: train/test accuracy, training CPU time (compilation excluded),
  prediction CPU time per test batch (batch size = training batch), test NFE
  (mean over the test batches), mean ± std over ``--seeds``.

Results are saved after each run to ``--out`` (resumable).

Usage: python examples/digits_regularisers.py [--quick] [--steps 300] [--batch 128] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import pyodejl as pj
from pyodejl import regularizers as R
from pyodejl.experiments.regularised import ResultsFile, Variant, mean_std, train_variant

D, WIDTH, CLASSES = 64, 100, 10
TOL = 1.4e-8
P_VF = WIDTH * (D + 1) + WIDTH + D * (WIDTH + 1) + D


def dynamics(t, y, th):
    """z = tanh(W₁[y; t] + B₁), f = tanh(W₂[z; t] + B₂) (seed 004 ch. 5 §3.1.1)."""
    o = 0
    W1 = th[o : o + WIDTH * (D + 1)].reshape(WIDTH, D + 1)
    o += WIDTH * (D + 1)
    b1 = th[o : o + WIDTH]
    o += WIDTH
    W2 = th[o : o + D * (WIDTH + 1)].reshape(D, WIDTH + 1)
    o += D * (WIDTH + 1)
    b2 = th[o : o + D]
    tt = jnp.reshape(t, (1,)).astype(y.dtype)
    z = jnp.tanh(W1 @ jnp.concatenate([y, tt]) + b1)
    return jnp.tanh(W2 @ jnp.concatenate([z, tt]) + b2)


def init(seed):
    r = np.random.default_rng(seed)
    u = lambda n, fan: r.uniform(-1, 1, n) / np.sqrt(fan)
    vf = np.concatenate([u(WIDTH * (D + 1) + WIDTH, D + 1), u(D * (WIDTH + 1) + D, WIDTH + 1)])
    return np.concatenate([vf, u(CLASSES * D + CLASSES, D)])


VECTOR_FIELD = pj.VectorField(dynamics, num_params=P_VF, state_dim=D, name="seed004_mnist_dynamics")


def make_model(tol=TOL):
    return pj.NeuralODE(VECTOR_FIELD, solver="tsit5", rtol=tol, atol=tol, max_steps=8192)


@dataclass(frozen=True)
class CrossEntropy:
    """Mean cross-entropy of the linear readout of the final state; θ_extra = [W (10×64), b]."""

    def __call__(self, extra, Y, labels):
        W, b = extra[: CLASSES * D].reshape(CLASSES, D), extra[CLASSES * D :]
        logits = Y[:, -1] @ W.T + b
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def logits_of(model, theta, X, ts=(0.0, 1.0)):
    sol = model.solve(theta[:P_VF], ts, X)
    W, b = theta[P_VF : P_VF + CLASSES * D].reshape(CLASSES, D), theta[P_VF + CLASSES * D :]
    return sol.ys[:, -1] @ W.T + b, sol.stats.nfe


def load(seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)


SEMINORM = pj.Interpolating(seminorm=True)


def variants(steps):
    return {
        "vanilla": Variant("vanilla"),
        # the local terms train with the continuous adjoint: this separates its cost from theirs
        "vanilla-interpolating": Variant("vanilla-interpolating", gradient="interpolating"),
        # ... and with the adjoint's error control on λ only (Kidger, Chen & Lyons 2021)
        "vanilla-interpolating-seminorm": Variant("vanilla-interpolating-seminorm", gradient=SEMINORM),
        "ernode": Variant(
            "ernode",
            lambda: [R.ErrorEstimate(100.0, aggregate="mean")],
            {"error_estimate": R.ExponentialDecay(100.0, 10.0, steps)},
        ),
        "ernode-light": Variant(
            "ernode-light",
            lambda: [R.ErrorEstimate(10.0, aggregate="mean")],
            {"error_estimate": R.ExponentialDecay(10.0, 1.0, steps)},
        ),
        "srnode": Variant("srnode", lambda: [R.StiffnessEstimate(0.0285, aggregate="mean")]),
        "local-unbiased": Variant(
            "local-unbiased",
            lambda: [R.LocalErrorEstimate(2.5)],
            {"local_error_estimate": R.ExponentialDecay(2.5, 1.0, steps)},
            gradient="interpolating",
        ),
        "local-unbiased-seminorm": Variant(
            "local-unbiased-seminorm",
            lambda: [R.LocalErrorEstimate(2.5)],
            {"local_error_estimate": R.ExponentialDecay(2.5, 1.0, steps)},
            gradient=SEMINORM,
        ),
        "local-biased": Variant(
            "local-biased",
            lambda: [R.LocalErrorEstimate(2.5, sampling="biased")],
            {"local_error_estimate": R.ExponentialDecay(2.5, 1.0, steps)},
            gradient="interpolating",
        ),
        "steer": Variant("steer", steer=R.RandomEndTime(0.5, seed=0)),
        "taynode": Variant("taynode", lambda: [R.TaylorDerivative(3.02e-3, order=3)]),
        "rnode": Variant("rnode", lambda: [R.KineticEnergy(0.01), R.JacobianFrobenius(0.01, seed=0)]),
    }


def evaluate(model, theta, Xtr, ytr, Xte, yte, batch):
    def accuracy(X, y):
        correct, nfes, times = 0, [], []
        import time

        for i in range(0, len(X) - batch + 1, batch):
            t = time.process_time()
            logits, nfe = logits_of(model, theta, X[i : i + batch])
            times.append(time.process_time() - t)
            correct += int(np.sum(np.argmax(logits, 1) == y[i : i + batch]))
            nfes.append(nfe)
        n = (len(X) // batch) * batch
        return correct / n, float(np.mean(nfes)), float(np.median(times[1:] if len(times) > 1 else times))

    train_acc, _, _ = accuracy(Xtr, ytr)
    test_acc, nfe, t = accuracy(Xte, yte)
    return {"train_acc": train_acc, "test_acc": test_acc, "test_nfe": nfe, "predict_cpu_s": t}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 variants, 3 steps, one seed (smoke test)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--tol", type=float, default=TOL, help="rtol = atol (seed: 1.4e-8)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument("--out", default="results/digits_regularisers.json")
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.seeds, a.batch = 3, [0], 32
        a.variants = a.variants or ["vanilla", "ernode"]
    Xtr, Xte, ytr, yte = load()
    table = variants(a.steps)
    names = a.variants or list(table)
    results = ResultsFile(a.out, {"steps": a.steps, "batch": a.batch, "lr": a.lr, "tol": a.tol})
    model = make_model(a.tol)
    ts = np.array([0.0, 1.0])
    for name in names:
        for seed in a.seeds:
            key = f"{name}/{seed}"
            if key in results:
                continue

            def make_loss(ts_k, terms, k):
                idx = np.random.default_rng([seed, k]).choice(len(Xtr), a.batch, replace=False)
                return pj.ObservationLoss(
                    model,
                    ts_k,
                    Xtr[idx],
                    CrossEntropy(),
                    data=ytr[idx].astype(np.int32),
                    num_extra_params=CLASSES * D + CLASSES,
                    regularizers=terms or None,
                )

            print(f"training {key}", flush=True)
            run = train_variant(
                make_loss,
                ts,
                init(seed),
                table[name],
                a.steps,
                a.lr,
                seed,
                log_every=max(a.steps // 3, 1),
                minibatches=True,
            )
            rec = {
                **evaluate(model, run["theta"], Xtr, ytr, Xte, yte, a.batch),
                "train_cpu_s": run["train_cpu_s"],
                "train_wall_s": run["train_wall_s"],
                "compile_cpu_s": run["compile_cpu_s"],
                "losses": run["losses"],
            }
            results.add(key, rec)
            print(
                f"  {key}: test acc {rec['test_acc']:.4f}, test NFE {rec['test_nfe']:.0f}, "
                f"train {rec['train_cpu_s']:.1f} s",
                flush=True,
            )
    print(
        f"\n{'variant':>15} {'train acc %':>14} {'test acc %':>14} {'train CPU s':>14} {'predict CPU ms':>15} "
        f"{'test NFE':>12}"
    )
    summary = {}
    for name in names:
        recs = [results[f"{name}/{s}"] for s in a.seeds if f"{name}/{s}" in results]
        if not recs:
            continue
        col = lambda k, f=1.0: [r[k] * f for r in recs]
        summary[name] = {
            k: float(np.mean(col(k))) for k in ("train_acc", "test_acc", "train_cpu_s", "predict_cpu_s", "test_nfe")
        }
        print(
            f"{name:>15} {mean_std(col('train_acc', 100)):>14} {mean_std(col('test_acc', 100)):>14} "
            f"{mean_std(col('train_cpu_s')):>14} {mean_std(col('predict_cpu_s', 1e3)):>15} "
            f"{mean_std(col('test_nfe')):>12}"
        )
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
