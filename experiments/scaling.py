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
Elec: 4096/384) with abstract inputs: per-device memory at 8 devices, i.e. whether it fits a 16 GB chip. The sparse
blocks' sizes there come from a synthetic power-law interaction sample (no CSR is built).

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

from lgmrec_jax import parallel
from lgmrec_jax.graph import partitioned
from lgmrec_jax.config import load_config
from lgmrec_jax.data import sampler, synthetic
from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.evaluation import Evaluator
from lgmrec_jax.graph.sparse import CSR, Blocks, SparseMatrix
from lgmrec_jax.models import MODEL_MODULES, get_model
from lgmrec_jax.train import (Trainer, TrainState, make_epoch_programs, make_optimizer, make_train_step,
                              sampler_key)

MIB = 2**20
# ~10× Amazon Electronics (192,403 users, 63,001 items, 1,689,188 interactions; SPEC §5.1): the compile-only row.
HUGE = {"n_users": 2_000_000, "n_items": 630_000, "n_train": 17_000_000, "widths": {"image": 4096, "text": 384}}


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


def previous_train_step(model, model_cfg, optimizer):
    """The train step as it was before node tables were split (no `parallel.logical`, no placement constraint):
    the 1-device program of the previous commit, to time the current one against in the same run."""
    import optax

    def train_step(state, graphs, feats, batch):
        key = jax.random.fold_in(state.key, state.step)
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
    previous = make_epoch_programs(previous_train_step(trainer.model, cfg.model, trainer.optimizer),
                                   parallel.batch_sharded(trainer.mesh)).run_steps
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
# The compile-only row: abstract arrays of a scale too large to build here.


