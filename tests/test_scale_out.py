"""The multi-machine recipe of docs/scaling.md, end to end on the tiny profile with two
seeds: clones of one project act as machines that share a local directory remote. The
first reproduces seed 0, the second seed 1 (restoring the shared stages the first pushed),
each pushes outputs and run-cache; the third pulls and reproduces, and no stage command
but aggregate's runs there. Its summary equals the one the first machine writes once it
has run seed 1 itself (one machine, every seed), but for what is measured — wall-clock
times and peak memory — which no two runs share."""

import json
import re
from pathlib import Path

import pytest

from tests.test_pipeline import make_project, sh, tiny_params

pytestmark = pytest.mark.slow

SEEDS = (0, 1)
TIMEOUT = 3600  # a guard against a hang: a tiny unit takes minutes, several beside other work
RAN = re.compile(r"^Running stage '([^']+)'", re.MULTILINE)
RESTORED = re.compile(r"^Stage '([^']+)' is cached - skipping run", re.MULTILINE)
MEASURED = re.compile(r"seconds|memory|\.rte$")  # times, their ratios, peak memory
UNIT_STAGES = ("train", "evaluate", "unlearn", "attack", "forget-samples")  # per (dataset, seed)
SHARED_STAGES = (
    "validate", "prepare@digits", "pretrain", "convert-dinov2", "convert-whisper",
    "convert-minilm", "convert-smollm2", "hand-recipes@digits",
)  # fmt: skip
TUNE = "tune@digits"  # under `recipes: hand` no unit needs it: the aggregating machine runs it


def machine(origin: Path, name: str) -> Path:
    """A clone of ``origin``: what a new machine starts from (the remote is in its config)."""
    sh("git", "clone", "-q", str(origin), name, cwd=origin.parent)
    return origin.parent / name


def repro(project: Path, *args: str) -> tuple[list[str], list[str]]:
    """``dvc repro args``: the stages whose command ran and those the run-cache restored."""
    out = sh("dvc", "repro", *args, cwd=project, timeout=TIMEOUT)
    return RAN.findall(out), RESTORED.findall(out)


def take_seed(project: Path, seed: int) -> tuple[list[str], list[str]]:
    """One machine's share: its seed's units (and what they need), pushed to the remote."""
    units = (f"{stage}@digits-{seed}" for stage in ("evaluate", "attack", "forget-samples"))
    done = repro(project, "--pull", *units)
    sh("dvc", "push", "--run-cache", cwd=project)
    return done


def unit_names(seed: int) -> set[str]:
    return {f"{stage}@digits-{seed}" for stage in UNIT_STAGES}


def metric_files(project: Path) -> dict[str, str]:
    """Every per-run metrics and curve file (relative path → text), the summary aside."""
    files = [*(project / "metrics").rglob("seed*.json"), *(project / "reports").rglob("seed*.json")]
    return {str(path.relative_to(project)): path.read_text() for path in files}


def computed_summary(project: Path) -> dict:
    """``metrics/summary.json`` without the keys of measurements (``MEASURED``)."""
    summary = json.loads((project / "metrics/summary.json").read_text())
    return {key: value for key, value in summary.items() if not MEASURED.search(key)}


def test_seeds_split_over_machines_give_one_machines_summary(tmp_path: Path) -> None:
    params = tiny_params()
    params["seeds"] = list(SEEDS)
    origin = make_project(tmp_path / "origin", params)
    sh("dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=origin)
    sh("git", "add", "-A", cwd=origin)
    sh("git", "commit", "-qm", "tiny profile, two seeds", cwd=origin)
    first, second, third = (machine(origin, name) for name in ("first", "second", "third"))

    ran, _ = take_seed(first, 0)
    assert set(ran) == unit_names(0) | set(SHARED_STAGES)
    ran, restored = take_seed(second, 1)
    assert set(ran) == unit_names(1) and set(restored) == set(SHARED_STAGES)
    pushed = metric_files(first) | metric_files(second)

    ran, restored = repro(third, "--pull")
    # no training, unlearning or attack: every unit restored; the report's recipe section
    # runs stage tune here, on tune.seed's trained models pulled from the remote
    assert set(ran) == {TUNE, "aggregate"}
    assert set(restored) == unit_names(0) | unit_names(1) | set(SHARED_STAGES)
    assert "up to date" in sh("dvc", "status", cwd=third)
    assert metric_files(third) == pushed  # byte for byte, both machines' units

    ran, _ = repro(first)  # no pull: the first machine runs seed 1 itself, then aggregate
    assert set(ran) == unit_names(1) | {TUNE, "aggregate"}
    summary = computed_summary(third)
    assert summary["digits.pfm.seeds"] == len(SEEDS) and summary == computed_summary(first)
