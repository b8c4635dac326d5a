"""The one train loop, shared by every model.

    result = train_and_evaluate(cfg, data, workdir)          # cfg: config.RunConfig, data: data.Dataset

Each epoch: shuffled BPR batches drawn on the device (data/sampler.py) through `train_step`, all inside one jitted
program that scans over the epoch's steps (`train.steps_per_program` = 0; a positive value dispatches that many steps
per program instead, 1 = one dispatch per step), with donated state; then a validation pass (evaluation.py) every
`eval_step` epochs, early stopping on the rounded validation metric with
MMRec's patience, and an orbax checkpoint. At the end the test split is evaluated once, with the parameters of the
best validation epoch. `workdir` receives config.json, metrics.jsonl (one JSON line per epoch), results.json,
curves.png and checkpoints/. `resume=True` restores the newest intact checkpoint in `workdir` and continues exactly:
batch order, negatives and model randomness depend only on (seed, epoch, step), so a resumed run matches an
uninterrupted one; so do runs with different `steps_per_program` (same keys, same steps, only the dispatch differs).
The run directory is handled by rundir.py: locked for the run, refused before anything is written into it when it
already holds a run, and, on resume, refused when the config or data differ from what the run recorded.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from lgmrec_jax import jsonio, parallel, precision, rundir
from lgmrec_jax.checkpoint import Checkpointer
from lgmrec_jax.config import RunConfig, load_saved_config, save_config
from lgmrec_jax.data import sampler
from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.errors import Failure
from lgmrec_jax.evaluation import Evaluator, popularity_scores
from lgmrec_jax.graph.sparse import resolve_backend
from lgmrec_jax.models import get_model
from lgmrec_jax.plots import plot_curves
from lgmrec_jax.repro import record_resume, write_card
from lgmrec_jax.step_parts import part

EVAL_KEY_OFFSET = 1 << 30  # fold_in offset that keeps evaluation noise apart from training-step noise
SAMPLER_KEY_OFFSET = 1 << 31  # and the sampler's draws (permutation, negatives) apart from both
# A PER_EPOCH_KEY model's key is fold_in(run key, EPOCH_KEY_OFFSET + epoch): above every int32 step, so it never
# equals a step key.
EPOCH_KEY_OFFSET = 1 << 31


@flax.struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    best_params: Any  # parameters of the best validation epoch so far; the test split is evaluated with these
    step: jax.Array
    key: jax.Array  # raw uint32 PRNG key; step keys are fold_in(key, step)


def make_optimizer(cfg: RunConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    factor, period = cfg.train.learning_rate_scheduler

    def schedule(step):
        # MMRec's LambdaLR is stepped once per epoch: lr · factor ** (epoch / period), constant within an epoch.
        epoch = step // steps_per_epoch
        return cfg.train.learning_rate * factor ** (epoch / period)

    parts = []
    if cfg.train.weight_decay:
        parts.append(optax.add_decayed_weights(cfg.train.weight_decay))  # torch Adam's coupled L2
    parts.append(optax.adam(schedule))
    return optax.chain(*parts)


def uses_negatives(model) -> bool:
    """False for a model whose loss takes no sampled negative (USES_NEGATIVES = False, BM3): its batches carry none."""
    return getattr(model, "USES_NEGATIVES", True)


def model_key(run_key: jax.Array, step: jax.Array, steps_per_epoch: int | None = None) -> jax.Array:
    """The key the model's loss gets at global step `step`: fold_in(run key, step), or, given `steps_per_epoch`
    (a PER_EPOCH_KEY model, FREEDOM), the epoch's key fold_in(run key, EPOCH_KEY_OFFSET + step // steps_per_epoch),
    the same for every step of the epoch. Either depends only on (seed, epoch, step)."""
    if steps_per_epoch is None:
        return jax.random.fold_in(run_key, step)
    epoch = (step // steps_per_epoch).astype(jnp.uint32)
    return jax.random.fold_in(run_key, jnp.uint32(EPOCH_KEY_OFFSET) + epoch)


def make_train_step(model, model_cfg, optimizer, steps_per_epoch: int | None = None):
    """One optimizer step on one batch: a pure function, traced inside the epoch programs below.

    A model with PER_EPOCH_KEY = True draws its randomness once per epoch (FREEDOM's pruned graph, as MMRec's
    pre_epoch_processing); it gets `model_key(..., steps_per_epoch)`, so `steps_per_epoch` is required for it."""
    per_epoch = getattr(model, "PER_EPOCH_KEY", False)
    if per_epoch and not steps_per_epoch:
        raise ValueError(f"{model.__name__} draws its randomness per epoch (PER_EPOCH_KEY): make_train_step "
                         "needs steps_per_epoch")

    def train_step(state: TrainState, graphs, feats, batch):
        key = model_key(state.key, state.step, steps_per_epoch if per_epoch else None)

        def loss(params):
            # Node tables split over devices are stored padded (parallel.py); the model sees their real rows, and
            # the padding rows receive zero gradient through the slice.
            return model.loss(parallel.logical(params), graphs, parallel.logical(feats), batch, key, model_cfg)

        (loss, parts), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
        with part("optimizer"):
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        return state.replace(params=params, opt_state=opt_state, step=state.step + 1), {"loss": loss, **parts}

    return train_step


def sampler_key(seed: int, epoch: int) -> jax.Array:
    """The key of epoch `epoch`'s permutation; step s draws its negatives with fold_in(this, s)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), SAMPLER_KEY_OFFSET + epoch)


