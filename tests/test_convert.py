"""Converted encoders reproduce their source runtime (the source files and runtimes are in
the default install: nothing here is skipped); truncations, on tiny random encoders."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from pfm.models.convert.whisper_ct2 import truncate
from tests.conftest import make_model

TOLERANCE = 1e-3  # max |converted − source| / max |source|
TINY_BINS = 8  # mel bins of the tiny random Whisper encoder


def tiny_encoder(positions: int = 5, seed: int = 0) -> WhisperEncoder:
    """A random ``WhisperEncoder`` of width 16, 2 blocks, ``positions`` × 2 input frames."""
    config = WhisperConfig(
        d_model=16,
        num_mel_bins=TINY_BINS,
        encoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        max_source_positions=positions,
    )
    torch.manual_seed(seed)
    return WhisperEncoder(config).eval()


def test_dinov2_from_onnx_matches_onnxruntime(tmp_path: Path) -> None:
    from pfm.models.convert import dinov2_onnx

    source = dinov2_onnx.source_file()
    model = dinov2_onnx.convert(source)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (384, 12)
    assert dinov2_onnx.verify(source, model, dinov2_onnx.fixed_input()) < TOLERANCE
    dinov2_onnx.save(model, tmp_path / "dinov2", 0.0, "f" * 64)
    prompted = make_model(num_classes=3, backbone=str(tmp_path / "dinov2"), input_size=28).eval()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():  # prompts go in through the embeddings hook, as for ViT
        assert prompted(x, torch.tensor([[0, 2]] * 2)).shape == (2, 3)
        assert not torch.allclose(prompted(x, torch.tensor([[0]] * 2)), prompted(x))


def test_whisper_encoder_from_ctranslate2_matches_ctranslate2(tmp_path: Path) -> None:
    from pfm.models.convert import whisper_ct2

    folder = whisper_ct2.model_dir()
    encoder = whisper_ct2.convert(folder / "model.bin")
    assert (encoder.config.d_model, encoder.config.encoder_layers) == (384, 4)
    assert whisper_ct2.verify(folder, encoder, whisper_ct2.fixed_input()) < TOLERANCE
    whisper_ct2.save(encoder, tmp_path / "whisper", 0.0, "f" * 64)
    reloaded = type(encoder).from_pretrained(tmp_path / "whisper").eval()
    features = torch.from_numpy(whisper_ct2.fixed_input())
    with torch.no_grad():
        expected = encoder(input_features=features).last_hidden_state
        assert torch.equal(reloaded(input_features=features).last_hidden_state, expected)


def test_whisper_truncated_to_one_second_is_a_prompted_audio_backbone(tmp_path: Path) -> None:
    """``--seconds 1``: the released weights with the first 50 positions, taking the
    100 frames (1 s) of a spoken word; the note beside them says it is a truncation."""
    from pfm.models.convert import whisper_ct2

    folder = whisper_ct2.model_dir()
    full = whisper_ct2.convert(folder / "model.bin")
    short = whisper_ct2.truncate(full, 1)
    assert torch.equal(short.embed_positions.weight, full.embed_positions.weight[:50])
    whisper_ct2.save(short, tmp_path / "whisper-1s", 0.0, "f" * 64)
    note = json.loads((tmp_path / "whisper-1s" / "SOURCE.json").read_text())
    assert note["input_seconds"] == 1.0 and "truncation" in note["truncated"]
    prompted = make_model(num_classes=3, backbone=str(tmp_path / "whisper-1s")).eval()
    assert (prompted.input_size, prompted.input_name) == (100, "input_features")
    x = torch.randn(2, 100, 80)  # (B, frames, bins), as prepared
    with torch.no_grad():
        assert prompted(x, torch.tensor([[0, 2]] * 2)).shape == (2, 3)
        assert not torch.allclose(prompted(x, torch.tensor([[0]] * 2)), prompted(x))


def test_ct2_reader_parses_the_documented_layout(tmp_path: Path) -> None:
    """A hand-written file in CTranslate2's binary layout, with an alias and an int8
    weight and its scale, reads back as written."""
    import struct

    from pfm.models.convert.whisper_ct2 import read_ct2

    def string(text: str) -> bytes:
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    def variable(name: str, array: np.ndarray, type_id: int) -> bytes:
        head = string(name) + struct.pack("<B", array.ndim)
        head += b"".join(struct.pack("<I", d) for d in array.shape)
        return head + struct.pack("<BI", type_id, array.nbytes) + array.tobytes()

    weight = np.array([[1.5, -2.0], [0.25, 4.0]], dtype=np.float16)
    quantised = np.array([[64, -127], [10, 20]], dtype=np.int8)
    scale = np.array([2.0, 10.0], dtype=np.float32)
    blob = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, 3)
    blob += variable("a/weight", weight, 4) + variable("b/weight", quantised, 1)
    blob += variable("b/weight_scale", scale, 0)
    blob += struct.pack("<I", 1) + string("c/weight") + string("a/weight")
    (tmp_path / "model.bin").write_bytes(blob)
    arrays = read_ct2(tmp_path / "model.bin")
    assert set(arrays) == {"a/weight", "b/weight", "c/weight"}
    np.testing.assert_array_equal(arrays["a/weight"], weight.astype(np.float32))
    np.testing.assert_array_equal(arrays["c/weight"], arrays["a/weight"])
    np.testing.assert_allclose(arrays["b/weight"], [[32.0, -63.5], [1.0, 2.0]])


def test_truncation_keeps_the_first_positions_and_every_other_weight() -> None:
    full = tiny_encoder(positions=100)  # a 2 s window
    short = truncate(full, seconds=1)
    assert short.config.max_source_positions == 50 and full.config.max_source_positions == 100
    full_state, short_state = full.state_dict(), short.state_dict()
    assert set(full_state) == set(short_state)
    for name, tensor in short_state.items():
        expected = full_state[name][:50] if name == "embed_positions.weight" else full_state[name]
        assert torch.equal(tensor, expected), name
    x = torch.randn(2, TINY_BINS, 100)
    with torch.no_grad():
        out = short(input_features=x, output_hidden_states=True)
        assert out.last_hidden_state.shape == (2, 50, 16)
        with pytest.raises(ValueError, match="length 200"):
            full(input_features=x)
        # what truncation preserves exactly: the first block's input (convolutions +
        # positions) equals the full encoder's first 50 positions on the zero-padded
        # input; attention over 50 positions is not a prefix of attention over 100
        padded = full(input_features=nn.functional.pad(x, (0, 100)), output_hidden_states=True)
        assert torch.allclose(out.hidden_states[0], padded.hidden_states[0][:, :50], atol=1e-6)
        assert not torch.allclose(out.last_hidden_state, padded.last_hidden_state[:, :50])


@pytest.mark.parametrize("seconds", [0, 0.01, 3])
def test_truncation_refuses_windows_that_are_not_whole_positions_within_the_release(
    seconds: float,
) -> None:
    with pytest.raises(ValueError, match="whole number of positions"):
        truncate(tiny_encoder(positions=100), seconds)


def test_dinov2_truncation_keeps_the_first_blocks_and_their_exact_output(tmp_path: Path) -> None:
    """A kept prefix of blocks computes exactly what the full encoder computes up to
    there: the truncated model's output is the full one's hidden state after block L,
    through the same final layernorm."""
    from transformers import Dinov2Config, Dinov2Model

    from pfm.models.convert.dinov2_onnx import truncate as keep_blocks

    config = Dinov2Config(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, image_size=28, patch_size=14
    )
    torch.manual_seed(0)
    full = Dinov2Model(config).eval()
    keep_blocks(full, 2).save_pretrained(tmp_path)  # what from_pretrained reads back
    short = Dinov2Model.from_pretrained(tmp_path).eval()
    assert short.config.num_hidden_layers == 2 and full.config.num_hidden_layers == 4
    full_state = full.state_dict()
    for name, tensor in short.state_dict().items():
        assert torch.equal(tensor, full_state[name]), name
    dropped = ("encoder.layer.2.", "encoder.layer.3.")
    assert not any(name.startswith(dropped) for name in short.state_dict())
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        hidden = full(pixel_values=x, output_hidden_states=True).hidden_states[2]
        assert torch.allclose(short(pixel_values=x).last_hidden_state, full.layernorm(hidden))
    with pytest.raises(ValueError, match="blocks must be in 1..4"):
        keep_blocks(full, 5)


def test_a_model_no_backbone_param_selects_is_left_as_a_note_that_a_load_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its stage imports no converter (so reads no source file) and writes only the note;
    loading the directory then fails with that note's text instead of a missing-config
    error."""
    from pfm.files import NOT_CONVERTED
    from pfm.models.backbones import load_pretrained
    from pfm.models.convert import __main__ as stage

    unimportable = stage.Converter("no_such_converter_module")
    monkeypatch.setitem(stage.CONVERTERS, "minilm-l6", unimportable)
    out = tmp_path / "models/backbones/minilm-l6"
    argv = ["convert", "minilm-l6", str(out), "--if-selected", "vit-tiny", "ast-tiny", "bert-tiny"]
    monkeypatch.setattr("sys.argv", argv)
    stage.main()
    assert [path.name for path in out.iterdir()] == [NOT_CONVERTED]
    with pytest.raises(FileNotFoundError, match="minilm-l6 is not converted here"):
        load_pretrained(str(out))
    with pytest.raises(KeyError, match="no_such_converter_module"):
        unimportable.module()


def test_a_skipped_convert_stage_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    """What makes a skipped stage take a fraction of a second instead of ~5 s."""
    argv = ["convert", "smollm2-135m", str(tmp_path / "out"), "--if-selected", "vit-tiny"]
    code = (
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "runpy.run_module('pfm.models.convert', run_name='__main__')\n"
        "heavy = sorted({'torch', 'transformers'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
    assert (tmp_path / "out/NOT_CONVERTED.txt").is_file()


def test_a_model_is_selected_however_its_directory_is_spelled(tmp_path: Path) -> None:
    from pfm.models.convert.__main__ import selected

    out = tmp_path / "models/backbones/minilm-l6"
    assert selected(out, ["vit-tiny", str(tmp_path / "models/x/../backbones/minilm-l6")])
    assert not selected(out, ["vit-tiny", str(tmp_path / "models/backbones/minilm-l6-v2")])
