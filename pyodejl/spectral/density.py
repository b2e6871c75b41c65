"""Spectral density: stochastic Lanczos quadrature (SLQ), deflated SLQ and the kernel
polynomial method (KPM).

* ``method="slq"`` (default) — Ghorbani, Krishnan & Xiao, "An Investigation into Neural
  Network Optimization via Hessian Eigenvalue Density", ICML 2019 (the method behind
  PyHessian's ``density``; seed 003 Fig. 2 shows the cumulative version). For a unit
  probe ``v`` and ``m`` Lanczos steps with tridiagonal ``T = U diag(θ) Uᵀ``, the Gauss
  quadrature

      vᵀ f(A) v ≈ Σ_j (U_{1j})² f(θ_j)

  is exact for polynomials of degree ``2m − 1``. Averaging over probes gives the
  spectral measure ``(1/p) Σ_i δ(λ − λ_i)`` as nodes ``θ`` and weights ``(U_{1j})²/n``
  (summing to 1). All probes run in lock-step so each Lanczos step is one block
  ``op.matmat`` of ``num_probes`` columns.
* ``method="deflated_slq"`` — the ``k`` extreme eigenpairs ``(λ_i, v_i)`` are computed
  first by our thick-restart Lanczos (:func:`pyodejl.spectral.eigenvalues`) and put into
  the measure exactly, with weight ``1/p`` each; SLQ then runs on the deflated operator
  ``(I − VVᵀ) A (I − VVᵀ)`` restricted to ``range(V)^⊥`` (probes projected onto it and
  normalised), and its measure gets the weight ``(p − k)/p``. Outliers then cost no
  stochastic error, and the Lanczos steps are spent on the bulk (the deflation idea of
  Lin, Saad & Yang, "Approximating spectral densities of large matrices", SIAM Review
  58(1), 2016, Sec. 5, applied to SLQ).
* ``method="kpm"`` — the kernel polynomial method (Weiße, Wellein, Alvermann & Fehske,
  "The kernel polynomial method", Rev. Mod. Phys. 78, 2006): map the spectrum into
  ``[−1, 1]`` by ``Ã = (A − c)/h``, estimate the Chebyshev moments
  ``μ_n = mean over unit probes of zᵀ T_n(Ã) z`` (with ``m`` products per probe the
  doubling ``μ_{2k} = 2‖t_k‖² − μ_0``, ``μ_{2k+1} = 2 t_{k+1}ᵀt_k − μ_1`` gives
  ``μ_0 … μ_{2m}``; their Eq. 83), damp them with the Jackson kernel ``g_n`` (their
  Eq. 71) and expand ``ρ(x) = [g_0μ_0 + 2Σ g_nμ_n T_n(x)] / (π√(1 − x²))``. KPM needs an
  interval containing the spectrum: by default it comes from ``bound_steps`` Lanczos
  steps on one random probe, ``[θ_min − β, θ_max + β]`` (Ritz extremes widened by the
  last Lanczos residual norm ``β``, the bound of Zhou & Li, Linear Algebra Appl. 435(3),
  2011, used by Lin, Saad & Yang 2016), padded by 1 % of its width; those products are
  counted. To return the same ``DensityResult`` as SLQ, the KPM density is represented
  *exactly* by Gauss–Chebyshev quadrature: ``K`` nodes ``x_j = cos(π(j + ½)/K)`` with
  weights ``w_j = (1/K)[g_0μ_0 + 2Σ g_nμ_n T_n(x_j)]`` reproduce the damped moments
  ``Σ_j w_j T_n(x_j) = g_nμ_n`` for every ``n < 2K − 2m`` (discrete orthogonality). The
  weights are non-negative because the Jackson kernel is positive and the probe-averaged
  moments are those of a positive measure (tiny round-off negatives are clipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import eigh as _eigh
from scipy.linalg import eigvalsh as _eigvalsh
from scipy.special import ndtr

from ._operator import as_operator, check_rng_seed
from .eigen import eigenvalues

__all__ = ["DensityResult", "density", "DENSITY_METHODS", "jackson_damping"]

DENSITY_METHODS = ("slq", "deflated_slq", "kpm")


@dataclass
class DensityResult:
    """Quadrature nodes and weights of the spectral density.

    Attributes
    ----------
    nodes : ndarray (n,)
        Ritz values of all probes, concatenated (``n <= num_steps · num_probes``).
    weights : ndarray (n,)
        Non-negative, summing to 1; ``p · weights`` estimates eigenvalue counts.
    matvecs : int
        Exact number of operator applications (for ``"deflated_slq"`` including the
        eigenpair computation, for ``"kpm"`` including the bound estimate).
    num_probes : int
    dim : int
        ``p``.
    method : str
        ``"slq"``, ``"deflated_slq"`` or ``"kpm"``.
    deflated_eigenvalues : ndarray (k,)
        ``"deflated_slq"``: the eigenvalues put into the measure exactly (the first ``k``
        nodes, each with weight ``1/p``); empty otherwise.
    bounds : tuple (a, b) or None
        ``"kpm"``: the interval mapped onto ``[−1, 1]``.
    moments : ndarray (2·num_steps + 1,) or None
        ``"kpm"``: the estimated (undamped) Chebyshev moments ``μ_n``.
    """

    nodes: np.ndarray
    weights: np.ndarray
    matvecs: int
    num_probes: int
    dim: int
    method: str = "slq"
    deflated_eigenvalues: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    bounds: tuple | None = None
    moments: np.ndarray | None = field(default=None, repr=False)

    def default_sigma(self) -> float:
        span = float(np.ptp(self.nodes)) if self.nodes.size else 1.0
        return 0.01 * span if span > 0 else 1e-3

    def grid(self, num: int = 1000, pad: float = 0.05) -> np.ndarray:
        """An evenly spaced grid over ``[min node, max node]`` widened by ``pad``·range."""
        lo, hi = float(np.min(self.nodes)), float(np.max(self.nodes))
        w = hi - lo if hi > lo else 1.0
        return np.linspace(lo - pad * w, hi + pad * w, num)

    def evaluate(self, x, sigma: float | None = None) -> np.ndarray:
        """Gaussian-broadened density ``Σ_j w_j N(x; θ_j, σ²)`` at ``x`` (integrates to 1).

        ``sigma`` defaults to 1 % of the node range.
        """
        x = np.asarray(x, dtype=float)
        s = self.default_sigma() if sigma is None else float(sigma)
        if s <= 0:
            raise ValueError("sigma must be > 0")
        z = (x[..., None] - self.nodes) / s
        return np.exp(-0.5 * z * z) @ self.weights / (s * np.sqrt(2 * np.pi))

    def cdf(self, x, sigma: float | None = 0.0) -> np.ndarray:
        """Estimated fraction of eigenvalues ``<= x``.

        ``sigma = 0`` (default) gives the quadrature's step function; ``sigma > 0`` the
        CDF of the Gaussian-broadened density; ``None`` the default broadening.
        """
        x = np.asarray(x, dtype=float)
        if sigma is None:
            sigma = self.default_sigma()
        if sigma == 0:
            return (x[..., None] >= self.nodes).astype(float) @ self.weights
        return ndtr((x[..., None] - self.nodes) / sigma) @ self.weights


def _unit_probes(rng, p, n, distribution):
    if distribution == "rademacher":
        Z = rng.choice(np.array([-1.0, 1.0]), size=(p, n))
    else:
        Z = rng.standard_normal((p, n))
    return Z / np.linalg.norm(Z, axis=0)


def _block_lanczos(apply, Z, m):
    """``m`` Lanczos steps for each column of ``Z`` (unit), all probes in lock-step.

    ``apply`` maps a ``(p, a)`` block to its image (one counted ``matmat``). Returns
    ``alpha (m, n)``, ``beta (m, n)``, ``steps (n,)`` and ``last (n,)``, the norm of the
    Lanczos residual after each probe's last step. A probe whose Krylov space becomes
    invariant stops early.
    """
    p, n = Z.shape
    V = np.zeros((m, p, n))  # V[j, :, i]: j-th Lanczos vector of probe i
    alpha = np.zeros((m, n))
    beta = np.zeros((m, n))
    last = np.zeros(n)
    V[0] = Z
    active = np.ones(n, bool)
    steps = np.zeros(n, int)
    anorm = 0.0
    for j in range(m):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        W = apply(V[j][:, idx])
        anorm = max(anorm, float(np.max(np.linalg.norm(W, axis=0))))
        Vb = V[: j + 1][:, :, idx]  # (j+1, p, a)
        for _ in range(2):  # full reorthogonalisation, twice
            c = np.einsum("jpa,pa->ja", Vb, W)
            W = W - np.einsum("jpa,ja->pa", Vb, c)
            if _ == 0:
                alpha[j, idx] = c[j]
            else:
                alpha[j, idx] += c[j]
        steps[idx] = j + 1
        b = np.linalg.norm(W, axis=0)
        last[idx] = b
        if j + 1 < m:
            ok = b > 1e-12 * max(anorm, np.finfo(float).tiny)
            beta[j, idx[ok]] = b[ok]
            V[j + 1][:, idx[ok]] = W[:, ok] / b[ok]
            active[idx[~ok]] = False
    return alpha, beta, steps, last


def _gauss_quadrature(alpha, beta, steps):
    """Nodes and weights (summing to 1 over all probes) of the probes' Gauss rules."""
    n = len(steps)
    nodes, weights = [], []
    for i in range(n):
        s = steps[i]
        T = np.diag(alpha[:s, i]) + np.diag(beta[: s - 1, i], 1) + np.diag(beta[: s - 1, i], -1)
        th, U = _eigh(T)
        nodes.append(th)
        weights.append(U[0, :] ** 2 / n)
    return np.concatenate(nodes), np.concatenate(weights)


