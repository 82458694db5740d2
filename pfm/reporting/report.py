"""The report a reviewer reads in a minute: ``reports/results.md``, built from the
summary alone.

Layout: a short legend (the cell format and the bold rule; definitions live in
``docs/results-guide.md``), then per dataset:

1. the headline at k = ``aggregate.k``, at most 8 columns: forgotten and retained
   accuracy, the gap to the reference, the primary MIA variant (``aggregate.primary_mia``,
   fixed in advance), the largest recovery residual among the attacks that pass the
   collapse and specificity checks, seconds per request and RTE; the prompt model's rows
   (``pfm``, ``pfm_defended``, its reference ``retrain_prompt``) first, then ``retrain``
   and the plain baselines;
2. generated lines: each method's paired difference to its reference on forgotten and
   retained accuracy and the primary MIA, as equivalent / apart / inconclusive with its
   interval and units (``pfm.reporting.verdicts``); which methods are no-ops;
3. the attacks: every MIA variant with its lines, and the recovery ladder per attacked k
   (``pfm.reporting.recovery``);
4. the cost: seconds, RTE, parameters changed, FLOPs per sample, the no-op flag;
5. the sample protocol, where it ran: forgetting training rows rather than classes, each
   method paired with ``retrain`` on the same rows (``pfm.reporting.samples``);
6. the transfer line, validation accuracy and PI-Prefix scored both ways, figures;

and last the provenance lines (``pfm.reporting.provenance``). A dataset states its
usual n once; a cell shows ``(n=…)`` only where its n differs (``pfm.reporting.table``).
A method with no value in a table is left out of it.
"""

import math
from collections.abc import Mapping, Sequence

from pfm.reporting.aggregate import (
    MIA,
    AggregateParams,
    datasets_and_methods,
    declarations,
    lookup,
    metric_names,
)
from pfm.reporting.recovery import attacks, headline_reader, recovery_tables
from pfm.reporting.samples import sample_section
from pfm.reporting.table import (
    NO_OP,
    Column,
    Reader,
    cell,
    grid,
    metric,
    no_op_flag,
    number,
    ordered_methods,
    rows_of,
    scored,
    usual_n,
)
from pfm.reporting.verdicts import comparisons, verdict_line
from pfm.stats import Estimate

GUIDE = "docs/results-guide.md"  # the definitions behind the legend (a repository file)


def _gap(k: int) -> Reader:
    """Avg. gap to the reference with the number of shared units behind it."""

    def read(summary: Mapping[str, float], dataset: str, method: str) -> Estimate | None:
        gap = lookup(summary, dataset, method, [f"k{k}.avg_gap_to_reference"])
        shared = lookup(summary, dataset, method, [f"k{k}.gap.n"])
        if gap is None:
            return None
        return Estimate(gap.mean, None if shared is None else int(shared.mean))

    return read


def _mia_variants(summary: Mapping[str, float], dataset: str, k: int) -> list[str]:
    return [
        MIA.match(n)[2] for n in metric_names(summary, dataset, MIA) if MIA.match(n)[1] == str(k)
    ]


def headline_columns(
    summary: Mapping[str, float], dataset: str, config: AggregateParams
) -> tuple[list[Column], list[str]]:
    """The headline's columns (method aside, at most 7) and the notes that say what the
    MIA and recovery columns are."""
    k = config.k
    columns = [
        scored("forgotten acc", f"k{k}.forget_acc"),
        scored("retained acc", f"k{k}.retain_acc"),
        Column("gap to ref. ↓", _gap(k)),
    ]
    notes = [_references_note(summary, dataset)]
    if config.primary_mia in _mia_variants(summary, dataset, k):
        columns.append(_mia_column(config.primary_mia, k))
        notes.append(
            f"MIA: {config.primary_mia}, the primary variant fixed in advance "
            "(`aggregate.primary_mia`); every variant is in the membership-inference table."
        )
    if k in attacks(summary, dataset):
        columns.append(Column("max valid residual", headline_reader(k, config.specificity_max)))
        notes.append(
            "Max valid residual: the largest attacked − reference acc among the recovery "
            "attacks that pass the collapse and specificity checks (named under the "
            "recovery table; — where none passed)."
        )
    return columns + _time_columns(k), notes


def _references_note(summary: Mapping[str, float], dataset: str) -> str:
    """Which reference the rows of each family are measured against, as the runs declare."""
    references = {d.family: d.reference for d in declarations(summary, dataset).values()}
    rows = {"prompt": "the prompt model's rows", "plain": "the plain ones"}
    named = [f"`{references[f]}` for {rows.get(f, f'the {f} family')}" for f in references]
    return f"References: {', '.join(sorted(named, key=lambda n: 'prompt' not in n))}."


def _mia_column(variant: str, k: int) -> Column:
    return scored(f"MIA {variant}", f"k{k}.mia.{variant}")


