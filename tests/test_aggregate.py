"""Aggregate: hand-written metric files with units → summary keys, the report, the figures."""

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from pfm.files import STAGED
from pfm.reporting.aggregate import (
    AggregateParams,
    collect,
    declarations,
    read_relearn_curves,
    rte,
    source,
    split_label,
    summarise,
    to_json,
)
from pfm.reporting.plots import FIGURES, draw_all
from pfm.reporting.provenance import provenance
from pfm.reporting.report import render
from pfm.reporting.table import cell, ordered_methods, usual_n
from pfm.stats import Estimate, estimate

ROOT = Path(__file__).resolve().parents[1]
T_975 = {
    1: 12.706204736174698,
    2: 4.302652729749464,
    4: 2.7764451051977987,
}  # Student-t 0.975 quantiles, by df
CONFIG = AggregateParams(
    k=1, profile="test", margin=0.05, primary_mia="loss_auc", specificity_max=0.2
)
MARGINS = CONFIG.margins()
PROMPT_FAMILY = ("pfm", "pfm_defended", "pfm_x", "retrain_prompt")  # the fixtures' prompt runs


def declared(method: str, family: str | None = None) -> dict[str, str]:
    """The fields the unlearn stage writes from a method's declaration
    (``pfm.unlearn.base.Declaration``): here, a fixture method's."""
    family = family or ("prompt" if method in PROMPT_FAMILY else "plain")
    return {"family": family, "reference": {"prompt": "retrain_prompt", "plain": "retrain"}[family]}


def unit(classes: list[int], **metrics: float | None) -> dict:
    return {"classes": classes, "k": len(classes), **metrics}


def acc(classes: list[int], forget: float, retain: float, **extra: float | None) -> dict:
    """An unlearn-stage unit: test accuracies and the cost of the request."""
    return unit(classes, forget_acc=forget, retain_acc=retain, **extra)


def cost(seconds: float, changed: float) -> dict[str, float]:
    return {"cost.unlearn_seconds": seconds, "cost.trainable_params": changed}


# (dataset, method, seed, folder) → file payload, in the formats the stages write.
FILES = {
    # the plain family's reference: every unit of the shared draws
    ("toy", "retrain", 0, "unlearn"): {
        "num_classes": 4, "cost.flops_per_sample": 1_000_000, "no_forget.full_bank.acc": 0.92,
        "units": [
            acc([0], 0.0, 0.90, **cost(100.0, 5000)),
            acc([1], 0.0, 0.92, **cost(110.0, 5000)),
            acc([2], 0.02, 0.88, **cost(90.0, 5000)),
        ],
    },
    ("toy", "retrain", 1, "unlearn"): {
        "num_classes": 4, "cost.flops_per_sample": 1_000_000, "no_forget.full_bank.acc": 0.92,
        "units": [
            acc([0], 0.0, 0.91, **cost(100.0, 5000)), acc([3], 0.0, 0.89, **cost(100.0, 5000)),
        ],
    },
    ("toy", "retrain", 0, "attacks/mia"): {
        "units": [unit([0], **{"mia.loss_auc": 0.5}), unit([1], **{"mia.loss_auc": 0.52})],
    },
    # the prompt family's reference: one draw only (a model trained from scratch each)
    ("toy", "retrain_prompt", 0, "unlearn"): {
        "num_classes": 4,
        "units": [acc([1], 0.05, 0.93, **cost(400.0, 6000))],
    },
    ("toy", "retrain_prompt", 0, "attacks/mia"): {
        "units": [unit([1], **{"mia.loss_auc": 0.48})],
    },
    # the prompt model: five units over two seeds; deleting a prompt removes its elements
    ("toy", "pfm", 0, "unlearn"): {
        "num_classes": 4, "cost.flops_per_sample": 2_500_000,
        "units": [
            acc([0], 0.1, 0.90, **cost(0.001, 32)),
            acc([1], 0.2, 0.92, **cost(0.002, 32)),
            acc([2], 0.3, 0.88, **cost(0.003, 32)),
        ],
    },
    ("toy", "pfm", 1, "unlearn"): {
        "num_classes": 4, "cost.flops_per_sample": 2_500_000,
        "units": [acc([0], 0.1, 0.91, **cost(0.002, 32)), acc([3], 0.3, 0.89, **cost(0.002, 32))],
    },
    ("toy", "pfm", 0, "attacks/mia"): {
        "units": [unit([0], **{"mia.loss_auc": 0.6}), unit([1], **{"mia.loss_auc": 0.7})],
    },
    ("toy", "pfm", 0, "eval"): {  # the evaluate stage: more draws, read as eval.*
        "k1.forget_acc.mean": 0.15, "k1.forget_acc.std": 0.05,
        "units": [acc([c], f, 0.9) for c, f in enumerate([0.1, 0.2, 0.1, 0.2])]
        + [acc([0, 1], 0.4, 0.8), acc([2, 3], 0.5, 0.7)],
    },
    ("toy", "pfm", 0, "train"): {"epochs": 2, "train_seconds": 3.0},
    ("toy", "pfm", 1, "train"): {"epochs": 2, "train_seconds": 5.0},
    # a plain baseline with one draw (seed 1, classes [2]) the reference never ran
    ("toy", "scrub", 0, "unlearn"): {
        "num_classes": 4, "cost.flops_per_sample": 1_000_000, "no_forget.full_bank.acc": 0.92,
        "units": [
            acc([0], 0.05, 0.60, **cost(50.0, 5000)), acc([1], 0.04, 0.62, **cost(50.0, 5000)),
        ],
    },
    ("toy", "scrub", 1, "unlearn"): {
        "num_classes": 4, "cost.flops_per_sample": 1_000_000, "no_forget.full_bank.acc": 0.92,
        "units": [acc([2], 0.5, 0.10, **cost(50.0, 5000))],
    },
    ("toy", "scrub", 0, "attacks/mia"): {"units": [unit([0], **{"mia.loss_auc": 0.9})]},
    # changes nothing, and its forgotten accuracy stays at the no-forget level: a no-op
    ("toy", "ssd", 0, "unlearn"): {
        "num_classes": 4, "cost.flops_per_sample": 1_000_000, "no_forget.full_bank.acc": 0.92,
        "units": [
            acc([0], 0.95, 0.91, **cost(7.0, 0)),
            acc([1], 0.88, 0.92, **cost(7.0, 0)),
            acc([2], 0.93, 0.93, **cost(7.0, 0)),
        ],
    },
    # changes no parameter but its forgotten accuracy is far below the no-forget level
    ("toy", "zero_change", 0, "unlearn"): {
        "num_classes": 4, "no_forget.full_bank.acc": 0.92,
        "units": [
            acc([0], 0.0, 0.5, **cost(1.0, 0)),
            acc([1], 0.01, 0.5, **cost(1.0, 0)),
            acc([2], 0.0, 0.5, **cost(1.0, 0)),
        ],
    },
    # the plain classifier's training run: no metric of any table
    ("toy", "plain", 0, "train"): {"epochs": 10, "trainable_params": 5000},
    # a second dataset where only the prompt model ran: one unit, no reference
    ("other", "pfm", 0, "unlearn"): {"num_classes": 3, "units": [acc([2], 0.3, 0.7)]},
}  # fmt: skip


