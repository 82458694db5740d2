"""The report a reviewer reads in a minute: ``reports/results.md``, built from the
summary alone.

Layout: a short legend (the cell format and the bold rule; definitions live in
``docs/results-guide.md``), then per dataset:

1. the headline at k = ``aggregate.k``, at most 8 columns: forgotten and retained
   accuracy, the gap to the reference, one MIA variant (the one apart from its
   reference for the most methods), the equal-capability recovery residual, seconds per
   request and RTE; the prompt model's rows (``pfm``, ``pfm_defended``, its reference
   ``retrain_prompt``) first, then ``retrain`` and the plain baselines;
2. generated lines: which methods are within their reference's interval and which are
   apart, on forgotten and on retained accuracy; which methods are no-ops;
3. the attacks: every MIA variant, and the recovery attack per attacked k (method ×
   capability × shots);
4. the cost: seconds, RTE, parameters changed, FLOPs per sample, the no-op flag;
5. the transfer line, validation accuracy and PI-Prefix before its transform, figures;

and last the provenance lines (``pfm.reporting.provenance``). A dataset states its
usual n once; a cell shows ``(n=…)`` only where its n differs (``pfm.reporting.table``).
A method with no value in a table is left out of it.
"""

import math
from collections.abc import Mapping, Sequence

from tabulate import tabulate

from pfm.reporting.aggregate import (
    MIA,
    RECOVERY,
    REFERENCES,
    Estimate,
    datasets_and_methods,
    family,
    lookup,
    metric_names,
    reference_of,
)
from pfm.reporting.table import (
    MISSING,
    Column,
    Reader,
    cell,
    grid,
    is_reference,
    label,
    metric,
    number,
    ordered_methods,
    rows_of,
    usual_n,
)

GUIDE = "docs/results-guide.md"  # the definitions behind the legend (a repository file)
NO_OP = "no-op: changed nothing"
CAPABILITIES = ("prompt", "prompt_head", "head", "head_lora")  # what the attacker may train
# The headline's recovery cell: per family the capabilities that match what the method
# itself trains (the prompt model: prompts and head; a plain classifier: head and a
# LoRA), the first the dataset was attacked with, at one shot per forgotten class.
HEADLINE_RECOVERY = {"prompt": ("prompt_head", "prompt"), "plain": ("head_lora", "head")}
HEADLINE_SHOTS = 1
RECOVERY_FIELDS = {  # field → (column title, kind)
    "acc": ("attacked acc", "fraction"),
    "reference_acc": ("reference acc", "fraction"),
    "residual": ("residual", "fraction"),
    "retain_to_recovered": ("retain→recovered", "fraction"),
    "noise_to_recovered": ("noise→recovered", "fraction"),
    "ood_to_recovered": ("OOD→recovered", "fraction"),
    "best_step": ("best step", "number"),
    "relearn_steps": ("relearn steps", "number"),
}


def _gap(k: int) -> Reader:
    """Avg. gap to the reference with the number of shared units behind it."""

    def read(summary: Mapping[str, float], dataset: str, method: str) -> Estimate | None:
        gap = lookup(summary, dataset, method, [f"k{k}.avg_gap_to_reference"])
        shared = lookup(summary, dataset, method, [f"k{k}.gap.n"])
        if gap is None:
            return None
        return Estimate(gap.mean, None if shared is None else int(shared.mean))

    return read


def _flag(k: int) -> Reader:
    def read(summary: Mapping[str, float], dataset: str, method: str) -> str | None:
        no_op = lookup(summary, dataset, method, [f"k{k}.no_op"])
        return NO_OP if no_op is not None and no_op.mean == 1 else None

    return read


def _mia_variants(summary: Mapping[str, float], dataset: str, k: int) -> list[str]:
    return [
        MIA.match(n)[2] for n in metric_names(summary, dataset, MIA) if MIA.match(n)[1] == str(k)
    ]


def separating_mia(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int
) -> tuple[str | None, dict[str, int], int]:
    """The MIA variant apart from the reference (intervals do not overlap) for the most
    methods, the first in natural order on a tie; every variant's count of such methods,
    and how many non-reference methods were attacked at all."""
    counts, attacked = {}, set()
    for variant in _mia_variants(summary, dataset, k):
        name = f"k{k}.mia.{variant}.overlaps_reference"
        found = {m: lookup(summary, dataset, m, [name]) for m in methods if not is_reference(m)}
        attacked |= {m for m, f in found.items() if f is not None}
        counts[variant] = sum(f is not None and f.mean == 0 for f in found.values())
    if not counts:
        return None, {}, 0
    return max(counts, key=lambda v: counts[v]), counts, len(attacked)


