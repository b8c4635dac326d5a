"""LightGCN: layer-mean propagation of ID embeddings over the normalized user-item graph.

It is LGMRec's collaborative graph embedding (CGE, SPEC §3.3 step 2) and GUME's extended-ID encoder, and on its own
the sanity baseline trained with BPR plus LGMRec's batch-embedding regulariser.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lgmrec_jax import losses
from lgmrec_jax.data import Dataset
from lgmrec_jax.graph import SparseMatrix, normalized_adjacency
from lgmrec_jax.models.hyperparams import LightGCNConfig as Config
from lgmrec_jax.step_parts import part

# ID embeddings only: the trainer need not place the dataset's feature tables on the device.
READS_FEATURE_INPUTS = False


@part("propagation")
def layer_mean(adj: SparseMatrix, ego: jax.Array, n_layers: int) -> jax.Array:
    """mean(E⁰, ÂE⁰, …, Â^L E⁰): L+1 terms, layer 0 included. `ego` is `adj.join(users, items)`."""
    total, layer = ego, ego
    for _ in range(n_layers):
        layer = adj @ layer
        total = total + layer
    return total / (n_layers + 1)


def build_graphs(data: Dataset, cfg: Config, backend: str, cache_dir=None) -> dict:
    return {"adj": normalized_adjacency(data.n_users, data.n_items, data.train, backend=backend)}


def init(key: jax.Array, cfg: Config, data: Dataset) -> dict:
    k_user, k_item = jax.random.split(key)
    xavier = jax.nn.initializers.glorot_uniform()
    return {
        "user_embedding": xavier(k_user, (data.n_users, cfg.embedding_size), jnp.float32),
        "item_id_embedding": xavier(k_item, (data.n_items, cfg.embedding_size), jnp.float32),
    }


def apply(params: dict, graphs: dict, feats: dict, key: jax.Array, train: bool, cfg: Config):
    """Returns (user embeddings [U, d], item embeddings [I, d], aux dict)."""
    adj = graphs["adj"]
    out = layer_mean(adj, adj.join(params["user_embedding"], params["item_id_embedding"]), cfg.n_ui_layers)
    users, items = adj.split(out)
    return users, items, {}


def loss(params: dict, graphs: dict, feats: dict, batch: dict, key: jax.Array, cfg: Config):
    users, items, _ = apply(params, graphs, feats, key, True, cfg)
    with part("bpr_reg"):
        u, p, n = users[batch["users"]], items[batch["pos"]], items[batch["neg"]]
        bpr = losses.bpr_loss(u, p, n, batch["mask"])
        reg = losses.frobenius_reg(batch["mask"], u, p, n)
    return bpr + cfg.reg_weight * reg, {"bpr": bpr, "reg": reg}