def jackson_damping(num_moments: int) -> np.ndarray:
    """Jackson kernel coefficients ``g_n``, ``n = 0 … N − 1`` (Weiße et al. 2006, Eq. 71):
    ``g_n = [(N − n + 1) cos(πn/(N + 1)) + sin(πn/(N + 1)) cot(π/(N + 1))] / (N + 1)``."""
    N = int(num_moments)
    n = np.arange(N)
    q = np.pi / (N + 1)
    return ((N - n + 1) * np.cos(q * n) + np.sin(q * n) / np.tan(q)) / (N + 1)


def _lanczos_bounds(A, rng, steps, distribution):
    """Spectral interval from a few Lanczos steps: ``[θ_min − β, θ_max + β]`` padded."""
    z = _unit_probes(rng, A.dim, 1, distribution)
    alpha, beta, st, last = _block_lanczos(A.matmat, z, steps)
    s = st[0]
    T = np.diag(alpha[:s, 0]) + np.diag(beta[: s - 1, 0], 1) + np.diag(beta[: s - 1, 0], -1)
    th = _eigvalsh(T)
    lo, hi = float(th[0] - last[0]), float(th[-1] + last[0])
    pad = max(0.01 * (hi - lo), 1e-3 * max(abs(lo), abs(hi)), 1e-12)
    return lo - pad, hi + pad


