"""Batches of backbone-ready tensors from a prepared split, converted one batch at a time."""

from collections.abc import Iterator

import torch

from pfm.data.prepared import Split
from pfm.data.transforms import to_pixel_values


class SplitTensors:
    """A split held as uint8/long tensors, yielding (pixel_values, labels) batches."""

    def __init__(self, split: Split, input_size: int, device: torch.device) -> None:
        self.images = torch.from_numpy(split.images)
        self.labels = torch.from_numpy(split.labels)
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
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = to_pixel_values(self.images[idx], self.input_size)
            yield x.to(self.device), self.labels[idx].to(self.device)
