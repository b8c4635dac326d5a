"""LGMRec (Guo et al., AAAI'24) as pure functions, matching the official code (SPEC §3).

    E = E_cge + E_mge + α · L2norm(E_ghe)

  * CGE  collaborative graph embedding: LightGCN layer mean over the ID embeddings.
  * MGE  modality graph embedding, per modality m: item features X_m W_m, users start at the mean of their items'
         projected features; propagate K = n_mm_layers times on Â, keep only the last layer; L2-normalize each
         modality's rows and sum.
  * GHE  global hypergraph embedding, per modality: soft hyperedge memberships H_i = gumbel_softmax(X_m V_m),
         H_u = gumbel_softmax(R X_m V_m); `n_hyper_layer` HGNN layers Λ = H̃_iᵀ Z_i, Z_i = H̃_i Λ, Z_u = H̃_u Λ
         from the item part of E_cge (H̃ = inverted dropout of H in training); last layer only; summed over modalities.
  * HCL  hypergraph contrastive loss between the modalities' GHE outputs (InfoNCE, cosine, temperature tau,
         denominator over all users/items, summed over the batch, one direction).

Loss = BPR + cl_weight · HCL + reg_weight · (‖e_u‖_F + ‖e_p‖_F + ‖e_n‖_F) / B (un-squared norms).

Modalities: any number ≥ 1, in the order of the dataset's feature dict (image, then text). HCL runs over every pair
(a, b) with a before b, in the direction a → b; for image+text that is exactly the official visual → textual loss,
with one modality there is no pair and HCL is 0. A dataset without modalities gives E = E_cge (the official fallback).

Randomness: `sample_noise(key, …)` draws everything random (Gumbel noise for the item and user hyperedge logits of
each modality, and in training the dropout keep-masks); `forward(params, graphs, feats, noise, cfg)` is
deterministic. `apply` and `loss` are the two composed, so tests can feed a reference the very same noise. As in the
official code the Gumbel noise is drawn at evaluation too (predictions are stochastic); only dropout is train-only.

Evaluation: the trainer calls `apply(..., train=False)` ONCE per evaluation pass and scores every user batch with
those embeddings. The official code re-runs `forward()` (fresh Gumbel noise) for each 4096-user batch, so its users
of different batches see different hyperedge draws; that differs only by noise, not in expectation.

Ablations (`use_*` switches; the paper's "w/o" variants, defined here as follows):
  * use_cge=False  drop E_cge from the fusion: E = E_mge + α·L2norm(E_ghe). GHE then starts from the raw item ID
                   embeddings (no propagation), the only collaborative signal left; user ID embeddings go unused.
  * use_mge=False  drop E_mge: E = E_cge + α·L2norm(E_ghe); the projections W_m go unused.
  * use_ghe=False  drop E_ghe: E = E_cge + E_mge; since HCL contrasts GHE outputs it is dropped too, and the
                   hyperedge matrices V_m go unused (no Gumbel noise is consumed).
  * use_hcl=False  keep the forward unchanged, remove the cl_weight · HCL term from the loss.
Unused parameters stay in `params` (with zero gradient) so every variant has the same parameter tree.

`user_hyper_fix=False` reproduces the code before commit d918d5a (SPEC §3.5), with which the paper's numbers were
produced: the first modality's user hyperedges are overwritten by the Gumbel-softmaxed user logits of the second
modality (drawn with the second modality's user noise), and the second modality's user hyperedges stay raw logits
R X V. Further modalities, and a single one, are unaffected.
"""

from __future__ import annotations

import itertools

import flax.struct
import jax
import jax.numpy as jnp

from lgmrec_jax import losses, precision
from lgmrec_jax.data import Dataset
from lgmrec_jax.graph import SparseMatrix, interaction_matrix, normalized_adjacency
from lgmrec_jax.graph.adjacency import user_degree
from lgmrec_jax.models.hyperparams import LGMRecConfig as Config
from lgmrec_jax.models.hyperparams import validate_lgmrec as validate  # noqa: F401 (the model's check)
from lgmrec_jax.models.lightgcn import layer_mean
from lgmrec_jax.step_parts import part


@flax.struct.dataclass
class Graphs:
    """Constant graph inputs. `modalities` is static: it fixes the modality order inside jit, where dict keys of
    `feats` come back sorted."""

    adj: SparseMatrix  # Â, N×N symmetric-normalized user-item adjacency
    inter: SparseMatrix  # R, U×I binary training interactions
    inv_user_degree: jax.Array  # [U] 1/(deg_u + 1e-7) as the official num_inters: mean pooling over a user's items
    modalities: tuple[str, ...] = flax.struct.field(pytree_node=False)


