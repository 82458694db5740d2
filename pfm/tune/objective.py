"""The search objective, fixed before any trial: on the validation split only, how far a
method's unlearned model lies from its reference's on the same forget set.

Each model is scored by the project's own paths: forgotten- and retained-class accuracy
under deployment inference (``pfm.evaluate.split_accuracies``) and the primary MIA
variant (``aggregate.primary_mia``, ``pfm.attacks.mia``) with members the forgotten
classes' train samples and non-members their *validation* samples. The distance is the
weighted sum of the three absolute differences (``ObjectiveWeights``), averaged over the
tuning sets; 0 is a model that scores as retraining does."""

from dataclasses import dataclass

from pfm.attacks import MIA_VARIANTS, MiaParams
from pfm.attacks.mia import membership_data
from pfm.batches import SplitTensors
from pfm.data.prepared import Split
from pfm.evaluate import split_accuracies
from pfm.models.prompted import PromptedClassifier
from pfm.precision import autocast
from pfm.tune.params import ObjectiveWeights


@dataclass(frozen=True)
class Scoring:
    """How an unlearned model is scored on validation: the MIA variant and its params,
    the evaluation batch and precision (the unlearn stage's), the seed of any draw."""

    mia: MiaParams
    primary_mia: str
    batch_size: int
    precision: str
    seed: int


@dataclass(frozen=True)
class Scores:
    """One unlearned model on one forget set, validation split."""

    forget_acc: float
    retain_acc: float
    mia: float


def validation_scores(
    model: PromptedClassifier,
    train: Split,
    val: Split,
    classes: tuple[int, ...],
    scoring: Scoring,
) -> Scores:
    """``model``'s accuracies on ``val`` and its primary MIA (train vs ``val``) for the
    forgotten ``classes``."""
    device = next(model.parameters()).device
    data = SplitTensors(val, model.input_size, device)
    forget, retain = split_accuracies(
        model, data, classes, scoring.seed, scoring.batch_size, scoring.precision
    )
    variant = MIA_VARIANTS.get(scoring.primary_mia)
    shadow_seed = scoring.seed if variant.reads_shadow else None
    with autocast(device, scoring.precision):
        members = membership_data(model, train, val, classes, scoring.batch_size, shadow_seed)
    return Scores(forget, retain, variant.score(members, scoring.mia, scoring.seed))


def distance(scores: Scores, reference: Scores, weights: ObjectiveWeights) -> float:
    """Weighted sum of |method − reference| over the three scores."""
    return (
        weights.forget * abs(scores.forget_acc - reference.forget_acc)
        + weights.retain * abs(scores.retain_acc - reference.retain_acc)
        + weights.mia * abs(scores.mia - reference.mia)
    )
