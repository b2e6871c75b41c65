"""Latent ODEs for irregularly sampled series: a backward GRU encoder, a latent Neural ODE, a decoder.

Rubanova, Chen & Duvenaud (2019), *Latent ODEs for irregularly-sampled time
series*, NeurIPS; seed 004 Tables 5.2 and 6.3 (ERNODE/SRNODE and the local
regularisers on a latent ODE). The generative model:

    z₀ ~ q(z₀ | x) = N(μ, diag σ²),   z(t) = ODESolve(f_θ, z₀, t),   x(t) ~ N(W z(t) + b, s² I)

with the recognition network q run **backwards in time** over the observed
entries, and training by the evidence lower bound (ELBO) on the observed
entries only.

**Design.** The latent solve is an ordinary :class:`pyodejl.ObservationLoss`
whose initial state is a function of θ (its ``initial`` map: the encoder's
reparameterised sample z₀ = μ + σ·ε). Everything the library does to an ODE
loss — the discrete gradient and ``direct-*`` Hessians through the
frozen-grid replay, the regularisers (ERNODE, SRNODE, local terms, TayNODE, …),
statistics of the solve — then applies to the latent ODE unchanged, and the
encoder is differentiated through z₀ inside the same replay. All series share
one time grid (the union of their observation times: a common grid with masks).

**Encoder** (a GRU, Cho et al. 2014, in place of Rubanova's ODE-RNN; the brief
of issue 17 allows either): at each grid time, from the last to the first, the
input ``[x·m, m, Δt]`` (values times mask, the mask, the time to the later
update) updates h only where the series has at least one observed entry, so a
time with nothing observed, padding included, leaves h unchanged; one last
update with no observation carries the gap from the first observation back to
t₀. A linear map of h gives μ and σ = softplus(·).

**θ** (flat float64): ``[latent vector field θ (ode.num_params), encoder θ,
decoder θ]``; the encoder is three GRU gate layers ``(H, I + H)`` + bias (update,
reset, candidate; I = 2C + 1) then the output layer ``(2L, H)`` + bias; the
decoder is one layer ``(C, L)`` + bias. Every layer is weight row-major then
bias, initialised by :func:`pyodejl.models.mlp.linear_layers_init`.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit, to_device
from pyodejl._validation import check_finite, check_integer, check_number, check_theta, check_times
from pyodejl.derivatives.ode_loss import ObservationLoss
from pyodejl.models.mlp import linear_layers_init

__all__ = ["LatentODE", "LatentODELoss", "gaussian_kl"]


def gaussian_kl(mu, sigma):
    """KL(N(μ, diag σ²) ‖ N(0, I)) per row: ``(..., L) -> (...)``, the closed form
    ½ Σ (σ² + μ² − 1 − 2 log σ)."""
    return 0.5 * jnp.sum(sigma**2 + mu**2 - 1.0 - 2.0 * jnp.log(sigma), axis=-1)


class LatentODE(eqx.Module):
    """A latent ODE: backward GRU encoder → latent :class:`pyodejl.NeuralODE` → linear decoder.

    Args:
        ode: the latent :class:`pyodejl.NeuralODE` (any vector field with a fixed
            state dimension, e.g. ``pj.NeuralODE(pj.MLP((L, 32, L)))``); its data
            dimension is the latent width L (augmentation is allowed).
        data_dim: C, channels of the observed series.
        hidden_dim: H, the encoder's GRU width (default 32).
        obs_std: s, the fixed observation noise of the Gaussian likelihood
            (default 0.01, as Rubanova et al.).

    The object is immutable and hashable (it keys compiled code). θ layout: see
    the module docstring; :meth:`split` cuts θ into its three parts.
    """

    ode: object = eqx.field(static=True)
    data_dim: int = eqx.field(static=True)
    hidden_dim: int = eqx.field(static=True)
    obs_std: float = eqx.field(static=True)

    def __init__(self, ode, data_dim: int, hidden_dim: int = 32, obs_std: float = 0.01):
        if not (callable(getattr(ode, "rhs", None)) and hasattr(ode, "solver")):
            raise TypeError(f"ode must be a pyodejl.NeuralODE, got {type(ode).__name__}")
        if ode.data_dim is None:
            raise ValueError("the latent NeuralODE needs a vector field with a fixed state dimension (state_dim)")
        self.ode = ode
        self.data_dim = check_integer(data_dim, "data_dim")
        self.hidden_dim = check_integer(hidden_dim, "hidden_dim")
        self.obs_std = check_number(obs_std, "obs_std")

    # ---- layout ---------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        """L: the width of z₀ (the latent ODE's data dimension)."""
        return int(self.ode.data_dim)

    def encoder_shapes(self) -> list[tuple[int, int]]:
        """``(n_out, n_in)`` of the encoder's layers in θ order: three GRU gates, then the output."""
        H, I = self.hidden_dim, 2 * self.data_dim + 1
        return [(H, I + H)] * 3 + [(2 * self.latent_dim, H)]

    def decoder_shapes(self) -> list[tuple[int, int]]:
        """``(n_out, n_in)`` of the decoder's one layer."""
        return [(self.data_dim, self.latent_dim)]

    @staticmethod
    def _count(shapes) -> int:
        return sum(o * i + o for o, i in shapes)

    @property
    def num_encoder_params(self) -> int:
        return self._count(self.encoder_shapes())

    @property
    def num_decoder_params(self) -> int:
        return self._count(self.decoder_shapes())

    @property
    def num_params(self) -> int:
        """p = vector field + encoder + decoder parameters."""
        return self.ode.num_params + self.num_encoder_params + self.num_decoder_params

    def split(self, theta):
        """``(θ_vf, θ_encoder, θ_decoder)`` of a flat θ ``(p,)``."""
        a = self.ode.num_params
        b = a + self.num_encoder_params
        return theta[:a], theta[a:b], theta[b:]

    def init(self, seed: int = 0) -> np.ndarray:
        """Initial θ ``(p,)``: the vector field's ``init(seed)``, then the encoder and decoder
        layers by :func:`~pyodejl.models.mlp.linear_layers_init` from ``default_rng([seed, 1])``."""
        seed = check_integer(seed, "seed", minimum=0)
        rest = linear_layers_init(np.random.default_rng([seed, 1]), self.encoder_shapes() + self.decoder_shapes())
        return np.concatenate([self.ode.init(seed), rest])

    @staticmethod
    def _layers(theta, shapes):
        out, k = [], 0
        for o, i in shapes:
            w = theta[k : k + o * i].reshape(o, i)
            out.append((w, theta[k + o * i : k + o * i + o]))
            k += o * i + o
        return out

    # ---- networks (pure JAX) --------------------------------------------------------
    def encode(self, theta_enc, times, values, mask):
        """q(z₀ | observations) = N(μ, σ²), by the GRU run backwards over the grid.

        Args:
            theta_enc: ``(num_encoder_params,)``.
            times: ``(B, T)`` observation times (increasing along T).
            values: ``(B, T, C)``; only entries where ``mask`` is 1 are read.
            mask: ``(B, T, C)`` 1 where observed, else 0.

        Returns:
            ``(μ, σ)``, each ``(B, L)``, σ > 0.
        """
        (wz, bz), (wr, br), (wh, bh), (wo, bo) = self._layers(theta_enc, self.encoder_shapes())
        times, values = jnp.asarray(times, dtype=jnp.float64), jnp.asarray(values, dtype=jnp.float64)
        mask = jnp.asarray(mask, dtype=jnp.float64)
        inputs = jnp.concatenate([values * mask, mask], axis=-1)  # values · mask: unobserved entries never enter
        seen = jnp.any(mask > 0, axis=-1)  # (B, T)

        def gru(h, x):
            xh = jnp.concatenate([x, h], axis=-1)
            z = jax.nn.sigmoid(xh @ wz.T + bz)
            r = jax.nn.sigmoid(xh @ wr.T + br)
            cand = jnp.tanh(jnp.concatenate([x, r * h], axis=-1) @ wh.T + bh)
            return (1.0 - z) * h + z * cand

        def step(carry, k):
            h, t_later = carry
            t = times[:, k]
            x = jnp.concatenate([inputs[:, k], (t_later - t)[:, None]], axis=-1)
            update = seen[:, k]
            h = jnp.where(update[:, None], gru(h, x), h)
            return (h, jnp.where(update, t, t_later)), None

        B = values.shape[0]
        h0 = jnp.zeros((B, self.hidden_dim), dtype=jnp.float64)
        ks = jnp.arange(times.shape[1] - 1, -1, -1)
        (h, t_first), _ = jax.lax.scan(step, (h0, times[:, -1]), ks)
        gap = jnp.concatenate([jnp.zeros_like(inputs[:, 0]), (t_first - times[:, 0])[:, None]], axis=-1)
        h = gru(h, gap)
        out = h @ wo.T + bo
        L = self.latent_dim
        return out[:, :L], jax.nn.softplus(out[:, L:]) + 1e-6

    def decode(self, theta_dec, z):
        """Observation means W z + b: ``z`` ``(..., L)`` -> ``(..., C)``."""
        ((w, b),) = self._layers(theta_dec, self.decoder_shapes())
        return z @ w.T + b

    # ---- objective and prediction -----------------------------------------------------
    def loss(self, times, values, observed_mask, **kwargs) -> LatentODELoss:
        """The negative-ELBO objective on these series; see :class:`LatentODELoss`."""
        return LatentODELoss(self, times, values, observed_mask, **kwargs)

    def predict(self, theta, times, values, observed_mask, return_stats: bool = False):
        """Reconstruction at every grid time with z₀ = μ (the mean of q).

        Args:
            theta: ``(num_params,)``.
            times: ``(T,)`` grid (or ``(B, T)``), as :class:`LatentODELoss`.
            values: ``(B, T, C)``.
            observed_mask: ``(B, T, C)``, the entries the encoder reads.
            return_stats: also return the latent solve's
                :class:`~pyodejl.solving.SolveStats` (steps, NFE).

        Returns:
            ``(B, T, C)`` predicted values (and the stats).
        """
        theta = check_theta(theta, self.num_params)
        ts, tb, values, mask = check_series(times, values, observed_mask, self.data_dim)
        vf, enc, dec = self.split(theta)
        mu = _encode_mean(self, to_device(enc), to_device(tb), to_device(values), to_device(mask))
        sol = self.ode.solve(vf, ts, np.asarray(mu))
        pred = np.asarray(_decode(self, to_device(dec), to_device(sol.ys[..., : self.latent_dim])))
        return (pred, sol.stats) if return_stats else pred

    def interpolation_mse(self, theta, times, values, observed_mask, target_mask) -> float:
        """Mean squared error of :meth:`predict` (from the observed entries) on the held-out ``target_mask`` entries."""
        values = np.asarray(values, dtype=np.float64)
        target = np.asarray(target_mask)
        if target.shape != values.shape:
            raise ValueError(
                f"target_mask must have the shape of values (B, T, C) = {values.shape}, got {target.shape}"
            )
        target = target.astype(bool)
        if not target.any():
            raise ValueError("target_mask selects no entry: nothing to score")
        if np.any(target & np.asarray(observed_mask, dtype=bool)):
            raise ValueError("target_mask overlaps observed_mask: held-out entries must not be shown to the encoder")
        pred = self.predict(theta, times, values, observed_mask)
        return float(np.mean((pred[target] - values[target]) ** 2))


@jit(static_argnums=0)
def _encode_mean(model, enc, times, values, mask):
    return model.encode(enc, times, values, mask)[0]


@jit(static_argnums=0)
def _decode(model, dec, z):
    return model.decode(dec, z)


def check_series(times, values, observed_mask, data_dim):
    """``(ts (T,), times (B, T), values (B, T, C), mask (B, T, C) float)``, with clear errors.

    ``times`` is the shared grid ``(T,)`` or one row of it per series ``(B, T)``;
    unobserved entries of ``values`` may be NaN (they are zeroed).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[2] != data_dim:
        raise ValueError(f"values must have shape (B, T, {data_dim}), got {values.shape}")
    B, T, _ = values.shape
    mask = np.asarray(observed_mask)
    if mask.shape != values.shape:
        raise ValueError(f"observed_mask must have the shape of values (B, T, C) = {values.shape}, got {mask.shape}")
    if not (mask.dtype == bool or np.all((mask == 0) | (mask == 1))):
        raise ValueError("observed_mask must hold booleans or 0/1 entries")
    mask = mask.astype(bool)
    empty = np.flatnonzero(~mask.any(axis=(1, 2)))
    if empty.size:
        raise ValueError(
            f"series {empty[:5].tolist()} have no observed entry; the encoder needs at least one observation "
            "per series (drop them or observe more entries)"
        )
    tarr = np.asarray(times, dtype=np.float64)
    if tarr.ndim == 2:
        if tarr.shape != (B, T) or not np.all(tarr == tarr[:1]):
            raise ValueError(
                f"times must be the shared grid (T,) = ({T},) or (B, T) = {(B, T)} with equal rows "
                f"(all series share one grid; mask what a series does not observe), got {tarr.shape}"
            )
        tarr = tarr[0]
    if tarr.shape != (T,):
        raise ValueError(f"times must have shape ({T},) or ({B}, {T}) to match values {values.shape}, got {tarr.shape}")
    ts = check_times(tarr, "times")
    values = np.where(mask, values, 0.0)
    check_finite(values, "values (observed entries)")
    return ts, np.broadcast_to(ts, (B, T)).copy(), values, mask.astype(np.float64)


@dataclass(frozen=True)
class _LatentStart:
    """z₀ = μ + σ·ε: the loss's initial-state map (θ_extra = [encoder θ, decoder θ])."""

    model: LatentODE

    def __call__(self, extra, data):
        times, values, mask, eps = data
        mu, sigma = self.model.encode(extra[: self.model.num_encoder_params], times, values, mask)
        return mu + sigma * eps


@dataclass(frozen=True)
class _NegativeELBO:
    """−ELBO per observed entry: (Σ masked Gaussian NLL + β Σ_b KL_b) / number of observed entries."""

    model: LatentODE
    kl_weight: float

    def __call__(self, extra, Y, data):
        m = self.model
        times, values, mask, _ = data
        enc, dec = extra[: m.num_encoder_params], extra[m.num_encoder_params :]
        pred = m.decode(dec, Y[..., : m.latent_dim])
        s = m.obs_std
        nll = 0.5 * ((values - pred) / s) ** 2 + jnp.log(s) + 0.5 * jnp.log(2.0 * jnp.pi)
        # the encoder runs again for q's parameters; under jit XLA shares it with the initial map
        mu, sigma = m.encode(enc, times, values, mask)
        return (jnp.sum(nll * mask) + self.kl_weight * jnp.sum(gaussian_kl(mu, sigma))) / jnp.sum(mask)


def _noise(seed, B: int, L: int) -> np.ndarray:
    if seed is None:
        return np.zeros((B, L))
    return np.random.default_rng(check_integer(seed, "noise_seed", minimum=0)).standard_normal((B, L))


class LatentODELoss(ObservationLoss):
    """The negative ELBO of a :class:`LatentODE` on masked, irregular series (an :class:`pyodejl.ObservationLoss`).

    L(θ) = [Σ_{b,t,c} m_btc · (−log N(x_btc; x̂_btc, s²)) + β Σ_b KL(q(z₀,b) ‖ N(0, I))] / Σ m
    + Σᵢ wᵢ Rᵢ, with x̂ the decoded latent solve from z₀ = μ + σ·ε. Dividing the
    ELBO by the number of observed entries (a constant of the data) keeps its
    balance and gives a loss of order one per entry.

    Args:
        model: the :class:`LatentODE`.
        times: ``(T,)`` the grid all series share (the union of their observation
            times), strictly increasing; ``(B, T)`` with equal rows is accepted.
            ``times[0]`` is the time of z₀.
        values: ``(B, T, C)`` series; entries outside ``observed_mask`` are never
            read (NaN allowed there).
        observed_mask: ``(B, T, C)`` bool or 0/1, the entries the model sees.
        noise_seed: seeds the reparameterisation noise ε ``(B, L)`` ~ N(0, I)
            (default 0); None: ε = 0 (z₀ = μ). The loss is a deterministic function
            of (θ, ε); :meth:`reseed` draws a new ε (e.g. per training step).
        kl_weight: β (default 1: the ELBO).
        regularizers: loss terms on the latent solve (:mod:`pyodejl.regularizers`).
        devices: split the batch over JAX devices (see :class:`pyodejl.ObservationLoss`).

    Raises:
        ValueError: a mask whose shape differs from ``values``, a series with no
            observed entry, times that do not match ``values``, non-finite
            observed values.

    The ``"discrete"`` gradient (the default) and the ``direct-*`` Hessians
    differentiate through the encoder; the continuous adjoints refuse (z₀ depends on θ).
    """

    def __init__(self, model: LatentODE, times, values, observed_mask, *, noise_seed=0, kl_weight: float = 1.0,
                 regularizers=None, devices=None):
        if not isinstance(model, LatentODE):
            raise TypeError(f"model must be a pyodejl.LatentODE, got {type(model).__name__}")
        ts, tb, vals, mask = check_series(times, values, observed_mask, model.data_dim)
        self.latent_model = model
        self.noise_seed = noise_seed
        eps = _noise(noise_seed, vals.shape[0], model.latent_dim)
        cost = _NegativeELBO(model, check_number(kl_weight, "kl_weight", allow_zero=True))
        super().__init__(model.ode, ts, None, cost, data=(tb, vals, mask, eps),
                         num_extra_params=model.num_encoder_params + model.num_decoder_params,
                         regularizers=regularizers, devices=devices, initial=_LatentStart(model))

    @property
    def noise(self) -> np.ndarray:
        """ε ``(B, L)``, the current reparameterisation noise."""
        return np.asarray(self._host_batch[0][3])

    def reseed(self, noise_seed) -> LatentODELoss:
        """Draw a new ε from ``noise_seed`` (None: ε = 0), in place; returns self."""
        tb, vals, mask, eps = self._host_batch[0]
        self.noise_seed = noise_seed
        self._host_batch = ((tb, vals, mask, _noise(noise_seed, *eps.shape)), self._host_batch[1])
        return self.place(self.devices)  # new data: the per-θ solve cache is dropped

    def reconstruction(self, theta) -> np.ndarray:
        """The decoded latent solve at the grid times from this loss's z₀ = μ + σ·ε, ``(B, T, C)``."""
        theta = self.check_theta(theta)
        _, _, dec = self.latent_model.split(theta)
        ys = self.solve(theta).ys[..., : self.latent_model.latent_dim]
        return np.asarray(_decode(self.latent_model, to_device(dec), to_device(ys)))
