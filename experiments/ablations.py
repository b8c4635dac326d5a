"""LGMRec ablations (the paper's "w/o" variants) through the model's config switches.

    python -m experiments.ablations --dataset ml100k --seeds 3 [--set train.epochs=200]

Variants, as lgmrec.py's Config defines them (its module docstring says exactly what each removes):
    full      all branches
    w/o CGE   use_cge=false   (GHE then starts from the raw item ID embeddings)
    w/o MGE   use_mge=false
    w/o GHE   use_ghe=false   (HCL goes with it: it contrasts GHE outputs)
    w/o HCL   use_hcl=false   (forward unchanged, no contrastive term)
Each variant runs with every seed through the shared train loop; the full model's runs are the main table's runs
when the config matches (same run key), so they are reused, not retrained. Outputs: results/<name>.{md,csv,json,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from experiments import report
from experiments.run_table import (METRICS, add_common_args, add_seeds_arg, apply_point, cap_note, config_key,
                                   header_notes, load_data, run_seeds, seed_list, split_overrides, summarize)
from lgmrec_jax.config import load_config

MODEL = "lgmrec"
VARIANTS: dict[str, dict] = {
    "full": {},
    "w/o CGE": {"use_cge": False},
    "w/o MGE": {"use_mge": False},
    "w/o GHE": {"use_ghe": False},
    "w/o HCL": {"use_hcl": False},
}


def check_switches(model_cfg) -> None:
    """Fails early, naming the switch, if the model's Config does not (or no longer) have one of them."""
    fields = {f.name for f in dataclasses.fields(model_cfg)}
    for label, switches in VARIANTS.items():
        missing = sorted(set(switches) - fields)
        if missing:
            raise KeyError(f"ablation {label!r}: {MODEL} Config has no field(s) {missing}; fields: {sorted(fields)}")


def run_ablations(cfg, data, seeds, root, reuse=True, progress=False, variants=VARIANTS, log=print) -> list[dict]:
    check_switches(cfg.model)
    rows = []
    for label, switches in variants.items():
        log(f"{MODEL} {label}")
        variant_cfg = apply_point(cfg, switches)
        results = run_seeds(variant_cfg, data, seeds, root, reuse, progress, log)
        rows.append({"variant": label, "switches": switches, "key": config_key(variant_cfg),
                     "results": results, "summary": summarize(results)})
    return rows


def ablation_table(dataset: str, rows: list[dict], cfg, n_seeds: int) -> report.Table:
    full = next((r for r in rows if r["variant"] == "full"), None)
    columns = [report.Column("variant", "variant"), report.Column("switches", "switches")]
    columns += [report.Column(f"test {m}", m, "mean_std") for m in METRICS]
    columns += [report.Column("valid recall@20", "valid_recall@20", "mean_std"),
                report.Column("Δ test recall@20 vs full", "delta", "text"),
                report.Column("best epoch (runs)", "epochs")]
    notes = header_notes(dataset, {MODEL: cfg}, n_seeds, [
        "Ablations of LGMRec by the Config switches use_cge/use_mge/use_ghe/use_hcl (defined in "
        "lgmrec_jax/models/lgmrec.py). All other hyperparameters as the full model's config.",
        *cap_note({r["variant"]: r["results"] for r in rows}, {r["variant"]: cfg for r in rows})])
    table = report.Table(f"LGMRec ablations on {dataset}", notes, columns)
    for r in rows:
        s = r["summary"]
        delta = None
        if full is not None and r is not full:
            base, value = full["summary"]["test"]["recall@20"][0], s["test"]["recall@20"][0]
            delta = f"{value - base:+.4f} ({100 * (value - base) / base:+.1f}%)" if base else None
        table.add(variant=r["variant"], switches=", ".join(f"{k}={str(v).lower()}" for k, v in r["switches"].items())
                  or "—", delta=delta, epochs=" ".join(f"{b}/{e}" for b, e in zip(s["best_epochs"], s["epochs_run"])),
                  **{"valid_recall@20": s["valid"]["recall@20"]}, **{m: s["test"][m] for m in METRICS})
    return table


def plot_ablations(path: Path, dataset: str, rows: list[dict]) -> None:
    full = next((r for r in rows if r["variant"] == "full"), None)
    report.bar_plot(path, [r["variant"] for r in rows], [r["summary"]["test"]["recall@20"][0] for r in rows],
                    [r["summary"]["test"]["recall@20"][1] for r in rows], "test recall@20 (mean ± std)",
                    f"LGMRec ablations on {dataset}",
                    reference=full["summary"]["test"]["recall@20"][0] if full else None, reference_label="full")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.ablations", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml100k", help="dataset name (default ml100k)")
    add_seeds_arg(p, 3)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="variants to run (default: all)")
    p.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="config overrides for every variant, e.g. train.epochs=200 (repeatable)")
    add_common_args(p)
    args = p.parse_args(argv)
    cfg = load_config(MODEL, args.dataset, overrides=split_overrides(args.overrides, MODEL))
    stem = args.out / (args.name or f"ablation_{MODEL}_{args.dataset}")
    report.check_outputs(stem)  # before any run
    data = load_data(args.dataset, cfg.train.data_dir)
    rows = run_ablations(cfg, data, seed_list(cfg, args.seeds), args.runs_root, not args.no_reuse, args.progress,
                         {v: VARIANTS[v] for v in args.variants})
    table = ablation_table(args.dataset, rows, cfg, args.seeds)
    table.write(stem, {"dataset": args.dataset, "rows": rows})
    plot_ablations(stem.with_suffix(".png"), args.dataset, rows)
    print(table.markdown())
    return 0


if __name__ == "__main__":
    from lgmrec_jax.errors import run_as_script

    run_as_script(main)  # bad input (a --set key, a dataset): one line naming it, exit 2
