"""Datasets: a registry of sources, each converted once into the prepared format.

Importing this package registers every source (one module per source).
"""

from pfm.data import embedded, medmnist_sets, spoken_words, urbansound8k  # noqa: F401  (registry)
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
