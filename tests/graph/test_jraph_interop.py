import jax
import numpy as np
import pytest

from lgmrec_jax.graph import normalized_adjacency

jraph = pytest.importorskip("jraph")  # optional: absent where a preinstalled system JAX is reused (ACCEL=system)
from lgmrec_jax.graph.jraph_interop import from_graphs_tuple, jraph_propagate, to_graphs_tuple


def test_round_trip_and_propagation_match_dense_reference():
    rng = np.random.default_rng(4)
    train = np.stack([rng.integers(0, 9, 40), rng.integers(0, 7, 40)], 1)
    adj = normalized_adjacency(9, 7, train)
    dense = adj.todense()
    x = rng.normal(size=(16, 5)).astype(np.float32)
    graph = to_graphs_tuple(adj)
    out = np.asarray(jax.jit(jraph_propagate)(graph, x))
    ref = dense @ x.astype(np.float64)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-6
    back = from_graphs_tuple(graph, backend="bcsr")
    np.testing.assert_allclose(back.todense(), dense, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(back @ x), ref, rtol=1e-5, atol=1e-6)
