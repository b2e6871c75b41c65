r"""Discretise-then-optimise vs optimise-then-discretise: a linear ResNet with tied weights.

Seed 001 (Hudson et al., Sandia 2022, slide "Linear layers with identical weights") notes
that a ResNet and the explicit-Euler discretisation of its Neural ODE have the same
forward pass but different gradients, and gives scalar formulas. This module has the
closed forms for a matrix ``W`` (NumPy/SciPy, float64).

**Setting.** ``x' = W x`` on ``[0, T]``, ``x(0) = x₀``, loss ``L = ‖x(T) − y‖²``. The
ResNet with ``N`` identical linear layers is explicit Euler with ``h = T/N``:

    xₙ = A xₙ₋₁,  A = I + hW,  so  x_N = A^N x₀,  and  L_N = ‖x_N − y‖²,  g = 2(x_N − y).

**Discretise, then optimise** (the ResNet's own gradient, what backpropagation gives).
``dA = h dW`` and ``d(A^N) = Σ_{n=1}^{N} A^{N−n} dA A^{n−1}``, so
``dL_N = Σₙ h gᵀA^{N−n} dW A^{n−1}x₀``, i.e. with the discrete adjoint
``λₙ = (Aᵀ)^{N−n} g`` (``λ_N = g``, ``λₙ₋₁ = Aᵀλₙ``)

    G_DTO = h Σ_{n=1}^{N} λₙ xₙ₋₁ᵀ = h Σ_{n=1}^{N} (Aᵀ)^{N−n} g x₀ᵀ (Aᵀ)^{n−1}.

The sum is the upper-right block of ``M^N`` with ``M = [[Aᵀ, g x₀ᵀ], [0, Aᵀ]]``
(``[[P, B], [0, Q]]^N`` has upper-right block ``Σ_{k=0}^{N−1} P^k B Q^{N−1−k}``), which
:func:`discrete_gradient` evaluates by repeated squaring. For d = 1:
``G_DTO = T·2(x_N − y)(1 + hw)^{N−1}x₀`` — the seed's "ResNet" formula (its T = 1).

**Optimise, then discretise** (the continuous adjoint, then explicit Euler). The
continuous gradient is ``dL/dW = ∫₀ᵀ a(t) x(t)ᵀ dt`` with the adjoint ``a' = −Wᵀa``,
``a(T) = g``. Discretised with the same grid and explicit Euler backwards in time
(from ``tₙ`` to ``tₙ₋₁`` every quantity is taken at ``tₙ``, the start of the reverse
step), with the forward states ``xₙ`` stored:

    aₙ₋₁ = aₙ + hWᵀaₙ = Aᵀaₙ  ⇒  aₙ = (Aᵀ)^{N−n} g = λₙ,
    G_OTD = h Σ_{n=1}^{N} aₙ xₙᵀ = h Σₙ (Aᵀ)^{N−n} g x₀ᵀ (Aᵀ)^{n} = G_DTO Aᵀ.

The adjoints agree (``aₙ = λₙ``); the quadrature pairs ``aₙ`` with ``xₙ`` instead of
``xₙ₋₁``. For d = 1, ``G_OTD = T·2(x_N − y)(1 + hw)^N x₀`` — the seed's "Neural ODE"
formula. Hence

    G_OTD − G_DTO = h G_DTO Wᵀ,   ‖G_OTD − G_DTO‖ ≤ (T/N) ‖G_DTO‖ ‖W‖ = O(1/N),

so the gap vanishes like ``1/N``, while the forward passes are identical at every N.
(A *backsolve* adjoint, which recomputes ``x̃ₙ₋₁ = (I − hW)x̃ₙ`` backwards instead of
storing ``xₙ``, differs from both by another ``O(h)``.)

**The exact continuous gradient** (``N → ∞``; both of the above converge to it at
``O(1/N)``): ``x(t) = e^{tW}x₀``, ``a(t) = e^{(T−t)Wᵀ}g*``, ``g* = 2(x(T) − y)``,

    G = ∫₀ᵀ e^{(T−t)Wᵀ} g* x₀ᵀ e^{tWᵀ} dt = upper-right block of expm(T·[[Wᵀ, g*x₀ᵀ], [0, Wᵀ]])

(Van Loan, *Computing integrals involving the matrix exponential*, IEEE TAC 1978),
evaluated by :func:`continuous_gradient` with ``scipy.linalg.expm``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from pyodejl._validation import check_integer, check_number

__all__ = [
    "continuous_gradient",
    "discrete_gradient",
    "euler_adjoint_gradient",
    "ode_state",
    "resnet_state",
]


def _setup(W, x0, y=None, T=1.0, N=None):
    W = np.asarray(W, dtype=np.float64)
    scalar = W.ndim == 0
    W = np.atleast_2d(W)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be a square (d, d) matrix or a scalar, got shape {np.shape(W)}")
    d = W.shape[0]
    x0 = np.atleast_1d(np.asarray(x0, dtype=np.float64))
    if x0.shape != (d,):
        raise ValueError(f"x0 must have shape ({d},), got {x0.shape}")
    arrays = [("W", W), ("x0", x0)]
    if y is not None:
        y = np.atleast_1d(np.asarray(y, dtype=np.float64))
        if y.shape != (d,):
            raise ValueError(f"y must have shape ({d},), got {y.shape}")
        arrays.append(("y", y))
    for name, a in arrays:
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf")
    T = check_number(T, "T")
    if N is not None:
        N = check_integer(N, "N")
    return W, x0, y, T, scalar


def _out(G, scalar):
    return G[0, 0] if scalar else G


def resnet_state(W, x0, T, N):
    """``x_N = (I + (T/N)W)^N x₀``: the tied linear ResNet's output, ``(d,)``."""
    W, x0, _, T, _ = _setup(W, x0, T=T, N=N)
    A = np.eye(len(x0)) + (T / N) * W
    return np.linalg.matrix_power(A, int(N)) @ x0


