"""pfm.stats: the nested estimate, the paired comparison and its verdict, on known answers."""

import math

import numpy as np
import pytest

from pfm.stats import (
    FRACTION,
    METRICS,
    Direction,
    Estimate,
    Verdict,
    compare,
    estimate,
    margin_of,
    metric_of,
    nested,
    paired,
    verdict,
)

MARGIN = 0.05
T_975 = {2: 4.302652729749464, 4: 2.7764451051977987}  # Student-t 0.975 quantiles, by df
SAMPLES = {  # family → one unit-metric name it covers
    "forget_acc": "k1.forget_acc",
    "retain_acc": "k5.retain_acc",
    "mia": "k1.mia.loss_auc",
    "recovery_residual": "recovery.prototype.k1.m0.residual",
    "unlearn_seconds": "k1.cost.unlearn_seconds",
    "flops": "eval.cost.flops_per_sample",
    "samples_forget_acc": "samples.forget_acc",
    "samples_retain_acc": "samples.test_acc",
}


def units(seeds: int, sets: int) -> list[tuple[int, tuple[int, ...]]]:
    return [(seed, (c,)) for seed in range(seeds) for c in range(sets)]


def simulated(shift: float, noise: float, seeds: int = 3, sets: int = 5) -> tuple[dict, dict]:
    """A reference that varies a lot from unit to unit (classes differ in difficulty,
    seeds in their trained model) and a method at reference + ``shift`` + small noise."""
    rng = np.random.default_rng(0)
    keys = units(seeds, sets)
    seed_effect = rng.normal(0, 0.05, seeds)
    reference = {u: 0.5 + seed_effect[u[0]] + rng.uniform(-0.3, 0.3) for u in keys}
    method = {u: v + shift + rng.normal(0, noise) for u, v in reference.items()}
    return method, reference


def test_the_flat_t_interval() -> None:
    three = estimate([1.0, 2.0, 3.0])  # mean 2, sample std 1
    assert (three.mean, three.n, three.std) == (2.0, 3, 1.0)
    assert three.ci95 == pytest.approx(T_975[2] / math.sqrt(3))
    one = estimate([0.3])
    assert one.n == 1 and math.isnan(one.ci95) and not one.has_interval
    assert all(math.isnan(b) for b in one.bounds)
    with pytest.raises(ValueError, match="at least one"):
        estimate([])


def test_nested_is_the_t_interval_of_the_per_seed_means() -> None:
    """Seed 0: 0.1, 0.2, 0.3 (mean 0.2); seed 1: 0.4, 0.6 (0.5); seed 2: 0.3. By hand:
    mean 1/3, sample std of (0.2, 0.5, 0.3) = 0.152753, half-width 4.302653 · s/√3."""
    values = {(0, (0,)): 0.1, (0, (1,)): 0.2, (0, (2,)): 0.3, (1, (0,)): 0.4, (1, (3,)): 0.6,
              (2, (1,)): 0.3}  # fmt: skip
    found = nested(values)
    assert found.mean == pytest.approx(1 / 3)  # not the pooled mean 0.3167
    assert found.std == pytest.approx(0.152753, abs=1e-6)
    assert found.ci95 == pytest.approx(0.379458, abs=1e-6)
    assert (found.n, found.seeds) == (6, 3) and not found.class_variation_only
    assert found.support == "3 seeds, 6 sets in all"


def test_one_seed_falls_back_to_its_forget_sets_and_says_so() -> None:
    values = dict(zip(units(1, 5), [0.1, 0.2, 0.3, 0.1, 0.3], strict=True))
    found = nested(values)
    assert found.ci95 == pytest.approx(T_975[4] * 0.1 / math.sqrt(5))
    assert found.class_variation_only and found.support == "1 seed × 5 sets"


def test_a_method_equal_to_its_reference_is_equivalent() -> None:
    method, reference = simulated(shift=0.0, noise=0.005)
    found = compare(method, reference, MARGIN)
    assert found.verdict == Verdict.EQUIVALENT and found.verdict.word == "equivalent"
    low, high = found.difference.bounds
    assert -MARGIN < low < 0 < high < MARGIN
    assert (found.difference.seeds, found.difference.n) == (3, 15)


