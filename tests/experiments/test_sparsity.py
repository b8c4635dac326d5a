"""Per-group metrics: groups follow training degree, and they recombine to the trainer's overall metric."""

import jax
import numpy as np

from experiments import sparsity
from lgmrec_jax.data import synthetic
from lgmrec_jax.evaluation import Evaluator


def test_groups_follow_training_degree_and_never_split_ties():
    data = synthetic.generate("tiny", seed=2)
    users, group, labels = sparsity.sparsity_groups(data, "test", n_groups=4)
    degree = np.bincount(data.train[:, 0], minlength=data.n_users)[users]
    assert np.array_equal(users, np.unique(data.test[:, 0]))
    for g in range(len(labels) - 1):  # every user of a lower group has fewer interactions than any higher one
        assert degree[group == g].max() < degree[group == g + 1].min()
    assert 2 <= len(labels) <= 4 and np.bincount(group).min() > 0


def test_group_metrics_recombine_to_the_overall_evaluator_metric():
    data = synthetic.generate("tiny", seed=2)
    k_u, k_i = jax.random.split(jax.random.PRNGKey(0))
    user_emb = jax.random.normal(k_u, (data.n_users, 8))
    item_emb = jax.random.normal(k_i, (data.n_items, 8))
    users, group, labels = sparsity.sparsity_groups(data, "test", n_groups=3)
    per_group = sparsity.group_metrics(user_emb, item_emb, data, users, group, len(labels), batch=50)
    overall = Evaluator(data, "test", (20,))(user_emb, item_emb)
    sizes = np.bincount(group, minlength=len(labels))
    for name in ("recall@20", "ndcg@20"):
        recombined = float(np.sum(per_group[name] * sizes) / sizes.sum())
        # The evaluator rounds to 4 decimals (half a unit: 5e-5), plus float32 summation error.
        assert abs(recombined - overall[name]) <= 5e-5 + 1e-6


def test_sparsity_table_layout(tmp_path):
    outcome = {"labels": ["5–9 (10 users)", "10–40 (12 users)"], "group_sizes": [10, 12], "models": {
        "lightgcn": {"per_seed": [{"recall@20": [0.1, 0.2]}, {"recall@20": [0.3, 0.2]}]}}}
    from lgmrec_jax.config import load_config
    table = sparsity.sparsity_table("ml100k", outcome, {"lightgcn": load_config("lightgcn", "ml100k")}, 2, {})
    assert table.rows[0]["lightgcn"][0] == 0.2 and table.rows[1]["lightgcn"] == (0.2, 0.0)
    sparsity.plot_sparsity(tmp_path / "s.png", "ml100k", outcome)
    assert (tmp_path / "s.png").exists()
