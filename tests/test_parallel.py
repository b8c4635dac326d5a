"""Data parallelism: eight devices (one process, or two processes of four) train and evaluate like one device.

The device count of a JAX process is fixed when its backend starts, so the runs happen in subprocesses with
XLA_FLAGS=--xla_force_host_platform_device_count=N; the pytest process keeps its single CPU device. The subprocess
is this file run as a script (`python -m tests.test_parallel WORKER OUT_DIR ...`): it trains LightGCN on the tiny
synthetic set through the real Trainer (same train_step, shard_batch and Evaluator as `make train`) and writes
numbers to OUT_DIR; the tests compare them here.

What may differ: with eight devices the gradient is a sum of eight partial sums (all-reduced) instead of one sum
over the batch, so parameters drift apart by float rounding only. Measured on the CPU (the tests print it): after
12 Adam steps max |Δparam| = 4.5e-8 (two processes: 4.8e-8), max relative loss difference 1.7e-7 (2.6e-7). We
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

N_STEPS = 12  # a little over one epoch of the tiny set at batch 256, so the epoch boundary is crossed
RTOL, ATOL = 1e-5, 1e-6
HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


# ----------------------------------------------------------------------------------------------------------------
# Subprocess side.


def _trainer(n_devices: int):
    from lgmrec_jax.config import load_config
    from lgmrec_jax.data import synthetic
    from lgmrec_jax.train import Trainer

    cfg = load_config("lightgcn", "synthetic-tiny", overrides=[
        f"train.devices={n_devices}", "train.train_batch_size=256", "train.eval_batch_size=64",
        "train.checkpoint_every=0", "train.backend=bcoo"])
    return Trainer(cfg, synthetic.generate("tiny"), Path("/nonexistent-unused"), progress=False)


def _train(trainer):
    """N_STEPS real train steps; returns (per-step losses, final params as NumPy, final state)."""
    import jax

    from lgmrec_jax import parallel

    state = trainer.init_state()
    losses = []
    epoch = 0
    while len(losses) < N_STEPS:
        for batch in trainer.sampler.epoch(epoch):
            state, parts = trainer.train_step(state, trainer.graphs, trainer.feats,
                                              parallel.shard_batch(batch, trainer.mesh))
            losses.append(float(parts["loss"]))
            if len(losses) == N_STEPS:
                break
        epoch += 1
    return np.array(losses), {k: np.asarray(v) for k, v in jax.device_get(state.params).items()}, state


def worker_devices(out: Path) -> None:
    """One process, 8 devices: the 1-device and 8-device Trainer side by side."""
    import jax

    from lgmrec_jax import parallel
    from lgmrec_jax.evaluation import Evaluator

    assert jax.device_count() == 8, jax.devices()
    one, eight = _trainer(1), _trainer(8)
    loss1, params1, _ = _train(one)
    loss8, params8, state8 = _train(eight)
    np.savez(out / "single.npz", loss=loss1, **params1)
    np.savez(out / "eight.npz", loss=loss8, **params8)

    batch = parallel.shard_batch(next(eight.sampler.epoch(0)), eight.mesh)
    hlo = eight.train_step.lower(state8, eight.graphs, eight.feats, batch).compile().as_text()
    facts = {
        "mesh_sizes": [one.mesh.size, eight.mesh.size],
        "batch_devices": len(batch["users"].sharding.device_set),
        "params_replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state8.params)),
        "params_devices": len(jax.tree.leaves(state8.params)[0].sharding.device_set),
        "train_step_compilations": eight.train_step._cache_size(),  # 1: the state's sharding is stable across steps
        "has_all_reduce": "all-reduce" in hlo,
    }
    # Sharded vs unsharded evaluation on the very same embeddings (the 1-device run's params).
    users, items = one.embed(jax.device_put(params1), one.graphs, one.feats, jax.random.PRNGKey(0))
    users, items = np.asarray(users), np.asarray(items)
    plain = Evaluator(one.data, "valid", one.cfg.train.topk, 64)
    facts["eval_unsharded"] = plain(users, items)
    facts["eval_sharded"] = eight.valid_eval(users, items)
    facts["eval_sharded_batch_devices"] = len(eight.valid_eval._batches[0][0].sharding.device_set)
    facts["eval_trainer_1"] = one.evaluate(one.init_state().params, one.valid_eval, 0)
    facts["eval_trainer_8"] = eight.evaluate(eight.init_state().params, eight.valid_eval, 0)
    try:
        parallel.shard_batch({"users": np.zeros(12, np.int32)}, eight.mesh)
        facts["indivisible_error"] = None
    except ValueError as e:
        facts["indivisible_error"] = str(e)
    (out / "facts.json").write_text(json.dumps(facts))


def worker_multiprocess(out: Path, port: int, process_id: int) -> None:
    """One of two processes with 4 devices each: an 8-device mesh across processes, fed process-locally."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id,
                               initialization_timeout=60)
    from lgmrec_jax import parallel

    assert jax.device_count() == 8 and jax.local_device_count() == 4
    trainer = _trainer(0)
    losses, params, _ = _train(trainer)
    batch = parallel.shard_batch(next(trainer.sampler.epoch(0)), trainer.mesh)
    local_rows = sorted(int(s.index[0].start) for s in batch["users"].addressable_shards)
    metrics = trainer.evaluate(trainer.init_state().params, trainer.valid_eval, 0)
    if process_id == 0:
        np.savez(out / "multiprocess.npz", loss=losses, **params)
    (out / f"process{process_id}.json").write_text(json.dumps({"local_rows": local_rows, "eval": metrics}))
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
    print(f"\n1 vs 8 devices after {N_STEPS} steps: max |Δparam| = {param_diff:.3g}, "
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
    assert facts["params_replicated"] and facts["params_devices"] == 8  # ...params stay whole on each device...
    assert facts["has_all_reduce"]  # ...and XLA sums the gradient across them.
    assert facts["train_step_compilations"] == 1
    assert "not divisible by 8 devices" in facts["indivisible_error"]


def test_sharded_evaluation_equals_unsharded(runs):
    _, facts = runs
    assert facts["eval_sharded_batch_devices"] == 8
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
    # Each process fed only its own half of the batch: rows 0..127 on process 0, 128..255 on process 1.
    p0, p1 = (json.loads((out / f"process{i}.json").read_text()) for i in (0, 1))
    assert p0["local_rows"] == [0, 32, 64, 96] and p1["local_rows"] == [128, 160, 192, 224]
    assert p0["eval"] == p1["eval"] == facts["eval_trainer_1"]


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
