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

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit
from pyodejl.models.mlp import activation_fn
from pyodejl.solving.explicit_rk import combine, rk_stages, tableau_of


def supports(objective) -> bool:
    """Whether the structured path applies: one-hidden-layer MLP, explicit solver, no extra θ."""
    model = getattr(objective, "model", None)
    return (
        model is not None
        and len(model.vector_field.sizes) == 3
        and tableau_of(model.solver) is not None
        and objective.num_params == model.num_params
    )


def _evaluations(model, theta, times, y0):
    """Replay the frozen grid recording each vector-field call.

    Returns the node states ``(N+1, B, D)`` and every call slot's time and
    input, ``(N, s)`` and ``(N, s, B, D)``. Slot (n, 0) is the value step n
    uses as its first stage: the initial call for n = 0, otherwise the previous
    step's last call (FSAL tableaux) or its call at (t_n, y_n) (others).
    """
    tab = tableau_of(model.solver)
    f = lambda t, y: model.rhs(t, y, theta)

    def step(carry, t01):
        y, f0 = carry
        y1, _, f1, stage_times, stage_inputs = rk_stages(tab, f, t01[0], t01[1], y, f0)
        return (y1, f1), (y1, stage_times, stage_inputs)

    pairs = jnp.stack([times[:-1], times[1:]], axis=1)
    _, (ys, t_calls, x_calls) = jax.lax.scan(step, (y0, f(times[0], y0)), pairs)
    return jnp.concatenate([y0[None], ys]), t_calls, x_calls


def _jacobians(model, theta, t_calls, x_calls):
    """f_y ``(N, s, B, D, D)`` and f_θ ``(N, s, B, D, p)`` at every call input, in one batch."""
    N, s, B, D = x_calls.shape
    f = lambda t, x, th: model.rhs(t, x, th)
    tt = jnp.broadcast_to(t_calls[:, :, None], (N, s, B)).reshape(-1)
    xx = x_calls.reshape(-1, D)
    fy = jax.vmap(jax.jacfwd(f, argnums=1), in_axes=(0, 0, None))(tt, xx, theta)
    fth = jax.vmap(jax.jacrev(f, argnums=2), in_axes=(0, 0, None))(tt, xx, theta)
    return fy.reshape(N, s, B, D, D), fth.reshape(N, s, B, D, theta.shape[0])


def _adjoints(tab, times, fy, jump):
    """Discrete adjoints μ_{n,i} = ∂L/∂K_{n,i} of every call slot, by a backward sweep.

    ``jump`` ``(N + 1, B, D)`` is ∂ℓ/∂y at each node. Slots that repeat an
    earlier call (stage 0 of step n ≥ 1 for FSAL tableaux) get zero: their
    weight is carried to the call itself.
    """
    N, s = fy.shape[:2]
    zero = jnp.zeros_like(jump[0])

    def step(carry, inp):
        lam_next, mu_next0 = carry  # ∂L/∂y_{n+1}; μ of step n+1's first slot
        h, fy_n, jump_n = inp
        mus, xbar = [None] * s, [None] * s
        for l in range(s - 1, -1, -1):
            m = h * tab.b[l] * lam_next
            for later in range(l + 1, s):
                row = tab.a[later - 1]
                if l < len(row) and row[l] != 0.0:
                    m = m + h * row[l] * xbar[later]
            if tab.fsal and l == s - 1:
                m = m + mu_next0
            mus[l] = m
            xbar[l] = jnp.einsum("bde,bd->be", fy_n[l], m)
        lam = lam_next + sum(xbar[1:], zero) + jump_n
        if tab.fsal:
            mu0 = mus[0]
        else:  # slot 0 is a call at (t_n, y_n) of its own
            lam, mu0 = lam + xbar[0], zero
        return (lam, mu0), jnp.stack(mus)

    _, mus = jax.lax.scan(step, (jump[N], zero), (jnp.diff(times), fy, jump[:N]), reverse=True)
    return mus.at[1:, 0].set(0.0) if tab.fsal else mus


def _sensitivities(tab, times, fy, fth):
    """Forward sensitivities S = ∂x/∂θ of every call input, by the linearised scheme.

    Returns ``(N + 1, B, D, p)`` at the nodes and ``(N, s, B, D, p)`` at the call inputs.
    """
    N, s, B, D, p = fth.shape

    def step(Sy, inp):
        h, fy_n, fth_n = inp
        sks, Ss = [], []
        for i in range(s):
            Sx = combine(Sy, h, tab.a[i - 1] if i > 0 else (), sks)
            sks.append(jnp.einsum("bde,bep->bdp", fy_n[i], Sx) + fth_n[i])
            Ss.append(Sx)
        Sy1 = combine(Sy, h, tab.b, sks)
        return Sy1, (Sy1, jnp.stack(Ss))

    S0 = jnp.zeros((B, D, p), dtype=fth.dtype)
    _, (Sys, Ss) = jax.lax.scan(step, S0, (jnp.diff(times), fy, fth))
    return jnp.concatenate([S0[None], Sys]), Ss


@jit(static_argnums=0, fast_compile=True)
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

    # call inputs, Jacobians there, discrete adjoints μ and forward sensitivities S
    ys, t_calls, x_calls = _evaluations(model, theta, times, y0)
    fy, fth = _jacobians(model, theta, t_calls, x_calls)
    gY = jax.grad(lambda Y: problem.cost_of_states(theta, Y, data))(ys[obs_index])
    mu = _adjoints(tab, times, fy, jnp.zeros_like(ys).at[obs_index].add(gY))
    S_nodes, S_calls = _sensitivities(tab, times, fy, fth)

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
