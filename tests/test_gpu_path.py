"""The GPU path, tested on the CPU: bf16 autocast, SDPA, the loop's loss kept on the
device, data resident on it, and forget-k scoring every set of a k in one pass with the
results of set-by-set scoring."""

import copy
import itertools

import pytest
import torch
from transformers import ViTConfig

from pfm.batches import SplitTensors
from pfm.cost import CostRecord
from pfm.data.prepared import Split
from pfm.evaluate import forget_k, forget_plan, predict
from pfm.losses import prompt_objective
from pfm.models.adapters import LoraSpec
from pfm.models.backbones import build_backbone, from_config
from pfm.models.prompted import PromptedClassifier
from pfm.modes import mode_logits
from pfm.precision import autocast
from pfm.train import TrainConfig, train
from pfm.unlearn import METHODS, unlearn, unlearner
from pfm.unlearn.base import TrainRecipe
from pfm.unlearn.pi_prefix import PrefixRecipe
from pfm.unlearn.prompt_forget import PromptForgetRecipe
from tests.conftest import make_model, toy_dataset

CPU = torch.device("cpu")
DATA = toy_dataset(num_classes=4, per_class=6)


def splits(model: PromptedClassifier) -> tuple[SplitTensors, SplitTensors, SplitTensors]:
    return tuple(
        SplitTensors(DATA.splits[s], model.input_size, CPU) for s in ("train", "val", "test")
    )


def trained(precision: str) -> tuple[PromptedClassifier, list[dict]]:
    model = make_model()
    train_data, val_data, _ = splits(model)
    config = TrainConfig(
        epochs=2, batch_size=8, lr=1e-2, eval_modes=("full_bank",), precision=precision
    )
    result = train(model, prompt_objective(1.0), train_data, val_data, config, 0, None, "")
    return model, result.history


def test_bf16_training_and_evaluation_run_close_to_fp32() -> None:
    fp32, fp32_history = trained("fp32")
    bf16, bf16_history = trained("bf16")
    for a, b in zip(fp32_history, bf16_history, strict=True):
        assert torch.isfinite(torch.tensor(b["loss"]))
        assert b["loss"] == pytest.approx(a["loss"], rel=0.02)
    assert {p.dtype for p in bf16.parameters()} == {torch.float32}  # autocast casts inputs only
    assert all(torch.isfinite(p).all() for p in bf16.parameters())
    _, _, test = splits(fp32)
    x, y = next(test.batches(64))
    with torch.no_grad():
        exact = mode_logits(fp32.eval(), x, y, "full_bank", torch.Generator())
        with autocast(CPU, "bf16"):
            low = mode_logits(fp32, x, y, "full_bank", torch.Generator())
    assert low.dtype == torch.bfloat16
    assert (low.float() - exact).abs().max() < 0.02 * exact.abs().max() + 1e-3
    agree = predict(fp32, test, "full_bank", 8, precision="bf16") == predict(
        fp32, test, "full_bank", 8
    )
    assert agree.mean() >= 0.9


def test_fp32_changes_nothing_and_inherits_a_callers_autocast() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(CPU, "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast(CPU, "bf16"), autocast(CPU, "fp32"):
        assert (a @ b).dtype == torch.bfloat16  # the runner's bf16 reaches the loops it calls
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast(CPU, "fp16")


def test_the_runner_unlearns_at_bf16() -> None:
    plain = make_model(with_prompts=False).eval()
    recipe = TrainRecipe(epochs=1, batch_size=8, lr=1e-3)
    unlearned, cost = unlearn("random_label", plain, (1,), DATA.splits["train"], recipe, 0, "bf16")
    assert cost.optimizer_steps > 0 and cost.trainable_params > 0
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in unlearned.parameters())


