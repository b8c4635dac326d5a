"""Using a trained run: top-K recommendations, embedding export, and scoring new (cold-start) items.

    run = load_run("runs/lgmrec-ml100k-…")                  # best-validation parameters from the checkpoint
    items, scores = top_k(run, users=[0, 5], k=10)          # training items excluded
    export_embeddings(run, "out/")                          # user_embeddings.npy, item_embeddings.npy
    cold = cold_item_embeddings(run, {"text": x_t, "meta": x_m})   # new items: features, no interactions

Embeddings are computed exactly as the trainer's final test evaluation computes them: `model.apply(train=False)`
with the best-validation parameters and the evaluation key of the best epoch, so metrics recomputed from a loaded
run equal results.json (tests/test_recommend.py checks this). For LGMRec that key fixes the Gumbel noise of
inference, which the official model draws afresh at every prediction (SPEC §3.7).

Cold-start items (a new item with feature rows for every modality of the dataset but no interactions and no
trained ID embedding). What each LGMRec branch can and cannot give such an item:
  * CGE  nothing. The item has no ID embedding and no edge in Â, so LightGCN would propagate a zero vector:
         its CGE term is 0.
  * MGE  the model proper gives 0 too: MGE keeps only the K-th propagation layer and an isolated node receives
         nothing. We use the branch's layer-0 representation instead, the projected features x_m W_m, and
         L2-normalize it per modality exactly as MGE normalizes its output (the normalization removes the scale
         difference between layer 0 and layer K, not the smoothing). This is the one approximation made.
  * GHE  fully available. The item's hyperedge memberships come from its raw features, h_m = softmax(x_m V_m / τ)
         (noise-free: the Gumbel noise of training/inference is left out so a new item's score is deterministic),
         and its embedding is h_m Λ_m with Λ_m the hyperedge embeddings of the last HGNN layer computed from the
         warm items (with the same noise and parameters as the warm embeddings). A cold item does not change Λ.
Fused as the model fuses: e = Σ_m normalize(x_m W_m) + α · normalize(Σ_m h_m Λ_m), honouring the use_mge/use_ghe
switches (use_cge changes only the warm input Z_i⁰ of GHE). `parts` selects branches for analysis.
Not available: anything collaborative about the item itself (its CGE, its users), and the hypergraph contrastive
loss (a training-time term). LightGCN has no feature branch: a new item has no representation at all and the call
raises. GUME cold-start is not implemented here (its item inputs are ID ⊙ feature products, so a cold item would
rest entirely on its kNN neighbours; see the report of issue 7).

A model module may provide its own `cold_item_embeddings(params, graphs, feats, new_feats, key, cfg)`; it is then
used instead of the adapters below, which belong in the model files once those settle.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lgmrec_jax import atomic, jsonio, losses, rundir
from lgmrec_jax.checkpoint import Checkpointer
from lgmrec_jax.config import RunConfig
from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.errors import InputError
from lgmrec_jax.evaluation import padded_lists
from lgmrec_jax.graph.sparse import resolve_backend
from lgmrec_jax.models import get_model
from lgmrec_jax.recommend_checks import (EXPORT_FILES, check_request, read_cold_features,  # noqa: F401 (API)
                                         read_run_config)
from lgmrec_jax.train import EVAL_KEY_OFFSET, TrainState, make_embed, make_optimizer

USER_CHUNK = 4096  # users scored per device call: bounds the [users, items] score matrix


class ColdStartUnsupported(InputError, NotImplementedError):
    """The run's model cannot represent an item without interactions (asked of it with --cold-features)."""


@dataclasses.dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    data: Dataset
    model: Any
    graphs: Any
    feats: dict
    params: Any  # best-validation parameters
    best_epoch: int
    eval_key: jax.Array
    user_emb: jax.Array  # [U, d]
    item_emb: jax.Array  # [I, d]


