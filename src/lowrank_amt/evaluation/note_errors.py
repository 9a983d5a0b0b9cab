"""Where a transcription's note errors come from: pure functions over note arrays.

Conventions. Notes are matched as the note-onset metric matches them (mir_eval, onset
within ``onset_tolerance``, pitch within 50 cents, offsets ignored, one to one). Then:

* a **false note** (an unmatched transcribed note) is classed by the smallest pitch
  distance, in semitones, to a reference note sounding at its onset (one whose span, its
  onset less the tolerance to its offset, holds the false note's onset): ``same_key``
  (0: a repeat of a held key, or an onset off by more than the tolerance), ``semitone``
  (1), ``tone`` (2), ``fifth`` (7 or 19), ``octave`` (12, 24 or 36), ``other`` (any other
  distance), ``silent`` (no reference note sounds);
* a **missed note** (an unmatched reference note) is counted in its velocity, register and
  polyphony bin, beside the number of reference notes of that bin, so that the recall of a
  bin is ``1 - missed / reference``. Velocity: soft 1-49, medium 50-89, loud 90-127 (MIDI);
  register: low below C3 (MIDI 48), middle C3 to B4 (48-71), high from C5 (72);
  polyphony: the reference notes sounding at the note's onset, itself included: 1, 2-3,
  4-5, 6 or more.

Every value is a count, so tracks pool by summing (``pooled_error_shares``).
"""

from __future__ import annotations

import numpy as np

from ..constants import ONSET_TOLERANCE
from .metrics import midi_hz

FALSE_CLASSES = ("same_key", "semitone", "tone", "fifth", "octave", "other", "silent")
#: distance (semitones) -> false-note class; any other distance is "other"
_DISTANCE_CLASS = {0: "same_key", 1: "semitone", 2: "tone", 7: "fifth", 19: "fifth",
                   12: "octave", 24: "octave", 36: "octave"}
#: missed-note bins: (name, upper edges of all bins but the last, the bins' names)
MISSED_BINS = (("velocity", (50, 90), ("soft", "medium", "loud")),
               ("register", (48, 72), ("low", "middle", "high")),
               ("polyphony", (2, 4, 6), ("1", "2-3", "4-5", "6+")))

ERROR_NAMES = (tuple(f"false_{c}" for c in FALSE_CLASSES)
               + tuple(f"{kind}_{name}_{bin_name}" for kind in ("missed", "reference")
                       for name, _, bins in MISSED_BINS for bin_name in bins))


def _onset_matches(ref_intervals, ref_pitches, est_intervals, est_pitches, onset_tolerance):
    import mir_eval  # on first use: it brings scipy.stats, which transcription never needs
    if len(ref_intervals) == 0 or len(est_intervals) == 0:
        return []
    return mir_eval.transcription.match_notes(ref_intervals, midi_hz(ref_pitches), est_intervals,
                                              midi_hz(est_pitches), onset_tolerance=onset_tolerance,
                                              offset_ratio=None)


def sounding(ref_intervals, time: float, onset_tolerance: float = ONSET_TOLERANCE) -> np.ndarray:
    """Mask of the reference notes whose span (onset less the tolerance, to offset) holds ``time``."""
    return (ref_intervals[:, 0] - onset_tolerance <= time) & (time < ref_intervals[:, 1])


def false_class(pitch: int, sounding_pitches) -> str:
    """The class of a false note of ``pitch`` against the reference pitches sounding at its onset."""
    if len(sounding_pitches) == 0:
        return "silent"
    distance = int(round(np.min(np.abs(np.asarray(sounding_pitches, dtype=float) - pitch))))
    return _DISTANCE_CLASS.get(distance, "other")


def _bin(value: float, edges, names) -> str:
    return names[int(np.searchsorted(edges, value, side="right"))]


def note_errors(ref_notes, est_notes, onset_tolerance: float = ONSET_TOLERANCE) -> dict:
    """The counts of ``ERROR_NAMES`` of one track, from two note lists (intervals,
    pitches, velocities); the velocities of the transcription are not used."""
    ref_intervals = np.asarray(ref_notes[0], dtype=float).reshape(-1, 2)
    ref_pitches, ref_velocities = np.asarray(ref_notes[1]), np.asarray(ref_notes[2])
    est_intervals = np.asarray(est_notes[0], dtype=float).reshape(-1, 2)
    est_pitches = np.asarray(est_notes[1])
    matches = _onset_matches(ref_intervals, ref_pitches, est_intervals, est_pitches, onset_tolerance)
    matched_ref = {r for r, _ in matches}
    matched_est = {e for _, e in matches}
    counts = dict.fromkeys(ERROR_NAMES, 0)
    for e in sorted(set(range(len(est_intervals))) - matched_est):
        near = ref_pitches[sounding(ref_intervals, est_intervals[e, 0], onset_tolerance)]
        counts[f"false_{false_class(int(est_pitches[e]), near)}"] += 1
    for r in range(len(ref_intervals)):
        onset = ref_intervals[r, 0]
        polyphony = int(np.sum((ref_intervals[:, 0] <= onset) & (onset < ref_intervals[:, 1])))
        values = {"velocity": ref_velocities[r], "register": ref_pitches[r], "polyphony": max(polyphony, 1)}
        for name, edges, bins in MISSED_BINS:
            bin_name = _bin(values[name], edges, bins)
            counts[f"reference_{name}_{bin_name}"] += 1
            counts[f"missed_{name}_{bin_name}"] += r not in matched_ref
    return counts


def pooled_error_shares(counts) -> dict:
    """Over tracks pooled (a mapping or DataFrame of ``ERROR_NAMES`` columns): each false
    class's share of the false notes (``false_<class>_share``) and each bin's recall
    (``recall_<name>_<bin>``, NaN for a bin without reference notes)."""
    total = {name: float(np.sum(counts[name])) for name in ERROR_NAMES}
    n_false = sum(total[f"false_{c}"] for c in FALSE_CLASSES)
    out = {"n_false": n_false, "n_missed": sum(total[f"missed_velocity_{b}"] for b in MISSED_BINS[0][2])}
    out.update({f"false_{c}_share": total[f"false_{c}"] / n_false if n_false else np.nan for c in FALSE_CLASSES})
    for name, _, bins in MISSED_BINS:
        for b in bins:
            n_ref = total[f"reference_{name}_{b}"]
            out[f"recall_{name}_{b}"] = 1 - total[f"missed_{name}_{b}"] / n_ref if n_ref else np.nan
    return out
