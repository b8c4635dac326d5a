import pytest

from lgmrec_jax.config import ConfigError, from_dict, load_config, parse_overrides


def test_defaults_and_overrides_are_typed():
    cfg = load_config("lightgcn", "ml100k", overrides=["model.n_ui_layers=3", "train.learning_rate=1",
                                                        "train.topk=[5, 10]", "train.valid_metric=recall@10",
                                                        "train.backend=segment_sum"])
    assert cfg.model.n_ui_layers == 3
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.topk == (5, 10)
    assert cfg.train.backend == "segment_sum"
    assert cfg.train.stopping_step == 20 and cfg.train.train_batch_size == 2048  # MMRec defaults


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['n_layerz'\]"):
        load_config("lightgcn", "ml100k", overrides=["model.n_layerz=3"])
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['modle'\]"):
        load_config("lightgcn", "ml100k", overrides=["modle.x=3"])


def test_type_errors_are_named():
    with pytest.raises(ConfigError, match="n_ui_layers: expected an integer"):
        load_config("lightgcn", "ml100k", overrides=["model.n_ui_layers=2.5"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_overrides(["alpha"])


def test_toml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nreg_weight = 1e-4\nfoo = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml \[model\]: unknown key\(s\) \['foo'\]"):
        load_config("lightgcn", "ml100k", config_file=bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_config("lightgcn", "ml100k", config_file=broken)


def test_round_trip_through_dict():
    cfg = load_config("lightgcn", "ml100k", overrides=["model.reg_weight=0.5"])
    assert from_dict(cfg.to_dict()) == cfg


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        load_config("nope", "ml100k")