def _time_columns(k: int) -> list[Column]:
    """Seconds per request and RTE: the headline's last columns and the cost table's first."""
    return [
        scored("unlearn s", f"k{k}.cost.unlearn_seconds", "seconds"),
        Column("RTE", metric(f"k{k}.rte"), "ratio"),
    ]


def cost_columns(k: int) -> list[Column]:
    return _time_columns(k) + [
        Column("params changed", metric(f"k{k}.cost.trainable_params"), "count"),
        scored("FLOPs/sample", "cost.flops_per_sample", "count", "eval.cost.flops_per_sample"),
        Column("flag", no_op_flag(f"k{k}.no_op"), "text"),
    ]


def mia_table(
    summary: Mapping[str, float],
    dataset: str,
    methods: Sequence[str],
    config: AggregateParams,
    n: int | None,
) -> list[str]:
    """Every MIA variant at this k, with the verdict lines of those the headline does not
    show; none measured, no table."""
    variants = _mia_variants(summary, dataset, config.k)
    if not variants:
        return []
    columns = [_mia_column(v, config.k) for v in variants]
    lines = [
        verdict_line(
            comparisons(summary, dataset, methods, f"k{config.k}.mia.{v}"),
            f"MIA {v} (k={config.k})",
            config.margin,
        )
        for v in variants
        if v != config.primary_mia  # its line is under the headline
    ]
    return [
        f"### Membership inference, k = {config.k}",
        "",
        grid(summary, dataset, methods, columns, n),
        "",
        *(line for line in lines if line),
        "",
    ]


def finding_lines(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], config: AggregateParams
) -> list[str]:
    """Per headline metric, each method's paired difference to its reference and its
    verdict; then which methods did nothing."""
    k, lines = config.k, []
    for name, title in (
        (f"k{k}.forget_acc", f"Forgotten acc (k={k})"),
        (f"k{k}.retain_acc", f"Retained acc (k={k})"),
        (f"k{k}.mia.{config.primary_mia}", f"MIA {config.primary_mia} (k={k})"),
    ):
        line = verdict_line(comparisons(summary, dataset, methods, name), title, config.margin)
        if line:
            lines.append(line)
    no_ops = [m for m in methods if no_op_flag(f"k{k}.no_op")(summary, dataset, m) == NO_OP]
    if any(lookup(summary, dataset, m, [f"k{k}.no_op"]) is not None for m in methods):
        named = ", ".join(no_ops) if no_ops else "none"
        lines.append(
            f"- No-op (forgotten acc equivalent to before forgetting, or no parameter changed "
            f"and not apart from it): "
            f"{named}."
        )
    return lines + [""] if lines else []


def validation_table(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int, n: int | None = None
) -> list[str]:
    """Validation accuracy (where recipes are chosen) and, for PI-Prefix, the test accuracy
    of its saved artifact (the prefixes transformed once) beside the headline (the
    authors' inference: the transform applied again, i.e. the trained prefixes); columns
    nobody reports are dropped."""
    columns = [
        Column("val forgotten acc", metric(f"k{k}.val.forget_acc")),
        Column("val retained acc", metric(f"k{k}.val.retain_acc")),
        Column("test forgotten, authors' inference", metric(f"k{k}.forget_acc")),
        Column("test forgotten, saved artifact", metric(f"k{k}.artifact.forget_acc")),
        Column("test retained, authors' inference", metric(f"k{k}.retain_acc")),
        Column("test retained, saved artifact", metric(f"k{k}.artifact.retain_acc")),
    ]
    markers = [f"k{k}.val.forget_acc", f"k{k}.artifact.forget_acc"]
    shown = [m for m in methods if lookup(summary, dataset, m, markers) is not None]
    if not shown:
        return []
    artifact = any(lookup(summary, dataset, m, [f"k{k}.artifact.forget_acc"]) for m in shown)
    columns = [c for i, c in enumerate(columns) if artifact or i < 2]
    table = grid(summary, dataset, shown, columns, n)
    return [f"### Validation, and PI-Prefix scored both ways (k = {k})", "", table, ""]


def transfer_line(summary: Mapping[str, float], dataset: str) -> list[str]:
    """One line for a dataset with a ``real`` split (``pfm.evaluate.transfer_metrics``):
    the prompt model trained on synthetic clips, tested on real recordings. Its keys come
    without units, so ``±`` here is the std over the evaluate stage's forget sets."""
    names = {
        "no-forget acc (full_bank)": "eval.real.no_forget.full_bank.acc",
        "forgotten acc (k=1)": "eval.real.k1.forget_acc",
        "retained acc (k=1)": "eval.real.k1.retain_acc",
    }
    values = {title: lookup(summary, dataset, "pfm", [n]) for title, n in names.items()}
    if all(v is None for v in values.values()):
        return []
    classes = lookup(summary, dataset, "pfm", ["eval.real.classes"])
    covered = f", {classes.mean:.0f} classes" if classes else ""
    cells = "; ".join(f"{title} {_spread(v)}" for title, v in values.items())
    return [f"Real recordings (`real` split{covered}), prompt model: {cells}.", ""]


