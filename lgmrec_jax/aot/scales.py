"""What to compile for: a dataset on disk, a synthetic scale, or counts alone.

    resolve("baby")                  data/baby/ (MMRec files), loaded and checked as for training
    resolve("synthetic-clothing")    the synthetic generator at Clothing's counts and feature widths
    resolve("10x-elec")              counts only (COUNT_SCALES), or
    resolve("counts:2000000,630000,17000000")   users, items, training interactions (widths: image 4096, text 384)

A counts-only dataset has interactions drawn from power laws (user degrees as the synthetic generator's: at least
5, Pareto-tailed, capped at MAX_USER_DEGREE; item popularity Zipf-like) and feature tables that are zero-strided views (no memory): the compiler needs shapes, and the
sparse graphs' shapes (nonzeros per row block) follow from the interactions. GUME's and FREEDOM's kNN graphs cannot
be computed without features; `graphs_for` gives GUME random neighbour lists of the configured k, half of them shared
between the two modalities, so that its semantic-neighbour edges (the lists' intersection) are as many as real data
give, and FREEDOM independent random lists per modality (self first).
"""

from __future__ import annotations

import re

import numpy as np

from lgmrec_jax.data import synthetic
from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.data.sources import load_dataset
from lgmrec_jax.graph import knn as knn_lib

WIDTHS = {"image": 4096, "text": 384}  # Amazon image (CNN) and text (MiniLM) features
# ~10× Amazon Electronics (192,403 users, 63,001 items, 1,689,188 interactions; SPEC §5.1).
COUNT_SCALES = {"10x-elec": (2_000_000, 630_000, 17_000_000)}
MAX_USER_DEGREE = 1000


def resolve(name: str, data_dir: str = "data") -> Dataset:
    counts = COUNT_SCALES.get(name)
    found = re.fullmatch(r"counts:(\d+),(\d+),(\d+)", name)
    if found:
        counts = tuple(int(x) for x in found.groups())
    if counts is None:
        return load_dataset(name, data_dir)
    return from_counts(name, *counts)


def from_counts(name: str, n_users: int, n_items: int, n_train: int, seed: int = 0) -> Dataset:
    if min(n_users, n_items) < 2 or n_train < synthetic.MIN_USER_DEGREE * n_users:
        raise ValueError(f"{name}: need at least 2 users and items and 5 interactions per user (5-core), got "
                         f"{n_users} users, {n_items} items, {n_train} interactions")
    rng = np.random.default_rng(seed)
    degrees = synthetic.user_degrees(rng, n_users, n_train, min(MAX_USER_DEGREE, n_items - 1))
    users = np.repeat(np.arange(n_users), degrees)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    items = rng.permutation(n_items)[rng.choice(n_items, size=users.size, p=popularity / popularity.sum())]
    train = np.stack([users, items], axis=1).astype(np.int32)
    held_out = np.stack([np.arange(n_users), rng.integers(0, n_items, n_users)], axis=1).astype(np.int32)
    feats = {m: np.broadcast_to(np.float32(0), (n_items, w)) for m, w in WIDTHS.items()}
    return Dataset(name=name, n_users=n_users, n_items=n_items, train=train, valid=held_out, test=held_out,
                   features=feats)


def is_counts_only(data: Dataset) -> bool:
    return any(f.strides[0] == 0 for f in data.features.values() if f.ndim == 2)


_BUILT: dict = {}  # (model, dataset object, backend, model settings) → host graphs: one build per table run


def graphs_for(model_name: str, model, data: Dataset, cfg, backend: str, cache_dir=None):
    """The model's host graphs; for a counts-only dataset GUME's kNN graphs are random lists of the right shape.
    Remembered for the process: a table compiles the same model and dataset for several targets."""
    key = (model_name, id(data), backend, repr(cfg.model))
    if key not in _BUILT:
        _BUILT.clear()  # one dataset's graphs at a time: at ~10× Electronics they take gigabytes
        _BUILT[key] = (data, _build(model_name, model, data, cfg, backend, cache_dir))
    return _BUILT[key][1]


def _build(model_name: str, model, data: Dataset, cfg, backend: str, cache_dir):
    if model_name not in ("gume", "freedom") or not is_counts_only(data):
        return model.build_graphs(data, cfg.model, backend, cache_dir=cache_dir)
    rng = np.random.default_rng(1)
    k, n = cfg.model.knn_k, data.n_items
    if model_name == "freedom":  # its item-item graph sums the lists' graphs: only the nonzero count matters
        lists = {m: np.concatenate([np.arange(n)[:, None], rng.integers(0, n, (n, k - 1))], axis=1)
                 for m in sorted(data.features)}
        return model.graphs_from_knn(data, lists, cfg.model, backend)
    first = np.concatenate([np.arange(n)[:, None], rng.integers(0, n, (n, k - 1))], axis=1)
    graphs = {}
    for i, m in enumerate(sorted(data.features)):
        cols = first.copy()
        if i:  # the second half of each list differs between modalities
            cols[:, (k + 1) // 2:] = rng.integers(0, n, (n, k - (k + 1) // 2))
        cols = np.sort(cols, axis=1)  # distinct per row is not needed for shapes; sorted keeps from_coo simple
        sims = rng.uniform(0.1, 1.0, cols.shape).astype(np.float32)
        graphs[m] = knn_lib.KnnGraph(cols.astype(np.int32), sims, knn_lib.normalize(cols, sims, "sym"))
    return model.graphs_from_knn(data, graphs, backend)
