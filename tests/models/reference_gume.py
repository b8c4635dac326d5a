"""An independent float64 NumPy GUME, written from SPEC §4 with dense matrices and plain loops, for the tests.

It shares nothing with the JAX code but the parameter names: it builds the kNN graphs, the semantic neighbours, Â and
R̂ itself from the raw features and (user, item) pairs, and takes the loss's random perturbations as an array.
Multi-modality rules (documented in lgmrec_jax/models/gume.py) are written out here too: for image + text they
reduce to the spec's formulas.
"""

from __future__ import annotations

import itertools

import numpy as np


# ---------------------------------------------------------------------------------------------------------------
# Graphs.


def knn_dense(features: np.ndarray, k: int) -> tuple[np.ndarray, list[list[int]], np.ndarray]:
    """(W, neighbour lists, S): W[i, j] = deg_i^-1/2 S_ij deg_j^-1/2 on the kept entries, deg = kept row sums.

    Kept entries of row i: i itself, then the k-1 others of largest cosine, ties to the smaller column id.
    """
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    xn = x / np.where(norms > 0, norms, 1.0)[:, None]  # a zero row stays zero
    sims = xn @ xn.T
    n = len(x)
    kept = np.zeros((n, n))
    lists = []
    for i in range(n):
        others = sorted((j for j in range(n) if j != i), key=lambda j: (-sims[i, j], j))
        cols = [i] + others[:k - 1]
        kept[i, cols] = sims[i, cols]
        lists.append(cols)
    deg = kept.sum(axis=1)
    inv_sqrt = np.array([1.0 / np.sqrt(v) if v > 0 else 0.0 for v in deg])
    return inv_sqrt[:, None] * kept * inv_sqrt[None, :], lists, sims


def semantic_edges(neighbour_lists: list[list[list[int]]]) -> set[tuple[int, int]]:
    """{(i, j)}: j in every modality's list of i, j ≠ i."""
    edges = set()
    for i in range(len(neighbour_lists[0])):
        common = set(neighbour_lists[0][i])
        for lists in neighbour_lists[1:]:
            common &= set(lists[i])
        edges |= {(i, j) for j in common if j != i}
    return edges


def enhanced_adjacency(n_users: int, n_items: int, train: np.ndarray, edges) -> np.ndarray:
    """Â = D^-1/2 A D^-1/2, A = [[0, R], [Rᵀ, M]] binary, D = row sums, zero-degree rows → 0."""
    n = n_users + n_items
    a = np.zeros((n, n))
    for u, i in train:
        a[u, n_users + i] = 1.0
        a[n_users + i, u] = 1.0
    for i, j in edges:
        a[n_users + i, n_users + j] = 1.0
    deg = a.sum(axis=1)
    inv_sqrt = np.array([1.0 / np.sqrt(v) if v > 0 else 0.0 for v in deg])
    return inv_sqrt[:, None] * a * inv_sqrt[None, :]


def graphs(n_users, n_items, train, features: dict, k: int) -> dict:
    mods = sorted(features)
    knn = {m: knn_dense(features[m], k) for m in mods}
    edges = semantic_edges([knn[m][1] for m in mods])
    adj = enhanced_adjacency(n_users, n_items, train, edges)
    return {"adj": adj, "r_hat": adj[:n_users, n_users:], "knn": {m: knn[m][0] for m in mods}, "edges": edges}


# ---------------------------------------------------------------------------------------------------------------
# Forward.


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lin(p, x):
    y = x @ np.asarray(p["kernel"], np.float64)
    return y + np.asarray(p["bias"], np.float64) if "bias" in p else y


def light_gcn(adj, ego, n_layers):
    layers = [ego]
    for _ in range(n_layers):
        layers.append(adj @ layers[-1])
    return np.mean(layers, axis=0)


