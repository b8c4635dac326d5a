"""What JAX's persistent compilation cache saves when a run resumes (lgmrec_jax/compile_cache.py).

    python -m experiments.cache_start [--model gume] [--dataset synthetic-baby]

Two runs of one epoch each are started, one with the cache off and one with a fresh cache directory; each is then
resumed with `--extend-to 2`, the way a user continues a run, with the same cache setting. The resumed process must
compile the epoch and evaluation programs again unless the cache has them. Printed per resume: the wall-clock seconds
of the whole command, the first epoch's train seconds (compile included) and its validation seconds (compile
included), all read from the run's own metrics.jsonl. Everything is written under a new temporary directory, removed
at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lgmrec_jax.cli", "train", "--no-progress", *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.cache_start", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="gume")
    p.add_argument("--dataset", default="synthetic-baby")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cache-start-") as tmp:
        for label, cache in (("cache off", "none"), ("cache on", str(Path(tmp) / "jax-cache"))):
            run = Path(tmp) / label.replace(" ", "-")
            first = train("--model", args.model, "--dataset", args.dataset, "--workdir", str(run),
                          "--set", "train.epochs=1", "--compilation-cache", cache)
            resumed = train("--resume", str(run), "--extend-to", "2", "--compilation-cache", cache)
            epoch = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
            rows.append((label, first, resumed, epoch["train_seconds"], epoch["eval_seconds"]))
    print(f"{args.model} on {args.dataset}, resumed for one more epoch:")
    print("| cache | first run s | resume s (whole command) | resumed epoch train s | its validation s |")
    print("|---|---:|---:|---:|---:|")
    for label, first, resumed, train_s, eval_s in rows:
        print(f"| {label} | {first:.1f} | {resumed:.1f} | {train_s:.1f} | {eval_s:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
