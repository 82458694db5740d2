"""Numeric precision of a run: ``fp32``, or ``bf16`` autocast.

One helper for the one training loop, the one evaluation path, the unlearning runner
and the attacks. ``bf16`` runs the forward under ``torch.autocast``: matmuls, convolutions
and attention in bfloat16, while the weights, their gradients, the optimizer state and
the reductions autocast keeps in float32 (softmax, cross-entropy, layer norm) stay
float32, so a saved model is float32 whatever the precision it was trained at. bf16
has float32's exponent range, so no loss scaling is needed (fp16 would need it, which is
why it is not offered). ``fp32`` changes nothing: its context is empty, so fp32 runs are
bit-for-bit what they were before this knob existed, and a loop called inside another's
autocast (a baseline's training inside the unlearning runner) inherits it.
"""

from contextlib import AbstractContextManager, nullcontext
from typing import Annotated

import torch

from pfm.config import OneOf

PRECISIONS = ("fp32", "bf16")
Precision = Annotated[str, OneOf(PRECISIONS, "precision")]  # a params field naming one


def check_precision(precision: str) -> str:
    """``precision`` if it is one of ``PRECISIONS``; a ValueError naming them otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The context a forward at ``precision`` runs in on ``device`` (CPU autocast supports
    bf16 too, which is how the bf16 path is tested without a GPU)."""
    if check_precision(precision) == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
