"""``spoken-words``: a labelled spoken-word set synthesised offline, plus real speech.

The audio task of the default profile, built by ``prepare`` with no download: every word
of ``words`` is spoken by espeak-ng in every accent × voice variant × speed × pitch of
the grid, deduplicated by content, then perturbed by seeded sox tempo/pitch/gain and
white noise (``pfm.data.speech_synth``). Train/val/test are a seeded split stratified by
word. Features are AST's log-mel filterbanks (``pfm.data.audio_features``), or with
``features: whisper`` Whisper's 80-bin log-mel (``pfm.data.whisper_features``), ``frames``
per clip (100 = 1 s; trimmed words last 0.3–0.9 s).

``real``: where ``real_root`` holds Debian's ``asterisk-core-sounds-en-wav`` (studio
recordings, one speaker, 8 kHz, resampled to 16 kHz), one recording per covered word —
the numbers 0–20, the tens, and the letters — as an extra split that measures transfer
from synthetic to real speech. It is normalised with the synthetic train statistics, as
any test data. Words it does not cover simply have no real sample. The recordings keep
their leading and trailing silence, so they are trimmed as sox trims the synthetic
clips (``trim_silence``), and ``band_rate`` passes every synthetic clip, noise included,
through the recordings' 8 kHz rate and back (torchaudio's resampler both ways, as the
recordings), so bandwidth alone cannot tell synthetic from real.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from pfm.config import Bounds, Count, Fraction, Natural, NonEmpty, OneOf, Rate
from pfm.data.audio_features import FEATURES, check_features, extract
from pfm.data.audio_io import SAMPLE_RATE, load_mono, resample
from pfm.data.prepared import PreparedDataset, Split
from pfm.data.registry import DATASETS, DESCRIPTIONS, DatasetInfo
from pfm.data.speech_synth import Effects, Voice, synthesise
from pfm.data.splits import stratified_split, train_left

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUMBERS = (*DIGITS, "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
           "seventeen", "eighteen", "nineteen", "twenty")  # fmt: skip
TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
        "ninety": 90}  # fmt: skip
Pitch = Annotated[int, Bounds(0, 99)]  # espeak-ng's pitch scale


def asterisk_file(root: Path, word: str) -> Path | None:
    """The asterisk-core-sounds recording of ``word``, if the package has one."""
    if word in NUMBERS:
        return root / "digits" / f"{NUMBERS.index(word)}.wav"
    if word in TENS:
        return root / "digits" / f"{TENS[word]}.wav"
    if len(word) == 1 and word.isalpha():
        return root / "letters" / f"{word}.wav"
    return None


def trim_silence(waveform: np.ndarray, threshold: float = 0.005, window: int = 160) -> np.ndarray:
    """The waveform from its first to its last 10 ms window (160 samples at 16 kHz) whose
    peak exceeds ``threshold`` of full scale — sox's ``silence 1 0.01 0.5%`` at both ends."""
    windows = len(waveform) // window
    peaks = np.abs(waveform[: windows * window]).reshape(windows, window).max(axis=1)
    loud = np.flatnonzero(peaks > threshold)
    if len(loud) == 0:
        return waveform
    return waveform[loud[0] * window : (loud[-1] + 1) * window]