def _power_law(rng, n: int, size: int, exponent: float = 1.1) -> np.ndarray:
    """`size` ids in [0, n) with Zipf-like popularity, shuffled so that popular ids are spread over the id range."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    ids = rng.choice(n, size=size, p=weights / weights.sum())
    return rng.permutation(n)[ids]


def _abstract_blocks(row_counts: np.ndarray, n_cols: int, n_blocks: int, sharding,
                     layout: np.ndarray | None = None) -> tuple[CSR, int, int]:
    """Shapes of the row-blocked CSR (graph/partitioned.row_blocks, same `layout`) for a matrix with these nonzeros
    per row."""
    layout = partitioned.cyclic_layout(len(row_counts), n_blocks) if layout is None else layout
    r = layout.shape[1]
    per_block = np.where(layout >= 0, row_counts[np.maximum(layout, 0)], 0).sum(axis=1)
    width = int(per_block.max())
    spill = max(1, -(-int(width - per_block.min()) // n_cols))

    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    csr = CSR(data=spec((n_blocks, width), jnp.float32), indices=spec((n_blocks, width), jnp.int32),
              indptr=spec((n_blocks, r + spill + 1), jnp.int32), row_ids=spec((n_blocks, width), jnp.int32))
    return csr, r, spill


def abstract_matrix(rows: np.ndarray, cols: np.ndarray, shape, placement, backend: str = "bcoo",
                    nodes: tuple[int, int] | None = None) -> SparseMatrix:
    """The placed SparseMatrix partition() would give, as shapes; `nodes` = (users, items) for a node adjacency."""
    n = placement.mesh.size
    sharding = placement.rows_sharding()
    layout, node_rows, n_cols = None, None, shape
    if nodes is not None:
        layout, _, node_rows = partitioned.node_layout(*nodes, n)
        n_cols = (layout.size, layout.size)
    fwd, r_f, s_f = _abstract_blocks(np.bincount(rows, minlength=shape[0]), n_cols[1], n, sharding, layout)
    bwd, r_b, s_b = _abstract_blocks(np.bincount(cols, minlength=shape[1]), n_cols[0], n, sharding, layout)
    return SparseMatrix(fwd=fwd, bwd=bwd, shape=shape, backend=backend, nodes=nodes,
                        blocks=Blocks(placement.mesh, parallel.DATA_AXIS, (r_f, r_b), (s_f, s_b), node_rows))


def measure_huge(model: str, n_devices: int) -> dict:
    """Compile-only figures of one train step and one evaluation batch at HUGE size, inputs abstract."""
    rng = np.random.default_rng(0)
    n_users, n_items, n_train = HUGE["n_users"], HUGE["n_items"], HUGE["n_train"]
    users = _power_law(rng, n_users, n_train, 0.6)
    items = _power_law(rng, n_items, n_train, 0.9)
    # Only shapes are needed from the dataset: features as zero-strided views, a one-row split per user group.
    feats = {m: np.broadcast_to(np.float32(0), (n_items, w)) for m, w in HUGE["widths"].items()}
    few = np.stack([np.arange(4096), np.arange(4096) % n_items], axis=1)
    data = Dataset(name="synthetic-10x-elec", n_users=n_users, n_items=n_items,
                   train=np.stack([users, items], axis=1), valid=few, test=few, features=feats)
    cfg = load_config(model, "synthetic-elec", overrides=[f"train.devices={n_devices}", "train.backend=bcoo"])
    mesh = parallel.make_mesh(n_devices)
    placement = parallel.Placement(mesh, (n_users, n_items))
    mod = get_model(model)
    n = n_users + n_items
    adj_rows = np.concatenate([users, items + n_users])
    adj_cols = np.concatenate([items + n_users, users])
    graphs_by_model = {
        "lightgcn": lambda: {"adj": abstract_matrix(adj_rows, adj_cols, (n, n), placement,
                                                    nodes=(n_users, n_items))},
        "lgmrec": lambda: _lgmrec_graphs(mod, users, items, adj_rows, adj_cols, n, placement, data),
        "gume": lambda: _gume_graphs(rng, users, items, n, placement, cfg.model.knn_k),
    }
    graphs = graphs_by_model[model]()
    tables = jax.eval_shape(lambda: sampler.build_tables(data, cfg.train.train_batch_size))
    tables = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=parallel.replicated(mesh)),
                          tables)
    optimizer = make_optimizer(cfg, tables.batches_per_epoch)

    def logical_state():
        params = mod.init(jax.random.PRNGKey(0), cfg.model, data)
        return TrainState(params=params, opt_state=optimizer.init(params), best_params=params,
                          step=jnp.zeros((), jnp.int32), key=jax.random.PRNGKey(0))

    shapes = jax.eval_shape(logical_state)
    shardings = placement.shardings(shapes)
    state = placed_abstract(shapes, placement)
    feats_abstract = {}
    if getattr(mod, "READS_FEATURE_INPUTS", True):
        feats_abstract = placed_abstract({m: jax.ShapeDtypeStruct(f.shape, jnp.float32) for m, f in feats.items()},
                                         placement)
    programs = make_epoch_programs(make_train_step(mod, cfg.model, optimizer), parallel.batch_sharded(mesh),
                                   state_sharding=shardings)
    order = jax.ShapeDtypeStruct((n_train,), jnp.int32, sharding=parallel.replicated(mesh))
    key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=parallel.replicated(mesh))
    step = programs.run_steps.lower(state, graphs, feats_abstract, tables, order, key, jnp.int32(0),
                                    n_steps=1).compile()
    row = {"model": model, "scale": "10x-elec", "devices": n_devices,
           **{f"step_{k}": v for k, v in compiled_figures(step).items()}}
    row["state_mib"] = shard_mib((state.params, state.opt_state, feats_abstract))
    evaluator = Evaluator(data, "valid", cfg.train.topk, cfg.train.eval_batch_size, mesh=mesh)
    emb = {k: jax.ShapeDtypeStruct((placement.padded_rows(c), cfg.model.embedding_size), jnp.float32,
                                   sharding=placement.rows_sharding())
           for k, c in (("users", n_users), ("items", n_items))}
    evaluation = evaluator.lower_batch(emb["users"], emb["items"]).compile() if mesh.size > 1 else None
    if evaluation is not None:
        row.update({f"eval_{k}": v for k, v in compiled_figures(evaluation).items()})
    return row


def placed_abstract(shapes, placement):
    """A tree of logical ShapeDtypeStructs as placement.place would store it: placed, split tables padded inside
    Padded nodes."""
    def one(shape, sharding):
        if isinstance(sharding, parallel.Padded):
            padded = (placement.padded_rows(shape.shape[0]),) + tuple(shape.shape[1:])
            return parallel.Padded(jax.ShapeDtypeStruct(padded, shape.dtype, sharding=sharding.value),
                                   rows=sharding.rows, sharding=sharding.sharding)
        return jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding)

    return jax.tree.map(one, shapes, placement.shardings(shapes),
                        is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))


def _lgmrec_graphs(mod, users, items, adj_rows, adj_cols, n, placement, data):
    n_users, n_items = data.n_users, data.n_items
    return mod.Graphs(adj=abstract_matrix(adj_rows, adj_cols, (n, n), placement, nodes=(n_users, n_items)),
                      inter=abstract_matrix(users, items, (n_users, n_items), placement),
                      inv_user_degree=jax.ShapeDtypeStruct((n_users,), jnp.float32,
                                                           sharding=parallel.replicated(placement.mesh)),
                      modalities=tuple(data.features))


def _gume_graphs(rng, users, items, n, placement, k):
    n_users = placement.node_counts[0]
    n_items = placement.node_counts[1]
    # kNN rows have k entries, symmetrized (up to 2k); semantic-neighbour edges add about k per item to Â.
    knn_rows = np.repeat(np.arange(n_items), 2 * k)
    knn_cols = rng.integers(0, n_items, knn_rows.size)
    sem = np.repeat(np.arange(n_items), k // 2) + n_users
    adj_rows = np.concatenate([users, items + n_users, sem])
    adj_cols = np.concatenate([items + n_users, users, rng.integers(0, n_items, sem.size) + n_users])
    knn = abstract_matrix(knn_rows, knn_cols, (n_items, n_items), placement)
    return {"adj": abstract_matrix(adj_rows, adj_cols, (n, n), placement, nodes=(n_users, n_items)),
            "r_hat": abstract_matrix(users, items, (n_users, n_items), placement),
            "knn": {"image": knn, "text": knn}}


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
        args.json.write_text(json.dumps({"rows": rows, "before_after": before_after}, indent=1))
    return 0


if __name__ == "__main__":
    from lgmrec_jax.errors import run_as_script

    run_as_script(main)  # bad input (a --set key, a dataset): one line naming it, exit 2
