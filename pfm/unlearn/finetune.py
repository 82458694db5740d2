"""``finetune``: continue training the original model on the retain data only, relying
on catastrophic forgetting to erase the forgotten classes (the "FT" baseline of Golatkar
et al., CVPR 2020, and of SalUn's benchmark)."""

from pfm.losses import plain_objective
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import TrainRecipe, fit, method
from pfm.unlearn.data import CountedSplit


@method("finetune", recipe=TrainRecipe, needs_forget=False, needs_retain=True)
def finetune(
    model: PromptedClassifier,
    classes: tuple[int, ...],
    forget: CountedSplit | None,
    retain: CountedSplit,
    recipe: TrainRecipe,
    seed: int,
) -> PromptedClassifier:
    return fit(model, plain_objective, retain, recipe, seed)
