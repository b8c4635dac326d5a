"""`python -m data_prep <dataset> [--raw DIR] [options]` (what `make data DATASET=... RAW=...` runs).

  ml100k               build the default dataset from the recbole wheel (data_prep/movielens.py)
  synthetic-<scale>    write a synthetic dataset to data/ in the MMRec format (tiny, baby, sports, clothing, elec)
  baby|sports|clothing|elec|<name> --raw DIR [--replace]
                       build from raw Amazon 2014 files (data_prep/amazon.py); without --raw, validate an
                       already-prepared folder data/<name>/ against the known statistics, with the trainer's
                       own checks (same messages and line numbers, same report of merged/dropped rows)

An existing output folder is never replaced unless --replace is given and data_prep built it (its manifest.json
lists every file in it); a folder downloaded from MMRec or holding anything else is refused before any work.

--debug (or LGMREC_DEBUG=1) shows the traceback of an error; otherwise an error is one message naming the file
(and line) at fault, with exit code 2 for bad input and 1 for a failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lgmrec_jax import jsonio
from lgmrec_jax.errors import InputError, debug_requested, run_guarded


def main(argv: list[str]) -> int:
    """Errors become a message and an exit code (2 bad input, 1 failure; lgmrec_jax/errors.py); --debug or
    LGMREC_DEBUG=1 shows the traceback."""
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    return run_guarded(lambda: _dispatch(argv), debug=debug_requested(argv))


def _dispatch(argv: list[str]) -> int:
    name, rest = argv[0], argv[1:]
    if name == "ml100k":
        from data_prep import movielens
        return movielens.main(rest)
    if name.startswith("synthetic-"):
        from data_prep import synthetic_export
        return synthetic_export.main([name.removeprefix("synthetic-"), *rest])
    from data_prep import amazon
    from lgmrec_jax.data.sources import AMAZON_CATEGORIES, DatasetMissing, missing_message
    if "--raw" in rest:
        if "--category" not in rest:
            rest = ["--category", AMAZON_CATEGORIES.get(name, name), *rest]
        if "--out" not in rest:
            rest = [*rest, "--out", f"data/{name}"]
        return amazon.main(rest)
    unknown = [arg for arg in rest if arg != "--debug"]
    if unknown:
        raise InputError(f"python -m data_prep {name}: unexpected argument(s) {unknown}; to build from raw "
                             "files pass --raw DIR, to validate data/<name>/ pass nothing")
    folder = Path("data") / name
    if not folder.is_dir():
        raise DatasetMissing(missing_message(name, folder))
    report = amazon.validate_prepared(folder, name)  # <name>.inter, the file the trainer loads
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"{folder}: valid MMRec dataset")
    print(jsonio.dumps(report, indent=2))  # JSON, as `python -m data_prep.amazon --validate-only` prints it
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
