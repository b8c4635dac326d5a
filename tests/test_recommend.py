"""Using a trained run: the checkpoint reproduces the reported metrics, top-K masks training items, export round-
trips, and a planted cold-start item is ranked by its features for the users who liked it."""

import json

import numpy as np
import pytest

from lgmrec_jax import cli, recommend, run_data
from lgmrec_jax.config import load_config
from lgmrec_jax.data import synthetic
from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.evaluation import Evaluator
from lgmrec_jax.models import lightgcn
from lgmrec_jax.train import train_and_evaluate


def remove_item(data: Dataset, item: int) -> Dataset:
    """`data` without `item`: its interactions in every split and its feature rows are gone, later ids shift down.
    To a model trained on the result, the removed item is a genuinely new item."""
    def drop(pairs):
        pairs = pairs[pairs[:, 1] != item].copy()
        pairs[:, 1] -= pairs[:, 1] > item
        return pairs

    return Dataset(name=data.name, n_users=data.n_users, n_items=data.n_items - 1, train=drop(data.train),
                   valid=drop(data.valid), test=drop(data.test),
                   features={m: np.delete(f, item, axis=0) for m, f in data.features.items()})


@pytest.fixture(scope="module")
def cold_setup(tmp_path_factory):
    full = synthetic.generate("tiny", seed=1)
    # The most popular training item: many users demonstrably like it, so its fans are a sizeable test group.
    item = int(np.bincount(full.train[:, 1]).argmax())
    every = np.concatenate([full.train, full.valid, full.test])
    fans = np.unique(every[every[:, 1] == item, 0])
    data = remove_item(full, item)
    run_dir = tmp_path_factory.mktemp("lgmrec") / "run"
    cfg = load_config("lgmrec", "synthetic-tiny",
                      overrides=["train.epochs=4", "train.train_batch_size=512", "train.eval_batch_size=256",
                                 "train.checkpoint_every=4"])  # one save (the last epoch holds best_params)
    result = train_and_evaluate(cfg, data, run_dir, progress=False)
    run = recommend.load_run(run_dir, data)
    new_feats = {m: f[item:item + 1] for m, f in full.features.items()}
    return {"data": data, "run": run, "result": result, "fans": fans, "new_feats": new_feats, "run_dir": run_dir}


def test_loaded_checkpoint_reproduces_reported_test_metrics(cold_setup):
    run, data = cold_setup["run"], cold_setup["data"]
    assert run.best_epoch == cold_setup["result"]["best_epoch"]
    assert Evaluator(data, "test", (10, 20))(run.user_emb, run.item_emb) == cold_setup["result"]["test"]


def test_top_k_excludes_training_items_and_matches_brute_force(cold_setup):
    run, data = cold_setup["run"], cold_setup["data"]
    users = np.array([0, 7, 7, 31])  # a repeated user gets the same row twice
    items, scores = recommend.top_k(run, users, k=15)
    all_scores = np.asarray(run.user_emb) @ np.asarray(run.item_emb).T
    for row, u in enumerate(users):
        seen = set(data.train[data.train[:, 0] == u, 1].tolist())
        assert not seen & set(items[row].tolist())
        ranked = [i for i in np.argsort(-all_scores[u], kind="stable") if i not in seen][:15]
        np.testing.assert_allclose(scores[row], all_scores[u, ranked], rtol=1e-5)
        assert np.all(np.diff(scores[row]) <= 0)
    with pytest.raises(ValueError, match="user ids"):
        recommend.top_k(run, [data.n_users], k=5)


def test_export_round_trips(cold_setup, tmp_path):
    run = cold_setup["run"]
    info = recommend.export_embeddings(run, tmp_path)
    users, items = np.load(tmp_path / "user_embeddings.npy"), np.load(tmp_path / "item_embeddings.npy")
    assert users.shape == (run.data.n_users, info["dim"]) and items.shape == (run.data.n_items, info["dim"])
    np.testing.assert_array_equal(users, np.asarray(run.user_emb))
    assert json.loads((tmp_path / "export.json").read_text())["best_epoch"] == run.best_epoch


