"""Losses accumulated over mini-batches: the weighted mean of objectives evaluated one at a time.

For data beyond one batch, L(θ) = Σᵢ wᵢ Lᵢ(θ) with Σᵢ wᵢ = 1, where each part Lᵢ
is an objective on its own mini-batch — for an ODE loss, its own solve with its
own step grid (as PyHessian accumulates Hessian-vector products over a data
loader, Yao et al. 2020). Values, gradients, Hessian-vector products and
Hessians are the same weighted means of the parts', computed part after part,
so memory is that of one part (plus p-vectors) however many samples there are.

With weights proportional to the parts' sample counts and a per-sample mean
loss, L is the mean loss over all the samples. It equals the loss of all the
samples solved as one batch exactly for fixed-step solvers; for adaptive ones
the joint solve takes one step grid for the whole batch (joint error control),
so the two agree to the solver tolerance.

Seed 002 tracks the Hessian on a fixed random fraction r of the data;
:func:`fraction_indices` draws that subset (the same one the experiments'
tracking uses) and :meth:`MinibatchObjective.from_samples` builds the
objective on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from pyodejl.derivatives.objective import Objective
from pyodejl.derivatives.operator import HessianOperator

__all__ = ["MinibatchObjective", "fraction_indices", "split_batches"]


def _check_count(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(fraction) -> float:
    """``fraction`` as a float in (0, 1]; ValueError naming it otherwise."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)):
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    r = float(fraction)
    if not (0.0 < r <= 1.0):  # also rejects NaN
        raise ValueError(f"fraction must be in (0, 1] (the share of the samples kept), got {fraction!r}")
    return r


