"""Accuracy by user sparsity: test Recall@20 per group of users bucketed by their number of training interactions.

    python -m experiments.sparsity --models lightgcn lgmrec gume --dataset ml100k --seeds 3 --groups 4 \
        [--set train.epochs=200]

The papers claim multimodal models help most for users with few interactions. Here the test users are split into
`--groups` quantile groups of their training-interaction count (ties never split: users with the same count share
a group, so groups can be unequal), and each model's best-validation checkpoint is evaluated per group with the same
metric code as the trainer (evaluation.ranking_metrics; the groups' user-weighted average equals the overall test
metric up to its 4-decimal rounding). Runs are the main table's when the config matches (same run key): nothing
is retrained. Outputs: results/sparsity_<dataset>.{md,csv,json,png}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from experiments import report
from experiments.grouped_eval import add_reuse_only_arg, analyse_runs, ranked_batches
from experiments.run_table import (add_common_args, add_models_arg, add_seeds_arg, count_arg, header_notes, load_data,
                                   load_model_configs)
from lgmrec_jax.errors import InputError
from lgmrec_jax.evaluation import ranking_metrics

METRIC_K = 20


def sparsity_groups(data, split: str = "test", n_groups: int = 4) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(users of the split, group index per user, group labels) from quantiles of the training degree."""
    users = np.unique(data.split(split)[:, 0])
    degree = np.bincount(data.train[:, 0], minlength=data.n_users)[users]
    # Upper edges at the quantiles; np.unique drops repeated edges so equal degrees land in one group.
    edges = np.unique(np.quantile(degree, np.linspace(0, 1, n_groups + 1)[1:-1], method="lower"))
    group = np.searchsorted(edges, degree, side="left")
    labels = []
    for g in range(len(edges) + 1):
        members = degree[group == g]
        labels.append(f"{members.min()}–{members.max()} ({members.size} users)" if members.size else "empty")
    return users, group, labels


def group_metrics(user_emb, item_emb, data, users: np.ndarray, group: np.ndarray, n_groups: int,
                  split: str = "test", k: int = METRIC_K, batch: int = 4096) -> dict[str, np.ndarray]:
    """Per group, the mean recall@k and ndcg@k of `users` on `split` (training items masked, as the evaluator)."""
    sums = {f"recall@{k}": np.zeros(n_groups), f"ndcg@{k}": np.zeros(n_groups)}
    for rows, top, gt in ranked_batches(user_emb, item_emb, data, users, split, k, batch):
        for g in range(n_groups):
            weight = jnp.asarray((group[rows] == g).astype(np.float32))
            part = ranking_metrics(top, gt, weight, data.n_items, (k,))
            for name in sums:
                sums[name][g] += float(part[name])
    counts = np.bincount(group, minlength=n_groups).astype(np.float64)
    return {name: np.divide(s, counts, out=np.full(n_groups, np.nan), where=counts > 0) for name, s in sums.items()}


def run_sparsity(cfgs: dict, data, n_seeds: int, n_groups: int, root, reuse=True, progress=False, train=True,
                 log=print) -> dict:
    users, group, labels = sparsity_groups(data, "test", n_groups)

    def analyse(run):
        metrics = group_metrics(run.user_emb, run.item_emb, data, users, group, len(labels))
        return {name: values.tolist() for name, values in metrics.items()}

    per_model = analyse_runs(cfgs, data, n_seeds, analyse, root, reuse, progress, train, log)
    return {"labels": labels, "group_sizes": np.bincount(group, minlength=len(labels)).tolist(),
            "models": per_model}


def sparsity_table(dataset: str, outcome: dict, cfgs: dict, n_seeds: int, missing: dict) -> report.Table:
    name = f"recall@{METRIC_K}"
    columns = [report.Column("training interactions (test users)", "group")]
    columns += [report.Column(f"{m} {name}", m, "mean_std") for m in outcome["models"]]
    extra = ["Test users bucketed by training-interaction count into quantile groups; per group the mean test "
             f"{name} of each model's best-validation checkpoint, then mean ± std over seeds."]
    if missing:
        extra.append("Not run: " + "; ".join(f"{m} ({why})" for m, why in missing.items()) + ".")
    table = report.Table(f"Test {name} by user sparsity on {dataset}", header_notes(dataset, cfgs, n_seeds, extra),
                         columns)
    for g, label in enumerate(outcome["labels"]):
        row = {"group": label}
        for model, entry in outcome["models"].items():
            row[model] = report.mean_std([seed[name][g] for seed in entry["per_seed"]])
        table.add(**row)
    return table


def plot_sparsity(path: Path, dataset: str, outcome: dict) -> None:
    name = f"recall@{METRIC_K}"
    series = {}
    for model, entry in outcome["models"].items():
        stats = [report.mean_std([seed[name][g] for seed in entry["per_seed"]]) for g in range(len(outcome["labels"]))]
        series[model] = ([s[0] for s in stats], [s[1] for s in stats])
    report.grouped_bar_plot(path, [label.split(" (")[0] for label in outcome["labels"]], series,
                            "training interactions of the user", f"test {name}", f"{dataset}: {name} by user sparsity")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.sparsity", description=__doc__.split("\n\n")[0])
    add_models_arg(p)
    p.add_argument("--dataset", default="ml100k", help="dataset name (default ml100k)")
    add_seeds_arg(p, 3)
    p.add_argument("--groups", type=count_arg, default=4,
                   help="number of user groups by training interactions (default 4)")
    p.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[],
                   metavar="[MODEL:]SECTION.KEY=VALUE",
                   help="config overrides, MODEL: prefix for one model only (repeatable)")
    add_common_args(p)
    add_reuse_only_arg(p)
    args = p.parse_args(argv)
    stem = args.out / (args.name or f"sparsity_{args.dataset}")
    report.check_outputs(stem)  # before any run
    cfgs, missing = load_model_configs(args.models, args.dataset, args.overrides)
    data = load_data(args.dataset, next(iter(cfgs.values())).train.data_dir if cfgs else "data")
    try:
        outcome = run_sparsity(cfgs, data, args.seeds, args.groups, args.runs_root, not args.no_reuse, args.progress,
                               train=not args.reuse_only)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = sparsity_table(args.dataset, outcome, cfgs, args.seeds, missing)
    table.write(stem, {"dataset": args.dataset, **outcome})
    plot_sparsity(stem.with_suffix(".png"), args.dataset, outcome)
    print(table.markdown())
    return 0


if __name__ == "__main__":
    from lgmrec_jax.errors import run_as_script

    run_as_script(main)  # bad input (a --set key, a dataset): one line naming it, exit 2
