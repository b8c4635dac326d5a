"""Main results table: models × seeds (× an optional grid), test metrics at the best validation epoch.

    python -m experiments.run_table --models lightgcn lgmrec gume --dataset ml100k --seeds 3 [--grid] \
        [--set train.epochs=200 lgmrec:grid.alpha=[0.2,0.4]]

Protocol (SPEC §2, with one deliberate change):
  * every run is `train.train_and_evaluate` — the one train loop; this file only schedules runs and aggregates;
  * seeds are `train.seed = base, base+1, …` (base = the config's seed, 999 as MMRec); a seed drives the
    initialisation, the batch order and the model's noise;
  * a run's test metrics are those of its best validation epoch (MMRec's early stopping);
  * with --grid, every point of the model's `[grid]` runs with every seed, and the point with the highest MEAN
    VALIDATION Recall@20 over seeds is reported. MMRec's quick_start picks the grid winner by test Recall@20; we
    never look at test to choose anything, so our numbers can sit slightly below a quick_start number.

Runs land in <runs-root>/<dataset>/<model>/<config key>/seed<seed>/ where the key hashes the full config minus
the seed, so re-running the command (or the ablation/sweep/sparsity drivers, which share these helpers) reuses
finished runs and resumes interrupted ones from their checkpoints instead of training again. A run asked for with a
larger epoch cap than a finished run of the same config and seed is that run extended: it is copied to the new key
and resumed with the larger cap (`train_and_evaluate(..., extend=True)`), so a run its cap cut short trains on and
one that stopped early is reported as it is. This is exact because the cap only decides when the loop stops.

Seeds run one after another, each a normal run. `jax.vmap` of the trainer's own train_step over a leading seed
axis does work unchanged (probe: params equal the sequential runs to 2e-7), but it is not used: (1) a seed axis
inside Trainer means per-seed early stopping, best params, batch streams, logs, checkpoints and results — edits all
through the one loop, which is a second loop in disguise if done as a wrapper; (2) vmapping the BCSR product loses
its fast path (on CPU 3 vmapped LightGCN seeds took 220 ms/step vs 26 ms for the three sequential steps). See
results/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import shutil
import sys
import time
from pathlib import Path

from experiments import paper_results, report
from lgmrec_jax import jsonio, rundir
from lgmrec_jax.config import ConfigError, RunConfig, load_config
from lgmrec_jax.errors import InputError

RUNS_ROOT = Path("runs/experiments")
RESULTS_DIR = Path("results")
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
SELECTION_METRIC = "recall@20"  # validation metric for choosing grid points (and, in the trainer, epochs)
SELECTION_NOTE = ("Selection rule: each run reports test metrics at its best **validation** Recall@20 epoch; "
                  "with a grid, the point with the highest mean **validation** Recall@20 over seeds is reported. "
                  "Test scores are never used to choose (MMRec's quick_start chooses the grid point by test "
                  "Recall@20; we do not).")
MAX_GRID_POINTS = 32  # per model; each point runs every seed
# Keys that say where files go, not what is computed: left out of the run key so moving directories reuses runs.
_PATH_KEYS = ("data_dir", "cache_dir", "runs_dir")


# ----------------------------------------------------------------------------------------------------------------
# Scheduling runs (shared by ablations.py, sweeps.py, sparsity.py)


def config_key(cfg: RunConfig) -> str:
    d = cfg.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k != "seed" and k not in _PATH_KEYS}
    d.pop("grid")  # the searched lists do not change one run; the chosen values are in d["model"]
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def run_dir(root: Path, cfg: RunConfig) -> Path:
    return Path(root) / cfg.dataset / cfg.model_name / config_key(cfg) / f"seed{cfg.train.seed}"


def with_seed(cfg: RunConfig, seed: int) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))


def run_one(cfg: RunConfig, data, root: Path = RUNS_ROOT, reuse: bool = True, progress: bool = False) -> dict:
    """Trains one config (or reuses/resumes a matching run) and returns its results.json dict plus run_dir."""
    from lgmrec_jax.train import train_and_evaluate  # jax import deferred: --help stays instant

    directory = run_dir(root, cfg)
    matches = _same_config(directory, cfg)
    if reuse and matches and (directory / "results.json").exists():
        result = json.loads((directory / "results.json").read_text())
        return {**result, "run_dir": str(directory), "reused": True}
    resume = reuse and matches and any((directory / "checkpoints").glob("[0-9]*"))
    shorter = None if resume or not reuse else shorter_run(root, cfg)
    if directory.exists() and not resume:
        foreign = rundir.foreign_entries(directory)
        if foreign:  # only a run's own files are the driver's to delete
            raise InputError(f"{directory}: holds {', '.join(foreign)}, which no run writes, next to a stale run "
                             "the driver would delete; move them away (nothing was deleted)")
        shutil.rmtree(directory)  # a stale or mismatching run: start clean so old checkpoints cannot leak in
    if shorter is not None:
        # results.json is left behind so that a kill during the extension leaves an unfinished run, resumed next time
        shutil.copytree(shorter, directory, ignore=shutil.ignore_patterns(rundir.LOCK_NAME, "results.json"))
    t0 = time.perf_counter()
    result = train_and_evaluate(cfg, data, directory, resume=resume or shorter is not None, progress=progress,
                                extend=shorter is not None)
    result["wall_seconds"] = time.perf_counter() - t0  # of this invocation only (an extension's, not the whole run)
    if shorter is not None:
        result["extended_from"] = str(shorter)
    jsonio.write_json(directory / "results.json", result)
    return {**result, "run_dir": str(directory), "reused": False}


def shorter_run(root: Path, cfg: RunConfig) -> Path | None:
    """The finished run (with checkpoints) of `cfg`'s config and seed under a smaller epoch cap, the largest such
    cap; None when there is none."""
    wanted = json.loads(json.dumps(cfg.to_dict()))
    cap = wanted["train"].pop("epochs")
    best, best_cap = None, 0
    for saved in sorted((Path(root) / cfg.dataset / cfg.model_name).glob(f"*/seed{cfg.train.seed}/config.json")):
        directory = saved.parent
        try:
            other = json.loads(saved.read_text())
            other_cap = other["train"].pop("epochs")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a run this can extend; run_one never reads it
        finished = (directory / "results.json").exists() and rundir.checkpoint_epochs(directory)
        if other == wanted and best_cap < other_cap < cap and finished:
            best, best_cap = directory, other_cap
    return best


def _same_config(directory: Path, cfg: RunConfig) -> bool:
    saved = directory / "config.json"
    return saved.exists() and json.loads(saved.read_text()) == json.loads(json.dumps(cfg.to_dict()))


def unfinished_runs(cfg: RunConfig, seeds, root: Path = RUNS_ROOT) -> list[Path]:
    """Run directories of `cfg` × `seeds` that run_one could not reuse (so it would train them)."""
    out = []
    for seed in seeds:
        seeded = with_seed(cfg, seed)
        directory = run_dir(root, seeded)
        if not (_same_config(directory, seeded) and (directory / "results.json").exists()):
            out.append(directory)
    return out


def run_seeds(cfg: RunConfig, data, seeds, root: Path = RUNS_ROOT, reuse: bool = True,
              progress: bool = False, log=print) -> list[dict]:
    results = []
    for seed in seeds:
        result = run_one(with_seed(cfg, seed), data, root, reuse, progress)
        how = "reused" if result["reused"] else f"{result.get('wall_seconds', 0):.0f}s"
        log(f"  {cfg.model_name} seed {seed}: best epoch {result['best_epoch']}/{result['epochs_run']}, "
            f"valid R@20 {result['valid'].get('recall@20')}, test R@20 {result['test'].get('recall@20')} ({how})")
        results.append(result)
    return results


def seed_list(cfg: RunConfig, n_seeds: int) -> list[int]:
    return [cfg.train.seed + i for i in range(n_seeds)]


def grid_points(grid: dict) -> list[dict]:
    """All combinations of the grid lists, in a fixed order; [{}] for no grid."""
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def apply_point(cfg: RunConfig, point: dict) -> RunConfig:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **point)) if point else cfg


def summarize(results: list[dict]) -> dict:
    """Mean ± std over seeds of the test and validation metrics, plus epoch bookkeeping."""
    out = {"n_seeds": len(results)}
    for split in ("test", "valid"):
        out[split] = {m: report.mean_std([r[split].get(m) for r in results]) for m in METRICS}
    out["best_epochs"] = [r["best_epoch"] for r in results]
    out["epochs_run"] = [r["epochs_run"] for r in results]
    out["popularity_test"] = results[0]["popularity"]["test"] if results else {}
    out["median_train_seconds_per_epoch"] = report.mean_std(
        [r.get("median_train_seconds_per_epoch") for r in results])[0]
    return out


def select_by_validation(candidates: list[dict], metric: str = SELECTION_METRIC) -> int:
    """Index of the candidate with the highest mean validation `metric`; the first one wins ties."""
    scores = [c["summary"]["valid"][metric][0] for c in candidates]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def restrict_grid(cfg: RunConfig, keys=None, max_points: int = MAX_GRID_POINTS) -> dict:
    """The part of cfg.grid to search: `keys` (default all), refusing products larger than `max_points`.

    The per-model files list the authors' one-parameter-at-a-time ranges; their full product is millions of runs,
    so a search must name the keys (and may shorten lists with `--set MODEL:grid.KEY=[...]`).
    """
    keys = sorted(cfg.grid) if keys is None else list(keys)
    unknown = [k for k in keys if k not in cfg.grid]
    if unknown:
        raise ConfigError(f"{cfg.model_name}: --grid-keys {unknown} are not in its [grid] ({sorted(cfg.grid)})")
    grid = {k: cfg.grid[k] for k in keys}
    n = math.prod(len(v) for v in grid.values())  # counted, not enumerated: the refused grids are huge
    if n > max_points:
        sizes = ", ".join(f"{k}: {len(v)}" for k, v in grid.items())
        raise ConfigError(f"{cfg.model_name}: the grid has {n} points ({sizes}), more than --max-grid-points "
                          f"{max_points}; choose keys with --grid-keys or shorten lists with "
                          f"--set {cfg.model_name}:grid.KEY=[...]")
    return grid


def evaluate_grid(cfg: RunConfig, data, seeds, use_grid: bool, root: Path, reuse: bool, progress: bool,
                  log=print, grid_keys=None, max_points: int = MAX_GRID_POINTS) -> dict:
    """Runs every grid point (or just cfg) over the seeds; returns {"chosen": i, "candidates": [...]}."""
    points = grid_points(restrict_grid(cfg, grid_keys, max_points)) if use_grid else [{}]
    candidates = []
    for point in points:
        if point:
            log(f"{cfg.model_name}: grid point {point_label(point)}")
        point_cfg = apply_point(cfg, point)
        results = run_seeds(point_cfg, data, seeds, root, reuse, progress, log)
        candidates.append({"point": point, "config": point_cfg.to_dict(), "key": config_key(point_cfg),
                           "results": results, "summary": summarize(results)})
    return {"chosen": select_by_validation(candidates), "candidates": candidates}


def cap_note(groups: dict[str, list[dict]], cfgs: dict[str, RunConfig]) -> list[str]:
    """A header line naming the runs that stopped at the epoch cap rather than by early stopping: their numbers
    may be underestimates. `groups` maps a label (model or variant) to its runs' result dicts."""
    hits = []
    for label, results in groups.items():
        cap = cfgs[label].train.epochs if label in cfgs else next(iter(cfgs.values())).train.epochs
        n = sum(r["epochs_run"] >= cap for r in results)
        if n:
            hits.append(f"{label} {n}/{len(results)}")
    if not hits:
        return ["Every run ended by early stopping, before the epoch cap."]
    return [f"Runs that reached the epoch cap before early stopping (still improving; numbers may be "
            f"underestimates): {', '.join(hits)}."]


