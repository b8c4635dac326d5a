"""Amazon 2014 (McAuley) raw files -> MMRec dataset folder (SPEC §1.3), e.g. Baby/Sports/Clothing.

Inputs, as downloaded from the public 2014 release (gzipped or not):
  reviews_<Category>_5.json(.gz)   one JSON object per line (reviewerID, asin, overall, unixReviewTime)
    or ratings_<Category>.csv(.gz) `user,item,rating,timestamp`, no header
  meta_<Category>.json(.gz)        one Python-literal dict per line (title, brand, categories, description)
  image_features_<Category>.b      records of 10-byte ASCII asin + 4096 little-endian float32

Pipeline: drop NA and duplicate (user, item, time) rows -> iterative k-core (k=5) on users and
items -> ids 0..N-1 in order of first appearance -> MMRec split (split.py) -> text sentence per
item encoded (encoders.py) -> image features streamed from the binary, missing items get the mean
-> writer.py. Run `python -m data_prep.amazon --help`.
"""

from __future__ import annotations

import argparse
import array
import ast
import gzip
import json
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
from tqdm import tqdm

from data_prep import encoders as enc
from data_prep import known_stats, writer
from lgmrec_jax import jsonio
from lgmrec_jax.data import split
from lgmrec_jax.data.mmrec import DataError, read_inter_file
from lgmrec_jax.errors import Failure, InputError, debug_requested, run_guarded
from data_prep.known_stats import validate_prepared  # re-exported: `data_prep.amazon.validate_prepared`

__all__ = ["build_amazon", "find_sources", "main", "validate_prepared"]

REVIEW_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")
ASIN_BYTES = 10
MCAULEY_IMAGE_DIM = 4096
MCAULEY_IMAGE_ENCODER = known_stats.PUBLISHED_ENCODERS["image"]


# --------------------------------------------------------------------------------------------
# Raw readers