class EpochPrograms(NamedTuple):
    """The compiled programs of an epoch. Every variant runs the same steps with the same keys.

    run_epoch(state, graphs, feats, tables, epoch_key, n_steps=N): the whole epoch, permutation included, as one
        program (one dispatch): a `lax.scan` over its N steps.
    order(tables, epoch_key): the epoch's permutation alone, for the chunked variant.
    run_steps(state, graphs, feats, tables, order, epoch_key, start, n_steps=k): steps start … start+k−1.
    All return (state, per-part loss sums over the steps). `state` is donated.
    """

    run_epoch: Callable
    order: Callable
    run_steps: Callable


def make_run_steps(train_step, batch_sharding, matmul_precision: str = "float32", state_sharding=None,
                   negatives: bool = True) -> Callable:
    """run_steps(state, graphs, feats, tables, order, epoch_key, start, n_steps) -> (state, loss-part sums): steps
    start … start+n_steps−1 of the epoch with permutation `order`, as a `lax.scan`; pure, to be jitted (or vmapped).
    `state_sharding` (parallel.Placement.shardings) pins the state's placement after every step, so the program
    returns it placed as it came in (the donated buffers are reused, and the next call does not recompile).
    `negatives=False` (uses_negatives(model)): batches without negatives (sampler.batch_at)."""

    def run_steps(state, graphs, feats, tables, order, epoch_key, start, n_steps):
        def body(carry, i):
            state, sums = carry
            step = start + i
            with part("sampler"):
                batch = sampler.batch_at(tables, order, step, jax.random.fold_in(epoch_key, step), negatives)
            with part("plumbing"):
                # The batch is computed identically on every device; the constraint splits the step's work over
                # the mesh's data axis (the loss is a global-batch mean, so XLA all-reduces the gradient).
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            state, parts = train_step(state, graphs, feats, batch)
            if state_sharding is not None:
                with part("plumbing"):
                    state = jax.lax.with_sharding_constraint(state, state_sharding)
            return (state, jax.tree.map(jnp.add, sums, parts)), None

        with precision.matmul_precision(matmul_precision):
            first = sampler.batch_at(tables, order, start, epoch_key, negatives)
            parts_shape = jax.eval_shape(train_step, state, graphs, feats, first)[1]
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), parts_shape)
            (state, sums), _ = jax.lax.scan(body, (state, zeros), jnp.arange(n_steps, dtype=jnp.int32))
        return state, sums

    return run_steps


def make_epoch_programs(train_step, batch_sharding, matmul_precision: str = "float32",
                        state_sharding=None, negatives: bool = True) -> EpochPrograms:
    run_steps = make_run_steps(train_step, batch_sharding, matmul_precision, state_sharding, negatives)

    def run_epoch(state, graphs, feats, tables, epoch_key, n_steps):
        order = sampler.epoch_order(tables, epoch_key)
        return run_steps(state, graphs, feats, tables, order, epoch_key, jnp.int32(0), n_steps)

    return EpochPrograms(run_epoch=jax.jit(run_epoch, static_argnames="n_steps", donate_argnums=0),
                         order=jax.jit(sampler.epoch_order),
                         run_steps=jax.jit(run_steps, static_argnames="n_steps", donate_argnums=0))