def point_label(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(point.items())) if point else "defaults"


def split_overrides(items: list[str], model: str) -> list[str]:
    """`--set` items for one model: plain `section.key=v` apply to all, `model:section.key=v` to that model only."""
    out = []
    for item in items:
        head, sep, rest = item.partition(":")
        if sep and "=" not in head:
            if head == model:
                out.append(rest)
        else:
            out.append(item)
    return out


def load_data(dataset: str, data_dir: str = "data"):
    from lgmrec_jax.run_data import ensure_dataset
    return ensure_dataset(dataset, Path(data_dir))


def header_notes(dataset: str, cfgs: dict[str, RunConfig], n_seeds: int, extra: list[str] = ()) -> list[str]:
    """Protocol lines every table states: data, seeds, epoch cap, selection rule, code version."""
    from lgmrec_jax.repro import environment, git_state
    git, env = git_state(), environment()
    caps = sorted({c.train.epochs for c in cfgs.values()})
    seeds = sorted({tuple(seed_list(c, n_seeds)) for c in cfgs.values()})
    notes = [
        f"Dataset: **{dataset}**; test metrics, full ranking over all items with training items masked (MMRec).",
        f"Mean ± sample std over {n_seeds} seed(s) (train.seed = {', '.join(map(str, seeds[0])) if seeds else '-'}).",
        f"Epoch cap: train.epochs = {', '.join(map(str, caps))} (early stopping patience "
        f"{', '.join(sorted({str(c.train.stopping_step) for c in cfgs.values()}))} on validation Recall@20).",
        SELECTION_NOTE,
        *extra,
        f"Table written at git {git['commit'][:10]}{' (dirty working tree)' if git.get('dirty') else ''}; "
        f"{env['device']['platform']} ({env['device']['kind']}); jax {env['packages']['jax']}; "
        f"{time.strftime('%Y-%m-%d')}. Each run's repro.json records the code, data hashes and device it ran with.",
    ]
    return notes


