"""Loader for the MMRec on-disk format (SPEC §1.1), with errors that name the file and line at fault.

A dataset directory `data/<name>/` holds `<name>.inter` (TSV with at least the columns userID, itemID, x_label;
x_label 0/1/2 = train/valid/test) and one `<modality>_feat.npy` per item modality (rows = items).

The trainer and the folder validator (`python -m data_prep NAME`, data_prep/known_stats.py) read a folder through
the same three functions, so they refuse the same things with the same line numbers (line 1 is the header) and
report the same repairs:
  read_inter_file    parses every line (malformed line → DataError naming file:line)
  audit_interactions merges exact duplicate rows, drops valid/test rows of users without training rows (as MMRec
                     does), counts what it merged, dropped or noticed → a report (dict of counts, JSON-ready)
  read_feature_file  checks one feature matrix
The report travels with the Dataset (`Dataset.load_report`); the trainer prints it and stores it in results.json.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np

from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.errors import InputError

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
SPLITS = ("train", "valid", "test")  # x_label 0, 1, 2
# image and text first (the order the models' configs and the papers use), any further modality after them.
PREFERRED_MODALITY_ORDER = ("image", "text")
MAX_ID = 2**31 - 2  # ids are stored as int32 on device, and so is the count max id + 1


def max_unused_ids(distinct: int) -> int:
    """n = max id + 1 (as MMRec): an id far above the number of distinct ids would create millions of empty users
    or items (and embedding tables to match) out of one typo, so more unused ids than this are refused, naming the
    line. Dense ids never come near it."""
    return 10 * distinct + 1000


class DataError(InputError):
    """A dataset file is malformed; the message names the file (and line) at fault."""


@dataclasses.dataclass(frozen=True)
class InterFile:
    """The rows of a `.inter` file as written, with the line each came from (the header is line 1)."""

    path: Path
    users: np.ndarray  # int64
    items: np.ndarray
    labels: np.ndarray
    lines: np.ndarray
    columns: dict[str, np.ndarray]  # further numeric columns asked for (e.g. rating, timestamp), float64
    blank_lines: int


def load_mmrec(directory: str | Path, name: str | None = None, modalities: tuple[str, ...] | None = None) -> Dataset:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: dataset directory does not exist")
    name = name or directory.name
    inter_path = directory / f"{name}.inter"
    if not inter_path.is_file():
        found = sorted(p.name for p in directory.glob("*.inter"))
        raise DataError(f"{inter_path}: interaction file missing" + (f" (found {found})" if found else ""))
    inter = read_inter_file(inter_path)
    splits, n_users, n_items, report = audit_interactions(inter)
    features = read_features(directory, n_items, modalities)
    return Dataset(name=name, n_users=n_users, n_items=n_items, features=features, load_report=report,
                   **{split: pairs.astype(np.int32) for split, pairs in splits.items()})


def read_inter(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, x_label) int arrays of a `.inter` file, every line checked."""
    inter = read_inter_file(path)
    return inter.users, inter.items, inter.labels


def read_inter_file(path: Path, extra_columns: tuple[str, ...] = ()) -> InterFile:
    """Parses a `.inter` TSV, checking every line; `extra_columns` present in the header are read as numbers."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected the tab-separated interaction file")
    users, items, labels, lines, extra_rows = [], [], [], [], []
    blank = 0
    with open(path, "rb") as f:
        header = _decode(f.readline(), path, 1).rstrip("\r\n").split("\t")
        if header == [""]:
            raise DataError(f"{path}: empty file; expected a header line with the columns "
                            f"{', '.join(REQUIRED_COLUMNS)} (tab-separated), then one interaction per line")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)}; found {header}")
        cols = [header.index(c) for c in REQUIRED_COLUMNS]
        extra = [(c, header.index(c)) for c in extra_columns if c in header]
        width = len(header)
        for lineno, raw in enumerate(f, start=2):
            line = _decode(raw, path, lineno).rstrip("\r\n")
            if not line.strip():
                blank += 1
                continue
            fields = line.split("\t")
            if len(fields) != width:
                raise DataError(f"{path}:{lineno}: expected {width} tab-separated fields, found {len(fields)}")
            u, i, x = (parse_id(fields[c]) for c in cols)
            if u is None or i is None or x is None:
                raise DataError(_bad_id_message(path, lineno, [fields[c] for c in cols]))
            if u > MAX_ID or i > MAX_ID:
                raise DataError(f"{path}:{lineno}: id ({u}, {i}) above {MAX_ID}; ids must be 0-based and dense")
            if x not in (0, 1, 2):
                raise DataError(f"{path}:{lineno}: x_label must be 0 (train), 1 (valid) or 2 (test), got {x}")
            if extra:
                values = [parse_number(fields[k]) for _, k in extra]
                if None not in values:
                    extra_rows.append(values)
                else:
                    raise DataError(f"{path}:{lineno}: {', '.join(c for c, _ in extra)} must be numbers, "
                                    f"got {[fields[k] for _, k in extra]}") from None
            users.append(u)
            items.append(i)
            labels.append(x)
            lines.append(lineno)
    if not users:
        raise DataError(f"{path}: no interactions (only a header)")
    table = np.asarray(extra_rows, dtype=np.float64).reshape(len(users), len(extra))
    return InterFile(path=path, users=np.asarray(users, np.int64), items=np.asarray(items, np.int64),
                     labels=np.asarray(labels, np.int64), lines=np.asarray(lines, np.int64),
                     columns={c: table[:, k] for k, (c, _) in enumerate(extra)}, blank_lines=blank)


def parse_id(text: str) -> int | None:
    """A non-negative id written with ASCII digits only, else None. Python's int() would also take '+4', ' 4',
    '1_0' and other scripts' digits, silently reading something else than what the file says."""
    if not (0 < len(text) <= 12 and text.isascii() and text.isdigit()):
        return None
    return int(text)


