"""Notes as arrays, read from and written to MIDI with pretty_midi.

A note list is ``(intervals, pitches, velocities)``: intervals (n, 2) onset/offset in
seconds, pitches (n,) MIDI numbers, velocities (n,) 1..127 — the layout mir_eval takes
(after converting pitches to Hz).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi

from .errors import LowrankAmtError
from .io import atomic_path


def read_midi_notes(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All non-drum notes of a MIDI file, sorted by onset."""
    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # pretty_midi raises many kinds on a corrupt file
        raise LowrankAmtError(f"MIDI file {path} cannot be read ({exc})") from exc
    notes = sorted((n for inst in midi.instruments if not inst.is_drum for n in inst.notes),
                   key=lambda n: (n.start, n.pitch))
    intervals = np.array([[n.start, n.end] for n in notes], dtype=float).reshape(-1, 2)
    pitches = np.array([n.pitch for n in notes], dtype=int)
    velocities = np.array([n.velocity for n in notes], dtype=int)
    return intervals, pitches, velocities


def write_midi_notes(path: str | Path, intervals, pitches, velocities=None, program: int = 0) -> None:
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, name="transcription")
    if velocities is None:
        velocities = np.full(len(pitches), 80)
    for (start, end), pitch, velocity in zip(intervals, pitches, velocities):
        inst.notes.append(pretty_midi.Note(int(velocity), int(pitch), float(start), float(end)))
    midi.instruments.append(inst)
    with atomic_path(path) as tmp:
        midi.write(str(tmp))
