"""The one config system: typed frozen dataclasses, filled from TOML files and `section.key=value` overrides.

Layers, later wins (as MMRec's overall → dataset → model precedence, but typed and checked):
  1. dataclass defaults (TrainConfig below, the model module's `Config`)
  2. experiments/configs/<model>/default.toml
  3. experiments/configs/<model>/<dataset>.toml (a synthetic scale reads the file of the dataset it imitates:
     `synthetic-clothing` → clothing.toml, `10x-elec` → elec.toml; see `settings_of`)
  4. an explicit --config file
  5. command-line overrides such as `model.alpha=0.3` or `train.learning_rate=5e-4`

A TOML file has sections `[model]` and `[train]`, and optionally `[grid]` (lists of model values to search, used by
experiments/). Any unknown section or key is an error that names the file and the key, and so is a value out of range
(`validate`: one line per key in TRAIN_CHECKS / MODEL_CHECKS): the message names the layer that set it.

Nothing here imports JAX (the model hyperparameters live in models/hyperparams.py), so a config mistake is reported
in a fraction of a second; tests/test_config.py checks that it stays so.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Callable

from lgmrec_jax import jsonio
from lgmrec_jax.errors import InputError
from lgmrec_jax.models import MODEL_MODULES
from lgmrec_jax.models.hyperparams import CONFIGS, VALIDATORS

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "experiments" / "configs"
DEFAULTS = "defaults"  # the source named for a value nobody set


class ConfigError(InputError):
    """A config file, override or value is wrong; the message names the source and the key."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Trainer settings; names and defaults follow MMRec's overall.yaml (SPEC §2.1)."""

    seed: int = 999
    epochs: int = 1000
    stopping_step: int = 20  # stop after stopping_step + 1 epochs without a strictly better valid score
    train_batch_size: int = 2048
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # coupled L2 as torch.optim.Adam(weight_decay=...)
    learning_rate_scheduler: tuple[float, float] = (1.0, 50.0)  # lr · s0 ** (epoch / s1)
    eval_step: int = 1
    eval_batch_size: int = 4096
    topk: tuple[int, ...] = (10, 20)
    valid_metric: str = "recall@20"
    backend: str = "auto"  # bcoo | bcsr | segment_sum | auto (per platform, see graph/sparse.py)
    devices: int = 0  # data-parallel over this many local devices; 0 = all
    data_dir: str = "data"
    cache_dir: str = ".cache"
    runs_dir: str = "runs"
    checkpoint_every: int = 1  # epochs; 0 disables checkpoints
    steps_per_program: int = 0  # train steps per dispatched program; 0 = the whole epoch in one lax.scan
    matmul_precision: str = "float32"  # float32 | tensorfloat32 | bfloat16 (precision.py; no effect on CPU)
    feature_dtype: str = "float32"  # float32 | bfloat16: frozen feature tables on the device (precision.py)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model_name: str
    dataset: str
    model: Any
    train: TrainConfig
    grid: dict = dataclasses.field(default_factory=dict)
    # Which layer set each "section.key" (a file path, "command line", ...); only for messages, so not compared.
    origins: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict:
        return {"model_name": self.model_name, "dataset": self.dataset, "model": dataclasses.asdict(self.model),
                "train": dataclasses.asdict(self.train), "grid": self.grid}

    def with_overrides(self, overrides: dict[str, Any], source: str = "overrides") -> "RunConfig":
        return _apply(self, _nest(overrides, source), source)


# Scales named otherwise than `synthetic-<dataset>` that imitate a dataset (lgmrec_jax/aot/scales.py).
SETTINGS_OF = {"10x-elec": "elec"}


def settings_of(dataset: str) -> str:
    """The dataset whose config file applies: a synthetic scale takes the settings of the data it imitates, so a
    row "at Clothing size" runs Clothing's model (64 hyperedges, 2 hypergraph layers), not the defaults."""
    if dataset in SETTINGS_OF:
        return SETTINGS_OF[dataset]
    return dataset.removeprefix("synthetic-")


def settings_file(model_name: str, dataset: str) -> Path | None:
    """The dataset-level config file `load_config` reads for this pair, or None (defaults only)."""
    path = CONFIG_ROOT / model_name / f"{settings_of(dataset)}.toml"
    return path if path.exists() else None


