"""Helpers of the model tests: random parameters of a model's shapes, and central finite differences of a float64
NumPy reference loss, coordinate by coordinate."""

from __future__ import annotations

import jax
import numpy as np


def random_params(init, seed: int, scale: float = 0.3):
    """A parameter tree of init's structure and shapes (traced abstractly: nothing is compiled), float32 values
    N(0, scale²). The comparisons with a reference then rest on no init-time structure, and cost no init."""
    shapes = jax.eval_shape(lambda: init(jax.random.PRNGKey(0)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (scale * rng.normal(size=s.shape)).astype(np.float32), shapes)


def numeric_gradient(f, params, h: float = 1e-6):
    """∂f/∂p for every coordinate of every leaf of `params` (a pytree of arrays), as a pytree of float64 arrays.
    `f` takes a pytree of float64 NumPy arrays of the same structure and returns a float."""
    leaves, tree = jax.tree.flatten(jax.tree.map(lambda x: np.array(x, np.float64), params))
    grads = []
    for index, leaf in enumerate(leaves):
        grad = np.zeros_like(leaf)
        for pos in np.ndindex(leaf.shape):
            values = []
            for sign in (1.0, -1.0):
                moved = leaf.copy()
                moved[pos] += sign * h
                values.append(f(tree.unflatten(leaves[:index] + [moved] + leaves[index + 1:])))
            grad[pos] = (values[0] - values[1]) / (2 * h)
        grads.append(grad)
    return tree.unflatten(grads)


def max_leaf_rel_err(got, want) -> float:
    """Largest ‖got − want‖ / ‖want‖ over the leaves (leaves whose reference gradient is 0 must be exactly 0)."""
    errs = []
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        norm = np.linalg.norm(w)
        errs.append(np.linalg.norm(g - w) / norm if norm > 0 else float(np.abs(g).max()))
    return max(errs)
