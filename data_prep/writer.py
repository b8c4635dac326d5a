"""Atomic writer of an MMRec dataset folder, shared by every dataset builder.

Layout written (SPEC §1.1):
  <out_dir>/<name>.inter       TSV, header `userID itemID rating timestamp x_label`, 0-based int ids
  <out_dir>/<modality>_feat.npy float32 [n_items, d], row i = item i
  <out_dir>/manifest.json      counts, split sizes, hashes, provenance (manifest.py)
  <out_dir>/u_id_mapping.csv, i_id_mapping.csv   the dataset's own ids of the dense ids, when the builder has
                               them (lgmrec_jax/data/id_mapping.py)

Atomicity: everything is built in a hidden sibling temp folder, then renamed into place. A crash
at any point leaves either the previous complete folder or no folder at `out_dir` - never a
half-written one, which the trainer could otherwise load without noticing.

What may be replaced (the project's write rule, lgmrec_jax/atomic.py): `check_output_folder` refuses an existing
file, and an existing non-empty folder unless `replace` (`--replace` on the command line) is given AND the folder
is one data_prep wrote: its manifest.json lists every other file in it. A folder downloaded from MMRec, or one that
holds anything else of the user's, is never replaced; the check runs before the build starts.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import manifest as manifest_lib
from lgmrec_jax.data import id_mapping
from lgmrec_jax.errors import InputError

INTER_HEADER = ("userID", "itemID", "rating", "timestamp", "x_label")
_MODALITY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_ROWS_PER_CHUNK = 200_000


def _as_int_ids(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: ids must be >= 0, found {int(arr.min())}")
    return arr


def _check_contiguous(name: str, ids: np.ndarray) -> None:
    # MMRec takes n = max id + 1, so a gap would silently create a phantom user/item.
    if ids.size == 0:
        return
    present = np.bincount(ids)
    missing = np.flatnonzero(present == 0)
    if missing.size:
        raise ValueError(
            f"{name}: ids must be contiguous 0..{ids.max()}, "
            f"{missing.size} id(s) never occur (first: {int(missing[0])})"
        )


def validate_inputs(
    *,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    timestamps: np.ndarray,
    x_label: np.ndarray,
    features: dict[str, np.ndarray],
) -> tuple[np.ndarray, ...]:
    """Check every invariant the training loader relies on; return normalised arrays."""
    users = _as_int_ids("users", users)
    items = _as_int_ids("items", items)
    ratings = np.asarray(ratings, dtype=np.float64)
    timestamps = np.asarray(timestamps)
    x_label = np.asarray(x_label)
    lengths = {
        "users": len(users), "items": len(items), "ratings": len(ratings),
        "timestamps": len(timestamps), "x_label": len(x_label),
    }
    if len(set(lengths.values())) != 1:
        raise ValueError(f"interaction columns differ in length: {lengths}")
    if len(users) == 0:
        raise ValueError("no interactions to write")
    if not np.issubdtype(timestamps.dtype, np.integer):
        raise ValueError(f"timestamps: expected integers (unix seconds), got dtype {timestamps.dtype}")
    if not np.all(np.isfinite(ratings)):
        raise ValueError("ratings: contain NaN or inf")
    bad = ~np.isin(x_label, (0, 1, 2))
    if bad.any():
        raise ValueError(
            f"x_label: values must be 0 (train), 1 (valid) or 2 (test); "
            f"found {x_label[bad][0].item()!r} at row {int(np.flatnonzero(bad)[0])}"
        )
    _check_contiguous("users", users)
    _check_contiguous("items", items)

    n_items = int(items.max()) + 1
    clean_features = {}
    for modality, feat in features.items():
        if not _MODALITY_RE.match(modality):
            raise ValueError(f"feature name {modality!r}: use lowercase letters/digits/_ (file is <name>_feat.npy)")
        arr = np.asarray(feat)
        if arr.ndim != 2:
            raise ValueError(f"{modality}_feat: expected 2-D [n_items, d], got shape {arr.shape}")
        if arr.shape[0] != n_items:
            raise ValueError(
                f"{modality}_feat: has {arr.shape[0]} rows but there are {n_items} items (max item id + 1)"
            )
        arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{modality}_feat: contains NaN or inf (after casting to float32)")
        clean_features[modality] = arr
    return users, items, ratings, timestamps.astype(np.int64), x_label.astype(np.int64), clean_features


def _format_rating(r: float) -> str:
    # Keep "5.0" style for whole numbers (what pandas writes), full precision otherwise.
    return repr(float(r))


def write_inter(path: Path, users, items, ratings, timestamps, x_label) -> None:
    """Write the TSV in chunks so million-row datasets do not build one giant string."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(INTER_HEADER) + "\n")
        for start in range(0, len(users), _ROWS_PER_CHUNK):
            stop = start + _ROWS_PER_CHUNK
            rows = zip(
                users[start:stop].tolist(), items[start:stop].tolist(), ratings[start:stop].tolist(),
                timestamps[start:stop].tolist(), x_label[start:stop].tolist(),
            )
            out.write("".join(f"{u}\t{i}\t{_format_rating(r)}\t{t}\t{x}\n" for u, i, r, t, x in rows))
        out.flush()
        os.fsync(out.fileno())


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    # Flush file contents before the rename publishes them (a power cut must not expose empty files).
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    # Make the renames durable; harmless where directories cannot be opened (non-POSIX).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def foreign_files(folder: Path) -> list[str] | None:
    """Names in `folder` that its manifest.json does not list (so data_prep did not write them); None when the
    folder has no readable data_prep manifest at all."""
    try:
        manifest = manifest_lib.read_manifest(folder)
        listed = set(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sorted(p.name for p in folder.iterdir() if p.name != manifest_lib.MANIFEST_NAME and p.name not in listed)


def check_output_folder(out_dir: Path, replace: bool = False, flag: str = "--out") -> None:
    """Refuses, before anything is built, an output folder the build would have to delete (module docstring)."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise InputError(f"{flag} {out_dir}: something that is not a folder is already there; choose another "
                         "output folder (nothing was written)")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    foreign = foreign_files(out_dir)
    if foreign is None:
        raise InputError(f"{flag} {out_dir}: the folder exists and was not written by data_prep (no readable "
                         "manifest.json), e.g. an MMRec download; it is never replaced. Choose another output "
                         "folder, or move it away (nothing was written)")
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InputError(f"{flag} {out_dir}: the folder holds files its manifest.json does not list ({shown}); "
                         "they are not data_prep's to delete. Move them away or choose another output folder "
                         "(nothing was written)")
    if not replace:
        raise InputError(f"{flag} {out_dir}: a dataset built by data_prep is already there; pass --replace to "
                         "rebuild it in place (the old folder is removed only once the new one is complete), or "
                         "choose another output folder (nothing was written)")


def _swap_into_place(tmp_dir: Path, out_dir: Path) -> None:
    """Move the finished tmp_dir to out_dir, replacing an existing folder only at the very end."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        os.rename(tmp_dir, out_dir)  # over an empty folder, rename replaces it
        return
    old_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    old_dir.rmdir()  # only the unique name is wanted; rename needs the target absent
    os.rename(out_dir, old_dir)
    try:
        os.rename(tmp_dir, out_dir)
    except BaseException:
        os.rename(old_dir, out_dir)  # put the previous complete folder back
        raise
    shutil.rmtree(old_dir, ignore_errors=True)


def write_mmrec_dataset(
    out_dir: Path,
    name: str,
    *,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    timestamps: np.ndarray,
    x_label: np.ndarray,
    features: dict[str, np.ndarray],
    provenance: dict[str, Any],
    replace: bool = False,
    original_ids: dict[str, tuple[str, list[str]]] | None = None,
) -> Path:
    """Validate and atomically write an MMRec dataset folder; return its final path.

    Args:
      out_dir: destination folder (e.g. data/baby); an existing one is refused unless `replace` and it is
        data_prep's own output (`check_output_folder`), then replaced as a whole.
      name: dataset name, gives `<name>.inter`.
      users, items: 0-based contiguous integer ids, one per interaction.
      ratings, timestamps, x_label: per-interaction columns; x_label 0/1/2 = train/valid/test.
      features: {modality: [n_items, d] array}, written as `<modality>_feat.npy` in float32.
      provenance: seed, encoders, sources (raw files to hash) and free-form notes for the manifest.
      replace: allow replacing data_prep's own earlier output at `out_dir`.
      original_ids: {"user" | "item": (column name, the dataset's own id of each dense id)}, written as
        u_id_mapping.csv / i_id_mapping.csv so that recommend and export can speak the dataset's ids.
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir, replace)
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"dataset name {name!r}: must be a plain file stem")
    users, items, ratings, timestamps, x_label, features = validate_inputs(
        users=users, items=items, ratings=ratings, timestamps=timestamps, x_label=x_label,
        features=features,
    )
    original_ids = original_ids or {}
    counts = {"user": int(users.max()) + 1, "item": int(items.max()) + 1}
    for kind, (column, names) in original_ids.items():
        id_mapping.check_original_ids(kind, column, names)
        if len(names) != counts[kind]:
            raise ValueError(f"{kind} ids: {len(names)} original ids for {counts[kind]} {kind}s")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        # mkdtemp makes the folder 0700; give the published folder the usual umask-derived mode.
        os.chmod(tmp_dir, 0o777 & ~_current_umask())
        write_inter(tmp_dir / f"{name}.inter", users, items, ratings, timestamps, x_label)
        for kind, (column, names) in sorted(original_ids.items()):
            id_mapping.write_mapping(tmp_dir / id_mapping.FILES[kind], kind, column, names)
            _fsync_file(tmp_dir / id_mapping.FILES[kind])
        for modality, arr in sorted(features.items()):
            np.save(tmp_dir / f"{modality}_feat.npy", arr, allow_pickle=False)
            _fsync_file(tmp_dir / f"{modality}_feat.npy")
        manifest = manifest_lib.build_manifest(
            tmp_dir, name, users=users, items=items, x_label=x_label, features=features,
            provenance=provenance,
        )
        _fsync_file(manifest_lib.write_manifest(tmp_dir, manifest))
        _fsync_dir(tmp_dir)
        check_output_folder(out_dir, replace)  # again: the build may have taken hours, the folder may have changed
        _swap_into_place(tmp_dir, out_dir)
        _fsync_dir(out_dir.parent)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir
