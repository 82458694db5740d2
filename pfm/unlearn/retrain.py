"""``retrain``: train a fresh model from scratch on the retained classes only — exact
unlearning, the gold reference every other method is measured against. It starts from
the same initialisation and recipe as the plain model (``train_base``) and never
receives a sample of a forgotten class."""

from pfm.losses import plain_objective
from pfm.models.prompted import PromptedClassifier, build_model
from pfm.unlearn.base import Request, TrainRecipe, fit, method


@method("retrain", recipe=TrainRecipe, needs_forget=False, needs_retain=True)
def retrain(request: Request[TrainRecipe]) -> PromptedClassifier:
    retain, seed = request.retain, request.seed
    fresh = build_model(request.model.spec, seed).to(retain.device)  # same init as train_base's
    return fit(fresh, plain_objective, retain, request.recipe, seed)
