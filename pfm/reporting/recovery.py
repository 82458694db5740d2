"""The recovery attack in the report: the whole ladder (every capability × shots m) per
attacked k, the checks an attack must pass before its residual counts, and the largest
residual that passes them.

A recovery unit holds the attacked model's forgotten-class test accuracy at the end of
the attack's fixed budget (``acc``), the identical attack's on the never-seen reference
(``reference_acc``), their difference ``residual`` (paired on the draw), retained
accuracy before and at that step, whether either side collapsed, and the specificity
shares (``recovery.<capability>.k<k>.m<m>.<field>`` in the summary). An attack counts
(``check``) only when

- no unit collapsed, attacked or reference (``collapsed``, ``reference_collapsed`` are 0
  in every unit): a model that predicts the forgotten class for everything has not
  recovered it;
- it is specific on both sides: the mean retained / noise / OOD → recovered shares are at
  most ``aggregate.specificity_max`` (an attack that makes the class a sink has not
  recovered it either).

A record without those fields cannot pass ("unmeasured"). The headline states, per
method, the largest residual among the attacks that pass, naming the attack: a capability
fixed in advance would let that choice, not the model, decide the answer.
"""

from collections.abc import Callable, Mapping, Sequence

from tabulate import tabulate

from pfm.reporting.aggregate import RECOVERY, comparison_of, lookup, metric_names
from pfm.reporting.table import cell, is_reference, label, usual_n
from pfm.reporting.verdicts import ONE_SEED, difference_text
from pfm.stats import Estimate

CAPABILITIES = ("prototype", "prompt", "prompt_head", "head", "head_lora")  # training-free first
COLLAPSE = ("collapsed", "reference_collapsed")
SPECIFICITY = ("retain_to_recovered", "noise_to_recovered", "ood_to_recovered")
NEEDED = ("retain_to_recovered", "noise_to_recovered")  # OOD: only where a probe is set
PASS = "pass"

Attack = tuple[str, int]  # (capability, shots m)
Cell = Estimate | str | None
Read = Callable[[Mapping[str, float], str, str, str], Cell]  # (summary, dataset, method, head)


def _field(name: str) -> Read:
    return lambda summary, dataset, method, head: lookup(
        summary, dataset, method, [f"{head}.{name}"]
    )


def _verdict(summary: Mapping[str, float], dataset: str, method: str, head: str) -> Cell:
    found = comparison_of(summary, dataset, method, f"{head}.residual")
    return None if found is None else found.verdict.word


LADDER: list[tuple[str, Read, str]] = [  # (title, reader, kind)
    ("attacked acc", _field("acc"), "fraction"),
    ("reference acc", _field("reference_acc"), "fraction"),
    ("residual", _field("residual"), "fraction"),
    ("verdict", _verdict, "text"),
    ("retained acc", _field("retain_acc"), "fraction"),
    ("pre-attack retained", _field("pre_retain_acc"), "fraction"),
    ("collapsed", _field("collapsed"), "fraction"),
    ("ref. collapsed", _field("reference_collapsed"), "fraction"),
]
DETAILS: list[tuple[str, Read, str]] = [
    ("retain→recovered", _field("retain_to_recovered"), "fraction"),
    ("noise→recovered", _field("noise_to_recovered"), "fraction"),
    ("OOD→recovered", _field("ood_to_recovered"), "fraction"),
    ("ref. retain→recovered", _field("reference_retain_to_recovered"), "fraction"),
    ("ref. noise→recovered", _field("reference_noise_to_recovered"), "fraction"),
    ("ref. OOD→recovered", _field("reference_ood_to_recovered"), "fraction"),
    ("oracle acc", _field("oracle_acc"), "fraction"),
    ("ref. oracle acc", _field("reference_oracle_acc"), "fraction"),
    ("relearn steps", _field("relearn_steps"), "number"),
]
LEGEND = """\
The attacker holds the unlearned model and m labelled shots per forgotten class (m = 0:
none) and runs a budget fixed in advance; every row is its capability × m, nothing chosen.
residual = attacked − reference acc (the identical attack on the row's never-seen
reference, paired on the draw), with its verdict (margin as above). An attack counts only
when no unit collapsed on either side and its retained / noise / OOD → recovered shares
are at most {specificity_max:.3g} on both (checks); oracle acc (best point of the test
curve) is an upper bound, not a result."""


def head_of(attack: Attack, k: int) -> str:
    capability, m = attack
    return f"recovery.{capability}.k{k}.m{m}"


def attacks(summary: Mapping[str, float], dataset: str) -> dict[int, list[Attack]]:
    """Attacked k → its (capability, m) pairs, training-free and weakest capability first."""
    found: dict[int, set[Attack]] = {}
    for name in metric_names(summary, dataset, RECOVERY):
        match = RECOVERY.match(name)
        found.setdefault(int(match[2]), set()).add((match[1], int(match[3])))
    order = {c: i for i, c in enumerate(CAPABILITIES)}
    return {
        k: sorted(pairs, key=lambda p: (order.get(p[0], len(order)), p[0], p[1]))
        for k, pairs in sorted(found.items())
    }


def check(
    summary: Mapping[str, float], dataset: str, method: str, head: str, specificity_max: float
) -> str:
    """``pass``, ``collapse``, ``unspecific`` or ``unmeasured`` (module docstring)."""

    def mean(name: str) -> float | None:
        found = lookup(summary, dataset, method, [f"{head}.{name}"])
        return None if found is None else found.mean

    collapsed = [mean(name) for name in COLLAPSE]
    shares = {f"{side}{name}": mean(f"{side}{name}") for side in ("", "reference_")
              for name in SPECIFICITY}  # fmt: skip
    needed = [f"{side}{name}" for side in ("", "reference_") for name in NEEDED]
    if None in collapsed or any(shares[name] is None for name in needed):
        return "unmeasured"
    if any(c != 0 for c in collapsed):  # NaN too: not shown to be collapse-free
        return "collapse"
    if any(not s <= specificity_max for s in shares.values() if s is not None):
        return "unspecific"
    return PASS


