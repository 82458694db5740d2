"""params.yaml sections → typed specs, validated once at the edge."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pfm.config import Count, Counts, Natural, NonEmpty, OneOf, from_mapping
from pfm.data.modalities import MODALITIES
from pfm.models.adapters import LoraSpec
from pfm.models.answers import HEADS
from pfm.models.insertion import READOUTS
from pfm.models.prompted import ModelSpec
from pfm.modes import ModeName
from pfm.precision import Precision


@dataclass(frozen=True)
class ModelParams:
    """The ``model`` section. One backbone per modality: ``backbone`` serves image
    datasets, ``audio_backbone`` audio ones, ``text_backbone`` text ones (a dataset's
    ``data_type`` picks; each modality names its key, ``Modality.backbone_param``);
    ``input_size`` overrides a resizable input only (image pixels) — an audio or text
    backbone's length is fixed by its position embeddings. ``readout``: what the head
    reads, ``cls``, ``mean`` (over the input's real tokens) or ``last`` (the last real
    token, a causal language model's); null: the backbone's own. ``head``: ``linear``, a new
    layer, or ``answers``, a causal language model's own next-word logits for each class's
    answer token (``pfm.models.answers``; text datasets record the tokens)."""

    backbone: str
    audio_backbone: str = "ast-tiny"
    text_backbone: str = "bert-tiny"
    init_seed: Natural = 0
    prompt_len: Count = 1
    final_layernorm: bool = False
    allow_download: bool = False
    input_size: Count | None = None
    lora: Mapping[str, Any] | None = None
    readout: Annotated[str, OneOf(READOUTS, "readout")] | None = None
    head: Annotated[str, OneOf(HEADS, "head")] = "linear"

    def backbone_for(self, data_type: str) -> str:
        """The backbone that reads ``data_type`` datasets, by the key its modality names."""
        return getattr(self, MODALITIES.get(data_type).backbone_param)


@dataclass(frozen=True)
class EvaluateParams:
    max_sets: Count | None
    batch_size: Count = 256
    modes: Annotated[tuple[ModeName, ...], NonEmpty()] = ("full_bank",)
    k: Counts | None = None  # null: the protocol's {1, ⌊C/2⌋, C−1}
    precision: Precision = "fp32"  # fp32 | bf16 (pfm.precision)


def model_spec(
    values: Mapping[str, Any],
    num_classes: int,
    with_prompts: bool,
    data_type: str = "image",
    answers: Sequence[int] | None = None,
) -> ModelSpec:
    """The model of params' ``model`` section for a dataset of ``num_classes`` classes
    holding ``data_type`` inputs; ``answers``: its classes' answer tokens (text datasets),
    which ``head: answers`` reads."""
    params = from_mapping(ModelParams, values, "model")
    lora = from_mapping(LoraSpec, params.lora or {}, "model.lora")
    if data_type not in MODALITIES:
        raise ValueError(f"data_type must be one of {tuple(MODALITIES)}, got {data_type!r}")
    return ModelSpec(
        backbone=params.backbone_for(data_type),
        num_classes=num_classes,
        prompt_len=params.prompt_len,
        with_prompts=with_prompts,
        final_layernorm=params.final_layernorm,
        init_seed=params.init_seed,
        allow_download=params.allow_download,
        input_size=params.input_size if MODALITIES.get(data_type).resizable else None,
        lora=lora,
        readout=params.readout,
        head=params.head,
        answers=tuple(answers or ()) if params.head == "answers" else (),
    )


def check_modality(backbone: str, reads: str, data_type: str) -> None:
    """Refuse a backbone that reads ``reads`` input on a ``data_type`` dataset, naming the
    param that picks it (an image model fed features would fail deep inside transformers)."""
    if reads != data_type:
        key = f"model.{MODALITIES.get(data_type).backbone_param}"
        raise ValueError(
            f"backbone {backbone!r} reads {reads} input but the dataset holds {data_type}: "
            f"set {key} to a backbone that reads {data_type}"
        )
