"""Thick-restart Lanczos with full reorthogonalisation and locking.

The algorithm (Wu & Simon, "Thick-restart Lanczos method for large symmetric
eigenvalue problems", SIAM J. Matrix Anal. Appl. 22(2), 2000) builds an orthonormal
Krylov basis ``V`` with *full* reorthogonalisation (classical Gram–Schmidt, applied
twice — "twice is enough"), so the projected matrix ``T = VᵀAV`` is accurate to
round-off. After each cycle the Ritz pairs ``(θ_i, V s_i)`` of ``T`` are examined:

* the residual norm of a Ritz pair is ``‖A y_i − θ_i y_i‖ = |β_m · s_{m,i}|``
  (``β_m`` is the norm of the last Lanczos residual), so it costs no matvec;
* a wanted pair is *converged* when that residual is ``≤ tol · ‖A‖_est``, where
  ``‖A‖_est`` is the largest ``|θ|`` or ``‖Av‖`` seen so far. Judging convergence
  relative to ``‖A‖`` rather than to ``|θ_i|`` (ARPACK's criterion) is what lets zero
  and tightly clustered eigenvalues — most of a network Hessian — converge;
* converged wanted pairs are *locked*: moved out of the basis into ``X``; every new
  Lanczos vector is orthogonalised against ``X`` (deflation);
* the basis is then thick-restarted from the unconverged wanted Ritz vectors plus
  some extra ones and the last residual direction. ``T`` becomes diagonal plus an
  arrow row, which the projection-based construction of ``T`` handles naturally;
* invariant-subspace breakdown (``β ≈ 0``) continues with a random vector
  orthogonal to the basis and to ``X``;
* a single Krylov sequence sees only one copy of an exactly repeated eigenvalue.
  Once ``k`` pairs are locked, the method therefore restarts from a *fresh random
  vector* orthogonal to everything locked and runs ``multiplicity_check`` steps. If
  a Ritz value of that fresh space beats the ``k``-th locked value (by more than
  ``tol·‖A‖``) — a Ritz value is a lower bound on the deflated operator's top
  eigenvalue, so this only happens when an eigenvalue was missed — iteration goes on
  until it is locked, and the check is repeated. This recovers exact multiplicities.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import eigh as _eigh
from scipy.linalg import eigvalsh as _eigvalsh

from ._operator import CountingOperator

__all__ = ["thick_restart_lanczos", "sides_for"]

_BREAKDOWN = 1e-12


def sides_for(which: str, k: int) -> list[tuple[int, int]]:
    """Decompose ``which`` into ``(sign, count)`` sides.

    A side with ``sign = +1`` wants the largest θ, ``-1`` the smallest, ``0`` the
    largest ``|θ|``.
    """
    if which == "largest":
        return [(1, k)]
    if which == "smallest":
        return [(-1, k)]
    if which == "magnitude":
        return [(0, k)]
    if which == "both":
        return [s for s in ((1, (k + 1) // 2), (-1, k // 2)) if s[1] > 0]
    raise ValueError(f"unknown which={which!r}")


def _score(theta, sign):
    theta = np.asarray(theta, dtype=float)
    return np.abs(theta) if sign == 0 else sign * theta


def _orth(w, blocks):
    """Project ``w`` (vector) off the columns of each block, twice."""
    for _ in range(2):
        for B in blocks:
            if B.shape[1]:
                w = w - B @ (B.T @ w)
    return w


def _random_unit(rng, p, blocks):
    for _ in range(10):
        r = _orth(rng.standard_normal(p), blocks)
        n = np.linalg.norm(r)
        if n > 1e-8 * np.sqrt(p):
            r = _orth(r / n, blocks)
            return r / np.linalg.norm(r)
    raise RuntimeError("could not draw a random vector orthogonal to the current basis "
                       "(the basis spans the whole space)")


def thick_restart_lanczos(op: CountingOperator, k: int, which: str, tol: float, rng,
                          ncv: int | None = None, max_matvecs: int | None = None,
                          multiplicity_check: int = 10, record_history: bool = False):
    """Core routine behind ``eigenvalues(..., method="lanczos")``.

    Returns ``(values, vectors, residuals, norm_estimate, history, finished)`` with the
    values ordered by "wantedness" per side (see :func:`pyodejl.spectral.eigenvalues`
    for the final ordering).
    """
    p = op.dim
    sides = sides_for(which, k)
    if ncv is None:
        ncv = max(2 * k + 20, 40)
    ncv = int(min(ncv, p))
    if ncv < min(k + 1, p):
        raise ValueError(f"ncv={ncv} must be larger than k={k}")
    if max_matvecs is None:
        max_matvecs = max(2000, 100 * k)
    start = op.matvecs

    m = ncv
    V = np.zeros((p, m + 1))
    T = np.zeros((m, m))
    betas = np.zeros(m)
    X = np.zeros((p, 0))
    locked_vals: list[float] = []
    locked_res: list[float] = []
    locked_side: list[int] = []
    anorm = 0.0
    history: list[tuple[int, np.ndarray]] = []

    def m_eff():
        return max(1, min(m, p - X.shape[1]))

    def side_boundary(si):
        sign, ks = sides[si]
        sc = sorted((_score(v, sign) for v, s in zip(locked_vals, locked_side) if s == si),
                    reverse=True)
        return sc[ks - 1] if len(sc) >= ks else None

    def windows(theta, exclude=()):
        """Indices (per side) of Ritz values that are wanted now."""
        taken = set(exclude)
        out = []
        for si, (sign, ks) in enumerate(sides):
            sc = _score(theta, sign)
            order = [i for i in np.argsort(-sc, kind="stable") if i not in taken]
            nl = sum(1 for s in locked_side if s == si)
            if nl < ks:
                win = order[: ks - nl]
            else:
                b = side_boundary(si)
                win = [i for i in order if sc[i] > b + tol * anorm]
            taken.update(win)
            out.append(win)
        return out

    def current_estimates(theta):
        vals = []
        for si, (sign, ks) in enumerate(sides):
            cand = [v for v, s in zip(locked_vals, locked_side) if s == si]
            cand = np.concatenate([np.asarray(cand, float), np.asarray(theta, float)])
            sc = _score(cand, sign)
            vals.append(cand[np.argsort(-sc, kind="stable")[:ks]])
        return np.concatenate(vals) if vals else np.zeros(0)

    # state: j processed columns, V[:, :j+1] basis (V[:, j] = continuation vector)
    V[:, 0] = _random_unit(rng, p, [])
    j = 0
    target = m_eff()
    phase = "main"
    finished = False
    theta = np.zeros(0)
    S = np.zeros((0, 0))
    while True:
        budget_hit = False
        while j < target:
            if op.matvecs - start >= max_matvecs:
                budget_hit = True
                break
            v = V[:, j]
            w = op.matvec(v)
            anorm = max(anorm, float(np.linalg.norm(w)))
            Vj = V[:, : j + 1]
            h = Vj.T @ w
            w = w - Vj @ h
            if X.shape[1]:
                w = w - X @ (X.T @ w)
            h2 = Vj.T @ w
            w = w - Vj @ h2
            if X.shape[1]:
                w = w - X @ (X.T @ w)
            h = h + h2
            T[: j + 1, j] = h
            T[j, : j + 1] = h
            beta = float(np.linalg.norm(w))
            betas[j] = beta
            if X.shape[1] + j + 1 < p:
                if beta > _BREAKDOWN * max(anorm, np.finfo(float).tiny):
                    V[:, j + 1] = w / beta
                else:  # invariant subspace: continue with a fresh orthogonal direction
                    V[:, j + 1] = _random_unit(rng, p, [V[:, : j + 1], X])
            else:
                V[:, j + 1] = 0.0
            j += 1
            if record_history:
                history.append((op.matvecs - start,
                                current_estimates(_eigvalsh(T[:j, :j]))))
            if phase == "main" and j < target:
                # stop the cycle early once every wanted Ritz pair has converged
                th, Sj = _eigh(T[:j, :j])
                rj = np.abs(betas[j - 1] * Sj[j - 1, :])
                an = max(anorm, float(np.max(np.abs(th))))
                wins = windows(th)
                if all(len(wn) > 0 for wn in wins) and \
                        all(rj[i] <= tol * an for wn in wins for i in wn) and \
                        sum(len(wn) for wn in wins) >= sum(
                            max(ks - sum(1 for s in locked_side if s == si), 1)
                            for si, (_, ks) in enumerate(sides)):
                    break
        if j == 0:
            break
        theta, S = _eigh(T[:j, :j])
        res = np.abs(betas[j - 1] * S[j - 1, :])
        anorm = max(anorm, float(np.max(np.abs(theta))))
        if budget_hit:
            break

        # lock converged wanted pairs
        lock = []
        for si, win in enumerate(windows(theta)):
            for i in win:
                if res[i] <= tol * anorm:
                    lock.append((i, si))
        if lock:
            idx = [i for i, _ in lock]
            Y = V[:, :j] @ S[:, idx]
            X = np.hstack([X, Y])
            for i, si in lock:
                locked_vals.append(float(theta[i]))
                locked_res.append(float(res[i]))
                locked_side.append(si)
        locked_idx = [i for i, _ in lock]
        wins = windows(theta, exclude=locked_idx)
        remaining = [i for win in wins for i in win]
        all_sides_full = all(sum(1 for s in locked_side if s == si) >= ks
                             for si, (_, ks) in enumerate(sides))

        if all_sides_full and not remaining:
            if (phase == "check" and not lock) or multiplicity_check <= 0 or X.shape[1] >= p:
                finished = True
                break
            phase = "check"
            V[:, 0] = _random_unit(rng, p, [X])
            T[:] = 0.0
            j = 0
            target = min(multiplicity_check, m_eff())
            continue

        phase = "main"
        me = m_eff()
        if lock or j >= me:
            # thick restart: wanted Ritz vectors + extras, then the residual direction
            nwin = len(remaining)
            nkeep = min(nwin + max((me - nwin) // 2, 0), me - 1, j - len(lock))
            keep = list(remaining)
            if len(keep) < nkeep:
                # extras: alternate between sides by their score ordering
                orders = [[i for i in np.argsort(-_score(theta, sign), kind="stable")
                           if i not in locked_idx] for sign, _ in sides]
                pos = [0] * len(orders)
                chosen = set(keep)
                while len(keep) < nkeep:
                    progressed = False
                    for oi, order in enumerate(orders):
                        while pos[oi] < len(order) and order[pos[oi]] in chosen:
                            pos[oi] += 1
                        if pos[oi] < len(order) and len(keep) < nkeep:
                            keep.append(order[pos[oi]])
                            chosen.add(order[pos[oi]])
                            progressed = True
                    if not progressed:
                        break
            keep = keep[:nkeep]
            cont = V[:, j].copy()
            Yk = V[:, :j] @ S[:, keep]
            nk = len(keep)
            V[:, :nk] = Yk
            T[:] = 0.0
            T[np.arange(nk), np.arange(nk)] = theta[keep]
            if np.linalg.norm(cont) < 0.5:  # no residual direction available
                cont = _random_unit(rng, p, [V[:, :nk], X])
            else:
                cont = _orth(cont, [V[:, :nk], X])
                cont /= np.linalg.norm(cont)
            V[:, nk] = cont
            j = nk
        target = m_eff()

    # assemble the answer
    vals_out, vecs_out, res_out = [], [], []
    for si, (sign, ks) in enumerate(sides):
        li = [i for i, s in enumerate(locked_side) if s == si]
        lv = np.asarray([locked_vals[i] for i in li], float)
        lvec = X[:, li] if li else np.zeros((p, 0))
        lres = np.asarray([locked_res[i] for i in li], float)
        if len(li) < ks and j > 0:
            # budget exhausted: fill with the best unconverged Ritz pairs
            extra = list(np.argsort(-_score(theta, sign), kind="stable")[: ks - len(li)])
            lv = np.concatenate([lv, theta[extra]])
            lvec = np.hstack([lvec, V[:, :j] @ S[:, extra]])
            lres = np.concatenate([lres, np.abs(betas[j - 1] * S[j - 1, extra])])
        order = np.argsort(-_score(lv, sign), kind="stable")[:ks]
        vals_out.append(lv[order])
        vecs_out.append(lvec[:, order])
        res_out.append(lres[order])
    values = np.concatenate(vals_out)
    vectors = np.hstack(vecs_out)
    residuals = np.concatenate(res_out)
    if not finished:
        warnings.warn(f"Lanczos stopped at the matvec budget ({max_matvecs}) before all "
                      f"{k} eigenpairs converged to tol={tol:g}; see `.converged`",
                      RuntimeWarning, stacklevel=3)
    return values, vectors, residuals, anorm, history, finished
