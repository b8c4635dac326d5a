"""A constant sparse matrix split into row blocks over a device mesh, and its product with a dense operand.

Device b of an n-device mesh axis holds rows b, b + n, b + 2n, … of the matrix (r = ⌈rows / n⌉ of them, dealt out
cyclically so that every device gets the same mix of sparse and dense rows) and the same rows of its transpose, each
as its own CSR with global column ids. The product `A @ x`:

    forward   x is all-gathered (every block may read any column), each device multiplies its row block, the output
              [n·r, d] is put back into row order (one all-to-all) and sliced to the logical row count;
    backward  Aᵀ g the same way with the transpose's row blocks: all-gather of the incoming gradient, local product.

So each device does 1/n of the multiply-adds and stores 1/n of the nonzeros; the traffic is one all-gather of the
64-wide dense operand per product (and one per backward product). The all-gather is not written here: the local
product is a `shard_map` whose operand is declared replicated, and GSPMD gathers it from wherever it lives.

A node adjacency (Â over users then items, `SparseMatrix.nodes` set) is split differently, in the blocked node
layout: device b holds its own users [b·ru, (b+1)·ru) followed by its own items [b·ri, (b+1)·ri), the same rows as
its shards of the user and item tables (parallel.py), zero-padded to ru + ri rows. Rows and columns of Â are
renumbered into that layout, so the operand `join(users, items)` and the result's `split(x)` are local reshapes and
the product's output needs no reordering. Without it a model builds the operand by concatenating the two tables, a
row offset that matches neither table's shard boundaries: GSPMD then moves rows between devices with masks,
dynamic slices and permutes, and for LightGCN that overhead outweighed the product itself (BENCHMARKS.md).
Users and items each get ⌈count / n⌉ rows per device, so every device holds the same mix of sparse user rows and
dense item rows, which the cyclic dealing achieves for other matrices.

Blocks have equal shapes, so their nonzeros are padded to the largest block's count. The padding entries have value
0 and sit in extra "spill" rows after each block's real rows, at distinct columns, so every block stays a valid
sorted, duplicate-free CSR for all three backends; the spill rows' outputs are dropped. Padding therefore never
changes a result (tests/graph/test_partitioned.py compares against the unpartitioned product).
"""

from __future__ import annotations

import functools
import weakref

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from lgmrec_jax.graph import sparse


