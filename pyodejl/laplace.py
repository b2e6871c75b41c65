"""Laplace approximations of the posterior of a Neural ODE fitted by mean squared error.

MacKay (1992), *A practical Bayesian framework for backpropagation networks*;
conventions of laplace-torch (Daxberger et al. 2021, *Laplace Redux — Effortless
Bayesian deep learning*); the GLM predictive of Immer, Korzepa & Bauer (2021),
*Improving predictions of Bayesian neural nets via local linearization*.

**Likelihood reading.** An ODE objective whose data term is the mean squared
error (:class:`pyodejl.TrajectoryLoss` with ``loss="mse"``, or an
:class:`pyodejl.ObservationLoss` whose cost is
:func:`pyodejl.derivatives.ode_loss.mse_cost`) is read as independent Gaussian
observations with noise standard deviation σ of the N observed scalars
(N = the number of target entries, ``ts[0]`` included):

    −log p(D | θ) = Σ r² / (2σ²) + (N/2) log(2πσ²),

r the residuals of ``loss.predict(θ)`` (its data dimensions) against the targets.
Since the library's loss is L = Σ r² / N, −log p(D | θ) = N L / (2σ²) + const.
The prior is isotropic, θ ~ N(0, δ⁻¹ I) (δ the prior precision).

**Curvature of the summed negative log-likelihood** (laplace-torch's convention),
from the library's curvature of L:

* ``"ggn"``: Jᵀ J / σ² = (N/2) · ``loss.ggn`` / σ² (the library's GGN of the
  mean is (2/N) Jᵀ J), J = ∂r/∂θ on θ*'s step grid;
* ``"hessian"``: (N/2) · ``loss.hessian`` / σ²;
* ``"fisher"``: the empirical Fisher Σ_n ∇ℓ_n ∇ℓ_nᵀ of the per-trajectory
  negative log-likelihoods ℓ_n = M L_n / (2σ²) + const (M = N / B scalars per
  trajectory, L_n trajectory n's mean squared error), i.e.
  B (M / (2σ²))² · ``loss.empirical_fisher``; it scales as σ⁻⁴ and has rank at
  most B (one trajectory: rank one), so it needs the prior to be invertible.

The unscaled curvature is computed once and cached, so changing σ or δ (evidence,
optimisation) costs no new derivatives.

**Posterior precision** P = C + δ I with C the curvature in the chosen structure:

* ``"full"``: C dense ``(p, p)`` (refused above :data:`MAX_FULL_PARAMS`);
* ``"diagonal"``: the exact diagonal of C (from ``p`` operator columns for
  p ≤ :data:`MAX_EXACT_DIAGONAL`; above that an XDiag estimate,
  :func:`pyodejl.spectral.diagonal`, with :data:`DIAGONAL_MATVECS` products);
* ``"low-rank"``: C ≈ U diag(λ) Uᵀ from the top ``rank`` eigenpairs (Lanczos,
  :func:`pyodejl.spectral.eigenvalues`; a dense eigendecomposition when
  ``rank = p``), the prior alone on the complement.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from pyodejl._jit import to_device

__all__ = ["Laplace", "Predictive", "MAX_FULL_PARAMS", "MAX_EXACT_DIAGONAL", "DIAGONAL_MATVECS"]

#: Largest p for ``structure="full"`` (a (p, p) float64 matrix takes 8 p² bytes; several are held).
MAX_FULL_PARAMS = 10_000
#: Largest p whose curvature diagonal is computed exactly from p operator columns.
MAX_EXACT_DIAGONAL = 4096
#: Operator products of the XDiag diagonal estimate used above :data:`MAX_EXACT_DIAGONAL`.
DIAGONAL_MATVECS = 400

CURVATURES = ("ggn", "hessian", "fisher")
STRUCTURES = ("full", "diagonal", "low-rank")
_BLOCK = 256
_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class Predictive:
    """A predictive distribution's moments at the loss's observation times (or the requested ``ts``).

    Attributes:
        mean: model states, ``(T, D)`` for a single initial state or ``(B, T, D)``.
        var: the epistemic variance of each entry, same shape as ``mean``.
    """

    mean: np.ndarray
    var: np.ndarray


def _positive(value, name):
    if name == "prior_precision" and np.ndim(value) != 0:
        raise NotImplementedError(
            f"prior_precision must be a scalar (an isotropic prior); got shape {np.shape(value)}: per-parameter "
            "or per-layer prior precisions are not supported (the evidence and its optimisation assume δ I)"
        )
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}") from None
    if not np.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _likelihood_reading(loss):
    """``(targets (B, T, d), N)`` of an ODE objective with an MSE data term; else a ValueError."""
    from pyodejl.derivatives.ode_loss import ObservationLoss, mse_cost

    supported = (
        "a pyodejl.TrajectoryLoss with loss='mse' or a pyodejl.ObservationLoss whose cost is "
        "pyodejl.derivatives.ode_loss.mse_cost (read as Gaussian observations)"
    )
    if not isinstance(loss, ObservationLoss):
        raise ValueError(
            f"Laplace needs a loss whose data term reads as a likelihood, i.e. {supported}; "
            f"got a {type(loss).__name__}, a loss with no likelihood reading"
        )
    if loss.problem.initial is not None:
        raise ValueError("Laplace takes y0 as data; this loss's initial state depends on θ (an initial-state map)")
    if loss.problem.cost is not mse_cost:
        cost = getattr(loss, "loss", getattr(loss.problem.cost, "__name__", type(loss.problem.cost).__name__))
        raise ValueError(
            f"Laplace needs {supported}; this loss's cost ({cost!r}) has no likelihood reading"
        )
    if loss.regularizers:
        names = [t.name for t in loss.regularizers]
        raise ValueError(
            f"Laplace reads the data term as the likelihood and prior_precision as the prior; the loss's "
            f"regularizer terms {names} have no likelihood reading: build the loss without regularizers"
        )
    targets = np.asarray(loss.data[0], dtype=np.float64)
    if targets.ndim != 3 or targets.shape[:2] != (loss.batch_size, len(loss.ts)):
        raise ValueError(
            f"the MSE cost's data must be targets of shape (B, T, d) = ({loss.batch_size}, {len(loss.ts)}, d); "
            f"got {targets.shape}"
        )
    return targets, int(targets.size)


def _states(model, vf, times, obs_index, y0):
    from pyodejl.solving.integrate import grid_states_jax

    return grid_states_jax(model, vf, times, obs_index, y0)


def _jvp_block_impl(model, vf, times, obs_index, y0, V):
    def one(v):
        return jax.jvp(lambda th: _states(model, th, times, obs_index, y0), (vf,), (v,))[1]

    return jax.vmap(one)(V)


_jvp_block = jax.jit(_jvp_block_impl, static_argnums=0)


class Laplace:
    """Laplace approximation N(θ*, P⁻¹) of the posterior at a MAP estimate θ*.

    Args:
        loss: an ODE objective whose data term is a mean squared error (see the
            module docstring): :class:`pyodejl.TrajectoryLoss` with ``loss="mse"``
            or :class:`pyodejl.ObservationLoss` with ``cost=mse_cost``, without
            regularizer terms. Other objectives (``FunctionObjective``, DEQ
            losses, other costs) raise ValueError.
        theta_map: ``(p,)`` the MAP estimate θ*: the minimiser of N L/(2σ²) + δ‖θ‖²/2, i.e. of
            the loss plus the penalty (δσ²/N)‖θ‖² on all of θ. The approximation is taken there
            whatever θ is given; the evidence is meaningful at a MAP.
        noise_std: σ > 0 of the Gaussian observation noise (default 1.0).
        prior_precision: δ > 0 of the prior N(0, δ⁻¹ I) (default 1.0); a scalar.
        curvature: ``"ggn"`` (default), ``"hessian"`` or ``"fisher"`` (empirical Fisher).
        structure: ``"full"`` (default), ``"diagonal"`` or ``"low-rank"``.
        rank: the number of eigenpairs for ``"low-rank"`` (1 ≤ rank ≤ p); must be
            None for the other structures.
        seed: seed of the randomised algorithms (Lanczos start, XDiag probes); default 0.

    The curvature is computed on first use and cached unscaled.
    """

    def __init__(self, loss, theta_map, noise_std=1.0, prior_precision=1.0, curvature="ggn",
                 structure="full", rank=None, seed=0):
        self._targets, self.num_observations = _likelihood_reading(loss)
        self.loss = loss
        self.theta_map = loss.check_theta(theta_map)
        self.num_params = p = loss.num_params
        self.noise_std = _positive(noise_std, "noise_std")
        self.prior_precision = _positive(prior_precision, "prior_precision")
        if curvature not in CURVATURES:
            raise ValueError(f"unknown curvature {curvature!r}; expected one of {list(CURVATURES)}")
        if structure not in STRUCTURES:
            raise ValueError(f"unknown structure {structure!r}; expected one of {list(STRUCTURES)}")
        if structure == "low-rank":
            if rank is None or isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
                raise ValueError(f"structure='low-rank' needs an integer rank with 1 <= rank <= p = {p}; got {rank!r}")
            if not 1 <= int(rank) <= p:
                raise ValueError(f"rank must satisfy 1 <= rank <= p = {p}; got {rank}")
            rank = int(rank)
        elif rank is not None:
            raise ValueError(f"rank applies to structure='low-rank' only; got rank={rank!r} with {structure!r}")
        if structure == "full" and p > MAX_FULL_PARAMS:
            gib = 8.0 * p * p / 2**30
            raise ValueError(
                f"structure='full' stores (p, p) float64 matrices: p = {p} needs {gib:.2f} GiB per matrix "
                f"(several are held), above the limit p <= {MAX_FULL_PARAMS}; use 'diagonal' or 'low-rank'"
            )
        self.curvature = curvature
        self.structure = structure
        self.rank = rank
        self.seed = seed
        pred = np.asarray(loss.predict(self.theta_map), dtype=np.float64)
        pred = pred[None] if loss.single else pred
        d = self._targets.shape[-1]
        self._sum_sq = float(np.sum((pred[..., :d] - self._targets) ** 2))
        self._unscaled = None
        self._eigenvalues = None

    # ---- curvature -----------------------------------------------------------------------
    def _unscaled_operator(self):
        """The curvature of the summed NLL times σ^q as an operator (q = 2, or 4 for the Fisher)."""
        from scipy.sparse.linalg import LinearOperator

        loss, theta, N = self.loss, self.theta_map, self.num_observations
        if self.curvature == "fisher":
            G = self._fisher_gradients()
            return LinearOperator((self.num_params,) * 2, matvec=lambda v: G.T @ (G @ v),
                                  matmat=lambda V: G.T @ (G @ V), dtype=np.float64)
        base = loss.ggn_operator(theta) if self.curvature == "ggn" else loss.hessian_operator(theta)
        half = N / 2.0
        return LinearOperator((self.num_params,) * 2, matvec=lambda v: half * base.matmat(v[:, None])[:, 0],
                              matmat=lambda V: half * base.matmat(V), dtype=np.float64)

    def _fisher_gradients(self):
        """Rows ∇ℓ_n·σ² of the per-trajectory NLLs, ``(B, p)``."""
        from pyodejl.derivatives.gauss_newton import per_sample_gradients

        B = self.loss.batch_size
        M = self.num_observations / B
        return (M / 2.0) * per_sample_gradients(self.loss, self.theta_map)

    def _curvature(self):
        if self._unscaled is not None:
            return self._unscaled
        p, loss, theta = self.num_params, self.loss, self.theta_map
        half = self.num_observations / 2.0
        if self.structure == "full":
            if self.curvature == "ggn":
                C = half * loss.ggn(theta)
            elif self.curvature == "hessian":
                C = half * loss.hessian(theta)
            else:
                G = self._fisher_gradients()
                C = G.T @ G
            self._unscaled = 0.5 * (C + C.T)
        elif self.structure == "diagonal":
            if self.curvature == "fisher":
                self._unscaled = np.sum(self._fisher_gradients() ** 2, axis=0)
            elif p <= MAX_EXACT_DIAGONAL:
                op = self._unscaled_operator()
                diag = np.empty(p)
                for start in range(0, p, _BLOCK):
                    stop = min(start + _BLOCK, p)
                    E = np.zeros((p, stop - start))
                    E[np.arange(start, stop), np.arange(stop - start)] = 1.0
                    diag[start:stop] = np.diagonal(op.matmat(E)[start:stop])
                self._unscaled = diag
            else:
                from pyodejl.spectral import diagonal

                est = diagonal(self._unscaled_operator(), num_matvecs=DIAGONAL_MATVECS, method="xdiag",
                               seed=self.seed)
                self._unscaled = np.asarray(est.estimate, dtype=np.float64)
        else:
            op = self._unscaled_operator()
            if self.rank == p:
                E = np.eye(p)
                C = op.matmat(E)
                lam, U = np.linalg.eigh(0.5 * (C + C.T))
            else:
                from pyodejl.spectral import eigenvalues

                res = eigenvalues(op, k=self.rank, which="largest", method="lanczos", seed=self.seed)
                lam, U = res.eigenvalues, res.eigenvectors
            self._unscaled = (np.asarray(lam, dtype=np.float64), np.asarray(U, dtype=np.float64))
        return self._unscaled

    def _scale(self, noise_std):
        return noise_std ** (-4.0 if self.curvature == "fisher" else -2.0)

    def _params(self, prior_precision, noise_std):
        delta = self.prior_precision if prior_precision is None else _positive(prior_precision, "prior_precision")
        sigma = self.noise_std if noise_std is None else _positive(noise_std, "noise_std")
        return delta, sigma

    def _precision_parts(self, delta, sigma):
        """The structure's curvature scaled to σ: full (p, p), diagonal (p,), low-rank (λ, U)."""
        C = self._curvature()
        s = self._scale(sigma)
        if self.structure == "low-rank":
            return s * C[0], C[1]
        return s * C

    def _not_positive(self):
        return np.linalg.LinAlgError(
            f"the posterior precision (curvature {self.curvature!r} + prior) is not positive definite at "
            "this theta and prior precision; use curvature='ggn' or a larger prior_precision"
        )

    def _log_det(self, delta, sigma):
        p = self.num_params
        if self.structure == "full":
            if self._eigenvalues is None:  # once: then log det P = Σ log(s μ_i + δ) for every σ and δ
                self._eigenvalues = np.linalg.eigvalsh(self._curvature())
            mu = self._scale(sigma) * self._eigenvalues + delta
            if np.any(mu <= 0):
                raise self._not_positive()
            return float(np.sum(np.log(mu)))
        parts = self._precision_parts(delta, sigma)
        if self.structure == "diagonal":
            d = parts + delta
            if np.any(d <= 0):
                raise self._not_positive()
            return float(np.sum(np.log(d)))
        lam = parts[0] + delta
        if np.any(lam <= 0):
            raise self._not_positive()
        return float(np.sum(np.log(lam)) + (p - len(lam)) * np.log(delta))

    # ---- posterior -------------------------------------------------------------------------
    def _full_only(self, what):
        if self.structure != "full":
            raise ValueError(
                f"{what} is a dense (p, p) matrix, available for structure='full' only; this Laplace has "
                f"structure={self.structure!r} (use posterior_variance() or sample())"
            )

    def posterior_precision(self) -> np.ndarray:
        """P = C + δ I, ``(p, p)``; ``structure="full"`` only."""
        self._full_only("posterior_precision")
        return self._precision_parts(self.prior_precision, self.noise_std) + self.prior_precision * np.eye(
            self.num_params
        )

    def _cholesky(self):
        try:
            return np.linalg.cholesky(self.posterior_precision())
        except np.linalg.LinAlgError:
            raise self._not_positive() from None

    def posterior_covariance(self) -> np.ndarray:
        """Σ = P⁻¹, ``(p, p)``; ``structure="full"`` only."""
        self._full_only("posterior_covariance")
        L = self._cholesky()
        Linv = np.linalg.solve(L, np.eye(self.num_params))
        return Linv.T @ Linv

    def posterior_variance(self) -> np.ndarray:
        """diag(P⁻¹), ``(p,)``, for every structure.

        Low-rank: 1/δ − Σ_k U_ik² λ_k / (δ (λ_k + δ)).
        """
        delta = self.prior_precision
        if self.structure == "full":
            return np.diagonal(self.posterior_covariance()).copy()
        parts = self._precision_parts(delta, self.noise_std)
        if self.structure == "diagonal":
            d = parts + delta
            if np.any(d <= 0):
                raise self._not_positive()
            return 1.0 / d
        lam, U = parts
        if np.any(lam + delta <= 0):
            raise self._not_positive()
        return 1.0 / delta - (U**2) @ (lam / (delta * (lam + delta)))

    def _covariance_factor_apply(self, Z):
        """S Z with S Sᵀ = P⁻¹, Z ``(p, n)``."""
        delta = self.prior_precision
        if self.structure == "full":
            L = self._cholesky()
            from scipy.linalg import solve_triangular

            return solve_triangular(L.T, Z, lower=False)  # L⁻ᵀ Z: covariance L⁻ᵀ L⁻¹ = P⁻¹
        if self.structure == "diagonal":
            return np.sqrt(self.posterior_variance())[:, None] * Z
        lam, U = self._precision_parts(delta, self.noise_std)
        if np.any(lam + delta <= 0):
            raise self._not_positive()
        UZ = U.T @ Z
        return (Z - U @ UZ) / np.sqrt(delta) + U @ (UZ / np.sqrt(lam + delta)[:, None])

    def sample(self, n: int, seed=0) -> np.ndarray:
        """``n`` draws from N(θ*, P⁻¹), ``(n, p)``.

        Args:
            n: number of samples (≥ 1).
            seed: seed of NumPy's default generator (default 0).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        Z = np.random.default_rng(seed).standard_normal((self.num_params, int(n)))
        return self.theta_map[None, :] + self._covariance_factor_apply(Z).T

    # ---- evidence --------------------------------------------------------------------------
    def log_likelihood(self, noise_std=None) -> float:
        """log p(D | θ*) = −Σ r²/(2σ²) − (N/2) log(2πσ²).

        Args:
            noise_std: σ (default: the current one).
        """
        _, sigma = self._params(None, noise_std)
        N = self.num_observations
        return -self._sum_sq / (2.0 * sigma**2) - 0.5 * N * (_LOG_2PI + 2.0 * np.log(sigma))

    def log_marginal_likelihood(self, prior_precision=None, noise_std=None) -> float:
        """The Laplace evidence log p(D|θ*) + log p(θ*) + (p/2) log 2π − ½ log det P.

        log p(θ*) = −δ‖θ*‖²/2 + (p/2) log(δ/2π) (isotropic Gaussian prior). Exact for
        a model linear in θ with θ* the MAP (MacKay 1992; Daxberger et al. 2021, Eq. 4).

        Args:
            prior_precision: δ to evaluate at (default: the current one); not stored.
            noise_std: σ to evaluate at (default: the current one); not stored.
        """
        delta, sigma = self._params(prior_precision, noise_std)
        p = self.num_params
        log_prior = -0.5 * delta * float(self.theta_map @ self.theta_map) + 0.5 * p * (np.log(delta) - _LOG_2PI)
        return self.log_likelihood(sigma) + log_prior + 0.5 * p * _LOG_2PI - 0.5 * self._log_det(delta, sigma)

    def _maximise(self, fn, lower, upper, name):
        from scipy.optimize import minimize_scalar

        lo, hi = _positive(lower, f"{name} lower bound"), _positive(upper, f"{name} upper bound")
        if lo >= hi:
            raise ValueError(f"the {name} bracket must have lower < upper, got ({lower}, {upper})")
        res = minimize_scalar(lambda x: -fn(np.exp(x)), bounds=(np.log(lo), np.log(hi)), method="bounded",
                              options={"xatol": 1e-10})
        return float(np.exp(res.x))

    def optimize_prior_precision(self, lower=1e-6, upper=1e6) -> float:
        """Maximise the evidence over δ at fixed θ* and σ; store and return it.

        A bounded scalar search (:func:`scipy.optimize.minimize_scalar`) over log δ.

        Args:
            lower: smallest δ searched (default 1e-6).
            upper: largest δ searched (default 1e6).
        """
        self._curvature()
        self.prior_precision = self._maximise(lambda d: self.log_marginal_likelihood(prior_precision=d),
                                              lower, upper, "prior_precision")
        return self.prior_precision

    def optimize_noise_std(self, lower=1e-6, upper=1e6) -> float:
        """Maximise the evidence over σ at fixed θ* and δ; store and return it.

        Args:
            lower: smallest σ searched (default 1e-6).
            upper: largest σ searched (default 1e6).
        """
        self._curvature()
        self.noise_std = self._maximise(lambda s: self.log_marginal_likelihood(noise_std=s),
                                        lower, upper, "noise_std")
        return self.noise_std

    def optimize(self, prior_bounds=(1e-6, 1e6), noise_bounds=(1e-6, 1e6)) -> tuple[float, float]:
        """Maximise the evidence jointly over δ and σ at fixed θ*; store and return ``(δ, σ)``.

        Nelder–Mead (:func:`scipy.optimize.minimize`) over (log δ, log σ) within the
        bounds, started at the current values (moved into the bounds).

        Args:
            prior_bounds: ``(lower, upper)`` of δ (default (1e-6, 1e6)).
            noise_bounds: ``(lower, upper)`` of σ (default (1e-6, 1e6)).
        """
        from scipy.optimize import minimize

        bounds = []
        for (lo, hi), name in ((prior_bounds, "prior_precision"), (noise_bounds, "noise_std")):
            lo, hi = _positive(lo, f"{name} lower bound"), _positive(hi, f"{name} upper bound")
            if lo >= hi:
                raise ValueError(f"the {name} bounds must have lower < upper, got ({lo}, {hi})")
            bounds.append((np.log(lo), np.log(hi)))
        self._curvature()
        x0 = [np.clip(np.log(v), lo, hi) for v, (lo, hi) in zip((self.prior_precision, self.noise_std), bounds)]
        res = minimize(lambda x: -self.log_marginal_likelihood(np.exp(x[0]), np.exp(x[1])), x0,
                       method="Nelder-Mead", bounds=bounds,
                       options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000, "maxfev": 20000})
        self.prior_precision, self.noise_std = float(np.exp(res.x[0])), float(np.exp(res.x[1]))
        return self.prior_precision, self.noise_std

    # ---- predictive ------------------------------------------------------------------------
    def _prediction_loss(self, ts):
        """``(an ObservationLoss observing ts, rows to drop)``; the loss itself for ts None."""
        if ts is None:
            return self.loss, 0
        from pyodejl.derivatives.ode_loss import ObservationLoss, mse_cost

        arr = np.atleast_1d(np.asarray(ts, dtype=np.float64))
        t0 = float(self.loss.ts[0])
        if arr.ndim != 1 or arr.size < 1 or not np.all(np.isfinite(arr)) or np.any(np.diff(arr) <= 0):
            raise ValueError(f"ts must be a 1-D array of finite, strictly increasing times; got {ts!r}")
        if arr[0] < t0:
            raise ValueError(f"ts must start at or after the loss's initial time ts[0] = {t0}; got ts[0] = {arr[0]}")
        drop = int(arr[0] > t0)
        times = np.concatenate([[t0], arr]) if drop else arr
        if times.size < 2:
            raise ValueError(f"ts must hold a time after the initial time {t0}; got {ts!r}")
        loss = self.loss
        y0 = loss.y0[0] if loss.single else loss.y0
        data = np.zeros((loss.batch_size, times.size, self._targets.shape[-1]))
        return ObservationLoss(loss.model, times, y0, mse_cost, data=data,
                               num_extra_params=loss.num_params - loss.model.num_params), drop

    def _jacobian_products(self, V, loss=None):
        """J V for parameter directions V ``(p, m)``: states ``(m, T, B, D)`` on θ*'s step grid."""
        loss = self.loss if loss is None else loss
        theta = self.theta_map
        nvf = loss.problem.num_vf
        grid = loss.solve(theta).grid
        out = _jvp_block(loss.problem.model, to_device(theta[:nvf]), to_device(grid.times),
                         to_device(grid.obs_index), loss._y0_aug, to_device(np.ascontiguousarray(V[:nvf].T)))
        return np.asarray(out)

    def _weighted_square_sum(self, columns, weights, loss):
        """Σ_j w_j (J c_j)² over the columns c_j of ``columns`` ``(p, m)``, in blocks."""
        acc = None
        for start in range(0, columns.shape[1], _BLOCK):
            JV = self._jacobian_products(columns[:, start : start + _BLOCK], loss)
            term = np.tensordot(weights[start : start + _BLOCK], JV**2, axes=(0, 0))
            acc = term if acc is None else acc + term
        return acc

    def _glm_variance(self, loss):
        p, delta = self.num_params, self.prior_precision
        if self.structure == "full":
            L = self._cholesky()
            from scipy.linalg import solve_triangular

            S = solve_triangular(L.T, np.eye(p), lower=False)  # S Sᵀ = P⁻¹
            return self._weighted_square_sum(S, np.ones(p), loss)
        if self.structure == "diagonal":
            return self._weighted_square_sum(np.eye(p), self.posterior_variance(), loss)
        lam, U = self._precision_parts(delta, self.noise_std)
        if np.any(lam + delta <= 0):
            raise self._not_positive()
        # Σ = I/δ − U diag(λ/(δ(λ+δ))) Uᵀ
        iso = self._weighted_square_sum(np.eye(p), np.full(p, 1.0 / delta), loss)
        return iso - self._weighted_square_sum(U, lam / (delta * (lam + delta)), loss)

    def predictive(self, ts=None, method: str = "glm", n: int = 100, seed=0) -> Predictive:
        """The predictive distribution of the model states at the loss's times or at ``ts``.

        Args:
            ts: None (default: the loss's times) or ``(T',)`` strictly increasing times
                from the loss's initial time ``ts[0]`` on (the solve starts there).
            method: ``"glm"`` (default; Immer et al. 2021: the model linearised at θ*,
                var = diag(J Σ Jᵀ) with J = ∂y/∂θ on θ*'s step grid, from
                forward-mode products — never a dense (T·D, p) Jacobian: Σ = S Sᵀ is
                applied as Σ_j w_j (J s_j)² over p columns (S = L⁻ᵀ for ``"full"``, the
                unit vectors for ``"diagonal"``, unit vectors and U for ``"low-rank"``),
                p to p + rank JVPs in blocks of 256) or
                ``"samples"`` (solve at ``n`` posterior samples; mean and variance,
                normalised by n, of the solutions).
            n: number of samples for ``"samples"`` (default 100).
            seed: seed of the samples (default 0).

        Returns:
            A :class:`Predictive` with ``mean`` and ``var`` of shape ``(T, D)`` for a
            single initial state, else ``(B, T, D)``. Epistemic only: add σ² for the
            observation noise.
        """
        if method not in ("glm", "samples"):
            raise ValueError(f"unknown predictive method {method!r}; expected 'glm' or 'samples'")
        loss, drop = self._prediction_loss(ts)
        D = loss.problem.D
        if method == "glm":
            mean = np.asarray(loss.predict(self.theta_map), dtype=np.float64)
            var = np.swapaxes(self._glm_variance(loss), 0, 1)[..., :D]  # (B, T, D)
            var = var[0] if loss.single else var
        else:
            thetas = self.sample(n, seed)
            ys = np.stack([np.asarray(loss.predict(th)) for th in thetas])
            mean, var = ys.mean(axis=0), ys.var(axis=0)
        return Predictive(mean[..., drop:, :], var[..., drop:, :])
