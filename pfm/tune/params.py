"""The ``tune`` section of params.yaml: the search budget and its objective's weights."""

from dataclasses import dataclass

from pfm.config import Count, Natural, Weight


@dataclass(frozen=True)
class ObjectiveWeights:
    """Weights of the validation distance to the reference (``pfm.tune.objective``), one
    per term; zero switches a term off. Fixed before any search runs."""

    forget: Weight  # |forgotten-class accuracy − the reference's|
    retain: Weight  # |retained-class accuracy − the reference's|
    mia: Weight  # |primary MIA (aggregate.primary_mia) − the reference's|


@dataclass(frozen=True)
class TuneParams:
    """The ``tune`` section: the same budget for every tunable method."""

    trials: Count  # per method, the hand recipe (trial 0) included
    sets: Count  # forget sets each trial unlearns, none of them scored by the report
    k: Count  # classes in each of those sets
    seed: Natural  # the training seed whose models are unlearned; seeds sampler and sets
    weights: ObjectiveWeights
