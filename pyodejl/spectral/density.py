"""Spectral density by stochastic Lanczos quadrature (SLQ).

Ghorbani, Krishnan & Xiao, "An Investigation into Neural Network Optimization via
Hessian Eigenvalue Density", ICML 2019 (the method behind PyHessian's ``density``;
seed 003 Fig. 2 shows the cumulative version). For a unit probe ``v`` and ``m`` Lanczos
steps with tridiagonal ``T = U diag(θ) Uᵀ``, the Gauss quadrature

    vᵀ f(A) v ≈ Σ_j (U_{1j})² f(θ_j)

is exact for polynomials of degree ``2m − 1``. Averaging over probes gives the
spectral measure ``(1/p) Σ_i δ(λ − λ_i)`` as nodes ``θ`` and weights ``(U_{1j})²/n``
(summing to 1). All probes run in lock-step so each Lanczos step is one block
``op.matmat`` of ``num_probes`` columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh as _eigh
from scipy.special import ndtr

from ._operator import as_operator, check_rng_seed

__all__ = ["DensityResult", "density"]


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
    num_probes : int
    dim : int
        ``p``.
    """

    nodes: np.ndarray
    weights: np.ndarray
    matvecs: int
    num_probes: int
    dim: int

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


def density(op, num_steps: int = 50, num_probes: int = 10, seed=None, *,
            distribution: str = "rademacher",
            check_symmetric: bool | None = None) -> DensityResult:
    """Spectral density of a symmetric operator by stochastic Lanczos quadrature.

    Parameters
    ----------
    op : ndarray (p, p), sparse matrix or LinearOperator (p, p)
    num_steps : int, default 50
        Lanczos steps per probe (``<= p``); a probe whose Krylov space becomes
        invariant stops early (its quadrature is then exact).
    num_probes : int, default 10
        Independent random probes, normalised to unit length.
    seed : int, Generator or None
    distribution : {"rademacher", "gaussian"}
    check_symmetric : bool or None

    Returns
    -------
    DensityResult
        ``.nodes`` and ``.weights`` (sum 1); ``.matvecs`` at most
        ``num_steps · num_probes``.
    """
    if distribution not in ("rademacher", "gaussian"):
        raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}")
    rng = check_rng_seed(seed)
    A = as_operator(op, check_symmetric=check_symmetric, seed=rng)
    p = A.dim
    for name, v in (("num_steps", num_steps), ("num_probes", num_probes)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if num_steps > p:
        raise ValueError(f"num_steps must be <= p = {p}, got {num_steps}")
    m, n = int(num_steps), int(num_probes)
    if distribution == "rademacher":
        Z = rng.choice(np.array([-1.0, 1.0]), size=(p, n))
    else:
        Z = rng.standard_normal((p, n))
    Z /= np.linalg.norm(Z, axis=0)
    V = np.zeros((m, p, n))  # V[j, :, i]: j-th Lanczos vector of probe i
    alpha = np.zeros((m, n))
    beta = np.zeros((m, n))
    V[0] = Z
    active = np.ones(n, bool)
    steps = np.zeros(n, int)
    anorm = 0.0
    for j in range(m):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        W = A.matmat(V[j][:, idx])
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
        if j + 1 < m:
            ok = b > 1e-12 * max(anorm, np.finfo(float).tiny)
            beta[j, idx[ok]] = b[ok]
            V[j + 1][:, idx[ok]] = W[:, ok] / b[ok]
            active[idx[~ok]] = False
    nodes, weights = [], []
    for i in range(n):
        s = steps[i]
        T = np.diag(alpha[:s, i]) + np.diag(beta[: s - 1, i], 1) + np.diag(beta[: s - 1, i], -1)
        th, U = _eigh(T)
        nodes.append(th)
        weights.append(U[0, :] ** 2 / n)
    nodes = np.concatenate(nodes)
    weights = np.concatenate(weights)
    return DensityResult(nodes=nodes, weights=weights, matvecs=int(A.matvecs),
                         num_probes=n, dim=p)
