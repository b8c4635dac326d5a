"""`python -m data_prep <dataset> [--raw DIR] [options]` (what `make data DATASET=... RAW=...` runs).

  ml100k               build the default dataset from the recbole wheel (data_prep/movielens.py)
  synthetic-<scale>    write a synthetic dataset to data/ in the MMRec format (tiny, baby, sports, clothing, elec)
  baby|sports|clothing|elec|<name> --raw DIR
                       build from raw Amazon 2014 files (data_prep/amazon.py); without --raw, validate an
                       already-prepared folder data/<name>/ against the known statistics
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "ml100k":
        from data_prep import movielens
        return movielens.main(rest)
    if name.startswith("synthetic-"):
        from data_prep import synthetic_export
        return synthetic_export.main([name.removeprefix("synthetic-"), *rest])
    from data_prep import amazon
    from lgmrec_jax.data.sources import AMAZON_CATEGORIES, missing_message
    if "--raw" in rest:
        if "--category" not in rest:
            rest = ["--category", AMAZON_CATEGORIES.get(name, name), *rest]
        if "--out" not in rest:
            rest = [*rest, "--out", f"data/{name}"]
        return amazon.main(rest)
    folder = Path("data") / name
    if not folder.is_dir():
        print(missing_message(name, folder), file=sys.stderr)
        return 1
    report = amazon.validate_prepared(folder)
    print(f"{folder}: valid MMRec dataset: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