def forward(params: dict, g: dict, cfg) -> dict:
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    mods = sorted(params["modalities"])
    eu, ei = f64(params["user_embedding"]), f64(params["item_id_embedding"])
    e_id = light_gcn(g["adj"], np.vstack([eu, ei]), cfg.n_ui_layers)
    explicit, interests = [], []
    for m in mods:
        pm = params["modalities"][m]
        gated = ei * sigmoid(lin(pm["space_trans"]["trans"], lin(pm["space_trans"]["reduce"], f64(pm["features"]))))
        p_i = gated
        for _ in range(cfg.n_layers):
            p_i = g["knn"][m] @ p_i
        explicit.append(np.vstack([g["r_hat"] @ p_i, p_i]))
        interests.append(light_gcn(g["adj"], np.vstack([f64(pm["extended_user"]), p_i]), cfg.n_ui_layers))
    q = sum(interests) / len(mods)
    sc = params["separate_coarse"]
    logits = np.hstack([lin(sc["out"], np.tanh(lin(sc["hidden"], p))) for p in explicit])
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    coarse = sum(w[:, [j]] * p for j, p in enumerate(explicit))
    fine = [sigmoid(lin(params["modalities"][m]["behavior"], e_id)) * (p - coarse) for m, p in zip(mods, explicit)]
    z = (sum(fine) + coarse) / (len(mods) + 1)
    return {"final": e_id + z, "integration": z, "extended_id": e_id, "extended_interest": q, "explicit": explicit}


# ---------------------------------------------------------------------------------------------------------------
# Loss.


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def info_nce(a, b, temp):
    a, b = unit(a), unit(b)
    total = 0.0
    for r in range(len(a)):
        num = np.exp(a[r] @ b[r] / temp)
        den = sum(np.exp(a[r] @ b[c] / temp) for c in range(len(b)))
        total += -np.log(num / den)
    return total / len(a)


def perturbed(x, eps):
    return x + np.sign(x) * unit(np.asarray(eps, np.float64)) * 0.1


def loss(params, g, cfg, users, pos, neg, mask, noise) -> tuple[float, dict]:
    """Rows with mask 0 are dropped; the squared-norm regularisers divide by the padded length len(mask)."""
    f = forward(params, g, cfg)
    n_users = np.asarray(params["user_embedding"]).shape[0]
    real = np.asarray(mask) > 0
    u, p, n = np.asarray(users)[real], np.asarray(pos)[real], np.asarray(neg)[real]
    padded = len(mask)
    U = lambda x: x[:n_users]  # noqa: E731
    I = lambda x: x[n_users:]  # noqa: E731
    e_u, e_p, e_n = U(f["final"])[u], I(f["final"])[p], I(f["final"])[n]
    margin = (e_u * e_p).sum(1) - (e_u * e_n).sum(1)
    bpr = np.mean(np.logaddexp(0.0, -margin))
    reg1 = cfg.reg_weight_1 * 0.5 * ((e_u ** 2).sum() + (e_p ** 2).sum() + (e_n ** 2).sum()) / padded
    pairs = list(itertools.combinations(f["explicit"], 2))
    vt = cfg.vt_loss * (np.mean([abs(a.var(ddof=1) - b.var(ddof=1)) + abs(a.mean() - b.mean()) for a, b in pairs])
                        if pairs else 0.0)
    z, e_id, q = f["integration"], f["extended_id"], f["extended_interest"]
    bm = cfg.bm_loss * (info_nce(U(z)[u], U(e_id)[u], cfg.bm_temp) + info_nce(I(z)[p], I(e_id)[p], cfg.bm_temp))
    c = info_nce(U(q)[u], U(z)[u], cfg.um_temp)
    n1 = info_nce(perturbed(U(z), noise[0])[u], perturbed(U(z), noise[1])[u], cfg.um_temp)
    n2 = info_nce(perturbed(U(q), noise[2])[u], perturbed(U(q), noise[3])[u], cfg.um_temp)
    um = cfg.um_loss * (c + n1 + n2)
    reg2 = cfg.reg_weight_2 * 0.5 * (I(q)[p] ** 2).sum() / padded
    parts = {"bpr": bpr, "vt": vt, "bm": bm, "um": um, "reg1": reg1, "reg2": reg2}
    return sum(parts.values()), parts
