"""FREEDOM (Zhou & Shen, MM'23) as MMRec's `src/models/freedom.py` computes it: a frozen item-item graph and a
degree-sensitive edge pruning of the user-item graph.

Graphs (host side, once, `build_graphs`):
  * S, the frozen item-item graph. Per modality m, the binary top-k cosine graph of the *initial* features (k =
    knn_k, the row itself included; neighbour lists and tie rule as graph/knn.py), every kept entry valued
    (k + 1e-7)^-1/2 · (k + 1e-7)^-1/2: MMRec normalises it with the row sums on both sides, and every row holds k
    entries. S = Σ_m w_m S_m, entries present in several modalities summed. Weights: `image` gets mm_image_weight and
    the other modalities share 1 − mm_image_weight equally; a single modality gets 1; without an `image` modality
    (ml100k: text + meta) the modalities share 1 equally. For MMRec's image + text that is its
    `mm_image_weight · image_adj + (1 − mm_image_weight) · text_adj`, and for one modality its single graph.
  * Â, the symmetric-normalised user-item adjacency of all training pairs (evaluation; training with dropout 0).
  * the E distinct training pairs (u, i), sorted by (u, i), with their sampling weights
    p_ui = (d_u + 1e-7)^-1/2 (d_i + 1e-7)^-1/2 (degrees in the training graph).

Forward (`forward(params, graphs, kept, cfg)`, deterministic given the kept edges):
  h = S^{n_mm_layers} E_item_id                       (item ID embeddings over the frozen graph, last layer)
  (E_u, E_i) = mean over l = 0..n_ui_layers of G^l [E_user; E_item_id]    (LightGCN, layer 0 included)
  users = E_u,  items = E_i + h
where G is, in training, the pruned graph of this epoch and, in evaluation, the full Â.

Degree-sensitive edge pruning (MMRec's `pre_epoch_processing`, once per epoch before its batches): K = ⌊E · (1 −
dropout)⌋ edges are drawn without replacement with probabilities ∝ p_ui (torch.multinomial(p, K)); the kept
bipartite graph is normalised again with its own degrees, (d'_u + 1e-7)^-1/2 (d'_i + 1e-7)^-1/2, and used in both
directions. Here the draw is Gumbel-top-K: the K largest of log p_e + g_e, g_e ~ Gumbel(0, 1) i.i.d., which is exactly
successive sampling without replacement ∝ p (and is how torch implements multinomial without replacement). K is
static, so the programs have one shape. `sample_kept_edges(key, …)` is the random part, returning the kept edge ids in
ascending order (so by user); `pruned_graph` and `forward` are deterministic, and the tests feed a reference the same
ids.

Randomness and the epoch (PER_EPOCH_KEY = True): MMRec draws one pruned graph per epoch and keeps it for all that
epoch's batches. The trainer (train.make_train_step) therefore gives this model's `loss` one key per epoch,
fold_in(run key, 2^31 + epoch), the same for every step of the epoch; each step redraws the same graph from it
(the draw is a top-K over E numbers, cheap next to the propagation). The key depends only on (seed, epoch), so resume
stays exact. The batch's negatives come from the sampler as for every BPR model.

Loss (per batch of B (user, pos, neg) rows, padding rows masked out):
  BPR(E_u, E_i⁺, E_i⁻) + reg_weight · Σ_m BPR(E_u, x_m⁺ W_m + b_m, x_m⁻ W_m + b_m)
the modality terms score the (pruned-graph) user embeddings against the projected raw features of the positive and
negative items. The projections are torch nn.Linear (default init U(±1/√fan_in) for kernel and bias).

MMRec and the paper. Where they differ this follows MMRec (paper text as we read it; not every detail could be
checked against the PDF):
  * The feature tables are trainable in MMRec (`from_pretrained(freeze=False)`), moved by the modality BPR terms;
    the item-item graph is built once from their initial values and never rebuilt. Here too: the tables are copies
    in params (READS_FEATURE_INPUTS = False, as GUME), and S is frozen.
  * The item-item graph's normalisation uses the row sums on both sides of each entry (D_row^-1/2 A D_row^-1/2 of a
    graph that is not symmetric); the paper writes the symmetric normalisation D^-1/2 S D^-1/2. Since every row holds
    k entries, MMRec's S_m is the kNN indicator scaled by 1/k.
  * The pruned graph is redrawn once per epoch (not per batch), and evaluation uses the full, unpruned graph.
  * The yaml key `lambda_coeff` is not used by the model; the modality terms are weighted by `reg_weight`.
  * MMRec's graph normalisations add 1e-7 to the degrees; Â here is the exact D^-1/2 A D^-1/2 shared by every model
    (a relative difference below 1e-7), while the sampling weights and the pruned graph's values keep the 1e-7.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lgmrec_jax import losses
from lgmrec_jax.data import Dataset
from lgmrec_jax.graph import SparseMatrix, from_coo, normalized_adjacency
from lgmrec_jax.graph.knn import knn_graph
from lgmrec_jax.models.gume import linear, torch_linear_init
from lgmrec_jax.models.hyperparams import FREEDOMConfig as Config
from lgmrec_jax.models.hyperparams import validate_freedom as validate
from lgmrec_jax.models.lightgcn import layer_mean

# The feature tables are fine-tuned copies in params: the trainer need not place the frozen ones on the device.
READS_FEATURE_INPUTS = False
# One key per epoch for `loss` (the pruned graph is drawn once per epoch; train.make_train_step).
PER_EPOCH_KEY = True
DEGREE_EPS = 1e-7  # MMRec adds it to every degree before the inverse square root


# ----------------------------------------------------------------------------------------------------------------
# Graphs (host side, once).


def build_graphs(data: Dataset, cfg: Config, backend: str, cache_dir=None) -> dict:
    validate(cfg, data.modalities)
    modalities = sorted(data.features)
    knn_cols = {m: knn_graph(data.features[m], cfg.knn_k, "none", cache_dir=cache_dir).cols for m in modalities}
    return graphs_from_knn(data, knn_cols, cfg, backend)


def graphs_from_knn(data: Dataset, knn_cols: dict, cfg: Config, backend: str) -> dict:
    """build_graphs from given neighbour lists ({modality: cols [I, k]}), also what lgmrec_jax/aot gives it at scales
    too large to compute them."""
    users, items = np.unique(np.asarray(data.train, np.int64), axis=0).T
    if int(len(users) * (1.0 - cfg.dropout)) < 1:
        raise ValueError(f"freedom: dropout={cfg.dropout} keeps no edge of the {len(users)} training pairs")
    d_u = np.bincount(users, minlength=data.n_users).astype(np.float32)
    d_i = np.bincount(items, minlength=data.n_items).astype(np.float32)
    weight = ((d_u[users] + np.float32(DEGREE_EPS)) ** -0.5 * (d_i[items] + np.float32(DEGREE_EPS)) ** -0.5)
    return {
        "adj": normalized_adjacency(data.n_users, data.n_items, data.train, backend=backend),
        "item_item": item_item_graph(knn_cols, data.n_items, cfg.mm_image_weight, backend),
        "edges": {"users": jnp.asarray(users, jnp.int32), "items": jnp.asarray(items, jnp.int32),
                  "log_weight": jnp.asarray(np.log(weight.astype(np.float64)), jnp.float32)},
    }


def modality_weights(modalities, image_weight: float) -> dict[str, float]:
    """w_m of S = Σ_m w_m S_m (module docstring); MMRec's rule for image + text and for a single modality."""
    modalities = sorted(modalities)
    if len(modalities) == 1:
        return {modalities[0]: 1.0}
    if "image" in modalities:
        others = [m for m in modalities if m != "image"]
        return {"image": image_weight, **{m: (1.0 - image_weight) / len(others) for m in others}}
    return {m: 1.0 / len(modalities) for m in modalities}


