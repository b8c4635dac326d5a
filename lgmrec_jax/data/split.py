"""Per-user train/valid/test splits: MMRec's random split (SPEC §1.3 step 2) and a chronological variant.

MMRec's `1splitting.ipynb` shuffles all rows, then sorts by user with an unstable sort, so each
user's interactions end up in random order (timestamps are not used). Per user with n rows:
  n < 10 : first n-2 -> train (0), next 1 -> valid (1), last 1 -> test (2)
  n >= 10: vt = int(0.2 n), val = vt // 2, test = vt - val, the first n - vt -> train
We reproduce the rule with a seeded numpy Generator (bit-identical rows to MMRec's own
pandas shuffle are not reachable - it depended on the global numpy state - but the sizes are).
"""

from __future__ import annotations

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
MIN_INTERACTIONS = 3  # one train, one valid and one test row at least


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, valid, test) counts for a user with n interactions."""
    if n < MIN_INTERACTIONS:
        raise ValueError(f"a user with {n} interaction(s) cannot be split (need >= {MIN_INTERACTIONS})")
    if n < 10:
        return n - 2, 1, 1
    vt = int(0.2 * n)
    val = vt // 2
    return n - vt, val, vt - val


def mmrec_split(users: np.ndarray, seed: int | np.random.Generator) -> np.ndarray:
    """x_label (0/1/2) per row, aligned with `users` (rows are not reordered).

    Args:
      users: integer user id per interaction row.
      seed: seed of the numpy Generator that orders each user's rows (or the Generator itself).
    Raises:
      ValueError naming the first user with fewer than 3 rows (impossible after a 5-core filter,
      so seeing it means the filter was skipped).
    """
    users = np.asarray(users)
    if users.ndim != 1:
        raise ValueError(f"users: expected 1-D, got shape {users.shape}")
    if users.size == 0:
        return np.zeros(0, dtype=np.int8)
    _, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)
    too_small = np.flatnonzero(counts < MIN_INTERACTIONS)
    if too_small.size:
        first = too_small[0]
        bad_user = users[np.flatnonzero(inverse == first)[0]].item()
        raise ValueError(
            f"{too_small.size} user(s) have fewer than {MIN_INTERACTIONS} interactions "
            f"(e.g. user {bad_user!r} with {counts[first]}); apply the 5-core filter first"
        )

    rng = np.random.default_rng(seed)
    # Random global order, then a *stable* sort by user: each user's rows keep the random order.
    shuffled = rng.permutation(users.size)
    order = shuffled[np.argsort(inverse[shuffled], kind="stable")]
    return _label_in_order(order, inverse, counts)


def chronological_split(users: np.ndarray, timestamps: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """The same per-user sizes, but each user's latest rows go to test and the ones before them to valid."""
    users = np.asarray(users)
    _, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)
    if (counts < MIN_INTERACTIONS).any():
        raise ValueError(f"every user needs >= {MIN_INTERACTIONS} interactions for a chronological split")
    order = np.lexsort((tiebreak, timestamps, inverse))  # by user, then time
    return _label_in_order(order, inverse, counts)


def _label_in_order(order: np.ndarray, inverse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Labels rows given `order`, a permutation grouping each user's rows contiguously in the order to split them
    (first rows → train, then valid, then test), with split_sizes' counts."""
    group_of_sorted = inverse[order]
    group_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(order.size) - group_start[group_of_sorted]

    n = counts[group_of_sorted]
    vt = np.where(n < 10, 2, (0.2 * n).astype(np.int64))
    val = np.where(n < 10, 1, vt // 2)
    n_train = n - vt
    label_sorted = np.where(rank < n_train, TRAIN, np.where(rank < n_train + val, VALID, TEST))

    x_label = np.empty(order.size, dtype=np.int8)
    x_label[order] = label_sorted
    return x_label
