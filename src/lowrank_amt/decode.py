"""Pitch activations (88 x frames) -> notes, the same decoder for every model, and the
choice of its threshold on the validation split.

A key's note starts where its activation rises to ``threshold`` times the track's
largest activation and ends where it falls below; notes shorter than
``min_note_seconds`` are dropped. Velocity follows the note's peak activation.
"""

from __future__ import annotations

import numpy as np

from .constants import MIDI_MIN
from .metrics import note_metrics


def activations_to_notes(H: np.ndarray, frame_rate: float, threshold: float,
                         min_note_seconds: float = 0.05):
    """Return (intervals, pitches, velocities) decoded from activations ``H``."""
    H = np.asarray(H, dtype=np.float32)
    peak = float(H.max()) if H.size else 0.0
    intervals, pitches, velocities = [], [], []
    if peak <= 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    active = H >= threshold * peak
    # Pad with inactive frames so every run has a rising and a falling edge.
    edges = np.diff(np.pad(active, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    min_frames = max(1, int(round(min_note_seconds * frame_rate)))
    for key, start in zip(*np.nonzero(edges == 1)):
        end = start + np.argmax(edges[key, start:] == -1)
        if end - start < min_frames:
            continue
        intervals.append((start / frame_rate, end / frame_rate))
        pitches.append(MIDI_MIN + key)
        velocities.append(int(np.clip(round(127 * H[key, start:end].max() / peak), 1, 127)))
    order = np.lexsort((pitches, [i[0] for i in intervals])) if intervals else []
    return (np.array(intervals, dtype=float).reshape(-1, 2)[order],
            np.array(pitches, dtype=int)[order], np.array(velocities, dtype=int)[order])


def tune_threshold(tracks, thresholds, frame_rate: float, min_note_seconds: float,
                   onset_tolerance: float = 0.05):
    """Pick the threshold with the best mean note-onset F over ``tracks``.

    ``tracks`` is a list of (H, ref_intervals, ref_pitches) from the validation split.
    Returns (best threshold, list of (threshold, mean F)). Ties go to the lower
    threshold (the first in sorted order).
    """
    scores = []
    for threshold in sorted(thresholds):
        fs = []
        for H, ref_intervals, ref_pitches in tracks:
            est = activations_to_notes(H, frame_rate, threshold, min_note_seconds)
            fs.append(note_metrics(ref_intervals, ref_pitches, est[0], est[1],
                                   onset_tolerance=onset_tolerance)["note_onset_f"])
        scores.append((threshold, float(np.mean(fs))))
    best = max(scores, key=lambda s: s[1])[0]
    return best, scores