# ----------------------------------------------------------------------------------------------------------------
# The main table


def main_table(dataset: str, outcomes: dict, n_seeds: int, cfgs: dict, missing: dict, use_grid: bool) -> report.Table:
    with_paper = any(paper_results.preferred(m, dataset) for m in outcomes)
    extra = []
    if not with_paper:
        extra.append(f"No published numbers exist for {dataset} (SPEC §5 covers Baby, Sports, Clothing, Elec), "
                     "so there is no paper column.")
    else:
        extra.append("Paper columns: the published test numbers (SPEC §5; source named per row); they were "
                     "selected by test score, ours by validation.")
    if missing:
        extra.append("Not run: " + "; ".join(f"{m} ({why})" for m, why in missing.items()) + ".")
    extra += cap_note({m: o["candidates"][o["chosen"]]["results"] for m, o in outcomes.items()}, cfgs)
    columns = [report.Column("model", "model"), report.Column("config (chosen)", "config"),
               report.Column("seeds", "n_seeds", "int"), report.Column("best epoch (runs)", "epochs")]
    columns += [report.Column(f"test {m}", m, "mean_std") for m in METRICS]
    columns += [report.Column("valid recall@20", "valid_recall@20", "mean_std")]
    if with_paper:
        columns += [report.Column(f"paper {m}", f"paper_{m}", "float") for m in METRICS]
        columns += [report.Column("paper source", "paper_source")]
    table = report.Table(f"Main results on {dataset}", header_notes(dataset, cfgs, n_seeds, extra), columns)
    popularity = None
    for model, outcome in outcomes.items():
        chosen = outcome["candidates"][outcome["chosen"]]
        s = chosen["summary"]
        popularity = popularity or s["popularity_test"]
        label = point_label(chosen["point"]) if use_grid and chosen["point"] else "config files"
        if use_grid and len(outcome["candidates"]) > 1:
            label += f" (best of {len(outcome['candidates'])} grid points)"
        row = {"model": model, "config": f"{label}; key {chosen['key']}", "n_seeds": s["n_seeds"],
               "epochs": " ".join(f"{b}/{e}" for b, e in zip(s["best_epochs"], s["epochs_run"])),
               "valid_recall@20": s["valid"]["recall@20"], **{m: s["test"][m] for m in METRICS}}
        paper = paper_results.preferred(model, dataset)
        if with_paper and paper is not None:
            row.update({f"paper_{m}": paper.metrics[m] for m in METRICS}, paper_source=paper.source)
        table.add(**row)
    if popularity:
        table.add(model="popularity (train counts)", config="no training", **{m: (popularity[m], None) for m in METRICS})
    return table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.run_table", description=__doc__.split("\n\n")[0])
    add_models_arg(p)
    p.add_argument("--dataset", default="ml100k", help="dataset name (default ml100k)")
    add_seeds_arg(p, 3)
    p.add_argument("--grid", action="store_true", help="search each model's [grid] (selection on validation)")
    p.add_argument("--grid-keys", nargs="+", metavar="KEY",
                   help="search only these [grid] keys (models lacking a key are run as configured)")
    p.add_argument("--max-grid-points", type=count_arg, default=MAX_GRID_POINTS,
                   help=f"refuse a model's grid with more points than this (default {MAX_GRID_POINTS})")
    p.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[],
                   metavar="[MODEL:]SECTION.KEY=VALUE",
                   help="config overrides, e.g. train.epochs=200 or lgmrec:grid.alpha=[0.2,0.4]")
    add_common_args(p)
    return p