def summarised(folders: list[Path | tuple[str, Path]]) -> dict[str, float]:
    return summarise(collect(folders), MARGINS)


def write(root: Path, folder: str, dataset: str, method: str, seed: int, payload: dict) -> None:
    """One metrics file; an unlearn file names its method's declaration, as the stage's do
    (a file of another stage takes it from there)."""
    path = root / folder / dataset / method / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder == "unlearn":
        payload = {**declared(Path(method).name), **payload}
    path.write_text(json.dumps(payload))


def write_metrics(root: Path) -> list[Path | tuple[str, Path]]:
    for (dataset, method, seed, folder), payload in FILES.items():
        write(root, folder, dataset, method, seed, payload)
    return [root / "train", ("eval", root / "eval"), root / "unlearn", root / "attacks", root / "x"]


@pytest.fixture
def summary(tmp_path: Path) -> dict[str, float]:
    return summarised(write_metrics(tmp_path))


def parse_tables(markdown: str) -> dict[str, dict[str, dict[str, dict[str, str]]]]:
    """dataset → table heading → first column → column title → cell text."""
    tables: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    dataset, heading, header = None, None, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            dataset, heading, header = line[3:].split(" ")[0], None, None
        elif line.startswith("### "):
            heading, header = line[4:], None
        elif line.startswith("|") and dataset is not None:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            elif not set(line) <= set("|-: "):
                rows = tables.setdefault(dataset, {}).setdefault(heading, {})
                key = " / ".join(cells[:3]) if header[1] == "capability" else cells[0]
                rows[key] = dict(zip(header, cells, strict=True))
    return tables


def k_table(markdown: str, dataset: str = "toy", k: int = 1) -> dict[str, dict[str, str]]:
    """The headline table."""
    return parse_tables(markdown)[dataset][f"Forget-k, k = {k} (test split)"]


def cost_table(markdown: str, dataset: str = "toy", k: int = 1) -> dict[str, dict[str, str]]:
    return parse_tables(markdown)[dataset][f"Cost, k = {k}"]


def test_units_nest_in_seeds(summary: dict[str, float]) -> None:
    """pfm's forgotten acc: seed 0 (0.1, 0.2, 0.3) and seed 1 (0.1, 0.3) both average
    0.2, so the interval over seeds has width 0 (pooling the five sets would give ± 0.124);
    scrub's seeds average 0.045 and 0.5, and two seeds give t(0.975, 1) = 12.7."""
    assert summary["toy.pfm.k1.forget_acc.n"] == 5 and summary["toy.pfm.k1.forget_acc.seeds"] == 2
    assert summary["toy.pfm.k1.forget_acc.mean"] == pytest.approx(0.2)
    assert summary["toy.pfm.k1.forget_acc.ci95"] == pytest.approx(0.0, abs=1e-12)
    scrub_std = (0.5 - 0.045) / math.sqrt(2)  # sample std of the two seed means
    assert summary["toy.scrub.k1.forget_acc.mean"] == pytest.approx((0.045 + 0.5) / 2)
    assert summary["toy.scrub.k1.forget_acc.std"] == pytest.approx(scrub_std)
    assert summary["toy.scrub.k1.forget_acc.ci95"] == pytest.approx(
        T_975[1] * scrub_std / math.sqrt(2)
    )
    assert summary["toy.pfm.k1.cost.trainable_params.mean"] == 32
    assert (
        summary["toy.pfm.draws.unlearn.k1.n"] == 5
        and summary["toy.pfm.draws.unlearn.k1.seeds"] == 2
    )
    # the evaluate stage's units replace its flat keys of the same name
    assert summary["toy.pfm.eval.k1.forget_acc.n"] == 4  # one seed: over its forget sets
    assert summary["toy.pfm.eval.k1.forget_acc.seeds"] == 1
    assert summary["toy.pfm.eval.k1.forget_acc.mean"] == pytest.approx(0.15)
    assert summary["toy.pfm.eval.k1.forget_acc.std"] == pytest.approx(
        np.std([0.1, 0.2] * 2, ddof=1)
    )
    assert summary["toy.pfm.eval.k2.forget_acc.n"] == 2 and summary["toy.pfm.draws.eval.k2.n"] == 2
    assert summary["toy.pfm.k1.mia.loss_auc.n"] == 2 and summary["toy.pfm.draws.mia.k1.n"] == 2
    # a lone unit has no interval: NaN, written as null
    assert summary["other.pfm.k1.forget_acc.n"] == 1
    assert math.isnan(summary["other.pfm.k1.forget_acc.ci95"])
    assert to_json(summary)["other.pfm.k1.forget_acc.ci95"] is None


def test_null_metrics_are_skipped_for_that_metric_only(tmp_path: Path) -> None:
    units = [acc([0], None, 0.9), acc([1], 0.2, 0.8), acc([2], float("nan"), 0.7)]
    write(tmp_path, "unlearn", "toy", "ga", 0, {"units": units})
    summary = summarised([tmp_path / "unlearn"])
    assert summary["toy.ga.k1.forget_acc.n"] == 1 and summary["toy.ga.k1.forget_acc.mean"] == 0.2
    assert summary["toy.ga.k1.retain_acc.n"] == 3 and summary["toy.ga.draws.unlearn.k1.n"] == 3


def test_flat_keys_without_units_still_pool_over_seeds(summary: dict[str, float]) -> None:
    assert summary["toy.pfm.train_seconds.mean"] == 4.0
    assert summary["toy.pfm.train_seconds.std"] == 1.0  # population std over the seeds
    assert summary["toy.pfm.seeds"] == 2 and summary["toy.retrain_prompt.seeds"] == 1
    assert summary["toy.pfm.cost.flops_per_sample.mean"] == 2_500_000
    assert summary["toy.plain.trainable_params.mean"] == 5000


def test_families_and_references_are_read_from_the_files(summary: dict[str, float]) -> None:
    """Each run's declaration, written by its unlearn file, reaches the summary; its MIA,
    eval and train files (which write none) share it."""
    found = declarations(summary, "toy")
    assert found["pfm"].family == "prompt" and found["pfm"].reference == "retrain_prompt"
    assert found["retrain_prompt"].reference == "retrain_prompt"  # its own reference
    assert found["scrub"].family == "plain" and found["scrub"].reference == "retrain"
    assert summary["toy.pfm.reference.retrain_prompt"] == 1.0
    assert "plain" not in found  # a training run only: compared with nothing
    assert "toy.pfm.k1.mia.loss_auc.gap_to_reference" in summary  # the MIA file's units