def build_graphs(data: Dataset, cfg: Config, backend: str, cache_dir=None) -> Graphs:
    """Host-side, once per dataset. `cache_dir` is unused: these graphs are cheap to build."""
    validate(cfg, data.modalities)
    deg = user_degree(data.n_users, data.train, data.n_items)
    return Graphs(
        adj=normalized_adjacency(data.n_users, data.n_items, data.train, backend=backend),
        inter=interaction_matrix(data.n_users, data.n_items, data.train, backend=backend),
        inv_user_degree=jnp.asarray(1.0 / (deg + 1e-7), dtype=jnp.float32),
        modalities=data.modalities,
    )


def init(key: jax.Array, cfg: Config, data: Dataset) -> dict:
    """All parameters xavier-uniform as the official code; feature tables are inputs (`feats`), not parameters."""
    validate(cfg, data.modalities)
    xavier = jax.nn.initializers.glorot_uniform()
    keys = iter(jax.random.split(key, 2 + 2 * len(data.modalities)))
    params = {
        "user_embedding": xavier(next(keys), (data.n_users, cfg.embedding_size), jnp.float32),
        "item_id_embedding": xavier(next(keys), (data.n_items, cfg.embedding_size), jnp.float32),
        "item_trs": {},  # W_m [d_m, feat_embed_dim]: MGE projection
        "hyper": {},  # V_m [d_m, hyper_num]: hyperedge logits
    }
    for m in data.modalities:
        width = data.features[m].shape[1]
        params["item_trs"][m] = xavier(next(keys), (width, cfg.feat_embed_dim), jnp.float32)
        params["hyper"][m] = xavier(next(keys), (width, cfg.hyper_num), jnp.float32)
    return params


# ----------------------------------------------------------------------------------------------------------------
# Randomness


@part("noise")
def sample_noise(key: jax.Array, n_users: int, n_items: int, modalities: tuple[str, ...], train: bool,
                 cfg: Config) -> dict:
    """Every random draw of one forward pass.

    Returns {"gumbel_item": {m: [I, A]}, "gumbel_user": {m: [U, A]}, "keep_item": {m: bool [I, A]} | None,
    "keep_user": ...}. Gumbel(0, 1) noise is drawn in both modes (as torch's gumbel_softmax); keep-masks only in
    training with keep_rate < 1 (nn.Dropout(p=0) is the identity).
    """
    A = cfg.hyper_num
    dropout = train and cfg.keep_rate < 1.0
    noise = {"gumbel_item": {}, "gumbel_user": {}, "keep_item": {} if dropout else None,
             "keep_user": {} if dropout else None}
    for index, m in enumerate(modalities):
        # One subkey per modality: adding a modality does not change the others' draws.
        k_gi, k_gu, k_di, k_du = jax.random.split(jax.random.fold_in(key, index), 4)
        noise["gumbel_item"][m] = jax.random.gumbel(k_gi, (n_items, A), jnp.float32)
        noise["gumbel_user"][m] = jax.random.gumbel(k_gu, (n_users, A), jnp.float32)
        if dropout:
            noise["keep_item"][m] = jax.random.bernoulli(k_di, cfg.keep_rate, (n_items, A))
            noise["keep_user"][m] = jax.random.bernoulli(k_du, cfg.keep_rate, (n_users, A))
    return noise


# ----------------------------------------------------------------------------------------------------------------
# Deterministic forward


def cge(params: dict, graphs: Graphs, cfg: Config) -> jax.Array:
    """E_cge [N, d]: mean of LightGCN layers 0..L (users then items, as `graphs.adj.join` lays them out)."""
    ego = graphs.adj.join(params["user_embedding"], params["item_id_embedding"])
    return layer_mean(graphs.adj, ego, cfg.n_ui_layers)


def feature_projections(params: dict, feats: dict, modalities: tuple[str, ...], cfg: Config) -> dict:
    """{"mge": {m: X_m W_m [I, d_f]}, "hyper": {m: X_m V_m [I, A]}}, each kind present when its branch is on.

    With both branches on, a modality's two products are one X_m [W_m | V_m]: the 4096-wide table is read once per
    pass instead of twice, and the CPU product kernels run a 128-wide right operand about twice as fast per FLOP as
    two 64-wide ones. The columns are the same sums, so the values are those of the separate products.
    """
    kinds = [(k, table) for k, on, table in (("mge", cfg.use_mge, "item_trs"), ("hyper", cfg.use_ghe, "hyper")) if on]
    out = {k: {} for k, _ in kinds}
    for m in modalities:
        weights = [params[table][m] for _, table in kinds]
        if not weights:
            continue
        both = precision.project(feats[m], jnp.concatenate(weights, axis=1)) if len(weights) > 1 else None
        start = 0
        for (k, _), w in zip(kinds, weights):
            out[k][m] = precision.project(feats[m], w) if both is None else both[:, start:start + w.shape[1]]
            start += w.shape[1]
    return out


