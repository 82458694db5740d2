"""The report a reviewer reads: ``reports/results.md``, built from the summary alone.

Layout: a header (profile, backbone, epochs, datasets, seeds, the commit; per dataset,
stage and k the draws actually used, read from the units, never from a params cap; the
interval rule), a legend, then per dataset:

1. the forget-k table at k = ``aggregate.k``: the prompt model's rows (``pfm``,
   ``pfm_defended``, its reference ``retrain_prompt``), then ``retrain`` and the plain
   baselines; forgotten and retained accuracy, the row's reference and the gap to it,
   every MIA variant, seconds, RTE and changed parameters at this k, FLOPs, a no-op flag;
2. generated lines: whose forgotten accuracy is (or is not) apart from its reference's,
   and which methods are no-ops;
3. the recovery attack per attacked k: method × capability × shots;
4. validation accuracy per method and PI-Prefix's test accuracy before its transform;
5. the figures.

A cell is ``mean ± half-width (n=N)`` (95 % Student-t interval over N units,
``pfm.aggregate``), ``mean (n=1)`` with no interval, a bare mean for a key without
units, ``—`` when not measured. A method with no cell in a table is left out of it.
Bold marks a column's best among the methods other than the references, and only a
win: its interval must not overlap any other row's (a tie or an n = 1 value never wins).
"""

import math
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pfm.aggregate import (
    MIA,
    RECOVERY,
    REFERENCES,
    AggregateParams,
    Estimate,
    datasets_and_methods,
    draws_of,
    lookup,
    metric_names,
    reference_of,
)

MISSING = "—"
NO_OP = "no-op: changed nothing"
CAPABILITIES = ("prompt", "prompt_head", "head", "head_lora")  # what the attacker may train
STAGES = {"unlearn": "unlearn", "eval": "evaluate", "mia": "MIA", "recovery": "recovery"}
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

Reader = Callable[[Mapping[str, float], str, str], "Estimate | str | None"]


@dataclass(frozen=True)
class Column:
    title: str
    read: Reader  # (summary, dataset, method) → the cell's value
    kind: str = "fraction"  # fraction | seconds | count | ratio | number | text
    best: str | None = None  # "max" | "min" | "reference" (closest to the row's reference)


def metric(*names: str) -> Reader:
    """Reads the first of ``names`` a method reports."""
    return lambda summary, dataset, method: lookup(summary, dataset, method, names)


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


def _reference(summary: Mapping[str, float], dataset: str, method: str) -> str:
    return reference_of(method)


def k_columns(summary: Mapping[str, float], dataset: str, k: int) -> list[Column]:
    """The forget-k table's columns; the MIA variants are whatever this dataset holds."""
    mia = [
        Column(f"MIA {MIA.match(name)[2]} (k={k}) ≈R", metric(name), best="reference")
        for name in metric_names(summary, dataset, MIA)
        if int(MIA.match(name)[1]) == k
    ]
    return [
        Column(f"forgotten acc (k={k}) ≈R", metric(f"k{k}.forget_acc"), best="reference"),
        Column(f"retained acc (k={k}) ↑", metric(f"k{k}.retain_acc"), best="max"),
        Column("reference", _reference, "text"),
        Column(f"gap to reference (k={k}) ↓", _gap(k)),
        *mia,
        Column(f"unlearn s (k={k}) ↓", metric(f"k{k}.cost.unlearn_seconds"), "seconds", best="min"),
        Column(f"RTE (k={k})", metric(f"k{k}.rte"), "ratio"),
        Column(f"params changed (k={k})", metric(f"k{k}.cost.trainable_params"), "count"),
        Column(
            "FLOPs/sample ↓",
            metric("cost.flops_per_sample", "eval.cost.flops_per_sample"),
            "count",
            best="min",
        ),
        Column("flag", _flag(k), "text"),
    ]


def is_reference(method: str) -> bool:
    return method in REFERENCES.values()


