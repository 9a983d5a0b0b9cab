"""A track's outputs, what every family's transcriber returns and every decoder reads,
with their reader and writer in an activations file; and the one writer of a track's
decoded notes, which the transcription stage and ``lowrank-amt transcribe`` share.

Conventions: every output has a row per key or class and a column per frame, at the
model's frame rate (``Family.frame_rate``); values are >= 0. In an activations file
(``stages/transcribe.py``'s ``activations``) a track's outputs are float16 arrays named
``<split>__<track_id>`` (``note``) and ``<split>__<track_id>__<name>`` (the others),
clipped to float16's range.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from ..errors import LowrankAmtError
from ..evaluation.notes import write_midi_notes
from ..instruments import write_class_tracks
from ..runtime.io import atomic_path

F16_MAX = float(np.finfo(np.float16).max)


class TrackOutputs(TypedDict, total=False):
    """One track's outputs. ``note`` is always there; a family adds what it predicts."""

    note: np.ndarray      # 88 x frames: pitch activations or a note posteriorgram (every family)
    onset: np.ndarray     # 88 x frames: onset activations (attack templates, networks' onset heads)
    pedal: np.ndarray     # 1 x frames: the sustain pedal's probability (Transkun)
    by_class: np.ndarray  # classes x 88 x frames: key activations per instrument class
    classes: np.ndarray   # the rows of by_class as indices of instruments.CLASSES


#: The outputs' names, ``note`` first.
NAMES = tuple(TrackOutputs.__annotations__)


def pack(outputs: TrackOutputs, split: str, track_id: str) -> dict:
    """The arrays an activations file holds for one track's outputs."""
    key = f"{split}__{track_id}"
    return {key + ("" if name == "note" else f"__{name}"): np.minimum(outputs[name], F16_MAX).astype(np.float16)
            for name in NAMES if name in outputs}


def unpack(arrays, split: str, track_id: str, source) -> TrackOutputs:
    """One track's outputs from an activations file's ``arrays`` (float32, ``classes`` as
    integers), or an error naming the file, ``source``."""
    key = f"{split}__{track_id}"
    if key not in arrays:
        raise LowrankAmtError(f"{source} lacks activations of {split} track {track_id}")
    outputs = {"note": arrays[key].astype(np.float32)}
    if outputs["note"].ndim != 2:
        raise LowrankAmtError(f"{source}: {key} has shape {outputs['note'].shape}, expected (88, frames)")
    for name in NAMES[1:]:
        if f"{key}__{name}" in arrays:
            outputs[name] = arrays[f"{key}__{name}"].astype(np.int64 if name == "classes" else np.float32)
    return outputs


def write_notes(midi_path: Path, notes=None, pedal=(), by_class: dict | None = None, csv_path: Path | None = None):
    """A track's decoded notes (intervals, pitches, velocities) as one MIDI track with the
    sustain pedal's spans as CC64; with ``by_class`` (class name -> notes) instead, one MIDI
    track per class. With ``csv_path``, also a table of onset_s, offset_s, pitch, velocity
    (and instrument), sorted by onset."""
    if by_class is None:
        intervals, pitches, velocities = notes
        write_midi_notes(midi_path, intervals, pitches, velocities, pedal=pedal)
        table = pd.DataFrame({"onset_s": intervals[:, 0], "offset_s": intervals[:, 1], "pitch": pitches,
                              "velocity": velocities})
    else:
        write_class_tracks(midi_path, by_class)
        table = pd.concat([pd.DataFrame({"onset_s": i[:, 0], "offset_s": i[:, 1], "pitch": p, "velocity": v,
                                         "instrument": name}) for name, (i, p, v) in by_class.items()])
        table = table.sort_values(["onset_s", "pitch"], kind="stable")
    if csv_path is not None:
        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.4f")
