"""Full Hessians of the discrete loss assembled from sensitivities and adjoints.

For an explicit Runge–Kutta scheme the discrete loss L(θ) = ℓ(Y_obs(θ), θ_e)
is a composition of vector-field calls K_k = f(x_k, θ) with linear algebra, so
its exact Hessian is (the second-order adjoint of the discrete system)::

    H = [S_o; E]ᵀ ∇²ℓ [S_o; E] + Σ_k [S_k; I]ᵀ ∇²_{(x,θ)}(μ_k · f)(x_k, θ) [S_k; I]

with S_k = ∂x_k/∂θ the forward sensitivity ``(D, p)`` of call k's input, μ_k =
∂L/∂K_k its discrete adjoint, S_o the sensitivities of the observed states and
E = [0 | I] the extra parameters θ_e (a readout) that only ℓ sees.
Forward-over-reverse AD (``direct-direct``) computes the same matrix by carrying
p tangents through every hidden activation of every call; here only the
``(D, p)`` sensitivities are carried and the curvature of f is written in
closed form, so every sum over calls is a dense matrix product.

**The curvature of an L-layer MLP.** With h_0 = x̃ (the state, and t for a
time-dependent field), z_l = W_l h_{l-1} + b_l, h_l = σ(z_l) for l < L and
f = z_L, the adjoints a_L = μ, g_l = W_{l+1}ᵀ a_{l+1}, a_l = σ'(z_l) ⊙ g_l and
c_l = σ''(z_l) ⊙ g_l give, along a direction (dx, dθ)::

    d²(μ·f) = Σ_{l<L} Σ_j c_{l,j} dz_{l,j}² + 2 Σ_{l≤L} a_lᵀ dW_l dh_{l-1},
    dz_l = dW_l h_{l-1} + db_l + W_l dh_{l-1},   dh_l = σ'(z_l) ⊙ dz_l,   dh_0 = dx.

Write e_m = dW_m h_{m-1} + db_m (a Kronecker map of layer m's parameters with
h̃_{m-1} = [h_{m-1}; 1]), T_{l,m} = ∂z_l/∂z_m = W_l D_{l-1} ⋯ W_{m+1} D_m
(D_l = diag σ'(z_l), T_{l,l} = I), T_{l,0} = T_{l,1} W_1 (state columns), so
dz_l = Σ_{m≤l} T_{l,m} e_m + T_{l,0} dx, and the pulled-back curvature
Φ_m = Σ_{l=m}^{L-1} T_{l,m}ᵀ C_l T_{l,m} = diag(c_m) + Ψ_m with
Ψ_{L-1} = 0, Ψ_l = D_l W_{l+1}ᵀ Φ_{l+1} W_{l+1} D_l. The Hessian of μ·f in
(x, θ) then has the blocks

* x–x: A = T_{1,0}ᵀ Φ_1 T_{1,0};
* x–θ_m (hidden m): (Φ_m T_{m,0})[j, :] h̃_{m-1}[b] at θ_m(j, b); and at the
  weights W_l(i, a): a_l[i] (D_{l-1} T_{l-1,0})[a, :] (for l = 1: a_1[i] δ_{a,d});
* θ_m–θ_m' (hidden m ≤ m'): G[i, j] h̃_{m-1}[a] h̃_{m'-1}[b] with
  G = T_{m',m}ᵀ Φ_{m'};
* W_l(i, a)–θ_m(j, b) (m < l): a_l[i] (D_{l-1} T_{l-1,m})[a, j] h̃_{m-1}[b].

Summed over calls with S_k: the x-terms become X = Σ_k S_kᵀ U_k with
U_k = ½ A_k S_k + B_k (B_k the x–θ block) and H gets X + Xᵀ, one matrix
product whose inner dimension is (calls × D); every θ–θ term is
Σ_k (factor_k ⊗ factor_k ⊗ …), a matrix product over k of small per-call
factors (:func:`_call_sum`). The result equals ``direct-direct`` to round-off
(tested at depths 1–3, with augmentation, time dependence and readouts).

**Memory.** The steps are processed in chunks (sensitivities carried from one
chunk to the next) sized so that a chunk's arrays stay within about
:data:`BUDGET_BYTES`; X is formed in H itself, a block of rows per matrix
product (the ``chunk_size`` of :meth:`pyodejl.Objective.hessian`, or as many
rows as fit the budget), then symmetrised in place tile by tile. Peak memory
is about the Hessian itself plus the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit, to_device
from pyodejl._sharding import to_host
from pyodejl.models.mlp import MLP, activation_fn
from pyodejl.solving.explicit_rk import combine, rk_stages, tableau_of

BUDGET_BYTES = 2**30
"""Working-memory budget (bytes) beside H itself: of one step chunk, and of one product when rows are added into H."""


# ---------------------------------------------------------------------------
# what it applies to


def unsupported_reason(objective) -> str | None:
    """Why the structured Hessian does not apply to ``objective``, or None if it does."""
    problem = getattr(objective, "problem", None)
    model = getattr(problem, "model", None)
    if model is None or not hasattr(objective, "direct_function") or not hasattr(problem, "cost_of_states"):
        return "it needs an observed Neural ODE loss (pyodejl.ObservationLoss or TrajectoryLoss)"
    if getattr(objective, "regularizers", ()):
        return "the objective carries regularizer terms, whose curvature it does not assemble"
    if getattr(model, "is_sde", False):
        return "its closed-form curvature is written for ODE Runge–Kutta steps, not SDE steps"
    field = getattr(model, "vector_field", None)
    if not isinstance(field, MLP):
        return f"its closed-form curvature is written for pyodejl.MLP vector fields, not {type(field).__name__}"
    if tableau_of(model.solver) is None:
        name = getattr(model.solver, "name", model.solver)
        return f"it needs an explicit Runge–Kutta solver; {name!r} is implicit"
    return None


def supports(objective) -> bool:
    """Whether the structured path applies: an MLP vector field, an explicit solver, no regularizers."""
    return unsupported_reason(objective) is None


# ---------------------------------------------------------------------------
# the MLP's parameter layout


@dataclass(frozen=True)
class _Layout:
    """Layer l (1-based): ``widths[l-1]`` units, ``fan_in[l-1]`` inputs, θ from ``offsets[l-1]``."""

    widths: tuple
    fan_in: tuple
    offsets: tuple

    @classmethod
    def of(cls, mlp):
        widths, fan_in, offsets, off = [], [], [], 0
        for (n_out, n_in), _ in mlp.layer_shapes():
            widths.append(n_out)
            fan_in.append(n_in)
            offsets.append(off)
            off += n_out * (n_in + 1)
        return cls(tuple(widths), tuple(fan_in), tuple(offsets))

    def span(self, l):
        start = self.offsets[l - 1]
        return slice(start, start + self.widths[l - 1] * (self.fan_in[l - 1] + 1))

    def grid_index(self, l):
        """θ index of (unit j, input b) of layer l, ``(w, n + 1)``; b = n is the bias."""
        w, n, off = self.widths[l - 1], self.fan_in[l - 1], self.offsets[l - 1]
        idx = off + np.arange(w)[:, None] * n + np.arange(n + 1)[None, :]
        idx[:, n] = off + w * n + np.arange(w)
        return idx


def _piece_specs(L):
    """The θ–θ terms of an L-layer MLP, in the order :func:`_curvature` returns them."""
    specs = [("ee", m) for m in range(1, L)]  # diag(c_m) part of Φ_m: block-diagonal in units
    specs += [("psi", m) for m in range(1, L - 1)]  # Ψ_m part of Φ_m: dense
    specs += [("g", m, m2) for m in range(1, L - 1) for m2 in range(m + 1, L)]
    specs += [("adj", l) for l in range(2, L + 1)]  # W_l against layer l-1: sparse
    specs += [("far", l, m) for l in range(3, L + 1) for m in range(1, l - 1)]
    return specs


def _to_theta(x, axis):
    """Merge axes (axis, axis + 1) = (unit j, input b with the bias last) into θ order."""
    x = jnp.moveaxis(x, (axis, axis + 1), (0, 1))
    w, n1 = x.shape[:2]
    rest = x.shape[2:]
    merged = jnp.concatenate([x[:, : n1 - 1].reshape((w * (n1 - 1),) + rest), x[:, n1 - 1]], axis=0)
    return jnp.moveaxis(merged, 0, axis)


def _call_sum(*factors):
    """Σ_k factors[0][k] ⊗ factors[1][k] ⊗ …, shape = the factors' trailing shapes in order.

    One matrix product over k: the largest factor is the right operand and the
    row-wise Kronecker product of the others the left one, so the largest
    intermediate is the smaller of the two.
    """
    K = factors[0].shape[0]
    flat = [f.reshape(K, -1) for f in factors]
    big = max(range(len(flat)), key=lambda i: flat[i].shape[1])
    rest = [i for i in range(len(flat)) if i != big]
    left = flat[rest[0]]
    for i in rest[1:]:
        left = (left[:, :, None] * flat[i][:, None, :]).reshape(K, -1)
    out = left.T @ flat[big]
    order = rest + [big]
    shapes = [factors[i].shape[1:] for i in order]
    out = out.reshape(tuple(s for sh in shapes for s in sh))
    pos, start = {}, 0
    for i, sh in zip(order, shapes):
        pos[i] = list(range(start, start + len(sh)))
        start += len(sh)
    return out.transpose([a for i in range(len(factors)) for a in pos[i]])


# ---------------------------------------------------------------------------
# per-call curvature of the MLP (module docstring)


def _curvature(mlp, vf, xin, mu, D):
    """Curvature of μ_k·f at K calls.

    Args:
        xin: ``(K, n_0)`` network inputs (time appended for time-dependent fields).
        mu: ``(K, D)`` adjoints.

    Returns:
        ``A`` ``(K, D, D)``, ``B`` ``(K, D, p)`` (the x–x and x–θ blocks, θ order)
        and the θ–θ terms summed over the calls, one array per :func:`_piece_specs` entry.
    """
    layers = mlp.unflatten(vf)
    Ws = [W for W, _ in layers]
    L = len(layers)
    K = xin.shape[0]
    sigma = activation_fn(mlp.activation)

    def dsigma(z):
        return jax.jvp(sigma, (z,), (jnp.ones_like(z),))[1]

    hb, d1, d2 = [], {}, {}
    h = xin
    for l, (W, b) in enumerate(layers, start=1):
        hb.append(jnp.concatenate([h, jnp.ones((K, 1), h.dtype)], axis=1))  # h̃_{l-1}
        z = h @ W.T + b
        if l < L:
            d1[l] = dsigma(z)
            d2[l] = jax.jvp(dsigma, (z,), (jnp.ones_like(z),))[1]
            h = sigma(z)
    a, c = {L: mu}, {}
    for l in range(L - 1, 0, -1):
        g = a[l + 1] @ Ws[l]  # W_{l+1}ᵀ a_{l+1}
        a[l], c[l] = d1[l] * g, d2[l] * g

    # T_{l,0}: input (state) to z_l; T_{l,m}: z_m to z_l between hidden layers
    T0 = {}
    for l in range(1, L):
        if l == 1:
            T0[1] = jnp.broadcast_to(Ws[0][:, :D], (K,) + Ws[0][:, :D].shape)
        else:
            T0[l] = jnp.einsum("ij,kjd->kid", Ws[l - 1], d1[l - 1][:, :, None] * T0[l - 1])
    Tm = {}
    for m in range(1, L - 1):
        Tm[(m + 1, m)] = Ws[m][None] * d1[m][:, None, :]
        for l in range(m + 2, L):
            Tm[(l, m)] = jnp.einsum("ij,kjm->kim", Ws[l - 1], d1[l - 1][:, :, None] * Tm[(l - 1, m)])
    Psi = {}
    for l in range(L - 2, 0, -1):
        W = Ws[l]  # W_{l+1}
        M = jnp.einsum("kji,jm->kim", c[l + 1][:, :, None] * W[None], W)
        if l + 1 in Psi:
            M = M + jnp.einsum("kjn,nm->kjm", jnp.einsum("ji,kjn->kin", W, Psi[l + 1]), W)
        Psi[l] = d1[l][:, :, None] * M * d1[l][:, None, :]

    def phi(l, X):  # Φ_l X
        out = c[l][:, :, None] * X
        return out + Psi[l] @ X if l in Psi else out

    F = {m: phi(m, T0[m]) for m in range(1, L)}  # Φ_m T_{m,0}, (K, w_m, D)
    A = jnp.einsum("kjd,kje->kde", T0[1], F[1]) if L >= 2 else jnp.zeros((K, D, D), xin.dtype)

    Bparts = []
    for m in range(1, L + 1):
        w, n = Ws[m - 1].shape
        if m == 1:
            Q = jnp.eye(n, D, dtype=xin.dtype)[None]  # only the state inputs move with dx
            cross = a[1][:, None, :, None] * jnp.swapaxes(Q, 1, 2)[:, :, None, :]
        else:
            Q = d1[m - 1][:, :, None] * T0[m - 1]  # D_{m-1} T_{m-1,0}, (K, n, D)
            cross = jnp.einsum("ki,kad->kdia", a[m], Q)
        cross = jnp.concatenate([cross, jnp.zeros(cross.shape[:3] + (1,), cross.dtype)], axis=3)
        grid = cross + jnp.einsum("kjd,kb->kdjb", F[m], hb[m - 1]) if m < L else cross
        Bparts.append(_to_theta(grid, 2))
    B = jnp.concatenate(Bparts, axis=-1)

    pieces = []
    for spec in _piece_specs(L):
        kind = spec[0]
        if kind == "ee":
            m = spec[1]
            pieces.append(_call_sum(c[m], hb[m - 1], hb[m - 1]))
        elif kind in ("psi", "g"):
            m, m2 = (spec[1], spec[1]) if kind == "psi" else spec[1:]
            if kind == "psi":
                G = Psi[m]
            else:  # T_{m2,m}ᵀ Φ_{m2}
                T = Tm[(m2, m)]
                G = jnp.swapaxes(T, 1, 2) * c[m2][:, None, :]
                if m2 in Psi:
                    G = G + jnp.einsum("kli,klj->kij", T, Psi[m2])
            blk = _call_sum(G, hb[m - 1], hb[m2 - 1]).transpose(0, 2, 1, 3)
            pieces.append(_to_theta(_to_theta(blk, 2), 0))
        elif kind == "adj":
            l = spec[1]
            pieces.append(_call_sum(a[l], d1[l - 1], hb[l - 2]))
        else:  # "far"
            l, m = spec[1:]
            R = d1[l - 1][:, :, None] * Tm[(l - 1, m)]
            blk = _call_sum(a[l], R, hb[m - 1])
            pieces.append(_to_theta(blk.reshape((-1,) + blk.shape[2:]), 1))
    return A, B, tuple(pieces)


def _add_pieces(H, layout, specs, pieces):
    """Add the θ–θ terms (each once, mirrored where off-diagonal) into the NumPy matrix H."""

    def add(H, index, value):
        H[index] += value
        return H

    for spec, arr in zip(specs, pieces):
        kind = spec[0]
        if kind == "ee":
            idx = layout.grid_index(spec[1])
            H = add(H, (idx[:, :, None], idx[:, None, :]), arr)
        elif kind == "psi":
            r = layout.span(spec[1])
            H = add(H, (r, r), arr)
        elif kind == "g":
            r1, r2 = layout.span(spec[1]), layout.span(spec[2])
            H = add(add(H, (r1, r2), arr), (r2, r1), arr.T)
        elif kind == "adj":
            l = spec[1]
            w, n = layout.widths[l - 1], layout.fan_in[l - 1]
            rows = layout.offsets[l - 1] + np.arange(w)[:, None, None] * n + np.arange(n)[None, :, None]
            cols = layout.grid_index(l - 1)[None]
            H = add(add(H, (rows, cols), arr), (cols, rows), arr)
        else:
            l, m = spec[1:]
            start = layout.offsets[l - 1]
            rows = slice(start, start + layout.widths[l - 1] * layout.fan_in[l - 1])
            cols = layout.span(m)
            H = add(add(H, (rows, cols), arr), (cols, rows), arr.T)
    return H


# ---------------------------------------------------------------------------
# the frozen-grid replay: call inputs, adjoints, sensitivities


def _evaluations(model, vf, times, y0):
    """Replay the frozen grid recording each vector-field call.

    Returns the node states ``(N+1, B, D)`` and every call slot's time and
    input, ``(N, s)`` and ``(N, s, B, D)``. Slot (n, 0) is the value step n
    uses as its first stage: the initial call for n = 0, otherwise the previous
    step's last call (FSAL tableaux) or its call at (t_n, y_n) (others).
    """
    tab = tableau_of(model.solver)

    def f(t, y):
        return model.rhs(t, y, vf)

    def step(carry, t01):
        y, f0 = carry
        y1, _, f1, stage_times, stage_inputs = rk_stages(tab, f, t01[0], t01[1], y, f0)
        return (y1, f1), (y1, stage_times, stage_inputs)

    pairs = jnp.stack([times[:-1], times[1:]], axis=1)
    _, (ys, t_calls, x_calls) = jax.lax.scan(step, (y0, f(times[0], y0)), pairs)
    return jnp.concatenate([y0[None], ys]), t_calls, x_calls


def _flat_calls(t_calls, x_calls):
    N, s, B, D = x_calls.shape
    return jnp.broadcast_to(t_calls[:, :, None], (N, s, B)).reshape(-1), x_calls.reshape(-1, D)


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


def _sensitivities(tab, times, fy, fth, S0):
    """Forward sensitivities S = ∂x/∂θ by the linearised scheme, from S0 at ``times[0]``.

    Returns ``(N, B, D, p)`` after each step, ``(N, s, B, D, p)`` at the call
    inputs, and the last node's.
    """
    s = fth.shape[1]

    def step(Sy, inp):
        h, fy_n, fth_n = inp
        sks, Ss = [], []
        for i in range(s):
            Sx = combine(Sy, h, tab.a[i - 1] if i > 0 else (), sks)
            sks.append(jnp.einsum("bde,bep->bdp", fy_n[i], Sx) + fth_n[i])
            Ss.append(Sx)
        Sy1 = combine(Sy, h, tab.b, sks)
        return Sy1, (Sy1, jnp.stack(Ss))

    S_end, (S_nodes, S_calls) = jax.lax.scan(step, S0, (jnp.diff(times), fy, fth))
    return S_nodes, S_calls, S_end


# ---------------------------------------------------------------------------
# compiled kernels


def _prepare_fn(problem, theta, times, obs_index, y0, data):
    """Call inputs, state Jacobians f_y and adjoints μ of every call slot; the observed states."""
    model = problem.model
    vf = theta[: problem.num_vf]
    tab = tableau_of(model.solver)
    ys, t_calls, x_calls = _evaluations(model, vf, times, y0)
    N, s, B, D = x_calls.shape
    tt, xx = _flat_calls(t_calls, x_calls)
    fy = jax.vmap(jax.jacfwd(model.rhs, argnums=1), in_axes=(0, 0, None))(tt, xx, vf).reshape(N, s, B, D, D)
    Yobs = ys[obs_index]
    gY = jax.grad(lambda Y: problem.cost_of_states(theta, Y, data))(Yobs)
    mu = _adjoints(tab, times, fy, jnp.zeros_like(ys).at[obs_index].add(gY))
    return t_calls, x_calls, fy, mu, Yobs


def _chunk_fn(model, vf, times, t_calls, x_calls, fy, mu, S0):
    """One chunk of steps: sensitivity rows S, rows U (X = Σ SᵀU), node sensitivities, θ–θ terms."""
    tab = tableau_of(model.solver)
    mlp = model.vector_field
    N, s, B, D = x_calls.shape
    p = vf.shape[0]
    tt, xx = _flat_calls(t_calls, x_calls)
    fth = jax.vmap(jax.jacrev(model.rhs, argnums=2), in_axes=(0, 0, None))(tt, xx, vf).reshape(N, s, B, D, p)
    S_nodes, S_calls, S_end = _sensitivities(tab, times, fy, fth, S0)
    xin = jnp.concatenate([xx, tt[:, None]], axis=1) if mlp.time_dependent else xx
    A, Bx, pieces = _curvature(mlp, vf, xin, mu.reshape(-1, D), D)
    # FSAL: slot 0 repeats the previous step's last call (μ = 0) or is the
    # initial call (S = 0): no rows; its θ–θ terms are in ``pieces``.
    first = 1 if tab.fsal else 0
    Sr = S_calls[:, first:]
    A = A.reshape(N, s, B, D, D)[:, first:]
    U = 0.5 * jnp.einsum("nrbde,nrbep->nrbdp", A, Sr) + Bx.reshape(N, s, B, D, p)[:, first:]
    return Sr.reshape(-1, p), U.reshape(-1, p), S_nodes, S_end, pieces


def _observation_fn(problem, theta, Yobs, data, Sobs):
    """Rows S, U of the observation term and ∂²ℓ/∂θ_e² (``(p_e, p_e)``)."""
    T, B, D, p_vf = Sobs.shape
    p_e = theta.shape[0] - p_vf

    def grad_Y(th, Y):
        return jax.grad(problem.cost_of_states, argnums=1)(th, Y, data)

    hv = jax.vmap(lambda v: jax.jvp(lambda Y: grad_Y(theta, Y), (Yobs,), (v,))[1], in_axes=-1, out_axes=-1)(Sobs)
    S, U = Sobs, 0.5 * hv
    if p_e:

        def with_extra(e):
            return jnp.concatenate([theta[:p_vf], e])

        extra = theta[p_vf:]
        HYe = jax.jacfwd(lambda e: grad_Y(with_extra(e), Yobs))(extra)
        Hee = jax.hessian(lambda e: problem.cost_of_states(with_extra(e), Yobs, data))(extra)
        S = jnp.concatenate([S, jnp.zeros((T, B, D, p_e), S.dtype)], axis=-1)
        U = jnp.concatenate([U, HYe], axis=-1)
    else:
        Hee = jnp.zeros((0, 0), theta.dtype)
    return S.reshape(-1, p_vf + p_e), U.reshape(-1, p_vf + p_e), Hee


def _last_stage_is_next_node(tab):
    """Whether an FSAL tableau's last call is at (t_{n+1}, y_{n+1}) exactly (its row of a is b)."""
    if not (tab.fsal and tab.stages > 1):
        return False
    return tab.c[-1] == 1.0 and tab.b[-1] == 0.0 and tuple(tab.a[-1]) == tuple(tab.b[:-1])


