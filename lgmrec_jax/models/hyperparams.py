"""Every model's hyperparameters (the `Config` dataclasses) and the model's own cross-key check, without JAX.

The config system (lgmrec_jax/config.py) reads, coerces and checks these before anything heavy is imported, so a
mistyped key or a bad value is reported at once rather than after seconds of importing JAX. Each model module
re-exports its class as `Config` (and LGMRec its `validate`): `lgmrec.Config is LGMRecConfig`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LightGCNConfig:
    embedding_size: int = 64
    n_ui_layers: int = 2
    reg_weight: float = 1e-6


@dataclasses.dataclass(frozen=True)
class LGMRecConfig:
    embedding_size: int = 64
    feat_embed_dim: int = 64  # must equal embedding_size when MGE is used: E_cge + E_mge is a sum
    n_ui_layers: int = 2  # L, CGE layers
    n_mm_layers: int = 2  # K, MGE layers (0 = unpropagated features)
    n_hyper_layer: int = 1  # H, HGNN layers (≥ 1)
    hyper_num: int = 4  # A, hyperedges per modality
    keep_rate: float = 0.5  # dropout keep probability on the hyperedge matrices
    alpha: float = 0.3
    cl_weight: float = 1e-4
    reg_weight: float = 1e-6
    tau: float = 0.2  # Gumbel-softmax AND InfoNCE temperature (one constant in the official code)
    use_cge: bool = True
    use_mge: bool = True
    use_ghe: bool = True
    use_hcl: bool = True
    user_hyper_fix: bool = True


def validate_lgmrec(cfg: LGMRecConfig, modalities: tuple[str, ...]) -> None:
    """Rejects settings the model cannot run, naming the offending key."""
    if cfg.n_hyper_layer < 1:
        raise ValueError(f"lgmrec: n_hyper_layer must be ≥ 1, got {cfg.n_hyper_layer}")
    if min(cfg.n_ui_layers, cfg.n_mm_layers) < 0 or cfg.hyper_num < 1:
        raise ValueError("lgmrec: n_ui_layers and n_mm_layers must be ≥ 0 and hyper_num ≥ 1")
    if not 0.0 < cfg.keep_rate <= 1.0:
        raise ValueError(f"lgmrec: keep_rate must be in (0, 1], got {cfg.keep_rate}")
    if cfg.tau <= 0:
        raise ValueError(f"lgmrec: tau must be positive, got {cfg.tau}")
    if modalities and cfg.use_mge and cfg.feat_embed_dim != cfg.embedding_size:
        raise ValueError(f"lgmrec: feat_embed_dim ({cfg.feat_embed_dim}) must equal embedding_size "
                         f"({cfg.embedding_size}) because E_cge and E_mge are added")
    if not cfg.use_cge and (not modalities or not (cfg.use_mge or cfg.use_ghe)):
        raise ValueError("lgmrec: use_cge=False leaves no embedding (needs modalities and use_mge or use_ghe)")


@dataclasses.dataclass(frozen=True)
class GUMEConfig:
    """Names as GUME's yaml; defaults are the common values plus the Baby block (the one active in the repo)."""

    embedding_size: int = 64
    n_ui_layers: int = 3  # LightGCN layers for the extended ID and extended interest encoders
    n_layers: int = 2  # kNN propagation steps for the explicit interaction features
    knn_k: int = 10
    reg_weight_1: float = 1e-5
    reg_weight_2: float = 0.1
    bm_loss: float = 0.01
    bm_temp: float = 0.4
    um_loss: float = 0.01
    um_temp: float = 0.1
    vt_loss: float = 0.1


# Keyed as models.MODEL_MODULES (tests/test_config.py checks that the two registries agree).
CONFIGS = {"lightgcn": LightGCNConfig, "lgmrec": LGMRecConfig, "gume": GUMEConfig}
VALIDATORS = {"lgmrec": validate_lgmrec}
