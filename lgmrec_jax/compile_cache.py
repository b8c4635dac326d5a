"""JAX's persistent compilation cache for training runs: a resume, an extension or the next sweep point loads the
compiled programs from disk instead of compiling them again.

    python -m lgmrec_jax.cli train ... --compilation-cache DIR     (default .cache/jax; `none` turns it off)

The cache key is JAX's own (the program, its input shapes and shardings, compiler flags and versions, the device
kind), so a changed config or dataset simply misses. Entries are small next to the compile time they save on an
accelerator (minutes on TPU for the larger programs; BENCHMARKS.md), so every program that took over
MIN_COMPILE_SECONDS to compile is kept. The directory is created if missing and only ever receives JAX's cache files.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DIR = ".cache/jax"
ENV = "LGMREC_COMPILATION_CACHE"  # the default for --compilation-cache
OFF = ("none", "off", "")
MIN_COMPILE_SECONDS = 0.5


def default_dir() -> str:
    return os.environ.get(ENV, DEFAULT_DIR)


def enable(directory: str | os.PathLike | None) -> Path | None:
    """Points JAX's persistent cache at `directory` (None or 'none': leaves it off). Returns the directory used."""
    if directory is None or str(directory).strip().lower() in OFF:
        return None
    import jax

    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
