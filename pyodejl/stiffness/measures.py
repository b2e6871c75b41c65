"""Stiffness measures of a matrix J (a Jacobian ∂f/∂y): ratios and spectral-radius proxies.

Seed 001 (Hudson, Sargsyan, D'Elia & Najm, *Examining stiffness in ResNets through
interpretation as discretized Neural ODEs*, Sandia 2022) measures the stiffness of a
layer's Jacobian by

* the stiffness ratio ``r(J) = Re λ₁ / Re λ_d`` with ``Re λ₁ ≤ … ≤ Re λ_d < 0``
  (:func:`stiffness_ratio`),
* the magnitude ratio ``r̃(J) = |λ|max / |λ|min`` (:func:`magnitude_ratio`),

and, because general eigen-solvers are "not easily differentiable", by the proxies

* the singular-value ratio ``σ_max / σ_min`` (:func:`singular_value_ratio`), an upper
  bound of ``r̃`` (``σ_max ≥ |λ|max ≥ |λ|min ≥ σ_min``),
* the spectral radius ``ρ(J) = |λ|max`` (:func:`spectral_radius`) by dense eigenvalues,
  by the complex power method, or by Gelfand's formula ``ρ = lim ‖J^k‖^{1/k}`` with
  ``k = 2¹⁰`` reached by ten normalised squarings.

Every function is a pure JAX function of ``J`` of shape ``(..., d, d)`` (leading axes are
batch axes, handled natively) and is differentiable with ``jax.grad`` wherever the
quantity itself is (simple eigenvalues or singular values at the extremes). JAX
differentiates non-symmetric eigenvalues too (``dλ = (V⁻¹ dJ V)_ii``), so the
eigenvalue-based measures can be differentiated as well; the seed's caution applies to
repeated or defective eigenvalues, where the derivative does not exist.

**Cases the seed leaves open** (rules shared by the three ratios). A quantity (a real
part, an eigenvalue modulus, a singular value) *counts as zero* when it is at most
``rtol · ‖J‖_F``; the default ``rtol = 1000 · d · eps`` (4.4e-12 at ``d = 20``) lies
above the round-off LAPACK leaves in the zero eigenvalues of singular matrices (we
measured up to ``15 · d · eps · ‖J‖₂`` for random rank-deficient matrices) and below
any ratio float64 can resolve (about ``1 / (d · eps)``). Then

* a ratio whose denominator is zero and numerator is not is ``+inf`` (e.g. a singular J
  has ``magnitude_ratio = singular_value_ratio = inf``, as ``numpy.linalg.cond`` of a
  singular matrix);
* a ratio whose numerator and denominator are both zero is ``1.0`` (``J = 0``, or every
  eigenvalue on the imaginary axis: no spread of time scales);
* :func:`stiffness_ratio` otherwise follows the formula literally and keeps the sign:
  ``r ≥ 1`` exactly when every ``Re λ < 0`` (the seed's setting: the classical stiffness
  ratio); ``0 ≤ r ≤ 1`` when every ``Re λ ≥ 0`` (all modes grow or are neutral);
  ``r < 0`` when the real parts have both signs (decaying and growing modes together —
  the notion of stiffness does not apply, and a negative number says so).

Eigenvalues of defective or strongly non-normal matrices carry errors far above
``eps`` (``eps^{1/m}`` for a Jordan block of size ``m``); ratios inherit them.

Bad input: a ``J`` that is not ``(..., d, d)`` raises ``ValueError``; NaN or inf entries
raise ``ValueError`` for concrete arrays, and an Equinox runtime error (``eqx.error_if``)
under ``jax.jit``/``jax.grad``, never a silent NaN.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._validation import check_integer, check_number

__all__ = [
    "MEASURES",
    "SPECTRAL_RADIUS_METHODS",
    "PowerInfo",
    "magnitude_ratio",
    "singular_value_ratio",
    "spectral_radius",
    "stiffness_ratio",
]

#: Methods of :func:`spectral_radius`.
SPECTRAL_RADIUS_METHODS = ("eig", "power", "gelfand")
#: Default iteration counts: matrix-vector products (power), squarings (Gelfand, k = 2**10).
DEFAULT_POWER_ITERATIONS = 100
DEFAULT_GELFAND_SQUARINGS = 10


def check_matrix(J, name: str = "J"):
    """``J`` as a floating JAX array of shape ``(..., d, d)``; raises on bad shape or NaN/inf.

    Concrete arrays are checked at once (``ValueError``); traced ones (inside
    ``jit``/``grad``/``vmap``) get an ``eqx.error_if`` check that fires at run time.
    """
    if not isinstance(J, jax.core.Tracer):
        arr = np.asarray(J)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be a numeric array, got {type(J).__name__}")
        if not np.iscomplexobj(arr):
            arr = arr.astype(np.float64)
        _check_square(arr.shape, name)
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(
                f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)}); "
                "stiffness measures need finite matrices"
            )
        return jnp.asarray(arr)
    _check_square(J.shape, name)
    if not jnp.issubdtype(J.dtype, jnp.inexact):
        J = J.astype(jnp.float64)
    return eqx.error_if(J, ~jnp.all(jnp.isfinite(J)), f"{name} contains NaN or inf")


def _check_square(shape, name):
    if len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < 1:
        raise ValueError(f"{name} must be a square matrix (..., d, d) with d >= 1, got shape {tuple(shape)}")


def _rtol(J, rtol):
    if rtol is None:
        return 1000.0 * J.shape[-1] * float(jnp.finfo(J.dtype).eps)
    return check_number(rtol, "rtol", allow_zero=True)


def _fro(J):
    # Frobenius norm with a NaN-free derivative at J = 0.
    sq = jnp.sum(jnp.real(J * jnp.conj(J)), axis=(-2, -1))
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _ratio(num, den, zero_num, zero_den):
    """num / den with the module's rules: x/0 = +inf, 0/0 = 1; derivative 0 in those cases."""
    safe_den = jnp.where(zero_den, 1.0, den)
    special = jnp.where(zero_num, 1.0, jnp.inf)
    return jnp.where(zero_den, special, num / safe_den)


