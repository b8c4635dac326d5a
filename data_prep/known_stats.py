"""Published sizes of the MMRec Amazon datasets (SPEC §1.2) and validation of prepared folders.

Counts are over the whole `.inter` file (all splits). Split sizes come from the LGMRec logs; the
MMRec split rule (split.py) makes them a pure function of the per-user counts, so a correct rebuild
reproduces them exactly. Elec has no logged split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgmrec_jax.data import mmrec
from lgmrec_jax.data.mmrec import DataError
from lgmrec_jax.errors import InputError


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
# The .inter file and the features are read and audited by the trainer's own loader functions
# (lgmrec_jax/data/mmrec.py), so both refuse the same things with the same line numbers and report
# the same repairs; on top of them this compares with the published statistics and the manifest.


def _expect(path: Path, what: str, expected, found) -> None:
    if expected != found:
        raise DataError(f"{path}: {what}: expected {expected:,}, found {found:,}" if isinstance(expected, int)
                        else f"{path}: {what}: expected {expected}, found {found}")


def validate_prepared(path: str | Path, name: str | None = None, *, check_known: bool = True,
                      known_as: str | None = None) -> dict:
    """Check a prepared MMRec folder; return a summary dict, raise DataError (a ValueError) naming the bad file.

    Checks, exactly as the trainer loads the folder (mmrec.read_inter_file / audit_interactions /
    read_feature_file): `.inter` header and integer ids on every line, ids >= 0, x_label in {0,1,2},
    non-empty splits; each `*_feat.npy` loads without pickle, is 2-D, numeric, finite and has one row
    per item. What the loader merges or drops (duplicate rows, valid/test rows of users without
    training rows) is reported under "load_report", with the notes the trainer prints under "notes".
    For a known dataset (baby, sports, clothing, elec) the counts (rows of the file), split sizes and
    the published feature widths are compared with SPEC §1.2; the width check is skipped for a
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
        raise DataError(f"{folder}: not a directory")
    inters = sorted(folder.glob("*.inter"))
    if name is None:
        if len(inters) != 1:
            raise DataError(f"{folder}: expected exactly one .inter file, found {[p.name for p in inters]}")
        inter_path = inters[0]
        name = inter_path.stem
    else:
        inter_path = folder / f"{name}.inter"
        if not inter_path.is_file():
            raise DataError(f"{inter_path}: missing")
    inter = mmrec.read_inter_file(inter_path)
    _, n_users, n_items, load_report = mmrec.audit_interactions(inter)
    splits = tuple(int(c) for c in np.bincount(inter.labels, minlength=3))

    manifest = None
    if (folder / manifest_lib.MANIFEST_NAME).is_file():
        try:
            manifest_lib.verify_manifest(folder)
            manifest = manifest_lib.read_manifest(folder)
        except InputError:
            raise  # already names the manifest
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{folder / manifest_lib.MANIFEST_NAME}: {err}") from None
    encoders = (manifest or {}).get("encoders", {})

    features = {}
    for feat_path in sorted(folder.glob("*_feat.npy")):
        modality = feat_path.name[: -len("_feat.npy")]
        arr = mmrec.read_feature_file(feat_path, n_items)
        features[modality] = {"shape": list(arr.shape), "dtype": str(np.load(feat_path, mmap_mode="r").dtype)}
        del arr

    known = KNOWN.get((known_as or name).lower()) if check_known else None
    if known is not None:
        _expect(inter_path, "users", known.users, n_users)
        _expect(inter_path, "items", known.items, n_items)
        _expect(inter_path, "interactions", known.interactions, len(inter.users))
        if known.splits is not None:
            _expect(inter_path, "train/valid/test rows", known.splits, splits)
        for modality, width in PUBLISHED_FEATURE_DIMS.items():
            feat_path = folder / f"{modality}_feat.npy"
            if modality not in features:
                raise DataError(f"{feat_path}: missing (the published {name} has {modality} features)")
            encoder = encoders.get(modality, {}).get("name")
            if encoder is None or encoder == PUBLISHED_ENCODERS[modality]:
                _expect(feat_path, "feature width", width, features[modality]["shape"][1])
    return {
        "path": str(folder), "name": name, "users": n_users, "items": n_items,
        "interactions": int(len(inter.users)), "splits": dict(zip(("train", "valid", "test"), splits)),
        "features": features, "known_dataset": known is not None,
        "manifest_verified": manifest is not None,
        "encoders": {m: e.get("name") for m, e in encoders.items()},
        "load_report": load_report, "notes": mmrec.report_lines(load_report),
    }
