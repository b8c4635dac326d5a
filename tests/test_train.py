"""The train loop end to end on tiny synthetic data: it learns, checkpoints, and resumes exactly."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from lgmrec_jax import train as train_lib
from lgmrec_jax.config import load_config
from lgmrec_jax.data import sampler, synthetic
from lgmrec_jax.errors import Failure
from lgmrec_jax.rundir import RunDirError

OVERRIDES = ["train.train_batch_size=512", "train.eval_batch_size=100", "train.seed=3"]


@pytest.fixture(scope="module")
def data():
    return synthetic.generate("tiny", seed=1)


def records(run_dir):
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if not k.endswith("_seconds")})
    return out


def test_lightgcn_learns_and_beats_popularity(data, tmp_path):
    cfg = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=25"])
    result = train_lib.train_and_evaluate(cfg, data, tmp_path / "run", progress=False)
    assert result["test"]["recall@20"] > result["popularity"]["test"]["recall@20"] + 0.2
    logged = records(tmp_path / "run")
    assert logged[-1]["loss"] < logged[0]["loss"]
    for name in ("config.json", "results.json", "curves.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_early_stopping_follows_mmrec_patience(data, tmp_path):
    # lr 0 → the score never improves after epoch 0: stop after stopping_step + 1 non-improving epochs.
    cfg = load_config("lightgcn", "synthetic-tiny",
                      overrides=OVERRIDES + ["train.epochs=50", "train.stopping_step=3", "train.learning_rate=0"])
    result = train_lib.train_and_evaluate(cfg, data, tmp_path / "run", progress=False)
    assert result["best_epoch"] == 0
    assert result["epochs_run"] == 1 + 3 + 1


def test_resume_continues_exactly(data, tmp_path, monkeypatch):
    cfg = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=6"])
    straight = train_lib.train_and_evaluate(cfg, data, tmp_path / "straight", progress=False)

    original = train_lib.Trainer._train_epoch

    def crash_at_epoch_4(self, state, epoch):
        if epoch == 4:
            raise KeyboardInterrupt("simulated crash")
        return original(self, state, epoch)

    monkeypatch.setattr(train_lib.Trainer, "_train_epoch", crash_at_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        train_lib.train_and_evaluate(cfg, data, tmp_path / "crashed", progress=False)
    assert len(records(tmp_path / "crashed")) == 4
    monkeypatch.setattr(train_lib.Trainer, "_train_epoch", original)
    resumed = train_lib.train_and_evaluate(cfg, data, tmp_path / "crashed", resume=True, progress=False)

    assert records(tmp_path / "crashed") == records(tmp_path / "straight")
    assert resumed["test"] == straight["test"] and resumed["best_epoch"] == straight["best_epoch"]


@pytest.mark.parametrize("model", ["freedom", "bm3"])
def test_resume_continues_exactly_for_epoch_keys_and_no_negatives(data, tmp_path, monkeypatch, model):
    """As above for FREEDOM (its pruned graph is drawn from the epoch's key) and BM3 (no negatives: its programs
    must never trace the sampler's negative draw). One Trainer runs all three runs in turn, pointed at each run
    directory: its compiled programs do not depend on the directory, and compiling once keeps the test short."""
    if not train_lib.uses_negatives(train_lib.get_model(model)):
        def no_negatives(*args):
            raise AssertionError(f"{model} takes no negatives, but the sampler drew some")
        monkeypatch.setattr(sampler, "draw_negatives", no_negatives)
    cfg = load_config(model, "synthetic-tiny", overrides=OVERRIDES + [
        "train.epochs=5", f'train.cache_dir="{tmp_path / "cache"}"'])
    trainer = train_lib.Trainer(cfg, data, tmp_path / "straight", progress=False)
    straight = trainer.run()

    original = train_lib.Trainer._train_epoch

    def crash_at_epoch_3(self, state, epoch):
        if epoch == 3:
            raise KeyboardInterrupt("simulated crash")
        return original(self, state, epoch)

    trainer.workdir = tmp_path / "crashed"
    monkeypatch.setattr(train_lib.Trainer, "_train_epoch", crash_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert len(records(tmp_path / "crashed")) == 3
    monkeypatch.setattr(train_lib.Trainer, "_train_epoch", original)
    resumed = trainer.run(resume=True)

    assert records(tmp_path / "crashed") == records(tmp_path / "straight")
    assert resumed["test"] == straight["test"] and resumed["best_epoch"] == straight["best_epoch"]
    assert len({r["loss"] for r in records(tmp_path / "straight")}) == 5  # it trained


def test_extending_a_capped_run_equals_a_run_with_the_larger_cap(data, tmp_path):
    long = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=6"])
    straight = train_lib.train_and_evaluate(long, data, tmp_path / "straight", progress=False)
    short = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=3"])
    run = tmp_path / "run"
    assert train_lib.train_and_evaluate(short, data, run, progress=False)["epochs_run"] == 3
    with pytest.raises(RunDirError, match=r"config differs .*train.epochs: 3 → 6"):  # plain resume: refused
        train_lib.train_and_evaluate(long, data, run, resume=True, progress=False)

    extended = train_lib.train_and_evaluate(long, data, run, resume=True, extend=True, progress=False)
    assert records(run) == records(tmp_path / "straight")
    assert extended["test"] == straight["test"] and extended["best_epoch"] == straight["best_epoch"]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 6
    card = json.loads((run / "repro.json").read_text())
    assert card["config"]["train"]["epochs"] == 3 and card["resumed"][-1]["extended"] == {"train.epochs": [3, 6]}
    # The extended run is now a 6-epoch run: a plain resume accepts it, a smaller cap is refused even with extend.
    train_lib.train_and_evaluate(long, data, run, resume=True, progress=False)
    with pytest.raises(RunDirError, match=r"train.epochs: 6 → 4"):
        four = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=4"])
        train_lib.train_and_evaluate(four, data, run, resume=True, extend=True, progress=False)


def test_resume_without_checkpoint_is_an_error(data, tmp_path):
    cfg = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=1",
                                                                          "train.checkpoint_every=0"])
    with pytest.raises(RunDirError, match="no such run directory"):
        train_lib.train_and_evaluate(cfg, data, tmp_path / "none", resume=True, progress=False)
    train_lib.train_and_evaluate(cfg, data, tmp_path / "nockpt", progress=False)
    with pytest.raises(RunDirError, match="no checkpoint"):
        train_lib.train_and_evaluate(cfg, data, tmp_path / "nockpt", resume=True, progress=False)


def test_nan_loss_stops_with_a_message(data, tmp_path):
    cfg = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=3",
                                                                          "train.learning_rate=1e30"])
    with pytest.raises(Failure, match="training diverged: epoch 0: non-finite training loss .* no checkpoint was "
                                      "written. Lower train.learning_rate \\(now 1e\\+30, from command line\\)"):
        train_lib.train_and_evaluate(cfg, data, tmp_path / "nan", progress=False)


def test_lr_schedule_is_per_epoch():
    cfg = load_config("lightgcn", "x", overrides=["train.learning_rate_scheduler=[0.5, 2]"])
    opt = train_lib.make_optimizer(cfg, steps_per_epoch=10)
    # With a constant gradient, Adam's first update has magnitude lr: read the lr of each step from the update.
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    sizes = []
    for step in range(40):
        updates, state = opt.update({"w": jnp.ones(3)}, state, params)
        sizes.append(float(jnp.abs(updates["w"][0])))
    np.testing.assert_allclose(sizes[0], 1e-3, rtol=1e-4)
    np.testing.assert_allclose(sizes[9], 1e-3, rtol=1e-4)  # same epoch
    np.testing.assert_allclose(sizes[10], 1e-3 * 0.5 ** 0.5, rtol=1e-4)  # epoch 1
    np.testing.assert_allclose(sizes[39], 1e-3 * 0.5 ** 1.5, rtol=1e-4)  # epoch 3


def test_fresh_run_refuses_a_directory_with_a_run_and_leaves_it_untouched(data, tmp_path):
    cfg = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=1"])
    train_lib.train_and_evaluate(cfg, data, tmp_path / "run", progress=False)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    other = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=2", "train.seed=5"])
    with pytest.raises(RunDirError, match="already holds a run .*config.json.*; continue it with --resume"):
        train_lib.train_and_evaluate(other, data, tmp_path / "run", progress=False)
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


def test_resume_refuses_changed_config_or_data(data, tmp_path):
    cfg = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=1"])
    train_lib.train_and_evaluate(cfg, data, tmp_path / "run", progress=False)
    changed = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=1", "train.seed=4"])
    with pytest.raises(RunDirError, match=r"config differs .*train.seed: 3 → 4"):
        train_lib.train_and_evaluate(changed, data, tmp_path / "run", resume=True, progress=False)
    other_data = synthetic.generate("tiny", seed=2)
    with pytest.raises(RunDirError, match="the data of synthetic-tiny changed since the run started"):
        train_lib.train_and_evaluate(cfg, other_data, tmp_path / "run", resume=True, progress=False)


def test_resume_falls_back_to_the_newest_intact_checkpoint(data, tmp_path):
    cfg = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=4"])
    straight = train_lib.train_and_evaluate(cfg, data, tmp_path / "straight", progress=False)
    run = tmp_path / "run"
    short = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + ["train.epochs=3"])
    train_lib.train_and_evaluate(short, data, run, progress=False)
    # Pretend the run was started for 4 epochs and stopped after 3 (config and card say 4, as --resume checks).
    for name in ("config.json", "repro.json"):
        card = json.loads((run / name).read_text())
        (card["config"] if name == "repro.json" else card)["train"]["epochs"] = 4
        (run / name).write_text(json.dumps(card))
    for blob in (run / "checkpoints" / "2" / "state").rglob("d/*"):  # damage the newest step's array data
        blob.write_bytes(b"garbage")
    resumed = train_lib.train_and_evaluate(cfg, data, run, resume=True, progress=False)
    assert (run / "corrupt-checkpoints" / "2").is_dir()  # moved aside, not deleted
    assert records(run) == records(tmp_path / "straight")
    assert resumed["test"] == straight["test"]


def test_scanned_epoch_equals_per_step_dispatch(data, tmp_path):
    """One program per epoch, one per step and chunks of 5 run the same steps with the same keys."""
    finals = {}
    for chunk in (0, 1, 5):
        cfg = load_config("lightgcn", "synthetic-tiny", overrides=OVERRIDES + [
            f"train.steps_per_program={chunk}", "train.checkpoint_every=0"])
        trainer = train_lib.Trainer(cfg, data, tmp_path / f"chunk{chunk}", progress=False)
        state, dispatches, sums = trainer.init_state(), [], []
        for epoch in range(2):
            state, s, d = trainer.run_epoch(state, epoch)
            dispatches.append(d)
            sums.append(float(s["loss"]))
        finals[chunk] = (np.asarray(state.params["user_embedding"]), sums, int(state.step))
        n = trainer.steps_per_epoch
        assert dispatches == [{0: 1, 1: 1 + n, 5: 1 + -(-n // 5)}[chunk]] * 2
    base_params, base_sums, base_step = finals[0]
    assert base_step == 2 * trainer.steps_per_epoch
    for chunk in (1, 5):
        params, sums, step = finals[chunk]
        assert step == base_step
        np.testing.assert_allclose(sums, base_sums, rtol=1e-6)
        np.testing.assert_allclose(params, base_params, rtol=1e-5, atol=1e-7)
    assert not np.allclose(base_params, np.asarray(train_lib.Trainer(cfg, data, tmp_path / "x", progress=False)
                                                   .init_state().params["user_embedding"]))
