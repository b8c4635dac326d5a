"""Data parallelism with `jit` + `NamedSharding` on a one-axis mesh, on one host or many.

Params, optimizer state, graphs and the sampler's tables are replicated. Each training batch is drawn on the device
inside the epoch program (data/sampler.py, train.py), identically on every device, and a sharding constraint splits
it along its example axis. The loss is a mean over the *global* batch, so XLA inserts the gradient all-reduce itself:
no pmean, no per-device code, and the result equals the one-device result up to float summation order
(tests/test_parallel.py measures it).

Multi-host (a TPU VM pod slice, or several GPU hosts). Run the same command on every host at once, e.g.

    gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \
        --command="cd lgmrec-jax && .venv/bin/python -m lgmrec_jax.cli train --distributed --model lgmrec --dataset baby"

`--distributed` calls `jax.distributed.initialize()` before anything touches a device; on Cloud TPU it discovers the
coordinator and process ids itself (elsewhere pass coordinator_address / num_processes / process_id, or set the
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID variables). `jax.devices()` then lists the devices of
every host and `make_mesh` spans them all. Nothing is fed from the hosts during training: every host holds the same
replicated tables and keys (they depend only on the data, seed and epoch), so every device draws the same global
batch and keeps its own rows; there is no input traffic between hosts and no per-step host work. Metrics and losses
come back fully replicated, so every host can read them.
"""

from __future__ import annotations

import jax
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