def test_a_prompt_family_method_of_any_name_is_compared_with_retrain_prompt(
    tmp_path: Path,
) -> None:
    """No name rule: a method whose name has no known prefix but declares the prompt family
    is paired with ``retrain_prompt``, not ``retrain``."""
    write_metrics(tmp_path)
    payload = {**declared("novel", "prompt"), "units": [acc([1], 0.25, 0.90, **cost(0.5, 32))]}
    write(tmp_path, "x", "toy", "novel", 0, payload)
    summary = summarised([tmp_path / "unlearn", tmp_path / "x"])
    # retrain_prompt on (seed 0, [1]): 0.05 / 0.93; retrain there: 0.0 / 0.92
    assert summary["toy.novel.k1.forget_acc.gap_to_reference"] == pytest.approx(0.20)
    assert summary["toy.novel.k1.retain_acc.gap_to_reference"] == pytest.approx(0.03)
    assert summary["toy.novel.k1.rte"] == pytest.approx(0.5 / 400)
    methods = ["scrub", "retrain", "novel", "retrain_prompt", "pfm"]
    assert ordered_methods(summary, "toy", methods) == [
        "pfm", "novel", "retrain_prompt", "retrain", "scrub",
    ]  # fmt: skip


def test_a_run_with_units_and_no_declaration_is_an_error(tmp_path: Path) -> None:
    write(
        tmp_path, "attacks/mia", "toy", "ghost", 0, {"units": [unit([0], **{"mia.loss_auc": 0.5})]}
    )
    with pytest.raises(ValueError, match="toy.ghost says its family and reference"):
        summarised([tmp_path / "attacks"])


def test_conflicting_declarations_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, "unlearn", "toy", "scrub", 0, {"units": [acc([0], 0.1, 0.9)]})
    write(tmp_path, "x", "toy", "scrub", 1, {**declared("scrub", "prompt"), "epochs": 1})
    with pytest.raises(ValueError, match="declares"):
        collect([tmp_path / "unlearn", tmp_path / "x"])
    write(tmp_path, "y", "toy", "ssd", 0, {"family": "plain"})
    with pytest.raises(ValueError, match="must both be non-empty strings"):
        collect([tmp_path / "y"])


def test_the_prompt_model_is_measured_against_retrain_prompt(summary: dict[str, float]) -> None:
    """Only the shared unit (seed 0, classes [1]) counts: pfm 0.2 / 0.92 / MIA 0.7 vs
    retrain_prompt 0.05 / 0.93 / 0.48. Against the plain `retrain` (another model) the
    forgotten-acc gap would be 0.196 over five units."""
    assert summary["toy.pfm.k1.forget_acc.gap_to_reference"] == pytest.approx(0.15)
    assert summary["toy.pfm.k1.retain_acc.gap_to_reference"] == pytest.approx(0.01)
    assert summary["toy.pfm.k1.mia.loss_auc.gap_to_reference"] == pytest.approx(0.22)
    assert summary["toy.pfm.k1.avg_gap_to_reference"] == pytest.approx((0.15 + 0.01 + 0.22) / 3)
    assert summary["toy.pfm.k1.gap.n"] == 1
    assert summary["toy.pfm.k1.rte"] == pytest.approx(0.002 / 400)  # retrain_prompt: training s


def test_gap_is_paired_on_the_shared_units_only(summary: dict[str, float]) -> None:
    """scrub's seed-1 draw [2] (forgotten 0.5, retained 0.1) has no retrain unit: it
    stays out of the gap, though it is in scrub's own mean."""
    forget, retain, mia = 0.045, 0.91 - 0.61, 0.9 - 0.5
    assert summary["toy.scrub.k1.forget_acc.gap_to_reference"] == pytest.approx(forget)
    assert summary["toy.scrub.k1.retain_acc.gap_to_reference"] == pytest.approx(retain)
    assert summary["toy.scrub.k1.mia.loss_auc.gap_to_reference"] == pytest.approx(mia)
    assert summary["toy.scrub.k1.avg_gap_to_reference"] == pytest.approx(
        (forget + retain + mia) / 3
    )
    assert summary["toy.scrub.k1.gap.n"] == 1  # MIA: one shared unit
    assert summary["toy.scrub.k1.rte"] == pytest.approx(50.0 / 100.0)
    assert "toy.ssd.k1.mia.loss_auc.gap_to_reference" not in summary  # never attacked
    assert not any(".gap" in key or ".rte" in key for key in summary if key.startswith("other."))


def test_rte_is_relative_to_the_reference() -> None:
    assert rte(2.0, 8.0) == 0.25 and rte(8.0, 8.0) == 1.0
    with pytest.raises(ValueError, match="reference seconds"):
        rte(1.0, 0.0)


def test_paired_differences_and_verdicts(summary: dict[str, float]) -> None:
    """Forgotten acc, method − retrain on the units both have (all of seed 0 here):
    ssd (0.95, 0.88, 0.93) − (0, 0, 0.02) is apart; zero_change (0, 0.01, 0) − (0, 0,
    0.02) = (0, 0.01, −0.02) lies inside ±0.05: equivalent; scrub's two shared sets give
    (0.05, 0.04), whose interval (t(0.975, 1) = 12.7) reaches below 0: inconclusive."""
    ssd = [0.95, 0.88, 0.91]
    assert summary["toy.ssd.k1.forget_acc.diff.mean"] == pytest.approx(np.mean(ssd))
    half = T_975[2] * np.std(ssd, ddof=1) / math.sqrt(3)
    assert summary["toy.ssd.k1.forget_acc.diff.lo"] == pytest.approx(np.mean(ssd) - half)
    assert summary["toy.ssd.k1.forget_acc.diff.hi"] == pytest.approx(np.mean(ssd) + half)
    assert (
        summary["toy.ssd.k1.forget_acc.diff.seeds"],
        summary["toy.ssd.k1.forget_acc.diff.sets"],
    ) == (1, 3)
    assert summary["toy.ssd.k1.forget_acc.verdict"] == -1  # apart
    assert summary["toy.zero_change.k1.forget_acc.verdict"] == 1  # equivalent
    assert summary["toy.zero_change.k1.retain_acc.verdict"] == -1  # 0.5 vs 0.9
    assert summary["toy.scrub.k1.forget_acc.verdict"] == 0  # inconclusive
    assert summary["toy.scrub.k1.forget_acc.diff.sets"] == 2  # seed 1's [2]: no retrain unit
    # pfm against retrain_prompt: one shared unit, no interval, inconclusive
    assert summary["toy.pfm.k1.forget_acc.diff.mean"] == pytest.approx(0.15)
    assert math.isnan(summary["toy.pfm.k1.forget_acc.diff.lo"])
    assert summary["toy.pfm.k1.forget_acc.verdict"] == 0
    assert summary["toy.pfm.k1.mia.loss_auc.diff.mean"] == pytest.approx(0.22)
    assert "toy.retrain.k1.forget_acc.verdict" not in summary  # a reference: none
    assert not any(key.endswith(".overlaps_reference") for key in summary)


def test_no_op_flag(summary: dict[str, float]) -> None:
    assert summary["toy.ssd.k1.no_op"] == 1.0  # 0 changed, forgotten acc as before (0.92)
    assert summary["toy.zero_change.k1.no_op"] == 0.0  # 0 changed, yet forgotten acc fell
    assert summary["toy.pfm.k1.no_op"] == 0.0  # deleting prompt rows is a change
    assert summary["toy.scrub.k1.no_op"] == 0.0 and summary["toy.retrain.k1.no_op"] == 0.0


