"""Training objectives. Each takes (model, pixel_values, labels, generator) → scalar loss,
so the one training loop serves the prompt model and the plain baselines alike."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pfm.models.prompted import PromptedClassifier
from pfm.modes import mixed_subset, wrong_subset

Objective = Callable[
    [PromptedClassifier, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor
]


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(U ‖ softmax(logits)), batch mean: pushes the output to uniform (abstention)."""
    uniform = torch.full_like(logits, 1.0 / logits.shape[-1])
    return F.kl_div(F.log_softmax(logits, dim=-1), uniform, reduction="batchmean")


def prompt_objective(kl_weight: float) -> Objective:
    """The pre-forgettable step: two forwards on the same batch — cross-entropy with the
    true prompt among wrong ones (``mixed_subset``), plus ``kl_weight`` × KL-to-uniform
    with wrong prompts only (``wrong_subset``)."""

    def loss(
        model: PromptedClassifier, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        bank = model.bank_classes
        ce = F.cross_entropy(model(x, mixed_subset(y, bank, model.num_classes, generator)), y)
        kl = kl_to_uniform(model(x, wrong_subset(y, bank, model.num_classes, generator)))
        return ce + kl_weight * kl

    return loss


def plain_objective(
    model: PromptedClassifier, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Cross-entropy without prompts: the baselines' classifier."""
    return F.cross_entropy(model(x), y)