def load_config(model_name: str, dataset: str, config_file: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = (), available_devices: int | None = None) -> RunConfig:
    """The resolved, validated config. `available_devices` (len(jax.devices())) also checks train.devices."""
    model_config = _model_config_class(model_name, "--model")
    cfg = RunConfig(model_name=model_name, dataset=dataset, model=model_config(), train=TrainConfig())
    for path in (CONFIG_ROOT / model_name / "default.toml", settings_file(model_name, dataset)):
        if path is not None and path.exists():
            cfg = _apply(cfg, _read_toml(path), str(path))
    if config_file is not None:
        cfg = _apply(cfg, _read_toml(Path(config_file)), str(config_file))
    if overrides:
        cfg = _apply(cfg, _nest(parse_overrides(overrides), "command line"), "command line")
    validate(cfg, available_devices)
    return cfg


def from_dict(d: dict, source: str = "config.json", available_devices: int | None = None) -> RunConfig:
    """Inverse of RunConfig.to_dict (used when resuming from a run directory's config.json), validated."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a JSON object with model_name, dataset, model, train")
    missing = [k for k in ("model_name", "dataset", "model", "train") if k not in d]
    if missing:
        raise ConfigError(f"{source}: lacks {', '.join(missing)}; not a config written by this project")
    for key in ("model", "train", "grid"):
        if not isinstance(d.get(key, {}), dict):
            raise ConfigError(f"{source}: {key!r} must be an object, got {d[key]!r}")
    model_config = _model_config_class(d["model_name"], f"{source} model_name")
    cfg = RunConfig(model_name=d["model_name"], dataset=str(d["dataset"]), model=model_config(), train=TrainConfig())
    cfg = _apply(cfg, {"model": d["model"], "train": d["train"], "grid": d.get("grid", {})}, source)
    validate(cfg, available_devices)
    return cfg


def load_saved_config(path: str | Path, available_devices: int | None = None) -> RunConfig:
    """The config a run directory recorded (its config.json), with errors naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path.parent}: no config.json there, so it is not a run directory")
    return from_dict(jsonio.read_json(path, "run config"), str(path), available_devices)


