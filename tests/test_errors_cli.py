"""Bad inputs and faults through the real command line entry points, each in its own subprocess.

Every case asserts the exit code (2 bad input, 1 failure, 0 when the input is repaired and reported), that stderr
names the culprit (file, line, key or id), and that no traceback is printed; run-directory cases also assert that the
previous run's files are byte-identical afterwards. Set LGMREC_ERROR_TABLE=path to get the table
case → exit code → first line of the message (the closing note of issue 13).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLE: list[tuple[str, int, str]] = []
TRAIN = ["train", "--no-progress"]
TINY = ["--dataset", "synthetic-tiny"]
SHORT_RUN = [*TRAIN, *TINY, "--set", "train.epochs=6", "train.train_batch_size=512"]  # ~1 s of training


@pytest.fixture(scope="module", autouse=True)
def closing_table():
    yield
    path = os.environ.get("LGMREC_ERROR_TABLE")
    if path:
        rows = ["| case | exit | first line of the message |", "|---|---|---|"]
        rows += [f"| {case} | {code} | `{line.replace('|', '∣')}` |" for case, code, line in TABLE]
        Path(path).write_text("\n".join(rows) + "\n")


def env(**extra) -> dict:
    out = {k: v for k, v in os.environ.items() if k != "LGMREC_DEBUG"}
    out.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    out.update(extra)  # may replace PYTHONPATH (tests/test_write_rule_cli.py puts its fault injection first)
    return out


def run(module: str, *args, cwd=ROOT, extra_env=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env(**(extra_env or {})))


def cli(*args, **kwargs):
    return run("lgmrec_jax.cli", *args, **kwargs)


def data_prep(*args, **kwargs):
    return run("data_prep", *args, **kwargs)


def expect(case: str, proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit code, no traceback, every needle in stderr; records the case for the table. Returns stderr."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, f"{case}: traceback printed:\n{out[-3000:]}"
    assert proc.returncode == code, f"{case}: exit {proc.returncode}, expected {code}\n{out[-3000:]}"
    for needle in needles:
        assert needle in proc.stderr, f"{case}: {needle!r} not in stderr:\n{proc.stderr[-3000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("error:", "internal error:"))]
    lines = errors or [line for line in (proc.stderr + proc.stdout).splitlines()
                       if line.startswith(("warning:", "note:"))]
    TABLE.append((case, code, lines[0] if lines else ""))
    return proc.stderr


def snapshot(directory: Path) -> dict:
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def newest_checkpoint(run_dir: Path) -> str:
    return str(max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()))


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


# ----------------------------------------------------------------------------------------------------------------
# Shared material: a finished run and an MMRec folder of synthetic-tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    proc = cli(*SHORT_RUN, "--workdir", run_dir)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """data/tiny/ (tiny.inter, image_feat.npy, text_feat.npy) written from synthetic-tiny by data_prep's writer."""
    from data_prep.writer import write_mmrec_dataset
    from lgmrec_jax.data import synthetic
    data = synthetic.generate("tiny")
    pairs = np.concatenate([data.train, data.valid, data.test])
    labels = np.concatenate([np.full(len(s), k) for k, s in enumerate((data.train, data.valid, data.test))])
    folder = tmp_path_factory.mktemp("data") / "data" / "tiny"
    write_mmrec_dataset(folder, "tiny", users=pairs[:, 0], items=pairs[:, 1], ratings=np.ones(len(pairs)),
                        timestamps=np.zeros(len(pairs), np.int64), x_label=labels, features=data.features,
                        provenance={})
    (folder / "manifest.json").unlink()  # the cases below edit files by hand
    return folder


def copy_folder(tiny_folder: Path, root: Path) -> Path:
    """A fresh copy of data/tiny/ under root/data/ to damage (root/data is the data_dir, root the validator's cwd)."""
    shutil.copytree(tiny_folder, root / "data" / "tiny")
    return root / "data" / "tiny"


def train_on(folder: Path, *overrides: str):
    return cli(*TRAIN, "--dataset", folder.name, "--workdir", folder.parent.parent / "run",
               "--set", f'train.data_dir="{folder.parent}"', *overrides)


def edit_inter(folder: Path, edit) -> None:
    path = folder / f"{folder.name}.inter"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(edit(lines)))


# ----------------------------------------------------------------------------------------------------------------
# Config values and arguments: refused before any JAX import or file is touched