def _check_positive_int(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def density(op, num_steps: int = 50, num_probes: int = 10, seed=None, *,
            method: str = "slq", distribution: str = "rademacher",
            num_deflate: int = 10, deflate_which: str = "largest",
            deflate_tol: float = 1e-8, bounds=None, bound_steps: int = 20,
            num_nodes: int | None = None,
            check_symmetric: bool | None = None) -> DensityResult:
    """Spectral density of a symmetric operator: SLQ, deflated SLQ or KPM.

    Parameters
    ----------
    op : ndarray (p, p), sparse matrix or LinearOperator (p, p)
    num_steps : int, default 50
        Products per probe. SLQ: Lanczos steps (``<= p``; ``<= p − num_deflate`` for
        deflated SLQ); a probe whose Krylov space becomes invariant stops early (its
        quadrature is then exact). KPM: Chebyshev steps, giving the moments
        ``μ_0 … μ_{2·num_steps}`` (the same polynomial degree SLQ integrates exactly).
    num_probes : int, default 10
        Independent random probes, normalised to unit length.
    seed : int, Generator or None
    method : {"slq", "deflated_slq", "kpm"}, default "slq"
        See the module docstring (Ghorbani et al. 2019; Lin, Saad & Yang 2016; Weiße et
        al. 2006).
    distribution : {"rademacher", "gaussian"}
        Probe distribution (before normalising; for deflated SLQ before projecting).
    num_deflate : int, default 10
        ``"deflated_slq"``: number ``k`` of eigenpairs deflated exactly (``1 <= k < p``).
    deflate_which : {"largest", "smallest", "both", "magnitude"}, default "largest"
        ``"deflated_slq"``: which eigenpairs (see :func:`pyodejl.spectral.eigenvalues`).
    deflate_tol : float, default 1e-8
        ``"deflated_slq"``: Lanczos residual tolerance ``‖Av − λv‖ <= tol·‖A‖``.
    bounds : (a, b), optional
        ``"kpm"``: an interval containing the spectrum. Default: estimated from
        ``bound_steps`` Lanczos steps (counted in ``matvecs``).
    bound_steps : int, default 20
        ``"kpm"``: Lanczos steps of the bound estimate.
    num_nodes : int, optional
        ``"kpm"``: Gauss–Chebyshev nodes representing the density (default
        ``max(4·num_steps + 2, 500)``; at least ``2·num_steps + 1``).
    check_symmetric : bool or None

    Returns
    -------
    DensityResult
        ``.nodes`` and ``.weights`` (sum 1); ``.matvecs``: at most
        ``num_steps · num_probes`` for SLQ, plus the eigenpairs' products for deflated
        SLQ, exactly ``num_steps · num_probes`` (+ ``bound_steps`` without ``bounds``)
        for KPM.

    Raises
    ------
    ValueError
        Unknown ``method``/``distribution``, sizes out of range, or (KPM) a spectrum
        that is evidently not inside ``bounds`` (the Chebyshev vectors grow).
    """
    if method not in DENSITY_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, DENSITY_METHODS))}; "
                         f"got {method!r}")
    if distribution not in ("rademacher", "gaussian"):
        raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}")
    rng = check_rng_seed(seed)
    A = as_operator(op, check_symmetric=check_symmetric, seed=rng)
    p = A.dim
    for name, v in (("num_steps", num_steps), ("num_probes", num_probes)):
        _check_positive_int(name, v)
    m, n = int(num_steps), int(num_probes)
    if method == "slq":
        if num_steps > p:
            raise ValueError(f"num_steps must be <= p = {p}, got {num_steps}")
        Z = _unit_probes(rng, p, n, distribution)
        alpha, beta, steps, _ = _block_lanczos(A.matmat, Z, m)
        nodes, weights = _gauss_quadrature(alpha, beta, steps)
        return DensityResult(nodes=nodes, weights=weights, matvecs=int(A.matvecs),
                             num_probes=n, dim=p)
    if method == "deflated_slq":
        return _deflated_slq(A, m, n, rng, distribution, num_deflate, deflate_which,
                             deflate_tol)
    return _kpm(A, m, n, rng, distribution, bounds, bound_steps, num_nodes)


