"""Time and peak memory of the blockwise kNN graph build (lgmrec_jax/graph/knn.py) at Elec scale.

    .venv/bin/python experiments/knn_memory.py                       # 63,001 × 4096 random CNN-like features
    .venv/bin/python experiments/knn_memory.py --dim 384             # the text modality's width
    .venv/bin/python experiments/knn_memory.py --features image_feat.npy

Peak memory is the process's resident high-water mark (`resource.getrusage(RUSAGE_SELF).ru_maxrss`), so it
includes the Python/JAX runtime and the feature matrix itself, not only the build. Features are drawn chunk by chunk
in float32 so that generating them does not raise the peak above what the build needs. No cache is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import jax
import numpy as np

from lgmrec_jax.graph import knn


def random_features(n_items: int, dim: int, seed: int, chunk: int = 4096) -> np.ndarray:
    """Non-negative like CNN activations (the image features are post-ReLU), float32."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_items, dim), dtype=np.float32)
    for s in range(0, n_items, chunk):
        out[s:s + chunk] = np.abs(rng.standard_normal((min(chunk, n_items - s), dim), dtype=np.float32))
    return out


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=63_001)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--features", help=".npy feature matrix to use instead of random features (memory-mapped)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--block", type=int, default=knn.DEFAULT_BLOCK)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.features:
        feats = np.load(args.features, mmap_mode="r")
    else:
        feats = random_features(args.items, args.dim, args.seed)
    rss_features = peak_rss_gib()
    t0 = time.perf_counter()
    graph = knn.knn_graph(feats, args.k, "sym", block_size=args.block)
    seconds = time.perf_counter() - t0
    assert (graph.cols[:, 0] == np.arange(len(feats))).all() and np.isfinite(graph.weights).all()
    print(json.dumps({
        "items": int(feats.shape[0]), "dim": int(feats.shape[1]), "k": args.k, "block": args.block,
        "seconds": round(seconds, 1), "peak_rss_gib": round(peak_rss_gib(), 2),
        "peak_rss_gib_after_features": round(rss_features, 2),
        "device": str(jax.devices()[0]), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
