"""BM3 against the independent float64 reference (tests/models/reference_bm3.py): forward, every loss term and the
gradients, the target dropout's draws, init, and batches without negatives."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lgmrec_jax import parallel
from lgmrec_jax import train as train_lib
from lgmrec_jax.data import Dataset, sampler
from lgmrec_jax.models import bm3
from tests.models import reference_bm3 as ref
from tests.models.gradcheck import max_leaf_rel_err, numeric_gradient, random_params

CFG = bm3.Config(embedding_size=8, n_layers=2, dropout=0.3, reg_weight=0.2, cl_weight=0.7)
DIMS = {"image": 10, "text": 7}
TOL = 1e-5


def make_data(modalities=("image", "text"), seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    n_users, n_items = 13, 11
    keys = rng.choice(n_users * n_items, size=45, replace=False)
    pairs = np.stack([keys // n_items, keys % n_items], axis=1).astype(np.int32)
    feats = {m: rng.normal(size=(n_items, DIMS[m])).astype(np.float32) for m in modalities}
    return Dataset(name="bm3-test", n_users=n_users, n_items=n_items, train=pairs[:38], valid=pairs[38:42],
                   test=pairs[42:], features=feats)


def make_batch(data: Dataset, seed: int = 1) -> dict:
    """8 real (user, positive) rows, a user and an item repeated, then 4 padding rows; no negatives."""
    rng = np.random.default_rng(seed)
    rows = data.train[rng.choice(len(data.train), 8, replace=False)]
    rows[1, 0] = rows[0, 0]
    rows[3, 1] = rows[2, 1]
    return {"users": jnp.asarray(np.r_[rows[:, 0], rng.integers(0, data.n_users, 4)], jnp.int32),
            "pos": jnp.asarray(np.r_[rows[:, 1], rng.integers(0, data.n_items, 4)], jnp.int32),
            "mask": jnp.asarray(np.r_[np.ones(8), np.zeros(4)], jnp.float32)}


def perturbed_params(data: Dataset, seed: int = 0) -> dict:
    return random_params(lambda key: bm3.init(key, CFG, data), seed)


def full_table_masks(key, data: Dataset, cfg) -> dict:
    """The keep-masks of the WHOLE target tables, as MMRec draws them, from the model's per-row draws."""
    keep, d = 1 - cfg.dropout, cfg.embedding_size
    rows = lambda tag, n: np.asarray(bm3.row_keep_masks(jax.random.fold_in(key, tag), jnp.arange(n), d, keep))  # noqa
    return {"user": rows(bm3.USER_TAG, data.n_users), "item": rows(bm3.ITEM_TAG, data.n_items),
            "features": {m: rows(bm3.FEATURE_TAG + j, data.n_items) for j, m in enumerate(sorted(data.features))}}


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


VALUE_AND_GRAD = jax.jit(jax.value_and_grad(bm3.loss_with_noise, has_aux=True), static_argnums=4)


@pytest.mark.parametrize("modalities, dropout", [(("image", "text"), 0.3), (("text",), 0.0)])
def test_forward_loss_and_gradients_match_reference(modalities, dropout):
    cfg = dataclasses.replace(CFG, dropout=dropout)
    data = make_data(modalities)
    graphs = bm3.build_graphs(data, cfg, "segment_sum")
    adj = ref.adjacency(data.n_users, data.n_items, data.train)
    np.testing.assert_allclose(graphs["adj"].todense(), adj, rtol=1e-6, atol=1e-9)
    params, batch = perturbed_params(data), make_batch(data)

    users, items, _ = jax.jit(bm3.apply, static_argnums=(4, 5))(params, graphs, {}, None, False, cfg)
    want_users, want_items = ref.scores_embeddings(params, adj, cfg)
    assert rel_err(users, want_users) <= TOL and rel_err(items, want_items) <= TOL

    key = jax.random.PRNGKey(4)
    noise = bm3.sample_noise(key, batch, data.features, cfg.embedding_size, cfg)
    masks = None if dropout == 0 else full_table_masks(key, data, cfg)
    (total, parts), grads = VALUE_AND_GRAD(params, graphs, batch, noise, cfg)
    want_total, want_parts = ref.loss(params, adj, batch, masks, cfg)
    assert rel_err(total, want_total) <= TOL
    for name, value in want_parts.items():
        assert rel_err(parts[name], value) <= TOL, name
    assert min(want_parts["align"], want_parts["mask"]) > 0.05  # the modality terms are exercised

    base = jax.tree.map(lambda x: np.asarray(x, np.float64), params)  # the detached targets' parameters
    want_grads = numeric_gradient(lambda p: ref.loss(p, adj, batch, masks, cfg, target_params=base)[0], params)
    assert max_leaf_rel_err(grads, want_grads) <= TOL


