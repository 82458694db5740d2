"""Datasets: a registry of sources, each converted once into the prepared format.

Importing this package registers every source (one module per source).
"""

from pfm.data import (  # noqa: F401  (registry)
    bbc_news,
    embedded,
    medmnist_sets,
    spoken_words,
    urbansound8k,
    wordnet,
)
from pfm.data.prepared import PreparedDataset, Split, load_prepared, save_prepared
from pfm.data.registry import DATASETS, build_dataset

__all__ = [
    "DATASETS",
    "PreparedDataset",
    "Split",
    "build_dataset",
    "load_prepared",
    "save_prepared",
]
