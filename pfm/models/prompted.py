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
``prefix_len > 0`` adds deep prefixes (``pfm.models.prefix``): p learnable key rows and
p value rows in front of each encoder block's attention keys and values, the parameters
PI-Prefix trains; 0 (the default) means none.
"""

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

import torch
from peft import PeftModel
from torch import nn

from pfm.models.adapters import LoraSpec, add_lora
from pfm.models.backbones import (
    CLS_LAYOUT,
    TokenLayout,
    build_backbone,
    encoder_layers,
    input_kind,
    token_layout,
)
from pfm.models.insertion import last_block_output, prompts_inserted, readout
from pfm.models.prefix import deep_prefix

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
        """The modality the encoder reads: ``image`` or ``audio``."""
        return input_kind(self.backbone.config).data_type

    @property
    def layout(self) -> TokenLayout:
        """Where prompts enter the encoder and what the head reads, by its model type."""
        return token_layout(self.backbone.config)

    @property
    def bank_classes(self) -> list[int]:
        """Class ids that still have a prompt, in class order."""
        return sorted(int(c) for c in self.prompt_classes)

    def forward(
        self, pixel_values: torch.Tensor, prompts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, C). ``prompts``: (B, P) class ids, ``PAD``-padded at row ends.

        Rows with different numbers of prompts run as separate groups, because an
        encoder without an attention mask cannot ignore padded tokens.
        """
        if prompts is None or prompts.shape[1] == 0:
            return self._forward_group(pixel_values, None)
        counts = (prompts != PAD).sum(dim=1)
        positions = torch.arange(prompts.shape[1], device=prompts.device)
        if not torch.equal(prompts != PAD, positions[None, :] < counts[:, None]):
            raise ValueError("prompt lists must put PAD only at the end of each row")
        unique_counts = counts.unique()
        if len(unique_counts) == 1:
            n = int(unique_counts[0])
            return self._forward_group(pixel_values, prompts[:, :n] if n else None)
        logits = pixel_values.new_empty(len(pixel_values), self.num_classes)
        for n in unique_counts.tolist():
            rows = counts == n
            logits[rows] = self._forward_group(pixel_values[rows], prompts[rows, :n] if n else None)
        return logits

    def _prompt_tokens(self, class_ids: torch.Tensor) -> torch.Tensor:
        """(b, n) class ids → (b, n·L, D) tokens; a class without a prompt is an error."""
        lookup = torch.full((self.num_classes,), PAD, dtype=torch.long, device=class_ids.device)
        lookup[self.prompt_classes] = torch.arange(
            len(self.prompt_classes), device=class_ids.device
        )
        if class_ids.min() < 0 or class_ids.max() >= self.num_classes:
            raise ValueError(f"prompt class ids must lie in 0..{self.num_classes - 1}")
        rows = lookup[class_ids]
        if (rows == PAD).any():
            missing = sorted(set(class_ids[rows == PAD].tolist()))
            raise KeyError(f"no prompt for class(es) {missing}: not in the bank (forgotten?)")
        b, n = class_ids.shape
        return self.prompts[rows].reshape(b, n * self.spec.prompt_len, -1)

    def _forward_group(
        self, pixel_values: torch.Tensor, class_ids: torch.Tensor | None
    ) -> torch.Tensor:
        layout = self.layout
        n_tokens = 0
        inserted: AbstractContextManager = nullcontext()
        if class_ids is not None:
            tokens = self._prompt_tokens(class_ids)  # (b, n·L, D)
            n_tokens = tokens.shape[1]
            inserted = prompts_inserted(self.backbone, layout, self.embeddings_attr, tokens)
        # Before the final layer norm: the CLS layouts read transformers' last recorded
        # hidden state (the authors' path); the others a hook on the last block, as
        # Whisper's last recorded hidden state is the normed output
        by_hook = not self.spec.final_layernorm and layout != CLS_LAYOUT
        recorded = last_block_output(self.backbone) if by_hook else nullcontext([])
        with inserted, self._prefix_hooks(), recorded as last_block:
            out = self.encoder(
                **{self.input_name: self._encoder_input(pixel_values)},
                output_hidden_states=not self.spec.final_layernorm and not by_hook,
            )
        if self.spec.final_layernorm:
            hidden = out.last_hidden_state
        else:
            hidden = last_block[-1] if by_hook else out.hidden_states[-1]
        logits = self.head(readout(hidden, n_tokens, layout))
        if self.masked.any():
            logits = logits.masked_fill(self.masked, torch.finfo(logits.dtype).min)
        return logits

    def _encoder_input(self, inputs: torch.Tensor) -> torch.Tensor:
        """Batches arrive as the prepared arrays store them; the one place they are laid
        out for an encoder that reads audio as (B, bins, frames) (Whisper). Features of
        another recipe (AST's 128 bins for Whisper's 80) are refused here by name."""
        config = self.backbone.config
        bins = getattr(config, "num_mel_bins", None)
        if self.data_type == "audio" and bins is not None and inputs.shape[-1] != bins:
            raise ValueError(
                f"the backbone reads {bins} mel bins, the features have {inputs.shape[-1]}: "
                f"prepare the dataset with the features it reads (data.<dataset>.features: "
                f"ast for AST's 128, whisper for Whisper's 80)"
            )
        if input_kind(config).bins_first:
            return inputs.transpose(1, 2)  # (B, frames, bins) → (B, bins, frames)
        return inputs

    def _prefix_hooks(self) -> AbstractContextManager:
        if self.prefixes is None:
            return nullcontext()
        return deep_prefix(self.backbone, self.prefixes)

    def with_prefix(self, prefixes: torch.Tensor) -> "PromptedClassifier":
        """This model with deep prefixes ``prefixes`` (layers, 2, p, D) — keys, values —
        in place of its own (if any); it shares everything else with this one."""
        return PromptedClassifier(
            spec=replace(self.spec, prefix_len=prefixes.shape[2]),
            encoder=self.encoder,
            head=self.head,
            prompts=self.prompts.detach(),
            prompt_classes=self.prompt_classes,
            masked=self.masked,
            input_size=self.input_size,
            embeddings_attr=self.embeddings_attr,
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
        return PromptedClassifier(
            spec=self.spec,
            encoder=self.encoder,
            head=self.head,
            prompts=torch.cat([self.prompts.detach(), prompt.detach().to(device)[None]]),
            prompt_classes=torch.cat(
                [
                    self.prompt_classes,
                    torch.tensor([class_id], dtype=torch.long, device=device),
                ]
            ),
            masked=self.masked.clone(),
            input_size=self.input_size,
            embeddings_attr=self.embeddings_attr,
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
        return PromptedClassifier(
            spec=self.spec,
            encoder=self.encoder,
            head=self.head,
            prompts=self.prompts.detach().index_select(0, keep).clone(),
            prompt_classes=self.prompt_classes.index_select(0, keep).clone(),
            masked=masked,
            input_size=self.input_size,
            embeddings_attr=self.embeddings_attr,
            prefixes=None if self.prefixes is None else self.prefixes.detach().clone(),
        )


def build_model(spec: ModelSpec, seed: int) -> PromptedClassifier:
    """A fresh model: prompts ~ N(0, 1), peft's LoRA init, default Linear head, all seeded."""
    if spec.tuning not in TUNINGS:
        raise ValueError(f"tuning must be one of {TUNINGS}, got {spec.tuning!r}")
    if spec.prompt_len < 1:
        raise ValueError(f"prompt_len must be ≥ 1, got {spec.prompt_len}")
    if spec.prefix_len < 0:
        raise ValueError(f"prefix_len must be ≥ 0, got {spec.prefix_len}")
    if spec.num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {spec.num_classes}")
    backbone = build_backbone(spec.backbone, spec.init_seed, spec.allow_download)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.tuning == "lora":
            encoder: nn.Module = add_lora(backbone.model, spec.lora)
        else:
            encoder = backbone.model.requires_grad_(True)
        head = nn.Linear(backbone.hidden_size, spec.num_classes)
        bank = spec.num_classes if spec.with_prompts else 0
        prompts = torch.randn(bank, spec.prompt_len, backbone.hidden_size)
        prefixes = None
        if spec.prefix_len > 0:
            layers = len(encoder_layers(backbone.model))
            prefixes = torch.randn(layers, 2, spec.prefix_len, backbone.hidden_size)
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
