"""``pfm``: the pre-forgettable model's own unlearning (Hendrix et al., ACM MM 2025,
arXiv 2509.15230) — delete the forgotten classes' prompts. No data, no gradient step;
registered here so its forget-k numbers and cost come from the same runner as every
baseline's."""

from dataclasses import dataclass

from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import Request, method


@dataclass(frozen=True)
class PromptForgetRecipe:
    mask_logits: bool  # also mask the forgotten classes' logits (the authors do not)


@method(
    "pfm", recipe=PromptForgetRecipe, needs_forget=False, needs_retain=False, base="prompt",
    serves=("classes",),
)  # fmt: skip
def prompt_forget(request: Request[PromptForgetRecipe]) -> PromptedClassifier:
    return request.model.forget(request.classes, mask_logits=request.recipe.mask_logits)
