"""The results-table driver: one real end-to-end table on tiny data, and the selection rule on planted results."""

import csv
import json
from pathlib import Path

import pytest

from experiments import run_table
from lgmrec_jax import train as train_lib
from lgmrec_jax.config import ConfigError, load_config

TINY = ["train.epochs=2", "train.train_batch_size=512", "train.eval_batch_size=256"]


def test_table_end_to_end_and_reuse(tmp_path, monkeypatch):
    args = ["--models", "lightgcn", "--dataset", "synthetic-tiny", "--seeds", "2", "--set", *TINY,
            "--runs-root", str(tmp_path / "runs"), "--out", str(tmp_path / "results")]
    assert run_table.main(args) == 0
    stem = tmp_path / "results" / "main_synthetic-tiny"
    md = stem.with_suffix(".md").read_text()
    assert "**validation** Recall@20" in md and "quick_start" in md  # the selection rule is stated
    assert "train.epochs = 2" in md and "no paper column" in md
    assert "reached the epoch cap before early stopping" in md and "lightgcn 2/2" in md
    rows = list(csv.DictReader(open(stem.with_suffix(".csv"))))
    assert [r["model"] for r in rows] == ["lightgcn", "popularity (train counts)"]
    assert rows[0]["n_seeds"] == "2" and float(rows[0]["recall@20_std"]) >= 0
    assert stem.with_suffix(".png").stat().st_size > 0
    outcome = json.loads(stem.with_suffix(".json").read_text())["outcomes"]["lightgcn"]
    run_dirs = [r["run_dir"] for r in outcome["candidates"][0]["results"]]
    assert [d.rsplit("seed", 1)[1] for d in run_dirs] == ["999", "1000"]  # different train.seed per run
    for d in run_dirs:
        card = json.loads((Path(d) / "repro.json").read_text())  # written by the train loop into every run
        assert card["seed"] == int(d.rsplit("seed", 1)[1]) and card["data"]["name"] == "synthetic-tiny"

    # A second invocation reuses the finished runs: training must not be called.
    def no_training(*a, **k):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(train_lib, "train_and_evaluate", no_training)
    assert run_table.main(args) == 0
    assert stem.with_suffix(".md").read_text().split("Table written at")[0] == md.split("Table written at")[0]


def fake_result(valid_r20, test_r20, epoch=3):
    metrics = lambda r20: {"recall@10": r20 / 2, "recall@20": r20, "ndcg@10": r20 / 3, "ndcg@20": r20 / 2.5}
    return {"valid": metrics(valid_r20), "test": metrics(test_r20), "best_epoch": epoch, "epochs_run": epoch + 21,
            "popularity": {"test": metrics(0.01)}, "run_dir": "x", "reused": False}


def test_grid_point_is_chosen_by_validation_not_test(monkeypatch):
    # Planted: alpha=0.2 has the best validation score, alpha=0.8 the best test score.
    planted = {0.2: (0.30, 0.10), 0.5: (0.20, 0.20), 0.8: (0.10, 0.40)}

    def fake_run_seeds(cfg, data, seeds, root, reuse, progress, log=print):
        valid, test = planted[cfg.model.alpha]
        return [fake_result(valid + 0.001 * s, test) for s in range(len(seeds))]

    monkeypatch.setattr(run_table, "run_seeds", fake_run_seeds)
    cfg = load_config("lgmrec", "synthetic-tiny", overrides=["grid.alpha=[0.2, 0.5, 0.8]"])
    outcome = run_table.evaluate_grid(cfg, None, [1, 2], True, "unused", True, False, log=lambda *a: None,
                                      grid_keys=["alpha"])
    assert outcome["candidates"][outcome["chosen"]]["point"] == {"alpha": 0.2}
    table = run_table.main_table("synthetic-tiny", {"lgmrec": outcome}, 2, {"lgmrec": cfg}, {}, True)
    assert "alpha=0.2 (best of 3 grid points)" in table.rows[0]["config"]
    assert table.rows[0]["recall@20"][0] == pytest.approx(0.10)  # its test score is reported, not the best test


