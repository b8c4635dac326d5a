"""What the group analyses share (sparsity.py: groups of users, popularity.py: groups of items).

* `analyse_runs`: each model's seed runs (reused by run key, or trained when missing and allowed), each loaded at its
  best-validation checkpoint and handed to an analysis function.
* `ranked_batches`: the full-ranking top-k of a split's users, batch by batch. The trainer's Evaluator only returns
  averages over all users; a group analysis needs each batch's top-k ids and ground truth to weight or restrict
  them. The ranking is the evaluator's: every item scored, the user's training items set to -inf, `lax.top_k`
  (ties by item id), so a metric recomputed from these batches equals the trainer's.
"""

from __future__ import annotations

from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from experiments.run_table import RUNS_ROOT, run_seeds, seed_list, unfinished_runs
from lgmrec_jax.errors import InputError
from lgmrec_jax.evaluation import padded_lists
from lgmrec_jax.recommend import LoadedRun, load_run, masked_top_k


def analyse_runs(cfgs: dict, data, n_seeds: int, analyse: Callable[[LoadedRun], dict], root=RUNS_ROOT,
                 reuse: bool = True, progress: bool = False, train: bool = True, log=print) -> dict:
    """{model: {"run_dirs": [...], "per_seed": [analyse(run) for each seed]}}.

    With train=False nothing is trained: if any run would need training (missing, unfinished, or of another config)
    an InputError names them all before anything is loaded. Analyses of existing runs use it so that a changed
    default cannot start hours of training, or resume a run that another process is still writing.
    """
    if not train and not reuse:
        raise InputError("--reuse-only and --no-reuse contradict each other: one reuses runs, the other retrains")
    if not train:
        missing = [str(d) for cfg in cfgs.values() for d in unfinished_runs(cfg, seed_list(cfg, n_seeds), root)]
        if missing:
            raise InputError("no finished run with this config in " + ", ".join(missing) +
                             " (drop --reuse-only to train them)")
    per_model = {}
    for model, cfg in cfgs.items():
        results = run_seeds(cfg, data, seed_list(cfg, n_seeds), root, reuse, progress, log)
        per_model[model] = {"run_dirs": [r["run_dir"] for r in results],
                            "per_seed": [analyse(load_run(r["run_dir"], data)) for r in results]}
    return per_model


def ranked_batches(user_emb, item_emb, data, users: np.ndarray, split: str = "test", k: int = 20,
                   batch: int = 4096) -> Iterator[tuple[slice, jax.Array, jax.Array]]:
    """Yields (rows of `users` in the batch, top-k item ids [B, k], padded ground truth of `split` [B, G]).

    Ground-truth padding is `data.n_items`, the evaluator's convention: it never equals a ranked id.
    """
    truth = data.split(split)
    for start in range(0, users.size, batch):
        rows = slice(start, min(start + batch, users.size))
        chunk = users[rows]
        seen = padded_lists(chunk, data.train, fill=data.n_items)
        gt = padded_lists(chunk, truth, fill=data.n_items)
        _, top = masked_top_k(user_emb, item_emb, jnp.asarray(chunk), jnp.asarray(seen), k)
        yield rows, top, jnp.asarray(gt)


def add_reuse_only_arg(p) -> None:
    p.add_argument("--reuse-only", action="store_true",
                   help="analyse existing finished runs only: an error (naming them) instead of training missing ones")
