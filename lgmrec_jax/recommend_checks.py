"""Checks of a `recommend` request that need no JAX, so that a wrong id, k or file is reported at once.

    cfg = read_run_config(run_dir)                    # the run's config.json, errors naming the directory or file
    check_request(data, users, k, n_extra)            # ids exist in the run's data, 1 <= k <= candidates
    feats = read_cold_features(path)                  # {modality: [n_new, dim]} from an .npz
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from lgmrec_jax.config import RunConfig, load_saved_config
from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.errors import InputError

EXPORT_FILES = ("user_embeddings.npy", "item_embeddings.npy", "export.json")  # what `export` writes into --out

def read_run_config(run_dir: str | Path) -> RunConfig:
    """The config of a run directory, with errors naming the directory or file at fault."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"--run {run_dir}: no such run directory")
    return load_saved_config(run_dir / "config.json")


def check_request(data: Dataset, users, k: int, n_extra: int = 0) -> None:
    """User ids must exist in the run's data and k must fit the candidates; the message names the bad value."""
    # Compared as Python ints first: a huge id would overflow the int64 conversion before it could be named.
    bad = [u for u in np.asarray(users, dtype=object).reshape(-1).tolist() if not 0 <= u < data.n_users]
    if bad:
        raise InputError(f"user id {bad[0]} is not in {data.name}: user ids are 0..{data.n_users - 1}")
    n_candidates = data.n_items + n_extra
    if not 1 <= k <= n_candidates:
        raise InputError(f"k = {k}: must be between 1 and the {n_candidates} candidate items of {data.name}")


def read_cold_features(path: str | Path) -> dict[str, np.ndarray]:
    """{modality: [n_new, dim]} from an .npz file; a missing or malformed file is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--cold-features {path}: no such file (expected an .npz with one array per modality)")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise InputError(f"--cold-features {path}: a single array, expected an .npz with one array per "
                             "modality (np.savez(path, image=..., text=...))")
        with npz:
            feats = {m: npz[m] for m in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"--cold-features {path}: not an .npz of numeric arrays ({e})") from None
    if not feats:
        raise InputError(f"--cold-features {path}: the archive holds no arrays")
    for m, x in feats.items():
        if x.ndim != 2 or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InputError(f"--cold-features {path}: {m} must be a 2-d numeric array [n_new, dim], got "
                             f"shape {x.shape} dtype {x.dtype}")
        if not np.isfinite(x).all():
            raise InputError(f"--cold-features {path}: {m} holds NaN or inf values")
    return feats
