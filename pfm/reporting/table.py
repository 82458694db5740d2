"""Cells and grids of the report: how one value reads, which value is bold, which rows
show and in what order.

A cell is ``mean ± half-width`` (the 95 % Student-t interval of the nested estimate over
the value's n units, ``pfm.stats``), ``mean`` alone where n = 1, ``—`` when not measured. The
table's usual n is stated once beside it, so a cell adds ``(n=N)`` only where its n
differs. Bold marks a column's best among the methods other than the references, and
only a win: its interval must not overlap any other row's (a tie or an n = 1 value never
wins).
"""

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from tabulate import tabulate

from pfm.reporting.aggregate import Declared, declarations, lookup
from pfm.stats import Direction, Estimate, metric_of

MISSING = "—"
NO_OP = "no-op: changed nothing"  # the flag of a method whose call changed nothing

Reader = Callable[[Mapping[str, float], str, str], "Estimate | str | None"]


@dataclass(frozen=True)
class Column:
    title: str
    read: Reader  # (summary, dataset, method) → the cell's value
    kind: str = "fraction"  # fraction | seconds | count | ratio | number | text
    best: Direction | None = None  # which value wins bold; None: no bold in this column


def metric(*names: str) -> Reader:
    """Reads the first of ``names`` a method reports."""
    return lambda summary, dataset, method: lookup(summary, dataset, method, names)


def no_op_flag(name: str) -> Reader:
    """Reads ``NO_OP`` where the summary's no-op key ``name`` is set, nothing elsewhere."""

    def read(summary: Mapping[str, float], dataset: str, method: str) -> str | None:
        no_op = lookup(summary, dataset, method, [name])
        return NO_OP if no_op is not None and no_op.mean == 1 else None

    return read


def scored(title: str, name: str, kind: str = "fraction", *fallbacks: str) -> Column:
    """A column of a declared metric (``pfm.stats.METRICS``): its arrow and its bold rule
    come from the metric's direction, declared once beside its name."""
    found = metric_of(name)
    if found is None:
        raise KeyError(f"{name!r} is no declared metric (pfm.stats.METRICS)")
    direction = found.direction
    return Column(f"{title} {direction.value}", metric(name, *fallbacks), kind, direction)


def is_reference(summary: Mapping[str, float], dataset: str, method: str) -> bool:
    """Whether ``method`` declares itself its own reference (``retrain``, ``retrain_prompt``)."""
    return f"{dataset}.{method}.reference.{method}" in summary


def label(summary: Mapping[str, float], dataset: str, method: str) -> str:
    return f"{method} (reference)" if is_reference(summary, dataset, method) else method


def ordered_methods(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str]
) -> list[str]:
    """The prompt family first (``pfm``, ``pfm_defended``, the other methods that declare
    it, its reference), then the plain family's reference and its methods alphabetically,
    then any run without a declaration (a training run)."""
    declared = declarations(summary, dataset)
    references = [m for m in methods if is_reference(summary, dataset, m)]
    leading = [m for m in ("pfm", "pfm_defended") if m in methods]

    def members(family: str) -> list[str]:
        return sorted(
            m for m in methods
            if m in declared and declared[m].family == family and m not in leading + references
        )  # fmt: skip

    def reference(family: str) -> list[str]:
        return sorted(m for m in references if declared[m].family == family)

    ordered = leading + members("prompt") + reference("prompt") + reference("plain")
    ordered += members("plain")
    return ordered + sorted(m for m in methods if m not in ordered)


def number(value: float, kind: str) -> str:
    if math.isnan(value):
        return "nan"
    if kind == "fraction":
        return f"{value:.3f}"
    if kind == "count":
        for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return f"{value:.3g}"
    return f"{value:.3g}"  # seconds, ratio, number


