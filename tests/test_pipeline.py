"""End to end: ``dvc repro`` of the real dvc.yaml on a tiny profile, then an experiment
whose changed param shows up in ``dvc metrics diff``."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def sh(*cmd: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["digits"]["per_class"] = 12
    params["pretrain"]["epochs"] = 1
    params["pretrain"]["data"].update(train_per_class=8, test_per_class=2)
    params["train"].update(epochs=1, eval_modes=["full_bank", "none"])
    params["evaluate"].update(max_sets=2, modes=["full_bank", "none", "infer_best"])
    return params


def test_dvc_repro_then_experiment_and_metrics_diff(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("stages", "pfm", ".dvc"):
        shutil.copytree(
            ROOT / folder,
            project / folder,
            ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"),
        )
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    sh("git", "init", "-q", cwd=project)
    sh("dvc", "repro", cwd=project)

    metrics = json.loads((project / "metrics/eval/digits/pfm/seed0.json").read_text())
    for k in (1, 5, 9):
        assert metrics[f"k{k}.sets"] == 2 and metrics[f"k{k}.exhaustive"] == 0
        for key in ("forget_acc.mean", "forget_acc.std", "retain_acc.mean", "retain_acc.std"):
            assert 0.0 <= metrics[f"k{k}.{key}"] <= 1.0
    assert {"no_forget.full_bank.acc", "no_forget.infer_best.acc"} <= set(metrics)
    history = json.loads((project / "reports/history/digits/pfm/seed0.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1]
    assert (project / "models/pfm/digits/seed0.pt").is_file()
    assert (project / "models/backbones/pretrained/config.json").is_file()
    assert "up to date" in sh("dvc", "status", cwd=project)

    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "baseline", cwd=project)
    sh("dvc", "exp", "run", "-S", "train.epochs=2", cwd=project)
    history = json.loads((project / "reports/history/digits/pfm/seed0.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2]  # resumed, one more epoch
    diff = sh("dvc", "metrics", "diff", "--json", cwd=project)
    changed = json.loads(diff)
    train_diff = changed["metrics/train/digits/pfm/seed0.json"]
    assert train_diff["epochs"] == {"old": 1, "new": 2, "diff": 1}
    assert "no_forget.full_bank.acc" in changed["metrics/eval/digits/pfm/seed0.json"]
