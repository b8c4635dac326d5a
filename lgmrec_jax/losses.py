"""Losses shared by the models. Every batch carries a `mask` (1 = real example, 0 = padding) so that a batch can
be padded to a fixed size: one compilation, and an even split over devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def bpr_loss(u: jax.Array, pos: jax.Array, neg: jax.Array, mask: jax.Array) -> jax.Array:
    """−mean log σ(⟨u, p⟩ − ⟨u, n⟩) over the real examples of the batch."""
    margin = jnp.sum(u * pos, axis=-1) - jnp.sum(u * neg, axis=-1)
    return masked_mean(-jax.nn.log_sigmoid(margin), mask)


def frobenius_reg(mask: jax.Array, *embeddings: jax.Array) -> jax.Array:
    """Σ ‖E‖_F / B with un-squared Frobenius norms of the batch embeddings (LGMRec's reg, SPEC §3.4)."""
    m = mask[:, None]
    # sqrt(x + 0) has an infinite gradient at 0; padding rows are exactly zero after masking, real rows are not.
    norms = [jnp.sqrt(jnp.sum(jnp.square(e * m))) for e in embeddings]
    return sum(norms) / jnp.maximum(jnp.sum(mask), 1.0)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Row-wise x / max(‖x‖₂, eps), as torch.nn.functional.normalize.

    Written as x · rsqrt(max(‖x‖², eps²)), the same value: sqrt at an all-zero row (an item without training
    interactions after propagation, a hyperedge row that dropout zeroed) would give an infinite derivative and a NaN
    gradient, whereas torch's norm has a zero subgradient there.
    """
    sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))
