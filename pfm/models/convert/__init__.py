"""Converters (our own code) from real pretrained transformers that ship inside registry
packages to ``transformers`` models, each checked against its source runtime.

They need the ``convert`` extra (onnx, onnxruntime, ctranslate2 and the two packages that
ship the weights), which setup.sh installs; stage ``convert`` runs them.
"""

import numpy as np


def relative_difference(ours: np.ndarray, source: np.ndarray) -> float:
    """Largest |ours − source| as a fraction of the source output's largest magnitude.

    Float32 runtimes that sum in another order differ in the last bits, and the absolute
    gap grows with the output's scale (Whisper's encoder reaches ~15: 2e-3 apart at the
    worst of 576k values, 1e-5 at the 99.9th percentile); a wrong conversion (a swapped,
    transposed or missing weight) differs by the output's own order of magnitude."""
    return float(np.abs(ours - source).max() / np.abs(source).max())