def _spread(value: Estimate | None) -> str:
    """A cell, or for a key without units its mean ± std."""
    if value is None or value.n is not None or math.isnan(value.std):
        return cell(value, "fraction")
    return f"{number(value.mean, 'fraction')} ± {number(value.std, 'fraction')}"


def legend(guide: str, margin: float) -> str:
    return f"""\
How to read: a cell is the mean ± the half-width of its 95 % Student-t interval over n
units (forget sets nested in seeds: the interval is over per-seed means with ≥ 2 seeds,
over one seed's forget sets otherwise); each dataset states its n once and a cell shows
`(n=…)` only where its n differs; n = 1 has no interval. A method is compared with its
reference paired on the same (seed, forget set) units: **equivalent** when the 95 %
interval of method − reference lies inside ±{margin:.3g}, **apart** when it excludes 0,
**inconclusive** otherwise. ↑ higher, ↓ lower, ≈R closer to the row's reference is
better; **bold**: the best non-reference value, only where its interval is apart from
every other row's. `—`: not measured. Every number behind a cell is in
`metrics/summary.json`; gap, RTE, params changed, FLOPs, no-op, the verdicts and the
attacks are defined in the [results guide]({guide})."""


def _has_rows(table: str) -> bool:
    """A grid with a header, its rule and at least one row (a method measured there)."""
    return table.count("\n") > 1


def dataset_section(
    summary: Mapping[str, float],
    dataset: str,
    methods: Sequence[str],
    config: AggregateParams,
    figures: Mapping[str, str],
) -> list[str]:
    """One dataset: headline, findings, attacks, cost, then the rest and its figures."""
    ordered = ordered_methods(summary, dataset, methods)
    classes = next(
        (c for m in ordered if (c := lookup(summary, dataset, m, ["num_classes"]))), None
    )
    title = f"## {dataset}" + (f" ({classes.mean:.0f} classes)" if classes else "")
    k = config.k
    columns, notes = headline_columns(summary, dataset, config)
    n = usual_n(
        v for values in rows_of(summary, dataset, ordered, columns).values() for v in values
    )
    parts = [title, ""]
    if n is not None:
        parts += [f"Cells: n = {n} unless marked `(n=…)`.", ""]
    headline = grid(summary, dataset, ordered, columns, n)
    if _has_rows(headline):
        parts += [f"### Forget-k, k = {k} (test split)", ""]
        parts += [headline, "", " ".join(notes), ""]
    parts += finding_lines(summary, dataset, ordered, config)
    parts += mia_table(summary, dataset, ordered, config, n)
    parts += recovery_tables(summary, dataset, ordered, config.specificity_max, n)
    cost = grid(summary, dataset, ordered, cost_columns(k), n)
    if _has_rows(cost):
        parts += [f"### Cost, k = {k}", "", cost, ""]
    parts += sample_section(summary, dataset, ordered, config.margin)
    parts += transfer_line(summary, dataset)
    parts += validation_table(summary, dataset, ordered, k, n)
    for name, path in figures.items():
        parts += [f"![{name}]({path})", ""]
    return parts


def render(
    summary: Mapping[str, float],
    config: AggregateParams,
    header: Sequence[str],
    figures: Mapping[str, Mapping[str, str]],
    guide: str = f"../{GUIDE}",
    stage_times: Sequence[str] = (),
    recipes: Sequence[str] = (),
) -> str:
    """The whole markdown report; ``header``: the provenance lines, shown last;
    ``figures`` maps dataset → title → relative path; ``guide``: the link to the
    definitions, relative to the report; ``recipes``: which recipes the rows ran and what
    the search found (``pfm.reporting.recipes``); ``stage_times``: the table of where the
    pipeline's time went (``pfm.reporting.stage_times``), shown before the provenance."""
    parts = ["# Results", "", "Built by `dvc repro` (stage `aggregate`); do not edit.", ""]
    parts += [legend(guide, config.margin), ""]
    found = datasets_and_methods(summary)
    if not found:
        parts += ["No metric files found.", ""]
    for dataset, methods in found.items():
        parts += dataset_section(summary, dataset, methods, config, figures.get(dataset, {}))
    if recipes:
        parts += ["## Recipes: hand and tuned", "", *recipes, ""]
    if stage_times:
        parts += ["## Where the time went", "", *stage_times, ""]
    if header:
        parts += ["## Provenance", "", *(f"- {line}" for line in header), ""]
    return "\n".join(parts)
