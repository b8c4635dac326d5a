"""Run directories (rundir.py): refusal before writing, the per-directory lock."""

import os

import pytest

from lgmrec_jax import rundir


def test_fresh_run_refuses_a_directory_with_run_files(tmp_path):
    rundir.check_fresh(tmp_path / "new")  # does not exist: fine, and nothing is created
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    rundir.check_fresh(tmp_path / "empty")
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(rundir.RunDirError, match=r"already holds a run \(metrics.jsonl\); it has no checkpoint"):
        rundir.check_fresh(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(rundir.RunDirError, match="is not a directory"):
        rundir.check_fresh(tmp_path / "file")


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    with rundir.RunLock(tmp_path / "run") as lock:
        lock.announce()
        with pytest.raises(rundir.RunDirError, match=rf"in use by process {os.getpid()} on .*lock file"):
            with rundir.RunLock(tmp_path / "run"):
                pass
    with rundir.RunLock(tmp_path / "run"):  # released on exit
        pass


def test_checkpoint_epochs_ignore_unfinished_writes(tmp_path):
    for name in ("3", "7", "8.orbax-checkpoint-tmp-123"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert rundir.checkpoint_epochs(tmp_path) == [3, 7]
