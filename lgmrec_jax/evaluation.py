"""Full-ranking evaluation on device, exactly as MMRec computes it (SPEC §2.3).

For each user of the split: score all items, set the user's *training* items to -inf (validation items are not
masked at test time), take the top max(k) with `lax.top_k`, and compare against the user's ground-truth items of
the split. Per user:
    Recall@k    = hits@k / |GT|
    NDCG@k      = Σ_{r≤k, hit} 1/log2(r+1)  /  Σ_{r≤min(k,|GT|)} 1/log2(r+1)
    Precision@k = hits@k / k
    MAP@k       = Σ_{r≤k} Precision@r · hit_r / min(k, |GT|)
averaged over users, then rounded to 4 decimals as MMRec prints them (early stopping compares rounded values).

User batches have a fixed size (padding users carry weight 0), so the jitted batch function compiles once.

With a mesh of n > 1 devices the items are split instead (the embeddings come split by rows from the trainer,
parallel.py): each device scores the user batch against its own I/n items, masks and takes its own top max(k),
and the n short lists are all-gathered and merged by one more top-k. No device holds a users × items score block.
The merge gives exactly the single-device ranking: `lax.top_k` orders ties by index, every device's items are a
contiguous id range, and the gathered lists are in device order, so ties resolve by item id in both.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from lgmrec_jax import parallel
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

    def __init__(self, data: Dataset, split: str, topk=(10, 20), batch_size: int = 4096, mesh=None,
                 abstract: bool = False, platform: str | None = None):
        """`abstract`: the batches are only shapes placed on `mesh` (devices this machine may not have), for
        `lower_batch`; such an evaluator cannot be called. `platform` picks how training items are masked (below)."""
        self.topk = tuple(sorted(topk))
        self.n_items, self.n_users = data.n_items, data.n_users
        self.abstract = abstract
        self.mask_by_compare = (platform or jax.default_backend()) == "tpu"
        self.mesh = mesh if mesh is not None and mesh.size > 1 else None
        self._placement = None if self.mesh is None else parallel.Placement(self.mesh, ())
        truth = data.split(split)
        self.users = np.unique(truth[:, 0]).astype(np.int32)
        n_batches = -(-len(self.users) // batch_size)
        self.batch_size = batch_size
        # Batches live on every device (replicated).
        sharding = None if mesh is None else parallel.replicated(mesh)
        total = n_batches * batch_size
        pad = total - len(self.users)
        users = np.r_[self.users, np.zeros(pad, np.int32)]
        weight = np.r_[np.ones(len(self.users), np.float32), np.zeros(pad, np.float32)]
        # Out-of-range index n_items marks list padding: the mask scatter drops it, and it never equals a top-k id.
        seen = padded_lists(users, data.train, fill=self.n_items)
        gt = padded_lists(users, truth, fill=self.n_items)

        def place(a):
            if abstract:
                return parallel.abstract(a, sharding)
            return jnp.asarray(a) if sharding is None else jax.device_put(a, sharding)

        self._batches = [tuple(place(a[s:s + batch_size]) for a in (users, weight, seen, gt))
                         for s in range(0, total, batch_size)]

    def __call__(self, user_emb: jax.Array, item_emb: jax.Array) -> dict[str, float]:
        """Metrics of the split. With a mesh, the embeddings may come unpadded (they are then padded and split
        here) or as the trainer's embed() returns them: padded to a multiple of the device count, split by rows."""
        if self.abstract:
            raise ValueError("an abstract Evaluator only lowers programs (lower_batch)")
        if self.mesh is not None:
            user_emb, item_emb = (self._split_rows(x) for x in (user_emb, item_emb))
        sums = None
        for batch in self._batches:
            if self.mesh is None:
                part = _batch_metrics(user_emb, item_emb, *batch, topk=self.topk, by_compare=self.mask_by_compare)
            else:
                part = _split_item_batch_metrics(user_emb, item_emb, *batch, topk=self.topk, n_items=self.n_items,
                                                 mesh=self.mesh, by_compare=self.mask_by_compare)
            sums = part if sums is None else jax.tree.map(jnp.add, sums, part)
        sums = jax.device_get(sums)
        return {name: round(float(value) / len(self.users), 4) for name, value in sums.items()}

    def lower_batch(self, user_emb, item_emb):
        """The first user batch's program, lowered (for cost and memory figures: `make bench`)."""
        if self.mesh is None:
            return _batch_metrics.lower(user_emb, item_emb, *self._batches[0], topk=self.topk,
                                        by_compare=self.mask_by_compare)
        user_emb, item_emb = (self._split_rows(x) for x in (user_emb, item_emb))
        return _split_item_batch_metrics.lower(user_emb, item_emb, *self._batches[0], topk=self.topk,
                                               n_items=self.n_items, mesh=self.mesh, by_compare=self.mask_by_compare)

    def _split_rows(self, x) -> jax.Array:
        rows = self._placement.padded_rows(x.shape[0])
        sharding = self._placement.rows_sharding()
        if x.shape[0] == rows and isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) and x.sharding == sharding:
            return x  # already placed (or an abstract value placed so, for lower_batch)
        return parallel.put(np.pad(np.asarray(x), [(0, rows - x.shape[0]), (0, 0)]), sharding)