def ode_state(W, x0, T):
    """``x(T) = e^{TW} x₀``: the Neural ODE's exact output, ``(d,)``."""
    W, x0, _, T, _ = _setup(W, x0, T=T)
    return scipy.linalg.expm(T * W) @ x0


def discrete_gradient(W, x0, y, T, N):
    """Discretise-then-optimise: ``d/dW ‖x_N − y‖²`` of the tied linear ResNet.

    ``G_DTO = h Σ_{n=1}^{N} (Aᵀ)^{N−n} g x₀ᵀ (Aᵀ)^{n−1}``, ``A = I + hW``, ``h = T/N``,
    ``g = 2(x_N − y)`` (module docstring).

    Args:
        W: ``(d, d)`` (or a scalar); x0, y: ``(d,)``; T > 0; N ≥ 1 layers.

    Returns:
        ``(d, d)`` (a scalar for scalar W).
    """
    W, x0, y, T, scalar = _setup(W, x0, y, T, N)
    d, h = len(x0), T / N
    A = np.eye(d) + h * W
    g = 2.0 * (np.linalg.matrix_power(A, int(N)) @ x0 - y)
    M = np.block([[A.T, np.outer(g, x0)], [np.zeros((d, d)), A.T]])
    return _out(h * np.linalg.matrix_power(M, int(N))[:d, d:], scalar)


def euler_adjoint_gradient(W, x0, y, T, N):
    """Optimise-then-discretise: the continuous adjoint gradient discretised by explicit Euler.

    ``G_OTD = h Σ_{n=1}^{N} aₙ xₙᵀ = G_DTO (I + hW)ᵀ`` with ``aₙ = (Aᵀ)^{N−n} g`` the
    Euler-discretised adjoint and ``xₙ`` the stored forward states (module docstring).

    Returns:
        ``(d, d)`` (a scalar for scalar W).
    """
    W2, x0, y, T, scalar = _setup(W, x0, y, T, N)
    A = np.eye(len(x0)) + (T / N) * W2
    G = np.atleast_2d(discrete_gradient(W2, x0, y, T, N)) @ A.T
    return _out(G, scalar)


def continuous_gradient(W, x0, y, T):
    """The exact gradient ``d/dW ‖e^{TW}x₀ − y‖²`` of the continuous model.

    ``∫₀ᵀ e^{(T−t)Wᵀ} g* x₀ᵀ e^{tWᵀ} dt``, ``g* = 2(e^{TW}x₀ − y)``, as the upper-right
    block of one block matrix exponential (Van Loan 1978), ``scipy.linalg.expm``.

    Returns:
        ``(d, d)`` (a scalar for scalar W).
    """
    W, x0, y, T, scalar = _setup(W, x0, y, T)
    d = len(x0)
    g = 2.0 * (scipy.linalg.expm(T * W) @ x0 - y)
    M = np.block([[W.T, np.outer(g, x0)], [np.zeros((d, d)), W.T]])
    return _out(scipy.linalg.expm(T * M)[:d, d:], scalar)
