"""Per-device cost at 1, 2, 4 and 8 devices: what splitting node-indexed state over the mesh buys (parallel.py).

    python -m experiments.scaling [--scales baby clothing] [--models lightgcn lgmrec gume] [--devices 1 2 4 8]
                                  [--time-reps 2] [--no-huge] [--json OUT]

For every model × scale × device count it builds the real Trainer (`train.devices=n`, backend bcoo: XLA counts the
FLOPs of its gathers and scatter-adds, while a CSR kernel is an opaque custom call it cannot count) and reads, per
device, from XLA's compiled programs:
  * train-step GFLOP (`cost_analysis()["flops"]` of the epoch program compiled for one step) and MiB of its
    arguments + temporaries (`memory_analysis()`);
  * the same for one evaluation batch (the first user batch of the validation split);
  * MiB that device holds of parameters + Adam state + feature tables (the placed arrays' own shards);
  * CPU seconds per step, for orientation only: forced host "devices" share this machine's cores, so more of them
    is not faster here.
Then one compile-only row at ~10× Electronics (2M users, 630k items, 17M training interactions, image/text widths as
Elec: 4096/384) with abstract inputs (the Trainer's `target` mode): per-device memory at 8 devices of this machine's
compiler. Whether it fits a TPU or GPU is that target's compiler's verdict, not this one's (`python -m
experiments.aot`; the TPU compiler tiles 64-wide buffers to 128 lanes, for one).

The device count of a JAX process is fixed when it starts, so when this process has fewer devices than asked for it
re-runs itself with XLA_FLAGS=--xla_force_host_platform_device_count=8 (on CPU). `make bench` calls it and puts its
table into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lgmrec_jax import atomic, parallel
from lgmrec_jax.aot import report, scales
from lgmrec_jax.config import load_config
from lgmrec_jax.data import synthetic
from lgmrec_jax.models import MODEL_MODULES
from lgmrec_jax.train import Trainer, make_epoch_programs, model_key, sampler_key, uses_negatives

MIB = 2**20


def shard_mib(tree) -> float:
    """MiB that one device holds of the arrays in `tree` (its own shard of each); placed arrays and abstract
    ShapeDtypeStructs with a sharding alike (shards are equal: every split table is padded to divide evenly)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        total += int(np.prod(leaf.sharding.shard_shape(leaf.shape))) * np.dtype(leaf.dtype).itemsize
    return total / MIB


def compiled_figures(compiled) -> dict:
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {"gflop": float(cost.get("flops", 0.0)) / 1e9,
            "mib": (memory.argument_size_in_bytes + memory.temp_size_in_bytes) / MIB}


def measure(model: str, data, n_devices: int, time_reps: int) -> dict:
    cfg = load_config(model, data.name, overrides=[f"train.devices={n_devices}", "train.backend=bcoo",
                                                  "train.checkpoint_every=0"])
    trainer = Trainer(cfg, data, Path("/nonexistent-unused"), progress=False)
    state = trainer.init_state()
    key = sampler_key(0, 0)
    order = trainer.programs.order(trainer.tables, key)
    args = (trainer.graphs, trainer.feats, trainer.tables, order, key, jnp.int32(0))
    step = trainer.programs.run_steps.lower(state, *args, n_steps=1).compile()
    row = {"model": model, "scale": data.name, "devices": n_devices,
           "state_mib": shard_mib((state.params, state.opt_state, trainer.feats)),
           **{f"step_{k}": v for k, v in compiled_figures(step).items()}}
    users, items = trainer.embed(state.params, trainer.graphs, trainer.feats, key)
    evaluation = trainer.valid_eval.lower_batch(users, items).compile()
    row.update({f"eval_{k}": v for k, v in compiled_figures(evaluation).items()})
    seconds = []
    for i in range(time_reps + 1):  # the first call warms up
        t0 = time.perf_counter()
        state, sums = step(state, *args)
        jax.block_until_ready(sums)
        seconds.append(time.perf_counter() - t0)
    row["step_s"] = float(np.median(seconds[1:])) if time_reps else None
    return row


