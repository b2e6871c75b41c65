"""The menu of derivative methods: one clear name each, one interface.

Gradient methods (``objective.grad(theta, method=...)``):

==================  =============================================================
``"discrete"``      reverse mode through the solver's own steps
                    (discretise-then-optimise).
``"backsolve"``     continuous adjoint; the augmented state is integrated backward,
                    with a jump at each observation time (Chen et al. 2018).
``"interpolating"`` continuous adjoint reading the forward state from the forward
                    solution's dense interpolant (SciMLSensitivity's
                    ``InterpolatingAdjoint``). Both adjoints take
                    ``seminorm=True`` as objects (``Interpolating(seminorm=True)``):
                    the parameter integral leaves the backward error control
                    (Kidger, Chen & Lyons 2021).
``"forward"``       continuous forward-sensitivity equations; cost grows with p.
==================  =============================================================

Hessian methods (``hvp``, ``hessian``, ``hessian_operator``):

=====================  ==========================================================
``"direct-direct"``    forward mode over the discrete gradient (seed 000's AA,
                       forward-over-reverse).
``"direct-adjoint"``   reverse mode over the discrete gradient.
``"adjoint-direct"``   forward mode through the continuous-adjoint gradient's
                       forward and backward solves (ForwardDiffOverAdjoint).
``"adjoint-adjoint"``  continuous second-order adjoint: tangent-linear state,
                       first- and second-order adjoints integrated backward
                       (Ito, Matsuda & Miyatake 2021; Papadimitriou &
                       Giannakoglou 2008).
``"fd"``               four-point central differences of the loss (seed 000 Eq. 10).
``"fd-grad"``          central differences of the gradient.
``"elementwise"``      one scalar second derivative per entry (seed 000's EA).
``"structured"``       the discrete loss's exact Hessian (= direct-direct) from
                       sensitivities and adjoints; for MLP vector fields (any depth).
``"auto"`` (default)   ``structured`` for full Hessians where it applies, else
                       ``direct-direct``.
=====================  ==========================================================

Every name is also a class (``Discrete()``, ``Backsolve()``, ``DirectDirect()``,
``FiniteDifference(h=1e-4)``, …) whose instances may be passed as ``method=``.
**A new method is one class** (here or in its own module) **plus one entry in**
:data:`GRADIENT_METHODS` or :data:`HESSIAN_METHODS`; the API, ``RunConfig`` and
the CLI read these registries.
"""

from __future__ import annotations

import numpy as np

from pyodejl._jit import to_device
from pyodejl._sharding import to_host
from pyodejl.derivatives.autodiff import (
    elementwise_second_derivatives,
    hvp_forward_over_reverse,
    hvp_reverse_over_reverse,
    value_and_grad,
)
from pyodejl.derivatives.finite_differences import FiniteDifference, FiniteDifferenceGradient


class _GradientMethod:
    name = ""
    needs_ode = False

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self).__name__)


class Discrete(_GradientMethod):
    """Reverse mode through the solver's own steps (discretise-then-optimise)."""

    name = "discrete"

    def gradient(self, objective, theta):
        fn, args = objective.direct_function(theta)
        _, g = value_and_grad(fn, to_device(theta), args)
        return g


class _Continuous(_GradientMethod):
    needs_ode = True

    def gradient(self, objective, theta):
        return objective.continuous_gradient(self.name, theta)


class _Adjoint(_Continuous):
    """A continuous adjoint; ``seminorm=True`` leaves the parameter integral out of
    the backward solve's error control (Kidger, Chen & Lyons, ICML 2021)."""

    def __init__(self, seminorm: bool = False):
        if not isinstance(seminorm, bool):
            raise TypeError(f"seminorm must be True or False, got {seminorm!r}")
        self.seminorm = seminorm

    def gradient(self, objective, theta):
        return objective.continuous_gradient(self.name, theta, seminorm=self.seminorm)

    def __repr__(self):
        return f"{type(self).__name__}(seminorm=True)" if self.seminorm else f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other) and self.seminorm == other.seminorm

    def __hash__(self):
        return hash((type(self).__name__, self.seminorm))