def device_features(model, data: Dataset, feature_dtype: str, placement: parallel.Placement) -> dict:
    """The frozen feature tables the model reads, placed on the mesh (split by item rows) in `feature_dtype`.

    A model that keeps its own trainable copy of the features (READS_FEATURE_INPUTS = False, GUME) gets {}: its
    frozen inputs then never reach the device.
    """
    if not getattr(model, "READS_FEATURE_INPUTS", True):
        return {}
    return placement.place({m: precision.feature_table(f, feature_dtype) for m, f in data.features.items()})


def make_embed(model, model_cfg, matmul_precision: str = "float32", placement: parallel.Placement | None = None):
    """embed(params, graphs, feats, key) -> (users, items): the evaluation-mode embeddings. With a split placement
    they come back split by rows and zero-padded to a multiple of the device count (what the Evaluator takes)."""

    def embed(params, graphs, feats, key):
        with precision.matmul_precision(matmul_precision):
            users, items, _ = model.apply(parallel.logical(params), graphs, parallel.logical(feats), key, False,
                                          model_cfg)
        if placement is not None and placement.split:
            users, items = (placement.pad_rows(x) for x in (users, items))
        return users, items

    return jax.jit(embed)


class Trainer:
    """Holds everything built once per run; `run()` executes the loop."""

    def __init__(self, cfg: RunConfig, data: Dataset, workdir: Path, progress: bool = True,
                 target: jax.sharding.Mesh | None = None, graphs=None):
        """`target`: a mesh of devices to compile for instead of training (lgmrec_jax/aot/): state, graphs,
        features and sampler tables are then `ShapeDtypeStruct`s placed on it (parallel.Placement abstract mode),
        nothing is transferred, and `lower()` gives the run's programs; `run()` is refused. `graphs`: host graphs
        to use instead of `model.build_graphs` (the compiler needs their shapes only)."""
        self.cfg, self.data, self.workdir = cfg, data, Path(workdir)
        self.abstract = target is not None
        self.primary = parallel.is_primary()  # writes the run's files (run() on several processes)
        self.progress = progress and self.primary
        tc = cfg.train
        self.model = get_model(cfg.model_name)
        self.mesh = target if self.abstract else parallel.make_mesh(tc.devices)
        if tc.train_batch_size % self.mesh.size:
            raise ValueError(f"train.train_batch_size={tc.train_batch_size} is not divisible by the "
                             f"{self.mesh.size} devices in use")
        self.platform = self.mesh.devices.flat[0].platform
        self.backend = resolve_backend(tc.backend, self.platform)
        if graphs is None:
            graphs = self.model.build_graphs(data, cfg.model, self.backend, cache_dir=Path(tc.cache_dir))
        self.placement = parallel.Placement(self.mesh, (data.n_users, data.n_items), abstract=self.abstract)
        self.graphs = self.placement.place_graphs(graphs)
        self.feats = device_features(self.model, data, tc.feature_dtype, self.placement)
        self.tables = self.placement.replicate(sampler.build_tables(data, tc.train_batch_size))
        self.steps_per_epoch = self.tables.batches_per_epoch
        self.optimizer = make_optimizer(cfg, self.steps_per_epoch)
        self.train_step = make_train_step(self.model, cfg.model, self.optimizer, self.steps_per_epoch)
        self.state_sharding = self.placement.shardings(jax.eval_shape(self._logical_init_state))
        self.programs = make_epoch_programs(self.train_step, parallel.batch_sharded(self.mesh), tc.matmul_precision,
                                            self.state_sharding, uses_negatives(self.model))
        self.embed = make_embed(self.model, cfg.model, tc.matmul_precision, self.placement)
        self.valid_eval = Evaluator(data, "valid", tc.topk, tc.eval_batch_size, mesh=self.mesh,
                                    abstract=self.abstract, platform=self.platform)
        self.test_eval = Evaluator(data, "test", tc.topk, tc.eval_batch_size, mesh=self.mesh,
                                   abstract=self.abstract, platform=self.platform)
        if tc.valid_metric not in self._metric_names():
            raise ValueError(f"train.valid_metric={tc.valid_metric!r} is not computed; "
                             f"available: {', '.join(self._metric_names())}")

    def lower(self) -> dict[str, jax.stages.Lowered]:
        """The run's programs lowered for this trainer's mesh: `train_step` (the epoch program, compiled for one
        step: the scan body is what an epoch repeats), `embed` (the evaluation forward pass) and `eval_batch` (one
        user batch of the validation ranking). Works on placed and on abstract (`target`) trainers alike."""
        replicated = parallel.replicated(self.mesh)
        state = self.init_state()
        key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated)
        order = jax.ShapeDtypeStruct((self.steps_per_epoch * self.tables.batch_size,), jnp.int32,
                                     sharding=replicated)
        start = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
        programs = {"train_step": self.programs.run_steps.lower(state, self.graphs, self.feats, self.tables, order,
                                                                key, start, n_steps=1),
                    "embed": self.embed.lower(state.params, self.graphs, self.feats, key)}
        rows = self.placement.rows_sharding() if self.placement.split else replicated
        users, items = (jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rows) for x in programs["embed"].out_info)
        programs["eval_batch"] = self.valid_eval.lower_batch(users, items)
        return programs

    def _metric_names(self):
        return [f"{m}@{k}" for k in self.cfg.train.topk for m in ("recall", "ndcg", "precision", "map")]

    def _logical_init_state(self) -> TrainState:
        key = jax.random.PRNGKey(self.cfg.train.seed)
        init_key, run_key = jax.random.split(key)
        params = self.model.init(init_key, self.cfg.model, self.data)
        return TrainState(params=params, opt_state=self.optimizer.init(params),
                          best_params=jax.tree.map(jnp.copy, params), step=jnp.zeros((), jnp.int32), key=run_key)

    def init_state(self) -> TrainState:
        """The initial state placed on the mesh (parallel.Placement); abstract for a `target` trainer."""
        if self.abstract:
            return self.placement.place(jax.eval_shape(self._logical_init_state))
        return self.placement.place(self._logical_init_state())

    def evaluate(self, params, evaluator: Evaluator, epoch: int) -> dict[str, float]:
        key = jax.random.fold_in(jax.random.PRNGKey(self.cfg.train.seed), EVAL_KEY_OFFSET + epoch)
        return evaluator(*self.embed(params, self.graphs, self.feats, key))

    def run(self, resume: bool = False, extend: bool = False) -> dict:
        """Trains (or, with `resume`, continues) the run in `workdir` under its lock (lgmrec_jax/rundir.py).

        `extend` (with `resume`) lets `cfg.train.epochs` exceed the run's cap: a run stopped by its cap goes on
        training, one stopped early stays as it is. config.json takes the new cap; repro.json records the change.
        A directory that will be refused is checked before anything is written into it, and checked again once
        the lock is held (another process may have started in between).

        With several processes (`--distributed`) `workdir` is one directory that all of them see: orbax writes each
        checkpoint there together. Process 0 alone checks, locks and writes the run's files; the others wait for
        its verdict on the directory (parallel.primary_says) and then train, save and restore with it."""
        if self.abstract:
            raise ValueError("this Trainer compiles for a target mesh (target=...); it cannot train")
        if not self.primary:
            if not parallel.primary_says(True):
                raise rundir.RunDirError(f"{self.workdir}: process 0 refused this run directory (its message says "
                                         "why). Nothing was written.")
            return self._run_reporting_divergence(resume, None)
        check = rundir.check_resumable if resume else rundir.check_fresh
        accepted = False
        try:
            check(self.workdir)
            with rundir.RunLock(self.workdir) as lock:
                check(self.workdir)
                extended = None
                if resume:
                    for warning in rundir.check_matches_record(self.workdir, self.cfg, self.data, extend=extend):
                        print(f"warning: {warning}", file=sys.stderr)
                    cap = load_saved_config(self.workdir / "config.json").train.epochs if extend else None
                    if extend and self.cfg.train.epochs > cap:
                        extended = {"train.epochs": [cap, self.cfg.train.epochs]}
                accepted = True
                parallel.primary_says(True)
                lock.announce()
                if not resume:
                    save_config(self.cfg, self.workdir / "config.json")
                    write_card(self.workdir, self.cfg, self.data)  # repro.json: data hashes, versions, device, git
                return self._run_reporting_divergence(resume, extended)
        finally:
            if not accepted:
                parallel.primary_says(False)

    def _run_reporting_divergence(self, resume: bool, extended: dict | None) -> dict:
        try:
            return self._run(resume, extended)
        except FloatingPointError as e:
            raise _diverged(e, self.cfg, self.workdir) from None

    def _run(self, resume: bool, extended: dict | None = None) -> dict:
        tc = self.cfg.train
        log_path = self.workdir / "metrics.jsonl"
        ckpt = Checkpointer(self.workdir / "checkpoints") if tc.checkpoint_every else None
        state = self.init_state()
        loop = {"next_epoch": 0, "best_score": -math.inf, "best_epoch": -1, "bad_epochs": 0, "best_valid": {}}
        if resume:
            if ckpt is None:
                raise rundir.RunDirError(f"--resume {self.workdir}: train.checkpoint_every = 0 in its config, so "
                                         "there is nothing to resume from")
            # Checkpoints hold the logical state (parallel.to_host), whatever the device count that wrote them.
            state, loop = ckpt.restore(self._logical_init_state(), check_loop=_check_loop,
                                       quarantine=self.workdir / "corrupt-checkpoints" if self.primary else None)
            if loop["best_score"] is None:  # stored as null: no validation epoch yet (strict JSON has no -inf)
                loop["best_score"] = -math.inf
            state = self.placement.place(state)
            if self.primary:
                _truncate_log(log_path, loop["next_epoch"])  # reads the whole log first: a damaged one changes nothing
                record_resume(self.workdir, extended)  # repro.json keeps the start's card and lists each resumption
                if extended:
                    save_config(self.cfg, self.workdir / "config.json")  # a later --resume goes on with the new cap

        bar = tqdm(range(loop["next_epoch"], tc.epochs), initial=loop["next_epoch"], total=tc.epochs,
                   desc=f"{self.cfg.model_name}/{self.data.name}", disable=not self.progress, unit="epoch")
        for epoch in bar:
            if loop["bad_epochs"] > tc.stopping_step:
                break
            state, train_record = self._train_epoch(state, epoch)
            record = {"epoch": epoch, **train_record}
            if (epoch + 1) % tc.eval_step == 0:
                t0 = time.perf_counter()
                valid = self.evaluate(state.params, self.valid_eval, epoch)
                record["eval_seconds"] = time.perf_counter() - t0
                record["valid"] = valid
                score = valid[tc.valid_metric]
                if score > loop["best_score"]:  # strictly better, on the rounded value (MMRec)
                    loop.update(best_score=score, best_epoch=epoch, bad_epochs=0, best_valid=valid)
                    state = state.replace(best_params=jax.tree.map(jnp.copy, state.params))
                else:
                    loop["bad_epochs"] += 1
            loop["next_epoch"] = epoch + 1
            if self.primary:
                with open(log_path, "a") as f:
                    f.write(jsonio.dumps(record) + "\n")
            if ckpt is not None and (epoch + 1) % tc.checkpoint_every == 0:
                ckpt.save(epoch, self.placement.to_host(state) if self.placement.split else state, loop)
            bar.set_postfix(loss=f"{record['loss']:.4f}", **{tc.valid_metric: loop["best_score"]},
                            best_epoch=loop["best_epoch"])
        bar.close()
        if ckpt is not None:
            ckpt.close()
        return self._finish(state, loop, log_path)

    def _train_epoch(self, state: TrainState, epoch: int) -> tuple[TrainState, dict]:
        t0 = time.perf_counter()
        state, sums, dispatches = self.run_epoch(state, epoch)
        means = {k: float(v) / self.steps_per_epoch for k, v in jax.device_get(sums).items()}
        if not all(np.isfinite(v) for v in means.values()):
            raise FloatingPointError(f"epoch {epoch}: non-finite training loss {means}")  # run() adds what to do
        return state, {**means, "train_seconds": time.perf_counter() - t0, "dispatches": dispatches}

    def run_epoch(self, state: TrainState, epoch: int) -> tuple[TrainState, dict, int]:
        """All steps of `epoch`: (state, loss-part sums, number of programs dispatched). Does not wait for them."""
        n, chunk = self.steps_per_epoch, self.cfg.train.steps_per_program
        key = sampler_key(self.cfg.train.seed, epoch)
        if chunk <= 0 or chunk >= n:
            state, sums = self.programs.run_epoch(state, self.graphs, self.feats, self.tables, key, n_steps=n)
            return state, sums, 1
        order = self.programs.order(self.tables, key)
        sums, dispatches = None, 1
        for start in range(0, n, chunk):
            state, part = self.programs.run_steps(state, self.graphs, self.feats, self.tables, order, key,
                                                  jnp.int32(start), n_steps=min(chunk, n - start))
            sums = part if sums is None else jax.tree.map(jnp.add, sums, part)
            dispatches += 1
        return state, sums, dispatches

    def _finish(self, state: TrainState, loop: dict, log_path: Path) -> dict:
        best_epoch = loop["best_epoch"]
        test = self.evaluate(state.best_params, self.test_eval, max(best_epoch, 0)) if best_epoch >= 0 else {}
        pop_users, pop_items = popularity_scores(self.data)
        records = _read_log(log_path) if self.primary else []  # the others leave the files to process 0
        train_secs = [r["train_seconds"] for r in records]
        eval_secs = [r["eval_seconds"] for r in records if "eval_seconds" in r]
        result = {
            "model": self.cfg.model_name, "dataset": self.data.name, "backend": self.backend,
            "devices": self.mesh.size, "platform": jax.default_backend(),
            "epochs_run": loop["next_epoch"], "best_epoch": best_epoch,
            "valid": loop["best_valid"], "test": test,
            "popularity": {"valid": self.valid_eval(pop_users, pop_items), "test": self.test_eval(pop_users, pop_items)},
            # The first epoch includes compilation; the median is the steady-state cost.
            "median_train_seconds_per_epoch": float(np.median(train_secs)) if train_secs else None,
            "median_eval_seconds": float(np.median(eval_secs)) if eval_secs else None,
            "selection": f"best validation {self.cfg.train.valid_metric}; test evaluated once at that epoch",
            "data_report": self.data.load_report,  # rows the loader merged or dropped (data/mmrec.py)
        }
        if self.primary:
            jsonio.write_json(self.workdir / "results.json", result)
        if records:
            plot_curves(records, self.workdir / "curves.png", self.cfg.train.valid_metric,
                        title=f"{self.cfg.model_name} on {self.data.name}")
        return result


