"""Issue 21 through the real command lines, each case in its own subprocess: nothing a user owns is deleted or left
half-written, and errors come fast and in the user's terms.

Every case asserts the exit code, a message naming the culprit and no traceback (`expect`); every writer case also
compares, byte for byte, what was on disk before and after (`tree`): a refused or failed command leaves everything
as it was, with no dotted temporary left beside it, so the same command can simply be run again.

A full disk is simulated by tests/faults/sitecustomize.py (put first on PYTHONPATH with LGMREC_FAULT_ENOSPC=NAME):
files whose path contains NAME take 16 bytes and then fail with ENOSPC, as on a full disk. No root, no tmpfs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_errors_cli import (ROOT, SHORT_RUN, TINY, TRAIN, cli, copy_folder, data_prep, env, expect,  # noqa: F401
                                   run, tiny_folder, train_on)

FAULTS = ROOT / "tests" / "faults"


def full_disk(name: str) -> dict:
    """Environment of a subprocess whose writes to paths containing `name` hit a full disk."""
    return {"PYTHONPATH": f"{FAULTS}:{ROOT}", "LGMREC_FAULT_ENOSPC": name}


def tree(directory: Path) -> dict:
    """Every file and folder under `directory` (dotted ones included) with its bytes: the before/after record."""
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else "dir")
            for p in sorted(Path(directory).rglob("*"))}


# ----------------------------------------------------------------------------------------------------------------
# data_prep: an existing --out is never moved aside, deleted or hidden


def test_data_prep_refuses_an_existing_folder_or_file_and_replaces_only_its_own_build_on_request(tmp_path):
    download = tmp_path / "mmrec"  # e.g. MMRec's published folder plus a note of the user's
    download.mkdir()
    (download / "mmrec.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n")
    (download / "notes.txt").write_text("mine\n")
    a_file = tmp_path / "a_file"
    a_file.write_bytes(b"keep")
    before = tree(tmp_path)
    expect("data_prep --out onto a folder it did not write",
           data_prep("synthetic-tiny", "--out", download, "--replace", cwd=tmp_path), 2,
           f"--out {download}: the folder exists and was not written by data_prep")
    expect("data_prep --out onto a file", data_prep("synthetic-tiny", "--out", a_file, cwd=tmp_path), 2,
           f"--out {a_file}: something that is not a folder is already there")
    assert tree(tmp_path) == before

    own = tmp_path / "built"
    assert data_prep("synthetic-tiny", "--out", own, cwd=tmp_path).returncode == 0
    before = tree(tmp_path)
    expect("data_prep --out onto its own earlier build, no --replace",
           data_prep("synthetic-tiny", "--out", own, "--seed", "1", cwd=tmp_path), 2,
           f"--out {own}: a dataset built by data_prep is already there; pass --replace")
    assert tree(tmp_path) == before
    (own / "my_feat.npy").write_bytes(b"the user's")
    before = tree(tmp_path)
    expect("data_prep --replace onto its build holding a user's file",
           data_prep("synthetic-tiny", "--out", own, "--replace", cwd=tmp_path), 2,
           "the folder holds files its manifest.json does not list (my_feat.npy)")
    assert tree(tmp_path) == before
    (own / "my_feat.npy").unlink()
    proc = data_prep("synthetic-tiny", "--out", own, "--replace", "--seed", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "built", "mmrec"]  # nothing dotted left


def test_data_prep_on_a_full_disk_leaves_nothing_and_the_retry_works(tmp_path):
    out = tmp_path / "tiny"
    proc = data_prep("synthetic-tiny", "--out", out, cwd=tmp_path, extra_env=full_disk("text_feat.npy"))
    expect("data_prep on a full disk", proc, 1, "no space left on the device", "text_feat.npy")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its hidden build folder
    assert data_prep("synthetic-tiny", "--out", out, cwd=tmp_path).returncode == 0


# ----------------------------------------------------------------------------------------------------------------
# Experiment drivers: nothing to run is an error, and a table replaces only a table a driver wrote


DRIVERS = [("run_table", "--models", "lightgcn"), ("ablations",), ("sweeps", "alpha"), ("sparsity", "--models",
                                                                                       "lightgcn"),
           ("popularity", "--models", "lightgcn")]


@pytest.mark.parametrize("driver", DRIVERS, ids=[d[0] for d in DRIVERS])
def test_a_driver_with_nothing_to_run_or_a_foreign_output_changes_nothing(driver, tmp_path):
    module, *args = driver
    out = tmp_path / "results"
    out.mkdir()
    for suffix in (".md", ".csv", ".json"):  # a committed table, as in results/
        (out / f"table{suffix}").write_bytes((ROOT / "results" / f"main_ml100k{suffix}").read_bytes())
    (out / "mine.md").write_text("# My notes\n")
    before = tree(tmp_path)
    common = ["--dataset", "synthetic-tiny", "--runs-root", tmp_path / "runs", "--out", out]
    expect(f"experiments.{module} --seeds 0", run(f"experiments.{module}", *args, *common, "--seeds", "0",
                                                   "--name", "table"), 2,
           "argument --seeds: 0: must be between 1 and 10000")
    if module == "run_table":  # the other drivers share these checks (run_table.add_seeds_arg, report.check_outputs)
        expect("experiments.run_table --seeds -2", run(f"experiments.{module}", *args, *common, "--seeds", "-2"), 2,
               "argument --seeds: -2: must be between 1 and 10000")
        expect("experiments.run_table --name of a user's file", run(f"experiments.{module}", *args, *common,
                                                                   "--name", "mine"), 2,
               f"output {out / 'mine.md'}: a file that this command did not write is already there")
    assert tree(tmp_path) == before  # no run started, no table touched


def test_a_committed_table_is_recognised_as_a_driver_s_own(tmp_path):
    from experiments import report
    for suffix in (".md", ".csv", ".json", ".png"):
        (tmp_path / f"t{suffix}").write_bytes((ROOT / "results" / f"main_ml100k{suffix}").read_bytes())
    report.check_outputs(tmp_path / "t")  # re-running a driver updates its own table
    table = report.Table("empty", ["Table written at git x"], [report.Column("a", "a")])
    with pytest.raises(report.InputError, match="nothing ran"):
        table.write(tmp_path / "t")


# ----------------------------------------------------------------------------------------------------------------
# Run directories


def test_a_new_run_refuses_an_empty_workdir_or_one_holding_a_file_it_would_write(tmp_path):
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "curves.png").write_bytes(b"the user's figure")
    before = tree(tmp_path)
    expect("train --workdir ''", cli(*TRAIN, *TINY, "--workdir", "", cwd=tmp_path), 2,
           "argument --workdir: an empty path")
    expect("train --workdir holding only curves.png", cli(*SHORT_RUN, "--workdir", folder), 2,
           f"{folder} holds curves.png, which a run would replace")
    assert tree(tmp_path) == before


def test_a_damaged_manifest_is_refused_before_the_run_directory_is_touched(tiny_folder, tmp_path):
    folder = copy_folder(tiny_folder, tmp_path)
    (folder / "manifest.json").write_text("{not json")
    expect("train on a dataset with a damaged manifest", train_on(folder), 2,
           f"{folder / 'manifest.json'}:1: dataset manifest is not valid JSON")
    assert not (tmp_path / "run").exists()  # so the retry, once the manifest is repaired, is not refused


def test_a_full_disk_when_a_run_starts_leaves_a_directory_the_retry_accepts(tmp_path):
    run_dir = tmp_path / "run"
    proc = cli(*SHORT_RUN, "--workdir", run_dir, extra_env=full_disk("config.json"))
    expect("train on a full disk (config.json)", proc, 1, "no space left on the device", "config.json")
    assert not any(p.name != ".lock" for p in run_dir.iterdir())
    from lgmrec_jax import rundir
    rundir.check_fresh(run_dir)  # what the retry checks first: accepted (training it again would take seconds)


def as_from_a_terminal(command: list[str]) -> list[str]:
    """`command` started with Ctrl-C delivered and handled by default, as a shell starts it. A child inherits a
    blocked or ignored SIGINT from its parent, and within the full suite the pytest process can hold one (the child
    then trained on through both signals and exited 0). A small Python resets both and execs the command, so the pid
    stays the command's; no preexec_fn, which would fork the multithreaded pytest process."""
    reset = ("import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
             "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", reset, *command]


