"""Devices: one mesh axis that splits both the batch and every node-indexed table (`jit` + `NamedSharding`).

What lives where, on a mesh of n devices (one process or many):
  * node-indexed state: user/item embedding tables, every other parameter whose leading axis is the user or item
    count (GUME's fine-tuned feature copies and extended-user tables), their Adam moments and the best-epoch copy,
    and the frozen feature tables: split by rows, device b holding rows [b·r, (b+1)·r). Tables whose row count does
    not divide by n are stored zero-padded to n·r rows inside a `Padded` node; `logical()` slices them back inside
    the jitted step, so the model sees its real shapes (and knows nothing of devices). The padding rows get zero
    gradients, so Adam and weight decay leave them at exactly zero: padding never changes a result. (`join` of
    Â's operand takes such a slice's padded table as it is, instead of padding the slice again.)
  * sparse graphs (Â, R, R̂, kNN): split into row blocks, products as all-gather of the 64-wide operand + local
    block product (graph/partitioned.py, a shard_map: GSPMD cannot partition a sparse product itself; a product
    whose gather would pass a per-device budget runs in column chunks, one after the other). The node
    adjacency Â is renumbered into the blocked node layout (device b: its users, then its items, the same rows as
    its table shards), so a model's `adj.join(users, items)` and `adj.split(x)` are local reshapes; the other
    matrices deal their rows out cyclically, so that every device gets the same share of dense rows.
  * the training batch: drawn on the device, identically everywhere, and split along its example axis.
  * small weights (projections, hyperedge matrices, MLPs), the sampler's tables: replicated.
Dense work on node rows (LGMRec's 4096-wide projections, Gumbel-softmax memberships and hypergraph layers; GUME's
space transforms and separation MLP) then runs on each device's rows only: GSPMD partitions it along the sharded row
axis and inserts the reductions over rows (Λ = Hᵀ Z, the gradients of the small weights) as all-reduces. LGMRec's
contrastive loss, whose denominator spans all users/items, GSPMD splits by the batch's anchor rows instead: each
device scores its B/n anchors against every (gathered, 64-wide) candidate, 1/n of the work, and each row's
logsumexp stays on one device. The loss is a mean over the global batch, so the gradient all-reduce is XLA's as
well: no per-device code anywhere.

Why one axis and not data × model: every piece of work here is indexed either by batch rows or by node rows, and
both split over all devices; a second axis would replicate one of the two kinds over it. Evaluation splits items
instead of users (evaluation.py): each device scores a user batch against its own items and the per-device top-k
are merged, so no device holds a users × items score block.

With one device nothing is wrapped or partitioned: the single-device path is the plain program.

Multi-host (a TPU VM pod slice, or several GPU hosts). Run the same command on every host at once, e.g.

    gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \
        --command="cd lgmrec-jax && .venv/bin/python -m lgmrec_jax.cli train --distributed --model lgmrec --dataset baby"

`--distributed` calls `jax.distributed.initialize()` before anything touches a device; on Cloud TPU it discovers the
coordinator and process ids itself (elsewhere pass coordinator_address / num_processes / process_id, or set the
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID variables). `jax.devices()` then lists the devices of
every host and `make_mesh` spans them all. Nothing is fed from the hosts during training: every host holds the same
sampler tables and keys (they depend only on the data, seed and epoch), so every device draws the same global
batch and keeps its own rows; there is no input traffic between hosts and no per-step host work. Metrics and losses
come back fully replicated, so every host can read them. The run directory must be one that every host sees (a
shared file system or bucket mount): orbax writes each checkpoint there from all hosts together, and process 0 alone
checks and locks the directory and writes its logs and results (train.py; tests/test_parallel.py resumes a
two-process run from its checkpoint).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from lgmrec_jax.graph import partitioned
from lgmrec_jax.graph.sparse import SparseMatrix
from lgmrec_jax.step_parts import part

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


def put(array, sharding: NamedSharding) -> jax.Array:
    """A host array placed with `sharding`; each process supplies the pieces of its own devices (multi-host safe)."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


@flax.struct.dataclass
class Padded:
    """A node-indexed table stored split by rows, zero-padded from `rows` to a multiple of the device count."""

    value: jax.Array
    rows: int = flax.struct.field(pytree_node=False)
    sharding: NamedSharding = flax.struct.field(pytree_node=False)


def is_primary() -> bool:
    """Process 0, the one that writes the run directory's files when several processes train together."""
    return jax.process_index() == 0


