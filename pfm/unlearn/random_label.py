"""``random_label``: fine-tune on forget ∪ retain where every forget sample carries a
random wrong label, redrawn each step, and retain samples their true one (the "RL"
baseline: Golatkar et al., CVPR 2020; Graves et al., AAAI 2021; SalUn's Eq. 5 without
the mask)."""

from pfm.losses import random_label_objective
from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import TrainRecipe, fit, method
from pfm.unlearn.data import CountedSplit, join


@method("random_label", recipe=TrainRecipe, needs_forget=True, needs_retain=True)
def random_label(
    model: PromptedClassifier,
    classes: tuple[int, ...],
    forget: CountedSplit,
    retain: CountedSplit,
    recipe: TrainRecipe,
    seed: int,
) -> PromptedClassifier:
    return fit(model, random_label_objective(classes), join(forget, retain), recipe, seed)