def open_binary(path: Path) -> IO[bytes]:
    """Open gzip or plain bytes by content (magic bytes), not by name: downloads get renamed."""
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _lines(path: Path, desc: str, progress: bool) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines. Each line is decoded on its own, so a byte that is not
    UTF-8 is reported with its line; a damaged or truncated gzip stream is reported with the last good line."""
    lineno = 0
    try:
        with open_binary(path) as handle:
            for lineno, raw in enumerate(tqdm(handle, desc=desc, unit=" lines", disable=not progress), start=1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {e.start} of the line)") from None
                if line:
                    yield lineno, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: damaged or truncated gzip stream after line {lineno} ({e}); download the file "
                        "again") from None


def _is_na(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and value != value)


@dataclass
class Interactions:
    """Raw rows with users/items interned to int codes (first-seen order).

    Columns are typed `array.array`s, not lists: the full ratings CSVs have millions of rows and
    a list of Python ints costs ~4x the memory.
    """

    user_codes: dict[str, int] = field(default_factory=dict)
    item_codes: dict[str, int] = field(default_factory=dict)
    users: array.array = field(default_factory=lambda: array.array("q"))
    items: array.array = field(default_factory=lambda: array.array("q"))
    ratings: array.array = field(default_factory=lambda: array.array("d"))
    timestamps: array.array = field(default_factory=lambda: array.array("q"))
    n_na: int = 0

    def add(self, user: str, item: str, rating: float, timestamp: int) -> None:
        self.users.append(self.user_codes.setdefault(user, len(self.user_codes)))
        self.items.append(self.item_codes.setdefault(item, len(self.item_codes)))
        self.ratings.append(rating)
        self.timestamps.append(timestamp)


def read_reviews(path: Path, progress: bool = True) -> Interactions:
    """5-core reviews JSON lines. Lines with a null/empty field count as NA and are dropped."""
    out = Interactions()
    expected = f"expected a JSON object with {', '.join(REVIEW_KEYS)}"
    for lineno, line in _lines(path, f"read {path.name}", progress):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{lineno}: {expected} (not valid JSON)") from None
        if not isinstance(rec, dict) or any(k not in rec for k in REVIEW_KEYS):
            raise DataError(f"{path}:{lineno}: {expected}")
        if any(_is_na(rec[k]) for k in REVIEW_KEYS):
            out.n_na += 1
            continue
        try:
            rating, ts = float(rec["overall"]), int(rec["unixReviewTime"])
        except (TypeError, ValueError):
            raise DataError(f"{path}:{lineno}: {expected} (overall must be a number, "
                             f"unixReviewTime an integer)") from None
        out.add(str(rec["reviewerID"]), str(rec["asin"]), rating, ts)
    return out


def read_ratings_csv(path: Path, progress: bool = True) -> Interactions:
    """Ratings-only CSV `user,item,rating,timestamp` (no header). Empty fields count as NA."""
    out = Interactions()
    expected = "expected 4 comma-separated fields user,item,rating,timestamp"
    for lineno, line in _lines(path, f"read {path.name}", progress):
        fields = line.split(",")
        if len(fields) != 4:
            raise DataError(f"{path}:{lineno}: {expected}, found {len(fields)}")
        if any(_is_na(f) or f.strip().lower() in ("nan", "na") for f in fields):
            out.n_na += 1
            continue
        try:
            rating, ts = float(fields[2]), int(float(fields[3]))
        except ValueError:
            raise DataError(f"{path}:{lineno}: {expected} (rating and timestamp must be numbers)") from None
        out.add(fields[0].strip(), fields[1].strip(), rating, ts)
    return out


# Python 2 wrote the 2014 files, so keys and values may carry a u'' prefix.
_ASIN_RE = re.compile(r"""u?['"]asin['"]\s*:\s*u?['"]([^'"]+)['"]""")


def read_meta(path: Path, wanted: set[str], progress: bool = True) -> dict[str, dict]:
    """Metadata dicts of the `wanted` asins.

    The 2014 release writes Python literals (single quotes), so `ast.literal_eval` first and
    `json.loads` as fallback (later re-releases are strict JSON). Parsing is the slow part on
    million-line files, so a line whose asin (found by regex) is not wanted is skipped unparsed.
    """
    found: dict[str, dict] = {}
    for lineno, line in _lines(path, f"read {path.name}", progress):
        match = _ASIN_RE.search(line)
        if match and match.group(1) not in wanted:
            continue
        try:
            rec = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{lineno}: expected a Python-literal or JSON dict with 'asin'") from None
        if not isinstance(rec, dict) or _is_na(rec.get("asin")):
            raise DataError(f"{path}:{lineno}: expected a Python-literal or JSON dict with 'asin'")
        asin = str(rec["asin"])
        if asin in wanted:
            found.setdefault(asin, rec)
    return found


def read_image_features(path: Path, wanted: list[str], dim: int = MCAULEY_IMAGE_DIM,
                        progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(features [len(wanted), dim] float32, found mask) from McAuley's binary feature file.

    The files are several GB, so they are memory-mapped and scanned in chunks: only the asin
    bytes of every record and the vectors of wanted asins are ever read into memory.
    """
    record = np.dtype([("asin", f"S{ASIN_BYTES}"), ("feat", "<f4", (dim,))])
    with open(path, "rb") as probe:
        if probe.read(2) == b"\x1f\x8b":
            raise DataError(f"{path}: gzip-compressed; unpack it first (gunzip) so it can be memory-mapped")
    size = path.stat().st_size
    if size % record.itemsize:
        raise DataError(f"{path}: {size} bytes is not a whole number of {record.itemsize}-byte records "
                         f"({ASIN_BYTES}-byte asin + {dim} float32): truncated download or wrong --image-dim?")
    index = {asin: k for k, asin in enumerate(wanted)}
    feats = np.zeros((len(wanted), dim), dtype=np.float32)
    found = np.zeros(len(wanted), dtype=bool)
    n_records = size // record.itemsize
    if n_records == 0:
        return feats, found
    table = np.memmap(path, dtype=record, mode="r", shape=(n_records,))
    chunk = 8_192  # records per progress tick (~130 MB of file)
    for start in tqdm(range(0, n_records, chunk), desc=f"scan {path.name}", disable=not progress):
        asins = table["asin"][start:start + chunk]
        for offset, raw in enumerate(asins.tolist()):
            k = index.get(raw.decode("ascii", errors="replace").strip())
            if k is not None and not found[k]:  # first record wins if an asin repeats
                feats[k] = table["feat"][start + offset]
                found[k] = True
    del table
    return feats, found


# --------------------------------------------------------------------------------------------
# Filtering and re-indexing


def drop_duplicates(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Boolean mask keeping the first row of every (user, item, timestamp) triple."""
    order = np.lexsort((timestamps, items, users))  # stable: earlier rows first within a triple
    u, i, t = users[order], items[order], timestamps[order]
    repeat = np.r_[False, (u[1:] == u[:-1]) & (i[1:] == i[:-1]) & (t[1:] == t[:-1])]
    keep = np.ones(len(users), dtype=bool)
    keep[order[repeat]] = False
    return keep


def k_core(users: np.ndarray, items: np.ndarray, k: int = 5) -> np.ndarray:
    """Mask of rows surviving the iterative k-core: repeat until every user and item has >= k rows.

    One pass is not enough: dropping a sparse item can push a user below k, and vice versa.
    """
    keep = np.ones(len(users), dtype=bool)
    while True:
        u_count = np.bincount(users[keep], minlength=users.max() + 1 if len(users) else 0)
        i_count = np.bincount(items[keep], minlength=items.max() + 1 if len(items) else 0)
        new_keep = keep & (u_count[users] >= k) & (i_count[items] >= k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep


def first_appearance_ids(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new ids 0..N-1 numbered by first row of appearance, old code of each new id)."""
    uniq, first_row, inverse = np.unique(codes, return_index=True, return_inverse=True)
    by_first = np.argsort(first_row, kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[by_first] = np.arange(len(uniq))
    return rank[inverse], uniq[by_first]


# --------------------------------------------------------------------------------------------
# Text


def _field_text(value: Any) -> str:
    # MMRec's notebook fills missing (NaN) fields with a single space before concatenating.
    if _is_na(value):
        return " "
    return value if isinstance(value, str) else str(value)


def item_sentence(meta: dict | None) -> str:
    """`title + ' ' + brand + ' ' + ' '.join(categories[0]) + ' ' + description`, newlines removed."""
    meta = meta or {}
    cats = meta.get("categories")
    if isinstance(cats, list) and cats and isinstance(cats[0], (list, tuple)) and cats[0]:
        cat_text = " ".join(str(c) for c in cats[0])
    else:
        cat_text = " "
    parts = [_field_text(meta.get("title")), _field_text(meta.get("brand")), cat_text,
             _field_text(meta.get("description"))]
    return " ".join(parts).replace("\r", " ").replace("\n", " ")


def mean_fill(feats: np.ndarray, found: np.ndarray, what: str) -> np.ndarray:
    """Rows without a feature get the mean of the rows that have one (MMRec's rule)."""
    if not found.any():
        raise DataError(f"{what}: none of the {len(found)} items has a feature; wrong file or category?")
    out = feats.copy()
    out[~found] = feats[found].mean(axis=0, dtype=np.float64).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# Pipeline


@dataclass
class AmazonSources:
    category: str
    interactions: Path
    kind: str  # "reviews" or "ratings"
    meta: Path
    image_features: Path | None = None


def _first_existing(raw: Path, names: list[str]) -> Path | None:
    return next((raw / n for n in names if (raw / n).is_file()), None)


def find_sources(raw: Path, category: str, need_image_file: bool = True) -> AmazonSources:
    """Locate the raw files of `category` in `raw` (gzipped or plain), naming what was looked for."""
    reviews = [f"reviews_{category}_5.json.gz", f"reviews_{category}_5.json"]
    ratings = [f"ratings_{category}.csv.gz", f"ratings_{category}.csv"]
    metas = [f"meta_{category}.json.gz", f"meta_{category}.json"]
    images = [f"image_features_{category}.b"]
    inter_path = _first_existing(raw, reviews)
    kind = "reviews"
    if inter_path is None:
        inter_path, kind = _first_existing(raw, ratings), "ratings"
    if inter_path is None:
        raise DataError(f"{raw}: no interaction file for {category}; looked for {reviews + ratings}")
    meta = _first_existing(raw, metas)
    if meta is None:
        raise DataError(f"{raw}: no metadata file for {category}; looked for {metas}")
    image = _first_existing(raw, images)
    if need_image_file and image is None:
        raise DataError(f"{raw}: no image feature file for {category}; looked for {images} "
                                f"(or pass --image-encoder none / efficientnet-lite0 --images DIR)")
    return AmazonSources(category, inter_path, kind, meta, image)


def _image_paths(images_dir: Path, asins: list[str]) -> list[Path | None]:
    paths = []
    for asin in asins:
        hit = next((images_dir / f"{asin}{ext}" for ext in (".jpg", ".jpeg", ".png", ".webp")
                    if (images_dir / f"{asin}{ext}").is_file()), None)
        paths.append(hit)
    return paths


def build_amazon(sources: AmazonSources, out_dir: Path, name: str, *, text_encoder, seed: int = 999,
                 image_encoder: str = "mcauley", images_dir: Path | None = None, k: int = 5,
                 image_dim: int = MCAULEY_IMAGE_DIM, progress: bool = True, replace: bool = False) -> Path:
    """Run the whole pipeline and write `out_dir` atomically; returns out_dir.

    Args:
      text_encoder: object with `.encode(list[str], progress) -> [n, d]` and `.info` (encoders.py).
      image_encoder: "mcauley" (binary 4096-d file), "efficientnet-lite0" (raw images in
        `images_dir`, named `<asin>.jpg|.png|...`) or "none" (no image_feat.npy).
      replace: allow replacing data_prep's own earlier output at `out_dir` (writer.check_output_folder).
    """
    writer.check_output_folder(out_dir, replace)  # before hours of reading and encoding
    reader = read_reviews if sources.kind == "reviews" else read_ratings_csv
    raw = reader(sources.interactions, progress)
    users = np.frombuffer(raw.users, dtype=np.int64)
    items = np.frombuffer(raw.items, dtype=np.int64)
    ratings = np.frombuffer(raw.ratings, dtype=np.float64)
    stamps = np.frombuffer(raw.timestamps, dtype=np.int64)
    n_raw = len(users) + raw.n_na
    if len(users) == 0:
        raise DataError(f"{sources.interactions}: no interactions (the file is empty"
                        + (f", or all {raw.n_na} lines lack a field)" if raw.n_na else ")"))

    unique = drop_duplicates(users, items, stamps)
    users, items, ratings, stamps = users[unique], items[unique], ratings[unique], stamps[unique]
    core = k_core(users, items, k)
    users, items, ratings, stamps = users[core], items[core], ratings[core], stamps[core]
    if len(users) == 0:
        raise DataError(f"{sources.interactions}: nothing survives the {k}-core filter")
    user_ids, user_code_of_id = first_appearance_ids(users)
    item_ids, item_code_of_id = first_appearance_ids(items)
    x_label = split.mmrec_split(user_ids, seed)

    asin_of_code = list(raw.item_codes)  # dict preserves insertion order == code order
    asins = [asin_of_code[c] for c in item_code_of_id.tolist()]
    meta = read_meta(sources.meta, set(asins), progress)
    sentences = [item_sentence(meta.get(a)) for a in asins]
    text = np.asarray(text_encoder.encode(sentences, progress=progress), dtype=np.float32)

    features = {"text": text}
    encoders_info = {"text": dict(text_encoder.info)}
    source_files = {"interactions": sources.interactions, "meta": sources.meta}
    n_missing_image = None
    if image_encoder == "mcauley":
        if sources.image_features is None:
            raise DataError(f"image_features_{sources.category}.b is needed for --image-encoder mcauley")
        feats, found = read_image_features(sources.image_features, asins, image_dim, progress)
        source_files["image_features"] = sources.image_features
        encoders_info["image"] = {"name": MCAULEY_IMAGE_ENCODER, "version": "amazon-2014", "dim": image_dim}
    elif image_encoder == "efficientnet-lite0":
        if images_dir is None:
            raise DataError("--image-encoder efficientnet-lite0 needs --images DIR with <asin>.jpg files")
        model = enc.EfficientNetLite0Encoder()
        feats, found = model.encode_files(_image_paths(images_dir, asins), progress=progress)
        encoders_info["image"] = dict(model.info)
    elif image_encoder != "none":
        raise ValueError(f"unknown image encoder {image_encoder!r}")
    if image_encoder != "none":
        features["image"] = mean_fill(feats, found, f"image features of {sources.category}")
        n_missing_image = int((~found).sum())
        encoders_info["image"]["mean_filled_items"] = n_missing_image

    provenance = {
        "seed": seed,
        "encoders": encoders_info,
        "sources": source_files,
        "builder": "data_prep.amazon",
        "category": sources.category,
        "input_kind": sources.kind,
        "k_core": k,
        "split": "MMRec random per-user split (lgmrec_jax.data.split, numpy default_rng(seed))",
        "rows": {"raw": n_raw, "na_dropped": raw.n_na, "duplicates_dropped": int((~unique).sum()),
                 "k_core_dropped": int((~core).sum()), "kept": int(len(users))},
        "items_without_meta": int(sum(a not in meta for a in asins)),
        "items_without_image": n_missing_image,
    }
    reviewer_of_code = list(raw.user_codes)  # insertion order == code order, as for the items
    original_ids = {"user": ("reviewerID", [reviewer_of_code[c] for c in user_code_of_id.tolist()]),
                    "item": ("asin", asins)}
    return writer.write_mmrec_dataset(out_dir, name, users=user_ids, items=item_ids, ratings=ratings,
                                      timestamps=stamps, x_label=x_label, features=features,
                                      provenance=provenance, replace=replace, original_ids=original_ids)


# --------------------------------------------------------------------------------------------
# Command line


def import_prepared(src: Path, out_dir: Path, name: str | None = None, replace: bool = False) -> Path:
    """Validate an already-prepared MMRec folder, then copy it through the writer (adds a manifest)."""
    writer.check_output_folder(out_dir, replace)
    summary = validate_prepared(src, name)
    name = summary["name"]
    inter = read_inter_file(src / f"{name}.inter", extra_columns=("rating", "timestamp"))
    n = len(inter.users)
    stamps = inter.columns.get("timestamp", np.zeros(n))
    if not np.array_equal(stamps, np.round(stamps)):
        row = int(np.flatnonzero(stamps != np.round(stamps))[0])
        raise DataError(f"{inter.path}:{inter.lines[row]}: timestamp must be an integer, found {stamps[row]!r}")
    features = {m: np.load(src / f"{m}_feat.npy", allow_pickle=False) for m in summary["features"]}
    sources = {p.name: p for p in sorted(src.iterdir()) if p.is_file() and p.name != "manifest.json"}
    try:
        return writer.write_mmrec_dataset(
            out_dir, name, users=inter.users, items=inter.items, ratings=inter.columns.get("rating", np.zeros(n)),
            timestamps=stamps.astype(np.int64), x_label=inter.labels, features=features,
            provenance={"sources": sources, "builder": "data_prep.amazon (import of a prepared folder)",
                        "imported_from": str(src)}, replace=replace)
    except ValueError as err:  # the writer refuses what the trainer tolerates, e.g. ids that are not contiguous
        raise DataError(f"{src}: cannot import: {err}") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.amazon",
        description="Build an MMRec dataset folder from the raw Amazon 2014 files, or validate/import "
                    "an already-prepared MMRec folder (one holding a .inter file).")
    p.add_argument("--category", help="Amazon category as in the file names (Baby, Sports_and_Outdoors, "
                   "Clothing_Shoes_and_Jewelry, ...) or a short name (baby, sports, clothing, elec)")
    p.add_argument("--raw", type=Path, required=True, help="folder with the raw files, or a prepared MMRec folder")
    p.add_argument("--out", type=Path, help="output folder (default data/<name>); an existing folder is refused")
    p.add_argument("--replace", action="store_true",
                   help="replace an output folder that data_prep built before (never a folder it did not write)")
    p.add_argument("--name", help="dataset name, i.e. <name>.inter (default: the --out folder's name, "
                   "else the short category name: baby, sports, clothing, elec)")
    p.add_argument("--seed", type=int, default=999, help="seed of the train/valid/test split (default 999)")
    p.add_argument("--k-core", type=int, default=5, help="minimum interactions per user and item (default 5)")
    p.add_argument("--text-encoder", choices=enc.TEXT_ENCODERS, default="minilm",
                   help="minilm = all-MiniLM-L6-v2 as MMRec (needs the 'features' extra); hashing = numpy "
                        "hashed TF-IDF fallback, NOT the published features")
    p.add_argument("--image-encoder", choices=("mcauley", "efficientnet-lite0", "none"), default="mcauley",
                   help="mcauley = 4096-d features from image_features_<Category>.b (as MMRec); "
                        "efficientnet-lite0 = 1280-d from raw images in --images")
    p.add_argument("--images", type=Path, help="folder of product images named <asin>.jpg (efficientnet-lite0)")
    p.add_argument("--image-dim", type=int, default=MCAULEY_IMAGE_DIM, help="floats per record in the .b file")
    p.add_argument("--validate-only", action="store_true", help="only validate the prepared folder given as --raw")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_guarded(lambda: _main(argv), debug=debug_requested(argv))


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    raw: Path = args.raw
    if not raw.is_dir():
        raise DataError(f"--raw {raw}: not a directory")
    if args.validate_only or any(raw.glob("*.inter")):
        summary = validate_prepared(raw, args.name)
        print(jsonio.dumps(summary, indent=2))
        if not args.validate_only and args.out and args.out.resolve() != raw.resolve():
            print(f"imported into {import_prepared(raw, args.out, args.name, args.replace)}")
        return 0
    if not args.category:
        raise InputError("--category is required to build from raw files")
    category = known_stats.category_for(args.category) or args.category
    short = known_stats.short_name_for(category)
    # The trainer loads <dir>/<dir name>.inter, so the folder name is the default dataset name.
    name = args.name or (args.out.name if args.out else short)
    out = args.out or Path("data") / name
    writer.check_output_folder(out, args.replace)  # before the raw files are even looked at
    sources = find_sources(raw, category, need_image_file=args.image_encoder == "mcauley")
    text_encoder = enc.make_text_encoder(args.text_encoder)
    path = build_amazon(sources, out, name, text_encoder=text_encoder, seed=args.seed,
                        image_encoder=args.image_encoder, images_dir=args.images, k=args.k_core,
                        image_dim=args.image_dim, progress=not args.no_progress, replace=args.replace)
    print(f"wrote {path}")
    try:
        # A rebuilt baby/sports/clothing/elec must match the published sizes (SPEC §1.2).
        summary = validate_prepared(path, name, check_known=args.k_core == 5, known_as=short)
    except DataError as err:
        raise Failure(f"{path} was written but does not match the published dataset: {err}") from None
    print(jsonio.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
