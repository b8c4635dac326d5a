"""The MMRec per-user split rule (SPEC §1.3 step 2). Test files are named test_prep_* and this
folder has no __init__.py on purpose: a package here would be named `data_prep` and shadow the real one."""

import numpy as np
import pytest

from lgmrec_jax.data.split import mmrec_split, split_sizes


@pytest.mark.parametrize(
    "n, expected",
    [(3, (1, 1, 1)), (5, (3, 1, 1)), (9, (7, 1, 1)), (10, (8, 1, 1)), (12, (10, 1, 1)),
     (15, (12, 1, 2)), (20, (16, 2, 2)), (29, (24, 2, 3)), (100, (80, 10, 10))],
)
def test_split_sizes_follow_mmrec_rule(n, expected):
    # Hand-computed: n < 10 -> n-2/1/1; else vt = int(0.2 n), val = vt // 2, test = vt - val.
    assert split_sizes(n) == expected


def test_split_labels_per_user_match_rule_and_keep_row_order():
    rng = np.random.default_rng(0)
    counts = {0: 3, 1: 5, 2: 10, 3: 15, 4: 29, 7: 12}
    users = rng.permutation(np.repeat(list(counts), list(counts.values())))
    labels = mmrec_split(users, seed=999)
    assert labels.shape == users.shape and set(np.unique(labels)) <= {0, 1, 2}
    for user, n in counts.items():
        got = tuple(int(c) for c in np.bincount(labels[users == user], minlength=3))
        assert got == split_sizes(n), user


def test_split_is_seeded_and_randomises_within_user():
    users = np.repeat(np.arange(50), 12)
    a, b, c = mmrec_split(users, 1), mmrec_split(users, 1), mmrec_split(users, 2)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    # Within-user order is random, not "first rows are train": some user's first row is not train.
    assert (a.reshape(50, 12)[:, 0] != 0).any()


def test_split_rejects_users_with_fewer_than_three_rows():
    with pytest.raises(ValueError, match=r"user 'u2' with 2"):
        mmrec_split(np.array(["u1", "u1", "u1", "u2", "u2"]), seed=0)
    with pytest.raises(ValueError, match="cannot be split"):
        split_sizes(2)
