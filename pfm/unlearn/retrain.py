"""``retrain``: train a fresh model from scratch on the retained classes only — exact
unlearning, the gold reference every other method is measured against. It starts from
the same initialisation and recipe as the plain model (``train_base``) and never
receives a sample of a forgotten class."""

from pfm.losses import plain_objective
from pfm.models.prompted import PromptedClassifier, build_model
from pfm.unlearn.base import TrainRecipe, fit, method
from pfm.unlearn.data import CountedSplit


@method("retrain", recipe=TrainRecipe, needs_forget=False, needs_retain=True)
def retrain(
    model: PromptedClassifier,
    classes: tuple[int, ...],
    forget: CountedSplit | None,
    retain: CountedSplit,
    recipe: TrainRecipe,
    seed: int,
) -> PromptedClassifier:
    fresh = build_model(model.spec, seed).to(retain.device)  # same init as train_base's
    return fit(fresh, plain_objective, retain, recipe, seed)
