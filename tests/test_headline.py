"""The DVC review path of issue #31: the headline keys are a stable, documented set; on a
tiny DVC repo holding stage aggregate as dvc.yaml declares it (hand-written metric files,
no training), `dvc exp show` lists only the headline, `dvc metrics diff` the headline and
`--targets metrics/summary.json` the whole summary, `dvc plots show` and `dvc plots diff`
render the forest and relearn data, and the run-cache restores aggregate."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from pfm.reporting.headline import headline
from pfm.reporting.stage_times import StageRun
from tests.test_aggregate import CONFIG, recovery, summarised, write, write_metrics
from tests.test_pipeline import sh
from tests.test_sample_report import sample, write_samples

ROOT = Path(__file__).resolve().parents[1]
# The agreed bound (docs/running.md): metric columns `dvc exp show` may list for one
# dataset of the default profile (13 methods: 6 accuracies, 2 × 11 differences and
# verdicts, 1 residual, 3 stage totals = 32).
MAX_METRIC_COLUMNS = 40
TOY_KEYS = {  # FILES' toy dataset: every documented kind of key
    "toy.pfm.forget_acc", "toy.pfm.retain_acc", "toy.pfm.mia_loss_auc",
    "toy.retrain_prompt.forget_acc", "toy.retrain_prompt.retain_acc",
    "toy.retrain_prompt.mia_loss_auc",
    "toy.pfm.forget_diff", "toy.pfm.forget_verdict",
    "toy.scrub.forget_diff", "toy.scrub.forget_verdict",
    "toy.ssd.forget_diff", "toy.ssd.forget_verdict",
    "toy.zero_change.forget_diff", "toy.zero_change.forget_verdict",
    "toy.pfm.max_valid_residual.prompt_m0",
}  # fmt: skip
STAGE_KEYS = {"stages.wall_seconds", "stages.cpu_seconds", "stages.peak_rss_mib"}


def recovery_units(root: Path) -> None:
    """pfm's one passing attack (prompt, m = 0) beside one that collapsed."""
    write(root, "attacks/recovery", "toy", "pfm", 0, {"units": [
        recovery([c], "prompt", 0, residual=0.4 + 0.01 * c) for c in range(3)
    ] + [recovery([c], "head", 1, residual=0.9, collapsed=1.0) for c in range(3)]})  # fmt: skip


def test_headline_keys_are_the_documented_set(tmp_path: Path) -> None:
    recovery_units(tmp_path)
    summary = summarised(write_metrics(tmp_path))
    runs = [StageRun("train", "toy", 0, {"wall_seconds": 2.0, "cpu_seconds": 3.0,
                                         "peak_rss_mib": 100.0}),
            StageRun("unlearn", "toy", 0, {"wall_seconds": 5.0, "cpu_seconds": 4.0,
                                           "peak_rss_mib": 300.0})]  # fmt: skip
    keys = headline(summary, CONFIG, runs)
    other = {"other.pfm.forget_acc", "other.pfm.retain_acc"}  # no reference, no MIA there
    assert set(keys) == TOY_KEYS | other | STAGE_KEYS
    assert keys["toy.pfm.forget_acc"] == summary["toy.pfm.k1.forget_acc.mean"]
    assert keys["toy.ssd.forget_verdict"] == summary["toy.ssd.k1.forget_acc.verdict"] == -1
    assert keys["toy.pfm.max_valid_residual.prompt_m0"] == pytest.approx(0.41)
    assert keys["stages.wall_seconds"] == 7.0 and keys["stages.peak_rss_mib"] == 300.0
    assert not any(k.startswith("stages.") for k in headline(summary, CONFIG, []))