def ordered_methods(methods: Sequence[str]) -> list[str]:
    """The prompt model's family first (``pfm``, ``pfm_defended``, other variants, its
    reference), then ``retrain`` and the plain baselines alphabetically."""
    prompt_ref, plain_ref = REFERENCES["prompt"], REFERENCES["plain"]
    leading = [m for m in ("pfm", "pfm_defended") if m in methods]
    variants = sorted(
        m for m in methods if reference_of(m) == prompt_ref and m not in leading and m != prompt_ref
    )
    plain = sorted(m for m in methods if reference_of(m) == plain_ref and m != plain_ref)
    refs = [
        [prompt_ref] if prompt_ref in methods else [],
        [plain_ref] if plain_ref in methods else [],
    ]
    return leading + variants + refs[0] + refs[1] + plain


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


def cell(value: Estimate | str | None, kind: str) -> str:
    """``mean ± half-width (n=N)``; no ``±`` without an interval (n = 1), no ``(n=…)``
    for a key without units."""
    if value is None:
        return MISSING if kind != "text" else ""
    if isinstance(value, str):
        return value
    text = number(value.mean, kind)
    if value.has_interval:
        text += f" ± {number(value.ci95, kind)}"
    return text if value.n is None else f"{text} (n={value.n})"


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
    if column.best == "reference":
        if reference is None or math.isnan(reference.mean):
            return None
        spread = _uncertainty(value, exact) + _uncertainty(reference, exact)
        return abs(value.mean - reference.mean), spread
    return (-value.mean if column.best == "max" else value.mean), _uncertainty(value, exact)


def winner(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], column: Column
) -> str | None:
    """The column's best method, when its interval is apart from every other row's
    (the runner-up's by mean is not enough: a row with a wider interval may reach it)."""
    scores = []
    for method in methods:
        value = column.read(summary, dataset, method)
        if is_reference(method) or not isinstance(value, Estimate) or column.best is None:
            continue
        reference = column.read(summary, dataset, reference_of(method))
        score = _score(value, reference if isinstance(reference, Estimate) else None, column)
        if score is not None:
            scores.append((score, method))
    if len(scores) < 2:
        return None
    ((best, best_half), method), *others = sorted(scores)
    apart = all(best + best_half < score - half for (score, half), _ in others)
    return method if apart else None


def _label(method: str) -> str:
    return f"{method} (reference)" if is_reference(method) else method


def grid(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], columns: Sequence[Column]
) -> str:
    """Methods × columns as a GitHub table; rows without any value are left out."""
    winners = {c.title: winner(summary, dataset, methods, c) for c in columns}
    rows = []
    for method in methods:
        values = [c.read(summary, dataset, method) for c in columns]
        if all(v is None or c.kind == "text" for v, c in zip(values, columns, strict=True)):
            continue
        cells = [cell(v, c.kind) for v, c in zip(values, columns, strict=True)]
        cells = [
            f"**{text}**" if winners[c.title] == method else text
            for text, c in zip(cells, columns, strict=True)
        ]
        rows.append([_label(method), *cells])
    return tabulate(
        rows,
        headers=["method", *(c.title for c in columns)],
        tablefmt="github",
        disable_numparse=True,
    )


def _versus(summary: Mapping[str, float], dataset: str, method: str, name: str) -> str:
    ours = lookup(summary, dataset, method, [name])
    theirs = lookup(summary, dataset, reference_of(method), [name])
    return f"{method} {cell(ours, 'fraction')} vs {reference_of(method)} {cell(theirs, 'fraction')}"


def finding_lines(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int
) -> list[str]:
    """Which forgotten accuracies differ from the reference's, which cannot be told
    apart, and which methods did nothing."""
    name = f"k{k}.forget_acc"
    verdicts: dict[str, list[str]] = {"apart": [], "overlap": [], "unknown": []}
    for method in methods:
        found = lookup(summary, dataset, method, [f"{name}.overlaps_reference"])
        if found is None or is_reference(method):
            continue
        verdict = "unknown" if math.isnan(found.mean) else "overlap" if found.mean else "apart"
        verdicts[verdict].append(_versus(summary, dataset, method, name))
    titles = {
        "overlap": "within the reference's uncertainty (intervals overlap: not a finding)",
        "apart": "apart from the reference's (intervals do not overlap; n = 1 is a point)",
        "unknown": "undetermined (n = 1 on both sides)",
    }
    lines = [
        f"- Forgotten acc (k={k}) {titles[v]}: {'; '.join(found)}."
        for v, found in verdicts.items()
        if found
    ]
    no_ops = [m for m in methods if _flag(k)(summary, dataset, m) == NO_OP]
    if any(lookup(summary, dataset, m, [f"k{k}.no_op"]) is not None for m in methods):
        named = ", ".join(no_ops) if no_ops else "none"
        lines.append(
            f"- No-op (changed no parameter; forgotten acc as before forgetting): {named}."
        )
    return lines + [""] if lines else []


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


