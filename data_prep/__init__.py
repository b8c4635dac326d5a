"""Raw public data -> MMRec training folders (`<name>.inter`, `*_feat.npy`, `manifest.json`).

Modules, one role each:
  writer      atomic writer shared by every dataset builder
  manifest    counts, hashes and provenance of a prepared folder; `verify_manifest`
  split       the MMRec per-user random train/valid/test split
  amazon      Amazon 2014 (McAuley) reviews/meta/image features -> MMRec folder
  encoders    text/image feature encoders (MiniLM, EfficientNet-Lite0, numpy fallback)
  known_stats published dataset sizes, used to validate prepared folders
"""