def cell(value: Estimate | str | None, kind: str, n: int | None = None) -> str:
    """``mean ± half-width (n=N)``: no ``±`` without an interval (n = 1); ``(n=N)``
    only where N differs from the table's stated ``n``, never for a key without units."""
    if value is None:
        return MISSING if kind != "text" else ""
    if isinstance(value, str):
        return value
    text = number(value.mean, kind)
    if value.has_interval:
        text += f" ± {number(value.ci95, kind)}"
    return text if value.n is None or value.n == n else f"{text} (n={value.n})"


def usual_n(values: Iterable[Estimate | str | None]) -> int | None:
    """The most common n among ``values`` (the larger on a tie), stated once per table;
    ``None`` when no value has units."""
    counts = Counter(v.n for v in values if isinstance(v, Estimate) and v.n is not None)
    if not counts:
        return None
    return max(counts, key=lambda n: (counts[n], n))


def _uncertainty(value: Estimate, exact: bool) -> float:
    """Half-width for ranking: an n = 1 value is infinitely uncertain, and so is a key
    without units unless it is an exact count (FLOPs)."""
    if value.n is None:
        return 0.0 if exact else math.inf
    return value.ci95 if value.has_interval else math.inf


def _score(
    value: Estimate, reference: Estimate | None, column: Column
) -> tuple[float, float] | None:
    """(score, its uncertainty), lower is better; a distance to the reference carries
    the reference's uncertainty too."""
    if math.isnan(value.mean):
        return None
    exact = column.kind == "count"
    if column.best is Direction.MATCH:
        if reference is None or math.isnan(reference.mean):
            return None
        spread = _uncertainty(value, exact) + _uncertainty(reference, exact)
        return abs(value.mean - reference.mean), spread
    higher = column.best is Direction.HIGHER
    return (-value.mean if higher else value.mean), _uncertainty(value, exact)


def winner(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], column: Column
) -> str | None:
    """The column's best method, when its interval is apart from every other row's
    (the runner-up's by mean is not enough: a row with a wider interval may reach it).
    Equal scores with no spread are a tie: ``best + 0 < score - 0`` fails."""
    if column.best is None:
        return None
    scores = []
    declared: dict[str, Declared] = declarations(summary, dataset)
    for method in methods:
        value = column.read(summary, dataset, method)
        if is_reference(summary, dataset, method) or not isinstance(value, Estimate):
            continue
        found = declared.get(method)
        reference = None if found is None else column.read(summary, dataset, found.reference)
        score = _score(value, reference if isinstance(reference, Estimate) else None, column)
        if score is not None:
            scores.append((score, method))
    if len(scores) < 2:
        return None
    ((best, best_half), method), *others = sorted(scores)
    apart = all(best + best_half < score - half for (score, half), _ in others)
    return method if apart else None


def rows_of(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], columns: Sequence[Column]
) -> dict[str, list[Estimate | str | None]]:
    """method → its values, leaving out a method without any value (text aside)."""
    rows = {}
    for method in methods:
        values = [c.read(summary, dataset, method) for c in columns]
        if any(v is not None and c.kind != "text" for v, c in zip(values, columns, strict=True)):
            rows[method] = values
    return rows


def grid(
    summary: Mapping[str, float],
    dataset: str,
    methods: Sequence[str],
    columns: Sequence[Column],
    n: int | None = None,
) -> str:
    """Methods × columns as a GitHub table; rows without any value are left out, and a
    text column nobody fills is dropped. ``n``: the table's stated n."""
    rows = rows_of(summary, dataset, methods, columns)
    keep = [
        i
        for i, c in enumerate(columns)
        if c.kind != "text" or any(values[i] for values in rows.values())
    ]
    columns = [columns[i] for i in keep]
    winners = {c.title: winner(summary, dataset, list(rows), c) for c in columns}
    lines = []
    for method, values in rows.items():
        cells = [cell(values[i], c.kind, n) for i, c in zip(keep, columns, strict=True)]
        cells = [
            f"**{text}**" if winners[c.title] == method else text
            for text, c in zip(cells, columns, strict=True)
        ]
        lines.append([label(summary, dataset, method), *cells])
    return tabulate(
        lines,
        headers=["method", *(c.title for c in columns)],
        tablefmt="github",
        disable_numparse=True,
    )