def recovery_tables(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str]
) -> list[str]:
    """One table per attacked k: method × capability × shots m."""
    parts = []
    for k, pairs in _recovery_keys(summary, dataset).items():
        rows = []
        for method in methods:
            for capability, m in pairs:
                head = f"recovery.{capability}.k{k}.m{m}"
                values = {
                    f: lookup(summary, dataset, method, [f"{head}.{f}"]) for f in RECOVERY_FIELDS
                }
                if all(v is None for v in values.values()):
                    continue
                cells = [cell(values[f], kind) for f, (_, kind) in RECOVERY_FIELDS.items()]
                rows.append([_label(method), capability, m, *cells])
        titles = [title for title, _ in RECOVERY_FIELDS.values()]
        table = tabulate(
            rows,
            headers=["method", "capability", "m", *titles],
            tablefmt="github",
            disable_numparse=True,
        )
        parts += [f"### Recovery attack, k = {k}", "", RECOVERY_LEGEND, "", table, ""]
    return parts


def validation_table(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], k: int
) -> list[str]:
    """Validation accuracy (where recipes are chosen) and PI-Prefix's test accuracy
    before and after its pseudo-inverse step; columns nobody reports are dropped."""
    columns = [
        Column(f"val forgotten acc (k={k})", metric(f"k{k}.val.forget_acc")),
        Column(f"val retained acc (k={k})", metric(f"k{k}.val.retain_acc")),
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
    table = grid(summary, dataset, shown, columns)
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


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _units(n: int, seeds: int) -> str:
    """ "5 forget sets × 1 seed (n = 5)"; "7 forget sets over 2 seeds (n = 7)" when the
    seeds used different numbers of sets."""
    if n % seeds:
        return f"{_plural(n, 'forget set')} over {_plural(seeds, 'seed')} (n = {n})"
    return f"{_plural(n // seeds, 'forget set')} × {_plural(seeds, 'seed')} (n = {n})"


def _draw_line(used: Mapping[str, tuple[int, int]]) -> str:
    """Methods → their draws in one clause: the common case once, the exceptions named."""
    counts = Counter(used.values())
    common, shared_by = counts.most_common(1)[0]
    if shared_by < 2:
        return "; ".join(f"{m}: {_units(*d)}" for m, d in used.items())
    others = [f"{m}: {_units(*d)}" for m, d in used.items() if d != common]
    return "; ".join([f"{_units(*common)} per method", *others])


def _stage_order(stage_k: tuple[str, int]) -> tuple[int, str, int]:
    """unlearn, evaluate, MIA, recovery, then any other stage; k ascending."""
    stage, k = stage_k
    order = list(STAGES)
    return (order.index(stage) if stage in order else len(order)), stage, k


def draw_lines(summary: Mapping[str, float]) -> list[str]:
    """Per dataset, stage and k: the units each method actually used."""
    lines = []
    for dataset, methods in datasets_and_methods(summary).items():
        by_stage: dict[tuple[str, int], dict[str, tuple[int, int]]] = {}
        for method in ordered_methods(methods):
            for (stage, k), used in draws_of(summary, dataset, method).items():
                by_stage.setdefault((stage, k), {})[method] = used
        for stage, k in sorted(by_stage, key=_stage_order):
            what = STAGES.get(stage, stage)
            lines.append(f"{dataset}, {what}, k = {k}: {_draw_line(by_stage[stage, k])}")
    return lines or ["no units in the metric files: cells show means without n or interval"]


INTERVALS = (
    "Intervals: 95% Student-t CI of the mean over n independent (seed, forget set) units; "
    "no interval where n = 1"
)


def provenance(
    params: Mapping[str, Any],
    aggregate: AggregateParams,
    commit: str,
    summary: Mapping[str, float],
) -> list[str]:
    """Header lines: what produced the numbers (params) and what they rest on (units)."""
    model = params["model"]
    return [
        f"profile: {aggregate.profile}",
        f"backbone: `{model['backbone']}` (audio: `{model.get('audio_backbone', '—')}`); "
        f"epochs: {params['train']['epochs']}",
        f"datasets: {', '.join(params['datasets'])}; seeds: {params['seeds']}; "
        f"table k = {aggregate.k}",
        *draw_lines(summary),
        INTERVALS,
        f"commit: `{commit}` (checked out when the report was built)",
    ]


LEGEND = """\
How to read a cell: `mean ± h (n=N)` is the mean over N independent units (one forget
set of one seed) and h the half-width of its 95 % Student-t interval; `(n=1)` has no
interval. Forget sets of one seed share that seed's trained model, so with one seed the
interval leaves out model-to-model variation. Values whose intervals overlap are not
different: such a difference is not a finding. A cell without `(n=…)` is an exact
count (FLOPs), a ratio of means (RTE) or a key from a file without units (no interval,
never bold). ↑ higher is better, ↓ lower is better, ≈R closest to the row's reference
is better; **bold** marks the best non-reference method only where its interval does
not overlap any other row's (a tie is not a win, an n = 1 value never wins). `—`: not
measured.
References are exact unlearning of the same architecture: `retrain_prompt` (a prompt
model trained from scratch without the classes) for the prompt model's rows, `retrain`
for the plain classifier's. Gap to reference: mean |method − reference| over forgotten
acc, retained acc and every MIA variant, each over the units both have (SalUn's Avg.
Gap); its n is the fewest such units, and it has no interval (never bold). Unlearn s:
wall seconds of one request at this k (`retrain_prompt`: its training). RTE: those
seconds over the reference's. Params changed: elements the request changed, added or
removed, measured for every method. FLOPs: one deployment forward per sample (torch's
FlopCounterMode). Flag `no-op`: the method changed no parameter and its forgotten acc
is not apart from before forgetting.
Every key behind a cell is in `metrics/summary.json`."""

RECOVERY_LEGEND = """\
The attacker holds the unlearned model and m labelled shots per forgotten class (m = 0:
data-free) and trains what its capability allows (README, Attacks). Attacked acc:
forgotten-class test accuracy at the step the attacker chose on its validation shots;
reference acc: the same attack, same capability, on the row's never-seen reference;
residual = attacked − reference (0: nothing left to find). retain / noise / OOD →
recovered: the attack stage's rates of retained-class, noise and out-of-distribution
inputs predicted as the recovered class. Relearn steps: over the units that relearned."""


def dataset_section(
    summary: Mapping[str, float],
    dataset: str,
    methods: Sequence[str],
    k: int,
    figures: Mapping[str, str],
) -> list[str]:
    """One dataset's tables, generated lines and figures."""
    ordered = ordered_methods(methods)
    classes = next(
        (c for m in ordered if (c := lookup(summary, dataset, m, ["num_classes"]))), None
    )
    title = f"## {dataset}" + (f" ({classes.mean:.0f} classes)" if classes else "")
    parts = [title, "", f"### Forget-k, k = {k} (test split)", ""]
    parts += [grid(summary, dataset, ordered, k_columns(summary, dataset, k)), ""]
    parts += finding_lines(summary, dataset, ordered, k)
    parts += transfer_line(summary, dataset)
    parts += recovery_tables(summary, dataset, ordered)
    parts += validation_table(summary, dataset, ordered, k)
    for name, path in figures.items():
        parts += [f"![{name}]({path})", ""]
    return parts


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
        parts += dataset_section(summary, dataset, methods, k, figures.get(dataset, {}))
    return "\n".join(parts)
