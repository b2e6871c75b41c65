"""Numerical configuration applied when :mod:`pyodejl` is imported.

pyodejl is a precision tool, so JAX's 64-bit mode is switched on at import
(``jax.config.update("jax_enable_x64", True)``). Every array the library returns
is float64. Set the environment variable ``PYODEJL_NO_X64=1`` before importing
to leave JAX's setting untouched: JAX then computes in float32 (solves, gradients
and products come back as float32 where the device computes them). Tested end to
end (``tests/test_engine_api.py``); not recommended for second-order work, whose
derivative checks assume float64 round-off.
"""

import os

import jax

if os.environ.get("PYODEJL_NO_X64", "") != "1":
    jax.config.update("jax_enable_x64", True)

DTYPE = "float64"


def enable_compilation_cache(directory=None) -> str:
    """Keep JAX's compiled programs on disk so later processes skip compilation.

    A fresh process otherwise spends a few seconds compiling each solve and
    derivative kernel on first use (the "first call" time). With the cache
    enabled, a later process that builds the same model and data shapes loads
    the compiled code instead. The default directory is
    ``$PYODEJL_CACHE_DIR`` or ``~/.cache/pyodejl/jax``.

    Returns:
        The cache directory used.
    """
    directory = directory or os.environ.get("PYODEJL_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "pyodejl", "jax"
    )
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return directory


if os.environ.get("PYODEJL_CACHE_DIR"):
    enable_compilation_cache()