def test_a_per_class_no_forget_accuracy_is_preferred(tmp_path: Path) -> None:
    """Before forgetting, the forgotten classes were at 0.1 (the model never learnt
    them): 0 changed elements and a forgotten acc of 0.1 is a no-op, although the
    model-wide no-forget accuracy (0.9) is far away."""
    units = [
        acc([c], 0.1 + 0.01 * c, 0.9, **cost(1.0, 0), **{"no_forget.forget_acc": 0.1})
        for c in range(3)
    ]
    write(tmp_path, "unlearn", "toy", "noop", 0, {"units": units, "no_forget.full_bank.acc": 0.9})
    assert summarised([tmp_path / "unlearn"])["toy.noop.k1.no_op"] == 1.0


@pytest.mark.parametrize(
    ("forgotten", "flag"),
    [
        ((0.9, 0.95, 0.92), 1.0),  # every prediction as before: equivalent, a no-op
        ((0.3, 0.9, 0.95), 0.0),  # one class forgotten, the others not: inconclusive
    ],
)
def test_a_change_no_prediction_follows_is_a_no_op(
    tmp_path: Path, forgotten: tuple[float, ...], flag: float
) -> None:
    """Prefixes that no prediction follows (PI-Prefix on spoken-words) change 12,288
    elements and forget nothing: flagged when the forgotten accuracy is equivalent to its
    accuracy before forgetting, not when a change may have forgotten part of it."""
    before = (0.9, 0.95, 0.92)
    units = [
        acc([c], f, 0.9, **cost(1.0, 12_288), **{"no_forget.forget_acc": b})
        for c, (f, b) in enumerate(zip(forgotten, before, strict=True))
    ]
    write(tmp_path, "unlearn", "toy", "inert", 0, {"units": units})
    assert summarised([tmp_path / "unlearn"])["toy.inert.k1.no_op"] == flag


def header_for(tmp_path: Path, units: dict[str, list[dict]]) -> list[str]:
    for method, records in units.items():
        write(tmp_path, "unlearn", "toy", method, 0, {"units": records})
    sets = [[c] for c in range(4)] + [[0, 1], [1, 2]]  # four at k = 1, two at k = 2
    evaluated = [acc(classes, 0.1, 0.9) for classes in sets]
    write(tmp_path, "eval", "toy", "pfm", 0, {"units": evaluated})
    summary = summarised([tmp_path / "unlearn", ("eval", tmp_path / "eval")])
    params = {
        "datasets": ["toy"], "seeds": [0], "model": {"backbone": "vit-tiny"},
        "train": {"epochs": 2}, "evaluate": {"max_sets": 10},
    }  # fmt: skip
    return provenance(params, replace(CONFIG, profile="test profile"), "abc1234", summary)


def test_header_states_n_from_the_units_not_from_params(tmp_path: Path) -> None:
    five = [acc([c], 0.1, 0.9) for c in range(5)]
    units = {"pfm": five, "scrub": five, "retrain": five, "retrain_prompt": five[:1]}
    header = header_for(tmp_path, units)
    text = "\n".join(header)
    assert (
        "toy, unlearn, k = 1: 5 forget sets × 1 seed (n = 5) per method; "
        "retrain_prompt: 1 forget set × 1 seed (n = 1)"
    ) in header
    assert "toy, evaluate, k = 1: pfm: 4 forget sets × 1 seed (n = 4)" in header
    assert "toy, evaluate, k = 2: pfm: 2 forget sets × 1 seed (n = 2)" in header
    assert "10" not in text  # evaluate.max_sets is a cap, not what ran
    assert any(line.startswith("Intervals: 95% Student-t CI") for line in header)
    assert "profile: test profile" in text and "`abc1234`" in text and "`vit-tiny`" in text


def test_header_states_the_recovery_budget_and_each_datasets_own(tmp_path: Path) -> None:
    params = {
        "datasets": ["toy", "other"], "seeds": [0], "model": {"backbone": "b"},
        "train": {"epochs": 1},
        "attacks": {"recovery": {
            "budget": {"prompt": {"steps": 40, "lr": 0.1}, "head": {"steps": 40, "lr": 0.001}},
            "prototype_weight": 0.25,
            "by_dataset": {
                "toy": {"budget": {"prompt": {"steps": 40, "lr": 0.001}}},
                "unlisted": {"prototype_weight": 0.5},
                "other": {},
            },
        }},
    }  # fmt: skip
    header = provenance(params, replace(CONFIG, profile="p"), "c", {})
    assert (
        "recovery budget (Adam steps × lr), fixed in advance: prompt 40 × 0.1, "
        "head 40 × 0.001; prototype weight 0.25"
    ) in header
    own = [line for line in header if "own recovery budget" in line]
    assert own == ["toy's own recovery budget (by_dataset), in place of those: prompt 40 × 0.001"]
    del params["attacks"]
    assert not any("budget" in line for line in provenance(params, CONFIG, "c", {}))


def test_header_names_uneven_seeds(summary: dict[str, float]) -> None:
    params = {
        "datasets": ["toy"],
        "seeds": [0, 1],
        "model": {"backbone": "b"},
        "train": {"epochs": 1},
    }
    header = provenance(params, replace(CONFIG, profile="p"), "c", summary)
    line = next(x for x in header if x.startswith("toy, unlearn, k = 1:"))
    assert line.startswith("toy, unlearn, k = 1: 5 forget sets over 2 seeds (n = 5) per method; ")
    assert "; scrub: 3 forget sets over 2 seeds (n = 3)" in line
    assert "; ssd: 3 forget sets × 1 seed (n = 3)" in line and "retrain:" not in line


def test_cells_state_n_and_print_no_interval_for_one_unit() -> None:
    assert cell(estimate([0.1, 0.2, 0.3]), "fraction") == "0.200 ± 0.248 (n=3)"
    assert cell(Estimate(0.109, 1), "fraction") == "0.109 (n=1)"
    assert cell(Estimate(0.109), "fraction") == "0.109"  # a key without units
    assert cell(Estimate(92_500_224.0), "count") == "92.5M" and cell(None, "fraction") == "—"


def test_cells_show_n_only_where_it_differs_from_the_stated_one() -> None:
    assert cell(estimate([0.1, 0.2, 0.3]), "fraction", 3) == "0.200 ± 0.248"
    assert cell(estimate([0.1, 0.2, 0.3]), "fraction", 5) == "0.200 ± 0.248 (n=3)"
    assert cell(Estimate(0.109, 1), "fraction", 5) == "0.109 (n=1)"  # no spread at n = 1
    assert cell(Estimate(0.109, 1), "fraction", 1) == "0.109"
    assert cell(Estimate(0.109), "fraction", 5) == "0.109"
    assert usual_n([Estimate(0.1, 5), Estimate(0.2, 3), Estimate(0.3, 3), None, "x"]) == 3
    assert usual_n([Estimate(0.1, 5), Estimate(0.2, 3)]) == 5  # a tie: the larger
    assert usual_n([Estimate(0.1), None]) is None


