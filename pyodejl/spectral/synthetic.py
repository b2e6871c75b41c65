"""Symmetric operators with exactly known spectra, and the seed-003 generator.

``SpectrumOperator(eigenvalues, seed)`` is ``A = Q diag(λ) Qᵀ`` with ``Q`` a Haar-random
orthogonal matrix, applied matrix-free (``A x = Q (λ ⊙ Qᵀx)``), so every method in
:mod:`pyodejl.spectral` can be checked against the truth. The spectrum generators
reproduce the shapes network Hessians have: a large (near-)zero bulk, a heavy tail or a
few outliers, some negative eigenvalues.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._operator import check_rng_seed

__all__ = ["SpectrumOperator", "random_orthogonal", "student_t_spectrum",
           "outlier_bulk_spectrum"]


def random_orthogonal(p: int, seed=None) -> np.ndarray:
    """A Haar-distributed random orthogonal ``(p, p)`` matrix (QR of a Gaussian matrix
    with the signs of ``diag(R)`` fixed; Mezzadri, Notices AMS 2007)."""
    rng = check_rng_seed(seed)
    Z = rng.standard_normal((p, p))
    Q, R = np.linalg.qr(Z)
    return Q * np.sign(np.diag(R))


class SpectrumOperator(LinearOperator):
    """``A = Q diag(eigenvalues) Qᵀ`` as a matrix-free LinearOperator.

    Parameters
    ----------
    eigenvalues : array_like (p,)
        The exact spectrum (any order, repeats allowed).
    seed : int, Generator or None
        Seed of the random orthogonal eigenbasis ``Q``.

    Attributes
    ----------
    eigenvalues : ndarray (p,)
        Sorted descending.
    eigenvectors : ndarray (p, p)
        ``eigenvectors[:, i]`` belongs to ``eigenvalues[i]``.
    """

    def __init__(self, eigenvalues, seed=None):
        lam = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
        if lam.size < 1 or not np.all(np.isfinite(lam)):
            raise ValueError("eigenvalues must be a non-empty finite 1-D array")
        order = np.argsort(-lam, kind="stable")
        self.eigenvalues = lam[order]
        self.eigenvectors = random_orthogonal(lam.size, seed)
        super().__init__(dtype=np.float64, shape=(lam.size, lam.size))

    def _matvec(self, x):
        Q = self.eigenvectors
        return Q @ (self.eigenvalues * (Q.T @ np.ravel(x)))

    def _matmat(self, X):
        Q = self.eigenvectors
        return Q @ (self.eigenvalues[:, None] * (Q.T @ X))

    def _rmatvec(self, x):
        return self._matvec(x)

    def _adjoint(self):
        return self

    def to_dense(self) -> np.ndarray:
        """The ``(p, p)`` matrix (exactly symmetrised)."""
        Q = self.eigenvectors
        A = (Q * self.eigenvalues) @ Q.T
        return 0.5 * (A + A.T)

    @property
    def trace(self) -> float:
        return float(np.sum(self.eigenvalues))

    @property
    def frobenius_norm(self) -> float:
        return float(np.linalg.norm(self.eigenvalues))


def student_t_spectrum(p: int = 1000, zero_fraction: float = 0.5, seed=None,
                       df: float = 1.0) -> np.ndarray:
    """Seed 003's synthetic Hessian spectrum: ``round(zero_fraction·p)`` exact zeros, the
    rest ``|t_df|`` (Student's t with ``df = 1``, i.e. |Cauchy|: a heavy tail).

    Returns the eigenvalues sorted descending, shape ``(p,)``.
    """
    if not 0.0 <= zero_fraction <= 1.0:
        raise ValueError(f"zero_fraction must be in [0, 1], got {zero_fraction}")
    rng = check_rng_seed(seed)
    nz = int(round(zero_fraction * p))
    lam = np.concatenate([np.zeros(nz), np.abs(rng.standard_t(df, size=p - nz))])
    return np.sort(lam)[::-1]


def outlier_bulk_spectrum(p: int = 1000, num_outliers: int = 10, outlier_range=(10.0, 100.0),
                          bulk_scale: float = 0.05, zero_fraction: float = 0.5,
                          negative_fraction: float = 0.3, seed=None) -> np.ndarray:
    """A network-Hessian-like spectrum: ``num_outliers`` outliers log-spaced in
    ``outlier_range``, ``round(zero_fraction·p)`` exact zeros, and a bulk of
    ``|N(0, bulk_scale²)|`` values of which ``negative_fraction`` carry a minus sign
    (Sagun et al. 2017; Ghorbani et al. 2019).

    Returns the eigenvalues sorted descending, shape ``(p,)``.
    """
    rng = check_rng_seed(seed)
    if num_outliers > p:
        raise ValueError("num_outliers must be <= p")
    out = np.geomspace(outlier_range[0], outlier_range[1], num_outliers) if num_outliers else \
        np.zeros(0)
    nz = int(round(zero_fraction * (p - num_outliers)))
    nb = p - num_outliers - nz
    bulk = np.abs(rng.normal(0.0, bulk_scale, nb))
    neg = rng.random(nb) < negative_fraction
    bulk[neg] *= -1
    return np.sort(np.concatenate([out, np.zeros(nz), bulk]))[::-1]
