"""Whisper as a backbone: the prompted model on a tiny random ``WhisperEncoder`` (prompts
before the first block, mean readout, (B, frames, bins) batches, LoRA on q/v, forgetting).
No download: the encoder is built from a config and saved to a temporary directory."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from pfm.batches import SplitTensors
from pfm.data.prepared import Split
from pfm.models.backbones import build_backbone, encoder_layers
from pfm.models.checkpoint import load_model, save_model
from pfm.models.prompted import PromptedClassifier
from tests.conftest import make_model
from tests.test_convert import TINY_BINS, tiny_encoder

FRAMES = 10  # the tiny encoder's input frames (5 positions)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("whisper")
    tiny_encoder().save_pretrained(folder)
    return str(folder)


def audio(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, FRAMES, TINY_BINS, generator=torch.Generator().manual_seed(1))


def test_a_saved_whisper_encoder_loads_as_an_audio_backbone(whisper_dir: str) -> None:
    backbone = build_backbone(whisper_dir)
    assert isinstance(backbone.model, WhisperEncoder)  # not AutoModel's WhisperModel
    assert backbone.input_size == FRAMES  # 2 frames per position
    assert backbone.layout.site == "first_block" and backbone.layout.readout == "mean"
    model = make_model(num_classes=3, backbone=whisper_dir)
    assert (model.data_type, model.input_name) == ("audio", "input_features")


def reference_logits(
    model: PromptedClassifier, x: torch.Tensor, classes: list[int], final_layernorm: bool
) -> torch.Tensor:
    """The prompted Whisper forward written out by hand: convolutions, positions, then
    ``[prompts ; tokens]`` through the blocks, the mean of the non-prompt outputs."""
    encoder = model.backbone
    h = nn.functional.gelu(encoder.conv1(x.transpose(1, 2)))  # (B, D, frames)
    h = nn.functional.gelu(encoder.conv2(h)).permute(0, 2, 1) + encoder.embed_positions.weight
    rows = model.prompts[torch.tensor(classes, dtype=torch.long)]  # (n, 1, D)
    prompts = rows.reshape(1, len(classes), model.prompts.shape[-1])
    h = torch.cat([prompts.expand(len(x), -1, -1), h], dim=1)  # (B, n + positions, D)
    for block in encoder_layers(encoder):
        h = block(h, None)
    if final_layernorm:
        h = encoder.layer_norm(h)
    return model.head(h[:, len(classes) :].mean(dim=1))


@pytest.mark.parametrize("final_layernorm", [False, True])
def test_prompts_go_before_the_first_block_and_the_head_reads_the_token_mean(
    whisper_dir: str, final_layernorm: bool
) -> None:
    model = make_model(num_classes=3, backbone=whisper_dir, final_layernorm=final_layernorm)
    model.eval()
    x = audio()
    with torch.no_grad():
        for classes in ([], [2], [0, 2, 1]):
            ids = torch.tensor([classes] * len(x), dtype=torch.long).reshape(len(x), -1)
            expected = reference_logits(model, x, classes, final_layernorm)
            assert torch.allclose(model(x, ids), expected, atol=1e-5), classes


def test_whisper_forget_removes_the_prompt_and_round_trips(
    whisper_dir: str, tmp_path: Path
) -> None:
    model = make_model(num_classes=4, backbone=whisper_dir).eval()
    x = audio()
    with torch.no_grad():
        assert model(x).shape == (3, 4)
        mixed = torch.tensor([[0, 1, 2], [3, -1, -1], [1, 2, -1]])
        assert model(x, mixed).shape == (3, 4)
        assert not torch.allclose(model(x, torch.tensor([[1]] * 3)), model(x))
    forgotten = model.forget([1])
    assert forgotten.bank_classes == [0, 2, 3] and forgotten.prompts.shape[0] == 3
    with pytest.raises(KeyError, match="no prompt"):
        forgotten(x, torch.tensor([[1]] * 3))
    save_model(forgotten, tmp_path / "m.pt")
    blob = (tmp_path / "m.pt").read_bytes()
    assert model.prompts.detach()[1].contiguous().numpy().tobytes() not in blob
    restored = load_model(tmp_path / "m.pt").eval()
    ids = torch.tensor([[0, 2, 3]] * 3)
    with torch.no_grad():
        assert torch.equal(restored(x, ids), forgotten(x, ids))


def test_lora_adapts_whisper_query_and_value_only(whisper_dir: str) -> None:
    model = make_model(num_classes=3, backbone=whisper_dir)
    lora = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert len(lora) == 2 * 2 * 2  # 2 blocks × {q_proj, v_proj} × {A, B}
    assert all(".q_proj." in n or ".v_proj." in n for n in lora)
    loss = model(audio(), torch.tensor([[0, 1]] * 3)).logsumexp(1).mean()
    loss.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert "prompts" in trained and set(lora) <= trained
    assert not any(p.grad is not None for p in model.backbone.parameters() if not p.requires_grad)


def test_deep_prefixes_and_prompts_share_the_first_block(whisper_dir: str) -> None:
    """Prefixes sit in front of the prompts and are trimmed after each block, so the
    readout still averages exactly the input's own tokens."""
    model = make_model(num_classes=3, backbone=whisper_dir, prefix_len=2).eval()
    plain = make_model(num_classes=3, backbone=whisper_dir).eval()  # same prompts and head
    x, ids = audio(), torch.tensor([[0, 2]] * 3)
    seen: list[int] = []
    hook = encoder_layers(model.backbone)[-1].register_forward_hook(
        lambda _m, _a, out: seen.append(out.shape[1])
    )
    with torch.no_grad():
        logits = model(x, ids)
    hook.remove()
    assert seen == [2 + FRAMES // 2]  # prompts + positions; the prefix trimmed
    with torch.no_grad():
        assert not torch.allclose(logits, plain(x, ids))


def test_batches_stay_frames_by_bins_and_the_model_transposes(whisper_dir: str) -> None:
    """Prepared arrays are (N, frames, bins) for every audio backbone; only the model
    lays them out as Whisper reads them, (B, bins, frames)."""
    features = np.random.default_rng(0).standard_normal((4, 7, TINY_BINS)).astype(np.float16)
    split = Split(features, np.arange(4, dtype=np.int64))
    model = make_model(num_classes=4, backbone=whisper_dir).eval()
    (x, _), *_ = SplitTensors(split, model.input_size, torch.device("cpu")).batches(4)
    assert x.shape == (4, FRAMES, TINY_BINS)  # padded to the encoder's 10 frames
    with torch.no_grad():
        assert model(x, torch.tensor([[0, 1, 2, 3]] * 4)).shape == (4, 4)


def test_features_of_another_recipe_are_refused_by_name(whisper_dir: str) -> None:
    model = make_model(num_classes=3, backbone=whisper_dir).eval()
    with pytest.raises(ValueError, match="features: .*whisper"):
        model(torch.randn(2, FRAMES, 128))  # AST's 128 bins
