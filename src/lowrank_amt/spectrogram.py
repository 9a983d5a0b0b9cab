"""Per-track features (spectrograms) and their on-disk cache, memory-mappable .npy files.

A feature set is one ``features`` entry of the config (``spec``), its keys declared in
``PARAMS``. Kinds (all magnitudes, bins x frames, frames every ``hop_length`` samples,
frame ``f`` centred on sample ``f * hop_length``):

- ``cqt``: constant-Q transform (librosa), ``bins_per_semitone`` bins per semitone over
  ``n_semitones`` from MIDI ``fmin_midi``.
- ``logstft``: an ``n_fft`` STFT mapped onto the same log-frequency bins by triangular
  filters (each bin a weighted mean of the STFT bins around its centre; where log bins
  are narrower than the STFT resolution, it interpolates).
- ``stft``: the linear-frequency STFT magnitude (``n_fft // 2 + 1`` bins), for models
  that want it.

The cache folder (written by ``stages/features.py``) holds per track ``<id>.npy``
(features, float16 or float32 by ``dtype``) and its frame targets (``targets.py``)
``<id>.roll.npy``, ``<id>.onsets.npy``, ``<id>.offsets.npy``, and ``<id>.class_roll.npy``
(each instrument class's roll, ``instruments.class_roll``); ``checksums.json`` (each
array file's size and SHA-256, recorded as it was written); ``params.json`` (every
parameter that shaped them and their hash) and ``index.csv`` (written last, one row per
track, with the hash). ``read_index`` refuses a cache whose hash does not match its
parameters, or, when given a spec, a cache made with other parameters; ``load_cached``
checks a file against its recorded size and SHA-256 the first time a process reads it
(again if it changes), so a truncated or damaged file is an error naming it, never data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
import os
from pathlib import Path

import librosa
import numpy as np
import pandas as pd

from .constants import HOP_LENGTH, MIDI_MIN, N_KEYS, SAMPLE_RATE
from .errors import LowrankAmtError
from .io import file_record, read_csv, read_json, write_json
from .param import Param, complete, defaults, properties

PARAMS = (
    Param("kind", None, type="string", enum=["cqt", "logstft", "stft"], required=True,
          meaning="Feature kind: `cqt` constant-Q magnitude (librosa); `logstft` STFT magnitude pooled onto the "
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


#: The file of a cache folder recording its array files' ``io.file_record``s.
CHECKSUMS = "checksums.json"
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


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def cqt_bins(spec: dict) -> tuple[int, int, float]:
    """(n_bins, bins_per_octave, fmin in Hz) of a log-frequency feature spec."""
    spec = {**DEFAULTS, **spec}
    per_semitone = spec["bins_per_semitone"]
    return (spec["n_semitones"] * per_semitone, 12 * per_semitone,
            float(librosa.midi_to_hz(spec["fmin_midi"])))


def bin_frequencies(spec: dict, sample_rate: int | None = None) -> np.ndarray:
    """Centre frequency (Hz) of every feature bin, lowest first. ``spec`` may be a
    cache's params.json (its ``sample_rate`` is used when none is given)."""
    if spec.get("kind") == "stft":
        rate = sample_rate or spec.get("sample_rate", SAMPLE_RATE)
        return np.fft.rfftfreq({**DEFAULTS, **spec}["n_fft"], 1.0 / rate)
    n_bins, bins_per_octave, fmin = cqt_bins(spec)
    return librosa.cqt_frequencies(n_bins=n_bins, fmin=fmin, bins_per_octave=bins_per_octave)


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


def _memoize_cqt_filters() -> None:
    """Keep librosa's CQT filter bases in memory between calls.

    librosa rebuilds the frequency-domain filters of every octave at each ``cqt`` call
    (about half the time on a 15-s track); its own cache is on disk and only enabled by
    an environment variable read at import. The wrapper returns copies because librosa
    rescales the basis in place. Values are identical (tests/test_features.py checks).
    """
    from librosa.core import constantq
    original = getattr(constantq, "__vqt_filter_fft", None)
    if original is None or hasattr(original, "memo"):
        return
    memo: dict = {}

    def cached(sr, freqs, filter_scale, norm, sparsity, hop_length=None, window="hann",
               gamma=0.0, dtype=np.complex64, alpha=None):
        key = (float(sr), np.asarray(freqs).tobytes(), filter_scale, norm, sparsity, hop_length, repr(window),
               gamma, np.dtype(dtype).str, None if alpha is None else np.asarray(alpha).tobytes())
        if key not in memo:
            if len(memo) >= 128:
                memo.clear()
            memo[key] = original(sr, freqs, filter_scale, norm, sparsity, hop_length=hop_length,
                                 window=window, gamma=gamma, dtype=dtype, alpha=alpha)
        basis, n_fft, lengths = memo[key]
        return basis.copy(), n_fft, np.copy(lengths)

    cached.memo, cached.__wrapped__ = memo, original
    setattr(constantq, "__vqt_filter_fft", cached)


