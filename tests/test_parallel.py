"""Data parallelism: eight devices (one process, or two processes of four) train and evaluate like one device, and
two processes checkpoint and resume one run together.

The device count of a JAX process is fixed when its backend starts, so the runs happen in subprocesses with
XLA_FLAGS=--xla_force_host_platform_device_count=N; the pytest process keeps its single CPU device. The subprocess
is this file run as a script (`python -m tests.test_parallel WORKER OUT_DIR ...`): it trains LightGCN on the tiny
synthetic set through the real Trainer (same epoch program, on-device sampler and Evaluator as `make train`) and
writes numbers to OUT_DIR; the tests compare them here.

What may differ: with eight devices the gradient is a sum of eight partial sums (all-reduced) instead of one sum
over the batch, so parameters drift apart by float rounding only. Measured on the CPU (the tests print it): after
24 Adam steps max |Δparam| = 4.5e-8 (two processes: 4.8e-8), max relative loss difference 1.7e-7 (2.6e-7). We
assert rtol 1e-5 / atol 1e-6, over an order of magnitude above what was measured and far below what a real error
would give (without the all-reduce each device would step on its own eighth of the batch, moving parameters by
~lr = 1e-3 in other directions). Evaluation must match *exactly*: every user's scores are computed by the same
per-row dot products whatever the sharding, and metrics are rounded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

N_EPOCHS = 2  # 12 steps each on the tiny set at batch 256; the second crosses the epoch boundary
RTOL, ATOL = 1e-5, 1e-6
HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


# ----------------------------------------------------------------------------------------------------------------
# Subprocess side.


def _trainer(n_devices: int, batch_size: int = 256, workdir: Path = Path("/nonexistent-unused"), epochs: int = 0):
    """LightGCN on synthetic-tiny; with `epochs`, a real run into `workdir` (checkpoint every epoch)."""
    from lgmrec_jax.config import load_config
    from lgmrec_jax.data import synthetic
    from lgmrec_jax.train import Trainer

    run = [f"train.epochs={epochs}", "train.checkpoint_every=1"] if epochs else ["train.checkpoint_every=0"]
    cfg = load_config("lightgcn", "synthetic-tiny", overrides=[
        f"train.devices={n_devices}", f"train.train_batch_size={batch_size}", "train.eval_batch_size=64",
        "train.backend=bcoo", *run])
    return Trainer(cfg, synthetic.generate("tiny"), workdir, progress=False)


def _run_log(workdir: Path) -> list[dict]:
    """metrics.jsonl without its timings."""
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("seconds") and k != "dispatches"} for r in records]


def _train(trainer):
    """N_EPOCHS real epochs; returns (per-epoch loss sums, final params as NumPy, final state)."""
    state = trainer.init_state()
    losses = []
    for epoch in range(N_EPOCHS):
        state, sums, _ = trainer.run_epoch(state, epoch)
        losses.append(float(sums["loss"]))
    return np.array(losses), dict(trainer.placement.to_host(state.params)), state


def _batch_sharding_seen_by_the_step(trainer, state) -> int:
    """Traces the trainer's epoch program with a train step that records how its batch is sharded."""
    import jax

    from lgmrec_jax import parallel
    from lgmrec_jax.train import make_epoch_programs, sampler_key

    seen = []

    def recording_step(state, graphs, feats, batch):
        jax.debug.inspect_array_sharding(batch["users"], callback=seen.append)
        return trainer.train_step(state, graphs, feats, batch)

    programs = make_epoch_programs(recording_step, parallel.batch_sharded(trainer.mesh))
    programs.run_epoch.lower(state, trainer.graphs, trainer.feats, trainer.tables, sampler_key(0, 0),
                             n_steps=trainer.steps_per_epoch).compile()
    assert seen, "the train step was not traced"
    return 1 if seen[-1].is_fully_replicated else len(seen[-1].device_set)  # 1: every device has the whole batch


