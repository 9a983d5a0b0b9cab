"""The decoder's parameters chosen on the validation split: a grid search in two stages
(onsets, then offsets) by mean note F (``tune_decoding``), the note-state model's
transitions fitted on the reference notes, and ``GridDecoder``, the object the decode
stage drives for every family that uses the shared decoder (``decode.py``).

Conventions: ``tracks`` are lists of (outputs, ref_intervals, ref_pitches), outputs a
88 x frames activation or a model's outputs {"note": ..., "onset": ...}; scores are
mir_eval note F (``evaluation/metrics.py``) with the study's tolerances; ties go to the
earlier candidate in grid order, so a choice depends on the tracks and the grid only.
The config's ``decoding`` section is declared here (``PARAMS``), as a family's keys are.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..constants import OFFSET_RATIO, ONSET_TOLERANCE
from ..evaluation.metrics import note_metrics
from ..param import Param
from .decode import DEFAULTS, FITTED, OFFSET_PARAMS, ONSET_METHODS, RULE_PARAMS, activations_to_notes, note_peaks
from .note_states import fit_transitions, notes_roll
from .velocity import fit_curve, matched_velocities


def mean_note_f(tracks, frame_rate: float, params: dict, metric: str = "note_onset_f",
                onset_tolerance: float = ONSET_TOLERANCE, offset_ratio: float = OFFSET_RATIO) -> float:
    """Mean ``metric`` over ``tracks`` (list of (H, ref_intervals, ref_pitches); H may be
    a model's outputs {"note": ..., "onset": ...}) decoded with ``params`` (keyword
    arguments of ``activations_to_notes``)."""
    scores = []
    for H, ref_intervals, ref_pitches in tracks:
        H, attack = (H["note"], H.get("onset")) if isinstance(H, dict) else (H, None)
        est = activations_to_notes(H, frame_rate, **params, attack=attack)
        scores.append(note_metrics(ref_intervals, ref_pitches, est[0], est[1],
                                   onset_tolerance=onset_tolerance, offset_ratio=offset_ratio)[metric])
    return float(np.mean(scores)) if scores else 0.0


def tune_decoding(tracks, grid: dict, frame_rate: float, onset_tolerance: float = ONSET_TOLERANCE,
                  offset_ratio: float = OFFSET_RATIO):
    """Choose decoding parameters on ``tracks`` (the validation split), in two stages.

    ``grid`` maps parameter names of ``activations_to_notes`` to lists of candidates
    (``threshold``, ``onset``, ``offset_fraction``, ``min_note_seconds``,
    ``adaptive_seconds``, ``release_slope``); a missing name keeps its default. Stage 1
    picks the combination of every parameter but the offsets' (``OFFSET_PARAMS``) with
    the best mean note-onset F (offsets by their first candidates); stage 2 picks the
    offsets' combination with the best mean note-with-offset F. Ties go to the earlier
    candidate in grid order, so the result depends on ``tracks`` and ``grid`` only.

    Returns (params, trials): the chosen keyword arguments and one dict per evaluated
    combination with its parameters, ``stage`` and validation ``score``.
    """
    unknown = set(grid) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown decoding parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    candidates = {name: list(grid.get(name, [DEFAULTS[name]])) for name in DEFAULTS}
    if not all(isinstance(H, dict) and H.get("onset") is not None for H, *_ in tracks):
        candidates["onset"] = [o for o in candidates["onset"] if o != "attack"]  # no onset activations
    if any(len(values) == 0 for values in candidates.values()):
        raise ValueError("every decoding grid entry needs at least one candidate (onset 'attack' "
                         "needs a model with onset activations)")
    trials = []
    onset_names = [n for n in DEFAULTS if n not in OFFSET_PARAMS]
    fitted = fitted_params(tracks, frame_rate) if "states" in candidates["onset"] else {}
    best, best_score = None, -np.inf
    for values in itertools.product(*(candidates[n] for n in onset_names)):
        params = {**dict(zip(onset_names, values)), **{n: candidates[n][0] for n in OFFSET_PARAMS}, **fitted}
        # a parameter of one onset rule is searched with that rule only
        if all(params["onset"] in rules or params[name] == candidates[name][0] for name, rules in RULE_PARAMS):
            score = mean_note_f(tracks, frame_rate, params, "note_onset_f", onset_tolerance, offset_ratio)
            trials.append({**params, "stage": "onset", "metric": "note_onset_f", "score": score})
            if score > best_score:
                best, best_score = params, score
    best_score = -np.inf
    chosen = best
    for values in itertools.product(*(candidates[n] for n in OFFSET_PARAMS)):
        params = {**chosen, **dict(zip(OFFSET_PARAMS, values))}
        score = mean_note_f(tracks, frame_rate, params, "note_offset_f", onset_tolerance, offset_ratio)
        trials.append({**params, "stage": "offset", "metric": "note_offset_f", "score": score})
        if score > best_score:
            best, best_score = params, score
    return best, trials


def fitted_params(tracks, frame_rate: float) -> dict:
    """The note-state model's transitions (``FITTED``) fitted on the reference notes of
    ``tracks`` (outputs, ref_intervals, ref_pitches)."""
    rolls = [notes_roll(intervals, pitches, np.shape(H["note"] if isinstance(H, dict) else H)[1], frame_rate)
             for H, intervals, pitches in tracks]
    return dict(zip(FITTED, fit_transitions(rolls)))


def tune_threshold(tracks, thresholds, frame_rate: float, min_note_seconds: float,
                   onset_tolerance: float = ONSET_TOLERANCE):
    """The threshold with the best mean note-onset F over ``tracks`` (plain thresholding
    decoder). Returns (best threshold, list of (threshold, mean F)); ties go to the lower
    threshold."""
    scores = [(t, mean_note_f(tracks, frame_rate, {"threshold": t, "min_note_seconds": min_note_seconds},
                              "note_onset_f", onset_tolerance))
              for t in sorted(thresholds)]
    return max(scores, key=lambda s: s[1])[0], scores


#: The config's ``decoding`` section: each key a grid of one ``activations_to_notes``
#: parameter (``GRID_KEYS``); a number where a list is allowed is a grid of one.
DESCRIPTION = ("The decoder shared by every model. Each list is a grid; every combination is tried on the validation "
               "split and the best (by mean note-onset F, then the offset fraction by note F with offsets) is applied "
               "unchanged to the test split.")
PARAMS = (
    Param("thresholds", [0.02, 0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4], type="array",
          items={"type": "number", "exclusiveMinimum": 0, "maximum": 1}, minItems=1,
          meaning="Activation thresholds relative to the track's largest activation; how high a note's activation "
                  "(for `adaptive`, its rise) must be."),
    Param("onsets", ["threshold", "peaks", "adaptive"], type="array", items={"type": "string", "enum": list(ONSET_METHODS)},
          minItems=1,
          meaning="Onset rules tried: `threshold` (the activation crosses the threshold), `peaks` (local peaks of the "
                  "activation), `adaptive` (peaks of the activation minus its recent average), `attack` (peaks of a "
                  "model's onset activations, e.g. attack templates; tried only for models that output them), "
                  "`states` (each key's on/off path by Viterbi under a two-state note model whose transitions are "
                  "fitted on the validation notes, note_states.py)."),
    Param("offset_fractions", [0.02, 0.05, 0.1, 0.2, 0.3], type=["array", "null"],
          items={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, minItems=1,
          meaning="A note ends when its activation stays below this fraction of its own peak for 0.1 s (or at the "
                  "key's next onset); null ends it where it falls below the threshold."),
    Param("release_slopes", [None, 60, 100, 150], type=["number", "array", "null"],
          items={"type": ["number", "null"], "exclusiveMinimum": 0}, exclusiveMinimum=0,
          meaning="A note also ends where its activation, after its peak, falls faster than this (dB/s) over 0.1 s: "
                  "the key's release, far steeper than a piano's decay; null: no such rule; a list is a grid, chosen "
                  "with `offset_fractions` on the note-with-offset F."),
    Param("min_note_seconds", DEFAULTS["min_note_seconds"], type=["number", "array"],
          items={"type": "number", "minimum": 0}, minimum=0,
          meaning="Notes shorter than this (s) are dropped; a list is a grid."),
    Param("adaptive_seconds", DEFAULTS["adaptive_seconds"], type=["number", "array"],
          items={"type": "number", "exclusiveMinimum": 0}, exclusiveMinimum=0,
          meaning="Length (s) of the trailing average of `adaptive` onsets; a list is a grid."),
    Param("onset_dips", DEFAULTS["onset_dip"], type=["number", "array"],
          items={"type": "number", "minimum": 0, "exclusiveMaximum": 1}, minimum=0, exclusiveMaximum=1,
          meaning="`peaks`, `adaptive`, `attack` and `states` onsets: a key sounding since its last onset starts a new "
                  "note only after its activation fell to this share of the new peak (hysteresis against ripples of a "
                  "decaying note; 0: never within a note); a list is a grid."),
    Param("state_slopes", DEFAULTS["state_slope"], type=["number", "array"],
          items={"type": "number", "exclusiveMinimum": 0}, exclusiveMinimum=0,
          meaning="`states` onsets: nats of evidence for a sounding note per factor e of the activation above the "
                  "threshold (against the fitted transitions' cost of starting and ending notes); a list is a grid."),
)
#: ``decoding`` config keys -> ``activations_to_notes`` parameters, in the grid's order
#: (which breaks ties between equal scores).
GRID_KEYS = {"thresholds": "threshold", "onsets": "onset", "offset_fractions": "offset_fraction",
             "release_slopes": "release_slope", "state_slopes": "state_slope", "onset_dips": "onset_dip",
             "min_note_seconds": "min_note_seconds", "adaptive_seconds": "adaptive_seconds"}


def decoding_grid(decoding: dict) -> dict:
    """The parameter grid of a ``decoding`` config section; a scalar is a one-value grid
    and a missing key keeps the decoder's default."""
    grid = {}
    for key, name in GRID_KEYS.items():
        value = decoding.get(key, DEFAULTS[name])
        grid[name] = list(value) if isinstance(value, (list, tuple)) else [value]
    return grid


