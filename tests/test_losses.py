"""The shared loss pieces against float64 NumPy: the shifted InfoNCE denominator (value and both gradients, with and
without a candidate mask, on both sides of its small-temperature switch) and the projection's custom gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lgmrec_jax import losses, precision


def unit_rows(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(a, c, tau, mask, g):
    """log Σ_j m_j exp(a·c_j/τ) per row, and the gradients of Σ_b g_b · that w.r.t. a and c (float64)."""
    s = a @ c.T / tau
    w = np.exp(s - s.max(axis=1, keepdims=True)) * mask[None, :]
    lse = np.log(w.sum(axis=1)) + s.max(axis=1)
    p = w / w.sum(axis=1, keepdims=True) * g[:, None]
    return lse, p @ c / tau, p.T @ a / tau


def rel(x, ref):
    return np.linalg.norm(np.asarray(x, np.float64) - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize("tau", [0.2, 0.01])  # fixed shift, and the row-maximum path below τ = 2/80
@pytest.mark.parametrize("masked", [False, True])
def test_similarity_logsumexp_matches_float64(tau, masked):
    rng = np.random.default_rng(7)
    a, c = unit_rows(rng, 12, 8), unit_rows(rng, 30, 8)
    mask = (rng.random(30) < 0.7).astype(np.float64) if masked else np.ones(30)
    g = rng.standard_normal(12)
    lse, da, dc = reference(a, c, tau, mask, g)
    f = lambda a_, c_: losses.similarity_logsumexp(a_, c_, tau, jnp.asarray(mask, jnp.float32) if masked else None)  # noqa: E731
    out, vjp = jax.vjp(f, jnp.asarray(a, jnp.float32), jnp.asarray(c, jnp.float32))
    got_da, got_dc = vjp(jnp.asarray(g, jnp.float32))
    assert rel(out, lse) <= 1e-5 and rel(got_da, da) <= 1e-5 and rel(got_dc, dc) <= 1e-5


def test_similarity_logsumexp_of_an_all_masked_batch_is_finite():
    rng = np.random.default_rng(8)
    a, c = (jnp.asarray(unit_rows(rng, n, 4), jnp.float32) for n in (5, 5))
    value, grads = jax.value_and_grad(lambda a_: jnp.sum(losses.similarity_logsumexp(a_, c, 0.2, jnp.zeros(5)) * 0.0))(a)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grads)))


def test_projection_gradients_match_float64():
    rng = np.random.default_rng(9)
    x, w, dy = rng.standard_normal((40, 24)), rng.standard_normal((24, 6)), rng.standard_normal((40, 6))
    out, vjp = jax.vjp(precision.project, jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32))
    dx, dw = vjp(jnp.asarray(dy, jnp.float32))
    assert rel(out, x @ w) <= 1e-5 and rel(dx, dy @ w.T) <= 1e-5 and rel(dw, x.T @ dy) <= 1e-5


def test_small_temperature_keeps_very_negative_rows_exact():
    # Every candidate opposite the anchor: log Σ exp(−1/τ) = log C − 1/τ, far below float32's log(tiny) at τ = 0.01.
    a = jnp.asarray([[1.0, 0.0]]); c = jnp.asarray([[-1.0, 0.0]] * 3)
    np.testing.assert_allclose(float(losses.similarity_logsumexp(a, c, 0.01)[0]), np.log(3) - 100.0, rtol=1e-6)