def load_run(run_dir: str | Path, data: Dataset | None = None) -> LoadedRun:
    """Restores the best-validation parameters of a run directory and computes its embeddings.

    `data` defaults to loading the run's dataset as the CLI does; pass it when it is already in memory (it must be
    the dataset the run trained on: it is checked against the hash recorded in the run's repro.json).
    """
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if data is None:
        from lgmrec_jax import run_data
        data = run_data.ensure_dataset(cfg.dataset, Path(cfg.train.data_dir))
    for warning in rundir.check_matches_record(run_dir, cfg, data, use="--run"):
        print(f"warning: {warning}", file=sys.stderr)
    model = get_model(cfg.model_name)
    ckpt_dir = run_dir / "checkpoints"
    if not rundir.checkpoint_epochs(run_dir):
        raise InputError(f"{run_dir}: no checkpoint in {ckpt_dir} (was it trained with train.checkpoint_every=0, "
                         "or stopped before its first epoch ended?)")
    # The restore target only fixes structure, shapes and dtypes; its values are overwritten.
    params = model.init(jax.random.PRNGKey(0), cfg.model, data)
    optimizer = make_optimizer(cfg, steps_per_epoch=1)
    target = TrainState(params=params, opt_state=optimizer.init(params), best_params=params,
                        step=jnp.zeros((), jnp.int32), key=jax.random.PRNGKey(0))
    checkpointer = Checkpointer(ckpt_dir)
    try:
        state, loop = checkpointer.restore(target)
    finally:
        checkpointer.close()
    best_epoch = int(loop["best_epoch"])
    if best_epoch < 0:
        raise InputError(f"{run_dir}: the run never evaluated a validation epoch; no best parameters exist")
    backend = resolve_backend(cfg.train.backend)
    graphs = model.build_graphs(data, cfg.model, backend, cache_dir=Path(cfg.train.cache_dir))
    feats = {m: jnp.asarray(f) for m, f in data.features.items()}
    # Same key as Trainer.evaluate(best_params, test, best_epoch): the embeddings behind results.json["test"].
    eval_key = jax.random.fold_in(jax.random.PRNGKey(cfg.train.seed), EVAL_KEY_OFFSET + best_epoch)
    user_emb, item_emb = _embed_fn(cfg.model_name, cfg.model)(state.best_params, graphs, feats, eval_key)
    return LoadedRun(run_dir, cfg, data, model, graphs, feats, state.best_params, best_epoch, eval_key,
                     user_emb, item_emb)


@functools.lru_cache(maxsize=8)
def _embed_fn(model_name: str, model_cfg):
    # One jitted embed per (model, config): loading several runs of one config compiles once.
    return make_embed(get_model(model_name), model_cfg)


# ----------------------------------------------------------------------------------------------------------------
# Top-K


