"""Amazon 2014 raw files -> MMRec folder, end to end on fixtures written in the real raw formats."""

import gzip
import json
import struct

import numpy as np
import pytest

from data_prep import amazon, manifest as manifest_lib
from data_prep.encoders import HashingTfidfEncoder
from data_prep.known_stats import validate_prepared
from lgmrec_jax.data.split import split_sizes
from data_prep.writer import write_mmrec_dataset

DIM = 4096  # the real record width, so the binary reader is exercised as in production


def asin(tag):
    return f"{tag:>10}".replace(" ", "0")  # 10-byte ASCII asins, as in the 2014 release


CORE_ITEMS = [asin(f"I{k}") for k in range(1, 13)]
Z_ITEMS = [asin(f"Z{k}") for k in range(1, 4)]
X, Y = asin("X"), asin("Y")
A_USERS = [f"A{k}" for k in range(1, 7)]
B_USERS = [f"B{k}" for k in range(1, 7)]


def planted_rows():
    """(user, item) pairs with a cascade only an *iterative* 5-core removes.

    Y has 4 users -> dropped; then W (5 rows incl. Y) has 4 -> dropped; then X (5 users incl. W)
    has 4 -> dropped. A single pass would keep W and X. Survivors: A1..A6, B1..B6 x I1..I12, Z1..Z3.
    """
    rows = [(a, i) for a in A_USERS for i in CORE_ITEMS]
    rows += [("A1", z) for z in Z_ITEMS]
    rows += [(b, i) for b in B_USERS for i in CORE_ITEMS[:5]]
    rows += [(b, z) for b in B_USERS[:4] for z in Z_ITEMS]
    rows += [(u, Y) for u in ("A1", "A2", "A3", "W")]
    rows += [(u, X) for u in ("W", "A1", "A2", "A3", "A4")]
    rows += [("W", i) for i in CORE_ITEMS[:3]]
    order = np.random.default_rng(3).permutation(len(rows))
    rows = [rows[k] for k in order]
    # A dropped user first: ids must count only survivors. Then a one-review user.
    rows.remove(("W", X))
    return [("W", X), ("lonely", CORE_ITEMS[0])] + rows


SURVIVING_USERS = set(A_USERS + B_USERS)
SURVIVING_ITEMS = set(CORE_ITEMS + Z_ITEMS)

META = {
    CORE_ITEMS[0]: {"asin": CORE_ITEMS[0], "title": "Bottle\nWarmer", "brand": "Acme",
                    "categories": [["Baby", "Feeding"], ["Other"]], "description": "Warms\nmilk.",
                    "price": 9.99, "related": {"also_bought": ["B0000"]}},
    CORE_ITEMS[1]: {"asin": CORE_ITEMS[1], "title": "Rattle"},
}
EXPECTED_SENTENCE = {
    CORE_ITEMS[0]: "Bottle Warmer Acme Baby Feeding Warms milk.",
    CORE_ITEMS[1]: "Rattle" + " " * 6,        # missing brand, categories, description -> ' ' each
    Z_ITEMS[0]: " " * 7,                      # no metadata line at all
}
NO_IMAGE = {CORE_ITEMS[1], Z_ITEMS[2]}


