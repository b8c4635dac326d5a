"""GUME (CIKM'24) exactly as the official code computes it (SPEC §4): graphs, forward pass and the six-part loss.

Modalities. The official model has exactly image and text; here any number M ≥ 1 works, iterated in sorted name
order (every operation below is symmetric in the modalities, so the order only affects float rounding):
  * attribute separation: softmax over the M coarse logits, C = Σ_m w_m P^m, Z = (Σ_m F^m + C) / (M + 1);
  * extended interest Q = mean_m Q^m;
  * internal alignment (vt): mean over the unordered modality pairs of |Δvar| + |Δmean|; 0 when M = 1;
  * semantic neighbours: intersection of all modalities' kNN lists (graph/knn.py).
For M = 2 each of these is the official formula.

Parameter layout: Linear kernels are stored [in, out] (x @ W + b), the transpose of torch's weight. The raw feature
tables are parameters (`modalities/<m>/features`) and are fine-tuned, as in the official code; the `feats` argument
of `apply`/`loss` is therefore unused. The kNN graphs are built once from the initial features and stay fixed.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lgmrec_jax import losses, precision
from lgmrec_jax.data import Dataset
from lgmrec_jax.graph import SparseMatrix, from_coo, normalized_adjacency
from lgmrec_jax.graph.knn import knn_graph, semantic_neighbours
from lgmrec_jax.models.hyperparams import GUMEConfig as Config
from lgmrec_jax.models.lightgcn import layer_mean
from lgmrec_jax.step_parts import part

# The feature tables live in params (fine-tuned copies), so the trainer need not place a second, frozen copy of
# them on the device (about 1 GB at Electronics scale).
READS_FEATURE_INPUTS = False


PERTURBATION_SCALE = 0.1  # cal_noise_loss: x + sign(x) ⊙ normalize(ε) · 0.1


class Forward(NamedTuple):
    """All [N, d] node matrices (users first) the score and the losses need."""

    final: jax.Array  # E = E_id + Z, used for scoring
    integration: jax.Array  # Z
    extended_id: jax.Array  # E_id
    extended_interest: jax.Array  # Q (losses only)
    explicit: tuple[jax.Array, ...]  # P^m per modality, sorted by name


# ----------------------------------------------------------------------------------------------------------------
# Graphs (host side, once).


def build_graphs(data: Dataset, cfg: Config, backend: str, cache_dir=None) -> dict:
    """kNN graph per modality, the semantic-neighbour-enhanced Â and its user-item block R̂ (SPEC §4.2)."""
    modalities = _sorted_modalities(data.features)
    return graphs_from_knn(data, {m: knn_graph(data.features[m], cfg.knn_k, "sym", cache_dir=cache_dir)
                                  for m in modalities}, backend)


def graphs_from_knn(data: Dataset, knn: dict, backend: str) -> dict:
    """build_graphs from given kNN graphs (one KnnGraph per modality): also what lgmrec_jax/aot gives it at scales
    too large to compute the neighbours, where only the graphs' shapes matter."""
    modalities = _sorted_modalities(data.features)
    edges = semantic_neighbours(*(knn[m].cols for m in modalities))
    adj = normalized_adjacency(data.n_users, data.n_items, data.train, item_item=edges, backend=backend)
    return {
        "adj": adj,
        "r_hat": user_item_block(adj, data.n_users),
        "knn": {m: knn[m].to_sparse(backend) for m in modalities},
    }


def user_item_block(adj: SparseMatrix, n_users: int) -> SparseMatrix:
    """R̂ = Â[:U, U:] as its own U×I matrix. Its values are Â's (degrees include the item-item edges), which is what
    the official `norm_adj_mat[:n_users, n_users:]` keeps."""
    rows = np.asarray(adj.fwd.row_ids)
    cols = np.asarray(adj.fwd.indices)
    vals = np.asarray(adj.fwd.data)
    keep = (rows < n_users) & (cols >= n_users)
    n_items = adj.shape[1] - n_users
    return from_coo(rows[keep], cols[keep] - n_users, vals[keep], (n_users, n_items), adj.backend)


# ----------------------------------------------------------------------------------------------------------------
# Parameters.