def test_the_loop_reads_the_loss_once_an_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``loss.item()`` per step (each waits for the device), and the recorded loss is
    the float64 mean of the steps' losses — the number the old host-side sum gave."""
    seen: list[torch.Tensor] = []
    objective = prompt_objective(1.0)

    def recording(*args: object) -> torch.Tensor:
        loss = objective(*args)  # type: ignore[arg-type]
        seen.append(loss.detach().clone())
        return loss

    original = torch.Tensor.item

    def refuse(self: torch.Tensor) -> float:  # Adam reads its host-side step count
        if self.grad_fn is not None:
            raise AssertionError("the loop read a loss with Tensor.item()")
        return original(self)

    model = make_model()
    train_data, val_data, _ = splits(model)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-2, eval_modes=())
    monkeypatch.setattr(torch.Tensor, "item", refuse)
    history = train(model, recording, train_data, val_data, config, 0, None, "").history
    assert history[0]["loss"] == sum(float(loss) for loss in seen) / len(seen)


def test_backbones_run_sdpa() -> None:
    tiny = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64)  # fmt: skip
    for backbone in (build_backbone("vit-tiny"), build_backbone("ast-tiny"), from_config(tiny)):
        assert backbone.model.config._attn_implementation == "sdpa"
        assert not any(p.requires_grad for p in backbone.model.parameters())


def test_batches_come_from_the_devices_copy() -> None:
    """On an accelerator the stored arrays are copied once and batches sliced there (the
    meta device stands in for one), while ``images`` and ``labels`` stay on the host."""
    data = SplitTensors(DATA.splits["test"], 16, torch.device("meta"))
    assert data.labels.device == CPU and data.inputs.device == CPU
    x, y = next(data.batches(5, torch.randperm(len(data))))
    assert x.device.type == "meta" and x.shape == (5, 3, 16, 16) and y.shape == (5,)


def test_the_bank_follows_its_buffer() -> None:
    """The host copy of the bank's class ids is refreshed when the buffer changes in
    place (``load_state_dict`` copies into it)."""
    model = make_model().forget([1, 3])
    assert model.bank_classes == [0, 2]
    with torch.no_grad():
        model.prompt_classes.copy_(torch.tensor([3, 1]))
    assert model.bank_classes == [1, 3]


@pytest.fixture(scope="module")
def prompt_model() -> PromptedClassifier:
    """A briefly trained toy prompt model of 5 classes: logits with real margins."""
    model = make_model(num_classes=5, final_layernorm=True)
    data = toy_dataset(num_classes=5, per_class=6)
    train_data = SplitTensors(data.splits["train"], model.input_size, CPU)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-2, eval_modes=())
    train(model, prompt_objective(1.0), train_data, train_data, config, 0, None, "")
    return model.eval()


FIVE = toy_dataset(num_classes=5, per_class=6, seed=1)


def five_splits(model: PromptedClassifier) -> tuple[SplitTensors, SplitTensors]:
    return tuple(SplitTensors(FIVE.splits[s], model.input_size, CPU) for s in ("test", "val"))


def without_seconds(metrics: dict) -> dict:
    units = [{k: v for k, v in u.items() if "seconds" not in k} for u in metrics["units"]]
    return {**{k: v for k, v in metrics.items() if "seconds" not in k}, "units": units}


@pytest.mark.parametrize(("method", "mask_logits"), [("pfm", False), ("pfm_defended", True)])
def test_set_batched_forget_k_equals_set_by_set(
    prompt_model: PromptedClassifier, method: str, mask_logits: bool
) -> None:
    """Test and validation, every set of k = 1 and four of k = 2: the same metrics and
    units (same argmax per sample) when the sets of a k share one pass; per-set heads
    (``pfm_defended`` zeroes rows) and output masks included."""
    test, val = five_splits(prompt_model)
    plan = forget_plan(5, [1, 2], [None, 4], seed=0)
    forget = unlearner(method, prompt_model, None, PromptForgetRecipe(mask_logits), 0)
    batched = forget_k(forget, test, plan, 0, 16, val, batch_sets=True)
    single = forget_k(forget, test, plan, 0, 16, val, batch_sets=False)
    assert without_seconds(batched) == without_seconds(single)
    assert batched["k1.sets"] == 5 and batched["k2.sets"] == 4


