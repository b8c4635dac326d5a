"""Node-indexed state split over devices (parallel.py) computes what one device computes, for every model.

A subprocess with 8 forced host devices (the device count is fixed when JAX starts; the pytest process keeps one)
runs this file as a script. On a synthetic set whose user and item counts (237, 157) divide by neither 2 nor 8, so
every split table is padded, it trains every model (MODELS) through the real Trainer for two epochs on meshes of
1, 2 and 8 devices, and runs a short `Trainer.run()` (validation every epoch, checkpoints, best-epoch test) on each,
with the same Trainer (and so the same compiled programs): the two epochs write nothing into its run directory.
It also multiplies random sparse matrices split into row blocks against the plain product, for all three backends,
forward and backward (also in column chunks, as products over the gather budget run), and a user-item adjacency in
the blocked node layout (operand built by join, result taken apart by split) against the plain one. The tests here
compare the numbers it writes.

What may differ: the gradient of a split table is summed in a different order (partial sums over devices), so
parameters agree to float rounding: measured max relative difference (‖Δ‖/‖p‖ per leaf) is printed by the test and
must be ≤ 1e-5, as must the relative loss difference. Metrics must be equal: they are rounded to 4 decimals and the
split evaluation ranks exactly as the unsplit one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MODELS = ("lightgcn", "lgmrec", "gume", "freedom", "bm3")
DEVICE_COUNTS = (1, 2, 8)
RTOL = 1e-5
HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


# ----------------------------------------------------------------------------------------------------------------
# Subprocess side.


def _data():
    from lgmrec_jax.data import synthetic

    return synthetic.generate(synthetic.Scale(237, 157, 3400, (("image", 40), ("text", 24)), 6), seed=3)


def _trainer(model: str, n_devices: int, data, workdir: Path, **train):
    from lgmrec_jax.config import load_config
    from lgmrec_jax.train import Trainer

    overrides = [f"train.devices={n_devices}", "train.train_batch_size=256", "train.eval_batch_size=64",
                 "train.backend=bcoo", *(f"train.{k}={v}" for k, v in train.items())]
    return Trainer(load_config(model, "synthetic-tiny", overrides=overrides), data, workdir, progress=False)


def _two_epochs(trainer) -> tuple[list[float], list[np.ndarray], dict]:
    import jax

    state = trainer.init_state()
    losses = []
    for epoch in range(2):
        state, sums, _ = trainer.run_epoch(state, epoch)
        losses.append(float(sums["loss"]))
    params = trainer.placement.to_host(state.params)
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
    return losses, leaves, trainer.evaluate(state.params, trainer.valid_eval, 0), _padding_magnitude(state)


def _padding_magnitude(state) -> float:
    """Largest |value| in the padding rows of every split table of the state (parameters and Adam moments)."""
    import jax

    from lgmrec_jax import parallel

    padded = [x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, parallel.Padded))
              if isinstance(x, parallel.Padded)]
    return max((float(np.max(np.abs(np.asarray(x.value)[x.rows:]), initial=0.0)) for x in padded), default=0.0)


def _sparse_products(out: dict) -> None:
    """Split products against plain ones: random 37×29 matrix with empty rows, forward and gradient."""
    import jax
    import jax.numpy as jnp

    from lgmrec_jax import parallel
    from lgmrec_jax.graph import from_coo

    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 37, 160), rng.integers(0, 29, 160)
    rows[rows == 5] = 6  # an empty row
    rows[rows >= 30] = 0  # a dense first row and an empty tail: blocks of very different sizes
    x = jnp.asarray(rng.normal(size=(29, 8)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(37, 8)), jnp.float32)
    errors = {}
    for backend in ("bcoo", "bcsr", "segment_sum"):
        mat = from_coo(rows, cols, rng.random(160), (37, 29), backend)

        def loss(m, x):
            return jnp.sum(jnp.tanh(m @ x) * w)

        want, want_grad = jax.value_and_grad(loss, argnums=1)(mat, x)
        for n in (2, 8):
            placement = parallel.Placement(parallel.make_mesh(n), ())
            split = placement.place_graphs({"m": mat})["m"]
            got, got_grad = jax.jit(jax.value_and_grad(loss, argnums=1))(split, x)
            errors[f"{backend}/{n}"] = [abs(float(got - want)) / abs(float(want)),
                                        float(jnp.linalg.norm(got_grad - want_grad) / jnp.linalg.norm(want_grad))]
    out["sparse"] = errors
    out["chunked"] = _chunked_products(rows, cols)
    out["node_adjacency"] = _node_adjacency_products()
    out["join_of_padded"] = _join_of_padded_tables()


def _chunked_products(rows, cols) -> dict:
    """A product over its gather budget runs in column chunks: same value and gradient as the plain product."""
    import jax
    import jax.numpy as jnp

    from lgmrec_jax import parallel
    from lgmrec_jax.graph import from_coo, partitioned

    rng = np.random.default_rng(3)
    width = 3 * partitioned.CHUNK_COLUMNS
    x = jnp.asarray(rng.normal(size=(29, width)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(37, width)), jnp.float32)
    errors, budget = {}, partitioned.GATHER_BUDGET
    for backend in ("bcoo", "bcsr", "segment_sum"):
        mat = from_coo(rows, cols, rng.random(rows.size), (37, 29), backend)

        def loss(m, x):
            return jnp.sum(jnp.tanh(m @ x) * w)

        want, want_grad = jax.value_and_grad(loss, argnums=1)(mat, x)
        split = parallel.Placement(parallel.make_mesh(8), ()).place_graphs({"m": mat})["m"]
        partitioned.GATHER_BUDGET = 0  # every product is over budget
        try:
            chunked = str(jax.make_jaxpr(jax.value_and_grad(loss, argnums=1))(split, x))
            got, got_grad = jax.jit(jax.value_and_grad(loss, argnums=1))(split, x)
        finally:
            partitioned.GATHER_BUDGET = budget
        errors[backend] = {"barriers": chunked.count("optimization_barrier"),
                           "errors": [abs(float(got - want)) / abs(float(want)),
                                      float(jnp.linalg.norm(got_grad - want_grad) / jnp.linalg.norm(want_grad))]}
    return errors


def _node_adjacency_products() -> dict:
    """Â in the blocked node layout: split(Â @ join(users, items)) against the plain product, value and gradient."""
    import jax
    import jax.numpy as jnp

    from lgmrec_jax import parallel
    from lgmrec_jax.graph import normalized_adjacency

    rng = np.random.default_rng(1)
    n_users, n_items = 23, 13  # indivisible by 2 and 8: both tables padded
    train = np.stack([rng.integers(0, n_users, 90), rng.integers(0, n_items - 1, 90)], axis=1)
    train[:20, 0] = 4  # a heavy user; the last item has no interaction (an empty row)
    users = jnp.asarray(rng.normal(size=(n_users, 8)), jnp.float32)
    items = jnp.asarray(rng.normal(size=(n_items, 8)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(n_users + n_items, 8)), jnp.float32)
    errors = {}
    for backend in ("bcoo", "bcsr", "segment_sum"):
        adj = normalized_adjacency(n_users, n_items, train, backend=backend)

        def loss(m, u, i):
            u2, i2 = m.split(m @ (m @ m.join(u, i)))
            return jnp.sum(jnp.tanh(jnp.concatenate([u2, i2])) * w)

        want, want_grads = jax.value_and_grad(loss, argnums=(1, 2))(adj, users, items)
        for n in (2, 8):
            placement = parallel.Placement(parallel.make_mesh(n), (n_users, n_items))
            split = placement.place_graphs({"adj": adj})["adj"]
            assert split.node_layout and split.operand_rows > n_users + n_items
            got, got_grads = jax.jit(jax.value_and_grad(loss, argnums=(1, 2)))(split, users, items)
            errors[f"{backend}/{n}"] = [abs(float(got - want)) / abs(float(want))] + [
                float(jnp.linalg.norm(g - h) / jnp.linalg.norm(h)) for g, h in zip(got_grads, want_grads)]
    return errors


def _join_of_padded_tables() -> dict:
    """`join` of tables that parallel.logical sliced from padded split tables: the padded tables are used as they
    are (no pad in the program), with the same value and gradient as `join` of plain copies of the tables."""
    import jax
    import jax.numpy as jnp

    from lgmrec_jax import parallel
    from lgmrec_jax.graph import normalized_adjacency

    rng = np.random.default_rng(2)
    n_users, n_items = 23, 13
    train = np.stack([rng.integers(0, n_users, 90), rng.integers(0, n_items, 90)], axis=1)
    tables = {"u": rng.normal(size=(n_users, 8)).astype(np.float32),
              "i": rng.normal(size=(n_items, 8)).astype(np.float32)}
    w = jnp.asarray(rng.normal(size=(n_users + n_items, 8)), jnp.float32)
    placement = parallel.Placement(parallel.make_mesh(8), (n_users, n_items))
    adj = placement.place_graphs({"adj": normalized_adjacency(n_users, n_items, train)})["adj"]
    placed = placement.place(tables)

    def loss(placed_tables, copy):
        t = parallel.logical(placed_tables)
        u, i = (t["u"] + 0.0, t["i"] + 0.0) if copy else (t["u"], t["i"])  # a copy is not a remembered slice
        users, items = adj.split(adj @ adj.join(u, i))
        return jnp.sum(jnp.tanh(jnp.concatenate([users, items])) * w)

    def pads(copy: bool) -> int:  # pad operations in the program, nested jaxprs included
        return str(jax.make_jaxpr(lambda t: loss(t, copy))(placed)).count(" pad[")

    got, grads = jax.jit(jax.value_and_grad(loss), static_argnums=1)(placed, False)
    want, want_grads = jax.jit(jax.value_and_grad(loss), static_argnums=1)(placed, True)
    got_grads, want_grads = placement.to_host(grads), placement.to_host(want_grads)
    return {"pads": pads(False), "copy_pads": pads(True),
            "value": abs(float(got - want)) / abs(float(want)),
            "grads": [float(np.linalg.norm(got_grads[k] - want_grads[k]) / np.linalg.norm(want_grads[k]))
                      for k in ("u", "i")],
            "grad_padding": _padding_magnitude(grads)}


def _split_tables(state) -> int:
    import jax

    from lgmrec_jax import parallel

    return sum(isinstance(x, parallel.Padded)
               for x in jax.tree.leaves(state.params, is_leaf=lambda x: isinstance(x, parallel.Padded)))


def worker(out_dir: Path) -> None:
    import jax

    assert jax.device_count() == 8, jax.devices()
    data = _data()
    out = {}
    _sparse_products(out)
    for model in MODELS:
        runs = {}
        for n in DEVICE_COUNTS:
            trainer = _trainer(model, n, data, out_dir / f"{model}-run-{n}", epochs=3, checkpoint_every=1)
            losses, leaves, metrics, padding = _two_epochs(trainer)
            np.savez(out_dir / f"{model}-{n}.npz", *leaves)
            result = trainer.run()
            runs[n] = {"losses": losses, "valid_after_two": metrics, "valid": result["valid"],
                       "test": result["test"], "best_epoch": result["best_epoch"],
                       "split_tables": _split_tables(trainer.init_state()), "padding": padding}
        out[model] = runs
    (out_dir / "facts.json").write_text(json.dumps(out))


# ----------------------------------------------------------------------------------------------------------------
# pytest side.


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip())
    proc = subprocess.run([sys.executable, "-m", "tests.test_sharded_models", str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"worker failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return out, json.loads((out / "facts.json").read_text())


def test_split_sparse_products_equal_plain_ones(facts):
    _, f = facts
    for name, (value_err, grad_err) in f["sparse"].items():
        assert value_err < 1e-6 and grad_err < 1e-6, (name, value_err, grad_err)


def test_products_over_the_gather_budget_run_in_exact_column_chunks(facts):
    _, f = facts
    assert len(f["chunked"]) == 3
    for backend, got in f["chunked"].items():
        assert got["barriers"] == 4, (backend, got)  # 3 chunks chained by 2 barriers, forward and backward
        assert max(got["errors"]) < 1e-6, (backend, got)


def test_node_layout_products_equal_plain_ones(facts):
    _, f = facts
    assert len(f["node_adjacency"]) == 6  # 3 backends × 2 and 8 devices
    for name, errs in f["node_adjacency"].items():
        assert max(errs) < 1e-6, (name, errs)


def test_join_uses_padded_tables_as_they_are(facts):
    _, f = facts
    got = f["join_of_padded"]
    assert got["pads"] == 0 and got["copy_pads"] == 2  # the shortcut is taken, and only for remembered slices
    assert got["value"] < 1e-6 and max(got["grads"]) < 1e-6, got
    assert got["grad_padding"] == 0.0  # the padding rows' gradient is exactly zero


@pytest.mark.parametrize("model", MODELS)
def test_split_training_equals_one_device(facts, model):
    out, f = facts
    runs = f[model]
    one = np.load(out / f"{model}-1.npz")
    assert runs["1"]["split_tables"] == 0 and runs["8"]["split_tables"] >= 2  # really split, uneven tables padded
    for n in DEVICE_COUNTS[1:]:
        other = np.load(out / f"{model}-{n}.npz")
        loss_rel = np.max(np.abs(np.subtract(runs[str(n)]["losses"], runs["1"]["losses"]))
                          / np.abs(runs["1"]["losses"]))
        param_rel = max(float(np.linalg.norm(other[k] - one[k]) / max(np.linalg.norm(one[k]), 1e-30))
                        for k in one.files)
        print(f"\n{model}: 1 vs {n} devices after 2 epochs: max relative Δloss {loss_rel:.2g}, "
              f"max relative ‖Δparam‖ {param_rel:.2g}")
        assert loss_rel <= RTOL and param_rel <= RTOL
        assert runs[str(n)]["valid_after_two"] == runs["1"]["valid_after_two"]
        assert runs[str(n)]["padding"] == 0.0  # padding rows of tables and Adam moments stay exactly zero
    assert runs["1"]["losses"][1] < runs["1"]["losses"][0]  # training moved: agreement is not vacuous


@pytest.mark.parametrize("model", MODELS)
def test_split_run_reports_the_same_metrics(facts, model):
    _, f = facts
    runs = f[model]
    for n in DEVICE_COUNTS[1:]:
        for key in ("valid", "test", "best_epoch"):
            assert runs[str(n)][key] == runs["1"][key], (model, n, key)
    assert runs["1"]["test"]["recall@20"] > 0


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
