"""Losses shared by the models. Every batch carries a `mask` (1 = real example, 0 = padding) so that a batch can
be padded to a fixed size: one compilation, and an even split over devices."""

from __future__ import annotations

import functools

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


def similarity_logsumexp(anchors: jax.Array, candidates: jax.Array, tau: float,
                         candidate_mask: jax.Array | None = None) -> jax.Array:
    """log Σ_j exp(⟨a_b, c_j⟩ / τ) for every anchor row b: the InfoNCE denominator over all candidates (over the
    candidates with `candidate_mask` 1 when given, e.g. the real rows of a padded batch).

    For rows of norm ≤ 1 (l2-normalized), every score lies in [−1/τ, 1/τ], so the exponentials are taken with the
    fixed shift 1/τ instead of each row's maximum: equal to `logsumexp(a @ c.T / τ)` in exact arithmetic, and the
    compiled step no longer divides the [B, C] scores by τ, reduces them for a maximum and tests them for
    finiteness: after the product comes one exponential pass and its row sum. 1/τ is folded into the [B, d]
    anchors. The exponentials [B, C] are saved for the gradient, as autodiff of logsumexp saves them: one
    exponential per score, no recomputation. Below τ = 2/80 the smallest score's exponential would underflow float32
    against the shift, so small temperatures take the row-maximum path (masked scores there are a finite −1e9, so an
    all-masked row stays finite too). A row whose candidates are all masked gets a finite value and no gradient, so
    that a padding row times its zero weight stays zero.
    """
    mask = jnp.ones(candidates.shape[:1], candidates.dtype) if candidate_mask is None else candidate_mask
    if tau < 2.0 / 80.0:
        return jax.nn.logsumexp(jnp.where(mask[None, :] > 0, anchors @ candidates.T / tau, -1e9), axis=-1)
    return _shifted_logsumexp(anchors, candidates, mask, tau)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _shifted_logsumexp(anchors, candidates, mask, tau):
    return _shifted_logsumexp_fwd(anchors, candidates, mask, tau)[0]


def _shifted_logsumexp_fwd(anchors, candidates, mask, tau):
    # [B, C], each in [e^{-2/τ}, 1] for a real candidate, 0 for a masked one.
    exps = jnp.exp((anchors * (1.0 / tau)) @ candidates.T - 1.0 / tau) * mask[None, :]
    total = jnp.maximum(jnp.sum(exps, axis=-1), jnp.finfo(jnp.float32).tiny)
    return jnp.log(total) + 1.0 / tau, (anchors, candidates, exps, total)


def _shifted_logsumexp_bwd(tau, residuals, g):
    anchors, candidates, exps, total = residuals
    # d/ds_bj = exps_bj · coef_b with coef = g / (total · τ) (the softmax, and ds/da = c/τ, ds/dc = a/τ). The row
    # factor commutes with both products, so it scales [B, d] operands instead of the [B, C] exponentials.
    tiny = jnp.finfo(jnp.float32).tiny
    coef = (jnp.where(total > tiny, g / total, 0.0) / tau)[:, None]  # a row without candidates has no gradient
    d_anchors = coef * (exps @ candidates)
    # Written as ((coef·a)ᵀ E)ᵀ rather than Eᵀ (coef·a): the contraction over the batch then reads E row-major,
    # which the CPU product kernels run about 1.7x faster at [2048, 39387]; the barrier keeps XLA from folding the
    # transpose back.
    d_candidates = jax.lax.optimization_barrier((coef * anchors).T @ exps).T
    return d_anchors, d_candidates, None


_shifted_logsumexp.defvjp(_shifted_logsumexp_fwd, _shifted_logsumexp_bwd)