def init(key: jax.Array, cfg: Config, data: Dataset) -> dict:
    modalities = _sorted_modalities(data.features)
    d = cfg.embedding_size
    k_user, k_item, k_coarse, k_mod = jax.random.split(key, 4)
    xavier = jax.nn.initializers.glorot_uniform()  # = torch xavier_uniform_ on an [n, d] embedding table
    params = {
        "user_embedding": xavier(k_user, (data.n_users, d), jnp.float32),
        "item_id_embedding": xavier(k_item, (data.n_items, d), jnp.float32),
        "separate_coarse": _coarse_init(k_coarse, d),
        "modalities": {},
    }
    for m, k in zip(modalities, jax.random.split(k_mod, len(modalities))):
        feats = np.asarray(data.features[m], dtype=np.float32)
        k_reduce, k_trans, k_behavior, k_ext = jax.random.split(k, 4)
        params["modalities"][m] = {
            "features": jnp.array(feats),  # a copy: fine-tuned (from_pretrained(freeze=False))
            "space_trans": {"reduce": torch_linear_init(k_reduce, feats.shape[1], d),
                            "trans": torch_linear_init(k_trans, d, d)},
            "behavior": torch_linear_init(k_behavior, d, d),
            "extended_user": xavier(k_ext, (data.n_users, d), jnp.float32),
        }
    return params


def torch_linear_init(key: jax.Array, fan_in: int, fan_out: int, bias: bool = True) -> dict:
    """torch.nn.Linear's default init: kaiming_uniform(a=√5) on the weight is U(±1/√fan_in); the bias is too."""
    bound = 1.0 / math.sqrt(fan_in)
    k_w, k_b = jax.random.split(key)
    out = {"kernel": jax.random.uniform(k_w, (fan_in, fan_out), jnp.float32, -bound, bound)}
    if bias:
        out["bias"] = jax.random.uniform(k_b, (fan_out,), jnp.float32, -bound, bound)
    return out


def _coarse_init(key: jax.Array, d: int) -> dict:
    k_hidden, k_out = jax.random.split(key)
    return {"hidden": torch_linear_init(k_hidden, d, d), "out": torch_linear_init(k_out, d, 1, bias=False)}


# ----------------------------------------------------------------------------------------------------------------
# Forward (SPEC §4.3).


def linear(p: dict, x: jax.Array) -> jax.Array:
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


@part("projection")
def space_trans(p: dict, feats: jax.Array) -> jax.Array:
    """Linear(F→d) → Linear(d→d) → Sigmoid: no nonlinearity between the two linears, as in the official code.

    The first product goes through precision.project: its weight gradient then reads the [I, F] table row-major
    (2-3x faster on CPU at Clothing size than autodiff's Fᵀ-major contraction); both gradients are the same sums."""
    reduced = precision.project(feats, p["reduce"]["kernel"]) + p["reduce"]["bias"]
    return jax.nn.sigmoid(linear(p["trans"], reduced))


def coarse_logit(p: dict, x: jax.Array) -> jax.Array:
    """separate_coarse: Linear(d→d) → Tanh → Linear(d→1, no bias); one logit per node."""
    return linear(p["out"], jnp.tanh(linear(p["hidden"], x)))


@part("propagation")
def propagate(graph: SparseMatrix, x: jax.Array, n_layers: int) -> jax.Array:
    """graph^n_layers @ x, keeping only the last layer (conv_ii)."""
    for _ in range(n_layers):
        x = graph @ x
    return x


