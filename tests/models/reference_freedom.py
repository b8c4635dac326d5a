"""An independent float64 NumPy FREEDOM, written from MMRec's model with dense matrices, for the tests.

It shares nothing with the JAX code but the parameter names: it builds the kNN lists, the item-item graph, Â, the
edge weights and the pruned graph itself from the raw features and (user, item) pairs, and takes the kept edges as
a list of ids into the sorted distinct training pairs.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def knn_lists(features: np.ndarray, k: int) -> list[list[int]]:
    """Row i: i itself, then the k-1 other items of largest cosine, ties to the smaller id."""
    x = np.asarray(features, np.float64)
    norms = np.linalg.norm(x, axis=1)
    xn = x / np.where(norms > 0, norms, 1.0)[:, None]
    sims = xn @ xn.T
    n = len(x)
    return [[i] + sorted((j for j in range(n) if j != i), key=lambda j: (-sims[i, j], j))[:k - 1] for i in range(n)]


def laplacian_of_lists(lists: list[list[int]], n: int) -> np.ndarray:
    """MMRec's compute_normalized_laplacian: binary A, value r_i^-1/2 r_j^-1/2 with r the ROW sums (+1e-7)."""
    a = np.zeros((n, n))
    for i, cols in enumerate(lists):
        a[i, cols] = 1.0
    r = a.sum(axis=1) + EPS
    return a * (r[:, None] ** -0.5) * (r[None, :] ** -0.5)


def item_item(features: dict, k: int, image_weight: float) -> np.ndarray:
    mods = sorted(features)
    n = len(features[mods[0]])
    if len(mods) == 1:
        weights = {mods[0]: 1.0}
    elif "image" in mods:
        weights = {m: image_weight if m == "image" else (1 - image_weight) / (len(mods) - 1) for m in mods}
    else:
        weights = {m: 1.0 / len(mods) for m in mods}
    return sum(weights[m] * laplacian_of_lists(knn_lists(features[m], k), n) for m in mods)


def graphs(n_users: int, n_items: int, train: np.ndarray, features: dict, k: int, image_weight: float) -> dict:
    pairs = sorted(set(map(tuple, np.asarray(train).tolist())))
    r = np.zeros((n_users, n_items))
    for u, i in pairs:
        r[u, i] = 1.0
    d_u, d_i = r.sum(axis=1), r.sum(axis=0)
    weights = np.array([(d_u[u] + EPS) ** -0.5 * (d_i[i] + EPS) ** -0.5 for u, i in pairs])
    return {"pairs": pairs, "weights": weights, "adj": bipartite(r, exact=True),
            "item_item": item_item(features, k, image_weight), "n_users": n_users, "n_items": n_items}


def bipartite(r: np.ndarray, exact: bool) -> np.ndarray:
    """[[0, P], [Pᵀ, 0]], P = D_u^-1/2 R D_i^-1/2 (exact: zero-degree → 0; else MMRec's +1e-7)."""
    d_u, d_i = r.sum(axis=1), r.sum(axis=0)
    if exact:
        su = np.where(d_u > 0, 1.0 / np.sqrt(np.maximum(d_u, 1)), 0.0)
        si = np.where(d_i > 0, 1.0 / np.sqrt(np.maximum(d_i, 1)), 0.0)
    else:
        su, si = (d_u + EPS) ** -0.5, (d_i + EPS) ** -0.5
    p = su[:, None] * r * si[None, :]
    n_users, n_items = r.shape
    out = np.zeros((n_users + n_items, n_users + n_items))
    out[:n_users, n_users:] = p
    out[n_users:, :n_users] = p.T
    return out


def pruned(g: dict, kept) -> np.ndarray:
    """MMRec's masked_adj for the kept edges, renormalised with the kept graph's degrees."""
    r = np.zeros((g["n_users"], g["n_items"]))
    for e in kept:
        u, i = g["pairs"][e]
        r[u, i] = 1.0
    return bipartite(r, exact=False)


def forward(params: dict, g: dict, kept, cfg) -> tuple[np.ndarray, np.ndarray]:
    e_u = np.asarray(params["user_embedding"], np.float64)
    e_i = np.asarray(params["item_id_embedding"], np.float64)
    h = e_i
    for _ in range(cfg.n_mm_layers):
        h = g["item_item"] @ h
    adj = g["adj"] if kept is None else pruned(g, kept)
    x = np.concatenate([e_u, e_i])
    layers = [x]
    for _ in range(cfg.n_ui_layers):
        x = adj @ x
        layers.append(x)
    out = np.mean(layers, axis=0)
    return out[:len(e_u)], out[len(e_u):] + h


def bpr(u, p, n) -> float:
    margin = np.sum(u * p, axis=1) - np.sum(u * n, axis=1)
    return float(np.mean(np.log1p(np.exp(-margin))))


def loss(params: dict, g: dict, kept, batch: dict, cfg) -> tuple[float, dict]:
    """Total and parts on the real rows of the batch (padding rows dropped up front)."""
    real = np.asarray(batch["mask"]) > 0
    users, pos, neg = (np.asarray(batch[k])[real] for k in ("users", "pos", "neg"))
    e_u, e_i = forward(params, g, kept, cfg)
    u = e_u[users]
    main = bpr(u, e_i[pos], e_i[neg])
    modality = 0.0
    for m, p in params["modalities"].items():
        proj = np.asarray(p["features"], np.float64) @ np.asarray(p["trs"]["kernel"], np.float64) + np.asarray(
            p["trs"]["bias"], np.float64)
        modality += bpr(u, proj[pos], proj[neg])
    return main + cfg.reg_weight * modality, {"bpr": main, "modality_bpr": modality}


def inclusion_probabilities(weights: np.ndarray, n_keep: int) -> np.ndarray:
    """P(edge e is among the n_keep drawn) for successive sampling without replacement ∝ weights, by enumerating
    every ordered sequence of draws (tiny inputs only)."""
    w = np.asarray(weights, np.float64)
    out = np.zeros(len(w))

    def walk(chosen: list[int], prob: float) -> None:
        if len(chosen) == n_keep:
            out[chosen] += prob
            return
        left = w.sum() - w[chosen].sum()
        for e in range(len(w)):
            if e not in chosen:
                walk(chosen + [e], prob * w[e] / left)

    walk([], 1.0)
    return out
