"""BPR training batches: shuffled positives, one uniform negative each, padded to a fixed batch size.

Follows MMRec (SPEC §2.2): each epoch reshuffles the training interactions and consumes them in batches of
`batch_size`; every positive gets one negative drawn uniformly from the items that occur in the training split,
redrawn while it is in the user's training history. The last batch is padded (mask 0) instead of being short,
so the jitted step compiles once and every batch splits evenly over devices.

The draw for epoch e depends only on (seed, e): a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from lgmrec_jax.data.dataset import Dataset


class NegativeSampler:
    def __init__(self, data: Dataset, batch_size: int, seed: int):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.seed = seed
        self.n_items = data.n_items
        self.train = np.asarray(data.train, dtype=np.int64)
        self.seen_keys = np.unique(self.train[:, 0] * data.n_items + self.train[:, 1])
        self.candidates = np.unique(self.train[:, 1])
        if len(self.candidates) < 2:
            raise ValueError(f"{data.name}: too few training items to sample negatives")
        full_users = np.bincount(self.seen_keys // data.n_items) >= len(self.candidates)
        if full_users.any():
            raise ValueError(f"{data.name}: user {int(np.flatnonzero(full_users)[0])} has interacted with every "
                             "training item; no negative can be drawn")

    @property
    def batches_per_epoch(self) -> int:
        return -(-len(self.train) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng([self.seed, epoch])
        pairs = self.train[rng.permutation(len(self.train))]
        negatives = self.negatives(rng, pairs[:, 0])
        for start in range(0, len(pairs), self.batch_size):
            yield self._pad(pairs[start:start + self.batch_size], negatives[start:start + self.batch_size])

    def negatives(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        neg = self.candidates[rng.integers(0, len(self.candidates), len(users))]
        todo = np.flatnonzero(self._seen(users, neg))
        while todo.size:  # rejection sampling; few rounds since histories are sparse
            neg[todo] = self.candidates[rng.integers(0, len(self.candidates), todo.size)]
            todo = todo[self._seen(users[todo], neg[todo])]
        return neg

    def _seen(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.minimum(np.searchsorted(self.seen_keys, keys), len(self.seen_keys) - 1)
        return self.seen_keys[pos] == keys

    def _pad(self, pairs: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
        n, pad = len(pairs), self.batch_size - len(pairs)
        mask = np.r_[np.ones(n, np.float32), np.zeros(pad, np.float32)]

        def padded(x):
            return np.r_[x, np.zeros(pad, x.dtype)].astype(np.int32)

        return {"users": padded(pairs[:, 0]), "pos": padded(pairs[:, 1]), "neg": padded(neg), "mask": mask}