def worker_devices(out: Path) -> None:
    """One process, 8 devices: the 1-device and 8-device Trainer side by side."""
    import jax

    from lgmrec_jax.evaluation import Evaluator
    from lgmrec_jax.train import sampler_key

    assert jax.device_count() == 8, jax.devices()
    one, eight = _trainer(1), _trainer(8)
    loss1, params1, _ = _train(one)
    loss8, params8, state8 = _train(eight)
    np.savez(out / "single.npz", loss=loss1, **params1)
    np.savez(out / "eight.npz", loss=loss8, **params8)

    hlo = eight.programs.run_epoch.lower(state8, eight.graphs, eight.feats, eight.tables, sampler_key(0, 0),
                                         n_steps=eight.steps_per_epoch).compile().as_text()
    facts = {
        "mesh_sizes": [one.mesh.size, eight.mesh.size],
        "batch_devices": _batch_sharding_seen_by_the_step(eight, state8),
        # Node tables are split by rows over the 8 devices (parallel.py): each holds 240 / 8 user rows.
        "params_replicated": any(x.sharding.is_fully_replicated for x in jax.tree.leaves(state8.params)),
        "params_devices": len(jax.tree.leaves(state8.params)[0].sharding.device_set),
        "user_rows_per_device": state8.params["user_embedding"].value.addressable_shards[0].data.shape[0],
        "epoch_compilations": eight.programs.run_epoch._cache_size(),  # 1: the state's sharding is stable
        "has_all_reduce": "all-reduce" in hlo,
    }
    # Sharded vs unsharded evaluation on the very same embeddings (the 1-device run's params).
    users, items = one.embed(jax.device_put(params1), one.graphs, one.feats, jax.random.PRNGKey(0))
    users, items = np.asarray(users), np.asarray(items)
    plain = Evaluator(one.data, "valid", one.cfg.train.topk, 64)
    facts["eval_unsharded"] = plain(users, items)
    facts["eval_sharded"] = eight.valid_eval(users, items)
    facts["eval_trainer_1"] = one.evaluate(one.init_state().params, one.valid_eval, 0)
    facts["eval_trainer_8"] = eight.evaluate(eight.init_state().params, eight.valid_eval, 0)
    try:
        _trainer(8, batch_size=100)
        facts["indivisible_error"] = None
    except ValueError as e:
        facts["indivisible_error"] = str(e)
    straight = _trainer(1, workdir=out / "straight", epochs=N_EPOCHS + 1).run()
    facts["straight"] = {"log": _run_log(out / "straight"), "test": straight["test"]}
    (out / "facts.json").write_text(json.dumps(facts))


def worker_multiprocess(out: Path, port: int, process_id: int) -> None:
    """One of two processes with 4 devices each: an 8-device mesh across processes; batches are drawn on device."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id,
                               initialization_timeout=60)
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    trainer = _trainer(0)
    losses, params, state = _train(trainer)
    batch_devices = _batch_sharding_seen_by_the_step(trainer, state)
    metrics = trainer.evaluate(trainer.init_state().params, trainer.valid_eval, 0)
    if process_id == 0:
        np.savez(out / "multiprocess.npz", loss=losses, **params)
    # A run in one directory both processes see: N_EPOCHS epochs, then resumed with one more (orbax saves and
    # restores the split state together), then a fresh run into the same directory, which process 0 refuses.
    shared = out / "shared-run"
    _trainer(0, workdir=shared, epochs=N_EPOCHS).run()
    resumed = _trainer(0, workdir=shared, epochs=N_EPOCHS + 1).run(resume=True, extend=True)
    from lgmrec_jax.rundir import RunDirError
    try:
        _trainer(0, workdir=shared, epochs=N_EPOCHS + 1).run()
        refused = None
    except RunDirError as e:
        refused = str(e)
    (out / f"process{process_id}.json").write_text(json.dumps({
        "batch_devices": batch_devices, "eval": metrics, "resumed_test": resumed["test"], "refused": refused}))
    jax.distributed.shutdown()


# ----------------------------------------------------------------------------------------------------------------
# pytest side.


def _env(n_devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n_devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts the 8-device worker and the two 4-device processes together (they are independent), waits for all."""
    out = tmp_path_factory.mktemp("parallel")
    with socket.socket() as s:  # a free port for the coordinator of the two-process run
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    commands = [(["devices", str(out)], 8)] + [(["multiprocess", str(out), str(port), str(pid)], 4) for pid in (0, 1)]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.test_parallel", *args], env=_env(n), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args, n in commands]
    try:
        for proc in procs:
            _, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"worker {proc.args[3:]} failed (rc {proc.returncode}):\n{stderr[-4000:]}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return out, json.loads((out / "facts.json").read_text())


def _max_differences(a: dict, b: dict) -> tuple[float, float]:
    params = [k for k in a.files if k != "loss"]
    param_diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in params)
    loss_rel = float(np.max(np.abs(a["loss"] - b["loss"]) / np.abs(a["loss"])))
    return param_diff, loss_rel