def _deflated_slq(A, m, n, rng, distribution, k, which, tol):
    p = A.dim
    _check_positive_int("num_deflate", k)
    if k >= p:
        raise ValueError(f"num_deflate must satisfy 1 <= num_deflate < p = {p}, got {k}")
    if m > p - k:
        raise ValueError(f"num_steps must be <= p - num_deflate = {p - k}, got {m}")
    # a missed copy of a repeated eigenvalue stays in the deflated operator, where SLQ
    # sees it, so Lanczos' multiplicity check would be wasted products here
    top = eigenvalues(A, k=k, which=which, tol=tol, seed=rng, multiplicity_check=0,
                      check_symmetric=False)
    V = top.eigenvectors

    def project(X):
        for _ in range(2):
            X = X - V @ (V.T @ X)
        return X

    Z = project(_unit_probes(rng, p, n, distribution))
    Z /= np.linalg.norm(Z, axis=0)
    alpha, beta, steps, _ = _block_lanczos(lambda X: project(A.matmat(project(X))), Z, m)
    nodes, weights = _gauss_quadrature(alpha, beta, steps)
    lam = np.asarray(top.eigenvalues, float)
    return DensityResult(nodes=np.concatenate([lam, nodes]),
                         weights=np.concatenate([np.full(k, 1.0 / p), weights * (p - k) / p]),
                         matvecs=int(A.matvecs + top.matvecs), num_probes=n, dim=p,
                         method="deflated_slq", deflated_eigenvalues=lam)


