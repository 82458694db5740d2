"""LoRA adapters through ``peft``: on the attention query and value projections (the
authors' placement), or on every linear layer of the encoder.

The projection names differ across transformers releases (``query``/``value`` up to
5.17, ``q_proj``/``v_proj`` in 5.23+); peft matches whichever exist, and its
``all-linear`` shorthand needs no names at all, so the same spec adapts every release
without walking the model.
"""

import warnings
from dataclasses import dataclass

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

QUERY_VALUE_NAMES = ["query", "value", "q_proj", "v_proj"]
TARGETS = {"qv": QUERY_VALUE_NAMES, "all-linear": "all-linear"}


@dataclass(frozen=True)
class LoraSpec:
    r: int = 4
    alpha: int = 4
    dropout: float = 0.1
    targets: str = "qv"  # "qv": attention query/value (authors); "all-linear": every Linear


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