def _model_config_class(name, where: str) -> type:
    """The model's hyperparameter dataclass, found without importing the model (and JAX)."""
    if name not in MODEL_MODULES:
        close = difflib.get_close_matches(str(name), MODEL_MODULES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{where}: unknown model {name!r}{hint}; choose one of {', '.join(MODEL_MODULES)}")
    return CONFIGS[name]


# ----------------------------------------------------------------------------------------------------------------
# Range checks. One line per key: (test of the coerced value, what the value must be). A key without a line is only
# type-checked, and a float anywhere must be finite. New keys get a check by adding a line here.

Check = tuple[Callable[[Any], bool], str]
# Every int and float of a config ends in an int32 / float32 somewhere (a seed, a step count, a weight): a value
# beyond that range would overflow there, far from the key, so it is refused here, naming the key.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38
POSITIVE_INT: Check = (lambda v: v >= 1, "a positive integer")
NON_NEGATIVE_INT: Check = (lambda v: v >= 0, "an integer >= 0")
POSITIVE: Check = (lambda v: v > 0, "a positive number")
NON_NEGATIVE: Check = (lambda v: v >= 0, "a number >= 0")
NON_EMPTY: Check = (lambda v: bool(v.strip()), "a non-empty path")

# What evaluation.py computes and graph/sparse.py implements, spelled out here so that loading a config needs no
# JAX import (tests/test_config.py checks that these lists agree with the modules).
METRIC_NAMES = ("recall", "ndcg", "precision", "map")
BACKEND_NAMES = ("auto", "bcoo", "bcsr", "segment_sum")
MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16")  # precision.py
FEATURE_DTYPES = ("float32", "bfloat16")

TRAIN_CHECKS: dict[str, Check] = {
    "seed": NON_NEGATIVE_INT,
    "epochs": POSITIVE_INT,
    "stopping_step": NON_NEGATIVE_INT,
    "train_batch_size": POSITIVE_INT,
    "learning_rate": (lambda v: v >= 0, "a number >= 0 (0 keeps the initial parameters)"),
    "weight_decay": NON_NEGATIVE,
    "learning_rate_scheduler": (lambda v: v[0] > 0 and v[1] > 0,
                                "[factor, period] with both > 0 (lr · factor ** (epoch / period))"),
    "eval_step": POSITIVE_INT,
    "eval_batch_size": POSITIVE_INT,
    "topk": (lambda v: len(v) > 0 and min(v) >= 1 and len(set(v)) == len(v),
             "a non-empty list of distinct positive integers, e.g. [10, 20]"),
    "backend": (lambda v: v in BACKEND_NAMES, f"one of {', '.join(BACKEND_NAMES)}"),
    "devices": (lambda v: v >= 0, "an integer >= 0 (0 = every local device)"),
    "data_dir": NON_EMPTY,
    "cache_dir": NON_EMPTY,
    "runs_dir": NON_EMPTY,
    "checkpoint_every": (lambda v: v >= 0, "an integer >= 0 (0 = no checkpoints)"),
    "steps_per_program": (lambda v: v >= 0, "an integer >= 0 (0 = the whole epoch as one program)"),
    "matmul_precision": (lambda v: v in MATMUL_PRECISIONS, f"one of {', '.join(MATMUL_PRECISIONS)}"),
    "feature_dtype": (lambda v: v in FEATURE_DTYPES, f"one of {', '.join(FEATURE_DTYPES)}"),
}

# By key name, for whichever model has the key (the names mean the same thing in every model, as in MMRec).
MODEL_CHECKS: dict[str, Check] = {
    "embedding_size": POSITIVE_INT,
    "feat_embed_dim": POSITIVE_INT,
    "n_ui_layers": NON_NEGATIVE_INT,
    "n_mm_layers": NON_NEGATIVE_INT,
    "n_layers": NON_NEGATIVE_INT,
    "n_hyper_layer": POSITIVE_INT,
    "hyper_num": POSITIVE_INT,
    "knn_k": POSITIVE_INT,
    "keep_rate": (lambda v: 0 < v <= 1, "a probability in (0, 1]"),
    "alpha": NON_NEGATIVE,
    "tau": POSITIVE,
    "bm_temp": POSITIVE,
    "um_temp": POSITIVE,
    "reg_weight": NON_NEGATIVE,
    "reg_weight_1": NON_NEGATIVE,
    "reg_weight_2": NON_NEGATIVE,
    "cl_weight": NON_NEGATIVE,
    "bm_loss": NON_NEGATIVE,
    "um_loss": NON_NEGATIVE,
    "vt_loss": NON_NEGATIVE,
    "dropout": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "mm_image_weight": (lambda v: 0 <= v <= 1, "a weight in [0, 1]"),
}


def computed_metrics(topk) -> list[str]:
    return [f"{m}@{k}" for k in topk for m in METRIC_NAMES]


def validate(cfg: RunConfig, available_devices: int | None = None) -> None:
    """Range-checks every value; raises one ConfigError listing each bad key, its value and the layer that set it.

    `available_devices` (the number of local devices) also checks train.devices and that the batch splits evenly.
    """
    problems = []

    def bad(key: str, value, what: str) -> None:
        shown = list(value) if isinstance(value, tuple) else value
        problems.append(f"{cfg.origins.get(key, DEFAULTS)}: {key} = {shown!r}: must be {what}")

    def check(key: str, value, rule: Check | None) -> None:
        numbers = value if isinstance(value, tuple) else (value,)
        if any(isinstance(x, float) and not math.isfinite(x) for x in numbers):
            bad(key, value, "finite" + (f" and {rule[1]}" if rule else ""))
        elif any(isinstance(x, float) and abs(x) > FLOAT32_MAX for x in numbers):
            bad(key, value, f"within float32's range (|x| <= {FLOAT32_MAX:.4g}), the dtype it is used in")
        elif any(isinstance(x, int) and not isinstance(x, bool) and not INT32_MIN <= x <= INT32_MAX
                 for x in numbers):
            bad(key, value, f"an integer of at most {INT32_MAX} in magnitude (int32, the dtype it is used in)")
        elif rule is not None and not rule[0](value):
            bad(key, value, rule[1])

    for f in dataclasses.fields(cfg.train):
        check(f"train.{f.name}", getattr(cfg.train, f.name), TRAIN_CHECKS.get(f.name))
    for f in dataclasses.fields(cfg.model):
        check(f"model.{f.name}", getattr(cfg.model, f.name), MODEL_CHECKS.get(f.name))
    for key, values in cfg.grid.items():
        for value in values:
            check(f"grid.{key}", value, MODEL_CHECKS.get(key))

    tc = cfg.train
    computed = computed_metrics(tc.topk)
    if tc.topk and tc.valid_metric not in computed:
        at = tc.valid_metric.partition("@")[2]
        hint = f", or add {at} to train.topk" if at.isdigit() else ""
        problems.append(f"{cfg.origins.get('train.valid_metric', DEFAULTS)}: train.valid_metric = "
                        f"{tc.valid_metric!r} is not computed with train.topk = {list(tc.topk)}; choose one of "
                        f"{', '.join(computed)}{hint}")
    if 1 <= tc.epochs < tc.eval_step:
        problems.append(f"{cfg.origins.get('train.eval_step', DEFAULTS)}: train.eval_step = {tc.eval_step} exceeds "
                        f"train.epochs = {tc.epochs}: no validation epoch would run, so there would be no best "
                        "epoch to test; lower train.eval_step")
    if available_devices is not None and tc.devices >= 0:
        if tc.devices > available_devices:
            problems.append(f"{cfg.origins.get('train.devices', DEFAULTS)}: train.devices = {tc.devices}: only "
                            f"{available_devices} device(s) available here; use 0 (all) or at most "
                            f"{available_devices}")
        elif tc.train_batch_size >= 1 and tc.train_batch_size % (tc.devices or available_devices):
            n = tc.devices or available_devices
            problems.append(f"{cfg.origins.get('train.train_batch_size', DEFAULTS)}: train.train_batch_size = "
                            f"{tc.train_batch_size} does not split evenly over the {n} devices in use "
                            f"(train.devices = {tc.devices}); use a multiple of {n}")
    if problems:
        raise ConfigError("\n".join(problems))


def check_fits_data(cfg: RunConfig, n_items: int, modalities: tuple[str, ...]) -> None:
    """Checks that need the dataset: top-k within the item count, and the model's own cross-key checks."""
    if max(cfg.train.topk) > n_items:
        raise ConfigError(f"{cfg.origins.get('train.topk', DEFAULTS)}: train.topk = {list(cfg.train.topk)}: "
                          f"{cfg.dataset} has only {n_items} items; use values <= {n_items}")
    knn_k = getattr(cfg.model, "knn_k", None)
    if knn_k is not None and knn_k > n_items:
        raise ConfigError(f"{cfg.origins.get('model.knn_k', DEFAULTS)}: model.knn_k = {knn_k}: {cfg.dataset} has only "
                          f"{n_items} items; use a value <= {n_items}")
    model_check = VALIDATORS.get(cfg.model_name)
    if model_check is not None:
        try:
            model_check(cfg.model, modalities)
        except ValueError as e:
            sources = sorted({v for k, v in cfg.origins.items() if k.startswith("model.")}) or [DEFAULTS]
            raise ConfigError(f"{e} (model settings from {', '.join(sources)})") from None


def parse_overrides(items) -> dict[str, Any]:
    """`model.alpha=0.3` → {"model.alpha": 0.3}; values are read as TOML (so lists, bools, strings work).

    Every item applies, in order (the command line's repeated --set options are concatenated): a key given twice
    takes the later value, as a later config layer wins over an earlier one."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. model.alpha=0.3)")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word, e.g. train.backend=bcsr
        out[key.strip()] = value
    return out


def save_config(cfg: RunConfig, path: Path) -> None:
    jsonio.write_json(path, cfg.to_dict(), sort_keys=True)


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; --config takes a TOML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: config file not readable (permission denied)") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); a config file is TOML text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def _nest(flat: dict[str, Any], source: str) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    return nested


def _apply(cfg: RunConfig, layer: dict, source: str) -> RunConfig:
    unknown = set(layer) - {"model", "train", "grid"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected model, train, grid")
    for section in ("model", "train", "grid"):
        if not isinstance(layer.get(section, {}), dict):
            raise ConfigError(f"{source}: [{section}] must be a table of key = value lines")
    model = _update_dataclass(cfg.model, layer.get("model", {}), f"{source} [model]")
    train = _update_dataclass(cfg.train, layer.get("train", {}), f"{source} [train]")
    grid = dict(cfg.grid)
    for key, values in layer.get("grid", {}).items():
        if key not in {f.name for f in dataclasses.fields(model)}:
            raise ConfigError(f"{source} [grid]: unknown model key {key!r} for {cfg.model_name}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source} [grid]: {key} must be a non-empty list")
        grid[key] = [_coerce(_field_type(model, key), v, f"{source} [grid] {key}") for v in values]
    origins = dict(cfg.origins)
    origins.update({f"{section}.{key}": source for section in ("model", "train", "grid")
                    for key in layer.get(section, {})})
    return dataclasses.replace(cfg, model=model, train=train, grid=grid, origins=origins)


def _update_dataclass(obj, values: dict, source: str):
    fields = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    coerced = {k: _coerce(_field_type(obj, k), v, f"{source} {k}") for k, v in values.items()}
    return dataclasses.replace(obj, **coerced)


def _field_type(obj, name: str):
    return typing.get_type_hints(type(obj))[name]


def _coerce(tp, value, where: str):
    """Checks and converts a TOML value to the field's annotated type (int→float, list→tuple, Optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not a {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise ConfigError(f"{where}: expected {len(item_types)} values, got {len(value)}")
        return tuple(_coerce(t, v, where) for t, v in zip(item_types, value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
