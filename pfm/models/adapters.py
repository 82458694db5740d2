"""LoRA adapters through ``peft``: on the attention query and value projections (the
authors' placement), or on every linear layer of the encoder.

The projection names differ across transformers releases (``query``/``value`` up to
5.17, ``q_proj``/``v_proj`` in 5.23+); peft matches whichever exist, and its
``all-linear`` shorthand needs no names at all, so the same spec adapts every release
without walking the model.
"""

import warnings
from dataclasses import dataclass
from typing import Annotated

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from pfm.config import Bounds, Count, OneOf

QUERY_VALUE_NAMES = ["query", "value", "q_proj", "v_proj"]
TARGETS = {"qv": QUERY_VALUE_NAMES, "all-linear": "all-linear"}


@dataclass(frozen=True)
class LoraSpec:
    r: Count = 4
    alpha: Count = 4
    dropout: Annotated[float, Bounds(0, 1, high_open=True)] = 0.1
    # "qv": attention query/value (authors); "all-linear": every Linear
    targets: Annotated[str, OneOf(TARGETS, "LoRA target")] = "qv"


def add_lora(model: nn.Module, spec: LoraSpec) -> PeftModel:
    """Wrap ``model`` with LoRA; every base weight stays frozen."""
    if spec.r < 1:
        raise ValueError(f"LoRA rank must be ≥ 1, got {spec.r}")
    if spec.targets not in TARGETS:
        raise ValueError(f"LoRA targets must be one of {sorted(TARGETS)}, got {spec.targets!r}")
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        bias="none",
        target_modules=TARGETS[spec.targets],
    )
    with warnings.catch_warnings():
        # peft probes a transformers attribute deprecated in 5.x; harmless, and noisy.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, config)