def test_headline_table(summary: dict[str, float]) -> None:
    markdown = render(summary, CONFIG, [], {"toy": {"accuracy vs k": "figures/toy/a.png"}})
    assert "![accuracy vs k](figures/toy/a.png)" in markdown
    assert "## other (3 classes)" in markdown and "## toy (4 classes)" in markdown
    toy = k_table(markdown)
    assert list(toy) == [
        "pfm",
        "retrain_prompt (reference)",
        "retrain (reference)",
        "scrub",
        "ssd",
        "zero_change",
    ]  # fmt: skip  (plain: no metric of this table, left out)
    assert list(toy["pfm"]) == [
        "method", "forgotten acc ≈R", "retained acc ↑", "gap to ref. ↓", "MIA loss_auc ≈R",
        "unlearn s ↓", "RTE",
    ]  # fmt: skip
    # n = 3 is the toy's usual n (scrub, ssd, zero_change): stated once, shown elsewhere
    assert markdown.count("Cells: n = 3 unless marked `(n=…)`.") == 1
    pfm, ref = toy["pfm"], toy["retrain_prompt (reference)"]
    assert pfm["forgotten acc ≈R"] == "0.200 ± 0.000 (n=5)"  # both seeds average 0.2
    assert ref["forgotten acc ≈R"] == "0.050 (n=1)"  # one unit: no ±
    assert toy["scrub"]["retained acc ↑"] == "0.355 ± 3.240"  # 2 seeds; the stated n: not repeated
    assert pfm["gap to ref. ↓"] == "0.127 (n=1)"
    assert pfm["MIA loss_auc ≈R"] == "0.650 ± 0.635 (n=2)"
    assert toy["ssd"]["MIA loss_auc ≈R"] == "—"
    assert pfm["unlearn s ↓"] == "**0.002 ± 0 (n=5)**"  # apart from the rest
    assert pfm["RTE"] == "5e-06"
    assert "References: `retrain_prompt` for the prompt model's rows, `retrain`" in markdown
    assert "MIA: loss_auc, the primary variant fixed in advance" in markdown
    assert list(k_table(markdown, "other")) == ["pfm"]
    assert k_table(markdown, "other")["pfm"]["gap to ref. ↓"] == "—"
    assert "Cells: n = 1 unless marked" in markdown  # other: a single unit


def test_every_headline_has_at_most_8_columns_and_no_empty_row(summary: dict[str, float]) -> None:
    markdown = render(summary, CONFIG, [], {})
    for tables in parse_tables(markdown).values():
        headline = tables["Forget-k, k = 1 (test split)"]
        for row in headline.values():
            assert len(row) <= 8
            assert any(value != "—" for title, value in row.items() if title != "method")


def test_the_prompt_family_and_the_references_come_first(tmp_path: Path) -> None:
    methods = ["ssd", "retrain", "pfm_x", "scrub", "retrain_prompt", "pfm_defended", "pfm"]
    for method in methods:
        write(tmp_path, "unlearn", "toy", method, 0, {"units": [acc([0], 0.1, 0.9)]})
    summary = summarised([tmp_path / "unlearn"])
    assert ordered_methods(summary, "toy", methods) == [
        "pfm", "pfm_defended", "pfm_x", "retrain_prompt", "retrain", "scrub", "ssd",
    ]  # fmt: skip


def test_cost_table(summary: dict[str, float]) -> None:
    cost = cost_table(render(summary, CONFIG, [], {}))
    pfm = cost["pfm"]
    assert pfm["unlearn s ↓"] == "**0.002 ± 0 (n=5)**"
    assert pfm["RTE"] == "5e-06"
    assert pfm["params changed"] == "32 ± 0 (n=5)"
    assert pfm["FLOPs/sample ↓"] == "2.5M"
    assert cost["ssd"]["flag"] == "no-op: changed nothing" and cost["zero_change"]["flag"] == ""


def test_the_headline_mia_is_fixed_in_advance(tmp_path: Path) -> None:
    """Variant b separates the methods from the reference and a does not, yet the
    headline shows the params' primary variant a: no choice after seeing the results.
    The attack table keeps every variant, with b's verdicts under it."""

    def attacked(method: str, a: float, b: float) -> None:
        units = [unit([c], **{"mia.a": a + 0.01 * c, "mia.b": b + 0.01 * c}) for c in range(3)]
        write(tmp_path, "attacks/mia", "toy", method, 0, {"units": units})
        write(tmp_path, "unlearn", "toy", method, 0, {"units": [acc([0], 0.0, 0.9)]})

    attacked("retrain", 0.5, 0.5)
    attacked("scrub", 0.51, 0.9)
    attacked("ssd", 0.5, 0.1)
    config = replace(CONFIG, primary_mia="a")
    markdown = render(summarised([tmp_path / "unlearn", tmp_path / "attacks"]), config, [], {})
    assert "MIA a ≈R" in k_table(markdown)["scrub"] and "MIA b ≈R" not in k_table(markdown)["scrub"]
    assert "MIA: a, the primary variant fixed in advance" in markdown
    assert "- MIA a (k=1), method − reference (margin ±0.05): equivalent: scrub +0.010 " in markdown
    mia = parse_tables(markdown)["toy"]["Membership inference, k = 1"]
    assert list(mia["scrub"]) == ["method", "MIA a ≈R", "MIA b ≈R"]
    b_line = next(x for x in markdown.splitlines() if x.startswith("- MIA b (k=1)"))
    assert "apart: scrub +0.400 [+0.400, +0.400] (1 seed × 3 sets), ssd -0.400" in b_line


def recovery(classes: list[int], capability: str, m: int, **changes: float | None) -> dict:
    """A recovery unit (the attack stage's fields) that passes both checks unless changed."""
    return unit(classes, capability=capability, m=m, **{**RECOVERY_RECORD, **changes})


def test_the_headline_residual_is_the_largest_that_passes_the_checks(tmp_path: Path) -> None:
    """pfm: prompt_head (0.6) collapsed on the reference, head (0.5) is unspecific, so
    prompt (0.4) is its largest valid residual; scrub's only attack collapsed: none passed.
    Nothing is chosen by capability."""
    write(tmp_path, "attacks/recovery", "toy", "pfm", 0, {"units": [
        recovery([c], "prompt_head", 1, residual=0.6, reference_collapsed=float(c == 1))
        for c in range(3)
    ] + [recovery([c], "head", 1, residual=0.5, noise_to_recovered=0.5) for c in range(3)]
      + [recovery([c], "prompt", 0, residual=0.4 + 0.01 * c) for c in range(3)]})  # fmt: skip
    write(tmp_path, "attacks/recovery", "toy", "scrub", 0, {"units": [
        recovery([c], "head_lora", 1, residual=0.9, collapsed=1.0) for c in range(3)
    ]})  # fmt: skip
    for method in ("pfm", "scrub"):
        write(tmp_path, "unlearn", "toy", method, 0, {"units": [acc([0], 0.0, 0.9)]})
    summary = summarised([tmp_path / "unlearn", tmp_path / "attacks"])
    assert summary["toy.pfm.recovery.prompt.k1.m0.residual.verdict"] == -1  # apart from 0
    assert summary["toy.pfm.recovery.prompt.k1.m0.residual.diff.mean"] == pytest.approx(0.41)
    markdown = render(summary, CONFIG, [], {})
    toy = k_table(markdown)
    assert toy["pfm"]["max valid residual"] == "0.410 ± 0.025 (n=3)"
    assert toy["scrub"]["max valid residual"] == "—"
    line = next(x for x in markdown.splitlines() if x.startswith("- Largest recovery residual"))
    assert "pfm +0.410 [+0.385, +0.435] (1 seed × 3 sets) by prompt m = 0, apart" in line
    assert "no attack passed: scrub (collapse)." in line
    ladder = parse_tables(markdown)["toy"]["Recovery attack, k = 1"]
    assert ladder["pfm / prompt_head / 1"]["checks"] == "collapse"
    assert ladder["pfm / head / 1"]["checks"] == "unspecific"
    assert ladder["pfm / prompt / 0"]["checks"] == "pass"
    assert ladder["pfm / prompt / 0"]["verdict"] == "apart"
    assert "within" not in markdown


