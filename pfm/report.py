"""The report a reviewer reads: ``reports/results.md``, one markdown table per dataset.

Rows are methods (the ``retrain`` reference first, the prompt model ``pfm`` last, the
rest alphabetical); columns are the benchmark's questions at one forget-k: how much
utility is kept, how much is forgotten, how far from retraining, what attacks still
find, what it costs. Cells are mean ± std over seeds and forget sets (``pfm.aggregate``
defines both). ``—`` means the metric was not measured for that method, ``nan`` that it
was measured and undefined. The best cell of a column is bold, chosen among the methods
other than ``retrain`` (the reference is not a competitor) and only when at least two
compete: ``max``/``min`` by the column's direction, ``retrain`` = closest to the
reference's value (an unlearned model should look like one that never saw the class),
falling back to the column's ``fallback`` rule when there is no reference row.
"""

import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pfm.aggregate import (
    MIA,
    RECOVERY,
    REFERENCE,
    RESIDUAL,
    UNLEARN_SECONDS,
    AggregateParams,
    datasets_and_methods,
    lookup,
    metric_names,
)

MISSING = "—"
PROMPT_MODEL = "pfm"
TRAINABLE_PARAMS = ("cost.params.trainable", "cost.trainable_params", "trainable_params")


@dataclass(frozen=True)
class Column:
    title: str
    names: tuple[str, ...]  # summary metrics; the first one a method reports is shown
    best: str | None  # "max" | "min" | "retrain" (closest to the reference) | None
    fallback: str | None = None  # rule for "retrain" columns without a reference row
    kind: str = "fraction"  # fraction | seconds | count | ratio


def columns(summary: Mapping[str, float], dataset: str, k: int) -> list[Column]:
    """The table's columns; MIA variants and recovery shot counts are whatever the
    attack metrics of this dataset hold."""
    mia = [
        Column(f"MIA {name.split('.')[1]} ≈R", (name,), "retrain")
        for name in metric_names(summary, dataset, MIA)
    ]
    recovery = [
        Column(f"recovery m={RECOVERY.match(name)[1]} ≈R", (name,), "retrain", "min")
        for name in metric_names(summary, dataset, RECOVERY)
    ]
    residual = [  # retrain is its own never-seen reference: its residual is 0
        Column(f"residual m={RESIDUAL.match(name)[1]} ≈R", (name,), "retrain")
        for name in metric_names(summary, dataset, RESIDUAL)
    ]
    return [
        Column(f"retained acc (k={k}) ↑", (f"k{k}.retain_acc",), "max"),
        Column(f"forgotten acc (k={k}) ≈R", (f"k{k}.forget_acc",), "retrain", "min"),
        Column("gap to retrain ↓", (f"k{k}.avg_gap_to_retrain",), "min"),
        *mia,
        *recovery,
        *residual,
        Column("unlearn s ↓", UNLEARN_SECONDS, "min", kind="seconds"),
        Column("RTE ↓", ("rte",), "min", kind="ratio"),
        Column("trainable params ↓", TRAINABLE_PARAMS, "min", kind="count"),
        Column(
            "FLOPs/sample ↓",
            ("cost.flops_per_sample", "eval.cost.flops_per_sample"),
            "min",
            kind="count",
        ),
    ]


def ordered_methods(methods: Sequence[str]) -> list[str]:
    first = [m for m in methods if m == REFERENCE]
    last = [m for m in methods if m == PROMPT_MODEL]
    return first + sorted(m for m in methods if m not in (REFERENCE, PROMPT_MODEL)) + last


def _number(value: float, kind: str) -> str:
    if math.isnan(value):
        return "nan"
    if kind == "fraction":
        return f"{value:.3f}"
    if kind == "count":
        for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return f"{value:.0f}"
    return f"{value:.3g}"  # seconds, ratio


def cell(value: tuple[float, float | None] | None, kind: str) -> str:
    """``mean ± std``; counts and derived metrics (std ``None``) show the mean only."""
    if value is None:
        return MISSING
    mean, std = value
    if std is None or kind == "count" or math.isnan(mean):
        return _number(mean, kind)
    return f"{_number(mean, kind)} ± {_number(std, kind)}"


def best_rows(methods: Sequence[str], means: Sequence[float | None], column: Column) -> set[int]:
    """Indices of the best rows of one column (module docstring for the rules)."""
    reference = next(
        (v for m, v in zip(methods, means, strict=True) if m == REFERENCE and v is not None),
        None,
    )
    rule = column.best
    if rule == "retrain" and (reference is None or math.isnan(reference)):
        rule = column.fallback
    competing = [
        (i, v)
        for i, (m, v) in enumerate(zip(methods, means, strict=True))
        if m != REFERENCE and v is not None and not math.isnan(v)
    ]
    if rule is None or len(competing) < 2:
        return set()
    if rule == "retrain":
        scores = [(i, abs(v - reference)) for i, v in competing]
    else:
        scores = [(i, v if rule == "min" else -v) for i, v in competing]
    top = min(score for _, score in scores)
    return {i for i, score in scores if score == top}


