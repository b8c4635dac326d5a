"""`make profile`: a device trace of propagation, a few train steps and one validation pass, for xprof or Perfetto.

    python -m experiments.profile --model lightgcn --dataset synthetic-baby [--steps 5] [--set train.backend=bcsr]

Builds the same Trainer as `make train` (same config layers, graphs, on-device sampler, scanned train program,
Evaluator), compiles everything first so that the trace shows steady-state execution, then records under
runs/profile-<model>-<dataset>-<time>/ with `jax.profiler.trace(..., create_perfetto_trace=True)`. Named regions:
`propagation` (Â @ X on the model's adjacency, 64 wide), `train` (one program scanning `--steps` steps, the same
program the trainer runs for a whole epoch, sampler included; `StepTraceAnnotation`, so xprof's step view shows it),
and `validation` (embedding forward + every user batch). Inside `train`, XLA's op names carry the model's scopes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import jax

from lgmrec_jax import parallel
from lgmrec_jax.config import load_config
from lgmrec_jax.graph import SparseMatrix
from lgmrec_jax.train import Trainer, sampler_key

REGIONS = ("propagation", "train", "validation")  # the names annotated below


def adjacency(graphs) -> SparseMatrix:
    """The largest square matrix of the model's graphs: the normalized adjacency it propagates over."""
    mats = [m for m in jax.tree.leaves(graphs, is_leaf=lambda x: isinstance(x, SparseMatrix))
            if isinstance(m, SparseMatrix) and m.shape[0] == m.shape[1]]
    return max(mats, key=lambda m: m.nnz)


def profile(model: str, dataset: str, steps: int, overrides: list[str], runs_dir: Path) -> Path:
    from lgmrec_jax.run_data import ensure_dataset  # builds ml100k on first use, like `make train`

    cfg = load_config(model, dataset, overrides=overrides)
    data = ensure_dataset(dataset, Path(cfg.train.data_dir))
    logdir = runs_dir / f"profile-{model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    trainer = Trainer(cfg, data, logdir, progress=False)
    print(f"{data.summary()}\nbackend {trainer.backend}, {trainer.mesh.size} × {jax.devices()[0].device_kind}")

    state = trainer.init_state()
    adj = adjacency(trainer.graphs)
    x = parallel.replicate(jax.random.normal(jax.random.PRNGKey(0), (adj.shape[1], cfg.model.embedding_size)),
                           trainer.mesh)
    propagate = jax.jit(lambda m, v: m @ v)
    steps = min(steps, trainer.steps_per_epoch)
    key = sampler_key(cfg.train.seed, 0)
    order = trainer.programs.order(trainer.tables, key)

    def train(state):
        return trainer.programs.run_steps(state, trainer.graphs, trainer.feats, trainer.tables, order, key,
                                          jax.numpy.int32(0), n_steps=steps)

    # Compile outside the trace: compilation would otherwise dominate the timeline.
    t0 = time.perf_counter()
    propagate(adj, x).block_until_ready()
    state, parts = train(state)
    jax.block_until_ready(parts)
    trainer.evaluate(state.params, trainer.valid_eval, 0)
    print(f"compiled and warmed up in {time.perf_counter() - t0:.1f} s; tracing {steps} steps in one program")

    with jax.profiler.trace(str(logdir), create_perfetto_trace=True):
        for _ in range(3):
            with jax.profiler.TraceAnnotation("propagation"):
                propagate(adj, x).block_until_ready()
        with jax.profiler.StepTraceAnnotation("train", step_num=0):
            state, parts = train(state)
            jax.block_until_ready(parts)
        with jax.profiler.TraceAnnotation("validation"):
            trainer.evaluate(state.params, trainer.valid_eval, 1)
    return logdir


def region_summary(perfetto_trace: Path) -> dict[str, list[float]]:
    """Milliseconds of each named region in the trace (complete events), e.g. {"train": [41.2, 39.8, ...]}."""
    with gzip.open(perfetto_trace, "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    out: dict[str, list[float]] = {name: [] for name in REGIONS}
    for event in events:
        if event.get("ph") == "X" and event.get("name") in out:
            out[event["name"]].append(event.get("dur", 0) / 1e3)  # trace durations are in microseconds
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.profile", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lightgcn", help="lightgcn, lgmrec or gume (default lightgcn)")
    p.add_argument("--dataset", default="synthetic-baby", help="dataset name (default synthetic-baby)")
    p.add_argument("--steps", type=int, default=5, help="train steps in the traced program (default 5)")
    p.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="config overrides, e.g. train.backend=bcoo")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"),
                   help="the trace goes to RUNS_DIR/profile-<model>-<dataset>-<time>/ (default runs)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be at least 1")
    logdir = profile(args.model, args.dataset, args.steps, args.overrides, args.runs_dir)
    perfetto = sorted(logdir.glob("plugins/profile/*/perfetto_trace.json.gz"))
    print(f"\ntrace written to {logdir}/")
    print(f"  xprof:    pip install xprof && xprof --logdir {logdir} --port 6006   (then http://localhost:6006, "
          "Trace Viewer / Overview)")
    if perfetto:
        print(f"  Perfetto: open https://ui.perfetto.dev and drag in {perfetto[-1]}")
        for name, ms in region_summary(perfetto[-1]).items():
            if ms:
                print(f"  {name:12} {len(ms)} × median {sorted(ms)[len(ms) // 2]:.1f} ms")
    return 0


if __name__ == "__main__":
    from lgmrec_jax.errors import run_as_script

    run_as_script(main)  # bad input (a --set key, a dataset): one line naming it, exit 2