def mask_seen(scores: jax.Array, seen: jax.Array, first_item, by_compare: bool) -> jax.Array:
    """`scores` [B, n] of items first_item … first_item+n−1 with each row's `seen` item ids [B, S] set to -inf
    (ids outside the range, list padding included, change nothing).

    Two ways to the same values. The scatter `scores.at[rows, seen].set(-inf)` is the cheap one on CPU and GPU. On
    TPU it compiles to a scatter with a sort of the indices and while loops, which the TPU compiler models far above
    the scoring and top-k it serves (BENCHMARKS.md, TPU compiler), so there (`by_compare`) the mask is built by
    comparing every column id with the row's seen ids: a fused [B, n, S] compare-and-reduce with no scatter.
    With S up to a few hundred it is dense work the TPU's vector units do at full rate."""
    if by_compare:
        ids = first_item + jnp.arange(scores.shape[1], dtype=seen.dtype)
        hit = jnp.any(ids[None, :, None] == seen[:, None, :], axis=-1)
        return jnp.where(hit, -jnp.inf, scores)
    local = seen - first_item
    local = jnp.where((local >= 0) & (local < scores.shape[1]), local, scores.shape[1])  # others: dropped
    return scores.at[jnp.arange(scores.shape[0])[:, None], local].set(-jnp.inf, mode="drop")


@functools.partial(jax.jit, static_argnames=("topk", "by_compare"))
def _batch_metrics(user_emb, item_emb, users, weight, seen, gt, topk, by_compare=False):
    scores = mask_seen(user_emb[users] @ item_emb.T, seen, 0, by_compare)
    _, top = jax.lax.top_k(scores, max(topk))
    return ranking_metrics(top, gt, weight, item_emb.shape[0], topk)


@functools.partial(jax.jit, static_argnames=("topk", "n_items", "mesh", "by_compare"))
def _split_item_batch_metrics(user_emb, item_emb, users, weight, seen, gt, topk, n_items, mesh, by_compare=False):
    """_batch_metrics with the items split over `mesh` (rows of item_emb; padding rows are ids ≥ n_items)."""
    axis = mesh.axis_names[0]
    k_max = max(topk)

    def local_top(rows, items, seen):
        n_local = items.shape[0]
        offset = jax.lax.axis_index(axis) * n_local
        scores = mask_seen(rows @ items.T, seen, offset, by_compare)  # [B, I/n]: this device's items only
        ids = offset + jnp.arange(n_local)
        scores = jnp.where(ids[None, :] < n_items, scores, -jnp.inf)  # padding items never rank above real ones
        values, index = jax.lax.top_k(scores, min(k_max, n_local))
        values = jax.lax.all_gather(values, axis, axis=1, tiled=True)
        ids = jax.lax.all_gather(index + offset, axis, axis=1, tiled=True)
        _, best = jax.lax.top_k(values, k_max)
        return jnp.take_along_axis(ids, best, axis=1)

    # Every device merges the same gathered lists, so the result is replicated; the checker cannot see that
    # through top_k, hence check_vma=False.
    top = jax.shard_map(local_top, mesh=mesh, in_specs=(P(), P(axis), P()), out_specs=P(), check_vma=False)(
        user_emb[users], item_emb, seen)
    return ranking_metrics(top, gt, weight, n_items, topk)


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