def _bad_id_message(path: Path, lineno: int, texts: list[str]) -> str:
    column, text = next((c, t) for c, t in zip(REQUIRED_COLUMNS, texts) if parse_id(t) is None)
    if text.startswith("-") and parse_id(text[1:]) is not None:
        return f"{path}:{lineno}: negative id ({column} {text})"
    return (f"{path}:{lineno}: userID, itemID and x_label must be integers written with the digits 0-9 only (no "
            f"sign, space, '_' or other digits); {column} is {text!r}")


_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def parse_number(text: str) -> float | None:
    """A finite decimal number in plain notation (no nan, inf, '_' or spaces), else None."""
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {e.start} of the line)") from None


def audit_interactions(inter: InterFile) -> tuple[dict[str, np.ndarray], int, int, dict]:
    """({split: [n, 2] int64 (user, item)}, n_users, n_items, report) after MMRec's repairs, each one counted.

    * a row repeating an earlier row's (user, item, x_label) is merged into it (counted twice it would weigh a
      pair double in sampling and in the graph);
    * valid/test rows of users without any training row are dropped (MMRec's filter_out_cod_start_users);
    * valid/test rows repeating a training pair are kept (as MMRec) but counted: training items are excluded from
      the ranking, so they can never be hit;
    * ids below the maximum that never occur are counted (n = max id + 1, as MMRec: they become users/items
      without interactions).
    An empty split is an error.
    """
    path, users, items, labels, lines = inter.path, inter.users, inter.items, inter.labels, inter.lines
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    for column, what, ids, n in (("userID", "users", users, n_users), ("itemID", "items", items, n_items)):
        distinct = len(np.unique(ids))
        if n - distinct > max_unused_ids(distinct):
            line = int(lines[np.argmax(ids)])
            raise DataError(f"{path}:{line}: {column} {n - 1} would make {n} {what} out of {distinct} distinct ids "
                            "(n = max id + 1, as MMRec); ids must be 0-based and dense, renumber them")
    report: dict = {"file": str(path), "rows": int(len(users)), "blank_lines": inter.blank_lines}

    order = np.lexsort((labels, items, users))  # stable: within equal rows, file order
    same = (np.diff(users[order]) == 0) & (np.diff(items[order]) == 0) & (np.diff(labels[order]) == 0)
    repeat = np.r_[False, same]
    keep = np.ones(len(users), dtype=bool)
    keep[order[repeat]] = False
    report["merged_duplicate_rows"] = int(repeat.sum())
    if repeat.any():
        # The repeated row nearest the top of the file, and the first row of its group (stable sort: file order).
        group_start = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(order))))
        positions = np.flatnonzero(repeat)
        pos = positions[np.argmin(lines[order[positions]])]
        report["first_duplicate"] = {"line": int(lines[order[pos]]),
                                     "repeats_line": int(lines[order[group_start[pos]]])}

    train_users = np.zeros(n_users, dtype=bool)
    train_users[users[keep & (labels == 0)]] = True
    train_pairs = np.unique(users[keep & (labels == 0)] * n_items + items[keep & (labels == 0)])
    splits, dropped, repeated = {}, {}, {}
    for label, split in enumerate(SPLITS):
        rows = keep & (labels == label)
        if label:
            cold = rows & ~train_users[users]
            dropped[split] = int(cold.sum())
            if cold.any() and "first_dropped_line" not in report:
                report["first_dropped_line"] = int(lines[np.flatnonzero(cold)[0]])
            rows &= train_users[users]
            repeated[split] = int(np.isin(users[rows] * n_items + items[rows], train_pairs).sum())
        splits[split] = np.stack([users[rows], items[rows]], axis=1)
    report["dropped_rows_of_users_without_training"] = dropped
    report["users_without_training"] = int(len(np.setdiff1d(np.unique(users), np.flatnonzero(train_users))))
    report["eval_rows_repeating_a_training_pair"] = repeated
    report["unused_ids"] = {"users": int(n_users - len(np.unique(users))),
                            "items": int(n_items - len(np.unique(items)))}
    for label, split in enumerate(SPLITS):
        if len(splits[split]) == 0:
            why = (" after dropping the rows of users without training rows" if label and dropped[split] else "")
            raise DataError(f"{path}: the {split} split is empty{why} (x_label {label})")
    _check_negatives_exist(path, splits["train"], lines[keep & (labels == 0)])
    return splits, n_users, n_items, report