def test_ties_are_not_bolded_only_clear_wins_are(tmp_path: Path) -> None:
    def retained(method: str, values: list[float]) -> None:
        units = [acc([c], 0.0, v, **cost(1.0 + c, 10)) for c, v in enumerate(values)]
        write(tmp_path, "unlearn", "toy", method, 0, {"units": units})

    retained("a", [0.80, 0.90, 0.85])  # best mean, but within b's interval: a tie
    retained("b", [0.79, 0.89, 0.84])
    retained("retrain", [0.99, 0.99, 0.99])  # the reference never competes
    markdown = render(summarised([tmp_path / "unlearn"]), CONFIG, [], {})
    toy = k_table(markdown)
    assert toy["a"]["retained acc ↑"] == "0.850 ± 0.124"  # not bold
    cells = [
        v for t in parse_tables(markdown)["toy"].values() for r in t.values() for v in r.values()
    ]
    assert not any("**" in c for c in cells)  # in no table: a, b tie on seconds too
    retained("b", [0.20, 0.21, 0.22])  # now the runner-up's interval is apart from a's
    retained("c", [0.10, 0.11, 0.12])
    toy = k_table(render(summarised([tmp_path / "unlearn"]), CONFIG, [], {}))
    assert toy["a"]["retained acc ↑"] == "**0.850 ± 0.124**"
    assert toy["retrain (reference)"]["retained acc ↑"] == "0.990 ± 0.000"


def test_equal_values_without_spread_are_a_tie(tmp_path: Path) -> None:
    """a and b both forget everything in every unit (0 ± 0): neither wins."""
    for method, forgotten in (("a", 0.0), ("b", 0.0), ("c", 0.5), ("retrain", 0.0)):
        units = [acc([i], forgotten, 0.9) for i in range(3)]
        write(tmp_path, "unlearn", "toy", method, 0, {"units": units})
    toy = k_table(render(summarised([tmp_path / "unlearn"]), CONFIG, [], {}))
    assert toy["a"]["forgotten acc ≈R"] == "0.000 ± 0.000" == toy["b"]["forgotten acc ≈R"]


def test_n1_values_never_win_nor_let_another_win(tmp_path: Path) -> None:
    """a is apart from the runner-up b, but c's single unit has no interval: it could
    be anywhere, so a's lead is not established."""
    for method, values in (("a", [0.9] * 3), ("b", [0.5] * 3), ("c", [0.1])):
        units = [acc([i], 0.0, v) for i, v in enumerate(values)]
        write(tmp_path, "unlearn", "toy", method, 0, {"units": units})
    toy = k_table(render(summarised([tmp_path / "unlearn"]), CONFIG, [], {}))
    assert toy["a"]["retained acc ↑"] == "0.900 ± 0.000"
    assert toy["c"]["retained acc ↑"] == "0.100 (n=1)"
    two = [acc([0], 0.0, 0.1), acc([1], 0.0, 0.1)]  # now c has an interval (of width 0)
    write(tmp_path, "unlearn", "toy", "c", 0, {"units": two})
    toy = k_table(render(summarised([tmp_path / "unlearn"]), CONFIG, [], {}))
    assert toy["a"]["retained acc ↑"] == "**0.900 ± 0.000**"


def test_keys_without_units_never_win_but_exact_counts_do(tmp_path: Path) -> None:
    """Files from before units: their means carry no interval, so none is bold; FLOPs
    are an exact count, so a strictly smaller one is a win."""
    for method, retained, flops in (("a", 0.9, 1e6), ("b", 0.5, 2e6), ("c", 0.4, 2e6)):
        flat = {"k1.retain_acc.mean": retained, "k1.retain_acc.std": 0.0}
        write(tmp_path, "unlearn", "toy", method, 0, {**flat, "cost.flops_per_sample": flops})
    markdown = render(summarised([tmp_path / "unlearn"]), CONFIG, [], {})
    assert k_table(markdown)["a"]["retained acc ↑"] == "0.900"
    cost = cost_table(markdown)
    assert cost["a"]["FLOPs/sample ↓"] == "**1M**" and cost["b"]["FLOPs/sample ↓"] == "2M"


def test_finding_lines_give_the_three_verdicts(summary: dict[str, float]) -> None:
    markdown = render(summary, CONFIG, [], {})
    forgotten = next(x for x in markdown.splitlines() if x.startswith("- Forgotten acc (k=1)"))
    assert forgotten == (
        "- Forgotten acc (k=1), method − reference (margin ±0.05): "
        "equivalent: zero_change -0.003 [-0.041, +0.035] (1 seed × 3 sets); "
        "apart: ssd +0.913 [+0.826, +1.001] (1 seed × 3 sets); "
        "inconclusive: pfm +0.150, no interval (1 seed × 1 set), "
        "scrub +0.045 [-0.019, +0.109] (1 seed × 2 sets). "
        "One seed: its intervals describe variation across forget sets of one trained "
        "model, not across training runs."
    )
    retained = next(x for x in markdown.splitlines() if x.startswith("- Retained acc (k=1)"))
    assert "equivalent: none; apart: scrub -0.300 [-0.300, -0.300] (1 seed × 2 sets), " in retained
    assert "- MIA loss_auc (k=1), method − reference" in markdown
    no_op = (
        "- No-op (forgotten acc equivalent to before forgetting, or no parameter changed and "
        "not apart from it): ssd."
    )
    assert no_op in markdown
    assert "within" not in markdown and "overlap" not in markdown


def test_finding_lines_say_none_and_inconclusive(tmp_path: Path) -> None:
    for method, units in (("a", 3), ("retrain", 1), ("b", 1)):
        records = [acc([i], 0.1, 0.9) for i in range(units)]
        write(tmp_path, "unlearn", "toy", method, 0, {"units": records})
    markdown = render(summarised([tmp_path / "unlearn"]), CONFIG, [], {})
    assert (
        "- Forgotten acc (k=1), method − reference (margin ±0.05): equivalent: none; "
        "apart: none; inconclusive: a +0.000, no interval (1 seed × 1 set), "
        "b +0.000, no interval (1 seed × 1 set)."
    ) in markdown


