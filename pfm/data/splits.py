"""Seeded, stratified splitting and per-class subsampling shared by every source."""

from collections.abc import Mapping, Sequence

import numpy as np


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out) with ``fraction`` of every class held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for class_id in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == class_id))
        n_held = held_out(len(members), fraction)
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def held_out(members: int, fraction: float) -> int:
    """How many of a class's ``members`` ``stratified_split`` holds out: at least one."""
    return max(1, round(fraction * members))


def train_left(members: int, test_fraction: float, val_fraction: float) -> int:
    """A class's train samples after a test split of ``test_fraction`` of its ``members``,
    then a val split of ``val_fraction`` of them all (of the rest: ``val_fraction / (1 −
    test_fraction)``), as the sources that carve both from one set do; never decreasing
    in ``members``, so a bound on them bounds the result too."""
    rest = members - held_out(members, test_fraction)
    return rest - held_out(rest, val_fraction / (1.0 - test_fraction))


def subsample_per_class(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``per_class`` seeded-random samples of every class."""
    if per_class is None:
        return np.arange(len(labels))
    if per_class < 1:
        raise ValueError(f"per_class must be ≥ 1 or null, got {per_class}")
    rng = np.random.default_rng(seed)
    chosen = [
        rng.permutation(np.flatnonzero(labels == class_id))[:per_class]
        for class_id in np.unique(labels)
    ]
    return np.sort(np.concatenate(chosen))


def draw_splits(
    per_class: Sequence[Sequence[str]], caps: Mapping[str, int], seed: int
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Split → (texts, labels): per class a permutation seeded by (seed, class id) gives
    ``caps["test"]`` test, ``caps["val"]`` val, then train up to ``caps["train"]``."""
    out: dict[str, tuple[list[str], list[int]]] = {s: ([], []) for s in ("train", "val", "test")}
    for label, texts in enumerate(per_class):
        need = caps["test"] + caps["val"] + 1
        if len(texts) < need:
            raise ValueError(
                f"class {label} has {len(texts)} texts, fewer than test + val + 1 = {need}"
            )
        order = np.random.default_rng([seed, label]).permutation(len(texts))
        bounds = {"test": (0, caps["test"]), "val": (caps["test"], caps["test"] + caps["val"])}
        bounds["train"] = (bounds["val"][1], bounds["val"][1] + caps["train"])
        for split, (start, stop) in bounds.items():
            out[split][0].extend(texts[i] for i in order[start:stop])
            out[split][1].extend([label] * len(order[start:stop]))
    return {s: (texts, np.array(labels, dtype=np.int64)) for s, (texts, labels) in out.items()}