def top_k(run: LoadedRun, users, k: int = 10, extra_items: jax.Array | None = None,
          exclude_train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item ids and scores for `users` ([n] ids) → ([n, k] int, [n, k] float), best first.

    Training items of each user are excluded (as in evaluation). `extra_items` ([n_new, d], e.g. cold-start
    embeddings) join the candidates with ids n_items, n_items+1, ….
    """
    n_extra = 0 if extra_items is None else int(extra_items.shape[0])
    check_request(run.data, users, k, n_extra)
    users = np.asarray(users, dtype=np.int32).reshape(-1)
    items = run.item_emb if extra_items is None else jnp.concatenate([run.item_emb, extra_items], axis=0)
    ids, scores = [], []
    for start in range(0, users.size, USER_CHUNK):
        chunk = users[start:start + USER_CHUNK]
        seen = padded_lists(chunk, run.data.train, fill=items.shape[0]) if exclude_train else \
            np.full((chunk.size, 1), items.shape[0], np.int32)
        s, i = masked_top_k(run.user_emb, items, jnp.asarray(chunk), jnp.asarray(seen), k)
        ids.append(np.asarray(i))
        scores.append(np.asarray(s))
    if not ids:
        return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
    return np.concatenate(ids), np.concatenate(scores)


@functools.partial(jax.jit, static_argnames="k")
def masked_top_k(user_emb, item_emb, users, seen, k):
    scores = user_emb[users] @ item_emb.T
    rows = jnp.arange(users.shape[0])[:, None]
    # Padding entries of `seen` equal the item count: out of range, dropped by the scatter.
    scores = scores.at[rows, seen].set(-jnp.inf, mode="drop")
    return jax.lax.top_k(scores, k)


def ranks_among_candidates(run: LoadedRun, users, new_item_emb: jax.Array) -> np.ndarray:
    """[n_users, n_new] rank (1 = best) of each new item among the user's non-training warm items plus itself.

    Ties count against the new item (an item scoring equal to it ranks above it), so a constant scorer is not
    rewarded.
    """
    users = np.asarray(users, dtype=np.int32).reshape(-1)
    warm = np.asarray(run.user_emb[users] @ run.item_emb.T)  # [n, I]
    new = np.asarray(run.user_emb[users] @ jnp.asarray(new_item_emb).T)  # [n, n_new]
    # Training items of each requested user (a user may be requested twice: rows follow `users`).
    row_of = np.full(run.data.n_users, -1)
    row_of[users] = np.arange(users.size)
    train = run.data.train
    seen_unique = np.zeros((users.size, run.data.n_items), dtype=bool)
    hit = row_of[train[:, 0]] >= 0
    seen_unique[row_of[train[hit, 0]], train[hit, 1]] = True
    seen = seen_unique[row_of[users]]
    warm = np.where(seen, -np.inf, warm)
    return 1 + (warm[:, :, None] >= new[:, None, :]).sum(axis=1)


# ----------------------------------------------------------------------------------------------------------------
# Export


def export_embeddings(run: LoadedRun, out_dir: str | Path, ids=None) -> dict:
    """Writes user_embeddings.npy [U, d], item_embeddings.npy [I, d] (float32, row = dense id), user_ids.txt and
    item_ids.txt (line r: the dataset's own id of row r, from `ids`, a recommend_checks.DatasetIds; the dense ids
    without it) and export.json.

    By the project's write rule (lgmrec_jax/atomic.py): a folder already holding any of these files is refused
    before anything is written, each file appears complete or not at all, and a failure part-way (a full disk)
    removes the files this call wrote, so the same command can simply be run again."""
    out_dir = Path(out_dir)
    present = [name for name in EXPORT_FILES if (out_dir / name).exists()]
    if present:
        raise InputError(f"--out {out_dir}: already holds an export ({', '.join(present)}); choose another "
                         "directory or move those files away (nothing was written)")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {"run_dir": str(run.run_dir), "model": run.cfg.model_name, "dataset": run.cfg.dataset,
            "best_epoch": run.best_epoch, "n_users": int(run.user_emb.shape[0]),
            "n_items": int(run.item_emb.shape[0]), "dim": int(run.user_emb.shape[1]),
            "score": "dot product of a user row and an item row (as in training and evaluation)",
            "ids": {"users": "user_ids.txt", "items": "item_ids.txt",
                    "space": ids.space if ids is not None else "internal (0-based dense ids)"}}
    written: list[Path] = []
    try:
        for name, table in (("user_embeddings.npy", run.user_emb), ("item_embeddings.npy", run.item_emb)):
            written.append(atomic.save_npy(out_dir / name, np.asarray(table, np.float32)))
        for kind, n in (("user", info["n_users"]), ("item", info["n_items"])):
            names = ids.all_ids(kind) if ids is not None else range(n)
            written.append(atomic.write_text(out_dir / f"{kind}_ids.txt", "".join(f"{name}\n" for name in names)))
        written.append(jsonio.write_json(out_dir / "export.json", info))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    return info


# ----------------------------------------------------------------------------------------------------------------
# Cold-start items


def cold_item_embeddings(run: LoadedRun, new_feats: dict[str, np.ndarray], parts=("mge", "ghe")) -> jax.Array:
    """[n_new, d] embeddings of new items from their features only (definition in the module docstring)."""
    _check_new_features(run, new_feats)
    new = {m: jnp.asarray(x, jnp.float32) for m, x in new_feats.items()}
    hook = getattr(run.model, "cold_item_embeddings", None)
    if hook is not None:
        return hook(run.params, run.graphs, run.feats, new, run.eval_key, run.cfg.model)
    adapter = _COLD_START.get(run.cfg.model_name)
    if adapter is None:
        raise ColdStartUnsupported(_NO_COLD_START.get(
            run.cfg.model_name, f"{run.cfg.model_name}: cold-start scoring is not defined for this model"))
    unknown = set(parts) - {"mge", "ghe"}
    if unknown:
        raise ValueError(f"parts must be a subset of ('mge', 'ghe'); got {sorted(unknown)}")
    return adapter(run.params, run.graphs, run.feats, new, run.eval_key, run.cfg.model, tuple(sorted(parts)))


def _check_new_features(run: LoadedRun, new_feats: dict) -> None:
    expected = run.data.modalities
    if set(new_feats) != set(expected):
        raise InputError(f"new items need features for exactly the modalities {list(expected)}; "
                         f"got {sorted(new_feats)}")
    rows = {m: np.shape(x)[0] for m, x in new_feats.items()}
    if len(set(rows.values())) != 1:
        raise InputError(f"every modality must have one row per new item; got rows {rows}")
    for m in expected:
        want, got = run.data.features[m].shape[1], np.shape(new_feats[m])[1]
        if want != got:
            raise InputError(f"{m} features of new items have width {got}, the model was trained on {want}")


@functools.partial(jax.jit, static_argnames=("cfg", "parts"))
def _lgmrec_cold(params, graphs, feats, new: dict, key, cfg, parts: tuple[str, ...]) -> jax.Array:
    from lgmrec_jax.models import lgmrec as lg
    if not graphs.modalities:
        raise NotImplementedError("lgmrec without modalities is CGE only: a new item has no representation")
    n_new = next(iter(new.values())).shape[0]
    out = jnp.zeros((n_new, cfg.embedding_size), jnp.float32)  # the CGE term of an isolated, ID-less node
    if cfg.use_mge and "mge" in parts:
        out = out + sum(losses.l2_normalize(new[m] @ params["item_trs"][m]) for m in graphs.modalities)
    if cfg.use_ghe and "ghe" in parts:
        n_users, n_items = params["user_embedding"].shape[0], params["item_id_embedding"].shape[0]
        # The warm items' memberships with the same inference noise as the warm embeddings, so Λ matches them.
        noise = lg.sample_noise(key, n_users, n_items, graphs.modalities, False, cfg)
        item_logits = lg.feature_projections(params, feats, graphs.modalities, cfg)["hyper"]  # as forward's
        h_item, _ = lg.hyperedge_memberships(graphs, item_logits, noise, cfg)
        item_input = lg.cge(params, graphs, cfg)[n_users:] if cfg.use_cge else params["item_id_embedding"]
        ghe = 0.0
        for m in graphs.modalities:
            logits = new[m] @ params["hyper"][m]
            h_new = lg.gumbel_softmax(logits, jnp.zeros_like(logits), cfg.tau)
            # hgnn's "user" output is H_u Λ of the last layer; passing the new items' memberships as H_u gives
            # h_new Λ_H from the unchanged warm propagation (the cold items do not feed back into Λ).
            z_new, _ = lg.hgnn(h_item[m], h_new, item_input, cfg.n_hyper_layer)
            ghe = ghe + z_new
        out = out + cfg.alpha * losses.l2_normalize(ghe)
    return out


_COLD_START = {"lgmrec": _lgmrec_cold}
_NO_COLD_START = {
    "lightgcn": "lightgcn uses only ID embeddings and the interaction graph: a new item without interactions has "
                "no representation (its propagated embedding is empty), so it cannot be scored",
    "gume": "cold-start scoring for gume is not implemented: its item inputs are ID-embedding ⊙ feature products "
            "and a new item has no ID embedding, so its representation would come only from kNN neighbours",
}
