"""Laplace uncertainty of the seed's MNIST-5k Neural ODE classifier (issue 19, experiment 2).

Model and data of :mod:`.regularisers_mnist`: task ``mnist`` (4,000 / 1,000 real
MNIST digits), the dynamics z = tanh(W₁[x; t] + B₁), f = tanh(W₂[z; t] + B₂) on the
784 pixels and a linear readout, p = 166 018, tsit5 at rtol = atol = ``tol``. The
loss is the same mean cross-entropy written as ``OutputCost(readout,
SoftmaxCrossEntropy())``, so :class:`pyodejl.Laplace` reads it as a categorical
likelihood and its GGN is Jᵀ(diag p − ppᵀ)J. The MAP is trained vanilla (Adam, no
weight decay) for ``steps`` minibatch steps; every row trains the same MAP from the
run's seed.

Rows (each with the prior precision maximising the evidence at the MAP):

* ``map``: softmax of the MAP's logits;
* ``last-layer``: the readout's 7 850 parameters, full GGN, probit predictive
  (Kristiadi et al. 2020; laplace-torch's default);
* ``low-rank``: all of θ, the top ``rank`` = 20 GGN eigenpairs (Lanczos) plus the
  prior, probit predictive;
* ``diagonal``: all of θ, the GGN diagonal (XDiag above 4 096 parameters), probit
  predictive.

The curvature is that of a ``laplace_samples``-image subset of the training set
(512, the issue's size; the posterior is the one given that subset's likelihood, wider
than the full training set's). The probit predictive over all of θ takes its variance
diag(J Σ Jᵀ) from ``rank`` JVPs and 10 reverse-mode Jacobian rows per test image.

Columns: test NLL (mean), test accuracy, expected calibration error (15 equal-width
confidence bins), AUROC of the maximum class probability separating the test digits
from the same digits rotated by 90° (``np.rot90``; in-distribution = positive),
the CPU seconds of the fit (curvature and prior optimisation) and of the predictive
(test and rotated sets).

``--quick``: the 8×8 digits pooled to 4×4 (D = 16, p = 3 602), 64 training and 32
test images, curvature from 16 of them, tol 1e-6.
"""

from __future__ import annotations

import time

import numpy as np

import pyodejl as pj
from pyodejl.experiments.catalogue import regularisers_digits as digits
from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.trainer import Measurement, Problem, Training

CLASSES = digits.CLASSES
ROWS = ("map", "last-layer", "low-rank", "diagonal")
ECE_BINS = 15


def readout(extra, Y, labels):
    """Logits ``(B, 10)`` of the final state: the layout of :class:`.regularisers_digits.CrossEntropy`."""
    D = Y.shape[-1]
    W, b = extra[: CLASSES * D].reshape(CLASSES, D), extra[CLASSES * D :]
    return Y[:, -1] @ W.T + b


COST = pj.OutputCost(readout, pj.SoftmaxCrossEntropy())


def settings(quick: bool) -> dict:
    return {"task": "digits-4x4" if quick else "mnist", "split_seed": 0, "train_subset": 64 if quick else None,
            "test_subset": 32 if quick else None, "steps": 5 if quick else 300, "batch_size": 32 if quick else 64,
            "lr": 3e-3, "tol": 1e-6 if quick else digits.TOL, "laplace_samples": 16 if quick else 512,
            "rank": 20}


def _pool(X):
    """8×8 images to 4×4 by 2×2 means."""
    return X.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)


def load(s):
    """``(X_train, X_test, y_train, y_test)`` of the settings' task and subsets."""
    if s["task"] == "digits-4x4":
        Xtr, Xte, ytr, yte = digits.load(s["split_seed"], "digits")
        Xtr, Xte = _pool(Xtr), _pool(Xte)
    else:
        Xtr, Xte, ytr, yte = digits.load(s["split_seed"], s["task"])
    if s["train_subset"]:
        Xtr, ytr = Xtr[: s["train_subset"]], ytr[: s["train_subset"]]
    if s["test_subset"]:
        Xte, yte = Xte[: s["test_subset"]], yte[: s["test_subset"]]
    return Xtr, Xte, np.asarray(ytr, dtype=np.int32), np.asarray(yte, dtype=np.int32)


def vector_field(D):
    if D in digits.VECTOR_FIELDS:
        return digits.VECTOR_FIELDS[D]
    return pj.VectorField(digits.dynamics, num_params=digits.num_field_params(D), state_dim=D,
                          name=f"seed004_mnist_dynamics_{D}")


def rotated(X):
    """Each image rotated by 90°: ``(n, s·s)`` with s = √D."""
    s = int(round(np.sqrt(X.shape[1])))
    return np.rot90(X.reshape(-1, s, s), axes=(1, 2)).reshape(len(X), -1)


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """Σ_b (n_b/n) |accuracy_b − confidence_b| over equal-width confidence bins (Guo et al. 2017)."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    hit = (pred == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return float(ece)


def auroc(in_scores, out_scores) -> float:
    """P(score_in > score_out) + ½ P(tie): the area under the ROC curve (Mann–Whitney)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([in_scores, out_scores]))
    n1, n2 = len(in_scores), len(out_scores)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n2))


