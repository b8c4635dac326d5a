"""Where errors become messages (errors.py) and what the project writes as JSON (jsonio.py)."""

import errno
import json
import math

import numpy as np
import pytest

from lgmrec_jax import errors, jsonio
from lgmrec_jax.config import ConfigError
from lgmrec_jax.data.mmrec import DataError


@pytest.mark.parametrize("exc, code, start", [
    (ConfigError("a.toml: train.epochs = 0: must be positive"), 2, "error: a.toml: train.epochs"),
    (DataError("x.inter:3: bad"), 2, "error: x.inter:3: bad"),
    (errors.Failure("training diverged"), 1, "error: training diverged"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/no/file"), 2, "error: /no/file: No such file"),
    (OSError(errno.ENOSPC, "No space left on device", "/full"), 1,
     "error: no space left on the device while writing /full; no partial file is left in use"),
    (KeyError("oops"), 1, "internal error: KeyError: 'oops'"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_exceptions_map_to_exit_codes_and_one_message(exc, code, start):
    got_code, message = errors.describe(exc)
    assert got_code == code and message.startswith(start)
    if message.startswith("internal error"):
        assert message.splitlines()[1] == errors.DEBUG_HINT


def test_a_full_disk_is_found_inside_a_library_s_own_exception():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/ckpt/0/state")
        except OSError as inner:
            raise RuntimeError("checkpoint save failed") from inner
    except RuntimeError as wrapped:
        code, message = errors.describe(wrapped)
    assert code == 1 and "no space left on the device while writing /ckpt/0/state" in message


def test_a_full_disk_reported_only_in_a_library_s_message_text_is_found_with_its_file():
    # What orbax's tensorstore raises when a checkpoint write meets a full disk (seen on a 300 KB tmpfs).
    exc = ValueError('RESOURCE_EXHAUSTED: Error writing "best_params.x/0.0" in OCDBT database at local file '
                     '"/runs/r/checkpoints/0.orbax-checkpoint-tmp/": Failed writing: "/runs/r/checkpoints/0.orbax-'
                     'checkpoint-tmp/d/6fc1": Failed to write 125082 bytes to file 8: No space left on device '
                     "[os_error_code='28']")
    code, message = errors.describe(exc)
    assert code == 1 and message.startswith(
        "error: no space left on the device while writing /runs/r/checkpoints/0.orbax-checkpoint-tmp/d/6fc1;")


def test_run_guarded_prints_or_reraises(capsys, monkeypatch):
    def boom():
        raise ConfigError("bad key")

    assert errors.run_guarded(boom) == 2
    assert capsys.readouterr().err == "error: bad key\n"
    with pytest.raises(ConfigError):
        errors.run_guarded(boom, debug=True)
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    assert errors.debug_requested([]) and errors.debug_requested(["--debug"])
    monkeypatch.setenv(errors.DEBUG_ENV, "0")
    assert not errors.debug_requested(["x"])


def test_strict_json_writes_null_for_non_finite_and_is_atomic(tmp_path):
    obj = {"a": math.nan, "b": [1.0, -math.inf, np.float32(2.5)], "c": (1, 2), "d": np.arange(2)}
    text = jsonio.dumps(obj)
    assert json.loads(text) == {"a": None, "b": [1.0, None, 2.5], "c": [1, 2], "d": [0, 1]}
    assert "NaN" not in text and "Infinity" not in text
    path = jsonio.write_json(tmp_path / "r.json", obj)
    assert json.loads(path.read_text())["a"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_read_json_names_the_damaged_file(tmp_path):
    path = tmp_path / "c.json"
    with pytest.raises(errors.InputError, match="c.json: run config not found"):
        jsonio.read_json(path, "run config")
    path.write_text('{\n  "a": 1,\n  "b": \n')
    with pytest.raises(errors.InputError, match=r"c.json:4: run config is not valid JSON"):
        jsonio.read_json(path, "run config")
    path.write_bytes(b"\xff{}")
    with pytest.raises(errors.InputError, match="not UTF-8"):
        jsonio.read_json(path, "run config")
