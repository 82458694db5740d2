"""The statistics every table reads: a unit metric's estimate, the paired comparison of a
method with its reference, and the three-word verdict; each metric family declared once
beside its name with its direction and the equivalence margin that applies.

Units are nested: forget sets (``classes``) inside training seeds. Forget sets of one
seed share that seed's trained model, so they are not independent draws of a training
run; pooling them as if they were gives intervals that leave out the run-to-run
variation a reviewer asks about first. Hence the nested rule (``nested``): per-seed means
first, then a Student-t 95 % interval over the seeds (≥ 2 seeds). With one seed there is
no other run to compare with, and the interval is the t-interval over that seed's forget
sets: it describes variation across classes only, and says so (``Estimate.seeds == 1``).

A comparison with a reference is paired (``compare``): the difference method − reference
on each (seed, forget set) unit both report, estimated by the same nested rule. Paired,
because the two share each unit's data split, classes and trained base model: their
common part cancels in the difference (``tests/test_stats.py`` shows the paired interval
separating what overlapping unpaired intervals cannot). The verdict (``verdict``):

- **equivalent** iff the difference's 95 % interval lies inside ±margin. This is the two
  one-sided tests procedure at α = 0.025 a side (stricter than the usual 0.05, so that
  the interval the report prints and the verdict it states are the same interval).
  An interval inside the margin that also excludes 0 is "equivalent": the difference is
  real but smaller than what the margin declares irrelevant.
- **apart** iff the interval excludes 0 (and does not lie inside the margin);
- **inconclusive** otherwise, and always where there is no interval (one unit) or no
  margin applies and the interval covers 0. No difference is not equivalence.
"""

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

import numpy as np
from scipy.special import stdtrit  # scipy.stats.t.ppf's kernel, without its second of imports

CONFIDENCE = 0.95
Unit = tuple[int, tuple[int, ...]]  # (seed, sorted forget classes): one unit of evidence


class Direction(Enum):
    """Which value of a metric is better: the table's bold rule and arrow read it."""

    HIGHER = "↑"
    LOWER = "↓"
    MATCH = "≈R"  # the row's reference's value is the target (exact unlearning)


@dataclass(frozen=True)
class Metric:
    """One metric family: the unit-metric names it covers, its direction, its scale
    (the margin of ``aggregate.margin`` applies on the ``fraction`` scale only) and
    whether the summary compares it with the family's reference."""

    pattern: re.Pattern
    direction: Direction
    scale: str  # fraction | seconds | count
    compared: bool = False  # paired with the reference: method − reference per unit
    difference: bool = False  # already a paired difference (estimated against 0)


FRACTION = "fraction"  # accuracies, AUCs and shares: the scale ``aggregate.margin`` is on
METRICS: dict[str, Metric] = {
    "forget_acc": Metric(re.compile(r"^k\d+\.forget_acc$"), Direction.MATCH, FRACTION, True),
    "retain_acc": Metric(re.compile(r"^k\d+\.retain_acc$"), Direction.HIGHER, FRACTION, True),
    "mia": Metric(re.compile(r"^k\d+\.mia\.[^.]+$"), Direction.MATCH, FRACTION, True),
    # attacked − reference accuracy under the identical attack on the same draw
    "recovery_residual": Metric(
        re.compile(r"^recovery\.[^.]+\.k\d+\.m\d+\.residual$"),
        Direction.MATCH,
        FRACTION,
        difference=True,
    ),
    # the sample protocol (pfm.samples): forgotten rows, retained rows, test split
    "samples_forget_acc": Metric(
        re.compile(r"^samples\.forget_acc$"), Direction.MATCH, FRACTION, True
    ),
    "samples_retain_acc": Metric(
        re.compile(r"^samples\.(retain|test)_acc$"), Direction.HIGHER, FRACTION, True
    ),
    "unlearn_seconds": Metric(
        re.compile(r"^(k\d+|samples)\.cost\.unlearn_seconds$"), Direction.LOWER, "seconds"
    ),
    "flops": Metric(re.compile(r"^(eval\.)?cost\.flops_per_sample$"), Direction.LOWER, "count"),
}


def metric_of(name: str) -> Metric | None:
    """The family a unit-metric name belongs to; ``None`` for an undeclared name."""
    found = [m for m in METRICS.values() if m.pattern.match(name)]
    assert len(found) <= 1, f"{name!r} matches {len(found)} metric families"
    return found[0] if found else None


def margin_of(name: str, margins: Mapping[str, float]) -> float | None:
    """The equivalence margin for a metric name (``margins``: scale → margin, from
    params); ``None`` where no margin is declared for its scale."""
    metric = metric_of(name)
    return None if metric is None else margins.get(metric.scale)