def item_item_graph(knn_cols: dict, n_items: int, image_weight: float, backend: str) -> SparseMatrix:
    weights = modality_weights(knn_cols, image_weight)
    rows, cols, vals = [], [], []
    for m, c in knn_cols.items():
        c = np.asarray(c, np.int64)
        k = c.shape[1]
        rows.append(np.repeat(np.arange(n_items), k))
        cols.append(c.ravel())
        vals.append(np.full(c.size, weights[m] / (k + DEGREE_EPS)))  # (k + eps)^-1/2 on both sides
    # from_coo sums an entry present in several modalities' lists.
    return from_coo(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), (n_items, n_items), backend)


# ----------------------------------------------------------------------------------------------------------------
# Parameters.


def init(key: jax.Array, cfg: Config, data: Dataset) -> dict:
    validate(cfg, data.modalities)
    k_user, k_item, k_mod = jax.random.split(key, 3)
    xavier = jax.nn.initializers.glorot_uniform()  # torch xavier_uniform_ on an [n, d] table
    params = {
        "user_embedding": xavier(k_user, (data.n_users, cfg.embedding_size), jnp.float32),
        "item_id_embedding": xavier(k_item, (data.n_items, cfg.embedding_size), jnp.float32),
        "modalities": {},
    }
    modalities = sorted(data.features)
    for m, k in zip(modalities, jax.random.split(k_mod, len(modalities))):
        feats = np.asarray(data.features[m], np.float32)
        params["modalities"][m] = {"features": jnp.array(feats),  # a trainable copy
                                   "trs": torch_linear_init(k, feats.shape[1], cfg.feat_embed_dim)}
    return params


# ----------------------------------------------------------------------------------------------------------------
# Randomness: the kept edges.


def n_kept(n_edges: int, dropout: float) -> int:
    """MMRec's int(E · (1 − dropout)), in the same float arithmetic."""
    return int(n_edges * (1.0 - dropout))


