"""The pre-forgettable model (Hendrix et al., ACM MM 2025, arXiv 2509.15230).

A frozen encoder with LoRA adapters, a bank of learnable class prompts and a linear head
on the CLS output. Each forward receives, per sample, the ordered class ids whose prompts
are active; their tokens are prepended before CLS: ``[prompts ; CLS ; patches]``, after
the encoder's own embeddings (prompts get no position embedding). Forgetting a class
deletes its row from the bank — no data, no gradient step. An encoder without an
embeddings module or a CLS token (Whisper) takes its prompts before its first block and
is read at the mean of its own tokens (``pfm.models.insertion``).

Deliberate choices, each a spec field: the authors read CLS from the encoder output
*before* ViT's final layernorm (``final_layernorm: false``; params.yaml's default is
``true``, chosen on validation: with it the prompt dependence forms within two epochs);
they keep all C head outputs after forgetting (``forget(mask_logits=False)``, our
default too).
A plain classifier for the baselines is the same model with an empty bank; with
``tuning="full"`` instead of LoRA every encoder weight trains, which is how the
``pretrain`` stage makes a backbone (``pfm/pretrain.py``).
``head="answers"`` makes a causal language model's output layer for each class's
answer token the head, frozen (``pfm.models.answers``): the model answers by its next word.
``prefix_len > 0`` adds deep prefixes (``pfm.models.prefix``): p learnable key rows and
p value rows in front of each encoder block's attention keys and values, the parameters
PI-Prefix trains; 0 (the default) means none.
"""

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from peft import PeftModel
from torch import nn

from pfm.models.adapters import LoraSpec, add_lora
from pfm.models.answers import HEADS, answer_head
from pfm.models.backbones import (
    CLS_LAYOUT,
    Backbone,
    TokenLayout,
    build_backbone,
    encoder_layers,
    input_kind,
    token_layout,
)
from pfm.models.insertion import READOUTS, last_block_output, prompts_inserted, readout
from pfm.models.prefix import deep_prefix, key_value_width

PAD = -1  # class-id padding in prompt lists; pads sit at the end of a row
TUNINGS = ("lora", "full")  # frozen encoder + LoRA (the method) | every encoder weight


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model before its trained weights are loaded."""

    backbone: str
    num_classes: int
    prompt_len: int = 1
    with_prompts: bool = True
    final_layernorm: bool = False
    init_seed: int = 0
    allow_download: bool = False
    lora: LoraSpec = field(default_factory=LoraSpec)
    tuning: str = "lora"
    input_size: int | None = None  # input length (px, or frames); None: the backbone's own
    prefix_len: int = 0  # p: deep-prefix key/value rows per encoder block; 0: no prefixes
    readout: str | None = None  # what the head reads: cls | mean | last; None: the backbone's
    head: str = "linear"  # linear | answers (pfm.models.answers)
    answers: tuple[int, ...] = ()  # head answers: each class's answer token, class order


class Bank(NamedTuple):
    """One model's part of ``full_bank`` inference beyond its encoder."""

    tokens: torch.Tensor | None  # (n·L, D) prompt tokens, bank in class order; None: no bank
    head: nn.Linear
    masked: torch.Tensor  # (C,) logits masked at output


