"""The prepared-dataset format every source is converted to, and its on-disk form.

One compressed ``.npz`` per dataset holds all splits plus the class names; a small
``counts.json`` beside it lets a reader check class balance without loading arrays. A
split's ``inputs`` array holds the model inputs of its modality (``data_type``):

- ``image``: uint8 images (N, H, W, C) at their source resolution; resizing to a
  backbone's input happens at load time, so one prepared file serves every backbone.
- ``audio``: float16 log-mel features (N, frames, mel bins), already normalised with the
  train split's statistics (``feature_norm``: mean, std, kept for the record). Features
  are computed once here, never per epoch (``pfm.data.audio_features``); float16 halves
  the file and is far finer than the features' noise.
- ``text``: int32 token ids and attention mask (N, 2, T), tokenised once here
  (``pfm.data.tokens``).

Each layout is declared once, by its modality (``pfm.data.modalities``), so the code that
slices splits by class stays modality-blind. In the file the arrays keep their first
name, ``<split>_images``, for every modality: prepared files and DVC's cached copies of
them stay valid. ``source`` (where the data come from:
licence, source files' SHA-256) is written to ``counts.json`` and read back.

Splits are exactly train/val/test plus, optionally, ``EXTRA_SPLITS``: ``real`` holds
recordings of another origin than train (real speech for a synthesised set), evaluated
apart. Files written before ``data_type`` existed load as images.

Reading refuses pickled data (``allow_pickle=False``: an array file could otherwise run
code) and turns every way a file can be wrong — random bytes, a damaged archive, a
foreign ``.npz``, a missing or garbled ``counts.json`` — into one error naming the file.
"""

import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pfm.data.modalities import MODALITIES, modality_of
from pfm.files import read_json, write_atomic, write_json

SPLITS = ("train", "val", "test")
EXTRA_SPLITS = ("real",)
DATA_TYPES = tuple(MODALITIES)
ARRAYS_FILE = "data.npz"
COUNTS_FILE = "counts.json"