def _eigvals(J):
    return jnp.linalg.eigvals(J)


def _modulus(z):
    # |z| with derivative 0 (not NaN) at z = 0.
    sq = jnp.real(z) ** 2 + jnp.imag(z) ** 2
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def stiffness_ratio(J, *, rtol: float | None = None):
    """Seed 001's stiffness ratio ``r(J) = Re λ₁ / Re λ_d``, ``Re λ₁ ≤ … ≤ Re λ_d``.

    Args:
        J: ``(..., d, d)`` real (or complex) matrices.
        rtol: a real part counts as zero when ``|Re λ| ≤ rtol · ‖J‖_F``
            (default ``1000 · d · eps``).

    Returns:
        ``(...)`` float64. ``≥ 1`` when all ``Re λ < 0``; in ``[0, 1]`` when all
        ``Re λ ≥ 0``; negative for real parts of both signs; ``+inf`` when the largest
        real part is zero and the smallest negative; ``1.0`` when every real part is
        zero (see the module docstring).
    """
    return _unchecked_stiffness_ratio(check_matrix(J), rtol=rtol)


def _unchecked_stiffness_ratio(J, *, rtol=None):
    return _stiffness_ratio(J, _rtol(J, rtol))


@functools.partial(jax.jit, static_argnums=1)
def _stiffness_ratio(J, rtol):
    tol = rtol * _fro(J)
    re = jnp.real(_eigvals(J))
    re = jnp.where(jnp.abs(re) <= tol[..., None], 0.0, re)
    lo, hi = jnp.min(re, axis=-1), jnp.max(re, axis=-1)
    return _ratio(lo, hi, lo == 0, hi == 0)


def magnitude_ratio(J, *, rtol: float | None = None):
    """Seed 001's ``r̃(J) = |λ|max / |λ|min``.

    Args:
        J: ``(..., d, d)``.
        rtol: an eigenvalue counts as zero when ``|λ| ≤ rtol · ‖J‖_F`` (default
            ``1000 · d · eps``).

    Returns:
        ``(...)`` float64 ``≥ 1``; ``+inf`` for singular J, ``1.0`` when every
        eigenvalue is zero (``J = 0`` or nilpotent, up to round-off).
    """
    return _unchecked_magnitude_ratio(check_matrix(J), rtol=rtol)


def _unchecked_magnitude_ratio(J, *, rtol=None):
    return _magnitude_ratio(J, _rtol(J, rtol))


@functools.partial(jax.jit, static_argnums=1)
def _magnitude_ratio(J, rtol):
    tol = rtol * _fro(J)
    m = _modulus(_eigvals(J))
    lo, hi = jnp.min(m, axis=-1), jnp.max(m, axis=-1)
    return _ratio(hi, lo, hi <= tol, lo <= tol)


