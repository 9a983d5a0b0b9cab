"""Audio loading with clear errors: mono, resampled to the study's rate."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import soundfile

from .errors import LowrankAmtError


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Load ``path`` as mono float32 at ``sample_rate`` (stereo is averaged, other rates
    resampled); a missing, unreadable or empty file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise LowrankAmtError(f"audio file {path} does not exist")
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise LowrankAmtError(f"audio file {path} cannot be read ({exc}); re-create or remove it") from exc
    if audio.shape[0] == 0:
        raise LowrankAmtError(f"audio file {path} is empty")
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)