def largest_valid(
    summary: Mapping[str, float],
    dataset: str,
    method: str,
    k: int,
    pairs: Sequence[Attack],
    specificity_max: float,
) -> tuple[Attack, Estimate] | None:
    """The attack with the largest mean residual among those that pass the checks."""
    valid = []
    for attack in pairs:
        head = head_of(attack, k)
        residual = lookup(summary, dataset, method, [f"{head}.residual"])
        if residual is not None and check(summary, dataset, method, head, specificity_max) == PASS:
            valid.append((residual.mean, attack, residual))
    if not valid:
        return None
    _, attack, residual = max(valid, key=lambda v: v[0])
    return attack, residual


def headline_reader(
    k: int, specificity_max: float
) -> Callable[[Mapping[str, float], str, str], Estimate | None]:
    """The headline's cell: a method's largest valid residual at k (the line under the
    recovery table names its attack)."""

    def read(summary: Mapping[str, float], dataset: str, method: str) -> Estimate | None:
        pairs = attacks(summary, dataset).get(k, [])
        found = largest_valid(summary, dataset, method, k, pairs, specificity_max)
        return None if found is None else found[1]

    return read


def largest_line(
    summary: Mapping[str, float],
    dataset: str,
    methods: Sequence[str],
    k: int,
    specificity_max: float,
) -> str | None:
    """Per method, the largest residual passing both checks, its attack, interval and
    verdict; the methods none of whose attacks passed, with why."""
    pairs = attacks(summary, dataset).get(k, [])
    named, failed, one_seed = [], [], False
    for method in methods:
        if is_reference(summary, dataset, method):
            continue
        heads = [head_of(a, k) for a in pairs]
        checks = [check(summary, dataset, method, h, specificity_max) for h in heads if
                  lookup(summary, dataset, method, [f"{h}.residual"]) is not None]  # fmt: skip
        if not checks:
            continue
        found = largest_valid(summary, dataset, method, k, pairs, specificity_max)
        if found is None:
            reasons = ", ".join(sorted(set(checks)))
            failed.append(f"{method} ({reasons})")
            continue
        (capability, m), _ = found
        head = head_of((capability, m), k)
        comparison = comparison_of(summary, dataset, method, f"{head}.residual")
        assert comparison is not None, "every residual of a non-reference run is compared"
        one_seed |= comparison.difference.class_variation_only
        named.append(
            f"{method} {difference_text(comparison.difference)} by {capability} m = {m}, "
            f"{comparison.verdict.word}"
        )
    if not named and not failed:
        return None
    line = (
        f"- Largest recovery residual (k={k}) among attacks passing the collapse and "
        f"specificity checks, attacked − reference: {'; '.join(named) or 'none'}"
    )
    if failed:
        line += f"; no attack passed: {', '.join(failed)}"
    return line + "." + (f" {ONE_SEED}" if one_seed else "")


def _table(
    summary: Mapping[str, float],
    dataset: str,
    rows: Sequence[tuple[str, Attack, str]],
    columns: Sequence[tuple[str, Read, str]],
    n: int | None,
) -> str:
    """method × capability × m rows; a column nobody fills is dropped."""
    values = [[read(summary, dataset, method, head) for _, read, _ in columns]
              for method, _, head in rows]  # fmt: skip
    keep = [i for i in range(len(columns)) if any(v[i] is not None for v in values)]
    lines = [
        [
            label(summary, dataset, method),
            capability,
            m,
            *(cell(found[i], columns[i][2], n) for i in keep),
        ]
        for (method, (capability, m), _), found in zip(rows, values, strict=True)
    ]
    headers = ["method", "capability", "m", *(columns[i][0] for i in keep)]
    return tabulate(lines, headers=headers, tablefmt="github", disable_numparse=True)


def recovery_tables(
    summary: Mapping[str, float],
    dataset: str,
    methods: Sequence[str],
    specificity_max: float,
    n: int | None = None,
) -> list[str]:
    """Per attacked k: the ladder (accuracies, residual, verdict, retained accuracy,
    collapse, checks), the line naming each method's largest valid residual, and the
    details (specificity on both sides, oracle bound, relearn steps). Its usual n is
    stated under the heading where it differs from the dataset's ``n``."""
    parts = []
    for k, pairs in attacks(summary, dataset).items():
        rows = [
            (method, attack, head_of(attack, k))
            for method in methods
            for attack in pairs
            if lookup(summary, dataset, method, [f"{head_of(attack, k)}.residual"]) is not None
        ]
        table_n = usual_n(_field("residual")(summary, dataset, m, h) for m, _, h in rows)
        checks: tuple[str, Read, str] = (
            "checks",
            lambda s, d, m, h: check(s, d, m, h, specificity_max),
            "text",
        )
        legend = LEGEND.format(specificity_max=specificity_max)
        if table_n is not None and table_n != n:
            legend += f" Cells here: n = {table_n} unless marked."
        parts += [f"### Recovery attack, k = {k}", "", legend, ""]
        parts += [_table(summary, dataset, rows, [*LADDER, checks], table_n), ""]
        line = largest_line(summary, dataset, methods, k, specificity_max)
        parts += [line, ""] if line else []
        parts += [f"### Recovery attack details, k = {k}", ""]
        parts += [_table(summary, dataset, rows, DETAILS, table_n), ""]
    return parts
