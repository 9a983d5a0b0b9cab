"""Per-track features and frame targets, cached on disk as memory-mappable .npy files.

A feature set is one ``features`` entry of the config (``spec``); missing keys take
``DEFAULTS``. Kinds (all magnitudes, bins x frames, frames every ``hop_length`` samples,
frame ``f`` centred on sample ``f * hop_length``):

- ``cqt``: constant-Q transform (librosa), ``bins_per_semitone`` bins per semitone over
  ``n_semitones`` from MIDI ``fmin_midi``.
- ``logstft``: an ``n_fft`` STFT mapped onto the same log-frequency bins by triangular
  filters (each bin a weighted mean of the STFT bins around its centre; where log bins
  are narrower than the STFT resolution, it interpolates).
- ``stft``: the linear-frequency STFT magnitude (``n_fft // 2 + 1`` bins), for models
  that want it.

Targets, 88 x frames uint8 each: ``roll`` (key down; a note covers the frames whose
centre lies in [onset, offset)), ``onsets`` (the first frame of each note) and
``offsets`` (the last frame of each note). With ``pedal_extension``, a note released
while the sustain pedal (CC64 >= 64) is down lasts until the pedal is released or the
key is struck again, whichever is first (as in the MAESTRO / Onsets and Frames targets).

The cache folder holds per track ``<id>.npy`` (features, float16 or float32 by ``dtype``),
``<id>.roll.npy``, ``<id>.onsets.npy``, ``<id>.offsets.npy``; ``params.json`` (every
parameter that shaped them and their hash) and ``index.csv`` (written last, one row per
track, with the hash). ``read_index`` refuses a cache whose hash does not match its
parameters, or, when given a spec, a cache made with other parameters.

Bad input: an unreadable or empty audio file, or a MIDI file that cannot be read or has no
notes, stops with an error naming the file. Notes outside the piano range are dropped,
and notes beyond the end of the audio are clipped to it (dropped if they start after
it), each with a warning naming the file. Stereo audio is averaged, other sample rates
resampled (``audio.load_audio``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
import os
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pretty_midi

from .audio import load_audio
from .constants import HOP_LENGTH, MIDI_MAX, MIDI_MIN, N_KEYS, SAMPLE_RATE
from .data.manifest import read_manifest
from .errors import LowrankAmtError
from .io import atomic_path, read_json, write_json
from .notes import read_midi_notes

KINDS = ("cqt", "logstft", "stft")
DEFAULTS = {"hop_length": HOP_LENGTH, "bins_per_semitone": 3, "fmin_midi": MIDI_MIN, "n_semitones": N_KEYS,
            "dtype": "float32", "n_fft": 4096, "pedal_extension": False}
#: Part of the parameter hash: bump it when a change of code changes the features.
FORMAT_VERSION = 2
#: Notes ending this little after the audio are not reported as clipped (s).
END_TOLERANCE = 0.05
TARGETS = ("roll", "onsets", "offsets")


def full_spec(spec: dict) -> dict:
    """``spec`` with defaults filled in and checked; errors name the key."""
    spec = {**DEFAULTS, **spec}
    if spec.get("kind") not in KINDS:
        raise LowrankAmtError(f"features kind {spec.get('kind')!r} is unknown; known kinds: {', '.join(KINDS)}")
    if spec["dtype"] not in ("float16", "float32"):
        raise LowrankAmtError(f"features 'dtype' {spec['dtype']!r} must be float16 or float32")
    if spec["hop_length"] < 1 or spec["n_fft"] < 16:
        raise LowrankAmtError("features 'hop_length' must be >= 1 and 'n_fft' >= 16")
    return spec


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


def pedal_intervals(midi_path) -> np.ndarray:
    """(n, 2) spans (s) during which the sustain pedal (CC64 >= 64) is down."""
    midi = pretty_midi.PrettyMIDI(str(midi_path))
    changes = sorted((c.time, c.value >= 64) for inst in midi.instruments if not inst.is_drum
                     for c in inst.control_changes if c.number == 64)
    spans, down_since = [], None
    for time, down in changes:
        if down and down_since is None:
            down_since = time
        elif not down and down_since is not None:
            spans.append((down_since, time))
            down_since = None
    if down_since is not None:
        spans.append((down_since, max(midi.get_end_time(), down_since)))
    return np.array(spans, dtype=float).reshape(-1, 2)


def extend_with_pedal(intervals: np.ndarray, pitches: np.ndarray, pedal: np.ndarray) -> np.ndarray:
    """Note intervals with offsets moved to the pedal release when the key is released
    while the pedal is down, but never past the next onset of the same key."""
    intervals = np.array(intervals, dtype=float).reshape(-1, 2).copy()
    for i, (start, end) in enumerate(intervals):
        for down, up in pedal:
            if down <= end < up:
                later = intervals[(pitches == pitches[i]) & (intervals[:, 0] > start), 0]
                intervals[i, 1] = max(end, min([up, *later]))
                break
    return intervals


def frame_targets(intervals, pitches, n_frames: int, frame_rate: float) -> dict[str, np.ndarray]:
    """``roll``, ``onsets`` and ``offsets`` (88 x n_frames uint8) of piano notes: a note
    covers the frames ``ceil(onset * rate)`` to ``ceil(offset * rate) - 1`` (at least one);
    its onset marks the first and its offset the last of them."""
    targets = {name: np.zeros((N_KEYS, n_frames), dtype=np.uint8) for name in TARGETS}
    for (start, end), pitch in zip(intervals, pitches):
        key = int(pitch) - MIDI_MIN
        a = int(np.ceil(start * frame_rate - 1e-9))
        b = max(int(np.ceil(end * frame_rate - 1e-9)), a + 1)
        if not 0 <= key < N_KEYS or a >= n_frames or b <= 0:
            continue
        a, b = max(a, 0), min(b, n_frames)
        targets["roll"][key, a:b] = 1
        targets["onsets"][key, a] = 1
        targets["offsets"][key, b - 1] = 1
    return targets


def read_annotation(midi_path, audio_seconds: float, pedal_extension: bool = False, log=print, audio_path=None):
    """Piano notes of a MIDI file ready for targets, for the audio ``audio_path`` of
    ``audio_seconds`` (see the module doc for bad input)."""
    intervals, pitches, _ = read_midi_notes(midi_path)
    if len(pitches) == 0:
        raise LowrankAmtError(f"MIDI file {midi_path} has no notes; remove the track or fix its annotation")
    if pedal_extension:
        intervals = extend_with_pedal(intervals, pitches, pedal_intervals(midi_path))
    in_range = (pitches >= MIDI_MIN) & (pitches <= MIDI_MAX)
    if not in_range.all():
        log(f"warning: MIDI file {midi_path}: {int((~in_range).sum())} note(s) outside the piano range "
            f"{MIDI_MIN}-{MIDI_MAX} dropped")
        intervals, pitches = intervals[in_range], pitches[in_range]
    if len(pitches) and intervals[:, 1].max() > audio_seconds + END_TOLERANCE:
        starts_after = intervals[:, 0] >= audio_seconds
        log(f"warning: audio file {audio_path or 'of ' + str(midi_path)} is shorter ({audio_seconds:.2f} s) than "
            f"its annotation {midi_path} ({intervals[:, 1].max():.2f} s): {int(starts_after.sum())} note(s) "
            "dropped, the others clipped")
        intervals, pitches = intervals[~starts_after], pitches[~starts_after]
        intervals[:, 1] = np.minimum(intervals[:, 1], audio_seconds)
    if len(pitches) == 0:
        raise LowrankAmtError(f"MIDI file {midi_path} has no piano notes within its audio")
    return intervals, pitches


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def extract_dataset(manifest_path: str | Path, spec: dict, sample_rate: int,
                    index_path: str | Path, log=print) -> pd.DataFrame:
    """Compute features and frame targets of every track of a manifest into the folder of
    ``index_path``; write ``params.json`` and then ``index.csv``."""
    spec = full_spec(spec)
    params = feature_params(spec, sample_rate)
    digest = params_hash(params)
    out_dir = Path(index_path).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(manifest_path)
    frame_rate = sample_rate / spec["hop_length"]
    rows = []
    for n, track in enumerate(manifest.itertuples(index=False), 1):
        audio = load_audio(track.audio_path, sample_rate, log=log)
        features = compute_features(audio, spec, sample_rate).astype(spec["dtype"])
        if track.midi_path:
            intervals, pitches = read_annotation(track.midi_path, len(audio) / sample_rate,
                                                 spec["pedal_extension"], log, audio_path=track.audio_path)
        else:  # a training recording without MIDI: silent targets until a teacher annotates it
            intervals, pitches = np.zeros((0, 2)), np.zeros(0, dtype=int)
        targets = frame_targets(intervals, pitches, features.shape[1], frame_rate)
        paths = {"features_path": f"{track.track_id}.npy",
                 **{f"{name}_path": f"{track.track_id}.{name}.npy" for name in TARGETS}}
        _save(out_dir / paths["features_path"], features)
        for name in TARGETS:
            _save(out_dir / paths[f"{name}_path"], targets[name])
        rows.append({"track_id": track.track_id, "split": track.split, **paths,
                     "midi_path": track.midi_path, "n_frames": features.shape[1],
                     "frame_rate": frame_rate, "duration": len(audio) / sample_rate,
                     "instrument": track.instrument, "annotated": bool(track.midi_path), "params_hash": digest})
        log(f"[{n}/{len(manifest)}] {track.track_id}: {features.shape[0]} bins x {features.shape[1]} frames")
    write_json(out_dir / "params.json", {**params, "params_hash": digest})
    index = pd.DataFrame(rows)
    with atomic_path(index_path) as tmp:
        index.to_csv(tmp, index=False)
    return index


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
    index = pd.read_csv(index_path, dtype={"track_id": str, "split": str})
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


def load_track(row) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one track's features and key-activity roll."""
    return np.load(row.features_path, mmap_mode="r"), np.load(row.roll_path, mmap_mode="r")


def cache_params(index_path: str | Path) -> dict:
    """The parameters of a feature cache (``params.json`` beside its index)."""
    params_path = Path(index_path).parent / "params.json"
    if not params_path.exists():
        raise LowrankAmtError(f"{params_path} is missing; extract the features again")
    return read_json(params_path)