_prepare = jit(_prepare_fn, static_argnums=0, fast_compile=True)
_chunk_terms = jit(_chunk_fn, static_argnums=0, fast_compile=True)
_observation_terms = jit(_observation_fn, static_argnums=0, fast_compile=True)


@jit(static_argnums=0, fast_compile=True)
def _fused_rows(problem, theta, times, obs_index, y0, data):
    """The call rows S, U (``(R, p)``, step by step), the observation rows not
    merged into them, the θ–θ terms and ∂²ℓ/∂θ_e², in one kernel (one step chunk)."""
    model = problem.model
    p_vf = problem.num_vf
    p = theta.shape[0]
    vf = theta[:p_vf]
    t_calls, x_calls, fy, mu, Yobs = _prepare_fn(problem, theta, times, obs_index, y0, data)
    N, s, B, D = x_calls.shape
    S, U, S_nodes, _, pieces = _chunk_fn(model, vf, times, t_calls, x_calls, fy, mu, jnp.zeros((B, D, p_vf)))
    Sobs = jnp.where((obs_index > 0)[:, None, None, None], S_nodes[jnp.maximum(obs_index - 1, 0)], 0.0)
    S_o, U_o, Hee = _observation_fn(problem, theta, Yobs, data, Sobs)
    pad = ((0, 0), (0, p - p_vf))
    S, U = jnp.pad(S, pad), jnp.pad(U, pad)
    if _last_stage_is_next_node(tableau_of(model.solver)):
        # node n ≥ 1 is the input of step n-1's last call: its rows are already in S
        at = jnp.maximum(obs_index - 1, 0)
        U_o = jnp.where((obs_index > 0)[:, None, None], U_o.reshape(-1, B * D, p), 0.0)
        U = U.reshape(N, s - 1, B * D, p).at[at, s - 2].add(U_o).reshape(-1, p)
        S_o, U_o = S_o[:0], U_o.reshape(-1, p)[:0]
    return S, U, S_o, U_o, pieces, Hee