def forward(params: dict, graphs: dict, cfg: Config) -> Forward:
    mods = sorted(params["modalities"])
    user_id, item_id = params["user_embedding"], params["item_id_embedding"]
    # Explicit interaction features: item-side kNN propagation of the ID-gated modality embeddings, then users
    # through R̂ (one product for all modalities: R̂ acts on each column independently).
    p_items = []
    for m in mods:
        pm = params["modalities"][m]
        p_items.append(propagate(graphs["knn"][m], item_id * space_trans(pm["space_trans"], pm["features"]),
                                 cfg.n_layers))
    p_users = jnp.split(graphs["r_hat"] @ jnp.concatenate(p_items, axis=1), len(mods), axis=1)
    explicit = tuple(jnp.concatenate([u, i], axis=0) for u, i in zip(p_users, p_items))

    # Extended ID (E_id) and extended interest (Q^m) are LightGCN layer means on the same Â; they are propagated
    # together as one [N, (1 + M)·d] operand: the same per-column arithmetic in 1 instead of 1 + M sparse products.
    adj = graphs["adj"]
    user_egos = jnp.concatenate([user_id] + [params["modalities"][m]["extended_user"] for m in mods], axis=1)
    item_egos = jnp.concatenate([item_id] + p_items, axis=1)
    out_users, out_items = adj.split(layer_mean(adj, adj.join(user_egos, item_egos), cfg.n_ui_layers))
    outs = jnp.split(jnp.concatenate([out_users, out_items], axis=0), 1 + len(mods), axis=1)
    extended_id, interests = outs[0], outs[1:]
    extended_interest = sum(interests) / len(mods)

    integration = separate_and_integrate(params, explicit, extended_id, mods)
    return Forward(final=extended_id + integration, integration=integration, extended_id=extended_id,
                   extended_interest=extended_interest, explicit=explicit)


@part("separation")
def separate_and_integrate(params: dict, explicit: tuple[jax.Array, ...], extended_id: jax.Array,
                           mods: list[str]) -> jax.Array:
    """Attribute separation (SPEC §4.3 step 5): coarse common part C, behaviour-gated specific parts F^m, Z."""
    logits = jnp.concatenate([coarse_logit(params["separate_coarse"], p) for p in explicit], axis=-1)  # [N, M]
    weights = jax.nn.softmax(logits, axis=-1)
    coarse = sum(weights[:, j:j + 1] * p for j, p in enumerate(explicit))
    fine = [jax.nn.sigmoid(linear(params["modalities"][m]["behavior"], extended_id)) * (p - coarse)
            for m, p in zip(mods, explicit)]
    return (sum(fine) + coarse) / (len(explicit) + 1)


def apply(params: dict, graphs: dict, feats: dict, key: jax.Array, train: bool, cfg: Config):
    """Returns (user embeddings [U, d], item embeddings [I, d], {}). Deterministic: `key` and `train` are unused."""
    out = forward(params, graphs, cfg).final
    n_users = params["user_embedding"].shape[0]
    return out[:n_users], out[n_users:], {}


# ----------------------------------------------------------------------------------------------------------------
# Loss (SPEC §4.4).


@part("noise")
def perturbation_noise(key: jax.Array, users: jax.Array, dim: int) -> jax.Array:
    """ε ~ U[0, 1) of shape [4, len(users), d] for the given user ids: two views for Z_U (noise_loss_1), then two
    for Q_U (noise_loss_2).

    The official code draws `torch.rand_like` over the whole user table and then indexes the batch's rows. Each
    user's rows here come from their own stream (the key folded with the user id), which is that distribution
    (independent uniforms per user row), keeps what the full draw guarantees (a user repeated in a batch gets the
    same perturbation in each occurrence), and draws B rows instead of U: a [4, U, d] draw is 2 GB at 2M users, and
    it would be made on every device.
    """
    return jax.vmap(lambda u: jax.random.uniform(jax.random.fold_in(key, u), (4, dim), jnp.float32),
                    out_axes=1)(users)


def loss(params: dict, graphs: dict, feats: dict, batch: dict, key: jax.Array, cfg: Config):
    dim = params["user_embedding"].shape[1]
    return loss_with_noise(params, graphs, batch, perturbation_noise(key, batch["users"], dim), cfg)


