"""Aggregate: hand-written metric files → summary keys, the markdown table, the figures."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pfm.aggregate import (
    AggregateParams,
    collect,
    read_relearn_curves,
    rte,
    source,
    summarise,
    to_json,
)
from pfm.plots import FIGURES, draw_all
from pfm.report import provenance, render

ROOT = Path(__file__).resolve().parents[1]
NAN = float("nan")

# (dataset, method, seed, folder) → metrics, in the formats the stages write.
FILES = {
    ("toy", "retrain", 0, "eval"): {
        "k1.forget_acc.mean": 0.0, "k1.forget_acc.std": 0.0,
        "k1.retain_acc.mean": 0.9, "k1.retain_acc.std": 0.0,
        "num_classes": 4, "cost.unlearn_seconds.mean": 100.0, "cost.trainable_params": 5000,
    },
    ("toy", "retrain", 0, "attacks/mia"): {"mia.loss_auc.mean": 0.5},
    ("toy", "ga", 0, "eval"): {
        "k1.forget_acc.mean": NAN, "k1.forget_acc.std": NAN,  # e.g. a diverged run
        "k1.retain_acc.mean": 0.5, "k1.retain_acc.std": 0.0,
        "num_classes": 4, "cost.unlearn_seconds.mean": 10.0, "cost.trainable_params": 5000,
    },
    ("toy", "scrub", 0, "eval"): {
        "k1.forget_acc.mean": 0.05, "k1.forget_acc.std": 0.0,
        "k1.retain_acc.mean": 0.6, "k1.retain_acc.std": 0.0,
        "num_classes": 4, "cost.unlearn_seconds.mean": 50.0, "cost.trainable_params": 5000,
    },
    ("toy", "scrub", 0, "attacks/mia"): {"mia.loss_auc.mean": 0.9},
    # pfm, two seeds; draws of k1 forgotten accuracy: seed 0 {0.1, 0.3}, seed 1 {0.3, 0.5}
    ("toy", "pfm", 0, "eval"): {
        "k1.forget_acc.mean": 0.2, "k1.forget_acc.std": 0.1,
        "k1.retain_acc.mean": 0.8, "k1.retain_acc.std": 0.0,
        "k2.forget_acc.mean": 0.4, "k2.forget_acc.std": 0.0,
        "k2.retain_acc.mean": 0.7, "k2.retain_acc.std": 0.0,
        "num_classes": 4, "forget_seconds.mean": 0.001, "cost.flops_per_sample": 2_500_000,
    },
    ("toy", "pfm", 1, "eval"): {
        "k1.forget_acc.mean": 0.4, "k1.forget_acc.std": 0.1,
        "k1.retain_acc.mean": 0.8, "k1.retain_acc.std": 0.0,
        "k2.forget_acc.mean": 0.4, "k2.forget_acc.std": 0.0,
        "k2.retain_acc.mean": 0.7, "k2.retain_acc.std": 0.0,
        "num_classes": 4, "forget_seconds.mean": 0.003, "cost.flops_per_sample": 2_500_000,
    },
    ("toy", "pfm", 0, "train"): {"epochs": 2, "trainable_params": 1200, "train_seconds": 3.0},
    ("toy", "pfm", 1, "train"): {"epochs": 2, "trainable_params": 1200, "train_seconds": 5.0},
    ("toy", "pfm", 0, "attacks/mia"): {"mia.loss_auc.mean": 0.6},
    ("toy", "pfm", 1, "attacks/mia"): {"mia.loss_auc.mean": 0.6},
    # a second dataset where only the prompt model ran: no reference, no baselines
    ("other", "pfm", 0, "eval"): {
        "k1.forget_acc.mean": 0.3, "k1.forget_acc.std": 0.0,
        "k1.retain_acc.mean": 0.7, "k1.retain_acc.std": 0.0, "num_classes": 3,
    },
}  # fmt: skip


def test_rte_is_relative_to_retrain() -> None:
    assert rte(2.0, 8.0) == 0.25 and rte(8.0, 8.0) == 1.0
    with pytest.raises(ValueError, match="retrain seconds"):
        rte(1.0, 0.0)


def write_metrics(root: Path) -> list[Path]:
    for (dataset, method, seed, folder), metrics in FILES.items():
        path = root / folder / dataset / method / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics))  # NaN written as the bare literal Python emits
    return [root / "train", root / "eval", root / "attacks", root / "never-ran"]


@pytest.fixture
def summary(tmp_path: Path) -> dict[str, float]:
    return summarise(collect(write_metrics(tmp_path)))


def parse_tables(markdown: str) -> dict[str, dict[str, dict[str, str]]]:
    """dataset → method → column title → cell text, from the report's markdown tables."""
    tables: dict[str, dict[str, dict[str, str]]] = {}
    dataset, header = None, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            dataset, header = line[3:].split(" ")[0], None
        elif line.startswith("|") and dataset is not None:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            elif not set(line) <= set("|-: "):
                tables.setdefault(dataset, {})[cells[0]] = dict(zip(header, cells, strict=True))
    return tables


