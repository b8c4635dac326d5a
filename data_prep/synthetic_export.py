"""Writes a synthetic dataset (lgmrec_jax/data/synthetic.py) to disk in the MMRec format, e.g. to benchmark the
file loader or to hand a planted-structure dataset to another toolbox."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from data_prep.writer import write_mmrec_dataset
from lgmrec_jax.data import synthetic


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep synthetic-<scale>")
    parser.add_argument("scale", choices=sorted(synthetic.SCALES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    args = parser.parse_args(argv)
    data = synthetic.generate(args.scale, seed=args.seed)
    out = args.out or Path("data") / data.name
    splits = [data.train, data.valid, data.test]
    pairs = np.concatenate(splits)
    labels = np.concatenate([np.full(len(s), i) for i, s in enumerate(splits)])
    path = write_mmrec_dataset(out, out.name, users=pairs[:, 0], items=pairs[:, 1],
                               ratings=np.ones(len(pairs)), timestamps=np.zeros(len(pairs), np.int64),
                               x_label=labels, features=data.features,
                               provenance={"seed": args.seed, "generator": f"lgmrec_jax.data.synthetic:{args.scale}"})
    print(f"wrote {path}")
    return 0
