"""Placing a batch of trajectories across JAX devices.

An objective built with ``devices=n`` (or a list of devices) puts its initial
states and every data array whose leading axis is the batch on a
one-dimensional device mesh, split along the batch (``NamedSharding(mesh,
P("batch"))``); θ, times and weights are replicated. Every compiled kernel
then runs SPMD: XLA partitions the solve, the derivative and the loss over
the devices and inserts the collectives — the joint step-size control of the
batch becomes an all-reduce of the error norm — so the numbers are the
single-device numbers up to the order of floating-point reductions. The same
code runs on one CPU, on several GPUs of one host, or on several hosts after
``jax.distributed.initialize()`` (then ``jax.devices()`` lists every host's
devices and every process builds the same objective with the same data).

Across processes a process holds only its own devices' shards, so NumPy's
conversion of a batch-sharded result fails; every result crosses to the host
through :func:`to_host`, which gathers such arrays on every process (a
collective: every process makes the same calls in the same order, as they do
when they all run the same program).
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["resolve_devices", "batch_placement", "to_host"]


def resolve_devices(devices):
    """A tuple of JAX devices from None (one: the default), a count, or a list of devices."""
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        n = int(devices)
        if n < 1:
            raise ValueError(f"devices must be a positive count or a list of JAX devices, got {devices!r}")
        if n > len(available):
            raise ValueError(
                f"devices={n} but only {len(available)} JAX device(s) are available "
                f"({available[0].platform}); on a CPU, set XLA_FLAGS=--xla_force_host_platform_device_count={n} "
                "before JAX is imported"
            )
        return None if n == 1 else tuple(available[:n])
    try:
        devs = tuple(devices)
    except TypeError:
        raise TypeError(f"devices must be a count or a list of JAX devices, got {devices!r}") from None
    if not devs or not all(isinstance(d, jax.Device) for d in devs):
        raise TypeError(f"devices must be a non-empty list of jax.Device, got {devices!r}")
    if len(set(devs)) != len(devs):
        raise ValueError("devices lists the same device twice")
    return None if len(devs) == 1 else devs


def batch_placement(devices, batch_size: int):
    """``place(array_or_tree)``: shard leaves with leading axis ``batch_size`` over ``devices``, replicate the rest.

    With ``devices`` None it is a plain transfer to the default device.
    """
    from pyodejl._jit import to_device

    if devices is None:
        return lambda tree: jax.tree_util.tree_map(to_device, tree)
    n = len(devices)
    if batch_size % n:
        raise ValueError(
            f"a batch of {batch_size} trajectories does not split evenly over {n} devices; "
            f"use a batch size divisible by {n} (padding would change the joint error control of the batch)"
        )
    mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        return jax.device_put(x, split if (x.ndim >= 1 and x.shape[0] == batch_size) else whole)

    return lambda tree: jax.tree_util.tree_map(put, tree)


def _host_array(x):
    if not isinstance(x, jax.Array):
        return np.asarray(x)
    if x.is_fully_addressable or x.is_fully_replicated:
        # one process's devices hold it all, or every device a full copy: read it here
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def to_host(tree):
    """NumPy copies of the JAX arrays in ``tree``, on every process.

    Single-process arrays and arrays replicated on every device are read from
    a local copy; an array sharded across processes (e.g. per-trajectory
    states of a batch split over several hosts) is gathered with
    ``jax.experimental.multihost_utils.process_allgather``, which every process
    must reach. Other leaves pass through ``np.asarray``.
    """
    return jax.tree_util.tree_map(_host_array, tree)
