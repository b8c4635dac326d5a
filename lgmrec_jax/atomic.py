"""The one write rule of the project, used by every writer (runs, result tables, data_prep, recommend, export).

  1. Before anything is written, a target that exists and is not the writer's own previous output is refused
     (`refuse_foreign`): the writer says what it found and which flag replaces it, where one exists. Replacing is
     never the default.
  2. A file is written to a temporary sibling (same folder, so the rename stays on one file system) and renamed
     over the target only once complete and flushed (`replacing`, `write_text`, `save_npy`).
  3. On any failure (a full disk, Ctrl-C, a crash in the code producing the bytes) the temporary file is removed, so
     nothing partial is left and a retry starts from what was there before.

A folder of several files is built the same way (data_prep/writer.py builds a hidden sibling folder and renames it).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lgmrec_jax.errors import InputError

TEMP_SUFFIX = ".tmp"


def temp_sibling(path: Path) -> Path:
    """Hidden name beside `path`, unique per process (two writers never share a temporary file)."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


@contextlib.contextmanager
def replacing(path: str | Path, mode: str = "w") -> Iterator:
    """`with replacing(path) as f: f.write(...)`: the file appears at `path` complete, or not at all."""
    path = Path(path)
    tmp = temp_sibling(path)
    encoding = None if "b" in mode else "utf-8"
    try:
        # open() honours the umask (mkstemp would make the file 0600).
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename == str(tmp):
            e.filename = str(path)  # the user knows the target, not our temporary name
        raise


def write_text(path: str | Path, text: str) -> Path:
    with replacing(path) as f:
        f.write(text)
    return Path(path)


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    # A file object, not a name: np.save would append ".npy" to the temporary name.
    with replacing(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
    return Path(path)


def refuse_foreign(path: Path, what: str, is_own: Callable[[Path], bool] | None = None,
                   replace_flag: str | None = None) -> None:
    """Raises InputError when `path` exists and `is_own(path)` does not recognise it as this writer's earlier output
    (no `is_own`: nothing existing is accepted). `what` names the argument or file in the message."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if is_own is not None and path.is_file() and not path.is_symlink() and is_own(path):
        return
    kind = "a folder" if path.is_dir() else "a file"
    how = f"pass {replace_flag} to replace it, " if replace_flag else ""
    raise InputError(f"{what} {path}: {kind} that this command did not write is already there; {how}choose "
                     "another name or move it away (nothing was written)")


def first_line(path: Path, limit: int = 4096) -> str:
    """The first line of a text file ('' when unreadable or not text): how writers recognise their own files."""
    try:
        with open(path, "rb") as f:
            return f.read(limit).split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    except (OSError, UnicodeDecodeError):
        return ""
