"""Operator coercion, validation and exact matvec counting.

Every algorithm in :mod:`pyodejl.spectral` talks to the matrix only through a
:class:`CountingOperator`. It accepts a square ``numpy.ndarray``, a SciPy sparse
matrix, or any object :func:`scipy.sparse.linalg.aslinearoperator` understands
(a :class:`~scipy.sparse.linalg.LinearOperator` in particular, e.g. a Hessian-vector
product wrapped by a user), and

* counts operator applications exactly: one ``matvec`` counts 1, a ``matmat`` of
  ``k`` columns counts ``k``;
* forwards blocks to the wrapped operator's ``matmat`` so that operators that batch
  columns (our JAX Hessian operators) are used efficiently;
* raises :class:`FloatingPointError` as soon as the operator returns NaN or inf,
  so no algorithm ever silently returns NaN.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

__all__ = ["CountingOperator", "as_operator", "check_rng_seed"]


class CountingOperator(LinearOperator):
    """A float64 symmetric ``LinearOperator`` that counts its applications.

    Parameters
    ----------
    op : ndarray (p, p), sparse matrix or LinearOperator
        The wrapped operator (already validated by :func:`as_operator`).

    Attributes
    ----------
    matvecs : int
        Number of operator applications so far (a block of ``k`` columns counts ``k``).
    """

    def __init__(self, op, dense: np.ndarray | None = None):
        self._op = op
        self._dense = dense
        super().__init__(dtype=np.float64, shape=op.shape)
        self.matvecs = 0

    @property
    def dim(self) -> int:
        return self.shape[0]

    @property
    def dense(self) -> np.ndarray | None:
        """The wrapped matrix if the input was a dense array, else ``None``."""
        return self._dense

    def _check(self, y: np.ndarray, ncols: int) -> np.ndarray:
        y = np.asarray(y)
        if np.iscomplexobj(y):
            if np.any(np.imag(y) != 0):
                raise TypeError("the operator returned complex values; pyodejl.spectral "
                                "expects a real symmetric operator")
            y = np.real(y)
        y = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(y)):
            raise FloatingPointError(
                f"the operator returned NaN or inf (after {self.matvecs} matvecs, in a "
                f"block of {ncols} column(s)); check the model/loss at this point")
        return y

    def _matvec(self, x):
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = self._op.matvec(x) if self._dense is None else self._dense @ x
        self.matvecs += 1
        return self._check(np.asarray(y).reshape(-1), 1)

    def _matmat(self, X):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != self.shape[0]:
            raise ValueError(f"expected a block of shape ({self.shape[0]}, k), got {X.shape}")
        k = X.shape[1]
        if k == 0:
            return np.zeros((self.shape[0], 0))
        if self._dense is not None:
            Y = self._dense @ X
        elif k == 1:
            Y = np.asarray(self._op.matvec(X[:, 0])).reshape(-1, 1)
        else:
            Y = np.asarray(self._op.matmat(X))
        self.matvecs += k
        Y = self._check(Y, k)
        if Y.shape != X.shape:
            Y = Y.reshape(X.shape)
        return Y

    def _rmatvec(self, x):  # symmetric
        return self._matvec(x)

    def _adjoint(self):
        return self


def check_rng_seed(seed):
    """Return ``np.random.default_rng(seed)``; reject obviously wrong seeds early."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        raise TypeError(f"seed must be an int, None or a numpy Generator, got {type(seed).__name__}")
    return np.random.default_rng(seed)


def _check_dense_symmetric(A: np.ndarray, rtol: float) -> None:
    scale = np.max(np.abs(A)) if A.size else 0.0
    asym = np.max(np.abs(A - A.T)) if A.size else 0.0
    if asym > rtol * max(scale, np.finfo(float).tiny):
        raise ValueError(
            f"the matrix is not symmetric: max|A - A^T| = {asym:.3e} exceeds "
            f"{rtol:g} * max|A| = {rtol * scale:.3e}; pyodejl.spectral expects a symmetric "
            "matrix (a Hessian). Symmetrise it with (A + A.T) / 2 if the asymmetry is round-off")