def sample_kept_edges(key: jax.Array, log_weight: jax.Array, n_keep: int) -> jax.Array:
    """`n_keep` distinct edge ids drawn without replacement ∝ exp(log_weight) (Gumbel-top-k), ascending int32."""
    scores = log_weight + jax.random.gumbel(key, log_weight.shape, jnp.float32)
    _, ids = jax.lax.top_k(scores, n_keep)
    return jnp.sort(ids.astype(jnp.int32))


def sample_pruning(key: jax.Array, graphs: dict, cfg: Config) -> jax.Array | None:
    """The kept edge ids of one pruned graph, or None (dropout 0: the full graph, as MMRec)."""
    if cfg.dropout <= 0.0:
        return None
    log_weight = graphs["edges"]["log_weight"]
    return sample_kept_edges(key, log_weight, n_kept(log_weight.shape[0], cfg.dropout))


# ----------------------------------------------------------------------------------------------------------------
# Deterministic forward.


def pruned_graph(graphs: dict, kept: jax.Array, n_users: int, n_items: int):
    """(users [K], items [K], values [K]) of the kept edges, renormalised with the kept graph's own degrees."""
    u, i = graphs["edges"]["users"][kept], graphs["edges"]["items"][kept]
    ones = jnp.ones(u.shape, jnp.float32)
    d_u = jax.ops.segment_sum(ones, u, num_segments=n_users, indices_are_sorted=True)
    d_i = jax.ops.segment_sum(ones, i, num_segments=n_items)
    values = jax.lax.rsqrt(d_u[u] + DEGREE_EPS) * jax.lax.rsqrt(d_i[i] + DEGREE_EPS)
    return u, i, jax.lax.stop_gradient(values)


def pruned_layer_mean(pruned, users: jax.Array, items: jax.Array, n_layers: int):
    """LightGCN layer mean over the pruned bipartite graph P (users ← P items, items ← Pᵀ users), layer 0 included."""
    u, i, values = pruned
    total_u, total_i, x_u, x_i = users, items, users, items
    for _ in range(n_layers):
        x_u, x_i = (jax.ops.segment_sum(values[:, None] * x_i[i], u, num_segments=users.shape[0],
                                        indices_are_sorted=True),
                    jax.ops.segment_sum(values[:, None] * x_u[u], i, num_segments=items.shape[0]))
        total_u, total_i = total_u + x_u, total_i + x_i
    return total_u / (n_layers + 1), total_i / (n_layers + 1)


def forward(params: dict, graphs: dict, kept: jax.Array | None, cfg: Config):
    """(users [U, d], items [I, d]) over the pruned graph of `kept`, or over the full Â when `kept` is None."""
    user_id, item_id = params["user_embedding"], params["item_id_embedding"]
    h = item_id
    for _ in range(cfg.n_mm_layers):
        h = graphs["item_item"] @ h
    if kept is None:
        adj = graphs["adj"]
        users, items = adj.split(layer_mean(adj, adj.join(user_id, item_id), cfg.n_ui_layers))
    else:
        pruned = pruned_graph(graphs, kept, user_id.shape[0], item_id.shape[0])
        users, items = pruned_layer_mean(pruned, user_id, item_id, cfg.n_ui_layers)
    return users, items + h


def apply(params: dict, graphs: dict, feats: dict, key: jax.Array, train: bool, cfg: Config):
    """Training: a pruned graph drawn from `key`; evaluation: the full graph (deterministic). `feats` is unused."""
    kept = sample_pruning(key, graphs, cfg) if train else None
    users, items = forward(params, graphs, kept, cfg)
    return users, items, {}


# ----------------------------------------------------------------------------------------------------------------
# Loss.


def loss_with_kept(params: dict, graphs: dict, batch: dict, kept: jax.Array | None, cfg: Config):
    """The loss over the pruned graph of `kept`: (scalar, {"bpr", "modality_bpr"}); modality_bpr is the unweighted
    sum over modalities."""
    users, items = forward(params, graphs, kept, cfg)
    u, mask = users[batch["users"]], batch["mask"]
    bpr = losses.bpr_loss(u, items[batch["pos"]], items[batch["neg"]], mask)
    modality_bpr = jnp.zeros((), jnp.float32)
    for m in sorted(params["modalities"]):
        p = params["modalities"][m]
        # Projecting only the batch's rows equals projecting the table and indexing it (value and gradient).
        pos = linear(p["trs"], p["features"][batch["pos"]])
        neg = linear(p["trs"], p["features"][batch["neg"]])
        modality_bpr = modality_bpr + losses.bpr_loss(u, pos, neg, mask)
    return bpr + cfg.reg_weight * modality_bpr, {"bpr": bpr, "modality_bpr": modality_bpr}


def loss(params: dict, graphs: dict, feats: dict, batch: dict, key: jax.Array, cfg: Config):
    """`key` is the epoch's key (PER_EPOCH_KEY): every step of an epoch prunes the same edges."""
    return loss_with_kept(params, graphs, batch, sample_pruning(key, graphs, cfg), cfg)
