"""The one config system: typed frozen dataclasses, filled from TOML files and `section.key=value` overrides.

Layers, later wins (as MMRec's overall → dataset → model precedence, but typed and checked):
  1. dataclass defaults (TrainConfig below, the model module's `Config`)
  2. experiments/configs/<model>/default.toml
  3. experiments/configs/<model>/<dataset>.toml
  4. an explicit --config file
  5. command-line overrides such as `model.alpha=0.3` or `train.learning_rate=5e-4`

A TOML file has sections `[model]` and `[train]`, and optionally `[grid]` (lists of model values to search, used by
experiments/). Any unknown section or key is an error that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from lgmrec_jax.models import get_model

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "experiments" / "configs"


class ConfigError(ValueError):
    pass


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

    def to_dict(self) -> dict:
        return {"model_name": self.model_name, "dataset": self.dataset, "model": dataclasses.asdict(self.model),
                "train": dataclasses.asdict(self.train), "grid": self.grid}

    def with_overrides(self, overrides: dict[str, Any], source: str = "overrides") -> "RunConfig":
        return _apply(self, _nest(overrides, source), source)


def load_config(model_name: str, dataset: str, config_file: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    model = get_model(model_name)
    cfg = RunConfig(model_name=model_name, dataset=dataset, model=model.Config(), train=TrainConfig())
    for path in (CONFIG_ROOT / model_name / "default.toml", CONFIG_ROOT / model_name / f"{dataset}.toml"):
        if path.exists():
            cfg = _apply(cfg, _read_toml(path), str(path))
    if config_file is not None:
        cfg = _apply(cfg, _read_toml(Path(config_file)), str(config_file))
    if overrides:
        cfg = _apply(cfg, _nest(parse_overrides(overrides), "command line"), "command line")
    return cfg


def from_dict(d: dict) -> RunConfig:
    """Inverse of RunConfig.to_dict (used when resuming from a run directory's config.json)."""
    model = get_model(d["model_name"])
    cfg = RunConfig(model_name=d["model_name"], dataset=d["dataset"], model=model.Config(), train=TrainConfig())
    return _apply(cfg, {"model": d["model"], "train": d["train"], "grid": d.get("grid", {})}, "config.json")


def parse_overrides(items) -> dict[str, Any]:
    """`model.alpha=0.3` → {"model.alpha": 0.3}; values are read as TOML (so lists, bools, strings work)."""
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
    path.write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None


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
    model = _update_dataclass(cfg.model, layer.get("model", {}), f"{source} [model]")
    train = _update_dataclass(cfg.train, layer.get("train", {}), f"{source} [train]")
    grid = dict(cfg.grid)
    for key, values in layer.get("grid", {}).items():
        if key not in {f.name for f in dataclasses.fields(model)}:
            raise ConfigError(f"{source} [grid]: unknown model key {key!r} for {cfg.model_name}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source} [grid]: {key} must be a non-empty list")
        grid[key] = [_coerce(_field_type(model, key), v, f"{source} [grid] {key}") for v in values]
    return dataclasses.replace(cfg, model=model, train=train, grid=grid)


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
