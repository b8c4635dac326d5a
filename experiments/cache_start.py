"""What JAX's persistent compilation cache saves at the start of a resumed run (lgmrec_jax/compile_cache.py).

    python -m experiments.cache_start [--model gume] [--dataset synthetic-baby] [--rounds 2]

A resumed run (`train --resume`, `--extend-to`, the next sweep point of the same shapes) starts in a new process and
compiles the epoch program, the evaluation forward pass and the validation batch before its first epoch. Here each
start is a fresh process that builds the run's Trainer and compiles exactly those three programs (the epoch program
with the run's steps per epoch), timed, under three conditions, interleaved over `--rounds`:
  * off: no cache (what every resume paid before);
  * cold: an empty cache directory (the first run of a program shape: it compiles and writes the cache);
  * warm: the directory the cold start filled (every later start).
Printed: median seconds to compile the three programs, and the cache's size. Everything is written under a new
temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def child(model: str, dataset: str, cache: str) -> dict:
    from lgmrec_jax import compile_cache

    compile_cache.enable(cache)
    import jax

    from lgmrec_jax.config import load_config
    from lgmrec_jax.data.sources import load_dataset
    from lgmrec_jax.train import Trainer, sampler_key

    data = load_dataset(dataset)
    cfg = load_config(model, dataset, overrides=["train.checkpoint_every=0"])
    trainer = Trainer(cfg, data, Path("/nonexistent-unused"), progress=False)
    state = trainer.init_state()
    key = sampler_key(cfg.train.seed, 0)
    t0 = time.perf_counter()
    trainer.programs.run_epoch.lower(state, trainer.graphs, trainer.feats, trainer.tables, key,
                                     n_steps=trainer.steps_per_epoch).compile()
    embed = trainer.embed.lower(state.params, trainer.graphs, trainer.feats, key)
    embed.compile()
    trainer.valid_eval.lower_batch(*(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in embed.out_info)).compile()
    return {"compile_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.cache_start", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="gume")
    p.add_argument("--dataset", default="synthetic-baby")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--child", metavar="CACHE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.model, args.dataset, args.child)))
        return 0
    seconds = {"off": [], "cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="cache-start-") as tmp:
        for r in range(args.rounds):
            cache = Path(tmp) / f"cache-{r}"
            for condition in seconds:
                where = "none" if condition == "off" else str(cache)
                out = subprocess.run([sys.executable, "-m", "experiments.cache_start", "--model", args.model,
                                      "--dataset", args.dataset, "--child", where], check=True, capture_output=True,
                                     text=True)
                seconds[condition].append(json.loads(out.stdout.strip().splitlines()[-1])["compile_s"])
        size = sum(f.stat().st_size for f in (Path(tmp) / "cache-0").iterdir()) / 2**20
    print(f"{args.model} on {args.dataset}: compiling the epoch program, evaluation pass and validation batch at "
          f"the start of a run, fresh process each, median of {args.rounds} interleaved rounds")
    print("| compilation cache | seconds | × off |")
    print("|---|---:|---:|")
    for condition, values in seconds.items():
        print(f"| {condition} | {np.median(values):.2f} | ×{np.median(values) / np.median(seconds['off']):.2f} |")
    print(f"cache size after one start: {size:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