def loss_with_noise(params: dict, graphs: dict, batch: dict, noise: jax.Array, cfg: Config):
    """The full loss given the perturbation noise: ε [4, B, d], the rows of the batch's users (tests feed a
    reference implementation, which perturbs the whole user table, the same ε)."""
    fw = forward(params, graphs, cfg)
    n_users = params["user_embedding"].shape[0]
    users, pos, neg, mask = batch["users"], batch["pos"], batch["neg"], batch["mask"]
    # The official code divides the squared-norm regularisers by the constant train_batch_size (2048), also for the
    # short last batch. Our batches are padded to that size, so the padded length is that constant.
    padded_batch = mask.shape[0]

    def users_of(x):
        return x[:n_users][users]

    def pos_items_of(x):
        return x[n_users:][pos]

    with part("bpr_reg"):
        e_u, e_p, e_n = users_of(fw.final), pos_items_of(fw.final), fw.final[n_users:][neg]
        bpr = losses.bpr_loss(e_u, e_p, e_n, mask)
        reg1 = cfg.reg_weight_1 * half_squared_norm(mask, e_u, e_p, e_n) / padded_batch
        vt = cfg.vt_loss * internal_alignment(fw.explicit)
        reg2 = cfg.reg_weight_2 * half_squared_norm(mask, pos_items_of(fw.extended_interest)) / padded_batch
    z_u = users_of(fw.integration)
    bm = cfg.bm_loss * (in_batch_info_nce(z_u, users_of(fw.extended_id), cfg.bm_temp, mask)
                        + in_batch_info_nce(pos_items_of(fw.integration), pos_items_of(fw.extended_id),
                                            cfg.bm_temp, mask))

    q_u = users_of(fw.extended_interest)
    # Perturbing the batch's rows with their noise rows equals perturbing the full matrix, then indexing: the row
    # normalization of ε is per row.
    contrast = in_batch_info_nce(q_u, z_u, cfg.um_temp, mask)
    noise_z = in_batch_info_nce(perturb(z_u, noise[0]), perturb(z_u, noise[1]), cfg.um_temp, mask)
    noise_q = in_batch_info_nce(perturb(q_u, noise[2]), perturb(q_u, noise[3]), cfg.um_temp, mask)
    um = cfg.um_loss * (contrast + noise_z + noise_q)

    total = bpr + vt + bm + um + reg1 + reg2
    return total, {"bpr": bpr, "vt": vt, "bm": bm, "um": um, "reg1": reg1, "reg2": reg2}


def half_squared_norm(mask: jax.Array, *embeddings: jax.Array) -> jax.Array:
    """Σ ½‖E‖_F² over the real rows (sq_sum in the official code)."""
    return sum(0.5 * jnp.sum(jnp.square(e) * mask[:, None]) for e in embeddings)


def internal_alignment(explicit: tuple[jax.Array, ...]) -> jax.Array:
    """|var(P^a) − var(P^b)| + |mean(P^a) − mean(P^b)| over all entries (unbiased variance), averaged over modality
    pairs; zero for a single modality."""
    stats = [(jnp.var(p, ddof=1), jnp.mean(p)) for p in explicit]
    pairs = list(itertools.combinations(stats, 2))
    if not pairs:
        return jnp.zeros((), jnp.float32)
    return sum(jnp.abs(va - vb) + jnp.abs(ma - mb) for (va, ma), (vb, mb) in pairs) / len(pairs)


@part("contrastive")
def in_batch_info_nce(view1: jax.Array, view2: jax.Array, temperature: float, mask: jax.Array) -> jax.Array:
    """−mean_b log(exp(⟨â_b, b̂_b⟩/τ) / Σ_{b'} exp(⟨â_b, b̂_{b'}⟩/τ)) over real rows b and real columns b'.

    One direction, in-batch negatives (duplicates included, as in the official code), rows L2-normalized.
    """
    a, b = losses.l2_normalize(view1), losses.l2_normalize(view2)
    positive = jnp.sum(a * b, axis=-1) / temperature
    denominator = losses.similarity_logsumexp(a, b, temperature, candidate_mask=mask)  # unit rows (losses.py)
    return losses.masked_mean(denominator - positive, mask)


def perturb(x: jax.Array, eps: jax.Array) -> jax.Array:
    """π(x) = x + sign(x) ⊙ normalize_row(ε) · 0.1 (a same-sign random shift of norm 0.1 per row)."""
    return x + jnp.sign(x) * losses.l2_normalize(eps) * PERTURBATION_SCALE


def _sorted_modalities(features: dict) -> list[str]:
    if not features:
        raise ValueError("GUME needs at least one item modality (features is empty)")
    return sorted(features)