def table(summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int) -> str:
    """One GitHub-markdown table: methods × ``columns``, best cells in bold."""
    cols = columns(summary, dataset, k)
    rows = [[f"{m} (reference)" if m == REFERENCE else m] for m in methods]
    for column in cols:
        values = [lookup(summary, dataset, m, column.names) for m in methods]
        best = best_rows(methods, [v[0] if v else None for v in values], column)
        for i, value in enumerate(values):
            text = cell(value, column.kind)
            rows[i].append(f"**{text}**" if i in best else text)
    return tabulate(rows, headers=["method", *(c.title for c in cols)], tablefmt="github")


def transfer_line(summary: Mapping[str, float], dataset: str) -> list[str]:
    """One line for a dataset with a ``real`` split (``pfm.evaluate.transfer_metrics``):
    the prompt model trained on synthetic clips, tested on real recordings."""
    names = {
        "no-forget acc (full_bank)": "eval.real.no_forget.full_bank.acc",
        "forgotten acc (k=1)": "eval.real.k1.forget_acc",
        "retained acc (k=1)": "eval.real.k1.retain_acc",
    }
    values = {title: lookup(summary, dataset, PROMPT_MODEL, [n]) for title, n in names.items()}
    if all(v is None for v in values.values()):
        return []
    classes = lookup(summary, dataset, PROMPT_MODEL, ["eval.real.classes"])
    covered = f", {classes[0]:.0f} classes" if classes else ""
    cells = "; ".join(f"{title} {cell(v, 'fraction')}" for title, v in values.items())
    return [f"Real recordings (`real` split{covered}), prompt model: {cells}.", ""]


def git_commit(cwd: Path | None = None) -> str:
    """Short hash of HEAD; ``uncommitted`` in a repository without commits, ``unknown``
    outside one (or without git)."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode == 0:
            return head.stdout.strip()
        return "uncommitted" if git("rev-parse", "--git-dir").returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def provenance(params: Mapping[str, Any], aggregate: AggregateParams, commit: str) -> list[str]:
    """Header lines: which profile, backbone, seeds and commit produced the numbers."""
    max_sets = params["evaluate"]["max_sets"]
    sets = "all C-choose-k" if max_sets is None else f"at most {max_sets} (seeded sample)"
    return [
        f"profile: {aggregate.profile}",
        f"backbone: `{params['model']['backbone']}` (audio: "
        f"`{params['model'].get('audio_backbone', '—')}`); epochs: {params['train']['epochs']}",
        f"datasets: {', '.join(params['datasets'])}; seeds: {params['seeds']}",
        f"forget sets per k and seed: {sets}; table k = {aggregate.k}",
        f"commit: `{commit}` (checked out when the report was built)",
    ]


LEGEND = """\
Cells are mean ± std over seeds and forget sets (population std). ↑ higher is better,
↓ lower is better, ≈R closest to the `retrain` reference is better; **bold** marks the
best of a column among the methods other than the reference (when at least two
compete). `—`: not measured for that method; `nan`: measured but undefined.
Gap to retrain: mean |method − retrain| over forgotten acc, retained acc and every MIA
variant (SalUn's Avg. Gap). Recovery m: forgotten-class test accuracy after the
prompt-recovery attack with m shots (0: data-free); residual m: that minus the same
attack on a model that never saw the class (README, Attacks). RTE: unlearning time
relative to retraining. Unlearn s: wall seconds of one unlearning request (the prompt
model: deleting prompts). FLOPs: one forward of deployment inference per sample, counted
by torch's FlopCounterMode.
Every key behind a cell is in `metrics/summary.json`."""


def render(
    summary: Mapping[str, float],
    k: int,
    header: Sequence[str],
    figures: Mapping[str, Mapping[str, str]],
) -> str:
    """The whole markdown report; ``figures`` maps dataset → title → relative path."""
    parts = ["# Results", "", "Built by `dvc repro` (stage `aggregate`); do not edit.", ""]
    parts += [f"- {line}" for line in header] + ["", LEGEND, ""]
    found = datasets_and_methods(summary)
    if not found:
        parts += ["No metric files found.", ""]
    for dataset, methods in found.items():
        ordered = ordered_methods(methods)
        classes = next(
            (c for m in ordered if (c := lookup(summary, dataset, m, ["num_classes"]))), None
        )
        title = f"## {dataset}" + (f" ({classes[0]:.0f} classes)" if classes else "")
        parts += [title, "", table(summary, dataset, ordered, k), ""]
        parts += transfer_line(summary, dataset)
        for name, path in figures.get(dataset, {}).items():
            parts += [f"![{name}]({path})", ""]
    return "\n".join(parts)
