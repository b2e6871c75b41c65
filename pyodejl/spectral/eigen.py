"""``eigenvalues``: extreme eigenpairs of a symmetric operator, four ways."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import eigh as _eigh
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from ._operator import as_operator, check_rng_seed
from .lanczos import thick_restart_lanczos
from .power import power_iteration

__all__ = ["EigenResult", "eigenvalues", "WHICH", "METHODS"]

WHICH = ("largest", "smallest", "both", "magnitude")
METHODS = ("lanczos", "power", "eigsh", "dense")


@dataclass
class EigenResult:
    """Eigenpairs found by :func:`eigenvalues`.

    Attributes
    ----------
    eigenvalues : ndarray (k,)
        Ordered by ``which``: ``"largest"`` descending, ``"smallest"`` ascending,
        ``"magnitude"`` by descending ``|λ|``, ``"both"`` ascending (the ``k // 2``
        smallest followed by the ``ceil(k/2)`` largest).
    eigenvectors : ndarray (p, k)
        Orthonormal columns, ``eigenvectors[:, i]`` belongs to ``eigenvalues[i]``.
    residual_norms : ndarray (k,)
        ``‖A y_i − λ_i y_i‖`` (absolute).
    converged : ndarray (k,) of bool
        ``residual_norms <= tol * norm_estimate``.
    matvecs : int
        Exact number of operator applications used (including the optional symmetry
        check and, for ``eigsh``, the ``k`` applications that compute residuals).
    norm_estimate : float
        The estimate of ``‖A‖`` convergence was judged against.
    history : list of (matvecs, ndarray)
        With ``record_history=True`` (lanczos and power only): after every matvec, the
        current best estimates of the wanted eigenvalues — for convergence plots
        (:func:`pyodejl.plotting.plot_ritz_convergence`).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residual_norms: np.ndarray
    converged: np.ndarray
    matvecs: int
    method: str
    which: str
    tol: float
    norm_estimate: float
    history: list = field(default_factory=list, repr=False)

    @property
    def relative_residuals(self) -> np.ndarray:
        """``residual_norms / norm_estimate``."""
        return self.residual_norms / max(self.norm_estimate, np.finfo(float).tiny)


def _check_which(which):
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(map(repr, WHICH))}; got {which!r}")


def _order(values, which):
    if which == "largest":
        return np.argsort(-values, kind="stable")
    if which == "smallest":
        return np.argsort(values, kind="stable")
    if which == "magnitude":
        return np.argsort(-np.abs(values), kind="stable")
    return np.argsort(values, kind="stable")


def _select_dense(w, which, k):
    """Indices of the wanted eigenvalues from an ascending full spectrum ``w``."""
    p = len(w)
    if which == "largest":
        return np.arange(p - 1, p - 1 - k, -1)
    if which == "smallest":
        return np.arange(k)
    if which == "magnitude":
        return np.argsort(-np.abs(w), kind="stable")[:k]
    khi, klo = (k + 1) // 2, k // 2
    return np.concatenate([np.arange(klo), np.arange(p - khi, p)])


