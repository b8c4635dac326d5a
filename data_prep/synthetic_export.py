"""Writes a synthetic dataset (lgmrec_jax/data/synthetic.py) to disk in the MMRec format, e.g. to benchmark the
file loader or to hand a planted-structure dataset to another toolbox."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from data_prep.writer import check_output_folder, write_mmrec_dataset
from lgmrec_jax.data import synthetic


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep synthetic-<scale>")
    parser.add_argument("scale", choices=sorted(synthetic.SCALES))
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default data/synthetic-<scale>)")
    parser.add_argument("--replace", action="store_true",
                        help="replace an output folder that data_prep built before (never anything else)")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    args = parser.parse_args(argv)
    out = args.out or Path("data") / f"synthetic-{args.scale}"
    check_output_folder(out, args.replace)  # before generating (the large scales take minutes)
    data = synthetic.generate(args.scale, seed=args.seed)
    splits = [data.train, data.valid, data.test]
    pairs = np.concatenate(splits)
    labels = np.concatenate([np.full(len(s), i) for i, s in enumerate(splits)])
    path = write_mmrec_dataset(out, out.name, users=pairs[:, 0], items=pairs[:, 1],
                               ratings=np.ones(len(pairs)), timestamps=np.zeros(len(pairs), np.int64),
                               x_label=labels, features=data.features,
                               provenance={"seed": args.seed, "generator": f"lgmrec_jax.data.synthetic:{args.scale}"},
                               replace=args.replace)
    print(f"wrote {path}")
    return 0