def test_a_method_0_2_apart_is_apart() -> None:
    method, reference = simulated(shift=0.2, noise=0.02)
    found = compare(method, reference, MARGIN)
    assert found.verdict == Verdict.APART and int(found.verdict) == -1
    assert found.difference.mean == pytest.approx(0.2, abs=0.02)
    assert found.difference.bounds[0] > MARGIN


def test_too_few_units_are_inconclusive() -> None:
    method, reference = simulated(shift=0.2, noise=0.02, seeds=1, sets=1)
    found = compare(method, reference, MARGIN)
    assert found.verdict == Verdict.INCONCLUSIVE and found.difference.n == 1
    # two seeds of one set each: an interval, but t(0.975, df=1) = 12.7 makes it wide
    method, reference = simulated(shift=0.0, noise=0.05, seeds=2, sets=1)
    assert compare(method, reference, MARGIN).verdict == Verdict.INCONCLUSIVE


def test_the_verdict_rule_at_its_edges() -> None:
    small_but_real = Estimate(0.02, 5, 0.01, seeds=5)  # [0.01, 0.03]: excludes 0, inside
    assert verdict(small_but_real, MARGIN) == Verdict.EQUIVALENT
    assert verdict(small_but_real, None) == Verdict.APART  # no margin: no equivalence
    assert verdict(Estimate(0.1, 5, 0.2, seeds=5), MARGIN) == Verdict.INCONCLUSIVE
    assert verdict(Estimate(0.0, 5, 0.05, seeds=5), MARGIN) == Verdict.INCONCLUSIVE  # touches
    assert verdict(Estimate(0.0, 1), MARGIN) == Verdict.INCONCLUSIVE


def test_paired_beats_unpaired_on_correlated_data() -> None:
    """The reference spans 0.2 … 0.8 across units and the method sits 0.1 above it on
    every unit: unpaired, the two intervals overlap (no finding); paired, the common
    part cancels and the difference is clearly apart from 0."""
    method, reference = simulated(shift=0.1, noise=0.01, seeds=1, sets=8)
    ours, theirs = nested(method), nested(reference)
    assert ours.bounds[0] < theirs.bounds[1]  # unpaired intervals overlap
    found = compare(method, reference, MARGIN)
    assert found.verdict == Verdict.APART
    assert found.difference.ci95 < ours.ci95 / 5


def test_only_shared_units_are_paired() -> None:
    method = {(0, (0,)): 0.5, (0, (1,)): 0.6, (1, (2,)): 0.9}
    reference = {(0, (0,)): 0.4, (0, (1,)): 0.5, (0, (3,)): 0.0}
    found = compare(method, reference, MARGIN)
    assert found.difference.n == 2 and found.difference.mean == pytest.approx(0.1)
    assert compare(method, {(5, (0,)): 0.1}, MARGIN) is None


def test_a_residual_is_estimated_against_zero() -> None:
    residuals = dict(zip(units(3, 2), [0.3, 0.32, 0.29, 0.31, 0.3, 0.3], strict=True))
    assert paired(residuals, MARGIN).verdict == Verdict.APART
    zero = dict(zip(units(3, 2), [0.0, 0.01, -0.01, 0.0, 0.005, 0.0], strict=True))
    assert paired(zero, MARGIN).verdict == Verdict.EQUIVALENT


@pytest.mark.parametrize("family", sorted(METRICS))
def test_every_metric_family_is_declared_once(family: str) -> None:
    name = SAMPLES[family]
    assert metric_of(name) is METRICS[family]  # exactly one family covers it
    assert isinstance(METRICS[family].direction, Direction)
    expected = MARGIN if METRICS[family].scale == FRACTION else None
    assert margin_of(name, {FRACTION: MARGIN}) == expected


def test_directions_and_undeclared_names() -> None:
    assert metric_of("k1.forget_acc").direction is Direction.MATCH
    assert metric_of("k1.retain_acc").direction is Direction.HIGHER
    assert metric_of("k1.cost.unlearn_seconds").direction is Direction.LOWER
    assert metric_of("k1.val.forget_acc") is None and margin_of("epochs", {}) is None
    assert metric_of("samples.retain_acc").direction is Direction.HIGHER
    assert metric_of("samples.cost.unlearn_seconds").direction is Direction.LOWER
    assert metric_of("samples.base.forget_acc") is None  # the model before: not compared