def _kpm(A, m, n, rng, distribution, bounds, bound_steps, num_nodes):
    p = A.dim
    if bounds is None:
        _check_positive_int("bound_steps", bound_steps)
        lo, hi = _lanczos_bounds(A, rng, min(int(bound_steps), p), distribution)
    else:
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bounds must be a pair (a, b) of numbers, got {bounds!r}") from exc
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"bounds must be finite with a < b, got {bounds!r}")
    c, h = 0.5 * (hi + lo), 0.5 * (hi - lo)
    N = 2 * m + 1
    K = max(4 * m + 2, 500) if num_nodes is None else int(num_nodes)
    if K < N:
        raise ValueError(f"num_nodes must be >= 2·num_steps + 1 = {N}, got {num_nodes}")

    def apply(X):
        return (A.matmat(X) - c * X) / h

    Z = _unit_probes(rng, p, n, distribution)
    mu = np.zeros((N, n))
    mu[0] = 1.0
    t_prev, t = Z, apply(Z)
    mu[1] = np.einsum("ij,ij->j", Z, t)
    growth = 1.0
    for k in range(1, m + 1):
        # t = T_k(Ã)z: μ_2k = 2‖t_k‖² − μ_0, μ_{2k−1} = 2 t_kᵀt_{k−1} − μ_1
        nk2 = np.einsum("ij,ij->j", t, t)
        growth = max(growth, float(np.max(nk2)))
        mu[2 * k] = 2 * nk2 - mu[0]
        if k >= 2:
            mu[2 * k - 1] = 2 * np.einsum("ij,ij->j", t, t_prev) - mu[1]
        if k < m:
            t_prev, t = t, 2 * apply(t) - t_prev
    # ‖T_k(Ã)z‖ <= 1 for a unit z when the spectrum lies in [a, b]
    if growth > 1 + 1e-6:
        raise ValueError(
            f"the spectrum is not inside the KPM interval [{lo:.6g}, {hi:.6g}]: "
            f"‖T_k(Ã)z‖² reached {growth:.3g} > 1; pass wider bounds=(a, b)"
            + (" or more bound_steps" if bounds is None else ""))
    mu_mean = mu.mean(axis=1)
    g = jackson_damping(N)
    x = np.cos(np.pi * (np.arange(K) + 0.5) / K)
    Tx = np.cos(np.outer(np.arccos(x), np.arange(N)))  # T_n(x_j)
    coef = 2 * g * mu_mean
    coef[0] = g[0] * mu_mean[0]
    w = Tx @ coef / K
    w = np.maximum(w, 0.0)  # non-negative in exact arithmetic (positive kernel)
    w /= w.sum()
    order = np.argsort(x)
    return DensityResult(nodes=c + h * x[order], weights=w[order], matvecs=int(A.matvecs),
                         num_probes=n, dim=p, method="kpm", bounds=(lo, hi),
                         moments=mu_mean)
