"""``grad_ascent``: gradient ascent on the forget data's cross-entropy alone (NegGrad;
Golatkar et al., CVPR 2020; Thudi et al., EuroS&P 2022). Needs no retain data."""

from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.ascent import AscentRecipe, gradient_ascent
from pfm.unlearn.base import Request, method


@method("grad_ascent", recipe=AscentRecipe, needs_forget=True, needs_retain=False)
def grad_ascent(request: Request[AscentRecipe]) -> PromptedClassifier:
    return gradient_ascent(request)
