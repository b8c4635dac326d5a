"""Command line: `python -m lgmrec_jax.cli train --model lgmrec --dataset clothing [--set model.alpha=0.3 ...]`.

`make train MODEL=... DATASET=... ARGS='...'` calls this. Runs land in runs/<model>-<dataset>-<time>/;
`--resume RUN_DIR` continues a stopped run from its last checkpoint with the config saved there; with
`--extend-to N` it also raises the run's epoch cap to N (a run cut short by its cap trains on, exactly as a run
started with the larger cap would have).
`recommend --run RUN_DIR --users 1 2` and `export --run RUN_DIR --out DIR` use a finished run (lgmrec_jax/recommend.py).

Errors become one or two lines on stderr naming the file, line, key or id at fault, with exit code 2 for bad input and
1 for a failure (lgmrec_jax/errors.py); `--debug` or LGMREC_DEBUG=1 shows the traceback instead. Arguments and the
config are checked before anything heavy is imported, so a mistake is reported at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from lgmrec_jax import atomic, errors, jsonio, run_data
from lgmrec_jax.config import check_fits_data, load_config, load_saved_config, validate
from lgmrec_jax.data.mmrec import report_lines
from lgmrec_jax.errors import InputError

DEFAULT_MODEL, DEFAULT_DATASET = "lightgcn", "ml100k"
RESUME_CONFLICTS = ("model", "dataset", "config", "overrides", "workdir")
MAX_EPOCHS = 2**31 - 1  # the epoch counter is an int32 on the device


def path_arg(text: str) -> Path:
    """argparse type of a path: an empty one is refused (Path("") would silently mean the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or directory name")
    return Path(text)


def name_arg(text: str) -> str:
    """argparse type of a model or dataset name: an empty one is refused rather than taken for the default."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name; leave the option out to use the default")
    return text


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted before or after the command; SUPPRESS keeps a subcommand from resetting the global one.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=f"show the Python traceback of an error (or set {errors.DEBUG_ENV}=1)")
    parser = argparse.ArgumentParser(prog="python -m lgmrec_jax.cli", parents=[debug])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", parents=[debug],
                           help="train a model, evaluate the test split at the best validation epoch")
    train.add_argument("--model", type=name_arg, help=f"lightgcn, lgmrec or gume (default {DEFAULT_MODEL})")
    train.add_argument("--dataset", type=name_arg, help=f"dataset name (default {DEFAULT_DATASET})")
    train.add_argument("--config", type=path_arg,
                       help="extra TOML file applied after the per-model/per-dataset configs")
    train.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[],
                       metavar="SECTION.KEY=VALUE", help="overrides, e.g. model.alpha=0.3 train.epochs=50; "
                       "--set may be repeated: every assignment applies, in order (a key given twice: the later value)")
    train.add_argument("--workdir", type=path_arg, help="run directory (default runs/<model>-<dataset>-<time>); "
                       "refused if it holds a run or any file a run writes")
    train.add_argument("--resume", type=path_arg, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.add_argument("--extend-to", type=int, metavar="EPOCHS",
                       help="with --resume: raise the run's train.epochs cap to EPOCHS and go on training")
    train.add_argument("--no-progress", action="store_true",
                       help="no per-epoch progress bar (logs and CI); metrics.jsonl is written either way")
    train.add_argument("--compilation-cache", metavar="DIR", default=None,
                       help="JAX's persistent compilation cache: a resume or the next run of the same programs "
                            "skips compiling (default .cache/jax, or $LGMREC_COMPILATION_CACHE; 'none' turns it off)")
    train.add_argument("--distributed", action="store_true",
                       help="call jax.distributed.initialize() first (multi-host TPU pod slices)")
    add_recommend_parsers(sub, debug)
    return parser


def add_recommend_parsers(sub, debug) -> None:
    """`recommend` and `export`: use a finished run directory (its best-validation checkpoint)."""
    rec = sub.add_parser("recommend", parents=[debug],
                         help="top-K items for users from a run's best checkpoint (training items excluded); "
                              "optionally with new cold-start items")
    rec.add_argument("--run", type=path_arg, required=True, metavar="RUN_DIR")
    rec.add_argument("--users", nargs="+", required=True, metavar="USER",
                     help="the dataset's own user ids (ml100k: MovieLens ids; Amazon: reviewer ids) as in its "
                          "u_id_mapping.csv; with --internal-ids, or for a dataset without one, the 0-based ids")
    rec.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    rec.add_argument("--internal-ids", action="store_true",
                     help="take and print the 0-based ids the model uses instead of the dataset's own")
    rec.add_argument("--cold-features", type=path_arg, metavar="NPZ",
                     help="new items: an .npz with one [n_new, dim] array per modality; they join the candidates "
                          "as new:0, new:1, ... (internal ids n_items, n_items+1, ...), and the output gives each "
                          "one's rank for every user (see lgmrec_jax/recommend.py for what is used)")
    rec.add_argument("--out", type=path_arg, help="write the recommendations as JSON to this new file (default: "
                     "print); an existing file is refused")
    exp = sub.add_parser("export", parents=[debug], help="write user/item embeddings (.npy) of a run's best checkpoint")
    exp.add_argument("--run", type=path_arg, required=True, metavar="RUN_DIR")
    exp.add_argument("--out", type=path_arg, required=True, metavar="DIR",
                     help="folder for the export files; refused if it already holds any of them")
    exp.add_argument("--internal-ids", action="store_true",
                     help="user_ids.txt / item_ids.txt list the 0-based ids instead of the dataset's own")


def cmd_recommend(args) -> int:
    from lgmrec_jax import recommend_checks as checks
    if args.k < 1:
        raise InputError(f"--k {args.k}: must be a positive number of items")
    _check_new_file(args.out, "--out")
    cfg = checks.read_run_config(args.run)
    data = run_data.ensure_dataset(cfg.dataset, Path(cfg.train.data_dir))
    ids = checks.DatasetIds.of(cfg, data, internal=args.internal_ids)
    users = ids.resolve_users(args.users)
    cold = checks.read_cold_features(args.cold_features) if args.cold_features else None
    n_new = len(next(iter(cold.values()))) if cold else 0
    checks.check_request(data, users, args.k, n_new)
    from lgmrec_jax import recommend  # JAX, the model and the checkpoint: only for a request that passed the checks
    run = recommend.load_run(args.run, data)
    extra = recommend.cold_item_embeddings(run, cold) if cold else None
    items, scores = recommend.top_k(run, users, args.k, extra_items=extra)
    out = []
    for user, user_items, user_scores in zip(users, items, scores):
        keep = user_scores > -float("inf")  # fewer than k items the user has not trained on: the rest are dropped
        out.append({"user": ids.user(user), "internal_user": user,
                    "items": [ids.item(i) for i in user_items[keep].tolist()],
                    "internal_items": user_items[keep].tolist(),
                    "scores": [round(float(x), 6) for x in user_scores[keep]]})
    report = {"run": str(args.run), "k": args.k, "n_items": run.data.n_items, "ids": ids.space,
              "recommendations": out}
    if cold:
        report["cold_items"] = cold_item_report(recommend.ranks_among_candidates(run, users, extra), users, ids,
                                                data.n_items)
    text = jsonio.dumps(report)
    if args.out:
        _check_new_file(args.out, "--out")  # again: the ranking took a while, something may have appeared there
        atomic.write_text(args.out, text + "\n")
    else:
        print(text)
    return 0


def cold_item_report(ranks, users: list[int], ids, n_items: int) -> list[dict]:
    """Per new item: the id it was given and, per requested user, its rank among that user's candidates (the
    items the user has not trained on, plus this new item; 1 = first)."""
    return [{"id": ids.item(n_items + k), "internal_id": n_items + k, "row_in_cold_features": k,
             "rank_per_user": {str(ids.user(u)): int(r) for u, r in zip(users, ranks[:, k])}}
            for k in range(ranks.shape[1])]


def cmd_export(args) -> int:
    from lgmrec_jax import recommend_checks as checks
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a directory")
    present = [n for n in checks.EXPORT_FILES if (args.out / n).exists()]  # checked again when writing
    if present:
        raise InputError(f"--out {args.out}: already holds an export ({', '.join(present)}); choose another "
                         "directory or move those files away (nothing was written)")
    cfg = checks.read_run_config(args.run)
    data = run_data.ensure_dataset(cfg.dataset, Path(cfg.train.data_dir))
    ids = checks.DatasetIds.of(cfg, data, internal=args.internal_ids)
    from lgmrec_jax import recommend
    info = recommend.export_embeddings(recommend.load_run(args.run, data), args.out, ids)
    print(f"wrote {info['n_users']}×{info['dim']} user and {info['n_items']}×{info['dim']} item embeddings "
          f"to {args.out}")
    return 0


def _check_new_file(path: Path | None, flag: str) -> None:
    """An output file the command will create: never an existing one (nothing is overwritten), in an existing
    folder."""
    if path is None:
        return
    if path.exists():
        raise InputError(f"{flag} {path}: already exists; choose another file or move it away (nothing was written)")
    if not path.parent.is_dir():
        raise InputError(f"{flag} {path}: the folder {path.parent} does not exist")


def cmd_train(args) -> int:
    from lgmrec_jax import rundir
    if args.resume:
        given = [f"--{name.replace('overrides', 'set')}" for name in RESUME_CONFLICTS if getattr(args, name)]
        if given:
            raise InputError(f"--resume continues with the config saved in {args.resume}/config.json; "
                             f"{', '.join(given)} cannot be combined with it (start a new run to change settings)")
        rundir.check_resumable(args.resume)
        cfg = load_saved_config(args.resume / "config.json")
        if args.extend_to is not None:
            cfg = extended_config(cfg, args.extend_to, args.resume)
        workdir = args.resume
    else:
        if args.extend_to is not None:
            raise InputError("--extend-to raises the epoch cap of an existing run: give it with --resume RUN_DIR "
                             "(for a new run use --set train.epochs=N)")
        model = DEFAULT_MODEL if args.model is None else args.model
        dataset = DEFAULT_DATASET if args.dataset is None else args.dataset
        cfg = load_config(model, dataset, args.config, args.overrides)
        workdir = args.workdir or Path(cfg.train.runs_dir) / f"{cfg.model_name}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        rundir.check_fresh(workdir)  # again under the run's lock; checked here so a refusal comes before any work
    import jax  # only now: the checks above need no device
    if args.distributed:
        jax.distributed.initialize()
    from lgmrec_jax import compile_cache
    cache = compile_cache.enable(args.compilation_cache if args.compilation_cache is not None
                                 else compile_cache.default_dir())
    if cache is not None:
        print(f"compilation cache: {cache}")
    validate(cfg, available_devices=len(jax.devices()))
    from lgmrec_jax.hardware import platform_report
    platform_line, warning = platform_report()
    print(platform_line)
    if warning:  # an accelerator the OS shows but JAX does not use: say it before a long, slow run starts
        print(warning, file=sys.stderr)
    data = run_data.ensure_dataset(cfg.dataset, Path(cfg.train.data_dir))
    print(data.summary())
    for note in report_lines(data.load_report):
        print(f"note: {note}")
    check_fits_data(cfg, data.n_items, data.modalities)
    if args.resume:
        note_finished(args.resume, args.extend_to)
    else:
        check_manifest(cfg)  # a damaged manifest is refused now, not after config.json is in the new run directory
    from lgmrec_jax.train import train_and_evaluate  # flax, optax, orbax: once the inputs are known to be good
    print(f"run directory: {workdir}")
    result = train_and_evaluate(cfg, data, workdir, resume=bool(args.resume), progress=not args.no_progress,
                                extend=args.extend_to is not None)
    print_result(result)
    return 0


def check_manifest(cfg) -> None:
    """Reads the dataset folder's manifest.json as the run's repro.json will (errors name the file)."""
    from lgmrec_jax.repro import manifest_summary
    manifest_summary(Path(cfg.train.data_dir) / cfg.dataset)


def note_finished(run: Path, extend_to: int | None) -> None:
    """Says when --resume meets a finished run: nothing is left to train, only the test evaluation is redone."""
    if extend_to is not None or not (run / "results.json").exists():
        return
    try:
        result = jsonio.read_json(run / "results.json", "run results")
        done = f"best epoch {result['best_epoch']} of {result['epochs_run']}"
    except (InputError, KeyError, TypeError):
        done = "results.json present"
    print(f"note: {run} is finished ({done}): nothing to train. Its best checkpoint is evaluated again and "
          "results.json rewritten with the same numbers; --extend-to EPOCHS trains it further.")


def extended_config(cfg, epochs: int, run: Path):
    """The saved config with a larger epoch cap (checked before anything is loaded)."""
    if epochs > MAX_EPOCHS:
        raise InputError(f"--extend-to {epochs}: at most {MAX_EPOCHS} epochs")
    if epochs <= cfg.train.epochs:
        raise InputError(f"--extend-to {epochs}: the run in {run} already has train.epochs = {cfg.train.epochs}; "
                         "give a larger cap (plain --resume continues up to the saved one)")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))


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
    seconds = {k: "-" if result[k] is None else f"{result[k]:.3f}"
               for k in ("median_train_seconds_per_epoch", "median_eval_seconds")}
    print(f"median train s/epoch {seconds['median_train_seconds_per_epoch']}, "
          f"eval s {seconds['median_eval_seconds']} ({result['backend']} on {result['devices']} "
          f"{result['platform']} device(s))")


COMMANDS = {"train": cmd_train, "recommend": cmd_recommend, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors: argparse prints them and exits 2
    debug = getattr(args, "debug", False) or errors.debug_requested()
    return errors.run_guarded(lambda: COMMANDS[args.command](args), debug=debug)


if __name__ == "__main__":
    sys.exit(main())
