"""``finetune``: continue training the original model on the retain data only, relying
on catastrophic forgetting to erase the forgotten classes (the "FT" baseline of Golatkar
et al., CVPR 2020, and of SalUn's benchmark)."""

from pfm.losses import plain_objective
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import Request, TrainRecipe, fit, method


@method("finetune", recipe=TrainRecipe, needs_forget=False, needs_retain=True)
def finetune(request: Request[TrainRecipe]) -> PromptedClassifier:
    return fit(request.model, plain_objective, request.retain, request.recipe, request.seed)
