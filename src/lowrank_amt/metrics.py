"""Transcription metrics, pure functions over note arrays, computed with mir_eval.

Conventions (as in the field's tools): pitches are MIDI numbers here and converted to
Hz for mir_eval; "note onset" P/R/F uses a 50 ms onset tolerance and ignores offsets;
"note offset" P/R/F also requires the offset within 20 % of the reference duration
(or 50 ms); frame P/R/F and accuracy sample both note lists on a 10 ms grid
(mir_eval.multipitch).
"""

from __future__ import annotations

import warnings

import mir_eval
import numpy as np

from .constants import FRAME_METRIC_HOP, OFFSET_RATIO, ONSET_TOLERANCE

METRIC_NAMES = ("note_onset_p", "note_onset_r", "note_onset_f",
                "note_offset_p", "note_offset_r", "note_offset_f",
                "frame_p", "frame_r", "frame_f", "frame_accuracy")


def _hz(pitches) -> np.ndarray:
    return mir_eval.util.midi_to_hz(np.asarray(pitches, dtype=float))


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def note_metrics(ref_intervals, ref_pitches, est_intervals, est_pitches,
                 onset_tolerance: float = ONSET_TOLERANCE, offset_ratio: float = OFFSET_RATIO) -> dict:
    ref_intervals = np.asarray(ref_intervals, dtype=float).reshape(-1, 2)
    est_intervals = np.asarray(est_intervals, dtype=float).reshape(-1, 2)
    out = {}
    for name, ratio in (("note_onset", None), ("note_offset", offset_ratio)):
        if len(ref_intervals) == 0 or len(est_intervals) == 0:
            p = r = f = 0.0
        else:
            p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
                ref_intervals, _hz(ref_pitches), est_intervals, _hz(est_pitches),
                onset_tolerance=onset_tolerance, offset_ratio=ratio)
        out.update({f"{name}_p": p, f"{name}_r": r, f"{name}_f": f})
    return out


def _sampled(intervals, pitches, times) -> list[np.ndarray]:
    active = [[] for _ in times]
    for (start, end), pitch in zip(intervals, pitches):
        for i in np.nonzero((times >= start) & (times < end))[0]:
            active[i].append(pitch)
    return [_hz(a) for a in active]


def frame_metrics(ref_intervals, ref_pitches, est_intervals, est_pitches,
                  hop: float = FRAME_METRIC_HOP) -> dict:
    ref_intervals = np.asarray(ref_intervals, dtype=float).reshape(-1, 2)
    est_intervals = np.asarray(est_intervals, dtype=float).reshape(-1, 2)
    end = max([ref_intervals.max(initial=0.0), est_intervals.max(initial=0.0)])
    times = np.arange(0.0, end + hop, hop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on empty frames, which are normal
        scores = mir_eval.multipitch.evaluate(
            times, _sampled(ref_intervals, ref_pitches, times),
            times, _sampled(est_intervals, est_pitches, times))
    p, r = scores["Precision"], scores["Recall"]
    return {"frame_p": p, "frame_r": r, "frame_f": _f(p, r), "frame_accuracy": scores["Accuracy"]}


def transcription_metrics(ref_intervals, ref_pitches, est_intervals, est_pitches,
                          onset_tolerance: float = ONSET_TOLERANCE,
                          offset_ratio: float = OFFSET_RATIO) -> dict:
    """All metrics of one track, keyed by ``METRIC_NAMES``."""
    return {**note_metrics(ref_intervals, ref_pitches, est_intervals, est_pitches,
                           onset_tolerance, offset_ratio),
            **frame_metrics(ref_intervals, ref_pitches, est_intervals, est_pitches)}
