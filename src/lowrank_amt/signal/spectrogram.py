"""Per-track features (spectrograms): their parameters and their computation.

A feature set is one ``features`` entry of the config (``spec``), its keys declared in
``PARAMS``. Kinds (all magnitudes, bins x frames, frames every ``hop_length`` samples,
frame ``f`` centred on sample ``f * hop_length``):

- ``cqt``: constant-Q transform (``cqt.py``: librosa's algorithm and values),
  ``bins_per_semitone`` bins per semitone over ``n_semitones`` from MIDI ``fmin_midi``.
- ``logstft``: an ``n_fft`` STFT mapped onto the same log-frequency bins by triangular
  filters (each bin a weighted mean of the STFT bins around its centre; where log bins
  are narrower than the STFT resolution, it interpolates).
- ``stft``: the linear-frequency STFT magnitude (``n_fft // 2 + 1`` bins), for models
  that want it.

``feature_stream`` gives the same features of audio that arrives in pieces (``listen``).
The on-disk cache of these arrays is ``feature_cache.py``. librosa is imported only for the
STFT kinds: the CQT, what transcription uses, starts faster without it.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..constants import HOP_LENGTH, MIDI_MIN, N_KEYS, SAMPLE_RATE
from ..errors import LowrankAmtError
from ..param import Param, complete, defaults, properties
from .cqt import cqt_magnitude, frequencies
from .cqt_stream import CQTStream

PARAMS = (
    Param("kind", None, type="string", enum=["cqt", "logstft", "stft"], required=True,
          meaning="Feature kind: `cqt` constant-Q magnitude (librosa's algorithm); `logstft` STFT magnitude pooled onto the "
                  "same log-frequency bins; `stft` linear STFT magnitude."),
    Param("hop_length", HOP_LENGTH, type="integer", minimum=64, maximum=8192,
          meaning="Hop between frames in samples; must be a multiple of 2**(octaves - 1) for the CQT."),
    Param("bins_per_semitone", 3, type="integer", minimum=1, maximum=8, meaning="Frequency bins per semitone."),
    Param("fmin_midi", MIDI_MIN, type="integer", minimum=0, maximum=127,
          meaning="MIDI number of the lowest bin's centre frequency (21 = A0 = 27.5 Hz)."),
    Param("n_semitones", N_KEYS, type="integer", minimum=12, maximum=120,
          meaning="Frequency range in semitones from fmin_midi."),
    Param("n_fft", 4096, type="integer", minimum=256, maximum=32768, meaning="STFT size of `logstft` and `stft` features."),
    Param("pedal_extension", False, type="boolean",
          meaning="Extend target notes released under the sustain pedal until pedal-up or the next strike of the key."),
    Param("dtype", "float32", type="string", enum=["float32", "float16"], meaning="Storage type of the cached features."),
)
DEFAULTS = {name: value for name, value in defaults(PARAMS).items() if name != "kind"}
#: Part of the parameter hash: bump it when a change of code changes the features.
FORMAT_VERSION = 2


#: What a cache's params.json records besides the spec's keys (``feature_params``).
RECORDED = ("sample_rate", "format_version", "params_hash")


def full_spec(spec: dict) -> dict:
    """``spec`` (a config entry, or a cache's params.json) with defaults filled in and
    checked; errors name the key."""
    if "kind" not in spec:
        raise LowrankAmtError("config key 'features.<name>.kind' is required")
    recorded = {k: v for k, v in spec.items() if k in RECORDED}
    return {**complete(PARAMS, {k: v for k, v in spec.items() if k not in RECORDED}, "features.<name>"), **recorded}


def definition() -> dict:
    """The config schema's ``features`` definition."""
    return {"type": "object", "additionalProperties": False, "required": ["kind"], "properties": properties(PARAMS)}


def feature_params(spec: dict, sample_rate: int) -> dict:
    """Every parameter that shapes a cache's arrays (the hash is taken over these)."""
    spec = full_spec(spec)
    keys = ["kind", "hop_length", "dtype", "pedal_extension"]
    keys += ["bins_per_semitone", "fmin_midi", "n_semitones"] if spec["kind"] != "stft" else []
    keys += ["n_fft"] if spec["kind"] != "cqt" else []
    return {"sample_rate": int(sample_rate), "format_version": FORMAT_VERSION,
            **{k: spec[k] for k in sorted(keys)}}


def cqt_bins(spec: dict) -> tuple[int, int, float]:
    """(n_bins, bins_per_octave, fmin in Hz) of a log-frequency feature spec."""
    spec = {**DEFAULTS, **spec}
    per_semitone = spec["bins_per_semitone"]
    return (spec["n_semitones"] * per_semitone, 12 * per_semitone,
            440.0 * 2.0 ** ((spec["fmin_midi"] - 69) / 12))


def bin_frequencies(spec: dict, sample_rate: int | None = None) -> np.ndarray:
    """Centre frequency (Hz) of every feature bin, lowest first. ``spec`` may be a
    cache's params.json (its ``sample_rate`` is used when none is given)."""
    if spec.get("kind") == "stft":
        rate = sample_rate or spec.get("sample_rate", SAMPLE_RATE)
        return np.fft.rfftfreq({**DEFAULTS, **spec}["n_fft"], 1.0 / rate)
    n_bins, bins_per_octave, fmin = cqt_bins(spec)
    return frequencies(fmin, n_bins, bins_per_octave)


def log_filterbank(spec: dict, sample_rate: int) -> np.ndarray:
    """(n_log_bins x n_fft//2+1) triangular filters from STFT bins to log-frequency bins,
    each row summing to 1. A filter spans from the previous to the next log-bin centre,
    widened to at least one STFT bin on each side so that no row is empty."""
    n_fft = {**DEFAULTS, **spec}["n_fft"]
    centres = bin_frequencies({**spec, "kind": "cqt"})
    linear = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    step = sample_rate / n_fft
    ratio = 2 ** (1 / cqt_bins(spec)[1])  # one log bin up
    lower = np.minimum(centres / ratio, centres - step)
    upper = np.maximum(centres * ratio, centres + step)
    rising = (linear[None, :] - lower[:, None]) / (centres - lower)[:, None]
    falling = (upper[:, None] - linear[None, :]) / (upper - centres)[:, None]
    bank = np.clip(np.minimum(rising, falling), 0, None)
    return (bank / bank.sum(axis=1, keepdims=True)).astype(np.float32)


def _check_nyquist(spec, sample_rate):
    top = bin_frequencies(spec)[-1]
    if top >= sample_rate / 2:
        raise LowrankAmtError(
            f"features: top bin {top:.0f} Hz is above Nyquist ({sample_rate / 2:.0f} Hz); "
            "lower 'n_semitones' or 'fmin_midi', or raise 'sample_rate'")


def _checked(spec: dict, sample_rate: int) -> dict:
    """``spec`` completed, its bins below Nyquist and, for the CQT, its hop halvable once per
    octave; errors name the key."""
    spec = full_spec(spec)
    if spec["kind"] != "stft":
        _check_nyquist(spec, sample_rate)
    if spec["kind"] == "cqt":
        n_bins, bins_per_octave, _ = cqt_bins(spec)
        octaves, hop = int(np.ceil(n_bins / bins_per_octave)), spec["hop_length"]
        if hop % 2 ** (octaves - 1):
            raise LowrankAmtError(f"features: 'hop_length' {hop} must be a multiple of "
                                  f"{2 ** (octaves - 1)} for a CQT over {octaves} octaves")
    return spec


def _cqt_arguments(spec: dict) -> tuple[float, int, int]:
    """(fmin, n_bins, bins_per_octave), as ``cqt_magnitude`` and ``CQTStream`` take them."""
    n_bins, bins_per_octave, fmin = cqt_bins(spec)
    return fmin, n_bins, bins_per_octave


def compute_features(audio: np.ndarray, spec: dict, sample_rate: int) -> np.ndarray:
    """Magnitude features of mono ``audio``, bins x frames, float32 (see the module doc)."""
    spec = _checked(spec, sample_rate)
    hop = spec["hop_length"]
    if spec["kind"] != "cqt":
        magnitude = _stft_magnitude(audio, spec["n_fft"], hop)
        return magnitude if spec["kind"] == "stft" else log_filterbank(spec, sample_rate) @ magnitude
    return cqt_magnitude(audio, sample_rate, hop, *_cqt_arguments(spec))


def feature_stream(spec: dict, sample_rate: int):
    """An object with ``push(samples)``, ``received`` (samples so far) and ``frames(first)``
    (frames ``first`` to the newest, as ``compute_features`` gives them for the audio so
    far): a ``CQTStream``, or for the STFT kinds ``RecomputedFeatures``."""
    spec = _checked(spec, sample_rate)
    if spec["kind"] != "cqt":
        return RecomputedFeatures(spec, sample_rate)
    return CQTStream(sample_rate, spec["hop_length"], *_cqt_arguments(spec))


class RecomputedFeatures:
    """Features of a growing signal, computed again at each ``frames`` call over the frames
    asked for and ``context`` seconds of audio before them (more than a window)."""

    def __init__(self, spec: dict, sample_rate: int, context: float = 1.0):
        self.spec, self.rate, self.hop = spec, sample_rate, spec["hop_length"]
        self.context = int(np.ceil(context * sample_rate / self.hop)) * self.hop
        self.audio, self.start = np.zeros(0, dtype=np.float32), 0

    @property
    def received(self) -> int:
        return self.start + len(self.audio)

    def push(self, samples: np.ndarray) -> None:
        self.audio = np.concatenate([self.audio, np.asarray(samples, dtype=np.float32)])

    def frames(self, first: int) -> np.ndarray:
        drop = min(max(0, first * self.hop - self.context - self.start), len(self.audio)) // self.hop * self.hop
        self.audio, self.start = self.audio[drop:], self.start + drop
        return compute_features(self.audio, self.spec, self.rate)[:, first - self.start // self.hop:]


def _stft_magnitude(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    import librosa

    with warnings.catch_warnings():  # librosa warns on audio shorter than a window; it pads
        warnings.filterwarnings("ignore", message=".*too large for input signal.*")
        return np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop)).astype(np.float32)