def previous_train_step(model, model_cfg, optimizer, steps_per_epoch=None):
    """The train step as it was before node tables were split (no `parallel.logical`, no placement constraint):
    the 1-device program of the previous commit, to time the current one against in the same run."""
    import optax

    per_epoch = steps_per_epoch if getattr(model, "PER_EPOCH_KEY", False) else None

    def train_step(state, graphs, feats, batch):
        key = model_key(state.key, state.step, per_epoch)
        grad_fn = jax.value_and_grad(model.loss, has_aux=True)
        (loss, parts), grads = grad_fn(state.params, graphs, feats, batch, key, model_cfg)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state.replace(params=params, opt_state=opt_state, step=state.step + 1), {"loss": loss, **parts}

    return train_step


def one_device_before_after(model: str, data, steps: int, rounds: int) -> dict:
    """Seconds per step on one device: the previous program vs the current one, interleaved over the same steps."""
    cfg = load_config(model, data.name, overrides=["train.devices=1", "train.checkpoint_every=0"])
    trainer = Trainer(cfg, data, Path("/nonexistent-unused"), progress=False)
    previous = make_epoch_programs(previous_train_step(trainer.model, cfg.model, trainer.optimizer,
                                                       trainer.steps_per_epoch),
                                   parallel.batch_sharded(trainer.mesh),
                                   negatives=uses_negatives(trainer.model)).run_steps
    key = sampler_key(0, 0)
    order = trainer.programs.order(trainer.tables, key)
    args = (trainer.graphs, trainer.feats, trainer.tables, order, key, jnp.int32(0))
    states = {"previous": trainer.init_state(), "current": trainer.init_state()}
    programs = {"previous": previous, "current": trainer.programs.run_steps}
    seconds = {name: [] for name in programs}
    for i in range(rounds + 1):  # round 0 compiles and warms up
        for name, program in programs.items():
            t0 = time.perf_counter()
            states[name], sums = program(states[name], *args, n_steps=steps)
            jax.block_until_ready(sums)
            if i:
                seconds[name].append((time.perf_counter() - t0) / steps)
    row = {"model": model, "scale": data.name, "backend": trainer.backend, "steps": steps, "rounds": rounds,
           **{f"{name}_s": float(np.median(v)) for name, v in seconds.items()}}
    row["current_over_previous"] = row["current_s"] / row["previous_s"]
    return row


# ----------------------------------------------------------------------------------------------------------------
# The compile-only row: a scale too large to train here, compiled by this machine's compiler from abstract inputs.


def measure_huge(model: str, n_devices: int, scale: str = "10x-elec") -> dict:
    """Compile-only figures of one train step and one evaluation batch at ~10× Electronics (lgmrec_jax/aot/scales.py,
    counts only), for this machine's devices: the abstract Trainer (target = the local mesh) lowers the programs,
    nothing is placed. What a TPU or GPU needs comes from its own compiler instead (`python -m experiments.aot`)."""
    data = scales.resolve(scale)
    trainer = report.trainer_for(model, data, parallel.make_mesh(n_devices), ["train.backend=bcoo"])
    lowered = trainer.lower()
    state = trainer.init_state()
    row = {"model": model, "scale": scale, "devices": n_devices,
           **{f"step_{k}": v for k, v in compiled_figures(lowered["train_step"].compile()).items()},
           "state_mib": shard_mib((state.params, state.opt_state, trainer.feats))}
    if n_devices > 1:
        row.update({f"eval_{k}": v for k, v in compiled_figures(lowered["eval_batch"].compile()).items()})
    return row


# ----------------------------------------------------------------------------------------------------------------


