"""``salun``: saliency unlearning (Fan et al., "SalUn: Empowering Machine Unlearning via
Gradient-based Weight Saliency in Both Image Classification and Generation", ICLR 2024).

Weight saliency is the magnitude of the forgetting loss's gradient at the original
weights, m = 1[|∇_θ ℓ_f(θ_o; D_f)| ≥ γ] with ℓ_f the gradient-ascent loss (−CE on the
forget data) — its sign does not matter, only its magnitude; γ is set so that a
``saliency`` fraction of all trainable elements is salient (the paper's default: half).
Then random-label unlearning (their Eq. 5: forget samples with random labels y' ≠ y,
retain samples with their own) updates only the salient elements: θ ← θ − η m ⊙ ∇ℓ.
We mask the gradients, so Adam's moments of non-salient elements stay zero and those
elements do not move at all.
"""

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from pfm.config import Share, Uniform
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import Request, TrainRecipe, method
from pfm.unlearn.data import CountedSplit
from pfm.unlearn.random_label import random_label


@dataclass(frozen=True)
class SalunRecipe(TrainRecipe):
    # fraction of trainable elements the update may change
    saliency: Annotated[Share, Uniform(0.1, 1.0)]


def forget_gradients(
    model: PromptedClassifier, forget: CountedSplit, batch_size: int
) -> dict[str, torch.Tensor]:
    """∇_θ of the mean forget cross-entropy at the current weights (one pass, no step)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    model.eval()  # the gradient at θ_o, without dropout noise
    for x, y in forget.batches(batch_size):
        model.zero_grad(set_to_none=True)
        (F.cross_entropy(model(x), y, reduction="sum") / len(forget)).backward()
        for n, p in params.items():
            if p.grad is not None:
                total[n] += p.grad
    model.zero_grad(set_to_none=True)
    return total


def saliency_mask(gradients: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """1 for the ``fraction`` of elements (over all tensors together) with the largest
    gradient magnitude, 0 elsewhere; exactly round(fraction · N) ones."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"saliency fraction must lie in (0, 1], got {fraction}")
    flat = torch.cat([g.abs().flatten() for g in gradients.values()])
    chosen = torch.zeros_like(flat)
    chosen[flat.topk(max(1, round(fraction * len(flat)))).indices] = 1.0
    masks, start = {}, 0
    for name, g in gradients.items():
        masks[name] = chosen[start : start + g.numel()].view_as(g)
        start += g.numel()
    return masks


@method("salun", recipe=SalunRecipe, needs_forget=True, needs_retain=True)
def salun(request: Request[SalunRecipe]) -> PromptedClassifier:
    model, recipe = request.model, request.recipe
    gradients = forget_gradients(model, request.forget, recipe.batch_size)
    masks = saliency_mask(gradients, recipe.saliency)
    handles = [
        p.register_hook(lambda grad, m=masks[n]: grad * m)
        for n, p in model.named_parameters()
        if p.requires_grad
    ]
    try:
        random_label(request)  # trains request.model, the model the hooks mask
    finally:
        for handle in handles:
            handle.remove()
    return model