@part("propagation")
def modality_graph_embedding(graphs: Graphs, item_feats: jax.Array, n_layers: int) -> jax.Array:
    """One modality's MGE [N, d_f] from its projected item features XW [I, d_f]: Â^K [R(XW) / deg_u ; XW], the
    last layer only (not a layer mean)."""
    # The user's ID embedding is not used: a user starts at the mean of its items' projected features.
    user_feats = (graphs.inter @ item_feats) * graphs.inv_user_degree[:, None]
    out = graphs.adj.join(user_feats, item_feats)
    for _ in range(n_layers):
        out = graphs.adj @ out
    return out


def mge(graphs: Graphs, projected: dict, cfg: Config) -> jax.Array:
    """E_mge [N, d_f]: sum over modalities of the row-normalized modality embeddings (`projected`: X_m W_m)."""
    embeddings = [modality_graph_embedding(graphs, projected[m], cfg.n_mm_layers) for m in graphs.modalities]
    with part("bpr_reg"):  # the fusion of the branches
        return sum(losses.l2_normalize(e) for e in embeddings)


def gumbel_softmax(logits: jax.Array, gumbel: jax.Array, tau: float) -> jax.Array:
    """Soft (hard=False) Gumbel-softmax over the hyperedge axis with given Gumbel(0, 1) noise."""
    return jax.nn.softmax((logits + gumbel) / tau, axis=-1)


def hyperedge_memberships(graphs: Graphs, item_logits: dict, noise: dict, cfg: Config) -> tuple[dict, dict]:
    """Per modality, the item [I, A] and user [U, A] hyperedge memberships before dropout.

    Item logits X_m V_m come from the raw frozen features (not the MGE projections); user logits are plain sums over
    the user's items (binary R, no degree normalization). With user_hyper_fix=False, the pre-fix assignment bug is
    applied.
    """
    item, user_logits = {}, {}
    for m in graphs.modalities:
        logits = item_logits[m]
        user_logits[m] = graphs.inter @ logits
        item[m] = gumbel_softmax(logits, noise["gumbel_item"][m], cfg.tau)
    user = {m: gumbel_softmax(user_logits[m], noise["gumbel_user"][m], cfg.tau) for m in graphs.modalities}
    if not cfg.user_hyper_fix and len(graphs.modalities) >= 2:
        first, second = graphs.modalities[:2]
        # Official pre-fix line `uv_hyper = gumbel_softmax(ut_hyper)`: the visual slot receives the softmaxed textual
        # logits, and the textual slot keeps its raw logits.
        user[first] = user[second]
        user[second] = user_logits[second]
    return item, user


def dropout(h: jax.Array, keep: jax.Array | None, keep_rate: float) -> jax.Array:
    """Inverted dropout with a given keep-mask (None = evaluation or keep_rate 1: identity)."""
    if keep is None:
        return h
    return jnp.where(keep, h / keep_rate, 0.0)


def hgnn(h_item: jax.Array, h_user: jax.Array, z_item: jax.Array, n_layers: int) -> tuple[jax.Array, jax.Array]:
    """HGNN layers item → hyperedge → (item, user); the same H̃_i in both item steps; returns the last layer."""
    z_user = None
    for _ in range(n_layers):
        edges = h_item.T @ z_item  # Λ [A, d]
        z_item = h_item @ edges
        z_user = h_user @ edges
    return z_user, z_item


@part("hypergraph")
def ghe(graphs: Graphs, item_logits: dict, noise: dict, item_input: jax.Array, cfg: Config) -> dict:
    """Per modality, the hypergraph outputs {"user": {m: [U, d]}, "item": {m: [I, d]}} from the item hyperedge
    logits X_m V_m."""
    h_item, h_user = hyperedge_memberships(graphs, item_logits, noise, cfg)
    keep_item, keep_user = noise["keep_item"], noise["keep_user"]
    out = {"user": {}, "item": {}}
    for m in graphs.modalities:
        # Item and user matrices get independent masks (two separate self.drop(...) calls in the official code).
        hi = dropout(h_item[m], None if keep_item is None else keep_item[m], cfg.keep_rate)
        hu = dropout(h_user[m], None if keep_user is None else keep_user[m], cfg.keep_rate)
        out["user"][m], out["item"][m] = hgnn(hi, hu, item_input, cfg.n_hyper_layer)
    return out


