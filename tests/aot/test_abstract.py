"""Abstract placement (Trainer(target=mesh)) lowers the very programs a placed trainer runs.

A subprocess with 4 forced host devices builds, for every model on a synthetic set whose counts divide by neither 2
nor 4 (so split tables are padded), a real Trainer and an abstract one on the same devices, and lowers the train
step, embedding pass and evaluation batch of both. The StableHLO text must be identical: the abstract mode is not a
model of the program, it is the program. On one device the same holds in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = ("lightgcn", "lgmrec", "gume", "freedom", "bm3")
ROOT = Path(__file__).resolve().parents[2]


def _lowered_texts(model: str, devices: int) -> dict[str, bool]:
    import jax

    from lgmrec_jax import parallel
    from lgmrec_jax.config import load_config
    from lgmrec_jax.data import synthetic
    from lgmrec_jax.train import Trainer

    data = synthetic.generate(synthetic.Scale(237, 157, 3400, (("image", 40), ("text", 24)), 6), seed=3)
    cfg = load_config(model, "synthetic-tiny", overrides=[f"train.devices={devices}", "train.train_batch_size=256",
                                                          "train.eval_batch_size=64", "train.checkpoint_every=0"])
    real = Trainer(cfg, data, Path("/nonexistent"), progress=False).lower()
    mesh = parallel.make_mesh(devices)
    trainer = Trainer(cfg, data, Path("/nonexistent"), progress=False, target=mesh)
    inputs = (trainer.graphs, trainer.feats, trainer.tables, trainer.init_state())
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(inputs))  # nothing was placed
    abstract = trainer.lower()
    return {name: real[name].as_text() == abstract[name].as_text() for name in real}


@pytest.mark.parametrize("model", MODELS)
def test_abstract_trainer_lowers_the_same_programs_on_one_device(model):
    assert _lowered_texts(model, 1) == {"train_step": True, "embed": True, "eval_batch": True}


def test_abstract_trainer_lowers_the_same_programs_split_over_four_devices():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")  # this checkout's package
    out = subprocess.run([sys.executable, __file__], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    same = json.loads(out.stdout.strip().splitlines()[-1])
    assert same == {m: {"train_step": True, "embed": True, "eval_batch": True} for m in MODELS}


def test_abstract_trainer_refuses_to_train(tmp_path):
    from lgmrec_jax import parallel
    from lgmrec_jax.config import load_config
    from lgmrec_jax.data import synthetic
    from lgmrec_jax.train import Trainer

    cfg = load_config("lightgcn", "synthetic-tiny")
    trainer = Trainer(cfg, synthetic.generate("tiny"), tmp_path / "run", progress=False, target=parallel.make_mesh(1))
    with pytest.raises(ValueError, match="cannot train"):
        trainer.run()
    assert not (tmp_path / "run").exists()


if __name__ == "__main__":
    print(json.dumps({m: _lowered_texts(m, 4) for m in MODELS}))
