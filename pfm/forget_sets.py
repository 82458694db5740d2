"""What a request forgets: whole classes, or a subset of the train split's rows.

The forget-k protocol forgets classes (the prompt model's setting: a class is a prompt).
The setting PI-Prefix was built for forgets samples: a fixed share of the training rows,
whatever their labels (its authors' code takes a 3 % subset of SST-2's training set).
Both are a ``ForgetSet``; each method declares the kinds it serves
(``pfm.unlearn.base.method``), and the runner slices the train split by the set's row
mask, so a method reads forget and retain rows through the same marked handles whichever
kind it is asked for.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

ForgetKind = Literal["classes", "samples"]
FORGET_KINDS: tuple[ForgetKind, ...] = ("classes", "samples")
SAMPLES_STREAM = 29  # tags the sample draws' seed, apart from every other seeded draw


@dataclass(frozen=True)
class ForgetSet:
    """``members`` are class ids (``classes``) or train-split row indices (``samples``),
    sorted and distinct."""

    kind: ForgetKind
    members: tuple[int, ...]

    @classmethod
    def of_classes(cls, classes: Iterable[int]) -> "ForgetSet":
        return cls("classes", tuple(sorted({int(c) for c in classes})))

    @classmethod
    def of_rows(cls, rows: Iterable[int]) -> "ForgetSet":
        return cls("samples", tuple(sorted({int(r) for r in rows})))

    def check(self, num_classes: int, num_rows: int) -> None:
        """Refuse a set that forgets nothing, everything, or what does not exist."""
        size, what = (num_classes, "classes") if self.kind == "classes" else (num_rows, "rows")
        if not self.members or len(self.members) >= size:
            raise ValueError(f"forget 1..{size - 1} {what}, got {len(self.members)}")
        if self.members[0] < 0 or self.members[-1] >= size:
            shown = list(self.members) if self.kind == "classes" else [self.members[-1]]
            raise ValueError(f"forget {what} {shown} out of range 0..{size - 1}")

    def mask(self, labels: np.ndarray) -> np.ndarray:
        """One bool per row of the split whose ``labels`` these are: is it forgotten?"""
        if self.kind == "classes":
            return np.isin(labels, self.members)
        inside = np.zeros(len(labels), dtype=bool)
        inside[list(self.members)] = True
        return inside

    def digest(self) -> str:
        """A short name for the set, equal exactly when two sets are: what pairs a
        method's unit with its reference's when the members are too many to record."""
        text = f"{self.kind}:{','.join(map(str, self.members))}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def draw_sample_sets(num_rows: int, fraction: float, count: int, seed: int) -> list[ForgetSet]:
    """``count`` seeded forget sets of ⌊fraction · rows⌉ train rows each (at least 1,
    at most all but one), drawn uniformly without regard to labels, as the authors draw
    theirs. Set i follows from (seed, i) alone, so every method of a seed forgets the
    same rows, and more sets extend the list without changing its head."""
    if not 0 < fraction < 1:
        raise ValueError(f"the forget fraction must be in (0, 1), got {fraction}")
    if count < 1:
        raise ValueError(f"draw at least one sample forget set, got {count}")
    if num_rows < 2:
        raise ValueError(f"a sample forget set needs a split of ≥ 2 rows, got {num_rows}")
    size = min(max(1, round(fraction * num_rows)), num_rows - 1)
    sets = []
    for index in range(count):
        rng = np.random.default_rng([seed, SAMPLES_STREAM, index])
        sets.append(ForgetSet.of_rows(rng.choice(num_rows, size=size, replace=False).tolist()))
    return sets
