"""Objectives: scalar losses of a flat θ with gradients, HVPs and Hessians by named methods."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyodejl._jit import to_device
from pyodejl._sharding import to_host
from pyodejl._validation import check_integer, check_tangents, check_theta
from pyodejl.derivatives.methods import resolve_gradient_method, resolve_hessian_method
from pyodejl.derivatives.operator import HessianOperator


class Objective:
    """Base class of every loss L(θ), θ a float64 vector of length :attr:`num_params`.

    Subclasses provide

    * ``value_function()`` → ``(fn, args)``: ``fn(theta, *args)`` is the loss as
      a pure, vmappable JAX function (NaN if its solve fails);
    * ``direct_function(theta)`` → ``(fn, args)``: the loss discretised as at
      θ (for ODE losses: on θ's accepted step grid), differentiated by the
      ``direct-*`` and ``elementwise`` methods;
    * for ODE losses, ``continuous_problem()`` for the adjoint methods.

    Public methods take and return NumPy float64 arrays.
    """

    num_params: int
    default_hessian_method = "auto"
    default_gradient_method = "discrete"
    is_ode = False
    #: whether :meth:`direct_function` reads θ's values on the host (an adaptive solve fixes the
    #: discretisation there); when not, a trainer may keep θ on the device between steps
    direct_function_reads_theta = True

    # ---- hooks -----------------------------------------------------------
    def value_function(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def direct_function(self, theta):  # pragma: no cover - abstract
        raise NotImplementedError

    def default_chunk(self) -> int:
        return min(self.num_params, 256)

    def raise_if_failed(self, out):
        """Pass finite results through as NumPy (gathered across processes); raise on NaN/inf
        (a failed solve or a non-finite loss)."""
        out = to_host(out)
        if not np.all(np.isfinite(out)):
            from pyodejl.solving import SolveError

            raise SolveError(
                "the derivative is not finite (NaN or inf): the loss is not finite near this theta"
                + (", or a solve hit max_steps or diverged" if self.is_ode else "")
            )
        return out

    def place(self, devices):
        """Split this objective's batch over ``devices`` (in place; returns self); see
        :mod:`pyodejl._sharding`. Objectives without a batch raise NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} has no batch to split over devices")

    def continuous_gradient(self, kind, theta, seminorm=False):
        raise ValueError(f"gradient method {kind!r} needs an ODE objective; this objective supports 'discrete'")

    # ---- public API --------------------------------------------------------
    def check_theta(self, theta):
        return check_theta(theta, self.num_params)

    def value(self, theta) -> float:
        """L(θ). θ: ``(p,)``."""
        theta = self.check_theta(theta)
        fn, args = self.value_function()
        from pyodejl.derivatives.autodiff import batched_values

        val = float(to_host(batched_values(fn, to_device(np.asarray(theta)[None]), args))[0])
        if not np.isfinite(val):
            self._explain_failure(theta)
            from pyodejl.solving import SolveError

            raise SolveError("the loss is not finite (NaN or inf) at this theta")
        return val

    def values(self, thetas, batch: int = 512) -> np.ndarray:
        """L at each row of ``thetas`` ``(n, p)``, vectorised in batches; NaN where it is not finite."""
        from pyodejl.derivatives.autodiff import batched_values

        fn, args = self.value_function()
        thetas = np.asarray(thetas, dtype=np.float64)
        blocks = (to_device(thetas[i : i + batch]) for i in range(0, len(thetas), batch))
        out = [to_host(batched_values(fn, block, args)) for block in blocks]
        return np.concatenate(out) if out else np.zeros(0)

    def _explain_failure(self, theta):
        """Raise a specific error for a non-finite loss, if the subclass can name the cause."""

    def grad(self, theta, method=None) -> np.ndarray:
        """∇L(θ), shape ``(p,)``, by ``method``: a name or a gradient-method object
        (default ``"discrete"``; see :data:`pyodejl.GRADIENT_METHODS`)."""
        theta = self.check_theta(theta)
        m = resolve_gradient_method(method, self.default_gradient_method)
        if getattr(m, "needs_ode", False) and not self.is_ode:
            raise ValueError(f"gradient method {m.name!r} needs an ODE objective; this objective supports 'discrete'")
        return self.raise_if_failed(m.gradient(self, theta))

    def _method(self, method):
        m = resolve_hessian_method(method, self.default_hessian_method)
        if getattr(m, "needs_ode", False) and not self.is_ode:
            raise ValueError(f"Hessian method {m.name!r} needs an ODE objective")
        return m

    def _chunk(self, chunk_size):
        if chunk_size is None:
            return max(1, self.default_chunk())
        return check_integer(chunk_size, "chunk_size")

    def hvp(self, theta, v, method=None, *, chunk_size=None, return_info=False):
        """Hessian-vector product(s) H(θ) v.

        Args:
            theta: ``(p,)``.
            v: ``(p,)`` or a block ``(p, k)``.
            method: a Hessian-method name or object (default ``"auto"``: the fastest
                exact one — ``direct-direct`` for products).
            chunk_size: tangents per compiled batch (default: sized to a memory budget).

        Returns:
            ``(p,)`` or ``(p, k)``; with ``return_info`` also a dict of details.
        """
        theta = self.check_theta(theta)
        V, vector = check_tangents(v, self.num_params)
        m = self._method(method)
        out, info = m.hvp(self, theta, V, self._chunk(chunk_size))
        out = self.raise_if_failed(out)
        out = out[:, 0] if vector else out
        return (out, info) if return_info else out

    def hessian(self, theta, method=None, *, chunk_size=None, return_info=False):
        """The full Hessian, ``(p, p)``, from batched products (or per entry for
        ``"fd"``/``"elementwise"``). Exact methods give a matrix symmetric to round-off.
        """
        theta = self.check_theta(theta)
        m = self._method(method)
        start = time.perf_counter()
        # structured assembly wants wide blocks, not the tangent count sized for products
        own = chunk_size is None and getattr(m, "sizes_own_blocks", False)
        H, info = m.hessian(self, theta, None if own else self._chunk(chunk_size))
        H = self.raise_if_failed(H)
        info = {**info, "seconds": time.perf_counter() - start}
        return (H, info) if return_info else H

    def hessian_operator(self, theta, method=None, *, chunk_size=None) -> HessianOperator:
        """H(θ) as a :class:`HessianOperator` (a SciPy ``LinearOperator`` with ``matvecs``).

        The linearisation point (for ODE losses, the step grid) is computed once, and
        so is the step of a finite-difference method.
        """
        theta = self.check_theta(theta)
        m = self._method(method)
        if hasattr(m, "with_step_at"):  # finite differences: choose the step once, not per product
            m = m.with_step_at(self, theta)
        chunk = self._chunk(chunk_size)
        if hasattr(self, "direct_function"):
            try:
                self.direct_function(theta)  # warm the per-θ cache once
            except NotImplementedError:  # pragma: no cover
                pass

        def apply(V):
            out, _ = m.hvp(self, theta, V, chunk)
            return out

        return HessianOperator(apply, self.num_params, m.name)

    # ---- Gauss–Newton and Fisher (pyodejl.derivatives.gauss_newton) ----------------
    def ggn_operator(self, theta, *, chunk_size=None) -> HessianOperator:
        """The data term's generalised Gauss–Newton matrix Jᵀ∇²ℓJ as an operator;
        see :func:`pyodejl.derivatives.gauss_newton.ggn_operator`."""
        from pyodejl.derivatives import gauss_newton

        return gauss_newton.ggn_operator(self, theta, chunk_size=chunk_size)

    def ggn(self, theta, *, chunk_size=None) -> np.ndarray:
        """The dense GGN ``(p, p)``; see :func:`pyodejl.derivatives.gauss_newton.ggn`."""
        from pyodejl.derivatives import gauss_newton

        return gauss_newton.ggn(self, theta, chunk_size=chunk_size)

    def empirical_fisher_operator(self, theta) -> HessianOperator:
        """(1/N) Σ_n g_n g_nᵀ of the data term; see
        :func:`pyodejl.derivatives.gauss_newton.empirical_fisher_operator`."""
        from pyodejl.derivatives import gauss_newton

        return gauss_newton.empirical_fisher_operator(self, theta)

    def empirical_fisher(self, theta) -> np.ndarray:
        """The dense empirical Fisher ``(p, p)``; see
        :func:`pyodejl.derivatives.gauss_newton.empirical_fisher`."""
        from pyodejl.derivatives import gauss_newton

        return gauss_newton.empirical_fisher(self, theta)


