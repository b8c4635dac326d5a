"""A fixed sparse matrix as a pytree, and sparse-times-dense products with three interchangeable backends.

Every graph in this project (normalized user-item adjacency, the binary interaction matrix, kNN item graphs) is
constant during training: only the dense operand carries gradients. That lets us store each matrix in CSR order
together with its transpose, so the backward pass of `A @ X` is another forward product `Aᵀ @ G` instead of the
scatter that autodiff of a sparse gather would produce.

Backends (all give the same result, tests/graph/test_sparse.py; pick by measurement, `make bench` → BENCHMARKS.md):
  * ``bcoo``         `jax.experimental.sparse.BCOO` matmul; XLA lowers it to gather + scatter-add. Portable: the
                     default on GPU.
  * ``bcsr``         `jax.experimental.sparse.BCSR` matmul, with a `custom_vjp` whose backward uses the stored
                     transpose. On CPU it lowers to jaxlib's multi-threaded CSR kernel (`cpu_csr_sparse_dense_ffi`),
                     elsewhere to a generic lowering (jax 0.12 routes it to cuSPARSE only with
                     `jax_bcoo_cusparse_lowering`, off by default and not set here).
  * ``segment_sum``  explicit gather of rows and `jax.ops.segment_sum` over sorted row ids: the default on TPU.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse

from lgmrec_jax.step_parts import part

Backend = Literal["bcoo", "bcsr", "segment_sum"]
BACKENDS: tuple[str, ...] = ("bcoo", "bcsr", "segment_sum")


@flax.struct.dataclass
class CSR:
    """One orientation of the matrix: values in row-major order, their column ids, row pointers and row ids."""

    data: jax.Array  # [nnz] float32
    indices: jax.Array  # [nnz] int32 column of each value
    indptr: jax.Array  # [rows + 1] int32
    row_ids: jax.Array  # [nnz] int32 row of each value (for BCOO and segment_sum)


@dataclasses.dataclass(frozen=True)
class Blocks:
    """How a matrix is split into row blocks over a mesh axis (graph/partitioned.py); per side (A, Aᵀ): real rows
    per block and the spill rows that hold the padding of the blocks' nonzeros. `node_rows` = (users, items) per
    block marks a node adjacency stored in the blocked node layout (partitioned.py), None a cyclic row split."""

    mesh: Any
    axis: str
    rows: tuple[int, int]
    spill: tuple[int, int]
    node_rows: tuple[int, int] | None = None

    @property
    def T(self) -> "Blocks":
        return Blocks(self.mesh, self.axis, self.rows[::-1], self.spill[::-1], self.node_rows)

    @property
    def n(self) -> int:
        return self.mesh.shape[self.axis]


@flax.struct.dataclass
class SparseMatrix:
    """A constant sparse matrix and its transpose. `backend`, `blocks` and `nodes` are static: changing them
    recompiles.

    With `blocks` set, the CSR arrays carry a leading axis of row blocks, one per device (graph/partitioned.py).
    `nodes` = (n_users, n_items) marks a user-item node adjacency (rows and columns: users, then items). Its
    operands are built with `join(users, items)` and its results taken apart with `split(x)`, never by concatenating
    and slicing directly: split over devices, the operand is laid out by device (each device's users, then its
    items) so that both stay local; on one device they are the plain concatenation and slices."""

    fwd: CSR
    bwd: CSR  # the transpose, in its own CSR order
    shape: tuple[int, int] = flax.struct.field(pytree_node=False)
    backend: str = flax.struct.field(pytree_node=False, default="bcoo")
    blocks: Blocks | None = flax.struct.field(pytree_node=False, default=None)
    nodes: tuple[int, int] | None = flax.struct.field(pytree_node=False, default=None)

    @property
    def nnz(self) -> int:
        return int(self.fwd.data.shape[0])

    @property
    def T(self) -> "SparseMatrix":
        return SparseMatrix(fwd=self.bwd, bwd=self.fwd, shape=(self.shape[1], self.shape[0]), backend=self.backend,
                            blocks=None if self.blocks is None else self.blocks.T, nodes=self.nodes)

    @property
    def node_layout(self) -> bool:
        """True when operands and results are in the blocked node layout (a node adjacency split over devices)."""
        return self.blocks is not None and self.blocks.node_rows is not None

    @property
    def operand_rows(self) -> int:
        """Rows of a dense operand (and, the matrix being square then, of the result) of `self @ x`."""
        if self.node_layout:
            return self.blocks.n * sum(self.blocks.node_rows)
        return self.shape[1]

    def join(self, users: jax.Array, items: jax.Array) -> jax.Array:
        """The operand of a node adjacency from its user [U, ...] and item [I, ...] rows."""
        self._check_nodes(users, items)
        with part("plumbing"):
            if self.node_layout:
                from lgmrec_jax.graph import partitioned  # it builds on this module
                return partitioned.join(self.blocks, users, items)
            return jnp.concatenate([users, items], axis=0)

    def split(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(user rows [U, ...], item rows [I, ...]) of a node adjacency's operand or result."""
        self._check_nodes()
        with part("plumbing"):
            if self.node_layout:
                from lgmrec_jax.graph import partitioned
                return partitioned.split(self.blocks, self.nodes, x)
            return x[:self.nodes[0]], x[self.nodes[0]:]

    def _check_nodes(self, users=None, items=None) -> None:
        if self.nodes is None:
            raise ValueError(f"join/split need a node adjacency (SparseMatrix.nodes set); this {self.shape} matrix "
                             "has none")
        if users is not None and (users.shape[0], items.shape[0]) != self.nodes:
            raise ValueError(f"join: {users.shape[0]} user and {items.shape[0]} item rows for a node adjacency of "
                             f"{self.nodes[0]} users and {self.nodes[1]} items")

    def with_backend(self, backend: str) -> "SparseMatrix":
        check_backend(backend)
        return self.replace(backend=backend)

    def todense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float64)
        np.add.at(out, (np.asarray(self.fwd.row_ids), np.asarray(self.fwd.indices)), np.asarray(self.fwd.data))
        return out

    def __matmul__(self, x: jax.Array) -> jax.Array:
        return spmm(self, x)


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown propagation backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def default_backend(platform: str | None = None) -> str:
    """The propagation backend used when the config says `auto`, per platform, from `make bench` measurements.

    CPU: bcsr. At Clothing size (62,420 nodes, 388k nonzeros, 64 wide) one Â@X took ×0.27 of bcoo's time (26.9 vs
    98.4 ms; segment_sum 94.4 ms), two layers forward + backward ×0.40, and every model's train step was fastest
    with it (LightGCN ×0.41–0.49 of bcoo; GUME ×0.73; LGMRec, dominated by dense work, ×0.83–0.91).
    TPU: segment_sum, from the TPU compiler's evidence (libtpu's cost model and buffer assignment, compiled on a CPU
    machine with `python -m experiments.aot`; a model of the program, NOT a timing, since no TPU was lent): every
    backend becomes gather + scatter-add there, but bcoo re-stacks its index array with extra gathers, masks
    [nnz, d] for bounds and, at Clothing size, sorts indices that are already sorted; bcsr adds a second scatter (CSR
    → COO rows) and has no TPU kernel. LGMRec's Baby train step on v5e: bcoo 25.5 GB accessed, 0.79 GiB temporaries,
    57 gathers; segment_sum 13.0 GB, 0.63 GiB, 33 gathers, the same FLOPs (BENCHMARKS.md, TPU compiler).
    GPU: bcoo, the portable choice, not measured against bcsr and segment_sum (no GPU was lent; XLA's GPU compiler
    gives no cost analysis). bcsr does not reach cuSPARSE in jax 0.12: `jax_bcoo_cusparse_lowering` is off by
    default and this project does not set it. Run `make bench` there and change this line if another backend wins.
    """
    platform = platform or jax.default_backend()
    return {"cpu": "bcsr", "tpu": "segment_sum"}.get(platform, "bcoo")


