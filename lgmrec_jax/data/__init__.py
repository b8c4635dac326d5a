"""Datasets in the MMRec format: loading with validation, synthetic generation, negative sampling."""

from lgmrec_jax.data.dataset import Dataset
from lgmrec_jax.data.mmrec import DataError, load_mmrec

__all__ = ["DataError", "Dataset", "load_mmrec"]