def cyclic_layout(n_rows: int, n_blocks: int) -> np.ndarray:
    """[n_blocks, r] source rows of each block's local rows (-1: empty): block b holds rows b, b + n, b + 2n, …

    Contiguous ranges would give the blocks very different work (in Â the item rows are several times denser than
    the user rows, and they sit together at the end); dealt out, every block gets the same mix."""
    r = -(-n_rows // n_blocks)
    layout = np.arange(r * n_blocks).reshape(r, n_blocks).T
    return np.where(layout < n_rows, layout, -1)


def node_positions(n_users: int, n_items: int, n_blocks: int) -> tuple[np.ndarray, int, int]:
    """(position of each node [U + I] in the blocked node layout, user rows per block, item rows per block)."""
    ru, ri = -(-n_users // n_blocks), -(-n_items // n_blocks)
    users, items = np.arange(n_users), np.arange(n_items)
    pos = np.concatenate([(users // ru) * (ru + ri) + users % ru, (items // ri) * (ru + ri) + ru + items % ri])
    return pos, ru, ri


def node_layout(n_users: int, n_items: int, n_blocks: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(layout [n_blocks, ru + ri] of node ids, -1 for padding; node → position; (ru, ri))."""
    pos, ru, ri = node_positions(n_users, n_items, n_blocks)
    layout = np.full(n_blocks * (ru + ri), -1)
    layout[pos] = np.arange(pos.size)
    return layout.reshape(n_blocks, ru + ri), pos, (ru, ri)


def row_blocks(csr: sparse.CSR, n_rows: int, n_cols: int, n_blocks: int, layout: np.ndarray | None = None,
               col_map: np.ndarray | None = None) -> tuple[sparse.CSR, int, int]:
    """(stacked CSR with a leading block axis, rows per block r, spill rows per block) on the host.

    `layout` [n_blocks, r] names the source row of each block's local row (-1: an empty row); cyclic by default.
    `col_map` renumbers the columns (then `n_cols` is the renumbered operand's row count)."""
    layout = cyclic_layout(n_rows, n_blocks) if layout is None else np.asarray(layout)
    indptr = np.asarray(csr.indptr, dtype=np.int64)
    indices = np.asarray(csr.indices)
    data = np.asarray(csr.data)
    degree = np.diff(indptr)
    r = layout.shape[1]
    safe = np.maximum(layout, 0)
    per_row = np.where(layout >= 0, degree[safe], 0)  # [n_blocks, r]
    counts = per_row.sum(axis=1)
    width = max(1, int(counts.max(initial=0)))
    # Enough spill rows that the padding of the emptiest block fits at distinct columns.
    spill = max(1, -(-int(width - counts.min(initial=0)) // n_cols))
    out_data = np.zeros((n_blocks, width), np.float32)
    out_indices = np.zeros((n_blocks, width), np.int32)
    out_indptr = np.zeros((n_blocks, r + spill + 1), np.int32)
    out_row_ids = np.zeros((n_blocks, width), np.int32)
    for b in range(n_blocks):
        nnz = int(counts[b])
        local_ptr = np.zeros(r + 1, np.int64)
        np.cumsum(per_row[b], out=local_ptr[1:])
        source = np.repeat(indptr[safe[b]] - local_ptr[:-1], per_row[b]) + np.arange(nnz)  # positions in the CSR
        cols, vals = indices[source], data[source]
        local_row = np.repeat(np.arange(r), per_row[b])
        if col_map is not None:  # renumbered columns: sort each row again (CSR backends expect sorted columns)
            cols = col_map[cols]
            order = np.lexsort((cols, local_row))
            cols, vals = cols[order], vals[order]
        out_data[b, :nnz] = vals
        out_indices[b, :nnz] = cols
        out_indptr[b, :r + 1] = local_ptr
        out_row_ids[b, :nnz] = local_row
        pad = width - nnz
        slot = np.arange(pad)
        out_indices[b, nnz:] = slot % n_cols
        out_row_ids[b, nnz:] = r + slot // n_cols
        out_indptr[b, r + 1:] = nnz + np.minimum(np.arange(1, spill + 1) * n_cols, pad)
    stacked = sparse.CSR(data=jnp.asarray(out_data), indices=jnp.asarray(out_indices),
                         indptr=jnp.asarray(out_indptr), row_ids=jnp.asarray(out_row_ids))
    return stacked, r, spill


def partition(mat: sparse.SparseMatrix, mesh, axis: str) -> sparse.SparseMatrix:
    """`mat` split into row blocks over `axis` of `mesh` (host arrays; place them with parallel.Placement): a node
    adjacency in the blocked node layout, any other matrix in cyclic row blocks."""
    rows, cols = mat.shape
    n = mesh.shape[axis]
    if mat.nodes is not None:
        layout, pos, node_rows = node_layout(*mat.nodes, n)
        fwd, r_fwd, s_fwd = row_blocks(mat.fwd, rows, layout.size, n, layout, pos)
        bwd, r_bwd, s_bwd = row_blocks(mat.bwd, cols, layout.size, n, layout, pos)
    else:
        fwd, r_fwd, s_fwd = row_blocks(mat.fwd, rows, cols, n)
        bwd, r_bwd, s_bwd = row_blocks(mat.bwd, cols, rows, n)
        node_rows = None
    return mat.replace(fwd=fwd, bwd=bwd, blocks=sparse.Blocks(mesh=mesh, axis=axis, rows=(r_fwd, r_bwd),
                                                              spill=(s_fwd, s_bwd), node_rows=node_rows))


# (table, padded) pairs noted by `remember_padded`, both held weakly: entries of finished traces die with them.
_PADDED_SOURCES: list[tuple[weakref.ref, weakref.ref]] = []


def remember_padded(table: jax.Array, padded: jax.Array) -> None:
    """Note that `table` is `padded[:len(table)]` and that `padded`'s other rows are zero (parallel.logical does).

    `join` given that very table reads `padded` directly. Slicing a split table to its real rows and padding it
    back is a no-op that GSPMD cannot see: it does not know that the rows beyond the slice are zero, so it masks
    them (iota, compare, select) in the forward pass and again in the backward pass, and XLA repeats that in every
    fusion reading the table (BENCHMARKS.md, finding 8)."""
    _PADDED_SOURCES[:] = [(t, p) for t, p in _PADDED_SOURCES if t() is not None and p() is not None]
    _PADDED_SOURCES.append((weakref.ref(table), weakref.ref(padded)))


def _padded_source(table: jax.Array, rows: int) -> jax.Array | None:
    for t, p in _PADDED_SOURCES:
        padded = p()
        if t() is table and padded is not None and padded.shape[0] == rows:
            return padded
    return None


def join(blocks: sparse.Blocks, users: jax.Array, items: jax.Array) -> jax.Array:
    """[U, ...] and [I, ...] rows → the blocked node layout [n·(ru + ri), ...]: per device a local reshape.

    A table that parallel.logical sliced from a zero-padded split table (`remember_padded`) is taken as that padded
    table: the same values, without the slice and re-pad. Its gradient then reaches the padding rows too, and it is
    exactly zero there, as the padding rows need (parallel.py): the operand's padding positions are empty columns
    of Â (so Âᵀ g is zero there) and `split` drops them, so only row-wise work between join and split could touch
    them, and row-wise work passes a zero cotangent on as zero. (Work that mixes rows of the operand other than
    through Â would already be wrong here: the padding rows would enter it.)"""
    n, (ru, ri) = blocks.n, blocks.node_rows
    spec = NamedSharding(blocks.mesh, P(blocks.axis))

    def per_device(x, r):  # [count, ...] → [n, r, ...], device b holding rows [b·r, (b+1)·r) and zero padding
        padded = _padded_source(x, n * r)
        if padded is None:
            padded = jnp.pad(x, [(0, n * r - x.shape[0])] + [(0, 0)] * (x.ndim - 1))
        padded = jax.lax.with_sharding_constraint(padded, spec)
        return padded.reshape(n, r, *x.shape[1:])

    x = jax.lax.with_sharding_constraint(jnp.concatenate([per_device(users, ru), per_device(items, ri)], axis=1),
                                         spec)
    return jax.lax.with_sharding_constraint(x.reshape(n * (ru + ri), *x.shape[2:]), spec)


def split(blocks: sparse.Blocks, nodes: tuple[int, int], x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The blocked node layout → (user rows [U, ...], item rows [I, ...]), the inverse of `join`."""
    n, (ru, ri) = blocks.n, blocks.node_rows
    spec = NamedSharding(blocks.mesh, P(blocks.axis))
    x = jax.lax.with_sharding_constraint(x.reshape(n, ru + ri, *x.shape[1:]), spec)
    users = x[:, :ru].reshape(n * ru, *x.shape[2:])[:nodes[0]]
    items = x[:, ru:].reshape(n * ri, *x.shape[2:])[:nodes[1]]
    return jax.lax.with_sharding_constraint(users, spec), jax.lax.with_sharding_constraint(items, spec)


def spmm(mat: sparse.SparseMatrix, x: jax.Array) -> jax.Array:
    """`mat @ x` for a row-partitioned `mat` and a dense [cols, d] operand; gradients flow to `x` only."""
    fwd = jax.tree.map(jax.lax.stop_gradient, mat.fwd)
    bwd = jax.tree.map(jax.lax.stop_gradient, mat.bwd)
    shape = (mat.operand_rows, mat.operand_rows) if mat.node_layout else mat.shape
    return _blocked_matmul(mat.blocks, shape, mat.backend, fwd, bwd, x)


# A product whose per-device gather would exceed GATHER_BUDGET bytes multiplies CHUNK_COLUMNS operand columns at a
# time, one chunk after the other. While a product runs every device holds the whole gathered operand and a
# [block nonzeros, width] gather of it (BCOO and segment_sum materialize it); GUME multiplies its three 64-wide
# branches as one 192-wide operand, and at ~10× Electronics size those buffers were 7.3 GiB per device at 8 devices.
# Columns are independent, so chunking changes no value; below the budget one product is as fast or faster.
# The budget counts the bytes the device really allocates: on TPU a 2-d float32 buffer is stored in (8, 128) tiles,
# so a [nnz, 64] gather takes as much HBM as a [nnz, 128] one (the TPU compiler's buffer assignment shows the
# `T(8,128)` layout; BENCHMARKS.md, TPU compiler).
GATHER_BUDGET = 256 * 2**20
CHUNK_COLUMNS = 64
TPU_TILE = (8, 128)  # second-minor, minor dimension of a 32-bit array's tile on TPU


def buffer_bytes(rows: int, cols: int, itemsize: int, platform: str) -> int:
    """Bytes of a [rows, cols] buffer on `platform`: tiled on TPU (each dimension rounded up to its tile), exact
    elsewhere. 16-bit types pack two rows per sublane, so their tile is (16, 128)."""
    if platform != "tpu":
        return rows * cols * itemsize
    sub, lanes = TPU_TILE
    sub *= max(1, 4 // itemsize)
    return -(-rows // sub) * sub * -(-cols // lanes) * lanes * itemsize


def _local_product(blocks: "sparse.Blocks", shape, backend: str, side: int, csr: sparse.CSR, x):
    """One side's (0: A, 1: Aᵀ) row blocks times a replicated operand, in column chunks when it is large."""
    d = x.shape[1]
    platform = blocks.mesh.devices.flat[0].platform
    gather_bytes = buffer_bytes(csr.data.shape[-1], d, x.dtype.itemsize, platform)
    if gather_bytes <= GATHER_BUDGET or d <= CHUNK_COLUMNS or d % CHUNK_COLUMNS:
        return _local_product_chunk(blocks, shape, backend, side, csr, x)
    k = d // CHUNK_COLUMNS
    spec = NamedSharding(blocks.mesh, P(None, blocks.axis))
    chunks = jax.lax.with_sharding_constraint(x.reshape(x.shape[0], k, CHUNK_COLUMNS).swapaxes(0, 1), spec)
    outs = []
    for i in range(k):
        chunk = chunks[i]
        if outs:  # chunk i is gathered only once chunk i - 1 is done, so their buffers are never alive together
            outs[-1], chunk = jax.lax.optimization_barrier((outs[-1], chunk))
        outs.append(_local_product_chunk(blocks, shape, backend, side, csr, chunk))
    out = jax.lax.with_sharding_constraint(jnp.stack(outs), spec)
    return out.swapaxes(0, 1).reshape(out.shape[1], d)


def _local_product_chunk(blocks: "sparse.Blocks", shape, backend: str, side: int, csr: sparse.CSR, x):
    """One side's (0: A, 1: Aᵀ) row blocks times a replicated operand, as a shard_map over the mesh axis."""
    r, spill = blocks.rows[side], blocks.spill[side]
    n_rows, n_cols = shape

    def local(block, x_full):
        block = jax.tree.map(lambda a: a[0], block)  # this device's block: drop the block axis of length 1
        out = sparse.local_product(block, (r + spill, n_cols), backend, x_full)
        return out[:r]

    spec = P(blocks.axis)
    # The operand is gathered here, at its 64-wide width, not earlier: without this constraint GSPMD propagates the
    # replicated requirement back into whatever produced `x` (a [I, 4096] @ [4096, 64] feature projection, say) and
    # computes that whole on every device.
    x = jax.lax.with_sharding_constraint(x, NamedSharding(blocks.mesh, spec))
    out = jax.shard_map(local, mesh=blocks.mesh, in_specs=(jax.tree.map(lambda _: spec, csr), P()),
                        out_specs=spec)(csr, x)
    if blocks.node_rows is not None:
        return out  # block-major is the blocked node layout already
    # Block-major [n·r, d] back to row order: block b's local row j is row j·n + b (an all-to-all under GSPMD).
    n = blocks.n
    out = out.reshape(n, r, -1).swapaxes(0, 1).reshape(n * r, -1)
    return out[:n_rows]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _blocked_matmul(blocks, shape, backend, fwd, bwd, x):
    return _local_product(blocks, shape, backend, 0, fwd, x)


def _blocked_matmul_fwd(blocks, shape, backend, fwd, bwd, x):
    return _local_product(blocks, shape, backend, 0, fwd, x), (fwd, bwd)


def _blocked_matmul_bwd(blocks, shape, backend, res, g):
    fwd, bwd = res
    # Aᵀ g with the transpose's own row blocks: the same all-gather + local product as the forward pass.
    return None, None, _local_product(blocks, (shape[1], shape[0]), backend, 1, bwd, g)


_blocked_matmul.defvjp(_blocked_matmul_fwd, _blocked_matmul_bwd)
