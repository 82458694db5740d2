"""The data behind the report's two main figures, as DVC plot files: ``dvc plots show``
and ``dvc plots diff`` draw them with the Vega-Lite templates in ``.dvc/plots/``
(``forest.json``, ``relearn.json``), two revisions side by side, where the PNGs of
``pfm.reporting.plots`` can only be shown one beside the other.

One file per dataset and figure, ``<folder>/forest/<dataset>.json`` and
``<folder>/relearn/<dataset>.json``, each ``{"rows": [record, …]}``:

- forest: one record per compared method and metric (forgotten, retained accuracy at
  k = ``aggregate.k``): ``method``, ``order`` (its row, as in the report), ``metric``,
  ``diff`` (method − reference, paired), ``lo`` and ``hi`` (its 95 % interval, null
  without one), ``verdict`` (a word) and the equivalence ``margin``;
- relearn: one record per point of every relearn curve: ``method``, ``attack``
  (``<capability> k<k> m<m>``), ``side`` (``attacked`` or ``reference``), ``draw`` (the
  curve's index among the seeds), ``step`` and ``acc``.

A dataset without rows gets no file: DVC fails on an empty plot file, and an absent one
is shown as absent.
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pfm.files import write_json
from pfm.reporting.aggregate import AggregateParams, Curve, datasets_and_methods, split_label
from pfm.reporting.table import ordered_methods
from pfm.reporting.verdicts import comparisons

Row = dict[str, Any]
METRICS = {"forgotten": "forget_acc", "retained": "retain_acc"}  # forest's panels, in order
FIGURES = ("forest", "relearn")  # the folders below the plot-data folder, one per figure
REFERENCE = " reference"  # suffix of a never-seen reference's curve name (attack stage)


def _bound(value: float) -> float | None:
    return None if math.isnan(value) else value


def forest_rows(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int, margin: float
) -> list[Row]:
    """Every non-reference method's paired difference on forgotten and retained accuracy."""
    rows = []
    for metric, name in METRICS.items():
        found = comparisons(summary, dataset, methods, f"k{k}.{name}")
        for method, comparison in found.items():
            low, high = comparison.difference.bounds
            rows.append({
                "method": method, "order": methods.index(method), "metric": metric,
                "diff": comparison.difference.mean,
                "lo": _bound(low), "hi": _bound(high), "verdict": comparison.verdict.word,
                "margin": margin,
            })  # fmt: skip
    return rows


def relearn_rows(curves: Mapping[str, Sequence[Curve]]) -> list[Row]:
    """Every point of every curve (``read_relearn_curves``' labels) as one record."""
    rows = []
    for label, draws in sorted(curves.items()):
        method, name = split_label(label)
        side = "reference" if name.endswith(REFERENCE) else "attacked"
        attack = name.removesuffix(REFERENCE) or "curve"  # a file's only curve has no name
        for draw, (steps, accs) in enumerate(draws):
            rows += [
                {"method": method, "attack": attack, "side": side, "draw": draw,
                 "step": step, "acc": acc}
                for step, acc in zip(steps, accs, strict=True)
            ]  # fmt: skip
    return rows


def write_plot_data(
    summary: Mapping[str, float],
    curves: Mapping[str, Mapping[str, Sequence[Curve]]],
    config: AggregateParams,
    folder: Path,
) -> None:
    """``<folder>/{forest,relearn}/<dataset>.json`` for every dataset with rows; both
    folders always exist (each is a DVC output of stage aggregate)."""
    for figure in FIGURES:
        (folder / figure).mkdir(parents=True, exist_ok=True)
    files = {}
    for dataset, methods in datasets_and_methods(summary).items():
        ordered = ordered_methods(summary, dataset, methods)
        files[folder / "forest" / f"{dataset}.json"] = forest_rows(
            summary, dataset, ordered, config.k, config.margin
        )
    for dataset, labelled in curves.items():
        files[folder / "relearn" / f"{dataset}.json"] = relearn_rows(labelled)
    for path, rows in files.items():
        if rows:
            write_json(path, {"rows": rows})