def test_a_second_ctrl_c_during_shutdown_prints_no_traceback(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "lgmrec_jax.cli", *TRAIN, *TINY, "--workdir", str(run_dir),
               "--set", "train.epochs=1000", "train.stopping_step=1000", "train.train_batch_size=512"]
    proc = subprocess.Popen(as_from_a_terminal(command), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run_dir / "metrics.jsonl").exists() or not (run_dir / "metrics.jsonl").read_bytes():
            assert proc.poll() is None and time.time() < deadline, "the training did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().endswith("interrupted")
    assert "Traceback" not in stdout + stderr and "Error" not in stderr, stderr[-2000:]  # orbax threads included


# ----------------------------------------------------------------------------------------------------------------
# recommend and export on a full disk: nothing partial, the retry works


def test_recommend_and_export_on_a_full_disk(mapped_run, tmp_path):
    root, users, _ = mapped_run
    out = tmp_path / "recs.json"  # recommend and export run the whole way, then meet the full disk
    proc = cli("recommend", "--run", root / "run", "--users", users[1], "--out", out, cwd=root,
               extra_env=full_disk("recs.json"))
    expect("recommend --out on a full disk", proc, 1, f"no space left on the device while writing {out}")
    assert list(tmp_path.iterdir()) == []  # no truncated JSON, no temporary: the retry meets an empty folder

    emb = tmp_path / "emb"
    emb.mkdir()
    (emb / "README").write_text("the user's\n")
    before = tree(emb)
    proc = cli("export", "--run", root / "run", "--out", emb, cwd=root, extra_env=full_disk("item_ids.txt"))
    expect("export on a full disk", proc, 1, "no space left on the device", "item_ids.txt")
    assert tree(emb) == before  # the two .npy files and user_ids.txt, written first, removed again
    # The retry works: nothing of the export is there (test_recommend_and_export_speak_the_dataset_s_ids exports).


