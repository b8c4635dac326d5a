"""The MMRec loader: a correct folder loads; each kind of damage gives an error naming file (and line)."""

import numpy as np
import pytest

from lgmrec_jax.data.mmrec import DataError, load_mmrec

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
