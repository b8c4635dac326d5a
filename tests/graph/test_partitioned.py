"""Row blocks of a sparse matrix (graph/partitioned.py): every block is a valid CSR and together they are the matrix.

The products on real multi-device meshes are compared with the plain product in tests/test_sharded_models.py (they
need forced host devices, hence a subprocess); here the host-side layout is checked on its own.
"""

import numpy as np
import pytest

from lgmrec_jax.graph import from_coo
from lgmrec_jax.graph.partitioned import row_blocks


def _random_matrix(rng, shape, nnz):
    rows, cols = rng.integers(0, shape[0], nnz), rng.integers(0, shape[1], nnz)
    rows[rows % 7 == 3] = 0  # one heavy row and several empty ones
    return from_coo(rows, cols, rng.random(nnz) + 0.1, shape)


@pytest.mark.parametrize("n_blocks", [1, 2, 3, 8, 13])
@pytest.mark.parametrize("shape", [(37, 29), (5, 3), (64, 64)])
def test_blocks_reassemble_the_matrix(n_blocks, shape):
    rng = np.random.default_rng(n_blocks * 100 + shape[0])
    mat = _random_matrix(rng, shape, 3 * shape[0])
    blocks, r, spill = row_blocks(mat.fwd, *shape, n_blocks)
    data, indices = np.asarray(blocks.data), np.asarray(blocks.indices)
    indptr, row_ids = np.asarray(blocks.indptr), np.asarray(blocks.row_ids)
    assert r == -(-shape[0] // n_blocks) and data.shape[0] == n_blocks and indptr.shape == (n_blocks, r + spill + 1)
    rebuilt = np.zeros(shape)
    for b in range(n_blocks):
        # A valid CSR: indptr runs from 0 to the width, row ids agree with it, (row, col) sorted and unique.
        assert indptr[b, 0] == 0 and indptr[b, -1] == data.shape[1] and np.all(np.diff(indptr[b]) >= 0)
        np.testing.assert_array_equal(row_ids[b], np.repeat(np.arange(r + spill), np.diff(indptr[b])))
        keys = row_ids[b].astype(np.int64) * shape[1] + indices[b]
        assert np.all(np.diff(keys) > 0)
        real = row_ids[b] < r
        assert np.all(data[b][~real] == 0)  # spill rows hold only zero padding
        global_rows = row_ids[b][real] * n_blocks + b  # rows are dealt out cyclically
        assert np.all(global_rows < shape[0])
        np.add.at(rebuilt, (global_rows, indices[b][real]), data[b][real])
    np.testing.assert_allclose(rebuilt, mat.todense(), rtol=1e-6)


def test_cyclic_blocks_balance_dense_tail_rows():
    """Dense rows at the end (Â's item rows) must not all land on one block."""
    rng = np.random.default_rng(0)
    rows = np.r_[rng.integers(0, 800, 800), rng.integers(800, 1000, 4000)]
    mat = from_coo(rows, rng.integers(0, 1000, rows.size), np.ones(rows.size), (1000, 1000))
    blocks, _, _ = row_blocks(mat.fwd, 1000, 1000, 8)
    per_block = (np.asarray(blocks.data) > 0).sum(axis=1)
    assert per_block.max() <= 1.2 * per_block.mean()
