"""End to end: ``dvc repro`` of the real dvc.yaml on a tiny profile (the prompt model, the
plain model, unlearning by ``pfm`` and ``retrain`` and both attacks on them), then an
experiment whose changed param shows up in ``dvc metrics diff`` and reruns only what
depends on it."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pfm.data import load_prepared
from pfm.files import STAGED

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDERS = ("metrics/attacks/README.md", "reports/relearn/README.md")  # aggregate's deps
pytestmark = pytest.mark.slow


def sh(*cmd: str, cwd: Path, timeout: float = 900) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["digits"]["per_class"] = 12
    params["pretrain"]["epochs"] = 1
    params["pretrain"]["data"].update(train_per_class=8, test_per_class=2)
    params["train"].update(epochs=1, eval_modes=["full_bank", "none"])
    params["evaluate"].update(max_sets=2, modes=["full_bank", "none", "infer_best"])
    params["train_base"].update(epochs=1)
    params["methods"] = ["pfm", "retrain"]
    params["unlearn"].update(k=[1, 5], max_sets=[2, 1])
    params["unlearn"]["retrain"].update(epochs=1)
    params["unlearn"]["pi_prefix"].update(epochs=1)
    params["samples"].update(methods=["retrain", "pi_prefix"], fraction=0.05, sets=2)
    params["attacks"]["mia"].update(cv_test_size=0.25)  # ~4 test images a class
    params["attacks"]["recovery"].update(
        shots=[0, 1],
        eval_every=2,
        capabilities=["prompt_head", "head"],
        ood_samples=8,
        budget={"prompt_head": {"steps": 4, "lr": 0.03}, "head": {"steps": 4, "lr": 0.01}},
    )
    return params


def check_unlearning(project: Path, evaluated: dict) -> None:
    """Both methods: the same keys (those of ``evaluate`` for each k) but their recipes',
    the same forget sets, a cost record, the recipe they ran (params', ``hand``), and a
    manifest naming every saved model."""
    metrics, manifests = {}, {}
    for method, base in (("pfm", "models/pfm"), ("retrain", "models/plain")):
        metrics[method] = json.loads(
            (project / f"metrics/unlearn/digits/seed0/{method}/seed0.json").read_text()
        )
        folder = project / f"models/unlearned/digits/seed0/{method}/seed0"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert {k: manifest[k] for k in ("dataset", "method", "seed", "base_model")} == {
            "dataset": "digits",
            "method": method,
            "seed": 0,
            "base_model": f"{base}/digits/seed0.pt",
        }
        assert [(d["k"], len(d["classes"])) for d in manifest["draws"]] == [(1, 1)] * 2 + [(5, 5)]
        assert all((folder / d["model"]).is_file() for d in manifest["draws"])
        manifests[method] = manifest["draws"]
    assert [d["classes"] for d in manifests["pfm"]] == [d["classes"] for d in manifests["retrain"]]
    measured = [{k for k in m if not k.startswith("recipe.")} for m in metrics.values()]
    assert measured[0] == measured[1]  # the recipe's own fields are each method's
    assert metrics["pfm"]["recipe.source"] == metrics["retrain"]["recipe.source"] == "hand"
    assert metrics["retrain"]["recipe.epochs"] == tiny_params()["unlearn"]["retrain"]["epochs"]
    for values in metrics.values():
        for k, sets in ((1, 2), (5, 1)):
            assert values[f"k{k}.sets"] == sets and values[f"k{k}.exhaustive"] == 0
            for key in ("forget_acc.mean", "retain_acc.mean", "val.forget_acc.mean"):
                assert 0.0 <= values[f"k{k}.{key}"] <= 1.0
            assert f"k{k}.forget_acc.mean" in evaluated
        assert [u["classes"] for u in values["units"]] == [d["classes"] for d in manifests["pfm"]]
        assert values["cost.unlearn_seconds.mean"] > 0
    pfm, retrain = metrics["pfm"], metrics["retrain"]
    assert (pfm["cost.needs_forget_data"], pfm["cost.needs_retain_data"]) == (0, 0)
    assert (retrain["cost.needs_forget_data"], retrain["cost.needs_retain_data"]) == (0, 1)
    assert pfm["cost.optimizer_steps.mean"] == 0 < retrain["cost.optimizer_steps.mean"]
    assert pfm["no_forget.full_bank.acc"] == evaluated["no_forget.full_bank.acc"]
    reference = json.loads(
        (project / "metrics/unlearn/digits/seed0/retrain_prompt/seed0.json").read_text()
    )  # the prompt family's reference, scored by the same path on its own draw
    assert [u["classes"] for u in reference["units"]] == [manifests["pfm"][0]["classes"]]
    assert reference["units"][0]["cost.unlearn_seconds"] > 0


def check_attacks(project: Path, summary: dict) -> None:
    """Both attacks ran on both methods and both references, each family under its own
    capability, and their keys reached the summary: every MIA variant with its gap to the
    family's reference, recovery and residual per m."""
    runs = {"pfm": "prompt_head", "retrain_prompt": "prompt_head", "retrain": "head"}
    for method, capability in runs.items():
        mia_file = project / f"metrics/attacks/mia/digits/seed0/{method}/seed0.json"
        mia = json.loads(mia_file.read_text())
        assert mia["mia_k"] == 1
        for variant in ("loss_auc", "efficacy", "efficacy_entropy", "loss_logreg"):
            assert 0.0 <= summary[f"digits.{method}.k1.mia.{variant}.mean"] <= 1.0
        for m in (0, 1):
            name = f"digits.{method}.recovery.{capability}.k1.m{m}"
            assert 0.0 <= summary[f"{name}.acc.mean"] <= 1.0
            assert f"{name}.residual.mean" in summary
        curves_file = project / f"reports/relearn/digits/seed0/{method}/seed0.json"
        curves = json.loads(curves_file.read_text())
        assert [point["step"] for point in curves[f"{capability} k1 m1"]] == [0, 2, 4]
    assert summary["digits.pfm.k1.mia.loss_auc.gap_to_reference"] >= 0.0
    for name in ("k1.forget_acc", "k1.retain_acc", "k1.mia.loss_auc"):  # paired on draws
        assert summary[f"digits.pfm.{name}.verdict"] in (-1, 0, 1)
        assert summary[f"digits.pfm.{name}.diff.sets"] >= 1
        assert summary[f"digits.pfm.{name}.diff.seeds"] == 1
        assert f"digits.retrain.{name}.verdict" not in summary  # a reference: none
    assert summary["digits.pfm.recovery.prompt_head.k1.m1.residual.verdict"] in (-1, 0, 1)
    assert summary["digits.retrain.recovery.head.k1.m1.residual.mean"] == 0.0  # its own
    assert summary["digits.retrain_prompt.recovery.prompt_head.k1.m1.residual.mean"] == 0.0
    reference = json.loads(
        (project / "models/attack_reference/digits/seed0/manifest.json").read_text()
    )
    pfm_draws = json.loads(
        (project / "models/unlearned/digits/seed0/pfm/seed0/manifest.json").read_text()
    )
    assert [d["classes"] for d in reference["draws"]] == [pfm_draws["draws"][0]["classes"]]


def check_samples(project: Path, summary: dict, report: str) -> None:
    """Stage forget-samples: both methods forgot the same rows (equal digests, 5 % of the
    train split), each unit scored on forgotten, retained and test rows; PI-Prefix is
    paired with retrain on them and scored both ways; the report has their table."""
    runs = {
        method: json.loads(
            (project / f"metrics/samples/digits/seed0/{method}/seed0.json").read_text()
        )
        for method in ("retrain", "pi_prefix")
    }
    digests = [[u["digest"] for u in run["units"]] for run in runs.values()]
    assert digests[0] == digests[1] and len(set(digests[0])) == 2
    train = load_prepared(project / "data/prepared/digits").splits["train"]
    rows = round(0.05 * len(train.labels))
    for run in runs.values():
        assert run["samples.rows"] == rows
        for unit in run["units"]:
            for key in ("forget_acc", "retain_acc", "test_acc", "base.forget_acc"):
                assert 0.0 <= unit[key] <= 1.0
    assert "artifact.forget_acc" in runs["pi_prefix"]["units"][0]
    needs_forget = [run["samples.cost.needs_forget_data"] for run in runs.values()]
    assert needs_forget == [0, 1]
    for name in ("forget_acc", "retain_acc", "test_acc"):
        assert summary[f"digits.pi_prefix.samples.{name}.verdict"] in (-1, 0, 1)
        assert summary[f"digits.pi_prefix.samples.{name}.diff.sets"] == 2
    assert f"### Forgetting samples ({rows} training rows per set" in report
    assert "- Forget-set acc, method − reference (margin ±0.05): " in report


def report_row(project: Path, dataset: str, method: str) -> dict[str, str]:
    """The cells of one method's rows in the dataset's tables of reports/results.md (its
    first row in each table), keyed by column."""
    section = (project / "reports/results.md").read_text().split(f"## {dataset}", 1)[1]
    cells: dict[str, str] = {}
    for table in re.findall(r"(?:^\|.*\n?)+", section, flags=re.MULTILINE):
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
        found = next((row for row in rows[2:] if row[0] == method), None)
        if found is not None:
            cells = {**dict(zip(rows[0], found, strict=True)), **cells}
    return cells


def make_project(project: Path, params: dict) -> Path:
    """A new git repository holding the pipeline (dvc.yaml, stages, pfm) and ``params``."""
    project.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", *PLACEHOLDERS):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, project / name)
    for folder in ("stages", "pfm", ".dvc"):
        shutil.copytree(
            ROOT / folder,
            project / folder,
            ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"),
        )
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    sh("git", "init", "-q", cwd=project)
    return project


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny project after one ``dvc repro``. Tests that change it work on a copy."""
    project = make_project(tmp_path_factory.mktemp("repro") / "project", tiny_params())
    sh("dvc", "repro", cwd=project)
    return project


def test_dvc_repro_then_experiment_and_metrics_diff(reproduced: Path, tmp_path: Path) -> None:
    project = shutil.copytree(reproduced, tmp_path / "project", symlinks=True)

    metrics = json.loads((project / "metrics/eval/digits/pfm/seed0.json").read_text())
    for k in (1, 5, 9):
        assert metrics[f"k{k}.sets"] == 2 and metrics[f"k{k}.exhaustive"] == 0
        for key in ("forget_acc.mean", "forget_acc.std", "retain_acc.mean", "retain_acc.std"):
            assert 0.0 <= metrics[f"k{k}.{key}"] <= 1.0
    assert {"no_forget.full_bank.acc", "no_forget.infer_best.acc"} <= set(metrics)
    history = json.loads((project / "reports/history/digits/pfm/seed0.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1]
    assert (project / "models/pfm/digits/seed0.pt").is_file()
    plain = json.loads((project / "metrics/train/digits/plain/seed0.json").read_text())
    assert plain["epochs"] == 1 and plain["trainable_params"] > 0
    check_unlearning(project, metrics)
    check_attacks(project, json.loads((project / "metrics/summary.json").read_text()))
    assert metrics["cost.flops_per_sample"] > 0 and metrics["cost.prompt_bank_bytes"] > 0
    row = report_row(project, "digits", "pfm")  # tables compare the unlearn stage's draws
    unlearned = json.loads((project / "metrics/unlearn/digits/seed0/pfm/seed0.json").read_text())
    mean = unlearned["k1.retain_acc.mean"]  # one seed, two forget sets: n = 2
    report = (project / "reports/results.md").read_text()
    assert "Cells: n = 2 unless marked" in report  # stated once, not in every cell
    assert row["retained acc ↑"].startswith(f"{mean:.3f} ± ") and "(n=" not in row["retained acc ↑"]
    assert report_row(project, "digits", "retrain (reference)")["unlearn s ↓"] != "—"
    assert row["FLOPs/sample ↓"] != "—" and row["unlearn s ↓"] != "—"
    assert row["MIA loss_auc ≈R"] != "—"  # aggregate.primary_mia, fixed in advance
    assert "References: `retrain_prompt` for the prompt model's rows" in report
    recipes = report.split("## Recipes: hand and tuned")[1].split("## ")[0]
    assert "ran the **hand** recipes" in recipes and "| retrain " not in recipes  # a reference
    assert "digits, stage tune (validation only)" in recipes and "`pfm` (its recipe" in recipes
    for title in ("Forgotten acc", "Retained acc", "MIA loss_auc"):
        line = next(x for x in report.splitlines() if x.startswith(f"- {title} (k=1)"))
        assert "method − reference (margin ±0.05): equivalent: " in line
        assert "; apart: " in line and "; inconclusive: " in line and "1 seed × " in line
    assert "within" not in report
    check_samples(project, json.loads((project / "metrics/summary.json").read_text()), report)
    ladder = report_row(project, "digits", "pfm")  # the ladder: every capability × m
    assert ladder["verdict"] in ("equivalent", "apart", "inconclusive")
    assert ladder["checks"] in ("pass", "collapse", "unspecific", "unmeasured")
    assert ladder["retained acc"] != "—" and ladder["pre-attack retained"] != "—"
    assert "### Recovery attack details, k = 1" in report
    assert "commit: `uncommitted`" in report
    for name in ("paired_differences", "accuracy_vs_k", "relearn", "unlearn_time"):
        assert (project / f"reports/figures/digits/{name}.png").stat().st_size > 5000
    plots = json.loads(sh("dvc", "plots", "show", "--json", cwd=project))
    assert "reports/figures/digits/accuracy_vs_k.png" in json.dumps(plots)
    assert (project / "models/backbones/pretrained/config.json").is_file()
    assert (project / "models/backbones/minilm-l6/config.json").is_file()  # model.text_backbone
    for unselected in ("dinov2-small", "whisper-tiny-en-1s", "smollm2-135m"):  # named by none
        folder = project / "models/backbones" / unselected
        assert [path.name for path in folder.iterdir()] == ["NOT_CONVERTED.txt"]
    assert "up to date" in sh("dvc", "status", cwd=project)

    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "baseline", cwd=project)
    sh("dvc", "exp", "run", "-S", "train.epochs=2", cwd=project)
    history = json.loads((project / "reports/history/digits/pfm/seed0.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2]  # resumed, one more epoch
    headline = json.loads(sh("dvc", "metrics", "diff", "--json", cwd=project))
    assert set(headline) == {"metrics/headline.json"}  # DVC's metrics: the headline only
    assert "stages.wall_seconds" in headline["metrics/headline.json"]
    files = ["metrics/summary.json"] + [
        f"metrics/{stage}/digits/{model}/seed0.json"
        for stage, model in (("train", "pfm"), ("eval", "pfm"), ("train", "plain"))
    ]
    diff = sh("dvc", "metrics", "diff", "--json", "--targets", *files, cwd=project)
    changed = json.loads(diff)
    train_diff = changed["metrics/train/digits/pfm/seed0.json"]
    assert train_diff["epochs"] == {"old": 1, "new": 2, "diff": 1}
    assert "no_forget.full_bank.acc" in changed["metrics/eval/digits/pfm/seed0.json"]
    assert "metrics/train/digits/plain/seed0.json" not in changed  # resumed: the same file
    summary_diff = changed["metrics/summary.json"]
    assert summary_diff["digits.pfm.epochs.mean"] == {"old": 1, "new": 2, "diff": 1}
    assert "digits.pfm.no_forget.full_bank.acc.mean" in summary_diff
    # exactly the changed metrics: what the experiment did not touch is not listed
    untouched = {"seeds", "eval.num_classes.mean", "k1.sets.mean", "eval.cost.params.total.mean",
                 "eval.cost.flops_per_sample.mean", "eval.cost.prompt_bank_bytes.mean"}  # fmt: skip
    summary = json.loads((project / "metrics/summary.json").read_text())
    assert {f"digits.pfm.{key}" for key in untouched} <= set(summary)  # they exist ...
    assert not {f"digits.pfm.{key}" for key in untouched} & set(summary_diff)  # ... unchanged


def stage_outputs(project: Path, stage: str) -> dict[str, bytes]:
    """Every file ``stage`` writes (dvc.lock's outs), but its own wall-clock record."""
    outs = yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]["outs"]
    files: dict[str, bytes] = {}
    for out in outs:
        if out["path"].startswith("metrics/stages/"):
            continue
        path = project / out["path"]
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                files[str(file.relative_to(project))] = file.read_bytes()
    return files


def staging_left(project: Path) -> list[str]:
    return [str(p) for p in project.rglob("*") if STAGED in p.name]


KILL_TIMEOUT = 1800  # s: an uninterrupted stage command that runs longer has hung


def kill_at(project: Path, command: str, after: float) -> bool:
    """Run ``command`` as the stage would and SIGKILL its whole process group ``after``
    seconds in; whether it was still running then."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        command, shell=True, cwd=project, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        process.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


@pytest.mark.parametrize("stage", ["aggregate", "attack@digits-0"])
def test_a_stage_killed_at_a_random_point_changes_nothing_and_reruns_identically(
    reproduced: Path, tmp_path: Path, stage: str
) -> None:
    """SIGKILL, as a power cut or the OOM killer would, of the stage's real command at a
    point drawn uniformly from its uninterrupted run (halved while a run ends first: a
    run of seconds varies from one to the next): its outputs are what they were,
    and the rerun (with the killed run's staging left on disk) writes the same bytes.
    The draw's seed is in the failure message, so a failing point can be replayed."""
    project = shutil.copytree(reproduced, tmp_path / "project", symlinks=True)
    before = stage_outputs(project, stage)
    command = yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]["cmd"]
    started = time.monotonic()  # the bare command's own time: DVC's hashing is not the stage's
    assert not kill_at(project, command, KILL_TIMEOUT), "an uninterrupted run did not end"
    duration = time.monotonic() - started
    assert stage_outputs(project, stage) == before, "an uninterrupted rerun differs"
    seed = int(os.environ.get("PFM_KILL_SEED", time.time_ns() % 2**32))
    fraction = random.Random(seed).uniform(0.1, 0.9)
    after = fraction * duration
    while not kill_at(project, command, after):  # a run of seconds varies: kill it sooner
        after /= 2
        assert after > 0.02 * duration, f"never killed (seed {seed})"
    assert stage_outputs(project, stage) == before, f"killed at {fraction:.2f}, seed {seed}"
    sh("dvc", "repro", "--force", "--single-item", stage, cwd=project)
    assert stage_outputs(project, stage) == before, f"rerun after kill, seed {seed}"
    assert not staging_left(project)


def test_the_attack_stage_writes_nothing_when_one_model_is_damaged(
    reproduced: Path, tmp_path: Path
) -> None:
    """Every attack runs in one staged pool: one unreadable unlearned model (the first
    draw of ``retrain``, an attacked one) stops the stage with one line naming it, and
    not one of the outputs of the attacks that did finish changes."""
    project = shutil.copytree(reproduced, tmp_path / "project", symlinks=True)
    stage = "attack@digits-0"
    before = stage_outputs(project, stage)
    folder = project / "models/unlearned/digits/seed0/retrain/seed0"
    damaged = folder / json.loads((folder / "manifest.json").read_text())["draws"][0]["model"]
    damaged.unlink()
    damaged.write_bytes(b"not a checkpoint")
    command = yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]["cmd"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        command, shell=True, cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(damaged.relative_to(project)) in errors[0], result.stderr
    assert stage_outputs(project, stage) == before and not staging_left(project)


def experiment_results(project: Path, name: str) -> dict[str, object]:
    """What experiment ``name`` measured: its summary and headline, committed to its git
    ref by DVC, without the keys that time the run."""
    refs = sh("git", "for-each-ref", "--format=%(refname)", "refs/exps", cwd=project).split()
    ref = next(r for r in refs if r.endswith(f"/{name}"))
    results: dict[str, object] = {}
    for path in ("metrics/summary.json", "metrics/headline.json"):
        payload = json.loads(sh("git", "show", f"{ref}:{path}", cwd=project))
        results |= {f"{path}:{k}": v for k, v in payload.items() if "seconds" not in k}
    return results


def test_two_queued_experiments_at_once_equal_each_run_alone(
    reproduced: Path, tmp_path: Path
) -> None:
    """``dvc exp run --queue`` twice and ``dvc queue start --jobs 2``: both run at once in
    their own workspaces against one cache and finish, and each measures what the same
    experiment measures run alone in the workspace (times excluded)."""
    project = shutil.copytree(reproduced, tmp_path / "project", symlinks=True)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "baseline", cwd=project)
    settings = {v: f"aggregate.primary_mia={v}" for v in ("efficacy", "loss_logreg")}
    for name, setting in settings.items():
        sh("dvc", "exp", "run", "--queue", "-S", setting, "-n", f"queued-{name}", cwd=project)
    sh("dvc", "queue", "start", "--jobs", "2", cwd=project)
    deadline = time.monotonic() + 600
    while True:
        status = sh("dvc", "queue", "status", cwd=project)
        if not re.search(r"\b(Queued|Running)\b", status) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    for name, setting in settings.items():
        sh("dvc", "exp", "run", "-S", setting, "-n", f"alone-{name}", cwd=project)
    for variant in settings:  # each experiment's own setting reached its headline
        assert f"metrics/headline.json:digits.pfm.mia_{variant}" in experiment_results(
            project, f"queued-{variant}"
        )
    for name in settings:
        assert experiment_results(project, f"queued-{name}") == experiment_results(
            project, f"alone-{name}"
        ), name
