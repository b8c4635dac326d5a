"""Test-only fault injection for subprocesses: a disk that fills up while a file is being written.

tests/test_write_rule_cli.py puts this folder first on PYTHONPATH and sets LGMREC_FAULT_ENOSPC=SUBSTRING; every file
then opened for writing whose path contains SUBSTRING accepts a few bytes and then fails with ENOSPC, as a write to
a full disk does. Without the variable this module does nothing. No project code knows about it.
"""

import builtins
import errno
import os

_PATTERN = os.environ.get("LGMREC_FAULT_ENOSPC")
_BYTES_BEFORE_FULL = 16  # some bytes land, so a writer that does not clean up leaves a truncated file


class _FillingFile:
    """Wraps a real file: writes go through until the budget is spent, then raise ENOSPC."""

    def __init__(self, file, name: str):
        self._file, self._name, self._left = file, name, _BYTES_BEFORE_FULL

    def write(self, data):
        if len(data) > self._left:
            self._file.write(data[: self._left])
            self._left = 0
            self._file.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._name)
        self._left -= len(data)
        return self._file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def __getattr__(self, name):  # flush, fileno, close, seek, tell, ...
        return getattr(self._file, name)


if _PATTERN:
    _real_open = builtins.open

    def _open(file, mode="r", *args, **kwargs):
        handle = _real_open(file, mode, *args, **kwargs)
        writing = any(flag in mode for flag in "wax+")
        if writing and isinstance(file, (str, os.PathLike)) and _PATTERN in os.fspath(file):
            return _FillingFile(handle, os.fspath(file))
        return handle

    builtins.open = _open