def _recovery_keys(summary: Mapping[str, float], dataset: str) -> dict[int, list[tuple[str, int]]]:
    """Attacked k → its (capability, m) pairs, capabilities weakest first."""
    found: dict[int, set[tuple[str, int]]] = {}
    for name in metric_names(summary, dataset, RECOVERY):
        match = RECOVERY.match(name)
        found.setdefault(int(match[2]), set()).add((match[1], int(match[3])))
    order = {c: i for i, c in enumerate(CAPABILITIES)}
    return {
        k: sorted(pairs, key=lambda p: (order.get(p[0], len(order)), p[0], p[1]))
        for k, pairs in sorted(found.items())
    }


def recovery_choice(
    summary: Mapping[str, float], dataset: str, k: int
) -> dict[str, tuple[str, int]]:
    """family → the (capability, m) of its headline recovery residual at this k: the
    first of ``HEADLINE_RECOVERY`` attacked, at ``HEADLINE_SHOTS`` shots where it ran,
    else its fewest shots above 0."""
    pairs = _recovery_keys(summary, dataset).get(k, [])
    chosen = {}
    for kind, capabilities in HEADLINE_RECOVERY.items():
        for capability in capabilities:
            shots = sorted(m for c, m in pairs if c == capability)
            if shots:
                pick = (
                    HEADLINE_SHOTS
                    if HEADLINE_SHOTS in shots
                    else next((m for m in shots if m > 0), shots[0])
                )
                chosen[kind] = (capability, pick)
                break
    return chosen


def _residual(choice: Mapping[str, tuple[str, int]], k: int) -> Reader:
    def read(summary: Mapping[str, float], dataset: str, method: str) -> Estimate | None:
        if family(method) not in choice:
            return None
        capability, m = choice[family(method)]
        return lookup(summary, dataset, method, [f"recovery.{capability}.k{k}.m{m}.residual"])

    return read


def headline_columns(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int
) -> tuple[list[Column], list[str]]:
    """The headline's columns (method aside, at most 7) and the notes that name the
    MIA variant and the recovery cell they show."""
    variant, counts, attacked = separating_mia(summary, dataset, methods, k)
    choice = recovery_choice(summary, dataset, k)
    columns = [
        Column("forgotten acc ≈R", metric(f"k{k}.forget_acc"), best="reference"),
        Column("retained acc ↑", metric(f"k{k}.retain_acc"), best="max"),
        Column("gap to ref. ↓", _gap(k)),
    ]
    notes = [
        f"References: `{REFERENCES['prompt']}` for the prompt model's rows, "
        f"`{REFERENCES['plain']}` for the plain ones."
    ]
    if variant is not None:
        columns.append(_mia_column(variant, k))
        others = ", ".join(f"{v} {c}" for v, c in counts.items() if v != variant)
        notes.append(
            f"MIA: {variant}, the variant apart from the reference for the most methods "
            f"({counts[variant]} of {attacked}" + (f"; {others}" if others else "") + ")."
        )
    if choice:
        columns.append(Column("recovery residual", _residual(choice, k)))
        picks = " and ".join(f"{c} m = {m} for {kind}" for kind, (c, m) in choice.items())
        notes.append(
            "Recovery residual: attacked − reference acc under the same attack "
            f"({picks} models; 0: nothing left to find)."
        )
    return columns + _time_columns(k), notes


def _mia_column(variant: str, k: int) -> Column:
    return Column(f"MIA {variant} ≈R", metric(f"k{k}.mia.{variant}"), best="reference")


def _time_columns(k: int) -> list[Column]:
    """Seconds per request and RTE: the headline's last columns and the cost table's first."""
    return [
        Column("unlearn s ↓", metric(f"k{k}.cost.unlearn_seconds"), "seconds", best="min"),
        Column("RTE", metric(f"k{k}.rte"), "ratio"),
    ]