def real_recordings(root: str, words: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """(waveforms, word index) of every word the recordings at ``root`` cover."""
    root_path = Path(root)
    if not (root_path / "digits").is_dir():
        raise FileNotFoundError(
            f"no real recordings under {root_path}/digits: install Debian's "
            f"asterisk-core-sounds-en-wav (setup.sh does it as root), or set "
            f"data.spoken-words.real_root: null to build without the real split"
        )
    found = [(i, asterisk_file(root_path, w)) for i, w in enumerate(words)]
    found = [(i, path) for i, path in found if path is not None and path.is_file()]
    if not found:
        raise ValueError(f"none of the words {list(words)} has a recording under {root_path}")
    waveforms = [trim_silence(load_mono(path)) for _, path in found]
    return waveforms, np.array([i for i, _ in found], np.int64)


@DATASETS.register("spoken-words")
def spoken_words(
    words: Sequence[str] = DIGITS,
    accents: Annotated[Sequence[str], NonEmpty()] = ("en-us", "en-gb", "en-gb-scotland"),
    variants: Annotated[Sequence[str], NonEmpty()] = ("m1", "f2", "croak"),
    speeds: Annotated[Sequence[Count], NonEmpty()] = (130, 170),
    pitches: Annotated[Sequence[Pitch], NonEmpty()] = (40, 70),
    tempo: Sequence[Rate] = (0.9, 1.1),
    semitones: Sequence[float] = (-1.0, 1.0),
    gain_db: Sequence[float] = (-6.0, 0.0),
    snr_db: Sequence[float] = (15.0, 30.0),
    band_rate: Count | None = 8000,
    frames: Count = 100,
    val_fraction: Fraction = 0.1,
    test_fraction: Fraction = 0.3,
    split_seed: Natural = 0,
    seed: Natural = 0,
    workers: Count = 2,
    real_root: str | None = "/usr/share/asterisk/sounds/en",
    features: Annotated[str, OneOf(FEATURES, "feature recipe")] = "ast",
) -> PreparedDataset:
    """Grid size = words × accents × variants × speeds × pitches, before deduplication."""
    check_features(features)  # before the minute of synthesis, not after it
    if not all(isinstance(w, str) for w in words):
        raise ValueError(
            f"words must be strings, got {list(words)}: quote yes/no/on/off in YAML, which "
            f"reads them as booleans"
        )
    if len(set(words)) != len(words) or len(words) < 2:
        raise ValueError(f"words must be at least 2 distinct words, got {list(words)}")
    voices = [Voice(a, v, s, p) for a in accents for v in variants for s in speeds for p in pitches]
    if not voices:
        raise ValueError("the voice grid is empty: give at least one accent, variant, speed, pitch")
    ranges = {"tempo": tempo, "semitones": semitones, "gain_db": gain_db, "snr_db": snr_db}
    for key, pair in ranges.items():
        if len(pair) != 2 or pair[0] > pair[1]:
            raise ValueError(f"{key} must be a [low, high] range, got {list(pair)}")
    effects = Effects(**{key: (float(lo), float(hi)) for key, (lo, hi) in ranges.items()})
    waveforms, labels, _ = synthesise(words, voices, effects, seed, workers)
    if band_rate is not None:
        waveforms = [resample(resample(w, SAMPLE_RATE, band_rate), band_rate) for w in waveforms]
    rest, test = stratified_split(labels, test_fraction, split_seed)
    train_rel, val_rel = stratified_split(
        labels[rest], val_fraction / (1.0 - test_fraction), split_seed + 1
    )
    index = {"train": rest[train_rel], "val": rest[val_rel], "test": test}
    clips = {split: [waveforms[i] for i in rows] for split, rows in index.items()}
    split_labels = {split: labels[rows] for split, rows in index.items()}
    if real_root is not None:
        clips["real"], split_labels["real"] = real_recordings(real_root, words)
    inputs, norm = extract(features, clips, frames)
    return PreparedDataset(
        name="spoken-words",
        class_names=tuple(words),
        splits={split: Split(inputs[split], split_labels[split]) for split in inputs},
        data_type="audio",
        feature_norm=norm,
    )


@DESCRIPTIONS.register("spoken-words")
def describe_spoken_words(args: Mapping[str, Any]) -> DatasetInfo:
    """A word has at most one clip per voice of the grid (deduplication drops some)."""
    voices = len(args["accents"]) * len(args["variants"]) * len(args["speeds"])
    voices *= len(args["pitches"])
    train = train_left(voices, args["test_fraction"], args["val_fraction"])
    return DatasetInfo("audio", len(args["words"]), train)
