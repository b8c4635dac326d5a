"""Interchange with jraph: our constant sparse matrices as `jraph.GraphsTuple` and back.

Graphs built elsewhere with jraph (e.g. a user-item graph from a GNN codebase) can be turned into a SparseMatrix
and propagated with our CSR/COO backends, and our normalized adjacency can be handed to jraph models. jraph is not
on the hot path: its message passing (gather by sender, `jraph.segment_sum` by receiver) is what our
`segment_sum` backend does, and `make bench` measures it beside the others (`jraph_propagate`).
Convention: an edge sender → receiver with weight w is the matrix entry A[receiver, sender] = w, so that
propagation `out = A @ x` sums w · x[sender] into each receiver.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from lgmrec_jax.graph.sparse import SparseMatrix, from_coo


def to_graphs_tuple(mat: SparseMatrix, nodes: jax.Array | None = None) -> jraph.GraphsTuple:
    """A square matrix as one graph: edges carry the values, senders are columns, receivers rows."""
    if mat.shape[0] != mat.shape[1]:
        raise ValueError(f"a GraphsTuple holds a square node-to-node matrix, got shape {mat.shape}")
    n, nnz = mat.shape[0], mat.nnz
    return jraph.GraphsTuple(nodes=nodes, edges=mat.fwd.data, senders=mat.fwd.indices, receivers=mat.fwd.row_ids,
                             globals=None, n_node=jnp.array([n]), n_edge=jnp.array([nnz]))


def from_graphs_tuple(graph: jraph.GraphsTuple, backend: str = "bcoo") -> SparseMatrix:
    """The weighted adjacency of a single jraph graph (edges: [n_edge] weights, or None for 1.0)."""
    if int(np.asarray(graph.n_node).size) != 1:
        raise ValueError("from_graphs_tuple expects a single graph (n_node of length 1); unbatch it first")
    n = int(np.asarray(graph.n_node)[0])
    senders, receivers = np.asarray(graph.senders), np.asarray(graph.receivers)
    weights = np.ones(senders.size) if graph.edges is None else np.asarray(graph.edges, dtype=np.float64)
    if weights.ndim != 1:
        raise ValueError(f"edge features must be scalar weights [n_edge], got shape {weights.shape}")
    return from_coo(receivers, senders, weights, (n, n), backend)


def jraph_propagate(graph: jraph.GraphsTuple, x: jax.Array) -> jax.Array:
    """A @ x written as jraph message passing: weight each sender's row, sum into receivers."""
    messages = graph.edges[:, None] * x[graph.senders]
    return jraph.segment_sum(messages, graph.receivers, num_segments=x.shape[0])
