"""Full Hessians of the discrete loss assembled from sensitivities and adjoints.

For an explicit Runge–Kutta scheme the discrete loss L(θ) = ℓ(Y_obs(θ)) is a
composition of vector-field evaluations K_k = f(x_k, θ) with linear algebra,
so its exact Hessian is (second-order adjoint of the discrete system)::

    H = Σ_obs S_oᵀ ∇²ℓ S_o + Σ_k [S_k; I]ᵀ ∇²_{(x,θ)}(μ_k · f)(x_k, θ) [S_k; I]

with S_k = ∂x_k/∂θ the forward sensitivity of the k-th evaluation's input and
μ_k = ∂L/∂K_k its discrete adjoint. Forward-over-reverse AD computes the same
matrix but carries p tangents through every hidden activation of every
evaluation; here the sensitivities are only ``(D, p)`` per evaluation and, for
a one-hidden-layer MLP f(x) = W₂σ(W₁x + b₁) + b₂, the curvature term has the
closed form (z = W₁x + b₁, g = W₂ᵀμ, dz = dW₁x + W₁dx + db₁)::

    d²(μ·f) = Σ_j g_j σ''(z_j) dz_j² + 2 μᵀdW₂(σ'(z)⊙dz) + 2 Σ_j g_j σ'(z_j)(dW₁dx)_j

so every sum over evaluations becomes a dense matrix product. The result equals
``direct-direct`` to round-off (tested) and is much faster for wide networks.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl.models.mlp import activation_fn
from pyodejl.solving.explicit_rk import tableau_of


def supports(objective) -> bool:
    """Whether the structured path applies: one-hidden-layer MLP, explicit solver, no extra θ."""
    model = getattr(objective, "model", None)
    return (
        model is not None
        and len(model.vector_field.sizes) == 3
        and tableau_of(model.solver) is not None
        and objective.num_params == model.num_params
    )


def _evaluations(model, theta, times, y0, eps):
    """Replay the frozen grid recording each vector-field call.

    ``eps`` ``(N, s, B, D)`` is added to every call's output so that its
    gradient is the discrete adjoint μ of each call. Returns the observed-state
    function's pieces: all node states ``(N+1, B, D)`` and per-call inputs
    ``(t, x)`` of shapes ``(N, s)`` and ``(N, s, B, D)``. Call (n, 0) is the
    evaluation at the start of step n that the step uses as its first stage
    (the previous step's last call for FSAL tableaux, or the initial one).
    """
    tab = tableau_of(model.solver)
    f = lambda t, y: model.rhs(t, y, theta)
    s = tab.stages

    def step(carry, inp):
        y, f0 = carry
        t0, t1, e = inp
        h = t1 - t0
        ks, ts_, xs = [f0], [t0], [y]
        for i, (ci, row) in enumerate(zip(tab.c, tab.a)):
            acc = sum(w * k for w, k in zip(row, ks) if w != 0.0)
            x = y + h * acc
            ti = t0 + ci * h
            ks.append(f(ti, x) + e[i + 1])
            ts_.append(ti)
            xs.append(x)
        y1 = y + h * sum(w * k for w, k in zip(tab.b, ks) if w != 0.0)
        f1 = ks[-1] if tab.fsal else f(t1, y1)
        # the next step's first call: carry its eps in slot 0 of the next step
        return (y1, f1), (y1, jnp.stack(ts_), jnp.stack(xs))

    N = times.shape[0] - 1
    pairs0, pairs1 = times[:-1], times[1:]
    # eps[n, 0] perturbs the value used as stage 0 of step n
    f_init = f(times[0], y0)

    def step_with_first(carry, inp):
        y, f0 = carry
        t0, t1, e = inp
        return step((y, f0 + e[0]), (t0, t1, e))

    (_, _), (ys, ts_all, xs_all) = jax.lax.scan(step_with_first, (y0, f_init), (pairs0, pairs1, eps))
    del N
    return jnp.concatenate([y0[None], ys]), ts_all, xs_all


def _sensitivities(model, theta, times, t_calls, x_calls):
    """Forward sensitivities S = ∂x/∂θ of every call input, by the linearised scheme.

    The Jacobians f_y and f_θ at every call input are computed in one batched
    evaluation; the scan over steps then only combines them. Returns
    ``(N + 1, B, D, p)`` at the nodes and ``(N, s, B, D, p)`` at the call inputs.
    """
    tab = tableau_of(model.solver)
    N, s, B, D = x_calls.shape
    p = theta.shape[0]
    f = lambda t, x, th: model.rhs(t, x, th)
    tt = jnp.broadcast_to(t_calls[:, :, None], (N, s, B)).reshape(-1)
    xx = x_calls.reshape(-1, D)
    fy = jax.vmap(jax.jacfwd(f, argnums=1), in_axes=(0, 0, None))(tt, xx, theta).reshape(N, s, B, D, D)
    fth = jax.vmap(jax.jacrev(f, argnums=2), in_axes=(0, 0, None))(tt, xx, theta).reshape(N, s, B, D, p)

    def step(Sy, inp):
        h, fy_n, fth_n = inp
        sks, Ss = [], []
        for i in range(s):
            row = tab.a[i - 1] if i > 0 else ()
            Sx = Sy + h * sum(w * k for w, k in zip(row, sks) if w != 0.0) if i > 0 else Sy
            sks.append(jnp.einsum("bde,bep->bdp", fy_n[i], Sx) + fth_n[i])
            Ss.append(Sx)
        Sy1 = Sy + h * sum(w * k for w, k in zip(tab.b, sks) if w != 0.0)
        return Sy1, (Sy1, jnp.stack(Ss))

    S0 = jnp.zeros((B, D, p), dtype=x_calls.dtype)
    _, (Sys, Ss) = jax.lax.scan(step, S0, (jnp.diff(times), fy, fth))
    return jnp.concatenate([S0[None], Sys]), Ss


@partial(jax.jit, static_argnums=0)
def structured_hessian(problem, theta, times, obs_index, y0, data):
    """The exact Hessian of the frozen-grid loss, ``(p, p)`` (see module docstring)."""
    model = problem.model
    mlp = model.vector_field
    tab = tableau_of(model.solver)
    N = times.shape[0] - 1
    B, D = y0.shape
    p = theta.shape[0]
    (w, n_in), _ = mlp.layer_shapes()[0]
    sigma = activation_fn(mlp.activation)

    # discrete adjoints μ of every call, and call inputs
    eps0 = jnp.zeros((N, tab.stages, B, D), dtype=y0.dtype)

    def loss_eps(eps):
        ys, t_calls, x_calls = _evaluations(model, theta, times, y0, eps)
        return problem.cost_of_states(theta, ys[obs_index], data), (ys, t_calls, x_calls)

    mu, (ys, t_calls, x_calls) = jax.grad(loss_eps, has_aux=True)(eps0)
    if tab.fsal:
        # stage 0 of step n ≥ 1 is the previous step's last call, already counted
        mu = mu.at[1:, 0].set(0.0)
    S_nodes, S_calls = _sensitivities(model, theta, times, t_calls, x_calls)

    # observation term Σ S_oᵀ ∇²ℓ S_o
    Yobs = ys[obs_index]  # (T, B, D)
    Sobs = S_nodes[obs_index].reshape(-1, p)  # (T·B·D, p)
    hl = jax.hessian(lambda Y: problem.cost_of_states(theta, Y, data))(Yobs)
    hl = hl.reshape(Sobs.shape[0], Sobs.shape[0])
    H = Sobs.T @ hl @ Sobs

    # flatten calls k = (n, i, b), skipping the slots that repeat an earlier call
    # (stage 0 of step n ≥ 1 for FSAL tableaux): they carry no adjoint weight
    keep = np.array(
        [n * tab.stages + i for n in range(N) for i in range(tab.stages) if not (tab.fsal and i == 0 and n > 0)]
    )
    K = len(keep) * B
    x = x_calls.reshape(N * tab.stages, B, D)[keep].reshape(K, D)
    t = jnp.broadcast_to(t_calls.reshape(N * tab.stages)[keep][:, None], (len(keep), B)).reshape(K)
    Sx = S_calls.reshape(N * tab.stages, B, D, p)[keep].reshape(K, D, p)
    m = mu.reshape(N * tab.stages, B, D)[keep].reshape(K, D)
    if mlp.time_dependent:
        x = jnp.concatenate([x, t[:, None]], axis=1)
        Sx = jnp.concatenate([Sx, jnp.zeros((K, 1, p), dtype=Sx.dtype)], axis=1)
    (W1, b1), (W2, _) = mlp.unflatten(theta)
    z = x @ W1.T + b1
    ds = jax.vmap(jax.vmap(jax.grad(sigma)))(z)
    d2s = jax.vmap(jax.vmap(jax.grad(jax.grad(sigma))))(z)
    g = m @ W2  # (K, w): W₂ᵀμ
    c = g * d2s
    xt = jnp.concatenate([x, jnp.ones((K, 1), dtype=x.dtype)], axis=1)  # (K, n_in + 1)

    o_w1, o_b1, o_w2 = 0, w * n_in, w * n_in + w
    # index of (W1[j, a] for a < n_in, b1[j] for a = n_in): rows of the first layer
    first = jnp.concatenate(
        [o_w1 + jnp.arange(w)[:, None] * n_in + jnp.arange(n_in)[None, :], (o_b1 + jnp.arange(w))[:, None]], axis=1
    )  # (w, n_in + 1)
    w2_idx = o_w2 + jnp.arange(D)[:, None] * w + jnp.arange(w)[None, :]  # (D, w)

    # Every sum over calls k is written as one matrix product over k.
    Sk = Sx.reshape(K, n_in * p)

    def over_calls(weights):  # Σ_k weights[k, r] S_k[d, q]  ->  (r, n_in, p)
        return (weights.T @ Sk).reshape(weights.shape[1], n_in, p)

    # Term 1: Jzᵀ diag(c) Jz with Jz = E + W₁S
    EE = jnp.einsum("kj,ka,kb->jab", c, xt, xt)  # (w, n_in+1, n_in+1)
    G = over_calls((c[:, :, None] * xt[:, None, :]).reshape(K, -1)).reshape(w, n_in + 1, n_in, p)
    ES = jnp.einsum("jd,jadp->jap", W1, G)  # (w, n_in+1, p)
    core = jnp.einsum("jd,kj,je->kde", W1, c, W1)  # (K, n_in, n_in)
    T = jnp.einsum("kde,kep->kdp", core, Sx).reshape(K * n_in, p)
    H = H + Sx.reshape(K * n_in, p).T @ T
    # cross terms X + Xᵀ: collect X by rows (contiguous), add its transpose once
    X = jnp.zeros_like(H)
    fi = first.reshape(-1)
    X = X.at[fi].add(ES.reshape(-1, p))
    H = H.at[first[:, :, None], first[:, None, :]].add(EE)

    # Term 2: 2 μᵀ dW₂ (σ'⊙dz): rows W2[i, j], columns Jz[j, :]
    P_E = jnp.einsum("ki,kj,ka->ija", m, ds, xt)  # (D, w, n_in+1)
    A = over_calls((m[:, :, None] * ds[:, None, :]).reshape(K, -1)).reshape(D, w, n_in, p)
    P_S = jnp.einsum("jd,ijdp->ijp", W1, A)  # (D, w, p)
    wi = w2_idx.reshape(-1)
    X = X.at[wi].add(P_S.reshape(-1, p))
    r2 = w2_idx[:, :, None]
    c2 = jnp.broadcast_to(first[None], (D, w, n_in + 1))
    X = X.at[r2, c2].add(P_E)

    # Term 3: 2 Σ_j g_j σ'_j (dW₁ dx)_j: rows W1[j, a], columns S_x[a, :]
    M = over_calls(g * ds)  # (w, n_in, p)
    w1_idx = first[:, :n_in].reshape(-1)
    X = X.at[w1_idx].add(M.reshape(-1, p))
    H = H + X + X.T
    return H