def _check_negatives_exist(path: Path, train: np.ndarray, lines: np.ndarray) -> None:
    """BPR needs, for every user, a training item the user has not interacted with (the sampler draws from them)."""
    items = np.unique(train[:, 1])
    if len(items) < 2:
        raise DataError(f"{path}: only {len(items)} distinct item(s) in the training split; BPR needs at least 2")
    pairs = np.unique(train, axis=0)
    per_user = np.bincount(pairs[:, 0])
    full = np.flatnonzero(per_user >= len(items))
    if full.size:
        first = int(lines[np.flatnonzero(train[:, 0] == full[0])[0]])
        raise DataError(f"{path}:{first}: user {int(full[0])} has interacted with all {len(items)} training items, so "
                        "no negative item can be sampled for BPR; drop the user or add items")


def report_lines(report: dict) -> list[str]:
    """Human-readable notes for the counts of `audit_interactions` that are not zero."""
    if not report:
        return []
    name, notes = Path(report["file"]).name, []
    if report["merged_duplicate_rows"]:
        first = report["first_duplicate"]
        notes.append(f"{name}: merged {report['merged_duplicate_rows']} duplicated row(s) (same userID, itemID and "
                     f"x_label; first: line {first['line']} repeats line {first['repeats_line']})")
    dropped = report["dropped_rows_of_users_without_training"]
    if any(dropped.values()):
        notes.append(f"{name}: dropped {dropped['valid']} valid and {dropped['test']} test row(s) of "
                     f"{report['users_without_training']} user(s) without training rows, as MMRec does (first: "
                     f"line {report['first_dropped_line']})")
    repeated = report["eval_rows_repeating_a_training_pair"]
    if any(repeated.values()):
        notes.append(f"{name}: {repeated['valid']} valid and {repeated['test']} test row(s) repeat a training "
                     "(user, item) pair; kept, as MMRec, but training items are excluded from the ranking, so "
                     "they can never be hit")
    unused = report["unused_ids"]
    if unused["users"] or unused["items"]:
        notes.append(f"{name}: {unused['users']} user id(s) and {unused['items']} item id(s) below the maximum never "
                     "occur; they count as users/items without interactions (n = max id + 1, as MMRec)")
    if report["blank_lines"]:
        notes.append(f"{name}: skipped {report['blank_lines']} blank line(s)")
    return notes


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
    """A [n_items, dim] float32 matrix from a plain .npy file; anything else is a DataError naming the file.

    The header is read first, so a file declaring more rows or bytes than it holds is refused before any memory is
    reserved for it; values are checked after the conversion to float32 (the training dtype), so a float64 value
    beyond float32's range is named here rather than overflowing in training."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .npy array of shape [n_items, dim]")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty file (0 bytes), expected a .npy array of shape [n_items, dim]")
    _check_npy_header(path, size, n_items)
    try:
        feats = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # object arrays need pickle, which we never allow
        raise DataError(f"{path}: not a plain numeric .npy array ({e})") from None
    if not isinstance(feats, np.ndarray):
        feats.close()
        raise DataError(f"{path}: an .npz archive, expected a single .npy array of shape [n_items, dim]")
    _check_feature_shape(path, feats.shape, feats.dtype, n_items)
    with np.errstate(over="ignore", invalid="ignore"):
        table = np.ascontiguousarray(feats, dtype=np.float32)
    bad = ~np.isfinite(table)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        beyond = " or beyond float32's range (|x| > 3.4e38)" if np.isfinite(feats[row, col]) else ""
        raise DataError(f"{path}: {int(bad.sum())} non-finite values (NaN/inf{beyond}), first at row {row}, "
                        f"column {col}")
    return table


def _check_feature_shape(path: Path, shape: tuple, dtype: np.dtype, n_items: int) -> None:
    if len(shape) != 2:
        raise DataError(f"{path}: features must be 2-d [n_items, dim], got shape {shape}")
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise DataError(f"{path}: features must be real numbers, got dtype {dtype}")
    if shape[0] != n_items:
        raise DataError(f"{path}: {shape[0]} feature rows but the .inter file has {n_items} items "
                        f"(max itemID + 1)")
    if shape[1] == 0:
        raise DataError(f"{path}: features have 0 columns")


def _check_npy_header(path: Path, size: int, n_items: int) -> None:
    """Shape and dtype from the .npy header, checked against the item count and the file's size."""
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":  # the zip signature
                raise DataError(f"{path}: an .npz archive, expected a single .npy array of shape [n_items, dim]")
            f.seek(0)
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise DataError(f"{path}: not a plain numeric .npy array ({e})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: not a plain numeric .npy array (it holds Python objects, which are never unpickled)")
    _check_feature_shape(path, shape, dtype, n_items)
    expected = offset + math.prod(shape) * dtype.itemsize
    if size < expected:
        raise DataError(f"{path}: the header declares shape {shape} ({expected} bytes) but the file has only "
                        f"{size} bytes; it is truncated or damaged")