def as_operator(op, *, check_symmetric: bool | None = None, seed=None,
                symmetry_rtol: float = 1e-8) -> CountingOperator:
    """Validate ``op`` and wrap it in a fresh :class:`CountingOperator`.

    Parameters
    ----------
    op : ndarray (p, p), scipy sparse matrix (p, p) or LinearOperator with shape (p, p)
        A real symmetric matrix or operator.
    check_symmetric : bool or None, default None
        ``None`` (default): dense and sparse matrices are checked exactly (free, no
        matvecs); LinearOperators are not checked. ``True``: LinearOperators get a cheap
        randomized check — one block of 2 random columns ``[u, v]`` is applied and
        ``u·Av`` is compared with ``v·Au`` — and those **2 matvecs are counted** in the
        result. ``False``: no check at all.
    seed : int, Generator or None
        Randomness for the randomized symmetry check.
    symmetry_rtol : float, default 1e-8
        Relative tolerance of the symmetry checks.

    Raises
    ------
    TypeError
        ``op`` is not an array/operator, or is complex.
    ValueError
        ``op`` is not 2-D square, empty, contains NaN/inf (dense), or is detectably
        non-symmetric.
    """
    if isinstance(op, CountingOperator):
        op = op._op if op._dense is None else op._dense
    dense = None
    if isinstance(op, np.ndarray) or (isinstance(op, (list, tuple))):
        A = np.asarray(op)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"expected a square 2-D matrix of shape (p, p), got shape {A.shape}")
        if np.iscomplexobj(A):
            raise TypeError("expected a real symmetric matrix, got a complex array")
        if not np.issubdtype(A.dtype, np.number) and A.dtype != bool:
            raise TypeError(f"expected a numeric matrix, got dtype {A.dtype}")
        A = np.asarray(A, dtype=np.float64)
        if not np.all(np.isfinite(A)):
            raise ValueError("the matrix contains NaN or inf entries")
        if check_symmetric is not False:
            _check_dense_symmetric(A, symmetry_rtol)
        dense = A
        lin = aslinearoperator(A)
    elif sp.issparse(op):
        if op.ndim != 2 or op.shape[0] != op.shape[1]:
            raise ValueError(f"expected a square sparse matrix of shape (p, p), got shape {op.shape}")
        if np.iscomplexobj(op.data if hasattr(op, "data") else np.zeros(0)):
            raise TypeError("expected a real symmetric matrix, got a complex sparse matrix")
        op = sp.csr_array(op, dtype=np.float64)
        if not np.all(np.isfinite(op.data)):
            raise ValueError("the sparse matrix contains NaN or inf entries")
        if check_symmetric is not False:
            diff = abs(op - op.T)
            asym = diff.max() if diff.nnz else 0.0
            scale = abs(op).max() if op.nnz else 0.0
            if asym > symmetry_rtol * max(scale, np.finfo(float).tiny):
                raise ValueError(f"the sparse matrix is not symmetric: max|A - A^T| = {asym:.3e}")
        lin = aslinearoperator(op)
    else:
        try:
            lin = aslinearoperator(op)
        except TypeError as exc:
            raise TypeError(
                "expected a square numpy array, a scipy sparse matrix or a "
                f"scipy.sparse.linalg.LinearOperator, got {type(op).__name__}") from exc
        if len(lin.shape) != 2 or lin.shape[0] != lin.shape[1]:
            raise ValueError(f"expected a square operator of shape (p, p), got shape {lin.shape}")
        if lin.dtype is not None and np.issubdtype(np.dtype(lin.dtype), np.complexfloating):
            raise TypeError("expected a real symmetric operator, got a complex dtype")
    p = lin.shape[0]
    if p < 1:
        raise ValueError("the operator is empty (p = 0)")
    counted = CountingOperator(lin, dense=dense)
    if check_symmetric and dense is None and not sp.issparse(op):
        rng = check_rng_seed(seed)
        UV = rng.standard_normal((p, 2))
        AUV = counted.matmat(UV)
        a = UV[:, 0] @ AUV[:, 1]
        b = UV[:, 1] @ AUV[:, 0]
        scale = np.linalg.norm(UV[:, 0]) * np.linalg.norm(AUV[:, 1]) + \
            np.linalg.norm(UV[:, 1]) * np.linalg.norm(AUV[:, 0])
        if abs(a - b) > symmetry_rtol * max(scale, np.finfo(float).tiny):
            raise ValueError(
                f"the operator is not symmetric: u·Av = {a:.6e} but v·Au = {b:.6e} for random "
                "u, v; pyodejl.spectral expects a symmetric operator (a Hessian)")
    return counted
