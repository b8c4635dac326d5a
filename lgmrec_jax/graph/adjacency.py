"""User-item graphs in the forms the models propagate over (SPEC §3.2, §4.2.3)."""

from __future__ import annotations

import numpy as np

from lgmrec_jax.graph.sparse import SparseMatrix, from_coo


def interaction_matrix(n_users: int, n_items: int, train: np.ndarray, backend: str = "bcoo") -> SparseMatrix:
    """Binary U×I matrix R of the training interactions (duplicates collapse to 1)."""
    users, items = _unique_pairs(train, n_items)
    return from_coo(users, items, np.ones(users.size), (n_users, n_items), backend)


def normalized_adjacency(n_users: int, n_items: int, train: np.ndarray, item_item: np.ndarray | None = None,
                         backend: str = "bcoo") -> SparseMatrix:
    """Â = D^{-1/2} A D^{-1/2} over the N = U + I nodes, A = [[0, R], [Rᵀ, M]].

    `item_item` is an optional [k, 2] array of directed item→item edges M (GUME's semantic neighbours); it is not
    symmetrized. D holds the row sums of A; rows without edges stay zero.
    """
    users, items = _unique_pairs(train, n_items)
    rows = [users, items + n_users]
    cols = [items + n_users, users]
    if item_item is not None and len(item_item):
        src, dst = _unique_pairs(np.asarray(item_item), n_items)
        rows.append(src + n_users)
        cols.append(dst + n_users)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    n = n_users + n_items
    degree = np.bincount(rows, minlength=n).astype(np.float64)
    inv_sqrt = np.zeros(n)
    np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
    return from_coo(rows, cols, inv_sqrt[rows] * inv_sqrt[cols], (n, n), backend).replace(
        nodes=(int(n_users), int(n_items)))


def user_degree(n_users: int, train: np.ndarray, n_items: int) -> np.ndarray:
    """Number of distinct training items per user (float32), the denominator of mean pooling."""
    users, _ = _unique_pairs(train, n_items)
    return np.bincount(users, minlength=n_users).astype(np.float32)


def _unique_pairs(pairs: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.asarray(pairs, dtype=np.int64)
    keys = np.unique(pairs[:, 0] * n_cols + pairs[:, 1])
    return keys // n_cols, keys % n_cols
