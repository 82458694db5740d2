"""Spoken words synthesised offline with Debian's espeak-ng and sox.

One clip per grid point (word × accent × voice variant × speed × pitch): espeak-ng
speaks the word to a WAV on stdout; sox converts it to 16 kHz mono 16-bit and trims the
leading and trailing silence, so every clip starts with the word. Distinct grid points
can give the very same bytes (some variants ignore the pitch, some accents say a word
alike), so clips are deduplicated by the SHA-256 of those bytes before anything random
happens: a duplicate would otherwise sit in train and test at once.

Each unique clip then gets its own seeded sox tempo and pitch shift and gain (sox runs
again on the clip's bytes, its randomness unused) and seeded white noise at a drawn SNR,
all drawn from ``np.random.default_rng([seed, index])``, so the same options always give
the same waveforms, whatever the thread scheduling: the pool only runs subprocesses.
"""

import hashlib
import io
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import soundfile

from pfm.data.audio_io import SAMPLE_RATE

TOOLS = ("espeak-ng", "sox")
# sox: no dither and seeded internals (-D -R), so the same input always gives the same bytes
SOX_GLOBAL = ("-D", "-R")
# sox: 16 kHz mono 16-bit WAV on stdout; trim silence (below 0.5% for 10 ms) at both ends
TO_CLIP = ("-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-t", "wav", "-")
TRIM = ("silence", "1", "0.01", "0.5%", "reverse", "silence", "1", "0.01", "0.5%", "reverse")


@dataclass(frozen=True)
class Voice:
    """One espeak-ng rendering: ``-v accent+variant -s speed -p pitch``."""

    accent: str  # espeak-ng voice, e.g. en-gb-scotland
    variant: str  # espeak-ng voice variant, e.g. f2 (espeak-ng --voices=variant)
    speed: int  # words per minute
    pitch: int  # 0..99

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant} s{self.speed} p{self.pitch}"


@dataclass(frozen=True)
class Effects:
    """The seeded ranges each unique clip's sox effects and noise are drawn from."""

    tempo: tuple[float, float]  # sox tempo factor (duration / factor, pitch kept)
    semitones: tuple[float, float]  # sox pitch shift
    gain_db: tuple[float, float]  # sox gain
    snr_db: tuple[float, float]  # white noise, signal-to-noise ratio


def check_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not found: install Debian packages espeak-ng sox "
            f"(apt-get install espeak-ng sox; setup.sh does it as root)"
        )


def _run(command: Sequence[str], stdin: bytes | None = None) -> bytes:
    result = subprocess.run(command, input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        raise ValueError(f"{command[0]} failed ({' '.join(command)}): {result.stderr.decode()}")
    return result.stdout


def speak(word: str, voice: Voice) -> bytes:
    """The 16 kHz mono WAV bytes of ``word`` in ``voice``, silence trimmed."""
    wav = _run([
        "espeak-ng", "-v", f"{voice.accent}+{voice.variant}", "-s", str(voice.speed),
        "-p", str(voice.pitch), "--stdout", word,
    ])  # fmt: skip
    return _run(["sox", *SOX_GLOBAL, "-t", "wav", "-", *TO_CLIP, *TRIM], wav)


def perturb(wav: bytes, effects: Effects, rng: np.random.Generator) -> np.ndarray:
    """The clip with drawn sox tempo, pitch and gain, plus white noise: float32 at 16 kHz."""
    tempo, semitones, gain, snr = (
        rng.uniform(*r) for r in (effects.tempo, effects.semitones, effects.gain_db, effects.snr_db)
    )
    shifted = _run([
        "sox", *SOX_GLOBAL, "-t", "wav", "-", *TO_CLIP, "tempo", f"{tempo:.3f}",
        "pitch", f"{100 * semitones:.0f}", "gain", f"{gain:.2f}",
    ], wav)  # fmt: skip
    clip, _ = soundfile.read(io.BytesIO(shifted), dtype="float32")
    power = float(np.mean(clip**2)) or 1e-10
    noise = rng.standard_normal(len(clip)).astype(np.float32) * np.sqrt(power / 10 ** (snr / 10))
    return np.clip(clip + noise, -1.0, 1.0).astype(np.float32)


def synthesise(
    words: Sequence[str],
    voices: Sequence[Voice],
    effects: Effects,
    seed: int,
    workers: int,
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Every word in every voice, deduplicated by content: (waveforms, word index per
    clip, voice name per clip), in grid order (word-major)."""
    check_tools()
    grid = [(w, v) for w in range(len(words)) for v in voices]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        spoken = list(pool.map(lambda item: speak(words[item[0]], item[1]), grid))
    seen: set[str] = set()
    unique: list[int] = []
    for i, wav in enumerate(spoken):
        digest = hashlib.sha256(wav).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(i)

    def render(position: int) -> np.ndarray:
        return perturb(spoken[unique[position]], effects, np.random.default_rng([seed, position]))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        waveforms = list(pool.map(render, range(len(unique))))
    labels = np.array([grid[i][0] for i in unique], dtype=np.int64)
    return waveforms, labels, [grid[i][1].name for i in unique]