class GridDecoder:
    """The shared decoder as the decode stage drives every family's: ``tune`` chooses
    its parameters from the ``decoding`` grid on validation tracks (``tune_decoding``),
    ``notes`` decodes one track's outputs with them. A family with its own note
    creation gives an object with the same methods."""

    def __init__(self, decoding: dict, evaluation: dict):
        self.grid = decoding_grid(decoding)
        self.onset_tolerance, self.offset_ratio = evaluation["onset_tolerance"], evaluation["offset_ratio"]

    def tune(self, tracks, frame_rate: float):
        """(params, trials, best validation note-onset F) over ``tracks``, a list of
        (outputs, reference notes): the grid's choice and the velocity curve fitted on
        the notes it decodes (``velocity_curve``, None where none can be fitted)."""
        tracks = [({"note": outputs["note"], "onset": outputs.get("onset")}, ref[0], ref[1], ref[2])
                  for outputs, ref in tracks]
        params, trials = tune_decoding([t[:3] for t in tracks], self.grid, frame_rate, self.onset_tolerance,
                                       self.offset_ratio)
        params["velocity_curve"] = self.fit_velocity_curve(tracks, frame_rate, params)
        return params, trials, max(t["score"] for t in trials if t["stage"] == "onset")

    def fit_velocity_curve(self, tracks, frame_rate: float, params: dict) -> dict | None:
        """``velocity.fit_curve`` on the notes that ``params`` decode from ``tracks``
        (outputs, ref_intervals, ref_pitches, ref_velocities) and match a reference."""
        peaks, pitches, velocities = [], [], []
        for outputs, *ref in tracks:
            intervals, est_pitches, est_peaks = note_peaks(outputs["note"], frame_rate, **params,
                                                           attack=outputs.get("onset"))
            matched, ref_velocities = matched_velocities(ref, intervals, est_pitches, self.onset_tolerance)
            peaks.append(est_peaks[matched])
            pitches.append(est_pitches[matched])
            velocities.append(ref_velocities)
        return fit_curve(np.concatenate(peaks), np.concatenate(pitches), np.concatenate(velocities))

    def notes(self, outputs: dict, frame_rate: float, params: dict, peak: float | None = None):
        """(intervals, pitches, velocities) of one track's outputs; ``peak``: the track's
        largest activation when ``outputs`` are a piece of it."""
        return activations_to_notes(outputs["note"], frame_rate, **params, peak=peak, attack=outputs.get("onset"))

    def default_params(self) -> dict:
        """The parameters of a model whose own were never chosen on a validation split."""
        return dict(DEFAULTS)

    def info(self, params: dict) -> dict:
        return {"threshold": params["threshold"]}
