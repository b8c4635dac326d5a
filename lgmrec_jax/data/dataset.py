"""The in-memory dataset every model and the trainer share."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Interactions split into train/valid/test plus frozen item features, ids 0-based and contiguous.

    `train`, `valid`, `test` are int32 arrays of shape [n, 2] holding (user, item) pairs. `features` maps a modality
    name ("image", "text", ...) to a float32 [n_items, d] matrix; the order of the dict is the modality order.
    """

    name: str
    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: dict[str, np.ndarray]
    # What loading merged, dropped or noticed (counts; data/mmrec.py audit_interactions), empty for generated data.
    load_report: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for split in ("train", "valid", "test"):
            pairs = getattr(self, split)
            if pairs.ndim != 2 or pairs.shape[1] != 2:
                raise ValueError(f"{self.name}: {split} must be [n, 2] (user, item) pairs, got {pairs.shape}")
            if pairs.size and (pairs[:, 0].max() >= self.n_users or pairs[:, 1].max() >= self.n_items
                               or pairs.min() < 0):
                raise ValueError(f"{self.name}: {split} holds ids outside [0, n_users) x [0, n_items)")
        for modality, feats in self.features.items():
            if feats.shape[0] != self.n_items:
                raise ValueError(f"{self.name}: {modality} features have {feats.shape[0]} rows, "
                                 f"expected n_items = {self.n_items}")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.features)

    def split(self, name: str) -> np.ndarray:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)

    def summary(self) -> str:
        feats = ", ".join(f"{m}:{f.shape[1]}" for m, f in self.features.items()) or "none"
        density = len(self.train) / max(1, self.n_users * self.n_items)
        return (f"{self.name}: {self.n_users} users, {self.n_items} items, train/valid/test "
                f"{len(self.train)}/{len(self.valid)}/{len(self.test)} (train density {density:.5f}), "
                f"features {feats}")
