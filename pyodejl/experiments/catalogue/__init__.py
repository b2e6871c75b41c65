"""The declared experiments, one module each, and their registry.

A new experiment is one module here that defines ``EXPERIMENT`` (a
:class:`~pyodejl.experiments.declaration.Experiment`) plus one entry in
:data:`EXPERIMENT_MODULES`. Modules are imported on first use, so listing the
experiments loads none of their data.
"""

from __future__ import annotations

import importlib

from pyodejl.experiments.declaration import Experiment

__all__ = ["EXPERIMENT_MODULES", "experiment_names", "get_experiment"]

#: ``{name: module}``: ``pyodejl run NAME`` runs ``pyodejl.experiments.catalogue.<module>.EXPERIMENT``.
EXPERIMENT_MODULES = {
    "regularisers-spiral": "regularisers_spiral",
    "regularisers-digits": "regularisers_digits",
    "regularisers-mnist": "regularisers_mnist",
    "deq-digits": "deq_digits",
    "deq-mnist": "deq_mnist",
    "stiffness": "stiffness",
    "agreement": "agreement",
    "fd-step": "fd_step",
    "hessian-scaling": "hessian_scaling",
    "ggn-vs-hessian": "ggn_vs_hessian",
    "sde-spiral": "sde_spiral",
    "nsde-mnist": "nsde_mnist",
    "hessian-tracking": "hessian_tracking",
    "laplace-lv": "laplace_lv",
    "laplace-mnist": "laplace_mnist",
    "laplace-selection": "laplace_selection",
    "laplace-deq": "laplace_deq",
    "latent-vowels": "latent_vowels",
    "local-memory": "local_memory",
    "laplace-scale": "laplace_scale",
    "laplace-sde": "laplace_sde",
}


def experiment_names() -> list[str]:
    return list(EXPERIMENT_MODULES)


def get_experiment(name: str) -> Experiment:
    """The declared experiment ``name``.

    Raises:
        ValueError: no experiment of that name.
    """
    if name not in EXPERIMENT_MODULES:
        raise ValueError(f"unknown experiment {name!r}; expected one of {experiment_names()} "
                         "(pyodejl run --list describes them)")
    return importlib.import_module(f"{__name__}.{EXPERIMENT_MODULES[name]}").EXPERIMENT
