"""Blockwise kNN graph against a dense float64 reference, the tie rule, semantic neighbours and the cache."""

from __future__ import annotations

import numpy as np
import pytest

from lgmrec_jax.graph import knn
from tests.models import reference_gume as ref


def _features(seed: int, n: int = 37, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


@pytest.mark.parametrize("block", [7, 16, 37, 100])  # 7 and 16 do not divide 37; 100 exceeds it
def test_blockwise_matches_dense_reference(block):
    x = _features(block)
    k = 5
    graph = knn.knn_graph(x, k, "sym", block_size=block)
    w_ref, lists_ref, sims_ref = ref.knn_dense(x, k)
    np.testing.assert_array_equal(graph.cols, np.asarray(lists_ref))
    rows = np.arange(len(x))[:, None]
    np.testing.assert_allclose(graph.sims, sims_ref[rows, graph.cols], atol=1e-6)
    np.testing.assert_allclose(graph.weights, w_ref[rows, graph.cols], rtol=1e-5, atol=1e-7)
    # The sparse matrix holds exactly the reference's dense W.
    np.testing.assert_allclose(graph.to_sparse("bcoo").todense(), w_ref, rtol=1e-5, atol=1e-7)


def test_planted_clusters_are_the_neighbours():
    rng = np.random.default_rng(1)
    k, n_clusters, dim = 4, 6, 10
    cluster = rng.permutation(np.repeat(np.arange(n_clusters), k))
    # Each cluster points along its own axis; the small noise keeps similarities distinct.
    x = 3.0 * np.eye(dim)[cluster] + 0.1 * rng.normal(size=(len(cluster), dim))
    graph = knn.knn_graph(x.astype(np.float32), k, block_size=5)
    for i, c in enumerate(cluster):
        assert graph.cols[i, 0] == i
        assert set(graph.cols[i]) == set(np.flatnonzero(cluster == c))
    np.testing.assert_allclose(graph.sims[:, 0], 1.0, atol=1e-6)


def test_tie_rule_self_first_then_lower_ids():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 8)).astype(np.float32)
    dup = [1, 3, 4, 6, 8, 9]
    x[dup] = x[3]  # six identical rows: every similarity among them is exactly tied at 1
    graph = knn.knn_graph(x, 3, block_size=4)
    for i in dup:
        others = [j for j in dup if j != i]
        assert graph.cols[i].tolist() == [i] + others[:2]
    np.testing.assert_array_equal(graph.cols, np.asarray(ref.knn_dense(x, 3)[1]))


def test_zero_feature_row_gives_no_nan():
    x = _features(3, n=9, dim=5)
    x[4] = 0.0
    graph = knn.knn_graph(x, 3, block_size=4)
    assert np.isfinite(graph.weights).all()
    assert graph.cols[4, 0] == 4
    np.testing.assert_array_equal(graph.weights[4], 0.0)


@pytest.mark.parametrize("norm", ["rw", "none"])
def test_other_normalizations(norm):
    x = np.abs(_features(4, n=12, dim=6))
    graph = knn.knn_graph(x, 4, norm, block_size=5)
    sims = graph.sims.astype(np.float64)
    want = sims / sims.sum(axis=1, keepdims=True) if norm == "rw" else sims
    np.testing.assert_allclose(graph.weights, want, rtol=1e-6)


def test_semantic_neighbours_match_set_intersection():
    rng = np.random.default_rng(5)
    n, k = 30, 6
    lists = [np.stack([rng.permutation(n)[:k] for _ in range(n)]) for _ in range(3)]
    for i in range(n):  # put self into some lists to check it is dropped
        lists[0][i, 0] = i
        lists[1][i, i % k] = i
    for n_mod in (1, 2, 3):
        got = knn.semantic_neighbours(*lists[:n_mod])
        want = ref.semantic_edges([lst.tolist() for lst in lists[:n_mod]])
        assert {tuple(e) for e in got.tolist()} == want
        assert len(got) == len(want)  # no duplicates
        assert got.dtype == np.int64 and (got[:, 0] != got[:, 1]).all()
    assert len(knn.semantic_neighbours(*lists[:2])) > 0


def test_cache_is_keyed_by_k_norm_and_features(tmp_path, monkeypatch):
    x = _features(6, n=20, dim=8)
    g5 = knn.knn_graph(x, 5, cache_dir=tmp_path)
    g10 = knn.knn_graph(x, 10, cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.endswith(".npz") for f in files)  # distinct entries, no temp files left

    def no_compute(*args, **kwargs):
        raise AssertionError("cache miss: the graph was recomputed")

    monkeypatch.setattr(knn, "topk_neighbours", no_compute)
    for k, want in ((5, g5), (10, g10)):
        hit = knn.knn_graph(x, k, cache_dir=tmp_path)
        for a, b in zip(hit, want):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(AssertionError, match="cache miss"):  # other normalization: another entry
        knn.knn_graph(x, 5, "rw", cache_dir=tmp_path)
    changed = x.copy()
    changed[0, 0] += 1e-3
    with pytest.raises(AssertionError, match="cache miss"):  # other feature bytes: another entry
        knn.knn_graph(changed, 5, cache_dir=tmp_path)


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    x = _features(7, n=15, dim=4)
    want = knn.knn_graph(x, 4, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not a zip file")
    got = knn.knn_graph(x, 4, cache_dir=tmp_path)
    np.testing.assert_array_equal(got.cols, want.cols)
    assert np.load(path)["cols"].shape == (15, 4)  # rewritten


def test_rejects_bad_arguments():
    x = _features(8, n=5, dim=3)
    with pytest.raises(ValueError, match="k=6"):
        knn.knn_graph(x, 6)
    with pytest.raises(ValueError, match="normalization"):
        knn.knn_graph(x, 2, "cosine")
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn.knn_graph(x, 2)
