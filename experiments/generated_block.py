"""The generated parts of BENCHMARKS.md: each command owns the text between its two markers and nothing else.

`make bench`, its step account and `make aot-table` each write one block. Rewriting a block keeps everything around
it (hand-written notes, the other commands' blocks) as it was; a file without the block gets it appended. The file is
written whole or not at all (lgmrec_jax/atomic.py), so a crash mid-write never leaves half a BENCHMARKS.md.
"""

from __future__ import annotations

from pathlib import Path

from lgmrec_jax import atomic


def replace(path: Path, begin: str, end: str, block: str, new_file: str = "# Benchmarks\n") -> None:
    """Writes `block` (which starts with `begin` and ends with `end` and a newline) in place of the text between
    the markers in `path`; appends it when the markers are absent; starts the file with `new_file` if it is missing."""
    if not (block.startswith(begin) and block.rstrip("\n").endswith(end)):
        raise ValueError("a generated block must start and end with its own markers")
    text = path.read_text() if path.exists() else new_file
    start, stop = text.find(begin), text.find(end)
    if 0 <= start < stop:
        text = text[:start] + block + text[stop + len(end):].removeprefix("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic.write_text(path, text)
