"""Graph structures (built once on the host by data code) and sparse propagation ops."""

from lgmrec_jax.graph.adjacency import interaction_matrix, normalized_adjacency
from lgmrec_jax.graph.sparse import BACKENDS, SparseMatrix, default_backend, from_coo, spmm

__all__ = ["BACKENDS", "SparseMatrix", "default_backend", "from_coo", "interaction_matrix",
           "normalized_adjacency", "spmm"]