def singular_value_ratio(J, *, rtol: float | None = None):
    """The differentiable proxy ``σ_max(J) / σ_min(J)`` (the 2-norm condition number).

    Seed 001: singular values come from a symmetric eigenproblem, whose derivative is
    well defined (``dσ_i = u_iᵀ dJ v_i`` for simple ``σ_i``), and bound the eigenvalue
    moduli: ``σ_max ≥ |λ|max ≥ |λ|min ≥ σ_min``, so this is an upper bound of
    :func:`magnitude_ratio` (equal for normal matrices).

    Args:
        J: ``(..., d, d)``.
        rtol: a singular value counts as zero when ``σ ≤ rtol · ‖J‖_F`` (default
            ``1000 · d · eps``).

    Returns:
        ``(...)`` float64 ``≥ 1``; ``+inf`` for singular J, ``1.0`` for ``J = 0``.
    """
    return _unchecked_singular_value_ratio(check_matrix(J), rtol=rtol)


def _unchecked_singular_value_ratio(J, *, rtol=None):
    return _singular_value_ratio(J, _rtol(J, rtol))


@functools.partial(jax.jit, static_argnums=1)
def _singular_value_ratio(J, rtol):
    tol = rtol * _fro(J)
    s = jnp.linalg.svd(J, compute_uv=False)
    hi, lo = s[..., 0], s[..., -1]
    return _ratio(hi, lo, hi <= tol, lo <= tol)


class PowerInfo(NamedTuple):
    """Convergence report of the power method (see :func:`spectral_radius`).

    Attributes:
        change: ``(...)`` relative change of the estimate over the last iteration,
            ``|ρ_K − ρ_{K−1}| / ρ_K`` (0 when ``ρ_K = 0``).
        converged: ``(...)`` bool, ``change <= tol``. A small change is necessary,
            not sufficient: with ``|λ₂/λ₁|`` close to 1 the error can be
            ``change / (1 − |λ₂/λ₁|)``.
        iterations: the number of matrix-vector products K.
    """

    change: jax.Array
    converged: jax.Array
    iterations: int


def spectral_radius(
    J,
    method: str = "eig",
    iterations: int | None = None,
    seed: int = 0,
    *,
    tol: float = 1e-8,
    return_info: bool = False,
):
    """Spectral radius ``ρ(J) = max |λ|`` by one of seed 001's three routes.

    Methods:

    * ``"eig"``: ``max |λ|`` of ``jnp.linalg.eigvals`` (exact to round-off;
      differentiable where the largest-modulus eigenvalue is simple or a conjugate pair).
    * ``"power"``: the complex power method ``v ← Jv / ‖Jv‖`` from a random complex
      unit vector (drawn from ``seed``), ``iterations`` products (default 100); the
      estimate is ``‖Jv_K‖``. It converges at the rate ``|λ₂|/|λ₁|`` when one
      eigenvalue dominates. When the dominant eigenvalues are a complex-conjugate pair
      (or any several of equal modulus) ``v`` does not converge: it keeps turning in
      their invariant subspace. For a *normal* J those eigenvectors are orthogonal and
      ``‖Jv‖ = ρ`` anyway; for a non-normal J ``‖Jv‖`` oscillates around ρ and never
      settles. ``return_info=True`` reports this (:class:`PowerInfo`).
    * ``"gelfand"``: Gelfand's formula ``ρ = lim_k ‖J^k‖^{1/k}`` at ``k = 2**iterations``
      (default 10 squarings, k = 1024, as in seed 001), Frobenius norm. Each squaring is
      normalised, ``B ← B² / ‖B²‖_F``, and ``log ρ`` accumulates
      ``log ‖J‖_F + Σ_{j=1}^{m} 2^{−j} log s_j`` (``s_j`` the norm removed at squaring
      j), so nothing overflows or underflows however large or small ρ is. The estimate
      never falls below ρ (``‖A‖_F ≥ ρ(A)``); its relative excess is about
      ``log(c) / k`` with ``c = ‖J^k‖_F / ρ^k`` (≈ ``log √2 / 1024 = 3.4e-4`` for a
      normal J with a dominant conjugate pair; ``≈ (m−1) log k / k`` for a Jordan block
      of size m). Smooth in J wherever ``J^k ≠ 0``. For real J the derivative is
      written out (a reverse sweep over the squarings, as a JVP rule so that forward
      mode and Hessians work too), at about half the cost of AD through the loop.

    Args:
        J: ``(..., d, d)``.
        method: ``"eig"`` (default), ``"power"`` or ``"gelfand"``.
        iterations: products (power, default 100) or squarings (gelfand, default 10);
            ignored by ``"eig"``.
        seed: start vector of the power method.
        tol: the power method's convergence threshold on the relative change.
        return_info: power method only: also return a :class:`PowerInfo`.

    Returns:
        ``(...)`` float64, or ``(rho, info)``. ``ρ(0) = 0`` by every method, with
        derivative 0 there (ρ is not differentiable at 0).
    """
    if method not in SPECTRAL_RADIUS_METHODS:
        raise ValueError(f"unknown spectral-radius method {method!r}; expected one of {SPECTRAL_RADIUS_METHODS}")
    return _unchecked_spectral_radius(check_matrix(J), method, iterations, seed, tol=tol, return_info=return_info)


