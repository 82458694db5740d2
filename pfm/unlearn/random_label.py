"""``random_label``: fine-tune on forget ∪ retain where every forget sample carries a
random wrong label, redrawn each step, and retain samples their true one (the "RL"
baseline: Golatkar et al., CVPR 2020; Graves et al., AAAI 2021; SalUn's Eq. 5 without
the mask)."""

from pfm.losses import random_label_objective
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import Request, TrainRecipe, fit, method
from pfm.unlearn.data import join


@method("random_label", recipe=TrainRecipe, needs_forget=True, needs_retain=True)
def random_label(request: Request[TrainRecipe]) -> PromptedClassifier:
    """The request's model fine-tuned on forget (random wrong labels) ∪ retain (true)."""
    objective = random_label_objective()
    data = join(request.forget, request.retain)
    return fit(request.model, objective, data, request.recipe, request.seed)
