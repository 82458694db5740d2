"""The prepared-dataset format every source is converted to, and its on-disk form.

One compressed ``.npz`` per dataset holds all splits as uint8 images (N, H, W, C) and
int64 labels, plus the class names; a small ``counts.json`` beside it lets a reader check
class balance without loading arrays. Images are stored at their source resolution:
resizing to a backbone's input happens at load time, so one prepared file serves every
backbone.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pfm.files import read_json, write_atomic, write_json

SPLITS = ("train", "val", "test")
ARRAYS_FILE = "data.npz"
COUNTS_FILE = "counts.json"


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"labels shape {self.labels.shape} does not match {len(self.images)} images"
            )

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    class_names: tuple[str, ...]
    splits: Mapping[str, Split]

    def __post_init__(self) -> None:
        if set(self.splits) != set(SPLITS):
            raise ValueError(f"splits must be exactly {SPLITS}, got {sorted(self.splits)}")
        for split_name, split in self.splits.items():
            if len(split) and (split.labels.min() < 0 or split.labels.max() >= self.num_classes):
                raise ValueError(f"{split_name} labels fall outside 0..{self.num_classes - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            split_name: {
                name: int((split.labels == class_id).sum())
                for class_id, name in enumerate(self.class_names)
            }
            for split_name, split in self.splits.items()
        }


def save_prepared(dataset: PreparedDataset, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    arrays: dict[str, np.ndarray] = {"class_names": np.array(dataset.class_names)}
    for split_name, split in dataset.splits.items():
        arrays[f"{split_name}_images"] = split.images
        arrays[f"{split_name}_labels"] = split.labels.astype(np.int64)

    def dump(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(handle, **arrays)

    write_atomic(out_dir / ARRAYS_FILE, dump)
    counts = dataset.counts()
    write_json(
        out_dir / COUNTS_FILE,
        {
            "name": dataset.name,
            "num_classes": dataset.num_classes,
            "image_shape": list(dataset.splits["train"].images.shape[1:]),
            "totals": {s: len(dataset.splits[s]) for s in SPLITS},
            "per_class": counts,
        },
    )


def load_prepared(data_dir: str | Path) -> PreparedDataset:
    data_dir = Path(data_dir)
    arrays_path = data_dir / ARRAYS_FILE
    if not arrays_path.is_file():
        raise FileNotFoundError(f"prepared dataset {arrays_path} not found; run the prepare stage")
    with np.load(arrays_path, allow_pickle=False) as arrays:
        splits = {
            s: Split(arrays[f"{s}_images"], arrays[f"{s}_labels"].astype(np.int64)) for s in SPLITS
        }
        class_names = tuple(str(n) for n in arrays["class_names"])
    name = read_json(data_dir / COUNTS_FILE)["name"]
    return PreparedDataset(name=name, class_names=class_names, splits=splits)
