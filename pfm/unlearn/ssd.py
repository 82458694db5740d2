"""``ssd``: selective synaptic dampening (Foster et al., "Fast Machine Unlearning Without
Retraining Through Selective Synaptic Dampening", AAAI 2024). Retrain-free: no optimizer
step, one gradient pass over the forget data and one over the training data.

Importance is the diagonal of the Fisher information, estimated as in the paper's code
by the squared mini-batch gradient of the cross-entropy averaged over batches: []_D on
the whole training set D = forget ∪ retain, []_f on the forget set. A parameter is
selected when []_f > α []_D (selection weighting α) and then scaled by
β = min(λ []_D / []_f, 1) (dampening constant λ), so parameters specialised to the
forget set shrink and the rest stay as they are. The paper computes []_D once per model
and reuses it across requests; we compute it in every call and count it in the cost.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import method
from pfm.unlearn.data import CountedSplit, join


@dataclass(frozen=True)
class SsdRecipe:
    batch_size: int  # of the importance estimate (a squared *batch* gradient)
    selection_weighting: float  # α
    dampening_constant: float  # λ


def importance(
    model: PromptedClassifier, data: CountedSplit, batch_size: int
) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared batch-mean cross-entropy gradient (diagonal Fisher)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    batches = 0
    model.eval()
    for x, y in data.batches(batch_size):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for n, p in params.items():
            if p.grad is not None:
                total[n] += p.grad.pow(2)
        batches += 1
    model.zero_grad(set_to_none=True)
    return {n: t / max(batches, 1) for n, t in total.items()}


@torch.no_grad()
def dampen(
    param: torch.Tensor,
    forget_importance: torch.Tensor,
    full_importance: torch.Tensor,
    selection_weighting: float,
    dampening_constant: float,
) -> None:
    """SSD's update, in place: θ ← β θ where []_f > α []_D, β = min(λ []_D / []_f, 1)."""
    selected = forget_importance > selection_weighting * full_importance
    beta = (dampening_constant * full_importance / forget_importance).clamp(max=1.0)
    param.mul_(torch.where(selected, beta, torch.ones_like(beta)))


@method("ssd", recipe=SsdRecipe, needs_forget=True, needs_retain=True)
def ssd(
    model: PromptedClassifier,
    classes: tuple[int, ...],
    forget: CountedSplit,
    retain: CountedSplit,
    recipe: SsdRecipe,
    seed: int,
) -> PromptedClassifier:
    full = importance(model, join(forget, retain), recipe.batch_size)
    forgotten = importance(model, forget, recipe.batch_size)
    for name, param in model.named_parameters():
        if param.requires_grad:
            dampen(
                param,
                forgotten[name],
                full[name],
                recipe.selection_weighting,
                recipe.dampening_constant,
            )
    return model
