"""Adaptive stochastic Runge–Kutta for Itô SDEs with diagonal noise, with its stages and error estimate exposed.

An Itô SDE with diagonal noise,

    dy = a(t, y) dt + b(t, y) ⊙ dW,      y, b(t, y) ∈ R^D, W a D-dimensional Wiener process,

is stepped with Rößler's stochastic Runge–Kutta family SRI (Rößler 2010,
*Runge–Kutta methods for the strong approximation of solutions of stochastic
differential equations*, SIAM J. Numer. Anal. 48(3); its SRI schemes for
diagonal noise). With h the step, ΔW the Wiener increment and, per state entry,

    χ₁ = I_(1,1)/√h = (ΔW² − h)/(2√h),   χ₂ = I_(1,0)/h,   χ₃ = I_(1,1,1)/h = (ΔW³ − 3hΔW)/(6h),

the drift stages H⁽⁰⁾ᵢ and diffusion stages H⁽¹⁾ᵢ are

    H⁽⁰⁾ᵢ = y + h Σⱼ A⁽⁰⁾ᵢⱼ aⱼ + χ₂ Σⱼ B⁽⁰⁾ᵢⱼ bⱼ,     aⱼ = a(t + c⁽⁰⁾ⱼ h, H⁽⁰⁾ⱼ),
    H⁽¹⁾ᵢ = y + h Σⱼ A⁽¹⁾ᵢⱼ aⱼ + √h Σⱼ B⁽¹⁾ᵢⱼ bⱼ,     bⱼ = b(t + c⁽¹⁾ⱼ h, H⁽¹⁾ⱼ),

and the step is

    y₁ = y + h Σᵢ αᵢ aᵢ + Σᵢ (β⁽¹⁾ᵢ ΔW + β⁽²⁾ᵢ χ₁) bᵢ + E₂,    E₂ = Σᵢ (β⁽³⁾ᵢ χ₂ + β⁽⁴⁾ᵢ χ₃) bᵢ.

**Error estimate** (Rackauckas & Nie 2017, *Adaptive methods for stochastic
differential equations via natural embeddings and rejection sampling with
memory*, Discrete Contin. Dyn. Syst. B 22(7)): E = δ·E₁ + E₂ with
E₁ = h Σ_{i ≤ m} aᵢ over the first m drift stages (m = 2 for SRIW1, 4 for
SOSRI) and E₂ the strong-order-1.5 noise terms above; δ, the weight of the
deterministic error, is the reference implementation's per method: 1/6 for
SRIW1 (their choice for it), 1 for SOSRI. E₁ is the plain sum of those drift values, as in
the SRI steps of the reference implementation behind seed 004's SDE
experiments (StochasticDiffEq.jl, used by RegNeuralDE.jl), so ERNSDE here
regularises the quantity the seed regularised. The controller accepts a step when
RMS(E / (atol + rtol·max(|y|, |y₁|))) < 1 — the same ratio, the same
:class:`~pyodejl.solving.controllers.PIDController` and the same loop
(:func:`pyodejl.solving.adaptive_rk.controlled_loop`) as the ODE pairs.

**Brownian paths.** Adaptive steps are rejected and retried on shorter
intervals, so the increments must come from one fixed path: a
``diffrax.VirtualBrownianTree`` with space-time Lévy area H (Foster's
H = (1/h)∫(W_s − W_t − (s−t)/h·ΔW) ds, variance h/12) on [ts[0], ts[-1]],
from which I_(1,0) = ∫∫ dW ds = h(ΔW/2 + H). Trajectory b of a batch draws
from ``fold_in(key(seed), b)``, so its path depends on (seed, b, ts[0],
ts[-1]) only — not on the batch size — and the whole solution, hence any
loss, is a deterministic function of θ.

**Tableau.** SRIW1 (Rößler 2010's SRI2W1; strong order 1.5, weak order 2), the
method with the embedded estimate above in Rackauckas & Nie 2017. Seed 004
(ch. 5 §3.2) solves its Neural SDEs with SOSRI, the stability-optimised member
of the same family (Rackauckas & Nie 2018), also here (``"sosri"``: four drift and
four diffusion evaluations a step against SRIW1's two and four, in exchange for a
larger stability region), and its MNIST Neural SDE with SOSRI2 (``"sosri2"``). A new
SRI tableau is one :class:`SRITableau` and one entry in :data:`SDE_SOLVERS`.

**Stages in the step record.** A step's :class:`~pyodejl.solving.StepRecord`
lists the drift stages, then the diffusion stages: ``k`` ``(N, 2s, B, D)`` holds
a₁ … a_s, b₁ … b_s and ``stage_states`` H⁽⁰⁾₁ … H⁽⁰⁾_s, H⁽¹⁾₁ … H⁽¹⁾_s; ``error``
holds E. So ERNSDE is :func:`pyodejl.solving.error_ratios` of that record.

**Stiffness estimate** (SRNSDE). Seed 004 (§2.4, the estimate its ch. 5 sums
into R_S) takes Shampine's (1977) quotient ‖f(g_x) − f(g_y)‖ / ‖g_x − g_y‖ of two stages of the step evaluated at
the same time (c_x = c_y) as the stiffness estimate. In SRIW1 the drift stages
sharing a time (c⁽⁰⁾ = 0 for stages 1, 3, 4) are all evaluated at the same
state y — their quotient is 0/0 — so the only pair with c_x = c_y and distinct
states is diffusion stages 2 and 4 (c⁽¹⁾ = 1/4):

    S = ‖b(t + h/4, H⁽¹⁾₄) − b(t + h/4, H⁽¹⁾₂)‖ / ‖H⁽¹⁾₄ − H⁽¹⁾₂‖,

Shampine's estimate of the Lipschitz constant of the diffusion along the
step: the noise term, not only the drift, can make an SDE stiff (the
"pathwise stiffness" of Rackauckas & Nie 2020). It is not an estimate of the
drift's eigenvalues. It is read by :func:`pyodejl.solving.shampine_stiffness`
with ``unit_stages = (s + 1, s + 3)`` (:attr:`SDESolver.stiffness_stages`); a
tableau with two distinct drift stages at one c would name those instead.

**Derivatives.** As for ODEs (:mod:`pyodejl.solving.integrate`): the adaptive
solve fixes the accepted grid; :func:`grid_scan` replays the same SRI steps on
it, with the same Brownian increments, in a ``lax.scan`` that JAX
differentiates (the discrete gradient, forward-over-reverse Hessians). The
increments are constants of θ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._jit import jit, to_device
from pyodejl.solving.adaptive_rk import controlled_loop
from pyodejl.solving.explicit_rk import combine
from pyodejl.solving.solvers import Solver
from pyodejl.solving.steps import StepRecord

NOISE_TYPES = ("diagonal",)
"""Noise structures the SDE solvers handle: diagonal (b(t, y) has the state's shape, entry i drives y_i)."""


@dataclass(frozen=True)
class SRITableau:
    """Coefficients of an s-stage SRI method (Rößler 2010; Rackauckas & Nie 2017).

    Row i of ``A0``, ``A1``, ``B0``, ``B1`` (length s, strictly lower-triangular)
    gives stage i's weights on the earlier stages; ``error_terms`` is m in
    E₁ = h Σ_{i ≤ m} aᵢ.
    """

    c0: tuple[float, ...]
    c1: tuple[float, ...]
    A0: tuple[tuple[float, ...], ...]
    A1: tuple[tuple[float, ...], ...]
    B0: tuple[tuple[float, ...], ...]
    B1: tuple[tuple[float, ...], ...]
    alpha: tuple[float, ...]
    beta1: tuple[float, ...]
    beta2: tuple[float, ...]
    beta3: tuple[float, ...]
    beta4: tuple[float, ...]
    error_terms: int

    @property
    def stages(self) -> int:
        return len(self.alpha)

    def repeats_start(self, i: int, drift: bool) -> bool:
        """Whether stage i is evaluated at (t, y) itself — then it reuses stage 1's value."""
        c, A, B = (self.c0, self.A0, self.B0) if drift else (self.c1, self.A1, self.B1)
        return i == 0 or (c[i] == 0.0 and not any(A[i]) and not any(B[i]))

    def evaluations(self, drift: bool) -> int:
        """Distinct drift (or diffusion) evaluations per step."""
        return sum(1 for i in range(self.stages) if i == 0 or not self.repeats_start(i, drift))


SRIW1 = SRITableau(
    c0=(0.0, 3 / 4, 0.0, 0.0),
    c1=(0.0, 1 / 4, 1.0, 1 / 4),
    A0=((0.0,) * 4, (3 / 4, 0.0, 0.0, 0.0), (0.0,) * 4, (0.0,) * 4),
    A1=((0.0,) * 4, (1 / 4, 0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 1 / 4, 0.0)),
    B0=((0.0,) * 4, (3 / 2, 0.0, 0.0, 0.0), (0.0,) * 4, (0.0,) * 4),
    B1=((0.0,) * 4, (1 / 2, 0.0, 0.0, 0.0), (-1.0, 0.0, 0.0, 0.0), (-5.0, 3.0, 1 / 2, 0.0)),
    alpha=(1 / 3, 2 / 3, 0.0, 0.0),
    beta1=(-1.0, 4 / 3, 2 / 3, 0.0),
    beta2=(-1.0, 4 / 3, -1 / 3, 0.0),
    beta3=(2.0, -4 / 3, -2 / 3, 0.0),
    beta4=(-2.0, 5 / 3, -2 / 3, 1.0),
    error_terms=2,
)
"""Rößler's SRI2W1 (2010), named SRIW1 by Rackauckas & Nie (2017): strong order 1.5, weak order 2."""


SOSRI = SRITableau(
    c0=(0.0, -0.04199224421316468, 0.7898405466170333, 3.7504010171562823),
    c1=(0.0, 0.26204282091330466, 0.05879875232001766, 0.758661169101175),
    A0=((0.0,) * 4,
        (-0.04199224421316468, 0.0, 0.0, 0.0),
        (2.842612915017106, -2.0527723684000727, 0.0, 0.0),
        (4.338237071435815, -2.8895936137439793, 2.3017575594644466, 0.0)),
    A1=((0.0,) * 4,
        (0.26204282091330466, 0.0, 0.0, 0.0),
        (0.20903646383505375, -0.1502377115150361, 0.0, 0.0),
        (0.05836595312746999, 0.6149440396332373, 0.08535117634046772, 0.0)),
    B0=((0.0,) * 4,
        (-0.21641093549612528, 0.0, 0.0, 0.0),
        (1.5336352863679572, 0.26066223492647056, 0.0, 0.0),
        (-1.0536037558179159, 1.7015284721089472, -0.20725685784180017, 0.0)),
    B1=((0.0,) * 4,
        (-0.5119011827621657, 0.0, 0.0, 0.0),
        (2.67767339866713, -4.9395031322250995, 0.0, 0.0),
        (0.15580956238299215, 3.2361551006624674, -1.4223118283355949, 0.0)),
    alpha=(1.140099274172029, -0.6401334255743456, 0.4736296532772559, 0.026404498125060714),
    beta1=(-1.8453464565104432, 2.688764531100726, -0.2523866501071323, 0.40896857551684956),
    beta2=(0.4969658141589478, -0.5771202869753592, -0.12919702470322217, 0.2093514975196336),
    beta3=(2.8453464565104425, -2.688764531100725, 0.2523866501071322, -0.40896857551684945),
    beta4=(0.11522663875443433, -0.57877086147738, 0.2857851028163886, 0.17775911990655704),
    error_terms=4,
)
"""SOSRI, the stability-optimised SRI method of Rackauckas & Nie (2018, *Stability-optimized high
order methods and stiffness detection for pathwise stiff stochastic differential equations*,
arXiv:1804.04344; HPEC 2020): strong order 1.5, the solver of seed 004's Neural SDEs. Its four
drift stages all enter E₁ = h Σᵢ aᵢ (the reference implementation's estimate for four-stage SRI
methods), with δ = 1: the reference implementation's default for every SRI method but SRIW1
(1/6). No two of its stages share a time with distinct states, so it names no stiffness stages
and SRNSDE refuses it."""


SOSRI2 = SRITableau(
    c0=(0.0, 0.13804532298278663, 0.9999999999999992, 0.9999999999999994),
    c1=(0.0, 0.45605532163856893, 0.999999999999996, 0.9999999999999962),
    A0=((0.0,) * 4,
        (0.13804532298278663, 0.0, 0.0, 0.0),
        (0.5818361298250374, 0.4181638701749618, 0.0, 0.0),
        (0.4670018408674211, 0.8046204792187386, -0.27162232008616016, 0.0)),
    A1=((0.0,) * 4,
        (0.45605532163856893, 0.0, 0.0, 0.0),
        (0.7555807846451692, 0.24441921535482677, 0.0, 0.0),
        (0.6981181143266059, 0.3453277086024727, -0.04344582292908241, 0.0)),
    B0=((0.0,) * 4,
        (0.08852381537667678, 0.0, 0.0, 0.0),
        (1.0317752458971061, 0.4563552922077882, 0.0, 0.0),
        (1.73078280444124, -0.46089678470929774, -0.9637509618944188, 0.0)),
    B1=((0.0,) * 4,
        (0.6753186815412179, 0.0, 0.0, 0.0),
        (-0.07452812525785148, -0.49783736486149366, 0.0, 0.0),
        (-0.5591906709928903, 0.022696571806569924, -0.8984927888368557, 0.0)),
    alpha=(-0.15036858140642623, 0.7545275856696072, 0.686995463807979, -0.2911544680711602),
    beta1=(-0.45315689727309133, 0.8330937231303951, 0.3792843195533544, 0.24077885458934192),
    beta2=(-0.4994383733810986, 0.9181786186154077, -0.25613778661003145, -0.16260245862427797),
    beta3=(1.4531568972730915, -0.8330937231303933, -0.3792843195533583, -0.24077885458934023),
    beta4=(-0.4976090683622265, 0.9148155835648892, -1.4102107084476505, 0.9930041932449877),
    error_terms=4,
)
"""SOSRI2 (Rackauckas & Nie 2018), the stability-optimised SRI method whose last two drift stages
share c = 1 at distinct states, so Shampine's quotient of those two stages (the reference
implementation's stiffness detection for it) estimates the drift's Lipschitz constant along the
step; seed 004 solves its MNIST Neural SDE with it. E₁ over all four drift stages, δ = 1."""


@dataclass(frozen=True)
class SDESolver(Solver):
    """A named adaptive SRI solver for Itô SDEs with diagonal noise (see the module docstring).

    Attributes (beyond :class:`~pyodejl.solving.Solver`'s):
        delta: δ, the weight of the drift part E₁ of the error estimate.
        stiffness_stages: the two recorded stages Shampine's quotient compares
            (indices into the record's 2s stages: drift stages, then diffusion).
    """

    delta: float = 1 / 6
    stiffness_stages: tuple[int, int] | None = None
    is_sde: ClassVar[bool] = True

    def __hash__(self):
        return hash(self.name)

    def evaluations_per_step(self) -> int:
        """Drift plus diffusion evaluations per attempted step (stages at (t, y) reuse the first)."""
        return self.tableau.evaluations(True) + self.tableau.evaluations(False)

    @property
    def has_error_estimate(self) -> bool:
        return True

    @property
    def unit_stages(self) -> tuple[int, int] | None:
        return self.stiffness_stages


SDE_SOLVERS: dict[str, SDESolver] = {
    "sriw1": SDESolver(
        "sriw1", True, False, SRIW1.stages, False, 1.5,
        "Rößler (2010), SRI2W1; error estimate of Rackauckas & Nie (2017)", SRIW1,
        stiffness_stages=(SRIW1.stages + 1, SRIW1.stages + 3),
    ),
    "sosri": SDESolver(
        "sosri", True, False, SOSRI.stages, False, 1.5,
        "Rackauckas & Nie (2018), SOSRI: stability-optimised SRI; error estimate of Rackauckas & Nie (2017)",
        SOSRI, delta=1.0,
    ),
    "sosri2": SDESolver(
        "sosri2", True, False, SOSRI2.stages, False, 1.5,
        "Rackauckas & Nie (2018), SOSRI2: stability-optimised SRI; error estimate of Rackauckas & Nie (2017)",
        SOSRI2, delta=1.0, stiffness_stages=(2, 3),
    ),
}
"""Every SDE solver by name. ``order`` is the strong order (1.5), used as q in the controller's ratio^(−1/q)."""


def sde_solver_spec(solver) -> SDESolver:
    """The :class:`SDESolver` for a name or an SDESolver; an ODE solver or an unknown name raises."""
    if isinstance(solver, SDESolver):
        return solver
    if isinstance(solver, Solver) or isinstance(solver, str):
        from pyodejl.solving.solvers import SOLVERS

        name = solver.name if isinstance(solver, Solver) else solver
        if name in SDE_SOLVERS:
            return SDE_SOLVERS[name]
        if name in SOLVERS:
            raise ValueError(
                f"{name!r} is an ODE solver: it has no diffusion stages or Brownian increments. "
                f"An SDE model takes one of {sorted(SDE_SOLVERS)}"
            )
    raise ValueError(f"unknown SDE solver {solver!r}; expected one of {sorted(SDE_SOLVERS)} or a pyodejl SDESolver")


# ---- Brownian increments ------------------------------------------------------------------


def default_brownian_tol(t0, t1):
    """The tree's resolution, 2⁻²⁰ of the span: well below any step an adaptive solve takes.

    Below it the tree interpolates instead of sampling, so increments over
    shorter steps lose their exact distribution (the tree's cost grows only
    with log₂ of the ratio)."""
    return (t1 - t0) * 2.0**-20


def brownian_increments(seed: int, t_start, t_end, tol, shape, dtype, s, u):
    """ΔW and the space-time Lévy area H over [s, u] of every trajectory's path, each ``shape`` = ``(B, D)``.

    Trajectory b's path is a ``diffrax.VirtualBrownianTree`` on [t_start, t_end]
    keyed by ``fold_in(key(seed), b)``; θ-independent (gradients stopped).
    """
    B, D = shape
    base = jax.random.key(seed)

    def one(b):
        tree = diffrax.VirtualBrownianTree(
            t_start, t_end, tol, jax.ShapeDtypeStruct((D,), dtype), jax.random.fold_in(base, b),
            levy_area=diffrax.SpaceTimeLevyArea,
        )
        inc = tree.evaluate(s, u, use_levy=True)
        return inc.W, inc.H

    dW, H = jax.vmap(one)(jnp.arange(B))
    return jax.lax.stop_gradient(dW), jax.lax.stop_gradient(H)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class StepNoise:
    """The iterated Itô integrals of one step per state entry, ``(B, D)`` each (zeros on padding steps).

    ``dW`` ΔW; ``chi1`` I_(1,1)/√h; ``chi2`` I_(1,0)/h; ``chi3`` I_(1,1,1)/h; ``sqrt_h`` √h (scalar).
    """

    dW: jax.Array
    chi1: jax.Array
    chi2: jax.Array
    chi3: jax.Array
    sqrt_h: jax.Array


def step_noise(dW, H, h) -> StepNoise:
    """:class:`StepNoise` from ΔW, H and h; a step of length 0 gets zeros (an exact no-op step)."""
    valid = h > 0
    hs = jnp.where(valid, h, 1.0)
    sq = jnp.sqrt(hs)
    z = lambda x: jnp.where(valid, x, 0.0)
    dW = z(dW)
    return StepNoise(
        dW=dW,
        chi1=z((dW * dW - hs) / (2 * sq)),
        chi2=z(dW / 2 + H),
        chi3=z((dW**3 - 3 * hs * dW) / (6 * hs)),
        sqrt_h=z(sq),
    )


# ---- one SRI step --------------------------------------------------------------------------


def sri_step(tab: SRITableau, delta: float, a, b, t0, t1, y, noise: StepNoise):
    """One SRI step from (t0, y) to t1 with the given noise.

    Args:
        tab: the SRI tableau.
        delta: δ, the weight of E₁ in the error estimate.
        a: the drift ``a(t, y)``, y's shape.
        b: the diagonal diffusion ``b(t, y)``, y's shape.
        t0: start of the step.
        t1: its end.
        y: the state at t0, any shape (a batch ``(B, D)``).
        noise: the step's :class:`StepNoise`, y's shape.

    Returns:
        ``(y1, error, stage_states, stage_values)``: the error E = δE₁ + E₂ and
        the ``(2s, *y.shape)`` stages (drift, then diffusion; see the module docstring).
    """
    h = t1 - t0
    s = tab.stages
    avals, bvals, H0, H1 = [], [], [], []
    for i in range(s):
        if tab.repeats_start(i, True) and i > 0:
            H0.append(H0[0])
            avals.append(avals[0])
        else:
            H0.append(combine(combine(y, h, tab.A0[i][:i], avals), noise.chi2, tab.B0[i][:i], bvals))
            avals.append(a(t0 + tab.c0[i] * h, H0[i]))
        if tab.repeats_start(i, False) and i > 0:
            H1.append(H1[0])
            bvals.append(bvals[0])
        else:
            H1.append(combine(combine(y, h, tab.A1[i][:i], avals), noise.sqrt_h, tab.B1[i][:i], bvals))
            bvals.append(b(t0 + tab.c1[i] * h, H1[i]))
    zero = jnp.zeros_like(y)
    drift = combine(zero, h, tab.alpha, avals)
    diffusion = sum((tab.beta1[i] * noise.dW + tab.beta2[i] * noise.chi1) * bvals[i] for i in range(s))
    e2 = sum((tab.beta3[i] * noise.chi2 + tab.beta4[i] * noise.chi3) * bvals[i] for i in range(s))
    e1 = combine(zero, h, (1.0,) * tab.error_terms, avals[: tab.error_terms])
    y1 = y + drift + diffusion + e2
    return y1, delta * e1 + e2, jnp.stack(H0 + H1), jnp.stack(avals + bvals)


# ---- solves on a model ---------------------------------------------------------------------


def _fields(model, theta):
    return (lambda t, y: model.rhs(t, y, theta)), (lambda t, y: model.diffusion_rhs(t, y, theta))


def _increments(model, t_start, t_end, y0, seed=None):
    tol = model.brownian_tol
    tol = default_brownian_tol(t_start, t_end) if tol is None else tol
    seed = model.seed if seed is None else seed
    return lambda s, u: brownian_increments(seed, t_start, t_end, tol, y0.shape, y0.dtype, s, u)


def adaptive_states(model, theta, ts, y0, seed=None):
    """One adaptive SRI solve, pure and traceable: as :func:`pyodejl.solving.integrate.adaptive_states`.

    Args:
        model: a :class:`pyodejl.NeuralSDE`.
        theta: ``(p,)`` drift then diffusion parameters.
        ts: ``(T,)`` strictly increasing observation times (the path lives on [ts[0], ts[-1]]).
        y0: ``(B, D)``.
        seed: the paths' seed, possibly traced (default None: the model's). A compiled
            solve that takes it as an argument serves every seed of a model.
    """
    spec = sde_solver_spec(model.solver)
    a, b = _fields(model, theta)
    increments = _increments(model, ts[0], ts[-1], y0, seed)

    def step(t0, t1, y, _):
        noise = step_noise(*increments(t0, t1), t1 - t0)
        y1, err, _, _ = sri_step(spec.tableau, spec.delta, a, b, t0, t1, y, noise)
        return y1, err, None

    h0 = jnp.asarray(model.dt, dtype=ts.dtype)
    return controlled_loop(
        step, None, spec.order, model.rtol, model.atol, model.max_steps, ts, y0, h0, model.controller, model.error_dims
    )


def _tol(model, t_start, t_end):
    return default_brownian_tol(t_start, t_end) if model.brownian_tol is None else model.brownian_tol


def noise_between(seed, t_start, t_end, tol, t0, t1, shape, dtype) -> StepNoise:
    """The :class:`StepNoise` of the steps [t0ⱼ, t1ⱼ] (``t0``, ``t1`` ``(N,)``; leading axis N) on the
    paths over [t_start, t_end]. Steps of length 0 (padding) get zeros."""
    increments = lambda s, u: brownian_increments(seed, t_start, t_end, tol, shape, dtype, s, u)
    dW, H = jax.vmap(increments)(t0, t1)
    return jax.vmap(step_noise)(dW, H, t1 - t0)


# The tree is the bulk of what XLA compiles in an SDE replay (seconds, against a fraction
# of a second for the SRI steps), and it does not depend on the model: one kernel per
# (N, B, D) serves every model and seed. Its fast-compile options cut that compile ~4×.
_noise_kernel = jit(noise_between, static_argnums=(6, 7), fast_compile=True)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SDEGrid:
    """A frozen step grid with its Brownian noise: what the SDE replay steps on.

    ``times`` ``(N + 1,)`` step end points (repeated final entries: padding);
    ``noise`` the :class:`StepNoise` of each step, leading axis N. Computed
    once per solve (:func:`replay_grid`), so the differentiated replay holds
    no Brownian tree.
    """

    times: jax.Array
    noise: StepNoise


def grid_noise(model, times, y0) -> StepNoise:
    """The :class:`StepNoise` of every step of the grid ``times`` ``(N + 1,)``, leading axis N (traceable)."""
    t_start, t_end = times[0], times[-1]
    return noise_between(model.seed, t_start, t_end, _tol(model, t_start, t_end), times[:-1], times[1:],
                         y0.shape, y0.dtype)


def replay_grid(model, times, y0, noise: StepNoise | None = None) -> SDEGrid:
    """The :class:`SDEGrid` of the grid ``times`` ``(N + 1,)`` for initial states ``y0`` ``(B, D)`` (host side);
    ``noise``: the grid's noise if already drawn."""
    if noise is None:
        times = np.asarray(times, dtype=np.float64)  # sliced on the host: no eager device ops to compile
        t_start, t_end = times[0], times[-1]
        noise = _noise_kernel(model.seed, t_start, t_end, _tol(model, t_start, t_end), to_device(times[:-1]),
                              to_device(times[1:]), tuple(np.shape(y0)), jnp.float64)
    return SDEGrid(to_device(times), noise)


def interval_noise(model, t_start, t_end, t0, t1, y) -> StepNoise:
    """The :class:`StepNoise` of the one step [t0, t1] on the model's paths over [t_start, t_end] (host side)."""
    dt = lambda x: to_device(np.asarray(x, dtype=np.float64))
    noise = _noise_kernel(model.seed, dt(t_start), dt(t_end), _tol(model, t_start, t_end), dt([t0]), dt([t1]),
                          tuple(np.shape(y)), jnp.float64)
    return jax.tree_util.tree_map(lambda x: x[0], noise)


def grid_scan(model, theta, times, y0, record=False):
    """Replay the SRI steps on ``times``: as :func:`pyodejl.solving.integrate._grid_scan`.

    ``times``: the step end points ``(N + 1,)``, or an :class:`SDEGrid`
    carrying their noise (then no Brownian tree is evaluated here).

    Returns node states ``(N + 1, B, D)``, errors ``(N, B, D)`` and, with
    ``record``, stage states and values ``(N, 2s, B, D)`` (else None).
    """
    spec = sde_solver_spec(model.solver)
    a, b = _fields(model, theta)
    if isinstance(times, SDEGrid):
        times, noises = times.times, times.noise
    else:
        noises = grid_noise(model, times, y0)
    pairs = jnp.stack([times[:-1], times[1:]], axis=1)

    def step(y, xs):
        t01, noise = xs
        y1, err, g, k = sri_step(spec.tableau, spec.delta, a, b, t01[0], t01[1], y, noise)
        return y1, (y1, err, g if record else None, k if record else None)

    _, (ys, errs, gs, ks) = jax.lax.scan(step, y0, (pairs, noises))
    return jnp.concatenate([y0[None], ys], axis=0), errs, gs, ks


def local_step(model, theta, t_start, t_end, t0, t1, y, noise: StepNoise | None = None) -> StepRecord:
    """One SRI step from (t0, y) to t1 on the model's paths over [t_start, t_end], as a one-step record.

    The local regularisers (seed 004 ch. 6) read it; ``noise`` is the step's
    :class:`StepNoise` (default None: drawn here from the tree). A step of
    length 0 is invalid (estimates 0).
    """
    spec = sde_solver_spec(model.solver)
    a, b = _fields(model, theta)
    if noise is None:
        noise = jax.tree_util.tree_map(
            lambda x: x[0],
            noise_between(model.seed, t_start, t_end, _tol(model, t_start, t_end), t0[None], t1[None], y.shape,
                          y.dtype),
        )
    y1, err, g, k = sri_step(spec.tableau, spec.delta, a, b, t0, t1, y, noise)
    one = lambda x: x[None]
    return StepRecord(
        t=one(t0), dt=one(t1 - t0), y=one(y), y1=one(y1), k=one(k), stage_states=one(g), error=one(err),
        valid=one(t1 > t0),
    )