# ---------------------------------------------------------------------------
# assembly (NumPy: its BLAS product and a tiled in-place transpose beat XLA's
# fast-compile emitters on the p × p passes)


def block_rows(p: int, block: int | None = None) -> int:
    """Rows of H per matrix product: ``block`` if given (the objective's
    ``chunk_size``; by symmetry also θ columns per block), else as many as keep
    one block's product within :data:`BUDGET_BYTES`."""
    if block is None:
        block = max(1, BUDGET_BYTES // (8 * p))
    return max(1, min(int(block), p))


def _steps_per_chunk(N, s, B, D, p_vf, layout):
    """Steps per chunk so that a chunk's arrays stay within half the budget.

    Per call: about six ``(D, p)`` arrays (f_θ, S, B, U and temporaries) and
    the dense per-call matrices between hidden layers (T_{l,m}, Ψ_m, G, R:
    every pair of hidden widths except the last layer with itself, whose Φ is
    diagonal).
    """
    hidden = layout.widths[:-1]
    dense = sum(a * b for i, a in enumerate(hidden) for b in hidden[i:]) - (hidden[-1] ** 2 if hidden else 0)
    kron = sum(min(n + 1, w) * (n + 1) for w, n in zip(hidden, layout.fan_in))  # _call_sum's left operands
    vectors = sum(layout.widths) * (D + 4) + kron
    per_step = 8 * s * B * (6 * D * p_vf + 4 * dense + vectors)
    return int(np.clip(BUDGET_BYTES // 2 // per_step, 1, N))


def _add_products(H, S, U, rows, assign):
    """H[:q, :q] (+)= SᵀU for rows S, U of width q, ``rows`` rows of H per product."""
    q = S.shape[1]
    for i0 in range(0, q, rows):
        i1 = min(q, i0 + rows)
        if assign:
            np.matmul(S[:, i0:i1].T, U, out=H[i0:i1, :q])
        else:
            H[i0:i1, :q] += S[:, i0:i1].T @ U


def _symmetrize(H, tile=512):
    """H ← H + Hᵀ in place, tile by tile (cache-sized transposes)."""
    p = H.shape[0]
    for i in range(0, p, tile):
        d = H[i : i + tile, i : i + tile]
        d += d.T.copy()
        for j in range(i + tile, p, tile):
            t = H[i : i + tile, j : j + tile] + H[j : j + tile, i : i + tile].T
            H[i : i + tile, j : j + tile] = t
            H[j : j + tile, i : i + tile] = t.T


def hessian(objective, theta, block: int | None = None) -> np.ndarray:
    """The exact Hessian of ``objective``'s frozen-grid loss at θ, ``(p, p)`` (module docstring).

    Args:
        objective: an :class:`pyodejl.ObservationLoss` (or ``TrajectoryLoss``)
            with an MLP vector field of any depth, an explicit solver and no
            regularizer terms; augmentation and extra parameters are allowed.
        theta: ``(p,)`` NumPy float64.
        block: rows (equivalently θ columns) of H per matrix product (default:
            sized to :data:`BUDGET_BYTES`).

    Raises:
        NotImplementedError: naming why, for objectives outside that class.
    """
    reason = unsupported_reason(objective)
    if reason is not None:
        raise NotImplementedError(f"the 'structured' Hessian does not apply: {reason}; use 'direct-direct'")
    theta = np.asarray(theta, dtype=np.float64)
    _, (times, obs_index, y0, data) = objective.direct_function(theta)
    problem = objective.problem
    model = problem.model
    tab = tableau_of(model.solver)
    p, p_vf = len(theta), problem.num_vf
    layout = _Layout.of(model.vector_field)
    specs = _piece_specs(len(layout.widths))
    theta_j = to_device(theta)
    rows = block_rows(p, block)
    N, s, B, D = len(times) - 1, tab.stages, y0.shape[0], y0.shape[1]
    n_c = _steps_per_chunk(N, s, B, D, p_vf, layout)

    # the grid may end in zero-length padding steps (bucketed lengths): their calls carry μ = 0
    times_np = to_host(times)
    n_real = max(1, int(np.argmax(times_np == times_np[-1])))
    if n_c >= N:
        S, U, S_o, U_o, pieces, Hee = _fused_rows(problem, theta_j, times, obs_index, y0, data)
        R = n_real * (s - 1 if tab.fsal else s) * B * D
        S = np.concatenate([to_host(S)[:R], to_host(S_o)])
        U = np.concatenate([to_host(U)[:R], to_host(U_o)])
        H = np.empty((p, p))
        _add_products(H, S, U, rows, assign=True)
    else:
        H = np.zeros((p, p))
        pieces, Hee = _chunked_rows(H, problem, theta_j, times, obs_index, y0, data, n_c, rows, n_real)
    _symmetrize(H)
    _add_pieces(H, layout, specs, [to_host(x) for x in pieces])
    if p > p_vf:
        H[p_vf:, p_vf:] += to_host(Hee)
    return H


def _chunked_rows(H, problem, theta_j, times, obs_index, y0, data, n_c, rows, n_real):
    """Add Σ SᵀU into H chunk by chunk of steps, sensitivities carried across chunks.

    Rows are collected until they fill half the budget, then multiplied out.
    Returns the θ–θ terms summed over the chunks and ∂²ℓ/∂θ_e².
    """
    model = problem.model
    p_vf = problem.num_vf
    vf_j = to_device(to_host(theta_j)[:p_vf])
    t_calls, x_calls, fy, mu, Yobs = _prepare(problem, theta_j, times, obs_index, y0, data)
    _, s, B, D = x_calls.shape
    N = n_real  # steps past it have zero length: μ = 0 there
    obs_nodes = to_host(obs_index)
    Sobs = np.zeros((len(obs_nodes), B, D, p_vf))
    group, group_bytes, pieces_sum = [], 0, None

    def flush():
        nonlocal group, group_bytes
        if group:
            _add_products(H, np.concatenate([g[0] for g in group]), np.concatenate([g[1] for g in group]), rows, False)
        group, group_bytes = [], 0

    # equal chunks; the last padded with zero-length steps whose calls carry μ = 0
    pad = -(-N // n_c) * n_c - N
    tms = to_host(times)
    tms = np.concatenate([tms, np.full(pad, tms[-1])])
    host = [to_host(x) for x in (t_calls, x_calls, fy, mu)]
    host = [np.concatenate([x, np.zeros((pad,) + x.shape[1:])]) for x in host]
    host[0][N:] = tms[-1]
    S_carry = to_device(np.zeros((B, D, p_vf)))
    for lo in range(0, N, n_c):
        args = [tms[lo : lo + n_c + 1]] + [x[lo : lo + n_c] for x in host]
        S_r, U_r, S_nodes, S_carry, pieces = _chunk_terms(model, vf_j, *(to_device(a) for a in args), S_carry)
        at = (obs_nodes >= lo + 1) & (obs_nodes <= lo + n_c)
        if at.any():
            Sobs[at] = to_host(S_nodes)[obs_nodes[at] - 1 - lo]
        pieces = [to_host(x) for x in pieces]
        pieces_sum = pieces if pieces_sum is None else [a + b for a, b in zip(pieces_sum, pieces)]
        rows_bytes = 16 * S_r.shape[0] * p_vf
        if group and group_bytes + rows_bytes > BUDGET_BYTES // 2:
            flush()
        group.append((to_host(S_r), to_host(U_r)))
        group_bytes += rows_bytes
    flush()
    S_o, U_o, Hee = _observation_terms(problem, theta_j, Yobs, data, to_device(Sobs))
    _add_products(H, to_host(S_o), to_host(U_o), rows, False)
    return pieces_sum, Hee
