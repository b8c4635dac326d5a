"""GUME against the independent float64 reference (tests/models/reference_gume.py), gradients, padding, backends."""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lgmrec_jax.data import Dataset
from lgmrec_jax.graph import BACKENDS
from lgmrec_jax.models import gume
from tests.models import reference_gume as ref

# Small but not degenerate: k = 4 of 11 items with correlated modalities gives semantic-neighbour edges.
CFG = gume.Config(embedding_size=8, n_ui_layers=3, n_layers=2, knn_k=4, reg_weight_1=0.3, reg_weight_2=0.2,
                  bm_loss=0.5, bm_temp=0.4, um_loss=0.4, um_temp=0.3, vt_loss=0.7)
DIMS = {"image": 10, "text": 7, "audio": 5}
N_REAL, N_PAD = 10, 16


def make_data(seed: int, modalities=("image", "text")) -> Dataset:
    rng = np.random.default_rng(seed)
    n_users, n_items = 13, 11
    keys = rng.choice(n_users * n_items, size=45, replace=False)
    pairs = np.stack([keys // n_items, keys % n_items], axis=1).astype(np.int32)
    latent = rng.normal(size=(n_items, 3))
    feats = {}
    for m in modalities:
        view = latent @ rng.normal(size=(3, DIMS[m])) + 0.3 * rng.normal(size=(n_items, DIMS[m]))
        feats[m] = (np.abs(view) if m == "image" else view).astype(np.float32)
    return Dataset(name="gume-test", n_users=n_users, n_items=n_items, train=pairs[:35], valid=pairs[35:40],
                   test=pairs[40:], features=feats)


def make_batch(seed: int, data: Dataset, pad_seed: int = 0) -> dict:
    """N_REAL real rows (a repeated user on purpose) padded to N_PAD rows of random ids."""
    rng = np.random.default_rng(seed)
    pad = np.random.default_rng(1000 + pad_seed)
    rows = data.train[rng.choice(len(data.train), N_REAL, replace=False)]
    rows[1, 0] = rows[0, 0]
    users = np.r_[rows[:, 0], pad.integers(0, data.n_users, N_PAD - N_REAL)]
    pos = np.r_[rows[:, 1], pad.integers(0, data.n_items, N_PAD - N_REAL)]
    neg = rng.integers(0, data.n_items, N_PAD)
    mask = np.r_[np.ones(N_REAL), np.zeros(N_PAD - N_REAL)]
    return {"users": jnp.asarray(users, jnp.int32), "pos": jnp.asarray(pos, jnp.int32),
            "neg": jnp.asarray(neg, jnp.int32), "mask": jnp.asarray(mask, jnp.float32)}


def setup(seed: int, modalities=("image", "text"), backend="bcoo"):
    # One dataset per modality set: equal graph sizes let the tests share compiled functions. Params vary by seed.
    data = make_data(len(modalities), modalities)
    graphs = gume.build_graphs(data, CFG, backend)
    params = gume.init(jax.random.PRNGKey(seed), CFG, data)
    # Fine-tuning moves parameters away from init; perturb them so no test depends on init-time structure.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(100 + seed), len(leaves))
    params = tree.unflatten([a + 0.05 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])
    return data, graphs, params


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


# Jitted once per module and shared between tests: compilation dominates the runtime of these tests.
FORWARD = jax.jit(gume.forward, static_argnums=2)
LOSS = jax.jit(gume.loss, static_argnums=5)
LOSS_WITH_NOISE = jax.jit(gume.loss_with_noise, static_argnums=4)
VALUE_AND_GRAD = jax.jit(jax.value_and_grad(gume.loss_with_noise, has_aux=True), static_argnums=4)


@pytest.mark.parametrize("modalities", [("image", "text"), ("text",), ("audio", "image", "text")])
def test_forward_and_loss_match_reference(modalities):
    data, graphs, params = setup(len(modalities), modalities)
    g_ref = ref.graphs(data.n_users, data.n_items, data.train, data.features, CFG.knn_k)
    if len(modalities) > 1:
        assert len(g_ref["edges"]) > 0  # the semantic-neighbour block is exercised
    np.testing.assert_allclose(graphs["adj"].todense(), g_ref["adj"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(graphs["r_hat"].todense(), g_ref["r_hat"], rtol=1e-6, atol=1e-7)

    fw = FORWARD(params, graphs, CFG)
    want = ref.forward(params, g_ref, CFG)
    for name in ("final", "integration", "extended_id", "extended_interest"):
        assert rel_err(getattr(fw, name), want[name]) <= 1e-5, name
    for got, exp in zip(fw.explicit, want["explicit"]):
        assert rel_err(got, exp) <= 1e-5
    users, items, _ = gume.apply(params, graphs, data.features, jax.random.PRNGKey(0), False, CFG)
    np.testing.assert_allclose(np.vstack([users, items]), fw.final, rtol=1e-5, atol=1e-7)  # eager vs jit

    batch = make_batch(7, data)
    noise = all_users_noise(jax.random.PRNGKey(3), data.n_users)
    total, parts = LOSS_WITH_NOISE(params, graphs, batch, noise[:, batch["users"]], CFG)
    want_total, want_parts = ref.loss(params, g_ref, CFG, batch["users"], batch["pos"], batch["neg"], batch["mask"],
                                      np.asarray(noise))
    assert rel_err(total, want_total) <= 1e-5
    for name, value in want_parts.items():
        # vt is a difference of nearly equal moments: compare it absolutely, at the scale of the total.
        assert abs(float(parts[name]) - value) <= 1e-5 * max(abs(value), abs(want_total) if name == "vt" else 0), name
    if len(modalities) == 1:
        assert float(parts["vt"]) == 0.0


def all_users_noise(key, n_users: int) -> jax.Array:
    """The perturbation noise of every user [4, U, d], as the official code draws it before indexing the batch."""
    return gume.perturbation_noise(key, jnp.arange(n_users), CFG.embedding_size)


def test_loss_uses_the_key_for_the_perturbations():
    data, graphs, params = setup(4)
    batch = make_batch(1, data)
    loss = LOSS
    key = jax.random.PRNGKey(9)
    total, _ = loss(params, graphs, data.features, batch, key, CFG)
    want, _ = LOSS_WITH_NOISE(params, graphs, batch, all_users_noise(key, data.n_users)[:, batch["users"]], CFG)
    np.testing.assert_allclose(total, want, rtol=1e-6)
    other, _ = loss(params, graphs, data.features, batch, jax.random.PRNGKey(10), CFG)
    assert float(other) != float(total)


def test_perturbation_noise_is_per_user():
    """A user's noise rows depend on the key and the user id only: a user repeated in a batch gets the same rows,
    different users and different keys get different ones, and the values are U[0, 1)."""
    key = jax.random.PRNGKey(int(np.random.default_rng().integers(1 << 30)))
    users = jnp.asarray([5, 3, 5, 0, 3, 9])
    noise = np.asarray(gume.perturbation_noise(key, users, 16))
    assert noise.shape == (4, 6, 16)
    np.testing.assert_array_equal(noise[:, 0], noise[:, 2])
    np.testing.assert_array_equal(noise[:, 1], noise[:, 4])
    np.testing.assert_array_equal(noise[:, 0], np.asarray(gume.perturbation_noise(key, jnp.asarray([5]), 16))[:, 0])
    assert len({noise[:, j].tobytes() for j in (0, 1, 3, 5)}) == 4
    assert not np.array_equal(noise, gume.perturbation_noise(jax.random.fold_in(key, 1), users, 16))
    assert noise.min() >= 0 and noise.max() < 1 and 0.4 < noise.mean() < 0.6


def test_padding_rows_do_not_change_the_loss_or_gradient():
    data, graphs, params = setup(5)
    noise = all_users_noise(jax.random.PRNGKey(2), data.n_users)
    grad = VALUE_AND_GRAD
    batches = [make_batch(3, data, pad_seed=seed) for seed in (1, 2)]
    (a, _), ga = grad(params, graphs, batches[0], noise[:, batches[0]["users"]], CFG)
    (b, _), gb = grad(params, graphs, batches[1], noise[:, batches[1]["users"]], CFG)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), ga, gb)


def test_backends_agree():
    data, _, params = setup(6)
    batch = make_batch(2, data)
    noise = gume.perturbation_noise(jax.random.PRNGKey(4), batch["users"], CFG.embedding_size)
    grad = VALUE_AND_GRAD
    results = [grad(params, gume.build_graphs(data, CFG, b), batch, noise, CFG) for b in BACKENDS]
    (want, _), want_grads = results[0]
    for (total, _), grads in results[1:]:
        np.testing.assert_allclose(total, want, rtol=1e-5)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), grads, want_grads)


