"""Model registry. A model is a module exposing:

  Config                                   frozen dataclass of hyperparameters (names as in the spec / MMRec)
  build_graphs(data, cfg, backend, cache_dir=None) -> pytree   host-side graphs, built once (cache_dir: optional cache)
  init(key, cfg, data) -> params           params is a pytree of arrays
  apply(params, graphs, feats, key, train, cfg) -> (user_emb [U,d], item_emb [I,d], aux)
  loss(params, graphs, feats, batch, key, cfg) -> (scalar, dict of scalar parts)

`feats` maps modality name -> float32 [n_items, dim]; a module that sets READS_FEATURE_INPUTS = False (GUME, FREEDOM
and BM3 keep fine-tuned copies in params) is given an empty dict, so the frozen tables are not also placed on the
device. `batch` holds int32 `users`, `pos`, `neg` and a float32 `mask` ([B] each; mask 0 marks padding); a module that
sets USES_NEGATIVES = False (BM3) gets no `neg` and the sampler draws none. `key` is fold_in(run key, step); a module
that sets PER_EPOCH_KEY = True (FREEDOM, whose pruned graph MMRec draws once per epoch) gets one key per epoch
instead (train.model_key). The train loop knows nothing else about a model. How to add one: README.md here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

MODEL_MODULES = {
    "lightgcn": "lgmrec_jax.models.lightgcn",
    "lgmrec": "lgmrec_jax.models.lgmrec",
    "gume": "lgmrec_jax.models.gume",
    "freedom": "lgmrec_jax.models.freedom",
    "bm3": "lgmrec_jax.models.bm3",
}


def get_model(name: str) -> ModuleType:
    if name not in MODEL_MODULES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_MODULES)}")
    return importlib.import_module(MODEL_MODULES[name])
