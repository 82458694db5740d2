"""Real datasets that install from package registries, so the default pipeline runs offline.

- ``digits``: scikit-learn's bundled UCI handwritten digits (1797 images, 8×8, 10 classes).
- ``fashion-mnist``: Fashion-MNIST as installed by Debian's ``dataset-fashion-mnist``
  (gzipped IDX files; 60k train / 10k test, 28×28, 10 classes, MIT licence).
"""

import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pfm.config import Count, Fraction, Natural
from pfm.data.prepared import PreparedDataset, Split
from pfm.data.registry import DATASETS, DESCRIPTIONS, DatasetInfo
from pfm.data.splits import held_out, stratified_split, subsample_per_class, train_left

FASHION_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
DIGITS_PER_CLASS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)  # load_digits' counts
FASHION_TRAIN_PER_CLASS = 6000  # the official train split, balanced
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@DATASETS.register("digits")
def digits(
    val_fraction: Fraction = 0.1,
    test_fraction: Fraction = 0.3,
    split_seed: Natural = 0,
    per_class: Count | None = None,
) -> PreparedDataset:
    """Digits ship with one flat set; we carve seeded stratified val/test splits from it."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are counts 0..16 (4×4 blocks of a 32×32 bitmap); stretch to uint8.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    keep = subsample_per_class(labels, per_class, split_seed)
    images, labels = images[keep], labels[keep]
    rest, test = stratified_split(labels, test_fraction, split_seed)
    train_rel, val_rel = stratified_split(
        labels[rest], val_fraction / (1.0 - test_fraction), split_seed + 1
    )
    train, val = rest[train_rel], rest[val_rel]
    return PreparedDataset(
        name="digits",
        class_names=tuple(str(d) for d in range(10)),
        splits={
            s: Split(images[i], labels[i])
            for s, i in (("train", train), ("val", val), ("test", test))
        },
    )


@DESCRIPTIONS.register("digits")
def describe_digits(args: Mapping[str, Any]) -> DatasetInfo:
    cap = args["per_class"] or max(DIGITS_PER_CLASS)
    train = min(
        train_left(min(n, cap), args["test_fraction"], args["val_fraction"])
        for n in DIGITS_PER_CLASS
    )
    return DatasetInfo("image", len(DIGITS_PER_CLASS), train)


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST family's format) into a uint8 array."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, holds {data.size} bytes")
    return data.reshape(dims)


@DATASETS.register("fashion-mnist")
def fashion_mnist(
    root: str = "/usr/share/datasets/fashion-mnist",
    train_per_class: Count | None = None,
    test_per_class: Count | None = None,
    val_fraction: Fraction = 0.1,
    split_seed: Natural = 0,
) -> PreparedDataset:
    """Val is a stratified slice of the (subsampled) official train split; test is the official
    test split, optionally subsampled."""
    root_path = Path(root)
    paths = {split: [root_path / f for f in files] for split, files in FASHION_FILES.items()}
    missing = [str(p) for files in paths.values() for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found: {missing}. Install Debian's "
            f"'dataset-fashion-mnist' package (apt-get install dataset-fashion-mnist) or set "
            f"data.fashion-mnist.root to a folder holding the four gzipped IDX files."
        )
    loaded = {
        split: (read_idx(images)[..., None], read_idx(labels).astype(np.int64))
        for split, (images, labels) in paths.items()
    }
    train_images, train_labels = loaded["train"]
    pool = subsample_per_class(train_labels, train_per_class, split_seed)
    train_rel, val_rel = stratified_split(train_labels[pool], val_fraction, split_seed)
    train, val = pool[train_rel], pool[val_rel]
    test_images, test_labels = loaded["test"]
    test = subsample_per_class(test_labels, test_per_class, split_seed)
    return PreparedDataset(
        name="fashion-mnist",
        class_names=FASHION_CLASSES,
        splits={
            "train": Split(train_images[train], train_labels[train]),
            "val": Split(train_images[val], train_labels[val]),
            "test": Split(test_images[test], test_labels[test]),
        },
    )


@DESCRIPTIONS.register("fashion-mnist")
def describe_fashion_mnist(args: Mapping[str, Any]) -> DatasetInfo:
    pool = min(args["train_per_class"] or FASHION_TRAIN_PER_CLASS, FASHION_TRAIN_PER_CLASS)
    return DatasetInfo("image", len(FASHION_CLASSES), pool - held_out(pool, args["val_fraction"]))