def test_paper_columns_appear_for_benchmark_datasets():
    results = [fake_result(0.1, 0.1), fake_result(0.12, 0.11)]
    outcome = {"chosen": 0, "candidates": [{"point": {}, "key": "k", "results": results,
                                            "summary": run_table.summarize(results)}]}
    cfg = load_config("lgmrec", "baby")
    table = run_table.main_table("baby", {"lgmrec": outcome}, 2, {"lgmrec": cfg}, {"gume": "ImportError: x"}, False)
    assert table.rows[0]["paper_recall@20"] == 0.1002 and table.rows[0]["paper_source"] == "LGMRec logs, BEST block"
    assert any("Not run: gume (ImportError: x)" in n for n in table.notes)
    assert any("Every run ended by early stopping" in n for n in table.notes)  # 24 epochs run, cap 1000


def test_run_key_ignores_seed_and_paths_but_not_hyperparameters():
    cfg = load_config("lightgcn", "synthetic-tiny")
    assert run_table.config_key(cfg) == run_table.config_key(run_table.with_seed(cfg, 5))
    assert run_table.config_key(cfg) == run_table.config_key(cfg.with_overrides({"train.runs_dir": "/else"}))
    assert run_table.config_key(cfg) != run_table.config_key(cfg.with_overrides({"model.n_ui_layers": 3}))
    assert run_table.config_key(cfg) != run_table.config_key(cfg.with_overrides({"train.epochs": 7}))


def test_overrides_can_target_one_model_and_unknown_models_are_errors():
    items = ["train.epochs=5", "lgmrec:model.alpha=0.2", "gume:model.vt_loss=0.0"]
    assert run_table.split_overrides(items, "lgmrec") == ["train.epochs=5", "model.alpha=0.2"]
    assert run_table.split_overrides(items, "lightgcn") == ["train.epochs=5"]
    with pytest.raises(ConfigError, match="lightgnc"):
        run_table.load_model_configs(["lightgnc"], "synthetic-tiny", [])
    assert run_table.grid_points({"b": [1, 2], "a": [3]}) == [{"a": 3, "b": 1}, {"a": 3, "b": 2}]
    assert run_table.grid_points({}) == [{}]


def test_full_product_of_the_authors_ranges_is_refused():
    # lgmrec's [grid] lists the authors' one-at-a-time ranges; their product must not start millions of runs.
    cfg = load_config("lgmrec", "synthetic-tiny")
    with pytest.raises(ConfigError, match="--grid-keys"):
        run_table.restrict_grid(cfg)
    assert run_table.restrict_grid(cfg, ["hyper_num"]) == {"hyper_num": list(cfg.grid["hyper_num"])}
    with pytest.raises(ConfigError, match="hyper_nmu"):
        run_table.restrict_grid(cfg, ["hyper_nmu"])


def test_a_larger_cap_extends_the_finished_shorter_run(tmp_path):
    from lgmrec_jax.data import synthetic
    data = synthetic.generate("tiny", seed=1)
    base = ["train.train_batch_size=512", "train.eval_batch_size=256", "train.seed=4"]
    cfg = lambda epochs: load_config("lightgcn", "synthetic-tiny", overrides=base + [f"train.epochs={epochs}"])
    short = run_table.run_one(cfg(2), data, tmp_path / "runs")
    short_files = {p: p.read_bytes() for p in Path(short["run_dir"]).rglob("*") if p.is_file() and p.name != ".lock"}
    straight = run_table.run_one(cfg(4), data, tmp_path / "straight")
    assert "extended_from" not in straight

    extended = run_table.run_one(cfg(4), data, tmp_path / "runs")
    assert extended["extended_from"] == short["run_dir"] and extended["run_dir"] != short["run_dir"]
    assert extended["epochs_run"] == 4 and extended["test"] == straight["test"]
    assert extended["best_epoch"] == straight["best_epoch"]
    logged = lambda d: [{k: v for k, v in json.loads(line).items() if not k.endswith("_seconds")}
                        for line in (Path(d) / "metrics.jsonl").read_text().splitlines()]
    assert logged(extended["run_dir"]) == logged(straight["run_dir"])
    # The shorter run is left exactly as it was; asking again reuses the extended run.
    assert {p: p.read_bytes() for p in short_files} == short_files
    assert run_table.run_one(cfg(4), data, tmp_path / "runs")["reused"]
    assert run_table.shorter_run(tmp_path / "runs", cfg(3)) == Path(short["run_dir"])
    assert run_table.shorter_run(tmp_path / "runs", cfg(2)) is None  # not smaller than itself
