"""Cost of seed 001's stiffness-penalised ResNet training step: vectorised vs the seed's loop.

Seed 001 (Hudson et al., Sandia 2022) penalises the spectral radius of every layer's
Jacobian ``Jₙ,ᵢ = diag(σ'(Wₙxₙ₋₁⁽ⁱ⁾ + bₙ))Wₙ`` for every sample, by Gelfand's formula
(k = 2¹⁰, ten normalised squarings), and reports ~100× the wall time of plain training.
The setup here is the seed's Alpine02 one: ResNet width 20, depth 10, tanh, 2-D inputs,
900 training points in 20 mini-batches of 45, Adam (lr 1e-3), loss
``√(Σᵢ|F(xᵢ) − yᵢ|² + λ Σᵢ pᵢ²)`` with ``pᵢ = Σₙ ρ_G(Jₙ,ᵢ)`` and λ = 1e-3.

Timed in one run, per epoch (20 optimiser steps, each a loss gradient and an Adam update):

* ``plain``: λ = 0, no penalty (one jitted step);
* ``penalised (vectorised)``: ``pyodejl.stiffness.layer_stiffness`` builds the 450
  Jacobians as one (10, 45, 20, 20) array and runs Gelfand batched, in one jitted step;
* ``penalised (seed way)``: the same penalty as a Python loop over layers and samples,
  one ``spectral_radius(J, "gelfand")`` call per matrix (each call itself compiled),
  differentiated by ``jax.grad`` op by op — the structure of a PyTorch eager loop.
  Timed on ``--seed-batches`` batches and scaled to 20 ("per-epoch equivalent").
  JAX's op-by-op dispatch is slower than PyTorch's eager mode, so this overstates what
  the seed's own loop cost; it is the same loop, not the seed's implementation;
* ``penalised, sampled``: ``Σᵢ pᵢ²`` replaced by its unbiased estimate from ``--draws``
  random (sample, layer, layer) triples per step
  (:func:`pyodejl.stiffness.sampled_penalty_sq_sum`; the triples
  are drawn per epoch inside the timed loop, as in training). Not the same loss per
  step, but the same loss in expectation: the script checks the mean of 20 000 draws
  against the exact penalty.

Why "penalised ≤ 2× plain" is out of reach for the exact penalty: per step the penalty's forward pass is
450 matrices × 10 squarings × 20³ = 3.6e7 multiply-adds, the network's 1.8e5 (the
script prints both) — 200× more arithmetic, and the derivative adds about 2× on top,
while the plain step is already overhead-bound (~0.2 ms). The sampled estimate forms 2
Jacobians per draw instead of 450.

The exact variants compute the same loss (checked: values and gradients agree to 1e-12).
Times are steady state (compilation excluded: one warm-up epoch), best of ``--repeats``;
both wall time and process CPU time (all threads) are reported, the latter being the
steadier number on a shared machine.

    python benchmarks/stiffness_penalty.py [--repeats 3] [--seed-batches 1] [--draws 1]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import pyodejl  # noqa: F401  (float64)
from pyodejl.experiments.tasks import alpine02
from pyodejl.models.resnet import ResNet
from pyodejl.stiffness import (
    draw_penalty_triples,
    layer_stiffness,
    penalised_loss,
    sampled_penalty_sq_sum,
    spectral_radius,
)

WIDTH, DEPTH, IN_DIM, N_TRAIN, BATCH, LAM, LR = 20, 10, 2, 900, 45, 1e-3, 1e-3


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5.0, 5.0, size=(N_TRAIN, IN_DIM))
    y = alpine02(x)[:, None]
    return x.reshape(-1, BATCH, IN_DIM), y.reshape(-1, BATCH, 1)


NET = ResNet(IN_DIM, WIDTH, DEPTH, 1, activation="tanh", T=1.0)


def data_term(theta, x, y):
    return jnp.sum((NET(theta, x) - y) ** 2)


def loss_plain(theta, x, y):
    return jnp.sqrt(data_term(theta, x, y))


def loss_vectorised(theta, x, y):
    p = jnp.sum(layer_stiffness(NET, theta, x, "spectral_radius", method="gelfand"), axis=0)  # (B,)
    return jnp.sqrt(data_term(theta, x, y) + LAM * jnp.sum(p**2))


def loss_seed_way(theta, x, y):
    """The same loss with the penalty as a Python loop over samples and layers."""
    p = NET.unflatten(theta)
    h = NET.step
    penalties = []
    for i in range(x.shape[0]):
        xi = p["W_in"] @ x[i] + p["b_in"]
        pi = 0.0
        for n in range(DEPTH):
            z = p["Ws"][n] @ xi + p["bs"][n]
            J = (1.0 - jnp.tanh(z) ** 2)[:, None] * p["Ws"][n]
            pi = pi + spectral_radius(J, "gelfand")
            xi = xi + h * jnp.tanh(z)
        penalties.append(pi)
    return jnp.sqrt(data_term(theta, x, y) + LAM * jnp.sum(jnp.stack(penalties) ** 2))


def loss_sampled(theta, x, y, triples):
    return penalised_loss(NET, theta, x, y[:, 0], "stiff-sampled", LAM, triples)


OPT = optax.adam(LR)


def make_step(loss, jit=True):
    def step(theta, state, x, y, *extra):
        value, g = jax.value_and_grad(loss)(theta, x, y, *extra)
        updates, state = OPT.update(g, state, theta)
        return optax.apply_updates(theta, updates), state, value

    return jax.jit(step) if jit else step


def epoch(step, theta, state, X, Y, batches=None, draws=None, rng=None):
    n = len(X) if batches is None else batches
    triples = None if draws is None else draw_penalty_triples(rng, n, BATCH, DEPTH, draws)
    for b in range(n):
        extra = () if triples is None else (triples[b],)
        theta, state, _ = step(theta, state, X[b], Y[b], *extra)
    jax.block_until_ready(theta)
    return theta, state


def time_epochs(step, theta0, X, Y, repeats, batches=None, draws=None):
    """Best wall time and best process CPU time (all threads) of ``repeats`` epochs."""
    state = OPT.init(theta0)
    kw = {} if draws is None else {"draws": draws, "rng": np.random.default_rng(0)}
    epoch(step, theta0, state, X, Y, batches=1, **kw)  # warm-up: compilation
    wall = cpu = np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        epoch(step, theta0, state, X, Y, batches, **kw)
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed-batches", type=int, default=1, help="batches timed for the seed-way loop")
    ap.add_argument("--draws", type=int, default=1, help="triples per step of the sampled penalty (default 1)")
    args = ap.parse_args()

    X, Y = data()
    theta = jnp.asarray(NET.init(seed=0))
    nb = len(X)

    # the three losses agree (value and gradient) on one batch
    v_vec, g_vec = jax.jit(jax.value_and_grad(loss_vectorised))(theta, X[0], Y[0])
    v_seed, g_seed = jax.value_and_grad(loss_seed_way)(theta, X[0], Y[0])
    rel = float(jnp.max(jnp.abs(g_vec - g_seed)) / jnp.max(jnp.abs(g_vec)))
    print(f"check: loss {float(v_vec):.12g} vs {float(v_seed):.12g}; max |grad diff| / max |grad| = {rel:.1e}")
    assert abs(float(v_vec) - float(v_seed)) <= 1e-12 * abs(float(v_vec)) and rel < 1e-10

    # the sampled estimate is unbiased: mean over many draws vs the exact Σᵢpᵢ²
    states = NET.hidden_states(theta, X[0])
    exact = float(jnp.sum(jnp.sum(layer_stiffness(NET, theta, X[0], "spectral_radius", method="gelfand"), 0) ** 2))
    many = draw_penalty_triples(np.random.default_rng(1), 20000, BATCH, DEPTH, 1)
    ests = np.asarray(jax.jit(jax.vmap(lambda t: sampled_penalty_sq_sum(NET, theta, states, t)))(jnp.asarray(many)))
    print(f"check: sampled Σpᵢ², mean of {len(ests)} single draws {ests.mean():.6g} ± {ests.std() / len(ests) ** 0.5:.2g}"
          f" (standard error) vs exact {exact:.6g}; one draw's relative std {ests.std() / exact:.2f}")

    t_plain = time_epochs(make_step(loss_plain), theta, X, Y, args.repeats)
    t_samp = time_epochs(make_step(loss_sampled), theta, X, Y, args.repeats, draws=args.draws)
    t_vec = time_epochs(make_step(loss_vectorised), theta, X, Y, args.repeats)
    t_seed = time_epochs(make_step(loss_seed_way, jit=False), theta, X, Y, 1, batches=args.seed_batches)
    t_seed = tuple(t * nb / args.seed_batches for t in t_seed)

    print(f"\nResNet width {WIDTH}, depth {DEPTH}, tanh; {N_TRAIN} points in {nb} batches of {BATCH}; "
          f"Gelfand k = 2^10; Adam; {jax.devices()[0].platform.upper()}, {jax.device_count()} device(s), "
          f"{os.cpu_count()} CPU core(s); load average {os.getloadavg()[0]:.1f}")
    print(f"{'per epoch (20 steps)':<34} {'wall [s]':>10} {'/ plain':>8} {'CPU [s]':>10} {'/ plain':>8}")
    rows = [("plain (no penalty)", t_plain), ("penalised, vectorised (pyodejl)", t_vec),
            (f"penalised, seed way (loop){'*' if args.seed_batches < nb else ''}", t_seed),
            (f"penalised, sampled ({args.draws} draw/step)", t_samp)]
    for name, (w, c) in rows:
        print(f"{name:<34} {w:>10.4f} {w / t_plain[0]:>8.1f} {c:>10.4f} {c / t_plain[1]:>8.1f}")
    if args.seed_batches < nb:
        print(f"* timed on {args.seed_batches} batch(es), scaled to {nb}")
    print(f"\nvectorised speed-up over the seed way: {t_seed[0] / t_vec[0]:.0f}x wall, "
          f"{t_seed[1] / t_vec[1]:.0f}x CPU; penalised / plain: {t_vec[0] / t_plain[0]:.1f}x wall, "
          f"{t_vec[1] / t_plain[1]:.1f}x CPU (target <= 2x)")
    print(f"sampled ({args.draws} draw/step) / plain: {t_samp[0] / t_plain[0]:.2f}x wall, "
          f"{t_samp[1] / t_plain[1]:.2f}x CPU (target <= 2x)")
    flops_pen = DEPTH * BATCH * 10 * 2 * WIDTH**3
    flops_plain = DEPTH * BATCH * 2 * WIDTH**2
    print(f"forward multiply-adds per step: penalty {flops_pen / 2:.2e} (450 matrices x 10 squarings x 20^3), "
          f"network {flops_plain / 2:.2e}: ratio {flops_pen / flops_plain:.0f}")


if __name__ == "__main__":
    main()
