"""BM3 (Zhou et al., WWW'23) as MMRec's `src/models/bm3.py` computes it: self-supervised bootstrapping without
negative samples.

Online embeddings (`online`): a LightGCN layer mean over the full normalised user-item graph Â (n_layers layers,
layer 0 included), the item ID embeddings added once more to the item rows:
  (E_u, E_i) = mean_{l=0..L} Â^l [E_user; E_item_id],   E_i ← E_i + E_item_id
Projected features: f_m = x_m W_m + b_m ∈ R^d for each modality m (raw features x_m fine-tuned, as MMRec's
`from_pretrained(freeze=False)`; W_m xavier-normal, b_m torch's default U(±1/√fan_in)).
A shared predictor q(z) = z P + c (P xavier-normal, c U(±1/√d)) maps online embeddings to the scoring space:
evaluation scores q(E_u) · q(E_i) (`apply` returns q of both tables).

Loss on a batch of B (user, positive item) rows, without negatives (USES_NEGATIVES = False: the sampler draws none):
  targets  ū = drop(E_u), ī = drop(E_i), f̄_m = drop(f_m): inverted dropout (rate `dropout`, kept entries scaled by
           1/(1 − dropout)) of stop-gradient copies; new masks every step
  L_ui = 1 − mean_b cos(q(E_u[u_b]), ī[i_b])       L_iu = 1 − mean_b cos(q(E_i[i_b]), ū[u_b])
  per m: L_m = 1 − mean_b cos(q(f_m[i_b]), ī[i_b])   (inter-modality alignment with the item target)
         L_mm = 1 − mean_b cos(q(f_m[i_b]), f̄_m[i_b])  (intra-modality masked-feature reconstruction)
  reg = (‖E_u‖_F + ‖E_i‖_F) / n_items over the WHOLE online tables (MMRec's EmbLoss on u_online_ori, i_online_ori:
        un-squared norms, divided by the row count of the last argument)
  total = L_ui + L_iu + reg_weight · reg + cl_weight · Σ_m (L_m + L_mm)
Means run over the real rows of the padded batch; cos is torch's cosine_similarity (eps 1e-8). MMRec has image and
text; any number of modalities works here (summed), and none leaves L_ui + L_iu + reg.

Randomness: `sample_noise(key, batch, …)` draws the dropout keep-masks of the target rows the batch uses; `forward`
and `loss_with_noise` are deterministic. MMRec drops out the whole target tables and then indexes the batch; here
each row's mask comes from the step key folded with the table's tag and the row id, which is that distribution,
keeps what the full draw guarantees (a user or item repeated in a batch gets the same mask in each occurrence, and
ī[i_b] is one draw shared by L_ui and the L_m), and draws B rows instead of the tables. The key depends only on
(seed, epoch, step), so resume stays exact.

MMRec and the paper. Where they differ this follows MMRec (paper text as we read it; not every detail could be
checked against the PDF):
  * Regularisation: un-squared Frobenius norms of the whole online user and item tables divided by the item count
    (MMRec's EmbLoss), not a squared norm over the batch.
  * The target views are dropout copies of the same online embeddings (no separate target encoder or moving
    average), and the alignment terms use the predictor on the online side only; the feature targets are the
    projected features before the predictor.
  * `feat_embed_dim` in BM3.yaml is not read: the projections map to embedding_size.
  * Training batches carry (user, positive item) only (MMRec's `use_neg_sampling: False`), in the same shuffled
    order as the BPR models.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lgmrec_jax import losses
from lgmrec_jax.data import Dataset
from lgmrec_jax.graph import normalized_adjacency
from lgmrec_jax.models.gume import linear
from lgmrec_jax.models.hyperparams import BM3Config as Config
from lgmrec_jax.models.hyperparams import validate_bm3 as validate
from lgmrec_jax.models.lightgcn import layer_mean

# The feature tables are fine-tuned copies in params: the trainer need not place the frozen ones on the device.
READS_FEATURE_INPUTS = False
# The loss reads batch["users"], batch["pos"] and batch["mask"] only: the sampler draws no negative for it.
USES_NEGATIVES = False
COSINE_EPS = 1e-8  # torch.nn.functional.cosine_similarity's default


def build_graphs(data: Dataset, cfg: Config, backend: str, cache_dir=None) -> dict:
    """Â only; `cache_dir` is unused (nothing expensive to build)."""
    validate(cfg, data.modalities)
    return {"adj": normalized_adjacency(data.n_users, data.n_items, data.train, backend=backend)}


def init(key: jax.Array, cfg: Config, data: Dataset) -> dict:
    validate(cfg, data.modalities)
    d = cfg.embedding_size
    k_user, k_item, k_pred, k_mod = jax.random.split(key, 4)
    xavier_uniform = jax.nn.initializers.glorot_uniform()  # torch xavier_uniform_ on an [n, d] table
    params = {
        "user_embedding": xavier_uniform(k_user, (data.n_users, d), jnp.float32),
        "item_id_embedding": xavier_uniform(k_item, (data.n_items, d), jnp.float32),
        "predictor": xavier_normal_linear(k_pred, d, d),
        "modalities": {},
    }
    modalities = sorted(data.features)
    for m, k in zip(modalities, jax.random.split(k_mod, len(modalities))):
        feats = np.asarray(data.features[m], np.float32)
        params["modalities"][m] = {"features": jnp.array(feats),  # a trainable copy
                                   "trs": xavier_normal_linear(k, feats.shape[1], d)}
    return params


def xavier_normal_linear(key: jax.Array, fan_in: int, fan_out: int) -> dict:
    """nn.Linear with `xavier_normal_` on its weight (N(0, 2/(fan_in + fan_out)), not truncated) and torch's
    default bias U(±1/√fan_in). Stored [in, out]."""
    k_w, k_b = jax.random.split(key)
    std = math.sqrt(2.0 / (fan_in + fan_out))
    bound = 1.0 / math.sqrt(fan_in)
    return {"kernel": std * jax.random.normal(k_w, (fan_in, fan_out), jnp.float32),
            "bias": jax.random.uniform(k_b, (fan_out,), jnp.float32, -bound, bound)}


# ----------------------------------------------------------------------------------------------------------------
# Forward.


def online(params: dict, graphs: dict, cfg: Config) -> tuple[jax.Array, jax.Array]:
    """The online user [U, d] and item [I, d] embeddings (before the predictor)."""
    adj = graphs["adj"]
    item_id = params["item_id_embedding"]
    users, items = adj.split(layer_mean(adj, adj.join(params["user_embedding"], item_id), cfg.n_layers))
    return users, items + item_id


def apply(params: dict, graphs: dict, feats: dict, key: jax.Array, train: bool, cfg: Config):
    """The scoring embeddings q(E_u), q(E_i). Deterministic: `key`, `train` and `feats` are unused."""
    users, items = online(params, graphs, cfg)
    return linear(params["predictor"], users), linear(params["predictor"], items), {}


# ----------------------------------------------------------------------------------------------------------------
# Randomness.

# fold_in tags of the target tables (modality j uses FEATURE_TAG + j, j in sorted name order).
USER_TAG, ITEM_TAG, FEATURE_TAG = 0, 1, 2


def row_keep_masks(key: jax.Array, rows: jax.Array, dim: int, keep_prob: float) -> jax.Array:
    """Bool [len(rows), dim]: row r's mask drawn from fold_in(key, r), so equal ids get equal masks."""
    return jax.vmap(lambda r: jax.random.bernoulli(jax.random.fold_in(key, r), keep_prob, (dim,)))(rows)


