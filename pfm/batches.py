"""Batches of backbone-ready tensors from a prepared split, converted one batch at a time."""

from collections.abc import Iterator

import torch

from pfm.data.prepared import Split
from pfm.data.transforms import to_input_values, to_pixel_values

# data_type → (stored inputs, backbone input length) → backbone input
CONVERTERS = {"image": to_pixel_values, "audio": to_input_values}


class SplitTensors:
    """A split held as stored tensors, yielding (backbone inputs, labels) batches.

    ``input_size`` is the backbone's input length in its modality: pixels per side for
    images, frames for audio. ``images`` holds the stored inputs of either modality."""

    def __init__(self, split: Split, input_size: int, device: torch.device) -> None:
        self.images = torch.from_numpy(split.images)
        self.labels = torch.from_numpy(split.labels)
        self.data_type = split.data_type
        self.input_size = input_size
        self.device = device

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self, batch_size: int, order: torch.Tensor | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        order = torch.arange(len(self)) if order is None else order
        convert = CONVERTERS[self.data_type]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = convert(self.images[idx], self.input_size)
            yield x.to(self.device), self.labels[idx].to(self.device)
