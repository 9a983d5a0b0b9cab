"""Transcription metrics, pure functions over note arrays, computed with mir_eval.

Conventions (as in the field's tools): pitches are MIDI numbers here and converted to
Hz for mir_eval. The field's three note metrics (as reported on MAESTRO):

* "note onset" P/R/F: onset within 50 ms and pitch within 50 cents; offsets ignored;
* "note offset" P/R/F: also the offset within 20 % of the reference duration (or 50 ms);
* "note offset velocity" P/R/F: also the velocity (mir_eval.transcription_velocity):
  per track, the reference velocities are scaled to [0, 1], the estimated ones mapped
  onto them by the least-squares line over the matched notes, and a note counts if its
  mapped velocity is within 0.1 of the reference's. Only the velocities' order and
  spacing within a track matter, not their scale.

Frame P/R/F and accuracy sample both note lists on a 10 ms grid (mir_eval.multipitch).
A reference without notes scores 0 (as mir_eval, which warns).

Instrument-aware note metrics (``instrument_metrics``, the multi-instrument F of MT3,
Gardner et al. 2022): a note matches only a reference note of its instrument class;
``instrument_note_onset_*`` count the matches of every class together,
``class_<name>_note_onset_f`` each class of the reference alone.

Score agreement (``score_agreement``): notes of a quantised score (``decoding/score.py``)
found at the same pitch and beat position as in a reference score, after the whole
score is moved by the shift (of those allowed) that matches most, since a missed or
spurious first note moves every position; positions are exact fractions of a beat, so a
match is exact.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np

from ..constants import FRAME_METRIC_HOP, OFFSET_RATIO, ONSET_TOLERANCE

METRIC_NAMES = ("note_onset_p", "note_onset_r", "note_onset_f",
                "note_offset_p", "note_offset_r", "note_offset_f",
                "note_offset_velocity_p", "note_offset_velocity_r", "note_offset_velocity_f",
                "frame_p", "frame_r", "frame_f", "frame_accuracy")

#: Per-track counts from which ``pooled_metrics`` recomputes the metrics over all notes.
COUNT_NAMES = ("n_ref_notes", "n_est_notes", "note_onset_matches", "note_offset_matches",
               "note_offset_velocity_matches", "frame_tp", "frame_n_ref", "frame_n_est")


def midi_hz(pitches) -> np.ndarray:
    """MIDI numbers in Hz, as mir_eval takes pitches."""
    import mir_eval  # on first use: it brings scipy.stats, which transcription never needs
    return mir_eval.util.midi_to_hz(np.asarray(pitches, dtype=float))


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def note_metrics(ref_intervals, ref_pitches, est_intervals, est_pitches,
                 onset_tolerance: float = ONSET_TOLERANCE, offset_ratio: float = OFFSET_RATIO,
                 *, ref_velocities=None, est_velocities=None) -> dict:
    """Note P/R/F without (``note_onset_*``) and with (``note_offset_*``) offsets, with
    both velocity lists also with offsets and velocity (``note_offset_velocity_*``), and
    the match counts (``*_matches``, ``n_ref_notes``, ``n_est_notes``) that pooling
    over tracks needs. Matching is mir_eval's (one-to-one, pitch within 50 cents)."""
    import mir_eval  # on first use: it brings scipy.stats, which transcription never needs
    ref_intervals = np.asarray(ref_intervals, dtype=float).reshape(-1, 2)
    est_intervals = np.asarray(est_intervals, dtype=float).reshape(-1, 2)
    n_ref, n_est = len(ref_intervals), len(est_intervals)
    out = {"n_ref_notes": n_ref, "n_est_notes": n_est}
    names = [("note_onset", None), ("note_offset", offset_ratio)]
    if ref_velocities is not None and est_velocities is not None:
        names.append(("note_offset_velocity", offset_ratio))
    for name, ratio in names:
        if n_ref == 0 or n_est == 0:
            matches = 0
        elif name == "note_offset_velocity":
            matches = len(mir_eval.transcription_velocity.match_notes(
                ref_intervals, midi_hz(ref_pitches), np.asarray(ref_velocities, dtype=float),
                est_intervals, midi_hz(est_pitches), np.asarray(est_velocities, dtype=float),
                onset_tolerance=onset_tolerance, offset_ratio=ratio))
        else:
            matches = len(mir_eval.transcription.match_notes(
                ref_intervals, midi_hz(ref_pitches), est_intervals, midi_hz(est_pitches),
                onset_tolerance=onset_tolerance, offset_ratio=ratio))
        out.update(precision_recall_f(name, matches, n_ref, n_est))
        out[f"{name}_matches"] = matches
    return out


def precision_recall_f(name: str, matches: float, n_ref: float, n_est: float) -> dict:
    """``<name>_p``, ``<name>_r`` and ``<name>_f`` from counts (0 where undefined)."""
    p = matches / n_est if n_est else 0.0
    r = matches / n_ref if n_ref else 0.0
    return {f"{name}_p": p, f"{name}_r": r, f"{name}_f": _f(p, r)}


def _sampled(intervals, pitches, times) -> list[np.ndarray]:
    active = [[] for _ in times]
    for (start, end), pitch in zip(intervals, pitches):
        for i in np.nonzero((times >= start) & (times < end))[0]:
            active[i].append(pitch)
    return [midi_hz(a) for a in active]


