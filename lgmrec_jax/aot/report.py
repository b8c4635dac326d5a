"""Compile the trainer's programs for a target and read what its compiler says about them.

    rows = compile_run("gume", data, targets.parse("v5e:2x4"), overrides=["train.backend=auto"])

One row per program (train_step, embed, eval_batch): per-chip argument / output / temporary / peak bytes, whether
the peak fits the chip's usable memory and by how much, compile seconds, FLOPs and bytes accessed (TPU only: the GPU
compiler gives no cost analysis), and an op census of the optimized HLO (how many gathers, scatters, sorts, while
loops, fusions, ...). A compile that fails is a row too, with the compiler's own message: an out-of-memory verdict is
a result, not a crash.

Peak is `argument + output + temporary − aliased` bytes: donated state is counted once. `optimal_seconds` of the
TPU cost model is not reported as a time: it adds a -1 s sentinel for every op it cannot model; the count of such
ops is reported instead (`unmodelled`), from the sentinel itself.
"""

from __future__ import annotations

import collections
import re
import time
from pathlib import Path

import jax

from lgmrec_jax.aot import scales, targets
from lgmrec_jax.config import load_config
from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.errors import InputError
from lgmrec_jax.graph.sparse import resolve_backend
from lgmrec_jax.models import get_model
from lgmrec_jax.train import Trainer

GIB = 2**30
PROGRAMS = ("train_step", "embed", "eval_batch")
# Ops worth counting in the optimized HLO: the expensive or surprising ones on an accelerator.
CENSUS = ("fusion", "gather", "scatter", "sort", "while", "all-gather", "all-reduce", "all-to-all",
          "reduce-scatter", "collective-permute", "dot", "convolution", "custom-call", "dynamic-slice",
          "dynamic-update-slice", "copy")


def trainer_for(model: str, data: Dataset, mesh: jax.sharding.Mesh, overrides=()) -> Trainer:
    """The abstract trainer of `model` on `data` for the devices of `mesh`, with the dataset's own settings."""
    cfg = load_config(model, data.name, overrides=["train.checkpoint_every=0", *overrides])
    mod = get_model(model)
    backend = resolve_backend(cfg.train.backend, mesh.devices.flat[0].platform)
    graphs = scales.graphs_for(model, mod, data, cfg, backend, cache_dir=Path(cfg.train.cache_dir))
    return Trainer(cfg, data, Path("/nonexistent-unused"), progress=False, target=mesh, graphs=graphs)


def compile_run(model: str, data: Dataset, target: targets.Target, overrides=(), programs=PROGRAMS,
                stop_at_misfit: bool = False) -> list[dict]:
    """Rows of `programs` compiled for `target`; with `stop_at_misfit` the programs after one that does not fit are
    not compiled (a planner needs one refusal, not three)."""
    base = {"model": model, "dataset": data.name, "target": target.name, "devices": len(target.devices())}
    try:
        trainer = trainer_for(model, data, target.mesh(), overrides)
        lowered = trainer.lower()
    except InputError:  # a bad --set key or value: the user's to fix, exit 2
        raise
    except Exception as e:  # a configuration the trainer refuses is a row, not a crash of the whole table
        return [{**base, "program": p, "error": _message(e)} for p in programs]
    base["backend"] = trainer.backend
    base["batch"] = trainer.cfg.train.train_batch_size
    rows = []
    for p in programs:
        rows.append({**base, "program": p, **figures(lowered[p], target)})
        if stop_at_misfit and not rows[-1].get("fits"):
            break
    return rows


def figures(lowered: jax.stages.Lowered, target: targets.Target) -> dict:
    t0 = time.perf_counter()
    try:
        compiled = lowered.compile()
    except Exception as e:
        return {"compile_s": time.perf_counter() - t0, "error": _message(e), "fits": False if _oom(e) else None}
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes)
    usable = target.usable_bytes()
    row = {"compile_s": seconds, "argument_gib": mem.argument_size_in_bytes / GIB,
           "output_gib": mem.output_size_in_bytes / GIB, "temp_gib": mem.temp_size_in_bytes / GIB,
           "peak_gib": peak / GIB, "usable_gib": usable / GIB, "fits": peak <= usable,
           "headroom_gib": (usable - peak) / GIB}
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost:
        row["gflop"] = float(cost.get("flops", 0.0)) / 1e9
        row["gb_accessed"] = float(cost.get("bytes accessed", 0.0)) / 1e9
        optimal = cost.get("optimal_seconds")
        if optimal is not None:
            # Each op the model cannot time adds -1 s; what remains below 0 counts them (rounded up).
            row["unmodelled"] = max(0, -int(optimal // 1)) if optimal < 0 else 0
    row["census"] = census(compiled.as_text())
    return row


def census(hlo_text: str) -> dict[str, int]:
    """Counts of CENSUS ops among the instructions of the optimized HLO (fused computations included)."""
    counts = collections.Counter()
    for op in re.findall(r"=\s*[^=]*?\s([a-z][a-z0-9-]*)\(", hlo_text):
        if op in CENSUS or op.endswith("-start") and op.removesuffix("-start") in CENSUS:
            counts[op.removesuffix("-start")] += 1
    return dict(sorted(counts.items()))


def _oom(e: Exception) -> bool:
    return "RESOURCE_EXHAUSTED" in str(e) or "HbmOom" in str(e) or "out of memory" in str(e).lower()


def _message(e: Exception) -> str:
    text = " ".join(str(e).split())
    found = re.search(r"(RESOURCE_EXHAUSTED.*?)(?:\. |$)", text)
    return (found.group(1) if found else f"{type(e).__name__}: {text}")[:400]
