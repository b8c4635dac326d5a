"""Seeded synthetic datasets with planted multimodal structure, at the scales of the real benchmarks.

Users and items belong to latent clusters. A user's interactions come mostly from items of the user's cluster
(popularity-skewed inside it); each item modality is a noisy, different linear view of the item's latent vector,
which is its cluster centroid plus item noise. Interactions and features therefore share structure that a
multimodal model can exploit, and an item with few interactions can still be placed by its features.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.data.split import mmrec_split


@dataclasses.dataclass(frozen=True)
class Scale:
    n_users: int
    n_items: int
    n_interactions: int
    feature_dims: tuple[tuple[str, int], ...]
    n_clusters: int


# Real datasets' counts (SPEC §1.2) and feature widths (image 4096, text 384).
SCALES: dict[str, Scale] = {
    "tiny": Scale(240, 160, 3600, (("image", 48), ("text", 24)), 6),
    "baby": Scale(19_445, 7_050, 160_792, (("image", 4096), ("text", 384)), 50),
    "sports": Scale(35_598, 18_357, 296_337, (("image", 4096), ("text", 384)), 80),
    "clothing": Scale(39_387, 23_033, 278_677, (("image", 4096), ("text", 384)), 100),
    "elec": Scale(192_403, 63_001, 1_689_188, (("image", 4096), ("text", 384)), 200),
}

MIN_USER_DEGREE = 5  # the real data are 5-core


def generate(scale: str | Scale = "tiny", seed: int = 0, in_cluster: float = 0.85, latent_dim: int = 16,
             feature_noise: float = 0.5) -> Dataset:
    """Draws a dataset; the same (scale, seed) always gives the same arrays."""
    name = f"synthetic-{scale}" if isinstance(scale, str) else "synthetic"
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown synthetic scale {scale!r}; choose one of {', '.join(SCALES)}")
        scale = SCALES[scale]
    rng = np.random.default_rng(seed)
    U, I, C = scale.n_users, scale.n_items, scale.n_clusters

    user_cluster = rng.integers(0, C, U)
    item_cluster = np.sort(rng.integers(0, C, I))  # items sorted by cluster: cluster c owns a contiguous id range
    offsets = np.searchsorted(item_cluster, np.arange(C + 1))
    sizes = np.diff(offsets)

    degrees = user_degrees(rng, U, scale.n_interactions, max_degree=max(MIN_USER_DEGREE, I // 3))
    users = np.repeat(np.arange(U), degrees)
    items = _draw_items(rng, users, user_cluster, offsets, sizes, I, in_cluster)
    items = _dedupe(rng, users, items, user_cluster, offsets, sizes, I, in_cluster)

    # Shuffle ids of items so that clusters are not contiguous id ranges (a model must learn them).
    perm = rng.permutation(I)
    items = perm[items]
    item_cluster = item_cluster[np.argsort(perm)]

    centroids = rng.normal(size=(C, latent_dim))
    latent = centroids[item_cluster] + feature_noise * rng.normal(size=(I, latent_dim))
    features = {}
    for modality, dim in scale.feature_dims:
        view = latent @ rng.normal(size=(latent_dim, dim)) / np.sqrt(latent_dim)
        view += feature_noise * rng.normal(size=(I, dim))
        # CNN-like image features are non-negative; text embeddings are signed.
        features[modality] = (np.maximum(view, 0) if modality == "image" else view).astype(np.float32)

    labels = mmrec_split(users, rng)
    pairs = np.stack([users, items], axis=1).astype(np.int32)
    return Dataset(name=name, n_users=U, n_items=I, train=pairs[labels == 0], valid=pairs[labels == 1],
                   test=pairs[labels == 2], features=features)


def user_degrees(rng, n_users, total, max_degree):
    # Heavy-tailed activity on top of the 5-core minimum, summing exactly to `total`.
    extra = total - MIN_USER_DEGREE * n_users
    if extra < 0:
        raise ValueError(f"{total} interactions cannot give {n_users} users {MIN_USER_DEGREE} each")
    weights = rng.pareto(1.5, n_users) + 1e-3
    deg = MIN_USER_DEGREE + rng.multinomial(extra, weights / weights.sum())
    # Move interactions from users over the cap to random users under it.
    while (over := deg > max_degree).any():
        surplus = int((deg[over] - max_degree).sum())
        deg[over] = max_degree
        under = np.flatnonzero(deg < max_degree)
        np.add.at(deg, rng.choice(under, surplus), 1)
    return deg


def _draw_items(rng, users, user_cluster, offsets, sizes, n_items, in_cluster):
    n = users.size
    c = user_cluster[users]
    # u**2 skews picks toward low ranks: a popularity head inside each cluster and globally.
    local = offsets[c] + np.minimum((rng.random(n) ** 2 * sizes[c]).astype(np.int64), sizes[c] - 1)
    global_ = np.minimum((rng.random(n) ** 2 * n_items).astype(np.int64), n_items - 1)
    return np.where(rng.random(n) < in_cluster, local, global_)


def _dedupe(rng, users, items, user_cluster, offsets, sizes, n_items, in_cluster):
    # Redraw repeated (user, item) pairs until every pair is unique; uniform redraws converge in a few rounds.
    for round_ in range(200):
        keys = users * n_items + items
        _, first = np.unique(keys, return_index=True)
        dup = np.ones(keys.size, dtype=bool)
        dup[first] = False
        if not dup.any():
            return items
        skew = round_ < 20
        redraw = _draw_items(rng, users[dup], user_cluster, offsets, sizes, n_items, in_cluster)
        items[dup] = redraw if skew else rng.integers(0, n_items, dup.sum())
    raise RuntimeError("could not draw unique interactions; the scale is too dense")