RECOVERY_RECORD = {
    "acc": 0.9, "reference_acc": 0.1, "residual": 0.8, "oracle_acc": 0.95,
    "reference_oracle_acc": 0.2, "pre_retain_acc": 0.9, "retain_acc": 0.8,
    "reference_pre_retain_acc": 0.9, "reference_retain_acc": 0.85, "collapsed": 0.0,
    "reference_collapsed": 0.0, "retain_to_recovered": 0.02, "noise_to_recovered": 0.1,
    "ood_to_recovered": 0.05, "reference_retain_to_recovered": 0.01,
    "reference_noise_to_recovered": 0.1, "reference_ood_to_recovered": 0.0,
    "relearn_steps": 10, "relearned": 1,
}  # fmt: skip


def test_recovery_table_per_method_capability_and_m(tmp_path: Path) -> None:
    write(tmp_path, "attacks/recovery", "toy", "pfm", 0, {**declared("pfm"), "units": [
        recovery([0], "prompt", 1, residual=0.7), recovery([1], "prompt", 1, residual=0.9),
        recovery([0], "head", 0, relearn_steps=None), recovery([0, 1], "prompt", 5),
        recovery([1], "prototype", 0, ood_to_recovered=None),
    ]})  # fmt: skip
    summary = summarised([tmp_path / "attacks"])
    assert summary["toy.pfm.recovery.prompt.k1.m1.residual.mean"] == pytest.approx(0.8)
    assert summary["toy.pfm.recovery.prompt.k1.m1.residual.n"] == 2
    half = T_975[1] * np.std([0.7, 0.9], ddof=1) / math.sqrt(2)  # 1.271
    assert summary["toy.pfm.recovery.prompt.k1.m1.residual.ci95"] == pytest.approx(half)
    assert summary["toy.pfm.recovery.prompt.k1.m1.residual.diff.hi"] == pytest.approx(0.8 + half)
    assert summary["toy.pfm.recovery.prompt.k1.m1.residual.verdict"] == 0  # reaches below 0
    assert "toy.pfm.recovery.head.k1.m0.relearn_steps.n" not in summary  # null: skipped
    assert summary["toy.pfm.draws.recovery.k1.n"] == 2
    markdown = render(summary, CONFIG, [], {})
    tables = parse_tables(markdown)["toy"]
    k1 = tables["Recovery attack, k = 1"]
    assert list(k1) == ["pfm / prototype / 0", "pfm / prompt / 1", "pfm / head / 0"]
    assert k1["pfm / prompt / 1"]["residual"] == "0.800 ± 1.271 (n=2)"  # the usual n here: 1
    assert k1["pfm / prompt / 1"]["verdict"] == "inconclusive"
    assert k1["pfm / head / 0"]["residual"] == "0.800"
    assert k1["pfm / head / 0"]["retained acc"] == "0.800"
    assert k1["pfm / head / 0"]["pre-attack retained"] == "0.900"
    assert k1["pfm / head / 0"]["collapsed"] == "0.000"
    assert k1["pfm / prototype / 0"]["checks"] == "pass"  # no OOD probe: not needed
    details = tables["Recovery attack details, k = 1"]
    assert details["pfm / head / 0"]["relearn steps"] == "—"
    assert details["pfm / prototype / 0"]["OOD→recovered"] == "—"
    assert details["pfm / head / 0"]["oracle acc"] == "0.950"
    assert tables["Recovery attack details, k = 2"]["pfm / prompt / 5"]["noise→recovered"] == (
        "0.100"
    )
    assert "Cells: n = 1 unless marked" in markdown  # the headline's largest valid: n = 1
    assert "Cells here:" not in markdown  # each table's usual n is the dataset's


def test_validation_and_both_pi_prefix_scorings_table(tmp_path: Path) -> None:
    pi = [
        acc([c], 0.1, 0.9, **{"val.forget_acc": 0.05, "val.retain_acc": 0.95,
                              "artifact.forget_acc": 0.6, "artifact.retain_acc": 0.9})
        for c in range(2)
    ]  # fmt: skip
    write(tmp_path, "unlearn", "toy", "pi_prefix", 0, {"units": pi})
    scrub = [acc([0], 0.2, 0.8, **{"val.forget_acc": 0.3, "val.retain_acc": 0.85})]
    write(tmp_path, "unlearn", "toy", "scrub", 0, {"units": scrub})
    write(tmp_path, "unlearn", "toy", "ga", 0, {"units": [acc([0], 0.2, 0.8)]})  # no val
    markdown = render(summarised([tmp_path / "unlearn"]), CONFIG, [], {})
    table = parse_tables(markdown)["toy"]["Validation, and PI-Prefix scored both ways (k = 1)"]
    assert list(table) == ["pi_prefix", "scrub"]
    assert table["pi_prefix"]["test forgotten, saved artifact"] == "0.600 ± 0.000 (n=2)"
    assert table["pi_prefix"]["test forgotten, authors' inference"] == "0.100 ± 0.000 (n=2)"
    assert "Cells: n = 1 unless marked" in markdown  # scrub and ga: one unit each
    assert table["scrub"]["val forgotten acc"] == "0.300"
    assert table["scrub"]["test retained, saved artifact"] == "—"


def test_conflicting_values_for_one_run_are_an_error(tmp_path: Path) -> None:
    for folder, value in (("train", 1), ("eval", 2)):
        write(tmp_path, folder, "toy", "pfm", 0, {"epochs": value})
    with pytest.raises(ValueError, match="'epochs' is 1.0 in .* but 2.0 in"):
        collect([tmp_path / "train", tmp_path / "eval"])


def test_conflicting_values_for_one_unit_are_an_error(tmp_path: Path) -> None:
    for folder, value in (("a", 0.1), ("b", 0.2)):
        write(tmp_path, folder, "toy", "pfm", 0, {"units": [acc([1], value, 0.9)]})
    with pytest.raises(ValueError, match=r"unit \(0, \(1,\)\) has 'k1.forget_acc' = 0.1 and 0.2"):
        collect([tmp_path / "a", tmp_path / "b"])


def test_malformed_units_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a", "toy", "pfm", 0, {"units": [{"k": 2, "classes": [1], "forget_acc": 0}]})
    with pytest.raises(ValueError, match=r"classes \[1\] says k = 2"):
        collect([tmp_path / "a"])
    write(tmp_path, "a", "toy", "pfm", 0, {"units": [{"forget_acc": 0.1}]})
    with pytest.raises(ValueError, match="non-empty list 'classes'"):
        collect([tmp_path / "a"])


def test_a_prefixed_source_keeps_same_named_metrics_apart(tmp_path: Path) -> None:
    for folder, value in (("unlearn", 0.1), ("eval", 0.3)):
        write(tmp_path, folder, "toy", "pfm", 0, {"k1.forget_acc.mean": value,
                                                   "units": [acc([0], value, 0.9)]})  # fmt: skip
    assert source("eval=m/eval") == ("eval", Path("m/eval")) and source("m/x") == ("", Path("m/x"))
    collected = collect([tmp_path / "unlearn", ("eval", tmp_path / "eval")])
    assert collected.runs["toy", "pfm"][0] == {
        "k1.forget_acc.mean": 0.1, "eval.k1.forget_acc.mean": 0.3
    }  # fmt: skip
    assert collected.units["toy", "pfm"][0, (0,)] == {
        "k1.forget_acc": 0.1, "k1.retain_acc": 0.9, "eval.k1.forget_acc": 0.3,
        "eval.k1.retain_acc": 0.9,
    }  # fmt: skip


