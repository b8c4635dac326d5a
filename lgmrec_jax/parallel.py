"""Data parallelism with `jit` + `NamedSharding` on a one-axis mesh, on one host or many.

Params, optimizer state and graphs are replicated; each training batch is split along its example axis. The loss
is a mean over the *global* batch, so XLA inserts the gradient all-reduce itself: no pmean, no per-device code, and
the result equals the one-device result up to float summation order (tests/test_parallel.py measures it).

Multi-host (a TPU VM pod slice, or several GPU hosts). Run the same command on every host at once, e.g.

    gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \
        --command="cd lgmrec-jax && .venv/bin/python -m lgmrec_jax.cli train --distributed --model lgmrec --dataset baby"

`--distributed` calls `jax.distributed.initialize()` before anything touches a device; on Cloud TPU it discovers the
coordinator and process ids itself (elsewhere pass coordinator_address / num_processes / process_id, or set the
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID variables). `jax.devices()` then lists the devices of
every host and `make_mesh` spans them all. Every host runs the same deterministic sampler (batches depend only on
seed and epoch), so every host holds the same global batch; `shard_batch` transfers only the rows that belong to the
host's own devices (`jax.make_array_from_process_local_data`), so there is no cross-host traffic for input and no
per-step check that the hosts agree. Metrics and losses come back fully replicated, so every host can read them.
Limitation: every host still *draws* the whole global batch (cheap: one shuffle and a vectorized negative draw).
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
    if jax.process_count() > 1 and n != len(available):
        # A subset of the global devices could leave a host without any device, and that host would then have no
        # shard to feed; with several processes the mesh spans all of them.
        raise ValueError(f"with {jax.process_count()} processes use all {len(available)} devices (train.devices=0)")
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=available[:n])


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh):
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """Splits the global batch (identical on every host) along its first axis over the mesh's 'data' axis."""
    n = mesh.size
    for name, value in batch.items():
        if value.shape[0] % n:
            raise ValueError(f"batch field {name!r} has {value.shape[0]} rows, not divisible by {n} devices; "
                             "choose train_batch_size as a multiple of the device count")
    sharding = batch_sharded(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return {name: _from_global_rows(np.asarray(value), sharding) for name, value in batch.items()}


def process_rows(sharding: NamedSharding, n_rows: int) -> slice:
    """The contiguous rows of a batch-sharded [n_rows, ...] array that live on this process's devices."""
    index_map = sharding.addressable_devices_indices_map((n_rows,))
    spans = sorted({(idx[0].start or 0, n_rows if idx[0].stop is None else idx[0].stop) for idx in index_map.values()})
    for (_, stop), (start, _) in zip(spans, spans[1:]):
        if stop != start:
            raise ValueError(f"this process's devices hold non-contiguous batch rows {spans}; build the mesh from "
                             "jax.devices() in its default (process-major) order")
    return slice(spans[0][0], spans[-1][1])


def _from_global_rows(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    rows = process_rows(sharding, value.shape[0])
    return jax.make_array_from_process_local_data(sharding, value[rows], value.shape)
