"""Input checks shared by models and objectives: clear errors, never silent NaNs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _as_float_array(x, name):
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    return arr


def check_finite(arr, name):
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        where = ", ".join(str(tuple(int(i) for i in b)) for b in bad[:5])
        raise ValueError(f"{name} contains NaN or inf (at index {where}{', ...' if len(bad) > 5 else ''})")
    return arr


def check_theta(theta, num_params, name="theta"):
    """θ as a finite float64 vector of length ``num_params``."""
    arr = _as_float_array(theta, name)
    if arr.shape != (num_params,):
        raise ValueError(f"{name} must have shape ({num_params},), got {arr.shape}")
    return check_finite(arr, name)


def check_tangents(v, num_params, name="v"):
    """A tangent ``(p,)`` or a block of tangents ``(p, k)``; returns (block, was_vector)."""
    arr = _as_float_array(v, name)
    if arr.ndim == 1:
        if arr.shape != (num_params,):
            raise ValueError(f"{name} must have shape ({num_params},) or ({num_params}, k), got {arr.shape}")
        return check_finite(arr, name)[:, None], True
    if arr.ndim != 2 or arr.shape[0] != num_params:
        raise ValueError(f"{name} must have shape ({num_params},) or ({num_params}, k), got {arr.shape}")
    return check_finite(arr, name), False


def check_times(ts, name="ts"):
    """Observation times: 1-D, at least two, finite, strictly increasing."""
    arr = _as_float_array(ts, name)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 times, got shape {arr.shape}")
    check_finite(arr, name)
    if np.any(np.diff(arr) <= 0):
        i = int(np.argmax(np.diff(arr) <= 0))
        raise ValueError(
            f"{name} must be strictly increasing; {name}[{i}]={arr[i]} >= {name}[{i + 1}]={arr[i + 1]}"
        )
    return arr


def check_initial_state(y0, dim, name="y0"):
    """``(d,)`` or ``(B, d)`` initial states, returned as ``(B, d)`` (``dim`` None: any d ≥ 1)."""
    arr = _as_float_array(y0, name)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1 or (dim is not None and arr.shape[1] != dim):
        d = "d" if dim is None else dim
        raise ValueError(f"{name} must have shape ({d},) or (B, {d}), got {np.shape(y0)}")
    return check_finite(arr, name)


def check_integer(value, name, minimum: int = 1) -> int:
    """``value`` as an ``int`` ≥ ``minimum`` (default 1): the one integer check of the package.

    Python and NumPy integers, and floats with an integral value (``1e4``), are accepted.
    Raises ``TypeError`` for a non-number (``None``, a string) and ``ValueError`` for a
    bool, a fraction, a non-finite value or one below ``minimum``; both name the
    argument and what was expected.
    """
    expected = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if isinstance(value, bool) or not (np.isfinite(value) and float(value).is_integer() and value >= minimum):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_number(value, name, *, allow_zero: bool = False) -> float:
    """``value`` as a finite ``float`` > 0 (≥ 0 with ``allow_zero``): the one number check.

    Raises ``TypeError`` for a non-number (``None``, a string) and ``ValueError`` for a
    bool, NaN, inf or a value out of range, naming the argument and what was expected.
    """
    expected = "non-negative" if allow_zero else "positive"
    if isinstance(value, (str, bytes)):  # float("1e-6") would accept a string
        raise TypeError(f"{name} must be a {expected} number, got {value!r} ({type(value).__name__})")
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a {expected} number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a {expected} number, got {value!r} ({type(value).__name__})") from None
    if not (np.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
        raise ValueError(f"{name} must be {expected} and finite, got {value!r}")
    return v


def check_traced_theta(theta, p):
    """θ ``(p,)`` as a JAX array; a JAX tracer (inside ``jit``/``grad``) is only shape-checked."""
    if isinstance(theta, jax.core.Tracer):
        if theta.shape != (p,):
            raise ValueError(f"theta must have shape ({p},), got {theta.shape}")
        return theta
    arr = np.asarray(theta, dtype=np.float64)
    if arr.shape != (p,):
        raise ValueError(f"theta must have shape ({p},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("theta contains NaN or inf")
    return jnp.asarray(arr)


def check_traced_inputs(x, dim, name="inputs"):
    """Inputs ``(dim,)`` or ``(B, dim)`` as a JAX array; a JAX tracer is only shape-checked."""
    if isinstance(x, jax.core.Tracer):
        shape = x.shape
    else:
        x = np.asarray(x, dtype=np.float64)
        shape = x.shape
    if len(shape) not in (1, 2) or shape[-1] != dim:
        raise ValueError(f"{name} must have shape ({dim},) or (B, {dim}), got {tuple(shape)}")
    if not isinstance(x, jax.core.Tracer):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} contains NaN or inf")
        x = jnp.asarray(x)
    return x
