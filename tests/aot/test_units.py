"""Pieces of the ahead-of-time path that need no TPU compiler: the evaluation mask used on TPU, tiled buffer sizes,
target names, counts-only datasets, and the persistent compilation cache switch."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from lgmrec_jax.aot import scales, targets
from lgmrec_jax.evaluation import Evaluator, mask_seen
from lgmrec_jax.graph.partitioned import buffer_bytes


@pytest.mark.parametrize("first_item", [0, 7, 40])
def test_compare_mask_equals_scatter_mask(first_item):
    rng = np.random.default_rng(first_item)
    scores = rng.normal(size=(9, 23)).astype(np.float32)
    # Sorted seen lists with padding id 60 (beyond every range) and ids below and above this block of items.
    seen = np.sort(rng.choice(60, size=(9, 12)), axis=1).astype(np.int32)
    seen[:, -3:] = 60
    scatter = np.asarray(mask_seen(jnp.asarray(scores), seen, first_item, by_compare=False))
    compare = np.asarray(mask_seen(jnp.asarray(scores), seen, first_item, by_compare=True))
    expected = scores.copy()
    for row in range(9):
        for item in seen[row]:
            if first_item <= item < first_item + 23:
                expected[row, item - first_item] = -np.inf
    np.testing.assert_array_equal(scatter, expected)
    np.testing.assert_array_equal(compare, expected)


def test_evaluator_metrics_are_the_same_with_either_mask():
    from lgmrec_jax.data import synthetic

    data = synthetic.generate("tiny")
    rng = np.random.default_rng(0)
    users = rng.normal(size=(data.n_users, 8)).astype(np.float32)
    items = rng.normal(size=(data.n_items, 8)).astype(np.float32)
    by_scatter = Evaluator(data, "test", (5, 20), 64, platform="cpu")
    by_compare = Evaluator(data, "test", (5, 20), 64, platform="tpu")
    assert by_compare.mask_by_compare and not by_scatter.mask_by_compare
    assert by_scatter(users, items) == by_compare(users, items)


def test_tpu_buffers_are_counted_in_tiles():
    assert buffer_bytes(1000, 64, 4, "cpu") == 1000 * 64 * 4
    assert buffer_bytes(1000, 64, 4, "tpu") == 1000 * 128 * 4  # 64 lanes padded to 128
    assert buffer_bytes(1001, 192, 4, "tpu") == 1008 * 256 * 4  # rows to a multiple of 8, lanes of 128
    assert buffer_bytes(1001, 64, 2, "tpu") == 1008 * 128 * 2  # bfloat16: 16-row tiles


def test_target_names():
    t = targets.parse("v5e:2x4")
    assert (t.platform, t.kind, t.shape, t.chips) == ("tpu", "v5e", (2, 4), 8)
    assert targets.parse("h100:8").platform == "cuda" and targets.parse("h100:8").chips == 8
    assert targets.parse("v4:2x2x2").chips == 8
    for bad in ("v5e", "v5e:2y4", "v9:1x1", "h100:2x2", "v5e:0x4"):
        with pytest.raises(targets.TargetError, match="--target"):
            targets.parse(bad)


def test_counts_only_dataset_has_the_shapes_asked_for():
    data = scales.resolve("counts:3000,700,20000")
    assert (data.n_users, data.n_items, len(data.train)) == (3000, 700, 20000)
    degrees = np.bincount(data.train[:, 0], minlength=data.n_users)
    assert degrees.min() >= 5 and degrees.max() <= scales.MAX_USER_DEGREE
    assert {m: f.shape for m, f in data.features.items()} == {"image": (700, 4096), "text": (700, 384)}
    assert scales.is_counts_only(data) and all(f.strides[0] == 0 for f in data.features.values())


def test_counts_only_gume_graphs_have_knn_shapes():
    from lgmrec_jax.config import load_config
    from lgmrec_jax.models import get_model

    data = scales.resolve("counts:400,120,2400")
    cfg = load_config("gume", "elec")
    graphs = scales.graphs_for("gume", get_model("gume"), data, cfg, "segment_sum")
    k = cfg.model.knn_k
    for m in ("image", "text"):
        assert graphs["knn"][m].shape == (120, 120) and graphs["knn"][m].nnz <= 120 * k
    assert graphs["adj"].shape == (520, 520) and graphs["adj"].nnz > 2 * 2400 * 0.9  # + semantic edges


def test_compilation_cache_switch(tmp_path, monkeypatch):
    import jax

    from lgmrec_jax import compile_cache

    before = jax.config.jax_compilation_cache_dir
    try:
        assert compile_cache.enable("none") is None and compile_cache.enable(None) is None
        path = compile_cache.enable(tmp_path / "cache")
        assert path.is_dir() and jax.config.jax_compilation_cache_dir == str(path)
        monkeypatch.setenv(compile_cache.ENV, "/somewhere")
        assert compile_cache.default_dir() == "/somewhere"
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