def test_target_dropout_draws():
    """Per-row masks: a row repeated in the batch gets one mask, the batch's rows are the full table's rows, tables
    and keys draw independently, and the kept fraction is 1 − dropout."""
    data = make_data()
    batch = make_batch(data)
    key = jax.random.PRNGKey(int(np.random.default_rng().integers(1 << 30)))
    noise = jax.tree.map(np.asarray, bm3.sample_noise(key, batch, data.features, 8, CFG))
    full = full_table_masks(key, data, CFG)
    np.testing.assert_array_equal(noise["user"], full["user"][np.asarray(batch["users"])])
    np.testing.assert_array_equal(noise["item"], full["item"][np.asarray(batch["pos"])])
    np.testing.assert_array_equal(noise["features"]["text"], full["features"]["text"][np.asarray(batch["pos"])])
    np.testing.assert_array_equal(noise["user"][0], noise["user"][1])  # the repeated user
    assert not np.array_equal(full["item"], full["features"]["image"])
    other = bm3.sample_noise(jax.random.fold_in(key, 1), batch, data.features, 8, CFG)
    assert not np.array_equal(noise["user"], other["user"])
    many = np.asarray(bm3.row_keep_masks(key, jnp.arange(5000), 8, 1 - CFG.dropout))
    assert abs(many.mean() - (1 - CFG.dropout)) < 0.01  # 40,000 draws: 6 standard deviations
    assert bm3.sample_noise(key, batch, data.features, 8, dataclasses.replace(CFG, dropout=0.0)) is None


def test_loss_uses_the_key():
    data = make_data()
    graphs = bm3.build_graphs(data, CFG, "segment_sum")
    params, batch = perturbed_params(data, 1), make_batch(data, 2)
    key = jax.random.PRNGKey(9)
    loss = jax.jit(bm3.loss, static_argnums=5)
    total, _ = loss(params, graphs, {}, batch, key, CFG)
    (want, _), _ = VALUE_AND_GRAD(params, graphs, batch, bm3.sample_noise(key, batch, data.features, 8, CFG), CFG)
    np.testing.assert_allclose(total, want, rtol=1e-6)
    assert float(loss(params, graphs, {}, batch, jax.random.PRNGKey(10), CFG)[0]) != float(total)


def test_init_matches_torch():
    """xavier_normal_ (untruncated N(0, 2/(fan_in + fan_out))) for the predictor and projections, torch's default
    bias, xavier_uniform_ tables, trainable feature copies."""
    rng = np.random.default_rng(0)
    data = Dataset(name="init", n_users=50, n_items=300, train=np.array([[0, 0]], np.int32),
                   valid=np.zeros((0, 2), np.int32), test=np.zeros((0, 2), np.int32),
                   features={"image": rng.normal(size=(300, 200)).astype(np.float32)})
    params = bm3.init(jax.random.PRNGKey(0), bm3.Config(embedding_size=64), data)
    kernel = np.asarray(params["modalities"]["image"]["trs"]["kernel"])
    std = np.sqrt(2 / (200 + 64))
    assert kernel.shape == (200, 64) and abs(kernel.std() / std - 1) < 0.03
    assert np.abs(kernel).max() > 3.5 * std  # not truncated at 2 std
    bias = np.asarray(params["modalities"]["image"]["trs"]["bias"])
    assert 0.8 / np.sqrt(200) < np.abs(bias).max() <= 1 / np.sqrt(200)
    assert params["predictor"]["kernel"].shape == (64, 64)
    np.testing.assert_array_equal(params["modalities"]["image"]["features"], data.features["image"])
    assert np.abs(params["user_embedding"]).max() <= np.sqrt(6 / (50 + 64))


def test_batches_carry_no_negatives():
    """USES_NEGATIVES = False: the epoch program's batches have no "neg" and the sampler's negative draw is never
    traced; the rows are those a BPR model sees."""
    data = make_data()
    tables = sampler.build_tables(data, batch_size=8)
    key = jax.random.PRNGKey(0)
    order = sampler.epoch_order(tables, key)
    with_neg = sampler.batch_at(tables, order, jnp.int32(1), key)
    without = sampler.batch_at(tables, order, jnp.int32(1), key, negatives=False)
    assert set(without) == {"users", "pos", "mask"} and "neg" in with_neg
    for name in without:
        np.testing.assert_array_equal(without[name], with_neg[name])

    assert not train_lib.uses_negatives(bm3) and train_lib.uses_negatives(train_lib.get_model("lightgcn"))
    seen = []

    def step(state, graphs, feats, batch):
        seen.append(sorted(batch))
        return state, {"loss": jnp.zeros(())}

    run_steps = train_lib.make_run_steps(step, parallel.batch_sharded(parallel.make_mesh(1)), negatives=False)
    jax.eval_shape(lambda: run_steps(jnp.zeros(()), {}, {}, tables, order, key, jnp.int32(0), 2))
    assert seen and all(keys == ["mask", "pos", "users"] for keys in seen)
