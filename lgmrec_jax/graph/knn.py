"""Modality item-item kNN graphs and GUME's semantic neighbours (SPEC §4.2.1–2), built blockwise with a disk cache.

The official code forms the dense I×I cosine matrix on the GPU (63,001² floats ≈ 16 GB for Elec) and keeps the
top-k of every row. Here rows are processed in blocks: one jitted `X̂[block] @ X̂ᵀ` followed by `lax.top_k`, so
memory is O(block · I + I · F) and the full matrix never exists.

Graph definition (per modality, from the raw features X, one row per item):
  * S = X̂ X̂ᵀ with X̂ the L2-normalized rows (cosine similarity).
  * Row i keeps k columns with their similarity values; item i itself is always one of them.
  * Tie rule: self first, then larger similarity, then smaller column id. Only exact ties are affected. The
    official code relies on cos(i, i) = 1 being maximal, which holds except for duplicated feature rows (e.g. the
    items whose missing image feature was replaced by the mean vector, SPEC §1.3): then torch.topk picks an
    unspecified subset of the duplicates and may drop i itself. We keep i, and the lowest ids among the others.
  * Normalization 'sym' (GUME's): w_ij = deg_i^{-1/2} S_ij deg_j^{-1/2}, deg_i = Σ_{j ∈ top-k(i)} S_ij, the row sum
    over the kept entries. The graph is not symmetrized. Also 'rw' (deg_i^{-1} S_ij) and 'none' (S_ij).
  * Degenerate rows: a zero feature row has cosine 0 to everything (torch gives NaN); a row whose degree is ≤ 0
    gets deg^{-1/2} = 0 (torch: inf → 0 for 0, NaN for negative), so no NaN ever enters the graph.
Rounding: float32 products with `Precision.HIGHEST`; results can differ between block sizes and devices only at
float32 rounding (which could flip an exact-to-rounding tie).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lgmrec_jax.graph.sparse import SparseMatrix, from_coo

# Bump whenever a change here can change a graph: it is part of every cache key, so stale files are never read.
KNN_CODE_VERSION = "knn-v1"
NORMALIZATIONS = ("sym", "rw", "none")
DEFAULT_BLOCK = 1024


class KnnGraph(NamedTuple):
    """Row i's neighbours `cols[i]` (self first, then by descending similarity), similarities and edge weights."""

    cols: np.ndarray  # [I, k] int32
    sims: np.ndarray  # [I, k] float32, raw cosine similarities S_ij
    weights: np.ndarray  # [I, k] float32, normalized values w_ij

    def to_sparse(self, backend: str = "bcoo") -> SparseMatrix:
        n_items, k = self.cols.shape
        rows = np.repeat(np.arange(n_items), k)
        return from_coo(rows, self.cols.ravel(), self.weights.ravel(), (n_items, n_items), backend)


def knn_graph(features: np.ndarray, k: int, norm: str = "sym", block_size: int = DEFAULT_BLOCK,
              cache_dir: str | os.PathLike | None = None) -> KnnGraph:
    """The normalized top-k cosine graph of `features` [I, F]; read from / written to `cache_dir` when given."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    _check_args(features, k, norm)
    path = None
    if cache_dir is not None:
        key = cache_key(features, k, norm)
        path = Path(cache_dir) / f"knn-k{k}-{norm}-{key[:32]}.npz"
        cached = _load(path, key, features.shape[0], k)
        if cached is not None:
            return cached
    cols, sims = topk_neighbours(features, k, block_size)
    graph = KnnGraph(cols=cols, sims=sims, weights=normalize(cols, sims, norm))
    if path is not None:
        _save_atomic(path, key, graph)
    return graph


def topk_neighbours(features: np.ndarray, k: int, block_size: int = DEFAULT_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine neighbours of every row, self first; returns (cols [I, k] int32, sims [I, k] float32)."""
    n_items = features.shape[0]
    block = max(1, min(block_size, n_items))
    xhat = jnp.asarray(unit_rows(features))
    cols = np.empty((n_items, k), dtype=np.int32)
    sims = np.empty((n_items, k), dtype=np.float32)
    for start in range(0, n_items, block):
        # The jitted block has one fixed shape (one compilation). The last block is shifted left to stay inside
        # the matrix instead of being padded: padded rows would also appear as spurious zero-similarity columns.
        shifted = min(start, n_items - block)
        block_sims, block_cols = _block_topk(xhat, jnp.int32(shifted), k=k, block=block)
        skip = start - shifted
        stop = min(start + block, n_items)
        cols[start:stop] = np.asarray(block_cols)[skip:]
        sims[start:stop] = np.asarray(block_sims)[skip:]
    return cols, sims


