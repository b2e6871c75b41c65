"""``jax.jit`` with the XLA options pyodejl compiles its kernels under.

A fresh process spends most of a first Hessian compiling, and on CPU most of
that is LLVM code generation for the many small fusions of an unrolled
Runge–Kutta step. XLA's classic loop emitters generate those fusions in about
two thirds of the time of its newer MLIR fusion emitters, and the code runs as
fast for these programs (``benchmarks/compile_options.py`` measures both).

If the installed XLA does not know an option, the first call falls back to
plain ``jax.jit`` for the rest of the process.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

#: Options passed to XLA for every pyodejl kernel.
COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}

_options_supported = True


class _Jitted:
    def __init__(self, fun, static_argnums):
        self._with_options = jax.jit(fun, static_argnums=static_argnums, compiler_options=COMPILER_OPTIONS)
        self._plain = jax.jit(fun, static_argnums=static_argnums)
        functools.update_wrapper(self, fun)

    def _current(self):
        return self._with_options if _options_supported else self._plain

    def __call__(self, *args, **kwargs):
        global _options_supported
        if _options_supported:
            try:
                return self._with_options(*args, **kwargs)
            except jax.errors.JaxRuntimeError as e:
                if "compile option" not in str(e):
                    raise
                _options_supported = False
        return self._plain(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return self._current().lower(*args, **kwargs)


def jit(fun=None, *, static_argnums=None):
    """``jax.jit(fun, static_argnums=...)`` compiled with :data:`COMPILER_OPTIONS`."""
    if fun is None:
        return functools.partial(jit, static_argnums=static_argnums)
    return _Jitted(fun, static_argnums)


def to_device(x):
    """``x`` as a JAX array, transferred with ``jax.device_put``.

    ``jnp.asarray`` on a NumPy array stages an identity computation that XLA
    compiles once per shape (tens of milliseconds each on a first call); a
    transfer compiles nothing.
    """
    return x if isinstance(x, jax.Array) else jax.device_put(np.asarray(x))