def primary_says(ok: bool) -> bool:
    """Process 0's `ok`, on every process (a broadcast when there are several; `ok` itself when there is one).

    Every process must call it at the same point: it is how the others learn whether process 0 accepted the run
    directory, instead of waiting forever in the first collective of a run that process 0 refused."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(ok)))


def _is_padded(x) -> bool:
    return isinstance(x, Padded)


def logical(tree):
    """`tree` with every Padded table sliced back to its real rows (traceable; a no-op on trees without any).

    The slice is constrained to stay split by rows: left to itself, GSPMD gathers a sliced table whose rows no
    longer divide evenly, and every device would then do the full feature projection. Each slice is noted with its
    padded table (partitioned.remember_padded), so that a node adjacency's `join` can use the padded table as it is.
    """
    def one(x):
        if not _is_padded(x):
            return x
        table = jax.lax.with_sharding_constraint(x.value[:x.rows], x.sharding)
        partitioned.remember_padded(table, x.value)
        return table

    with part("plumbing"):
        return jax.tree.map(one, tree, is_leaf=_is_padded)


def abstract(x, sharding: NamedSharding) -> jax.ShapeDtypeStruct:
    """The shape, dtype and `sharding` of an array (host, placed or abstract), without its values."""
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype,
                                sharding=sharding)


class Placement:
    """Puts run state, features and graphs on the mesh as the module docstring describes.

    `node_counts` are the row counts that mark a node-indexed table (the user and the item count). A weight that
    happens to have as many rows is split too: that only changes where it lives, never a result.

    `abstract=True` places nothing: every method returns `jax.ShapeDtypeStruct`s carrying the shardings the real
    placement would give (Padded nodes included), so that programs can be lowered and compiled for a mesh of devices
    this machine does not have (a TPU topology, say: lgmrec_jax/aot/). Host arrays are read for their shapes only.
    """

    def __init__(self, mesh: jax.sharding.Mesh, node_counts: tuple[int, ...], abstract: bool = False):
        self.mesh, self.node_counts = mesh, tuple(node_counts)
        self.split = mesh.size > 1
        self.abstract = abstract

    def padded_rows(self, rows: int) -> int:
        return -(-rows // self.mesh.size) * self.mesh.size

    def pad_rows(self, x: jax.Array) -> jax.Array:
        """Traceable: `x` zero-padded to a multiple of the device count and split by rows."""
        x = jnp.pad(x, [(0, self.padded_rows(x.shape[0]) - x.shape[0])] + [(0, 0)] * (x.ndim - 1))
        return jax.lax.with_sharding_constraint(x, self.rows_sharding())

    def to_host(self, tree):
        """The logical tree, unpadded, for checkpoints (they stay independent of the device count) and tests: host
        NumPy arrays in one process; with several, replicated arrays, which orbax saves from every host and which
        NumPy can read on each."""
        if jax.process_count() > 1:  # shards live on other hosts: gather them, replicated, on the devices
            return jax.jit(logical, out_shardings=replicated(self.mesh))(tree)
        return jax.tree.map(lambda x: np.asarray(x.value)[:x.rows] if _is_padded(x) else np.asarray(x), tree,
                            is_leaf=_is_padded)

    def rows_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, P(DATA_AXIS))

    def _is_node(self, x) -> bool:
        return self.split and np.ndim(x) >= 1 and np.shape(x)[0] in self.node_counts

    def _put(self, x, sharding: NamedSharding):
        """One host array placed with `sharding`, or (abstract) its shape with that sharding."""
        return abstract(x, sharding) if self.abstract else put(x, sharding)

    def replicate(self, tree):
        """Every array of `tree` on every device of the mesh (abstract: its shape with that sharding)."""
        if self.abstract:
            return jax.tree.map(lambda x: abstract(x, replicated(self.mesh)), tree)
        return replicate(tree, self.mesh)

    def place(self, tree):
        """Host (or single-device) arrays → mesh: node tables split (Padded when uneven), the rest replicated.
        With `abstract`, arrays or ShapeDtypeStructs → ShapeDtypeStructs placed alike."""
        if not self.split:
            return self.replicate(tree)

        def one(x):
            if not self._is_node(x):
                return self._put(x, replicated(self.mesh))
            rows = np.shape(x)[0]
            if self.abstract:
                value = jax.ShapeDtypeStruct((self.padded_rows(rows),) + tuple(np.shape(x)[1:]), x.dtype,
                                             sharding=self.rows_sharding())
            else:
                x = np.asarray(x)
                value = put(np.pad(x, [(0, self.padded_rows(rows) - rows)] + [(0, 0)] * (x.ndim - 1)),
                            self.rows_sharding())
            return Padded(value, rows=rows, sharding=self.rows_sharding())

        leaf = lambda x: isinstance(x, jax.ShapeDtypeStruct)  # noqa: E731
        return jax.tree.map(one, tree if self.abstract else jax.device_get(tree), is_leaf=leaf)

    def shardings(self, tree):
        """The shardings `place(tree)` would give, for a tree of arrays or ShapeDtypeStructs: output constraints of
        the programs that update placed state, so that state keeps its placement from step to step."""
        if not self.split:
            return jax.tree.map(lambda _: replicated(self.mesh), tree)
        return jax.tree.map(lambda x: Padded(self.rows_sharding(), rows=x.shape[0], sharding=self.rows_sharding())
                            if self._is_node(x)
                            else replicated(self.mesh), tree)

    def place_graphs(self, graphs):
        """Graph pytrees: sparse matrices in row blocks over the mesh, every other array replicated."""
        if not self.split:
            return self.replicate(graphs)
        def rows(a):
            return self._put(a, self.rows_sharding())

        def one(x):
            if isinstance(x, SparseMatrix):
                blocked = partitioned.partition(x, self.mesh, DATA_AXIS)  # on the host, also when abstract
                return blocked.replace(fwd=jax.tree.map(rows, blocked.fwd), bwd=jax.tree.map(rows, blocked.bwd))
            return self._put(x, replicated(self.mesh))

        return jax.tree.map(one, graphs, is_leaf=lambda x: isinstance(x, SparseMatrix))
