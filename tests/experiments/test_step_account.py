"""The step account's reading of a compiled program: FLOPs, transcendentals and parts per executed instruction."""

import jax
import jax.numpy as jnp

from experiments import hlo_costs, step_account
from lgmrec_jax.step_parts import part, part_of


def loss(w, x):
    with part("projection"):
        y = x @ w  # [16, 8] @ [8, 4]
    with part("contrastive"):
        return jnp.sum(jnp.exp(y))


def test_costs_count_products_exponentials_and_parts():
    w, x = jnp.full((8, 4), 0.1), jnp.full((16, 8), 0.2)
    compiled = jax.jit(jax.grad(loss)).lower(w, x).compile()
    costs = hlo_costs.executed_instructions(compiled.as_text())
    dots = [d for c in costs for d in c.dots]
    # Forward x @ w and the weight gradient xᵀ dy: 2·16·8·4 FLOPs each (the gradient w.r.t. x is not asked for).
    assert sum(2 * m * k * n for m, k, n in dots) == 2 * (2 * 16 * 8 * 4)
    assert sum(c.flops for c in costs) == 2 * (2 * 16 * 8 * 4)
    assert sum(c.transcendentals for c in costs) >= 16 * 4  # exp(y), once at least
    assert {c.part for c in costs if c.flops} == {"projection"}  # forward and its transpose
    assert {c.part for c in costs if c.transcendentals} == {"contrastive"}
    assert all(c.bytes > 0 for c in costs)


def test_innermost_part_wins_and_floors_add_up():
    assert part_of("jit(f)/transpose(jvp(part=hypergraph))/part=propagation/dot") == "propagation"
    assert part_of("jit(f)/mul") is None
    instr = {"dots": [(64, 128, 32)], "transcendentals": 1e6, "sparse_flops": 0.0, "bytes": 1e6}
    rates = {"matmul": {"64,128,32": 1e9}, "exp_per_s": 1e8, "bytes_per_s": 1e9}
    assert abs(step_account.floor_seconds(instr, rates) - (2 * 64 * 128 * 32 / 1e9 + 1e6 / 1e8)) < 1e-12
    sparse = dict(instr, dots=[], transcendentals=0.0, sparse_flops=5e6)
    assert step_account.floor_seconds(sparse, rates) == 1e6 / 1e9  # a CSR product is floored by its bytes
