"""The prompted model's contract: where prompts go, what forgetting removes, what is saved."""

from pathlib import Path

import pytest
import torch

from pfm.batches import SplitTensors
from pfm.evaluate import predict
from pfm.models.adapters import LoraSpec
from pfm.models.backbones import encoder_layers
from pfm.models.checkpoint import CheckpointError, load_model, load_model_for, save_model
from pfm.models.prompted import PAD, PromptedClassifier, trainable_parameters
from tests.conftest import make_model, toy_dataset

X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def reference_logits(model: PromptedClassifier, classes: list[int]) -> torch.Tensor:
    """Recompute by hand: [prompts ; CLS ; patches] through the encoder layers only."""
    base = model.backbone
    tokens = base.embeddings(X)  # (B, 1+N, D), positions added
    prompts = torch.cat([model.prompts[model.bank_classes.index(c)] for c in classes])
    sequence = torch.cat([prompts.expand(len(X), -1, -1), tokens], dim=1)

    def replace(_m: torch.nn.Module, _a: tuple, _o: torch.Tensor) -> torch.Tensor:
        return sequence

    handle = base.embeddings.register_forward_hook(replace)
    try:
        out = base(pixel_values=X, output_hidden_states=True)
    finally:
        handle.remove()
    return model.head(out.hidden_states[-1][:, len(classes)])


def test_prompts_are_prepended_before_cls(model: PromptedClassifier) -> None:
    ids = torch.tensor([[2, 0]] * len(X))
    with torch.no_grad():
        assert torch.allclose(model(X, ids), reference_logits(model, [2, 0]), atol=1e-5)


def test_prompt_choice_matters_but_order_does_not(model: PromptedClassifier) -> None:
    """Prompts carry no position embedding and attention is permutation-equivariant, so
    the CLS output depends on which prompts are present, not on their order (which is
    why ``full_bank_shuffle`` equals ``full_bank`` up to float rounding)."""
    with torch.no_grad():
        a = model(X, torch.tensor([[0, 1]] * 3))
        b = model(X, torch.tensor([[1, 0]] * 3))
        c = model(X, torch.tensor([[0, 2]] * 3))
        none = model(X)
    assert torch.allclose(a, b, atol=1e-5)
    assert (a - c).abs().max() > 1e-3 and (a - none).abs().max() > 1e-3


def test_rows_with_different_prompt_counts_match_separate_forwards(
    model: PromptedClassifier,
) -> None:
    ids = torch.tensor([[0, 1], [3, PAD], [PAD, PAD]])
    with torch.no_grad():
        mixed = model(X, ids)
        assert torch.allclose(mixed[0], model(X[:1], ids[:1])[0], atol=1e-5)
        assert torch.allclose(mixed[1], model(X[1:2], ids[1:2, :1])[0], atol=1e-5)
        assert torch.allclose(mixed[2], model(X[2:])[0], atol=1e-5)
    with pytest.raises(ValueError, match="PAD only at the end"):
        model(X, torch.tensor([[PAD, 1]] * 3))


def test_forget_removes_exactly_those_rows(model: PromptedClassifier) -> None:
    forgotten = model.forget([1, 3])
    assert forgotten.bank_classes == [0, 2]
    assert forgotten.prompts.shape == (2, 1, model.prompts.shape[-1])
    assert torch.equal(forgotten.prompts, model.prompts.detach()[[0, 2]])
    assert forgotten.prompts.data_ptr() != model.prompts.data_ptr()
    assert model.bank_classes == [0, 1, 2, 3]  # the original keeps its bank
    with pytest.raises(KeyError, match=r"no prompt for class\(es\) \[1\]"):
        forgotten(X, torch.tensor([[1]] * 3))
    assert forgotten(X).shape == (3, 4)  # all C logits kept by default


def test_forget_rejects_bad_class_ids(model: PromptedClassifier) -> None:
    with pytest.raises(ValueError, match="out of range"):
        model.forget([4])
    with pytest.raises(ValueError, match="out of range"):
        model.forget([-1])
    with pytest.raises(ValueError, match="no prompt to forget"):
        model.forget([1]).forget([1])


def test_masking_is_an_option(model: PromptedClassifier) -> None:
    masked = model.forget([2], mask_logits=True)
    with torch.no_grad():
        assert (masked(X).argmax(1) != 2).all()
        assert masked(X)[:, 2].max() < -1e30


def test_only_adapters_head_and_prompts_train(model: PromptedClassifier) -> None:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "something must train"
    for name in trainable:
        assert "lora_" in name or name.startswith(("head.", "prompts")), name
    lora = [n for n in trainable if "lora_" in n]
    assert len(lora) == 6 * 2 * 2  # 6 blocks × {query, value} × {A, B}


