"""Laplace predictive uncertainty of a small Neural ODE against NUTS and a deep ensemble (issue 19, experiment 1).

Data: the Lotka–Volterra system x′ = αx − βxy, y′ = δxy − γy (α = 2/3, β = 4/3,
γ = δ = 1, from (1.2, 0.8)), observed at 30 irregular times drawn uniformly in
(0, 6] with Gaussian noise of standard deviation 0.05 (both drawn from
``data_seed``). Held out: 20 noisy observations at other random times in (0, 6]
(interpolation) and 20 in (6, 9] (extrapolation).

Model: ``pj.MLP((2, 16, 2))`` (tanh, p = 82) solved by rk4 with step 0.05, so the
loss is the same smooth function of θ for the MAP, the Laplace approximation and
NUTS. MAP: Adam, full batch. Then each row estimates the predictive at the held-out
times:

* ``laplace-glm``: :class:`pyodejl.Laplace` (GGN, full) with prior precision δ and
  noise σ maximising the evidence, linearised (GLM) predictive;
* ``laplace-samples``: the same posterior, predictive from 200 posterior samples;
* ``nuts``: the reference posterior: blackjax's NUTS (window adaptation, 300 warm-up
  steps, 400 draws) on the same likelihood and prior (the Laplace's σ and δ),
  initialised at the MAP (its divergent transitions are counted);
* ``ensemble``: a deep ensemble of 5 MAPs from different initialisations (Lakshminarayanan
  et al. 2017), its spread as the epistemic std.

Columns: the root mean square of the epistemic predictive std over the held-out
points; the coverage of the 90 % intervals mean ± 1.645·√(var + σ²) of the held-out
noisy observations; the RMSE of the predictive mean; the CPU time of the method
after the MAP (the Laplace rows after one untimed pass that compiles them). Each run
also records the predictive bands on a dense grid for the figure (``pyodejl report DIR --figures OUT``).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import pyodejl as pj
from pyodejl.derivatives.ode_loss import mse_cost
from pyodejl.experiments.declaration import Column, Experiment, RunSpec, Target
from pyodejl.experiments.trainer import Measurement, Problem, Training, train

ALPHA, BETA, GAMMA, DELTA = 2.0 / 3.0, 4.0 / 3.0, 1.0, 1.0
Y0 = np.array([1.2, 0.8])
T_TRAIN, T_END, NOISE = 6.0, 9.0, 0.05
Z90 = 1.6448536269514722  # the standard normal's 95 % quantile: a central 90 % interval
MODEL = pj.NeuralODE(pj.MLP((2, 16, 2)), solver="rk4", dt=0.05)


def lotka_volterra(ts):
    """The true states at ``ts`` (DOP853 at 1e-12): ``(T, 2)``."""
    from scipy.integrate import solve_ivp

    rhs = lambda t, u: [ALPHA * u[0] - BETA * u[0] * u[1], DELTA * u[0] * u[1] - GAMMA * u[1]]
    return solve_ivp(rhs, (0.0, float(ts[-1])), Y0, t_eval=ts, method="DOP853", rtol=1e-12, atol=1e-12).y.T


def data(seed: int, n_train: int, n_held: int) -> dict:
    """Training and held-out observations, all drawn from ``seed``."""
    rng = np.random.default_rng([seed, 19])
    t_train = np.sort(rng.uniform(0.0, T_TRAIN, n_train))
    t_interp = np.sort(rng.uniform(0.0, T_TRAIN, n_held))
    t_extrap = np.sort(rng.uniform(T_TRAIN, T_END, n_held))
    out = {}
    for name, t in (("train", t_train), ("interp", t_interp), ("extrap", t_extrap)):
        out[name] = (t, lotka_volterra(np.concatenate([[0.0], t]))[1:] + NOISE * rng.standard_normal((len(t), 2)))
    return out


def observation_loss(times, values, model=MODEL):
    """MSE of ``model``'s states (default: :data:`MODEL`) at 0 and ``times`` against the known start
    ``Y0`` and ``values``.

    The solve starts from the known Y0 at t = 0, whose residual is zero for every θ;
    the likelihood counts it as two more observed scalars (N = 2 + 2·len(times)), which
    shifts the evidence's σ by a factor √(N / (N − 2)) at most (3 % for 30 times).
    """
    ts = np.concatenate([[0.0], times])
    targets = np.concatenate([Y0[None], np.asarray(values)])
    return pj.ObservationLoss(model, ts, Y0, mse_cost, data=targets[None])


def settings(quick: bool) -> dict:
    return {"data_seed": 0, "n_train": 30, "n_held": 20, "steps": 30 if quick else 3000, "lr": 1e-2,
            "nuts_warmup": 10 if quick else 300, "nuts_draws": 10 if quick else 400,
            "samples": 20 if quick else 200, "ensemble": 2 if quick else 5, "band_points": 91}


def _map(seed, s, loss):
    theta0 = MODEL.vector_field.init(seed)
    problem = Problem(theta0=theta0, objective=lambda step, indices: loss, num_samples=1)
    return train(problem, Training(steps=s["steps"], lr=s["lr"]), seed=seed)["theta"]


def _coverage(mean, std, values, noise):
    half = Z90 * np.sqrt(std**2 + noise**2)
    return float(np.mean(np.abs(values - mean) <= half))


def _summary(predict, sets, noise, s):
    """The columns from ``predict(times) -> (mean (T, 2), epistemic std (T, 2))``."""
    out = {}
    for name in ("interp", "extrap"):
        t, values = sets[name]
        mean, std = predict(t)
        out[f"std_{name}"] = float(np.sqrt(np.mean(std**2)))
        out[f"coverage_{name}"] = _coverage(mean, std, values, noise)
        out[f"rmse_{name}"] = float(np.sqrt(np.mean((mean - values) ** 2)))
    grid = np.linspace(0.0, T_END, s["band_points"])[1:]
    mean, std = predict(grid)
    out.update(band_t=grid.tolist(), band_mean=np.asarray(mean).tolist(), band_std=np.asarray(std).tolist())
    return out


def _solutions(thetas, times):
    loss = observation_loss(times, np.zeros((len(times), 2)))
    return np.stack([np.asarray(loss.predict(th))[1:] for th in thetas])


def _laplace(loss, theta):
    la = pj.Laplace(loss, theta, noise_std=0.1, prior_precision=1.0)
    la.optimize()
    return la


def _nuts(loss, theta_map, la, seed, s):
    try:
        import blackjax
    except ImportError as exc:
        raise ImportError("the nuts row samples with blackjax: pip install 'pyodejl[laplace]'") from exc

    fn, args = loss.direct_function(theta_map)
    n, sigma, delta = la.num_observations, la.noise_std, la.prior_precision
    logdensity = lambda th: -n * fn(th, *args) / (2 * sigma**2) - 0.5 * delta * jnp.sum(th**2)
    key_warm, key_draw = jax.random.split(jax.random.key(seed))
    # a high acceptance target: flat directions of θ reach fields whose rk4 solves blow up
    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity, target_acceptance_rate=0.9)
    (state, params), _ = warmup.run(key_warm, jnp.asarray(theta_map), num_steps=s["nuts_warmup"])
    kernel = jax.jit(blackjax.nuts(logdensity, **params).step)

    def one(state, key):
        state, info = kernel(key, state)
        return state, (state.position, info.is_divergent)

    _, (draws, divergent) = jax.lax.scan(one, state, jax.random.split(key_draw, s["nuts_draws"]))
    return np.asarray(draws), int(np.sum(divergent))


def setup(variant: str, seed: int, s: dict) -> RunSpec:
    sets = data(s["data_seed"], s["n_train"], s["n_held"])
    loss = observation_loss(*sets["train"])

    def measure(objective, theta):
        if variant.startswith("laplace"):
            # compile once untimed: the Laplace rows take well under a second after compilation,
            # which would otherwise dominate their time (NUTS and the ensemble run for minutes)
            _summary(lambda times: (lambda p: (p.mean[1:], np.sqrt(p.var[1:])))(
                _laplace(objective, theta).predictive(np.concatenate([[0.0], times]))), sets, 1.0, s)
        start = time.process_time()
        la = _laplace(objective, theta)
        extra = {"noise_std": la.noise_std, "prior_precision": la.prior_precision}
        if variant == "laplace-glm":
            def predict(times):
                p = la.predictive(np.concatenate([[0.0], times]))
                return p.mean[1:], np.sqrt(p.var[1:])
        elif variant == "laplace-samples":
            thetas = la.sample(s["samples"], seed)

            def predict(times):
                ys = _solutions(thetas, times)
                return ys.mean(0), ys.std(0)
        elif variant == "nuts":
            thetas, divergent = _nuts(objective, theta, la, seed, s)
            thetas = thetas[:: max(len(thetas) // s["samples"], 1)]
            extra["divergences"] = divergent

            def predict(times):
                ys = _solutions(thetas, times)
                return ys.mean(0), ys.std(0)
        else:  # ensemble
            members = [theta] + [_map(seed * 100 + k, s, objective) for k in range(1, s["ensemble"])]

            def predict(times):
                ys = _solutions(members, times)
                return ys.mean(0), ys.std(0)
        out = _summary(predict, sets, la.noise_std, s)
        return {**extra, **out, "method_cpu_s": time.process_time() - start}

    problem = Problem(theta0=MODEL.vector_field.init(seed), objective=lambda step, indices: loss, num_samples=1)
    return RunSpec(problem, Training(steps=s["steps"], lr=s["lr"]), (Measurement("uncertainty", measure),))


EXPERIMENT = Experiment(
    name="laplace-lv",
    title="Predictive uncertainty of a small Neural ODE: Laplace against NUTS and a deep ensemble",
    source="issue 19, experiment 1 (Lotka–Volterra)",
    variants=("laplace-glm", "laplace-samples", "nuts", "ensemble"),
    settings=settings,
    setup=setup,
    columns=(
        Column("std_interp", "std, interpolation", digits=3),
        Column("std_extrap", "std, extrapolation", digits=3),
        Column("coverage_interp", "90 % coverage, interp.", scale=100, digits=3),
        Column("coverage_extrap", "90 % coverage, extrap.", scale=100, digits=3),
        Column("rmse_interp", "RMSE, interp.", digits=3),
        Column("rmse_extrap", "RMSE, extrap.", digits=3),
        Column("noise_std", "σ (evidence)", digits=3),
        Column("divergences", "NUTS divergences", digits=3),
        Column("method_cpu_s", "CPU s after the MAP", digits=2),
    ),
    targets=(
        Target("std_interp", "laplace-glm", "nuts", "ratio", "<=", 1.25,
               "Laplace (GLM) predictive std within 25 % of NUTS's: interpolation, at most"),
        Target("std_interp", "laplace-glm", "nuts", "ratio", ">=", 0.75, "… and at least"),
        Target("std_extrap", "laplace-glm", "nuts", "ratio", "<=", 1.25, "… extrapolation, at most"),
        Target("std_extrap", "laplace-glm", "nuts", "ratio", ">=", 0.75, "… and at least"),
        Target("coverage_interp", "laplace-glm", "laplace-glm", "value", ">=", 0.85,
               "Laplace 90 % intervals cover ≥ 85 % of held-out observations (interpolation)"),
        Target("coverage_extrap", "laplace-glm", "laplace-glm", "value", ">=", 0.85, "… (extrapolation)"),
    ),
    quick_variants=("laplace-glm", "nuts"),
    notes="Epistemic std (the observation noise σ is added for the coverage only). Data from data_seed 0 for "
          "every run; the run's seed draws the initialisation, the posterior samples and NUTS's randomness.",
)