def test_seed_and_draw_statistics_pool_exactly(summary: dict[str, float]) -> None:
    draws = [0.1, 0.3, 0.3, 0.5]
    assert summary["toy.pfm.k1.forget_acc.mean"] == pytest.approx(np.mean(draws))
    assert summary["toy.pfm.k1.forget_acc.std"] == pytest.approx(np.std(draws))
    assert summary["toy.pfm.train_seconds.mean"] == 4.0
    assert summary["toy.pfm.train_seconds.std"] == 1.0  # population std over the seeds
    assert summary["toy.pfm.seeds"] == 2 and summary["toy.retrain.seeds"] == 1


def test_gaps_and_rte_against_the_retrain_reference(summary: dict[str, float]) -> None:
    assert summary["toy.pfm.k1.forget_acc.gap_to_retrain"] == pytest.approx(0.3)
    assert summary["toy.pfm.k1.retain_acc.gap_to_retrain"] == pytest.approx(0.1)
    assert summary["toy.pfm.mia.loss_auc.gap_to_retrain"] == pytest.approx(0.1)
    assert summary["toy.pfm.k1.avg_gap_to_retrain"] == pytest.approx((0.3 + 0.1 + 0.1) / 3)
    assert summary["toy.scrub.k1.avg_gap_to_retrain"] == pytest.approx((0.05 + 0.3 + 0.4) / 3)
    assert summary["toy.ga.rte"] == pytest.approx(0.1)
    assert summary["toy.pfm.rte"] == pytest.approx(0.002 / 100)  # forget() time, no cost key
    assert "toy.pfm.k2.forget_acc.gap_to_retrain" not in summary  # retrain has no k=2
    assert not any(key.startswith("other.pfm.") and "retrain" in key for key in summary)
    assert math.isnan(summary["toy.ga.k1.forget_acc.mean"])
    assert math.isnan(summary["toy.ga.k1.avg_gap_to_retrain"])


def test_summary_json_is_strict_and_flat(summary: dict[str, float]) -> None:
    payload = to_json(summary)
    assert payload["toy.ga.k1.forget_acc.mean"] is None
    text = json.dumps(payload, allow_nan=False)  # raises on a bare NaN
    assert all(not isinstance(v, dict | list) for v in json.loads(text).values())