def compute_features(audio: np.ndarray, spec: dict, sample_rate: int) -> np.ndarray:
    """Magnitude features of mono ``audio``, bins x frames, float32 (see the module doc)."""
    spec = full_spec(spec)
    hop = spec["hop_length"]
    with warnings.catch_warnings():  # librosa warns on audio shorter than a window; it pads
        warnings.filterwarnings("ignore", message=".*too large for input signal.*")
        if spec["kind"] == "stft":
            return np.abs(librosa.stft(audio, n_fft=spec["n_fft"], hop_length=hop)).astype(np.float32)
        _check_nyquist(spec, sample_rate)
        if spec["kind"] == "logstft":
            magnitude = np.abs(librosa.stft(audio, n_fft=spec["n_fft"], hop_length=hop)).astype(np.float32)
            return log_filterbank(spec, sample_rate) @ magnitude
        n_bins, bins_per_octave, fmin = cqt_bins(spec)
        octaves = int(np.ceil(n_bins / bins_per_octave))
        if hop % 2 ** (octaves - 1):
            raise LowrankAmtError(f"features: 'hop_length' {hop} must be a multiple of "
                                  f"{2 ** (octaves - 1)} for a CQT over {octaves} octaves")
        _memoize_cqt_filters()
        cqt = librosa.cqt(audio, sr=sample_rate, hop_length=hop, fmin=fmin,
                          n_bins=n_bins, bins_per_octave=bins_per_octave)
    return np.abs(cqt).astype(np.float32)


def read_index(index_path: str | Path, split: str | None = None, spec: dict | None = None,
               sample_rate: int | None = None) -> pd.DataFrame:
    """The feature index with absolute paths, optionally one split.

    When the index records a ``params_hash``, ``params.json`` beside it must hold the same
    hash and parameters that hash to it; with ``spec`` and ``sample_rate`` the cache must
    have been made with them. Otherwise an error names the file and says to re-extract.
    """
    index_path = Path(index_path)
    if not index_path.exists():
        raise LowrankAmtError(f"feature index {index_path} does not exist; extract features first")
    index = read_csv(index_path, "feature index", ("track_id", "split", "features_path"),
                     dtype={"track_id": str, "split": str})
    if "params_hash" in index.columns or spec is not None:
        _check_params(index_path, index, spec, sample_rate)
    for column in [c for c in index.columns if c.endswith("_path") and c != "midi_path"]:
        index[column] = [os.path.normpath(index_path.parent / p) for p in index[column]]
    if split is not None:
        index = index[index["split"] == split].reset_index(drop=True)
    return index


def _check_params(index_path: Path, index: pd.DataFrame, spec, sample_rate) -> None:
    params_path = index_path.parent / "params.json"
    stale = f"; delete {index_path.parent} and extract the features again"
    if not params_path.exists():
        raise LowrankAmtError(f"feature cache {index_path.parent} has no params.json{stale}")
    recorded = read_json(params_path)
    digest = recorded.pop("params_hash", None)
    if digest != params_hash(recorded) or set(index.get("params_hash", [digest])) != {digest}:
        raise LowrankAmtError(f"feature cache {index_path}: parameters in {params_path} do not match "
                              f"the hash its features were made with{stale}")
    if spec is not None:
        wanted = feature_params(spec, sample_rate if sample_rate is not None else recorded["sample_rate"])
        if params_hash(wanted) != digest:
            changed = sorted(k for k in set(wanted) | set(recorded) if wanted.get(k) != recorded.get(k))
            raise LowrankAmtError(f"feature cache {index_path} was made with other parameters "
                                  f"(differ: {', '.join(changed)}){stale}")


def load_cached(path) -> np.ndarray:
    """Memory-map one array of a feature cache, checked against its recorded size and
    SHA-256; a missing, truncated or damaged file (as a killed copy or a full disk
    leaves it) is one error naming it, never used."""
    path = Path(path)
    advice = f"delete {path.parent} and extract the features again"
    try:
        _check_recorded(path, advice)
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise LowrankAmtError(f"feature cache file {path} is truncated or corrupt ({exc}); {advice}") from exc


#: (path, size, mtime) of the files this process has checked: a batch loader reads each often.
_checked: set[tuple] = set()


def _check_recorded(path: Path, advice: str) -> None:
    stat = path.stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key in _checked:
        return
    checksums = path.parent / CHECKSUMS
    if not checksums.exists():
        raise LowrankAmtError(f"feature cache {path.parent} has no {CHECKSUMS} (it was made by an older "
                              f"version or its extraction did not finish); {advice}")
    recorded = _read_checksums(checksums, checksums.stat().st_mtime_ns).get(path.name)
    if recorded is None:
        raise LowrankAmtError(f"feature cache file {path} is not listed in {checksums}; {advice}")
    if stat.st_size != recorded["bytes"] or file_record(path)["sha256"] != recorded["sha256"]:
        raise LowrankAmtError(f"feature cache file {path} is damaged: its size or SHA-256 differs from those "
                              f"recorded in {CHECKSUMS} when it was written; {advice}")
    _checked.add(key)


def record_checksums(folder) -> None:
    """Record the size and SHA-256 of every .npy file in ``folder``: for a cache whose
    arrays were written by other means than the features stage (which records each file
    as it writes it)."""
    folder = Path(folder)
    write_json(folder / CHECKSUMS, {path.name: file_record(path) for path in sorted(folder.glob("*.npy"))})


@functools.lru_cache(maxsize=64)
def _read_checksums(path: Path, mtime_ns: int) -> dict:
    return read_json(path)


def load_track(row) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one track's features and key-activity roll."""
    return load_cached(row.features_path), load_cached(row.roll_path)


def cache_params(index_path: str | Path) -> dict:
    """The parameters of a feature cache (``params.json`` beside its index)."""
    params_path = Path(index_path).parent / "params.json"
    if not params_path.exists():
        raise LowrankAmtError(f"{params_path} is missing; extract the features again")
    return read_json(params_path)
