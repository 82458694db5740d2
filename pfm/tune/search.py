"""One dataset's search: every tunable method of params ``methods`` searched with the same
budget on the same tuning sets, each trial scored against the reference's model on the
same set (``pfm.tune.objective``).

Only the train and validation splits are read: the dataset's test split is never
touched (tests/test_tune.py runs this with a test split that raises on access). The
reference of each family is unlearned once per tuning set, with its own recipe, and its
scores are shared by every trial. Studies run side by side in ``workers`` single-thread
processes (``pfm.parallel``), one per method, each seeded, so the outcome does not depend
on which worker ran what."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from optuna.trial import FrozenTrial

from pfm.data import PreparedDataset
from pfm.data.prepared import Split
from pfm.models.checkpoint import load_model_for
from pfm.models.prompted import PromptedClassifier
from pfm.parallel import run_all
from pfm.tune.objective import Scores, Scoring, distance, validation_scores
from pfm.tune.params import TuneParams
from pfm.tune.space import Plan
from pfm.tune.study import run_study
from pfm.unlearn import unlearn

ForgetSet = tuple[int, ...]


@dataclass(frozen=True)
class Outcome:
    """A dataset's search: the sets it unlearned, each tuned method's trials, and why the
    other methods were not tuned."""

    sets: list[ForgetSet]
    studies: dict[str, list[FrozenTrial]]
    untunable: dict[str, str]


@dataclass(frozen=True)
class Unlearning:
    """What every unlearning call of the search shares: the splits it may read, each
    method's base model (loaded once, shared by forked workers), how its output is scored."""

    train: Split
    val: Split
    bases: Mapping[str, PromptedClassifier]  # method → the model it starts from (untouched)
    seed: int
    scoring: Scoring

    def scores(self, method: str, recipe: Any, classes: ForgetSet) -> Scores:
        """``method`` with ``recipe`` forgets ``classes``; its validation scores."""
        model = self.bases[method]  # ``unlearn`` works on a copy
        unlearned, _ = unlearn(
            method, model, classes, self.train, recipe, self.seed, self.scoring.precision
        )
        return validation_scores(unlearned, self.train, self.val, classes, self.scoring)


def objective(
    run: Unlearning,
    method: str,
    references: Sequence[Scores],
    sets: Sequence[ForgetSet],
    tune: TuneParams,
) -> Callable[[Any], float]:
    """recipe → its mean distance to the reference over ``sets`` (``references``: the
    reference's scores on each)."""

    def value(recipe: Any) -> float:
        distances = [
            distance(run.scores(method, recipe, classes), reference, tune.weights)
            for classes, reference in zip(sets, references, strict=True)
        ]
        # to 12 decimals: recipes that score alike tie exactly, whatever the summation
        # order's last bits, and the earliest (the hand recipe first) stays the best
        return round(float(np.mean(distances)), 12)

    return value


def search(
    run: Unlearning, plan: Plan, hand: Any, references: Sequence[Scores],
    sets: Sequence[ForgetSet], tune: TuneParams,
) -> list[FrozenTrial]:  # fmt: skip
    """One method's study (a job of ``run_all``), with a line of progress at its end."""
    trials = run_study(
        objective(run, plan.method, references, sets, tune), hand, plan.space, tune.trials,
        tune.seed,
    )  # fmt: skip
    values = [t.value for t in trials if t.value is not None]
    print(f"tune {plan.method}: hand {values[0]:.4f}, best {min(values):.4f}")
    return trials


def tune_dataset(
    dataset: PreparedDataset,
    plans: Sequence[Plan],
    recipes: Mapping[str, Any],
    bases: Mapping[str, Path],
    sets: Sequence[ForgetSet],
    tune: TuneParams,
    scoring: Scoring,
    device: torch.device,
    workers: int,
) -> Outcome:
    """Search every tunable method of ``plans`` on ``sets`` from its hand recipe in
    ``recipes`` (which holds each reference's too), the model in ``bases``."""
    files = {path: load_model_for(path, dataset.name, dataset.num_classes, device)
             for path in set(bases.values())}  # fmt: skip
    models = {method: files[path] for method, path in bases.items()}
    splits = dataset.splits["train"], dataset.splits["val"]
    run = Unlearning(*splits, models, tune.seed, scoring)
    tunable = [p for p in plans if p.tunable]
    pairs = [(ref, classes) for ref in sorted({p.reference for p in tunable}) for classes in sets]
    jobs = [partial(run.scores, ref, recipes[ref], classes) for ref, classes in pairs]
    scores = dict(zip(pairs, run_all(jobs, workers, device), strict=True))  # once per set

    def study(p: Plan) -> Callable[[], list[FrozenTrial]]:
        references = [scores[p.reference, s] for s in sets]
        return partial(search, run, p, recipes[p.method], references, sets, tune)

    studies = run_all([study(p) for p in tunable], workers, device)
    return Outcome(
        list(sets),
        {p.method: trials for p, trials in zip(tunable, studies, strict=True)},
        {p.method: p.reason for p in plans if p.reason is not None},
    )
