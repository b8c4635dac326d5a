"""Reproduction card: everything needed to say which code, data and machine produced a run.

    card = reproduction_card(cfg, data)       # a JSON-ready dict
    write_card(run_dir, cfg, data)            # → run_dir/repro.json (the train loop calls this for every run)
    record_resume(run_dir)                    # a --resume appends who/what/where continued it to repro.json

The card records
  * the config (as config.json) and the seed that drives init, batch order and model noise;
  * the data: a content hash of the arrays actually trained on (splits and features, so synthetic and filtered data
    are covered too) and, when the dataset folder has a manifest.json (written by data_prep), the manifest's own
    hash and the file hashes it lists — the manifest is what a reader compares against, the content hash is what
    the run really saw;
  * the device (platform, kind, count) and the versions of Python and the numerical packages;
  * the git commit of the source tree and whether tracked files differed from it (a dirty run cannot be rebuilt
    from the commit alone; the modified paths are listed so a reader can judge whether they matter), plus a hash of
    the package's Python files, which also covers untracked (not yet committed) modules.
Nothing here reads anything outside the repository and the dataset folder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from lgmrec_jax import jsonio

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "matplotlib")
MAX_DIRTY_PATHS = 50  # a long list says nothing more than "heavily modified"; keep the card small


def dataset_fingerprint(data) -> dict:
    """sha256 over the splits and feature matrices in a fixed order, with shapes and dtypes mixed in."""
    h = hashlib.sha256()
    arrays = [("train", data.train), ("valid", data.valid), ("test", data.test)]
    arrays += [(f"feat:{m}", f) for m, f in data.features.items()]
    for name, array in arrays:
        array = np.ascontiguousarray(array)
        # Shape and dtype go in too: the same bytes reshaped are a different dataset.
        h.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        h.update(array.tobytes())
    return {"name": data.name, "n_users": data.n_users, "n_items": data.n_items,
            "n_train": int(len(data.train)), "n_valid": int(len(data.valid)), "n_test": int(len(data.test)),
            "modalities": list(data.modalities), "content_sha256": h.hexdigest()}


def manifest_summary(dataset_dir: Path) -> dict | None:
    """The manifest's hash and its per-file hashes, or None when the folder has no manifest (e.g. synthetic)."""
    path = Path(dataset_dir) / "manifest.json"
    if not path.exists():
        return None
    raw = path.read_bytes()
    manifest = jsonio.read_json(path, "dataset manifest")
    if not isinstance(manifest, dict):
        raise jsonio.InputError(f"{path}: expected a JSON object (a data_prep manifest)")
    return {"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(),
            "files": {name: entry.get("sha256") for name, entry in manifest.get("files", {}).items()},
            "created_utc": manifest.get("created_utc")}


def git_state(root: Path = REPO_ROOT) -> dict:
    """Commit and dirty flag of the source tree; 'unknown' outside a git checkout (e.g. an installed wheel)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": "unknown", "dirty": None}
    if head.returncode != 0:
        return {"commit": "unknown", "dirty": None}
    # Untracked files are ignored on purpose: they are not part of any commit a reader could check out anyway,
    # while a modified tracked file means the commit alone does not rebuild this run.
    dirty = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    return {"commit": head.stdout.strip(), "dirty": bool(dirty), "dirty_paths": dirty[:MAX_DIRTY_PATHS],
            "n_dirty_paths": len(dirty)}


def source_fingerprint(root: Path = REPO_ROOT) -> dict:
    """sha256 over the package's Python files (path + bytes, sorted): identifies the code even when it is
    uncommitted, e.g. a model file still being written in a shared checkout."""
    h = hashlib.sha256()
    files = sorted((root / "lgmrec_jax").rglob("*.py"))
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return {"package_sha256": h.hexdigest(), "n_files": len(files)}


def environment() -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    devices = jax.devices()
    return {"python": sys.version.split()[0], "packages": versions, "platform": platform.platform(),
            "device": {"platform": devices[0].platform, "kind": devices[0].device_kind, "count": len(devices),
                       "process_count": jax.process_count()}}


def reproduction_card(cfg, data, dataset_dir: Path | None = None) -> dict:
    """`cfg` is a config.RunConfig, `data` the Dataset trained on; `dataset_dir` defaults to data_dir/<dataset>."""
    if dataset_dir is None:
        dataset_dir = Path(cfg.train.data_dir) / cfg.dataset
    return {
        "card_version": 1,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": sys.argv,
        "model": cfg.model_name,
        "dataset": cfg.dataset,
        "seed": cfg.train.seed,
        "config": cfg.to_dict(),
        "data": {**dataset_fingerprint(data), "manifest": manifest_summary(dataset_dir)},
        "git": git_state(),
        "source": source_fingerprint(),
        "environment": environment(),
    }


def write_card(run_dir: str | Path, cfg, data, dataset_dir: Path | None = None) -> Path:
    return jsonio.write_json(Path(run_dir) / "repro.json", reproduction_card(cfg, data, dataset_dir))


def record_resume(run_dir: str | Path, extended: dict | None = None) -> Path | None:
    """Appends the code, machine and command of a resumption to repro.json's "resumed" list (the original card
    is kept: it describes how the run started). `extended` ({"train.epochs": [old, new]}) records a resumption
    that raised the epoch cap. Returns None when the run has no card to append to."""
    path = Path(run_dir) / "repro.json"
    if not path.exists():
        return None
    card = jsonio.read_json(path, "reproduction card")
    entry = {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": sys.argv,
             "git": git_state(), "source": source_fingerprint(), "environment": environment()}
    if extended:
        entry["extended"] = extended
    card.setdefault("resumed", []).append(entry)
    return jsonio.write_json(path, card)
