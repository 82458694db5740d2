"""``grad_ascent_kl``: ascent on the forget data plus KL(original ‖ model) on retain data,
which anchors the retained classes' outputs to the model before unlearning instead of
to their labels (the "KL" baseline of TOFU, Maini et al., 2024)."""

import copy

import torch

from pfm.losses import kl_to_reference
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.ascent import RegularisedAscentRecipe, gradient_ascent
from pfm.unlearn.base import Request, method


@method("grad_ascent_kl", recipe=RegularisedAscentRecipe, needs_forget=True, needs_retain=True)
def grad_ascent_kl(request: Request[RegularisedAscentRecipe]) -> PromptedClassifier:
    original = copy.deepcopy(request.model).eval()

    def stay_close(m: PromptedClassifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            reference = original(x)
        return kl_to_reference(m(x), reference)

    return gradient_ascent(request, stay_close, request.recipe.retain_weight)
