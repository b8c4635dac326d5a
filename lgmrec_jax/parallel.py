"""Data parallelism over local devices with `jit` + `NamedSharding` on a one-axis mesh.

Params, optimizer state and graphs are replicated; each training batch is split along its example axis. The loss
is a mean over the *global* batch, so XLA inserts the gradient all-reduce itself: no pmean, no per-device code.
On a TPU VM pod slice, call `jax.distributed.initialize()` first (the CLI's --distributed flag does) and every host
feeds its own slice of the batch; `jax.devices()` then lists the devices of all hosts.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(n_devices: int = 0) -> jax.sharding.Mesh:
    """A 1-d mesh over the first `n_devices` devices (0 = all). Auto axis types: sharding is propagated by XLA."""
    available = jax.devices()
    n = n_devices or len(available)
    if n > len(available):
        raise ValueError(f"asked for {n} devices, only {len(available)} available ({available[0].platform})")
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=available[:n])


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh):
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    n = mesh.size
    for name, value in batch.items():
        if value.shape[0] % n:
            raise ValueError(f"batch field {name!r} has {value.shape[0]} rows, not divisible by {n} devices; "
                             "choose train_batch_size as a multiple of the device count")
    return jax.device_put(batch, batch_sharded(mesh))
