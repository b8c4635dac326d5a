"""Checks of a `recommend` request that need no JAX, so that a wrong id, k or file is reported at once.

    cfg = read_run_config(run_dir)                    # the run's config.json, errors naming the directory or file
    ids = DatasetIds.of(cfg, data)                    # the dataset's own ids (data/id_mapping.py), if it has them
    users = ids.resolve_users(["196", "22"])          # the dataset's user ids (or, internal=True, 0-based ids)
    check_request(data, users, k, n_extra)            # ids exist in the run's data, 1 <= k <= candidates
    feats = read_cold_features(path)                  # {modality: [n_new, dim]} from an .npz
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

import dataclasses

from lgmrec_jax.config import RunConfig, load_saved_config
from lgmrec_jax.data import id_mapping
from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.errors import InputError

# What `export` writes into --out: the embeddings, then for each row the dataset's own id, then a description.
EXPORT_FILES = ("user_embeddings.npy", "item_embeddings.npy", "user_ids.txt", "item_ids.txt", "export.json")
COLD_ID_PREFIX = "new:"  # a new item's id: "new:<row of the --cold-features arrays>"


@dataclasses.dataclass(frozen=True)
class DatasetIds:
    """Translation between the dataset's own ids and the dense 0-based ids; `internal` uses the dense ids
    throughout (also what a dataset without a mapping has)."""

    data: Dataset
    users: id_mapping.IdMapping | None
    items: id_mapping.IdMapping | None
    internal: bool = False

    @staticmethod
    def of(cfg: RunConfig, data: Dataset, internal: bool = False) -> "DatasetIds":
        folder = Path(cfg.train.data_dir) / cfg.dataset
        if internal or not folder.is_dir():  # synthetic data is generated, it has no folder and no other ids
            return DatasetIds(data, None, None, internal)
        return DatasetIds(data, id_mapping.read_mapping(folder, "user", data.n_users),
                          id_mapping.read_mapping(folder, "item", data.n_items), internal)

    @property
    def space(self) -> str:
        if self.internal:
            return "internal (0-based dense ids, as requested)"
        if self.users is None:
            return "internal (the dataset has no u_id_mapping.csv / i_id_mapping.csv: its ids are the dense ids)"
        return f"dataset ({self.users.path.name}, {self.items.path.name if self.items else 'items internal'})"

    def resolve_users(self, tokens: list[str]) -> list[int]:
        """Dense ids of the users named on the command line; the message names the token at fault."""
        if self.users is None:
            dense = []
            for token in tokens:
                # Digits only, but any length: a huge id is named by check_request ("not in <dataset>").
                value = int(token) if token.isascii() and token.isdigit() else None
                if value is None:
                    why = ("" if self.internal else " (this dataset has no u_id_mapping.csv, so its user ids are the "
                           "0-based internal ones)")
                    raise InputError(f"--users {token!r}: an internal user id is written with the digits 0-9{why}")
                dense.append(value)
            return dense
        known = self.users.dense_of()
        unknown = [t for t in tokens if t not in known]
        if unknown:
            raise InputError(f"--users {unknown[0]!r}: not a user id of {self.data.name} (its ids as in "
                             f"{self.users.path}); --internal-ids takes the 0-based ids 0..{self.data.n_users - 1}")
        return [known[t] for t in tokens]

    def user(self, dense: int):
        return dense if self.users is None else self.users.original[dense]

    def item(self, dense: int):
        if dense >= self.data.n_items:
            return f"{COLD_ID_PREFIX}{dense - self.data.n_items}"
        return dense if self.items is None else self.items.original[dense]

    def all_ids(self, kind: str) -> list:
        n, mapping = (self.data.n_users, self.users) if kind == "user" else (self.data.n_items, self.items)
        return list(range(n)) if mapping is None else list(mapping.original)

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
