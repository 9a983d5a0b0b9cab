"""Pitch activations (88 x frames) -> notes: the same decoder for every model (its
parameters are chosen on the validation split by ``tuning.py``).

Conventions. ``H`` holds one row per piano key (row k is MIDI 21 + k), one column per
frame at ``frame_rate``; it is divided by its largest value, so ``threshold`` is
relative to the track's peak activation. Per key:

* **Onsets** (``onset``):
  ``"threshold"`` — where the activation rises through ``threshold``;
  ``"peaks"`` — at local peaks of the activation that reach ``threshold`` and rise
  above the lowest activation since the previous onset by ``1 / onset_dip`` (so a
  re-struck key starts a new note even when its activation never falls below the
  threshold);
  ``"adaptive"`` — the same peak picking on the activation minus its average over the
  preceding ``adaptive_seconds`` (an adaptive threshold: a note must rise by
  ``threshold`` above its key's recent level, so slow swells and sustained bleed from
  other notes do not start notes);
  ``"attack"`` — the same peak picking on a model's separate onset activations
  (``attack``, e.g. a low-rank model's attack templates), each relative to its own
  peak: the attack of a re-struck key is a new peak there even where the note's
  activation never falls.
  ``"states"`` — each key's on/off path by Viterbi under a two-state note model
  (``note_states.py``): evidence ``state_slope * ln(h / threshold)`` per frame,
  transition probabilities ``state_p_on`` and ``state_p_off`` fitted on the validation
  split's reference notes; a note is a run of "on" (ending there, or earlier by the
  offset rules below), split where an ``"adaptive"`` peak onset re-strikes the key
  inside it. At p_on = p_off = 0.5 and ``onset_dip`` 0 (no re-strike) it is the
  ``"threshold"`` rule.
  Peak onsets are placed at the first frame of the rise that reaches half the peak:
  the middle of a rise smeared by the analysis window.
* **Offsets**: with ``offset_fraction`` f, a note ends at the first frame after its
  peak where the activation falls below f times that peak (a loud and a soft note
  decay alike, relative to their own peak); with ``offset_fraction=None`` it ends where
  the activation falls below ``threshold`` (the plain thresholding decoder). With
  ``release_slope`` (dB/s), a note ends earlier where its activation, after its peak,
  falls faster than that over ``OFFSET_HOLD_SECONDS``: the key's release, which a
  piano's dampers make far steeper than its decay while the key or the pedal is down
  (about 10 dB in 0.1 s against a few dB per second); it never shortens a note below
  ``min_note_seconds``, so it moves offsets and keeps the notes. A note also ends where
  the next onset of its key begins.
* Sustain pedal: where a model's outputs carry a ``pedal`` row (1 x frames, 1 while the
  pedal is down; Transkun's), ``pedal_spans`` reads it; the low-rank models and the
  networks trained here predict no pedal, and their transcriptions have none.
* Notes shorter than ``min_note_seconds`` are dropped. Velocity: by the curve
  ``velocity_curve`` fitted on the validation split (``velocity.py``: a line in the
  note's peak in dB, plus a shrunk offset per key), else 127 times the note's peak over
  the track's peak.

Why offsets at a fraction of the note's peak: piano activations decay during the note
and fall steeply at the key release. A fixed threshold relative to the *track's* peak
cuts a soft note during its decay (too early) and a loud one during its release tail
(too late); a fraction of the note's own peak lands on the steep fall for both. Why the
release slope besides: a low fraction keeps a pedalled note through its long decay, and
the slope then finds its release wherever the level it was released at.
"""

from __future__ import annotations

import numpy as np

from ..constants import MIDI_MIN
from .note_states import viterbi_on
from .velocity import note_velocities

ONSET_METHODS = ("threshold", "peaks", "adaptive", "attack", "states")

#: A peak starts a new note only if the activation dipped to this share of the peak
#: since the previous onset (hysteresis against ripples on a decaying activation); the
#: decoder's default ``onset_dip``, which a grid (``onset_dips``) may search.
ONSET_DIP = 0.7

#: An activation must stay under the offset level this long (s) to end a note, so that
#: brief dips (beating partials, interference between templates) do not cut it.
OFFSET_HOLD_SECONDS = 0.1

#: Default decoding parameters; ``tune_decoding`` searches a grid around them.
DEFAULTS = {"threshold": 0.1, "onset": "threshold", "offset_fraction": None, "min_note_seconds": 0.05,
            "adaptive_seconds": 0.25, "onset_dip": ONSET_DIP, "release_slope": None, "state_slope": 1.0}
