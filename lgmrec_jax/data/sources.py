"""Where a dataset name comes from: a prepared folder under data/, the synthetic generator, or nowhere.

Names: `synthetic-<scale>` (tiny, baby, sports, clothing, elec) are generated in memory; any other name must be an
MMRec folder `data/<name>/`. A missing folder is an error that says how to get the files: nothing is ever
substituted silently.
"""

from __future__ import annotations

from pathlib import Path

from lgmrec_jax.data import synthetic
from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.data.mmrec import DataError, load_mmrec

# Amazon 2014 category file names for the benchmark datasets (SPEC §1.3).
AMAZON_CATEGORIES = {
    "baby": "Baby",
    "sports": "Sports_and_Outdoors",
    "clothing": "Clothing_Shoes_and_Jewelry",
    "elec": "Electronics",
}


class DatasetMissing(DataError):
    pass


def missing_message(name: str, directory: Path) -> str:
    lines = [f"dataset {name!r} not found: {directory}/ does not exist. lgmrec-jax never downloads or substitutes "
             "a dataset. Either:"]
    lines.append(f"  1. put the MMRec-prepared files ({name}.inter, image_feat.npy, text_feat.npy) into "
                 f"{directory}/ — they are distributed through the Google Drive folder linked from the MMRec "
                 f"README (github.com/enoche/MMRec, section Data) — then check them with "
                 f"`make data DATASET={name}`; or")
    category = AMAZON_CATEGORIES.get(name, "<Category>")
    lines.append(f"  2. build them from the raw Amazon 2014 files (reviews_{category}_5.json.gz, "
                 f"meta_{category}.json.gz, image_features_{category}.b from the Amazon product data page of "
                 f"J. McAuley, UCSD) with `make data DATASET={name} RAW=/path/to/raw/files`.")
    lines.append("  (The default dataset ml100k is built automatically; synthetic-<scale> needs no files.)")
    return "\n".join(lines)


def load_dataset(name: str, data_dir: str | Path = "data") -> Dataset:
    if name.startswith("synthetic-"):
        scale = name.removeprefix("synthetic-")
        if scale not in synthetic.SCALES:
            raise DatasetMissing(f"dataset {name!r}: unknown synthetic scale {scale!r}; choose one of "
                                 f"{', '.join('synthetic-' + s for s in synthetic.SCALES)}")
        return synthetic.generate(scale)
    directory = Path(data_dir) / name
    if not directory.is_dir():
        raise DatasetMissing(missing_message(name, directory))
    return load_mmrec(directory, name=name)