def _unchecked_spectral_radius(J, method="eig", iterations=None, seed=0, *, tol=1e-8, return_info=False):
    if method not in SPECTRAL_RADIUS_METHODS:
        raise ValueError(f"unknown spectral-radius method {method!r}; expected one of {SPECTRAL_RADIUS_METHODS}")
    if return_info and method != "power":
        raise ValueError(f"return_info is only available for method='power', not {method!r}")
    if method == "eig":
        return _eig_radius(J)
    if method == "power":
        iterations = DEFAULT_POWER_ITERATIONS if iterations is None else check_integer(iterations, "iterations")
        rho, change = _power(J, iterations, seed)
        if return_info:
            return rho, PowerInfo(change, change <= tol, iterations)
        return rho
    iterations = DEFAULT_GELFAND_SQUARINGS if iterations is None else check_integer(iterations, "iterations", minimum=0)
    if jnp.iscomplexobj(J):
        return _gelfand_autodiff(J, iterations)
    return _gelfand(J, iterations)


@jax.jit
def _eig_radius(J):
    return jnp.max(_modulus(_eigvals(J)), axis=-1)


def _power(J, iterations, seed):
    d = J.shape[-1]
    rng = np.random.default_rng(seed)
    v0 = rng.normal(size=d) + 1j * rng.normal(size=d)
    return _power_kernel(J, jnp.asarray(v0 / np.linalg.norm(v0)), iterations)


@functools.partial(jax.jit, static_argnums=2)
def _power_kernel(J, v0, iterations):
    v0 = jnp.broadcast_to(v0, J.shape[:-1])

    def step(carry, _):
        v, _rho = carry
        w = jnp.einsum("...ij,...j->...i", J, v)
        rho = _vec_norm(w)
        v = w / jnp.where(rho > 0, rho, 1.0)[..., None]
        return (v, rho), rho

    init = (v0, jnp.zeros(J.shape[:-2], dtype=jnp.real(J).dtype))
    (_, rho), history = jax.lax.scan(step, init, None, length=iterations)
    prev = history[-2] if iterations > 1 else jnp.zeros_like(rho)
    change = jnp.where(rho > 0, jnp.abs(rho - prev) / jnp.where(rho > 0, rho, 1.0), 0.0)
    return rho, jax.lax.stop_gradient(change)


def _vec_norm(w):
    sq = jnp.sum(jnp.real(w) ** 2 + jnp.imag(w) ** 2, axis=-1)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


@functools.partial(jax.jit, static_argnums=1)
def _gelfand_autodiff(J, squarings):
    """Gelfand's estimate differentiated by plain AD (used for complex J)."""
    s0 = _fro(J)
    zero = s0 == 0
    B = J / jnp.where(zero, 1.0, s0)[..., None, None]
    log_rho = jnp.log(jnp.where(zero, 1.0, s0))

    def square(carry, weight):
        B, log_rho, dead = carry
        C = B @ B
        s = _fro(C)
        # Nilpotent parts vanish after finitely many squarings: ρ = 0 then.
        dead = dead | (s == 0)
        safe = jnp.where(dead, 1.0, s)
        return (C / safe[..., None, None], log_rho + weight * jnp.log(safe), dead), None

    weights = 0.5 ** jnp.arange(1, squarings + 1, dtype=log_rho.dtype)
    (_, log_rho, dead), _ = jax.lax.scan(square, (B, log_rho, zero), weights)
    return jnp.where(dead, 0.0, jnp.exp(log_rho))


