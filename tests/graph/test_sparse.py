"""Every propagation backend against a float64 NumPy dense reference: products, gradients, edge cases, errors.

The matrices are drawn fresh per case from a seeded generator (rectangular and square, with duplicate entries,
empty rows and empty columns), so the backends are compared on inputs nobody tuned them on. JAX computes in float32;
the reference in float64, hence rtol/atol 1e-5 (a row sums at most a few dozen O(1) products).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lgmrec_jax.graph import BACKENDS, default_backend, from_coo, spmm
from lgmrec_jax.graph.sparse import check_backend

TOL = dict(rtol=1e-5, atol=1e-5)


def random_coo(seed: int, shape: tuple[int, int], nnz: int, n_empty_rows: int = 3, n_empty_cols: int = 2):
    """COO triplets with ~20% repeated positions, and some rows/columns that hold no entry at all."""
    rng = np.random.default_rng(seed)
    rows_allowed = rng.permutation(shape[0])[n_empty_rows:]
    cols_allowed = rng.permutation(shape[1])[n_empty_cols:]
    rows = rng.choice(rows_allowed, nnz)
    cols = rng.choice(cols_allowed, nnz)
    repeat = rng.choice(nnz, nnz // 5)
    rows, cols = np.r_[rows, rows[repeat]], np.r_[cols, cols[repeat]]
    vals = rng.normal(size=rows.size)
    dense = np.zeros(shape)
    np.add.at(dense, (rows, cols), vals)  # the reference sums duplicates explicitly
    return rows, cols, vals, dense


CASES = [  # (seed, shape, nnz)
    (0, (30, 17), 90),  # tall
    (1, (13, 41), 70),  # wide
    (2, (25, 25), 120),  # square, like the normalized adjacency
    (3, (64, 64), 40),  # very sparse: many empty rows
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,shape,nnz", CASES)
def test_product_matches_dense_reference(backend, seed, shape, nnz):
    rows, cols, vals, dense = random_coo(seed, shape, nnz)
    mat = from_coo(rows, cols, vals, shape, backend)
    x = np.random.default_rng(seed + 100).normal(size=(shape[1], 8))
    out = jax.jit(spmm)(mat, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(out), dense @ x, **TOL)
    # A 1-d operand is a matrix-vector product with a 1-d result.
    vec = np.asarray(mat @ jnp.asarray(x[:, 0], jnp.float32))
    assert vec.shape == (shape[0],)
    np.testing.assert_allclose(vec, dense @ x[:, 0], **TOL)
    # The stored transpose is the transpose.
    np.testing.assert_allclose(np.asarray(mat.T @ jnp.ones((shape[0], 3), jnp.float32)), dense.T @ np.ones((shape[0], 3)),
                               **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,shape,nnz", CASES)
def test_gradient_matches_dense_reference(backend, seed, shape, nnz):
    rows, cols, vals, dense = random_coo(seed, shape, nnz)
    mat = from_coo(rows, cols, vals, shape, backend)
    rng = np.random.default_rng(seed + 200)
    x = rng.normal(size=(shape[1], 5))
    cot = rng.normal(size=(shape[0], 5))
    # The VJP of x ↦ A x with cotangent G is Aᵀ G.
    _, vjp = jax.vjp(lambda v: mat @ v, jnp.asarray(x, jnp.float32))
    (grad,) = vjp(jnp.asarray(cot, jnp.float32))
    np.testing.assert_allclose(np.asarray(grad), dense.T @ cot, **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_through_two_layers_under_jit(backend):
    # A LightGCN-like chain on a square matrix: f(x) = Σ W ⊙ (x + A x + A² x); ∇f = W + Aᵀ W + (Aᵀ)² W.
    rows, cols, vals, dense = random_coo(7, (33, 33), 150)
    mat = from_coo(rows, cols, vals, (33, 33), backend)
    rng = np.random.default_rng(7)
    x, w = rng.normal(size=(33, 4)), rng.normal(size=(33, 4))

    def f(v):
        a1 = mat @ v
        return jnp.sum(jnp.asarray(w, jnp.float32) * (v + a1 + mat @ a1))

    grad = jax.jit(jax.grad(f))(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(grad), w + dense.T @ w + dense.T @ (dense.T @ w), **TOL)


def test_duplicates_are_summed_once_for_every_backend():
    mat = from_coo([0, 0, 0, 1], [1, 1, 1, 0], [1.0, 2.0, 3.0, 4.0], (2, 2))
    assert mat.nnz == 2
    np.testing.assert_array_equal(mat.todense(), [[0.0, 6.0], [4.0, 0.0]])
    for backend in BACKENDS:
        out = mat.with_backend(backend) @ jnp.eye(2)
        np.testing.assert_allclose(np.asarray(out), [[0.0, 6.0], [4.0, 0.0]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_matrix_gives_zeros_and_zero_gradient(backend):
    mat = from_coo([], [], [], (6, 4), backend)
    x = jnp.ones((4, 3))
    np.testing.assert_array_equal(np.asarray(mat @ x), np.zeros((6, 3)))
    grad = jax.grad(lambda v: jnp.sum(mat @ v))(x)
    np.testing.assert_array_equal(np.asarray(grad), np.zeros((4, 3)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_mismatch_is_an_error(backend):
    mat = from_coo([0, 1], [0, 2], [1.0, 1.0], (2, 3), backend)
    with pytest.raises(ValueError, match=r"shape mismatch: matrix \(2, 3\) @ operand \(2, 4\)"):
        mat @ jnp.ones((2, 4))


def test_construction_errors_name_the_problem():
    with pytest.raises(ValueError, match="out of range"):
        from_coo([0, 2], [0, 0], [1.0, 1.0], (2, 2))
    with pytest.raises(ValueError, match="equally long"):
        from_coo([0, 1], [0], [1.0, 1.0], (2, 2))
    with pytest.raises(ValueError, match="unknown propagation backend 'csr'"):
        from_coo([0], [0], [1.0], (1, 1), "csr")
    with pytest.raises(ValueError, match="unknown propagation backend"):
        check_backend("dense")


def test_default_backend_is_a_known_backend_for_every_platform():
    for platform in ("cpu", "gpu", "cuda", "rocm", "tpu"):
        assert default_backend(platform) in BACKENDS
    assert default_backend() == default_backend(jax.default_backend())


def test_backends_agree_with_each_other_on_a_graph_sized_product():
    # Larger than the cases above (the CSR kernel splits work over threads past ~1.6M multiply-adds), so the
    # multi-threaded path of the CPU kernel is compared too.
    rows, cols, vals, dense = random_coo(11, (3000, 2500), 40_000)
    x = np.random.default_rng(11).normal(size=(2500, 64)).astype(np.float32)
    expected = dense @ x.astype(np.float64)
    for backend in BACKENDS:
        out = from_coo(rows, cols, vals, dense.shape, backend) @ jnp.asarray(x)
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-4)