def cost_columns(k: int) -> list[Column]:
    return _time_columns(k) + [
        Column("params changed", metric(f"k{k}.cost.trainable_params"), "count"),
        Column(
            "FLOPs/sample ↓",
            metric("cost.flops_per_sample", "eval.cost.flops_per_sample"),
            "count",
            best="min",
        ),
        Column("flag", _flag(k), "text"),
    ]


def mia_table(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int, n: int | None
) -> list[str]:
    """Every MIA variant at this k; none measured, no table."""
    columns = [_mia_column(v, k) for v in _mia_variants(summary, dataset, k)]
    if not columns:
        return []
    return [
        f"### Membership inference, k = {k}",
        "",
        grid(summary, dataset, methods, columns, n),
        "",
    ]


def _within_or_apart(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], name: str
) -> dict[str, list[str]]:
    """verdict → methods, from the summary's ``overlaps_reference`` keys; an apart
    method with its mean and its reference's."""
    verdicts: dict[str, list[str]] = {"within": [], "apart": [], "undetermined": []}
    for method in methods:
        found = lookup(summary, dataset, method, [f"{name}.overlaps_reference"])
        if found is None or is_reference(method):
            continue
        if math.isnan(found.mean):
            verdicts["undetermined"].append(method)
        elif found.mean:
            verdicts["within"].append(method)
        else:
            ours = lookup(summary, dataset, method, [name])
            theirs = lookup(summary, dataset, reference_of(method), [name])
            means = " vs ".join(
                MISSING if v is None else number(v.mean, "fraction") for v in (ours, theirs)
            )
            verdicts["apart"].append(f"{method} {means}")
    return verdicts


def finding_lines(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int
) -> list[str]:
    """Per accuracy, which methods are within their reference's interval (no finding)
    and which are apart from it; then which methods did nothing."""
    lines = []
    for name, title in (
        (f"k{k}.forget_acc", "Forgotten acc"),
        (f"k{k}.retain_acc", "Retained acc"),
    ):
        verdicts = _within_or_apart(summary, dataset, methods, name)
        if not any(verdicts.values()):
            continue
        text = (
            f"- {title} (k={k}) within the reference's interval: "
            f"{', '.join(verdicts['within']) or 'none'}; apart from it: "
            f"{', '.join(verdicts['apart']) or 'none'}"
        )
        if verdicts["undetermined"]:
            text += f"; undetermined (n = 1 both sides): {', '.join(verdicts['undetermined'])}"
        lines.append(text + ".")
    no_ops = [m for m in methods if _flag(k)(summary, dataset, m) == NO_OP]
    if any(lookup(summary, dataset, m, [f"k{k}.no_op"]) is not None for m in methods):
        named = ", ".join(no_ops) if no_ops else "none"
        lines.append(
            f"- No-op (changed no parameter; forgotten acc as before forgetting): {named}."
        )
    return lines + [""] if lines else []


def recovery_tables(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], n: int | None = None
) -> list[str]:
    """One table per attacked k: method × capability × shots m; its usual n is stated
    under the heading where it differs from the dataset's ``n``."""
    parts = []
    for k, pairs in _recovery_keys(summary, dataset).items():
        found = []
        for method in methods:
            for capability, m in pairs:
                head = f"recovery.{capability}.k{k}.m{m}"
                values = {
                    f: lookup(summary, dataset, method, [f"{head}.{f}"]) for f in RECOVERY_FIELDS
                }
                if any(v is not None for v in values.values()):
                    found.append((method, capability, m, values))
        table_n = usual_n(v for *_, values in found for v in values.values())
        rows = [
            [
                label(method),
                capability,
                m,
                *(cell(values[f], kind, table_n) for f, (_, kind) in RECOVERY_FIELDS.items()),
            ]
            for method, capability, m, values in found
        ]
        table = tabulate(
            rows,
            headers=["method", "capability", "m", *(t for t, _ in RECOVERY_FIELDS.values())],
            tablefmt="github",
            disable_numparse=True,
        )
        legend = RECOVERY_LEGEND
        if table_n is not None and table_n != n:
            legend += f" Cells here: n = {table_n} unless marked."
        parts += [f"### Recovery attack, k = {k}", "", legend, "", table, ""]
    return parts


