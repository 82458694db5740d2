"""Whisper's input features: 80-bin log-mel spectrograms in Whisper's own normalisation.

Whisper (Radford et al., 2022; ``whisper/audio.py``, and ``transformers``'
``WhisperFeatureExtractor``) reads 16 kHz audio as the power spectrogram of 25 ms Hann
windows (n_fft 400, periodic) every 10 ms (hop 160), centred (reflect-padded by n_fft/2),
the last frame dropped; 80 Slaney-scale, Slaney-normalised mel filters from 0 to 8 kHz
(librosa's, as transformers builds them); then log10 (floored at 1e-10), clamped from
below at the clip's maximum − 8 (an 80 dB range), and mapped by (x + 4) / 4. The
waveform is zero-padded (or cut) to the window *before* the spectrogram, as Whisper pads
to 30 s; here the window is ``frames`` hops (100 = 1 s, what the position-truncated
encoder of ``pfm.models.convert.whisper_ct2`` takes), so the padding frames carry the
clip's own floor value, as in Whisper. The normalisation is per clip: no statistic of
any split is used, so ``prepare`` records none.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torchaudio

from pfm.data.audio_io import SAMPLE_RATE

MEL_BINS = 80
N_FFT = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms: 100 frames a second
DYNAMIC_RANGE = 8.0  # log10 units kept below the clip's maximum (80 dB)
FLOOR = 1e-10  # mel power floor before the log


def mel_filters() -> torch.Tensor:
    """(n_fft/2 + 1, 80) Slaney mel filterbank over 0–8 kHz, area-normalised (librosa's)."""
    return torchaudio.functional.melscale_fbanks(
        n_freqs=N_FFT // 2 + 1,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        n_mels=MEL_BINS,
        sample_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )


def log_mel(waveform: np.ndarray, frames: int, filters: torch.Tensor | None = None) -> np.ndarray:
    """(samples,) float at 16 kHz → (frames, 80) float32 Whisper log-mel features."""
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono (samples,) waveform, got shape {waveform.shape}")
    if frames < 1:
        raise ValueError(f"frames must be ≥ 1, got {frames}")
    samples = np.zeros(frames * HOP, dtype=np.float32)
    kept = waveform[: len(samples)]
    samples[: len(kept)] = kept
    stft = torch.stft(
        torch.from_numpy(samples),
        N_FFT,
        HOP,
        window=torch.hann_window(N_FFT),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )  # (n_fft/2 + 1, frames + 1)
    power = stft[:, :-1].abs() ** 2  # (n_fft/2 + 1, frames): the last frame dropped
    mel = (filters if filters is not None else mel_filters()).T @ power  # (80, frames)
    log = torch.clamp(mel, min=FLOOR).log10()
    log = torch.maximum(log, log.max() - DYNAMIC_RANGE)
    return ((log + 4.0) / 4.0).T.numpy()  # (frames, 80)


def featurise(waveforms: Mapping[str, Sequence[np.ndarray]], frames: int) -> dict[str, np.ndarray]:
    """Every split's clips → (N, frames, 80) float16 Whisper features."""
    filters = mel_filters()
    out = {}
    for split, clips in waveforms.items():
        stacked = np.zeros((len(clips), frames, MEL_BINS), dtype=np.float16)
        for i, clip in enumerate(clips):
            stacked[i] = log_mel(np.asarray(clip, dtype=np.float32), frames, filters)
        out[split] = stacked
    return out
