"""An independent float64 NumPy BM3, written from MMRec's model with dense matrices and whole tables, for the tests.

It shares nothing with the JAX code but the parameter names. Dropout is applied as MMRec applies it: to the WHOLE
target tables (keep-masks given as [U, d], [I, d] and per-modality [I, d] arrays), which are then indexed by the
batch. `target_params` fixes the parameters the targets are computed from (they are detached in MMRec): finite
differences of `loss` then differentiate only the online side, as autodiff does.
"""

from __future__ import annotations

import numpy as np


def adjacency(n_users: int, n_items: int, train: np.ndarray) -> np.ndarray:
    r = np.zeros((n_users, n_items))
    r[train[:, 0], train[:, 1]] = 1.0
    a = np.zeros((n_users + n_items,) * 2)
    a[:n_users, n_users:] = r
    a[n_users:, :n_users] = r.T
    deg = a.sum(axis=1)
    s = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1)), 0.0)
    return s[:, None] * a * s[None, :]


def f64(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def linear(p: dict, x: np.ndarray) -> np.ndarray:
    return x @ f64(p["kernel"]) + f64(p["bias"])


def online(params: dict, adj: np.ndarray, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    e_u, e_i = f64(params["user_embedding"]), f64(params["item_id_embedding"])
    x = np.concatenate([e_u, e_i])
    layers = [x]
    for _ in range(n_layers):
        x = adj @ x
        layers.append(x)
    out = np.mean(layers, axis=0)
    return out[:len(e_u)], out[len(e_u):] + e_i


def scores_embeddings(params: dict, adj: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray]:
    u, i = online(params, adj, cfg.n_layers)
    return linear(params["predictor"], u), linear(params["predictor"], i)


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.maximum(np.linalg.norm(a, axis=1), 1e-8)
    nb = np.maximum(np.linalg.norm(b, axis=1), 1e-8)
    return np.sum(a * b, axis=1) / (na * nb)


def dropout(x: np.ndarray, keep, rate: float) -> np.ndarray:
    return x if keep is None else np.where(keep, x / (1 - rate), 0.0)


def loss(params: dict, adj: np.ndarray, batch: dict, masks: dict | None, cfg,
         target_params: dict | None = None) -> tuple[float, dict]:
    real = np.asarray(batch["mask"]) > 0
    users, items = np.asarray(batch["users"])[real], np.asarray(batch["pos"])[real]
    tp = params if target_params is None else target_params
    u_all, i_all = online(params, adj, cfg.n_layers)
    tu_all, ti_all = online(tp, adj, cfg.n_layers)
    keep = (lambda name: None) if masks is None else (lambda name: masks[name])
    u_target = dropout(tu_all, keep("user"), cfg.dropout)[users]
    i_target = dropout(ti_all, keep("item"), cfg.dropout)[items]
    pred = params["predictor"]
    ui = 1 - np.mean(cos(linear(pred, u_all)[users], i_target))
    iu = 1 - np.mean(cos(linear(pred, i_all)[items], u_target))
    align = masked = 0.0
    for m in sorted(params["modalities"]):
        f = linear(params["modalities"][m]["trs"], f64(params["modalities"][m]["features"]))
        tf = linear(tp["modalities"][m]["trs"], f64(tp["modalities"][m]["features"]))
        f_online = linear(pred, f)[items]
        f_target = dropout(tf, None if masks is None else masks["features"][m], cfg.dropout)[items]
        align += 1 - np.mean(cos(f_online, i_target))
        masked += 1 - np.mean(cos(f_online, f_target))
    reg = (np.linalg.norm(u_all) + np.linalg.norm(i_all)) / len(i_all)
    total = ui + iu + cfg.reg_weight * reg + cfg.cl_weight * (align + masked)
    return total, {"ui": ui, "iu": iu, "align": align, "mask": masked, "reg": reg}
