import numpy as np
import pytest

from lgmrec_jax.data import synthetic
from lgmrec_jax.data.sampler import NegativeSampler


@pytest.fixture(scope="module")
def data():
    return synthetic.generate("tiny", seed=3)


def test_epoch_covers_every_positive_once_with_valid_negatives(data):
    sampler = NegativeSampler(data, batch_size=512, seed=7)
    batches = list(sampler.epoch(0))
    assert len(batches) == sampler.batches_per_epoch == -(-len(data.train) // 512)
    assert all(b["users"].shape == (512,) for b in batches)  # padded to a fixed size
    mask = np.concatenate([b["mask"] for b in batches]).astype(bool)
    users = np.concatenate([b["users"] for b in batches])[mask]
    pos = np.concatenate([b["pos"] for b in batches])[mask]
    neg = np.concatenate([b["neg"] for b in batches])[mask]
    got = sorted(zip(users.tolist(), pos.tolist()))
    assert got == sorted(map(tuple, data.train.tolist()))
    seen = set(map(tuple, data.train.tolist()))
    assert not any((u, n) in seen for u, n in zip(users.tolist(), neg.tolist()))
    assert set(neg.tolist()) <= set(data.train[:, 1].tolist())  # drawn from items occurring in train


def test_negatives_are_roughly_uniform(data):
    sampler = NegativeSampler(data, batch_size=4096, seed=1)
    rng = np.random.default_rng(0)
    users = rng.choice(data.train[:, 0], 200_000)
    counts = np.bincount(sampler.negatives(rng, users), minlength=data.n_items)[sampler.candidates]
    # popular items are rejected more often, but no item should be starved or dominant
    assert counts.min() > 0.5 * counts.mean() and counts.max() < 1.5 * counts.mean()


def test_same_seed_same_epoch_same_batches_and_epochs_differ(data):
    a = list(NegativeSampler(data, 256, seed=5).epoch(3))
    b = list(NegativeSampler(data, 256, seed=5).epoch(3))
    c = list(NegativeSampler(data, 256, seed=5).epoch(4))
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    assert not np.array_equal(a[0]["users"], c[0]["users"])