def test_table_contents(summary: dict[str, float]) -> None:
    header = provenance(
        {
            "datasets": ["toy", "other"],
            "seeds": [0, 1],
            "model": {"backbone": "vit-tiny"},
            "train": {"epochs": 2},
            "evaluate": {"max_sets": 10},
        },
        AggregateParams(k=1, profile="hand-written test profile"),
        "abc1234",
    )
    markdown = render(summary, 1, header, {"toy": {"accuracy vs k": "figures/toy/a.png"}})
    assert "profile: hand-written test profile" in markdown and "`abc1234`" in markdown
    assert "seeds: [0, 1]" in markdown and "`vit-tiny`" in markdown
    assert "![accuracy vs k](figures/toy/a.png)" in markdown
    tables = parse_tables(markdown)
    assert list(tables) == ["other", "toy"]
    toy = tables["toy"]
    assert list(toy) == ["retrain (reference)", "ga", "scrub", "pfm"]
    pfm, ga, scrub = toy["pfm"], toy["ga"], toy["scrub"]
    assert pfm["retained acc (k=1) ↑"] == "**0.800 ± 0.000**"  # best of ga, scrub, pfm
    assert pfm["forgotten acc (k=1) ≈R"] == "0.300 ± 0.141"
    assert scrub["forgotten acc (k=1) ≈R"] == "**0.050 ± 0.000**"  # closest to retrain's 0
    assert ga["forgotten acc (k=1) ≈R"] == "nan"  # measured, undefined: never "best"
    assert ga["gap to retrain ↓"] == "nan"
    assert pfm["gap to retrain ↓"] == "**0.167**"
    assert pfm["MIA loss_auc ≈R"] == "**0.600 ± 0.000**" and scrub["MIA loss_auc ≈R"] != "—"
    assert ga["MIA loss_auc ≈R"] == "—"  # not measured
    assert pfm["unlearn s ↓"] == "**0.002 ± 0.001**"
    assert ga["RTE ↓"] == "0.1" and pfm["RTE ↓"] == "**2e-05**"
    assert toy["retrain (reference)"]["RTE ↓"] == "1"
    assert pfm["trainable params ↓"] == "**1.2k**" and ga["trainable params ↓"] == "5k"
    assert pfm["FLOPs/sample ↓"] == "2.5M" and ga["FLOPs/sample ↓"] == "—"  # alone: no bold
    other = tables["other"]
    assert list(other) == ["pfm"]  # the baselines never ran on this dataset
    assert other["pfm"]["retained acc (k=1) ↑"] == "0.700 ± 0.000"  # one competitor: no bold
    assert other["pfm"]["gap to retrain ↓"] == "—" and other["pfm"]["RTE ↓"] == "—"
    assert "## other (3 classes)" in markdown and "## toy (4 classes)" in markdown


def test_conflicting_values_for_one_run_are_an_error(tmp_path: Path) -> None:
    for folder, value in (("train", 1), ("eval", 2)):
        path = tmp_path / folder / "toy" / "pfm" / "seed0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"epochs": value}))
    with pytest.raises(ValueError, match="'epochs' is 1.0 in .* but 2.0 in"):
        collect([tmp_path / "train", tmp_path / "eval"])


def test_a_prefixed_source_keeps_same_named_metrics_apart(tmp_path: Path) -> None:
    for folder, value in (("unlearn", 0.1), ("eval", 0.3)):
        path = tmp_path / folder / "toy" / "pfm" / "seed0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"k1.forget_acc.mean": value}))
    assert source("eval=m/eval") == ("eval", Path("m/eval")) and source("m/x") == ("", Path("m/x"))
    runs = collect([tmp_path / "unlearn", ("eval", tmp_path / "eval")])
    assert runs["toy", "pfm"][0] == {"k1.forget_acc.mean": 0.1, "eval.k1.forget_acc.mean": 0.3}


def test_metric_file_outside_the_layout_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "eval" / "pfm").mkdir(parents=True)
    (tmp_path / "eval" / "pfm" / "seed0.json").write_text("{}")
    with pytest.raises(ValueError, match="<dataset>/<method>/seed<s>.json"):
        collect([tmp_path / "eval"])


