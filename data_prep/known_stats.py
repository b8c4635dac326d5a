"""Published sizes of the MMRec Amazon datasets (SPEC §1.2) and validation of prepared folders.

Counts are over the whole `.inter` file (all splits). Split sizes come from the LGMRec logs; the
MMRec split rule (split.py) makes them a pure function of the per-user counts, so a correct rebuild
reproduces them exactly. Elec has no logged split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class KnownStats:
    category: str          # Amazon 2014 category name as in the raw file names
    users: int
    items: int
    interactions: int
    splits: tuple[int, int, int] | None  # train, valid, test rows


KNOWN: dict[str, KnownStats] = {
    "baby": KnownStats("Baby", 19_445, 7_050, 160_792, (118_551, 20_559, 21_682)),
    "sports": KnownStats("Sports_and_Outdoors", 35_598, 18_357, 296_337, (218_409, 37_899, 40_029)),
    "clothing": KnownStats("Clothing_Shoes_and_Jewelry", 39_387, 23_033, 278_677, (197_338, 40_150, 41_189)),
    "elec": KnownStats("Electronics", 192_403, 63_001, 1_689_188, None),
}

# Feature widths of the published files and the encoders that produce them.
PUBLISHED_FEATURE_DIMS = {"image": 4096, "text": 384}
PUBLISHED_ENCODERS = {
    "image": "mcauley-image-features",
    "text": "sentence-transformers/all-MiniLM-L6-v2",
}


def category_for(name: str) -> str | None:
    """Raw-file category for a short dataset name (`baby` -> `Baby`), None if not a known one."""
    known = KNOWN.get(name.lower())
    return known.category if known else None


def short_name_for(category: str) -> str:
    """Dataset name for a raw category (`Sports_and_Outdoors` -> `sports`; unknown -> lowercased)."""
    for short, known in KNOWN.items():
        if known.category.lower() == category.lower() or short == category.lower():
            return short
    return category.lower()


# --------------------------------------------------------------------------------------------
# Validation of an already-prepared MMRec folder (ours, or one downloaded from the MMRec authors).

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")


def read_inter_table(path: Path) -> dict[str, np.ndarray]:
    """All columns of a `.inter` TSV as arrays (ids/x_label int64, others float64)."""
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}:1: header lacks column(s) {missing}; found {header}")
    try:
        table = np.loadtxt(path, delimiter="\t", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as err:
        # numpy's message names the row and column; add the file (row counts from after the header).
        raise ValueError(f"{path}: {err}") from None
    if table.shape[0] == 0:
        raise ValueError(f"{path}: no interactions")
    if table.shape[1] != len(header):
        raise ValueError(f"{path}: {table.shape[1]} columns per row but the header names {len(header)}")
    columns = {}
    for k, col in enumerate(header):
        values = table[:, k]
        if col in REQUIRED_COLUMNS or col == "timestamp":
            if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
                row = int(np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))[0])
                raise ValueError(f"{path}:{row + 2}: {col} must be an integer, found {values[row]!r}")
            values = values.astype(np.int64)
        columns[col] = values
    return columns


def _expect(path: Path, what: str, expected, found) -> None:
    if expected != found:
        raise ValueError(f"{path}: {what}: expected {expected:,}, found {found:,}" if isinstance(expected, int)
                         else f"{path}: {what}: expected {expected}, found {found}")


def validate_prepared(path: str | Path, name: str | None = None, *, check_known: bool = True,
                      known_as: str | None = None) -> dict:
    """Check a prepared MMRec folder; return a summary dict, raise ValueError naming the bad file.

    Checks: `.inter` header and integer ids, ids >= 0 and contiguous, x_label in {0,1,2}, every
    user in train; each `*_feat.npy` loads without pickle, is 2-D, numeric, finite and has one row
    per item. For a known dataset (baby, sports, clothing, elec) the counts, split sizes and the
    published feature widths are compared with SPEC §1.2; the width check is skipped for a
    modality whose manifest records a different encoder (e.g. the hashing text fallback).
    If a manifest.json is present its hashes are verified too.

    Args:
      path: the folder. name: dataset name (default: the stem of its single `.inter` file).
      check_known: compare with the published statistics when the dataset is a known one.
      known_as: which known dataset to compare with (default: `name`), for renamed folders.
    """
    from data_prep import manifest as manifest_lib  # local: manifest imports nothing from here

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a directory")
    inters = sorted(folder.glob("*.inter"))
    if name is None:
        if len(inters) != 1:
            raise ValueError(f"{folder}: expected exactly one .inter file, found {[p.name for p in inters]}")
        inter_path = inters[0]
        name = inter_path.stem
    else:
        inter_path = folder / f"{name}.inter"
        if not inter_path.is_file():
            raise ValueError(f"{inter_path}: missing")
    cols = read_inter_table(inter_path)
    users, items, x_label = cols["userID"], cols["itemID"], cols["x_label"]
    for col, ids in (("userID", users), ("itemID", items)):
        if ids.min() < 0:
            raise ValueError(f"{inter_path}: {col} must be >= 0, found {ids.min()}")
        missing = np.flatnonzero(np.bincount(ids) == 0)
        if missing.size:
            raise ValueError(f"{inter_path}: {col} not contiguous: {missing.size} id(s) below the max never "
                             f"occur (first {missing[0]})")
    bad = ~np.isin(x_label, (0, 1, 2))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{inter_path}:{row + 2}: x_label must be 0, 1 or 2, found {x_label[row]}")
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    splits = tuple(int(c) for c in np.bincount(x_label, minlength=3))
    no_train = np.setdiff1d(np.arange(n_users), users[x_label == 0])
    if no_train.size:
        raise ValueError(f"{inter_path}: {no_train.size} user(s) have no training interaction (first {no_train[0]})")

    manifest = None
    if (folder / manifest_lib.MANIFEST_NAME).is_file():
        manifest_lib.verify_manifest(folder)
        manifest = manifest_lib.read_manifest(folder)
    encoders = (manifest or {}).get("encoders", {})

    features = {}
    for feat_path in sorted(folder.glob("*_feat.npy")):
        modality = feat_path.name[: -len("_feat.npy")]
        try:
            arr = np.load(feat_path, allow_pickle=False, mmap_mode="r")
        except ValueError as err:
            raise ValueError(f"{feat_path}: not a plain numeric .npy array ({err})") from None
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{feat_path}: expected a 2-D numeric array, found shape {arr.shape} dtype {arr.dtype}")
        _expect(feat_path, "rows (one per item)", n_items, int(arr.shape[0]))
        finite = np.isfinite(arr)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            raise ValueError(f"{feat_path}: {int((~finite).sum())} NaN/inf values, first at row {row}, column {col}")
        features[modality] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}

    known = KNOWN.get((known_as or name).lower()) if check_known else None
    if known is not None:
        _expect(inter_path, "users", known.users, n_users)
        _expect(inter_path, "items", known.items, n_items)
        _expect(inter_path, "interactions", known.interactions, len(users))
        if known.splits is not None:
            _expect(inter_path, "train/valid/test rows", known.splits, splits)
        for modality, width in PUBLISHED_FEATURE_DIMS.items():
            feat_path = folder / f"{modality}_feat.npy"
            if modality not in features:
                raise ValueError(f"{feat_path}: missing (the published {name} has {modality} features)")
            encoder = encoders.get(modality, {}).get("name")
            if encoder is None or encoder == PUBLISHED_ENCODERS[modality]:
                _expect(feat_path, "feature width", width, features[modality]["shape"][1])
    return {
        "path": str(folder), "name": name, "users": n_users, "items": n_items,
        "interactions": int(len(users)), "splits": dict(zip(("train", "valid", "test"), splits)),
        "features": features, "known_dataset": known is not None,
        "manifest_verified": manifest is not None,
        "encoders": {m: e.get("name") for m, e in encoders.items()},
    }
