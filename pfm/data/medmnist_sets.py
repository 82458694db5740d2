"""The five MedMNIST v2 sets of the paper, read through the ``medmnist`` package's own API.

Offline is the normal case here: a missing ``.npz`` is reported with the exact file name
and folder before anything is written. ``download: true`` uses medmnist's own downloader
(for machines with network). medmnist's ``len()`` asserts the official sample count, so
we read its ``imgs``/``labels`` arrays instead, which also lets tests use small files.
"""

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from pfm.config import Count, Fraction, Natural, OneOf
from pfm.data.prepared import PreparedDataset, Split
from pfm.data.registry import DATASETS, DESCRIPTIONS, DatasetInfo
from pfm.data.splits import held_out, stratified_split, subsample_per_class

MEDMNIST_FLAGS = ("bloodmnist", "dermamnist", "octmnist", "organsmnist", "organcmnist")
SIZES = (28, 64, 128, 224)
# flag → (classes, official train samples, official val samples): medmnist.INFO's, here so
# that describing a set does not import medmnist (seconds)
MEDMNIST_COUNTS = {
    "bloodmnist": (8, 11959, 1712),
    "dermamnist": (7, 7007, 1003),
    "octmnist": (4, 97477, 10832),
    "organsmnist": (11, 13932, 2452),
    "organcmnist": (11, 12975, 2392),
}


def medmnist_file(flag: str, root: str | Path, size: int) -> Path:
    """Where medmnist expects the file: ``{flag}.npz`` at 28 px, else ``{flag}_{size}.npz``."""
    suffix = "" if size == 28 else f"_{size}"
    return Path(root) / f"{flag}{suffix}.npz"


def _as_split(images: np.ndarray, labels: np.ndarray) -> Split:
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    return Split(images, np.asarray(labels).reshape(-1).astype(np.int64))


def load_medmnist(
    flag: str,
    root: str = "data/raw/medmnist",
    size: Annotated[int, OneOf(SIZES, "MedMNIST size")] = 28,
    download: bool = False,
    train_split: Literal["train", "val"] = "train",
    per_class: Count | None = None,
    val_fraction: Fraction = 0.1,
    split_seed: Natural = 0,
) -> PreparedDataset:
    """``train_split: val`` reproduces the authors' octmnist recipe (its train split is 97k):
    training then uses the official val split less a stratified ``val_fraction`` slice,
    which becomes our val. ``per_class`` caps every split per class for CPU runs."""
    import medmnist

    if size not in SIZES:
        raise ValueError(f"MedMNIST size must be one of {SIZES}, got {size}")
    if train_split not in ("train", "val"):
        raise ValueError(f"train_split must be 'train' or 'val', got {train_split!r}")
    info = medmnist.INFO[flag]
    path = medmnist_file(flag, root, size)
    if download:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.is_file():
        raise FileNotFoundError(
            f"MedMNIST file {path} not found and download is off. Place the official "
            f"release file {path.name} (MD5 {info['MD5' + ('' if size == 28 else f'_{size}')]}) "
            f"in {path.parent}/, or set data.{flag}.download: true on a machine with network."
        )
    dataset_class = getattr(medmnist, info["python_class"])
    official = {
        split: dataset_class(split=split, root=str(path.parent), size=size, download=download)
        for split in ("train", "val", "test")
    }
    splits = {split: _as_split(d.imgs, d.labels) for split, d in official.items()}
    if train_split == "val":
        source = splits["val"]
        train_idx, val_idx = stratified_split(source.labels, val_fraction, split_seed)
        splits["train"] = Split(source.inputs[train_idx], source.labels[train_idx])
        splits["val"] = Split(source.inputs[val_idx], source.labels[val_idx])
    for split_name, split in list(splits.items()):
        keep = subsample_per_class(split.labels, per_class, split_seed)
        splits[split_name] = Split(split.inputs[keep], split.labels[keep])
    class_names = tuple(info["label"][str(i)] for i in range(len(info["label"])))
    return PreparedDataset(name=flag, class_names=class_names, splits=splits)


def describe_medmnist(flag: str, args: Mapping[str, Any]) -> DatasetInfo:
    """The smallest class has at most the split's mean (official count ÷ C) before any
    val slice and ``per_class`` cap."""
    classes, train, val = MEDMNIST_COUNTS[flag]
    if args["train_split"] == "val":
        smallest = val // classes
        smallest -= held_out(smallest, args["val_fraction"])
    else:
        smallest = train // classes
    return DatasetInfo("image", classes, min(smallest, args["per_class"] or smallest))


for _flag in MEDMNIST_FLAGS:
    DATASETS.register(_flag)(functools.partial(load_medmnist, _flag))
    DESCRIPTIONS.register(_flag)(functools.partial(describe_medmnist, _flag))
