"""Reading audio files as mono float32 waveforms at one sample rate.

soundfile reads the file (WAV, FLAC, …) as float in [-1, 1]; channels are averaged to
mono; torchaudio's band-limited sinc resampler brings any rate to ``sample_rate`` (8 kHz
telephone recordings and 44.1/48 kHz field recordings alike), so every clip reaches the
feature extractor at the rate its filterbank assumes.
"""

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000  # AST's rate (its AudioSet recipe)


def resample(waveform: np.ndarray, rate: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(samples,) float32 at ``rate`` → (samples',) float32 at ``sample_rate``."""
    if rate == sample_rate:
        return waveform.astype(np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    return AF.resample(tensor, rate, sample_rate).numpy()


def load_mono(
    path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """(samples,) float32 mono at ``sample_rate``, the first ``max_seconds`` only if given."""
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (samples, ch)
    if max_seconds is not None:
        data = data[: int(round(max_seconds * rate))]
    return resample(data.mean(axis=1), rate, sample_rate)
