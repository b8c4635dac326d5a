"""Accuracy on popular and long-tail items: test Recall@20 / NDCG@20 restricted to head or tail items.

    python -m experiments.popularity --models lightgcn lgmrec gume --dataset ml100k --seeds 3 --head-fraction 0.2 \
        [--set train.epochs=200] [--reuse-only]

GUME claims its multimodal item side helps long-tail items (SPEC §5.2 reports only overall numbers); this driver
measures it for every model on the same best-validation checkpoints as the main table (same run key: nothing is
retrained; with --reuse-only a missing run is an error instead of a training run).

Head / tail rule. Items are ordered by their number of training interactions, most first, ties by lower item id;
the first ceil(f · n_items) of that order are the head (f = --head-fraction, default 0.2), every other item is tail,
including items with no training interaction. The tie rule is arbitrary but deterministic; the table header says
how many items share the boundary count and how they fell.

Per-group metric. Every item is ranked for every test user with the user's training items masked, exactly as the
trainer's evaluator does (full ranking; the top 20 are taken over ALL items, never within a group). For a group G
and a user u with at least one test item in G, with GT_u the user's test items, i_r the item at rank r:
    Recall@20_G(u) = |top20(u) ∩ GT_u ∩ G| / |GT_u ∩ G|
    NDCG@20_G(u)   = Σ_{r ≤ 20, i_r ∈ GT_u ∩ G} 1/log2(r+1)  /  Σ_{r ≤ min(20, |GT_u ∩ G|)} 1/log2(r+1)
averaged over the users with at least one test item in G (users without one are left out of G's average, not
counted as 0). This is the evaluator's metric with the ground truth restricted to G (evaluation.ranking_metrics is
called on it), so G = all items gives the trainer's overall test metric. Also reported: the share of the top-20
slots of all test users, and of the test interactions, that fall in each group (popularity bias: a model that
ranks the head first recommends head items far above their share of the test interactions).

Nothing here is chosen: the head fraction is fixed before looking, and each run's checkpoint is its best
validation epoch. Outputs: results/popularity_<dataset>.{md,csv,json,png}.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from experiments import report
from experiments.grouped_eval import add_reuse_only_arg, analyse_runs, ranked_batches
from experiments.run_table import (add_common_args, add_models_arg, add_seeds_arg, header_notes, load_data,
                                   load_model_configs)
from lgmrec_jax import jsonio
from lgmrec_jax.errors import InputError
from lgmrec_jax.evaluation import popularity_scores, ranking_metrics

METRIC_K = 20
GROUPS = ("head", "tail", "all")
MOST_POPULAR = "most popular (train counts)"


def split_head_tail(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean [n_items], True for head items: the ceil(fraction · n_items) items with most training interactions
    (`counts[i]` for item i), ties broken by lower item id. Both groups keep at least one item."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"--head-fraction must lie strictly between 0 and 1, got {fraction}")
    n_items = counts.size
    # lexsort sorts by its last key first: count (descending), then item id (ascending).
    order = np.lexsort((np.arange(n_items), -np.asarray(counts)))
    # The tolerance keeps a product like 0.1 · 30 = 3.0000000000000004 from rounding up to 4.
    n_head = min(max(math.ceil(fraction * n_items - 1e-9), 1), n_items - 1)
    head = np.zeros(n_items, dtype=bool)
    head[order[:n_head]] = True
    return head


def item_group_sums(top, gt, member, n_items: int, k: int = METRIC_K) -> dict[str, float]:
    """Sums over a batch of users for one item group: recall@k and ndcg@k summed over the users with at least one
    ground-truth item in the group, that number of users, and the number of top-k slots holding a group item.

    top: [B, ≥k] ranked item ids; gt: [B, L] ground truth padded with n_items; member: bool [n_items].
    """
    member = jnp.append(jnp.asarray(member, dtype=bool), False)  # the padding id n_items belongs to no group
    # Ground truth outside the group becomes padding: ranking_metrics then counts |GT ∩ G| in the denominators and
    # only hits on group items (a ranked item outside G never equals a remaining ground-truth id).
    gt_in = jnp.where(member[gt], gt, n_items)
    has_gt = jnp.any(gt_in < n_items, axis=1).astype(jnp.float32)
    sums = ranking_metrics(top, gt_in, has_gt, n_items, (k,))
    return {f"recall@{k}": float(sums[f"recall@{k}"]), f"ndcg@{k}": float(sums[f"ndcg@{k}"]),
            "users": float(has_gt.sum()), "slots": float(member[top[:, :k]].sum())}


def popularity_metrics(user_emb, item_emb, data, head: np.ndarray, split: str = "test", k: int = METRIC_K,
                       batch: int = 4096) -> dict[str, dict[str, float]]:
    """Per group (head, tail, all): mean recall@k and ndcg@k over the split's users with a ground-truth item in the
    group, that number of users, and the percentage of all top-k slots holding group items."""
    users = np.unique(data.split(split)[:, 0])
    members = {"head": head, "tail": ~head, "all": np.ones_like(head)}
    sums = {g: {f"recall@{k}": 0.0, f"ndcg@{k}": 0.0, "users": 0.0, "slots": 0.0} for g in GROUPS}
    for _, top, gt in ranked_batches(user_emb, item_emb, data, users, split, k, batch):
        for g in GROUPS:
            for name, value in item_group_sums(top, gt, members[g], data.n_items, k).items():
                sums[g][name] += value
    out = {}
    for g, s in sums.items():
        n = s["users"]
        out[g] = {f"recall@{k}": s[f"recall@{k}"] / n if n else math.nan,
                  f"ndcg@{k}": s[f"ndcg@{k}"] / n if n else math.nan,
                  "users": int(n), "top_share_pct": 100.0 * s["slots"] / (users.size * k)}
    return out


def group_stats(data, head: np.ndarray, split: str = "test") -> dict:
    """What the split is, independent of any model: group sizes, training-count ranges, interaction shares and the
    boundary tie."""
    counts = np.bincount(data.train[:, 1], minlength=data.n_items)
    truth = data.split(split)
    boundary = int(counts[head].min())
    stats = {"n_items": int(data.n_items), "boundary_count": boundary,
             "boundary_items_head": int(np.sum(head & (counts == boundary))),
             "boundary_items_tail": int(np.sum(~head & (counts == boundary))),
             "tail_items_without_training": int(np.sum(~head & (counts == 0)))}
    for g, member in (("head", head), ("tail", ~head)):
        in_truth = member[truth[:, 1]]
        stats[g] = {"items": int(member.sum()), "train_count_min": int(counts[member].min()),
                    "train_count_max": int(counts[member].max()),
                    "train_share_pct": 100.0 * counts[member].sum() / counts.sum(),
                    f"{split}_share_pct": 100.0 * in_truth.mean(),
                    f"{split}_users": int(np.unique(truth[in_truth, 0]).size)}
    return stats


def run_popularity(cfgs: dict, data, n_seeds: int, head_fraction: float, root, reuse=True, progress=False,
                   train=True, log=print) -> dict:
    head = split_head_tail(np.bincount(data.train[:, 1], minlength=data.n_items), head_fraction)

    def analyse(run):
        metrics = popularity_metrics(run.user_emb, run.item_emb, data, head)
        # The trainer's own (4-decimal) test number for this run: "all" must reproduce it.
        trainer = jsonio.read_json(run.run_dir / "results.json")["test"].get(f"recall@{METRIC_K}")
        return {**metrics, "trainer_test_recall": trainer}

    per_model = analyse_runs(cfgs, data, n_seeds, analyse, root, reuse, progress, train, log)
    user_emb, item_emb = popularity_scores(data)
    return {"head_fraction": head_fraction, "stats": group_stats(data, head), "models": per_model,
            "most_popular": popularity_metrics(jnp.asarray(user_emb), jnp.asarray(item_emb), data, head)}


def _per_group(entry: dict, group: str, name: str) -> tuple[float, float]:
    return report.mean_std([seed[group][name] for seed in entry["per_seed"]])


def popularity_table(dataset: str, outcome: dict, cfgs: dict, n_seeds: int, missing: dict) -> report.Table:
    k, s = METRIC_K, outcome["stats"]
    head, tail = s["head"], s["tail"]
    extra = [
        f"Head = the {head['items']} of {s['n_items']} items ({100 * outcome['head_fraction']:g}%, rounded up) with "
        f"most training interactions, ties by lower item id ({head['train_count_min']}–{head['train_count_max']} "
        f"training interactions; {s['boundary_items_head'] + s['boundary_items_tail']} items share the boundary "
        f"count {s['boundary_count']}: {s['boundary_items_head']} in head, {s['boundary_items_tail']} in tail). "
        f"Tail = the other {tail['items']} ({tail['train_count_min']}–{tail['train_count_max']}; "
        f"{s['tail_items_without_training']} with none).",
        f"Head items hold {head['train_share_pct']:.1f}% of the training and {head['test_share_pct']:.1f}% of the "
        f"test interactions; {head['test_users']} test users have a head test item, {tail['test_users']} a tail one.",
        f"Per group G: recall@{k} = |top{k} ∩ test ∩ G| / |test ∩ G| and ndcg@{k} with hits and ideal DCG on G "
        f"only; the top {k} is taken over all items (training items masked), and a group's mean is over the users "
        f"with a test item in G. 'all' is the overall test metric.",
        f"Top-{k} share: percentage of all test users' top-{k} slots holding items of the group; the 'test "
        "interactions' row gives the groups' shares of the test interactions for comparison.",
    ]
    gaps = [abs(seed["all"][f"recall@{k}"] - seed["trainer_test_recall"]) for e in outcome["models"].values()
            for seed in e["per_seed"] if seed.get("trainer_test_recall") is not None]
    if gaps:
        extra.append(f"Check: 'all' recall@{k} equals each run's results.json test recall@{k} to "
                     f"{max(gaps):.1e} (results.json rounds to 4 decimals).")
    if missing:
        extra.append("Not run: " + "; ".join(f"{m} ({why})" for m, why in missing.items()) + ".")
    columns = [report.Column("model", "model")]
    columns += [report.Column(f"{m}@{k} {g}", f"{m}_{g}", "mean_std") for m in ("recall", "ndcg") for g in GROUPS]
    columns += [report.Column(f"top-{k} share {g} (%)", f"share_{g}", "mean_std", 1) for g in ("head", "tail")]
    table = report.Table(f"Test recall@{k} / ndcg@{k} on head and tail items, {dataset}",
                         header_notes(dataset, cfgs, n_seeds, extra), columns)
    for model, entry in outcome["models"].items():
        row = {f"{m}_{g}": _per_group(entry, g, f"{m}@{k}") for m in ("recall", "ndcg") for g in GROUPS}
        row.update({f"share_{g}": _per_group(entry, g, "top_share_pct") for g in ("head", "tail")})
        table.add(model=model, **row)
    pop = outcome["most_popular"]  # deterministic: no spread (None), shown without "±"
    table.add(model=MOST_POPULAR, **{f"{m}_{g}": (pop[g][f"{m}@{k}"], None) for m in ("recall", "ndcg")
                                     for g in GROUPS},
              **{f"share_{g}": (pop[g]["top_share_pct"], None) for g in ("head", "tail")})
    table.add(model="test interactions", **{f"share_{g}": (s[g]["test_share_pct"], None) for g in ("head", "tail")})
    return table


def plot_popularity(path: Path, dataset: str, outcome: dict) -> None:
    name = f"recall@{METRIC_K}"
    series = {}
    for model, entry in outcome["models"].items():
        stats = [_per_group(entry, g, name) for g in GROUPS]
        series[model] = ([m for m, _ in stats], [sd for _, sd in stats])
    series[MOST_POPULAR] = ([outcome["most_popular"][g][name] for g in GROUPS], [0.0] * len(GROUPS))
    report.grouped_bar_plot(path, list(GROUPS), series, "test items of the group (head: top "
                            f"{100 * outcome['head_fraction']:g}% by training count)", f"test {name} (mean ± std)",
                            f"{dataset}: {name} on head and tail items")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.popularity", description=__doc__.split("\n\n")[0])
    add_models_arg(p)
    p.add_argument("--dataset", default="ml100k", help="dataset name (default ml100k)")
    add_seeds_arg(p, 3)
    p.add_argument("--head-fraction", type=float, default=0.2,
                   help="share of items (most training interactions first) that form the head")
    p.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[],
                   metavar="[MODEL:]SECTION.KEY=VALUE",
                   help="config overrides, MODEL: prefix for one model only (repeatable)")
    add_common_args(p)
    add_reuse_only_arg(p)
    args = p.parse_args(argv)
    stem = args.out / (args.name or f"popularity_{args.dataset}")
    report.check_outputs(stem)  # before any run
    try:
        cfgs, missing = load_model_configs(args.models, args.dataset, args.overrides)
        data = load_data(args.dataset, next(iter(cfgs.values())).train.data_dir if cfgs else "data")
        outcome = run_popularity(cfgs, data, args.seeds, args.head_fraction, args.runs_root, not args.no_reuse,
                                 args.progress, train=not args.reuse_only)
    except InputError as e:  # ConfigError is one too
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = popularity_table(args.dataset, outcome, cfgs, args.seeds, missing)
    table.write(stem, {"dataset": args.dataset, **outcome})
    plot_popularity(stem.with_suffix(".png"), args.dataset, outcome)
    print(table.markdown())
    return 0


if __name__ == "__main__":
    from lgmrec_jax.errors import run_as_script

    run_as_script(main)  # bad input (a --set key, a dataset): one line naming it, exit 2