@dataclass(frozen=True)
class _ArgsLoss:
    fn: Callable

    def __call__(self, theta, *args):
        return self.fn(theta, *args)


class FunctionObjective(Objective):
    """An objective from any pure JAX loss ``fn(theta, *args) -> scalar``.

    For networks without an ODE (e.g. a feedforward baseline). ``fn`` should be
    a module-level function (or other hashable callable) so compilations are
    shared across instances. Supports the ``direct-*``, ``fd``, ``fd-grad`` and
    ``elementwise`` Hessian methods and the ``discrete`` gradient.

    Args:
        fn: the loss.
        num_params: p.
        args: a tuple of arrays passed after θ (data).
        devices: split the data over JAX devices along the leading axis of
            ``args[0]`` (the batch; every argument with that leading size is
            split, the rest replicated); as for :class:`pyodejl.ObservationLoss`.
    """

    direct_function_reads_theta = False

    def __init__(self, fn: Callable, num_params: int, args: tuple[Any, ...] = (), devices=None):
        self.num_params = int(num_params)
        self._fn = fn
        self._host_args = tuple(args)
        self.place(devices)

    def place(self, devices):
        """Split the data over ``devices`` (in place; returns self), as the constructor's ``devices``.

        Args:
            devices: None or 1 (one device), a count n or a list of devices.
        """
        from pyodejl._sharding import batch_placement, resolve_devices

        args = self._host_args
        self.devices = resolve_devices(devices)
        batch = np.shape(args[0])[0] if args and np.ndim(args[0]) else 1
        put = batch_placement(self.devices, batch)
        self._args = tuple(put(a) for a in args)
        return self

    def value_function(self):
        return self._fn, self._args

    def direct_function(self, theta):
        return self._fn, self._args