def count_arg(text: str) -> int:
    """argparse type of a count that must be at least 1: zero seeds or groups would make a table of nothing."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{value}: must be between 1 and 10000 (with nothing to run there is "
                                         "no table to write)")
    return value


def add_seeds_arg(p: argparse.ArgumentParser, default: int) -> None:
    p.add_argument("--seeds", type=count_arg, default=default,
                   help=f"number of seeds, at least 1 (train.seed = base, base+1, ...; default {default})")


def add_models_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", default=["lightgcn", "lgmrec", "gume"],
                   help="models to run (default: lightgcn lgmrec gume)")


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-root", type=Path, default=RUNS_ROOT,
                   help=f"where the runs are kept and reused (default {RUNS_ROOT})")
    p.add_argument("--out", type=Path, default=RESULTS_DIR,
                   help=f"directory for the table files (default {RESULTS_DIR}); a table a driver wrote is "
                        "replaced, anything else at its names is refused")
    p.add_argument("--name", help="file stem of the outputs (default depends on the driver)")
    p.add_argument("--no-reuse", action="store_true", help="retrain even if a matching finished run exists")
    p.add_argument("--progress", action="store_true", help="per-epoch progress bars")


def load_model_configs(models, dataset, overrides) -> tuple[dict, dict]:
    """(configs of the models that load, {model: reason} for those that do not, e.g. not implemented yet)."""
    from lgmrec_jax.models import MODEL_MODULES
    unknown = [m for m in models if m not in MODEL_MODULES]
    if unknown:  # a typo is an error; only a registered model that fails to import counts as "not ready"
        raise ConfigError(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_MODULES)}")
    cfgs, missing = {}, {}
    for model in models:
        try:
            cfgs[model] = load_config(model, dataset, overrides=split_overrides(overrides, model))
        except ConfigError:
            raise
        except Exception as e:  # a model module that does not import yet is reported, not fatal
            missing[model] = f"{type(e).__name__}: {e}"
    return cfgs, missing


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfgs, missing = load_model_configs(args.models, args.dataset, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outcomes = {}
    try:
        # Check every model's grid before the first run: a too-large grid should not fail hours in.
        keys = {m: [k for k in args.grid_keys if k in c.grid] if args.grid_keys else None for m, c in cfgs.items()}
        for model, cfg in cfgs.items():
            if args.grid:
                restrict_grid(cfg, keys[model], args.max_grid_points)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stem = args.out / (args.name or f"main_{args.dataset}")
    report.check_outputs(stem)  # before hours of training, not after
    data = load_data(args.dataset, next(iter(cfgs.values())).train.data_dir if cfgs else "data")
    print(data.summary())
    for model, cfg in cfgs.items():
        if args.grid and not (keys[model] if keys[model] is not None else cfg.grid):
            print(f"{model}: nothing to search in its [grid]; running the config as is")
        try:
            outcomes[model] = evaluate_grid(cfg, data, seed_list(cfg, args.seeds), args.grid, args.runs_root,
                                            not args.no_reuse, args.progress, grid_keys=keys[model],
                                            max_points=args.max_grid_points)
        except (ImportError, NotImplementedError) as e:
            missing[model] = f"{type(e).__name__}: {e}"
    if not outcomes:
        raise InputError(f"no model could run ({'; '.join(f'{m}: {why}' for m, why in missing.items())}); "
                         f"{stem}.md and its siblings are unchanged")
    table = main_table(args.dataset, outcomes, args.seeds, cfgs, missing, args.grid)
    # The .json holds the full provenance: every candidate's per-seed results and run directories.
    md, csv_path = table.write(stem, {"dataset": args.dataset, "seeds": args.seeds, "grid": args.grid,
                                      "missing": missing, "outcomes": outcomes}, default=float)
    _plot_main(stem.with_suffix(".png"), args.dataset, outcomes)
    print(table.markdown())
    print(f"wrote {md}, {csv_path}, {stem.with_suffix('.json')}, {stem.with_suffix('.png')}")
    return 0


def _plot_main(path: Path, dataset: str, outcomes: dict) -> None:
    if not outcomes:
        return
    labels = list(outcomes)
    chosen = [outcomes[m]["candidates"][outcomes[m]["chosen"]]["summary"]["test"] for m in labels]
    report.grouped_bar_plot(path, ["recall@10", "recall@20", "ndcg@10", "ndcg@20"],
                            {m: ([c[k][0] for k in METRICS], [c[k][1] for k in METRICS])
                             for m, c in zip(labels, chosen)},
                            "metric", "test score (mean ± std over seeds)", f"{dataset}: test at best valid epoch")


if __name__ == "__main__":
    from lgmrec_jax.errors import run_as_script

    run_as_script(main)  # bad input (a --set key, a dataset): one line naming it, exit 2
