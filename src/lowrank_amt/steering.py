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

Key names are MIDI numbers or note names (``C4`` = 60, ``F#3``, ``Bb5``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .constants import MIDI_MAX, MIDI_MIN, N_KEYS
from .errors import LowrankAmtError

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


def scale_keys(scale: str) -> set[int]:
    """The MIDI piano keys of a scale named like ``"D major"`` or ``"F# minor"``."""
    parts = scale.replace("-", " ").split()
    if len(parts) != 2 or parts[0][:1].upper() not in PITCH_CLASSES or parts[1].lower() not in MODES:
        raise LowrankAmtError(f"scale {scale!r} is not '<tonic> <mode>' with a mode of {', '.join(MODES)}")
    tonic = (PITCH_CLASSES[parts[0][0].upper()] + {"#": 1, "b": -1}.get(parts[0][1:2], 0)) % 12
    classes = {(tonic + step) % 12 for step in MODES[parts[1].lower()]}
    return {m for m in range(MIDI_MIN, MIDI_MAX + 1) if m % 12 in classes}


@dataclasses.dataclass
class Steering:
    """What a transcription may use: ``allowed`` MIDI keys (None: all), ``penalised``
    keys (outside the scale; None: none) and the weight of their outputs."""

    allowed: set[int] | None = None
    penalised: set[int] | None = None
    weight: float = 0.5

    @classmethod
    def from_options(cls, pitch_range=None, keys=None, drop_keys=None, scale=None, weight: float = 0.5):
        """From the command line's options; each is optional."""
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
        return cls(allowed, penalised, weight)

    @property
    def active(self) -> bool:
        return self.allowed is not None or bool(self.penalised)

    def gains(self) -> np.ndarray:
        """The factor of each key's outputs (88,): 0 for keys not allowed, ``weight`` for
        penalised ones, 1 otherwise."""
        gains = np.ones(N_KEYS)
        if self.penalised:
            gains[[m - MIDI_MIN for m in self.penalised]] = self.weight
        if self.allowed is not None:
            gains[[m - MIDI_MIN for m in range(MIDI_MIN, MIDI_MAX + 1) if m not in self.allowed]] = 0.0
        return gains

    def apply(self, outputs: dict) -> dict:
        """Outputs (88 x frames arrays) with each key's rows scaled by ``gains``; onsets of
        keys not allowed are zeroed too."""
        if not self.active:
            return outputs
        gains = self.gains()[:, None]
        return {name: (np.asarray(value) * (gains if name == "note" else (gains > 0))).astype(np.float32)
                for name, value in outputs.items()}

    def restrict_templates(self, keys: np.ndarray) -> np.ndarray:
        """Which templates (their keys 0..87, -1 for none) a dictionary keeps: those of
        allowed keys."""
        if self.allowed is None:
            return np.ones(len(keys), dtype=bool)
        return np.isin(np.asarray(keys) + MIDI_MIN, sorted(self.allowed))
