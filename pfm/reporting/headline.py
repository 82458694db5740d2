"""The headline metrics: ``metrics/headline.json``, the only file ``dvc.yaml`` declares as
DVC metrics, so that ``dvc exp show`` and ``dvc metrics diff`` list a few dozen numbers a
person reads, not the summary's thousands (``metrics/summary.json`` stays the complete
record; ``docs/running.md`` shows how to diff it).

Keys, every one at k = ``aggregate.k`` (``<d>``: a dataset; ``<m>``: a method other than
the references; means over the nested units of ``pfm.stats``):

- ``<d>.pfm.forget_acc``, ``<d>.pfm.retain_acc``, ``<d>.pfm.mia_<variant>`` and the same
  three of its reference ``retrain_prompt``: the method under study beside exact
  unlearning; ``<variant>`` is ``aggregate.primary_mia``, fixed in advance.
- ``<d>.<m>.forget_diff`` and ``<d>.<m>.forget_verdict``: forgotten accuracy, method −
  its family's reference, paired by unit, and the verdict (1 equivalent, 0 inconclusive,
  −1 apart).
- ``<d>.pfm.max_valid_residual.<capability>_m<m>``: the largest recovery residual among
  the attacks passing the collapse and specificity checks (``pfm.reporting.recovery``),
  the attack in the key, as a metric holds numbers only; absent where none passed.
- ``stages.wall_seconds``, ``stages.cpu_seconds``, ``stages.peak_rss_mib``: every timed
  stage run together (``pfm.reporting.stage_times.total``).

A key whose run has no value is left out, not written as null: DVC shows a missing
column as "-" either way, and a null key of every absent method would crowd the table.
"""

import math
from collections.abc import Mapping, Sequence

from pfm.reporting.aggregate import (
    AggregateParams,
    Summary,
    comparison_of,
    datasets_and_methods,
    declarations,
    lookup,
)
from pfm.reporting.recovery import attacks, largest_valid
from pfm.reporting.stage_times import StageRun, total
from pfm.reporting.table import is_reference, ordered_methods

STUDIED = "pfm"  # the method under study; its reference is the prompt family's
STAGES = "stages"  # the key prefix of the stage-time totals (no dataset is named so)


def _means(summary: Summary, dataset: str, method: str, names: Mapping[str, str]) -> Summary:
    """``<dataset>.<method>.<key>`` → mean of each summary metric named in ``names``."""
    keys = {}
    for key, name in names.items():
        found = lookup(summary, dataset, method, [name])
        if found is not None and not math.isnan(found.mean):
            keys[f"{dataset}.{method}.{key}"] = found.mean
    return keys


def _differences(summary: Summary, dataset: str, methods: Sequence[str], k: int) -> Summary:
    """Each non-reference method's paired forgotten-accuracy difference and verdict."""
    keys = {}
    for method in methods:
        found = None if is_reference(summary, dataset, method) else comparison_of(
            summary, dataset, method, f"k{k}.forget_acc"
        )  # fmt: skip
        if found is not None:
            keys[f"{dataset}.{method}.forget_diff"] = found.difference.mean
            keys[f"{dataset}.{method}.forget_verdict"] = float(found.verdict)
    return keys


def _residual(summary: Summary, dataset: str, k: int, specificity_max: float) -> Summary:
    """The studied method's largest valid recovery residual, its attack in the key."""
    pairs = attacks(summary, dataset).get(k, [])
    found = largest_valid(summary, dataset, STUDIED, k, pairs, specificity_max)
    if found is None:
        return {}
    (capability, m), residual = found
    return {f"{dataset}.{STUDIED}.max_valid_residual.{capability}_m{m}": residual.mean}


def stage_keys(runs: Sequence[StageRun]) -> Summary:
    """The totals of every stage run; none without runs."""
    if not runs:
        return {}
    return {f"{STAGES}.{measure}": value for measure, value in total(list(runs)).items()}


def headline(summary: Summary, config: AggregateParams, runs: Sequence[StageRun]) -> Summary:
    """The headline keys (module docstring) of every dataset in the summary."""
    k = config.k
    accuracies = {
        "forget_acc": f"k{k}.forget_acc",
        "retain_acc": f"k{k}.retain_acc",
        f"mia_{config.primary_mia}": f"k{k}.mia.{config.primary_mia}",
    }
    keys: Summary = {}
    for dataset, methods in datasets_and_methods(summary).items():
        studied = declarations(summary, dataset).get(STUDIED)
        for method in dict.fromkeys([STUDIED, *([] if studied is None else [studied.reference])]):
            keys |= _means(summary, dataset, method, accuracies)
        keys |= _differences(summary, dataset, ordered_methods(summary, dataset, methods), k)
        keys |= _residual(summary, dataset, k, config.specificity_max)
    return keys | stage_keys(runs)
