"""Atomic MMRec writer and manifest: files, validation errors, hashes, crash safety."""

import hashlib
import json

import numpy as np
import pytest

from data_prep import manifest as manifest_lib
from data_prep.writer import write_mmrec_dataset
from lgmrec_jax.errors import InputError


def _columns(n_users=4, n_items=3):
    # Every user rates every item once: contiguous ids, 3 rows per user.
    users = np.repeat(np.arange(n_users), n_items)
    items = np.tile(np.arange(n_items), n_users)
    x_label = np.tile([0, 1, 2], n_users)[: len(users)]
    return dict(users=users, items=items, ratings=np.full(len(users), 4.0),
                timestamps=np.arange(len(users)) + 1_400_000_000, x_label=x_label)


def _features(n_items=3):
    return {"image": np.arange(n_items * 4, dtype=np.float64).reshape(n_items, 4),
            "text": np.ones((n_items, 2), dtype=np.float32)}


def _write(out, **overrides):
    kwargs = {**_columns(), "features": _features(), "provenance": {"seed": 7}}
    kwargs.update(overrides)
    return write_mmrec_dataset(out, "toy", **kwargs)


def test_writes_inter_features_and_manifest(tmp_path):
    out = _write(tmp_path / "toy")
    assert sorted(p.name for p in out.iterdir()) == ["image_feat.npy", "manifest.json", "text_feat.npy", "toy.inter"]
    lines = (out / "toy.inter").read_text().splitlines()
    assert lines[0] == "userID\titemID\trating\ttimestamp\tx_label"
    assert lines[1] == "0\t0\t4.0\t1400000000\t0" and len(lines) == 13
    image = np.load(out / "image_feat.npy", allow_pickle=False)
    assert image.dtype == np.float32 and image.shape == (3, 4)
    # No temp folders left beside the output.
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]

    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"] == {"users": 4, "items": 3, "interactions": 12}
    assert m["splits"] == {"train": 4, "valid": 4, "test": 4}
    assert m["features"]["image"] == {"file": "image_feat.npy", "shape": [3, 4], "dtype": "float32"}
    assert m["seed"] == 7 and m["tools"]["numpy"] == np.__version__
    for name, entry in m["files"].items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert manifest_lib.verify_manifest(out) == ["image_feat.npy", "text_feat.npy", "toy.inter"]


def test_manifest_hashes_sources(tmp_path):
    raw = tmp_path / "ratings.csv"
    raw.write_text("a,b,5,1\n")
    out = _write(tmp_path / "toy", provenance={"sources": {"interactions": raw}, "encoders": {"text": {"name": "x"}}})
    m = manifest_lib.read_manifest(out)
    assert m["sources"]["interactions"] == {"file": "ratings.csv", "bytes": 8,
                                            "sha256": hashlib.sha256(b"a,b,5,1\n").hexdigest()}
    assert m["encoders"] == {"text": {"name": "x"}}


def test_verify_manifest_names_tampered_missing_and_extra_files(tmp_path):
    out = _write(tmp_path / "toy")
    feat = np.load(out / "text_feat.npy")
    feat[0, 0] = 2.0
    np.save(out / "text_feat.npy", feat)
    with pytest.raises(ValueError, match=r"text_feat\.npy: sha256 .* != manifest"):
        manifest_lib.verify_manifest(out)
    (out / "text_feat.npy").unlink()
    (out / "notes.txt").write_text("hi")
    with pytest.raises(ValueError) as err:
        manifest_lib.verify_manifest(out)
    assert "text_feat.npy: listed in manifest but missing" in str(err.value)
    assert "notes.txt: present but not listed" in str(err.value)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(ratings=np.ones(5)), "differ in length"),
        (dict(x_label=np.full(12, 3)), r"x_label: values must be 0 \(train\), 1 \(valid\) or 2 \(test\); found 3"),
        (dict(features={"text": np.ones((4, 2))}), "text_feat: has 4 rows but there are 3 items"),
        (dict(features={"text": np.full((3, 2), np.nan)}), "text_feat: contains NaN or inf"),
        (dict(features={"text": np.ones(3)}), "expected 2-D"),
        (dict(features={"Bad Name": np.ones((3, 2))}), "feature name"),
        (dict(items=np.tile([0, 1, 3], 4)), "items: ids must be contiguous"),
        (dict(users=np.full(12, -1)), "users: ids must be >= 0"),
        (dict(timestamps=np.full(12, 1.5)), "timestamps: expected integers"),
    ],
)
def test_rejects_invalid_inputs_with_clear_errors(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        _write(tmp_path / "toy", **override)
    assert not any(tmp_path.iterdir())


def _fail_on_second_save(monkeypatch):
    real_save = np.save
    calls = []

    def flaky_save(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", flaky_save)


def test_crash_mid_write_leaves_nothing_for_a_new_folder(tmp_path, monkeypatch):
    _fail_on_second_save(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        _write(tmp_path / "toy")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temp folder


def test_crash_mid_write_keeps_previous_folder_intact(tmp_path, monkeypatch):
    out = _write(tmp_path / "toy")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _fail_on_second_save(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        _write(tmp_path / "toy", ratings=np.full(12, 1.0), replace=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]
    manifest_lib.verify_manifest(out)


def test_rewrite_with_replace_replaces_its_own_folder_whole(tmp_path):
    out = _write(tmp_path / "toy")
    _write(tmp_path / "toy", features={"text": np.zeros((3, 2))}, replace=True)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "text_feat.npy", "toy.inter"]
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]


def _tree(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_existing_output_is_refused_before_anything_is_written(tmp_path):
    out = _write(tmp_path / "toy")
    before = _tree(tmp_path)
    with pytest.raises(InputError, match="pass --replace"):  # its own output: only with the flag
        _write(tmp_path / "toy", features={"text": np.zeros((3, 2))})
    (out / "notes.txt").write_text("mine")
    before = _tree(tmp_path)
    with pytest.raises(InputError, match=r"does not list \(notes.txt\)"):  # a user's file: never, flag or not
        _write(tmp_path / "toy", replace=True)
    assert _tree(tmp_path) == before
    download = tmp_path / "mmrec"  # a folder without a manifest (e.g. MMRec's published files)
    download.mkdir()
    (download / "mmrec.inter").write_text("userID\titemID\tx_label\n")
    before = _tree(tmp_path)
    with pytest.raises(InputError, match="not written by data_prep"):
        _write(download, replace=True)
    (tmp_path / "a_file").write_bytes(b"keep")
    before = _tree(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        _write(tmp_path / "a_file", replace=True)
    assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "mmrec", "toy"]  # no dotted leftovers
