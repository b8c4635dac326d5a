"""Metrics against a brute-force NumPy implementation of SPEC §2.3, and hand-computed cases."""

import numpy as np
import pytest

from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.evaluation import Evaluator, popularity_scores


def brute_force(scores, train, truth, ks):
    """Per-user loops, float64, straight from the definitions."""
    scores = scores.astype(np.float64).copy()
    users = sorted({u for u, _ in truth})
    out = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision", "map")}
    for u in users:
        for _, i in [p for p in train if p[0] == u]:
            scores[u, i] = -np.inf
        gt = {i for uu, i in truth if uu == u}
        ranking = sorted(range(scores.shape[1]), key=lambda i: -scores[u, i])  # scores are distinct
        for k in ks:
            hit = [1.0 if ranking[r] in gt else 0.0 for r in range(k)]
            ideal = min(k, len(gt))
            out[f"recall@{k}"] += sum(hit) / len(gt)
            out[f"precision@{k}"] += sum(hit) / k
            dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hit))
            idcg = sum(1 / np.log2(r + 2) for r in range(ideal))
            out[f"ndcg@{k}"] += dcg / idcg
            ap = sum(sum(hit[: r + 1]) / (r + 1) * hit[r] for r in range(k))
            out[f"map@{k}"] += ap / ideal
    return {name: round(v / len(users), 4) for name, v in out.items()}


def make_data(rng, n_users, n_items, n_train, n_test):
    def pairs(n):
        return np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], 1).astype(np.int32)
    train, test = pairs(n_train), pairs(n_test)
    return Dataset("t", n_users, n_items, train, test, test, {})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_cases(seed):
    rng = np.random.default_rng(1000 + seed)
    n_users, n_items, d = 37, 53, 8
    data = make_data(rng, n_users, n_items, 300, 90)
    user_emb = rng.normal(size=(n_users, d)).astype(np.float32)
    item_emb = rng.normal(size=(n_items, d)).astype(np.float32)
    # batch size that does not divide the user count: exercises the padded last batch
    got = Evaluator(data, "test", topk=(5, 10, 20), batch_size=16)(user_emb, item_emb)
    want = brute_force(user_emb @ item_emb.T, data.train.tolist(), data.test.tolist(), (5, 10, 20))
    assert got == pytest.approx(want, abs=1.01e-4)  # both rounded to 4 decimals


def test_hand_computed_case():
    # 1 user, 6 items; scores rank items 0..5 in order 5,4,3,2,1,0. Item 5 is a training item (masked),
    # so the ranking is 4,3,2,1,0. Ground truth {3, 0}.
    data = Dataset("hand", 1, 6, np.array([[0, 5]], np.int32), np.array([[0, 3], [0, 0]], np.int32),
                   np.array([[0, 3], [0, 0]], np.int32), {})
    user = np.ones((1, 1), np.float32)
    items = np.arange(6, dtype=np.float32)[:, None]
    m = Evaluator(data, "test", topk=(2, 5))(user, items)
    # @2: ranks [4, 3] → hit at rank 2. recall 1/2, precision 1/2, ndcg (1/log2 3)/(1 + 1/log2 3),
    #      map (P@2 · 1) / min(2, 2) = (1/2)/2.
    assert m["recall@2"] == 0.5
    assert m["precision@2"] == 0.5
    assert m["ndcg@2"] == round((1 / np.log2(3)) / (1 + 1 / np.log2(3)), 4)
    assert m["map@2"] == 0.25
    # @5: hits at ranks 2 and 5. recall 1, precision 2/5, map (1/2 + 2/5)/2.
    assert m["recall@5"] == 1.0
    assert m["precision@5"] == 0.4
    assert m["map@5"] == round((0.5 + 0.4) / 2, 4)
    assert m["ndcg@5"] == round((1 / np.log2(3) + 1 / np.log2(6)) / (1 + 1 / np.log2(3)), 4)


def test_validation_items_are_not_masked_at_test_time():
    # The user's validation item is the top-scored item; at test time it must still occupy rank 1 (MMRec).
    data = Dataset("v", 1, 4, np.array([[0, 0]], np.int32), np.array([[0, 3]], np.int32),
                   np.array([[0, 2]], np.int32), {})
    items = np.array([[9.0], [1.0], [2.0], [3.0]], np.float32)
    m = Evaluator(data, "test", topk=(1, 2))(np.ones((1, 1), np.float32), items)
    assert m["recall@1"] == 0.0 and m["recall@2"] == 1.0


def test_popularity_ranks_by_training_count():
    train = np.array([[0, 2], [1, 2], [2, 2], [0, 1], [1, 1], [2, 0]], np.int32)
    data = Dataset("p", 4, 4, train, train, np.array([[3, 2]], np.int32), {})
    users, items = popularity_scores(data)
    assert (users @ items.T)[3].tolist() == [1.0, 2.0, 3.0, 0.0]
    assert Evaluator(data, "test", topk=(1,))(users, items)["recall@1"] == 1.0
