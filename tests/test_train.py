"""The training loop: seed-determinism, exact resume, and that it learns; the train
stage's models side by side, and its rerun rewriting the same bytes."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from pfm.batches import SplitTensors
from pfm.data import save_prepared
from pfm.losses import plain_objective, prompt_objective
from pfm.models.checkpoint import load_model
from pfm.models.prompted import PromptedClassifier
from pfm.train import TrainConfig, resume_key, train
from tests.conftest import make_model, toy_dataset

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
CONFIG = TrainConfig(epochs=2, batch_size=8, lr=1e-2, eval_modes=("full_bank", "none"))


def run(epochs: int, checkpoint: Path | None, seed: int = 0) -> tuple[PromptedClassifier, list]:
    data = toy_dataset()
    model = make_model(seed=seed)
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": epochs})
    splits = [SplitTensors(data.splits[s], model.input_size, CPU) for s in ("train", "val")]
    key = resume_key(model.spec, config, seed, "toy")
    result = train(model, prompt_objective(1.0), *splits, config, seed, checkpoint, key)
    return model, result.history


def trainable(model: PromptedClassifier) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


COST_KEYS = ("train_seconds", "peak_memory_bytes")  # measured, not computed: differ run to run


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in COST_KEYS} for record in history]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_identical_weights_and_another_seed_does_not() -> None:
    a, history_a = run(2, None)
    b, history_b = run(2, None)
    c, _ = run(2, None, seed=1)
    assert same(trainable(a), trainable(b))
    assert without_timing(history_a) == without_timing(history_b)
    assert not same(trainable(a), trainable(c))


def test_a_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    straight, straight_history = run(2, tmp_path / "straight.pt")
    run(1, tmp_path / "resumed.pt")  # "killed" after epoch 1
    resumed, resumed_history = run(2, tmp_path / "resumed.pt")
    assert same(trainable(straight), trainable(resumed))
    assert without_timing(straight_history) == without_timing(resumed_history)


def test_a_checkpoint_of_another_configuration_is_not_resumed(tmp_path: Path) -> None:
    run(2, tmp_path / "ckpt.pt", seed=1)
    fresh, _ = run(2, None)
    reused, _ = run(2, tmp_path / "ckpt.pt")  # same path, different seed → start afresh
    assert same(trainable(fresh), trainable(reused))


def test_training_changes_only_trainable_weights_and_lowers_the_loss() -> None:
    data = toy_dataset()
    model = make_model(with_prompts=False)
    frozen_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    config = TrainConfig(epochs=6, batch_size=8, lr=1e-2, eval_modes=("none",))
    splits = [SplitTensors(data.splits[s], model.input_size, CPU) for s in ("train", "val")]
    history = train(model, plain_objective, *splits, config, 0, None, "k").history
    assert history[-1]["loss"] < history[0]["loss"]
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert torch.equal(param, frozen_before[name]), name


def test_prompt_lr_is_the_prompt_banks_own_learning_rate() -> None:
    data = toy_dataset()
    splits = lambda m: [SplitTensors(data.splits[s], m.input_size, CPU) for s in ("train", "val")]  # noqa: E731
    moved = {}
    for prompt_lr in (1e-9, 1e-1):
        model = make_model()
        before = model.prompts.detach().clone()
        lora_before = trainable(model)
        config = TrainConfig(epochs=1, batch_size=8, lr=1e-2, prompt_lr=prompt_lr)
        train(model, prompt_objective(1.0), *splits(model), config, 0, None, "k")
        moved[prompt_lr] = (model.prompts.detach() - before).abs().max().item()
        lora_after = {n: p for n, p in trainable(model).items() if "lora_B" in n}
        assert any(not torch.equal(p, lora_before[n]) for n, p in lora_after.items())
    assert moved[1e-9] < 1e-6 < 1e-2 < moved[1e-1]


def train_stage(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "stages/train.py"), "--data", "data", "--seed", "0", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_train_stage_fits_both_kinds_and_a_rerun_rewrites_the_same_bytes(
    tmp_path: Path,
) -> None:
    """The prompt and the plain model train side by side in one stage, so a param of one
    reruns both: the other, resumed from its finished checkpoint, must come out as the
    same files (DVC then keeps everything downstream of it). Its peak memory comes
    from the checkpoint too, not from the process that only loaded it."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(epochs=1, batch_size=8, device="cpu")
    params["train_base"].update(epochs=2, batch_size=8, device="cpu")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    save_prepared(toy_dataset(), tmp_path / "data")
    outputs = {
        kind: {name: f"{kind}/{name}" for name in ("model", "checkpoint", "metrics", "history")}
        for kind in ("prompt", "plain")
    }
    args = [
        f"--{'plain-' if kind == 'plain' else ''}{name}={path}"
        for kind, paths in outputs.items()
        for name, path in paths.items()
    ]
    first = train_stage(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert load_model(tmp_path / "prompt/model").spec.with_prompts
    assert not load_model(tmp_path / "plain/model").spec.with_prompts
    plain = json.loads((tmp_path / "plain/metrics").read_text())
    assert plain["epochs"] == 2 and plain["peak_memory_bytes"] > 0 and "final.val.none" in plain
    history = json.loads((tmp_path / "plain/history").read_text())["epochs"]
    assert plain["peak_memory_bytes"] == history[-1]["peak_memory_bytes"] > 0
    written = {
        path: (tmp_path / path).read_bytes()
        for paths in outputs.values()
        for name, path in paths.items()
        if name != "checkpoint"
    }
    longer = copy.deepcopy(params)
    longer["train"]["epochs"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(longer))
    second = train_stage(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert "resuming from plain/checkpoint after epoch 2" in second.stdout + second.stderr
    for path in ("plain/model", "plain/metrics", "plain/history"):
        assert (tmp_path / path).read_bytes() == written[path], path
    assert json.loads((tmp_path / "prompt/metrics").read_text())["epochs"] == 2
    missing = train_stage(tmp_path, *args[:5])
    assert missing.returncode == 2
    assert "missing: --plain-checkpoint --plain-metrics --plain-history" in missing.stderr
