"""The sample-level forget protocol, PI-Prefix's own setting: forget seeded subsets of the
train split's rows (``pfm.forget_sets.draw_sample_sets``), then score each unlearned
model as its authors' tables do: accuracy on the forgotten rows, on the rest of the train
split (retain) and on the test split, with its cost.

What a reader must keep in mind: a forgotten row's class stays in the task, so exact
unlearning (``retrain`` without the rows) does not answer at chance on them; it answers
about as well as on unseen data of the same classes. The protocol therefore scores the
base model on the same rows before anything is forgotten (``base.forget_acc``), and the
report compares each method with ``retrain`` on the same draw, not with chance.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from pfm.batches import SplitTensors
from pfm.cost import NUMERIC, CostRecord, cost_metrics
from pfm.evaluate import Variants, pool, predict
from pfm.forget_sets import ForgetSet
from pfm.models.prompted import PromptedClassifier

# How a sample forget set is forgotten: set → (unlearned model, its cost).
SampleUnlearner = Callable[[ForgetSet], tuple[PromptedClassifier, CostRecord]]

SAMPLE_UNIT_IDENTITY = ("set", "digest", "rows")  # what names a unit; the rest is measured


class SampleScorer:
    """Scores models on the forgotten rows, the retained rows and the test split: one
    pass over the train split and one over test per model, whatever the number of sets."""

    def __init__(
        self, train: SplitTensors, test: SplitTensors, seed: int, batch_size: int, precision: str
    ) -> None:
        self.train, self.test = train, test
        self.seed, self.batch_size, self.precision = seed, batch_size, precision

    def correct(self, model: PromptedClassifier, data: SplitTensors) -> np.ndarray:
        """One bool a row of ``data``: does ``model`` classify it right?"""
        predicted = predict(model, data, "full_bank", self.batch_size, self.seed, self.precision)
        return predicted == data.labels.numpy()

    def inside(self, forget_set: ForgetSet) -> np.ndarray:
        """The train rows ``forget_set`` forgets."""
        return forget_set.mask(self.train.labels.numpy())

    def scores(self, model: PromptedClassifier, forget_set: ForgetSet) -> dict[str, float]:
        """``model``'s accuracy on the set's train rows (``forget_acc``), on every other
        train row (``retain_acc``) and on the test split (``test_acc``)."""
        correct, inside = self.correct(model, self.train), self.inside(forget_set)
        return {
            "forget_acc": float(correct[inside].mean()),
            "retain_acc": float(correct[~inside].mean()),
            "test_acc": float(self.correct(model, self.test).mean()),
        }


def sample_unit(
    index: int,
    forget_set: ForgetSet,
    scores: Mapping[str, float],
    cost: CostRecord,
) -> dict[str, Any]:
    """One forget set's unit: which set (its index in the seed's draws, its digest and
    size), the scores by key (variants as ``<variant>.``, the base model as ``base.``)
    and the cost."""
    record: dict[str, Any] = {
        "set": index,
        "digest": forget_set.digest(),
        "rows": len(forget_set.members),
    }
    record.update(scores)
    record.update({f"cost.{name}": float(getattr(cost, name)) for name in NUMERIC})
    return record


def forget_samples(
    unlearn: SampleUnlearner,
    base: PromptedClassifier,
    scorer: SampleScorer,
    sets: Sequence[ForgetSet],
    variants: Variants | None = None,
) -> dict[str, Any]:
    """Every set of ``sets`` forgotten from ``base`` and scored: flat metrics
    ``samples.forget_acc.mean`` / ``.std`` and likewise ``retain_acc``, ``test_acc``,
    ``base.forget_acc`` (the base model on the same rows) and each of ``variants``'
    (``samples.<variant>.forget_acc.mean`` …), ``samples.cost.<field>.mean`` (apart from
    the unlearn stage's ``cost.`` keys of the same run), and ``units``: one record per set
    (``sample_unit``)."""
    if not sets or any(s.kind != "samples" for s in sets):
        raise ValueError("forget_samples needs one or more sample forget sets")
    base_correct = scorer.correct(base, scorer.train)
    costs: list[CostRecord] = []
    units: list[dict[str, Any]] = []
    for index, forget_set in enumerate(tqdm(sets, desc="forget samples", unit="set", disable=None)):
        unlearned, cost = unlearn(forget_set)
        costs.append(cost)
        scores = scorer.scores(unlearned, forget_set)
        scores["base.forget_acc"] = float(base_correct[scorer.inside(forget_set)].mean())
        if variants is not None:
            for label, variant in variants(unlearned).items():
                for key, value in scorer.scores(variant, forget_set).items():
                    scores[f"{label}.{key}"] = value
        units.append(sample_unit(index, forget_set, scores, cost))
    measured = [{f: v for f, v in u.items() if f not in SAMPLE_UNIT_IDENTITY} for u in units]
    metrics: dict[str, Any] = pool(measured, "samples.")
    metrics["samples.sets"] = len(sets)
    metrics["samples.rows"] = len(sets[0].members)
    metrics.update(cost_metrics(costs, "samples.cost."))
    metrics["units"] = units
    return metrics
