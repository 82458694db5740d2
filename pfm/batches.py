"""Batches of backbone-ready tensors from a prepared split, converted one batch at a time.

On an accelerator the stored arrays (uint8 images, float16 features, int32 tokens,
labels) are copied to the device once, when the split is built, and every batch is
sliced and converted there: a training step then moves no data from the host and waits
on no copy. Stored arrays are compact (full Fashion-MNIST is 47 MB), while the converted
float inputs of a 224 px dataset would need gigabytes, which is why conversion stays per
batch. On the CPU nothing is copied and batches are exactly what they were.
"""

from collections.abc import Iterator
from typing import NamedTuple

import torch

from pfm.data.modalities import MODALITIES
from pfm.data.prepared import Split


class MarkedBatch(NamedTuple):
    """What a training objective reads: backbone inputs, labels, and which rows are
    forget rows (``None`` where the split marks none). An unlearning objective that
    treats forget rows apart (relabels them, pushes them to uniform) reads the mark,
    not the label, so a forget set need not be a set of classes."""

    inputs: torch.Tensor
    labels: torch.Tensor
    forget: torch.Tensor | None = None


class SplitTensors:
    """A split held as stored tensors, yielding (backbone inputs, labels) batches.

    ``input_size`` is the backbone's input length in its modality: pixels per side for
    images, frames for audio, positions for text. ``inputs`` and ``labels`` hold the
    stored inputs of any modality and their labels on the host (what callers read as
    arrays); batches come from their copies on ``device``. ``forget`` marks rows as
    forget rows (one bool per row), for the training batches (``marked_batches``)."""

    def __init__(
        self,
        split: Split,
        input_size: int,
        device: torch.device,
        forget: torch.Tensor | None = None,
    ) -> None:
        self.inputs = torch.from_numpy(split.inputs)
        self.labels = torch.from_numpy(split.labels)
        if forget is not None and forget.shape != self.labels.shape:
            raise ValueError(f"forget marks {tuple(forget.shape)} rows, the split has {len(self)}")
        self.forget = forget
        self.data_type = split.data_type
        self.input_size = input_size
        self.device = device
        resident = device.type != "cpu"
        self._inputs = self.inputs.to(device) if resident else self.inputs
        self._labels = self.labels.to(device) if resident else self.labels
        self._forget = forget.to(device) if resident and forget is not None else forget

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self, batch_size: int, order: torch.Tensor | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, labels) of each batch: what scoring reads."""
        for batch in self.marked_batches(batch_size, order):
            yield batch.inputs, batch.labels

    def marked_batches(
        self, batch_size: int, order: torch.Tensor | None = None
    ) -> Iterator[MarkedBatch]:
        """Each batch with its rows' forget marks: what the training loop reads."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        order = torch.arange(len(self)) if order is None else order
        order = order.to(self._inputs.device, non_blocking=True)  # one copy, no wait
        convert = MODALITIES.get(self.data_type).to_encoder
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            forget = None if self._forget is None else self._forget[idx]
            yield MarkedBatch(
                convert(self._inputs[idx], self.input_size), self._labels[idx], forget
            )
