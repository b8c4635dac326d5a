"""One-hyperparameter sensitivity sweeps of LGMRec: fusion weight α, hyperedge count A (hyper_num) and the weight
of the hypergraph contrastive loss (cl_weight).

    python -m experiments.sweeps alpha --dataset ml100k --seeds 1
    python -m experiments.sweeps hyper_num --dataset ml100k --seeds 1 --values 2 4 8 16 32 64
    python -m experiments.sweeps cl_weight --dataset ml100k --seeds 3 --set train.epochs=200

Every value runs with every seed through the shared train loop, all other hyperparameters as the config files
(plus --set). A sweep shows how test accuracy moves with the value — the papers' sensitivity figures — and chooses
nothing; the table marks with * the value that validation Recall@20 would select, never the test-best one.
Outputs: results/sweep_<param>_<model>_<dataset>.{md,csv,json,png}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments import report
from experiments.run_table import (METRICS, add_common_args, add_seeds_arg, apply_point, cap_note, config_key,
                                   header_notes, load_data, run_seeds, seed_list, select_by_validation, split_overrides,
                                   summarize)
from lgmrec_jax.config import load_config, validate
from lgmrec_jax.errors import InputError

MODEL = "lgmrec"
# Defaults: α over the paper's 0.1…0.9 range; A over LGMRec's grid {2,…,256} (SPEC §3.6); cl_weight two decades
# either side of the default 1e-4 (0, i.e. no contrastive loss, is the ablation's "w/o HCL" row).
SWEEPS = {
    "alpha": [round(0.1 * i, 1) for i in range(1, 10)],
    "hyper_num": [2, 4, 8, 16, 32, 64, 128, 256],
    "cl_weight": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2],
}
LOG_SCALE = {"hyper_num", "cl_weight"}


def run_sweep(cfg, data, param: str, values, seeds, root, reuse=True, progress=False, log=print) -> list[dict]:
    rows = []
    for value in values:
        log(f"{cfg.model_name} {param}={value}")
        point_cfg = apply_point(cfg, {param: value})
        results = run_seeds(point_cfg, data, seeds, root, reuse, progress, log)
        rows.append({"value": value, "key": config_key(point_cfg), "results": results, "summary": summarize(results)})
    return rows


def sweep_table(dataset: str, param: str, rows: list[dict], cfg, n_seeds: int) -> report.Table:
    chosen = select_by_validation(rows) if rows else None
    default = getattr(cfg.model, param)
    columns = [report.Column(param, "value")]
    columns += [report.Column(f"test {m}", m, "mean_std") for m in METRICS]
    columns += [report.Column("valid recall@20", "valid_recall@20", "mean_std"),
                report.Column("best epoch (runs)", "epochs")]
    notes = header_notes(dataset, {cfg.model_name: cfg}, n_seeds, [
        f"Sweep of {cfg.model_name} `{param}` (config default {default}); all other hyperparameters fixed. "
        "* marks the value validation Recall@20 selects; the sweep itself selects nothing.",
        *cap_note({f"{param}={r['value']}": r["results"] for r in rows},
                  {f"{param}={r['value']}": cfg for r in rows})])
    table = report.Table(f"{cfg.model_name} sensitivity to {param} on {dataset}", notes, columns)
    for index, r in enumerate(rows):
        s = r["summary"]
        table.add(value=f"{r['value']}{' *' if index == chosen else ''}",
                  epochs=" ".join(f"{b}/{e}" for b, e in zip(s["best_epochs"], s["epochs_run"])),
                  **{"valid_recall@20": s["valid"]["recall@20"]}, **{m: s["test"][m] for m in METRICS})
    return table


def plot_sweep(path: Path, dataset: str, param: str, rows: list[dict], model: str = MODEL) -> None:
    xs = [r["value"] for r in rows]
    series = {f"test {m}": ([r["summary"]["test"][m][0] for r in rows], [r["summary"]["test"][m][1] for r in rows])
              for m in ("recall@20", "ndcg@20")}
    series["valid recall@20"] = ([r["summary"]["valid"]["recall@20"][0] for r in rows],
                                 [r["summary"]["valid"]["recall@20"][1] for r in rows])
    report.line_plot(path, xs, series, param, "score (mean ± std over seeds)", f"{model} on {dataset}: {param}",
                     log_x=param in LOG_SCALE)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.sweeps", description=__doc__.split("\n\n")[0])
    p.add_argument("param", choices=list(SWEEPS), help="the LGMRec hyperparameter to sweep")
    p.add_argument("--values", nargs="+", type=float, help="values to sweep (default: the built-in list)")
    p.add_argument("--dataset", default="ml100k", help="dataset name (default ml100k)")
    add_seeds_arg(p, 1)
    p.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="config overrides for every value, e.g. train.epochs=200 (repeatable)")
    add_common_args(p)
    args = p.parse_args(argv)
    values = args.values or SWEEPS[args.param]
    if args.param == "hyper_num":
        fractional = [v for v in values if v != int(v)]
        if fractional:
            raise InputError(f"--values {fractional[0]}: hyper_num counts hyperedges, give whole numbers")
        values = [int(v) for v in values]
    cfg = load_config(MODEL, args.dataset, overrides=split_overrides(args.overrides, MODEL))
    for value in values:  # the config's own range check, before any run (a negative alpha, 0 hyperedges, ...)
        validate(apply_point(cfg, {args.param: value}))
    stem = args.out / (args.name or f"sweep_{args.param}_{MODEL}_{args.dataset}")
    report.check_outputs(stem)
    data = load_data(args.dataset, cfg.train.data_dir)
    rows = run_sweep(cfg, data, args.param, values, seed_list(cfg, args.seeds), args.runs_root,
                     not args.no_reuse, args.progress)
    table = sweep_table(args.dataset, args.param, rows, cfg, args.seeds)
    table.write(stem, {"dataset": args.dataset, "param": args.param, "rows": rows})
    plot_sweep(stem.with_suffix(".png"), args.dataset, args.param, rows)
    print(table.markdown())
    return 0


if __name__ == "__main__":
    from lgmrec_jax.errors import run_as_script

    run_as_script(main)  # bad input (a --set key, a dataset): one line naming it, exit 2
