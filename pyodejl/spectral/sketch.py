"""Seed 003's Hessian sketch ``SᵀAS`` and its refinement by subspace iteration.

Seed 003 ("Approximating the spectra of neural network Hessians", Sec. "Hessian
Sketching") forms ``M = SᵀAS`` with ``S ∈ R^{p×d}`` whose columns are Rademacher vectors
scaled by ``d^{-1/2}``. Then ``E[tr M] = tr A`` (each diagonal entry of ``M`` is a
Hutchinson sample divided by ``d``), and — since ``E[SᵀS] = (p/d) I`` — the eigenvalues
of ``M`` *over-estimate* the top eigenvalues of ``A``, less so as ``d`` grows and as the
spectrum gets more singular (its Figs. 7–18; reproduced by
``examples/sketch_overestimation.py``).

``refine_steps = q > 0`` implements the seed's "future work" of polishing the sketch's
estimates: randomised subspace iteration started from ``S`` (Halko, Martinsson & Tropp,
SIAM Review 53(2), 2011, Alg. 4.4) — ``Q_1 = orth(AS)`` reuses the sketch's products,
``Q_{i+1} = orth(A Q_i)`` — followed by Rayleigh–Ritz on ``Q_q``. Each step costs ``d``
matvecs, and the Ritz values are lower bounds that converge to the top eigenvalues
(largest magnitude); ``history`` records how accuracy grows with matvecs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import eigh as _eigh
from scipy.linalg import eigvalsh as _eigvalsh

from ._operator import as_operator, check_rng_seed

__all__ = ["SketchResult", "sketch"]


@dataclass
class SketchResult:
    """Result of :func:`sketch`.

    Attributes
    ----------
    eigenvalues : ndarray (d,)
        Descending. The eigenvalues of ``SᵀAS`` when ``refine_steps == 0``, else the
        Rayleigh–Ritz values after the last refinement step.
    trace : float
        ``tr(SᵀAS)`` — an unbiased (Hutchinson, ``d`` Rademacher probes) estimate of
        ``tr(A)``.
    matvecs : int
        ``d · (1 + refine_steps)`` (plus 2 if a randomized symmetry check ran).
    sketch : ndarray (d, d)
        The symmetrised matrix ``SᵀAS``.
    sketch_eigenvalues : ndarray (d,)
        Eigenvalues of ``SᵀAS``, descending.
    eigenvectors : ndarray (p, d) or None
        Ritz vectors (refined mode only).
    history : list of (matvecs, ndarray (d,))
        ``(d, sketch eigenvalues)`` then, for each refinement step ``i``,
        ``(d(1+i), Ritz values)``.
    """

    eigenvalues: np.ndarray
    trace: float
    matvecs: int
    d: int
    refine_steps: int
    sketch: np.ndarray = field(repr=False)
    sketch_eigenvalues: np.ndarray = field(repr=False)
    eigenvectors: np.ndarray | None = field(default=None, repr=False)
    history: list = field(default_factory=list, repr=False)


def sketch(op, d: int = 50, seed=None, refine_steps: int = 0, *,
           check_symmetric: bool | None = None) -> SketchResult:
    """Rademacher sketch ``SᵀAS`` (seed 003) with optional subspace-iteration refinement.

    Parameters
    ----------
    op : ndarray (p, p), sparse matrix or LinearOperator (p, p)
        Real symmetric.
    d : int, default 50
        Sketch size, ``1 <= d <= p``. ``S`` has i.i.d. entries ``±d^{-1/2}``.
    seed : int, Generator or None
    refine_steps : int, default 0
        Subspace-iteration steps (each ``d`` matvecs, applied as one block).
    check_symmetric : bool or None
        See :func:`pyodejl.spectral.as_operator`.

    Returns
    -------
    SketchResult
    """
    rng = check_rng_seed(seed)
    A = as_operator(op, check_symmetric=check_symmetric, seed=rng)
    p = A.dim
    if not isinstance(d, (int, np.integer)) or not 1 <= d <= p:
        raise ValueError(f"d must be an int with 1 <= d <= p = {p}, got {d!r}")
    if not isinstance(refine_steps, (int, np.integer)) or refine_steps < 0:
        raise ValueError(f"refine_steps must be a non-negative int, got {refine_steps!r}")
    S = rng.choice(np.array([-1.0, 1.0]), size=(p, d)) / np.sqrt(d)
    AS = A.matmat(S)
    M = S.T @ AS
    M = 0.5 * (M + M.T)
    sk_vals = _eigvalsh(M)[::-1]
    tr = float(np.trace(M))
    history = [(int(A.matvecs), sk_vals.copy())]
    vals, vecs = sk_vals, None
    Y = AS
    for _ in range(refine_steps):
        Q, _ = np.linalg.qr(Y)
        Y = A.matmat(Q)
        B = Q.T @ Y
        B = 0.5 * (B + B.T)
        w, U = _eigh(B)
        order = np.argsort(-w, kind="stable")
        vals, vecs = w[order], Q @ U[:, order]
        history.append((int(A.matvecs), vals.copy()))
    return SketchResult(eigenvalues=vals, trace=tr, matvecs=int(A.matvecs), d=int(d),
                        refine_steps=int(refine_steps), sketch=M, sketch_eigenvalues=sk_vals,
                        eigenvectors=vecs, history=history)
