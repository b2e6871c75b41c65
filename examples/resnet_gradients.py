"""Seed 001: a ResNet and its Euler Neural ODE agree forward, but their gradients differ.

Seed 001 (Hudson et al., Sandia 2022, "Continuous vs discrete"): explicit Euler on a
Neural ODE *is* a ResNet, so the forward passes are the same; the gradients are not,
because backpropagation through the ResNet (discretise-then-optimise, DTO) and the
Euler-discretised continuous adjoint (optimise-then-discretise, OTD) are different
discretisations of the same derivative. For linear layers with tied weights
(``x' = Wx``, ``xₙ = (I + hW)xₙ₋₁``, loss ``‖x_N − y‖²``) the closed forms of
:mod:`pyodejl.stiffness.tied_linear` give ``G_OTD − G_DTO = h·G_DTO·Wᵀ``: a gap of
order ``h = T/N``.

Panels:

(a) forward: the ResNet's output against the Neural ODE's exact ``e^{TW}x₀`` —
    agreement improves like 1/N (and the Euler Neural ODE output equals the ResNet's
    to round-off at every N, printed);
(b) gradients, tied linear layers: ``‖G_OTD − G_DTO‖`` (the gap) and each one's
    distance to the exact continuous gradient (Van Loan block ``expm``), all O(1/N);
    markers: pyodejl's own ``grad(method="discrete")`` and
    ``grad(method="interpolating")`` of the Euler Neural ODE, on the closed forms;
(c) the same gap for a tanh layer with tied weights (no closed form): pyodejl's
    discrete vs interpolating adjoints of ``x' = tanh(Wx + b)`` under Euler — O(1/N) too.

Writes docs/figures/resnet_gradient_gap.png. Runtime: about 45 s of CPU time (2 cores).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pyodejl as pj  # noqa: E402
from pyodejl.models.resnet import ResNet, ResNetVectorField  # noqa: E402
from pyodejl.stiffness import tied_linear as tl  # noqa: E402

FIG = Path(__file__).resolve().parent.parent / "docs" / "figures" / "resnet_gradient_gap.png"
D, T = 4, 1.0
NS = 2 ** np.arange(0, 13)  # closed forms: N = 1 … 4096
NS_ENGINE = (4, 16, 64, 256)  # pyodejl's adjoints (one compile per N)


def final_state_cost(extra, Y, data):
    return jnp.sum((Y[:, -1, :] - data) ** 2)


def engine_gradients(vf, theta, x0, y, N):
    model = pj.NeuralODE(vf, solver="euler", dt=T / N)
    loss = pj.ObservationLoss(model, ts=[0.0, T], y0=x0, cost=final_state_cost, data=y)
    return loss.grad(theta, method="discrete"), loss.grad(theta, method="interpolating")


def main():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(D, D)) / np.sqrt(D)
    x0, y = rng.normal(size=D), rng.normal(size=D)

    # (a) forward
    x_exact = tl.ode_state(W, x0, T)
    fwd = [np.linalg.norm(tl.resnet_state(W, x0, T, int(N)) - x_exact) / np.linalg.norm(x_exact) for N in NS]
    # the ResNet and the Euler Neural ODE: identical forward passes (pj.ResNet, identity activation)
    same = 0.0
    for N in NS_ENGINE:
        net = ResNet(D, D, N, D, activation="identity", T=T)
        layer = np.concatenate([W.ravel(), np.zeros(D)])
        eye = np.eye(D).ravel()
        theta = np.concatenate([eye, np.zeros(D), np.tile(layer, N), eye, np.zeros(D)])
        sol = pj.NeuralODE(net.vector_field, solver="euler", dt=net.step).solve(net.split(theta)[1], [0.0, T], x0)
        same = max(same, float(np.abs(np.asarray(net(theta, x0)) - np.asarray(sol.ys)[-1]).max()))
    print(f"ResNet output vs Euler Neural ODE output, N in {NS_ENGINE}: max |difference| = {same:.1e}")

    # (b) tied linear gradients
    G = tl.continuous_gradient(W, x0, y, T)
    nG = np.linalg.norm(G)
    gap, dto, otd = [], [], []
    for N in NS:
        Gd = tl.discrete_gradient(W, x0, y, T, int(N))
        Go = tl.euler_adjoint_gradient(W, x0, y, T, int(N))
        gap.append(np.linalg.norm(Go - Gd) / nG)
        dto.append(np.linalg.norm(Gd - G) / nG)
        otd.append(np.linalg.norm(Go - G) / nG)
    vf_lin = ResNetVectorField(D, 1, activation="identity", T=T)
    theta_lin = np.concatenate([W.ravel(), np.zeros(D)])
    eng_gap, eng_err = [], []
    for N in NS_ENGINE:
        gd, gi = engine_gradients(vf_lin, theta_lin, x0, y, N)
        gd, gi = gd[: D * D].reshape(D, D), gi[: D * D].reshape(D, D)
        eng_gap.append(np.linalg.norm(gi - gd) / nG)
        err = max(
            np.abs(gd - tl.discrete_gradient(W, x0, y, T, N)).max(),
            np.abs(gi - tl.euler_adjoint_gradient(W, x0, y, T, N)).max(),
        ) / np.abs(G).max()
        eng_err.append(err)
    print("pyodejl discrete / interpolating adjoints vs closed forms (max rel. entry error):",
          ", ".join(f"N={N}: {e:.1e}" for N, e in zip(NS_ENGINE, eng_err)))
    for N, g in zip(NS, gap):
        if N in (16, 256, 4096):
            print(f"tied linear, N = {N:5d}: |G_OTD - G_DTO| / |G| = {g:.3e},  N x gap = {N * g:.3f}")

    # (c) tanh, tied weights
    b = 0.3 * rng.normal(size=D)
    vf_tanh = ResNetVectorField(D, 1, activation="tanh", T=T)
    theta_tanh = np.concatenate([2.0 * W.ravel(), b])
    tanh_gap = []
    for N in NS_ENGINE:
        gd, gi = engine_gradients(vf_tanh, theta_tanh, x0, y, N)
        tanh_gap.append(np.linalg.norm(gi - gd) / np.linalg.norm(gd))
    print("tanh tied layer, gap:", ", ".join(f"N={N}: {g:.2e}" for N, g in zip(NS_ENGINE, tanh_gap)))

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ref = lambda c: c / NS
    ax = axes[0]
    ax.loglog(NS, fwd, "o-", label=r"$\|x_N - x(T)\| / \|x(T)\|$")
    ax.loglog(NS, ref(fwd[0]), "k:", label=r"$\propto 1/N$")
    ax.set_title(f"(a) forward: ResNet vs exact Neural ODE\n(ResNet vs Euler NODE: max difference {same:.1g})")
    ax.set_xlabel("depth N (= Euler steps, h = T/N)")
    ax.legend()
    ax = axes[1]
    ax.loglog(NS, gap, "o-", label=r"gap $\|G_{OTD} - G_{DTO}\|$")
    ax.loglog(NS, dto, "s--", label=r"$\|G_{DTO} - G\|$ (ResNet backprop)")
    ax.loglog(NS, otd, "^--", label=r"$\|G_{OTD} - G\|$ (Euler adjoint)")
    ax.loglog(NS_ENGINE, eng_gap, "kx", ms=10, mew=2, label="pyodejl discrete vs interpolating")
    ax.loglog(NS, ref(gap[0]), "k:", label=r"$\propto 1/N$")
    ax.set_title("(b) gradients, linear tied layers\n(relative to exact continuous G)")
    ax.set_xlabel("depth N")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.loglog(NS_ENGINE, tanh_gap, "o-", label=r"$\|G_{interp} - G_{disc}\| / \|G_{disc}\|$")
    ax.loglog(NS_ENGINE, tanh_gap[0] * NS_ENGINE[0] / np.array(NS_ENGINE), "k:", label=r"$\propto 1/N$")
    ax.set_title("(c) gap, tanh layer with tied weights\n(pyodejl adjoints, no closed form)")
    ax.set_xlabel("depth N")
    ax.legend(fontsize=8)
    fig.tight_layout()
    FIG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG, dpi=150)
    print(f"wrote {FIG}")


if __name__ == "__main__":
    main()
