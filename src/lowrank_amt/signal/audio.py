"""Audio loading with clear errors: mono, resampled to the study's rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from ..errors import LowrankAmtError

#: Share of samples at full scale above which a recording is reported as clipped.
CLIPPED_SHARE = 1e-3


def _read(path: Path, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int]:
    """(samples x channels float32, rate) of frames ``start`` to ``stop`` of ``path``;
    an unreadable file, or NaN or infinite samples, is an error naming it."""
    try:
        audio, rate = soundfile.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise LowrankAmtError(f"audio file {path} cannot be read ({exc}); re-create or remove it") from exc
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).any(axis=1).sum())
        raise LowrankAmtError(f"audio file {path} has {bad} sample(s) that are NaN or infinite; re-create or remove it")
    return audio, rate


def audio_length(path: str | Path, sample_rate: int) -> int:
    """Samples of ``path`` once resampled to ``sample_rate``; an unreadable file is named."""
    path = Path(path)
    if not path.is_file():
        raise LowrankAmtError(f"audio file {path} does not exist")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise LowrankAmtError(f"audio file {path} cannot be read ({exc}); re-create or remove it") from exc
    if info.frames == 0:
        raise LowrankAmtError(f"audio file {path} is empty")
    return int(round(info.frames * sample_rate / info.samplerate))


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono ``audio`` from ``rate`` to ``target`` Hz, as ``librosa.resample`` does it by
    default (soxr's high quality, the length ``ceil(n * target / rate)``)."""
    out = soxr.resample(audio, rate, target, quality="soxr_hq")
    size = int(np.ceil(len(audio) * target / rate))
    if len(out) < size:
        out = np.pad(out, (0, size - len(out)))
    return out[:size].astype(audio.dtype, copy=False)


def read_span(path: str | Path, start: int, stop: int, sample_rate: int) -> np.ndarray:
    """Samples ``start`` to ``stop`` of ``path`` at ``sample_rate`` (mono float32, exactly
    ``stop - start`` of them): only that span is read and resampled, so a long recording
    is read piece by piece. NaN or infinite samples are an error naming the file."""
    native = soundfile.info(str(path)).samplerate
    first, last = (int(round(s * native / sample_rate)) for s in (start, stop))
    audio = _read(path, first, last)[0].mean(axis=1)
    if native != sample_rate and len(audio):
        audio = resample(audio, native, sample_rate)
    out = np.zeros(stop - start, dtype=np.float32)
    out[: min(len(audio), len(out))] = audio[: len(out)]
    return out


def load_audio(path: str | Path, sample_rate: int, log=None) -> np.ndarray:
    """Load ``path`` as mono float32 at ``sample_rate``.

    Stereo (or more channels) is averaged and other rates resampled (soxr), each noted
    through ``log`` when given, as is a recording with more than ``CLIPPED_SHARE`` of its
    samples at full scale (kept as is). A missing, unreadable or empty file, or one with
    NaN or infinite samples, raises an error naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise LowrankAmtError(f"audio file {path} does not exist")
    audio, rate = _read(path)
    if audio.shape[0] == 0:
        raise LowrankAmtError(f"audio file {path} is empty")
    if log is not None:
        if audio.shape[1] > 1:
            log(f"note: audio file {path} has {audio.shape[1]} channels; averaged to mono")
        if rate != sample_rate:
            log(f"note: audio file {path} is at {rate} Hz; resampled to {sample_rate} Hz")
        full_scale = float(np.mean(np.abs(audio) >= 0.999))
        if full_scale > CLIPPED_SHARE:
            log(f"warning: audio file {path} looks clipped ({100 * full_scale:.2f} % of samples at full scale)")
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = resample(audio, rate, sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)
