"""One method's search as an Optuna study, and the studies kept in Optuna's own storage.

The sampler is Optuna's TPE, seeded: with a deterministic objective the same seed gives
the same trials and the same best. TPE samples at random for its first
``n_startup_trials`` (10), so a budget of a few trials is a seeded random search and a
larger one (the evidence profile) a TPE search. Every method's study takes the same seed
(``tune.seed``): in the random phase, methods whose spaces have the same shape draw the
same quantiles of their ranges, so none of them is given luckier points than another.
The hand recipe is enqueued as trial 0 of every study, within the budget: each
method's hand recipe is measured by the same objective, and its tuned recipe is never
worse than it on validation. Studies run in memory (a forked worker each) and are
written to one SQLite file per dataset at the end, which
``optuna-dashboard sqlite:///<file>`` opens."""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from pfm.config import Search
from pfm.tune.space import searched_values, suggested


def quiet() -> None:
    """Optuna's warnings only: the stage prints one line a method, not one a trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_study(
    objective: Callable[[Any], float],
    hand: Any,
    space: Mapping[str, Search],
    trials: int,
    seed: int,
) -> list[FrozenTrial]:
    """``trials`` trials minimising ``objective`` (recipe → distance), the first one
    ``hand`` itself, the rest ``hand`` with its searched fields drawn from ``space``."""
    quiet()
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial(searched_values(hand, space))
    study.optimize(lambda trial: objective(suggested(hand, space, trial)), n_trials=trials)
    return study.trials


def best_trial(trials: Sequence[FrozenTrial]) -> FrozenTrial:
    """The complete trial of lowest objective; the earliest among equals (trial 0, the
    hand recipe, wins a tie)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise ValueError("no trial of the study completed")
    return min(complete, key=lambda t: (t.value, t.number))


def summary(trials: Sequence[FrozenTrial]) -> dict[str, Any]:
    """What the tuned-recipes file records of a study: trials run, the best one, the
    objective of the hand recipe (trial 0) and of the best, and the hand recipe's
    searched fields (the report sets them beside the tuned ones)."""
    best = best_trial(trials)
    return {
        "trials": len(trials),
        "best_trial": best.number,
        "hand_objective": trials[0].value,
        "best_objective": best.value,
        "hand": dict(trials[0].params),
    }


def write_studies(
    path: Path,
    studies: Mapping[str, Sequence[FrozenTrial]],
    untunable: Mapping[str, str],
    attributes: Mapping[str, Any],
) -> None:
    """One study per method in the SQLite file ``path`` (created anew): a tunable
    method's trials, an untunable one's reason (``untunable``, no trial), and
    ``attributes`` (budget, sets, weights) on every study."""
    quiet()
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    for method in sorted({*studies, *untunable}):
        study = optuna.create_study(storage=storage, study_name=method, direction="minimize")
        for key, value in attributes.items():
            study.set_user_attr(key, value)
        if method in untunable:
            study.set_user_attr("untunable", untunable[method])
        study.add_trials(studies.get(method, ()))
    storage.engine.dispose()
