"""Notes as arrays, read from and written to MIDI with pretty_midi.

A note list is ``(intervals, pitches, velocities)``: intervals (n, 2) onset/offset in
seconds, pitches (n,) MIDI numbers, velocities (n,) 1..127 — the layout mir_eval takes
(after converting pitches to Hz). Conventions of the MIDI standard, as pretty_midi
applies them: a note-on of velocity 0 ends the note; a key struck again before its
release makes two overlapping notes of that key, both kept, which the key's first
release ends. mir_eval takes such overlapping notes as they are.

Sustain pedal (CC64 >= 64 is down). With ``pedal_extension``, a note released while the
pedal is down lasts until the pedal is released or the key is struck again, whichever
is first: the note lengths MAESTRO's and Onsets and Frames' evaluations use. A pedal
belongs to its track (its instrument and channel): in a band, the piano's pedal does not
lengthen the bass (pretty_midi reads no track without notes, so a pedal alone on a track
of its own is not read).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi

from ..constants import PEDAL_EXTENDED_REFERENCES
from ..errors import LowrankAmtError
from ..runtime.io import atomic_path


def read_midi(path: str | Path) -> pretty_midi.PrettyMIDI:
    try:
        return pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # pretty_midi raises many kinds on a corrupt file
        raise LowrankAmtError(f"MIDI file {path} cannot be read ({exc})") from exc


def read_midi_notes(path: str | Path, pedal_extension: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All non-drum notes of a MIDI file, sorted by onset; with ``pedal_extension``,
    lengthened by the sustain pedal of their own track (see the module doc)."""
    midi = read_midi(path)
    return pooled_notes([track_notes(midi, inst, pedal_extension) for inst in midi.instruments if not inst.is_drum])


def pooled_notes(tracks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several tracks' note lists (``track_notes``) as one, sorted by onset, then pitch; a
    tie keeps the tracks' order."""
    if not tracks:
        return np.zeros((0, 2)), np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    intervals, pitches, velocities = (np.concatenate([t[i] for t in tracks]) for i in range(3))
    order = np.lexsort((pitches, intervals[:, 0]))
    return intervals[order], pitches[order].astype(int), velocities[order].astype(int)


def track_notes(midi: pretty_midi.PrettyMIDI, inst: pretty_midi.Instrument, pedal_extension: bool = False):
    """(intervals, pitches, velocities) of one instrument's notes sorted by onset; with
    ``pedal_extension``, lengthened by its own sustain pedal."""
    notes = sorted(inst.notes, key=lambda n: (n.start, n.pitch))
    intervals = np.array([[n.start, n.end] for n in notes], dtype=float).reshape(-1, 2)
    pitches = np.array([n.pitch for n in notes], dtype=int)
    if pedal_extension:
        intervals = extend_with_pedal(intervals, pitches, pedal_spans(midi, [inst]))
    return intervals, pitches, np.array([n.velocity for n in notes], dtype=int)


def read_reference(path: str | Path, evaluation: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The notes of a MIDI file as the ``evaluation`` config reads references and
    transcriptions alike: lengthened by the file's sustain pedal unless its
    ``pedal_extension`` is false (a transcription without CC64 is read as written)."""
    return read_midi_notes(path, evaluation.get("pedal_extension", PEDAL_EXTENDED_REFERENCES))


def pedal_spans(midi: pretty_midi.PrettyMIDI, instruments=None) -> np.ndarray:
    """(n, 2) spans (s) during which the sustain pedal (CC64 >= 64) is down on any of
    ``instruments`` (default: every pitched one)."""
    chosen = [inst for inst in midi.instruments if not inst.is_drum] if instruments is None else instruments
    changes = sorted((c.time, c.value >= 64) for inst in chosen for c in inst.control_changes if c.number == 64)
    spans, down_since = [], None
    for time, down in changes:
        if down and down_since is None:
            down_since = time
        elif not down and down_since is not None:
            spans.append((down_since, time))
            down_since = None
    if down_since is not None:
        spans.append((down_since, max(midi.get_end_time(), down_since)))
    return np.array(spans, dtype=float).reshape(-1, 2)


def pedal_intervals(path: str | Path) -> np.ndarray:
    """The sustain pedal's down spans (``pedal_spans``) of a MIDI file."""
    return pedal_spans(read_midi(path))


def extend_with_pedal(intervals: np.ndarray, pitches: np.ndarray, pedal: np.ndarray) -> np.ndarray:
    """Note intervals with offsets moved to the pedal release when the key is released
    while the pedal is down, but never past the next onset of the same key."""
    intervals = np.array(intervals, dtype=float).reshape(-1, 2).copy()
    for i, (start, end) in enumerate(intervals):
        for down, up in pedal:
            if down <= end < up:
                later = intervals[(pitches == pitches[i]) & (intervals[:, 0] > start), 0]
                intervals[i, 1] = max(end, min([up, *later]))
                break
    return intervals


def write_midi_notes(path: str | Path, intervals, pitches, velocities=None, program: int = 0, pedal=()) -> None:
    """Notes as one MIDI track; ``pedal``: (n, 2) spans (s) of the sustain pedal, written
    as CC64 127 (down) and 0 (up)."""
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, name="transcription")
    if velocities is None:
        velocities = np.full(len(pitches), 80)
    for (start, end), pitch, velocity in zip(intervals, pitches, velocities):
        inst.notes.append(pretty_midi.Note(int(velocity), int(pitch), float(start), float(end)))
    for down, up in np.asarray(pedal, dtype=float).reshape(-1, 2):
        inst.control_changes += [pretty_midi.ControlChange(64, 127, down), pretty_midi.ControlChange(64, 0, up)]
    midi.instruments.append(inst)
    with atomic_path(path) as tmp:
        midi.write(str(tmp))