def image_vector(item):
    seed = sum(item.encode())
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def write_raw(raw, reviews_name="reviews_Tiny_5.json.gz"):
    raw.mkdir(parents=True, exist_ok=True)
    lines = []
    for t, (user, item) in enumerate(planted_rows()):
        lines.append(json.dumps({"reviewerID": user, "asin": item, "reviewerName": "n", "helpful": [0, 0],
                                 "reviewText": "ok", "overall": float(1 + t % 5), "summary": "s",
                                 "unixReviewTime": 1_300_000_000 + t, "reviewTime": "01 1, 2011"}))
    lines.insert(5, lines[4])  # exact duplicate row -> dropped
    lines.insert(7, json.dumps({"reviewerID": "B5", "asin": CORE_ITEMS[9], "overall": None,
                                "unixReviewTime": 1}))  # NA rating -> dropped
    with gzip.open(raw / reviews_name, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    meta_lines = []
    for item in sorted(SURVIVING_ITEMS | {X, Y, asin("Q1")}):
        if item == Z_ITEMS[0]:
            continue
        if item == CORE_ITEMS[2]:
            # A JSON (not Python-literal) line with null: exercises the json.loads fallback.
            meta_lines.append(json.dumps({"asin": item, "title": "Mat", "brand": None, "categories": [["Baby"]]}))
            continue
        if item == Z_ITEMS[1]:
            # Python 2 repr, as in the 2014 release: u'' prefixes and \x escapes.
            meta_lines.append("{u'asin': u'%s', u'title': u'Caf\\xe9 set', u'categories': [[u'Baby']]}" % item)
            continue
        meta_lines.append(repr(META.get(item, {"asin": item, "title": f"Item {item}", "categories": [["Cat"]]})))
    with gzip.open(raw / "meta_Tiny.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(meta_lines) + "\n")

    with open(raw / "image_features_Tiny.b", "wb") as f:
        for item in sorted(SURVIVING_ITEMS - NO_IMAGE) + [X, asin("Q1")]:
            f.write(item.encode("ascii"))
            f.write(struct.pack(f"<{DIM}f", *image_vector(item)))
    return raw


class RecordingEncoder(HashingTfidfEncoder):
    def encode(self, texts, progress=True):
        self.texts = list(texts)
        return super().encode(texts, progress=False)


def build(raw, out, name="tiny", **kwargs):
    sources = amazon.find_sources(raw, "Tiny")
    encoder = RecordingEncoder()
    path = amazon.build_amazon(sources, out, name, text_encoder=encoder, seed=999, progress=False, **kwargs)
    return path, encoder


def read_inter(path):
    table = np.loadtxt(path, delimiter="\t", skiprows=1)
    return table[:, 0].astype(int), table[:, 1].astype(int), table[:, 4].astype(int)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw = write_raw(tmp_path_factory.mktemp("raw"))
    out, encoder = build(raw, tmp_path_factory.mktemp("out") / "tiny")
    return raw, out, encoder


def expected_ids():
    users, items = {}, {}
    for user, item in planted_rows():
        if user in SURVIVING_USERS and item in SURVIVING_ITEMS:
            users.setdefault(user, len(users))
            items.setdefault(item, len(items))
    return users, items


def test_iterative_five_core_and_first_appearance_ids(built):
    _, out, _ = built
    users, items, _ = read_inter(out / "tiny.inter")
    want_users, want_items = expected_ids()
    kept = [(u, i) for u, i in planted_rows() if u in SURVIVING_USERS and i in SURVIVING_ITEMS]
    assert len(users) == len(kept) == 72 + 3 + 30 + 12
    # Rows keep file order, so row r must be the r-th surviving raw row under the expected mapping.
    assert list(zip(users.tolist(), items.tolist())) == [(want_users[u], want_items[i]) for u, i in kept]
    assert users.max() + 1 == 12 and items.max() + 1 == 15


def test_split_sizes_per_user(built):
    _, out, _ = built
    users, _, labels = read_inter(out / "tiny.inter")
    for u in np.unique(users):
        n = int((users == u).sum())
        assert tuple(np.bincount(labels[users == u], minlength=3)) == split_sizes(n)
    assert sorted({int((users == u).sum()) for u in np.unique(users)}) == [5, 8, 12, 15]


def test_text_sentences_built_per_item(built):
    _, out, encoder = built
    _, want_items = expected_ids()
    for item, sentence in EXPECTED_SENTENCE.items():
        assert encoder.texts[want_items[item]] == sentence
    assert encoder.texts[want_items[CORE_ITEMS[2]]] == "Mat" + " " + " " + " " + "Baby" + " " + " "
    assert encoder.texts[want_items[Z_ITEMS[1]]] == "Café set" + " " + " " + " " + "Baby" + " " + " "
    text = np.load(out / "text_feat.npy")
    assert text.shape == (15, 384) and text.dtype == np.float32


def test_image_features_streamed_and_mean_filled(built):
    _, out, _ = built
    _, want_items = expected_ids()
    image = np.load(out / "image_feat.npy")
    assert image.shape == (15, DIM) and image.dtype == np.float32
    have = [i for i in want_items if i not in NO_IMAGE]
    for item in have:
        np.testing.assert_array_equal(image[want_items[item]], image_vector(item))
    # Mean over the dataset's items that have a vector (X and Q1 in the file are not dataset items).
    mean = np.mean([image_vector(i) for i in have], axis=0, dtype=np.float64).astype(np.float32)
    for item in NO_IMAGE:
        np.testing.assert_allclose(image[want_items[item]], mean, rtol=1e-6)


def test_manifest_counts_provenance_and_hashes(built):
    raw, out, _ = built
    m = manifest_lib.read_manifest(out)
    assert m["counts"] == {"users": 12, "items": 15, "interactions": 117}
    assert sum(m["splits"].values()) == 117
    assert m["seed"] == 999
    assert m["encoders"]["text"]["name"] == "hashing-tfidf-384"
    assert m["encoders"]["image"]["mean_filled_items"] == 2
    assert set(m["sources"]) == {"interactions", "meta", "image_features"}
    assert m["sources"]["meta"]["sha256"] == manifest_lib.sha256_file(raw / "meta_Tiny.json.gz")
    # 129 planted + lonely + duplicate + NA line; k-core drops Y (4), X (5), W (3 more), lonely (1).
    assert m["provenance"]["rows"] == {"raw": 132, "na_dropped": 1, "duplicates_dropped": 1,
                                       "k_core_dropped": 13, "kept": 117}
    assert m["provenance"]["items_without_meta"] == 1
    manifest_lib.verify_manifest(out)
    summary = validate_prepared(out)
    assert summary["users"] == 12 and summary["manifest_verified"] and not summary["known_dataset"]


def test_ratings_csv_gives_same_dataset_as_reviews(built, tmp_path):
    raw, out, _ = built
    csv_raw = tmp_path / "raw"
    csv_raw.mkdir()
    with gzip.open(raw / "reviews_Tiny_5.json.gz", "rt") as f:
        recs = [json.loads(line) for line in f]
    (csv_raw / "ratings_Tiny.csv").write_text("".join(   # plain text this time, not gzip
        f"{r['reviewerID']},{r['asin']},{'' if r['overall'] is None else r['overall']},{r['unixReviewTime']}\n"
        for r in recs))
    for name in ("meta_Tiny.json.gz", "image_features_Tiny.b"):
        (csv_raw / name).write_bytes((raw / name).read_bytes())
    out2, _ = build(csv_raw, tmp_path / "tiny")
    assert amazon.find_sources(csv_raw, "Tiny").kind == "ratings"
    for name in ("tiny.inter", "image_feat.npy", "text_feat.npy"):
        assert (out2 / name).read_bytes() == (out / name).read_bytes(), name


@pytest.mark.parametrize(
    "filename, bad_line, message",
    [
        ("reviews_Tiny_5.json.gz", "not json at all",
         r"reviews_Tiny_5\.json\.gz:3: expected a JSON object with reviewerID, asin, overall, unixReviewTime"),
        ("reviews_Tiny_5.json.gz", json.dumps({"reviewerID": "u", "asin": "i", "overall": 5}),
         r"reviews_Tiny_5\.json\.gz:3: expected a JSON object"),
        ("meta_Tiny.json.gz", "{'asin': '%s', 'title': " % CORE_ITEMS[0],
         r"meta_Tiny\.json\.gz:3: expected a Python-literal or JSON dict with 'asin'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, filename, bad_line, message):
    raw = write_raw(tmp_path / "raw")
    with gzip.open(raw / filename, "rt") as f:
        lines = f.read().splitlines()
    lines.insert(2, bad_line)
    with gzip.open(raw / filename, "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        build(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_malformed_csv_and_truncated_image_file(tmp_path):
    raw = write_raw(tmp_path / "raw")
    (raw / "ratings_Tiny.csv").write_text("u1,i1,5.0,100\nu1,i2,5.0\n")
    (raw / "reviews_Tiny_5.json.gz").unlink()
    with pytest.raises(ValueError, match=r"ratings_Tiny\.csv:2: expected 4 comma-separated fields"):
        build(raw, tmp_path / "out")
    with open(raw / "image_features_Tiny.b", "ab") as f:
        f.write(b"B000000001\x00\x00")
    with pytest.raises(ValueError, match=r"image_features_Tiny\.b: .* not a whole number of 16394-byte records"):
        amazon.read_image_features(raw / "image_features_Tiny.b", [CORE_ITEMS[0]], progress=False)


def test_cli_builds_and_validates(tmp_path, capsys):
    raw = write_raw(tmp_path / "raw")
    out = tmp_path / "data" / "tiny"
    argv = ["--category", "Tiny", "--raw", str(raw), "--out", str(out), "--text-encoder", "hashing",
            "--no-progress"]
    assert amazon.main(argv) == 0
    assert json.loads((out / "manifest.json").read_text())["counts"]["interactions"] == 117
    assert amazon.main(["--raw", str(out), "--validate-only"]) == 0
    assert '"interactions": 117' in capsys.readouterr().out
    assert amazon.main(["--category", "Nope", "--raw", str(raw), "--text-encoder", "hashing"]) == 2  # bad input
    assert "no interaction file for Nope" in capsys.readouterr().err


def test_cli_minilm_without_extra_explains_install(tmp_path, capsys):
    try:
        import sentence_transformers  # noqa: F401
        pytest.skip("sentence-transformers is installed; the missing-extra path cannot be exercised")
    except ImportError:
        pass
    raw = write_raw(tmp_path / "raw")
    assert amazon.main(["--category", "Tiny", "--raw", str(raw), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "--text-encoder minilm needs" in err and "pip install torch==2.13.0" in err
    assert not (tmp_path / "o").exists()  # never silently falls back to the hashing encoder


def test_validate_prepared_checks_known_stats_and_contents(tmp_path, built):
    _, out, _ = built
    users, items, labels = read_inter(out / "tiny.inter")
    n = len(users)
    feats = {"image": np.load(out / "image_feat.npy"), "text": np.load(out / "text_feat.npy")}
    write_mmrec_dataset(tmp_path / "baby", "baby", users=users, items=items, ratings=np.ones(n),
                        timestamps=np.zeros(n, dtype=np.int64), x_label=labels, features=feats, provenance={})
    with pytest.raises(ValueError, match=r"baby\.inter: users: expected 19,445, found 12"):
        validate_prepared(tmp_path / "baby")
    assert validate_prepared(tmp_path / "baby", check_known=False)["items"] == 15

    # A hand-made folder (no manifest) with a NaN feature and a bad x_label: the trainer's loader messages.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "bad.inter").write_text((out / "tiny.inter").read_text())
    nan_text = feats["text"].copy()
    nan_text[3, 5] = np.nan
    np.save(bad / "text_feat.npy", nan_text)
    with pytest.raises(ValueError, match=r"text_feat\.npy: 1 non-finite values \(NaN/inf\), first at row 3, column 5"):
        validate_prepared(bad)
    np.save(bad / "text_feat.npy", feats["text"][:-1])
    with pytest.raises(ValueError, match=r"text_feat\.npy: 14 feature rows but the \.inter file has 15 items"):
        validate_prepared(bad)
    lines = (bad / "bad.inter").read_text().splitlines()
    lines[4] = lines[4][:-1] + "7"
    (bad / "bad.inter").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad\.inter:5: x_label must be 0 \(train\), 1 \(valid\) or 2 \(test\), "
                                         r"got 7"):
        validate_prepared(bad)


def test_import_prepared_adds_manifest(tmp_path, built):
    _, out, _ = built
    src = tmp_path / "downloaded"
    src.mkdir()
    for name in ("tiny.inter", "image_feat.npy", "text_feat.npy"):
        (src / name).write_bytes((out / name).read_bytes())
    dst = amazon.import_prepared(src, tmp_path / "tiny")
    assert (dst / "tiny.inter").read_bytes() == (out / "tiny.inter").read_bytes()
    manifest_lib.verify_manifest(dst)