def test_check_grads_float64():
    with jax.enable_x64(True):
        data, graphs, params = setup(8)
        to64 = lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
        graphs, params = jax.tree.map(to64, graphs), jax.tree.map(to64, params)
        batch = jax.tree.map(to64, make_batch(4, data))
        noise = gume.perturbation_noise(jax.random.PRNGKey(5), batch["users"], CFG.embedding_size).astype(jnp.float64)
        f = jax.jit(lambda p: gume.loss_with_noise(p, graphs, batch, noise, CFG)[0])
        assert f(params).dtype == jnp.float64
        # Reverse mode only: the BCSR backend's product is a custom_vjp; the loss is trained by reverse mode.
        check_grads(f, (params,), order=1, modes=("rev",), eps=1e-5, atol=1e-6, rtol=1e-6)


def test_init_matches_torch_defaults():
    data = make_data(9)
    params = gume.init(jax.random.PRNGKey(0), gume.Config(embedding_size=16), data)
    image = params["modalities"]["image"]
    np.testing.assert_array_equal(image["features"], data.features["image"])
    reduce = image["space_trans"]["reduce"]
    assert reduce["kernel"].shape == (DIMS["image"], 16)
    bound = 1 / np.sqrt(DIMS["image"])
    for w in (reduce["kernel"], reduce["bias"]):
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.5 * bound
    assert "bias" not in params["separate_coarse"]["out"]
    xavier = np.sqrt(6 / (data.n_users + 16))
    assert np.abs(params["user_embedding"]).max() <= xavier