def render(rows: list[dict]) -> list[str]:
    """Markdown lines: one table of the measured scales (ratios to 1 device), then the compile-only rows."""
    def fmt(x, digits=3):
        return "—" if x is None else f"{x:.{digits}g}"

    base = {(r["model"], r["scale"]): r for r in rows if r["devices"] == 1 and not r.get("error")}
    out = ["| scale | model | devices | step GFLOP/device | ×1-dev | step MiB/device (args+temp) | ×1-dev "
           "| params+Adam+features MiB/device | ×1-dev | eval-batch GFLOP/device | eval MiB/device | CPU s/step |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("error"):
            out.append(f"| {r['scale']} | {r['model']} | {r['devices']} | failed: {r['error']} |||||||||")
            continue
        b = base.get((r["model"], r["scale"]))

        def rel(key):
            return "—" if b is None or not b.get(key) else f"{r[key] / b[key]:.3f}"

        out.append(f"| {r['scale']} | {r['model']} | {r['devices']} | {fmt(r['step_gflop'])} | {rel('step_gflop')} "
                   f"| {fmt(r['step_mib'], 4)} | {rel('step_mib')} | {fmt(r['state_mib'], 4)} | {rel('state_mib')} "
                   f"| {fmt(r.get('eval_gflop'))} | {fmt(r.get('eval_mib'), 4)} | {fmt(r.get('step_s'))} |")
    return out


def render_before_after(rows: list[dict]) -> list[str]:
    out = ["| scale | model | backend | previous s/step | current s/step | current / previous | steps × rounds |",
           "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        if r.get("error"):
            out.append(f"| {r['scale']} | {r['model']} | failed: {r['error']} |||||")
            continue
        out.append(f"| {r['scale']} | {r['model']} | {r['backend']} | {r['previous_s']:.3g} | {r['current_s']:.3g} | "
                   f"×{r['current_over_previous']:.3f} | {r['steps']} × {r['rounds']} |")
    return out


def run(args) -> tuple[list[dict], list[dict]]:
    rows, before_after = [], []
    for scale in args.scales:
        data = synthetic.generate(scale)
        for model in (args.models if args.before_after_steps else []):
            t0 = time.perf_counter()
            try:
                row = one_device_before_after(model, data, args.before_after_steps, args.before_after_rounds)
            except Exception as e:
                row = {"model": model, "scale": data.name, "error": f"{type(e).__name__}: {e}"}
            print(f"[{time.perf_counter() - t0:5.1f}s] {json.dumps(row)}", flush=True)
            before_after.append(row)
        for model in args.models:
            for n in args.devices:
                t0 = time.perf_counter()
                try:
                    row = measure(model, data, n, args.time_reps)
                except Exception as e:  # one failing configuration must not hide the others
                    row = {"model": model, "scale": data.name, "devices": n, "error": f"{type(e).__name__}: {e}"}
                print(f"[{time.perf_counter() - t0:5.1f}s] {json.dumps(row)}", flush=True)
                rows.append(row)
    if not args.no_huge:
        for model in args.models:
            t0 = time.perf_counter()
            try:
                row = measure_huge(model, max(args.devices))
            except Exception as e:
                row = {"model": model, "scale": "10x-elec", "devices": max(args.devices),
                       "error": f"{type(e).__name__}: {str(e)[:200]}"}
            print(f"[{time.perf_counter() - t0:5.1f}s] {json.dumps(row)}", flush=True)
            rows.append(row)
    return rows, before_after


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m experiments.scaling", description=__doc__.split("\n")[0])
    p.add_argument("--scales", nargs="+", default=["baby", "clothing"], choices=sorted(synthetic.SCALES))
    p.add_argument("--models", nargs="+", default=list(MODEL_MODULES), choices=list(MODEL_MODULES))
    p.add_argument("--devices", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--time-reps", type=int, default=2, help="timed steps per row (0: compile only)")
    p.add_argument("--no-huge", action="store_true", help="skip the compile-only 10x-Electronics row")
    p.add_argument("--before-after-steps", type=int, default=4,
                   help="steps per round of the 1-device previous-vs-current timing (0 skips it)")
    p.add_argument("--before-after-rounds", type=int, default=5)
    p.add_argument("--json", type=Path, help="also write the rows here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.json:  # before the runs (the relaunched child checks again, finding the path still free)
        atomic.refuse_foreign(args.json, "--json")
    if jax.device_count() < max(args.devices):
        if jax.default_backend() != "cpu":
            raise SystemExit(f"error: {jax.device_count()} {jax.default_backend()} device(s) here; "
                             f"--devices {' '.join(map(str, args.devices))} needs {max(args.devices)}")
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
            f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={max(args.devices)}").strip())
        return subprocess.call([sys.executable, "-m", "experiments.scaling", *argv], env=env)
    rows, before_after = run(args)
    print("\n".join(render(rows) + [""] + render_before_after(before_after)))
    if args.json:
        atomic.write_text(args.json, json.dumps({"rows": rows, "before_after": before_after}, indent=1))
    return 0


if __name__ == "__main__":
    from lgmrec_jax.errors import run_as_script

    run_as_script(main)  # bad input (a --set key, a dataset): one line naming it, exit 2
