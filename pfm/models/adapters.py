"""LoRA adapters on the attention query and value projections, through ``peft``.

The projection names differ across transformers releases (``query``/``value`` up to
5.17, ``q_proj``/``v_proj`` in 5.23+); peft matches whichever exist, so the same spec
adapts both without walking the model.
"""

import warnings
from dataclasses import dataclass

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

QUERY_VALUE_NAMES = ["query", "value", "q_proj", "v_proj"]


@dataclass(frozen=True)
class LoraSpec:
    r: int = 4
    alpha: int = 4
    dropout: float = 0.1


def add_lora(model: nn.Module, spec: LoraSpec) -> PeftModel:
    """Wrap ``model`` with LoRA; every base weight stays frozen."""
    if spec.r < 1:
        raise ValueError(f"LoRA rank must be ≥ 1, got {spec.r}")
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        bias="none",
        target_modules=QUERY_VALUE_NAMES,
    )
    with warnings.catch_warnings():
        # peft probes a transformers attribute deprecated in 5.x; harmless, and noisy.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, config)