@dataclass(frozen=True)
class Estimate:
    """A mean with its evidence: ``n`` units ((seed, forget set) pairs; ``None``: a key
    without units, e.g. an exact count) from ``seeds`` seeds, and the half-width of its
    95 % interval (NaN: none). ``std`` is the sample std of what the interval is over:
    per-seed means with ≥ 2 seeds, else the forget sets."""

    mean: float
    n: int | None = None
    ci95: float = math.nan
    std: float = math.nan
    seeds: int | None = None

    @property
    def has_interval(self) -> bool:
        return self.n is not None and self.n >= 2 and math.isfinite(self.ci95)

    @property
    def bounds(self) -> tuple[float, float]:
        """The interval; NaN at both ends without one."""
        if not self.has_interval:
            return math.nan, math.nan
        return self.mean - self.ci95, self.mean + self.ci95

    @property
    def class_variation_only(self) -> bool:
        """One seed: the interval spans forget sets of one trained model, not runs."""
        return self.seeds == 1

    @property
    def support(self) -> str:
        """``"1 seed × 5 sets"``; ``"3 seeds, 15 sets in all"`` (seeds may differ in
        their number of sets, which ``n`` and ``seeds`` alone cannot tell)."""
        if self.n is None:
            return "no units"
        if (self.seeds or 1) == 1:
            return f"1 seed × {_plural(self.n, 'set')}"
        return f"{_plural(self.seeds, 'seed')}, {_plural(self.n, 'set')} in all"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def estimate(values: Sequence[float]) -> Estimate:
    """n, mean, sample std and the 95 % Student-t half-width of the mean of independent
    values (NaN for n = 1)."""
    if not values:
        raise ValueError("an estimate needs at least one value")
    n, mean = len(values), float(np.mean(values))
    if n == 1:
        return Estimate(mean, 1)
    std = float(np.std(values, ddof=1))
    t = float(stdtrit(n - 1, 0.5 + CONFIDENCE / 2))
    return Estimate(mean, n, t * std / math.sqrt(n), std)


def nested(values: Mapping[Unit, float]) -> Estimate:
    """The nested estimate (module docstring): the t-interval of the per-seed means over
    ≥ 2 seeds; with one seed, the t-interval over its forget sets. ``n`` counts every
    unit, ``seeds`` the seeds."""
    if not values:
        raise ValueError("an estimate needs at least one unit")
    by_seed: dict[int, list[float]] = {}
    for (seed, _), value in values.items():
        by_seed.setdefault(seed, []).append(value)
    seeds = len(by_seed)
    over = estimate(
        [float(np.mean(v)) for v in by_seed.values()] if seeds > 1 else [*values.values()]
    )
    return Estimate(over.mean, len(values), over.ci95, over.std, seeds)


class Verdict(IntEnum):
    """A comparison's outcome; the number is the summary's ``.verdict`` key."""

    EQUIVALENT = 1
    INCONCLUSIVE = 0
    APART = -1

    @property
    def word(self) -> str:
        return self.name.lower()


def verdict(difference: Estimate, margin: float | None) -> Verdict:
    """Equivalent, apart or inconclusive (module docstring); ``margin`` ``None``: no
    equivalence can be claimed."""
    low, high = difference.bounds
    if not difference.has_interval or math.isnan(low) or math.isnan(high):
        return Verdict.INCONCLUSIVE
    if margin is not None and -margin < low and high < margin:
        return Verdict.EQUIVALENT
    if low > 0 or high < 0:
        return Verdict.APART
    return Verdict.INCONCLUSIVE


@dataclass(frozen=True)
class Comparison:
    """A paired difference (method − reference) with its verdict."""

    difference: Estimate
    verdict: Verdict


def paired(differences: Mapping[Unit, float], margin: float | None) -> Comparison:
    """The verdict on per-unit differences that are already paired (a recovery residual:
    attacked − reference under the identical attack on one draw)."""
    difference = nested(differences)
    return Comparison(difference, verdict(difference, margin))


def compare(
    method: Mapping[Unit, float], reference: Mapping[Unit, float], margin: float | None
) -> Comparison | None:
    """Method − reference on the units both report; ``None`` when they share none (other
    draws are not comparable)."""
    shared = sorted(method.keys() & reference.keys())
    if not shared:
        return None
    return paired({u: method[u] - reference[u] for u in shared}, margin)


def values_of(units: Mapping[Unit, Mapping[str, float]], name: str) -> dict[Unit, float]:
    """One metric's value per unit, over the units that report it."""
    return {u: metrics[name] for u, metrics in units.items() if name in metrics}


def nested_all(units: Mapping[Unit, Mapping[str, float]]) -> dict[str, Estimate]:
    """metric → its nested estimate over every unit that reports it."""
    names: Iterable[str] = {n for metrics in units.values() for n in metrics}
    return {name: nested(values_of(units, name)) for name in sorted(names)}