def test_planted_cold_item_ranks_high_for_its_fans(cold_setup):
    """The removed item, given only its features, must rank in the top part of the candidate list of the users
    who had interacted with it — and clearly better than for everyone else (a feature-blind scorer gives both
    groups the same distribution, so this fails if the features are not used)."""
    run, data, fans = cold_setup["run"], cold_setup["data"], cold_setup["fans"]
    cold = recommend.cold_item_embeddings(run, cold_setup["new_feats"])
    others = np.setdiff1d(np.arange(data.n_users), fans)
    candidates = data.n_items + 1 - np.bincount(data.train[:, 0], minlength=data.n_users)  # unseen warm + cold
    pct_fans = recommend.ranks_among_candidates(run, fans, cold)[:, 0] / candidates[fans]
    pct_others = recommend.ranks_among_candidates(run, others, cold)[:, 0] / candidates[others]
    assert len(fans) >= 30
    assert np.median(pct_fans) < 0.4  # random placement would give 0.5
    assert pct_fans.mean() < pct_others.mean() - 0.1


def test_cold_item_joins_the_candidates_in_top_k(cold_setup):
    run, fans = cold_setup["run"], cold_setup["fans"]
    cold = recommend.cold_item_embeddings(run, cold_setup["new_feats"])
    items, _ = recommend.top_k(run, fans, k=run.data.n_items // 2, extra_items=cold)
    assert np.mean(np.any(items == run.data.n_items, axis=1)) > 0.5  # in the top half for most fans


def test_cold_start_checks_features_and_models(cold_setup):
    run = cold_setup["run"]
    with pytest.raises(ValueError, match="modalities"):
        recommend.cold_item_embeddings(run, {"image": cold_setup["new_feats"]["image"]})
    bad = {m: np.zeros((1, f.shape[1] + 1), np.float32) for m, f in cold_setup["new_feats"].items()}
    with pytest.raises(ValueError, match="width"):
        recommend.cold_item_embeddings(run, bad)
    # LightGCN has no feature branch: a new item has no representation, and the call says so.
    lgn = recommend.LoadedRun(run.run_dir, load_config("lightgcn", "synthetic-tiny"), run.data, lightgcn, None, {},
                              None, 0, run.eval_key, run.user_emb, run.item_emb)
    with pytest.raises(NotImplementedError, match="no representation"):
        recommend.cold_item_embeddings(lgn, cold_setup["new_feats"])


def test_cli_recommend_and_export(cold_setup, tmp_path, monkeypatch, capsys):
    # The run trained on a modified dataset; hand the CLI that dataset instead of regenerating synthetic-tiny.
    monkeypatch.setattr(run_data, "ensure_dataset", lambda name, data_dir: cold_setup["data"])
    np.savez(tmp_path / "new.npz", **cold_setup["new_feats"])
    out = tmp_path / "rec.json"
    assert cli.main(["recommend", "--run", str(cold_setup["run_dir"]), "--users", "3", "5", "--k", "4",
                     "--cold-features", str(tmp_path / "new.npz"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    recs = report["recommendations"]
    assert [r["user"] for r in recs] == [3, 5] and all(len(r["items"]) == 4 for r in recs)
    assert report["ids"].startswith("internal") and all(r["items"] == [
        i if i < report["n_items"] else f"new:{i - report['n_items']}" for i in r["internal_items"]] for r in recs)
    n_new = len(next(iter(cold_setup["new_feats"].values())))
    assert [c["id"] for c in report["cold_items"]] == [f"new:{k}" for k in range(n_new)]
    assert all(set(c["rank_per_user"]) == {"3", "5"} and min(c["rank_per_user"].values()) >= 1
               for c in report["cold_items"])
    assert cli.main(["export", "--run", str(cold_setup["run_dir"]), "--out", str(tmp_path / "emb")]) == 0
    assert (tmp_path / "emb" / "item_embeddings.npy").exists()
    assert cli.main(["recommend", "--run", str(tmp_path), "--users", "1"]) == 2  # not a run directory
    assert "config.json" in capsys.readouterr().err


def test_every_run_directory_has_a_reproduction_card(cold_setup):
    card = json.loads((cold_setup["run_dir"] / "repro.json").read_text())
    assert card["seed"] == 999 and card["model"] == "lgmrec"
    assert card["data"]["n_items"] == cold_setup["data"].n_items and len(card["data"]["content_sha256"]) == 64
    assert card["environment"]["packages"]["jax"]