@pytest.mark.parametrize("override, needle", [
    ("train.train_batch_size=0", "command line: train.train_batch_size = 0: must be a positive integer"),
    ("train.eval_step=0", "train.eval_step = 0: must be a positive integer"),
    ("train.epochs=0", "train.epochs = 0: must be a positive integer"),
    ("train.eval_batch_size=0", "train.eval_batch_size = 0: must be a positive integer"),
    ("train.valid_metric=recall@50", "train.valid_metric = 'recall@50' is not computed"),
    ("train.topk=[]", "train.topk = []: must be a non-empty list"),
    ("train.backend=foo", "train.backend = 'foo': must be one of auto, bcoo, bcsr, segment_sum"),
    ("train.devices=4", "train.devices = 4: only 1 device(s) available"),
    ("train.learning_rate=nan", "train.learning_rate = nan: must be finite"),
    ("train.learning_rate=-0.01", "train.learning_rate = -0.01: must be a number >= 0"),
    ("train.learning_rate_scheduler=[0.5, 0]", "train.learning_rate_scheduler = [0.5, 0.0]: must be"),
    ("train.eval_step=5", "train.eval_step = 5 exceeds train.epochs = 2"),
    ("train.seed=-1", "train.seed = -1: must be an integer >= 0"),
    ("model.n_ui_layers=-1", "model.n_ui_layers = -1: must be an integer >= 0"),
    ("model.alpah=0.3", "unknown key(s) ['alpah']"),
    ("train.epochs=ten", "command line [train] epochs: expected an integer, got 'ten'"),
    ("train.epochs", "override 'train.epochs' must look like section.key=value"),
])
def test_config_values_are_range_checked(override, needle, tmp_path):
    epochs = [] if override.startswith("train.epochs") else ["train.epochs=2"]
    proc = cli(*TRAIN, *TINY, "--workdir", tmp_path / "run", "--set", *epochs, override)
    expect(f"train --set {override}", proc, 2, needle)
    assert not (tmp_path / "run").exists()


