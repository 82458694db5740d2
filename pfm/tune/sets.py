"""The forget sets the search unlearns: drawn from the seed, never one the report scores.

The unlearn stage's sets follow from each training seed (``pfm.evaluate.forget_plan``);
every one of them, over every seed of params, is a unit of the report, so a recipe tuned
on one would be chosen on the figures it is then scored on. The search draws its own sets
of size k from the rest, with a random stream of its own (``TUNE_STREAM``)."""

import math
from collections.abc import Iterable, Sequence

import numpy as np

from pfm.evaluate import check_k, forget_plan
from pfm.unlearn import UnlearnParams

TUNE_STREAM = 27  # third entry of the seed sequence: unlearn's sets use (seed, k) alone


def scored_sets(
    num_classes: int, unlearn: UnlearnParams, seeds: Sequence[int]
) -> set[tuple[int, ...]]:
    """Every forget set the unlearn stage runs for any of ``seeds``: what the report scores."""
    scored: set[tuple[int, ...]] = set()
    for seed in seeds:
        plan = forget_plan(num_classes, unlearn.ks(num_classes), unlearn.max_sets, seed)
        for sets, _ in plan.values():
            scored.update(sets)
    return scored


def tuning_sets(
    num_classes: int, k: int, count: int, scored: Iterable[tuple[int, ...]], seed: int
) -> list[tuple[int, ...]]:
    """``count`` distinct sets of ``k`` classes, none in ``scored``, drawn from ``seed``."""
    check_k(num_classes, k)
    excluded = {tuple(sorted(s)) for s in scored if len(s) == k}
    free = math.comb(num_classes, k) - len(excluded)
    if count > free:
        raise ValueError(
            f"tune.sets: {count} forget sets of size {k} asked, but only {free} of the "
            f"{math.comb(num_classes, k)} are not scored by the report (unlearn.k, "
            f"unlearn.max_sets, seeds): lower tune.sets or choose another tune.k"
        )
    rng = np.random.default_rng([seed, k, TUNE_STREAM])
    chosen: list[tuple[int, ...]] = []
    while len(chosen) < count:
        drawn = tuple(sorted(rng.choice(num_classes, size=k, replace=False).tolist()))
        if drawn not in excluded and drawn not in chosen:
            chosen.append(drawn)
    return chosen