def resolve_backend(name: str, platform: str | None = None) -> str:
    """The config value `train.backend` as a concrete backend: "auto" → default_backend(platform), others checked."""
    if name == "auto":
        return default_backend(platform)
    check_backend(name)
    return name


def _csr_from_coo(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int) -> CSR:
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return CSR(
        data=jnp.asarray(vals, dtype=jnp.float32),
        indices=jnp.asarray(cols, dtype=jnp.int32),
        indptr=jnp.asarray(indptr, dtype=jnp.int32),
        row_ids=jnp.asarray(rows, dtype=jnp.int32),
    )


def from_coo(rows, cols, vals, shape: tuple[int, int], backend: str = "bcoo") -> SparseMatrix:
    """Builds a SparseMatrix from COO triplets on the host. Duplicate (row, col) pairs are summed."""
    check_backend(backend)
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    vals = np.asarray(vals, dtype=np.float64)
    if not (rows.shape == cols.shape == vals.shape) or rows.ndim != 1:
        raise ValueError(f"COO arrays must be 1-d and equally long, got {rows.shape}, {cols.shape}, {vals.shape}")
    n_rows, n_cols = shape
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows or cols.min() < 0 or cols.max() >= n_cols):
        raise ValueError(f"COO indices out of range for shape {shape}")
    # Sum duplicates so that every backend sees one value per position.
    keys = rows * n_cols + cols
    uniq, inverse = np.unique(keys, return_inverse=True)
    summed = np.bincount(inverse, weights=vals, minlength=uniq.size)
    rows, cols = uniq // n_cols, uniq % n_cols
    return SparseMatrix(
        fwd=_csr_from_coo(rows, cols, summed, n_rows),
        bwd=_csr_from_coo(cols, rows, summed, n_cols),
        shape=(int(n_rows), int(n_cols)),
        backend=backend,
    )