def eigenvalues(op, k: int = 1, which: str = "largest", method: str = "lanczos",
                tol: float = 1e-8, seed=None, *, ncv: int | None = None,
                max_matvecs: int | None = None, multiplicity_check: int = 10,
                power_stopping: str = "residual", power_max_iter: int = 10000,
                record_history: bool = False,
                check_symmetric: bool | None = None) -> EigenResult:
    """Extreme eigenpairs of a symmetric matrix or operator.

    Parameters
    ----------
    op : ndarray (p, p), scipy sparse matrix or LinearOperator (p, p)
        Real symmetric. Blocks are applied through ``op.matmat`` where the method allows.
    k : int, default 1
        Number of eigenpairs, ``1 <= k < p`` (``k >= 2`` for ``which="both"``).
    which : {"largest", "smallest", "both", "magnitude"}, default "largest"
        Largest algebraic, smallest algebraic, ``ceil(k/2)`` largest and ``k // 2``
        smallest, or largest ``|λ|``.
    method : {"lanczos", "power", "eigsh", "dense"}, default "lanczos"
        * ``"lanczos"`` — our thick-restart Lanczos (Wu & Simon 2000) with full
          reorthogonalisation, locking, and a fresh-start multiplicity check; converges
          when ``‖Ay − θy‖ <= tol·‖A‖_est`` (see :mod:`pyodejl.spectral.lanczos`).
        * ``"power"`` — power iteration with deflation, PyHessian's scheme (Yao et al.
          2020; the baseline of seeds 002 and 003). Finds largest-|λ| eigenvalues; so it
          supports ``which="magnitude"`` and ``which="largest"`` (the latter is correct
          when the top-``k`` largest-magnitude eigenvalues are positive, as for typical
          Hessians; a warning is raised if a negative one is found).
        * ``"eigsh"`` — ARPACK (implicitly restarted Lanczos) via
          :func:`scipy.sparse.linalg.eigsh`, with ARPACK's own relative criterion
          ``‖r‖ <= tol·|θ|`` (which stalls on eigenvalues near zero). ``k`` extra
          matvecs compute the reported residual norms. If ARPACK does not converge, a
          RuntimeWarning is raised and only the pairs it converged are returned.
        * ``"dense"`` — materialise the matrix with ``p`` matvecs (one block of ``p``
          columns) and call :func:`numpy.linalg.eigh`; for small ``p`` (seed 000's full
          spectra).
    tol : float, default 1e-8
        Relative residual tolerance (see above for each method).
    seed : int, Generator or None
        Start vectors. Same seed → identical results.
    ncv : int, optional
        Lanczos basis size (default ``max(2k + 20, 40)``, capped at ``p``); ARPACK's
        ``ncv`` for ``eigsh``.
    max_matvecs : int, optional
        Lanczos budget (default ``max(2000, 100k)``); ``maxiter`` for eigsh.
    multiplicity_check : int, default 10
        Lanczos steps of the fresh-start check for missed copies of repeated eigenvalues
        (0 disables it, saving those matvecs; then a repeated eigenvalue may be returned
        only once).
    power_stopping : {"residual", "relative_change"}
        Stopping rule of power iteration (see :mod:`pyodejl.spectral.power`).
    power_max_iter : int, default 10000
        Iterations per eigenpair for power iteration.
    record_history : bool, default False
        Record eigenvalue estimates after each matvec (lanczos, power).
    check_symmetric : bool or None
        See :func:`pyodejl.spectral.as_operator`.

    Returns
    -------
    EigenResult
    """
    _check_which(which)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    rng = check_rng_seed(seed)
    A = as_operator(op, check_symmetric=check_symmetric, seed=rng)
    p = A.dim
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1 or k >= p:
        raise ValueError(f"k must satisfy 1 <= k < p = {p}; got k = {k}")
    if which == "both" and k < 2:
        raise ValueError("which='both' needs k >= 2 (ceil(k/2) largest and k//2 smallest)")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive finite number, got {tol}")

    history: list = []
    if method == "lanczos":
        vals, vecs, res, anorm, history, _ = thick_restart_lanczos(
            A, k, which, tol, rng, ncv=ncv, max_matvecs=max_matvecs,
            multiplicity_check=multiplicity_check, record_history=record_history)
    elif method == "power":
        if which not in ("largest", "magnitude"):
            raise NotImplementedError(
                "power iteration converges to the largest-magnitude eigenvalues only; "
                f"which={which!r} needs method='lanczos', 'eigsh' or 'dense'")
        vals, vecs, res, anorm, history, _ = power_iteration(
            A, k, tol, rng, max_iter=power_max_iter, stopping=power_stopping,
            record_history=record_history)
        if which == "largest" and np.any(vals < 0):
            warnings.warn("power iteration found a negative eigenvalue among the top-k by "
                          "magnitude, so these are not the k largest algebraic eigenvalues; "
                          "use method='lanczos'", RuntimeWarning, stacklevel=2)
    elif method == "eigsh":
        arpack_which = {"largest": "LA", "smallest": "SA", "both": "BE",
                        "magnitude": "LM"}[which]
        v0 = rng.standard_normal(p)
        try:
            vals, vecs = eigsh(A, k=k, which=arpack_which, tol=tol, v0=v0, ncv=ncv,
                               maxiter=max_matvecs)
        except ArpackNoConvergence as exc:
            warnings.warn(f"ARPACK did not converge: {exc}", RuntimeWarning, stacklevel=2)
            vals, vecs = exc.eigenvalues, exc.eigenvectors
        R = A.matmat(vecs) - vecs * vals
        res = np.linalg.norm(R, axis=0)
        anorm = float(np.max(np.abs(vals))) if len(vals) else 0.0
    else:  # dense
        M = A.matmat(np.eye(p))
        M = 0.5 * (M + M.T)
        w, U = _eigh(M)
        idx = _select_dense(w, which, k)
        vals, vecs = w[idx], U[:, idx]
        res = np.linalg.norm(M @ vecs - vecs * vals, axis=0)
        anorm = float(np.max(np.abs(w)))
    vals = np.asarray(vals, float)
    order = _order(vals, which)
    vals, vecs, res = vals[order], vecs[:, order], np.asarray(res, float)[order]
    converged = res <= tol * max(anorm, np.finfo(float).tiny)
    if method == "eigsh":  # ARPACK's own criterion is relative to |θ|
        converged = converged | (res <= tol * np.abs(vals))
    if method == "dense":
        converged = np.ones(len(vals), bool)
    return EigenResult(eigenvalues=vals, eigenvectors=vecs, residual_norms=res,
                       converged=converged, matvecs=int(A.matvecs), method=method,
                       which=which, tol=float(tol), norm_estimate=float(anorm),
                       history=history)
