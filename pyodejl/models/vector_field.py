"""The vector-field protocol, and adapters for plain functions and Equinox modules.

A **vector field** is any object with

* ``num_params`` — the length p of its flat float64 parameter vector θ;
* ``__call__(t, y, theta) -> dy/dt`` — a pure JAX function of a scalar time,
  one state ``y`` of shape ``(d,)`` and θ of shape ``(p,)``, returning ``(d,)``.
  Batches of states are handled by ``jax.vmap`` (:meth:`pyodejl.NeuralODE.rhs`);

and optionally

* ``init(seed) -> theta`` — initial parameters, reproducible from ``seed``;
* ``state_dim`` — d, when the field fixes it (otherwise it is read from y0).

Nothing in pyodejl checks a vector field's type: :class:`pyodejl.MLP` satisfies
the protocol, and so do the two adapters here. The object must be hashable
(it is a static argument of compiled functions); the default identity hash is
fine. **A new model is one module that provides these attributes.**
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pyodejl._validation import check_integer


def check_vector_field(vector_field):
    """Raise TypeError unless ``vector_field`` follows the protocol (duck-typed)."""
    n = getattr(vector_field, "num_params", None)
    if not callable(vector_field) or n is None:
        raise TypeError(
            "a vector field needs `num_params` and a pure JAX `__call__(t, y, theta)`; "
            f"got {type(vector_field).__name__}. Wrap a function with pj.VectorField(fn, num_params) "
            "or an Equinox module with pj.VectorField.from_equinox(module)"
        )
    check_integer(n, "num_params", minimum=0)
    return vector_field


def output_shape(vector_field, D: int, what: str = "the vector field"):
    """The shape of ``vector_field(t, y, theta)`` for a state ``(D,)``, found without computing it.

    Raises ValueError (with the field's own error as its cause) if the field
    cannot be evaluated on such a state; ``what`` names it in the message.
    """
    t = jax.ShapeDtypeStruct((), jnp.float64)
    y = jax.ShapeDtypeStruct((D,), jnp.float64)
    th = jax.ShapeDtypeStruct((int(vector_field.num_params),), jnp.float64)
    try:
        out = jax.eval_shape(vector_field, t, y, th)
    except Exception as exc:  # the field's own error, re-raised with context
        raise ValueError(f"{what} cannot be evaluated on a state of shape ({D},): {exc}") from exc
    return getattr(out, "shape", None)


class VectorField:
    """A vector field from a plain function ``fn(t, y, theta) -> dy/dt``.

    Args:
        fn: pure JAX function; ``t`` scalar, ``y`` ``(d,)``, ``theta`` ``(num_params,)``.
        num_params: p.
        init: optional ``init(seed) -> theta`` (NumPy or JAX array of shape ``(p,)``).
        state_dim: optional d; when None the state dimension is taken from y0.
        name: label used in messages and reprs (default: ``fn``'s name).

    Example::

        A = np.array([[0.0, 1.0], [-1.0, 0.0]])
        vf = pj.VectorField(lambda t, y, th: th[0] * (A @ y) + th[1:], num_params=3)
        model = pj.NeuralODE(vf)
    """

    def __init__(self, fn: Callable, num_params: int, init: Callable | None = None, state_dim=None, name=None):
        if not callable(fn):
            raise TypeError(f"fn must be callable as fn(t, y, theta), got {type(fn).__name__}")
        check_integer(num_params, "num_params", minimum=0)
        if state_dim is not None:
            check_integer(state_dim, "state_dim")
        self.fn = fn
        self.num_params = int(num_params)
        self._init = init
        self.state_dim = None if state_dim is None else int(state_dim)
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, t, y, theta):
        return self.fn(t, y, theta)

    def init(self, seed: int = 0) -> np.ndarray:
        """θ from the ``init`` function given at construction, as float64 ``(p,)``."""
        if self._init is None:
            raise NotImplementedError(
                f"vector field {self.name!r} was built without an init function; pass init=... "
                "to pj.VectorField or give theta explicitly"
            )
        theta = np.asarray(self._init(seed), dtype=np.float64)
        if theta.shape != (self.num_params,):
            raise ValueError(f"init returned shape {theta.shape}, expected ({self.num_params},)")
        return theta

    def __repr__(self):
        return f"VectorField({self.name}, num_params={self.num_params})"

    @classmethod
    def from_equinox(cls, module, *, call: str = "t,y", make: Callable | None = None):
        """A vector field whose θ is an Equinox module's floating-point array leaves.

        **Order of θ.** The leaves of ``eqx.filter(module, eqx.is_inexact_array)``
        in ``jax.tree_util.tree_leaves`` order (fields in declaration order,
        depth first), each flattened row-major. For ``eqx.nn.Linear`` that is the
        weight ``(out, in)`` then the bias — PyTorch's ``nn.Linear`` order.
        Integer arrays and every non-array field stay fixed.

        Args:
            module: an ``equinox.Module``.
            call: how the module is called: ``"t,y"`` (``module(t, y)``, the
                default) or ``"y"`` (``module(y)``, autonomous, e.g. ``eqx.nn.MLP``).
            make: optional ``make(key) -> module`` (a ``jax.random`` key) used by
                ``init(seed)`` to build freshly initialised parameters; without it
                ``init(None)`` returns the module's own parameters.

        Returns:
            a :class:`VectorField` with ``num_params`` = total size of the leaves.
        """
        import equinox as eqx

        if not isinstance(module, eqx.Module):
            raise TypeError(f"from_equinox needs an equinox.Module, got {type(module).__name__}")
        if call not in ("t,y", "y"):
            raise ValueError(f"call must be 't,y' or 'y', got {call!r}")
        params, static = eqx.partition(module, eqx.is_inexact_array)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        shapes = tuple(leaf.shape for leaf in leaves)
        sizes = tuple(int(np.prod(s)) for s in shapes)
        theta0 = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in leaves]) if leaves else np.zeros(0)

        def unflatten(theta):
            out, offset = [], 0
            for shape, size in zip(shapes, sizes):
                out.append(jnp.reshape(theta[offset : offset + size], shape))
                offset += size
            return eqx.combine(jax.tree_util.tree_unflatten(treedef, out), static)

        def fn(t, y, theta):
            m = unflatten(theta)
            return m(t, y) if call == "t,y" else m(y)

        def init(seed):
            if seed is None:
                return theta0
            if make is None:
                raise NotImplementedError(
                    "this Equinox vector field has no `make(key)` to draw new parameters; "
                    "call init(None) for the module's own parameters or pass make= to from_equinox"
                )
            fresh, _ = eqx.partition(make(jax.random.key(int(seed))), eqx.is_inexact_array)
            fresh_leaves = jax.tree_util.tree_leaves(fresh)
            if tuple(x.shape for x in fresh_leaves) != shapes:
                raise ValueError("make(key) built a module whose parameter shapes differ from the original")
            return np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in fresh_leaves])

        vf = cls(fn, sum(sizes), init=init, name=type(module).__name__)
        vf.unflatten = unflatten
        return vf
