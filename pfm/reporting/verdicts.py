"""The generated lines under a table: each method's paired difference to its reference
in the three words of ``pfm.stats`` (equivalent / apart / inconclusive), with the
difference's 95 % interval and the units it rests on ("s seeds × f sets"), read from the
summary's ``.diff.*`` and ``.verdict`` keys."""

import math
from collections.abc import Mapping, Sequence

from pfm.reporting.aggregate import comparison_of
from pfm.reporting.table import is_reference
from pfm.stats import Comparison, Estimate, Verdict

ORDER = (Verdict.EQUIVALENT, Verdict.APART, Verdict.INCONCLUSIVE)  # as the lines read
ONE_SEED = (
    "One seed: its intervals describe variation across forget sets of one trained model, "
    "not across training runs."
)


def difference_text(difference: Estimate) -> str:
    """``+0.012 [−0.010, +0.034] (1 seed × 5 sets)``; no brackets without an interval."""
    low, high = difference.bounds
    if math.isnan(low):
        return f"{difference.mean:+.3f}, no interval ({difference.support})"
    return f"{difference.mean:+.3f} [{low:+.3f}, {high:+.3f}] ({difference.support})"


def comparisons(
    summary: Mapping[str, float], dataset: str, methods: Sequence[str], name: str
) -> dict[str, Comparison]:
    """method → its paired comparison for metric ``name``, references left out."""
    found = {
        m: comparison_of(summary, dataset, m, name)
        for m in methods
        if not is_reference(summary, dataset, m)
    }
    return {m: c for m, c in found.items() if c is not None}


def verdict_line(found: Mapping[str, Comparison], title: str, margin: float) -> str | None:
    """One line grouping methods by verdict; ``None`` when no method was compared."""
    if not found:
        return None
    groups: dict[Verdict, list[str]] = {v: [] for v in ORDER}
    for method, comparison in found.items():
        groups[comparison.verdict].append(f"{method} {difference_text(comparison.difference)}")
    words = "; ".join(f"{v.word}: {', '.join(items) or 'none'}" for v, items in groups.items())
    line = f"- {title}, method − reference (margin ±{margin:.3g}): {words}."
    if any(c.difference.class_variation_only for c in found.values()):
        line += f" {ONE_SEED}"
    return line
