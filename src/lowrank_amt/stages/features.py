"""The features stage (``features.smk``), from files to files: the features
(``spectrogram.py``) and frame targets (``targets.py``) of every track of a dataset's
manifest, written to the feature cache (``feature_cache.py``), with the instrument-aware
``class_roll`` (``instruments.class_roll``) over the dataset's classes (the index's
``classes`` column).

Bad input: an unreadable or empty audio file, or a MIDI file that cannot be read or has
no notes, stops with an error naming the file. Stereo audio is averaged, other sample
rates resampled (``audio.load_audio``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import N_KEYS
from ..datasets.manifest import read_manifest
from ..instruments import class_roll, present_classes
from ..signal.audio import load_audio
from ..signal.feature_cache import params_hash, write_index, write_track
from ..signal.spectrogram import compute_features, feature_params, full_spec
from ..signal.targets import frame_targets, read_annotation


def extract_dataset(manifest_path: str | Path, spec: dict, sample_rate: int,
                    index_path: str | Path, log=print) -> pd.DataFrame:
    """Compute features and frame targets of every track of a manifest into the folder of
    ``index_path``; write ``checksums.json``, ``params.json`` and then ``index.csv``."""
    spec = full_spec(spec)
    params = feature_params(spec, sample_rate)
    digest = params_hash(params)
    out_dir = Path(index_path).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(manifest_path)
    frame_rate = sample_rate / spec["hop_length"]
    rows, checksums = [], {}
    classes = present_classes(p for p in manifest["midi_path"] if p)  # instrument-aware targets
    for n, track in enumerate(manifest.itertuples(index=False), 1):
        audio = load_audio(track.audio_path, sample_rate, log=log)
        features = compute_features(audio, spec, sample_rate).astype(spec["dtype"])
        if track.midi_path:
            intervals, pitches = read_annotation(track.midi_path, len(audio) / sample_rate,
                                                 spec["pedal_extension"], log, audio_path=track.audio_path)
        else:  # a training recording without MIDI: silent targets until a teacher annotates it
            intervals, pitches = np.zeros((0, 2)), np.zeros(0, dtype=int)
        targets = frame_targets(intervals, pitches, features.shape[1], frame_rate)
        targets["class_roll"] = class_roll(track.midi_path, classes, features.shape[1], frame_rate,
                                           spec["pedal_extension"]) if track.midi_path else \
            np.zeros((len(classes) * N_KEYS, features.shape[1]), dtype=np.uint8)
        paths, records = write_track(out_dir, track.track_id, features, targets)
        checksums.update(records)
        rows.append({"track_id": track.track_id, "split": track.split, **paths,
                     "midi_path": track.midi_path, "n_frames": features.shape[1],
                     "frame_rate": frame_rate, "duration": len(audio) / sample_rate,
                     "instrument": track.instrument, "annotated": bool(track.midi_path),
                     "classes": ";".join(classes), "params_hash": digest})
        log(f"[{n}/{len(manifest)}] {track.track_id}: {features.shape[0]} bins x {features.shape[1]} frames")
    return write_index(index_path, rows, params, checksums)
