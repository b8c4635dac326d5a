"""manifest.json for a prepared MMRec folder: what is in it, where it came from, and its hashes.

The manifest lets a user (or a later run) answer "is this folder the one I built, unmodified?"
without rebuilding: `verify_manifest` recomputes every file hash and names the ones that differ.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import numpy as np

from lgmrec_jax import jsonio

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_SPLIT_NAMES = {0: "train", 1: "valid", 2: "test"}


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so multi-GB raw files never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None  # running from a source tree that was never pip-installed


def build_manifest(
    folder: Path,
    name: str,
    *,
    users: np.ndarray,
    items: np.ndarray,
    x_label: np.ndarray,
    features: dict[str, np.ndarray],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Describe the files already written into `folder` (hashes are taken from disk, not memory).

    `provenance` is free-form from the builder; recognised keys are lifted to the top level:
    `seed`, `encoders` ({modality: {"name", "version", ...}}) and `sources`
    ({label: path-to-raw-file}; each is hashed here so the manifest pins the exact inputs).
    Everything else is kept verbatim under "provenance".
    """
    provenance = dict(provenance)
    sources = provenance.pop("sources", {}) or {}
    source_entries = {}
    for label, raw in sources.items():
        raw_path = Path(raw)
        source_entries[label] = {
            "file": raw_path.name,
            "bytes": raw_path.stat().st_size,
            "sha256": sha256_file(raw_path),
        }

    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != MANIFEST_NAME:
            files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}

    counts_per_label = np.bincount(np.asarray(x_label, dtype=np.int64), minlength=3)
    return {
        "format_version": FORMAT_VERSION,
        "dataset": name,
        "counts": {
            # MMRec derives n_users / n_items as max id + 1 over the whole file; mirror that.
            "users": int(np.max(users)) + 1 if len(users) else 0,
            "items": int(np.max(items)) + 1 if len(items) else 0,
            "interactions": int(len(users)),
        },
        "splits": {_SPLIT_NAMES[k]: int(counts_per_label[k]) for k in range(3)},
        "features": {
            modality: {"file": f"{modality}_feat.npy", "shape": list(arr.shape), "dtype": str(arr.dtype)}
            for modality, arr in sorted(features.items())
        },
        "seed": provenance.pop("seed", None),
        "encoders": provenance.pop("encoders", {}),
        "sources": source_entries,
        "files": files,
        "tools": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "lgmrec-jax": _package_version("lgmrec-jax"),
        },
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance,
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / MANIFEST_NAME
    return jsonio.write_json(path, manifest, indent=2, sort_keys=False)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; was this folder written by data_prep?")
    manifest = jsonio.read_json(path, "dataset manifest")
    if not isinstance(manifest, dict):
        raise jsonio.InputError(f"{path}: expected a JSON object (a data_prep manifest)")
    return manifest


def verify_manifest(folder: Path) -> list[str]:
    """Recompute every listed file's SHA-256; raise ValueError naming each file that differs.

    Returns the list of verified file names on success. A file that is listed but missing,
    or present but unlisted (other than the manifest itself), also counts as a mismatch:
    either means the folder is not the one the manifest describes.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    listed = manifest.get("files", {})
    problems = []
    for fname, entry in sorted(listed.items()):
        path = folder / fname
        if not path.is_file():
            problems.append(f"{path}: listed in manifest but missing")
        elif (found := sha256_file(path)) != entry["sha256"]:
            problems.append(f"{path}: sha256 {found} != manifest {entry['sha256']}")
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != MANIFEST_NAME and path.name not in listed:
            problems.append(f"{path}: present but not listed in manifest")
    if problems:
        raise ValueError("manifest verification failed:\n  " + "\n  ".join(problems))
    return sorted(listed)
