"""FREEDOM against the independent float64 reference (tests/models/reference_freedom.py): graphs, forward, loss
terms and gradients, the pruning sampler's distribution, and the per-epoch key."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lgmrec_jax import train as train_lib
from lgmrec_jax.data import Dataset
from lgmrec_jax.models import freedom
from tests.models import reference_freedom as ref
from tests.models.gradcheck import max_leaf_rel_err, numeric_gradient, random_params

# Small but not degenerate: 2 item-item and 2 user-item layers, 40% of the edges pruned, modality terms weighted.
CFG = freedom.Config(embedding_size=8, feat_embed_dim=8, knn_k=4, n_mm_layers=2, n_ui_layers=2, mm_image_weight=0.3,
                     dropout=0.4, reg_weight=0.5)
DIMS = {"image": 10, "text": 7, "meta": 5}
TOL = 1e-5


def make_data(modalities=("image", "text"), seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    n_users, n_items = 13, 11
    keys = rng.choice(n_users * (n_items - 1), size=45, replace=False)  # the last item is never interacted
    pairs = np.stack([keys // (n_items - 1), keys % (n_items - 1)], axis=1).astype(np.int32)
    latent = rng.normal(size=(n_items, 3))
    feats = {m: (latent @ rng.normal(size=(3, DIMS[m])) + 0.5 * rng.normal(size=(n_items, DIMS[m])))
             .astype(np.float32) for m in modalities}
    return Dataset(name="freedom-test", n_users=n_users, n_items=n_items, train=pairs[:38], valid=pairs[38:42],
                   test=pairs[42:], features=feats)


def make_batch(data: Dataset, seed: int = 1) -> dict:
    """8 real rows (a repeated user) and 4 padding rows of random ids."""
    rng = np.random.default_rng(seed)
    rows = data.train[rng.choice(len(data.train), 8, replace=False)]
    rows[1, 0] = rows[0, 0]
    return {"users": jnp.asarray(np.r_[rows[:, 0], rng.integers(0, data.n_users, 4)], jnp.int32),
            "pos": jnp.asarray(np.r_[rows[:, 1], rng.integers(0, data.n_items, 4)], jnp.int32),
            "neg": jnp.asarray(rng.integers(0, data.n_items, 12), jnp.int32),
            "mask": jnp.asarray(np.r_[np.ones(8), np.zeros(4)], jnp.float32)}


def perturbed_params(data: Dataset, seed: int = 0) -> dict:
    return random_params(lambda key: freedom.init(key, CFG, data), seed)


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.mark.parametrize("modalities", [("image", "text"), ("text",), ("meta", "text"), ("image", "meta", "text")])
def test_graphs_match_reference(modalities):
    data = make_data(modalities)
    graphs = freedom.build_graphs(data, CFG, "segment_sum")
    want = ref.graphs(data.n_users, data.n_items, data.train, data.features, CFG.knn_k, CFG.mm_image_weight)
    np.testing.assert_allclose(graphs["item_item"].todense(), want["item_item"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(graphs["adj"].todense(), want["adj"], rtol=1e-6, atol=1e-9)
    edges = graphs["edges"]
    assert list(zip(np.asarray(edges["users"]).tolist(), np.asarray(edges["items"]).tolist())) == want["pairs"]
    np.testing.assert_allclose(np.exp(np.asarray(edges["log_weight"], np.float64)), want["weights"], rtol=1e-6)


VALUE_AND_GRAD = jax.jit(jax.value_and_grad(freedom.loss_with_kept, has_aux=True), static_argnums=4)


def test_forward_loss_and_gradients_match_reference():
    data = make_data()
    graphs = freedom.build_graphs(data, CFG, "segment_sum")
    g_ref = ref.graphs(data.n_users, data.n_items, data.train, data.features, CFG.knn_k, CFG.mm_image_weight)
    params, batch = perturbed_params(data), make_batch(data)
    kept = freedom.sample_pruning(jax.random.PRNGKey(7), graphs, CFG)
    assert kept.shape == (int(len(g_ref["pairs"]) * (1 - CFG.dropout)),)
    kept_list = np.asarray(kept).tolist()

    # The pruned training graph, and evaluation's full graph (apply with train=False).
    users, items = jax.jit(freedom.forward, static_argnums=3)(params, graphs, kept, CFG)
    want_users, want_items = ref.forward(params, g_ref, kept_list, CFG)
    assert rel_err(users, want_users) <= TOL and rel_err(items, want_items) <= TOL
    users, items, _ = jax.jit(freedom.apply, static_argnums=(4, 5))(params, graphs, {}, None, False, CFG)
    want_users, want_items = ref.forward(params, g_ref, None, CFG)
    assert rel_err(users, want_users) <= TOL and rel_err(items, want_items) <= TOL

    (total, parts), grads = VALUE_AND_GRAD(params, graphs, batch, kept, CFG)
    want_total, want_parts = ref.loss(params, g_ref, kept_list, batch, CFG)
    assert rel_err(total, want_total) <= TOL
    for name, value in want_parts.items():
        assert rel_err(parts[name], value) <= TOL, name
    assert want_parts["modality_bpr"] > 0.1 * want_parts["bpr"]  # the modality terms matter in the total

    want_grads = numeric_gradient(lambda p: ref.loss(p, g_ref, kept_list, batch, CFG)[0], params)
    assert max_leaf_rel_err(grads, want_grads) <= TOL
    # The features are fine-tuned: the rows of the batch's real positives and negatives move, no other row does.
    feature_grad = np.abs(np.asarray(grads["modalities"]["image"]["features"])).max(axis=1)
    used = np.zeros(data.n_items, bool)
    used[np.r_[np.asarray(batch["pos"])[:8], np.asarray(batch["neg"])[:8]]] = True
    assert np.all(feature_grad[used] > 0) and np.all(feature_grad[~used] == 0)


def test_pruning_keeps_existing_edges_and_renormalises():
    data = make_data()
    graphs = freedom.build_graphs(data, CFG, "segment_sum")
    n_edges = len(np.unique(data.train, axis=0))
    kept = np.asarray(freedom.sample_pruning(jax.random.PRNGKey(3), graphs, CFG))
    assert len(kept) == int(n_edges * (1 - CFG.dropout)) and len(set(kept.tolist())) == len(kept)
    assert np.all(np.diff(kept) > 0) and kept.min() >= 0 and kept.max() < n_edges
    u, i, values = (np.asarray(x) for x in freedom.pruned_graph(graphs, jnp.asarray(kept), data.n_users,
                                                                data.n_items))
    assert set(zip(u.tolist(), i.tolist())) <= set(map(tuple, data.train.tolist()))
    d_u, d_i = np.bincount(u, minlength=data.n_users), np.bincount(i, minlength=data.n_items)
    np.testing.assert_allclose(values, 1 / np.sqrt((d_u[u] + 1e-7) * (d_i[i] + 1e-7)), rtol=1e-6)
    # Another key prunes differently; dropout 0 is the full graph (no draw at all).
    assert not np.array_equal(kept, freedom.sample_pruning(jax.random.PRNGKey(4), graphs, CFG))
    assert freedom.sample_pruning(jax.random.PRNGKey(3), graphs, dataclasses.replace(CFG, dropout=0.0)) is None


@pytest.mark.parametrize("n_keep", [1, 2])
def test_edge_sampling_is_weighted_sampling_without_replacement(n_keep):
    """Inclusion frequencies over 20,000 draws (fixed seed) against the exact inclusion probabilities of successive
    sampling without replacement ∝ weight (torch.multinomial(w, n_keep)); for one kept edge they are ∝ weight."""
    weights = np.array([0.05, 0.1, 0.2, 0.3, 0.35])
    draws = 20_000
    keys = jax.random.split(jax.random.PRNGKey(11), draws)
    ids = jax.jit(jax.vmap(lambda k: freedom.sample_kept_edges(k, jnp.log(jnp.asarray(weights, jnp.float32)),
                                                                n_keep)))(keys)
    ids = np.asarray(ids)
    assert np.all(np.diff(ids, axis=1) > 0)  # distinct, ascending
    freq = np.bincount(ids.ravel(), minlength=len(weights)) / draws
    want = ref.inclusion_probabilities(weights, n_keep)
    if n_keep == 1:
        np.testing.assert_allclose(want, weights / weights.sum())
    z = (freq - want) / np.sqrt(want * (1 - want) / draws)
    assert np.abs(z).max() < 4.0, (freq, want)


def test_loss_draws_the_pruned_graph_from_the_key():
    data = make_data()
    graphs = freedom.build_graphs(data, CFG, "segment_sum")
    params, batch = perturbed_params(data, 1), make_batch(data, 2)
    key = jax.random.PRNGKey(5)
    loss = jax.jit(freedom.loss, static_argnums=5)
    total, _ = loss(params, graphs, {}, batch, key, CFG)
    (want, _), _ = VALUE_AND_GRAD(params, graphs, batch, freedom.sample_pruning(key, graphs, CFG), CFG)
    np.testing.assert_allclose(total, want, rtol=1e-6)
    assert float(loss(params, graphs, {}, batch, jax.random.PRNGKey(6), CFG)[0]) != float(total)


def test_the_trainer_gives_one_key_per_epoch():
    """PER_EPOCH_KEY: every step of an epoch gets the same key (one pruned graph per epoch, as MMRec), epochs
    differ, and no epoch key equals a step key."""
    assert freedom.PER_EPOCH_KEY and not getattr(train_lib.get_model("lightgcn"), "PER_EPOCH_KEY", False)
    run_key = jax.random.PRNGKey(3)
    keys = [tuple(np.asarray(train_lib.model_key(run_key, jnp.int32(s), 4)).tolist())
            for s in range(12)]
    assert keys[0] == keys[3] and keys[4] == keys[7] and len(set(keys)) == 3
    steps = {tuple(np.asarray(train_lib.model_key(run_key, jnp.int32(s))).tolist())
             for s in range(12)}
    assert not steps & set(keys)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        train_lib.make_train_step(freedom, CFG, None)


def test_init_matches_torch_defaults_and_config_checks():
    data = make_data()
    params = freedom.init(jax.random.PRNGKey(0), CFG, data)
    image = params["modalities"]["image"]
    np.testing.assert_array_equal(image["features"], data.features["image"])
    bound = 1 / np.sqrt(DIMS["image"])
    for w in (image["trs"]["kernel"], image["trs"]["bias"]):
        assert 0.5 * bound < np.abs(w).max() <= bound
    assert image["trs"]["kernel"].shape == (DIMS["image"], CFG.feat_embed_dim)
    with pytest.raises(ValueError, match="feat_embed_dim"):
        freedom.init(jax.random.PRNGKey(0), dataclasses.replace(CFG, feat_embed_dim=4), data)
    with pytest.raises(ValueError, match="at least one item modality"):
        freedom.build_graphs(dataclasses.replace(data, features={}), CFG, "bcoo")
