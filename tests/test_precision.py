"""Reduced-precision knobs: off by default (float32 products, exact), and when on they reach the compiled program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lgmrec_jax import precision
from lgmrec_jax import train as train_lib
from lgmrec_jax.config import load_config
from lgmrec_jax.data import synthetic


def test_project_float32_is_the_plain_product_and_bfloat16_is_close():
    rng = np.random.default_rng()
    x = rng.standard_normal((50, 96)).astype(np.float32)
    w = rng.standard_normal((96, 16)).astype(np.float32)
    ref = x.astype(np.float64) @ w.astype(np.float64)
    exact = np.asarray(precision.project(jnp.asarray(x), jnp.asarray(w)), np.float64)
    assert np.linalg.norm(exact - ref) / np.linalg.norm(ref) <= 1e-5
    half = precision.project(precision.feature_table(x, "bfloat16"), jnp.asarray(w))
    assert half.dtype == jnp.float32  # accumulated and returned in float32
    rel = np.linalg.norm(np.asarray(half, np.float64) - ref) / np.linalg.norm(ref)
    assert 1e-5 < rel < 2e-2  # bfloat16 has an 8-bit mantissa: visibly inexact, but close
    g = jax.grad(lambda w_: jnp.sum(precision.project(precision.feature_table(x, "bfloat16"), w_)))(jnp.asarray(w))
    assert g.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("name, hlo_precision", [("float32", "HIGHEST"), ("bfloat16", "DEFAULT")])
def test_matmul_precision_reaches_the_program(name, hlo_precision):
    def f(a, b):
        with precision.matmul_precision(name):
            return a @ b
    text = jax.jit(f).lower(jnp.ones((4, 8)), jnp.ones((8, 2))).as_text()
    assert f"precision = [{hlo_precision}, {hlo_precision}]" in text


def test_unknown_values_are_errors():
    with pytest.raises(ValueError, match="unknown matmul precision 'fp8'"):
        precision.matmul_precision("fp8")
    with pytest.raises(ValueError, match="unknown feature dtype 'float16'"):
        precision.feature_table(np.ones((2, 2)), "float16")


def test_lgmrec_with_bfloat16_features_trains_close_to_float32(tmp_path):
    data = synthetic.generate("tiny", seed=2)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        cfg = load_config("lgmrec", "synthetic-tiny", overrides=[
            "train.train_batch_size=512", "train.checkpoint_every=0", f"train.feature_dtype={dtype}"])
        trainer = train_lib.Trainer(cfg, data, tmp_path / dtype, progress=False)
        assert all(f.dtype == jnp.dtype(dtype) for f in trainer.feats.values())
        state, sums, _ = trainer.run_epoch(trainer.init_state(), 0)
        losses[dtype] = float(sums["loss"])
    assert np.isfinite(losses["bfloat16"])
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=2e-2)
    assert losses["bfloat16"] != losses["float32"]  # the knob did change the computation