def frame_metrics(ref_intervals, ref_pitches, est_intervals, est_pitches,
                  hop: float = FRAME_METRIC_HOP) -> dict:
    """Frame P/R/F and accuracy (mir_eval.multipitch on a ``hop`` grid), with the counts
    ``frame_tp``, ``frame_n_ref``, ``frame_n_est`` (active pitch-frames) for pooling."""
    import mir_eval  # on first use: it brings scipy.stats, which transcription never needs
    ref_intervals = np.asarray(ref_intervals, dtype=float).reshape(-1, 2)
    est_intervals = np.asarray(est_intervals, dtype=float).reshape(-1, 2)
    end = max([ref_intervals.max(initial=0.0), est_intervals.max(initial=0.0)])
    times = np.arange(0.0, end + hop, hop)
    ref, est = _sampled(ref_intervals, ref_pitches, times), _sampled(est_intervals, est_pitches, times)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on empty frames, which are normal
        scores = mir_eval.multipitch.evaluate(times, ref, times, est)
    p, r = scores["Precision"], scores["Recall"]
    n_ref, n_est = sum(len(a) for a in ref), sum(len(a) for a in est)
    return {"frame_p": p, "frame_r": r, "frame_f": _f(p, r), "frame_accuracy": scores["Accuracy"],
            "frame_tp": int(round(p * n_est)), "frame_n_ref": n_ref, "frame_n_est": n_est}


def transcription_metrics(ref_notes, est_notes, onset_tolerance: float = ONSET_TOLERANCE,
                          offset_ratio: float = OFFSET_RATIO) -> dict:
    """All metrics of one track, keyed by ``METRIC_NAMES``, from two note lists
    (intervals, pitches, velocities)."""
    (ref_intervals, ref_pitches, ref_velocities), (est_intervals, est_pitches, est_velocities) = ref_notes, est_notes
    return {**note_metrics(ref_intervals, ref_pitches, est_intervals, est_pitches, onset_tolerance, offset_ratio,
                           ref_velocities=ref_velocities, est_velocities=est_velocities),
            **frame_metrics(ref_intervals, ref_pitches, est_intervals, est_pitches)}


def instrument_metrics(ref_by_class: dict, est_by_class: dict, onset_tolerance: float = ONSET_TOLERANCE,
                       offset_ratio: float = OFFSET_RATIO) -> dict:
    """Instrument-aware note P/R/F with and without offsets, and the onset F of each
    reference class, from class -> (intervals, pitches, velocities) of both."""
    empty = (np.zeros((0, 2)), np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    per_class = {name: note_metrics(*ref_by_class.get(name, empty)[:2], *est_by_class.get(name, empty)[:2],
                                    onset_tolerance, offset_ratio)
                 for name in sorted(set(ref_by_class) | set(est_by_class))}
    n_ref = sum(m["n_ref_notes"] for m in per_class.values())
    n_est = sum(m["n_est_notes"] for m in per_class.values())
    out = {}
    for name in ("note_onset", "note_offset"):
        matches = sum(m[f"{name}_matches"] for m in per_class.values())
        out.update({f"instrument_{k}": v for k, v in precision_recall_f(name, matches, n_ref, n_est).items()})
        out[f"instrument_{name}_matches"] = matches
    out.update({f"class_{name}_note_onset_f": m["note_onset_f"] for name, m in per_class.items()
                if name in ref_by_class})
    return out


def pooled_metrics(counts) -> dict:
    """The metrics of ``METRIC_NAMES`` over all notes and frames of several tracks
    pooled, from a mapping (or DataFrame) of per-track ``COUNT_NAMES`` columns: every
    note weighs the same, where the per-track mean weighs every track the same. A count
    the tables lack (older ones have no velocity matches) makes its metric NaN."""
    total = {name: float(np.sum(counts[name])) if name in counts else np.nan for name in COUNT_NAMES}
    out = {}
    for name in ("note_onset", "note_offset", "note_offset_velocity"):
        out.update(precision_recall_f(name, total[f"{name}_matches"], total["n_ref_notes"], total["n_est_notes"]))
    out.update(precision_recall_f("frame", total["frame_tp"], total["frame_n_ref"], total["frame_n_est"]))
    union = total["frame_n_ref"] + total["frame_n_est"] - total["frame_tp"]
    out["frame_accuracy"] = total["frame_tp"] / union if union else 0.0
    return out


def score_agreement(reference, estimate, shifts=(0,)) -> dict:
    """How many notes of a reference score an estimated score holds at the same pitch and
    beat position, each estimated note counted once, with the estimate moved by the one
    of ``shifts`` (beats) that matches most. ``reference`` and ``estimate`` are iterables
    of (pitch, position) with exact positions (fractions of a beat)."""
    reference, estimate = Counter(reference), list(estimate)
    matched, shift = max((sum((reference & Counter((p, t + s) for p, t in estimate)).values()), -abs(s), s)
                         for s in shifts)[::2]
    n_reference, n_estimate = sum(reference.values()), len(estimate)
    return {"n_reference": n_reference, "n_estimate": n_estimate, "matched": matched, "shift": shift,
            "recall": matched / n_reference if n_reference else 0.0,
            "precision": matched / n_estimate if n_estimate else 0.0}