def fraction_indices(num_samples: int, fraction: float, seed: int) -> np.ndarray:
    """A fixed random subset of ``max(2, ceil(fraction · n))`` sample indices, sorted.

    Seed 002 estimates the Hessian's trace and top eigenvalue on a fraction r of
    the training data (r = 0.1). The subset is drawn without replacement from
    ``numpy.random.default_rng([seed, 3])`` — the stream the experiments'
    tracking (:func:`pyodejl.experiments.tracking_indices`) uses, so both pick the
    same samples. ``fraction = 1`` keeps every sample (no draw).

    Args:
        num_samples: n >= 1.
        fraction: r in (0, 1].
        seed: non-negative integer.

    Returns:
        int64 ``(m,)`` sorted distinct indices in ``[0, n)``, ``m = min(n, max(2, ceil(r n)))``.

    Raises:
        ValueError: a fraction outside (0, 1], a bad count or seed.
    """
    n = _check_count(num_samples, "num_samples")
    r = check_fraction(fraction)
    seed = _check_count(seed, "seed", minimum=0)
    if r >= 1.0:
        return np.arange(n, dtype=np.int64)
    size = min(n, max(2, math.ceil(r * n)))
    rng = np.random.default_rng([seed, 3])
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def split_batches(indices, batch_size: int) -> list[np.ndarray]:
    """Split ``indices`` (in their order) into ``ceil(m / batch_size)`` near-equal consecutive parts.

    Near-equal (sizes differ by at most one) rather than full batches plus a
    remainder, so that at most two batch shapes are compiled.
    """
    idx = np.asarray(indices).reshape(-1)
    if idx.size == 0:
        raise ValueError("indices must not be empty")
    b = _check_count(batch_size, "batch_size")
    return [part for part in np.array_split(idx, -(-idx.size // b))]


def _solve_stats_sum(stats):
    from pyodejl.solving import SolveStats

    return SolveStats(*(sum(getattr(s, f) for s in stats)
                        for f in ("num_steps", "num_accepted_steps", "num_rejected_steps", "nfe")))


class MinibatchObjective(Objective):
    """L(θ) = Σᵢ wᵢ Lᵢ(θ): the weighted mean of objectives on mini-batches.

    Every public method (``value``, ``values``, ``grad``, ``hvp``, ``hessian``,
    ``hessian_operator``) evaluates the parts one after another with the same
    method and returns the weighted sum, so memory is one part's, and each part
    keeps its own per-θ cache (for ODE losses, its step grid).

    Args:
        objectives: the parts, pyodejl objectives with the same ``num_params``
            (e.g. the same loss built on different samples).
        weights: ``(len(objectives),)`` non-negative weights, normalised to sum 1
            (default: equal). Pass the parts' sample counts for the mean over all samples.
        devices: split every part's batch over these JAX devices (each part's
            ``place(devices)``, in place): None (default: leave the parts as built),
            a count n or a list of devices, as for :class:`pyodejl.ObservationLoss`;
            every part's batch must be divisible by their number.

    Attributes:
        parts: the objectives; ``weights``: the normalised weights; ``indices``:
            each part's sample indices when built by :meth:`from_samples` (else None).

    Raises:
        ValueError: no parts, parts with different ``num_params``, bad weights.
    """

    def __init__(self, objectives: Sequence[Objective], weights=None, devices=None):
        parts = list(objectives)
        if not parts:
            raise ValueError("MinibatchObjective needs at least one objective")
        for i, part in enumerate(parts):
            if not all(hasattr(part, a) for a in ("num_params", "value", "grad", "hvp", "hessian_operator")):
                raise TypeError(f"part {i} is not a pyodejl objective (got {type(part).__name__})")
        sizes = {int(part.num_params) for part in parts}
        if len(sizes) != 1:
            raise ValueError(f"every part must have the same num_params, got {sorted(sizes)}")
        if weights is None:
            w = np.full(len(parts), 1.0 / len(parts))
        else:
            w = np.asarray(weights, dtype=np.float64).reshape(-1)
            if w.shape != (len(parts),):
                raise ValueError(f"weights must have one entry per part ({len(parts)}), got shape {np.shape(weights)}")
            if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(f"weights must be finite, non-negative and not all zero, got {w}")
            w = w / w.sum()
        if devices is not None:
            for i, part in enumerate(parts):
                if not callable(getattr(part, "place", None)):
                    raise TypeError(f"devices= needs parts that can be placed on devices; part {i} "
                                    f"({type(part).__name__}) has no place(devices) method")
                part.place(devices)
        self.devices = devices
        self.parts = parts
        self.weights = w
        self.num_params = sizes.pop()
        self.is_ode = all(getattr(part, "is_ode", False) for part in parts)
        self.indices = None

    @classmethod
    def from_samples(cls, build: Callable[[np.ndarray], Objective], num_samples: int,
                     batch_size: int | None = None, *, fraction: float = 1.0, seed: int = 0,
                     devices=None) -> MinibatchObjective:
        """The mean loss over (a fixed fraction of) ``num_samples`` samples, in mini-batches.

        The samples kept are :func:`fraction_indices` ``(num_samples, fraction, seed)``;
        they are split in sorted order into ``ceil(m / batch_size)`` near-equal
        mini-batches (:func:`split_batches`; one batch when ``batch_size`` is None),
        ``build(indices)`` makes each part, and the weights are the parts' sample counts.

        Args:
            build: ``build(indices (b,) int64) -> Objective``, the loss on those samples.
            num_samples: n.
            batch_size: samples per part (at most); None = one part.
            fraction: r in (0, 1] (seed 002 uses 0.1).
            seed: the subset's seed.
            devices: split each part's batch over these devices (see the class).

        Raises:
            ValueError: a fraction outside (0, 1], a non-positive batch size.
        """
        idx = fraction_indices(num_samples, fraction, seed)
        batches = [idx] if batch_size is None else split_batches(idx, batch_size)
        obj = cls([build(b) for b in batches], weights=[len(b) for b in batches], devices=devices)
        obj.indices = batches
        return obj

    def __repr__(self):
        return f"MinibatchObjective({len(self.parts)} parts, num_params={self.num_params})"

    # ---- the parts are evaluated one by one, never as one traced function --------
    def value_function(self):
        raise NotImplementedError(
            "a MinibatchObjective evaluates its parts one at a time (to keep one part's memory), "
            "so it has no single vectorised loss function; use value(), values() or the parts")

    def direct_function(self, theta):
        raise NotImplementedError(
            "a MinibatchObjective evaluates its parts one at a time (to keep one part's memory), "
            "so it has no single discretised loss; its methods average the parts'")

    def default_chunk(self) -> int:
        return min(max(1, part.default_chunk()) for part in self.parts)

    def _mean(self, fn):
        total = None
        for w, part in zip(self.weights, self.parts):
            out = w * np.asarray(fn(part), dtype=np.float64)
            total = out if total is None else total + out
        return total

    # ---- public API ----------------------------------------------------------------
    def value(self, theta) -> float:
        """L(θ) = Σᵢ wᵢ Lᵢ(θ). θ: ``(p,)``."""
        theta = self.check_theta(theta)
        return float(self._mean(lambda part: part.value(theta)))

    def values(self, thetas, batch: int = 512) -> np.ndarray:
        """L at each row of ``thetas`` ``(n, p)``; NaN where some part's is."""
        return self._mean(lambda part: part.values(thetas, batch))

    def grad(self, theta, method=None) -> np.ndarray:
        """Σᵢ wᵢ ∇Lᵢ(θ), ``(p,)``, each part by ``method`` (see :meth:`Objective.grad`)."""
        theta = self.check_theta(theta)
        return self._mean(lambda part: part.grad(theta, method=method))

    def hvp(self, theta, v, method=None, *, chunk_size=None, return_info=False):
        """Σᵢ wᵢ Hᵢ(θ) v for ``v`` ``(p,)`` or ``(p, k)`` (see :meth:`Objective.hvp`)."""
        theta = self.check_theta(theta)
        out = self._mean(lambda part: part.hvp(theta, v, method=method, chunk_size=chunk_size))
        if return_info:
            return out, {"method": self._method(method).name, "parts": len(self.parts)}
        return out

    def hessian(self, theta, method=None, *, chunk_size=None, return_info=False):
        """Σᵢ wᵢ Hᵢ(θ), ``(p, p)`` — for small p only; use :meth:`hessian_operator` otherwise."""
        theta = self.check_theta(theta)
        out = self._mean(lambda part: part.hessian(theta, method=method, chunk_size=chunk_size))
        if return_info:
            return out, {"method": self._method(method).name, "parts": len(self.parts)}
        return out

    def hessian_operator(self, theta, method=None, *, chunk_size=None) -> HessianOperator:
        """Σᵢ wᵢ Hᵢ(θ) as a :class:`HessianOperator`: each product runs every part's
        product in turn (``matvecs`` counts products of the mean, not of the parts)."""
        theta = self.check_theta(theta)
        m = self._method(method)
        ops = [part.hessian_operator(theta, method=method, chunk_size=chunk_size) for part in self.parts]
        return self._weighted_operator(ops, m.name)

    def _weighted_operator(self, ops, name):
        """Σᵢ wᵢ opᵢ as a :class:`HessianOperator`, applying the parts' operators in turn."""

        def apply(V):
            total = None
            for w, op in zip(self.weights, ops):
                out = w * np.asarray(op.matmat(V))
                total = out if total is None else total + out
            return total

        return HessianOperator(apply, self.num_params, name)

    # ---- Gauss–Newton and Fisher: weighted sums of the parts' ----------------------
    def ggn_operator(self, theta, *, chunk_size=None) -> HessianOperator:
        """G = Σᵢ wᵢ Gᵢ, the parts' generalised Gauss–Newton matrices
        (:func:`pyodejl.derivatives.gauss_newton.ggn_operator`), part by part."""
        theta = self.check_theta(theta)
        return self._weighted_operator([part.ggn_operator(theta, chunk_size=chunk_size) for part in self.parts],
                                       "ggn")

    def ggn(self, theta, *, chunk_size=None) -> np.ndarray:
        """The dense G = Σᵢ wᵢ Gᵢ ``(p, p)``; for small p."""
        theta = self.check_theta(theta)
        return self._mean(lambda part: part.ggn(theta, chunk_size=chunk_size))

    def empirical_fisher_operator(self, theta) -> HessianOperator:
        """F = Σᵢ wᵢ Fᵢ, the parts' empirical Fishers (with the parts' sample counts as
        weights, the mean of g_n g_nᵀ over every sample); each part's gradients kept."""
        theta = self.check_theta(theta)
        return self._weighted_operator([part.empirical_fisher_operator(theta) for part in self.parts],
                                       "empirical-fisher")

    def empirical_fisher(self, theta) -> np.ndarray:
        """The dense F = Σᵢ wᵢ Fᵢ ``(p, p)``."""
        theta = self.check_theta(theta)
        return self._mean(lambda part: part.empirical_fisher(theta))

    def stats(self, theta):
        """Solve statistics summed over the parts (ODE parts only)."""
        if not self.is_ode:
            raise ValueError("stats() needs ODE parts")
        theta = self.check_theta(theta)
        return _solve_stats_sum([part.stats(theta) for part in self.parts])