#: Parameters of some onset rules only: searched with those rules alone.
RULE_PARAMS = (("adaptive_seconds", ("adaptive", "states")), ("state_slope", ("states",)),
               ("onset_dip", ("peaks", "adaptive", "attack", "states")))
#: Parameters fitted, not searched: the note-state model's transitions (neutral: 0.5).
FITTED = {"state_p_on": 0.5, "state_p_off": 0.5}
#: The decoding parameters that place offsets, chosen in the second stage of tuning.
OFFSET_PARAMS = ("offset_fraction", "release_slope")


def _trailing_average(x: np.ndarray, width: int) -> np.ndarray:
    """Mean of the ``width`` frames before each frame (zeros before the start), along
    the last axis: the local level that an onset must rise above."""
    cumulative = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    n = x.shape[-1]
    upper = np.arange(n)                 # frames strictly before t: [t - width, t)
    lower = np.maximum(upper - width, 0)
    return (cumulative[..., upper] - cumulative[..., lower]) / width


def _threshold_onsets(h: np.ndarray, threshold: float) -> np.ndarray:
    above = h >= threshold
    return np.nonzero(above & ~np.concatenate([[False], above[:-1]]))[0]


def _peak_onsets(h: np.ndarray, novelty: np.ndarray, threshold: float, dip: float = ONSET_DIP) -> np.ndarray:
    """Onset frames at peaks of ``novelty`` that reach ``threshold``, with hysteresis on
    ``h`` (a new note only after a dip to ``dip`` times the peak), each moved back to the
    first frame of its rise at half the peak."""
    previous = np.concatenate([[-np.inf], novelty[:-1]])
    following = np.concatenate([novelty[1:], [-np.inf]])
    peaks = np.nonzero((novelty > previous) & (novelty >= following) & (novelty >= threshold))[0]
    onsets, last_peak = [], None
    for p in peaks:
        if last_peak is not None and h[last_peak:p + 1].min() >= dip * h[p]:
            continue  # a ripple on the same note
        start = p
        while start > 0 and h[start - 1] < h[start] and h[start - 1] >= 0.5 * h[p]:
            start -= 1
        if onsets and start <= onsets[-1]:
            continue
        onsets.append(start)
        last_peak = p
    return np.array(onsets, dtype=int)


