"""Row blocks of a sparse matrix (graph/partitioned.py): every block is a valid CSR and together they are the matrix.

The products on real multi-device meshes are compared with the plain product in tests/test_sharded_models.py (they
need forced host devices, hence a subprocess); here the host-side layout is checked on its own.
"""

import numpy as np
import pytest

from lgmrec_jax.graph import from_coo, normalized_adjacency
from lgmrec_jax.graph.partitioned import node_layout, row_blocks


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
        local_rows, cols, vals = _valid_block(blocks, b, r, spill, shape[1])
        global_rows = local_rows * n_blocks + b  # rows are dealt out cyclically
        assert np.all(global_rows < shape[0])
        np.add.at(rebuilt, (global_rows, cols), vals)
    np.testing.assert_allclose(rebuilt, mat.todense(), rtol=1e-6)


def _valid_block(blocks, b, r, spill, n_cols):
    """Checks that block b is a valid CSR whose spill rows hold only zeros; returns its real (row, col, value)."""
    data, indices = np.asarray(blocks.data)[b], np.asarray(blocks.indices)[b]
    indptr, row_ids = np.asarray(blocks.indptr)[b], np.asarray(blocks.row_ids)[b]
    # indptr runs from 0 to the width, row ids agree with it, (row, col) sorted and unique, columns in range.
    assert indptr[0] == 0 and indptr[-1] == data.shape[0] and np.all(np.diff(indptr) >= 0)
    np.testing.assert_array_equal(row_ids, np.repeat(np.arange(r + spill), np.diff(indptr)))
    assert np.all(np.diff(row_ids.astype(np.int64) * n_cols + indices) > 0) and np.all(indices < n_cols)
    real = row_ids < r
    assert np.all(data[~real] == 0)
    return row_ids[real], indices[real], data[real]


@pytest.mark.parametrize("n_blocks", [1, 2, 3, 8])
def test_node_layout_gives_each_block_its_users_then_its_items(n_blocks):
    n_users, n_items = 23, 13
    layout, pos, (ru, ri) = node_layout(n_users, n_items, n_blocks)
    assert (ru, ri) == (-(-n_users // n_blocks), -(-n_items // n_blocks)) and layout.shape == (n_blocks, ru + ri)
    assert np.array_equal(np.sort(pos), np.flatnonzero(layout.ravel() >= 0))  # every node once, padding = -1
    for b in range(n_blocks):
        users, items = layout[b, :ru], layout[b, ru:]
        np.testing.assert_array_equal(users[users >= 0], np.arange(b * ru, min((b + 1) * ru, n_users)))
        np.testing.assert_array_equal(items[items >= 0] - n_users, np.arange(b * ri, min((b + 1) * ri, n_items)))
        for part in (users, items):  # padding only after the real rows
            real = int(np.sum(part >= 0))
            assert np.all(part[:real] >= 0) and np.all(part[real:] == -1)
    np.testing.assert_array_equal(layout.ravel()[pos], np.arange(n_users + n_items))


@pytest.mark.parametrize("n_blocks", [1, 2, 3, 8])
def test_node_layout_blocks_are_the_renumbered_adjacency(n_blocks):
    rng = np.random.default_rng(n_blocks)
    n_users, n_items = 23, 13
    train = np.stack([rng.integers(0, n_users, 90), rng.integers(0, n_items - 1, 90)], axis=1)  # last item unseen
    train[:20, 0] = 4  # a heavy user
    adj = normalized_adjacency(n_users, n_items, train)
    layout, pos, (ru, ri) = node_layout(n_users, n_items, n_blocks)
    width = layout.size
    blocks, r, spill = row_blocks(adj.fwd, *adj.shape, n_blocks, layout, pos)
    assert r == ru + ri
    renumbered = np.zeros((width, width))
    renumbered[np.ix_(pos, pos)] = adj.todense()
    rebuilt = np.zeros((width, width))
    for b in range(n_blocks):
        local_rows, cols, vals = _valid_block(blocks, b, r, spill, width)
        np.add.at(rebuilt, (b * r + local_rows, cols), vals)
    np.testing.assert_allclose(rebuilt, renumbered, rtol=1e-6)


def test_cyclic_blocks_balance_dense_tail_rows():
    """Dense rows at the end (Â's item rows) must not all land on one block."""
    rng = np.random.default_rng(0)
    rows = np.r_[rng.integers(0, 800, 800), rng.integers(800, 1000, 4000)]
    mat = from_coo(rows, rng.integers(0, 1000, rows.size), np.ones(rows.size), (1000, 1000))
    blocks, _, _ = row_blocks(mat.fwd, 1000, 1000, 8)
    per_block = (np.asarray(blocks.data) > 0).sum(axis=1)
    assert per_block.max() <= 1.2 * per_block.mean()