def _gelfand_forward(J, squarings):
    """Normalised squarings of a real J: log ρ_G, the B_j and norms s_j (j = 0..m), dead.

    Unrolled in Python (m is static and small): XLA fuses the unrolled chain and its
    reverse sweep better than a ``lax.scan`` (about 2× faster measured on CPU).
    """
    s0 = _fro(J)
    dead = s0 == 0
    safe = jnp.where(dead, 1.0, s0)
    Bs, ss = [J / safe[..., None, None]], [safe]
    log_rho = jnp.log(safe)
    for j in range(1, squarings + 1):
        C = Bs[-1] @ Bs[-1]
        s = _fro(C)
        dead = dead | (s == 0)  # nilpotent: J^k = 0 after finitely many squarings, ρ = 0
        safe = jnp.where(dead, 1.0, s)
        Bs.append(C / safe[..., None, None])
        ss.append(safe)
        log_rho = log_rho + jnp.log(safe) / 2.0**j
    return log_rho, Bs, ss, dead


def _gelfand_log_gradient(Bs, ss):
    """∂ log ρ_G / ∂J by the reverse sweep of the squarings (derivation in :func:`_gelfand_rule`)."""
    G = jnp.zeros_like(Bs[0])
    for j in range(len(Bs) - 1, 0, -1):
        inner = jnp.sum(Bs[j] * G, axis=(-2, -1))
        Cbar = ((2.0**-j - inner)[..., None, None] * Bs[j] + G) / ss[j][..., None, None]
        BpT = jnp.swapaxes(Bs[j - 1], -1, -2)
        G = Cbar @ BpT + BpT @ Cbar
    inner = jnp.sum(Bs[0] * G, axis=(-2, -1))
    return ((1.0 - inner)[..., None, None] * Bs[0] + G) / ss[0][..., None, None]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _gelfand_rule(J, squarings):
    """Gelfand's estimate of a real J with a hand-written derivative.

    Forward: ``B₀ = J/s₀``, ``C_j = B_{j−1}²``, ``s_j = ‖C_j‖_F``, ``B_j = C_j/s_j``,
    ``log ρ = log s₀ + Σ_j 2^{−j} log s_j``. With ``d log s_j = ⟨B_j, dC_j⟩/s_j`` and
    ``dB_j = (dC_j − B_j⟨B_j, dC_j⟩)/s_j``, the adjoint ``G_j = ∂ log ρ/∂B_j`` runs
    backwards as ``C̄_j = ((2^{−j} − ⟨B_j, G_j⟩)B_j + G_j)/s_j``,
    ``G_{j−1} = C̄_j B_{j−1}ᵀ + B_{j−1}ᵀ C̄_j`` from ``G_m = 0``, and
    ``∂ log ρ/∂J = ((1 − ⟨B₀, G₀⟩)B₀ + G₀)/s₀``: two products per squaring, about half
    of what AD of the normalised loop costs here. The rule is a JVP
    (``⟨ρ ∂log ρ/∂J, dJ⟩``) built from differentiable operations, so forward mode,
    reverse mode and Hessians all work.
    """
    log_rho, _, _, dead = _gelfand_forward(J, squarings)
    return jnp.where(dead, 0.0, jnp.exp(log_rho))


@_gelfand_rule.defjvp
def _gelfand_jvp(squarings, primals, tangents):
    (J,), (dJ,) = primals, tangents
    log_rho, Bs, ss, dead = _gelfand_forward(J, squarings)
    rho = jnp.where(dead, 0.0, jnp.exp(log_rho))
    grad = _gelfand_log_gradient(Bs, ss)
    Jbar = jnp.where(dead[..., None, None], 0.0, rho[..., None, None] * grad)
    return rho, jnp.sum(Jbar * dJ, axis=(-2, -1))


_gelfand = jax.jit(_gelfand_rule, static_argnums=1)


#: Names accepted by :func:`pyodejl.stiffness.layer_stiffness` ``measure=``.
MEASURES = {
    "stiffness_ratio": stiffness_ratio,
    "magnitude_ratio": magnitude_ratio,
    "singular_value_ratio": singular_value_ratio,
    "spectral_radius": spectral_radius,
}

# The same without the input check, for callers whose J is finite by construction
# (layer_stiffness checks θ and the inputs once instead of every Jacobian).
UNCHECKED = {
    "stiffness_ratio": _unchecked_stiffness_ratio,
    "magnitude_ratio": _unchecked_magnitude_ratio,
    "singular_value_ratio": _unchecked_singular_value_ratio,
    "spectral_radius": _unchecked_spectral_radius,
}
