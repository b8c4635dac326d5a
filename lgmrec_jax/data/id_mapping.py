"""The dataset's own user and item ids, beside the dense 0-based ids the loader and the models use.

data_prep writes, next to `<name>.inter`, one mapping per kind (as MMRec's prepared folders do):

    u_id_mapping.csv    tab-separated, header `<original column>\tuserID`, one line per user: original id, dense id
    i_id_mapping.csv    the same for items, header `<original column>\titemID`

(ml100k: the MovieLens ids, here dense id + 1 since MovieLens numbers from 1 without gaps; Amazon: reviewer ids
and ASINs.) `recommend` and `export` speak
these ids by default. A folder without a mapping (synthetic data, a folder built before mappings existed) has no
other ids than the dense ones, and the commands say so. Training never reads the mappings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from lgmrec_jax.data.mmrec import DataError, parse_id

FILES = {"user": "u_id_mapping.csv", "item": "i_id_mapping.csv"}
DENSE_COLUMNS = {"user": "userID", "item": "itemID"}


@dataclasses.dataclass(frozen=True)
class IdMapping:
    """Original ids of one kind: `original[i]` is the dataset's id of dense id i."""

    kind: str  # "user" or "item"
    original: tuple[str, ...]
    path: Path

    def dense_of(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.original)}


def write_mapping(path: Path, kind: str, column: str, original: Sequence[str]) -> None:
    """Writes a mapping file (into data_prep's build folder, which is renamed into place as a whole)."""
    check_original_ids(kind, column, original)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"{column}\t{DENSE_COLUMNS[kind]}\n")
        f.writelines(f"{name}\t{i}\n" for i, name in enumerate(original))


def check_original_ids(kind: str, column: str, original: Sequence[str]) -> None:
    if not column or any(c in column for c in "\t\r\n") or column == DENSE_COLUMNS[kind]:
        raise ValueError(f"{kind} id column name {column!r}: must be a plain name other than {DENSE_COLUMNS[kind]}")
    bad = next((name for name in original if not name or any(c in name for c in "\t\r\n")), None)
    if bad is not None:
        raise ValueError(f"{kind} id {bad!r}: original ids must be non-empty and hold no tab or line break")
    if len(set(original)) != len(original):
        raise ValueError(f"{kind} ids: the original ids are not unique")


def read_mapping(folder: Path, kind: str, n: int) -> IdMapping | None:
    """The mapping of `kind` in a dataset folder (None when the folder has none); every dense id 0..n-1 must
    appear exactly once and every original id once. Errors name the file and line."""
    path = Path(folder) / FILES[kind]
    if not path.is_file():
        return None
    dense = DENSE_COLUMNS[kind]
    original: list[str | None] = [None] * n
    seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline().rstrip("\r\n").split("\t")
            if len(header) != 2 or dense not in header:
                raise DataError(f"{path}:1: expected a header of two tab-separated columns, one of them {dense}; "
                                f"found {header}")
            column = header.index(dense)
            for lineno, line in enumerate(f, start=2):
                fields = line.rstrip("\r\n").split("\t")
                if fields == [""]:
                    continue
                if len(fields) != 2:
                    raise DataError(f"{path}:{lineno}: expected 2 tab-separated fields, found {len(fields)}")
                i, name = parse_id(fields[column]), fields[1 - column]
                if i is None or i >= n:
                    raise DataError(f"{path}:{lineno}: {dense} {fields[column]!r} is not one of 0..{n - 1}")
                if not name:
                    raise DataError(f"{path}:{lineno}: empty original id")
                if original[i] is not None or name in seen:
                    raise DataError(f"{path}:{lineno}: {dense} {i} or id {name!r} appears twice")
                original[i], seen[name] = name, i
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    missing = [i for i, name in enumerate(original) if name is None]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{path}: no line for {dense} {missing[0]}{more}; the mapping must cover the dataset's {n} "
                        f"{kind}s")
    return IdMapping(kind, tuple(original), path)
