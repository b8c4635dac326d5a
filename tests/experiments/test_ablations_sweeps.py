"""Ablation and sweep drivers on planted results: the right switches, the right deltas, the validation mark."""

import dataclasses

import pytest

from experiments import ablations, run_table, sweeps
from lgmrec_jax.config import load_config


def planted(valid, test, epoch=4):
    metrics = lambda r: {"recall@10": r / 2, "recall@20": r, "ndcg@10": r / 3, "ndcg@20": r / 2.5}
    return {"valid": metrics(valid), "test": metrics(test), "best_epoch": epoch, "epochs_run": epoch + 21,
            "popularity": {"test": metrics(0.01)}}


def test_switch_names_exist_in_the_lgmrec_config():
    cfg = load_config("lgmrec", "synthetic-tiny")
    ablations.check_switches(cfg.model)  # fails if lgmrec.py renames use_cge/use_mge/use_ghe/use_hcl
    Renamed = dataclasses.make_dataclass("Config", [("use_cge", bool), ("use_mge", bool)], frozen=True)
    with pytest.raises(KeyError, match="use_ghe"):
        ablations.check_switches(Renamed(True, True))


def test_ablation_rows_and_deltas(monkeypatch, tmp_path):
    seen = []

    def fake_run_seeds(cfg, data, seeds, root, reuse, progress, log=print):
        m = cfg.model
        seen.append((m.use_cge, m.use_mge, m.use_ghe, m.use_hcl))
        score = 0.20 - 0.02 * (not m.use_mge) - 0.01 * (not m.use_ghe)
        return [planted(score, score) for _ in seeds]

    monkeypatch.setattr(ablations, "run_seeds", fake_run_seeds)
    cfg = load_config("lgmrec", "synthetic-tiny")
    rows = ablations.run_ablations(cfg, None, [1, 2], tmp_path, log=lambda *a: None)
    assert seen == [(True,) * 4, (False, True, True, True), (True, False, True, True), (True, True, False, True),
                    (True, True, True, False)]
    table = ablations.ablation_table("synthetic-tiny", rows, cfg, 2)
    by_variant = {r["variant"]: r for r in table.rows}
    assert by_variant["w/o MGE"]["delta"] == "-0.0200 (-10.0%)" and by_variant["full"]["delta"] is None
    assert by_variant["w/o GHE"]["switches"] == "use_ghe=false"
    ablations.plot_ablations(tmp_path / "a.png", "synthetic-tiny", rows)
    assert (tmp_path / "a.png").stat().st_size > 0


def test_sweep_marks_the_validation_choice_not_the_test_best(monkeypatch, tmp_path):
    # Planted: alpha 0.3 is best on validation, 0.7 on test.
    scores = {0.1: (0.10, 0.10), 0.3: (0.30, 0.12), 0.7: (0.20, 0.40)}

    def fake_run_seeds(cfg, data, seeds, root, reuse, progress, log=print):
        return [planted(*scores[cfg.model.alpha]) for _ in seeds]

    monkeypatch.setattr(sweeps, "run_seeds", fake_run_seeds)
    cfg = load_config("lgmrec", "synthetic-tiny")
    rows = sweeps.run_sweep(cfg, None, "alpha", [0.1, 0.3, 0.7], [1], tmp_path, log=lambda *a: None)
    assert [r["key"] for r in rows] == [run_table.config_key(run_table.apply_point(cfg, {"alpha": a}))
                                        for a in (0.1, 0.3, 0.7)]
    table = sweeps.sweep_table("synthetic-tiny", "alpha", rows, cfg, 1)
    assert [r["value"] for r in table.rows] == ["0.1", "0.3 *", "0.7"]
    sweeps.plot_sweep(tmp_path / "s.png", "synthetic-tiny", "hyper_num",
                      [dict(r, value=v) for r, v in zip(rows, (2, 4, 8))])
    assert (tmp_path / "s.png").stat().st_size > 0
    assert sweeps.SWEEPS["alpha"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