def test_eight_devices_train_like_one(runs):
    out, facts = runs
    one, eight = np.load(out / "single.npz"), np.load(out / "eight.npz")
    param_diff, loss_rel = _max_differences(one, eight)
    print(f"\n1 vs 8 devices after {N_EPOCHS} epochs: max |Δparam| = {param_diff:.3g}, "
          f"max relative Δloss = {loss_rel:.3g}")
    assert facts["mesh_sizes"] == [1, 8]
    np.testing.assert_allclose(eight["loss"], one["loss"], rtol=RTOL)
    for name in one.files:
        np.testing.assert_allclose(eight[name], one[name], rtol=RTOL, atol=ATOL, err_msg=name)
    # The run really moved the parameters, so agreement is not vacuous: Adam moves each touched entry by ~lr.
    assert one["loss"][-1] < one["loss"][0]


def test_sharding_is_the_intended_one(runs):
    _, facts = runs
    assert facts["batch_devices"] == 8  # the batch is split over all devices...
    assert not facts["params_replicated"] and facts["params_devices"] == 8  # ...node tables are split by rows...
    assert facts["user_rows_per_device"] == 240 // 8
    assert facts["has_all_reduce"]  # ...and XLA sums the gradient across them.
    assert facts["epoch_compilations"] == 1
    assert "not divisible by the 8 devices" in facts["indivisible_error"]


def test_sharded_evaluation_equals_unsharded(runs):
    _, facts = runs
    assert facts["eval_sharded"] == facts["eval_unsharded"]
    assert facts["eval_trainer_8"] == facts["eval_trainer_1"]
    assert facts["eval_unsharded"]["recall@20"] > 0  # an all-zero dict would also be "equal"


def test_two_processes_train_like_one_device(runs):
    out, facts = runs
    one, multi = np.load(out / "single.npz"), np.load(out / "multiprocess.npz")
    param_diff, loss_rel = _max_differences(one, multi)
    print(f"\n1 device vs 2 processes x 4 devices: max |Δparam| = {param_diff:.3g}, "
          f"max relative Δloss = {loss_rel:.3g}")
    np.testing.assert_allclose(multi["loss"], one["loss"], rtol=RTOL)
    for name in one.files:
        np.testing.assert_allclose(multi[name], one[name], rtol=RTOL, atol=ATOL, err_msg=name)
    # Each step's batch is split over all 8 devices of the two processes.
    p0, p1 = (json.loads((out / f"process{i}.json").read_text()) for i in (0, 1))
    assert p0["batch_devices"] == p1["batch_devices"] == 8
    assert p0["eval"] == p1["eval"] == facts["eval_trainer_1"]


def test_two_processes_checkpoint_and_resume_one_run(runs):
    """Both processes train into one directory, stop, resume from orbax's checkpoint of the split state, and end
    where an uninterrupted one-device run ends; process 0 alone writes the files, and refuses a second fresh run
    for both."""
    out, facts = runs
    shared = out / "shared-run"
    log, straight = _run_log(shared), facts["straight"]["log"]
    assert [r["epoch"] for r in log] == list(range(N_EPOCHS + 1))  # one line per epoch: only process 0 wrote
    np.testing.assert_allclose([r["loss"] for r in log], [r["loss"] for r in straight], rtol=RTOL)
    assert [r["valid"] for r in log] == [r["valid"] for r in straight]
    p0, p1 = (json.loads((out / f"process{i}.json").read_text()) for i in (0, 1))
    assert p0["resumed_test"] == p1["resumed_test"] == facts["straight"]["test"]
    assert json.loads((shared / "repro.json").read_text())["resumed"][-1]["extended"] == {
        "train.epochs": [N_EPOCHS, N_EPOCHS + 1]}
    assert "already holds a run" in p0["refused"] and "process 0 refused" in p1["refused"]


def test_mesh_larger_than_the_machine_is_an_error():
    import jax

    from lgmrec_jax import parallel

    with pytest.raises(ValueError, match="only .* available"):
        parallel.make_mesh(jax.device_count() + 1)


if __name__ == "__main__":
    if sys.argv[1] == "devices":
        worker_devices(Path(sys.argv[2]))
    elif sys.argv[1] == "multiprocess":
        worker_multiprocess(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown worker {sys.argv[1]!r}")