def aggregate_stage() -> dict:
    """dvc.yaml's aggregate as declared there, run from this checkout's script."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["aggregate"]
    cmd = stage["cmd"].replace("python stages/", f"{sys.executable} {ROOT}/stages/", 1)
    data = [d for d in stage["deps"] if d.startswith(("metrics/", "reports/"))]
    return {**stage, "cmd": cmd, "deps": data}


def project(tmp_path: Path) -> Path:
    """A git + DVC repo with stage aggregate alone and hand-written per-run files."""
    repo = tmp_path / "repo"
    write_metrics(repo / "metrics")
    recovery_units(repo / "metrics")
    write_samples(repo / "metrics", "retrain", 0, [sample("a1", 0.8, 0.95, 0.8)])
    curve = [{"step": 10 * i, "acc": a} for i, a in enumerate([0.0, 0.5, 0.9])]
    write(
        repo,
        "reports/relearn",
        "toy",
        "pfm",
        0,
        {"prompt k1 m0": curve, "prompt k1 m0 reference": curve[:2]},
    )
    cost = {f"stage.train.{m}": 1.0 for m in ("wall_seconds", "cpu_seconds", "peak_rss_mib")}
    (repo / "metrics/stages/train/toy").mkdir(parents=True)
    (repo / "metrics/stages/train/toy/seed0.json").write_text(json.dumps(cost))
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"aggregate": aggregate_stage()}}))
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    shutil.copytree(ROOT / ".dvc/plots", repo / ".dvc/plots")
    return repo


def commit(repo: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", message, cwd=repo)


def test_dvc_shows_the_headline_and_keeps_the_run_cache(tmp_path: Path) -> None:
    repo = project(tmp_path)
    sh("dvc", "repro", cwd=repo)
    commit(repo, "first")
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo))
    files = next(iter(shown.values()))["data"]  # the one revision: the workspace
    assert list(files) == ["metrics/headline.json"]
    names = set(files["metrics/headline.json"]["data"])
    assert names >= TOY_KEYS and len(names) <= MAX_METRIC_COLUMNS

    header = sh("dvc", "exp", "show", "--csv", cwd=repo).splitlines()[0].split(",")
    assert {c for c in header if c in names} == names
    assert not any(c.endswith((".ci95", ".n", ".std")) for c in header)  # no summary key

    # a changed unit: the headline diff names it; the summary's with --targets
    path = repo / "metrics/unlearn/toy/scrub/seed0.json"
    payload = json.loads(path.read_text())
    payload["units"][0]["forget_acc"] = 0.3
    path.write_text(json.dumps(payload))
    sh("dvc", "repro", cwd=repo)
    diff = json.loads(sh("dvc", "metrics", "diff", "--json", cwd=repo))
    assert (
        set(diff) == {"metrics/headline.json"}
        and "toy.scrub.forget_diff" in diff["metrics/headline.json"]
    )
    full = json.loads(
        sh("dvc", "metrics", "diff", "--json", "--targets", "metrics/summary.json", cwd=repo)
    )
    assert "toy.scrub.k1.forget_acc.mean" in full["metrics/summary.json"]

    # back to the committed files: aggregate comes back from the run-cache, not rerun
    sh("git", "checkout", "-q", "--", "metrics/unlearn", cwd=repo)
    assert "Stage 'aggregate' is cached - skipping run" in sh("dvc", "repro", cwd=repo)


def test_dvc_plots_render_the_forest_and_relearn_data(tmp_path: Path) -> None:
    repo = project(tmp_path)
    sh("dvc", "repro", cwd=repo)
    commit(repo, "first")
    shown = json.loads(sh("dvc", "plots", "show", "--json", cwd=repo))
    # the markdown report is a plot only so that git keeps it (dvc.yaml): DVC can't draw it
    assert {e["name"] for e in shown.get("errors", [])} <= {"reports/results.md"}
    vega = {name: plots[0]["content"] for name, plots in shown["data"].items()
            if plots and plots[0]["type"] == "vega"}  # fmt: skip
    forest, relearn = vega["reports/plots/forest/toy.json"], vega["reports/plots/relearn/toy.json"]
    assert {r["method"] for r in forest["data"]["values"]} == {"pfm", "scrub", "ssd", "zero_change"}
    assert forest["facet"]["column"]["field"] == "metric"  # our template, not DVC's default
    assert {r["side"] for r in relearn["data"]["values"]} == {"attacked", "reference"}
    html = sh("dvc", "plots", "diff", "HEAD", "--out", "diff", cwd=repo)
    assert "index.html" in html and (repo / "diff/index.html").is_file()