def test_metric_file_outside_the_layout_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "eval" / "pfm").mkdir(parents=True)
    (tmp_path / "eval" / "pfm" / "seed0.json").write_text("{}")
    with pytest.raises(ValueError, match="<dataset>/<method>/seed<s>.json"):
        collect([tmp_path / "eval"])


def test_a_units_seed_folder_reads_as_the_flat_layout(tmp_path: Path) -> None:
    """dvc.yaml's (dataset, seed) items write below their own ``seed<s>/`` folder: the same
    files there give the same summary and curves; a folder of another seed is an error."""
    flat = write_metrics(tmp_path / "flat")
    for (dataset, method, seed, folder), payload in FILES.items():
        write(tmp_path / "units", folder, dataset, f"seed{seed}/{method}", seed, payload)
    units = [
        (entry[0], tmp_path / "units" / entry[1].name)
        if isinstance(entry, tuple)
        else tmp_path / "units" / entry.name
        for entry in flat
    ]
    assert to_json(summarised(units)) == to_json(summarised(flat))
    for path in write_curves(tmp_path / "curves").rglob("seed*.json"):
        dataset, method, name = path.relative_to(tmp_path / "curves").parts
        unit = tmp_path / "unit_curves" / dataset / name.removesuffix(".json") / method / name
        unit.parent.mkdir(parents=True)
        unit.write_text(path.read_text())
    curves = read_relearn_curves(tmp_path / "curves")
    assert read_relearn_curves(tmp_path / "unit_curves") == curves
    write(tmp_path / "bad", "unlearn", "toy", "seed1/pfm", 0, {"epochs": 1})
    with pytest.raises(ValueError, match="seed0.json in the folder of seed 1"):
        collect([tmp_path / "bad" / "unlearn"])


def test_a_killed_stages_staging_folder_is_not_read(tmp_path: Path) -> None:
    """A stage killed half-way leaves its staging folder beside its output
    (``<dataset>/.seed<s>.staged-…/seed<s>/<method>/seed<s>.json``, pfm.files.Staging):
    half a run that must not enter the summary as a dataset of its own, nor as the run."""
    folders = write_metrics(tmp_path)
    clean = to_json(summarised(folders))
    leftover = f"{STAGED}x1y2/seed1/pfm"
    write(tmp_path, "unlearn", "toy", f".seed1{leftover}", 1, FILES[("toy", "pfm", 1, "unlearn")])
    write(tmp_path, "eval", "toy", f"pfm/.seed1.json{STAGED}z", 1, {"no_forget.none.acc": 0.9})
    assert len(list(tmp_path.rglob(f"*{STAGED}*"))) == 2
    assert to_json(summarised(folders)) == clean


def test_summary_json_is_strict_and_flat(summary: dict[str, float]) -> None:
    payload = to_json(summary)
    text = json.dumps(payload, allow_nan=False)  # raises on a bare NaN
    assert all(not isinstance(v, dict | list) for v in json.loads(text).values())


def write_curves(root: Path) -> Path:
    def points(accs: list[float]) -> list[dict[str, float]]:
        return [{"step": 10 * i, "acc": a} for i, a in enumerate(accs)]

    for seed, accs in ((0, [0.0, 0.4, 0.8]), (1, [0.0, 0.6, 1.0])):
        curves = {"prompt k1 m1": points(accs), "prompt k1 m1 reference": points([0.0, 0.0, 0.1])}
        write(root, ".", "toy", "pfm", seed, curves)
    write(root, ".", "toy", "retrain", 0, {"head k1 m0": points([0.1]), "note": "not a curve"})
    return root


def test_relearn_curves_reader(tmp_path: Path) -> None:
    curves = read_relearn_curves(write_curves(tmp_path / "relearn"))
    assert curves["toy"]["pfm prompt k1 m1"] == [
        ([0.0, 10.0, 20.0], [0.0, 0.4, 0.8]),
        ([0.0, 10.0, 20.0], [0.0, 0.6, 1.0]),
    ]
    assert set(curves["toy"]) == {"pfm prompt k1 m1", "pfm prompt k1 m1 reference", "retrain"}
    assert split_label("pfm prompt k1 m1 reference") == ("pfm", "prompt k1 m1 reference")
    assert read_relearn_curves(tmp_path / "absent") == {}
    write(tmp_path / "relearn", ".", "toy", "bad", 0, {"m1": [{"step": 0}]})
    with pytest.raises(ValueError, match="must be a list of"):
        read_relearn_curves(tmp_path / "relearn")


def test_figures_for_every_dataset_even_without_data(
    tmp_path: Path, summary: dict[str, float]
) -> None:
    curves = read_relearn_curves(write_curves(tmp_path / "relearn"))
    written = draw_all(summary, curves, CONFIG, tmp_path / "figures")
    assert set(written) == {"toy", "other"}
    for figures in written.values():
        assert {p.name for p in figures.values()} == set(FIGURES.values())
        for path in figures.values():
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    # same data, same bytes: the PNGs diff only when the numbers do
    again = draw_all(summary, curves, CONFIG, tmp_path / "again")
    for title in FIGURES:
        assert written["toy"][title].read_bytes() == again["toy"][title].read_bytes()


def test_stage_writes_summary_report_and_figures(tmp_path: Path) -> None:
    folders = write_metrics(tmp_path / "metrics")
    specs = [f"{f[0]}={f[1]}" if isinstance(f, tuple) else str(f) for f in folders]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "aggregate.py"), "--metrics", *specs,
         "--curves", "reports/relearn", "--summary", "metrics/summary.json",
         "--report", "reports/results.md", "--figures", "reports/figures"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "metrics/summary.json").read_text())
    assert summary["toy.pfm.k1.retain_acc.mean"] == pytest.approx(0.9)
    assert summary["toy.pfm.k1.retain_acc.n"] == 5
    report = (tmp_path / "reports/results.md").read_text()
    assert k_table(report)["pfm"]["retained acc ↑"] == "0.900 ± 0.000 (n=5)"  # seed means
    assert "[results guide](../docs/results-guide.md)" in report
    assert report.index("## toy") < report.index("## Provenance")  # provenance last
    assert "toy, unlearn, k = 1: " in report and "retrain_prompt: 1 forget set × 1 seed" in report
    assert "commit: `unknown`" in report  # tmp_path is no git repository
    assert "](figures/toy/paired_differences.png)" in report
    assert report.index("paired_differences.png") < report.index("accuracy_vs_k.png")  # first
    assert (tmp_path / "reports/figures/toy/paired_differences.png").is_file()
    assert summary["toy.ssd.k1.forget_acc.verdict"] == -1
    assert "- Forgotten acc (k=1), method − reference (margin ±0.05): " in report


def test_stage_rejects_a_misspelt_param(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["aggregate"]["kk"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "aggregate.py"), "--metrics", "m",
         "--curves", "c", "--summary", "s.json", "--report", "r.md", "--figures", "f"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "error: aggregate: unknown key(s) ['kk']" in result.stderr
    assert not (tmp_path / "s.json").exists()
