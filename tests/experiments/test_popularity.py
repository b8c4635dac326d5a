"""Head/tail analysis: the split rule and the per-group metric on hand-computed cases, agreement with the trainer's
metric when the group is every item, and the driver end to end on tiny data."""

import csv
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import popularity
from lgmrec_jax import train as train_lib
from lgmrec_jax.data import synthetic
from lgmrec_jax.errors import InputError
from lgmrec_jax.evaluation import Evaluator, ranking_metrics

# Training interaction count of items 0..9. Sorted by count (most first), ties by lower id:
#   3 (7), 0 (5), 9 (4), 2 (3), 4 (3), 6 (3), 7 (2), 5 (1), 1 (0), 8 (0)
COUNTS = np.array([5, 0, 3, 7, 3, 1, 3, 2, 0, 4])


def test_head_is_the_most_interacted_fraction_with_ties_broken_by_item_id():
    # 0.3 · 10 = 3 items: 3, 0, 9.
    assert np.flatnonzero(popularity.split_head_tail(COUNTS, 0.3)).tolist() == [0, 3, 9]
    # 0.4 · 10 = 4: the fourth place is a three-way tie at count 3 (items 2, 4, 6); the lowest id, 2, gets it.
    assert np.flatnonzero(popularity.split_head_tail(COUNTS, 0.4)).tolist() == [0, 2, 3, 9]
    # 0.25 · 10 = 2.5 rounds up to 3 items.
    assert popularity.split_head_tail(COUNTS, 0.25).sum() == 3
    # 0.1 · 30 is 3.0000000000000004 in floating point: still 3 items, not 4.
    assert popularity.split_head_tail(np.arange(30), 0.1).sum() == 3
    # Both groups keep an item however small or large the fraction.
    assert popularity.split_head_tail(COUNTS, 0.01).sum() == 1 and popularity.split_head_tail(COUNTS, 0.99).sum() == 9
    with pytest.raises(InputError, match="head-fraction"):
        popularity.split_head_tail(COUNTS, 1.0)


def test_per_group_recall_and_ndcg_on_a_hand_computed_case():
    n_items, k = 10, 3
    head = popularity.split_head_tail(COUNTS, 0.3)  # {0, 3, 9}; tail: every other item
    pad = n_items
    top = jnp.array([[3, 5, 0],    # user A, test items {0, 5, 7}
                     [9, 3, 1],    # user B, test items {2, 4}
                     [1, 2, 9]])   # user C, test items {9}
    gt = jnp.array([[0, 5, 7], [2, 4, pad], [9, pad, pad]])
    d2, d3 = 1 / math.log2(3), 1 / math.log2(4)  # discounts of ranks 2 and 3 (rank 1: 1)

    # Head. A: GT∩H = {0}, hit at rank 3 → recall 1/1, ndcg d3 / 1 = 0.5.  B: no head test item → not averaged.
    # C: GT∩H = {9}, hit at rank 3 → recall 1, ndcg 0.5.  Sums over the 2 users: recall 2, ndcg 1.
    # (A's top-3 also holds head item 3 — not a test item, so no hit.)  Head slots: A 3,0; B 9,3; C 9 → 5 of 9.
    sums = popularity.item_group_sums(top, gt, head, n_items, k)
    assert sums["users"] == 2 and sums["slots"] == 5
    assert sums["recall@3"] == pytest.approx(2.0) and sums["ndcg@3"] == pytest.approx(1.0)

    # Tail. A: GT∩T = {5, 7}; 5 is hit at rank 2 (0 at rank 3 is a hit overall but not a tail item)
    #   → recall 1/2, ndcg d2 / (1 + d2) = 0.6309 / 1.6309 = 0.3869.
    # B: GT∩T = {2, 4}, neither ranked → 0 and 0.  C: no tail test item → not averaged.
    # Tail slots: A 5; B 1; C 1, 2 → 4 of 9.
    sums = popularity.item_group_sums(top, gt, ~head, n_items, k)
    assert sums["users"] == 2 and sums["slots"] == 4
    assert sums["recall@3"] == pytest.approx(0.5) and sums["ndcg@3"] == pytest.approx(d2 / (1 + d2))

    # All items. A: hits at ranks 2, 3 of 3 test items → recall 2/3, ndcg (d2 + d3) / (1 + d2 + d3).
    # B: 0.  C: recall 1, ndcg 0.5.
    sums = popularity.item_group_sums(top, gt, np.ones(n_items, bool), n_items, k)
    assert sums["users"] == 3 and sums["slots"] == 9
    assert sums["recall@3"] == pytest.approx(2 / 3 + 1)
    assert sums["ndcg@3"] == pytest.approx((d2 + d3) / (1 + d2 + d3) + 0.5)


