"""Leave-one-out ("exchangeable") low-rank approximations by downdating one factorisation.

XTrace, XNysTrace and XDiag (Epperly, Tropp & Webber, "XTrace: Making the most of every
sample in stochastic trace estimation", SIAM J. Matrix Anal. Appl. 45(1), 2024) need, for
every test vector ``ω_i``, a low-rank approximation built from the *other* ``m − 1`` test
vectors. Recomputing ``m`` factorisations would cost ``O(p m³)``; one factorisation and a
rank-one downdate per ``i`` costs ``O(p m²)`` in all. The downdate rests on one identity:

    Let ``Y = Q R`` with ``Q (p, m)`` orthonormal and ``R (m, m)`` invertible, and let
    ``s_i = R^{-T} e_i / ‖R^{-T} e_i‖``. Then ``s_i ⊥ R e_j`` for every ``j ≠ i``
    (``(R e_j)ᵀ R^{-T} e_i = δ_ij``), so the columns of ``Q (I − s_i s_iᵀ)`` are an
    orthonormal basis of ``range(Y_{−i})`` and

        ``P_{range(Y_{−i})} = Q (I − s_i s_iᵀ) Qᵀ``.

    The same algebra applies to a Cholesky factor ``G = CᵀC`` of a Nyström core
    (XNysTrace): ``(G_{−i,−i})^{-1}``, padded with zeros, equals
    ``C^{-1} (I − s_i s_iᵀ) C^{-T}`` with ``s_i`` built from ``C``.

:func:`leave_one_out_directions` returns all ``s_i`` as the columns of one matrix. It
works from an SVD of the small factor so that a numerically singular factor (a
low-rank operator, or a fast-decaying spectrum) does not overflow: singular values below
``10·m·ε·σ_max`` are raised to that floor. ``s_i`` then lies (to round-off) in the
common null space of the other columns, which is what exactness on low-rank operators
needs: ``Q (I − s_i s_iᵀ) Qᵀ`` still contains ``range(Y_{−i})``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["leave_one_out_directions", "sphere_probes"]


def leave_one_out_directions(R: np.ndarray) -> np.ndarray:
    """Unit vectors ``s_i ∝ R^{-T} e_i`` (columns of the returned ``(m, m)`` matrix).

    ``s_i`` is orthogonal to every column ``R e_j``, ``j ≠ i``. Computed as
    ``U Σ̃^{-1} Vᵀ e_i`` from ``R = U Σ Vᵀ`` with ``Σ̃ = max(Σ, 10·m·ε·σ_max)``, scaled by
    ``σ̃_min`` before normalising so that nothing overflows.
    """
    R = np.asarray(R, dtype=float)
    m = R.shape[0]
    U, sig, Vt = np.linalg.svd(R)
    floor = max(10.0 * m * np.finfo(float).eps * (sig[0] if sig.size else 0.0),
                np.finfo(float).tiny)
    st = np.maximum(sig, floor)
    W = (st[-1] / st)[:, None] * Vt  # column i: σ̃_min Σ̃^{-1} Vᵀ e_i, entries in [-1, 1]
    S = U @ W
    return S / np.linalg.norm(S, axis=0)


def sphere_probes(rng, p: int, n: int) -> np.ndarray:
    """``n`` vectors uniform on the sphere of radius ``√p`` (normalised Gaussians), (p, n)."""
    Z = rng.standard_normal((p, n))
    return Z * (np.sqrt(p) / np.linalg.norm(Z, axis=0))
