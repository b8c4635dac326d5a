import pytest

from lgmrec_jax.config import ConfigError, from_dict, load_config, parse_overrides, settings_of


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


def test_names_checked_without_jax_agree_with_the_modules():
    from lgmrec_jax.config import BACKEND_NAMES, METRIC_NAMES
    from lgmrec_jax.evaluation import METRICS
    from lgmrec_jax.graph.sparse import BACKENDS
    assert METRIC_NAMES == METRICS
    assert set(BACKEND_NAMES) == {"auto", *BACKENDS}
    from lgmrec_jax import models, precision
    from lgmrec_jax.models import hyperparams
    assert precision.FEATURE_DTYPES and precision.MATMUL_PRECISIONS  # imported from the config: one list each
    assert set(hyperparams.CONFIGS) == set(models.MODEL_MODULES)
    for name, config_class in hyperparams.CONFIGS.items():
        assert models.get_model(name).Config is config_class


def test_a_config_error_imports_no_jax():
    """Bad --set values are reported before JAX is imported (it takes seconds): the error path stays light."""
    import subprocess
    import sys
    from pathlib import Path
    code = ("import sys\nfrom lgmrec_jax import cli\n"
            "code = cli.main(['train', '--set', 'model.nope=1'])\n"
            "assert code == 2, code\nassert 'jax' not in sys.modules, 'jax imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert "unknown key(s) ['nope']" in proc.stderr


def test_range_errors_name_key_value_and_the_layer_that_set_it(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text("[train]\neval_batch_size = 0\n[model]\nalpha = inf\n")
    with pytest.raises(ConfigError) as err:
        load_config("lgmrec", "ml100k", config_file=toml, overrides=["train.epochs=-3"])
    lines = str(err.value).splitlines()  # every problem, one per line
    assert f"{toml}: train.eval_batch_size = 0: must be a positive integer" in lines
    assert "command line: train.epochs = -3: must be a positive integer" in lines
    assert f"{toml}: model.alpha = inf: must be finite and a number >= 0" in lines
    grid = tmp_path / "grid.toml"
    grid.write_text("[grid]\nkeep_rate = [0.5, 0.0]\n")
    with pytest.raises(ConfigError, match=r"grid.toml: grid.keep_rate = 0.0: must be a probability in \(0, 1\]"):
        load_config("lgmrec", "ml100k", config_file=grid)


def test_device_count_and_batch_split_are_checked_when_known():
    with pytest.raises(ConfigError, match="train.devices = 3: only 2 device"):
        load_config("lightgcn", "x", overrides=["train.devices=3"], available_devices=2)
    with pytest.raises(ConfigError, match=r"train.train_batch_size = 2047 does not split evenly over the 2 devices"):
        load_config("lightgcn", "x", overrides=["train.train_batch_size=2047"], available_devices=2)
    assert load_config("lightgcn", "x", overrides=["train.devices=3"]).train.devices == 3  # unknown: not checked


def test_saved_config_errors_name_the_file(tmp_path):
    from lgmrec_jax.config import load_saved_config
    path = tmp_path / "config.json"
    with pytest.raises(ConfigError, match="no config.json there"):
        load_saved_config(path)
    path.write_text('{"model_name": "lightgcn"}')
    with pytest.raises(ConfigError, match=r"config.json: lacks dataset, model, train"):
        load_saved_config(path)
    path.write_text('{"model_name": "lightgcn", "dataset": "x", "model": {}, "train": {"epochs": 0}}')
    with pytest.raises(ConfigError, match=rf"{path}: train.epochs = 0"):
        load_saved_config(path)


def test_model_cross_key_checks_need_the_data():
    from lgmrec_jax.config import check_fits_data
    cfg = load_config("lgmrec", "x", overrides=["model.feat_embed_dim=32"])  # fine without modalities
    check_fits_data(cfg, n_items=100, modalities=())
    with pytest.raises(ConfigError, match=r"feat_embed_dim \(32\) must equal embedding_size .*command line"):
        check_fits_data(cfg, n_items=100, modalities=("text",))
    with pytest.raises(ConfigError, match=r"train.topk = \[10, 20\]: x has only 15 items"):
        check_fits_data(cfg, n_items=15, modalities=())


def test_epoch_program_and_precision_keys_are_checked():
    with pytest.raises(ConfigError) as err:
        load_config("lgmrec", "ml100k", overrides=["train.steps_per_program=-1", "train.matmul_precision=fp8",
                                                   "train.feature_dtype=float16"])
    lines = str(err.value).splitlines()
    assert "command line: train.steps_per_program = -1: must be an integer >= 0 (0 = the whole epoch as one " \
           "program)" in lines
    assert "command line: train.matmul_precision = 'fp8': must be one of float32, tensorfloat32, bfloat16" in lines
    assert "command line: train.feature_dtype = 'float16': must be one of float32, bfloat16" in lines
    cfg = load_config("lgmrec", "ml100k", overrides=["train.steps_per_program=4", "train.feature_dtype=bfloat16"])
    assert cfg.train.steps_per_program == 4 and cfg.train.feature_dtype == "bfloat16"


def test_synthetic_scales_take_the_settings_of_the_data_they_imitate():
    clothing = load_config("lgmrec", "synthetic-clothing")
    assert (clothing.model.hyper_num, clothing.model.n_hyper_layer, clothing.model.keep_rate) == (64, 2, 0.2)
    assert clothing.origins["model.hyper_num"].endswith("lgmrec/clothing.toml")
    assert clothing.dataset == "synthetic-clothing"  # the run still names the data it trained on
    assert load_config("gume", "synthetic-clothing").model.n_layers == 1
    assert load_config("gume", "10x-elec").origins.get("model.n_layers", "").endswith("gume/elec.toml")
    # A scale that imitates no dataset keeps the defaults.
    assert load_config("lgmrec", "synthetic-tiny").model.hyper_num == 4
    assert settings_of("synthetic-sports") == "sports" and settings_of("baby") == "baby"