class Backsolve(_Adjoint):
    """Continuous adjoint integrated backward with the state (Chen et al. 2018),
    checkpointed at observation times.

    Args:
        seminorm: control the backward error of (y, λ) only, not of the p-entry
            parameter integral (default False: every entry, as SciMLSensitivity's
            default; True: Kidger, Chen & Lyons 2021 — fewer backward steps when p
            is large, the gradient accurate to the same tolerance).
    """

    name = "backsolve"


class Interpolating(_Adjoint):
    """Continuous adjoint reading y(t) from the forward solve's dense interpolant
    (SciMLSensitivity's ``InterpolatingAdjoint``).

    Args:
        seminorm: control the backward error of λ only, not of the parameter
            integral (default False; see :class:`Backsolve`).
    """

    name = "interpolating"


class ForwardSensitivity(_Continuous):
    """Forward-sensitivity equations S' = f_y S + f_θ; cost grows with p."""

    name = "forward"


def block_widths(k: int, chunk: int, p: int) -> list[int]:
    """Compiled block widths covering k columns (the last block is zero-padded).

    Many columns (k >= chunk) are split into equal blocks of at most ``chunk``;
    a full identity (k == p) is one block; a few columns are padded to a power
    of two. This bounds the number of distinct compiled shapes per objective.
    """
    if k >= chunk:
        n = -(-k // chunk)
        return [-(-k // n)] * n
    if k == p:
        return [k]
    return [min(chunk, 1 << (k - 1).bit_length())]


class HessianMethod:
    """Base: subclasses provide ``_apply(objective, theta, V) -> (p, b)`` for one block."""

    name = ""
    exact = True
    needs_ode = False
    sizes_own_blocks = False  # True: a None chunk means "choose the block width yourself"

    def hvp(self, objective, theta, V, chunk):
        p, k = V.shape
        out, start = np.empty((p, k)), 0
        theta_j = to_device(theta)
        for width in block_widths(k, chunk, p):
            block = V[:, start : start + width]
            n = block.shape[1]
            if n < width:
                block = np.concatenate([block, np.zeros((p, width - n))], axis=1)
            out[:, start : start + n] = to_host(self._apply(objective, theta_j, to_device(block)))[:, :n]
            start += n
        return out, {"method": self.name, "chunk_size": chunk}

    def hessian(self, objective, theta, chunk):
        return self.hvp(objective, theta, np.eye(len(theta)), chunk)

    def __repr__(self):
        return f"{type(self).__name__}()"


class DirectDirect(HessianMethod):
    """Forward mode over the discrete (reverse-mode) gradient — seed 000's AA done properly."""

    name = "direct-direct"

    def _apply(self, objective, theta, V):
        fn, args = objective.direct_function(theta)
        return hvp_forward_over_reverse(fn, theta, V, args)


class DirectAdjoint(HessianMethod):
    """Reverse mode over the discrete (reverse-mode) gradient."""

    name = "direct-adjoint"

    def _apply(self, objective, theta, V):
        fn, args = objective.direct_function(theta)
        return hvp_reverse_over_reverse(fn, theta, V, args)


class AdjointDirect(HessianMethod):
    """Forward mode through the continuous-adjoint gradient (ForwardDiffOverAdjoint)."""

    name = "adjoint-direct"
    needs_ode = True

    def _apply(self, objective, theta, V):
        from pyodejl.derivatives.continuous import hvp_adjoint_direct

        return objective.raise_if_failed(hvp_adjoint_direct(*objective.continuous_problem(theta), theta, V))


class AdjointAdjoint(HessianMethod):
    """Continuous second-order adjoint; one forward and one backward solve per product."""

    name = "adjoint-adjoint"
    needs_ode = True

    def _apply(self, objective, theta, V):
        from pyodejl.derivatives.continuous import hvp_second_order_adjoint

        return objective.raise_if_failed(hvp_second_order_adjoint(*objective.continuous_problem(theta), theta, V))


class Elementwise(HessianMethod):
    """One scalar second derivative per Hessian entry (seed 000's EA technique).

    Computes the upper triangle entry by entry and mirrors it; ``hvp`` forms the
    full matrix first. For small models (p up to a few hundred).
    """

    name = "elementwise"

    def hessian(self, objective, theta, chunk):
        fn, args = objective.direct_function(theta)
        p = len(theta)
        iu, ju = np.triu_indices(p)
        pairs = np.stack([iu, ju], axis=1).astype(np.int32)
        vals = to_host(elementwise_second_derivatives(fn, theta, pairs, args, max(chunk, 1)))
        H = np.zeros((p, p))
        H[iu, ju] = vals
        H[ju, iu] = vals
        return H, {"method": self.name, "entries": len(iu)}

    def hvp(self, objective, theta, V, chunk):
        H, info = self.hessian(objective, theta, chunk)
        return H @ V, info


class Structured(HessianMethod):
    """The discrete loss's exact Hessian from forward sensitivities and discrete adjoints.

    Same matrix as ``direct-direct`` (to round-off), assembled as
    ``Σ_obs Sᵀ∇²ℓ S + Σ_calls [S; I]ᵀ ∇²(μ·f) [S; I]`` with the curvature of an
    MLP vector field (any depth) in closed form, so every sum is a dense matrix
    product instead of p tangents through every hidden activation (see
    :mod:`pyodejl.derivatives.structured`). Applies to observed-ODE losses with
    an MLP vector field, an explicit solver and no regularizer terms
    (augmentation, time dependence and extra parameters are fine); otherwise
    ``hessian`` raises NotImplementedError naming why. ``chunk_size`` is the
    number of rows of H (by symmetry, θ columns) formed per matrix product
    (default: sized to a 1 GiB budget). Hessian-vector products use ``direct-direct``.
    """

    name = "structured"
    needs_ode = True
    sizes_own_blocks = True

    def hvp(self, objective, theta, V, chunk):
        out, info = DirectDirect().hvp(objective, theta, V, _tangent_chunk(objective, chunk))
        return out, {**info, "method": self.name, "products_by": "direct-direct"}

    def hessian(self, objective, theta, chunk):
        from pyodejl.derivatives import structured

        H = structured.hessian(objective, theta, chunk)
        return H, {"method": self.name, "block": structured.block_rows(len(theta), chunk)}


def _tangent_chunk(objective, chunk):
    return max(1, objective.default_chunk()) if chunk is None else chunk


class Auto(HessianMethod):
    """The fastest exact method: ``structured`` for full Hessians where it applies,
    otherwise ``direct-direct``."""

    name = "auto"
    sizes_own_blocks = True

    def hvp(self, objective, theta, V, chunk):
        return DirectDirect().hvp(objective, theta, V, _tangent_chunk(objective, chunk))

    def hessian(self, objective, theta, chunk):
        from pyodejl.derivatives import structured

        if structured.supports(objective):
            return Structured().hessian(objective, theta, chunk)
        return DirectDirect().hessian(objective, theta, _tangent_chunk(objective, chunk))


HESSIAN_METHODS = {
    cls.name: cls
    for cls in (
        DirectDirect,
        DirectAdjoint,
        AdjointDirect,
        AdjointAdjoint,
        FiniteDifference,
        FiniteDifferenceGradient,
        Elementwise,
    )
}
"""The seven independent Hessian methods, by name."""

FAST_METHODS = {cls.name: cls for cls in (Structured, Auto)}
"""Faster routes to the same matrix as ``direct-direct`` (not independent checks)."""

GRADIENT_METHODS = {cls.name: cls for cls in (Discrete, Backsolve, Interpolating, ForwardSensitivity)}
"""The gradient methods, by name."""


def resolve_hessian_method(method, default="auto"):
    """A Hessian-method instance from a name, an instance or None (the default, ``"auto"``)."""
    if method is None:
        method = default
    if isinstance(method, str):
        known = {**HESSIAN_METHODS, **FAST_METHODS}
        try:
            return known[method]()
        except KeyError:
            raise ValueError(f"unknown Hessian method {method!r}; expected one of {sorted(known)}") from None
    if hasattr(method, "hvp") and hasattr(method, "hessian") and hasattr(method, "name"):
        return method
    raise TypeError(f"method must be a method name or a Hessian-method object, got {method!r}")


def resolve_gradient_method(method, default="discrete"):
    """A gradient-method instance from a name, an instance or None (the default, ``"discrete"``)."""
    if method is None:
        method = default
    if isinstance(method, str):
        try:
            return GRADIENT_METHODS[method]()
        except KeyError:
            raise ValueError(f"unknown gradient method {method!r}; expected one of {list(GRADIENT_METHODS)}") from None
    if callable(getattr(method, "gradient", None)) and hasattr(method, "name"):
        return method
    raise TypeError(f"method must be a gradient-method name or object, got {method!r}")
