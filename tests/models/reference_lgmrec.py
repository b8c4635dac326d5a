"""An independent float64 NumPy LGMRec, written from SPEC §3 with dense matrices, for the tests to compare against.

It shares nothing with the JAX model but the meaning of the hyperparameters: it builds R and Â itself from the
(user, item) pairs and takes the random draws (Gumbel noise, dropout keep-masks) as plain arrays.
"""

from __future__ import annotations

import numpy as np


def dense_graphs(n_users: int, n_items: int, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R (binary U×I), Â = D^{-1/2} [[0, R], [Rᵀ, 0]] D^{-1/2} (isolated nodes → 0), 1/(deg_u + 1e-7)."""
    R = np.zeros((n_users, n_items))
    R[train[:, 0], train[:, 1]] = 1.0
    N = n_users + n_items
    A = np.zeros((N, N))
    A[:n_users, n_users:] = R
    A[n_users:, :n_users] = R.T
    deg = A.sum(axis=1)
    d = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    return R, d[:, None] * A * d[None, :], 1.0 / (R.sum(axis=1) + 1e-7)


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def forward(params: dict, n_users: int, train: np.ndarray, feats: dict, noise: dict, cfg: dict):
    """Returns (E_U, E_I, hyper) where hyper = {m: (Z_u, Z_i)} or None."""
    mods = list(feats)
    E_u, E_i = params["user_embedding"], params["item_id_embedding"]
    n_items = E_i.shape[0]
    R, adj, inv_deg = dense_graphs(n_users, n_items, train)

    # CGE: mean of E⁰ … E^L.
    layer = np.concatenate([E_u, E_i])
    layers = [layer]
    for _ in range(cfg["n_ui_layers"]):
        layer = adj @ layer
        layers.append(layer)
    e_cge = np.mean(layers, axis=0)
    if not mods:
        return e_cge[:n_users], e_cge[n_users:], None

    # MGE: users = mean of their items' projected features; K propagations; last layer only.
    e_mge = 0.0
    for m in mods:
        f_i = feats[m] @ params["item_trs"][m]
        f = np.concatenate([(R @ f_i) * inv_deg[:, None], f_i])
        for _ in range(cfg["n_mm_layers"]):
            f = adj @ f
        e_mge = e_mge + normalize(f)

    # GHE: Gumbel-softmax hyperedge memberships, dropout, HGNN.
    tau = cfg["tau"]
    logits_i = {m: feats[m] @ params["hyper"][m] for m in mods}
    logits_u = {m: R @ logits_i[m] for m in mods}
    h_i = {m: softmax((logits_i[m] + noise["gumbel_item"][m]) / tau) for m in mods}
    h_u = {m: softmax((logits_u[m] + noise["gumbel_user"][m]) / tau) for m in mods}
    if not cfg["user_hyper_fix"] and len(mods) >= 2:
        h_u[mods[0]] = softmax((logits_u[mods[1]] + noise["gumbel_user"][mods[1]]) / tau)
        h_u[mods[1]] = logits_u[mods[1]]
    z0 = e_cge[n_users:] if cfg["use_cge"] else E_i
    hyper = {}
    for m in mods:
        hi, hu = h_i[m], h_u[m]
        if noise["keep_item"] is not None:
            hi = hi * noise["keep_item"][m] / cfg["keep_rate"]
            hu = hu * noise["keep_user"][m] / cfg["keep_rate"]
        z_i = z0
        for _ in range(cfg["n_hyper_layer"]):
            lam = hi.T @ z_i
            z_i = hi @ lam
            z_u = hu @ lam
        hyper[m] = (z_u, z_i)
    e_ghe = sum(np.concatenate(hyper[m]) for m in mods)

    e = 0.0
    if cfg["use_cge"]:
        e = e + e_cge
    if cfg["use_mge"]:
        e = e + e_mge
    if cfg["use_ghe"]:
        e = e + cfg["alpha"] * normalize(e_ghe)
    else:
        hyper = None
    return e[:n_users], e[n_users:], hyper


def ssl(anchor, positive, all_, tau):
    """The official ssl_triple_loss: all-entity denominator, summed over the rows."""
    a, p, c = normalize(anchor), normalize(positive), normalize(all_)
    pos = np.exp(np.sum(a * p, axis=1) / tau)
    ttl = np.exp(a @ c.T / tau).sum(axis=1)
    return -np.sum(np.log(pos / ttl))


def loss(params, n_users, train, feats, noise, batch, cfg) -> tuple[float, dict]:
    """Total loss and its parts on the real (mask 1) rows of the batch; padding rows are dropped up front."""
    E_U, E_I, hyper = forward(params, n_users, train, feats, noise, cfg)
    real = batch["mask"] > 0
    users, pos, neg = batch["users"][real], batch["pos"][real], batch["neg"][real]
    u, p, n = E_U[users], E_I[pos], E_I[neg]
    margin = np.sum(u * p, axis=1) - np.sum(u * n, axis=1)
    bpr = np.mean(np.log1p(np.exp(-margin)))
    reg = (np.linalg.norm(u) + np.linalg.norm(p) + np.linalg.norm(n)) / len(users)
    hcl = 0.0
    mods = list(feats)
    if hyper is not None and cfg["use_hcl"]:
        for x in range(len(mods)):
            for y in range(x + 1, len(mods)):
                (zu_a, zi_a), (zu_b, zi_b) = hyper[mods[x]], hyper[mods[y]]
                hcl += ssl(zu_a[users], zu_b[users], zu_b, cfg["tau"])
                hcl += ssl(zi_a[pos], zi_b[pos], zi_b, cfg["tau"])
    total = bpr + cfg["cl_weight"] * hcl + cfg["reg_weight"] * reg
    return total, {"bpr": bpr, "hcl": hcl, "reg": reg}
