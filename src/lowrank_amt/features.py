"""Per-track features and frame targets, cached on disk as memory-mappable .npy files.

A feature set is one ``features`` entry of the config. Its cache folder holds, per
track, ``<track_id>.npy`` (bins x frames magnitudes) and ``<track_id>.roll.npy``
(88 x frames key activity), plus ``index.csv`` (written last) and ``params.json``.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pandas as pd

from .audio import load_audio
from .data.manifest import read_manifest
from .errors import LowrankAmtError
from .io import atomic_path, write_json
from .notes import piano_roll, read_midi_notes


def cqt_bins(spec: dict) -> tuple[int, int, float]:
    """(n_bins, bins_per_octave, fmin in Hz) of a CQT feature spec."""
    per_semitone = spec["bins_per_semitone"]
    return (spec["n_semitones"] * per_semitone, 12 * per_semitone,
            float(librosa.midi_to_hz(spec["fmin_midi"])))


def bin_frequencies(spec: dict) -> np.ndarray:
    n_bins, bins_per_octave, fmin = cqt_bins(spec)
    return librosa.cqt_frequencies(n_bins=n_bins, fmin=fmin, bins_per_octave=bins_per_octave)


def compute_features(audio: np.ndarray, spec: dict, sample_rate: int) -> np.ndarray:
    """Magnitude CQT, bins x frames, float32."""
    n_bins, bins_per_octave, fmin = cqt_bins(spec)
    top = fmin * 2 ** ((n_bins - 1) / bins_per_octave)
    if top >= sample_rate / 2:
        raise LowrankAmtError(
            f"features: top CQT bin {top:.0f} Hz is above Nyquist ({sample_rate / 2:.0f} Hz); "
            "lower 'n_semitones' or 'fmin_midi', or raise 'sample_rate'")
    octaves = int(np.ceil(n_bins / bins_per_octave))
    if spec["hop_length"] % 2 ** (octaves - 1):
        raise LowrankAmtError(f"features: 'hop_length' {spec['hop_length']} must be a multiple of "
                              f"{2 ** (octaves - 1)} for a CQT over {octaves} octaves")
    cqt = librosa.cqt(audio, sr=sample_rate, hop_length=spec["hop_length"], fmin=fmin,
                      n_bins=n_bins, bins_per_octave=bins_per_octave)
    return np.abs(cqt).astype(np.float32)


def extract_dataset(manifest_path: str | Path, spec: dict, sample_rate: int,
                    index_path: str | Path, log=print) -> pd.DataFrame:
    """Compute features and piano-roll targets of every track of a manifest."""
    out_dir = Path(index_path).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(manifest_path)
    frame_rate = sample_rate / spec["hop_length"]
    rows = []
    for n, track in enumerate(manifest.itertuples(index=False), 1):
        audio = load_audio(track.audio_path, sample_rate)
        features = compute_features(audio, spec, sample_rate).astype(spec["dtype"])
        intervals, pitches, _ = read_midi_notes(track.midi_path)
        roll = piano_roll(intervals, pitches, features.shape[1], frame_rate)
        feature_file, roll_file = f"{track.track_id}.npy", f"{track.track_id}.roll.npy"
        for name, array in ((feature_file, features), (roll_file, roll.astype(np.uint8))):
            with atomic_path(out_dir / name) as tmp:
                np.save(tmp, array)
        rows.append({"track_id": track.track_id, "split": track.split,
                     "features_path": feature_file, "roll_path": roll_file,
                     "midi_path": track.midi_path, "n_frames": features.shape[1],
                     "frame_rate": frame_rate, "duration": len(audio) / sample_rate})
        log(f"[{n}/{len(manifest)}] {track.track_id}: {features.shape[0]} bins x {features.shape[1]} frames")
    write_json(out_dir / "params.json", {"sample_rate": sample_rate, **spec})
    index = pd.DataFrame(rows)
    with atomic_path(index_path) as tmp:
        index.to_csv(tmp, index=False)
    return index


def read_index(index_path: str | Path, split: str | None = None) -> pd.DataFrame:
    index_path = Path(index_path)
    if not index_path.exists():
        raise LowrankAmtError(f"feature index {index_path} does not exist; extract features first")
    index = pd.read_csv(index_path, dtype={"track_id": str})
    for column in ("features_path", "roll_path"):
        index[column] = [str(index_path.parent / p) for p in index[column]]
    if split is not None:
        index = index[index["split"] == split].reset_index(drop=True)
    return index


def load_track(row) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one track's features and roll."""
    return np.load(row.features_path, mmap_mode="r"), np.load(row.roll_path, mmap_mode="r")
