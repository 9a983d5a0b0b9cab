"""Steering a transcription by the keys it may use: pure functions on key sets, a
model's dictionary and its outputs (88 x frames, row k = MIDI 21 + k).

* **Allowed keys** (a pitch range, a list of keys, minus the keys switched off): a
  model with a dictionary loses the templates of every other key before its activations
  are estimated, so the energy they would have taken is explained by the allowed ones;
  for every model, the outputs of other keys are set to zero, so those keys never
  appear in the notes.
* **A scale** (e.g. ``D major``): keys outside it are penalised, not forbidden: their
  outputs are multiplied by ``weight`` (0.5 by default) before decoding, so an
  out-of-scale note needs a clearer activation to be kept.
* **A score** (score-informed transcription, after Ewert & Mueller 2012): an approximate
  MIDI score of the recording; each key's outputs are kept within ``score_tolerance``
  seconds of the score's notes of that key and multiplied by ``score_weight`` (0.3 by
  default) elsewhere. The transcription is then the score aligned to the outputs
  (``decode.score_aligned_notes``: each score note placed where its key's activation
  rises near it, left out where none does, i.e. not played), plus the notes the
  decoder finds where the score has none (played but missing from the score), which
  the weight lets through only when clear. Weight 0 confines them to the windows. (Confining a dictionary's activations while they are
  estimated, as Ewert & Mueller do, was tried and measured worse on tones here: the CQT's
  long low-frequency filters smear a note's energy before its onset, and the confined
  activation then starts at the window's edge, up to the tolerance too early.)

Key names are MIDI numbers or note names (``C4`` = 60, ``F#3``, ``Bb5``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..constants import MIDI_MAX, MIDI_MIN, N_KEYS
from ..errors import LowrankAmtError
from ..evaluation.notes import read_midi_notes

PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
#: Semitones above the tonic of each mode's degrees.
MODES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
         "harmonic_minor": (0, 2, 3, 5, 7, 8, 11), "chromatic": tuple(range(12))}


def parse_key(name) -> int:
    """A MIDI number from ``60``, ``"60"``, ``"C4"``, ``"F#3"`` or ``"Bb5"``."""
    text = str(name).strip()
    if text.lstrip("-").isdigit():
        midi = int(text)
    else:
        letter, rest = text[:1].upper(), text[1:]
        accidental = {"#": 1, "b": -1}.get(rest[:1], 0)
        octave = rest[1:] if accidental else rest
        if letter not in PITCH_CLASSES or not octave.lstrip("-").isdigit():
            raise LowrankAmtError(f"key {name!r} is neither a MIDI number nor a note name like C4, F#3 or Bb5")
        midi = 12 * (int(octave) + 1) + PITCH_CLASSES[letter] + accidental
    if not MIDI_MIN <= midi <= MIDI_MAX:
        raise LowrankAmtError(f"key {name!r} (MIDI {midi}) is not a piano key ({MIDI_MIN}..{MIDI_MAX})")
    return midi


def read_score(path) -> tuple[np.ndarray, np.ndarray]:
    """(intervals, pitches) of a MIDI score; one with no notes is an error naming it."""
    intervals, pitches, _ = read_midi_notes(path)
    if len(pitches) == 0:
        raise LowrankAmtError(f"MIDI score {path} has no notes")
    return intervals, pitches


def scale_keys(scale: str) -> set[int]:
    """The MIDI piano keys of a scale named like ``"D major"`` or ``"F# minor"``."""
    parts = scale.replace("-", " ").split()
    if len(parts) != 2 or parts[0][:1].upper() not in PITCH_CLASSES or parts[1].lower() not in MODES:
        raise LowrankAmtError(f"scale {scale!r} is not '<tonic> <mode>' with a mode of {', '.join(MODES)}")
    tonic = (PITCH_CLASSES[parts[0][0].upper()] + {"#": 1, "b": -1}.get(parts[0][1:2], 0)) % 12
    classes = {(tonic + step) % 12 for step in MODES[parts[1].lower()]}
    return {m for m in range(MIDI_MIN, MIDI_MAX + 1) if m % 12 in classes}


def score_windows(intervals, pitches, n_frames: int, frame_rate: float, tolerance: float,
                  first_frame: int = 0) -> np.ndarray:
    """88 x ``n_frames`` 0/1: key k may sound at frame ``first_frame + t`` when a score
    note of key k spans it, widened by ``tolerance`` seconds on both sides."""
    windows = np.zeros((N_KEYS, n_frames), dtype=np.float32)
    for (start, end), pitch in zip(np.asarray(intervals).reshape(-1, 2), pitches):
        if MIDI_MIN <= pitch <= MIDI_MAX:
            a = int(np.floor((start - tolerance) * frame_rate)) - first_frame
            b = int(np.ceil((end + tolerance) * frame_rate)) + 1 - first_frame
            windows[int(pitch) - MIDI_MIN, max(a, 0):max(min(b, n_frames), 0)] = 1.0
    return windows


@dataclasses.dataclass
class Steering:
    """What a transcription may use: ``allowed`` MIDI keys (None: all), ``penalised``
    keys (outside the scale; None: none) and the weight of their outputs, and a score
    (``(intervals, pitches)``; None: none) with its tolerance and weight."""

    allowed: set[int] | None = None
    penalised: set[int] | None = None
    weight: float = 0.5
    score: tuple | None = None
    score_tolerance: float = 0.2
    score_weight: float = 0.3

    @classmethod
    def from_options(cls, pitch_range=None, keys=None, drop_keys=None, scale=None, weight: float = 0.5,
                     score=None, score_tolerance: float = 0.2, score_weight: float = 0.3):
        """From the command line's options; each is optional (``score``: a MIDI file)."""
        allowed = None
        if pitch_range is not None:
            low, high = (parse_key(k) for k in pitch_range)
            if low > high:
                raise LowrankAmtError(f"pitch range {pitch_range[0]}..{pitch_range[1]} is empty")
            allowed = set(range(low, high + 1))
        if keys:
            chosen = {parse_key(k) for k in keys}
            allowed = chosen if allowed is None else allowed & chosen
        if drop_keys:
            allowed = (allowed if allowed is not None else set(range(MIDI_MIN, MIDI_MAX + 1))) - \
                {parse_key(k) for k in drop_keys}
        if allowed is not None and not allowed:
            raise LowrankAmtError("the key options leave no key to transcribe")
        if not 0 <= weight <= 1:
            raise LowrankAmtError(f"scale weight must be in [0, 1], got {weight}")
        penalised = None if scale is None else set(range(MIDI_MIN, MIDI_MAX + 1)) - scale_keys(scale)
        notes = None if score is None else read_score(score)
        if score_tolerance < 0 or not 0 <= score_weight <= 1:
            raise LowrankAmtError("score tolerance must be >= 0 and score weight in [0, 1]")
        return cls(allowed, penalised, weight, notes, score_tolerance, score_weight)

    @property
    def active(self) -> bool:
        return self.allowed is not None or bool(self.penalised) or self.score is not None

    def windows(self, n_frames: int, frame_rate: float, first_frame: int = 0) -> np.ndarray | None:
        """The score's windows (``score_windows``) over frames ``first_frame`` onwards, or None."""
        if self.score is None:
            return None
        return score_windows(*self.score, n_frames, frame_rate, self.score_tolerance, first_frame)

    def gains(self) -> np.ndarray:
        """The factor of each key's outputs (88,): 0 for keys not allowed, ``weight`` for
        penalised ones, 1 otherwise."""
        gains = np.ones(N_KEYS)
        if self.penalised:
            gains[[m - MIDI_MIN for m in self.penalised]] = self.weight
        if self.allowed is not None:
            gains[[m - MIDI_MIN for m in range(MIDI_MIN, MIDI_MAX + 1) if m not in self.allowed]] = 0.0
        return gains

    def apply(self, outputs: dict, frame_rate: float | None = None, first_frame: int = 0) -> dict:
        """Outputs (88 x frames arrays, starting at frame ``first_frame``) with each key's
        rows scaled by ``gains`` and, with a score, by ``score_weight`` outside its
        windows; onsets of keys not allowed are zeroed too."""
        if not self.active:
            return outputs
        gains = self.gains()[:, None]
        # the pedal is no key's; outputs of several instruments repeat the 88 keys
        steered = {name: np.asarray(value) * np.tile(gains if name == "note" else (gains > 0),
                                                     (np.shape(value)[0] // len(gains), 1))
                   for name, value in outputs.items() if name != "pedal"}
        if self.score is not None:
            inside = self.windows(steered["note"].shape[1], frame_rate, first_frame)
            factor = inside + self.score_weight * (1 - inside)
            steered = {name: value * np.tile(factor, (value.shape[0] // N_KEYS, 1)) for name, value in steered.items()}
        return {**outputs, **{name: value.astype(np.float32) for name, value in steered.items()}}

    def restrict_templates(self, keys: np.ndarray) -> np.ndarray:
        """Which templates (their keys 0..87, -1 for none) a dictionary keeps: those of
        allowed keys."""
        if self.allowed is None:
            return np.ones(len(keys), dtype=bool)
        return np.isin(np.asarray(keys) + MIDI_MIN, sorted(self.allowed))
