"""The MMRec loader: a correct folder loads; each kind of damage gives an error naming file (and line)."""

import numpy as np
import pytest

from lgmrec_jax.data.mmrec import DataError, load_mmrec, report_lines

HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"


def write_folder(tmp_path, rows=None, image=None, text=None, header=HEADER):
    folder = tmp_path / "toy"
    folder.mkdir()
    rng = np.random.default_rng(11)
    if rows is None:
        rows = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2), (1, 1, 0), (1, 2, 0), (1, 0, 1), (1, 3, 2),
                (2, 3, 1), (2, 0, 2)]  # user 2 has no training rows: dropped from valid/test
    with open(folder / "toy.inter", "w") as f:
        f.write(header)
        for u, i, x in rows:
            f.write(f"{u}\t{i}\t5.0\t0\t{x}\n")
    np.save(folder / "image_feat.npy", rng.normal(size=(4, 6)) if image is None else image)  # float64 accepted
    np.save(folder / "text_feat.npy", rng.normal(size=(4, 3)).astype(np.float32) if text is None else text)
    return folder


def test_loads_and_filters_cold_start_users(tmp_path):
    data = load_mmrec(write_folder(tmp_path))
    assert (data.n_users, data.n_items) == (3, 4)
    assert data.modalities == ("image", "text")
    assert data.features["image"].dtype == np.float32
    assert len(data.train) == 4 and len(data.valid) == 2 and len(data.test) == 2
    assert 2 not in data.valid[:, 0] and 2 not in data.test[:, 0]


@pytest.mark.parametrize("rows,header,needle", [
    ([(0, 0, 0)], "userID\titemID\trating\n", "toy.inter:1: header lacks column(s) x_label"),
    ([(0, "x", 0)], HEADER, "toy.inter:2: userID, itemID and x_label must be integers"),
    ([(0, 0, 0), (0, 1, 7)], HEADER, "toy.inter:3: x_label must be 0"),
    ([(0, 0, 0), (0, -1, 1)], HEADER, "toy.inter:3: negative id"),
    ([(0, 0, 0), (0, 1, 0), (0, 3, 2)], HEADER, "the valid split is empty"),
])
def test_malformed_inter_names_file_and_line(tmp_path, rows, header, needle):
    with pytest.raises(DataError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_mmrec(write_folder(tmp_path, rows=rows, header=header))


def test_wrong_field_count_names_line(tmp_path):
    folder = write_folder(tmp_path)
    with open(folder / "toy.inter", "a") as f:
        f.write("1\t2\t3\n")
    with pytest.raises(DataError, match=r"toy.inter:12: expected 5 tab-separated fields, found 3"):
        load_mmrec(folder)


def test_feature_row_mismatch(tmp_path):
    folder = write_folder(tmp_path, image=np.ones((5, 6)))
    with pytest.raises(DataError, match=r"image_feat.npy: 5 feature rows but the .inter file has 4 items"):
        load_mmrec(folder)


def test_nan_features(tmp_path):
    text = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    text[2, 1] = np.nan
    with pytest.raises(DataError, match=r"text_feat.npy: 1 non-finite values .* row 2, column 1"):
        load_mmrec(write_folder(tmp_path, text=text))


def test_pickled_features_are_refused(tmp_path):
    folder = write_folder(tmp_path)
    np.save(folder / "text_feat.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="text_feat.npy: not a plain numeric"):
        load_mmrec(folder)


def test_missing_directory_and_inter(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mmrec(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.inter: interaction file missing"):
        load_mmrec(tmp_path / "empty")


def test_repairs_are_counted_with_the_same_line_numbers(tmp_path):
    rows = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2), (1, 1, 0), (1, 2, 0), (1, 0, 1), (1, 3, 2),
            (0, 1, 0), (1, 2, 0),  # lines 10, 11 (the header is line 1): duplicates of lines 3 and 7
            (0, 1, 2),  # line 12: a test row repeating a training pair (kept)
            (3, 3, 1), (3, 0, 2)]  # lines 13, 14: user 3 has no training rows (dropped); user 2 never occurs
    folder = write_folder(tmp_path, rows=rows)
    with open(folder / "toy.inter", "a") as f:
        f.write("\n")  # a trailing blank line
    data = load_mmrec(folder)
    report = data.load_report
    assert report["merged_duplicate_rows"] == 2 and report["first_duplicate"] == {"line": 10, "repeats_line": 3}
    assert report["dropped_rows_of_users_without_training"] == {"valid": 1, "test": 1}
    assert report["first_dropped_line"] == 13 and report["users_without_training"] == 1
    assert report["eval_rows_repeating_a_training_pair"] == {"valid": 0, "test": 1}
    assert report["unused_ids"] == {"users": 1, "items": 0} and report["blank_lines"] == 1
    assert len(data.train) == 4 and len(data.test) == 3 and data.n_users == 4
    notes = report_lines(report)
    assert notes[0] == ("toy.inter: merged 2 duplicated row(s) (same userID, itemID and x_label; first: line 10 "
                        "repeats line 3)")
    assert len(notes) == 5


def test_windows_line_endings_and_feature_file_kinds(tmp_path):
    folder = write_folder(tmp_path)
    text = (folder / "toy.inter").read_text()
    (folder / "toy.inter").write_bytes(text.replace("\n", "\r\n").encode())
    assert load_mmrec(folder).n_items == 4
    np.savez(folder / "image_feat.npy", a=np.ones((4, 2)))
    (folder / "image_feat.npy.npz").rename(folder / "image_feat.npy")
    with pytest.raises(DataError, match=r"image_feat.npy: an .npz archive"):
        load_mmrec(folder)
    np.save(folder / "image_feat.npy", np.ones((4, 2), np.complex64))
    with pytest.raises(DataError, match="features must be real numbers"):
        load_mmrec(folder)


def test_a_user_with_every_training_item_is_named(tmp_path):
    rows = [(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 1), (0, 2, 1), (1, 2, 2), (0, 3, 2)]  # user 0: both train items
    with pytest.raises(DataError, match=r"toy.inter:2: user 0 has interacted with all 2 training items"):
        load_mmrec(write_folder(tmp_path, rows=rows))
