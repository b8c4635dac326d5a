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

Blocks have equal shapes, so their nonzeros are padded to the largest block's count. The padding entries have value
0 and sit in extra "spill" rows after each block's real rows, at distinct columns, so every block stays a valid
sorted, duplicate-free CSR for all three backends; the spill rows' outputs are dropped. Padding therefore never
changes a result (tests/graph/test_partitioned.py compares against the unpartitioned product).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from lgmrec_jax.graph import sparse


def row_blocks(csr: sparse.CSR, n_rows: int, n_cols: int, n_blocks: int) -> tuple[sparse.CSR, int, int]:
    """(stacked CSR with a leading block axis, rows per block r, spill rows per block) on the host.

    Rows are dealt out cyclically: block b holds rows b, b + n, b + 2n, … as its local rows 0, 1, 2, … Contiguous
    ranges would give the blocks very different work (in Â the item rows are several times denser than the user
    rows, and they sit together at the end); dealt out, every block gets the same mix."""
    indptr = np.asarray(csr.indptr, dtype=np.int64)
    indices = np.asarray(csr.indices)
    data = np.asarray(csr.data)
    degree = np.diff(indptr)
    r = -(-n_rows // n_blocks)
    members = [np.arange(b, n_rows, n_blocks) for b in range(n_blocks)]
    counts = np.array([int(degree[rows].sum()) for rows in members])
    width = max(1, int(counts.max(initial=0)))
    # Enough spill rows that the padding of the emptiest block fits at distinct columns.
    spill = max(1, -(-int(width - counts.min(initial=0)) // n_cols))
    local_rows = r + spill
    out_data = np.zeros((n_blocks, width), np.float32)
    out_indices = np.zeros((n_blocks, width), np.int32)
    out_indptr = np.zeros((n_blocks, local_rows + 1), np.int32)
    out_row_ids = np.zeros((n_blocks, width), np.int32)
    for b, rows in enumerate(members):
        nnz, per_row = counts[b], degree[rows]
        local_ptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(per_row, out=local_ptr[1:])
        source = np.repeat(indptr[rows] - local_ptr[:-1], per_row) + np.arange(nnz)  # positions in the full CSR
        out_data[b, :nnz] = data[source]
        out_indices[b, :nnz] = indices[source]
        out_indptr[b, :len(rows) + 1] = local_ptr
        out_indptr[b, len(rows) + 1:r + 1] = nnz  # local rows past the matrix's end are empty
        out_row_ids[b, :nnz] = np.repeat(np.arange(len(rows)), per_row)
        pad = width - nnz
        slot = np.arange(pad)
        out_indices[b, nnz:] = slot % n_cols
        out_row_ids[b, nnz:] = r + slot // n_cols
        out_indptr[b, r + 1:] = nnz + np.minimum(np.arange(1, spill + 1) * n_cols, pad)
    stacked = sparse.CSR(data=jnp.asarray(out_data), indices=jnp.asarray(out_indices),
                         indptr=jnp.asarray(out_indptr), row_ids=jnp.asarray(out_row_ids))
    return stacked, r, spill


def partition(mat: sparse.SparseMatrix, mesh, axis: str) -> sparse.SparseMatrix:
    """`mat` split into row blocks over `axis` of `mesh` (host arrays; place them with parallel.Placement)."""
    rows, cols = mat.shape
    n = mesh.shape[axis]
    fwd, r_fwd, s_fwd = row_blocks(mat.fwd, rows, cols, n)
    bwd, r_bwd, s_bwd = row_blocks(mat.bwd, cols, rows, n)
    return sparse.SparseMatrix(fwd=fwd, bwd=bwd, shape=mat.shape, backend=mat.backend,
                               blocks=sparse.Blocks(mesh=mesh, axis=axis, rows=(r_fwd, r_bwd),
                                                    spill=(s_fwd, s_bwd)))


def spmm(mat: sparse.SparseMatrix, x: jax.Array) -> jax.Array:
    """`mat @ x` for a row-partitioned `mat` and a dense [cols, d] operand; gradients flow to `x` only."""
    fwd = jax.tree.map(jax.lax.stop_gradient, mat.fwd)
    bwd = jax.tree.map(jax.lax.stop_gradient, mat.bwd)
    return _blocked_matmul(mat.blocks, mat.shape, mat.backend, fwd, bwd, x)


def _local_product(blocks: "sparse.Blocks", shape, backend: str, side: int, csr: sparse.CSR, x):
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
    # Block-major [n·r, d] back to row order: block b's local row j is row j·n + b (an all-to-all under GSPMD).
    n = blocks.mesh.shape[blocks.axis]
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
