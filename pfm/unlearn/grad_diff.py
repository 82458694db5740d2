"""``grad_diff``: gradient difference — ascent on the forget data plus ordinary descent
on retain data (NegGrad+, Kurmanji et al., NeurIPS 2023; "GradDiff", Liu et al., 2022)."""

import torch
import torch.nn.functional as F

from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.ascent import RegularisedAscentRecipe, gradient_ascent
from pfm.unlearn.base import Request, method


@method("grad_diff", recipe=RegularisedAscentRecipe, needs_forget=True, needs_retain=True)
def grad_diff(request: Request[RegularisedAscentRecipe]) -> PromptedClassifier:
    def descent(m: PromptedClassifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(x), y)

    return gradient_ascent(request, descent, request.recipe.retain_weight)