def forward(params: dict, graphs: Graphs, feats: dict, noise: dict, cfg: Config):
    """Deterministic given `noise`. Returns (user emb [U, d], item emb [I, d], aux) with aux["hyper"] the GHE
    outputs per modality (empty when GHE is off or there are no modalities)."""
    adj = graphs.adj  # [N, ·] arrays below are in adj.join's layout; adj.split gives the user and item rows
    e_cge = cge(params, graphs, cfg)
    if not graphs.modalities:
        return *adj.split(e_cge), {"hyper": None}
    # The branches are summed as separate user and item rows: the GHE outputs come as such, and joining them only to
    # split the sum again would copy [N, d] twice (the rows are normalized one by one, so the result is the same).
    branches = [adj.split(e_cge)] if cfg.use_cge else []
    projected = feature_projections(params, feats, graphs.modalities, cfg)
    if cfg.use_mge:
        branches.append(adj.split(mge(graphs, projected["mge"], cfg)))
    hyper = None
    if cfg.use_ghe:
        item_input = adj.split(e_cge)[1] if cfg.use_cge else params["item_id_embedding"]
        hyper = ghe(graphs, projected["hyper"], noise, item_input, cfg)
        with part("bpr_reg"):
            branches.append(tuple(cfg.alpha * losses.l2_normalize(sum(hyper[side][m] for m in graphs.modalities))
                                  for side in ("user", "item")))
    with part("bpr_reg"):
        users, items = (sum(rows) for rows in zip(*branches))
    return users, items, {"hyper": hyper}


def apply(params: dict, graphs: Graphs, feats: dict, key: jax.Array, train: bool, cfg: Config):
    """Returns (user embeddings [U, d], item embeddings [I, d], aux). Called once per evaluation pass."""
    noise = sample_noise(key, params["user_embedding"].shape[0], params["item_id_embedding"].shape[0],
                         graphs.modalities, train, cfg)
    return forward(params, graphs, feats, noise, cfg)


# ----------------------------------------------------------------------------------------------------------------
# Loss


def infonce_sum(anchor: jax.Array, positive: jax.Array, candidates: jax.Array, mask: jax.Array,
                tau: float) -> jax.Array:
    """−Σ_b mask_b · log softmax_j(cos(a_b, c_j)/τ) at j = the positive; the denominator runs over all candidates
    (the positive included), rows of the batch are summed, not averaged (the official ssl_triple_loss)."""
    a, p, c = losses.l2_normalize(anchor), losses.l2_normalize(positive), losses.l2_normalize(candidates)
    pos = jnp.sum(a * p, axis=-1) / tau
    total = losses.similarity_logsumexp(a, c, tau)  # unit rows: a fixed shift, no overflow (losses.py)
    return jnp.sum((total - pos) * mask)


@part("contrastive")
def hcl_loss(hyper: dict, modalities: tuple[str, ...], batch: dict, tau: float) -> jax.Array:
    """Σ over ordered modality pairs (a before b) of user (batch users vs all users) and item (positives vs all
    items) InfoNCE in the direction a → b. Repeated users of a batch count once per occurrence."""
    total = jnp.zeros((), jnp.float32)
    users, pos, mask = batch["users"], batch["pos"], batch["mask"]
    for a, b in itertools.combinations(modalities, 2):
        zu_a, zu_b = hyper["user"][a], hyper["user"][b]
        zi_a, zi_b = hyper["item"][a], hyper["item"][b]
        total = total + infonce_sum(zu_a[users], zu_b[users], zu_b, mask, tau)
        total = total + infonce_sum(zi_a[pos], zi_b[pos], zi_b, mask, tau)
    return total


def loss_with_noise(params: dict, graphs: Graphs, feats: dict, batch: dict, noise: dict, cfg: Config):
    """The training loss for given noise: (scalar, {"bpr", "hcl", "reg"})."""
    users, items, aux = forward(params, graphs, feats, noise, cfg)
    with part("bpr_reg"):
        u, p, n = users[batch["users"]], items[batch["pos"]], items[batch["neg"]]
        bpr = losses.bpr_loss(u, p, n, batch["mask"])
        reg = losses.frobenius_reg(batch["mask"], u, p, n)
        total = bpr + cfg.reg_weight * reg
    hcl = jnp.zeros((), jnp.float32)
    if cfg.use_hcl and aux["hyper"] is not None:
        hcl = hcl_loss(aux["hyper"], graphs.modalities, batch, cfg.tau)
        total = total + cfg.cl_weight * hcl
    return total, {"bpr": bpr, "hcl": hcl, "reg": reg}


def loss(params: dict, graphs: Graphs, feats: dict, batch: dict, key: jax.Array, cfg: Config):
    noise = sample_noise(key, params["user_embedding"].shape[0], params["item_id_embedding"].shape[0],
                         graphs.modalities, True, cfg)
    return loss_with_noise(params, graphs, feats, batch, noise, cfg)

