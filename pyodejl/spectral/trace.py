"""Stochastic trace estimation: Hutchinson (fixed or adaptive budget) and Hutch++.

* Hutchinson (1989): ``tr(A) ≈ (1/N) Σ zᵢᵀ A zᵢ`` with Rademacher or Gaussian probes.
  Per-probe variance: ``2(‖A‖_F² − Σ A_ii²)`` (Rademacher), ``2‖A‖_F²`` (Gaussian).
* Seed 002 (Sec. 7.3, Eq. 14–16) bounds the sample count with Chebyshev's inequality:
  ``P(|X̄ − μ| ≥ max(ε|μ|, ε_abs)) ≤ Var/(N · max(ε²μ², ε_abs²))``, so
  ``N ≥ Var / (δ · max(ε²μ², ε_abs²))`` samples guarantee the error bound with
  probability ``1 − δ``. (The seed's Eq. 15/16 print ``N²`` and ``σ`` where the mean of
  ``N`` i.i.d. samples has variance ``Var/N``; we use the correct ``Var/N``.)
  :func:`chebyshev_sample_count` evaluates the bound; ``trace(..., epsilon=...)`` runs
  Hutchinson adaptively, re-estimating the variance and the trace from the samples and
  stopping as soon as the bound is met (or the budget is spent — reported).
* Hutch++ (Meyer, Musco, Musco & Woodruff, "Hutch++: Optimal Stochastic Trace
  Estimation", SOSA 2021): a third of the budget sketches the range ``Q = orth(A S)``,
  a third computes ``tr(QᵀAQ)`` exactly, the last third runs Hutchinson on the deflated
  ``(I − QQᵀ)A(I − QQᵀ)``. On spectra with a few large outliers over a small bulk — the
  shape of network Hessians — its error is far below Hutchinson's at equal matvecs.
* XTrace and XNysTrace (Epperly, Tropp & Webber, "XTrace: Making the most of every
  sample in stochastic trace estimation", SIAM J. Matrix Anal. Appl. 45(1), 2024): every
  test vector serves both as a sketch vector and as a Hutchinson probe. For each of the
  ``m`` test vectors ``ω_i``, a low-rank approximation is built from the *other* ``m − 1``
  (leave-one-out, hence independent of ``ω_i``), its trace is taken exactly, and ``ω_i``
  estimates the trace of the residual; the ``m`` unbiased estimates ``t_i`` are averaged.
  Their spread gives the error estimate ``sqrt(Σ (t_i − t̄)² / (m(m − 1)))``.

  - ``"xtrace"`` (any symmetric ``A``): ``Q_(i) = orth(A Ω_{−i})``,
    ``t_i = tr(Q_(i)ᵀ A Q_(i)) + ω̃_iᵀ A ω̃_i`` with ``ω̃_i = (I − Q_(i)Q_(i)ᵀ) ω_i``.
    ``m = ⌊num_matvecs / 2⌋``: ``m`` products for ``Y = AΩ`` and ``m`` for ``Z = AQ``
    with ``Y = QR``; all ``Q_(i)`` come from this one QR by the rank-one downdate of
    :mod:`pyodejl.spectral._lowrank` (``Q_(i)Q_(i)ᵀ = Q(I − s_i s_iᵀ)Qᵀ``), so every
    ``t_i`` costs no extra product.
  - ``"xnystrace"`` (positive semi-definite ``A``): the leave-one-out Nyström
    approximations ``Â_(i) = (AΩ_{−i})(Ω_{−i}ᵀAΩ_{−i})^{-1}(AΩ_{−i})ᵀ`` replace the
    projections; ``t_i = tr(Â_(i)) + ω_iᵀ(A − Â_(i))ω_i``. Only ``m = num_matvecs``
    products (no second pass), downdated from one Cholesky factor of ``ΩᵀAΩ``.
    The Nyström core is shifted by ``ν = √p·ε·‖AΩ‖_F`` (and ``νp`` subtracted) for
    stability (Tropp, Yurtsever, Udell & Cevher, SIAM J. Matrix Anal. Appl. 38(4), 2017).
    Both methods are exact when ``rank(A) < m``: XTrace to round-off (~1e-16 relative),
    XNysTrace to ~1e-7 relative, because downdating the then nearly singular ``m × m``
    core amplifies round-off.
  - Test vectors (``distribution="sphere"``, the default for both): the paper's
    *improved* variant. ``ω_i`` are uniform on the sphere of radius ``√p``, and the
    residual probe is rescaled to the squared norm ``p − m + 1`` of the dimension it
    lives in: ``t_i`` uses ``(p − m + 1)/‖ω̃_i‖² · ω̃_iᵀ A ω̃_i`` (for XNysTrace,
    ``ω̃_i`` is the part of ``ω_i`` orthogonal to ``range(Ω_{−i})``, which the Nyström
    residual annihilates). ``ω̃_i/‖ω̃_i‖`` is uniform on the unit sphere of a
    ``(p − m + 1)``-dimensional space independent of ``ω_i``'s length, so the
    estimate stays unbiased and loses the χ² fluctuation of ``‖ω̃_i‖²``.
    ``"rademacher"``/``"gaussian"`` give the basic variant (no rescaling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import cholesky as _cholesky
from scipy.linalg import eigvalsh as _eigvalsh
from scipy.linalg.lapack import dtrtri as _dtrtri

from ._lowrank import leave_one_out_directions, sphere_probes
from ._operator import as_operator, check_rng_seed

__all__ = ["TraceResult", "trace", "chebyshev_sample_count", "hutchinson_variance"]

TRACE_METHODS = ("hutchinson", "hutch++", "xtrace", "xnystrace")
DISTRIBUTIONS = ("rademacher", "gaussian", "sphere")


@dataclass
class TraceResult:
    """Result of :func:`trace`.

    Attributes
    ----------
    estimate : float
        The trace estimate.
    std_error : float
        Estimated standard error of ``estimate`` (sample standard deviation of the
        stochastic part / √samples; ``nan`` with fewer than 2 samples). For XTrace and
        XNysTrace the same number as ``error_estimate``.
    matvecs : int
        Exact number of operator applications used.
    method : str
    distribution : str
        The test-vector distribution actually used.
    samples : ndarray (N,)
        The per-probe quadratic forms ``zᵢᵀAzᵢ`` (Hutchinson) or ``zᵢᵀ(I−QQᵀ)A(I−QQᵀ)zᵢ``
        (the stochastic part of Hutch++); for XTrace/XNysTrace the ``m`` leave-one-out
        estimates ``t_i`` whose mean is ``estimate``.
    exact_part : float
        ``tr(QᵀAQ)`` for Hutch++ (0 for Hutchinson); for XTrace the mean of
        ``tr(Q_(i)ᵀAQ_(i))``, for XNysTrace the mean of ``tr(Â_(i))``.
    error_estimate : float
        An estimate of ``|estimate − tr(A)|`` of the size of one standard deviation. For
        XTrace/XNysTrace it is the paper's ``sqrt(Σ (t_i − t̄)² / (m(m − 1)))``; for
        Hutchinson and Hutch++ it equals ``std_error``.
    bound_met : bool or None
        Adaptive mode only: whether the Chebyshev bound was met within the budget.
    required_samples : int or None
        Adaptive mode only: the Chebyshev sample count implied by the final estimates.
    """

    estimate: float
    std_error: float
    matvecs: int
    method: str
    distribution: str
    samples: np.ndarray = field(repr=False)
    exact_part: float = 0.0
    bound_met: bool | None = None
    required_samples: int | None = None
    error_estimate: float = float("nan")

    def __post_init__(self):
        if self.method in ("hutchinson", "hutch++"):
            self.error_estimate = self.std_error


def chebyshev_sample_count(variance: float, trace: float | None = None,
                           epsilon: float | None = None, epsilon_abs: float | None = None,
                           delta: float = 0.05) -> int:
    """Seed 002's Chebyshev bound (Eq. 14–16): Hutchinson samples for
    ``P(|estimate − tr| ≥ max(ε|tr|, ε_abs)) ≤ δ``.

    ``N = ceil(variance / (δ · max(ε²·tr², ε_abs²)))``.

    Parameters
    ----------
    variance : float
        Per-probe variance of ``zᵀAz`` — see :func:`hutchinson_variance`; an upper
        bound (e.g. ``2‖A‖_F²``) gives a valid, larger count.
    trace : float, optional
        (An estimate of) ``tr(A)``; needed with ``epsilon``.
    epsilon : float, optional
        Relative tolerance (e.g. 0.1 for 10 %).
    epsilon_abs : float, optional
        Absolute tolerance (covers ``tr ≈ 0``). At least one of the two is required.
    delta : float, default 0.05
        Failure probability (confidence ``1 − δ``).

    Returns
    -------
    int, at least 1.
    """
    if epsilon is None and epsilon_abs is None:
        raise ValueError("give epsilon (relative) and/or epsilon_abs (absolute)")
    if epsilon is not None and trace is None:
        raise ValueError("a relative epsilon needs the trace (or an estimate of it)")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if variance < 0 or not np.isfinite(variance):
        raise ValueError(f"variance must be finite and >= 0, got {variance}")
    for name, e in (("epsilon", epsilon), ("epsilon_abs", epsilon_abs)):
        if e is not None and not e > 0:
            raise ValueError(f"{name} must be > 0, got {e}")
    tol2 = max((epsilon * trace) ** 2 if epsilon is not None else 0.0,
               epsilon_abs ** 2 if epsilon_abs is not None else 0.0)
    if variance == 0:
        return 1
    if tol2 == 0:
        return math.inf  # relative tolerance on a zero trace: unattainable
    return max(1, math.ceil(variance / (delta * tol2)))


def hutchinson_variance(A, distribution: str = "rademacher") -> float:
    """Exact per-probe variance of ``zᵀAz`` for a dense symmetric ``A`` (p, p):
    ``2(‖A‖_F² − Σ A_ii²)`` for Rademacher, ``2‖A‖_F²`` for Gaussian probes."""
    A = np.asarray(A, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {A.shape}")
    if distribution == "rademacher":
        return float(2 * (np.sum(A * A) - np.sum(np.diag(A) ** 2)))
    if distribution == "gaussian":
        return float(2 * np.sum(A * A))
    raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")


def _probes(rng, p, n, distribution):
    if distribution == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(p, n))
    if distribution == "sphere":
        return sphere_probes(rng, p, n)
    return rng.standard_normal((p, n))


def _loo_summary(t):
    """Mean and the XTrace error estimate ``sqrt(Σ (t_i − t̄)² / (m(m − 1)))``."""
    m = len(t)
    est = float(np.mean(t))
    err = float(np.sqrt(np.sum((t - est) ** 2) / (m * (m - 1)))) if m > 1 else float("nan")
    return est, err


def _xtrace(A, p, m, rng, distribution):
    """XTrace with ``2m`` products (Epperly, Tropp & Webber 2024, Sec. 2 and the
    downdating of :mod:`pyodejl.spectral._lowrank`)."""
    Om = _probes(rng, p, m, distribution)
    Y = A.matmat(Om)
    Q, R = np.linalg.qr(Y)
    Z = A.matmat(Q)
    H = Q.T @ Z
    H = 0.5 * (H + H.T)
    S = leave_one_out_directions(R)
    C = Q.T @ Om
    # K[:, i] = (I − s_i s_iᵀ) Qᵀω_i, so (I − Q_(i)Q_(i)ᵀ)ω_i = ω_i − Q K[:, i]; A Q = Z
    K = C - S * np.einsum("ij,ij->j", S, C)
    Omt = Om - Q @ K
    quad = np.einsum("ij,ij->j", Omt, Y - Z @ K)
    if distribution == "sphere":
        nrm2 = np.maximum(np.einsum("ij,ij->j", Omt, Omt), np.finfo(float).tiny)
        quad = quad * ((p - m + 1) / nrm2)
    lowrank = float(np.trace(H)) - np.einsum("ij,ij->j", S, H @ S)
    t = lowrank + quad
    est, err = _loo_summary(t)
    return est, err, t, float(np.mean(lowrank))


def _xnystrace(A, p, m, rng, distribution):
    """XNysTrace with ``m`` products (Epperly, Tropp & Webber 2024, Sec. 3)."""
    Om = _probes(rng, p, m, distribution)
    Y = A.matmat(Om)
    eps = np.finfo(float).eps
    G0 = Om.T @ Y
    G0 = 0.5 * (G0 + G0.T)
    lam_min = float(_eigvalsh(G0)[0])
    # round-off in an entry of ΩᵀAΩ is ≲ √p·ε·‖ω‖‖y‖, in an eigenvalue ≲ m times that
    tol = 10 * m * eps * np.sqrt(p) * float(np.max(np.linalg.norm(Om, axis=0))) * \
        float(np.max(np.linalg.norm(Y, axis=0)))
    psd_msg = ("method='xnystrace' needs a positive semi-definite operator (its Nyström "
               "approximation is only accurate for A ⪰ 0), but ")
    hint = ("; use method='xtrace', which works for any symmetric operator (for a "
            "negative semi-definite A, estimate the trace of -A)")
    if lam_min < -tol:
        raise ValueError(psd_msg + f"the sketched core ΩᵀAΩ has the eigenvalue "
                         f"{lam_min:.3e} < 0 beyond round-off (tolerance {tol:.1e}), so A "
                         "is indefinite" + hint)
    nu = max(np.sqrt(p) * eps * float(np.linalg.norm(Y)), np.finfo(float).tiny)
    Cu = None
    for _ in range(3):  # a core PSD only to round-off may need a larger shift
        Ynu = Y + nu * Om
        G = Om.T @ Ynu
        G = 0.5 * (G + G.T)
        try:
            Cu = _cholesky(G, lower=False)  # G = CuᵀCu
            break
        except np.linalg.LinAlgError:
            nu *= 100.0
    if Cu is None:
        raise ValueError(psd_msg + "the shifted Nyström core ΩᵀAΩ + νΩᵀΩ is not positive "
                         "definite, so A is (numerically) indefinite" + hint)
    # Â = BBᵀ with B = Ŷ C^{-1}. B is formed (not BᵀB = C^{-T}ŶᵀŶC^{-1}, which squares
    # the condition number). C^{-1} comes from LAPACK's triangular inverse: a (p, m)
    # triangular solve through SciPy's threaded trsm is orders of magnitude slower on a
    # loaded machine, at the same accuracy here.
    B = Ynu @ _dtrtri(Cu, lower=0)[0]  # Cu has a positive diagonal: Cholesky succeeded
    BtB = B.T @ B
    S = leave_one_out_directions(Cu)
    lowrank = float(np.trace(BtB)) - np.einsum("ij,ij->j", S, BtB @ S)
    # ω_iᵀ(A_ν − Â_(i))ω_i = (s_iᵀ C e_i)² since Bᵀω_i = C e_i
    quad = np.einsum("ij,ij->j", S, Cu) ** 2
    if distribution == "sphere":
        # the residual annihilates range(Ω_{−i}); rescale by the squared norm of the part
        # of ω_i orthogonal to it, (s'_iᵀ R_Ω e_i)², from the QR of Ω
        _, Ro = np.linalg.qr(Om)
        So = leave_one_out_directions(Ro)
        perp2 = np.maximum(np.einsum("ij,ij->j", So, Ro) ** 2, np.finfo(float).tiny)
        quad = quad * ((p - m + 1) / perp2)
    t = lowrank + quad - nu * p
    est, err = _loo_summary(t)
    return est, err, t, float(np.mean(lowrank)) - nu * p


def trace(op, num_matvecs: int = 100, method: str = "hutch++", seed=None, *,
          distribution: str | None = None, block_size: int | None = None,
          epsilon: float | None = None, epsilon_abs: float | None = None,
          delta: float = 0.05, min_samples: int = 10,
          check_symmetric: bool | None = None) -> TraceResult:
    """Estimate ``tr(A)`` from matrix–vector products.

    Parameters
    ----------
    op : ndarray (p, p), sparse matrix or LinearOperator (p, p)
        Real symmetric.
    num_matvecs : int, default 100
        Budget. Used exactly by ``"hutch++"`` (needs ≥ 3: ``n = num_matvecs // 3``
        sketch columns, ``n`` for the exact part, the rest ``num_matvecs − 2n`` as
        Hutchinson probes), by fixed-budget ``"hutchinson"`` and by ``"xnystrace"``
        (``m = num_matvecs`` test vectors, ``2 <= m <= p``); the adaptive mode stops at
        or before it. ``"xtrace"`` uses ``m = num_matvecs // 2`` test vectors and
        ``2m`` products (``2 <= m <= p``): with an **odd** budget the last product is
        not spent, and ``.matvecs`` reports ``num_matvecs − 1``.
    method : {"hutch++", "hutchinson", "xtrace", "xnystrace"}, default "hutch++"
        ``"xtrace"`` and ``"xnystrace"`` are Epperly, Tropp & Webber (2024), see the
        module docstring; ``"xnystrace"`` needs a positive semi-definite operator and
        raises ``ValueError`` when the sketch shows it is indefinite (indefiniteness
        that the ``m`` test vectors do not see goes unnoticed).
    seed : int, Generator or None
    distribution : {"rademacher", "gaussian", "sphere"}, optional
        Test vectors. Default ``"rademacher"`` for Hutchinson and Hutch++, ``"sphere"``
        (uniform on the sphere of radius ``√p``; the paper's improved, rescaled variant)
        for XTrace and XNysTrace.
    block_size : int, optional
        Probes are applied as blocks via ``op.matmat`` (default: all at once for the
        fixed budget, 10 at a time in adaptive mode).
    epsilon, epsilon_abs, delta : optional
        Hutchinson only. Giving ``epsilon`` (relative) and/or ``epsilon_abs`` switches
        on the adaptive mode: after each block the variance and trace are re-estimated
        from the samples and sampling stops once ``N ≥`` :func:`chebyshev_sample_count`
        (and ``N ≥ min_samples``). Seed 002 used ε = 10 %, ε_abs = 1, δ = 5 %.
    min_samples : int, default 10
        Adaptive mode: never stop before this many samples (the variance estimate from
        fewer is unreliable).
    check_symmetric : bool or None
        See :func:`pyodejl.spectral.as_operator` (its matvecs are counted).

    Returns
    -------
    TraceResult
    """
    if method not in TRACE_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, TRACE_METHODS))}; "
                         f"got {method!r}")
    if distribution is None:
        distribution = "sphere" if method in ("xtrace", "xnystrace") else "rademacher"
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    if not isinstance(num_matvecs, (int, np.integer)) or isinstance(num_matvecs, bool) \
            or num_matvecs < 1:
        raise ValueError(f"num_matvecs must be a positive int, got {num_matvecs!r}")
    adaptive = epsilon is not None or epsilon_abs is not None
    if adaptive and method != "hutchinson":
        raise ValueError("the adaptive Chebyshev mode (epsilon/epsilon_abs) is for "
                         "method='hutchinson'")
    if method == "xtrace" and num_matvecs < 4:
        raise ValueError(f"xtrace needs num_matvecs >= 4 (two products per test vector, "
                         f"at least 2 test vectors), got {num_matvecs}")
    if method == "xnystrace" and num_matvecs < 2:
        raise ValueError(f"xnystrace needs num_matvecs >= 2 (at least 2 test vectors), "
                         f"got {num_matvecs}")
    rng = check_rng_seed(seed)
    A = as_operator(op, check_symmetric=check_symmetric, seed=rng)
    p = A.dim

    if method in ("xtrace", "xnystrace"):
        m = int(num_matvecs // 2 if method == "xtrace" else num_matvecs)
        if m > p:
            raise ValueError(
                f"{method} uses {m} test vectors (num_matvecs = {num_matvecs}), more than "
                f"p = {p}; use a budget of at most {2 * p if method == 'xtrace' else p} "
                f"(p products already give the exact trace of the dense matrix)")
        fn = _xtrace if method == "xtrace" else _xnystrace
        est, err, t, lowrank = fn(A, p, m, rng, distribution)
        return TraceResult(est, err, A.matvecs, method, distribution, t,
                           exact_part=lowrank, error_estimate=err)

    if method == "hutchinson" and not adaptive:
        bs = num_matvecs if block_size is None else int(block_size)
        vals = []
        done = 0
        while done < num_matvecs:
            n = min(bs, num_matvecs - done)
            Z = _probes(rng, p, n, distribution)
            vals.append(np.einsum("ij,ij->j", Z, A.matmat(Z)))
            done += n
        s = np.concatenate(vals)
        se = float(np.std(s, ddof=1) / np.sqrt(len(s))) if len(s) > 1 else float("nan")
        return TraceResult(float(np.mean(s)), se, A.matvecs, method, distribution, s)

    if method == "hutchinson":  # adaptive
        if min_samples < 2:
            raise ValueError("min_samples must be >= 2 to estimate a variance")
        bs = 10 if block_size is None else int(block_size)
        s = np.zeros(0)
        need = None
        met = False
        while len(s) < num_matvecs:
            n = min(bs, num_matvecs - len(s))
            Z = _probes(rng, p, n, distribution)
            s = np.concatenate([s, np.einsum("ij,ij->j", Z, A.matmat(Z))])
            if len(s) >= 2:
                need = chebyshev_sample_count(float(np.var(s, ddof=1)), float(np.mean(s)),
                                              epsilon, epsilon_abs, delta)
                if len(s) >= max(min_samples, need):
                    met = True
                    break
        se = float(np.std(s, ddof=1) / np.sqrt(len(s))) if len(s) > 1 else float("nan")
        need_i = None if need is None else (need if need == math.inf else int(need))
        return TraceResult(float(np.mean(s)), se, A.matvecs, method, distribution, s,
                           bound_met=met, required_samples=need_i)

    # Hutch++
    if num_matvecs < 3:
        raise ValueError(f"hutch++ needs num_matvecs >= 3, got {num_matvecs}")
    n = num_matvecs // 3
    ng = num_matvecs - 2 * n
    S = _probes(rng, p, n, distribution)
    Q, _ = np.linalg.qr(A.matmat(S))
    exact = float(np.trace(Q.T @ A.matmat(Q)))
    G = _probes(rng, p, ng, distribution)
    G = G - Q @ (Q.T @ G)
    s = np.einsum("ij,ij->j", G, A.matmat(G))
    se = float(np.std(s, ddof=1) / np.sqrt(ng)) if ng > 1 else float("nan")
    return TraceResult(exact + float(np.mean(s)), se, A.matvecs, method, distribution, s,
                       exact_part=exact)
