"""``urbansound8k``: UrbanSound8K (Salamon et al., ACM MM 2014) from its official release.

The paper's audio benchmark, with AST. Nothing of it installs from a registry, so it is
read from ``root`` in the release's own layout — ``metadata/UrbanSound8K.csv`` (columns
slice_file_name, fsID, start, end, salience, fold, classID, class) and
``audio/fold<N>/<slice_file_name>`` — and a missing file fails before anything is
computed, naming where the release must go.

Splits follow the official folds, never a random split: slices of one recording share a
fold, so a random split would put near-copies in train and test. The official protocol
is 10-fold cross-validation; one benchmark run uses one fold assignment: by default
folds 1–8 train, 9 val, 10 test (``train_folds``/``val_folds``/``test_folds``; rotate them
for CV). Clips (≤ 4 s) become mono 16 kHz and ``frames`` log-mel frames (400 = 4 s);
``per_class`` caps every split per class (seeded) for CPU runs. ``features`` picks AST's
features (default) or Whisper's (``pfm.data.audio_features.extract``).
"""

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from pfm.config import Bounds, Count, Natural, NonEmpty, OneOf
from pfm.data.audio_features import FEATURES, extract
from pfm.data.audio_io import load_mono
from pfm.data.prepared import PreparedDataset, Split
from pfm.data.registry import DATASETS, DESCRIPTIONS, DatasetInfo
from pfm.data.splits import subsample_per_class

METADATA = Path("metadata") / "UrbanSound8K.csv"
COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
FOLDS = range(1, 11)
Folds = Annotated[Sequence[Annotated[int, Bounds(1, 10)]], NonEmpty()]  # official folds
MAX_SECONDS = 4.0  # the release's slices are at most 4 s
CLASSES = 10  # the release's classID 0..9


def _release_error(root: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"UrbanSound8K {what}. Unpack the official release (https://urbansounddataset.weebly"
        f".com/urbansound8k.html) so that {root}/metadata/UrbanSound8K.csv and "
        f"{root}/audio/fold1..fold10/ exist, or set data.urbansound8k.root to its folder."
    )


def read_metadata(root: Path) -> list[dict[str, str]]:
    path = root / METADATA
    if not path.is_file():
        raise _release_error(root, f"metadata {path} not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks the official column(s) {missing}")
        return list(reader)


def fold_assignment(
    train_folds: Sequence[int], val_folds: Sequence[int], test_folds: Sequence[int]
) -> dict[int, str]:
    """fold → split; the three lists must be disjoint, non-empty folds of 1..10."""
    assignment: dict[int, str] = {}
    for split, folds in (("train", train_folds), ("val", val_folds), ("test", test_folds)):
        if not folds:
            raise ValueError(f"{split}_folds is empty")
        for fold in folds:
            if fold not in FOLDS:
                raise ValueError(f"UrbanSound8K folds are 1..10, got {fold} in {split}_folds")
            if fold in assignment:
                raise ValueError(f"fold {fold} is in both {assignment[fold]} and {split} folds")
            assignment[fold] = split
    return assignment


@DATASETS.register("urbansound8k")
def urbansound8k(
    root: str = "data/raw/UrbanSound8K",
    train_folds: Folds = (1, 2, 3, 4, 5, 6, 7, 8),
    val_folds: Folds = (9,),
    test_folds: Folds = (10,),
    per_class: Count | None = None,
    frames: Count = 400,
    split_seed: Natural = 0,
    features: Annotated[str, OneOf(FEATURES, "feature recipe")] = "ast",
) -> PreparedDataset:
    """Folds not named in any list are left out (e.g. to run on fewer folds on a CPU)."""
    root_path = Path(root)
    rows = read_metadata(root_path)
    assignment = fold_assignment(train_folds, val_folds, test_folds)
    names = {int(r["classID"]): r["class"] for r in rows}
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"classID values must be 0..C-1, got {sorted(names)}")
    chosen: dict[str, list[tuple[Path, int]]] = {"train": [], "val": [], "test": []}
    for r in rows:
        split = assignment.get(int(r["fold"]))
        if split is not None:
            path = root_path / "audio" / f"fold{r['fold']}" / r["slice_file_name"]
            chosen[split].append((path, int(r["classID"])))
    missing = [str(p) for items in chosen.values() for p, _ in items if not p.is_file()]
    if missing:
        raise _release_error(root_path, f"audio is incomplete: {len(missing)} file(s) missing, "
                             f"e.g. {missing[0]}")  # fmt: skip
    clips, labels = {}, {}
    for split, items in chosen.items():
        split_labels = np.array([c for _, c in items], dtype=np.int64)
        keep = subsample_per_class(split_labels, per_class, split_seed)
        clips[split] = [load_mono(items[i][0], max_seconds=MAX_SECONDS) for i in keep]
        labels[split] = split_labels[keep]
    inputs, norm = extract(features, clips, frames)
    return PreparedDataset(
        name="urbansound8k",
        class_names=tuple(names[c] for c in range(len(names))),
        splits={split: Split(inputs[split], labels[split]) for split in inputs},
        data_type="audio",
        feature_norm=norm,
    )


@DESCRIPTIONS.register("urbansound8k")
def describe_urbansound8k(args: Mapping[str, Any]) -> DatasetInfo:
    return DatasetInfo("audio", CLASSES, args["per_class"])