def validation_table(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int, n: int | None = None
) -> list[str]:
    """Validation accuracy (where recipes are chosen) and PI-Prefix's test accuracy
    before and after its pseudo-inverse step; columns nobody reports are dropped."""
    columns = [
        Column("val forgotten acc", metric(f"k{k}.val.forget_acc")),
        Column("val retained acc", metric(f"k{k}.val.retain_acc")),
        Column("test forgotten, before transform", metric(f"k{k}.before_transform.forget_acc")),
        Column("test forgotten, after", metric(f"k{k}.forget_acc")),
        Column("test retained, before transform", metric(f"k{k}.before_transform.retain_acc")),
        Column("test retained, after", metric(f"k{k}.retain_acc")),
    ]
    markers = [f"k{k}.val.forget_acc", f"k{k}.before_transform.forget_acc"]
    shown = [m for m in methods if lookup(summary, dataset, m, markers) is not None]
    if not shown:
        return []
    before = any(lookup(summary, dataset, m, [f"k{k}.before_transform.forget_acc"]) for m in shown)
    columns = [c for i, c in enumerate(columns) if before or i < 2]
    table = grid(summary, dataset, shown, columns, n)
    return [f"### Validation, and PI-Prefix before its transform (k = {k})", "", table, ""]


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


def legend(guide: str) -> str:
    return f"""\
How to read: a cell is the mean ± the half-width of its 95 % Student-t interval over n
independent units (one forget set of one seed); each dataset states its n once and a cell
shows `(n=…)` only where its n differs; n = 1 has no interval. Overlapping intervals are
no difference. ↑ higher, ↓ lower, ≈R closer to the row's reference is better; **bold**:
the best non-reference value, only where its interval is apart from every other row's (a
tie is never bold). `—`: not measured. Every number behind a cell is in
`metrics/summary.json`; gap, RTE, params changed, FLOPs, no-op and the attacks are
defined in the [results guide]({guide})."""


RECOVERY_LEGEND = """\
The attacker holds the unlearned model and m labelled shots per forgotten class (m = 0:
data-free) and trains what its capability allows; residual = attacked − reference acc
(the same attack on the row's never-seen reference)."""


def dataset_section(
    summary: Mapping[str, float],
    dataset: str,
    methods: Sequence[str],
    k: int,
    figures: Mapping[str, str],
) -> list[str]:
    """One dataset: headline, findings, attacks, cost, then the rest and its figures."""
    ordered = ordered_methods(methods)
    classes = next(
        (c for m in ordered if (c := lookup(summary, dataset, m, ["num_classes"]))), None
    )
    title = f"## {dataset}" + (f" ({classes.mean:.0f} classes)" if classes else "")
    columns, notes = headline_columns(summary, dataset, ordered, k)
    n = usual_n(
        v for values in rows_of(summary, dataset, ordered, columns).values() for v in values
    )
    parts = [title, ""]
    if n is not None:
        parts += [f"Cells: n = {n} unless marked `(n=…)`.", ""]
    parts += [f"### Forget-k, k = {k} (test split)", ""]
    parts += [grid(summary, dataset, ordered, columns, n), "", " ".join(notes), ""]
    parts += finding_lines(summary, dataset, ordered, k)
    parts += mia_table(summary, dataset, ordered, k, n)
    parts += recovery_tables(summary, dataset, ordered, n)
    cost = grid(summary, dataset, ordered, cost_columns(k), n)
    if cost.count("\n") > 1:  # a header and its rule, then at least one row
        parts += [f"### Cost, k = {k}", "", cost, ""]
    parts += transfer_line(summary, dataset)
    parts += validation_table(summary, dataset, ordered, k, n)
    for name, path in figures.items():
        parts += [f"![{name}]({path})", ""]
    return parts


def render(
    summary: Mapping[str, float],
    k: int,
    header: Sequence[str],
    figures: Mapping[str, Mapping[str, str]],
    guide: str = f"../{GUIDE}",
) -> str:
    """The whole markdown report; ``header``: the provenance lines, shown last;
    ``figures`` maps dataset → title → relative path; ``guide``: the link to the
    definitions, relative to the report."""
    parts = ["# Results", "", "Built by `dvc repro` (stage `aggregate`); do not edit.", ""]
    parts += [legend(guide), ""]
    found = datasets_and_methods(summary)
    if not found:
        parts += ["No metric files found.", ""]
    for dataset, methods in found.items():
        parts += dataset_section(summary, dataset, methods, k, figures.get(dataset, {}))
    if header:
        parts += ["## Provenance", "", *(f"- {line}" for line in header), ""]
    return "\n".join(parts)
