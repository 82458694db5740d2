"""Training objectives. Each takes (model, pixel_values, labels, generator) → scalar loss,
so the one training loop serves the prompt model and the plain baselines alike."""

from collections.abc import Callable, Sequence

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


def kl_to_reference(
    logits: torch.Tensor, reference_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KL(p_ref ‖ p) at ``temperature``, batch mean, scaled by T² so gradients keep their
    size across temperatures (Hinton et al. 2015): keeps a model close to a frozen copy."""
    log_p = F.log_softmax(logits / temperature, dim=-1)
    p_ref = F.softmax(reference_logits.detach() / temperature, dim=-1)
    return F.kl_div(log_p, p_ref, reduction="batchmean") * temperature**2


def random_wrong_labels(
    labels: torch.Tensor, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Per sample, a label drawn uniformly from the C − 1 classes that are not its own."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift.to(labels.device)) % num_classes


def random_label_objective(classes: Sequence[int]) -> Objective:
    """Cross-entropy without prompts where every sample of a forgotten class carries a
    random wrong label (drawn afresh each step) and every other sample its true one."""
    forgotten = torch.tensor(sorted(classes), dtype=torch.long)

    def loss(
        model: PromptedClassifier, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        relabel = torch.isin(y, forgotten.to(y.device))
        wrong = random_wrong_labels(y, model.num_classes, generator)
        return F.cross_entropy(model(x), torch.where(relabel, wrong, y))

    return loss


FORGET_TARGETS = ("uniform", "random_label")


def relabelled_objective(classes: Sequence[int], target: str) -> Objective:
    """Cross-entropy on the true label for samples of kept classes; samples of forgotten
    ``classes`` are pushed to an uninformative target instead — ``uniform``: KL to the
    uniform distribution; ``random_label``: cross-entropy on a random wrong label, redrawn
    each step. Per-sample terms, batch mean, so the mix follows the batch's composition."""
    if target not in FORGET_TARGETS:
        raise ValueError(f"forget target must be one of {FORGET_TARGETS}, got {target!r}")
    forgotten = torch.tensor(sorted(classes), dtype=torch.long)

    def loss(
        model: PromptedClassifier, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        logits = model(x)
        relabel = torch.isin(y, forgotten.to(y.device))
        if target == "random_label":
            wrong = random_wrong_labels(y, model.num_classes, generator)
            return F.cross_entropy(logits, torch.where(relabel, wrong, y))
        n_forget = int(relabel.sum())
        loss = logits.new_zeros(())
        if n_forget:  # kl_to_uniform is a batch mean: scale it back to a sum
            loss = loss + kl_to_uniform(logits[relabel]) * n_forget
        if n_forget < len(y):
            loss = loss + F.cross_entropy(logits[~relabel], y[~relabel], reduction="sum")
        return loss / len(y)

    return loss