def test_saved_forgotten_model_holds_no_byte_of_removed_prompts(
    model: PromptedClassifier, tmp_path: Path
) -> None:
    path = tmp_path / "forgotten.pt"
    save_model(model.forget([1]), path)
    blob = path.read_bytes()
    removed = model.prompts.detach()[1].contiguous().numpy().tobytes()
    kept = model.prompts.detach()[2].contiguous().numpy().tobytes()
    assert kept in blob  # the search works ...
    assert removed not in blob  # ... and the removed prompt is gone
    for chunk in range(0, len(removed) - 16, 16):  # not even a 16-byte piece survives
        assert removed[chunk : chunk + 16] not in blob


def test_checkpoint_round_trip_gives_identical_logits(
    model: PromptedClassifier, tmp_path: Path
) -> None:
    forgotten = model.forget([0])
    save_model(forgotten, tmp_path / "m.pt")
    restored = load_model(tmp_path / "m.pt").eval()
    assert restored.bank_classes == [1, 2, 3]
    ids = torch.tensor([[1, 2, 3]] * 3)
    with torch.no_grad():
        assert torch.equal(restored(X, ids), forgotten(X, ids))


def test_the_same_model_saves_to_the_same_bytes_under_any_name(
    model: PromptedClassifier, tmp_path: Path
) -> None:
    """DVC compares outputs by hash: an identical retrained model must not look changed."""
    save_model(model, tmp_path / "a.pt")
    save_model(model, tmp_path / "elsewhere" / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "elsewhere" / "b.pt").read_bytes()


def test_corrupt_or_foreign_checkpoints_fail_clearly(
    model: PromptedClassifier, tmp_path: Path
) -> None:
    path = tmp_path / "m.pt"
    save_model(model, path)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_model(path)
    torch.save({"hello": 1}, path)
    with pytest.raises(CheckpointError, match="not a pfm-model/1 checkpoint"):
        load_model(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_a_model_of_another_class_count_is_refused_for_a_dataset(
    model: PromptedClassifier, tmp_path: Path
) -> None:
    save_model(model, tmp_path / "m.pt")
    cpu = torch.device("cpu")
    loaded = load_model_for(tmp_path / "m.pt", "toy", model.num_classes, cpu)
    assert loaded.num_classes == model.num_classes
    with pytest.raises(ValueError, match=f"has {model.num_classes} classes, toy has 3"):
        load_model_for(tmp_path / "m.pt", "toy", 3, cpu)


def test_checkpoint_from_another_backbone_init_is_refused(tmp_path: Path) -> None:
    save_model(make_model(init_seed=0), tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["spec"]["init_seed"] = 1
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="differs"):
        load_model(tmp_path / "m.pt")


def test_final_layernorm_is_an_option() -> None:
    plain, normed = make_model(), make_model(final_layernorm=True)
    with torch.no_grad():
        assert not torch.allclose(plain.eval()(X), normed.eval()(X))


def test_prompt_len_gives_several_tokens_per_class() -> None:
    model = make_model(prompt_len=3).eval()
    assert model.prompts.shape[:2] == (4, 3)
    with torch.no_grad():
        assert model(X, torch.tensor([[0, 1]] * 3)).shape == (3, 4)


def test_lora_on_all_linear_layers_adapts_more_than_query_value() -> None:
    qv = make_model()
    every = make_model(lora=LoraSpec(targets="all-linear"))
    adapted = {n.split(".lora_")[0] for n, p in every.named_parameters() if "lora_A" in n}
    assert len(adapted) == 6 * 6  # 6 blocks × {q, k, v, o, fc1, fc2}
    assert trainable_parameters(every) > trainable_parameters(qv)
    with pytest.raises(ValueError, match="LoRA targets must be one of"):
        make_model(lora=LoraSpec(targets="mlp"))


def test_full_tuning_trains_every_encoder_weight_without_lora() -> None:
    model = make_model(tuning="full", with_prompts=False)
    assert all(p.requires_grad for p in model.encoder.parameters())
    assert not any("lora_" in n for n, _ in model.named_parameters())
    with pytest.raises(ValueError, match="tuning must be one of"):
        make_model(tuning="partial")


@pytest.mark.parametrize("derive", ["forget", "with_prompt", "with_prefix"])
@pytest.mark.parametrize("training", [False, True])
def test_a_model_built_on_another_keeps_its_mode(derive: str, training: bool) -> None:
    """forget, with_prompt and with_prefix share the encoder and head, so they share the
    mode: scoring the new model (``predict`` puts back the mode it found) must not switch
    the source's dropout on or off."""
    source = make_model(lora=LoraSpec(dropout=0.5)).train(training)
    if derive == "forget":
        derived = source.forget([1])
    elif derive == "with_prompt":
        derived = source.forget([1]).with_prompt(1, torch.zeros(source.prompts.shape[1:]))
    else:
        layers, width = len(encoder_layers(source.backbone)), source.head.in_features
        derived = source.with_prefix(torch.zeros(layers, 2, 2, width))
    assert derived.training == training
    data = SplitTensors(toy_dataset().splits["test"], derived.input_size, torch.device("cpu"))
    predict(derived, data, "full_bank", batch_size=8)
    assert source.training == derived.training == training
    assert all(module.training == training for module in source.encoder.modules())
