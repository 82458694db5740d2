"""Inference modes: which class prompts each sample sees.

A mode maps (labels, bank classes, number of classes, generator) to a (B, P) tensor of
class ids, ``PAD``-padded at row ends; ``infer_best`` is the one mode that needs several
forwards and is computed in ``mode_logits``. Modes that read the label are diagnostics,
never deployment inference. Semantics follow the authors' code:

- ``none``: no prompt;  ``full_bank``: every prompt in the bank, class order;
- ``full_bank_shuffle``: the same set, per-sample random order;
- ``match_only``: only the true class's prompt (oracle);
- ``all_wrong``: every bank prompt but the true one, class order;
- ``random_wrong``: one random wrong prompt;
- ``mixed_subset``: s ~ U{0..C−1} (shared by the batch) shuffled wrong prompts with the
  true one inserted at one position shared by the batch (the CE half of training);
- ``wrong_subset``: s ~ U{0..C−1} shuffled wrong prompts, s = 0 meaning none (the KL half);
- ``infer_best``: one forward per single bank prompt, element-wise max of the logits over
  prompts, then argmax — uses no label.

Ids are built on the host whatever device the labels are on, from the host's generator
(the random keys always were): the model checks and groups them there too
(``PromptedClassifier.forward``), so a step on a GPU waits for the device only to copy a
batch's labels to the host, and a mode that reads no label not even for that.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import torch

from pfm.config import OneOf
from pfm.models.prompted import PAD, PromptedClassifier
from pfm.registry import Registry

PromptBuilder = Callable[[torch.Tensor, Sequence[int], int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Mode:
    build: PromptBuilder | None  # None: computed specially (infer_best)
    uses_label: bool


MODES: Registry[Mode] = Registry("inference mode")
ModeName = Annotated[str, OneOf(MODES)]  # a params field naming a mode


def _bank(bank: Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(list(bank), dtype=torch.long)


def _shuffled_wrong(
    labels: torch.Tensor, bank: Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """(B, |bank|): per sample, the bank's wrong classes in random order, then PAD where
    the true class was (a sample whose class has no prompt gets no PAD)."""
    classes = _bank(bank)
    is_true = classes[None, :] == labels.cpu()[:, None]  # (B, |bank|)
    keys = torch.rand(is_true.shape, generator=generator)
    keys = keys.masked_fill(is_true, 2.0)  # true class sorts last
    order = keys.argsort(dim=1)
    picked = classes[order]
    return picked.masked_fill(is_true.gather(1, order), PAD)


def _subset_size(num_classes: int, generator: torch.Generator) -> int:
    return int(torch.randint(0, num_classes, (1,), generator=generator))


def _trim(ids: torch.Tensor) -> torch.Tensor:
    """Drop columns that are PAD in every row."""
    width = int((ids != PAD).sum(dim=1).max()) if ids.numel() else 0
    return ids[:, :width]


def no_prompts(
    labels: torch.Tensor, bank: Sequence[int], num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    return torch.empty(len(labels), 0, dtype=torch.long)


def full_bank(
    labels: torch.Tensor, bank: Sequence[int], num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    return _bank(bank).expand(len(labels), -1)


def full_bank_shuffle(
    labels: torch.Tensor, bank: Sequence[int], num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    ids = full_bank(labels, bank, num_classes, generator)
    keys = torch.rand(ids.shape, generator=generator)
    return ids.gather(1, keys.argsort(dim=1))


def match_only(
    labels: torch.Tensor, bank: Sequence[int], num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    return labels.cpu()[:, None]


def all_wrong(
    labels: torch.Tensor, bank: Sequence[int], num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    ids = full_bank(labels, bank, num_classes, generator)
    is_true = ids == labels.cpu()[:, None]
    order = is_true.to(torch.int8).argsort(dim=1, stable=True)  # wrong first, class order kept
    return _trim(ids.gather(1, order).masked_fill(is_true.gather(1, order), PAD))


def random_wrong(
    labels: torch.Tensor, bank: Sequence[int], num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    return _shuffled_wrong(labels, bank, generator)[:, :1]


def wrong_subset(
    labels: torch.Tensor, bank: Sequence[int], num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    size = _subset_size(num_classes, generator)
    return _trim(_shuffled_wrong(labels, bank, generator)[:, :size])


def mixed_subset(
    labels: torch.Tensor, bank: Sequence[int], num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    labels = labels.cpu()
    if not torch.isin(labels, _bank(bank)).all():
        raise KeyError("mixed_subset needs every sample's true class in the prompt bank")
    wrong = _shuffled_wrong(labels, bank, generator)  # (B, |bank|), PAD last
    size = min(_subset_size(num_classes, generator), wrong.shape[1] - 1)
    position = int(torch.randint(0, size + 1, (1,), generator=generator))
    wrong = wrong[:, :size]
    return torch.cat([wrong[:, :position], labels[:, None], wrong[:, position:]], dim=1)


for _name, _builder, _uses_label in (
    ("none", no_prompts, False),
    ("full_bank", full_bank, False),
    ("full_bank_shuffle", full_bank_shuffle, False),
    ("match_only", match_only, True),
    ("all_wrong", all_wrong, True),
    ("random_wrong", random_wrong, True),
    ("mixed_subset", mixed_subset, True),
    ("wrong_subset", wrong_subset, True),
):
    MODES.register(_name)(Mode(_builder, _uses_label))
MODES.register("infer_best")(Mode(None, False))


def mode_logits(
    model: PromptedClassifier,
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    mode: str,
    generator: torch.Generator,
) -> torch.Tensor:
    """Logits (B, C) of ``model`` under inference ``mode``."""
    spec = MODES.get(mode)
    bank = model.bank_classes
    if spec.build is not None:
        return model(pixel_values, spec.build(labels, bank, model.num_classes, generator))
    if not bank:
        return model(pixel_values)
    per_prompt = [
        model(pixel_values, torch.full((len(labels), 1), c, dtype=torch.long)) for c in bank
    ]
    return torch.stack(per_prompt).amax(dim=0)