# ----------------------------------------------------------------------------------------------------------------
# Products. The matrix values are constants: gradients flow to the dense operand only.


def spmm(mat: SparseMatrix, x: jax.Array) -> jax.Array:
    """`mat @ x` for a dense [cols, d] (or [cols]) operand with the matrix's backend."""
    with part("propagation"):
        return _spmm(mat, x)


def _spmm(mat: SparseMatrix, x: jax.Array) -> jax.Array:
    if x.shape[0] != mat.operand_rows:
        layout = " in the blocked node layout (build it with join)" if mat.node_layout else ""
        raise ValueError(f"sparse matmul shape mismatch: matrix {mat.shape}{layout} @ operand {x.shape}")
    squeeze = x.ndim == 1
    x2 = x[:, None] if squeeze else x
    check_backend(mat.backend)
    if mat.blocks is not None:
        from lgmrec_jax.graph import partitioned  # it builds on this module

        out = partitioned.spmm(mat, x2)
    else:
        fwd = jax.tree.map(jax.lax.stop_gradient, mat.fwd)
        bwd = jax.tree.map(jax.lax.stop_gradient, mat.bwd)
        if mat.backend == "bcoo":  # differentiated by JAX itself
            out = local_product(fwd, mat.shape, mat.backend, x2)
        else:  # backward = a product with the stored transpose (a sorted segment sum, not an unsorted scatter)
            out = _transpose_vjp_matmul(mat.shape, mat.backend, fwd, bwd, x2)
    return out[:, 0] if squeeze else out


def local_product(m: CSR, shape: tuple[int, int], backend: str, x: jax.Array) -> jax.Array:
    """One CSR times a dense [cols, d] operand with `backend`, no custom gradient (the callers add theirs)."""
    if backend == "bcoo":
        return _bcoo_matmul(m, shape, x)
    if backend == "bcsr":
        return _bcsr_forward(m, shape, x)
    return _segment_matmul(m, shape, x)


def _bcoo_matmul(m: CSR, shape, x):
    coo = jsparse.BCOO((m.data, jnp.stack([m.row_ids, m.indices], axis=1)), shape=shape,
                       indices_sorted=True, unique_indices=True)
    return coo @ x


def _segment_matmul(m: CSR, shape, x):
    contrib = m.data[:, None] * jnp.take(x, m.indices, axis=0)
    return jax.ops.segment_sum(contrib, m.row_ids, num_segments=shape[0], indices_are_sorted=True)


def _bcsr_forward(m: CSR, shape, x):
    mat = jsparse.BCSR((m.data, m.indices, m.indptr), shape=shape, indices_sorted=True, unique_indices=True)
    return mat @ x


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _transpose_vjp_matmul(shape, backend, fwd: CSR, bwd: CSR, x):
    return local_product(fwd, shape, backend, x)


def _transpose_vjp_matmul_fwd(shape, backend, fwd, bwd, x):
    return local_product(fwd, shape, backend, x), (fwd, bwd)


def _transpose_vjp_matmul_bwd(shape, backend, res, g):
    fwd, bwd = res
    # d(A x)/dx applied to g is Aᵀ g: one more product with the stored transpose. The matrix is constant. For
    # segment_sum this replaces autodiff's scatter-add at unsorted column ids by a sum over sorted row ids.
    return None, None, local_product(bwd, (shape[1], shape[0]), backend, g)


_transpose_vjp_matmul.defvjp(_transpose_vjp_matmul_fwd, _transpose_vjp_matmul_bwd)