def test_features_are_fine_tuned_and_raw_feats_unused():
    data, graphs, params = setup(10)
    batch = make_batch(5, data)
    noise = gume.perturbation_noise(jax.random.PRNGKey(0), batch["users"], CFG.embedding_size)
    _, grads = VALUE_AND_GRAD(params, graphs, batch, noise, CFG)
    assert float(jnp.abs(grads["modalities"]["image"]["features"]).max()) > 0
    # The trainable tables in params are what the model reads; the `feats` argument is ignored.
    zeros = {m: np.zeros_like(f) for m, f in data.features.items()}
    key = jax.random.PRNGKey(1)
    np.testing.assert_array_equal(LOSS(params, graphs, zeros, batch, key, CFG)[0],
                                  LOSS(params, graphs, data.features, batch, key, CFG)[0])


def test_config_files_load():
    from lgmrec_jax.config import load_config

    want = {"baby": (2, 0.4, 0.01, 0.1, 0.1), "sports": (1, 0.2, 0.01, 0.1, 0.01),
            "clothing": (1, 0.2, 0.1, 0.2, 0.001), "elec": (1, 0.2, 0.1, 0.2, 0.1)}
    for dataset, values in want.items():
        cfg = load_config("gume", dataset)
        m = cfg.model
        assert (m.n_layers, m.bm_temp, m.um_loss, m.um_temp, m.vt_loss) == values, dataset
        assert (m.knn_k, m.n_ui_layers, m.reg_weight_1, m.reg_weight_2, m.bm_loss) == (10, 3, 1e-5, 0.1, 0.01)
        assert cfg.train.learning_rate_scheduler == (0.96, 50.0)
    assert dataclasses.asdict(load_config("gume", "unknown-dataset").model) == dataclasses.asdict(gume.Config())


def test_short_training_run_learns(tmp_path):
    """End to end through the shared trainer on the tiny synthetic data: the loss falls and validation Recall@20
    is far above a random ranking (≈ 20 / n_items)."""
    import json

    from lgmrec_jax.config import load_config
    from lgmrec_jax.data import synthetic
    from lgmrec_jax.train import train_and_evaluate

    data = synthetic.generate("tiny", seed=3)
    cfg = load_config("gume", "tiny", overrides=[
        "train.epochs=6", "train.checkpoint_every=0", "train.stopping_step=100",
        f'train.cache_dir="{tmp_path / "cache"}"'])
    result = train_and_evaluate(cfg, data, tmp_path / "run", progress=False)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert len(losses) == 6 and losses[-1] < losses[0]
    random_recall = 20 / data.n_items
    assert result["valid"]["recall@20"] > 3 * random_recall
    assert len(list((tmp_path / "cache").glob("knn-*.npz"))) == 2  # one cached kNN graph per modality
