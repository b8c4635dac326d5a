"""lgmrec-jax: LGMRec, GUME and LightGCN as pure JAX functions under the MMRec evaluation protocol."""

__version__ = "0.1.0"
