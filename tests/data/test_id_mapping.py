"""The dataset's own ids beside the dense ones: written by data_prep, read back whole, damage named by line."""

import pytest

from lgmrec_jax.data import id_mapping
from lgmrec_jax.data.mmrec import DataError


def test_round_trip_and_either_column_order(tmp_path):
    id_mapping.write_mapping(tmp_path / "u_id_mapping.csv", "user", "reviewerID", ["A9", "A1", "A5"])
    mapping = id_mapping.read_mapping(tmp_path, "user", 3)
    assert mapping.original == ("A9", "A1", "A5") and mapping.dense_of()["A5"] == 2
    (tmp_path / "i_id_mapping.csv").write_text("itemID\tasin\n1\tB1\n0\tB0\n")  # dense column first
    assert id_mapping.read_mapping(tmp_path, "item", 2).original == ("B0", "B1")
    assert id_mapping.read_mapping(tmp_path / "nowhere", "item", 2) is None


@pytest.mark.parametrize("text, needle", [
    ("asin\tid\n", ":1: expected a header of two tab-separated columns, one of them itemID"),
    ("asin\titemID\nB0\t0\nB1\t+1\n", ":3: itemID '+1' is not one of 0..1"),
    ("asin\titemID\nB0\t0\nB0\t1\n", ":3: itemID 1 or id 'B0' appears twice"),
    ("asin\titemID\nB0\t0\n", ": no line for itemID 1; the mapping must cover"),
    ("asin\titemID\nB0\t0\tx\n", ":2: expected 2 tab-separated fields, found 3"),
])
def test_damaged_mapping_is_named_by_file_and_line(tmp_path, text, needle):
    (tmp_path / "i_id_mapping.csv").write_text(text)
    with pytest.raises(DataError, match="i_id_mapping.csv" + needle.replace("+", r"\+").replace("(", r"\(")):
        id_mapping.read_mapping(tmp_path, "item", 2)


def test_writer_refuses_ids_that_would_not_read_back(tmp_path):
    for names, needle in ((["a", "a"], "not unique"), (["a\tb"], "no tab"), ([""], "non-empty")):
        with pytest.raises(ValueError, match=needle):
            id_mapping.write_mapping(tmp_path / "u_id_mapping.csv", "user", "user_id", names)
