"""Velocity calibration: a decoded note's activation peak -> MIDI velocity, a curve
fitted on the validation split with the rest of the decoding.

Conventions. A note's *level* is its activation peak in dB relative to the track's
largest activation (0 dB: the loudest note's peak; -20 dB: a tenth of it). The curve is

    velocity = intercept + slope * level + key_offset[key],  clipped to 1..127:

a line in dB, since loudness is heard and synthesized on a log scale, plus an offset
per key, since a key's templates and its piano's voicing make its activations larger or
smaller at the same velocity. The offsets are shrunk toward 0 as if each key had
``KEY_PRIOR_NOTES`` more notes on the line, so a key seen on few validation notes keeps
the line. The curve is fitted by least squares on the validation notes that match a
reference note (same pitch, onset within tolerance). Without a curve, a note's velocity
is 127 times its peak over the track's.
"""

from __future__ import annotations

import numpy as np

from ..constants import MIDI_MIN, N_KEYS
from ..evaluation.metrics import midi_hz

#: Pseudo-notes on the line that shrink each key's offset (see the module doc).
KEY_PRIOR_NOTES = 20
#: Levels below this (dB) are read as this: an activation of exactly 0 has no level.
FLOOR_DB = -80.0
#: Fewest matched validation notes for a curve; with fewer the peak rule stays.
MIN_NOTES = 10


def levels_db(peaks) -> np.ndarray:
    """Note levels (dB relative to the track's peak) of peaks relative to it."""
    return np.maximum(20 * np.log10(np.maximum(np.asarray(peaks, dtype=float), 1e-12)), FLOOR_DB)


def note_velocities(peaks, pitches, curve: dict | None = None) -> np.ndarray:
    """MIDI velocities (1..127) of notes with activation ``peaks`` relative to the
    track's peak: by ``curve`` (``fit_curve``), else 127 times the peak."""
    peaks, pitches = np.asarray(peaks, dtype=float), np.asarray(pitches, dtype=int)
    if curve is None:
        velocity = 127 * peaks
    else:
        keys = np.clip(pitches - MIDI_MIN, 0, N_KEYS - 1)
        velocity = curve["intercept"] + curve["slope"] * levels_db(peaks) + np.asarray(curve["key_offsets"])[keys]
    return np.clip(np.round(velocity), 1, 127).astype(int)


def fit_curve(peaks, pitches, velocities) -> dict | None:
    """The curve (intercept, slope per dB, 88 key offsets) by least squares with shrunk
    key offsets, from matched notes' peaks, pitches and reference velocities; None with
    under ``MIN_NOTES`` notes or references all of one velocity (nothing to learn)."""
    velocities = np.asarray(velocities, dtype=float)
    if len(velocities) < MIN_NOTES or np.ptp(velocities) == 0:
        return None
    keys = np.clip(np.asarray(pitches, dtype=int) - MIDI_MIN, 0, N_KEYS - 1)
    design = np.zeros((len(velocities), 2 + N_KEYS))
    design[:, 0], design[:, 1] = 1.0, levels_db(peaks)
    design[np.arange(len(keys)), 2 + keys] = 1.0
    prior = np.hstack([np.zeros((N_KEYS, 2)), np.sqrt(KEY_PRIOR_NOTES) * np.eye(N_KEYS)])
    coef = np.linalg.lstsq(np.vstack([design, prior]), np.concatenate([velocities, np.zeros(N_KEYS)]),
                           rcond=None)[0]
    return {"intercept": float(coef[0]), "slope": float(coef[1]),
            "key_offsets": [round(float(c), 4) for c in coef[2:]], "n_notes": int(len(velocities))}


def matched_velocities(ref_notes, est_intervals, est_pitches, onset_tolerance: float):
    """(estimate indices, reference velocities) of the estimated notes that match a
    reference note by onset and pitch (mir_eval's one-to-one matching)."""
    import mir_eval  # on first use: it brings scipy.stats, which transcription never needs
    ref_intervals, ref_pitches, ref_velocities = (np.asarray(a) for a in ref_notes)
    if len(ref_pitches) == 0 or len(est_pitches) == 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    pairs = np.array(mir_eval.transcription.match_notes(
        ref_intervals.reshape(-1, 2), midi_hz(ref_pitches), np.asarray(est_intervals).reshape(-1, 2),
        midi_hz(est_pitches),
        onset_tolerance=onset_tolerance, offset_ratio=None), dtype=int).reshape(-1, 2)
    return pairs[:, 1], ref_velocities[pairs[:, 0]].astype(float)
