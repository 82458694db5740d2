"""Converters (our own code) from real pretrained transformers that ship inside registry
packages to ``transformers`` models, each checked against its source runtime.

They need onnx, onnxruntime, ctranslate2, gguf, xllamacpp (llama.cpp) and the four
packages that ship the weights, all in the default install; stages ``convert-dinov2``,
``convert-whisper``, ``convert-minilm`` and ``convert-smollm2`` run them.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np

from pfm.config import Bounds, Satisfies, bad_value, from_mapping

Sha256 = Annotated[
    str, Satisfies(lambda text: re.fullmatch("[0-9a-f]{64}", text) is not None, "64 hex digits")
]


@dataclass(frozen=True)
class Dinov2Params:
    """``convert.dinov2-small``: the source file's hash and the blocks kept."""

    sha256: Sha256
    blocks: Annotated[int, Bounds(1, 12)]


@dataclass(frozen=True)
class WhisperParams:
    """``convert.whisper-tiny-en``: the source file's hash and the input window kept."""

    sha256: Sha256
    seconds: Annotated[float, Bounds(0.02, 30)]


@dataclass(frozen=True)
class MinilmParams:
    """``convert.minilm-l6``: the source file's hash."""

    sha256: Sha256


@dataclass(frozen=True)
class Smollm2Params:
    """``convert.smollm2-135m``: the source GGUF file's hash."""

    sha256: Sha256


# ``convert.<name>`` block → what it holds (stage convert-<...> passes it to the command line)
PARAMS = {
    "dinov2-small": Dinov2Params,
    "whisper-tiny-en": WhisperParams,
    "minilm-l6": MinilmParams,
    "smollm2-135m": Smollm2Params,
}


def check_params(blocks: Mapping[str, Any]) -> None:
    """Every block of the ``convert`` section: a known converter, typed values."""
    for name, values in blocks.items():
        if name not in PARAMS:
            raise bad_value("convert", f"blocks named {', '.join(PARAMS)}", name)
        from_mapping(PARAMS[name], values, f"convert.{name}")


def relative_difference(ours: np.ndarray, source: np.ndarray) -> float:
    """Largest |ours − source| as a fraction of the source output's largest magnitude.

    Float32 runtimes that sum in another order differ in the last bits, and the absolute
    gap grows with the output's scale (Whisper's encoder reaches ~15: 2e-3 apart at the
    worst of 576k values, 1e-5 at the 99.9th percentile); a wrong conversion (a swapped,
    transposed or missing weight) differs by the output's own order of magnitude."""
    return float(np.abs(ours - source).max() / np.abs(source).max())
