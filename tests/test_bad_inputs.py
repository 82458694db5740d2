"""Bad input, by category: damaged or foreign files, params a stage refuses, and a run that
fails beside others. Each is one ``error:`` line naming what is wrong, exit status 2, and
every output as it was before the stage started (a stage writes its outputs only once
every one of its runs has succeeded).

Most stages run in this process (``runpy``: no 10 s interpreter start each); two run as
real processes, for the exit status and stderr a user sees."""

import copy
import io
import json
import os
import pickle
import runpy
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pfm.cli import EXIT_BAD_INPUT, run_stage
from pfm.data import load_prepared, save_prepared
from pfm.files import STAGED, Staging, staged, write_json
from pfm.models.checkpoint import load_model, save_model
from pfm.parallel import run_all
from pfm.tune.recipes import write_hand
from pfm.unlearn.manifest import read_manifest
from tests.conftest import make_model, toy_dataset

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CPU = torch.device("cpu")
NOISE = np.random.default_rng(0).bytes(4000)  # random bytes, the same every run


class RunsCode:
    """What a crafted file pickles: loading it would call ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (checkpoints aside: they are not outputs) and its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "checkpoint" not in p.parts
    }


def no_staging_left(root: Path) -> bool:
    return not [p for p in root.rglob("*") if STAGED in p.name]


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line of ``stderr`` (and no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def in_process(
    name: str, args: list[str], cwd: Path, params: dict, monkeypatch, capsys
) -> tuple[int, str]:
    """Stage ``name`` run as its script would be, in this process: (exit status, stderr)."""
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [f"stages/{name}.py", *args])
    try:
        runpy.run_path(str(ROOT / "stages" / f"{name}.py"), run_name="__main__")
        status = 0
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    return status, capsys.readouterr().err


def tiny_params(**train: object) -> dict:
    params = copy.deepcopy(PARAMS)
    params["model"].update(backbone="vit-tiny", input_size=None)  # built here, no file
    params["train"].update(epochs=1, batch_size=8, device="cpu", eval_modes=["full_bank"])
    params["train"].update(train)
    params["train_base"].update(epochs=1, batch_size=8, device="cpu")
    params["unlearn"].update(k=[1], max_sets=1)
    params["attacks"]["recovery"].update(k=[1], draws=1)
    params["methods"] = ["pfm"]
    return params


# --- damaged and foreign files ----------------------------------------------------------


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _flipped(data: bytes) -> bytes:
    middle = bytearray(data)
    for i in range(len(middle) // 2, len(middle) // 2 + 64):
        middle[i] ^= 0xFF
    return bytes(middle)


ARRAY_FILES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "random bytes": (lambda good: NOISE, "neither an .npz archive nor a .npy array"),
    "a pickle": (lambda good: pickle.dumps({"a": 1}), "a pickle, refused: loading it could run"),
    "pickled objects inside": (
        lambda good: _npz(class_names=np.array([{"a": 1}], dtype=object)),
        "holds pickled objects, refused: loading them could run code",
    ),
    "a single .npy": (lambda good: _npy(np.zeros(3)), "a single .npy array"),
    "a foreign .npz": (lambda good: _npz(x=np.zeros(3)), "no array 'train_images'"),
    "a truncated archive": (lambda good: good[: len(good) // 2], "damaged archive"),
    "flipped bytes": (_flipped, "damaged archive"),
    "an empty file": (lambda good: b"", "damaged archive"),
}


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prepared") / "data"
    save_prepared(toy_dataset(), folder)
    return folder


@pytest.mark.parametrize("kind", ARRAY_FILES)
def test_a_damaged_or_foreign_array_file_names_its_path(
    kind: str, prepared: Path, tmp_path: Path
) -> None:
    make, reason = ARRAY_FILES[kind]
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "counts.json").write_bytes((prepared / "counts.json").read_bytes())
    (folder / "data.npz").write_bytes(make((prepared / "data.npz").read_bytes()))
    with pytest.raises(ValueError) as error:
        load_prepared(folder)
    message = error.value.args[0]
    assert message.startswith(f"{folder / 'data.npz'}: ") and reason in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("counts", "error", "reason"),
    [
        (None, FileNotFoundError, "not found; run the prepare stage"),
        ("{not json", ValueError, "not a prepared counts file (JSONDecodeError"),
        ("{}", ValueError, "not a prepared counts file (KeyError"),
    ],
)
def test_a_missing_or_garbled_side_file_names_its_path(
    counts: str | None, error: type, reason: str, prepared: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "data.npz").write_bytes((prepared / "data.npz").read_bytes())
    if counts is not None:
        (folder / "counts.json").write_text(counts)
    with pytest.raises(error) as raised:
        load_prepared(folder)
    assert str(folder / "counts.json") in raised.value.args[0]
    assert reason in raised.value.args[0]
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "manifest.json")):
        read_manifest(tmp_path)


def _checkpoint_kinds(good: bytes, marker: Path) -> dict[str, tuple[bytes, str]]:
    def torch_bytes(payload: object) -> bytes:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()

    refused = "refused: loading it could run code (not a pfm checkpoint)"
    return {
        "random bytes": (NOISE, "is unreadable"),
        "a truncated file": (good[: len(good) // 2], "is unreadable (corrupt or truncated)"),
        "flipped bytes": (_flipped(good), "fails its CRC check"),
        "an empty file": (b"", "is unreadable (corrupt or truncated)"),
        "a foreign dict": (torch_bytes({"hello": 1}), "is not a pfm-model/1 checkpoint"),
        "no state": (torch_bytes({"format": "pfm-model/1"}), "model spec is missing"),
        "code, torch.save": (
            torch_bytes({"format": "pfm-model/1", "x": RunsCode(marker)}),
            refused,
        ),
        "code, pickle 2": (pickle.dumps(RunsCode(marker), protocol=2), refused),
        "code, pickle 5": (pickle.dumps(RunsCode(marker), protocol=5), refused),
    }


def test_every_kind_of_bad_checkpoint_is_one_line_naming_it(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_model(make_model(), good)
    marker = tmp_path / "ran"
    kinds = _checkpoint_kinds(good.read_bytes(), marker)
    for kind, (data, reason) in kinds.items():
        path = tmp_path / f"{kind.replace(' ', '_')}.pt"
        path.write_bytes(data)
        with pytest.raises(ValueError) as error:
            load_model(path)
        message = error.value.args[0]
        assert str(path) in message and reason in message and "\n" not in message, kind
        assert "weights_only" not in message, kind  # no advice to turn the safe loader off
    assert not marker.exists()  # nothing ran


def test_an_os_error_is_its_path_and_reason_not_its_errno(capsys) -> None:
    def missing() -> None:
        Path("/nonexistent/side.json").read_text()

    def keyed() -> None:
        raise KeyError("unlearn: missing key(s) ['k']")

    def long() -> None:
        raise ValueError("first line\n  second line")

    lines = []
    for main in (missing, keyed, long):
        with pytest.raises(SystemExit) as exit_:
            run_stage(main, "test")
        assert exit_.value.code == EXIT_BAD_INPUT
        lines.append(one_error_line(capsys.readouterr().err))
    assert lines == [
        "error: /nonexistent/side.json: No such file or directory",
        "error: unlearn: missing key(s) ['k']",
        "error: first line second line",
    ]


# --- stages on bad files and params: status 2, one line, nothing written ----------------


def real_stage(name: str, args: list[str], cwd: Path, params: dict) -> subprocess.CompletedProcess:
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{name}.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_evaluate_stage_refuses_a_checkpoint_made_to_run_code(
    prepared: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    torch.save({"format": "pfm-model/1", "spec": RunsCode(marker)}, tmp_path / "model.pt")
    args = ["--data", str(prepared), "--model", "model.pt", "--seed", "0", "--out", "m.json"]
    result = real_stage("evaluate", args, tmp_path, tiny_params())
    assert result.returncode == EXIT_BAD_INPUT
    assert one_error_line(result.stderr) == (
        "error: model.pt: refused: loading it could run code (not a pfm checkpoint)"
    )
    assert result.stderr.strip().count("\n") == 0  # nothing else on stderr either
    assert not (tmp_path / "m.json").exists() and not marker.exists()


def test_the_validate_stage_stops_a_bad_value_and_keeps_its_marker(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("checked before\n")
    params = copy.deepcopy(PARAMS)
    params["train"]["epochs"] = "ten"
    result = real_stage("validate", ["--out", "ok.txt"], tmp_path, params)
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr == "error: train.epochs: expected an integer ≥ 1, got 'ten'\n"
    assert (tmp_path / "ok.txt").read_text() == "checked before\n"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "data.npz").write_bytes(NOISE), "data/data.npz: neither"),
        (lambda d: (d / "counts.json").unlink(), "prepared dataset file data/counts.json not"),
    ],
    ids=["random bytes as data.npz", "no counts.json"],
)
def test_stages_stop_at_a_damaged_input_before_writing(
    damage: Callable[[Path], None],
    message: str,
    prepared: Path,
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("data.npz", "counts.json"):
        (data / name).write_bytes((prepared / name).read_bytes())
    damage(data)
    save_model(make_model(), tmp_path / "model.pt")
    args = ["--data", "data", "--model", "model.pt", "--seed", "0", "--out", "m.json"]
    status, stderr = in_process("evaluate", args, tmp_path, tiny_params(), monkeypatch, capsys)
    assert status == EXIT_BAD_INPUT and one_error_line(stderr).startswith(f"error: {message}")
    assert not (tmp_path / "m.json").exists()


TRAIN_ARGS = [
    "--data", "data", "--seed", "0", "--model", "out/pfm.pt", "--checkpoint", "ckpt/pfm.pt",
    "--metrics", "out/pfm.json", "--history", "out/pfm_history.json",
    "--plain-model", "out/plain.pt", "--plain-checkpoint", "ckpt/plain.pt",
    "--plain-metrics", "out/plain.json", "--plain-history", "out/plain_history.json",
    "--references", "out/references",
]  # fmt: skip


@pytest.fixture
def train_project(prepared: Path, tmp_path: Path) -> Path:
    """A project whose outputs of an earlier train run are there (placeholder bytes)."""
    (tmp_path / "data").mkdir()
    for name in ("data.npz", "counts.json"):
        (tmp_path / "data" / name).write_bytes((prepared / name).read_bytes())
    for name in ("pfm.pt", "pfm.json", "pfm_history.json", "plain.pt", "plain.json"):
        (tmp_path / "out" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "out" / name).write_text(f"earlier {name}")
    write_json(tmp_path / "out/references/manifest.json", {"earlier": True})
    return tmp_path


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", float("nan"), "train.lr: expected a finite number > 0, got nan"),
        ("epochs", 0, "train.epochs: expected an integer ≥ 1, got 0"),
        ("device", "tpu", "train.device: expected auto or a torch device"),
    ],
)
def test_the_train_stage_refuses_a_bad_param_before_training(
    key: str, value: object, message: str, train_project: Path, monkeypatch, capsys
) -> None:
    before = snapshot(train_project / "out")
    params = tiny_params(**{key: value})
    status, stderr = in_process("train", TRAIN_ARGS, train_project, params, monkeypatch, capsys)
    assert status == EXIT_BAD_INPUT and one_error_line(stderr).startswith(f"error: {message}")
    assert snapshot(train_project / "out") == before
    assert not (train_project / "ckpt").exists()  # nothing trained


# --- all or nothing ---------------------------------------------------------------------


def test_staged_outputs_move_in_together_or_not_at_all(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("old a")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "stale.pt").write_text("old run")
    with pytest.raises(RuntimeError), staged() as stage:
        stage.path(tmp_path / "a.json").write_text("new a")
        raise RuntimeError("a neighbour failed")
    assert (tmp_path / "a.json").read_text() == "old a" and no_staging_left(tmp_path)
    with staged() as stage:
        stage.path(tmp_path / "a.json").write_text("new a")
        write_json(stage.path(tmp_path / "run") / "manifest.json", {"new": 1})
        stage.path(tmp_path / "never_written.json")
    assert (tmp_path / "a.json").read_text() == "new a"
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["manifest.json"]  # replaced whole
    assert not (tmp_path / "never_written.json").exists() and no_staging_left(tmp_path)


def test_a_killed_runs_staging_is_cleared_by_the_next(tmp_path: Path) -> None:
    Staging().path(tmp_path / "m.pt").write_text("half")  # never committed nor discarded
    assert not no_staging_left(tmp_path)
    with staged() as stage:
        stage.path(tmp_path / "m.pt").write_text("whole")
    assert (tmp_path / "m.pt").read_text() == "whole" and no_staging_left(tmp_path)


def test_a_killed_run_leaves_nothing_inside_an_output_folder(tmp_path: Path) -> None:
    """A file below a declared output folder is staged in that folder's copy, so a run
    killed before commit leaves the folder's files exactly as they were (DVC would see a
    staging folder inside it as a changed output); the next run clears the staging."""
    out = tmp_path / "metrics" / "seed0"
    (out / "pfm").mkdir(parents=True)
    (out / "pfm" / "seed0.json").write_text("old")
    killed = Staging([out])
    killed.path(out / "pfm" / "seed0.json").write_text("half")  # never committed nor discarded
    killed.path(out / "retrain" / "seed0.json").write_text("half")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "pfm", "pfm/seed0.json"
    ]  # fmt: skip
    assert not no_staging_left(tmp_path)
    with staged(tmp_path / "metrics" / ".." / "metrics" / "seed0") as stage:  # another spelling
        stage.path(out / "pfm" / "seed0.json").write_text("new")
    assert [p.relative_to(out).as_posix() for p in out.rglob("*")] == ["pfm", "pfm/seed0.json"]
    assert (out / "pfm" / "seed0.json").read_text() == "new" and no_staging_left(tmp_path)


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _fail(path: Path) -> None:
    raise ValueError(f"{path}: unreadable")


def test_one_failing_worker_leaves_every_output_as_it_was(tmp_path: Path) -> None:
    finals = [tmp_path / f"run{i}.json" for i in range(4)]
    for path in finals:
        path.write_text("old")
    with pytest.raises(ValueError, match="unreadable"), staged() as stage:
        jobs = [partial(_write, stage.path(p), "new") for p in finals[:3]]
        run_all([*jobs, partial(_fail, stage.path(finals[3]))], 2, CPU)
    assert [p.read_text() for p in finals] == ["old"] * 4 and no_staging_left(tmp_path)


def test_the_train_stage_writes_no_model_when_one_run_fails(
    train_project: Path, monkeypatch, capsys
) -> None:
    """The never-seen reference's resume checkpoint is damaged: the prompt and plain
    models train beside it, but none of the stage's outputs changes. Once the damaged
    checkpoint is gone, the rerun writes them all, the manifests naming final paths."""
    before = snapshot(train_project / "out")
    references = train_project / "ckpt" / "pfm"
    references.mkdir(parents=True)
    for c in range(4):  # whichever class the seed draws
        (references / f"k1-{c}.pt").write_bytes(b"not a checkpoint")
    params = tiny_params()
    status, stderr = in_process("train", TRAIN_ARGS, train_project, params, monkeypatch, capsys)
    assert status == EXIT_BAD_INPUT
    line = one_error_line(stderr)
    assert line.startswith("error: checkpoint ckpt/pfm/k1-") and "is unreadable" in line
    assert snapshot(train_project / "out") == before and no_staging_left(train_project)

    for damaged in references.iterdir():
        damaged.unlink()
    status, stderr = in_process("train", TRAIN_ARGS, train_project, params, monkeypatch, capsys)
    assert status == 0, stderr
    out = train_project / "out"
    assert load_model(out / "pfm.pt").spec.with_prompts
    assert not load_model(out / "plain.pt").spec.with_prompts
    manifest = json.loads((out / "references" / "manifest.json").read_text())
    assert manifest["base_model"] == "out/pfm.pt" and len(manifest["draws"]) == 1
    assert (out / "references" / manifest["draws"][0]["model"]).is_file()
    assert no_staging_left(train_project)


def test_the_unlearn_stage_writes_nothing_when_one_run_fails(
    train_project: Path, monkeypatch, capsys
) -> None:
    """Method ``pfm`` succeeds; scoring the never-seen references fails (their manifest is
    missing): neither run's files appear."""
    models = train_project / "models"
    save_model(make_model(), models / "pfm" / "seed0.pt")
    save_model(make_model(with_prompts=False), models / "plain" / "seed0.pt")
    (train_project / "unlearned").mkdir()
    write_json(train_project / "metrics" / "pfm" / "seed0.json", {"earlier": 1})
    before = snapshot(train_project / "metrics")
    params = tiny_params()
    write_hand(train_project / "recipes.yaml", params)  # what stage hand-recipes writes
    args = [
        "--data", "data", "--prompt-models", "models/pfm", "--plain-models", "models/plain",
        "--models", "unlearned", "--out", "metrics", "--prompt-references", "references",
        "--recipes", "recipes.yaml",
    ]  # fmt: skip
    status, stderr = in_process("unlearn", args, train_project, params, monkeypatch, capsys)
    assert status == EXIT_BAD_INPUT
    assert one_error_line(stderr).startswith("error: no unlearned-model manifest references/")
    assert snapshot(train_project / "metrics") == before
    assert not list((train_project / "unlearned").iterdir()) and no_staging_left(train_project)