def test_config_file_and_model_mistakes(tmp_path):
    not_utf8 = tmp_path / "latin1.toml"
    not_utf8.write_bytes("[train]\n# caf\xe9\nepochs = 3\n".encode("latin-1"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = 3\n")
    keep = tmp_path / "keep.toml"
    keep.write_text("[model]\nkeep_rate = 1.5\n")
    cases = [
        ("train --model lgmrecc", ["--model", "lgmrecc"], "unknown model 'lgmrecc' (did you mean lgmrec?)"),
        ("train --config DIR", ["--config", tmp_path], f"{tmp_path}: is a directory; --config takes a TOML file"),
        ("train --config non-UTF-8 file", ["--config", not_utf8], f"{not_utf8}: not UTF-8 text"),
        ("train --config missing file", ["--config", tmp_path / "nope.toml"], "nope.toml: config file not found"),
        ("train --config broken TOML", ["--config", broken], f"{broken}: not valid TOML"),
        ("train --config with keep_rate=1.5", ["--model", "lgmrec", "--config", keep],
         f"{keep}: model.keep_rate = 1.5: must be a probability in (0, 1]"),
        ("train --dataset synthetic-huge", ["--dataset", "synthetic-huge"], "unknown synthetic scale 'huge'"),
        ("train --dataset clothing (missing)", ["--dataset", "clothing", "--set", f'train.data_dir="{tmp_path}"'],
         "dataset 'clothing' not found"),
        ("train --set train.topk=[500] (160 items)", ["--dataset", "synthetic-tiny", "--set", "train.topk=[500]",
                                                      "train.valid_metric=recall@500"],
         "train.topk = [500]: synthetic-tiny has only 160 items"),
        ("train lgmrec feat_embed_dim != embedding_size",
         ["--model", "lgmrec", "--dataset", "synthetic-tiny", "--set", "model.feat_embed_dim=32"],
         "lgmrec: feat_embed_dim (32) must equal embedding_size (64)"),
    ]
    for case, args, needle in cases:
        if "--dataset" not in args:
            args = [*args, *TINY]
        expect(case, cli(*TRAIN, "--workdir", tmp_path / "run", *args), 2, needle)
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("driver", ["run_table", "ablations", "sweeps alpha", "sparsity", "popularity", "profile"])
def test_experiment_drivers_name_a_bad_setting(driver, tmp_path):
    module, *args = driver.split()
    proc = run(f"experiments.{module}", *args, "--dataset", "synthetic-tiny", "--set", "train.nope=1",
               "--out" if module != "profile" else "--runs-dir", tmp_path / "out")
    expect(f"experiments.{driver} --set train.nope=1", proc, 2, "unknown key(s) ['nope']")
    assert not (tmp_path / "out").exists()


def test_debug_flag_and_environment_variable_show_the_traceback(tmp_path):
    args = [*TRAIN, *TINY, "--workdir", tmp_path / "run", "--set", "train.epochs=0"]
    plain = cli(*args)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    for proc in (cli(*args, "--debug"), cli("--debug", *args), cli(*args, extra_env={"LGMREC_DEBUG": "1"})):
        assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_resume_arguments(run_copy, tmp_path):
    before = snapshot(run_copy)
    expect("train --resume RUN --set ...", cli(*TRAIN, "--resume", run_copy, "--set", "train.epochs=5"), 2,
           "--set cannot be combined with it")
    expect("train --resume RUN --model ...", cli(*TRAIN, "--resume", run_copy, "--model", "gume"), 2,
           "--model cannot be combined with it")
    expect("train --extend-to without --resume", cli(*TRAIN, *TINY, "--extend-to", "9"), 2,
           "--extend-to raises the epoch cap of an existing run: give it with --resume RUN_DIR")
    cap = json.loads((run_copy / "config.json").read_text())["train"]["epochs"]
    expect("train --resume RUN --extend-to (not larger)", cli(*TRAIN, "--resume", run_copy, "--extend-to", cap), 2,
           f"--extend-to {cap}: the run in {run_copy} already has train.epochs = {cap}; give a larger cap")
    expect("train --resume missing dir", cli(*TRAIN, "--resume", tmp_path / "nope"), 2,
           f"--resume {tmp_path / 'nope'}: no such run directory")
    (tmp_path / "empty").mkdir()
    expect("train --resume dir without config.json", cli(*TRAIN, "--resume", tmp_path / "empty"), 2,
           "no config.json there, so it is not a run directory")
    assert snapshot(run_copy) == before


# ----------------------------------------------------------------------------------------------------------------
# Dataset files: the trainer names file and line; the folder validator says the same with the same line numbers


def _zero_bytes(folder):
    (folder / "image_feat.npy").write_bytes(b"")


def _directory(folder):
    (folder / "image_feat.npy").unlink()
    (folder / "image_feat.npy").mkdir()


def _truncated_npy(folder):
    path = folder / "image_feat.npy"
    path.write_bytes(path.read_bytes()[:200])


DAMAGE = [
    ("zero-byte feature file", _zero_bytes, "image_feat.npy: empty file (0 bytes)"),
    ("feature file is a directory", _directory, "image_feat.npy: is a directory"),
    ("truncated .npy feature file", _truncated_npy, "image_feat.npy: the header declares shape (160, 48)"),
    ("feature rows != items", lambda f: np.save(f / "text_feat.npy", np.ones((7, 3), np.float32)),
     "text_feat.npy: 7 feature rows but the .inter file has 160 items"),
    ("NaN feature", lambda f: np.save(f / "text_feat.npy", np.full((160, 3), np.nan, np.float32)),
     "text_feat.npy: 480 non-finite values (NaN/inf), first at row 0, column 0"),
    ("non-UTF-8 .inter line", lambda f: edit_inter(f, lambda ls: ls[:5] + [b"3\t4\t5.0\t0\t0\xff"] + ls[5:]),
     "tiny.inter:6: not UTF-8 text"),
    ("wrong field count after a blank line", lambda f: edit_inter(f, lambda ls: ls[:5] + [b"", b"3\t4\t5"] + ls[5:]),
     "tiny.inter:7: expected 5 tab-separated fields, found 3"),
    ("non-integer id", lambda f: edit_inter(f, lambda ls: ls[:3] + [b"3\tx\t5.0\t0\t0"] + ls[3:]),
     "tiny.inter:4: userID, itemID and x_label must be integers"),
    ("x_label 7", lambda f: edit_inter(f, lambda ls: ls[:3] + [b"3\t4\t5.0\t0\t7"] + ls[3:]),
     "tiny.inter:4: x_label must be 0 (train), 1 (valid) or 2 (test), got 7"),
    ("header without x_label",
     lambda f: edit_inter(f, lambda ls: [b"userID\titemID\trating\ttimestamp\tlabel"] + ls[1:]),
     "tiny.inter:1: header lacks column(s) x_label"),
    ("empty .inter file", lambda f: (f / "tiny.inter").write_bytes(b""), "tiny.inter: empty file"),
    ("no valid rows", lambda f: edit_inter(f, lambda ls: [l for l in ls if not l.endswith(b"\t1")]),
     "tiny.inter: the valid split is empty"),
]


@pytest.mark.parametrize("case, damage, needle", DAMAGE, ids=[c for c, _, _ in DAMAGE])
def test_damaged_dataset_files_same_message_in_trainer_and_validator(case, damage, needle, tiny_folder, tmp_path):
    folder = copy_folder(tiny_folder, tmp_path)
    damage(folder)
    expect(f"train: {case}", train_on(folder), 2, f"{folder}/{needle}")
    assert not (tmp_path / "run").exists()
    expect(f"python -m data_prep tiny: {case}", data_prep("tiny", cwd=tmp_path), 2, f"data/tiny/{needle}")


def test_validator_folder_level_problems(tiny_folder, tmp_path):
    folder = copy_folder(tiny_folder, tmp_path)
    (folder / "tiny.inter").rename(folder / "other.inter")
    expect("python -m data_prep tiny: .inter named differently", data_prep("tiny", cwd=tmp_path), 2,
           "data/tiny/tiny.inter: missing")
    shutil.copy(folder / "other.inter", folder / "tiny.inter")
    (folder / "manifest.json").write_text("{not json")
    expect("python -m data_prep tiny: damaged manifest.json", data_prep("tiny", cwd=tmp_path), 2,
           "data/tiny/manifest.json:1: dataset manifest is not valid JSON")
    expect("python -m data_prep nothere", data_prep("nothere", cwd=tmp_path), 2,
           "dataset 'nothere' not found: data/nothere/ does not exist")
    expect("python -m data_prep tiny --bogus", data_prep("tiny", "--bogus", cwd=tmp_path), 2,
           "unexpected argument(s) ['--bogus']")


def test_repaired_rows_are_counted_in_the_log_and_results(tiny_folder, tmp_path):
    """Duplicated rows are merged and valid/test rows of users without training rows dropped — and said so."""
    folder = copy_folder(tiny_folder, tmp_path)
    lines = (folder / "tiny.inter").read_bytes().split(b"\n")
    train_rows = [l for l in lines[1:] if l.endswith(b"\t0")]
    extra = train_rows[:3] + [b"240\t5\t1.0\t0\t1", b"240\t6\t1.0\t0\t2", b"241\t7\t1.0\t0\t2"]
    (folder / "tiny.inter").write_bytes(b"\n".join(lines[:-1] + extra) + b"\n")
    n_lines = len(lines)  # header + rows; the first added row is line n_lines
    proc = train_on(folder, "train.epochs=1", "train.train_batch_size=512")
    merged = f"tiny.inter: merged 3 duplicated row(s) (same userID, itemID and x_label; first: line {n_lines} repeats"
    dropped = "tiny.inter: dropped 1 valid and 2 test row(s) of 2 user(s) without training rows, as MMRec does"
    assert proc.returncode == 0, proc.stderr
    for note in (merged, dropped):
        assert f"note: {note}" in proc.stdout
    TABLE.append(("train: 3 duplicated rows + 3 rows of users without training rows", 0,
                  next(line for line in proc.stdout.splitlines() if line.startswith("note:"))))
    report = json.loads((tmp_path / "run" / "results.json").read_text())["data_report"]
    assert report["merged_duplicate_rows"] == 3 and report["users_without_training"] == 2
    assert report["dropped_rows_of_users_without_training"] == {"valid": 1, "test": 2}
    validated = data_prep("tiny", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert f"note: {merged}" in validated.stdout and f"note: {dropped}" in validated.stdout


# ----------------------------------------------------------------------------------------------------------------
# Run directories: nothing written into a directory that is refused; one training per directory; resume checks


def test_second_training_into_a_run_directory_leaves_it_byte_identical(run_copy):
    before = snapshot(run_copy)
    proc = cli(*TRAIN, *TINY, "--workdir", run_copy, "--set", "train.epochs=5", "train.seed=7")
    expect("train into a finished run's directory", proc, 2, f"{run_copy} already holds a run",
           f"continue it with --resume {run_copy}")
    assert snapshot(run_copy) == before


def test_workdir_that_is_a_file_and_a_damaged_log(run_copy, tmp_path):
    (tmp_path / "afile").write_text("mine\n")
    expect("train --workdir FILE", cli(*TRAIN, *TINY, "--workdir", tmp_path / "afile"), 2,
           f"{tmp_path / 'afile'}: exists and is not a directory")
    assert (tmp_path / "afile").read_text() == "mine\n"
    log = run_copy / "metrics.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(["{garbage", *lines[1:]]) + "\n")
    before = snapshot(run_copy)
    expect("train --resume with a damaged metrics.jsonl line", cli(*TRAIN, "--resume", run_copy), 2,
           f"{log}:1: damaged log line")
    assert {k: v for k, v in snapshot(run_copy).items() if k.name != ".lock"} == \
        {k: v for k, v in before.items() if k.name != ".lock"}


def test_resume_refuses_a_changed_config_or_dataset(run_copy):
    before = snapshot(run_copy)
    config = json.loads((run_copy / "config.json").read_text())
    config["train"]["learning_rate"] = 0.05  # as if another run had rewritten it
    (run_copy / "config.json").write_text(json.dumps(config))
    expect("train --resume after config.json changed", cli(*TRAIN, "--resume", run_copy), 2,
           "the config differs from the one the run started with (train.learning_rate: 0.001 → 0.05)")
    (run_copy / "config.json").write_text("{\"model_name\": \"lightgcn\", \"dataset\": ")
    expect("train --resume with a damaged config.json", cli(*TRAIN, "--resume", run_copy), 2,
           f"{run_copy / 'config.json'}:1: run config is not valid JSON")
    (run_copy / "config.json").write_bytes(before[Path("config.json")])
    card = json.loads((run_copy / "repro.json").read_text())
    card["data"]["content_sha256"] = "0" * 64  # the run recorded other data than synthetic-tiny gives now
    (run_copy / "repro.json").write_text(json.dumps(card))
    expect("train --resume after the data changed", cli(*TRAIN, "--resume", run_copy), 2,
           "the data of synthetic-tiny changed since the run started")
    (run_copy / "repro.json").write_bytes(before[Path("repro.json")])
    assert {k: v for k, v in snapshot(run_copy).items() if k.name != ".lock"} == \
        {k: v for k, v in before.items() if k.name != ".lock"}
    assert (run_copy / ".lock").read_bytes() == before[Path(".lock")]  # refused before announcing itself


def test_corrupt_newest_checkpoint_falls_back_to_an_intact_one(run_copy, finished):
    newest = newest_checkpoint(run_copy)
    for blob in (run_copy / "checkpoints" / newest / "state").rglob("d/*"):
        blob.write_bytes(b"garbage")
    proc = cli(*TRAIN, "--resume", run_copy)
    expect("train --resume, newest checkpoint damaged", proc, 0,
           f"warning: checkpoint {run_copy.resolve() / 'checkpoints' / newest} is unreadable",
           f"using the newest intact checkpoint, epoch {int(newest) - 1}, instead", "corrupt-checkpoints")
    assert (run_copy / "corrupt-checkpoints" / newest / "state").is_dir()  # moved aside, not deleted
    assert metrics(run_copy) == metrics(finished)  # the last epoch trained again, to the same numbers
    again = json.loads((run_copy / "results.json").read_text())
    assert again["test"] == json.loads((finished / "results.json").read_text())["test"]


def test_every_checkpoint_damaged_and_damaged_loop_state(run_copy):
    for step in (p for p in (run_copy / "checkpoints").iterdir() if p.name.isdigit()):
        (step / "loop" / "metadata").write_text("{\"next_epoch\": ")
    before = snapshot(run_copy)
    expect("train --resume, loop state of every checkpoint damaged", cli(*TRAIN, "--resume", run_copy), 2,
           "no intact checkpoint under", "start a new run")
    assert {k: v for k, v in snapshot(run_copy).items() if k.name != ".lock"} == \
        {k: v for k, v in before.items() if k.name != ".lock"}


def test_read_only_run_directory(run_copy):
    before = snapshot(run_copy)
    if os.geteuid() == 0:  # root ignores permission bits: make the directory immutable instead
        lock = ["chattr", "-R", "+i", str(run_copy)]
        unlock = ["chattr", "-R", "-i", str(run_copy)]
    else:
        lock, unlock = ["chmod", "-R", "a-w", str(run_copy)], ["chmod", "-R", "u+w", str(run_copy)]
    if subprocess.run(lock, capture_output=True).returncode != 0:
        pytest.skip("cannot make a directory read-only here")
    try:
        proc = cli(*TRAIN, "--resume", run_copy)
    finally:
        subprocess.run(unlock, check=True)
    expect("train --resume into a read-only run directory", proc, 2, f"{run_copy}: not writable")
    assert snapshot(run_copy) == before


def test_diverging_training_says_what_exists_and_what_to_change(tmp_path):
    proc = cli(*TRAIN, *TINY, "--workdir", tmp_path / "run", "--set", "train.learning_rate=1e30", "train.epochs=3")
    expect("train --set train.learning_rate=1e30 (diverges)", proc, 1,
           "training diverged: epoch 0: non-finite training loss", "no checkpoint was written",
           "Lower train.learning_rate (now 1e+30, from command line)")
    assert "internal error" not in proc.stderr


def test_second_process_is_locked_out_while_a_run_is_training(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "lgmrec_jax.cli", *TRAIN, *TINY, "--workdir", str(run_dir),
                              "--set", "train.epochs=1000", "train.stopping_step=1000", "train.train_batch_size=512"],
                             cwd=ROOT, env=env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not any(p.name.isdigit() for p in (run_dir / "checkpoints").glob("*")):
            assert first.poll() is None and time.time() < deadline, "the first training did not start"
            time.sleep(0.2)
        log_before = (run_dir / "metrics.jsonl").read_bytes()
        proc = cli(*TRAIN, "--resume", run_dir)
        expect("train --resume while another process trains in it", proc, 2,
               f"{run_dir} is in use by process {first.pid}", "wait for it to finish")
        assert (run_dir / "metrics.jsonl").read_bytes().startswith(log_before)  # only the first process writes
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()


def test_kill_9_then_resume_equals_an_uninterrupted_run(finished, tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "lgmrec_jax.cli", *SHORT_RUN, "--workdir", str(run_dir)], cwd=ROOT,
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run_dir / "metrics.jsonl").exists() or len(metrics_lines(run_dir)) < 3:
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "results.json").exists()
    resumed = cli(*TRAIN, "--resume", run_dir)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert metrics(run_dir) == metrics(finished)
    results = [json.loads((d / "results.json").read_text()) for d in (run_dir, finished)]
    assert results[0]["test"] == results[1]["test"] and results[0]["best_epoch"] == results[1]["best_epoch"]
    assert len(json.loads((run_dir / "repro.json").read_text())["resumed"]) == 1


def metrics_lines(run_dir: Path) -> list[str]:
    return [line for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.endswith("}")]


# ----------------------------------------------------------------------------------------------------------------
# recommend and export


def test_recommend_and_export_arguments(finished, tmp_path):
    before = snapshot(finished)
    existing = tmp_path / "existing.json"
    existing.write_text("keep me\n")
    np.save(tmp_path / "single.npy", np.ones((1, 3)))
    cases = [
        ("recommend --users 999 (unknown)", ["--users", "999"],
         "user id 999 is not in synthetic-tiny: user ids are 0..239"),
        ("recommend --users -1", ["--users", "-1"], "--users '-1': an internal user id is written with the digits"),
        ("recommend --k 161 (> items)", ["--users", "1", "--k", "161"],
         "k = 161: must be between 1 and the 160 candidate items of synthetic-tiny"),
        ("recommend --k -3", ["--users", "1", "--k", "-3"], "--k -3: must be a positive number of items"),
        ("recommend --out existing file", ["--users", "1", "--out", existing], f"--out {existing}: already exists"),
        ("recommend --out into a missing folder", ["--users", "1", "--out", tmp_path / "no" / "r.json"],
         f"the folder {tmp_path / 'no'} does not exist"),
        ("recommend --cold-features missing file", ["--users", "1", "--cold-features", tmp_path / "x.npz"],
         f"--cold-features {tmp_path / 'x.npz'}: no such file"),
        ("recommend --cold-features a .npy", ["--users", "1", "--cold-features", tmp_path / "single.npy"],
         "a single array, expected an .npz"),
    ]
    for case, args, needle in cases:
        expect(case, cli("recommend", "--run", finished, *args), 2, needle)
    np.savez(tmp_path / "new.npz", image=np.ones((1, 48), np.float32), text=np.ones((1, 24), np.float32))
    expect("recommend --cold-features on a lightgcn run",
           cli("recommend", "--run", finished, "--users", "1", "--cold-features", tmp_path / "new.npz"), 2,
           "lightgcn uses only ID embeddings")
    expect("recommend --run missing dir", cli("recommend", "--run", tmp_path / "nope", "--users", "1"), 2,
           f"--run {tmp_path / 'nope'}: no such run directory")
    expect("recommend --run a directory without a run", cli("recommend", "--run", tmp_path, "--users", "1"), 2,
           "no config.json there, so it is not a run directory")
    assert existing.read_text() == "keep me\n"
    ok = cli("recommend", "--run", finished, "--users", "0", "1", "--k", "160")  # more than the unseen items
    assert ok.returncode == 0, ok.stderr
    recs = json.loads(ok.stdout)["recommendations"]
    assert all(0 < len(r["items"]) < 160 and len(r["items"]) == len(r["scores"]) for r in recs)  # seen ones dropped
    out = tmp_path / "emb"
    assert cli("export", "--run", finished, "--out", out).returncode == 0
    exported = snapshot(out)
    expect("export --out holding an export", cli("export", "--run", finished, "--out", out), 2,
           f"--out {out}: already holds an export")
    expect("export --out is a file", cli("export", "--run", finished, "--out", existing), 2,
           f"--out {existing}: exists and is not a directory")
    assert snapshot(out) == exported and snapshot(finished) == before


def test_recommend_with_a_damaged_run(run_copy):
    (run_copy / "config.json").write_bytes(b"\xff\xfe not json")
    expect("recommend --run with a non-UTF-8 config.json", cli("recommend", "--run", run_copy, "--users", "1"), 2,
           f"{run_copy / 'config.json'}: run config is not UTF-8 text")


# ----------------------------------------------------------------------------------------------------------------
# data_prep from raw Amazon files: every failure names the input file (and line)


def write_raw(raw: Path, reviews_gz: bytes) -> None:
    raw.mkdir()
    (raw / "reviews_Tiny_5.json.gz").write_bytes(reviews_gz)
    (raw / "meta_Tiny.json.gz").write_bytes(gzip.compress(b"{'asin': 'i1', 'title': 't'}\n"))


def test_data_prep_raw_file_failures(tmp_path):
    review = b'{"reviewerID": "u%d", "asin": "i%d", "overall": 5.0, "unixReviewTime": %d}\n'
    lines = [review % (u, i, u * 100 + i) for u in range(8) for i in range(8)]
    good = b"".join(lines)
    cases = [
        ("truncated .json.gz", gzip.compress(good)[:-40], "reviews_Tiny_5.json.gz: damaged or truncated gzip stream"),
        ("empty reviews file", b"", "reviews_Tiny_5.json.gz: no interactions (the file is empty)"),
        ("non-UTF-8 review line", b"".join(lines[:3]) + b"\xff\xfe\n" + b"".join(lines[3:]),
         "reviews_Tiny_5.json.gz:4: not UTF-8"),
        ("review line that is not JSON", good + b"{oops\n", "reviews_Tiny_5.json.gz:65: expected a JSON object"),
    ]
    for k, (case, payload, needle) in enumerate(cases):
        raw = tmp_path / f"raw{k}"
        write_raw(raw, payload if case == "truncated .json.gz" else gzip.compress(payload))
        proc = data_prep("tiny", "--raw", raw, "--category", "Tiny", "--out", tmp_path / f"out{k}",
                         "--text-encoder", "hashing", "--image-encoder", "none", "--no-progress")
        expect(f"python -m data_prep --raw: {case}", proc, 2, f"{raw}/{needle}")
        assert not (tmp_path / f"out{k}").exists()
    expect("python -m data_prep --raw missing dir", data_prep("tiny", "--raw", tmp_path / "nope"), 2,
           f"--raw {tmp_path / 'nope'}: not a directory")
    expect("python -m data_prep --raw without the category's files",
           data_prep("tiny", "--raw", tmp_path / "raw0", "--category", "Nope", "--image-encoder", "none"), 2,
           "no interaction file for Nope")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "recbole-1.2.1-py3-none-any.whl").write_bytes(b"not a zip")
    expect("python -m data_prep ml100k with a damaged cached wheel",
           data_prep("ml100k", "--cache", tmp_path / "cache", "--out", tmp_path / "ml"), 2,
           "recbole-1.2.1-py3-none-any.whl: damaged or not the recbole 1.2.1 wheel")
