"""Loader for the MMRec on-disk format (SPEC §1.1), with errors that name the file and line at fault.

A dataset directory `data/<name>/` holds `<name>.inter` (TSV with at least the columns userID, itemID, x_label;
x_label 0/1/2 = train/valid/test) and one `<modality>_feat.npy` per item modality (rows = items).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lgmrec_jax.data.dataset import Dataset

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
# image and text first (the order the models' configs and the papers use), any further modality after them.
PREFERRED_MODALITY_ORDER = ("image", "text")


class DataError(ValueError):
    """A dataset file is malformed; the message names the file (and line) at fault."""


def load_mmrec(directory: str | Path, name: str | None = None, modalities: tuple[str, ...] | None = None) -> Dataset:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: dataset directory does not exist")
    name = name or directory.name
    inter_path = directory / f"{name}.inter"
    if not inter_path.exists():
        found = sorted(p.name for p in directory.glob("*.inter"))
        raise DataError(f"{inter_path}: interaction file missing" + (f" (found {found})" if found else ""))
    users, items, labels = read_inter(inter_path)
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    features = read_features(directory, n_items, modalities)

    pairs = np.stack([users, items], axis=1).astype(np.int32)
    train = pairs[labels == 0]
    train_users = np.zeros(n_users, dtype=bool)
    train_users[train[:, 0]] = True
    splits = {"train": train}
    for label, split in ((1, "valid"), (2, "test")):
        rows = pairs[labels == label]
        # MMRec drops evaluation rows of users without any training interaction (filter_out_cod_start_users).
        splits[split] = rows[train_users[rows[:, 0]]]
    for split, rows in splits.items():
        if len(rows) == 0:
            raise DataError(f"{inter_path}: the {split} split is empty (x_label {('train', 'valid', 'test').index(split)})")
    return Dataset(name=name, n_users=n_users, n_items=n_items, features=features, **splits)


def read_inter(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parses a `.inter` TSV into (users, items, x_label) int arrays, checking every line."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)}; found {header}")
        cols = [header.index(c) for c in REQUIRED_COLUMNS]
        width = len(header)
        out = []
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != width:
                raise DataError(f"{path}:{lineno}: expected {width} tab-separated fields, found {len(fields)}")
            try:
                u, i, x = (int(fields[c]) for c in cols)
            except ValueError:
                raise DataError(f"{path}:{lineno}: userID, itemID and x_label must be integers, "
                                f"got {[fields[c] for c in cols]}") from None
            if u < 0 or i < 0:
                raise DataError(f"{path}:{lineno}: negative id ({u}, {i})")
            if x not in (0, 1, 2):
                raise DataError(f"{path}:{lineno}: x_label must be 0 (train), 1 (valid) or 2 (test), got {x}")
            out.append((u, i, x))
    if not out:
        raise DataError(f"{path}: no interactions")
    arr = np.asarray(out, dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def read_features(directory: Path, n_items: int, modalities: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    available = {p.name[: -len("_feat.npy")]: p for p in directory.glob("*_feat.npy")}
    if modalities is None:
        modalities = tuple(m for m in PREFERRED_MODALITY_ORDER if m in available) + tuple(
            sorted(m for m in available if m not in PREFERRED_MODALITY_ORDER))
    features = {}
    for modality in modalities:
        if modality not in available:
            raise DataError(f"{directory / (modality + '_feat.npy')}: feature file missing "
                            f"(found {sorted(available) or 'none'})")
        features[modality] = read_feature_file(available[modality], n_items)
    return features


def read_feature_file(path: Path, n_items: int) -> np.ndarray:
    try:
        feats = np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays need pickle, which we never allow
        raise DataError(f"{path}: not a plain numeric .npy array ({e})") from None
    if feats.ndim != 2:
        raise DataError(f"{path}: features must be 2-d [n_items, dim], got shape {feats.shape}")
    if not np.issubdtype(feats.dtype, np.number):
        raise DataError(f"{path}: features must be numeric, got dtype {feats.dtype}")
    if feats.shape[0] != n_items:
        raise DataError(f"{path}: {feats.shape[0]} feature rows but the .inter file has {n_items} items "
                        f"(max itemID + 1)")
    bad = ~np.isfinite(feats)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: {int(bad.sum())} non-finite values (NaN/inf), first at row {row}, column {col}")
    return np.ascontiguousarray(feats, dtype=np.float32)
