"""The command line as a user meets it: missing datasets fail loudly, never train on something else."""

import json
import subprocess
import sys


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lgmrec_jax.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_missing_dataset_explains_how_to_get_it_and_exits_nonzero(tmp_path):
    proc = run_cli("train", "--model", "lightgcn", "--dataset", "clothing", "--set", "train.data_dir=" +
                   f'"{tmp_path}"', cwd=tmp_path)
    assert proc.returncode != 0
    assert "clothing" in proc.stderr and "make data DATASET=clothing RAW=" in proc.stderr
    assert "Clothing_Shoes_and_Jewelry" in proc.stderr and "MMRec" in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing was trained


def test_unknown_config_key_exits_with_its_name(tmp_path):
    proc = run_cli("train", "--dataset", "synthetic-tiny", "--set", "model.alpah=0.3", cwd=tmp_path)
    assert proc.returncode == 2 and "alpah" in proc.stderr


def test_trains_and_resumes_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--dataset", "synthetic-tiny", "--workdir", str(run), "--no-progress",
            "--set", "train.epochs=2", "train.train_batch_size=512"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "popularity (test)" in proc.stdout and (run / "results.json").exists()
    again = run_cli("train", "--resume", str(run), "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # already finished: restores and re-reports
    longer = run_cli("train", "--resume", str(run), "--extend-to", "3", "--no-progress", cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr
    assert json.loads((run / "results.json").read_text())["epochs_run"] == 3
