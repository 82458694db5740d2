"""params.yaml sections → typed specs, validated once at the edge."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pfm.config import from_mapping
from pfm.data.prepared import DATA_TYPES
from pfm.models.adapters import LoraSpec
from pfm.models.prompted import ModelSpec


@dataclass(frozen=True)
class ModelParams:
    """The ``model`` section. ``backbone`` serves image datasets, ``audio_backbone`` audio
    ones (a dataset's ``data_type`` picks); ``input_size`` overrides the image backbone's
    pixels only — an audio backbone's frame count is fixed by its position embeddings."""

    backbone: str
    audio_backbone: str = "ast-tiny"
    init_seed: int = 0
    prompt_len: int = 1
    final_layernorm: bool = False
    allow_download: bool = False
    input_size: int | None = None
    lora: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class EvaluateParams:
    max_sets: int | None
    batch_size: int = 256
    modes: tuple[str, ...] = ("full_bank",)
    k: tuple[int, ...] | None = None  # null: the protocol's {1, ⌊C/2⌋, C−1}


def model_spec(
    values: Mapping[str, Any], num_classes: int, with_prompts: bool, data_type: str = "image"
) -> ModelSpec:
    params = from_mapping(ModelParams, values, "model")
    lora = from_mapping(LoraSpec, params.lora or {}, "model.lora")
    if data_type not in DATA_TYPES:
        raise ValueError(f"data_type must be one of {DATA_TYPES}, got {data_type!r}")
    audio = data_type == "audio"
    return ModelSpec(
        backbone=params.audio_backbone if audio else params.backbone,
        num_classes=num_classes,
        prompt_len=params.prompt_len,
        with_prompts=with_prompts,
        final_layernorm=params.final_layernorm,
        init_seed=params.init_seed,
        allow_download=params.allow_download,
        input_size=None if audio else params.input_size,
        lora=lora,
    )


def check_modality(backbone: str, reads: str, data_type: str) -> None:
    """Refuse a backbone that reads ``reads`` input on a ``data_type`` dataset, naming the
    param that picks it (an image model fed features would fail deep inside transformers)."""
    if reads != data_type:
        key = "model.audio_backbone" if data_type == "audio" else "model.backbone"
        raise ValueError(
            f"backbone {backbone!r} reads {reads} input but the dataset holds {data_type}: "
            f"set {key} to an {data_type} backbone"
        )