def sample_noise(key: jax.Array, batch: dict, modalities, dim: int, cfg: Config) -> dict | None:
    """{"user": [B, d], "item": [B, d], "features": {m: [B, d]}} keep-masks of the batch's target rows (users for
    ū, positive items for ī and f̄_m), or None when dropout is 0 (F.dropout(p=0) is the identity)."""
    if cfg.dropout <= 0.0:
        return None
    keep = 1.0 - cfg.dropout
    users, items = batch["users"], batch["pos"]
    return {"user": row_keep_masks(jax.random.fold_in(key, USER_TAG), users, dim, keep),
            "item": row_keep_masks(jax.random.fold_in(key, ITEM_TAG), items, dim, keep),
            "features": {m: row_keep_masks(jax.random.fold_in(key, FEATURE_TAG + j), items, dim, keep)
                         for j, m in enumerate(sorted(modalities))}}


def target(x: jax.Array, keep: jax.Array | None, dropout: float) -> jax.Array:
    """Inverted dropout of a stop-gradient copy of x (the target view)."""
    x = jax.lax.stop_gradient(x)
    return x if keep is None else jnp.where(keep, x / (1.0 - dropout), 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Loss.


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """Row-wise cosine similarity, each row scaled by 1/max(‖row‖, 1e-8) as torch's cosine_similarity."""
    return jnp.sum(losses.l2_normalize(a, COSINE_EPS) * losses.l2_normalize(b, COSINE_EPS), axis=-1)


def loss_with_noise(params: dict, graphs: dict, batch: dict, noise: dict | None, cfg: Config):
    """(total, {"ui", "iu", "align", "mask", "reg"}) for the given target keep-masks; align and mask are the
    unweighted sums over modalities of L_m and L_mm."""
    users_all, items_all = online(params, graphs, cfg)
    users, items, mask = batch["users"], batch["pos"], batch["mask"]
    predictor = params["predictor"]

    def keep(name, m=None):
        if noise is None:
            return None
        return noise[name] if m is None else noise[name][m]

    def one_minus_cos(a, b):
        return 1.0 - losses.masked_mean(cosine(a, b), mask)

    u_rows, i_rows = users_all[users], items_all[items]
    u_target = target(u_rows, keep("user"), cfg.dropout)
    i_target = target(i_rows, keep("item"), cfg.dropout)
    ui = one_minus_cos(linear(predictor, u_rows), i_target)
    iu = one_minus_cos(linear(predictor, i_rows), u_target)

    align = jnp.zeros((), jnp.float32)
    masked = jnp.zeros((), jnp.float32)
    for m in sorted(params["modalities"]):
        p = params["modalities"][m]
        # Only the batch's rows: the same value and gradient as projecting the table and indexing it.
        f = linear(p["trs"], p["features"][items])
        f_online = linear(predictor, f)
        align = align + one_minus_cos(f_online, i_target)
        masked = masked + one_minus_cos(f_online, target(f, keep("features", m), cfg.dropout))

    reg = (frobenius(users_all) + frobenius(items_all)) / items_all.shape[0]
    total = ui + iu + cfg.reg_weight * reg + cfg.cl_weight * (align + masked)
    return total, {"ui": ui, "iu": iu, "align": align, "mask": masked, "reg": reg}


def frobenius(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(x)))


def loss(params: dict, graphs: dict, feats: dict, batch: dict, key: jax.Array, cfg: Config):
    noise = sample_noise(key, batch, params["modalities"], params["user_embedding"].shape[1], cfg)
    return loss_with_noise(params, graphs, batch, noise, cfg)
