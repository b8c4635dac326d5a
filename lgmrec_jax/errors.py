"""How a failure reaches the user: a short message naming what is at fault, an exit code, a traceback on request.

Every command line entry point (`python -m lgmrec_jax.cli ...`, `python -m data_prep ...`, `python -m
experiments.NAME ...` through `run_as_script`) runs its work through `run_guarded`, the one place where exceptions
become messages:

  exit 2  InputError: the user's input is at fault (a config value, an argument, an id, a dataset file, a run
          directory that cannot be used); the message names the file, line, key or id and what to do.
          Also an OSError about a path the user gave (missing, a directory, not permitted).
  exit 1  Failure: the run itself failed for a known reason (training diverged, a download failed, an optional
          package is missing); the message says what happened.
          A full disk is one too, wherever it surfaces (our writers, orbax, numpy): found anywhere in the chain of
          causes, it is reported as such; the writers have already removed their partial files (atomic.py).
          Anything else is an internal error: one line with the exception, plus how to see the traceback.
  exit 130  interrupted (Ctrl-C): "interrupted" is printed and the process ends at once, without the interpreter's
          shutdown, where background threads of libraries (orbax's checkpoint writers) would otherwise print
          tracebacks of their own. A second Ctrl-C while the first is handled ends it the same way, silently.
          Nothing partial is left by this: our writers remove their temporary file as the interrupt passes through
          them (atomic.py), an unfinished orbax checkpoint keeps its temporary name and is never read, and the
          kernel releases the run directory's lock.

`--debug` on the command line, or LGMREC_DEBUG=1 in the environment, re-raises instead, so Python prints the full
traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import sys
import threading
from typing import Callable

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_ENV = "LGMREC_DEBUG"
DEBUG_HINT = f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback"

# OSErrors that, when they carry a file name, are about a path the user handed us rather than a fault of ours.
_PATH_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                errno.ENAMETOOLONG, errno.ELOOP}
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class InputError(ValueError):
    """The user's input is at fault; the message names the file, line, key or id and what to do about it."""


class Failure(RuntimeError):
    """A known failure that is not the input's fault (diverged training, a failed download, a missing package)."""


def debug_requested(argv: list[str] | None = None) -> bool:
    """True with `--debug` among the arguments or LGMREC_DEBUG set to anything but '' / '0'."""
    return "--debug" in (argv or ()) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


_LIBRARY_LOGGERS = ("absl", "concurrent.futures", "asyncio")  # where orbax's worker threads report failures
_DISK_FULL_TEXTS = tuple(os.strerror(code) for code in _DISK_FULL_ERRNOS)  # "No space left on device", ...
_QUOTED_PATH = re.compile(r'"(/[^"]+)"')


def disk_full(exc: BaseException) -> tuple[BaseException, str | None] | None:
    """(the exception saying the disk or quota is full, the file it names) among `exc` and its causes, if any.
    Libraries wrap it: orbax's tensorstore raises a ValueError whose text carries the OS message and the file."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return exc, exc.filename
        text = str(exc)
        if any(words in text for words in _DISK_FULL_TEXTS):
            paths = _QUOTED_PATH.findall(text)
            return exc, paths[-1] if paths else None
        exc = exc.__cause__ or exc.__context__
    return None


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, message) for an exception escaping a command."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    full = disk_full(exc)
    if full is not None:
        where = f" while writing {full[1]}" if full[1] else ""
        return EXIT_FAILURE, (f"error: no space left on the device{where}; no partial file is left in use. Free "
                              "some space and run the same command again (a training run: --resume RUN_DIR "
                              "continues from its last checkpoint)")
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
    if not debug:
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).addFilter(_drop_worker_thread_tracebacks)
    try:
        return command()
    except (Exception, KeyboardInterrupt) as exc:  # SystemExit (argparse's usage errors, exit 2) passes through
        if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, _exit_at_once)  # first, so a second Ctrl-C never meets Python code
        if debug:
            raise
        code, message = describe(exc)
        print(message, file=sys.stderr)
        if isinstance(exc, KeyboardInterrupt):
            _exit_at_once(signal.SIGINT, None)
        return code


def _drop_worker_thread_tracebacks(record: logging.LogRecord) -> bool:
    """Hides tracebacks that libraries (orbax's checkpoint writers, e.g. on a full disk) log from worker threads:
    the same exception reaches the main thread and is reported once, in one or two lines. --debug shows them."""
    return not (record.exc_info and record.threadName != threading.main_thread().name)


def _exit_at_once(signum, frame) -> None:
    """Ends the process with exit code 130 now, quietly (module docstring): what Ctrl-C does."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(EXIT_INTERRUPTED)


def run_as_script(main: Callable[[], int]) -> None:
    """Exits with `run_guarded(main)`: how the experiments/ drivers run as `python -m experiments.NAME`. Their
    arguments have no --debug, so LGMREC_DEBUG=1 is the way to the traceback."""
    sys.exit(run_guarded(main, debug=debug_requested([])))