def test_group_of_all_items_is_the_trainer_metric():
    rng = np.random.default_rng(0)
    n_items, pad = 50, 50
    top = jnp.asarray(np.stack([rng.permutation(n_items)[:20] for _ in range(16)]))
    gt = np.full((16, 6), pad)
    for row in gt:  # 1 to 6 test items per user, the rest padding
        n = rng.integers(1, 7)
        row[:n] = rng.choice(n_items, n, replace=False)
    sums = popularity.item_group_sums(top, jnp.asarray(gt), np.ones(n_items, bool), n_items, 20)
    reference = ranking_metrics(top, jnp.asarray(gt), jnp.ones(16), n_items, (20,))
    assert sums["users"] == 16
    for name in ("recall@20", "ndcg@20"):
        assert sums[name] == pytest.approx(float(reference[name]), abs=1e-6)


def test_all_group_recombines_the_evaluator_and_head_plus_tail_shares_are_whole():
    data = synthetic.generate("tiny", seed=2)
    k_u, k_i = jax.random.split(jax.random.PRNGKey(0))
    user_emb = jax.random.normal(k_u, (data.n_users, 8))
    item_emb = jax.random.normal(k_i, (data.n_items, 8))
    head = popularity.split_head_tail(np.bincount(data.train[:, 1], minlength=data.n_items), 0.2)
    out = popularity.popularity_metrics(user_emb, item_emb, data, head, batch=50)
    overall = Evaluator(data, "test", (20,))(user_emb, item_emb)
    for name in ("recall@20", "ndcg@20"):
        # The evaluator rounds to 4 decimals (half a unit: 5e-5), plus float32 summation error.
        assert abs(out["all"][name] - overall[name]) <= 5e-5 + 1e-6
    assert out["head"]["top_share_pct"] + out["tail"]["top_share_pct"] == pytest.approx(100.0)
    assert out["all"]["users"] == np.unique(data.test[:, 0]).size
    stats = popularity.group_stats(data, head)
    assert stats["head"]["items"] == math.ceil(0.2 * data.n_items)
    assert stats["head"]["test_users"] == out["head"]["users"] and stats["tail"]["test_users"] == out["tail"]["users"]
    assert stats["head"]["test_share_pct"] + stats["tail"]["test_share_pct"] == pytest.approx(100.0)


TINY = ["train.epochs=2", "train.train_batch_size=512", "train.eval_batch_size=256"]


def test_driver_end_to_end_then_reuse_only(tmp_path, monkeypatch, capsys):
    def args(seeds, *extra):
        return ["--models", "lightgcn", "--dataset", "synthetic-tiny", "--seeds", str(seeds), "--set", *TINY,
                "--runs-root", str(tmp_path / "runs"), "--out", str(tmp_path / "results"), *extra]

    assert popularity.main(args(1)) == 0
    stem = tmp_path / "results" / "popularity_synthetic-tiny"
    md = stem.with_suffix(".md").read_text()
    assert "ties by lower item id" in md and "|top20 ∩ test ∩ G| / |test ∩ G|" in md
    rows = list(csv.DictReader(open(stem.with_suffix(".csv"))))
    assert [r["model"] for r in rows] == ["lightgcn", popularity.MOST_POPULAR, "test interactions"]
    assert float(rows[0]["share_head_mean"]) + float(rows[0]["share_tail_mean"]) == pytest.approx(100.0, abs=0.2)
    outcome = json.loads(stem.with_suffix(".json").read_text())
    seed = outcome["models"]["lightgcn"]["per_seed"][0]
    assert abs(seed["all"]["recall@20"] - seed["trainer_test_recall"]) <= 5e-5 + 1e-6
    assert stem.with_suffix(".png").stat().st_size > 0

    # Reuse-only: the finished run is analysed again without training, and a missing one is an error, not a run.
    def no_training(*a, **k):
        raise AssertionError("training was started")

    monkeypatch.setattr(train_lib, "train_and_evaluate", no_training)
    assert popularity.main(args(1, "--reuse-only")) == 0
    assert popularity.main(args(2, "--reuse-only")) == 2
    assert "seed1000" in capsys.readouterr().err
