"""The data an unlearning method may read: forget/retain slices of the train split that
count every sample they yield and mark every row as forget or retain, and the shared ways
of iterating them.

The runner builds these handles and hands a method only those it declares, so "never
receives retain data" is a fact of the call, and ``samples_touched`` is counted here, not
reported by the method. The marks travel with the rows (``pfm.batches.MarkedBatch``):
joined, forget ∪ retain still says which row is which, whatever their labels.
"""

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from pfm.batches import MarkedBatch, SplitTensors
from pfm.data.prepared import Split

Batch = tuple[torch.Tensor, torch.Tensor]


class Tally:
    """Samples yielded by every handle that shares this tally."""

    def __init__(self) -> None:
        self.samples = 0


class CountedSplit(SplitTensors):
    """A ``SplitTensors`` that adds the size of each batch it yields to a ``Tally``;
    ``forget`` marks its rows (one bool a row, or one for all)."""

    def __init__(
        self,
        split: Split,
        input_size: int,
        device: torch.device,
        tally: Tally,
        forget: bool | torch.Tensor,
    ) -> None:
        rows = len(split.labels)
        marks = torch.full((rows,), forget) if isinstance(forget, bool) else forget
        super().__init__(split, input_size, device, marks)
        self.tally = tally

    def marked_batches(
        self, batch_size: int, order: torch.Tensor | None = None
    ) -> Iterator[MarkedBatch]:
        for batch in super().marked_batches(batch_size, order):
            self.tally.samples += len(batch.labels)
            yield batch


def class_slice(split: Split, classes: Iterable[int], keep: bool) -> Split:
    """The samples of ``split`` whose label is in ``classes`` (``keep``) or is not."""
    return row_slice(split, np.isin(split.labels, list(classes)), keep)


def row_slice(split: Split, inside: np.ndarray, keep: bool) -> Split:
    """The rows of ``split`` that ``inside`` (one bool a row) marks (``keep``) or not."""
    rows = inside if keep else ~inside
    return Split(split.inputs[rows], split.labels[rows])


def join(a: CountedSplit, b: CountedSplit) -> CountedSplit:
    """Both handles' samples as one (e.g. forget ∪ retain), each row keeping its mark,
    counted on the same tally."""
    if a.tally is not b.tally or a.input_size != b.input_size or a.device != b.device:
        raise ValueError("can only join handles of one unlearning call")
    split = Split(torch.cat([a.inputs, b.inputs]).numpy(), torch.cat([a.labels, b.labels]).numpy())
    return CountedSplit(split, a.input_size, a.device, a.tally, torch.cat([a.forget, b.forget]))


def epochs_of(
    data: SplitTensors, batch_size: int, epochs: int, generator: torch.Generator
) -> Iterator[Batch]:
    """``epochs`` passes over ``data``, each in a fresh seeded order."""
    for _ in range(epochs):
        yield from data.batches(batch_size, torch.randperm(len(data), generator=generator))


def endless(data: SplitTensors, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
    """Batches forever, reshuffled each pass: the retain side of a forget-driven loop."""
    if len(data) == 0:
        raise ValueError("cannot draw batches from empty data")
    while True:
        yield from epochs_of(data, batch_size, 1, generator)
