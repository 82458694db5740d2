"""Whisper's input features (``pfm.data.whisper_features``) against transformers'
``WhisperFeatureExtractor``, built locally with its default arguments (no download), and
the ``features`` param of the audio datasets."""

import numpy as np
import pytest
from transformers import WhisperFeatureExtractor

from pfm.data.audio_features import extract
from pfm.data.audio_io import SAMPLE_RATE
from pfm.data.spoken_words import spoken_words
from pfm.data.whisper_features import MEL_BINS, log_mel


def waveform(seconds: float = 1.7, seed: int = 0) -> np.ndarray:
    """A decaying tone in noise: a spectrum with structure and a dynamic range > 80 dB."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-2 * t)
    return (tone + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def test_features_match_transformers_whisper_feature_extractor() -> None:
    clip = waveform()
    extractor = WhisperFeatureExtractor()  # default args: 80 bins, 30 s, n_fft 400, hop 160
    expected = extractor(clip, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]
    ours = log_mel(clip, frames=3000)  # (frames, bins)
    assert ours.shape == (3000, MEL_BINS) and expected.shape == (MEL_BINS, 3000)
    np.testing.assert_allclose(ours.T, expected, atol=1e-5, rtol=0)


def test_a_one_second_window_is_whisper_at_one_second() -> None:
    clip = waveform(seconds=1.4)  # longer than the window: cut, as Whisper cuts at 30 s
    short = WhisperFeatureExtractor(chunk_length=1)
    expected = short(clip, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]
    np.testing.assert_allclose(log_mel(clip, frames=100).T, expected, atol=1e-5, rtol=0)
    padded = log_mel(clip[:8000], frames=100)  # half a second, zero-padded
    floor = padded.max() - 2.0  # (max − 8 + 4) / 4 − (max + 4) / 4
    assert np.allclose(padded[-10:], floor)


def test_extract_whisper_gives_80_bins_and_no_train_statistics() -> None:
    clips = {"train": [waveform(0.8), waveform(1.2, seed=1)], "test": [waveform(0.5, seed=2)]}
    features, norm = extract("whisper", clips, frames=100)
    assert norm is None
    assert {k: v.shape for k, v in features.items()} == {
        "train": (2, 100, MEL_BINS),
        "test": (1, 100, MEL_BINS),
    }
    assert features["train"].dtype == np.float16
    with pytest.raises(ValueError, match="features must be one of"):
        extract("mfcc", clips, frames=100)


def test_spoken_words_refuses_an_unknown_feature_recipe_before_synthesis() -> None:
    with pytest.raises(ValueError, match="features must be one of"):
        spoken_words(features="mfcc")