def _state_notes(on: np.ndarray, restrikes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(onsets, ends) of one key's notes from its on/off path: a note per run of "on",
    split where a re-strike (an ``"adaptive"`` peak onset) falls inside the run."""
    edges = np.diff(np.concatenate([[0], on.astype(int), [0]]))
    onsets, ends = [], []
    for start, end in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]):
        starts = [start, *restrikes[(restrikes > start + 1) & (restrikes < end)]]
        onsets += starts
        ends += starts[1:] + [end]
    return np.array(onsets, dtype=int), np.array(ends, dtype=int)


def _first_lasting_run(below: np.ndarray, hold: int) -> int:
    """Index of the first run of True in ``below`` that lasts ``hold`` frames or reaches
    the end; len(below) if none."""
    if hold > 1:
        lasting = np.convolve(below.astype(int), np.ones(hold, dtype=int), mode="full")[hold - 1:] == hold
        # a run cut short by the end of the segment still counts
        tail = np.flip(np.cumprod(np.flip(below))).astype(bool)
        below = lasting | tail
    hits = np.nonzero(below)[0]
    return int(hits[0]) if len(hits) else len(below)


def _release(h: np.ndarray, drop_db: float, frames: int) -> int:
    """The end (exclusive) of a note whose activation after its peak is ``h``: one frame
    into the first span of ``frames`` frames over which ``h`` falls by more than
    ``drop_db`` (where the release begins: the analysis window smears it later); len(h)
    if none."""
    if len(h) <= frames:
        return len(h)
    level = 20 * np.log10(np.maximum(h, 1e-6))
    hits = np.nonzero(level[:-frames] - level[frames:] > drop_db)[0]
    return int(hits[0]) + 1 if len(hits) else len(h)


def _key_notes(h, onsets, threshold, offset_fraction, min_frames, hold_frames=1, release_db=None, ends=None):
    """(start, end, peak) frames of one key's notes, given its onset frames;
    ``release_db``: the fall over ``hold_frames`` that ends a note (None: none);
    ``ends``: where each note must end at the latest (a note-state path's end of "on";
    default: the next onset), and ends without an offset fraction."""
    notes = []
    bounds = list(onsets[1:]) + [len(h)] if ends is None else list(ends)
    for start, limit in zip(onsets, bounds):
        segment = h[start:limit]
        if offset_fraction is None:
            below = np.nonzero(segment < threshold)[0] if ends is None else []
            end = start + (below[0] if len(below) else len(segment))
            peak = float(h[start:end].max()) if end > start else 0.0
        else:
            top = int(np.argmax(segment))
            peak = float(segment[top])
            end = start + top + _first_lasting_run(segment[top:] < offset_fraction * peak, hold_frames)
        if release_db is not None and end - start >= min_frames:
            # a release shortens a note, but never below the shortest note kept: it
            # places offsets and must not drop the notes that the onsets found
            top = int(np.argmax(h[start:end]))
            released = start + top + _release(h[start + top:end], release_db, hold_frames)
            end = max(start + min_frames, min(end, released))
        if end - start >= min_frames and peak > 0:
            notes.append((start, end, peak))
    return notes


def activations_to_notes(H: np.ndarray, frame_rate: float, threshold: float,
                         min_note_seconds: float = 0.05, onset: str = "threshold",
                         offset_fraction: float | None = None, adaptive_seconds: float = 0.25,
                         peak: float | None = None, attack: np.ndarray | None = None,
                         release_slope: float | None = None, velocity_curve: dict | None = None, **states):
    """Return (intervals, pitches, velocities) decoded from activations ``H`` (88 x
    frames, nonnegative); see the module docstring for the rules. ``peak``: the track's
    largest activation when ``H`` is a piece of it (default: H's own). ``attack``: onset
    activations (as H), which onset method ``"attack"`` needs. ``velocity_curve``: the
    calibration of ``velocity.py`` (default: 127 times the note's relative peak).
    ``states``: the ``"states"`` rule's ``state_slope``, ``state_p_on``, ``state_p_off``."""
    intervals, pitches, peaks = note_peaks(H, frame_rate, threshold, min_note_seconds, onset, offset_fraction,
                                           adaptive_seconds, peak, attack, release_slope, **states)
    return intervals, pitches, note_velocities(peaks, pitches, velocity_curve)


def _check_decoding(H, frame_rate, threshold, onset, offset_fraction, release_slope) -> None:
    if H.ndim != 2:
        raise ValueError(f"activations must be 2-D (keys x frames), got shape {H.shape}")
    if onset not in ONSET_METHODS:
        raise ValueError(f"onset must be one of {ONSET_METHODS}, got {onset!r}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if offset_fraction is not None and not 0 < offset_fraction < 1:
        raise ValueError(f"offset_fraction must be in (0, 1) or None, got {offset_fraction}")
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    if release_slope is not None and not release_slope > 0:
        raise ValueError(f"release_slope must be positive (dB/s) or None, got {release_slope}")


def note_peaks(H: np.ndarray, frame_rate: float, threshold: float, min_note_seconds: float = 0.05,
               onset: str = "threshold", offset_fraction: float | None = None, adaptive_seconds: float = 0.25,
               peak: float | None = None, attack: np.ndarray | None = None, release_slope: float | None = None,
               state_slope: float = 1.0, state_p_on: float = 0.5, state_p_off: float = 0.5,
               onset_dip: float = ONSET_DIP):
    """(intervals, pitches, peaks) of ``activations_to_notes``' notes, each note's peak
    relative to the track's largest activation."""
    H = np.asarray(H, dtype=np.float64)
    _check_decoding(H, frame_rate, threshold, onset, offset_fraction, release_slope)
    empty = np.zeros((0, 2)), np.zeros(0, dtype=int), np.zeros(0)
    peak = (float(H.max()) if H.size else 0.0) if peak is None else float(peak)
    if not np.isfinite(peak) or peak <= 0:
        return empty
    H = np.clip(H / peak, 0.0, None)
    min_frames = max(1, int(round(min_note_seconds * frame_rate)))
    hold_frames = max(1, int(round(OFFSET_HOLD_SECONDS * frame_rate)))
    release_db = None if release_slope is None else release_slope * hold_frames / frame_rate
    if onset in ("adaptive", "states"):
        novelty = H - _trailing_average(H, max(1, int(round(adaptive_seconds * frame_rate))))
    elif onset == "attack":
        if attack is None or np.shape(attack) != H.shape:
            raise ValueError(f"onset 'attack' needs onset activations of H's shape {H.shape}")
        novelty = np.clip(np.asarray(attack, dtype=np.float64), 0.0, None)
        novelty = novelty / novelty.max() if novelty.max() > 0 else novelty
    rows = []
    if onset == "states":
        on = viterbi_on(H, threshold, state_slope, state_p_on, state_p_off)
        keys = np.nonzero(on.any(axis=1))[0]
    else:
        # onsets are where what is searched reaches the threshold: other keys have no note
        searched = H if onset in ("threshold", "peaks") else novelty
        keys = np.nonzero(searched.max(axis=1) >= threshold)[0]
    for key in keys:
        h, ends = H[key], None
        if onset == "states":
            onsets, ends = _state_notes(on[key], _peak_onsets(h, novelty[key], threshold, onset_dip))
        elif onset == "threshold":
            onsets = _threshold_onsets(h, threshold)
        elif onset == "peaks":
            onsets = _peak_onsets(h, h, threshold, onset_dip)
        elif onset == "adaptive":
            onsets = _peak_onsets(h, novelty[key], threshold, onset_dip)
        else:  # attack: peaks of the onset activations, with hysteresis on them too
            onsets = _peak_onsets(novelty[key], novelty[key], threshold, onset_dip)
        for start, end, note_peak in _key_notes(h, onsets, threshold, offset_fraction, min_frames, hold_frames,
                                                release_db, ends):
            rows.append((start / frame_rate, end / frame_rate, MIDI_MIN + key, note_peak))
    if not rows:
        return empty
    rows.sort(key=lambda r: (r[0], r[2]))
    table = np.array(rows, dtype=float)
    return table[:, :2], table[:, 2].astype(int), table[:, 3]


def pedal_spans(outputs: dict, frame_rate: float) -> np.ndarray:
    """(n, 2) spans (s) during which the sustain pedal is down by a model's ``pedal``
    output (above 0.5); none where the model predicts no pedal."""
    if "pedal" not in outputs:
        return np.zeros((0, 2))
    down = np.concatenate([[False], np.asarray(outputs["pedal"]).reshape(-1) > 0.5, [False]])
    edges = np.nonzero(np.diff(down.astype(int)))[0]
    return edges.reshape(-1, 2) / frame_rate


def score_aligned_notes(H: np.ndarray, frame_rate: float, score_intervals, score_pitches, tolerance: float,
                        threshold: float, min_note_seconds: float = 0.05, offset_fraction: float | None = None,
                        peak: float | None = None, first_frame: int = 0, onsets: np.ndarray | None = None,
                        velocity_curve: dict | None = None):
    """The notes of a score, aligned to activations ``H`` (88 x frames from frame
    ``first_frame`` of the recording; ``peak``: the recording's largest activation).

    Each score note whose key's activation reaches ``threshold`` (relative to the peak)
    within ``tolerance`` seconds of its onset is placed where that activation rises: at
    the first frame of the rise to its largest value there that reaches half of it, as
    the ``peaks`` onsets of ``activations_to_notes``; it ends by the same offset rule. A
    score note without such an activation was not played and is left out. With
    ``onsets`` (an onset posteriorgram, 88 x frames, in [0, 1]), a note starts at the
    onset posteriorgram's largest value near the score's onset instead. Velocities come
    from the peaks as the decoder's (``velocity.note_velocities``: by ``velocity_curve``,
    else 127 times the peak). Returns (intervals, pitches, velocities) relative to frame
    ``first_frame``."""
    H = np.asarray(H, dtype=np.float64)
    peak = (float(H.max()) if H.size else 0.0) if peak is None else float(peak)
    empty = np.zeros((0, 2)), np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    if not np.isfinite(peak) or peak <= 0:
        return empty
    H = np.clip(H / peak, 0.0, None)
    onsets_in, starts = onsets, {}
    for (start, _), pitch in zip(np.asarray(score_intervals).reshape(-1, 2), score_pitches):
        key = int(pitch) - MIDI_MIN
        a = max(0, int(np.floor((start - tolerance) * frame_rate)) - first_frame)
        b = min(H.shape[1], int(np.ceil((start + tolerance) * frame_rate)) + 1 - first_frame)
        if not 0 <= key < H.shape[0] or b <= a or H[key, a:b].max() < threshold:
            continue
        if onsets_in is not None:
            onset = a + int(np.argmax(onsets_in[key, a:b]))
        else:
            h, top = H[key], a + int(np.argmax(H[key, a:b]))
            onset = top
            while onset > a and h[onset - 1] < h[onset] and h[onset - 1] >= 0.5 * h[top]:
                onset -= 1
        starts.setdefault(key, set()).add(onset)
    min_frames = max(1, int(round(min_note_seconds * frame_rate)))
    hold = max(1, int(round(OFFSET_HOLD_SECONDS * frame_rate)))
    rows = [(s / frame_rate, e / frame_rate, MIDI_MIN + key, p)
            for key, frames in starts.items()
            for s, e, p in _key_notes(H[key], sorted(frames), threshold, offset_fraction, min_frames, hold)]
    if not rows:
        return empty
    table = np.array(sorted(rows, key=lambda r: (r[0], r[2])), dtype=float)
    pitches = table[:, 2].astype(int)
    return table[:, :2], pitches, note_velocities(table[:, 3], pitches, velocity_curve)
