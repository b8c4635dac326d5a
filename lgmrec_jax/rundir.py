"""Run directories: one training at a time, nothing written into a directory that will be refused, and a resumed
run that is still the run it says it is.

    check_fresh(workdir)                  a new run refuses a directory that already holds a run — before writing
    check_resumable(workdir)              --resume needs config.json and a checkpoint
    with RunLock(workdir) as lock:        exclusive per directory (fcntl.flock on workdir/.lock, non-blocking):
        ...checks again, under the lock   a second process is refused with the holder's pid and command
        lock.announce()                   then the holder writes who it is into the lock file
    check_matches_record(workdir, cfg, data)   --resume refuses when the config or the data differ from what the
                                          run recorded in repro.json when it started

The lock is released when the holder exits in any way (the kernel drops flock locks of a killed process), so a
kill -9 never leaves a directory locked; the .lock file itself stays, harmlessly.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from lgmrec_jax import jsonio
from lgmrec_jax.errors import InputError

LOCK_NAME = ".lock"
RUN_FILES = ("config.json", "repro.json", "metrics.jsonl", "results.json")
# Every name a run writes into its directory (train.py, checkpoint.py): a new run refuses a directory holding any
# of them, since it would replace it (a user's curves.png in a folder chosen as --workdir, say).
RUN_OUTPUTS = (*RUN_FILES, "curves.png", "checkpoints", "corrupt-checkpoints", LOCK_NAME)


class RunDirError(InputError):
    """A run directory cannot be used as asked; the message names it and says what to do."""


def checkpoint_epochs(workdir: Path) -> list[int]:
    """Epochs with a finished checkpoint directory (orbax names them by step; unfinished ones carry a suffix)."""
    directory = Path(workdir) / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def run_files(workdir: Path) -> list[str]:
    """Files of a run found in `workdir` (empty for a new or empty directory)."""
    workdir = Path(workdir)
    found = [name for name in RUN_FILES if (workdir / name).exists()]
    checkpoints = workdir / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        found.append("checkpoints/")
    return found


def foreign_entries(workdir: Path) -> list[str]:
    """Names in `workdir` that no run writes (a user's files): what must never be deleted with a stale run."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        return []
    return sorted(p.name for p in workdir.iterdir() if p.name not in RUN_OUTPUTS)


def check_fresh(workdir: Path) -> None:
    """A new run may use a directory that does not exist or holds nothing a run would write; anything else is
    refused untouched."""
    if str(workdir) == "":  # Path("") is the current directory: never a run directory by accident
        raise RunDirError("--workdir '': an empty path; give the run directory to create (e.g. runs/my-run)")
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise RunDirError(f"{workdir}: exists and is not a directory; choose another run directory")
    found = run_files(workdir)
    if found:
        hint = (f"continue it with --resume {workdir}" if checkpoint_epochs(workdir)
                else "it has no checkpoint to continue from")
        raise RunDirError(f"{workdir} already holds a run ({', '.join(found)}); {hint}, or train into a new "
                          "directory. Nothing was written.")
    clashes = [name for name in RUN_OUTPUTS if name != LOCK_NAME and (workdir / name).exists()]
    if clashes:
        raise RunDirError(f"{workdir} holds {', '.join(clashes)}, which a run would replace; train into a new "
                          "directory or move them away. Nothing was written.")


def check_resumable(workdir: Path) -> None:
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise RunDirError(f"--resume {workdir}: no such run directory")
    if not (workdir / "config.json").exists():
        raise RunDirError(f"--resume {workdir}: no config.json there, so it is not a run directory")
    if not checkpoint_epochs(workdir):
        raise RunDirError(f"--resume {workdir}: no checkpoint in {workdir / 'checkpoints'} (the run stopped before "
                          "its first checkpoint, or was trained with train.checkpoint_every=0); start a new run")


class RunLock:
    """Exclusive, non-blocking lock of a run directory (creates the directory if needed)."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            # Probe with a nameless file: the lock file may already exist (and open) in a directory where nothing
            # can be written, e.g. one made immutable or read-only after the run, which root's open() ignores.
            tempfile.TemporaryFile(dir=self.workdir).close()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise RunDirError(f"{self.workdir}: not writable (permission denied); a run directory must be "
                              "writable, choose another one") from None
        except OSError as e:
            raise RunDirError(f"{self.workdir}: cannot be used as a run directory ({e.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self._fd)
            self._fd = None
            raise RunDirError(f"{self.workdir} is in use by {holder}; wait for it to finish (or stop it), or "
                              "train into another directory") from None
        return self

    def announce(self) -> None:
        """Writes the holder's pid, host, start time and command into the lock file (what a refused process shows)."""
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since_utc": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv)}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (jsonio.dumps(info) + "\n").encode(), 0)

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return (f"process {info['pid']} on {info['host']} (since {info['since_utc']}: {info['command']}; "
                    f"lock file {self.path})")
        except (OSError, ValueError, KeyError, TypeError):
            return f"another process (it holds {self.path})"

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def check_matches_record(workdir: Path, cfg, data, use: str = "--resume", extend: bool = False) -> list[str]:
    """Refuses to resume (or, with `use`, to use the run otherwise) when the config or the data differ from those
    recorded in repro.json at the start (and by earlier extensions, see below).

    Keys added to the config since the run started are not compared (they take their defaults). With `extend`,
    train.epochs may be larger than recorded: the epoch cap only says when the loop stops (no schedule reads it),
    so a run continued past its cap is the run a larger cap would have trained. Returns warnings (e.g. that the run
    has no record to compare with).
    """
    from lgmrec_jax.repro import dataset_fingerprint  # imports jax; this module stays light for the CLI

    workdir = Path(workdir)
    path = workdir / "repro.json"
    if not path.exists():
        return [f"{path} is missing: cannot check that the config and data match the run's start"]
    try:
        card = jsonio.read_json(path, "reproduction card")
        recorded_cfg, recorded_data = card["config"], card["data"]
        recorded_hash = recorded_data["content_sha256"]
        recorded_epochs = recorded_cfg["train"]["epochs"]
        for resumption in card.get("resumed", []):  # earlier extensions raised the cap the run now continues with
            recorded_epochs = resumption.get("extended", {}).get("train.epochs", [None, recorded_epochs])[1]
    except (InputError, KeyError, TypeError, IndexError) as e:
        raise RunDirError(f"{path} is damaged ({e}), so the config and data cannot be checked against the run's "
                          "start; restore the file, or move it away to resume without the check") from None
    now = jsonio.to_strict(cfg.to_dict())
    changed = [f"{key}: {old!r} → {now.get(key)!r}" for key, old in recorded_cfg.items()
               if key in ("model_name", "dataset") and now.get(key) != old]
    for section in ("model", "train"):
        for key, old in (recorded_cfg.get(section) or {}).items():
            if section == "train" and key == "epochs":
                old = recorded_epochs
                if extend and now[section][key] > old:
                    continue
            if now[section].get(key, old) != old:
                changed.append(f"{section}.{key}: {old!r} → {now[section][key]!r}")
    if changed:
        raise RunDirError(f"{use} {workdir}: the config differs from the one the run started with "
                          f"({'; '.join(changed)}); restore {workdir / 'config.json'}"
                          + (" or start a new run (resuming would finish the run with other settings)"
                             if use == "--resume" else ""))
    fingerprint = dataset_fingerprint(data)
    if fingerprint["content_sha256"] != recorded_hash:
        sizes = ("n_users", "n_items", "n_train", "n_valid", "n_test")
        was = ", ".join(f"{k} {recorded_data.get(k)}" for k in sizes)
        now_sizes = ", ".join(f"{k} {fingerprint[k]}" for k in sizes)
        how = ("same sizes, other content" if was == now_sizes else f"then {was}; now {now_sizes}")
        raise RunDirError(f"{use} {workdir}: the data of {fingerprint['name']} changed since the run started "
                          f"({how}); restore the data" + (" or start a new run" if use == "--resume" else ""))
    return []
