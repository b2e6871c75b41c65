"""Finite-difference Hessians: independent checks that use only loss or gradient values.

* :class:`FiniteDifference` (``"fd"``): seed 000's four-point central
  difference of the loss (its Eq. 10), generalised to a pair of directions
  ``(a, b)``::

      aᵀHb ≈ [L(θ+ha+hb) − L(θ+ha−hb) − L(θ−ha+hb) + L(θ−ha−hb)] / (4h²)

  With ``a = e_i, b = e_j`` this is Eq. 10; with ``b = v`` it gives (Hv)_i.
* :class:`FiniteDifferenceGradient` (``"fd-grad"``): central differences of the
  gradient, ``Hv ≈ [∇L(θ+hv) − ∇L(θ−hv)] / (2h)``.

The step ``h`` is chosen automatically unless given: estimates are computed on
a small sample for each ``h`` in a decade ladder, and the ``h`` where
neighbouring estimates agree best is kept (the behaviour of seed 000's Fig. 4:
truncation error dominates at large ``h``, round-off and solver noise at small
``h``). The chosen ``h`` and the ladder are reported in ``info``.
"""

from __future__ import annotations

import numpy as np

from pyodejl._validation import check_number

DEFAULT_STEPS = tuple(10.0 ** -k for k in range(1, 9))


def _select_step(estimate, candidates):
    """Evaluate ``estimate(h)`` along the ladder; keep h where neighbours agree best.

    A step whose perturbed solves fail (large h can push a solve past its step
    limit or to blow-up) is skipped. Returns (h, estimates, disagreement) where
    disagreement[k] is the relative difference between the estimates at
    candidates[k] and candidates[k+1] (NaN where either failed).
    """
    from pyodejl.solving import SolveError

    ests = []
    for h in candidates:
        try:
            ests.append(np.asarray(estimate(h)))
        except SolveError:
            ests.append(None)
    dis = []
    for a, b in zip(ests[:-1], ests[1:]):
        if a is None or b is None:
            dis.append(np.nan)
            continue
        scale = max(np.linalg.norm(a), np.linalg.norm(b), np.finfo(float).tiny)
        dis.append(np.linalg.norm(a - b) / scale)
    dis = np.asarray(dis)
    if np.all(np.isnan(dis)):
        raise SolveError(f"finite differences failed at every step in {tuple(candidates)}: the perturbed solves fail")
    k = int(np.nanargmin(dis))
    return candidates[k + 1], ests, dis


