"""Training objectives. Each takes (model, batch, generator) → scalar loss, so the one
training loop serves the prompt model and the plain baselines alike. An unlearning
objective tells forget rows from retain rows by the batch's marks (``MarkedBatch.forget``),
never by their labels: the same objective serves a forget set of classes and one of
training samples."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pfm.batches import MarkedBatch
from pfm.models.prompted import PromptedClassifier
from pfm.modes import mixed_subset, wrong_subset

Objective = Callable[[PromptedClassifier, MarkedBatch, torch.Generator], torch.Tensor]


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(U ‖ softmax(logits)), batch mean: pushes the output to uniform (abstention)."""
    uniform = torch.full_like(logits, 1.0 / logits.shape[-1])
    return F.kl_div(F.log_softmax(logits, dim=-1), uniform, reduction="batchmean")


def prompt_objective(kl_weight: float) -> Objective:
    """The pre-forgettable step: two forwards on the same batch — cross-entropy with the
    true prompt among wrong ones (``mixed_subset``), plus ``kl_weight`` × KL-to-uniform
    with wrong prompts only (``wrong_subset``)."""

    def loss(
        model: PromptedClassifier, batch: MarkedBatch, generator: torch.Generator
    ) -> torch.Tensor:
        x, y, _ = batch
        bank = model.bank_classes
        ce = F.cross_entropy(model(x, mixed_subset(y, bank, model.num_classes, generator)), y)
        kl = kl_to_uniform(model(x, wrong_subset(y, bank, model.num_classes, generator)))
        return ce + kl_weight * kl

    return loss


def plain_objective(
    model: PromptedClassifier, batch: MarkedBatch, generator: torch.Generator
) -> torch.Tensor:
    """Cross-entropy without prompts: the baselines' classifier."""
    return F.cross_entropy(model(batch.inputs), batch.labels)


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


def forget_marks(batch: MarkedBatch) -> torch.Tensor:
    """The batch's forget marks; an error for a batch that carries none (an objective that
    relabels forget rows cannot tell them from retain rows without)."""
    if batch.forget is None:
        raise ValueError("this objective needs forget-marked batches (pfm.unlearn.data)")
    return batch.forget


def random_label_objective() -> Objective:
    """Cross-entropy without prompts where every forget row carries a random wrong label
    (drawn afresh each step) and every other row its true one."""

    def loss(
        model: PromptedClassifier, batch: MarkedBatch, generator: torch.Generator
    ) -> torch.Tensor:
        x, y, _ = batch
        wrong = random_wrong_labels(y, model.num_classes, generator)
        return F.cross_entropy(model(x), torch.where(forget_marks(batch), wrong, y))

    return loss


FORGET_TARGETS = ("uniform", "random_label")


def relabelled_objective(target: str) -> Objective:
    """Cross-entropy on the true label for retain rows; forget rows are pushed to an
    uninformative target instead — ``uniform``: KL to the uniform distribution;
    ``random_label``: cross-entropy on a random wrong label, redrawn each step. Per-row
    terms, batch mean, so the mix follows the batch's composition."""
    if target not in FORGET_TARGETS:
        raise ValueError(f"forget target must be one of {FORGET_TARGETS}, got {target!r}")
    if target == "random_label":
        return random_label_objective()

    def loss(
        model: PromptedClassifier, batch: MarkedBatch, generator: torch.Generator
    ) -> torch.Tensor:
        x, y, _ = batch
        logits = model(x)
        relabel = forget_marks(batch)
        n_forget = int(relabel.sum())
        loss = logits.new_zeros(())
        if n_forget:  # kl_to_uniform is a batch mean: scale it back to a sum
            loss = loss + kl_to_uniform(logits[relabel]) * n_forget
        if n_forget < len(y):
            loss = loss + F.cross_entropy(logits[~relabel], y[~relabel], reduction="sum")
        return loss / len(y)

    return loss