class PromptedClassifier(nn.Module):
    def __init__(
        self,
        spec: ModelSpec,
        encoder: nn.Module,
        head: nn.Linear,
        prompts: torch.Tensor,
        prompt_classes: torch.Tensor,
        masked: torch.Tensor,
        input_size: int,
        embeddings_attr: str,
        prefixes: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if (prefixes is not None) != (spec.prefix_len > 0) or (
            prefixes is not None and (prefixes.dim() != 4 or prefixes.shape[2] != spec.prefix_len)
        ):
            raise ValueError(f"prefixes do not match spec.prefix_len={spec.prefix_len}")
        self.spec = spec
        self.encoder = encoder
        self.head = head
        self.prompts = nn.Parameter(prompts)  # (P_bank, L, D)
        self.register_buffer("prompt_classes", prompt_classes)  # (P_bank,) class id per row
        self.register_buffer("masked", masked)  # (C,) logits masked at output
        self.input_size = input_size
        self.embeddings_attr = embeddings_attr
        # (layers, 2, p, D) deep prefixes, [:, 0] keys and [:, 1] values; registered only
        # when present, so prefix-free checkpoints keep their keys
        self.prefixes = nn.Parameter(prefixes) if prefixes is not None else None

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def backbone(self) -> nn.Module:
        """The transformers model itself, without the peft wrapper (if any)."""
        return (
            self.encoder.get_base_model() if isinstance(self.encoder, PeftModel) else self.encoder
        )

    @property
    def input_name(self) -> str:
        """The encoder's input keyword (ViT: ``pixel_values``, AST: ``input_values``), read
        from its config, so every model derived from this one (``forget``…) keeps it."""
        return input_kind(self.backbone.config).input_name

    @property
    def data_type(self) -> str:
        """The modality the encoder reads (``pfm.data.modalities``), as its model type
        declares (``INPUT_KINDS``)."""
        return input_kind(self.backbone.config).data_type

    @property
    def layout(self) -> TokenLayout:
        """Where prompts enter the encoder, by its model type, and what the head reads:
        the spec's ``readout`` where set, else the model type's."""
        layout = token_layout(self.backbone.config)
        return layout._replace(readout=self.spec.readout) if self.spec.readout else layout

    @property
    def bank_classes(self) -> list[int]:
        """Class ids that still have a prompt, in class order."""
        return sorted(self._host_prompt_classes().tolist())

    def forward(
        self, pixel_values: torch.Tensor, prompts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, C). ``prompts``: (B, P) class ids, ``PAD``-padded at row ends.

        Rows with different numbers of prompts run as separate groups, because an
        encoder without an attention mask cannot ignore padded tokens. The ids are read
        on the host, where the inference modes build them (``pfm.modes``): checking and
        grouping them there keeps a forward on a GPU from waiting for the device.
        """
        if prompts is None or prompts.shape[1] == 0:
            return self._forward_group(pixel_values, None)
        ids = prompts.cpu()
        counts = (ids != PAD).sum(dim=1)
        positions = torch.arange(ids.shape[1])
        if not torch.equal(ids != PAD, positions[None, :] < counts[:, None]):
            raise ValueError("prompt lists must put PAD only at the end of each row")
        unique_counts = counts.unique()
        if len(unique_counts) == 1:
            n = int(unique_counts[0])
            return self._forward_group(pixel_values, ids[:, :n] if n else None)
        logits: torch.Tensor | None = None  # (B, C): at least fp32, whatever the inputs hold
        for n in unique_counts.tolist():
            rows = counts == n
            on_device = rows.to(pixel_values.device, non_blocking=True)
            group = self._forward_group(pixel_values[on_device], ids[rows, :n] if n else None)
            if logits is None:
                dtype = torch.promote_types(group.dtype, torch.float32)  # token ids are ints
                logits = group.new_empty(len(pixel_values), self.num_classes, dtype=dtype)
            logits[on_device] = group
        assert logits is not None  # unique_counts is never empty
        return logits

    def _host_prompt_classes(self) -> torch.Tensor:
        """The bank's class ids on the host, copied from the buffer once per change of it
        (``to``, ``load_state_dict``) rather than once per forward: on a GPU every copy
        to the host waits for the device to finish its queue."""
        buffer = self.prompt_classes
        cached = self.__dict__.get("_host_classes")
        if cached is None or cached[0] is not buffer or cached[1] != buffer._version:
            cached = (buffer, buffer._version, buffer.cpu())
            self.__dict__["_host_classes"] = cached
        return cached[2]

    def _prompt_tokens(self, class_ids: torch.Tensor) -> torch.Tensor:
        """(b, n) class ids on the host → (b, n·L, D) tokens; a class without a prompt is
        an error."""
        bank = self._host_prompt_classes()
        lookup = torch.full((self.num_classes,), PAD, dtype=torch.long)
        lookup[bank] = torch.arange(len(bank))
        if class_ids.min() < 0 or class_ids.max() >= self.num_classes:
            raise ValueError(f"prompt class ids must lie in 0..{self.num_classes - 1}")
        rows = lookup[class_ids]
        if (rows == PAD).any():
            missing = sorted(set(class_ids[rows == PAD].tolist()))
            raise KeyError(f"no prompt for class(es) {missing}: not in the bank (forgotten?)")
        b, n = class_ids.shape
        rows = rows.to(self.prompts.device, non_blocking=True)
        return self.prompts[rows].reshape(b, n * self.spec.prompt_len, -1)

    def _forward_group(
        self, pixel_values: torch.Tensor, class_ids: torch.Tensor | None
    ) -> torch.Tensor:
        tokens = None if class_ids is None else self._prompt_tokens(class_ids)  # (b, n·L, D)
        return self._logits(self._features(pixel_values, tokens), self.head, self.masked)

    def _features(self, pixel_values: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        """(b, D): what the head reads, with ``tokens`` (b, n, D) prepended (None: none)."""
        layout = self.layout
        n_tokens = 0
        inserted: AbstractContextManager = nullcontext()
        if tokens is not None:
            n_tokens = tokens.shape[1]
            inserted = prompts_inserted(self.backbone, layout, self.embeddings_attr, tokens)
        # Before the final layer norm: the CLS layouts read transformers' last recorded
        # hidden state (the authors' path); the others a hook on the last block, as
        # Whisper's last recorded hidden state is the normed output
        by_hook = not self.spec.final_layernorm and layout != CLS_LAYOUT
        recorded = last_block_output(self.backbone) if by_hook else nullcontext([])
        inputs, mask = self._encoder_inputs(pixel_values, n_tokens)
        with inserted, self._prefix_hooks(), recorded as last_block:
            out = self.encoder(
                **inputs, output_hidden_states=not self.spec.final_layernorm and not by_hook
            )
        if self.spec.final_layernorm:
            hidden = out.last_hidden_state
        else:
            hidden = last_block[-1] if by_hook else out.hidden_states[-1]
        return readout(hidden, n_tokens, layout, mask)

    @staticmethod
    def _logits(features: torch.Tensor, head: nn.Linear, masked: torch.Tensor) -> torch.Tensor:
        """The head's logits with the ``masked`` ones at the dtype's minimum; applied even
        when nothing is masked (a copy of the same values), as asking the device whether
        anything is would wait for it."""
        logits = head(features)
        return logits.masked_fill(masked, torch.finfo(logits.dtype).min)

    def bank(self) -> Bank:
        """What ``full_bank`` inference reads beyond the encoder: the bank's prompt tokens
        in class order, the head and the output mask (``bank_logits`` scores many)."""
        tokens = None
        if self.bank_classes:
            tokens = self._prompt_tokens(torch.tensor([self.bank_classes]))[0].detach()
        return Bank(tokens, self.head, self.masked)

    def shares_encoder(self, other: nn.Module) -> bool:
        """Whether ``other`` computes exactly this model's features for the same inputs
        and prompt tokens: the same spec, input and weights of the encoder and deep
        prefixes, compared by value (the unlearning runner hands every forget call a deep
        copy, so identity says nothing). Prompts, head and mask may differ."""
        if not isinstance(other, PromptedClassifier) or other is self:
            return other is self
        if (other.spec, other.input_size, other.embeddings_attr) != (
            self.spec,
            self.input_size,
            self.embeddings_attr,
        ):
            return False
        if (self.prefixes is None) != (other.prefixes is None) or (
            self.prefixes is not None and not torch.equal(self.prefixes, other.prefixes)
        ):
            return False
        mine, theirs = self.encoder.state_dict(), other.encoder.state_dict()
        return mine.keys() == theirs.keys() and all(
            torch.equal(mine[name], theirs[name]) for name in mine
        )

    def bank_logits(self, pixel_values: torch.Tensor, banks: Sequence[Bank]) -> torch.Tensor:
        """(S, b, C): the ``full_bank`` logits of S models that share this encoder
        (``shares_encoder``) and hold banks of one size, on the same b inputs, from one
        encoder pass over S·b sequences — each the sequence a forward of its own model
        would run, so the logits are those of S separate forwards up to float rounding.
        What lets forget-k score every forget set of a k in one pass over a split."""
        sizes = {0 if bank.tokens is None else len(bank.tokens) for bank in banks}
        if len(sizes) != 1:
            raise ValueError(f"banks of one size only, got sizes {sorted(sizes)}")
        sets, b = len(banks), len(pixel_values)
        inputs = pixel_values.repeat(sets, *([1] * (pixel_values.dim() - 1)))  # set-major
        tokens = None
        if sizes != {0}:
            tokens = torch.stack([bank.tokens for bank in banks]).repeat_interleave(b, dim=0)
        features = self._features(inputs, tokens).view(sets, b, -1)
        return torch.stack(
            [self._logits(features[s], bank.head, bank.masked) for s, bank in enumerate(banks)]
        )

    def _encoder_inputs(
        self, inputs: torch.Tensor, n_tokens: int
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The encoder's keyword inputs for a batch as its modality converts it, and the
        mask of the input's own tokens (None: no padding). The one place a batch is laid
        out for its encoder: audio as (B, bins, frames) for Whisper; text (B, 2, T) split
        into ids and mask, the mask opened for ``n_tokens`` prompts in front (an encoder's
        prompts see and are seen by every real token; a causal decoder's are seen by every
        real token and see only the prompts before them). Features of another recipe (AST's
        128 bins for Whisper's 80) are refused here by name."""
        config = self.backbone.config
        kind = input_kind(config)
        width = getattr(config, kind.width_attr) if kind.width_attr else None
        if width is not None and inputs.shape[-1] != width:
            raise ValueError(
                f"the backbone reads {width} mel bins, the features have {inputs.shape[-1]}: "
                f"prepare the dataset with the features it reads (data.<dataset>.features: "
                f"ast for AST's 128, whisper for Whisper's 80)"
            )
        if kind.mask_name is not None:
            ids, mask = inputs[:, 0], inputs[:, 1]  # (B, T) each
            opened = torch.cat([mask.new_ones(len(mask), n_tokens), mask], dim=1)  # (B, n+T)
            return {kind.input_name: ids, kind.mask_name: opened}, mask
        if kind.bins_first:
            inputs = inputs.transpose(1, 2)  # (B, frames, bins) → (B, bins, frames)
        return {kind.input_name: inputs}, None

    def _prefix_hooks(self) -> AbstractContextManager:
        if self.prefixes is None:
            return nullcontext()
        return deep_prefix(self.backbone, self.prefixes)

    def with_prefix(self, prefixes: torch.Tensor) -> "PromptedClassifier":
        """This model with deep prefixes ``prefixes`` (layers, 2, p, D) — keys, values —
        in place of its own (if any); it shares everything else with this one."""
        return self._sibling(
            spec=replace(self.spec, prefix_len=prefixes.shape[2]),
            prompts=self.prompts.detach(),
            prompt_classes=self.prompt_classes,
            masked=self.masked,
            prefixes=prefixes,
        )

    def with_prompt(self, class_id: int, prompt: torch.Tensor) -> "PromptedClassifier":
        """This model with a prompt row ``prompt`` (L, D) added for ``class_id``, a class
        that has none (forgotten, or never had one); the bank tensor is rebuilt, as in
        ``forget``. What the prompt-recovery attack (``pfm.attacks.recovery``) starts
        from. It shares the encoder, adapters and head with this one."""
        if not 0 <= class_id < self.num_classes:
            raise ValueError(f"class id {class_id} out of range 0..{self.num_classes - 1}")
        if class_id in self.bank_classes:
            raise ValueError(f"class {class_id} already has a prompt")
        if prompt.shape != self.prompts.shape[1:]:
            raise ValueError(
                f"a prompt must have shape {tuple(self.prompts.shape[1:])}, "
                f"got {tuple(prompt.shape)}"
            )
        device = self.prompts.device
        return self._sibling(
            spec=self.spec,
            prompts=torch.cat([self.prompts.detach(), prompt.detach().to(device)[None]]),
            prompt_classes=torch.cat(
                [
                    self.prompt_classes,
                    torch.tensor([class_id], dtype=torch.long, device=device),
                ]
            ),
            masked=self.masked.clone(),
            prefixes=None if self.prefixes is None else self.prefixes.detach().clone(),
        )

    def forget(self, classes: Iterable[int], mask_logits: bool = False) -> "PromptedClassifier":
        """A model without the prompts of ``classes``: the bank tensor is rebuilt from the
        kept rows (fresh storage, so a saved copy holds no byte of the removed prompts).

        The returned model shares the encoder, adapters and head with this one — forgetting
        does not change them; deep-copy it before training it further.
        """
        classes = sorted(set(int(c) for c in classes))
        out_of_range = [c for c in classes if not 0 <= c < self.num_classes]
        if out_of_range:
            raise ValueError(
                f"forget class id(s) {out_of_range} out of range 0..{self.num_classes - 1}"
            )
        absent = [c for c in classes if c not in self.bank_classes]
        if absent and self.spec.with_prompts:
            raise ValueError(f"class(es) {absent} have no prompt to forget")
        keep = torch.tensor(
            [i for i, c in enumerate(self.prompt_classes.tolist()) if c not in classes],
            dtype=torch.long,
            device=self.prompts.device,
        )
        masked = self.masked.clone()
        if mask_logits:
            masked[classes] = True
        return self._sibling(
            spec=self.spec,
            prompts=self.prompts.detach().index_select(0, keep).clone(),
            prompt_classes=self.prompt_classes.index_select(0, keep).clone(),
            masked=masked,
            prefixes=None if self.prefixes is None else self.prefixes.detach().clone(),
        )

    def _sibling(
        self,
        spec: ModelSpec,
        prompts: torch.Tensor,
        prompt_classes: torch.Tensor,
        masked: torch.Tensor,
        prefixes: torch.Tensor | None,
    ) -> "PromptedClassifier":
        """A model on this one's encoder and head, in this one's mode. The modules are
        shared, so the mode is too: a sibling built in training mode (a new module's
        default) and later restored to it — as ``predict`` restores a model's mode —
        switched this model's dropout back on, so a later score of this model was noisy
        (PI-Prefix's first forget set, scored after its before-transform variant)."""
        sibling = PromptedClassifier(
            spec=spec,
            encoder=self.encoder,
            head=self.head,
            prompts=prompts,
            prompt_classes=prompt_classes,
            masked=masked,
            input_size=self.input_size,
            embeddings_attr=self.embeddings_attr,
            prefixes=prefixes,
        )
        return sibling.train(self.training)


def build_model(spec: ModelSpec, seed: int) -> PromptedClassifier:
    """A fresh model: prompts ~ N(0, 1), peft's LoRA init, default Linear head, all seeded."""
    return assemble(spec, build_backbone(spec.backbone, spec.init_seed, spec.allow_download), seed)


def assemble(spec: ModelSpec, backbone: Backbone, seed: int) -> PromptedClassifier:
    """The model of ``spec`` around ``backbone``, already built (``build_model`` builds
    it from the spec; ``pfm.benchmark`` from a config with random weights)."""
    if spec.tuning not in TUNINGS:
        raise ValueError(f"tuning must be one of {TUNINGS}, got {spec.tuning!r}")
    if spec.prompt_len < 1:
        raise ValueError(f"prompt_len must be ≥ 1, got {spec.prompt_len}")
    if spec.prefix_len < 0:
        raise ValueError(f"prefix_len must be ≥ 0, got {spec.prefix_len}")
    if spec.num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {spec.num_classes}")
    if spec.readout is not None and spec.readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS} or None, got {spec.readout!r}")
    if spec.head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {spec.head!r}")
    if spec.head == "answers" and len(spec.answers) != spec.num_classes:
        raise ValueError(
            f"model.head: answers needs each class's answer token, got {len(spec.answers)} for "
            f"{spec.num_classes} classes: text datasets record them in prepare (prepare it again)"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.tuning == "lora":
            encoder: nn.Module = add_lora(backbone.model, spec.lora)
        else:
            encoder = backbone.model.requires_grad_(True)
        head = nn.Linear(backbone.hidden_size, spec.num_classes)
        if spec.head == "answers":
            read = spec.readout or backbone.layout.readout
            head = answer_head(backbone.model, spec.answers, read, spec.final_layernorm)
        bank = spec.num_classes if spec.with_prompts else 0
        prompts = torch.randn(bank, spec.prompt_len, backbone.hidden_size)
        prefixes = None
        if spec.prefix_len > 0:
            layers = len(encoder_layers(backbone.model))
            width = key_value_width(backbone.model.config)
            prefixes = torch.randn(layers, 2, spec.prefix_len, width)
    return PromptedClassifier(
        spec=spec,
        encoder=encoder,
        head=head,
        prompts=prompts,
        prompt_classes=torch.arange(bank, dtype=torch.long),
        masked=torch.zeros(spec.num_classes, dtype=torch.bool),
        input_size=spec.input_size or backbone.input_size,
        embeddings_attr=backbone.embeddings_attr,
        prefixes=prefixes,
    )


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
