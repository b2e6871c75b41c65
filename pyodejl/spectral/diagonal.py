"""Stochastic estimation of the diagonal of a symmetric operator from matrix–vector products.

* ``"hutchinson"`` — Bekas, Kokiopoulou & Saad, "An estimator for the diagonal of a
  matrix", Appl. Numer. Math. 57(11–12), 2007: ``diag(A) ≈ (Σ_k z_k ⊙ A z_k) ⊘
  (Σ_k z_k ⊙ z_k)``. With Rademacher probes the denominator is ``N`` and the estimate is
  unbiased with per-entry variance ``Σ_{j≠i} A_ij² / N`` (exact on a diagonal matrix).
  With Gaussian probes it is Bekas et al.'s ratio (consistent, not exactly unbiased).
* ``"xdiag"`` — Epperly, Tropp & Webber, "XTrace: Making the most of every sample in
  stochastic trace estimation", SIAM J. Matrix Anal. Appl. 45(1), 2024 (XDiag). With
  ``m = ⌊num_matvecs/2⌋`` test vectors, ``Y = AΩ = QR``, ``Z = AQ``, and for each ``i``
  the leave-one-out basis ``Q_(i) = orth(AΩ_{−i})``:

      ``d_i = diag(Q_(i)Q_(i)ᵀ A) + ω_i ⊙ ((I − Q_(i)Q_(i)ᵀ) A ω_i)``,

  an unbiased estimate (``Q_(i)`` does not depend on ``ω_i``, and ``E[ω ⊙ Mω] =
  diag(M)``). The estimate is the mean of the ``d_i``. With the downdate
  ``Q_(i)Q_(i)ᵀ = Q(I − s_i s_iᵀ)Qᵀ`` (:mod:`pyodejl.spectral._lowrank`):
  ``diag(Q_(i)Q_(i)ᵀA) = diag(QZᵀ) − (Qs_i) ⊙ (Zs_i)`` and
  ``(I − Q_(i)Q_(i)ᵀ)Aω_i = Q s_i (s_iᵀ R e_i)``, so all ``d_i`` cost ``O(p m²)`` flops
  and no product beyond the ``2m``. Exact when ``rank(A) < m``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._lowrank import leave_one_out_directions
from ._operator import as_operator, check_rng_seed
from .trace import _probes

__all__ = ["DiagonalResult", "diagonal", "DIAGONAL_METHODS"]

DIAGONAL_METHODS = ("xdiag", "hutchinson")


@dataclass
class DiagonalResult:
    """Result of :func:`diagonal`.

    Attributes
    ----------
    estimate : ndarray (p,)
        The estimated diagonal.
    error_estimate : ndarray (p,)
        Per-entry standard-error estimate: the sample standard deviation of the per-probe
        estimates ``z_k ⊙ Az_k`` divided by ``√N`` (Hutchinson), or XDiag's leave-one-out
        ``sqrt(Σ_i (d_i − d̄)² / (m(m − 1)))`` (entrywise).
    matvecs : int
        Exact number of operator applications used.
    method : str
    distribution : str
    """

    estimate: np.ndarray
    error_estimate: np.ndarray
    matvecs: int
    method: str
    distribution: str


def diagonal(op, num_matvecs: int = 100, method: str = "xdiag", seed=None, *,
             distribution: str = "rademacher", block_size: int | None = None,
             check_symmetric: bool | None = None) -> DiagonalResult:
    """Estimate ``diag(A)`` from matrix–vector products.

    Parameters
    ----------
    op : ndarray (p, p), sparse matrix or LinearOperator (p, p)
        Real symmetric.
    num_matvecs : int, default 100
        Budget. ``"hutchinson"`` uses it exactly (``N = num_matvecs`` probes).
        ``"xdiag"`` uses ``m = num_matvecs // 2`` test vectors and ``2m`` products
        (needs ``4 <= num_matvecs`` and ``m <= p``); with an **odd** budget the last
        product is not spent and ``.matvecs`` reports ``num_matvecs − 1``.
    method : {"xdiag", "hutchinson"}, default "xdiag"
        See the module docstring. XDiag wins when the spectrum decays (a low-rank part
        dominates); on a flat spectrum it spends half its budget on a sketch that does
        not help, and Hutchinson is better.
    seed : int, Generator or None
    distribution : {"rademacher", "gaussian"}, default "rademacher"
        Test vectors. Rademacher (Bekas et al.'s choice) makes Hutchinson exact on
        diagonal matrices.
    block_size : int, optional
        Hutchinson only: probes are applied in blocks of this many columns via
        ``op.matmat`` (default: all at once).
    check_symmetric : bool or None
        See :func:`pyodejl.spectral.as_operator` (its matvecs are counted).

    Returns
    -------
    DiagonalResult
    """
    if method not in DIAGONAL_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, DIAGONAL_METHODS))}; "
                         f"got {method!r}")
    if distribution not in ("rademacher", "gaussian"):
        raise ValueError("distribution must be 'rademacher' or 'gaussian', got "
                         f"{distribution!r}")
    if not isinstance(num_matvecs, (int, np.integer)) or isinstance(num_matvecs, bool) \
            or num_matvecs < 1:
        raise ValueError(f"num_matvecs must be a positive int, got {num_matvecs!r}")
    if method == "xdiag" and num_matvecs < 4:
        raise ValueError(f"xdiag needs num_matvecs >= 4 (two products per test vector, at "
                         f"least 2 test vectors), got {num_matvecs}")
    rng = check_rng_seed(seed)
    A = as_operator(op, check_symmetric=check_symmetric, seed=rng)
    p = A.dim

    if method == "hutchinson":
        bs = num_matvecs if block_size is None else int(block_size)
        if bs < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        num = np.zeros(p)
        den = np.zeros(p)
        sq = np.zeros(p)
        done = 0
        while done < num_matvecs:
            n = min(bs, num_matvecs - done)
            Zb = _probes(rng, p, n, distribution)
            P = Zb * A.matmat(Zb)
            num += P.sum(axis=1)
            sq += (P * P).sum(axis=1)
            den += (Zb * Zb).sum(axis=1)
            done += n
        N = num_matvecs
        est = num / den
        if N > 1:
            mean = num / N
            var = np.maximum(sq / N - mean * mean, 0.0) * (N / (N - 1))
            err = np.sqrt(var / N)
        else:
            err = np.full(p, np.nan)
        return DiagonalResult(est, err, int(A.matvecs), method, distribution)

    m = int(num_matvecs // 2)
    if m > p:
        raise ValueError(f"xdiag uses {m} test vectors (num_matvecs = {num_matvecs}), more "
                         f"than p = {p}; use a budget of at most {2 * p}")
    Om = _probes(rng, p, m, distribution)
    Y = A.matmat(Om)
    Q, R = np.linalg.qr(Y)
    Z = A.matmat(Q)
    S = leave_one_out_directions(R)
    QS = Q @ S
    # column i: d_i − diag(QZᵀ) = −(Qs_i)⊙(Zs_i) + ω_i ⊙ Qs_i (s_iᵀ R e_i)
    D = QS * (Om * np.einsum("ij,ij->j", S, R) - Z @ S)
    base = np.einsum("ij,ij->i", Q, Z)
    est = base + D.mean(axis=1)
    err = np.sqrt(np.sum((D - D.mean(axis=1, keepdims=True)) ** 2, axis=1) / (m * (m - 1)))
    return DiagonalResult(est, err, int(A.matvecs), method, distribution)
