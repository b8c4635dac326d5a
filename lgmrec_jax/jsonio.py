"""Strict JSON in and out: every JSON file the project writes goes through `dumps` / `write_json`.

Python's json writes NaN and ±inf as bare `NaN` / `Infinity`, which strict parsers (jq, JavaScript, Go, most
JSON libraries) reject. Here a non-finite float becomes null (a missing value, which is what a NaN score means)
and `allow_nan=False` guarantees that nothing slips through. Files are written to a temporary sibling and renamed,
so a crash never leaves half a JSON file behind. `read_json` turns a missing or malformed file into an InputError
naming it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lgmrec_jax import atomic
from lgmrec_jax.errors import InputError


def to_strict(obj: Any) -> Any:
    """`obj` with non-finite floats replaced by None, tuples by lists and numpy scalars/arrays by Python values."""
    if isinstance(obj, dict):
        return {key: to_strict(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_strict(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return to_strict(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, **kwargs) -> str:
    return json.dumps(to_strict(obj), allow_nan=False, **kwargs)


def write_json(path: str | Path, obj: Any, indent: int | None = 2, **kwargs) -> Path:
    """Writes `obj` as strict JSON (plus a newline) by the project's write rule (lgmrec_jax/atomic.py): a temporary
    sibling renamed into place, removed on any failure."""
    return atomic.write_text(path, dumps(obj, indent=indent, **kwargs) + "\n")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parses `path`; a missing, unreadable or malformed file is an InputError naming it (and the line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a {what}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {e.start}); the file is damaged") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: {what} is not valid JSON ({e.msg}); the file is damaged") from None