def test_bank_logits_are_the_models_own_logits(prompt_model: PromptedClassifier) -> None:
    model = prompt_model
    test, _ = five_splits(model)
    x, _ = next(test.batches(7))
    models = [model.forget(c) for c in itertools.combinations(range(5), 2)]
    models[3].head.weight.data[0] = 0.0  # a per-set head
    with torch.no_grad():
        together = model.bank_logits(x, [m.bank() for m in models])
        alone = torch.stack([m(x, torch.tensor([m.bank_classes] * len(x))) for m in models])
    assert together.shape == (len(models), len(x), 5)
    assert (together - alone).abs().max() <= 1e-5
    assert torch.equal(together.argmax(dim=2), alone.argmax(dim=2))


def test_models_that_do_not_share_the_encoder_are_scored_set_by_set(
    prompt_model: PromptedClassifier,
) -> None:
    """A method that changes the encoder (here: a LoRA weight nudged per set) falls back
    to one pass per set, with the same results as scoring every set alone."""
    model = prompt_model
    test, val = five_splits(model)
    lora = next(name for name, _ in model.named_parameters() if "lora_B" in name)

    def nudged(classes: tuple[int, ...]) -> tuple[PromptedClassifier, CostRecord]:
        changed = copy.deepcopy(model).forget(classes)  # shares the copy's encoder
        with torch.no_grad():
            dict(changed.named_parameters())[lora].add_(0.01 * sum(classes))
        return changed.eval(), CostRecord(0.0, 0, 0, False, False, 0)

    assert not model.shares_encoder(nudged((1,))[0])
    assert model.shares_encoder(copy.deepcopy(model).forget([2]))
    plan = forget_plan(5, [1], None, seed=0)
    batched = forget_k(nudged, test, plan, 0, 16, val, batch_sets=True)
    single = forget_k(nudged, test, plan, 0, 16, val, batch_sets=False)
    assert without_seconds(batched) == without_seconds(single)


def test_batched_forget_k_keeps_nan_for_a_class_without_samples(
    prompt_model: PromptedClassifier,
) -> None:
    """A split with no sample of a forgotten class (a real-recordings split) gives NaN
    forget accuracy, as set by set."""
    model = prompt_model
    split = FIVE.splits["test"]
    keep = split.labels != 2
    data = SplitTensors(Split(split.inputs[keep], split.labels[keep]), model.input_size, CPU)
    forget = unlearner("pfm", model, None, PromptForgetRecipe(False), 0)
    plan = forget_plan(5, [1], None, seed=0)
    units = forget_k(forget, data, plan, 0, 16)["units"]
    assert [u["classes"] for u in units if u["forget_acc"] != u["forget_acc"]] == [[2]]


def test_batched_forget_k_scores_an_empty_split(prompt_model: PromptedClassifier) -> None:
    split = FIVE.splits["test"]
    empty = SplitTensors(Split(split.inputs[:0], split.labels[:0]), prompt_model.input_size, CPU)
    forget = unlearner("pfm", prompt_model, None, PromptForgetRecipe(False), 0)
    units = forget_k(forget, empty, forget_plan(5, [1], 2, seed=0), 0, 16)["units"]
    assert all(u["forget_acc"] != u["forget_acc"] for u in units)  # NaN: no sample


def test_set_batched_forget_k_with_variants_equals_set_by_set() -> None:
    """PI-Prefix: the first set of a k waits for the batched pass while the later sets
    score their before-transform variants, which share its encoder; that scoring must not
    leave the waiting model's dropout on (it did: noisy after-transform accuracies)."""
    plain = make_model(num_classes=5, with_prompts=False, lora=LoraSpec(dropout=0.5)).eval()
    with torch.no_grad():  # LoRA's B starts at zero, where its dropout changes nothing
        for name, param in plain.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    recipe = PrefixRecipe(epochs=1, batch_size=8, lr=0.01, prefix_len=2)
    run = unlearner("pi_prefix_forget_only", plain, FIVE.splits["train"], recipe, 0)
    test, val = five_splits(plain)
    plan = forget_plan(5, [1], 3, seed=0)
    variants = METHODS.get("pi_prefix_forget_only").variants
    batched = forget_k(run, test, plan, 0, 16, val, variants, batch_sets=True)
    single = forget_k(run, test, plan, 0, 16, val, variants, batch_sets=False)
    assert without_seconds(batched) == without_seconds(single)
