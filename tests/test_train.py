"""The training loop: seed-determinism, exact resume, and that it learns."""

from pathlib import Path

import torch

from pfm.batches import SplitTensors
from pfm.losses import plain_objective, prompt_objective
from pfm.models.prompted import PromptedClassifier
from pfm.train import TrainConfig, resume_key, train
from tests.conftest import make_model, toy_dataset

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


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "train_seconds"} for record in history]


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
