"""AST's input features: Kaldi-compatible log-mel filterbanks, normalised, fixed length.

The recipe of the Audio Spectrogram Transformer (Gong et al., Interspeech 2021; its
``dataloader.py``): torchaudio's ``compliance.kaldi.fbank`` at 16 kHz with 128 mel bins,
25 ms Hanning windows every 10 ms, HTK-compatible, no energy term, no dither; then
``(x − mean) / (2·std)`` with one scalar mean and std of the training data (AST uses
AudioSet's; we compute the benchmark's own on its train split, so no statistic of
val/test leaks in). The result is (frames, 128) per clip, 100 frames a second.

Computed once by ``prepare`` (``featurise``), never per epoch. Clips are cropped or
padded to a dataset's ``frames`` *after* normalisation, with 0 (the normalised train
mean): AST's own extractor pads with a raw 0 before normalising, but padding after keeps
the statistics those of real frames and makes prepare-time and batch-time padding
(``pfm.data.transforms.to_input_values``) the same value.

``extract`` picks the recipe a dataset's ``features`` param names: ``ast`` (this module,
the default) or ``whisper`` (``pfm.data.whisper_features``, for the converted Whisper
encoder: 80 bins, Whisper's per-clip normalisation, no train statistics).
"""

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torchaudio.compliance import kaldi

from pfm.data import whisper_features
from pfm.data.audio_io import SAMPLE_RATE

FEATURES = ("ast", "whisper")
MEL_BINS = 128
FRAME_SHIFT_MS = 10.0
WINDOW_SAMPLES = 400  # 25 ms at 16 kHz: kaldi.fbank needs at least one window


def log_mel(waveform: np.ndarray, mel_bins: int = MEL_BINS) -> np.ndarray:
    """(samples,) float at 16 kHz → (frames, mel_bins) float32 log-mel filterbank."""
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono (samples,) waveform, got shape {waveform.shape}")
    if len(waveform) < WINDOW_SAMPLES:  # shorter than one window: pad it to one frame
        waveform = np.pad(waveform, (0, WINDOW_SAMPLES - len(waveform)))
    fbank = kaldi.fbank(
        torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None],  # (1, samples)
        htk_compat=True,
        sample_frequency=SAMPLE_RATE,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=mel_bins,
        dither=0.0,
        frame_shift=FRAME_SHIFT_MS,
    )
    return fbank.numpy()


def pad_frames(features: np.ndarray, frames: int) -> np.ndarray:
    """(T, M) → (frames, M): the first ``frames`` frames, zero-padded at the end."""
    out = np.zeros((frames, features.shape[1]), dtype=features.dtype)
    kept = features[:frames]
    out[: len(kept)] = kept
    return out


def train_statistics(features: Sequence[np.ndarray]) -> tuple[float, float]:
    """Scalar (mean, std) over every frame and bin of the training clips (AST's scheme)."""
    if not features:
        raise ValueError("no training clips to compute feature statistics from")
    values = np.concatenate([f.reshape(-1) for f in features]).astype(np.float64)
    std = float(values.std())
    if std == 0.0:
        raise ValueError("training features are constant: every clip is silent?")
    return float(values.mean()), std


def featurise(
    waveforms: Mapping[str, Sequence[np.ndarray]], frames: int, train_split: str = "train"
) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """Every split's clips → (N, frames, 128) float16 normalised features, and the train
    (mean, std) used for all of them."""
    if frames < 1:
        raise ValueError(f"frames must be ≥ 1, got {frames}")
    raw = {split: [log_mel(w) for w in clips] for split, clips in waveforms.items()}
    mean, std = train_statistics(raw[train_split])
    out = {}
    for split, clips in raw.items():
        stacked = np.zeros((len(clips), frames, MEL_BINS), dtype=np.float16)
        for i, clip in enumerate(clips):
            stacked[i] = pad_frames((clip - mean) / (2.0 * std), frames)
        out[split] = stacked
    return out, (mean, std)


def check_features(features: str) -> None:
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")


def extract(
    features: str, waveforms: Mapping[str, Sequence[np.ndarray]], frames: int
) -> tuple[dict[str, np.ndarray], tuple[float, float] | None]:
    """Every split's clips → (N, frames, bins) float16 features of the recipe ``features``
    names, and the train (mean, std) applied (``None`` for Whisper's, which uses none)."""
    check_features(features)
    if features == "whisper":
        if frames < 1:
            raise ValueError(f"frames must be ≥ 1, got {frames}")
        return whisper_features.featurise(waveforms, frames), None
    return featurise(waveforms, frames)
