"""How a failure reaches the user: a short message naming what is at fault, an exit code, a traceback on request.

Every command line entry point (`python -m lgmrec_jax.cli ...`, `python -m data_prep ...`, `python -m
experiments.NAME ...` through `run_as_script`) runs its work through `run_guarded`, the one place where exceptions
become messages:

  exit 2  InputError: the user's input is at fault (a config value, an argument, an id, a dataset file, a run
          directory that cannot be used); the message names the file, line, key or id and what to do.
          Also an OSError about a path the user gave (missing, a directory, not permitted).
  exit 1  Failure: the run itself failed for a known reason (training diverged, a download failed, an optional
          package is missing); the message says what happened.
          Anything else is an internal error: one line with the exception, plus how to see the traceback.
  exit 130  interrupted (Ctrl-C).

`--debug` on the command line, or LGMREC_DEBUG=1 in the environment, re-raises instead, so Python prints the full
traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Callable

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_ENV = "LGMREC_DEBUG"
DEBUG_HINT = f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback"

# OSErrors that, when they carry a file name, are about a path the user handed us rather than a fault of ours.
_PATH_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                errno.ENAMETOOLONG, errno.ELOOP}


class InputError(ValueError):
    """The user's input is at fault; the message names the file, line, key or id and what to do about it."""


class Failure(RuntimeError):
    """A known failure that is not the input's fault (diverged training, a failed download, a missing package)."""


def debug_requested(argv: list[str] | None = None) -> bool:
    """True with `--debug` among the arguments or LGMREC_DEBUG set to anything but '' / '0'."""
    return "--debug" in (argv or ()) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, message) for an exception escaping a command."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, InputError):
        return EXIT_BAD_INPUT, f"error: {exc}"
    if isinstance(exc, Failure):
        return EXIT_FAILURE, f"error: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None:
        what = exc.strerror or type(exc).__name__
        code = EXIT_BAD_INPUT if exc.errno in _PATH_ERRNOS else EXIT_FAILURE
        return code, f"error: {exc.filename}: {what}"
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return EXIT_FAILURE, f"internal error: {type(exc).__name__}: {first_line}\n{DEBUG_HINT}"


def run_guarded(command: Callable[[], int], debug: bool = False) -> int:
    """Runs `command` and turns any exception into a message on stderr and an exit code (module docstring)."""
    try:
        return command()
    except (Exception, KeyboardInterrupt) as exc:  # SystemExit (argparse's usage errors, exit 2) passes through
        if debug:
            raise
        code, message = describe(exc)
        print(message, file=sys.stderr)
        return code


def run_as_script(main: Callable[[], int]) -> None:
    """Exits with `run_guarded(main)`: how the experiments/ drivers run as `python -m experiments.NAME`. Their
    arguments have no --debug, so LGMREC_DEBUG=1 is the way to the traceback."""
    sys.exit(run_guarded(main, debug=debug_requested([])))
