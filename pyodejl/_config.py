"""Numerical configuration applied when :mod:`pyodejl` is imported.

pyodejl is a precision tool, so JAX's 64-bit mode is switched on at import
(``jax.config.update("jax_enable_x64", True)``). Every array the library returns
is float64. Set the environment variable ``PYODEJL_NO_X64=1`` before importing
to leave JAX's setting untouched (not recommended: derivative checks in the
test suite assume float64 round-off).
"""

import os

import jax

if os.environ.get("PYODEJL_NO_X64", "") != "1":
    jax.config.update("jax_enable_x64", True)

DTYPE = "float64"