def unit_rows(features: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). Norms are accumulated in float64 chunk by chunk so the
    float32 input is never copied whole into float64 (1 GB → 2 GB at Elec scale)."""
    out = np.empty_like(features, dtype=np.float32)
    for s in range(0, features.shape[0], chunk):
        part = features[s:s + chunk].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", part, part))
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        out[s:s + chunk] = part * scale[:, None]
    return out


@functools.partial(jax.jit, static_argnames=("k", "block"))
def _block_topk(xhat: jax.Array, start: jax.Array, *, k: int, block: int) -> tuple[jax.Array, jax.Array]:
    rows = jax.lax.dynamic_slice_in_dim(xhat, start, block, axis=0)
    # HIGHEST: on GPUs the default float32 matmul may use TF32, enough to reorder close neighbours.
    sims = jnp.matmul(rows, xhat.T, precision=jax.lax.Precision.HIGHEST)  # [block, I]
    self_col = start + jnp.arange(block)
    self_sim = jnp.take_along_axis(sims, self_col[:, None], axis=1)
    # +inf on the diagonal puts self first; top_k is stable, so equal similarities keep ascending column order.
    ranked = sims.at[jnp.arange(block), self_col].set(jnp.inf)
    values, cols = jax.lax.top_k(ranked, k)
    values = jnp.where(cols == self_col[:, None], self_sim, values)
    return values, cols


def normalize(cols: np.ndarray, sims: np.ndarray, norm: str) -> np.ndarray:
    """Edge weights from the kept similarities; degrees are row sums over each row's kept entries (float64)."""
    sims64 = sims.astype(np.float64)
    if norm == "none":
        return sims.astype(np.float32)
    deg = sims64.sum(axis=1)
    positive = deg > 0
    if norm == "sym":
        inv_sqrt = np.divide(1.0, np.sqrt(deg, where=positive, out=np.ones_like(deg)), out=np.zeros_like(deg),
                             where=positive)
        return (inv_sqrt[:, None] * sims64 * inv_sqrt[cols]).astype(np.float32)
    if norm == "rw":
        inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=positive)
        return (inv[:, None] * sims64).astype(np.float32)
    raise ValueError(f"unknown kNN normalization {norm!r}; choose one of {', '.join(NORMALIZATIONS)}")


def semantic_neighbours(*knn_cols: np.ndarray) -> np.ndarray:
    """Directed edges (i, j), j ∈ (∩_m N_m(i)) \\ {i}, as an int64 [E, 2] array (SPEC §4.2.2).

    GUME intersects the image and text top-k lists. With more modalities we intersect all of them (an edge needs
    every modality to agree); with one modality every kNN neighbour other than i is kept. Edges are ordered by i,
    then by their rank in the first modality's list.
    """
    if not knn_cols:
        raise ValueError("semantic_neighbours needs at least one modality's kNN columns")
    first = np.asarray(knn_cols[0])
    n_items = first.shape[0]
    keep = first != np.arange(n_items)[:, None]
    for other in knn_cols[1:]:
        other = np.asarray(other)
        if other.shape[0] != n_items:
            raise ValueError(f"kNN column arrays disagree on the item count: {first.shape} vs {other.shape}")
        # [I, k_first, k_other] membership test; I·k² booleans (63k · 100 = 6 MB at Elec scale).
        keep &= (first[:, :, None] == other[:, None, :]).any(axis=2)
    src, rank = np.nonzero(keep)
    return np.stack([src, first[src, rank]], axis=1).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Cache. One .npz per (features, k, normalization, code version). The official code keys its file on k only in
# name (`image_adj_10_True.pt`) and never on the features, so a changed feature file silently reused an old graph.


def cache_key(features: np.ndarray, k: int, norm: str) -> str:
    h = hashlib.sha256()
    h.update(f"{KNN_CODE_VERSION}|k={k}|norm={norm}|dtype={features.dtype.str}|shape={features.shape}|".encode())
    h.update(memoryview(np.ascontiguousarray(features)).cast("B"))
    return h.hexdigest()


def _load(path: Path, key: str, n_items: int, k: int) -> KnnGraph | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            graph = KnnGraph(cols=f["cols"], sims=f["sims"], weights=f["weights"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # unreadable or foreign file: rebuild and overwrite it
    if any(a.shape != (n_items, k) for a in graph):
        return None
    return graph


def _save_atomic(path: Path, key: str, graph: KnnGraph) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: readers (other processes sharing the cache) never see a partial file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.asarray(key), cols=graph.cols, sims=graph.sims, weights=graph.weights)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _check_args(features: np.ndarray, k: int, norm: str) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must be [n_items, dim], got shape {features.shape}")
    if not 1 <= k <= features.shape[0]:
        raise ValueError(f"knn k={k} must be in [1, n_items={features.shape[0]}]")
    if norm not in NORMALIZATIONS:
        raise ValueError(f"unknown kNN normalization {norm!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or inf")
