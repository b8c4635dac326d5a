"""Reproduction cards: data hashes that change with the data, the manifest, code and environment."""

import hashlib
import json

import numpy as np

from lgmrec_jax import repro
from lgmrec_jax.config import load_config
from lgmrec_jax.data import synthetic
from lgmrec_jax.data.dataset import Dataset


def test_data_fingerprint_changes_with_any_interaction_or_feature():
    data = synthetic.generate("tiny", seed=3)
    base = repro.dataset_fingerprint(data)["content_sha256"]
    assert repro.dataset_fingerprint(synthetic.generate("tiny", seed=3))["content_sha256"] == base
    moved = data.train.copy()
    moved[0, 1] = (moved[0, 1] + 1) % data.n_items
    assert repro.dataset_fingerprint(Dataset(**{**vars(data), "train": moved}))["content_sha256"] != base
    feats = {m: f.copy() for m, f in data.features.items()}
    feats["text"][0, 0] += 1.0
    assert repro.dataset_fingerprint(Dataset(**{**vars(data), "features": feats}))["content_sha256"] != base


def test_card_records_manifest_config_code_and_environment(tmp_path):
    data = synthetic.generate("tiny", seed=3)
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"x.inter": {"sha256": "ab" * 32}},
                                                         "created_utc": "then"}))
    cfg = load_config("lightgcn", "synthetic-tiny", overrides=["train.seed=7"])
    card = repro.reproduction_card(cfg, data, dataset_dir=tmp_path)
    assert card["seed"] == 7 and card["config"]["train"]["seed"] == 7
    manifest = card["data"]["manifest"]
    assert manifest["files"] == {"x.inter": "ab" * 32}
    assert manifest["sha256"] == hashlib.sha256((tmp_path / "manifest.json").read_bytes()).hexdigest()
    assert len(card["git"]["commit"]) == 40 and isinstance(card["git"]["dirty"], bool)
    assert len(card["source"]["package_sha256"]) == 64
    assert card["environment"]["packages"]["numpy"] == np.__version__
    assert card["environment"]["device"]["count"] >= 1
    assert repro.reproduction_card(cfg, data, dataset_dir=tmp_path / "none")["data"]["manifest"] is None
    path = repro.write_card(tmp_path, cfg, data, dataset_dir=tmp_path)
    assert json.loads(path.read_text())["data"]["content_sha256"] == card["data"]["content_sha256"]
