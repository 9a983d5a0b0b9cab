"""The CQT of audio that arrives in pieces (signal/cqt_stream.py) against the whole
transform of the audio received so far, and the features of the other kinds likewise."""

import numpy as np
import pytest

from lowrank_amt.signal.cqt_stream import CQTStream
from lowrank_amt.signal.spectrogram import compute_features, feature_stream

#: How far a stream's frames may be from the whole transform's, over its largest magnitude:
#: float32 rounding of resampling segments instead of the whole signal, compounded over up
#: to seven halvings (measured: below 5e-5, in the lowest two octaves).
STREAM_TOLERANCE = 2e-4


def sounding_audio(seconds: float, rate: int) -> np.ndarray:
    """Bass and treble notes that start and stop, a glide and noise: every octave sounds."""
    t = np.arange(int(seconds * rate)) / rate
    gate = (np.sin(2 * np.pi * 0.7 * t) > 0).astype(float)
    audio = 0.3 * gate * np.sin(2 * np.pi * 41.2 * t) + 0.2 * (1 - gate) * np.sin(2 * np.pi * 110 * t)
    audio += 0.1 * np.sin(2 * np.pi * (200 * t + 300 * t ** 2)) + 0.05 * np.sin(2 * np.pi * 2093 * t)
    return (audio + np.random.default_rng(0).normal(0, 0.01, len(t))).astype(np.float32)


@pytest.mark.parametrize("spec, rate", [
    ({"kind": "cqt"}, 22050),                                                      # the study's default
    ({"kind": "cqt", "hop_length": 256}, 16000),                                   # 8 octaves, hop 256
    ({"kind": "cqt", "bins_per_semitone": 1, "fmin_midi": 40, "n_semitones": 48}, 22050),  # early halvings
    ({"kind": "logstft", "n_fft": 2048}, 22050),                                   # recomputed over a context
])
def test_frames_equal_the_features_of_the_audio_so_far(spec, rate):
    """Pieces of 1 to 3,000 samples; after each, the frames from a point that follows
    the newest frame at 20 frames' distance (as ``listen`` asks for them)."""
    audio = sounding_audio(5.0, rate)
    stream, sizes = feature_stream(spec, rate), np.random.default_rng(1).choice([1, 100, 1000, 3000], 200)
    received, first, kept = 0, 0, []
    for size in sizes:
        stream.push(audio[received:received + size])
        received = min(len(audio), received + size)
        got = stream.frames(first)
        whole = compute_features(audio[:received], spec, rate)[:, first:]
        assert got.shape == whole.shape and stream.received == received
        assert np.abs(got - whole).max(initial=0) <= STREAM_TOLERANCE * max(whole.max(initial=0), 1e-6)
        first = max(first, first + got.shape[1] - 20)
        if isinstance(stream, CQTStream):
            kept.append(sum(len(signal.data) for signal in stream.signals))
        if received == len(audio):
            break
    assert received == len(audio)
    # what a CQT stream keeps does not grow with the audio: under a second of it at every rate together
    assert not kept or max(kept[len(kept) // 2:]) < rate


def test_forgotten_frames_are_refused():
    stream = CQTStream(22050, 512, 27.5, 264, 36)
    stream.push(sounding_audio(1.0, 22050))
    stream.frames(10)
    with pytest.raises(ValueError, match="forgotten"):
        stream.frames(5)
