"""The sample protocol's units in the aggregate and the report: pairs form on the very
same rows only, the no-op flag reads the base model's accuracy on those rows, a run's
class and sample files merge, and the report's table states its verdicts."""

import json
from pathlib import Path

import pytest

from pfm.reporting.provenance import draw_lines
from pfm.reporting.report import render
from tests.test_aggregate import CONFIG, acc, cost, declared, parse_tables, summarised, write

DIGESTS = ("a1", "b2", "c3")  # one seed's three sample forget sets


def sample(digest: str, forget: float, retain: float, test: float, **extra: float) -> dict:
    """A forget-samples unit (``pfm.samples.sample_unit``) of 30 rows."""
    return {
        "set": DIGESTS.index(digest) if digest in DIGESTS else 9,
        "digest": digest,
        "rows": 30,
        "forget_acc": forget,
        "retain_acc": retain,
        "test_acc": test,
        "base.forget_acc": 1.0,
        **extra,
    }


def write_samples(root: Path, method: str, seed: int, units: list[dict]) -> None:
    path = root / "samples" / "toy" / f"seed{seed}" / method / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**declared(method), "samples.rows": 30, "units": units}))


def shifted(value: float, seed: int, index: int) -> float:
    return value + 0.01 * seed + 0.002 * index


@pytest.fixture
def summary(tmp_path: Path) -> dict[str, float]:
    """Two seeds: retrain near test accuracy on the forgotten rows; ``ascent`` far below
    it on the same rows; ``elsewhere`` on other rows; ``idle`` changed nothing."""
    for seed in (0, 1):
        rows = list(enumerate(DIGESTS))
        units = {
            "retrain": [
                sample(d, shifted(0.8, seed, i), 0.95, 0.8, **cost(10.0, 500)) for i, d in rows
            ],
            "ascent": [
                sample(d, shifted(0.2, seed, i), 0.6, 0.55, **cost(1.0, 500)) for i, d in rows
            ],
            "elsewhere": [
                sample(f"f{i}", shifted(0.2, seed, i), 0.6, 0.55, **cost(1.0, 500)) for i, _ in rows
            ],
            "idle": [
                sample(d, shifted(0.99, seed, -i), 0.99, 0.8, **cost(0.1, 0)) for i, d in rows
            ],
        }
        for method, records in units.items():
            write_samples(tmp_path, method, seed, records)
    return summarised([tmp_path / "samples"])


def test_a_method_is_paired_with_its_reference_on_the_same_rows(summary: dict) -> None:
    assert summary["toy.ascent.samples.forget_acc.diff.mean"] == pytest.approx(-0.6)
    assert summary["toy.ascent.samples.forget_acc.verdict"] == -1  # apart
    assert summary["toy.ascent.samples.forget_acc.diff.sets"] == 6
    assert summary["toy.ascent.samples.forget_acc.diff.seeds"] == 2
    assert summary["toy.ascent.samples.test_acc.verdict"] == -1
    assert "toy.retrain.samples.forget_acc.verdict" not in summary  # a reference: none


def test_sets_of_other_rows_are_not_paired(summary: dict) -> None:
    assert summary["toy.elsewhere.samples.forget_acc.n"] == 6  # estimated on its own
    assert "toy.elsewhere.samples.forget_acc.verdict" not in summary


def test_a_method_that_changed_nothing_is_a_sample_no_op(summary: dict) -> None:
    assert summary["toy.idle.samples.no_op"] == 1.0  # 0 changed, forgotten rows as before
    assert summary["toy.ascent.samples.no_op"] == 0.0
    assert summary["toy.retrain.samples.no_op"] == 0.0


def test_draws_count_sample_sets_by_their_rows(summary: dict) -> None:
    assert summary["toy.retrain.draws.samples.k30.n"] == 6
    assert summary["toy.retrain.draws.samples.k30.seeds"] == 2
    assert any(
        line.startswith("toy, sample forget sets, rows = 30: ") for line in draw_lines(summary)
    )


def test_a_run_keeps_its_class_and_its_sample_units_apart(tmp_path: Path) -> None:
    write(tmp_path, "unlearn", "toy", "retrain", 0, {"units": [acc([0], 0.0, 0.9, **cost(5.0, 9))]})
    write_samples(tmp_path, "retrain", 0, [sample("a1", 0.8, 0.95, 0.8, **cost(10.0, 500))])
    summary = summarised([tmp_path / "unlearn", tmp_path / "samples"])
    assert summary["toy.retrain.k1.forget_acc.mean"] == 0.0
    assert summary["toy.retrain.samples.forget_acc.mean"] == 0.8
    assert summary["toy.retrain.k1.cost.unlearn_seconds.mean"] == 5.0
    assert summary["toy.retrain.samples.cost.unlearn_seconds.mean"] == 10.0


def test_a_sample_unit_needs_its_digest_and_size(tmp_path: Path) -> None:
    bad = {**sample("a1", 0.8, 0.9, 0.8), "rows": "30"}
    write_samples(tmp_path, "retrain", 0, [bad])
    with pytest.raises(ValueError, match="a sample unit needs a 'digest' string and a 'rows'"):
        summarised([tmp_path / "samples"])


def test_the_report_shows_the_sample_table_and_its_verdicts(summary: dict) -> None:
    markdown = render(summary, CONFIG, [], {})
    heading = "Forgetting samples (30 training rows per set; PI-Prefix's own setting)"
    table = parse_tables(markdown)["toy"][heading]
    assert set(table) == {"retrain (reference)", "ascent", "elsewhere", "idle"}
    assert table["ascent"]["forget-set acc ≈R"].startswith("0.207 ± ")
    assert table["ascent"]["before forgetting"].startswith("1.000")
    assert table["idle"]["flag"] == "no-op: changed nothing"
    line = next(x for x in markdown.splitlines() if x.startswith("- Forget-set acc, "))
    assert "apart: ascent -0.600 [" in line
    assert "elsewhere" not in line  # no shared rows, no comparison
    assert "### Forget-k" not in markdown  # no forget-k rows measured: no empty table
