"""Names for the parts of a train step, carried into XLA's op metadata so that a profile can be read per part.

`with part("contrastive"): ...` (or `@part("contrastive")` on a function) opens a JAX named scope `part=contrastive`. It changes no computation: only the
`op_name` of the HLO instructions traced inside, which keeps the scope through differentiation
(`transpose(jvp(part=contrastive))/…`). experiments/step_account.py times every instruction of the compiled step under
the profiler and charges it to the innermost part named in its op_name, so forward and backward land in the same
part. Nested scopes are fine: a sparse product inside the hypergraph part counts as propagation.
"""

from __future__ import annotations

import jax

PARTS = (
    "sampler",  # the step's batch: permutation rows and negatives (data/sampler.py)
    "noise",  # a model's own random draws (Gumbel noise, dropout masks, perturbations)
    "projection",  # dense products of the wide modality feature tables
    "propagation",  # every sparse product (graph/sparse.py)
    "hypergraph",  # LGMRec's memberships (Gumbel-softmax, dropout) and dense hypergraph layers
    "separation",  # GUME's attribute separation and integration MLPs
    "contrastive",  # InfoNCE terms
    "bpr_reg",  # fusion of the branches, BPR, norms and regularisers, GUME's alignment statistics
    "optimizer",  # Adam and the parameter update
    "plumbing",  # device placement glue: padded-table slices, join/split of node tables, sharding constraints
)
PREFIX = "part="


def part(name: str):
    """A named scope marking the work traced inside as part `name` (one of PARTS); a context or a decorator."""
    if name not in PARTS:
        raise ValueError(f"unknown step part {name!r}; choose one of {', '.join(PARTS)}")
    return jax.named_scope(PREFIX + name)


def part_of(op_name: str) -> str | None:
    """The innermost part named in an HLO op_name, or None."""
    at = op_name.rfind(PREFIX)
    if at < 0:
        return None
    name = op_name[at + len(PREFIX):]
    for stop in "/)":
        name = name.split(stop, 1)[0]
    return name