@dataclass(frozen=True)
class Split:
    inputs: np.ndarray  # in a modality's stored layout (pfm.data.modalities)
    labels: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        modality_of(self.inputs)
        if self.labels.shape != (len(self.inputs),):
            raise ValueError(
                f"labels shape {self.labels.shape} does not match {len(self.inputs)} inputs"
            )

    @property
    def data_type(self) -> str:
        return modality_of(self.inputs)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class PreparedDataset:
    name: str
    class_names: tuple[str, ...]
    splits: Mapping[str, Split]
    data_type: str = "image"
    feature_norm: tuple[float, float] | None = None  # audio: train (mean, std) applied
    source: Mapping[str, str] | None = None  # provenance: licence, source files' SHA-256
    # text: per class, the token its answer word starts with (pfm.data.tokens.answer_tokens)
    answer_tokens: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        extra = set(self.splits) - set(SPLITS)
        if not set(SPLITS) <= set(self.splits) or not extra <= set(EXTRA_SPLITS):
            raise ValueError(
                f"splits must be exactly {SPLITS} plus optionally {EXTRA_SPLITS}, "
                f"got {sorted(self.splits)}"
            )
        if self.data_type not in DATA_TYPES:
            raise ValueError(f"data_type must be one of {DATA_TYPES}, got {self.data_type!r}")
        for split_name, split in self.splits.items():
            if split.data_type != self.data_type:
                raise ValueError(
                    f"{split_name} holds {split.data_type} inputs in a {self.data_type} dataset"
                )
            if len(split) and (split.labels.min() < 0 or split.labels.max() >= self.num_classes):
                raise ValueError(f"{split_name} labels fall outside 0..{self.num_classes - 1}")
        if self.answer_tokens is not None and len(self.answer_tokens) != self.num_classes:
            raise ValueError(
                f"{len(self.answer_tokens)} answer tokens for {self.num_classes} classes"
            )

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
    arrays: dict[str, np.ndarray] = {
        "class_names": np.array(dataset.class_names),
        "data_type": np.array(dataset.data_type),
    }
    if dataset.feature_norm is not None:
        arrays["feature_norm"] = np.array(dataset.feature_norm, dtype=np.float64)
    if dataset.answer_tokens is not None:
        arrays["answer_tokens"] = np.array(dataset.answer_tokens, dtype=np.int64)
    for split_name, split in dataset.splits.items():
        arrays[f"{split_name}_images"] = split.inputs
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
            "data_type": dataset.data_type,
            "num_classes": dataset.num_classes,
            "input_shape": list(dataset.splits["train"].inputs.shape[1:]),
            "totals": {s: len(split) for s, split in dataset.splits.items()},
            "per_class": counts,
            **({"source": dict(dataset.source)} if dataset.source else {}),
        },
    )


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the prepared archive ``path``, read whole (so a damaged member fails
    here, not halfway through training), or a ValueError saying what is wrong with it."""
    damage = (zipfile.BadZipFile, zlib.error, EOFError, OSError)
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError:  # numpy takes what is neither a zip nor a .npy file for a pickle
        with path.open("rb") as handle:
            pickled = handle.read(1) == b"\x80"  # the PROTO opcode a pickle opens with
        what = (
            "a pickle, refused: loading it could run code"
            if pickled
            else "neither an .npz archive nor a .npy array (random or foreign bytes)"
        )
        raise ValueError(f"{path}: {what}") from None
    except damage as error:
        raise ValueError(f"{path}: damaged archive: {error or type(error).__name__}") from None
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: a single .npy array, not the prepared .npz archive")
    try:
        with loaded as arrays:
            return {key: arrays[key] for key in arrays.files}
    except ValueError as error:  # an object array (numpy would unpickle it), a bad header
        what = (
            "holds pickled objects, refused: loading them could run code"
            if "pickle" in str(error)
            else f"damaged archive: {error}"
        )
        raise ValueError(f"{path}: {what}") from None
    except damage as error:
        raise ValueError(f"{path}: damaged archive: {error or type(error).__name__}") from None


def _counts_header(path: Path) -> tuple[str, dict[str, str] | None]:
    """The dataset name and its ``source`` record (None where none was written)."""
    if not path.is_file():
        raise FileNotFoundError(f"prepared dataset file {path} not found; run the prepare stage")
    try:
        counts = read_json(path)
        name, source = str(counts["name"]), counts.get("source")
        return name, None if source is None else {str(k): str(v) for k, v in source.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        reason = f"{type(error).__name__}: {error}"
        raise ValueError(f"{path}: not a prepared counts file ({reason})") from None


def load_prepared(data_dir: str | Path) -> PreparedDataset:
    data_dir = Path(data_dir)
    arrays_path = data_dir / ARRAYS_FILE
    if not arrays_path.is_file():
        raise FileNotFoundError(f"prepared dataset {arrays_path} not found; run the prepare stage")
    name, source = _counts_header(data_dir / COUNTS_FILE)
    arrays = _read_arrays(arrays_path)
    try:
        return replace(_assemble(name, arrays), source=source)
    except KeyError as error:
        raise ValueError(f"{arrays_path}: no array {error} (not a prepared dataset)") from None
    except ValueError as error:
        raise ValueError(f"{arrays_path}: {error}") from None


def _assemble(name: str, arrays: Mapping[str, Any]) -> PreparedDataset:
    splits = {
        s: Split(arrays[f"{s}_images"], arrays[f"{s}_labels"].astype(np.int64))
        for s in (*SPLITS, *EXTRA_SPLITS)
        if s in SPLITS or f"{s}_images" in arrays
    }
    class_names = tuple(str(n) for n in arrays["class_names"])
    data_type = str(arrays["data_type"]) if "data_type" in arrays else "image"
    norm = tuple(float(v) for v in arrays["feature_norm"]) if "feature_norm" in arrays else None
    answers = tuple(int(t) for t in arrays["answer_tokens"]) if "answer_tokens" in arrays else None
    return PreparedDataset(
        name=name,
        class_names=class_names,
        splits=splits,
        data_type=data_type,
        feature_norm=norm,
        answer_tokens=answers,
    )
