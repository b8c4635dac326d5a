"""Full-ranking evaluation on device, exactly as MMRec computes it (SPEC §2.3).

For each user of the split: score all items, set the user's *training* items to -inf (validation items are not
masked at test time), take the top max(k) with `lax.top_k`, and compare against the user's ground-truth items of
the split. Per user:
    Recall@k    = hits@k / |GT|
    NDCG@k      = Σ_{r≤k, hit} 1/log2(r+1)  /  Σ_{r≤min(k,|GT|)} 1/log2(r+1)
    Precision@k = hits@k / k
    MAP@k       = Σ_{r≤k} Precision@r · hit_r / min(k, |GT|)
averaged over users, then rounded to 4 decimals as MMRec prints them (early stopping compares rounded values).

User batches have a fixed size (padding users carry weight 0), so the jitted batch function compiles once; with a
mesh the user axis of each batch is sharded over devices and the embeddings are replicated.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lgmrec_jax.data.dataset import Dataset

METRICS = ("recall", "ndcg", "precision", "map")


def padded_lists(users: np.ndarray, pairs: np.ndarray, fill: int) -> np.ndarray:
    """Items of each user in `users` from (user, item) `pairs`, as a [len(users), max_len] int32 array."""
    pairs = np.unique(np.asarray(pairs), axis=0)  # sorted by user, duplicates dropped
    sorted_users, sorted_items = pairs[:, 0], pairs[:, 1]
    starts = np.searchsorted(sorted_users, users, side="left")
    ends = np.searchsorted(sorted_users, users, side="right")
    width = max(1, int((ends - starts).max(initial=0)))
    out = np.full((len(users), width), fill, dtype=np.int32)
    for row, (s, e) in enumerate(zip(starts, ends)):
        out[row, : e - s] = sorted_items[s:e]
    return out


class Evaluator:
    """Evaluates (user embeddings, item embeddings) — or any user×item scorer — on one split."""

    def __init__(self, data: Dataset, split: str, topk=(10, 20), batch_size: int = 4096, sharding=None):
        self.topk = tuple(sorted(topk))
        self.n_items = data.n_items
        truth = data.split(split)
        self.users = np.unique(truth[:, 0]).astype(np.int32)
        n_batches = -(-len(self.users) // batch_size)
        if sharding is not None:  # the user axis must split evenly over the mesh
            n_dev = sharding.mesh.size
            batch_size = -(-batch_size // n_dev) * n_dev
        self.batch_size = batch_size
        total = n_batches * batch_size
        pad = total - len(self.users)
        users = np.r_[self.users, np.zeros(pad, np.int32)]
        weight = np.r_[np.ones(len(self.users), np.float32), np.zeros(pad, np.float32)]
        # Out-of-range index n_items marks list padding: the mask scatter drops it, and it never equals a top-k id.
        seen = padded_lists(users, data.train, fill=self.n_items)
        gt = padded_lists(users, truth, fill=self.n_items)
        self._batches = [
            tuple(jax.device_put(a[s:s + batch_size], sharding) if sharding is not None else jnp.asarray(
                a[s:s + batch_size]) for a in (users, weight, seen, gt))
            for s in range(0, total, batch_size)
        ]

    def __call__(self, user_emb: jax.Array, item_emb: jax.Array) -> dict[str, float]:
        sums = None
        for batch in self._batches:
            part = _batch_metrics(user_emb, item_emb, *batch, topk=self.topk)
            sums = part if sums is None else jax.tree.map(jnp.add, sums, part)
        sums = jax.device_get(sums)
        return {name: round(float(value) / len(self.users), 4) for name, value in sums.items()}


@functools.partial(jax.jit, static_argnames=("topk",))
def _batch_metrics(user_emb, item_emb, users, weight, seen, gt, topk):
    scores = user_emb[users] @ item_emb.T
    rows = jnp.arange(users.shape[0])[:, None]
    scores = scores.at[rows, seen].set(-jnp.inf, mode="drop")
    _, top = jax.lax.top_k(scores, max(topk))
    return ranking_metrics(top, gt, weight, item_emb.shape[0], topk)


def ranking_metrics(top: jax.Array, gt: jax.Array, weight: jax.Array, n_items: int, topk) -> dict:
    """Weighted sums over users of the four metrics at each k, from top-K ids [B, K] and padded GT [B, G]."""
    hits = jnp.any(top[:, :, None] == gt[:, None, :], axis=-1).astype(jnp.float32)  # [B, K]
    n_gt = jnp.maximum(jnp.sum(gt < n_items, axis=1).astype(jnp.float32), 1.0)
    ranks = jnp.arange(1, hits.shape[1] + 1, dtype=jnp.float32)
    discount = 1.0 / jnp.log2(ranks + 1.0)
    cum_hits = jnp.cumsum(hits, axis=1)
    out = {}
    for k in topk:
        h = hits[:, :k]
        ideal_len = jnp.minimum(n_gt, k)
        idcg = jnp.sum(jnp.where(ranks[None, :k] <= ideal_len[:, None], discount[None, :k], 0.0), axis=1)
        values = {
            "recall": jnp.sum(h, axis=1) / n_gt,
            "ndcg": jnp.sum(h * discount[None, :k], axis=1) / idcg,
            "precision": jnp.sum(h, axis=1) / k,
            "map": jnp.sum(cum_hits[:, :k] / ranks[None, :k] * h, axis=1) / ideal_len,
        }
        for name in METRICS:
            out[f"{name}@{k}"] = jnp.sum(values[name] * weight)
    return out


def popularity_scores(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) 'embeddings' whose dot product ranks items by training popularity: the baseline to beat."""
    counts = np.bincount(data.train[:, 1], minlength=data.n_items).astype(np.float32)
    return np.ones((data.n_users, 1), np.float32), counts[:, None]
