"""Reduced precision for the dense work, off by default (`train.matmul_precision`, `train.feature_dtype`).

Defaults reproduce the official float32 PyTorch code: float32 tables and float32 matrix products. Two knobs trade
accuracy for speed and memory on accelerators:

  * ``matmul_precision``: "float32" (default; exact float32 products on every platform), "tensorfloat32" or
    "bfloat16": the precision JAX asks XLA for in every matrix product of the train and embedding programs
    (`jax.default_matmul_precision`). Note that JAX's own default on TPU is one bfloat16 pass and on recent NVIDIA
    GPUs TF32; we pin float32 unless told otherwise, since torch (the reference) multiplies in float32. The CPU
    backend computes float32 whatever is asked, so this knob changes nothing there.
  * ``feature_dtype``: "float32" (default) or "bfloat16": how the frozen modality feature tables (the 4096-wide
    image features are the largest arrays of LGMRec) are stored on the device. With bfloat16 tables, the projections
    that read them (`project`) multiply in bfloat16 and accumulate in float32: half the memory and memory traffic of
    those tables, on every platform. GUME fine-tunes its own copy of the features as a parameter, which stays float32
    for Adam; this knob applies to models that read the frozen tables (LGMRec).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lgmrec_jax.config import FEATURE_DTYPES, MATMUL_PRECISIONS  # spelled out there: the config imports no JAX
from lgmrec_jax.step_parts import part


def matmul_precision(name: str):
    """Context in which traced matrix products use `name` (one of MATMUL_PRECISIONS)."""
    if name not in MATMUL_PRECISIONS:
        raise ValueError(f"unknown matmul precision {name!r}; choose one of {', '.join(MATMUL_PRECISIONS)}")
    return jax.default_matmul_precision(name)


def feature_table(features: np.ndarray, dtype: str) -> jax.Array:
    """A frozen feature table as stored on the device."""
    if dtype not in FEATURE_DTYPES:
        raise ValueError(f"unknown feature dtype {dtype!r}; choose one of {', '.join(FEATURE_DTYPES)}")
    return jnp.asarray(features, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)


@part("projection")
def project(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w for a feature table x. A bfloat16 table is multiplied in bfloat16 with float32 accumulation and a float32
    result (rather than being upcast, which would materialize a float32 copy of the table in every step)."""
    if x.dtype == jnp.bfloat16:
        return jnp.matmul(x, w.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    return _project(x, w)


@jax.custom_vjp
def _project(x: jax.Array, w: jax.Array) -> jax.Array:
    return x @ w


def _project_fwd(x, w):
    return x @ w, (x, w)


def _project_bwd(residuals, dy):
    """The weight gradient as (dyᵀ X)ᵀ, not Xᵀ dy: the contraction over the I item rows then reads the [I, 4096]
    table row-major, which the CPU product kernels run 2-3x faster than its transpose at Clothing size; the barrier
    keeps XLA from folding the transpose back into Xᵀ dy. The table's own gradient (dy Wᵀ) is dropped by XLA when,
    as for frozen features, nothing uses it."""
    x, w = residuals
    return dy @ w.T, jax.lax.optimization_barrier(dy.T @ x).T


_project.defvjp(_project_fwd, _project_bwd)