# ----------------------------------------------------------------------------------------------------------------
# Strict parsing: nothing silently reinterpreted, every overflow named where it enters


def _inter_line(folder: Path, line: bytes) -> None:
    path = folder / f"{folder.name}.inter"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:3] + [line] + lines[3:]))


@pytest.mark.parametrize("field", ["1_0", "+4", " 4", "٣", "4 "], ids=["underscore", "plus", "lead-space",
                                                                     "arabic-digit", "trail-space"])
def test_ids_are_ascii_digits_only(field, tiny_folder, tmp_path):
    folder = copy_folder(tiny_folder, tmp_path)
    _inter_line(folder, f"{field}\t4\t5.0\t0\t0".encode())
    expect(f"train: userID {field!r}", train_on(folder), 2, f"{folder / 'tiny.inter'}:4: userID, itemID and x_label "
           f"must be integers written with the digits 0-9 only", repr(field))
    assert not (tmp_path / "run").exists()


def test_numbers_that_would_overflow_are_named_where_they_enter(tiny_folder, tmp_path, mapped_run):
    folder = copy_folder(tiny_folder, tmp_path)
    _inter_line(folder, b"2147483646\t4\t5.0\t0\t0")  # the largest id accepted as a number
    expect("train: the largest user id", train_on(folder), 2,
           f"{folder / 'tiny.inter'}:4: userID 2147483646 would make 2147483647 users out of 241 distinct ids")
    _inter_line(folder, b"99999999999999999999\t4\t5.0\t0\t0")
    expect("train: a user id beyond int32", train_on(folder), 2, "tiny.inter:4: userID, itemID and x_label")

    folder = copy_folder(tiny_folder, tmp_path / "b")
    text = np.load(folder / "text_feat.npy").astype(np.float64)
    text[7, 2] = 1e300  # finite in float64, infinite in float32 (the training dtype)
    np.save(folder / "text_feat.npy", text)
    expect("train: a float64 feature beyond float32", train_on(folder), 2,
           "text_feat.npy: 1 non-finite values (NaN/inf or beyond float32's range (|x| > 3.4e38)), first at row 7, "
           "column 2")
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 24), np.float32))
    header["shape"] = (10**12, 24)
    with open(folder / "text_feat.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 96)
    expect("train: an .npy header declaring 10^12 rows", train_on(folder), 2,
           "text_feat.npy: 1000000000000 feature rows but the .inter file has 160 items")

    expect("train --set train.seed=2**70", cli(*TRAIN, *TINY, "--set", f"train.seed={2**70}"), 2,
           f"command line: train.seed = {2**70}: must be an integer of at most 2147483647")
    expect("train --set train.learning_rate=1e300", cli(*TRAIN, *TINY, "--set", "train.learning_rate=1e300"), 2,
           "train.learning_rate = 1e+300: must be within float32's range")
    root = mapped_run[0]
    expect("recommend --internal-ids --users 10**30", cli("recommend", "--run", root / "run", "--internal-ids",
                                                          "--users", str(10**30), cwd=root), 2,
           f"user id {10**30} is not in shop")


def test_repeated_set_applies_every_assignment_and_empty_names_are_refused(tmp_path):
    proc = cli(*TRAIN, *TINY, "--workdir", tmp_path / "run", "--set", "train.epochs=0", "--set", "train.eval_step=0")
    expect("train --set a --set b", proc, 2, "train.epochs = 0: must be", "train.eval_step = 0: must be")
    expect("train --set a=1 --set a=0 (the later wins)", cli(*TRAIN, *TINY, "--set", "train.epochs=1", "--set",
                                                              "train.epochs=0"), 2, "train.epochs = 0: must be")
    expect("train --model ''", cli(*TRAIN, *TINY, "--model", ""), 2, "argument --model: an empty name")
    expect("train --dataset ''", cli(*TRAIN, "--dataset", ""), 2, "argument --dataset: an empty name")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------------------------
# recommend and export speak the dataset's own ids


@pytest.fixture(scope="module")
def mapped_run(tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    """A short run on a data_prep folder of synthetic-tiny whose users and items carry ids of their own."""
    from data_prep.writer import write_mmrec_dataset
    from lgmrec_jax.data import synthetic
    data = synthetic.generate("tiny")
    pairs = np.concatenate([data.train, data.valid, data.test])
    labels = np.concatenate([np.full(len(s), k) for k, s in enumerate((data.train, data.valid, data.test))])
    users = [f"U{7 * u + 3:05d}" for u in range(data.n_users)]
    items = [f"B{i:04d}X" for i in range(data.n_items)]
    root = tmp_path_factory.mktemp("mapped")
    write_mmrec_dataset(root / "data" / "shop", "shop", users=pairs[:, 0], items=pairs[:, 1],
                        ratings=np.ones(len(pairs)), timestamps=np.zeros(len(pairs), np.int64), x_label=labels,
                        features=data.features, provenance={},
                        original_ids={"user": ("reviewerID", users), "item": ("asin", items)})
    proc = cli(*TRAIN, "--dataset", "shop", "--workdir", root / "run", "--set", f'train.data_dir="{root / "data"}"',
               "train.epochs=4", "train.train_batch_size=512", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root, users, items


def test_recommend_and_export_speak_the_dataset_s_ids(mapped_run):
    root, users, items = mapped_run
    proc = cli("recommend", "--run", root / "run", "--users", users[5], users[0], "--k", "3", cwd=root)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ids"].startswith("dataset (u_id_mapping.csv")
    first, second = report["recommendations"]
    assert (first["user"], first["internal_user"], second["user"]) == (users[5], 5, users[0])
    assert first["items"] == [items[i] for i in first["internal_items"]]
    internal = json.loads(cli("recommend", "--run", root / "run", "--users", "5", "--k", "3", "--internal-ids",
                              cwd=root).stdout)["recommendations"][0]
    assert internal["items"] == first["internal_items"] and internal["user"] == 5
    expect("recommend --users an id the dataset does not have",
           cli("recommend", "--run", root / "run", "--users", "5", cwd=root), 2,
           "--users '5': not a user id of shop", "--internal-ids takes the 0-based ids 0..239")

    proc = cli("export", "--run", root / "run", "--out", root / "emb", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert (root / "emb" / "user_ids.txt").read_text().splitlines() == users
    assert (root / "emb" / "item_ids.txt").read_text().splitlines() == items
    assert json.loads((root / "emb" / "export.json").read_text())["ids"]["space"].startswith("dataset")


MEASUREMENT_JSON = [("experiments.scaling", "--scales", "baby", "--models", "bm3", "--json"),
                    ("experiments.step_account", "--models", "bm3", "--scales", "baby", "--json"),
                    ("experiments.aot", "compile", "--target", "v5e:1x1", "--model", "bm3", "--dataset",
                     "synthetic-baby", "--json"),
                    ("experiments.aot", "table", "--models", "bm3", "--datasets", "synthetic-baby", "--targets",
                     "v5e:1x1", "--gpu-targets", "--programs", "train_step", "--json")]


@pytest.mark.parametrize("command", MEASUREMENT_JSON, ids=[" ".join(c[:2]) for c in MEASUREMENT_JSON])
def test_measurement_json_never_replaces_an_existing_file(command, tmp_path):
    module, *args = command
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "numbers"}\n')
    before = tree(tmp_path)
    expect(f"{module} --json onto a user's file", run(module, *args, mine), 2,
           f"--json {mine}: a file that this command did not write is already there")
    assert tree(tmp_path) == before  # refused before any measuring, nothing written


def test_the_tpu_table_goes_on_from_its_own_rows_file():
    from experiments import aot  # its own rows, as committed, are recognised; a list of other dicts is not
    rows = ROOT / "results" / "tpu_compile_rows.json"
    assert aot.is_rows_file(rows) and len(aot.read_rows(rows, "--json")) >= 100
    assert not aot.is_rows_file(ROOT / "results" / "main_ml100k.json")