def train_and_evaluate(cfg: RunConfig, data: Dataset, workdir: str | Path, resume: bool = False,
                       progress: bool = True, extend: bool = False) -> dict:
    return Trainer(cfg, data, Path(workdir), progress=progress).run(resume=resume, extend=extend)


def _truncate_log(path: Path, next_epoch: int) -> None:
    """Drops log lines of epochs after the restored checkpoint (they will be run again), and a line torn by a kill."""
    if path.exists():
        path.write_text("".join(line + "\n" for line, record in _log_lines(path) if record["epoch"] < next_epoch))


def _read_log(path: Path) -> list[dict]:
    return [record for _, record in _log_lines(path)] if path.exists() else []


def _log_lines(path: Path) -> list[tuple[str, dict]]:
    """(line, record) of metrics.jsonl. A last line cut short (the process was killed while writing it) is skipped;
    a damaged line before it is an error naming the line."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    out = []
    for lineno, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError("not an epoch record")
        except ValueError:
            if lineno == len(lines):
                break
            raise rundir.RunDirError(f"{path}:{lineno}: damaged log line (not an epoch record); restore the "
                                     "file or remove the line") from None
        out.append((line, record))
    return out


def _check_loop(loop) -> None:
    """A restored loop record must have every field of a good one (a damaged one parses but misses fields)."""
    fields = {"next_epoch": int, "best_epoch": int, "bad_epochs": int, "best_valid": dict}
    if not isinstance(loop, dict) or any(not isinstance(loop.get(k), t) for k, t in fields.items()):
        raise ValueError(f"loop record lacks fields or has wrong types: {loop!r:.120}")
    if not (loop.get("best_score") is None or isinstance(loop.get("best_score"), (int, float))):
        raise ValueError(f"loop record has best_score {loop.get('best_score')!r}")


def _diverged(error: FloatingPointError, cfg: RunConfig, workdir: Path) -> Failure:
    """The message for a non-finite loss: what happened, what checkpoint exists, what to change."""
    what = str(error)
    epochs = rundir.checkpoint_epochs(workdir)
    saved = (f"the last checkpoint is epoch {epochs[-1]} in {workdir / 'checkpoints'}" if epochs
             else "no checkpoint was written")
    lr_source = cfg.origins.get("train.learning_rate", "defaults")
    return Failure(f"training diverged: {what}; {saved}. Lower train.learning_rate (now {cfg.train.learning_rate:g}, "
                   f"from {lr_source}) and train into a new directory (--resume would repeat the same epochs)")
