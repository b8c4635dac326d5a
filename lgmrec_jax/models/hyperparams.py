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


@dataclasses.dataclass(frozen=True)
class FREEDOMConfig:
    """Names as MMRec's FREEDOM.yaml. MMRec grid-searches dropout ∈ {0.8, 0.9} and reg_weight ∈ {0, 1e-5, 1e-4,
    1e-3} and publishes no per-dataset choice; the defaults are one point of that grid (experiments/configs/freedom).
    The yaml's `lambda_coeff`, `weight_size` and `cf_model` are read by no line of MMRec's model, so they are not
    here."""

    embedding_size: int = 64
    feat_embed_dim: int = 64  # must equal embedding_size: the modality BPR scores user embeddings against it
    knn_k: int = 10
    n_mm_layers: int = 1  # propagations over the frozen item-item graph
    n_ui_layers: int = 2  # LightGCN layers over the (pruned) user-item graph
    mm_image_weight: float = 0.1  # weight of the image kNN graph in the item-item graph (text: 1 - it)
    dropout: float = 0.8  # fraction of user-item edges pruned per epoch (0 = the full graph)
    reg_weight: float = 1e-4  # weight of the modality BPR terms


def validate_freedom(cfg: FREEDOMConfig, modalities: tuple[str, ...]) -> None:
    if not modalities:
        raise ValueError("freedom: needs at least one item modality (its item-item graph is built from them)")
    if cfg.feat_embed_dim != cfg.embedding_size:
        raise ValueError(f"freedom: feat_embed_dim ({cfg.feat_embed_dim}) must equal embedding_size "
                         f"({cfg.embedding_size}): the modality BPR terms score user embeddings against projected "
                         "features")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"freedom: dropout must be in [0, 1), got {cfg.dropout}")
    if not 0.0 <= cfg.mm_image_weight <= 1.0:
        raise ValueError(f"freedom: mm_image_weight must be in [0, 1], got {cfg.mm_image_weight}")


@dataclasses.dataclass(frozen=True)
class BM3Config:
    """Names as MMRec's BM3.yaml; defaults are the Baby row of BM3's published best settings (layers 1, dropout 0.5,
    reg_weight 0.1). The yaml's `feat_embed_dim` is not read by MMRec's model (the projections map to
    embedding_size), so it is not here."""

    embedding_size: int = 64
    n_layers: int = 1  # LightGCN layers
    dropout: float = 0.5  # dropout rate of the target views
    reg_weight: float = 0.1
    cl_weight: float = 2.0  # weight of the modality alignment and masked-feature terms


def validate_bm3(cfg: BM3Config, modalities: tuple[str, ...]) -> None:
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"bm3: dropout must be in [0, 1), got {cfg.dropout}")


# Keyed as models.MODEL_MODULES (tests/test_config.py checks that the two registries agree).
CONFIGS = {"lightgcn": LightGCNConfig, "lgmrec": LGMRecConfig, "gume": GUMEConfig, "freedom": FREEDOMConfig,
           "bm3": BM3Config}
VALIDATORS = {"lgmrec": validate_lgmrec, "freedom": validate_freedom, "bm3": validate_bm3}
