"""Converted encoders reproduce their source runtime (optional: needs the ``convert`` extra,
skipped cleanly without it)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_model

TOLERANCE = 1e-3


def test_dinov2_from_onnx_matches_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from pfm.models.convert import dinov2_onnx

    try:
        source = dinov2_onnx.onnx_file()
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    model = dinov2_onnx.convert(source)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (384, 12)
    assert dinov2_onnx.verify(source, model, dinov2_onnx.fixed_input()) < TOLERANCE
    dinov2_onnx.save(model, tmp_path / "dinov2", 0.0)
    prompted = make_model(num_classes=3, backbone=str(tmp_path / "dinov2"), input_size=28).eval()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():  # prompts go in through the embeddings hook, as for ViT
        assert prompted(x, torch.tensor([[0, 2]] * 2)).shape == (2, 3)
        assert not torch.allclose(prompted(x, torch.tensor([[0]] * 2)), prompted(x))


def test_whisper_encoder_from_ctranslate2_matches_ctranslate2(tmp_path: Path) -> None:
    pytest.importorskip("ctranslate2")
    from pfm.models.convert import whisper_ct2

    try:
        folder = whisper_ct2.model_dir()
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    encoder = whisper_ct2.convert(folder / "model.bin")
    assert (encoder.config.d_model, encoder.config.encoder_layers) == (384, 4)
    assert whisper_ct2.verify(folder, encoder, whisper_ct2.fixed_input()) < TOLERANCE
    whisper_ct2.save(encoder, tmp_path / "whisper", 0.0)
    reloaded = type(encoder).from_pretrained(tmp_path / "whisper").eval()
    features = torch.from_numpy(whisper_ct2.fixed_input())
    with torch.no_grad():
        expected = encoder(input_features=features).last_hidden_state
        assert torch.equal(reloaded(input_features=features).last_hidden_state, expected)


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