def metrics(probs, labels, probs_ood) -> dict:
    p_true = np.clip(probs[np.arange(len(labels)), labels], 1e-300, None)
    return {"test_nll": float(-np.mean(np.log(p_true))),
            "test_acc": float(np.mean(probs.argmax(axis=1) == labels)),
            "ece": expected_calibration_error(probs, labels),
            "ood_auroc": auroc(probs.max(axis=1), probs_ood.max(axis=1))}


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def classifier_loss(D: int, s: dict):
    """``(X, labels) -> ObservationLoss``: the classifier of inputs ``X`` ``(B, D)`` under the settings ``s``."""
    model = pj.NeuralODE(vector_field(D), solver="tsit5", rtol=s["tol"], atol=s["tol"], max_steps=8192)
    ts = np.array([0.0, 1.0])
    extra = CLASSES * D + CLASSES

    def loss_of(X, y):
        return pj.ObservationLoss(model, ts, X, COST, data=y, num_extra_params=extra)

    return loss_of


def scores(theta, loss_of, data, laplace=None, subset_size: int = 0, seed: int = 0) -> dict:
    """The columns of one row: test NLL, accuracy, ECE and rotated-digit AUROC, and the CPU seconds
    of the fit and of the (probit) predictive.

    Args:
        theta: the MAP ``(p,)``.
        loss_of: ``(X, labels) -> loss`` of the classifier on inputs ``X``.
        data: ``(X_train, y_train, X_test, y_test)``.
        laplace: ``loss -> pyodejl.Laplace`` at θ, fitted to ``subset_size`` training images drawn
            from ``seed`` with the evidence's prior precision, predicting by the probit; None: the
            MAP's softmax, no fit.
    """
    Xtr, ytr, Xte, yte = data
    sets = (Xte, rotated(Xte))
    if laplace is None:
        start = time.process_time()
        probs = [_softmax(pj.Laplace._logits(loss_of(X, np.zeros(len(X), np.int32)), theta)) for X in sets]
        return {**metrics(probs[0], yte, probs[1]), "fit_cpu_s": 0.0, "predict_cpu_s": time.process_time() - start}
    sub = np.sort(np.random.default_rng([seed, 19]).choice(len(Xtr), min(subset_size, len(Xtr)), replace=False))
    start = time.process_time()
    la = laplace(loss_of(Xtr[sub], ytr[sub]))
    delta = la.optimize_prior_precision()
    fit = time.process_time() - start
    start = time.process_time()
    probs = [la.predictive(x=X, method="probit") for X in sets]
    return {**metrics(probs[0], yte, probs[1]), "prior_precision": float(delta), "fit_cpu_s": fit,
            "predict_cpu_s": time.process_time() - start}


def setup(variant: str, seed: int, s: dict) -> RunSpec:
    Xtr, Xte, ytr, yte = load(s)
    D = Xtr.shape[1]
    loss_of = classifier_loss(D, s)

    def make(indices):
        idx = slice(None) if indices is None else indices
        return loss_of(Xtr[idx], ytr[idx])

    def measure(objective, theta):
        data = (Xtr, ytr, Xte, yte)
        if variant == "map":
            return scores(theta, loss_of, data)
        if variant == "last-layer":
            kw = {"subset": "last-layer"}
        else:
            kw = {"structure": variant, "seed": seed, **({"rank": s["rank"]} if variant == "low-rank" else {})}
        return scores(theta, loss_of, data, lambda loss: pj.Laplace(loss, theta, **kw), s["laplace_samples"], seed)

    theta0 = digits.init(seed, D)
    problem = Problem(theta0=theta0, objective=lambda step, indices: make(indices), num_samples=len(Xtr))
    training = Training(steps=s["steps"], lr=s["lr"], batch_size=s["batch_size"], record_every=10)
    return RunSpec(problem, training, (Measurement("laplace", measure),))


EXPERIMENT = Experiment(
    name="laplace-mnist",
    title="Laplace uncertainty of the MNIST-5k Neural ODE classifier (p = 166k): calibration and rotated-digit OOD",
    source="issue 19, experiment 2 (issue 17's MNIST-5k data, seed 004's classifier)",
    variants=ROWS,
    settings=settings,
    setup=setup,
    columns=(
        Column("test_nll", "test NLL", digits=3),
        Column("test_acc", "test acc. (%)", scale=100, digits=3),
        Column("ece", "ECE (%, 15 bins)", scale=100, digits=3),
        Column("ood_auroc", "OOD AUROC, rotated (%)", scale=100, digits=3),
        Column("fit_cpu_s", "fit CPU s", digits=3),
        Column("predict_cpu_s", "predictive CPU s", digits=3),
    ),
    targets=(
        Target("ece", "last-layer", "map", "ratio", "<=", 1.0,
               "last-layer Laplace is no worse calibrated than the MAP"),
        Target("test_nll", "last-layer", "map", "ratio", "<=", 1.0, "… and has no higher test NLL"),
    ),
    quick_variants=("map", "last-layer", "low-rank"),  # the diagonal structure: tests/test_laplace*.py
    notes="Curvature from a 512-image subset of the training set; probit predictives (the GLM over the "
          "posterior's parameters); prior precision by the evidence.",
)
