"""Stage scripts on bad input: one clear error line, exit status 2, nothing half-written."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pfm.data import build_dataset, save_prepared
from pfm.models.checkpoint import save_model
from tests.conftest import make_model

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def stage(
    name: str, *args: str, cwd: Path, params: dict | None = None
) -> subprocess.CompletedProcess:
    (cwd / "params.yaml").write_text(yaml.safe_dump(params or PARAMS))
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{name}.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clean_failure(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert f"error: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_dataset(tmp_path: Path) -> None:
    result = stage("prepare", "--dataset", "digitz", "--out", "out", cwd=tmp_path)
    assert_clean_failure(result, "unknown dataset 'digitz'")
    assert not (tmp_path / "out").exists()


def test_missing_medmnist_file_offline(tmp_path: Path) -> None:
    result = stage("prepare", "--dataset", "organsmnist", "--out", "out", cwd=tmp_path)
    assert_clean_failure(result, "MedMNIST file data/raw/medmnist/organsmnist.npz not found")
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


@pytest.fixture
def prepared_and_model(tmp_path: Path) -> tuple[Path, Path]:
    save_prepared(build_dataset("digits", {"per_class": 6}), tmp_path / "data")
    save_model(make_model(num_classes=10), tmp_path / "model.pt")
    return tmp_path / "data", tmp_path / "model.pt"


def evaluate_params(**overrides: object) -> dict:
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["evaluate"].update(modes=["full_bank"], max_sets=1, **overrides)
    return params


def evaluate(cwd: Path, data: Path, model: Path, params: dict) -> subprocess.CompletedProcess:
    """The evaluate stage on ``data`` and ``model``, writing ``m.json`` in ``cwd``."""
    args = ("--data", str(data), "--model", str(model), "--seed", "0", "--out", "m.json")
    return stage("evaluate", *args, cwd=cwd, params=params)


def test_k_not_below_c(tmp_path: Path, prepared_and_model: tuple[Path, Path]) -> None:
    data, model = prepared_and_model
    result = evaluate(tmp_path, data, model, evaluate_params(k=[1, 10]))
    assert_clean_failure(result, "k must satisfy 1 ≤ k < C = 10, got k = 10")
    assert not (tmp_path / "m.json").exists()


def test_corrupt_checkpoint(tmp_path: Path, prepared_and_model: tuple[Path, Path]) -> None:
    data, model = prepared_and_model
    model.write_bytes(model.read_bytes()[:1000])
    result = evaluate(tmp_path, data, model, evaluate_params())
    assert_clean_failure(result, f"checkpoint {model} is unreadable")
    assert not (tmp_path / "m.json").exists()


def test_misspelt_param(tmp_path: Path, prepared_and_model: tuple[Path, Path]) -> None:
    data, model = prepared_and_model
    result = evaluate(tmp_path, data, model, evaluate_params(max_set=3))
    assert_clean_failure(result, "evaluate: unknown key(s) ['max_set']")


def test_evaluate_writes_flat_metrics(
    tmp_path: Path, prepared_and_model: tuple[Path, Path]
) -> None:
    data, model = prepared_and_model
    result = evaluate(tmp_path, data, model, evaluate_params(k=[1]))
    assert result.returncode == 0, result.stderr
    metrics = yaml.safe_load((tmp_path / "m.json").read_text())
    units = metrics.pop("units")  # one record per forget set: the aggregate's intervals
    assert all(isinstance(v, int | float) for v in metrics.values())
    assert {"no_forget.full_bank.acc", "k1.forget_acc.mean", "k1.retain_acc.std", "k1.sets"} <= set(
        metrics
    )
    assert len(units) == metrics["k1.sets"] and all(u["k"] == 1 for u in units)
    assert all(0.0 <= u["forget_acc"] <= 1.0 for u in units)
