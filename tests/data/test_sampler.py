"""The on-device BPR sampler: every positive once per epoch, negatives uniform over the user's unseen items."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lgmrec_jax.data import sampler, synthetic


@pytest.fixture(scope="module")
def data():
    return synthetic.generate("tiny", seed=3)


def random_interactions(rng, n_users, n_items, max_per_user):
    """Users with 0..max_per_user distinct items (some duplicated rows), and items that never occur in training."""
    rows = [(0, 0), (1, 1)]
    for u in range(n_users):
        items = rng.choice(n_items - 3, size=rng.integers(0, max_per_user + 1), replace=False)  # last 3: never
        rows += [(u, i) for i in items]
        if len(items) and rng.random() < 0.3:
            rows.append((u, items[0]))  # a duplicated row
    return np.array(rows, dtype=np.int64)


def as_data(train, n_users, n_items):
    return SimpleNamespace(train=train, n_users=n_users, n_items=n_items, name="random")


def test_unseen_rank_matches_brute_force():
    rng = np.random.default_rng()
    n_users, n_items = 40, 57
    train = random_interactions(rng, n_users, n_items, max_per_user=30)
    tables = sampler.build_tables(as_data(train, n_users, n_items), batch_size=8)
    candidates = np.unique(train[:, 1])
    users, ranks, expected = [], [], []
    for u in range(n_users):
        seen = set(train[train[:, 0] == u, 1].tolist())
        unseen = [k for k, item in enumerate(candidates) if item not in seen]
        users += [u] * len(unseen)
        ranks += list(range(len(unseen)))
        expected += unseen  # the r-th unseen candidate, 0-based
    got = sampler.unseen_rank(tables, jnp.asarray(users, jnp.int32), jnp.asarray(ranks, jnp.int32))
    np.testing.assert_array_equal(np.asarray(got), expected)
    assert tables.search_steps == int(np.ceil(np.log2(np.bincount(
        np.unique(train, axis=0)[:, 0], minlength=n_users).max() + 1)))


def test_negatives_are_uniform_over_unseen_candidates():
    rng = np.random.default_rng()
    n_users, n_items = 6, 40
    train = random_interactions(rng, n_users, n_items, max_per_user=25)
    tables = sampler.build_tables(as_data(train, n_users, n_items), batch_size=8)
    candidates = set(np.unique(train[:, 1]).tolist())
    draws_per_user = 20_000
    users = jnp.repeat(jnp.arange(n_users, dtype=jnp.int32), draws_per_user)
    neg = np.asarray(sampler.draw_negatives(tables, users, jax.random.PRNGKey(int(rng.integers(2**31)))))
    for u in range(n_users):
        allowed = sorted(candidates - set(train[train[:, 0] == u, 1].tolist()))
        got = neg[u * draws_per_user:(u + 1) * draws_per_user]
        assert set(got.tolist()) <= set(allowed)  # never a seen item, never a non-training item
        counts = np.array([np.sum(got == i) for i in allowed], dtype=np.float64)
        expected = draws_per_user / len(allowed)
        chi2, dof = float(np.sum((counts - expected) ** 2 / expected)), len(allowed) - 1
        # Under uniformity chi2 has mean dof and sd sqrt(2 dof); 6 sd is a 1e-6-level false alarm, while a sampler
        # that skips or doubles one item's share moves chi2 by ~draws/len(allowed) ≈ 500+.
        assert chi2 < dof + 6 * np.sqrt(2 * dof), (u, chi2, dof)


def test_epoch_covers_every_row_once_with_valid_negatives(data):
    train = np.r_[data.train, data.train[:5]]  # duplicated rows are trained on like any other row
    tables = sampler.build_tables(as_data(train, data.n_users, data.n_items), batch_size=512)
    assert tables.batches_per_epoch == -(-len(train) // 512)
    key = jax.random.PRNGKey(7)
    order = sampler.epoch_order(tables, key)
    batches = [sampler.batch_at(tables, order, jnp.int32(s), jax.random.fold_in(key, s))
               for s in range(tables.batches_per_epoch)]
    assert all(b["users"].shape == (512,) for b in batches)  # padded to a fixed size
    cat = {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}
    mask = cat["mask"].astype(bool)
    assert mask[:len(train)].all() and not mask[len(train):].any()  # the permuted rows, then padding
    assert np.all(cat["users"][~mask] == 0) and np.all(cat["neg"][~mask] == 0)
    assert sorted(zip(cat["users"][mask].tolist(), cat["pos"][mask].tolist())) == sorted(map(tuple, train.tolist()))
    seen = set(map(tuple, train.tolist()))
    assert not any((u, n) in seen for u, n in zip(cat["users"][mask].tolist(), cat["neg"][mask].tolist()))
    assert set(cat["neg"][mask].tolist()) <= set(train[:, 1].tolist())


def test_same_key_same_batches_and_keys_differ(data):
    tables = sampler.build_tables(data, batch_size=256)

    def first_batch(key):
        return sampler.batch_at(tables, sampler.epoch_order(tables, key), jnp.int32(0), jax.random.fold_in(key, 0))

    a, b, c = first_batch(jax.random.PRNGKey(5)), first_batch(jax.random.PRNGKey(5)), first_batch(jax.random.PRNGKey(6))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["users"], c["users"])


def test_user_with_every_item_is_an_error():
    train = np.array([(0, 0), (0, 1), (1, 0)])
    with pytest.raises(ValueError, match="user 0 has interacted with every training item"):
        sampler.build_tables(as_data(train, 2, 2), batch_size=4)