def write_curves(root: Path) -> Path:
    for seed, accs in ((0, [0.0, 0.4, 0.8]), (1, [0.0, 0.6, 1.0])):
        path = root / "toy" / "pfm" / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"curve": [{"step": 10 * i, "acc": a} for i, a in enumerate(accs)]})
        )
    both = root / "toy" / "retrain" / "seed0.json"
    both.parent.mkdir(parents=True)
    both.write_text(json.dumps({"m1": [{"step": 0, "acc": 0.1}], "m5": [{"step": 0, "acc": 0.2}]}))
    return root


def test_relearn_curves_reader(tmp_path: Path) -> None:
    curves = read_relearn_curves(write_curves(tmp_path / "relearn"))
    assert curves["toy"]["pfm"] == [
        ([0.0, 10.0, 20.0], [0.0, 0.4, 0.8]),
        ([0.0, 10.0, 20.0], [0.0, 0.6, 1.0]),
    ]
    assert set(curves["toy"]) == {"pfm", "retrain m1", "retrain m5"}
    assert read_relearn_curves(tmp_path / "absent") == {}


def test_figures_for_every_dataset_even_without_data(
    tmp_path: Path, summary: dict[str, float]
) -> None:
    curves = read_relearn_curves(write_curves(tmp_path / "relearn"))
    written = draw_all(summary, curves, 1, tmp_path / "figures")
    assert set(written) == {"toy", "other"}
    for figures in written.values():
        assert {p.name for p in figures.values()} == set(FIGURES.values())
        for path in figures.values():
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    # same data, same bytes: the PNGs diff only when the numbers do
    again = draw_all(summary, curves, 1, tmp_path / "again")
    assert (
        written["toy"]["accuracy vs k"].read_bytes() == again["toy"]["accuracy vs k"].read_bytes()
    )


def test_stage_writes_summary_report_and_figures(tmp_path: Path) -> None:
    folders = write_metrics(tmp_path / "metrics")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "aggregate.py"), "--metrics", *map(str, folders),
         "--curves", "reports/relearn", "--summary", "metrics/summary.json",
         "--report", "reports/results.md", "--figures", "reports/figures"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "metrics/summary.json").read_text())
    assert summary["toy.pfm.k1.retain_acc.mean"] == pytest.approx(0.8)
    report = (tmp_path / "reports/results.md").read_text()
    assert parse_tables(report)["toy"]["pfm"]["retained acc (k=1) ↑"] == "**0.800 ± 0.000**"
    assert "commit: `unknown`" in report  # tmp_path is no git repository
    assert "](figures/toy/forget_vs_retain.png)" in report
    assert (tmp_path / "reports/figures/toy/forget_vs_retain.png").is_file()


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


def test_recovery_and_residual_columns_best_closest_to_retrain() -> None:
    """The report adds a residual column per recovery m; retrain, its own never-seen
    reference, has residual 0, so the best residual is the one closest to 0."""

    def run(acc: float, residual: float) -> dict[int, dict[str, float]]:
        stats = {"acc": acc, "residual": residual}
        return {0: {f"recovery.m1.{k}.{s}": v if s == "mean" else 0.0
                    for k, v in stats.items() for s in ("mean", "std")}}  # fmt: skip

    runs = {
        ("toy", "retrain"): run(0.2, 0.0),
        ("toy", "ga"): run(0.9, 0.7),
        ("toy", "pfm"): run(0.1, -0.1),
    }
    toy = parse_tables(render(summarise(runs), 1, [], {}))["toy"]
    assert toy["pfm"]["residual m=1 ≈R"] == "**-0.100 ± 0.000**"
    assert toy["ga"]["residual m=1 ≈R"] == "0.700 ± 0.000"
    assert toy["pfm"]["recovery m=1 ≈R"] == "**0.100 ± 0.000**"  # closest to retrain's 0.2
    assert (
        list(toy["pfm"]).index("residual m=1 ≈R") == list(toy["pfm"]).index("recovery m=1 ≈R") + 1
    )
