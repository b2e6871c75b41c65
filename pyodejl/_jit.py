"""``jax.jit`` for pyodejl's kernels, optionally under faster-compiling XLA options.

A fresh process spends most of a first Hessian compiling, and on CPU most of
that is LLVM code generation for the many small fusions of unrolled
Runge–Kutta steps. XLA's classic loop emitters generate those fusions faster
than its newer MLIR fusion emitters, and LLVM's -O1 pipeline faster than its
default. Kernels whose time goes to matrix products (library calls either
way) run as fast, so they opt in (``fast_compile=True``); kernels dominated by
elementwise work on large batches (the forward solve, forward-over-reverse
products) run up to 2× slower under these options and keep XLA's defaults.
``benchmarks/compile_options.py`` measures both.

If the installed XLA does not know an option, the first call falls back to
plain ``jax.jit`` for the rest of the process.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

#: XLA options of ``fast_compile`` kernels (read when a kernel is first called).
COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}

_options_supported = True


class _Jitted:
    def __init__(self, fun, static_argnums, fast_compile):
        self._fun, self._static, self._fast = fun, static_argnums, fast_compile
        self._with_options = self._plain = None
        functools.update_wrapper(self, fun)

    def _current(self):
        if self._fast and _options_supported:
            if self._with_options is None:
                self._with_options = jax.jit(self._fun, static_argnums=self._static, compiler_options=COMPILER_OPTIONS)
            return self._with_options
        if self._plain is None:
            self._plain = jax.jit(self._fun, static_argnums=self._static)
        return self._plain

    def __call__(self, *args, **kwargs):
        global _options_supported
        try:
            return self._current()(*args, **kwargs)
        except jax.errors.JaxRuntimeError as e:
            if not (self._fast and _options_supported and "compile option" in str(e)):
                raise
            _options_supported = False
            return self._current()(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return self._current().lower(*args, **kwargs)


def jit(fun=None, *, static_argnums=None, fast_compile: bool = False):
    """``jax.jit(fun, static_argnums=...)``; with ``fast_compile`` under :data:`COMPILER_OPTIONS`."""
    if fun is None:
        return functools.partial(jit, static_argnums=static_argnums, fast_compile=fast_compile)
    return _Jitted(fun, static_argnums, fast_compile)


def to_device(x):
    """``x`` as a JAX array, transferred with ``jax.device_put``.

    ``jnp.asarray`` on a NumPy array stages an identity computation that XLA
    compiles once per shape (tens of milliseconds each on a first call); a
    transfer compiles nothing.
    """
    return x if isinstance(x, jax.Array) else jax.device_put(np.asarray(x))
