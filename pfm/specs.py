"""params.yaml sections → typed specs, validated once at the edge."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pfm.config import Count, Counts, Natural, NonEmpty, from_mapping
from pfm.data.prepared import DATA_TYPES
from pfm.models.adapters import LoraSpec
from pfm.models.prompted import ModelSpec
from pfm.modes import ModeName
from pfm.precision import Precision


@dataclass(frozen=True)
class ModelParams:
    """The ``model`` section. ``backbone`` serves image datasets, ``audio_backbone`` audio
    ones (a dataset's ``data_type`` picks); ``input_size`` overrides the image backbone's
    pixels only — an audio backbone's frame count is fixed by its position embeddings."""

    backbone: str
    audio_backbone: str = "ast-tiny"
    init_seed: Natural = 0
    prompt_len: Count = 1
    final_layernorm: bool = False
    allow_download: bool = False
    input_size: Count | None = None
    lora: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class EvaluateParams:
    max_sets: Count | None
    batch_size: Count = 256
    modes: Annotated[tuple[ModeName, ...], NonEmpty()] = ("full_bank",)
    k: Counts | None = None  # null: the protocol's {1, ⌊C/2⌋, C−1}
    precision: Precision = "fp32"  # fp32 | bf16 (pfm.precision)


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