class FiniteDifference:
    """Seed 000's four-point central differences of the loss (Eq. 10).

    Args:
        h: step; ``None`` (default) selects it automatically.
        candidates: the decade ladder scanned when ``h`` is None (1e-1 … 1e-8).
        sample: number of Hessian entries used to select ``h`` (default 24).
        seed: seed for choosing the sample.
        batch: loss evaluations per compiled batch (default 512).

    Cost: 4 loss evaluations per entry — ``2p(p+1)`` for a full Hessian,
    ``4p`` per Hessian-vector product. Small models only.
    """

    name = "fd"
    exact = False

    def __init__(self, h=None, candidates=DEFAULT_STEPS, sample=24, seed=0, batch=512):
        h = None if h is None else check_number(h, "finite-difference step h")
        self.h, self.candidates, self.sample, self.seed, self.batch = h, tuple(candidates), sample, seed, batch

    def _values(self, objective, thetas):
        vals = objective.values(thetas, batch=self.batch)
        if not np.all(np.isfinite(vals)):
            from pyodejl.solving import SolveError

            raise SolveError("a perturbed loss evaluation failed (solve hit max_steps or diverged)")
        return vals

    def _pairs(self, objective, theta, A, B, h):
        """aᵀHb for each row pair of A, B (each ``(n, p)``)."""
        ha, hb = h * A, h * B
        thetas = np.concatenate([theta + ha + hb, theta + ha - hb, theta - ha + hb, theta - ha - hb])
        L = self._values(objective, thetas).reshape(4, -1)
        return (L[0] - L[1] - L[2] + L[3]) / (4 * h * h)

    def _choose(self, objective, theta, num_entries, entry_pairs):
        """The step for a set of ``num_entries`` entries aᵀHb; ``entry_pairs(idx) -> (A, B)``
        gives the direction pairs of the entries ``idx``, so a sample need not build them all."""
        if self.h is not None:
            return self.h, {"h": self.h}
        rng = np.random.default_rng(self.seed)
        idx = rng.choice(num_entries, size=min(self.sample, num_entries), replace=False)
        A, B = entry_pairs(idx)
        h, ests, dis = _select_step(lambda h: self._pairs(objective, theta, A, B, h), self.candidates)
        return h, {"h": h, "candidates": self.candidates, "disagreement": dis}

    def hvp(self, objective, theta, V, chunk=None):
        p, k = V.shape
        eye = np.eye(p)
        # Entry (i, j) of HV is e_iᵀ H v_j. The step is chosen once for the whole product,
        # from a sample of entries over every column, then every column uses it.
        h, info = self._choose(objective, theta, p * k, lambda idx: (eye[idx // k], V.T[idx % k]))
        cols = [self._pairs(objective, theta, eye, np.broadcast_to(v, (p, p)), h) for v in V.T]
        return np.stack(cols, axis=1), {"method": self.name, **info, "evaluations": 4 * p * k}

    def _hessian_entries(self, p):
        iu, ju = np.triu_indices(p)
        eye = np.eye(p)
        return iu, ju, eye[iu], eye[ju]

    def with_step_at(self, objective, theta) -> FiniteDifference:
        """This method with its step chosen once at θ, from a sample of Hessian entries.

        A Hessian operator applied one column at a time uses it, so the step ladder
        runs once per operator rather than once per product.
        """
        if self.h is not None:
            return self
        iu, ju, A, B = self._hessian_entries(len(theta))
        h, _ = self._choose(objective, theta, len(A), lambda idx: (A[idx], B[idx]))
        return FiniteDifference(h, self.candidates, self.sample, self.seed, self.batch)

    def hessian(self, objective, theta, chunk=None):
        p = len(theta)
        iu, ju, A, B = self._hessian_entries(p)
        h, info = self._choose(objective, theta, len(A), lambda idx: (A[idx], B[idx]))
        vals = self._pairs(objective, theta, A, B, h)
        H = np.zeros((p, p))
        H[iu, ju] = vals
        H[ju, iu] = vals
        return H, {"method": self.name, **info, "evaluations": 4 * len(iu)}


class FiniteDifferenceGradient:
    """Central differences of the gradient: ``Hv ≈ [g(θ+hv) − g(θ−hv)] / (2h)``.

    Args:
        h: step; ``None`` (default) selects it automatically on ``sample``
            random unit directions.
        gradient: gradient method differenced (default ``"discrete"``).
        candidates: the decade ladder scanned when ``h`` is None.
        sample: random unit directions used to select ``h`` (default 3).
        seed: seed for the directions.

    The full Hessian is symmetrised, ``(H + Hᵀ)/2``. Cost: 2 gradients per column.
    """

    name = "fd-grad"
    exact = False

    def __init__(self, h=None, gradient="discrete", candidates=DEFAULT_STEPS, sample=3, seed=0):
        h = None if h is None else check_number(h, "finite-difference step h")
        self.h, self.gradient, self.candidates, self.sample, self.seed = h, gradient, tuple(candidates), sample, seed

    def _diff(self, objective, theta, V, h):
        cols = []
        for v in V.T:
            gp = objective.grad(theta + h * v, method=self.gradient)
            gm = objective.grad(theta - h * v, method=self.gradient)
            cols.append((gp - gm) / (2 * h))
        return np.stack(cols, axis=1)

    def _choose(self, objective, theta):
        if self.h is not None:
            return self.h, {"h": self.h}
        rng = np.random.default_rng(self.seed)
        D = rng.standard_normal((len(theta), self.sample))
        D /= np.linalg.norm(D, axis=0)
        h, ests, dis = _select_step(lambda h: self._diff(objective, theta, D, h), self.candidates)
        return h, {"h": h, "candidates": self.candidates, "disagreement": dis}

    def with_step_at(self, objective, theta) -> FiniteDifferenceGradient:
        """This method with its step chosen once at θ (for an operator applied column by column)."""
        if self.h is not None:
            return self
        h, _ = self._choose(objective, theta)
        return FiniteDifferenceGradient(h, self.gradient, self.candidates, self.sample, self.seed)

    def hvp(self, objective, theta, V, chunk=None):
        h, info = self._choose(objective, theta)
        return self._diff(objective, theta, V, h), {"method": self.name, **info, "gradients": 2 * V.shape[1]}

    def hessian(self, objective, theta, chunk=None):
        H, info = self.hvp(objective, theta, np.eye(len(theta)))
        return 0.5 * (H + H.T), info
