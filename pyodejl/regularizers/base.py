"""Loss terms: the protocol every regulariser follows, and what a term may read.

An objective is a data term plus weighted terms, L(θ) = data + Σ_i w_i R_i.
A term is an object with

* ``name`` — its key in ``loss.terms(theta)``;
* ``weight`` — w_i ≥ 0 (passed to compiled code as data, so changing it, or a
  schedule, does not recompile);
* ``value(inputs) -> scalar`` — R_i, unweighted, a pure JAX function of
  :class:`TermInputs`;

and optionally

* ``needs_steps = True`` — it reads the per-step record of the solve
  (:class:`pyodejl.solving.StepRecord`). Such terms are defined on the
  discrete solve: gradients by ``"discrete"``, Hessians by the ``direct-*``,
  ``fd*`` and ``elementwise`` methods; the continuous adjoints refuse them;
* ``integrand(t, y, theta_vf, vector_field, noise, f) -> scalar`` — a running
  cost g whose integral ∫ g dt along each trajectory the objective computes by
  appending one entry to the ODE state (left out of step-size control, as in
  RNODE, Finlay et al. 2020), so every gradient method, the continuous
  adjoints included, differentiates it; the term's ``value`` then reads it as
  ``inputs.running`` ``(B,)``. ``noise_dim(D)`` entries of fixed per-trajectory
  noise (``noise(B, D)``, drawn from the term's seed) ride along as constant
  state entries;
* ``extra_times(context)`` and ``term_data(context, times, states)`` — a
  *sampled* term: it observes the solved state at times of its choosing
  (added to the objective's observation times, so every gradient method,
  the continuous adjoints included, differentiates through them) and fixes
  per-θ constants such as a step size (:mod:`pyodejl.regularizers.sampled`).

Terms compare equal (and hash) by their type and static configuration, not
their weight or seed, so a new term object with another seed reuses the
compiled code. **A new term is one class** (in a module of this package)
**plus one entry in** :data:`pyodejl.regularizers.REGULARIZERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pyodejl._validation import check_number


@dataclass(frozen=True)
class TermInputs:
    """What a term's ``value`` may read (JAX arrays inside the traced loss).

    Attributes:
        theta: ``(p,)`` the whole θ (vector field, then extra parameters).
        theta_vf: ``(p_vf,)`` the vector field's part.
        theta_extra: ``(p - p_vf,)`` the rest (e.g. a readout).
        states: ``(B, T, D)`` the (augmented) model state at the observation times.
        ts: ``(T,)`` the observation times.
        running: ``(B,)`` this term's running-cost integral per trajectory, or None.
        steps: the per-step :class:`~pyodejl.solving.StepRecord` (padded; its
            states carry the objective's appended entries after the first D,
            so use ``error_dims``), or None unless ``needs_steps``.
        error_dims: D, the number of leading state entries step-size control sees.
        model: the :class:`pyodejl.NeuralODE` being solved (static).
        extra_states: ``(B, k, D_solved)`` for a sampled term (one with
            ``extra_times``, :mod:`pyodejl.regularizers.sampled`): the full solved
            state (appended entries included) at the k times it asked for; else None.
        term_data: that term's per-θ constants (its ``term_data``), or None.
    """

    theta: Any
    theta_vf: Any
    theta_extra: Any
    states: Any
    ts: Any
    running: Any = None
    steps: Any = None
    error_dims: int | None = None
    model: Any = None
    extra_states: Any = None
    term_data: Any = None


def check_weight(weight) -> float:
    return check_number(weight, "a regulariser weight", allow_zero=True)


def updated_weights(names, current, weights: dict) -> np.ndarray:
    """``current`` weights (one per name in ``names``) with ``weights`` ``{name: w}`` applied.

    The one rule of every objective's ``set_weights``: a dict, known names only
    (an unknown one is an error listing the known ones), each weight checked.
    """
    if not isinstance(weights, dict):
        raise TypeError(f"weights must be a dict {{term name: weight}}, got {type(weights).__name__}")
    names = list(names)
    out = np.array(current, dtype=np.float64)
    for name, w in weights.items():
        if name not in names:
            raise ValueError(f"this objective has no term named {name!r}; its terms are {names}")
        out[names.index(name)] = check_weight(w)
    return out


class Regularizer:
    """Base class of the built-in terms (see the module docstring for the protocol).

    Args:
        weight: w ≥ 0.
    """

    name = ""
    needs_steps = False

    def __init__(self, weight: float = 1.0):
        self.weight = check_weight(weight)

    def static_key(self) -> tuple:
        """The configuration that changes the compiled computation (not weight or seed)."""
        return ()

    def __eq__(self, other):
        return type(self) is type(other) and self.static_key() == other.static_key()

    def __hash__(self):
        return hash((type(self).__name__, self.static_key()))

    def __repr__(self):
        return f"{type(self).__name__}(weight={self.weight})"

    def value(self, inputs: TermInputs):  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, model) -> None:
        """Raise a clear error if the term cannot apply to ``model`` (default: it can)."""


def has_running_cost(term) -> bool:
    return callable(getattr(term, "integrand", None))


def noise_dim(term, D: int) -> int:
    f = getattr(term, "noise_dim", None)
    return int(f(D)) if callable(f) else 0


def term_noise(term, B: int, D: int) -> np.ndarray:
    n = noise_dim(term, D)
    if n == 0:
        return np.zeros((B, 0))
    out = np.asarray(term.noise(B, D), dtype=np.float64)
    if out.shape != (B, n):
        raise ValueError(f"{term!r}.noise returned shape {out.shape}, expected {(B, n)}")
    return out


def check_terms(terms) -> tuple:
    """Validate a list of terms: the protocol, and unique names."""
    if terms is None:
        return ()
    if not isinstance(terms, (list, tuple)):
        raise TypeError(f"regularizers must be a list of terms, got {type(terms).__name__}")
    names = set()
    for t in terms:
        if not (hasattr(t, "name") and hasattr(t, "weight") and callable(getattr(t, "value", None))):
            raise TypeError(
                f"{t!r} is not a loss term: it needs `name`, `weight` and `value(inputs)` "
                "(see pyodejl.regularizers)"
            )
        check_weight(t.weight)
        if t.name in names or t.name == "data":
            raise ValueError(f"two terms are named {t.name!r} (or one is named 'data'); give each a distinct name")
        names.add(t.name)
    return tuple(terms)
