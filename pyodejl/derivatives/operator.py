"""Hessians as SciPy linear operators that count their applications."""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from pyodejl._sharding import to_host


class HessianOperator(LinearOperator):
    """A symmetric ``(p, p)`` :class:`scipy.sparse.linalg.LinearOperator` of H·v.

    Attributes:
        matvecs: number of Hessian-vector products applied so far; a block of
            ``k`` columns (``matmat``) counts ``k``.
        method: name of the Hessian method behind the products.

    ``matmat`` evaluates the whole block in one batched, compiled call, so
    block algorithms (block Lanczos, Hutch++, sketches) are much faster than
    column-by-column products.
    """

    def __init__(self, apply, num_params: int, method: str):
        super().__init__(dtype=np.dtype(np.float64), shape=(num_params, num_params))
        self._apply = apply
        self.method = method
        self.matvecs = 0

    def _products(self, V):
        V = np.asarray(V, dtype=np.float64)
        if not np.all(np.isfinite(V)):
            raise ValueError("HessianOperator was applied to a vector containing NaN or inf")
        out = to_host(self._apply(V))
        self.matvecs += V.shape[1]
        if not np.all(np.isfinite(out)):
            raise FloatingPointError(f"Hessian-vector product ({self.method}) returned NaN or inf")
        return out

    def _matvec(self, v):
        v = np.asarray(v).reshape(-1)
        return self._products(v[:, None])[:, 0]

    def _matmat(self, V):
        return self._products(V)

    def _rmatvec(self, v):
        return self._matvec(v)

    def _adjoint(self):
        return self
